/* netpoll — Go's integrated network poller, in C.
 *
 * Conventions:
 *  - Every public name starts with np_; nothing else is exported.
 *  - A call that can fail returns a negative errno value (-ETIMEDOUT, ...);
 *    errno itself is never the only report. np_strerror() turns one into text.
 *  - Time is int64_t nanoseconds of CLOCK_MONOTONIC. Deadlines are absolute
 *    (np_now() + 2 * NP_SECOND); 0 means "no deadline"; any other value at or
 *    before now, negative ones included, is a deadline already past.
 *
 * The guide (docs/guide.md) is the tutorial; a man page per call
 * (man np_read) gives each call's errors and thread rules.
 */
#ifndef NETPOLL_H
#define NETPOLL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* NP_VERSION_MAJOR, NP_VERSION_MINOR, NP_VERSION_PATCH and
 * NP_VERSION_STRING: generated from the CMake project version. */
#include "netpoll_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NP_API __attribute__((visibility("default")))
#else
#define NP_API
#endif

#define NP_MICROSECOND ((int64_t)1000)
#define NP_MILLISECOND ((int64_t)1000000)
#define NP_SECOND      ((int64_t)1000000000)

/* Nanoseconds of CLOCK_MONOTONIC. Callable from any thread. */
NP_API int64_t np_now(void);

/* Text for an error code; err may be negative (-ECONNRESET, as the library
 * returns them) or positive. Never NULL; unknown codes get a generic text. The
 * string is static and must not be freed. Callable from any thread. */
NP_API const char *np_strerror(int err);

/* The code's symbolic name, as libuv's uv_err_name gives it: "ETIMEDOUT"
 * for -ETIMEDOUT or ETIMEDOUT, "NP_ENOHOST" for NP_ENOHOST, "0" for 0,
 * "UNKNOWN" for a code it does not know. Never NULL; static. Any thread. */
NP_API const char *np_err_name(int err);

/* Codes of the library's own, beside the system's errno values (negative,
 * far from any errno): np_strerror and np_err_name know each. */
#define NP_ENOHOST (-3001) /* np_lookup_host, np_dial: "no such host" */

/* The version of the header, as one number to compare:
 * NP_VERSION_HEX >= 0x000200 means 0.2.0 or later. */
#define NP_VERSION_HEX ((NP_VERSION_MAJOR << 16) | (NP_VERSION_MINOR << 8) | NP_VERSION_PATCH)

/* The version of the library linked at run time, which may be newer than
 * the header's: np_version() as NP_VERSION_HEX gives it,
 * np_version_string() as "MAJOR.MINOR.PATCH". Any thread. */
NP_API unsigned np_version(void);
NP_API const char *np_version_string(void);

/* Runtime ------------------------------------------------------------------
 *
 * Tasks are stackful coroutines run by `workers` threads (M:N). A task runs
 * until it blocks (I/O, sleep) or yields; it may resume on another worker
 * thread, so thread-local state (errno included) does not survive a blocking
 * call: the library's calls return their errors, never only in errno.
 */
