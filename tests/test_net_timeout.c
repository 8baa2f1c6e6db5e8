/* Deadlines on the net API: the behaviours Go's net/timeout_test.go checks.
 *
 *  - a past deadline fails even with data ready (or buffer space, or a
 *    pending connection), and keeps failing until it is moved;
 *  - a deadline fires while the call is blocked, never early;
 *  - a deadline moved earlier, moved into the past, extended, or cleared
 *    while a call is blocked takes effect;
 *  - close unblocks a blocked call (-ECANCELED), from a task or a plain
 *    thread, and later calls get -EBADF;
 *  - deadlines set concurrently with I/O, and from many tasks and threads at
 *    once (Go's TestReadWriteDeadlineRace, TestConcurrentSetDeadline);
 *  - deadlines pushed forward before every operation (Go's
 *    TestReadWriteProlongedTimeout and the fluctuation tests);
 *  - np_set_deadline sets both directions; one shared deadline split later;
 *  - a write that times out (or is closed) after partial progress returns the
 *    short count, and the next call reports why;
 *  - setters on closed, zero, never-issued and stale handles: -EBADF;
 *  - np_dial: a past deadline fails at once; a deadline fires while the dial
 *    is blocked (a listener whose accept queue is full drops SYNs).
 *
 * Most behaviours run once per blocking call: np_read, np_write (its send
 * buffer filled first), np_wait_readable and np_accept (with
 * np_listener_set_deadline), as the cases t_<op>_<behaviour>.
 *
 * Knowing a task is blocked: np__pd_waiters() (internal, pd.h) counts tasks
 * parked on a poll descriptor, so the controlling task waits for it to grow
 * instead of sleeping. Sleeps appear only as workload pacing (a feeder
 * sending a byte every 20 ms) or to check a negative: that a cleared or
 * extended deadline does NOT fire, which can only be observed by letting the
 * old deadline pass.
 *
 * Timing: never early is checked strictly (np_now() after the call >= the
 * deadline); lateness only loosely (SLACK), for noisy 2-core machines and the
 * sanitizers.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"
#include "pd/pd.h"

#define SLACK (2 * NP_SECOND)
#define FAR (10 * NP_SECOND)

/* ---- helpers ------------------------------------------------------------------------------- */

static void run2(void (*fn)(void *), void *arg)
{
    np_config c = { .workers = 2 };
    NP_CHECK_OK(np_run(&c, fn, arg));
}

