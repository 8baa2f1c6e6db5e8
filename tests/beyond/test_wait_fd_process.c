/* np_wait_fd and the process around it (found by a review of the cache):
 *
 *   main_thread_gone   the program's main thread has called pthread_exit
 *                      (legal: the process lives on in its other threads);
 *                      the identity check asked kcmp about the thread-group
 *                      leader, a zombie without files, and every wait got
 *                      -EBADF after 10 ms
 *   never_on_stdio     a program that closed its stdin finds its next
 *                      open() at 0, not our duplicate of its socket
 *
 * Each case runs in its own process (the harness forks), so it may close
 * stdin or end its main thread.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"

static int sv[2];

static void late_writer(void *arg)
{
    (void)arg;
    np_sleep(300 * NP_MILLISECOND);
    NP_CHECK_EQ(write(sv[1], "x", 1), 1);
}

static void gone_body(void *arg)
{
    (void)arg;
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    NP_CHECK_OK(np_go(late_writer, NULL));
    int64_t t0 = np_now();
    int rc = np_wait_fd(sv[0], NP_READABLE, np_now() + 5 * NP_SECOND);
    NP_CHECK_MSG(rc == NP_READABLE, "np_wait_fd = %d after %lld ms, want %d", rc,
                 (long long)((np_now() - t0) / NP_MILLISECOND), NP_READABLE);
    NP_CHECK(np_now() - t0 >= 300 * NP_MILLISECOND);
}

static void *runner(void *arg)
{
    (void)arg;
    np_config c = { .workers = 2 };
    NP_CHECK_OK(np_run(&c, gone_body, NULL));
    exit(0); /* the case's verdict: the harness sees this status */
}

static void main_thread_gone(void)
{
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, runner, NULL));
    pthread_exit(NULL);
}

static void stdio_body(void *arg)
{
    (void)arg;
    /* Freed here: np_run's own descriptors (the poller's) are made by now. */
    NP_CHECK_OK(close(0));
    NP_CHECK_EQ(write(sv[1], "x", 1), 1);
    NP_CHECK_EQ(np_wait_fd(sv[0], NP_READABLE, np_now() + NP_SECOND), NP_READABLE);
    /* The wait's duplicate may still be cached: stdin's slot is free all
     * the same. */
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    NP_CHECK_MSG(fd == 0, "open after close(0) gave %d: 0 is taken", fd);
    close(fd);
}

static void never_on_stdio(void)
{
    NP_CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    NP_CHECK_OK(np_run(NULL, stdio_body, NULL));
}

NP_TEST_LIST(NP_CASE(main_thread_gone), NP_CASE(never_on_stdio))