typedef struct np_config {
    int    workers;    /* worker threads; 0 = number of online CPUs; < 0 or
                        * over 1024: np_run returns -EINVAL */
    size_t stack_size; /* bytes per task stack; 0 = 256 KiB. Rounded up to a
                        * page; below 16 KiB or over 1 GiB: np_run returns
                        * -EINVAL. Pages are
                        * committed only when touched; below each stack is a
                        * guard region of 64 KiB and a page, and overflowing
                        * into it aborts with a message naming the cause. A
                        * single frame larger than 64 KiB (a big local
                        * array) could jump the guard and write over other
                        * memory: build code with such frames with
                        * -fstack-clash-protection, which makes them touch
                        * every page in order. Guard regions cost no memory;
                        * on Linux >= 6.13 (MADV_GUARD_INSTALL) up to 64
                        * stacks share one kernel mapping, so a million
                        * tasks can be parked at once; elsewhere each stack
                        * is two mappings and vm.max_map_count (65,530 by
                        * default) lets about 30,000 tasks hold a stack at
                        * once, the rest waiting to start. The environment
                        * variable NP_STACK_GUARD=mapping forces the latter
                        * layout; use it in a process you mean to copy with
                        * gdb's generate-core-file (gcore), which stops
                        * copying a mapping at its first guard page and so
                        * would leave the task stacks out. The library
                        * installs a
                        * SIGSEGV handler for that while np_run runs; faults
                        * that are not overflows go to the handler the
                        * program had before (chained), and when np_run
                        * returns it puts that one back unless the program
                        * installed another meanwhile. */
    int64_t idle_stack_ns; /* 0 = off (the default). If > 0, a task blocked
                        * this long (to about 1.2 times this; longer while
                        * every worker is busy, as the moves then take 5% of
                        * a worker's time at most) in network I/O or
                        * np_sleep gives its stack's memory back: the used
                        * part is copied to the heap and copied back, to the
                        * same addresses, when it runs again. For servers
                        * with many idle connections: a task blocked in
                        * np_wait_readable then costs a few hundred bytes,
                        * not a page. Only enable it if no task is ever
                        * handed a pointer into another task's stack while
                        * that task is blocked (a stack's contents are
                        * elsewhere meanwhile). Ignored where the context
                        * switch cannot tell a task's stack pointer
                        * (NP_CONTEXT=ucontext other than on x86-64 and
                        * AArch64). Negative: -EINVAL. */
    int offload_threads; /* most threads np_offload may use at once; 0 = 64.
                        * Started on demand, retired after 5 s idle,
                        * joined before np_run returns. Negative or over
                        * 4096: -EINVAL. */
    int dump_signal;   /* 0 = none. Else a signal (say SIGQUIT) that, while
                        * np_run runs, writes np_dump to stderr, from
                        * whichever thread receives it. After the dump,
                        * SIGQUIT goes on to its default action, as it would
                        * without netpoll: the process ends (with a core
                        * dump where enabled; Go likewise exits after its
                        * dump). Any other signal (SIGUSR1, ...) lets the
                        * program carry on, so a dump can be taken again.
                        * The handler is installed by np_run and the previous
                        * one put back when it returns. SIGSEGV, SIGKILL,
                        * SIGSTOP or no signal number: -EINVAL. */
    int64_t stall_ns;  /* a task that keeps its worker's thread longer than
                        * this without a scheduling point (an np_ call that
                        * parks, yields, or readies or starts a task) — in
                        * sleep(3), a blocking library call, a long
                        * computation — no longer holds up that worker's
                        * other tasks, timers or the poller: a monitor
                        * thread hands the worker's queue to another thread
                        * (starting one if none is spare), as Go's sysmon
                        * retakes a P. The task itself runs on, undisturbed;
                        * at its next scheduling point it is queued like any
                        * other task and its thread becomes a spare. Each
                        * such stall is counted (np_stats.stalls, .handoffs)
                        * and, if the task still holds the thread half of
                        * stall_ns (and at least 5 ms) later (a thread the
                        * OS merely preempted is back by then), reported on
                        * stderr, one line a
                        * second at most,
                        * naming the function the task was started with
                        * (from the dynamic symbol table: link with -rdynamic,
                        * else it shows file+offset for addr2line).
                        * 0 = 10 ms; below 1 ms: 1 ms; < 0 = no monitor (a
                        * stuck task holds up its worker, as in libuv; and
                        * due timers wait for a busy worker's next look,
                        * every 61 switches). At most
                        * NP_HANDOFF_THREADS threads beyond `workers` run
                        * tasks; once all of them are stuck, further stalls
                        * are reported but not handed off. Spare threads
                        * stay until np_run returns. Still, np_offload is
                        * the way for a call known to block: a hand-off
                        * costs stall_ns of delay first. */
} np_config;

/* Threads beyond np_config.workers that may run tasks: see stall_ns. */
#define NP_HANDOFF_THREADS 128

/* Starts the runtime (cfg may be NULL for defaults), runs main_task(arg) as a
 * task, and returns 0 once main_task and every task started since have
 * finished; everything the runtime allocated is released by then. Returns
 * -EINVAL for a bad config or a NULL main_task, -EBUSY if a runtime is
 * already running (in this process; from a task, always), -ENOMEM, or the
 * poller's creation error (-EMFILE, -ENFILE). May be called again after it
 * returns. The calling thread becomes worker 0. */
NP_API int np_run(const np_config *cfg, void (*main_task)(void *), void *arg);

/* Starts fn(arg) as a new task. Callable from a task or from any other thread
 * while the runtime runs (the task is queued and an idle worker is woken).
 * 0, -EINVAL (fn NULL), -ENOMEM, or -ESRCH when no runtime is running (or the
 * running one is finishing: its last task has already ended). */
NP_API int np_go(void (*fn)(void *), void *arg);

/* Runs fn(arg) on a pool thread and parks the calling task until it
 * returns (0): for a blocking call — a file read, sleep(), a library that
 * blocks — that would otherwise hold up every task on the worker. From a
 * plain thread (while a runtime runs) it calls fn directly. -EINVAL (fn
 * NULL), -ESRCH (no runtime), -ENOMEM (no pool thread could be had). The
 * pool grows on demand up to np_config.offload_threads; jobs beyond that
 * wait, first come first served. fn must not call the blocking np_ calls
 * meant for tasks (it runs on a plain thread: they block that thread). */