/* The byte at offset o of the a -> b stream. */
static unsigned char pat(uint64_t o)
{
    return (unsigned char)((o * 0x9E3779B97F4A7C15ull) >> 56);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Waits (yielding) until at least n tasks are parked on poll descriptors. */
static void wait_parked(uint32_t n)
{
    int64_t until = np_now() + 10 * NP_SECOND;
    while (np__pd_waiters() < n) {
        NP_CHECK_MSG(np_now() < until, "no task parked: waiters %u, want %u", np__pd_waiters(),
                     n);
        np_yield();
    }
}

static void await_flag(_Atomic int *flag, int want)
{
    int64_t until = np_now() + 20 * NP_SECOND;
    while (atomic_load(flag) < want) {
        NP_CHECK_MSG(np_now() < until, "flag %d never reached %d", atomic_load(flag), want);
        np_sleep(100 * NP_MICROSECOND);
    }
}

/* A connected pair, TCP on loopback or a Unix socket; a is the side under
 * test. Where a write must block, the pair is a Unix one: its sender-side
 * buffer accounting stays full while nobody reads, whereas a TCP receiver
 * that collapses its queue reopens the window after a while, so a "full"
 * TCP path may take one more write later. */
enum { MAX_EXTRA = 128 };
typedef struct pair {
    np_listener l;
    np_conn a, b;          /* a dialed, b accepted */
    const char *net;       /* "tcp" or "unix" */
    char addr[108];
    /* sent and r_pending change in a runner task on one worker and are read
     * by the controlling task on another, ordered only through the socket,
     * which TSan cannot see: atomic. */
    _Atomic uint64_t sent; /* a -> b stream (pat): bytes written */
    uint64_t rcvd;         /* of those, bytes read and verified */
    _Atomic int r_pending; /* bytes b -> a not yet read */
    /* Connections to l dialed by the controlling task, and accepted from l
     * by do_op (possibly in a runner task at the same time): kept apart. */
    np_conn dialed[MAX_EXTRA], accepted[MAX_EXTRA];
    int ndialed, naccepted;
} pair;

static void pair_open(pair *p, const char *net)
{
    static _Atomic int seq;
    memset(p, 0, sizeof *p);
    p->net = net;
    if (strcmp(net, "unix") == 0) {
        snprintf(p->addr, sizeof p->addr, "@np_net_timeout_%d_%d", (int)getpid(),
                 atomic_fetch_add(&seq, 1));
        NP_CHECK_OK(np_listen(&p->l, net, p->addr));
    } else {
        NP_CHECK_OK(np_listen(&p->l, net, "127.0.0.1:0"));
        NP_CHECK_OK(np_listener_addr(p->l, p->addr, sizeof p->addr));
    }
    NP_CHECK_OK(np_dial(&p->a, net, p->addr, 0));
    NP_CHECK_OK(np_accept(p->l, &p->b));
}

static void add_conn(np_conn *arr, int *n, np_conn c)
{
    NP_CHECK_LT(*n, MAX_EXTRA);
    arr[(*n)++] = c;
}

static void pair_close(pair *p)
{
    int rc = np_close(p->a);
    NP_CHECK(rc == 0 || rc == -EBADF);
    rc = np_close(p->b);
    NP_CHECK(rc == 0 || rc == -EBADF);
    for (int i = 0; i < p->ndialed; i++)
        NP_CHECK_OK(np_close(p->dialed[i]));
    for (int i = 0; i < p->naccepted; i++)
        NP_CHECK_OK(np_close(p->accepted[i]));
    rc = np_listener_close(p->l);
    NP_CHECK(rc == 0 || rc == -EBADF);
}

/* A small send buffer on a: filling the path is quick. (A TCP receive
 * buffer stays as it is: one much smaller than loopback's 64 KiB MSS makes
 * TCP crawl on persist timers when it is drained.) */
static void shrink_buffers(pair *p)
{
    int v = 4096;
    NP_CHECK_SYS(setsockopt(np_conn_fd(p->a), SOL_SOCKET, SO_SNDBUF, &v, sizeof v));
}

/* Fills a's send path (nobody reads b) until two writes in a row made no
 * progress in 20 ms each: then a write on a blocks. Leaves no write
 * deadline. */
static void fill(pair *p)
{
    enum { CH = 64 * 1024 };
    unsigned char *buf = malloc(CH);
    NP_CHECK(buf);
    shrink_buffers(p);
    int stuck = 0;
    while (stuck < 2) {
        for (size_t i = 0; i < CH; i++)
            buf[i] = pat(p->sent + i);
        NP_CHECK_OK(np_set_write_deadline(p->a, np_now() + 20 * NP_MILLISECOND));
        ssize_t n = np_write(p->a, buf, CH);
        if (n == -ETIMEDOUT) {
            stuck++;
            continue;
        }
        NP_CHECK_MSG(n > 0 && n <= CH, "fill: write = %zd (%s)", n, np_strerror((int)n));
        p->sent += (uint64_t)n;
        stuck = 0;
    }
    NP_CHECK_OK(np_set_write_deadline(p->a, 0));
    free(buf);
}

/* Reads b until `upto` bytes of the a -> b stream arrived, checking each. */
static void drain(pair *p, uint64_t upto)
{
    unsigned char buf[8192];
    while (p->rcvd < upto) {
        uint64_t want = upto - p->rcvd;
        ssize_t n = np_read(p->b, buf, want < sizeof buf ? (size_t)want : sizeof buf);
        NP_CHECK_MSG(n > 0, "drain: read = %zd (%s) at %llu of %llu", n, np_strerror((int)n),
                     (unsigned long long)p->rcvd, (unsigned long long)upto);
        for (ssize_t i = 0; i < n; i++)
            NP_CHECK_MSG(buf[i] == pat(p->rcvd + (uint64_t)i), "byte %llu corrupt",
                         (unsigned long long)(p->rcvd + (uint64_t)i));
        p->rcvd += (uint64_t)n;
    }
}

/* Nothing more than expected arrives on c (checked for 20 ms). Leaves c's read
 * deadline cleared. */
static void expect_nothing_more(np_conn c)
{
    char ch;
    NP_CHECK_OK(np_set_read_deadline(c, np_now() + 20 * NP_MILLISECOND));
    NP_CHECK_EQ(np_read(c, &ch, 1), -ETIMEDOUT);
    NP_CHECK_OK(np_set_read_deadline(c, 0));
}

static void send_r(pair *p)
{
    NP_CHECK_EQ(np_write(p->b, "R", 1), 1);
    p->r_pending++;
}

/* ---- the blocking calls, uniformly ------------------------------------------------------ */

enum { OP_READ, OP_WRITE, OP_WAIT, OP_ACCEPT };
static const char *const op_name[] = { "np_read", "np_write", "np_wait_readable", "np_accept" };

static ssize_t do_op(pair *p, int op)
{
    switch (op) {
    case OP_READ: {
        char ch = 0;
        ssize_t n = np_read(p->a, &ch, 1);
        if (n == 1) {
            NP_CHECK_EQ(ch, 'R');
            p->r_pending--;
        }
        return n;
    }
    case OP_WRITE: {
        unsigned char ch = pat(p->sent);
        ssize_t n = np_write(p->a, &ch, 1);
        if (n == 1)
            p->sent++;
        return n;
    }
    case OP_WAIT:
        return np_wait_readable(p->a);
    default: {
        np_conn c;
        int rc = np_accept(p->l, &c);
        if (rc == 0)
            add_conn(p->accepted, &p->naccepted, c);
        return rc;
    }
    }
}

static ssize_t op_ok(int op)
{
    return op == OP_READ || op == OP_WRITE ? 1 : 0;
}

/* The deadline that governs op. */
static int set_dl(pair *p, int op, int64_t d)
{
    switch (op) {
    case OP_READ:
    case OP_WAIT:
        return np_set_read_deadline(p->a, d);
    case OP_WRITE:
        return np_set_write_deadline(p->a, d);
    default:
        return np_listener_set_deadline(p->l, d);
    }
}

static int close_op(pair *p, int op)
{
    return op == OP_ACCEPT ? np_listener_close(p->l) : np_close(p->a);
}

/* Makes op able to complete without blocking: data waiting (read, wait), an
 * empty send buffer (write: nothing to do), a pending connection (accept). */
static void make_ready(pair *p, int op)
{
    switch (op) {
    case OP_READ:
    case OP_WAIT:
        if (p->r_pending == 0)
            send_r(p);
        NP_CHECK_OK(np_wait_readable(p->a)); /* arrived (the deadline is clear here) */
        break;
    case OP_WRITE:
        break;
    default: {
        np_conn c;
        NP_CHECK_OK(np_dial(&c, p->net, p->addr, 0));
        add_conn(p->dialed, &p->ndialed, c);
        break;
    }
    }
}

/* Before a blocking scenario: write needs a full send buffer. */
static void prepare_block(pair *p, int op)
{
    if (op == OP_WRITE)
        fill(p);
}

/* Whatever op waits for happens: `target` is p->sent + 1 for a write blocked
 * before this call (its byte must arrive), ignored otherwise. */
static void trigger(pair *p, int op, uint64_t target)
{
    switch (op) {
    case OP_READ:
    case OP_WAIT:
        send_r(p);
        break;
    case OP_WRITE:
        drain(p, target);
        break;
    default:
        make_ready(p, op);
        break;
    }
}

/* After an op timed out: clearing its deadline and making it ready lets it
 * succeed (the connection or listener is usable again). */
static void check_usable_again(pair *p, int op)
{
    NP_CHECK_OK(set_dl(p, op, 0));
    if (op == OP_WRITE)
        drain(p, p->sent);
    else
        trigger(p, op, 0);
    ssize_t rc = do_op(p, op);
    NP_CHECK_MSG(rc == op_ok(op), "%s after the deadline was cleared: %zd (%s)", op_name[op],
                 rc, np_strerror((int)rc));
}

/* A task running op once, recording when it started and returned. */
typedef struct runner {
    pair *p;
    int op;
    _Atomic int done;
    ssize_t rc;
    int64_t t0, t1;
} runner;

static void runner_task(void *arg)
{
    runner *r = arg;
    r->t0 = np_now();
    r->rc = do_op(r->p, r->op);
    r->t1 = np_now();
    atomic_store(&r->done, 1);
}

/* Starts op in a task and returns once it is parked (blocked). */
static void start_blocked(runner *r, pair *p, int op)
{
    uint32_t before = np__pd_waiters();
    r->p = p;
    r->op = op;
    atomic_store(&r->done, 0);
    r->rc = 0;
    NP_CHECK_OK(np_go(runner_task, r));
    wait_parked(before + 1);
    NP_CHECK_MSG(!atomic_load(&r->done), "%s did not block: %zd (%s)", op_name[op], r->rc,
                 np_strerror((int)r->rc));
}

static void await_runner(runner *r)
{
    await_flag(&r->done, 1);
}

/* rc == -ETIMEDOUT, at or after deadline, not much later. */
static void check_timed_out(int op, ssize_t rc, int64_t t1, int64_t deadline)
{
    NP_CHECK_MSG(rc == -ETIMEDOUT, "%s: %zd (%s), want -ETIMEDOUT", op_name[op], rc,
                 np_strerror((int)rc));
    NP_CHECK_MSG(t1 >= deadline, "%s timed out %lld ns early", op_name[op],
                 (long long)(deadline - t1));
    NP_CHECK_MSG(t1 - deadline < SLACK, "%s timed out %.1f ms late", op_name[op],
                 (double)(t1 - deadline) / 1e6);
}

/* ---- per-op behaviours -------------------------------------------------------------------- */

static int64_t past_value(int i)
{
    switch (i) {
    case 0: return np_now();      /* "at now" */
    case 1: return np_now() - 1;
    case 2: return 1;             /* long ago */
    case 3: return -1;
    case 4: return -5 * NP_SECOND;
    default: return INT64_MIN;
    }
}

/* A deadline at or before now fails the call although it could complete at
 * once, again on every later call, until the deadline is moved (into the
 * future, or cleared); nothing is consumed or sent meanwhile. */
static void beh_past_fails_when_ready(pair *p, int op)
{
    for (int i = 0; i < 6; i++) {
        make_ready(p, op);
        NP_CHECK_OK(set_dl(p, op, past_value(i)));
        for (int k = 0; k < 3; k++) {
            int64_t t0 = np_now();
            ssize_t rc = do_op(p, op);
            NP_CHECK_MSG(rc == -ETIMEDOUT, "%s, past deadline #%d, call %d: %zd (%s)",
                         op_name[op], i, k, rc, np_strerror((int)rc));
            NP_CHECK_LT(np_now() - t0, SLACK);
        }
        NP_CHECK_OK(set_dl(p, op, i % 2 ? 0 : np_now() + FAR));
        ssize_t rc = do_op(p, op);
        NP_CHECK_MSG(rc == op_ok(op), "%s after the deadline was moved: %zd (%s)", op_name[op],
                     rc, np_strerror((int)rc));
    }
    if (op == OP_WRITE) { /* exactly the successful writes went out */
        NP_CHECK_EQ(p->sent, 6);
        drain(p, p->sent);
        expect_nothing_more(p->b);
    }
    if (op == OP_READ) /* the failed reads consumed nothing */
        NP_CHECK_EQ(p->r_pending, 0);
}

/* Deadlines from 1 ns to 100 ms fire while the call is blocked; never early;
 * afterwards the handle is usable. */
static void beh_fires_while_blocked(pair *p, int op)
{
    static const int64_t ds[] = { 1, NP_MICROSECOND, 100 * NP_MICROSECOND, NP_MILLISECOND,
                                  10 * NP_MILLISECOND, 50 * NP_MILLISECOND,
                                  100 * NP_MILLISECOND };
    prepare_block(p, op);
    for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
        int64_t d = np_now() + ds[i];
        NP_CHECK_OK(set_dl(p, op, d));
        ssize_t rc = do_op(p, op);
        check_timed_out(op, rc, np_now(), d);
    }
    check_usable_again(p, op);
}

/* Far deadline; while blocked moved to 5 s, then to 50 ms: fires then. */
static void beh_moved_earlier(pair *p, int op)
{
    runner r;
    prepare_block(p, op);
    NP_CHECK_OK(set_dl(p, op, np_now() + FAR));
    start_blocked(&r, p, op);
    NP_CHECK_OK(set_dl(p, op, np_now() + 5 * NP_SECOND));
    int64_t d = np_now() + 50 * NP_MILLISECOND;
    NP_CHECK_OK(set_dl(p, op, d));
    await_runner(&r);
    check_timed_out(op, r.rc, r.t1, d);
    check_usable_again(p, op);
}

