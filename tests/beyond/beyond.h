/* Shared helpers of the tests in tests/beyond/: the features past TCP
 * (datagrams, foreign descriptors, np_offload, signals, names, plain
 * threads doing I/O), tested against include/netpoll.h as an adversary.
 * Every helper is static: each test file is its own program. */
#ifndef NP_BEYOND_H
#define NP_BEYOND_H

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"
#include "base/sanitizer.h"

#define B_UNUSED __attribute__((unused))

typedef void (*body_fn)(void);

static B_UNUSED void b_run_body(void *arg)
{
    ((body_fn)arg)();
}

/* Runs fn as the main task of a runtime with `workers` workers. */
static B_UNUSED void b_run_workers(int workers, body_fn fn)
{
    np_config c = { .workers = workers };
    NP_CHECK_OK(np_run(&c, b_run_body, (void *)fn));
}

static B_UNUSED void b_run(body_fn fn)
{
    b_run_workers(2, fn);
}

static B_UNUSED void b_run_cfg(const np_config *c, body_fn fn)
{
    NP_CHECK_OK(np_run(c, b_run_body, (void *)fn));
}

/* Milliseconds since t0 (np_now() nanoseconds), for messages. */
static B_UNUSED double b_ms_since(int64_t t0)
{
    return (double)(np_now() - t0) / 1e6;
}

static B_UNUSED pid_t b_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Entries of a /proc/self directory ("task", "fd"), '.' and '..' aside. */
static B_UNUSED int b_count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - (strcmp(path, "/proc/self/fd") == 0); /* opendir's own */
}

static B_UNUSED int b_threads(void)
{
    return b_count_dir("/proc/self/task");
}

/* Threads of the process once those that were joined have left /proc.
 * pthread_join returns when the exiting thread clears its tid; the kernel
 * (or qemu-user, which clears the guest's tid before its host thread ends)
 * may list it a little longer, and nothing signals when it goes. So ask
 * again for up to 2 s while the count is above `want`. */
static B_UNUSED int b_threads_settled(int want)
{
    int n = b_threads();
    for (int i = 0; i < 200 && n > want; i++) {
        struct timespec ms10 = { 0, 10 * 1000 * 1000 };
        nanosleep(&ms10, NULL);
        n = b_threads();
    }
    return n;
}

static B_UNUSED int b_open_fds(void)
{
    return b_count_dir("/proc/self/fd");
}

/* True when the build is sanitized: timing bounds that are about speed,
 * not about correctness, get more room there. */
static B_UNUSED bool b_sanitized(void)
{
#if defined(NP_ASAN) || defined(NP_TSAN)
    return true;
#else
    return false;
#endif
}

/* Waits (a task parks, a plain thread blocks) until *flag != 0, at most
 * `ms` milliseconds; true if it was seen. For flags set by other threads
 * where no event can be awaited. */
static B_UNUSED bool b_wait_flag(_Atomic int *flag, int ms)
{
    int64_t end = np_now() + (int64_t)ms * NP_MILLISECOND;
    while (!atomic_load(flag)) {
        if (np_now() >= end)
            return false;
        np_sleep(NP_MILLISECOND);
    }
    return true;
}

/* Formats an np_addr (which must be valid) into a static buffer. */
static B_UNUSED const char *b_fmt(const np_addr *a)
{
    static _Thread_local char buf[160];
    int rc = np_addr_format(a, buf, sizeof buf);
    if (rc < 0)
        snprintf(buf, sizeof buf, "<np_addr_format: %d>", rc);
    return buf;
}

/* Is IPv6 loopback usable here? (A kernel booted without IPv6 has none.) */
#include <netinet/in.h>
#include <sys/socket.h>
static B_UNUSED bool b_have_ipv6(void)
{
    int s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return false;
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    bool ok = bind(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}


/* ---- datagram helpers -------------------------------------------------------
 *
 * b_packet: a bound datagram socket and its own address (from np_local_addr,
 * parsed once: the tests never parse a peer's address, they reply to `from`).
 * b_read_from_soon / b_read_soon: a read of a datagram already sent on
 * loopback, with a 5 s deadline. */
static B_UNUSED np_conn b_packet(const char *network, const char *address, np_addr *self,
                                    char *text, size_t cap)
{
    np_conn c;
    int rc = np_listen_packet(&c, network, address);
    NP_CHECK_MSG(rc == 0, "np_listen_packet(%s, %s): %s", network, address, np_strerror(rc));
    char buf[128];
    NP_CHECK_OK(np_local_addr(c, buf, sizeof buf));
    if (self)
        NP_CHECK_OK(np_addr_parse(self, network, buf));
    if (text)
        snprintf(text, cap, "%s", buf);
    return c;
}

static B_UNUSED np_conn b_dial(const char *network, const char *address)
{
    np_conn c;
    int rc = np_dial(&c, network, address, np_now() + 5 * NP_SECOND);
    NP_CHECK_MSG(rc == 0, "np_dial(%s, %s): %s", network, address, np_strerror(rc));
    return c;
}

/* A read that must not wait long: a datagram that was sent on loopback. */
static B_UNUSED ssize_t b_read_from_soon(np_conn c, void *buf, size_t len, np_addr *from)
{
    NP_CHECK_OK(np_set_read_deadline(c, np_now() + 5 * NP_SECOND));
    ssize_t n = np_read_from(c, buf, len, from);
    NP_CHECK_OK(np_set_read_deadline(c, 0));
    return n;
}

static B_UNUSED ssize_t b_read_soon(np_conn c, void *buf, size_t len)
{
    NP_CHECK_OK(np_set_read_deadline(c, np_now() + 5 * NP_SECOND));
    ssize_t n = np_read(c, buf, len);
    NP_CHECK_OK(np_set_read_deadline(c, 0));
    return n;
}

static B_UNUSED void b_skip_without_ipv6(void)
{
    if (!b_have_ipv6())
        NP_SKIP("no IPv6 loopback here");
}

static B_UNUSED void b_join_thread(void *arg) /* for np_offload: joins a pthread */
{
    pthread_join(*(pthread_t *)arg, NULL);
}

#endif