NP_API int np_offload(void (*fn)(void *), void *arg);

/* Lets other runnable tasks run; the caller is queued behind them. From a
 * plain thread: sched_yield(). */
NP_API void np_yield(void);

/* Blocks the task for ns nanoseconds (<= 0: returns at once), or until the
 * absolute monotonic time `deadline`. Never returns early. From a plain
 * thread while a runtime runs, the thread sleeps (in the kernel). 0, or
 * -ESRCH from a plain thread with no runtime running. */
NP_API int np_sleep(int64_t ns);
NP_API int np_sleep_until(int64_t deadline);

/* Net ----------------------------------------------------------------------
 *
 * Handles are small values, like file descriptors but safe: after close, or
 * if never valid, every call on them returns -EBADF, never undefined
 * behaviour, even when the handle's slot has been reused by a newer
 * connection. id 0 is never issued.
 *
 * Which thread may call what: np_close, np_close_write, np_listener_close,
 * the deadline setters, the address calls and np_conn_fd work from any
 * thread. Calls that block (np_read, np_write, np_wait_readable, np_accept,
 * np_dial) park the calling task; called from a plain thread while a
 * runtime runs, they block that thread (on a futex) with the same deadlines
 * and close semantics, so threads and tasks can share connections. With no
 * runtime running they return -ESRCH.
 *
 * Handles belong to the run of np_run that made them: np_listen needs a
 * running runtime (-ESRCH otherwise, from any thread), and when np_run
 * returns it closes every handle still open (their descriptors too), so a
 * handle kept past its run gives -EBADF, in the next run as well, never a
 * hang. Close what you open before the last task ends to choose the order.
 *
 * Concurrent np_read calls on one connection are serialised (one at a time,
 * in no promised order), and so are np_write calls; a read and a write may
 * run at the same time from two tasks.
 */
typedef struct np_conn     { uint64_t id; } np_conn;
typedef struct np_listener { uint64_t id; } np_listener;

/* network: "tcp", "tcp4", "tcp6" or "unix". address: "host:port"
 * ("[::1]:80" for IPv6; empty host = all interfaces; port 0 = any free port),
 * or a path for "unix" (a leading '@' names a Linux abstract socket).
 * Host names resolve (see Names below). Listeners set SO_REUSEADDR.
 * Errors: -EINVAL (bad network/address), -EADDRINUSE, -EACCES,
 * -EAFNOSUPPORT, -EMFILE, ... */
NP_API int np_listen(np_listener *out, const char *network, const char *address);

/* As np_listen, with SO_REUSEPORT when reuse_port is non-zero (several
 * listeners, in this or other processes, sharing one port). */
NP_API int np_listen_reuseport(np_listener *out, const char *network, const char *address,
                               int reuse_port);

/* The bound address, e.g. "127.0.0.1:41234"; 0 or -ENOSPC if len is short. */
NP_API int np_listener_addr(np_listener l, char *buf, size_t len);

/* Accepts a connection (blocks the task). -ETIMEDOUT past the deadline,
 * -ECANCELED if the listener is closed meanwhile, -EIO if the poller
 * reported only an error condition on the listening socket while it
 * waited, -EMFILE / -ENFILE when out
 * of descriptors (the listener stays usable; retrying at once just returns
 * the error again, so back off). New connections have TCP_NODELAY set. */
NP_API int np_accept(np_listener l, np_conn *out);

/* Deadline for np_accept, as for connections. */
NP_API int np_listener_set_deadline(np_listener l, int64_t deadline);

/* Wakes a blocked accept (-ECANCELED); later calls get -EBADF; a Unix
 * socket's file is removed by this call (not when a blocked accept lets go),
 * so the path can be listened on again at once. */
NP_API int np_listener_close(np_listener l);

/* Connects (blocks the task) until connected or `deadline` (absolute; 0 =
 * none). -EINVAL, -ECONNREFUSED, -ETIMEDOUT, -ENETUNREACH, -EAGAIN (a Unix
 * listener whose backlog is full), -EADDRNOTAVAIL (TCP: no free local
 * port), ...
 * TCP_NODELAY is set on TCP connections. */
NP_API int np_dial(np_conn *out, const char *network, const char *address, int64_t deadline);