/* While blocked, the deadline moves to now or before: the call fails at once;
 * later calls too, until it is moved; then usable. */
static void beh_moved_to_past(pair *p, int op)
{
    prepare_block(p, op);
    for (int i = 0; i < 2; i++) {
        runner r;
        NP_CHECK_OK(set_dl(p, op, i ? 0 : np_now() + FAR));
        start_blocked(&r, p, op);
        int64_t t = np_now();
        NP_CHECK_OK(set_dl(p, op, i ? -1 : np_now()));
        await_runner(&r);
        NP_CHECK_MSG(r.rc == -ETIMEDOUT, "%s: %zd (%s)", op_name[op], r.rc,
                     np_strerror((int)r.rc));
        NP_CHECK_LT(r.t1 - t, SLACK);
        NP_CHECK_EQ(do_op(p, op), -ETIMEDOUT);
        NP_CHECK_EQ(do_op(p, op), -ETIMEDOUT);
        /* Moved into the future: usable again. */
        NP_CHECK_OK(set_dl(p, op, np_now() + FAR));
        if (op == OP_WRITE)
            drain(p, p->sent);
        else
            trigger(p, op, 0);
        NP_CHECK_EQ(do_op(p, op), op_ok(op));
        if (op == OP_WAIT) /* consume the byte */
            NP_CHECK_EQ(do_op(p, OP_READ), 1);
        if (op == OP_WRITE && i == 0)
            fill(p);
    }
}

/* A 300 ms deadline extended to 600 ms while the call is blocked: it fires at
 * the later time. (If the controlling task is so delayed that the extension
 * lands after the first deadline, the attempt proves nothing and is
 * repeated.) */
static void beh_extended(pair *p, int op)
{
    prepare_block(p, op);
    for (int attempt = 0;; attempt++) {
        NP_CHECK_MSG(attempt < 3, "could not extend a deadline in time (machine too slow)");
        runner r;
        int64_t d1 = np_now() + 300 * NP_MILLISECOND;
        NP_CHECK_OK(set_dl(p, op, d1));
        start_blocked(&r, p, op);
        int64_t d2 = np_now() + 600 * NP_MILLISECOND;
        NP_CHECK_OK(set_dl(p, op, d2));
        bool in_time = np_now() < d1;
        await_runner(&r);
        if (!in_time)
            continue;
        check_timed_out(op, r.rc, r.t1, d2);
        break;
    }
    check_usable_again(p, op);
}

/* A 100 ms deadline cleared while the call is blocked: the call is still
 * blocked 150 ms after the old deadline, and completes when the event comes. */
static void beh_cleared(pair *p, int op)
{
    prepare_block(p, op);
    for (int attempt = 0;; attempt++) {
        NP_CHECK_MSG(attempt < 3, "could not clear a deadline in time (machine too slow)");
        runner r;
        uint64_t target = p->sent + 1;
        int64_t d1 = np_now() + 100 * NP_MILLISECOND;
        NP_CHECK_OK(set_dl(p, op, d1));
        start_blocked(&r, p, op);
        NP_CHECK_OK(set_dl(p, op, 0));
        if (np_now() >= d1) { /* too late to prove anything: unblock, retry */
            await_runner(&r);
            if (r.rc != -ETIMEDOUT) {
                NP_CHECK_EQ(r.rc, op_ok(op));
            }
            continue;
        }
        /* A sleep to observe a negative: the old deadline must not fire. */
        NP_CHECK_OK(np_sleep_until(d1 + 150 * NP_MILLISECOND));
        NP_CHECK_MSG(!atomic_load(&r.done), "%s returned %zd (%s) after its deadline was cleared",
                     op_name[op], r.rc, np_strerror((int)r.rc));
        trigger(p, op, target);
        await_runner(&r);
        NP_CHECK_MSG(r.rc == op_ok(op), "%s: %zd (%s)", op_name[op], r.rc,
                     np_strerror((int)r.rc));
        break;
    }
}

/* Close unblocks the call (-ECANCELED); later calls and setters: -EBADF. */
static void beh_close_unblocks(pair *p, int op)
{
    runner r;
    prepare_block(p, op);
    NP_CHECK_OK(set_dl(p, op, np_now() + FAR)); /* a pending deadline timer, too */
    start_blocked(&r, p, op);
    int64_t t = np_now();
    NP_CHECK_OK(close_op(p, op));
    await_runner(&r);
    NP_CHECK_MSG(r.rc == -ECANCELED, "%s after close: %zd (%s)", op_name[op], r.rc,
                 np_strerror((int)r.rc));
    NP_CHECK_LT(r.t1 - t, SLACK);
    NP_CHECK_EQ(do_op(p, op), -EBADF);
    NP_CHECK_EQ(set_dl(p, op, np_now() + FAR), -EBADF);
    NP_CHECK_EQ(set_dl(p, op, 0), -EBADF);
    NP_CHECK_EQ(close_op(p, op), -EBADF);
}

/* The same, the close coming from a plain thread. */
typedef struct thread_closer {
    pair *p;
    int op;
    uint32_t waiters;
    int rc;
} thread_closer;

static void *closer_thread(void *arg)
{
    thread_closer *tc = arg;
    while (np__pd_waiters() < tc->waiters)
        sched_yield();
    tc->rc = close_op(tc->p, tc->op);
    return NULL;
}

static void beh_close_from_thread_unblocks(pair *p, int op)
{
    runner r = { .p = p, .op = op };
    prepare_block(p, op);
    thread_closer tc = { .p = p, .op = op, .waiters = np__pd_waiters() + 1 };
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, closer_thread, &tc));
    runner_task(&r); /* blocks in this task until the thread closes */
    NP_CHECK_OK(pthread_join(th, NULL));
    NP_CHECK_OK(tc.rc);
    NP_CHECK_MSG(r.rc == -ECANCELED, "%s after close from a thread: %zd (%s)", op_name[op], r.rc,
                 np_strerror((int)r.rc));
    NP_CHECK_EQ(do_op(p, op), -EBADF);
    NP_CHECK_EQ(set_dl(p, op, 1), -EBADF);
}

/* A deadline set from a plain thread applies to a blocked call. */
typedef struct thread_setter {
    pair *p;
    int op;
    uint32_t waiters;
    _Atomic int64_t deadline;
    int rc;
} thread_setter;

static void *setter_thread(void *arg)
{
    thread_setter *ts = arg;
    while (np__pd_waiters() < ts->waiters)
        sched_yield();
    int64_t d = np_now() + 50 * NP_MILLISECOND;
    atomic_store(&ts->deadline, d);
    ts->rc = set_dl(ts->p, ts->op, d);
    return NULL;
}

static void beh_deadline_from_thread(pair *p, int op)
{
    runner r = { .p = p, .op = op };
    prepare_block(p, op);
    NP_CHECK_OK(set_dl(p, op, np_now() + FAR));
    thread_setter ts = { .p = p, .op = op, .waiters = np__pd_waiters() + 1 };
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, setter_thread, &ts));
    runner_task(&r); /* blocks in this task until the thread's deadline */
    NP_CHECK_OK(pthread_join(th, NULL));
    NP_CHECK_OK(ts.rc);
    check_timed_out(op, r.rc, r.t1, atomic_load(&ts.deadline));
    check_usable_again(p, op);
}

/* Deadlines pushed forward before every operation: events come every 20 ms
 * for over a second, each call has a 300 ms deadline set just before it; none
 * times out (the total is far beyond one deadline). When the events stop, the
 * last deadline fires. */
typedef struct feeder {
    pair *p;
    int op;
    int n;
    _Atomic int done;
} feeder;

static void feeder_task(void *arg)
{
    feeder *f = arg;
    for (int i = 0; i < f->n; i++) {
        NP_CHECK_OK(np_sleep(20 * NP_MILLISECOND)); /* pacing, not synchronisation */
        if (f->op == OP_ACCEPT) {
            np_conn c;
            NP_CHECK_OK(np_dial(&c, f->p->net, f->p->addr, 0));
            NP_CHECK_OK(np_close(c)); /* stays in the accept queue */
        } else {
            NP_CHECK_EQ(np_write(f->p->b, "R", 1), 1);
        }
    }
    atomic_store(&f->done, 1);
}

/* Reads b slowly: 2 KiB every 10 ms, until `upto`. */
typedef struct slow_drainer {
    pair *p;
    uint64_t upto;
    _Atomic int done;
} slow_drainer;

static void slow_drainer_task(void *arg)
{
    slow_drainer *s = arg;
    while (s->p->rcvd < s->upto) {
        NP_CHECK_OK(np_sleep(10 * NP_MILLISECOND));
        uint64_t next = s->p->rcvd + 2048;
        drain(s->p, next < s->upto ? next : s->upto);
    }
    atomic_store(&s->done, 1);
}

static void beh_pushed_forward(pair *p, int op)
{
    const int64_t per_op = (op == OP_WRITE ? 500 : 300) * NP_MILLISECOND;
    int64_t t0 = np_now();
    if (op == OP_WRITE) {
        enum { CH = 2048 };
        fill(p);
        /* The send path holds about what fill() put in; writing 128 KiB more
         * takes the drainer about 128 KiB / (200 KiB/s): over 600 ms. */
        uint64_t total = 128 * 1024;
        slow_drainer s = { .p = p, .upto = p->sent + total };
        t0 = np_now();
        NP_CHECK_OK(np_go(slow_drainer_task, &s));
        unsigned char buf[CH];
        for (uint64_t w = 0; w < total; w += CH) {
            for (size_t i = 0; i < CH; i++)
                buf[i] = pat(p->sent + i);
            NP_CHECK_OK(np_set_write_deadline(p->a, np_now() + per_op));
            ssize_t n = np_write(p->a, buf, CH);
            NP_CHECK_MSG(n == CH, "write %llu: %zd (%s)", (unsigned long long)(w / CH), n,
                         np_strerror((int)n));
            p->sent += CH;
        }
        int64_t el = np_now() - t0;
        printf("  %s: %llu KiB with a %lld ms deadline each, %.0f ms in all\n", op_name[op],
               (unsigned long long)(total / 1024), (long long)(per_op / NP_MILLISECOND),
               (double)el / 1e6);
        NP_CHECK_GT(el, per_op);
        await_flag(&s.done, 1);
    } else {
        feeder f = { .p = p, .op = op, .n = 50 };
        NP_CHECK_OK(np_go(feeder_task, &f));
        for (int i = 0; i < f.n; i++) {
            NP_CHECK_OK(set_dl(p, op, np_now() + per_op));
            ssize_t rc = do_op(p, op);
            NP_CHECK_MSG(rc == op_ok(op), "%s #%d: %zd (%s)", op_name[op], i, rc,
                         np_strerror((int)rc));
            if (op == OP_WAIT) /* consume the byte */
                NP_CHECK_EQ(do_op(p, OP_READ), 1);
            if (op != OP_ACCEPT) /* the feeder's bytes were not counted in */
                p->r_pending++;
        }
        int64_t el = np_now() - t0;
        printf("  %s: 50 events 20 ms apart with a %lld ms deadline each, %.0f ms in all\n",
               op_name[op], (long long)(per_op / NP_MILLISECOND), (double)el / 1e6);
        NP_CHECK_GT(el, per_op); /* 50 x 20 ms of sleeps: at least 1 s */
        await_flag(&f.done, 1);
    }
    /* The events stop (for a writer: its buffer fills up again): the last
     * deadline fires. */
    if (op == OP_WRITE)
        fill(p);
    int64_t d = np_now() + 100 * NP_MILLISECOND;
    NP_CHECK_OK(set_dl(p, op, d));
    ssize_t rc = do_op(p, op);
    check_timed_out(op, rc, np_now(), d);
}

/* ---- the per-op cases ----------------------------------------------------------------------- */

typedef struct op_case {
    void (*beh)(pair *, int);
    int op;
} op_case;

static void op_case_main(void *arg)
{
    op_case *oc = arg;
    pair p;
    pair_open(&p, oc->op == OP_WRITE ? "unix" : "tcp");
    oc->beh(&p, oc->op);
    pair_close(&p);
}

static void run_op_case(void (*beh)(pair *, int), int op)
{
    op_case oc = { beh, op };
    run2(op_case_main, &oc);
}

#define PER_OP(beh)                                                         \
    static void t_read_##beh(void) { run_op_case(beh_##beh, OP_READ); }     \
    static void t_write_##beh(void) { run_op_case(beh_##beh, OP_WRITE); }   \
    static void t_wait_readable_##beh(void) { run_op_case(beh_##beh, OP_WAIT); } \
    static void t_accept_##beh(void) { run_op_case(beh_##beh, OP_ACCEPT); }
#define PER_OP_CASES(beh)                                                   \
    NP_CASE(t_read_##beh), NP_CASE(t_write_##beh), NP_CASE(t_wait_readable_##beh), \
        NP_CASE(t_accept_##beh)

PER_OP(past_fails_when_ready)
PER_OP(fires_while_blocked)
PER_OP(moved_earlier)
PER_OP(moved_to_past)
PER_OP(extended)
PER_OP(cleared)
PER_OP(close_unblocks)
PER_OP(close_from_thread_unblocks)
PER_OP(deadline_from_thread)
PER_OP(pushed_forward)

/* ---- np_set_deadline: both directions; one shared deadline, split later ---------------- */

static void both_main(void *arg)
{
    (void)arg;
    pair p;
    pair_open(&p, "unix"); /* a writer must block */

    /* Both past: read (data ready), wait, write (buffer empty) all fail. */
    make_ready(&p, OP_READ);
    NP_CHECK_OK(np_set_deadline(p.a, np_now() - 1));
    NP_CHECK_EQ(do_op(&p, OP_READ), -ETIMEDOUT);
    NP_CHECK_EQ(do_op(&p, OP_WAIT), -ETIMEDOUT);
    NP_CHECK_EQ(do_op(&p, OP_WRITE), -ETIMEDOUT);
    NP_CHECK_OK(np_set_deadline(p.a, 0)); /* both cleared */
    NP_CHECK_EQ(do_op(&p, OP_WRITE), 1);
    NP_CHECK_EQ(do_op(&p, OP_READ), 1);

    /* The read deadline alone leaves writes alone, and the reverse. */
    make_ready(&p, OP_READ);
    NP_CHECK_OK(np_set_read_deadline(p.a, -1));
    NP_CHECK_EQ(do_op(&p, OP_WRITE), 1);
    NP_CHECK_EQ(do_op(&p, OP_READ), -ETIMEDOUT);
    NP_CHECK_EQ(do_op(&p, OP_WAIT), -ETIMEDOUT);
    NP_CHECK_OK(np_set_read_deadline(p.a, 0));
    NP_CHECK_OK(np_set_write_deadline(p.a, -1));
    NP_CHECK_EQ(do_op(&p, OP_WAIT), 0); /* np_wait_readable honours the read deadline only */
    NP_CHECK_EQ(do_op(&p, OP_READ), 1);
    NP_CHECK_EQ(do_op(&p, OP_WRITE), -ETIMEDOUT);
    /* np_set_deadline in the future replaces both. */
    NP_CHECK_OK(np_set_read_deadline(p.a, -1));
    NP_CHECK_OK(np_set_deadline(p.a, np_now() + FAR));
    make_ready(&p, OP_READ);
    NP_CHECK_EQ(do_op(&p, OP_WRITE), 1);
    NP_CHECK_EQ(do_op(&p, OP_READ), 1);
    NP_CHECK_OK(np_set_deadline(p.a, 0));
    drain(&p, p.sent);

    /* A reader and a writer blocked on one connection; one np_set_deadline
     * times both out. */
    fill(&p);
    runner rr, rw;
    start_blocked(&rr, &p, OP_READ);
    start_blocked(&rw, &p, OP_WRITE);
    int64_t d = np_now() + 50 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_deadline(p.a, d));
    await_runner(&rr);
    await_runner(&rw);
    check_timed_out(OP_READ, rr.rc, rr.t1, d);
    check_timed_out(OP_WRITE, rw.rc, rw.t1, d);

    /* Both blocked under one shared deadline; the write deadline is then
     * cleared: the reader times out at the shared time, the writer stays. */
    NP_CHECK_OK(np_set_deadline(p.a, 0));
    start_blocked(&rr, &p, OP_READ);
    start_blocked(&rw, &p, OP_WRITE);
    d = np_now() + 150 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_deadline(p.a, d));
    NP_CHECK_OK(np_set_write_deadline(p.a, 0));
    await_runner(&rr);
    check_timed_out(OP_READ, rr.rc, rr.t1, d);
    NP_CHECK_OK(np_sleep(100 * NP_MILLISECOND)); /* observing a negative */
    NP_CHECK_MSG(!atomic_load(&rw.done), "writer returned %zd after its deadline was cleared",
                 rw.rc);
    /* ... and the read deadline moved earlier than a shared one. */
    d = np_now() + 100 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_write_deadline(p.a, d));
    await_runner(&rw);
    check_timed_out(OP_WRITE, rw.rc, rw.t1, d);

    /* The reverse: shared deadline, then the read one extended: the writer
     * times out at the shared time, the reader only at its own. */
    NP_CHECK_OK(np_set_deadline(p.a, 0));
    start_blocked(&rr, &p, OP_READ);
    start_blocked(&rw, &p, OP_WRITE);
    d = np_now() + 150 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_deadline(p.a, d));
    int64_t dr = np_now() + 400 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_read_deadline(p.a, dr));
    await_runner(&rw);
    check_timed_out(OP_WRITE, rw.rc, rw.t1, d);
    await_runner(&rr);
    check_timed_out(OP_READ, rr.rc, rr.t1, dr);

    /* Shared deadline; close: both -ECANCELED. */
    NP_CHECK_OK(np_set_deadline(p.a, np_now() + FAR));
    start_blocked(&rr, &p, OP_READ);
    start_blocked(&rw, &p, OP_WRITE);
    NP_CHECK_OK(np_close(p.a));
    await_runner(&rr);
    await_runner(&rw);
    NP_CHECK_EQ(rr.rc, -ECANCELED);
    NP_CHECK_EQ(rw.rc, -ECANCELED);
    pair_close(&p);
}