/* Read returns bytes read (>0), 0 at end of stream (and again on every
 * later read), or a negative error (-ETIMEDOUT, -ECANCELED if closed by
 * another task meanwhile, -EBADF, -ECONNRESET, -EIO if the poller reported
 * only an error condition while the read waited: the next call gives the
 * socket's own error, ...). len 0 returns 0.
 * Write writes all len bytes and returns len; it returns a shorter count
 * only when a deadline, a close or an error stopped it after some bytes
 * went out; the next call then reports why. Writes never raise SIGPIPE: a
 * peer that is gone gives -EPIPE or -ECONNRESET. */
NP_API ssize_t np_read(np_conn c, void *buf, size_t len); /* len > SSIZE_MAX: as SSIZE_MAX */
NP_API ssize_t np_write(np_conn c, const void *buf, size_t len); /* len > SSIZE_MAX: -EINVAL */

/* Blocks until a read would not block (data, end of stream or an error is
 * waiting), honouring the read deadline; 0 or a negative error (as np_read:
 * -ETIMEDOUT, -ECANCELED, -EBADF, -EIO). Lets an idle
 * connection wait without holding a buffer. */
NP_API int np_wait_readable(np_conn c);

/* Deadlines apply to calls already blocked as well as to later ones. A
 * deadline at or before now makes pending and future calls fail with
 * -ETIMEDOUT until it is moved; 0 clears it. This holds for calls that
 * would not block too: once the deadline has passed, a read with data
 * waiting or a write with buffer room fails instead of proceeding (Go's
 * rule; the clock is read at the start of a call on a connection with a
 * deadline set). */
NP_API int np_set_deadline(np_conn c, int64_t deadline); /* read and write */
NP_API int np_set_read_deadline(np_conn c, int64_t deadline);
NP_API int np_set_write_deadline(np_conn c, int64_t deadline);

/* Close releases the handle. Calls blocked on it in other tasks return
 * -ECANCELED; every later call on the handle returns -EBADF; the fd itself
 * is closed once no call is inside a syscall on it. Closing twice: -EBADF. */
NP_API int np_close(np_conn c);
NP_API int np_close_write(np_conn c); /* shutdown(SHUT_WR): the peer reads EOF */
NP_API int np_local_addr(np_conn c, char *buf, size_t len);
NP_API int np_remote_addr(np_conn c, char *buf, size_t len);
NP_API int np_conn_fd(np_conn c); /* for setsockopt; do not close it */

/* Datagrams ---------------------------------------------------------------
 *
 * np_dial also accepts "udp", "udp4", "udp6" and "unixgram": a connected
 * datagram socket, on which one np_read or np_write moves one datagram. A
 * write is never partial: all of it, or an error (-EMSGSIZE over the size
 * limit); a read of a longer datagram returns len bytes and drops the rest.
 * np_listen_packet binds an unconnected one, used with np_read_from and
 * np_write_to. Deadlines, close-unblocks-waiters and handle safety are those
 * of stream connections. A "unixgram" socket bound by np_listen_packet has
 * its file removed by np_close.
 */
typedef struct np_addr { unsigned char opaque[128]; } np_addr; /* any socket address */

/* Text to address, with no name lookup (a host name gives -EINVAL):
 * "1.2.3.4:53", "[::1]:53", ":53" (the unspecified address), a Unix path
 * ("@name": abstract). network as for np_dial. 0 or -EINVAL. */
NP_API int np_addr_parse(np_addr *out, const char *network, const char *text);
/* Address to text: 0, -ENOSPC if len is short, -EINVAL for a corrupt one. */
NP_API int np_addr_format(const np_addr *a, char *buf, size_t len);

/* network: "udp", "udp4", "udp6" or "unixgram"; address as for np_listen.
 * -EINVAL (a stream network, a bad address), -EADDRINUSE, ... */
NP_API int np_listen_packet(np_conn *out, const char *network, const char *address);
/* One datagram and its sender (from may be NULL). -EINVAL on a stream
 * connection. len 0 asks for nothing: 0 at once, no datagram taken, *from
 * zeroed. */
NP_API ssize_t np_read_from(np_conn c, void *buf, size_t len, np_addr *from);
/* One datagram to `to`: len, or -EMSGSIZE, -EAFNOSUPPORT (an address of
 * another family than the socket's; an IPv4 address is fine on a "udp"
 * socket bound to [::], which serves both, not on a "udp6" one, which is
 * IPv6 only, as in Go), -EISCONN (a socket made by np_dial: it has its
 * peer), -EINVAL (a stream connection), ... */
NP_API ssize_t np_write_to(np_conn c, const void *buf, size_t len, const np_addr *to);

/* Foreign descriptors --------------------------------------------------------
 *
 * np_wait_fd waits (a task parks; a plain thread blocks) until fd is
 * readable and/or writable and returns the mask of what is ready (> 0), as
 * poll(2) on fd reports it when the wait ends (an error or hang-up counts
 * as ready for what was asked: the next syscall says what happened).
 * -ETIMEDOUT at the deadline, -EBADF if fd is not open, -EINVAL for events
 * 0 or unknown bits, -ESRCH with no runtime (also for a plain thread still
 * waiting when np_run ends), -EMFILE or -ENOMEM when the duplicate below
 * cannot be made. fd stays the caller's: its flags are left
 * alone and it is never closed. A descriptor the poller cannot watch (a
 * regular file, a directory, a block device) is reported ready at once.
 * Any number of tasks and threads may wait on one fd at a time, each for
 * its own events.
 *
 * The poller watches a duplicate of fd, never fd itself. The first wait on
 * a descriptor number makes it, and the waits after it reuse it: one extra
 * descriptor per number waited on (two for a moment when it is reused
 * during a wait). A wait that finds the number closed, or naming another
 * file than the duplicate's, drops that duplicate at once (and, the number
 * reused, waits on the new file).
 * Otherwise the duplicate is closed 50 to 100 ms after the last wait on
 * the number ended (by a timer: a little later when the workers are busy;
 * sooner only if the process runs out of descriptors), and at the end of
 * np_run, which leaves none open. Until then it keeps the file open: after
 * the caller closes fd's last descriptor, the file stays open up to 100 ms
 * after the last wait on it — a socket's peer sees end of stream, a pipe's
 * other end EOF or EPIPE, that much later.
 *
 * Closing fd while a wait is on it: the duplicate keeps the file open, so
 * the close alone does not wake the wait; it notices within about a second
 * (the numbers being waited on are checked 10 ms after a wait parks, then
 * at intervals doubling to 1 s while waits go on) that fd no longer names
 * that file — closed, or reused for another — and returns -EBADF; or, the
 * number reused and the new file found ready first, that readiness. It
 * never reports readiness of a file fd no longer names, and never hangs
 * forever. This is how a task drives another library's socket (c-ares,
 * libpq, OpenSSL). */
enum { NP_READABLE = 1, NP_WRITABLE = 2 };
NP_API int np_wait_fd(int fd, int events, int64_t deadline);

/* Adopts fd (a stream or datagram socket, a pipe, a FIFO, a tty, an
 * eventfd: any pollable descriptor) as a connection: made non-blocking,
 * owned by the handle from now on and closed by np_close. np_read and
 * np_write use read(2)/write(2) on what is not a socket (a write to a pipe
 * with no reader gives -EPIPE, never SIGPIPE). -EINVAL if it cannot be
 * polled (a regular file), -EBADF if it is not open. */
NP_API int np_conn_from_fd(np_conn *out, int fd);

/* Coordination --------------------------------------------------------------
 *
 * Go's sync.Mutex, sync.Cond, sync.WaitGroup, channels and select. Every
 * call works from a task (it parks the task, never the worker thread) and
 * from a plain thread while a runtime runs (it blocks the thread on a futex):
 * a task and a thread may contend for one mutex or sit on the two ends of
 * one channel. A call that would have to block on a plain thread while no
 * runtime runs returns -ESRCH instead (nothing could wake it); calls that
 * need not block work without a runtime. A plain thread already blocked
 * when np_run returns stays blocked until another thread's call ends its
 * wait (a send, an unlock, ...) or its deadline passes: the thread keeps
 * its own deadline, so it holds with or without a runtime.
 *
 * np_mutex, np_cond and np_waitgroup are embedded by value: ready when
 * zeroed (= NP_MUTEX_INIT or memset 0), no destroy call, and they must not
 * be moved or copied while in use. Using one after its memory was freed is
 * the caller's bug, as with pthreads (no handle protects them). As in Go
 * and POSIX, the one who last waits may free it as soon as its call
 * returns: a mutex after the lock that follows the last unlock, a wait
 * group once wait has returned 0, a cond once wait has returned if the
 * wake-up was sent with the mutex held. Channels are handles (np_chan),
 * with the connections' safety.
 *
 * Deadlines are absolute, as everywhere: 0 = none; one already past makes a
 * call that would block fail at once with -ETIMEDOUT (a non-blocking try).
 * A deadline never fires early. A plain thread's first wait allocates its
 * wait record: any call that may block may give -ENOMEM there.
 */
/* u_.state_ is the mutex's lock word, which the inline fast paths below
 * touch; the rest is the library's. */
typedef struct np_mutex {
    union {
        uint64_t opaque_[4];
        uint32_t state_;
    } u_;
} np_mutex;
typedef struct np_cond      { uint64_t opaque_[4]; } np_cond;
typedef struct np_waitgroup { uint64_t opaque_[4]; } np_waitgroup;
#define NP_MUTEX_INIT     { { { 0 } } }
#define NP_COND_INIT      { { 0 } }
#define NP_WAITGROUP_INIT { { 0 } }