static void t_set_deadline_sets_both(void)
{
    run2(both_main, NULL);
}

/* ---- setters on closed, zero, never-issued and stale handles ----------------------------- */

static void *setters_on_handles_thread(void *arg)
{
    np_conn *c = arg; /* [0] closed, [1] open */
    NP_CHECK_EQ(np_set_deadline(c[0], np_now() + FAR), -EBADF);
    NP_CHECK_EQ(np_set_read_deadline(c[0], -1), -EBADF);
    NP_CHECK_EQ(np_set_write_deadline(c[0], 0), -EBADF);
    NP_CHECK_OK(np_set_deadline(c[1], np_now() + FAR));
    NP_CHECK_OK(np_set_read_deadline(c[1], 0));
    NP_CHECK_OK(np_set_write_deadline(c[1], 0));
    return NULL;
}

static void ebadf_main(void *arg)
{
    (void)arg;
    static const np_conn bogus[] = { { 0 }, { UINT64_MAX }, { 0x7fffffffffffull } };
    for (size_t i = 0; i < sizeof bogus / sizeof bogus[0]; i++) {
        NP_CHECK_EQ(np_set_deadline(bogus[i], np_now() + FAR), -EBADF);
        NP_CHECK_EQ(np_set_read_deadline(bogus[i], 0), -EBADF);
        NP_CHECK_EQ(np_set_write_deadline(bogus[i], -1), -EBADF);
        NP_CHECK_EQ(np_listener_set_deadline((np_listener){ bogus[i].id }, 1), -EBADF);
    }

    pair p1, p2;
    pair_open(&p1, "tcp");
    np_conn old = p1.a;
    NP_CHECK_OK(np_close(p1.a));
    for (int64_t d = -1; d <= 1; d++) { /* past, none, long past */
        NP_CHECK_EQ(np_set_deadline(old, d), -EBADF);
        NP_CHECK_EQ(np_set_read_deadline(old, d), -EBADF);
        NP_CHECK_EQ(np_set_write_deadline(old, d), -EBADF);
    }
    NP_CHECK_EQ(np_set_deadline(old, np_now() + FAR), -EBADF);

    /* New connections may reuse the closed one's slot: the old handle stays
     * dead, and setting deadlines through it touches no one. */
    pair_open(&p2, "tcp");
    np_conn more[8];
    for (int i = 0; i < 8; i++)
        NP_CHECK_OK(np_dial(&more[i], "tcp", p2.addr, 0));
    NP_CHECK_EQ(np_set_deadline(old, -1), -EBADF);
    NP_CHECK_EQ(np_set_read_deadline(old, -1), -EBADF);
    NP_CHECK_EQ(np_set_write_deadline(old, -1), -EBADF);
    for (int i = 0; i < 8; i++) {
        NP_CHECK_NE(more[i].id, old.id);
        NP_CHECK_EQ(np_write(more[i], "x", 1), 1); /* no deadline arrived on them */
        NP_CHECK_OK(np_set_deadline(more[i], np_now() + FAR));
    }
    make_ready(&p2, OP_READ);
    NP_CHECK_EQ(do_op(&p2, OP_READ), 1);
    NP_CHECK_EQ(do_op(&p2, OP_WRITE), 1);

    /* From a plain thread. */
    np_conn pairc[2] = { old, p2.a };
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, setters_on_handles_thread, pairc));
    NP_CHECK_OK(pthread_join(th, NULL));

    /* A closed listener. */
    np_listener ol = p1.l;
    NP_CHECK_OK(np_listener_close(p1.l));
    NP_CHECK_EQ(np_listener_set_deadline(ol, np_now() + FAR), -EBADF);
    NP_CHECK_EQ(np_listener_set_deadline(ol, 0), -EBADF);
    NP_CHECK_EQ(np_listener_set_deadline(ol, -1), -EBADF);
    /* A handle of one kind is not one of the other. */
    NP_CHECK_EQ(np_listener_set_deadline((np_listener){ p2.a.id }, -1), -EBADF);
    NP_CHECK_EQ(np_set_deadline((np_conn){ p2.l.id }, -1), -EBADF);
    make_ready(&p2, OP_ACCEPT);
    NP_CHECK_EQ(do_op(&p2, OP_ACCEPT), 0);

    for (int i = 0; i < 8; i++)
        NP_CHECK_OK(np_close(more[i]));
    pair_close(&p1);
    pair_close(&p2);
}

static void t_deadline_on_bad_handle_is_ebadf(void)
{
    run2(ebadf_main, NULL);
}

/* ---- write: short count after partial progress, then the reason --------------------------- */

enum { BIG = 8 << 20 };

typedef struct big_writer {
    pair *p;
    const unsigned char *buf;
    _Atomic int done;
    ssize_t rc;
} big_writer;

static void big_writer_task(void *arg)
{
    big_writer *w = arg;
    w->rc = np_write(w->p->a, w->buf, BIG);
    atomic_store(&w->done, 1);
}

/* Reads b until `upto`, as fast as it comes. */
typedef struct drainer {
    pair *p;
    uint64_t upto;
    _Atomic int done;
} drainer;

static void drainer_task(void *arg)
{
    drainer *d = arg;
    drain(d->p, d->upto);
    atomic_store(&d->done, 1);
}