/* Not recursive, not owned: any task or thread may unlock (as in Go). An
 * uncontended lock or unlock is one atomic operation. When the mutex is
 * unlocked with waiters queued, it is handed to the first of them (FIFO):
 * no waiter starves. -EINVAL for NULL. */
NP_API int np_mutex_lock(np_mutex *m);                         /* 0 */
NP_API int np_mutex_lock_until(np_mutex *m, int64_t deadline); /* 0, -ETIMEDOUT */
NP_API int np_mutex_trylock(np_mutex *m);                      /* 0, -EBUSY */
NP_API int np_mutex_unlock(np_mutex *m);                       /* 0, -EPERM if not locked */

/* The uncontended np_mutex_lock and np_mutex_unlock are inlined from this
 * header with GCC and clang, as Go inlines sync.Mutex's fast paths: one
 * compare-and-swap of u_.state_, and a call into the library only when it
 * fails (contended, NULL, or not locked). The functions are exported too,
 * and are what (np_mutex_lock)(m), &np_mutex_lock and other languages get;
 * define NP_NO_INLINE before including this header to call them always.
 * Because a program compiled with these inline paths knows the lock
 * word's encoding (0 free, 1 locked and no waiters), a library of another
 * minor version (0.x) may not match it: rebuild against the new header. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(NP_NO_INLINE)
static inline __attribute__((always_inline)) int np_mutex_lock_inline_(np_mutex *m)
{
    uint32_t free_ = 0;
    if (__builtin_expect(m != NULL, 1) &&
        __builtin_expect(__atomic_compare_exchange_n(&m->u_.state_, &free_, 1, 0, __ATOMIC_ACQUIRE,
                                                     __ATOMIC_RELAXED),
                         1))
        return 0;
    return (np_mutex_lock)(m);
}
static inline __attribute__((always_inline)) int np_mutex_unlock_inline_(np_mutex *m)
{
    uint32_t locked_ = 1;
    if (__builtin_expect(m != NULL, 1) &&
        __builtin_expect(__atomic_compare_exchange_n(&m->u_.state_, &locked_, 0, 0, __ATOMIC_RELEASE,
                                                     __ATOMIC_RELAXED),
                         1))
        return 0;
    return (np_mutex_unlock)(m);
}
#define np_mutex_lock(m)   np_mutex_lock_inline_(m)
#define np_mutex_unlock(m) np_mutex_unlock_inline_(m)
#endif

/* Waits with m held (by the caller); m is held again on return, whatever
 * the result. Spurious wake-ups are allowed (callers loop on their
 * predicate), as with pthread_cond. signal wakes the longest waiter,
 * broadcast all; both are fine with or without m held. -EINVAL for NULL,
 * -EPERM if m is not locked. */
NP_API int np_cond_wait(np_cond *c, np_mutex *m, int64_t deadline); /* 0, -ETIMEDOUT */
NP_API int np_cond_signal(np_cond *c);                              /* 0 */
NP_API int np_cond_broadcast(np_cond *c);                           /* 0 */

/* A counter of outstanding work: add before starting it, done when each
 * piece finishes, wait until the count is 0. -EINVAL (and no change) if
 * the count would go below 0 (Go panics there) or above 2^62 - 1.
 * Reusable once 0. */
NP_API int np_waitgroup_add(np_waitgroup *wg, int64_t delta);
NP_API int np_waitgroup_done(np_waitgroup *wg); /* add(-1) */
NP_API int np_waitgroup_wait(np_waitgroup *wg, int64_t deadline); /* 0, -ETIMEDOUT */

/* Channels: Go's, elements copied by value (elem_size bytes; 0 allowed: a
 * signal-only channel, whose elem pointers may be NULL). capacity 0 =
 * unbuffered: a send completes only when a receiver takes the element,
 * which is copied straight from the sender to the receiver. id 0 is the
 * nil channel: send and receive on it block until their deadline (forever
 * with none), and a select case on it never proceeds, as in Go; close, len,
 * cap and free of it give -EBADF, as do all calls on a freed or forged id. */
typedef struct np_chan { uint64_t id; } np_chan;

/* -EINVAL for a NULL out or an absurd size (elem_size * capacity
 * overflowing, or over 1 GiB), -ENOMEM. */
NP_API int np_chan_make(np_chan *out, size_t elem_size, size_t capacity);
/* 0; -EPIPE if the channel is closed (before or while blocked; Go
 * panics); -ETIMEDOUT; -ECANCELED if freed while blocked; -EBADF; -EINVAL
 * for a NULL elem when elem_size is not 0 (likewise recv, and a select
 * case). */