static void partial_main(void *arg)
{
    const char *net = arg;
    unsigned char *big = malloc(BIG);
    NP_CHECK(big);
    for (size_t i = 0; i < BIG; i++)
        big[i] = pat(i);

    /* 1. The deadline passes while np_write is blocked after some bytes. */
    pair p;
    pair_open(&p, net);
    shrink_buffers(&p);
    int64_t d = np_now() + 100 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_write_deadline(p.a, d));
    ssize_t n = np_write(p.a, big, BIG);
    int64_t t = np_now();
    NP_CHECK_MSG(n > 0 && n < BIG, "np_write = %zd (%s), want a short count", n,
                 np_strerror((int)n));
    NP_CHECK_GE(t, d);
    NP_CHECK_LT(t - d, SLACK);
    printf("  %s: short count %zd of %d after the deadline\n", net, n, BIG);
    NP_CHECK_EQ(np_write(p.a, big + n, 1), -ETIMEDOUT); /* the next call says why */
    NP_CHECK_EQ(np_write(p.a, big + n, 1), -ETIMEDOUT);
    p.sent = (uint64_t)n;
    drain(&p, p.sent); /* exactly the n bytes counted went out */
    expect_nothing_more(p.b);
    NP_CHECK_OK(np_set_write_deadline(p.a, 0));
    NP_CHECK_EQ(np_write(p.a, big + n, 1), 1);
    p.sent++;
    drain(&p, p.sent);
    pair_close(&p);

    /* 2. The deadline moves into the past while blocked after some bytes. */
    pair_open(&p, net);
    shrink_buffers(&p);
    big_writer w = { .p = &p, .buf = big };
    NP_CHECK_OK(np_go(big_writer_task, &w));
    wait_parked(1);
    NP_CHECK_OK(np_set_write_deadline(p.a, -1));
    await_flag(&w.done, 1);
    NP_CHECK_MSG(w.rc > 0 && w.rc < BIG, "np_write = %zd (%s), want a short count", w.rc,
                 np_strerror((int)w.rc));
    NP_CHECK_EQ(np_write(p.a, big + w.rc, 1), -ETIMEDOUT);
    p.sent = (uint64_t)w.rc;
    drain(&p, p.sent);
    expect_nothing_more(p.b);
    /* Moved into the future: the rest goes through, in one call that blocks
     * many times while a task drains b. */
    NP_CHECK_OK(np_set_write_deadline(p.a, np_now() + FAR));
    int sndbuf = 1 << 20; /* a tiny TCP send buffer would crawl through 8 MiB */
    NP_CHECK_SYS(setsockopt(np_conn_fd(p.a), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf));
    drainer dr = { .p = &p, .upto = BIG };
    NP_CHECK_OK(np_go(drainer_task, &dr));
    ssize_t m = np_write(p.a, big + p.sent, BIG - p.sent);
    NP_CHECK_MSG(m == (ssize_t)(BIG - p.sent), "np_write = %zd (%s), want %llu", m,
                 np_strerror((int)m), (unsigned long long)(BIG - p.sent));
    await_flag(&dr.done, 1);
    expect_nothing_more(p.b);
    pair_close(&p);

    /* 3. Closed while blocked after some bytes: the short count, then
     *    -EBADF; the peer gets exactly those bytes, then end of stream. */
    pair_open(&p, net);
    shrink_buffers(&p);
    w = (big_writer){ .p = &p, .buf = big };
    NP_CHECK_OK(np_go(big_writer_task, &w));
    wait_parked(1);
    np_conn a = p.a;
    NP_CHECK_OK(np_close(a));
    await_flag(&w.done, 1);
    NP_CHECK_MSG(w.rc > 0 && w.rc < BIG, "np_write = %zd (%s), want a short count", w.rc,
                 np_strerror((int)w.rc));
    NP_CHECK_EQ(np_write(a, big, 1), -EBADF);
    p.sent = (uint64_t)w.rc;
    drain(&p, p.sent);
    char ch;
    NP_CHECK_OK(np_set_read_deadline(p.b, np_now() + FAR));
    NP_CHECK_EQ(np_read(p.b, &ch, 1), 0);
    pair_close(&p);
    free(big);
}

static void t_write_short_count_then_reason_tcp(void)
{
    run2(partial_main, (void *)"tcp");
}

static void t_write_short_count_then_reason_unix(void)
{
    run2(partial_main, (void *)"unix");
}

/* ---- deadlines far in the future ----------------------------------------------------------- */

static void far_main(void *arg)
{
    (void)arg;
    pair p, t;
    pair_open(&p, "unix"); /* a writer must block */
    pair_open(&t, "tcp");
    static const int64_t fars[] = { INT64_MAX, INT64_MAX - 1, INT64_MAX / 2 };
    for (size_t i = 0; i < sizeof fars / sizeof fars[0]; i++) {
        for (int op = OP_READ; op <= OP_ACCEPT; op++) {
            runner r;
            if (op == OP_WRITE)
                fill(&p);
            uint64_t target = p.sent + 1;
            NP_CHECK_OK(set_dl(&p, op, fars[i]));
            start_blocked(&r, &p, op);
            NP_CHECK_OK(np_sleep(20 * NP_MILLISECOND)); /* observing a negative */
            NP_CHECK_MSG(!atomic_load(&r.done), "%s with deadline %lld returned %zd (%s)",
                         op_name[op], (long long)fars[i], r.rc, np_strerror((int)r.rc));
            trigger(&p, op, target);
            await_runner(&r);
            NP_CHECK_EQ(r.rc, op_ok(op));
            if (op == OP_WAIT) { /* consume the byte */
                NP_CHECK_EQ(do_op(&p, OP_READ), 1);
            }
        }
        for (int k = 0; k < 2; k++) {
            pair *q = k ? &t : &p;
            np_conn c;
            NP_CHECK_OK(np_dial(&c, q->net, q->addr, fars[i]));
            add_conn(q->dialed, &q->ndialed, c);
            NP_CHECK_OK(np_accept(q->l, &c)); /* and no pending connection left */
            add_conn(q->accepted, &q->naccepted, c);
        }
    }
    pair_close(&p);
    pair_close(&t);
}

static void t_far_future_deadlines(void)
{
    run2(far_main, NULL);
}

/* ---- deadlines set concurrently with I/O (TestReadWriteDeadlineRace) ----------------------- */

typedef struct race {
    np_conn c[2];            /* c[0] = a, c[1] = b */
    _Atomic int stop;
    _Atomic int setters_done;
    _Atomic int io_done;
    uint64_t written[2];     /* by the writer of direction d (from c[d] to c[!d]) */
    uint64_t got[2];         /* by the reader of direction d */
    _Atomic long timeouts, shorts, sets;
} race;

typedef struct race_arg {
    race *r;
    int dir;
} race_arg;

static unsigned char dir_pat(int dir, uint64_t o)
{
    return (unsigned char)(pat(o) ^ (dir ? 0x5a : 0));
}

static void race_writer(void *arg)
{
    race_arg *ra = arg;
    race *r = ra->r;
    int dir = ra->dir;
    enum { MAXW = 32 * 1024 };
    unsigned char *buf = malloc(MAXW);
    NP_CHECK(buf);
    uint64_t rng = 0x1234567ull + (uint64_t)dir;
    while (!atomic_load(&r->stop)) {
        size_t len = 1 + (size_t)(xorshift(&rng) % MAXW);
        for (size_t i = 0; i < len; i++)
            buf[i] = dir_pat(dir, r->written[dir] + i);
        size_t off = 0;
        while (off < len) { /* finish the chunk whatever happens */
            ssize_t n = np_write(r->c[dir], buf + off, len - off);
            if (n == -ETIMEDOUT) {
                atomic_fetch_add(&r->timeouts, 1);
                np_yield();
                continue;
            }
            NP_CHECK_MSG(n > 0, "race writer %d: %zd (%s)", dir, n, np_strerror((int)n));
            if ((size_t)n < len - off)
                atomic_fetch_add(&r->shorts, 1);
            off += (size_t)n;
        }
        r->written[dir] += len;
    }
    NP_CHECK_OK(np_close_write(r->c[dir]));
    free(buf);
    atomic_fetch_add(&r->io_done, 1);
}

static void race_reader(void *arg)
{
    race_arg *ra = arg;
    race *r = ra->r;
    int dir = ra->dir;
    enum { MAXR = 48 * 1024 };
    unsigned char *buf = malloc(MAXR);
    NP_CHECK(buf);
    uint64_t rng = 0x9876543ull + (uint64_t)dir;
    for (;;) {
        size_t len = 1 + (size_t)(xorshift(&rng) % MAXR);
        ssize_t n = np_read(r->c[!dir], buf, len);
        if (n == 0)
            break;
        if (n == -ETIMEDOUT) {
            atomic_fetch_add(&r->timeouts, 1);
            np_yield();
            continue;
        }
        NP_CHECK_MSG(n > 0, "race reader %d: %zd (%s)", dir, n, np_strerror((int)n));
        for (ssize_t i = 0; i < n; i++)
            NP_CHECK_MSG(buf[i] == dir_pat(dir, r->got[dir] + (uint64_t)i),
                         "direction %d: byte %llu corrupt", dir,
                         (unsigned long long)(r->got[dir] + (uint64_t)i));
        r->got[dir] += (uint64_t)n;
    }
    free(buf);
    atomic_fetch_add(&r->io_done, 1);
}

static int64_t random_deadline(uint64_t *rng)
{
    uint64_t x = xorshift(rng);
    switch (x % 8) {
    case 0: return 0;
    case 1: return -1;
    case 2: return np_now() - (int64_t)(x >> 40);
    case 3: return np_now() + 3600 * NP_SECOND;
    default: return np_now() + (int64_t)((x >> 20) % (2 * NP_MILLISECOND));
    }
}

static void race_set_once(race *r, uint64_t *rng)
{
    uint64_t x = xorshift(rng);
    np_conn c = r->c[x & 1];
    int64_t d = random_deadline(rng);
    switch ((x >> 1) % 3) {
    case 0: NP_CHECK_OK(np_set_deadline(c, d)); break;
    case 1: NP_CHECK_OK(np_set_read_deadline(c, d)); break;
    default: NP_CHECK_OK(np_set_write_deadline(c, d)); break;
    }
    atomic_fetch_add(&r->sets, 1);
}

static void race_setter_task(void *arg)
{
    race *r = arg;
    uint64_t rng = 0xabcdefull;
    while (!atomic_load(&r->stop)) {
        race_set_once(r, &rng);
        if (xorshift(&rng) % 4 == 0)
            np_yield();
        if (xorshift(&rng) % 64 == 0)
            np_sleep(50 * NP_MICROSECOND);
    }
    atomic_fetch_add(&r->setters_done, 1);
}

static void *race_setter_thread(void *arg)
{
    race *r = arg;
    uint64_t rng = 0xfedcbaull;
    while (!atomic_load(&r->stop)) {
        race_set_once(r, &rng);
        if (xorshift(&rng) % 16 == 0)
            sched_yield();
    }
    atomic_fetch_add(&r->setters_done, 1);
    return NULL;
}

static void race_main(void *arg)
{
    (void)arg;
    pair p;
    pair_open(&p, "tcp");
    race *r = calloc(1, sizeof *r);
    NP_CHECK(r);
    r->c[0] = p.a;
    r->c[1] = p.b;
    race_arg args[2] = { { r, 0 }, { r, 1 } };
    for (int d = 0; d < 2; d++) {
        NP_CHECK_OK(np_go(race_writer, &args[d]));
        NP_CHECK_OK(np_go(race_reader, &args[d]));
    }
    NP_CHECK_OK(np_go(race_setter_task, r));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, race_setter_thread, r));
    NP_CHECK_OK(np_sleep(700 * NP_MILLISECOND)); /* the length of the race */
    atomic_store(&r->stop, 1);
    await_flag(&r->setters_done, 2);
    NP_CHECK_OK(pthread_join(th, NULL));
    /* No more deadlines: everything written arrives, then end of stream. */
    NP_CHECK_OK(np_set_deadline(p.a, 0));
    NP_CHECK_OK(np_set_deadline(p.b, 0));
    await_flag(&r->io_done, 4);
    for (int d = 0; d < 2; d++)
        NP_CHECK_EQ(r->got[d], r->written[d]);
    printf("  %llu + %llu bytes, %ld deadline sets, %ld timeouts, %ld short writes\n",
           (unsigned long long)r->written[0], (unsigned long long)r->written[1],
           atomic_load(&r->sets), atomic_load(&r->timeouts), atomic_load(&r->shorts));
    NP_CHECK_GT(r->written[0], 0);
    NP_CHECK_GT(r->written[1], 0);
    free(r);
    pair_close(&p);
}

static void t_deadlines_set_concurrently_with_io(void)
{
    run2(race_main, NULL);
}

/* ---- many setters at once on blocked calls (TestConcurrentSetDeadline) ------------------- */

enum { CSD_CONNS = 10, CSD_TASKS = 8, CSD_THREADS = 2, CSD_TRIES = 100 };

typedef struct csd {
    pair p[CSD_CONNS];
    runner r[CSD_CONNS];
    int64_t base;
    _Atomic int setters_done;
} csd;

typedef struct csd_arg {
    csd *s;
    int i;
} csd_arg;

static void csd_set(csd *s, int i)
{
    /* Deadlines moving steadily earlier, hours away. */
    for (int j = CSD_TRIES; j > 0; j--) {
        for (int k = 0; k < CSD_CONNS; k++) {
            int64_t off = (int64_t)i * j * k * NP_SECOND;
            NP_CHECK_OK(np_set_read_deadline(s->p[k].a, s->base + 2 * 3600 * NP_SECOND + off));
            NP_CHECK_OK(np_set_write_deadline(s->p[k].a, s->base + 3600 * NP_SECOND + off));
            NP_CHECK_OK(np_listener_set_deadline(s->p[k].l, s->base + 3600 * NP_SECOND + off));
        }
    }
}

static void csd_task(void *arg)
{
    csd_arg *ca = arg;
    csd_set(ca->s, ca->i);
    atomic_fetch_add(&ca->s->setters_done, 1);
}

static void *csd_thread(void *arg)
{
    csd_arg *ca = arg;
    csd_set(ca->s, ca->i);
    atomic_fetch_add(&ca->s->setters_done, 1);
    return NULL;
}

static void csd_main(void *arg)
{
    (void)arg;
    csd *s = calloc(1, sizeof *s);
    NP_CHECK(s);
    for (int k = 0; k < CSD_CONNS; k++) {
        pair_open(&s->p[k], "tcp");
        start_blocked(&s->r[k], &s->p[k], OP_READ);
    }
    s->base = np_now();
    csd_arg args[CSD_TASKS + CSD_THREADS];
    pthread_t th[CSD_THREADS];
    for (int i = 0; i < CSD_TASKS + CSD_THREADS; i++) {
        args[i] = (csd_arg){ s, i };
        if (i < CSD_TASKS)
            NP_CHECK_OK(np_go(csd_task, &args[i]));
        else
            NP_CHECK_OK(pthread_create(&th[i - CSD_TASKS], NULL, csd_thread, &args[i]));
    }
    await_flag(&s->setters_done, CSD_TASKS + CSD_THREADS);
    for (int i = 0; i < CSD_THREADS; i++)
        NP_CHECK_OK(pthread_join(th[i], NULL));
    for (int k = 0; k < CSD_CONNS; k++)
        NP_CHECK_MSG(!atomic_load(&s->r[k].done), "reader %d returned %zd (%s)", k, s->r[k].rc,
                     np_strerror((int)s->r[k].rc));
    /* Now bring them all in: each fires at its own time, not before. */
    int64_t d[CSD_CONNS];
    for (int k = 0; k < CSD_CONNS; k++) {
        d[k] = np_now() + 30 * NP_MILLISECOND + k * 5 * NP_MILLISECOND;
        NP_CHECK_OK(np_set_read_deadline(s->p[k].a, d[k]));
    }
    for (int k = 0; k < CSD_CONNS; k++) {
        await_runner(&s->r[k]);
        check_timed_out(OP_READ, s->r[k].rc, s->r[k].t1, d[k]);
    }
    for (int k = 0; k < CSD_CONNS; k++)
        pair_close(&s->p[k]);
    free(s);
}

static void t_concurrent_set_deadline(void)
{
    run2(csd_main, NULL);
}

/* ---- deadlines set before every op in a long ping-pong (prolonged) -------------------------- */

enum { PING_ROUNDS = 5000 };

typedef struct prolonged {
    np_conn srv;
    _Atomic int done;
} prolonged;

static void prolonged_echo(void *arg)
{
    prolonged *pr = arg;
    char ch;
    for (;;) {
        NP_CHECK_OK(np_set_read_deadline(pr->srv, np_now() + 3600 * NP_SECOND));
        ssize_t n = np_read(pr->srv, &ch, 1);
        if (n == 0)
            break;
        NP_CHECK_EQ(n, 1);
        NP_CHECK_OK(np_set_write_deadline(pr->srv, np_now() + 3600 * NP_SECOND));
        NP_CHECK_EQ(np_write(pr->srv, &ch, 1), 1);
    }
    atomic_store(&pr->done, 1);
}

static void prolonged_main(void *arg)
{
    (void)arg;
    pair p;
    pair_open(&p, "tcp");
    prolonged pr = { .srv = p.b };
    NP_CHECK_OK(np_go(prolonged_echo, &pr));
    int64_t t0 = np_now();
    for (int i = 0; i < PING_ROUNDS; i++) {
        char ch = (char)i, back = 0;
        /* alternately both at once and each on its own */
        if (i % 2) {
            NP_CHECK_OK(np_set_deadline(p.a, np_now() + 3600 * NP_SECOND));
        } else {
            NP_CHECK_OK(np_set_write_deadline(p.a, np_now() + 3600 * NP_SECOND));
        }
        NP_CHECK_EQ(np_write(p.a, &ch, 1), 1);
        if (i % 2 == 0)
            NP_CHECK_OK(np_set_read_deadline(p.a, np_now() + 3600 * NP_SECOND));
        NP_CHECK_EQ(np_read(p.a, &back, 1), 1);
        NP_CHECK_EQ(back, ch);
    }
    printf("  %d round trips with deadlines set before each call: %.1f ms\n", PING_ROUNDS,
           (double)(np_now() - t0) / 1e6);
    NP_CHECK_OK(np_close_write(p.a));
    await_flag(&pr.done, 1);
    pair_close(&p);
}