NP_API int np_chan_send(np_chan ch, const void *elem, int64_t deadline);
/* 0; -EPIPE once the channel is closed AND drained (buffered elements are
 * still delivered after close, as in Go; elem is then zeroed, Go's zero
 * value); -ETIMEDOUT; -ECANCELED; -EBADF. */
NP_API int np_chan_recv(np_chan ch, void *elem, int64_t deadline);
/* 0; wakes every blocked sender (-EPIPE) and receiver (-EPIPE, once the
 * buffer is drained); -EPIPE if already closed; -EBADF. */
NP_API int np_chan_close(np_chan ch);
/* Releases the handle: calls blocked on it return -ECANCELED, later calls
 * -EBADF; buffered elements are dropped. */
NP_API int np_chan_free(np_chan ch);
NP_API int np_chan_len(np_chan ch); /* elements buffered now, or -EBADF */
NP_API int np_chan_cap(np_chan ch); /* capacity, or -EBADF */

/* Select: waits until one case can proceed, performs it, and returns its
 * index; among several ready cases one is chosen uniformly at random (no
 * starvation). cases[i].result is then 0, or -EPIPE (a send on a closed
 * channel, or a receive from a closed and drained one). A case whose
 * chan.id is 0 never proceeds (Go's nil channel). A deadline already past
 * makes it non-blocking (Go's default): -ETIMEDOUT if nothing is ready.
 * -EBADF if a case names a freed or forged channel (-ECANCELED if one is
 * freed while blocked); -EINVAL for a bad op, NULL cases with n > 0, or n
 * < 0 or over 64. n = 0 (or only nil channels) blocks until the deadline. */
enum { NP_SEND = 1, NP_RECV = 2 };
typedef struct np_select_case {
    np_chan chan;
    int     op;      /* NP_SEND or NP_RECV */
    void   *elem;    /* the element to send, or where to receive into */
    int     result;  /* out */
} np_select_case;
NP_API int np_select(np_select_case *cases, int n, int64_t deadline);

/* Names ----------------------------------------------------------------------
 *
 * Name resolution honours the caller's deadline, in np_lookup_host and in
 * np_dial alike: a dial with a 1 s deadline returns by then even if the
 * resolver never answers. On Linux builds with c-ares (the default where
 * libc-ares-dev is installed) the lookup is c-ares's, driven by the poller:
 * it reads /etc/hosts and /etc/resolv.conf (or the file named by the
 * environment variable NP_RESOLV_CONF; NP_DNS_SERVERS, e.g.
 * "127.0.0.1:5353,[::1]:53", replaces its nameservers), and a deadline
 * cancels it outright.
 * Elsewhere it is getaddrinfo on the offload pool: the caller returns at
 * its deadline and the lookup finishes, unseen, on its pool thread.
 *
 * np_lookup_host stores up to max addresses of host (port 0) and returns
 * how many (> 0); a numeric address is returned as it is. NP_ENOHOST ("no
 * such host": the name does not exist, or has no address), -ETIMEDOUT,
 * -EAGAIN (the resolver failed for now: no answer, a server failure),
 * -EINVAL (host NULL, empty or over 253 bytes; max < 1), -ESRCH (a plain
 * thread with no runtime). NP_ENOHOST is defined with np_strerror. */
NP_API int np_lookup_host(const char *host, np_addr *out, int max, int64_t deadline);

/* Signals, Go's os/signal ----------------------------------------------------
 *
 * np_signal_notify(ch, signo): each time signo arrives, its number (an int)
 * is sent on ch without blocking; if ch is full the signal is dropped, as in
 * Go (give ch a buffer). Several channels may watch one signal, and one
 * channel several signals; watching twice is the same as once. The first
 * watcher of a signal installs the library's handler (which only counts it
 * and writes a byte to a pipe: async-signal-safe); a library thread sends
 * the counted signals, so delivery works however busy the runtime is, and
 * even with no runtime running. np_signal_stop(ch) stops every delivery to
 * ch, and each signal nobody watches any more gets back the disposition it
 * had before its first watcher (the default, usually). Callable from any
 * thread. -EINVAL for a signal that cannot be caught or waited for (SIGKILL,
 * SIGSTOP; the faults SIGSEGV, SIGBUS, SIGFPE, SIGILL; out of range) or a
 * channel whose elem_size is not sizeof(int); -EBADF for a bad channel
 * (np_signal_stop: one that is neither live nor watching). A channel freed
 * while watching is dropped from the watchers (and np_signal_stop on it
 * still removes it, returning 0). The first watcher also makes the pipe
 * and the thread: -ENOMEM, -EMFILE, -ENFILE or -EAGAIN when they cannot
 * be had. Signals
 * delivered this way are not blocked in any thread: they interrupt a
 * thread's slow syscalls with EINTR only where SA_RESTART does not apply. */