static void t_deadlines_prolonged_every_op(void)
{
    run2(prolonged_main, NULL);
}

/* ---- np_dial ------------------------------------------------------------------------------ */

static void dial_past_main(void *arg)
{
    (void)arg;
    char unix_addr[64];
    snprintf(unix_addr, sizeof unix_addr, "@np_net_timeout_%d", (int)getpid());
    np_listener ls[2];
    char addr[2][64];
    NP_CHECK_OK(np_listen(&ls[0], "tcp", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(ls[0], addr[0], sizeof addr[0]));
    NP_CHECK_OK(np_listen(&ls[1], "unix", unix_addr));
    snprintf(addr[1], sizeof addr[1], "%s", unix_addr);
    static const char *const net[2] = { "tcp", "unix" };
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 6; i++) {
            np_conn c = { 0 };
            int64_t t0 = np_now();
            int rc = np_dial(&c, net[k], addr[k], past_value(i));
            NP_CHECK_MSG(rc == -ETIMEDOUT, "np_dial %s %s, past deadline #%d: %d (%s)", net[k],
                         addr[k], i, rc, np_strerror(rc));
            NP_CHECK_LT(np_now() - t0, SLACK);
        }
        /* The listener saw nothing: a deadline of its own fires on accept. */
        np_conn s;
        NP_CHECK_OK(np_listener_set_deadline(ls[k], np_now() + 30 * NP_MILLISECOND));
        NP_CHECK_EQ(np_accept(ls[k], &s), -ETIMEDOUT);
        NP_CHECK_OK(np_listener_set_deadline(ls[k], 0));
        /* No deadline, a future one: connected. */
        for (int i = 0; i < 2; i++) {
            np_conn c;
            int64_t d = i ? np_now() + FAR : 0;
            NP_CHECK_OK(np_dial(&c, net[k], addr[k], d));
            NP_CHECK_OK(np_accept(ls[k], &s));
            NP_CHECK_EQ(np_write(c, "d", 1), 1);
            char ch;
            NP_CHECK_EQ(np_read(s, &ch, 1), 1);
            NP_CHECK_EQ(ch, 'd');
            NP_CHECK_OK(np_close(c));
            NP_CHECK_OK(np_close(s));
        }
        NP_CHECK_OK(np_listener_close(ls[k]));
    }
}

static void t_dial_past_deadline(void)
{
    run2(dial_past_main, NULL);
}

/* A listener (plain socket, backlog 0) whose accept queue is full: the kernel
 * drops further SYNs, so a dial stays in SYN-SENT (retrying after 1 s, 3 s,
 * ...) until its deadline. Returns false if dials could not be made to
 * block. */
typedef struct blocked_dial {
    int lfd;
    char addr[64];
    np_conn held[8];
    int nheld;
} blocked_dial;

static bool blocked_dial_open(blocked_dial *bd)
{
    memset(bd, 0, sizeof *bd);
    bd->lfd = NP_CHECK_SYS(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    NP_CHECK_SYS(bind(bd->lfd, (struct sockaddr *)&sin, sizeof sin));
    NP_CHECK_SYS(listen(bd->lfd, 0));
    NP_CHECK_SYS(getsockname(bd->lfd, (struct sockaddr *)&sin, &len));
    snprintf(bd->addr, sizeof bd->addr, "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    for (int i = 0; i < 8; i++) {
        np_conn c;
        int rc = np_dial(&c, "tcp", bd->addr, np_now() + 300 * NP_MILLISECOND);
        if (rc == -ETIMEDOUT)
            return true;
        NP_CHECK_MSG(rc == 0, "np_dial: %d (%s)", rc, np_strerror(rc));
        bd->held[bd->nheld++] = c;
    }
    return false;
}

static void blocked_dial_close(blocked_dial *bd)
{
    for (int i = 0; i < bd->nheld; i++)
        NP_CHECK_OK(np_close(bd->held[i]));
    close(bd->lfd);
}

static void dial_blocked_main(void *arg)
{
    bool *blocked = arg;
    blocked_dial bd;
    *blocked = blocked_dial_open(&bd);
    if (*blocked) {
        static const int64_t ds[] = { 1, NP_MICROSECOND, 100 * NP_MICROSECOND, NP_MILLISECOND,
                                      10 * NP_MILLISECOND, 50 * NP_MILLISECOND,
                                      200 * NP_MILLISECOND };
        for (size_t i = 0; i < sizeof ds / sizeof ds[0]; i++) {
            np_conn c = { 0 };
            int64_t d = np_now() + ds[i];
            int rc = np_dial(&c, "tcp", bd.addr, d);
            int64_t t = np_now();
            NP_CHECK_MSG(rc == -ETIMEDOUT, "np_dial (deadline +%lld ns): %d (%s)",
                         (long long)ds[i], rc, np_strerror(rc));
            NP_CHECK_MSG(t >= d, "np_dial timed out %lld ns early", (long long)(d - t));
            NP_CHECK_LT(t - d, SLACK);
        }
        /* A past deadline fails at once here too. */
        for (int i = 0; i < 2; i++) {
            np_conn c;
            NP_CHECK_EQ(np_dial(&c, "tcp", bd.addr, -1), -ETIMEDOUT);
            NP_CHECK_EQ(np_dial(&c, "tcp", bd.addr, np_now()), -ETIMEDOUT);
        }
    }
    blocked_dial_close(&bd);
}

typedef struct multi_dial {
    const char *addr;
    int64_t d;
    int rc;
    int64_t t1;
    _Atomic int *done;
} multi_dial;

static void multi_dial_task(void *arg)
{
    multi_dial *m = arg;
    np_conn c;
    m->rc = np_dial(&c, "tcp", m->addr, m->d);
    m->t1 = np_now();
    atomic_fetch_add(m->done, 1);
}

static void dial_many_blocked_main(void *arg)
{
    bool *blocked = arg;
    blocked_dial bd;
    *blocked = blocked_dial_open(&bd);
    if (*blocked) {
        enum { N = 16 };
        multi_dial m[N];
        _Atomic int done = 0;
        int64_t base = np_now();
        for (int i = 0; i < N; i++) {
            /* in reverse order of firing */
            m[i] = (multi_dial){ .addr = bd.addr, .d = base + (N - i) * 10 * NP_MILLISECOND,
                                 .done = &done };
            NP_CHECK_OK(np_go(multi_dial_task, &m[i]));
        }
        await_flag(&done, N);
        for (int i = 0; i < N; i++) {
            NP_CHECK_MSG(m[i].rc == -ETIMEDOUT, "dial %d: %d (%s)", i, m[i].rc,
                         np_strerror(m[i].rc));
            NP_CHECK_GE(m[i].t1, m[i].d);
            NP_CHECK_LT(m[i].t1 - m[i].d, SLACK);
        }
    }
    blocked_dial_close(&bd);
}

static void t_dial_deadline_fires_while_blocked(void)
{
    bool blocked = false;
    run2(dial_blocked_main, &blocked);
    if (!blocked)
        NP_SKIP("could not make a loopback dial block (a full accept queue did not drop SYNs)");
}

static void t_dial_many_deadlines_while_blocked(void)
{
    bool blocked = false;
    run2(dial_many_blocked_main, &blocked);
    if (!blocked)
        NP_SKIP("could not make a loopback dial block (a full accept queue did not drop SYNs)");
}

NP_TEST_LIST(PER_OP_CASES(past_fails_when_ready),
             PER_OP_CASES(fires_while_blocked),
             PER_OP_CASES(moved_earlier),
             PER_OP_CASES(moved_to_past),
             PER_OP_CASES(extended),
             PER_OP_CASES(cleared),
             PER_OP_CASES(close_unblocks),
             PER_OP_CASES(close_from_thread_unblocks),
             PER_OP_CASES(deadline_from_thread),
             PER_OP_CASES(pushed_forward),
             NP_CASE(t_set_deadline_sets_both),
             NP_CASE(t_deadline_on_bad_handle_is_ebadf),
             NP_CASE(t_write_short_count_then_reason_tcp),
             NP_CASE(t_write_short_count_then_reason_unix),
             NP_CASE(t_far_future_deadlines),
             NP_CASE(t_deadlines_set_concurrently_with_io),
             NP_CASE(t_concurrent_set_deadline),
             NP_CASE(t_deadlines_prolonged_every_op),
             NP_CASE(t_dial_past_deadline),
             NP_CASE(t_dial_deadline_fires_while_blocked),
             NP_CASE(t_dial_many_deadlines_while_blocked))