NP_API int np_signal_notify(np_chan ch, int signo);
NP_API int np_signal_stop(np_chan ch);

/* Runtime health ------------------------------------------------------------
 *
 * A snapshot of what the runtime is doing, from any thread (a task, a
 * plain thread, a signal-watching thread): -ESRCH with no runtime running,
 * -EINVAL for NULL. The fields are read one by one while the runtime
 * runs, so they need not add up exactly. Counters count since np_run began.
 */
typedef struct np_stats {
    int64_t tasks;          /* live: started and not yet returned */
    int64_t tasks_runnable; /* queued to run (not counting the running ones) */
    int64_t tasks_parked;   /* waiting: in I/O, sleep, coordination, offload */
    int64_t tasks_started;  /* since np_run began, the main task included
                             * (an np_go that failed with -ENOMEM or
                             * -ESRCH after taking its id too): never
                             * below tasks */
    int     workers;
    int     workers_idle;   /* asleep, or blocked in the poller */
    int     threads;        /* the runtime's OS threads: those that run tasks
                             * (workers, and spares started for hand-offs),
                             * the stall monitor, and the offload pool */
    int64_t polls, steals;  /* network polls by workers; tasks stolen between them */
    int64_t handoffs, stalls; /* stalls: tasks seen keeping their worker's
                             * thread past np_config.stall_ns; handoffs: of
                             * those, the worker queues moved to another thread */
    int64_t conns_open, listeners_open; /* handles made and not yet closed
                             * (datagram sockets and adopted fds are conns) */
    int64_t timers_pending; /* set and not yet fired or stopped: sleeps,
                             * deadlines, waits with deadlines */
    int64_t stack_bytes_mapped;   /* task stacks, guard pages included */
    int64_t stack_bytes_resident; /* an upper bound: stacks not handed back
                             * to the OS, in full (untouched pages are not
                             * really resident) */
} np_stats;
NP_API int np_stats_get(np_stats *out);

/* Writes one entry per live task to fd, as text, in no particular order:
 *
 *   task 7 (reader): parked in np_read on conn fd 9 for 1.204 s, deadline in 3.796 s
 *       np__task_switch+0x3c
 *       ...
 *       reader+0x2f
 *
 * Its id (1 for the main task, then in order of np_go, per run of np_run),
 * the function it was started with, its state — "running on worker N",
 * "runnable", or "parked in" the blocking call (np_read, np_write,
 * np_accept, np_dial, np_wait_readable, np_wait_fd, np_sleep,
 * np_mutex_lock, np_cond_wait, np_waitgroup_wait, np_chan_send,
 * np_chan_recv, np_select, np_offload), what it waits on (the connection's
 * or listener's descriptor, the channel, lock or wait group's address),
 * for how long (to the kernel tick, a few ms), and the deadline if any —
 * and the backtrace of its stack (symbol+offset; a running task's only
 * when it is the caller, or the thread the dump signal interrupted).
 * Names come from the dynamic symbol table and else the file's .symtab:
 * link with -rdynamic or keep symbols for the program's own functions.
 * The library is built with frame pointers; frames of code built without
 * them may be missing. The entries are a snapshot taken while tasks run
 * on: one that changes state meanwhile may be reported in either state.
 *
 * From any thread; async-signal-safe enough to run from a signal handler
 * (np_config.dump_signal): no malloc (its work space is mapped with
 * mmap, so a task's small stack is enough), no stdio, no locks of the
 * runtime; write(2), blocking the caller until all is written (a pipe
 * whose reader is gone raises SIGPIPE, as write(2) does). 0, or -ESRCH (no
 * runtime), -ENOMEM, -EBADF (fd < 0 too), -EIO (write wrote nothing) or
 * another error of write(2). */
NP_API int np_dump(int fd);

/* Name of the poller backend this library was built with: "epoll",
 * "epoll_pipe" (epoll woken through a pipe instead of an eventfd), "poll",
 * "kqueue" or "kqueue_pipe" (kqueue woken through a pipe, where there is no
 * EVFILT_USER). Chosen at build time with -DNP_POLLER=epoll|poll|kqueue
 * (and -DNP_WAKE=pipe, -DNP_KQUEUE_WAKE=pipe). */
NP_API const char *np_poller_name(void);

#ifdef __cplusplus
}
#endif
#endif /* NETPOLL_H */
