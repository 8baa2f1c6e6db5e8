/* Coordination, part 2: channels and select against include/netpoll.h
 * ("Coordination") and the Go spec (channel types, send, receive, close,
 * select). One case per sentence of the contract; tasks and plain threads
 * on both ends; every element counted (nothing lost, nothing duplicated).
 *
 * Sleeps appear only where no event can be awaited (to let a caller get
 * blocked before the next step); checks that depend on it say so.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "netpoll.h"
#include "np_test.h"
#include "base/sanitizer.h"

/* ---- helpers ------------------------------------------------------------ */

#if defined(NP_TSAN) || defined(NP_ASAN)
#define SAN 1
#define SLACK (6 * NP_SECOND)
#define SCALE 5
#define SETTLE (150 * MS) /* time for callers to get blocked */
#else
#define SAN 0
#define SLACK (2 * NP_SECOND)
#define SCALE 1
#define SETTLE (40 * MS)
#endif

#define MS NP_MILLISECOND
#define CANARY 0xABABABABABABABABull

typedef void (*body_fn)(void);
static void grp_free_retired(void);
static void run_body(void *arg)
{
    ((body_fn)arg)();
}

static void run_n(int workers, body_fn fn)
{
    np_config c = { .workers = workers };
    NP_CHECK_OK(np_run(&c, run_body, (void *)fn));
    grp_free_retired();
}

#define CHECK_AT_DEADLINE(deadline)                                          \
    do {                                                                     \
        int64_t np_t_ = np_now();                                            \
        NP_CHECK_GE(np_t_, (deadline));                                      \
        NP_CHECK_LT(np_t_, (deadline) + SLACK);                              \
    } while (0)

#define CHECK_QUICK(t0) NP_CHECK_LT(np_now() - (t0), SLACK)

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static np_chan mk(size_t elem, size_t cap)
{
    np_chan c = { 0 };
    NP_CHECK_OK(np_chan_make(&c, elem, cap));
    NP_CHECK_NE(c.id, 0);
    return c;
}

static void send_ok(np_chan c, uint64_t v)
{
    NP_CHECK_OK(np_chan_send(c, &v, 0));
}

static uint64_t recv_ok(np_chan c)
{
    uint64_t v = CANARY;
    NP_CHECK_OK(np_chan_recv(c, &v, 0));
    return v;
}

/* A group of tasks and plain threads, joined through a wait group (the
 * runtime must keep running until the threads are done: a plain thread's
 * blocking call with no runtime gives -ESRCH). The group's wait group is
 * never reused or freed while the runtime runs: each round gets a new one
 * and retired ones are freed after np_run returns. A done may still be
 * touching it after wait returned (t_wg_released_when_wait_returns in
 * test_sync.c tests exactly that); here it must not turn every case that
 * joins twice into a failure of that one defect. */
typedef struct grp {
    np_waitgroup *wg;
    pthread_t th[64];
    int nth;
} grp;

typedef struct spawn {
    np_waitgroup *wg;
    void (*fn)(void *);
    void *arg;
} spawn;

static np_waitgroup *grp_retired[4096];
static _Atomic int grp_nretired;

static void grp_free_retired(void) /* after np_run */
{
    int n = atomic_exchange(&grp_nretired, 0);
    for (int i = 0; i < n; i++)
        free(grp_retired[i]);
}

static void grp_task_main(void *p)
{
    spawn s = *(spawn *)p;
    free(p);
    s.fn(s.arg);
    NP_CHECK_OK(np_waitgroup_done(s.wg));
}

static void *grp_thread_main(void *p)
{
    grp_task_main(p);
    return NULL;
}

static spawn *new_spawn(grp *g, void (*fn)(void *), void *arg)
{
    if (!g->wg) {
        g->wg = calloc(1, sizeof *g->wg);
        NP_CHECK(g->wg != NULL);
    }
    spawn *s = malloc(sizeof *s);
    NP_CHECK(s != NULL);
    *s = (spawn){ g->wg, fn, arg };
    NP_CHECK_OK(np_waitgroup_add(g->wg, 1));
    return s;
}

static void grp_task(grp *g, void (*fn)(void *), void *arg)
{
    NP_CHECK_OK(np_go(grp_task_main, new_spawn(g, fn, arg)));
}

static void grp_thread(grp *g, void (*fn)(void *), void *arg)
{
    NP_CHECK_LT(g->nth, 64);
    NP_CHECK_OK(pthread_create(&g->th[g->nth++], NULL, grp_thread_main, new_spawn(g, fn, arg)));
}

static void grp_wait(grp *g)
{
    if (g->wg) {
        NP_CHECK_OK(np_waitgroup_wait(g->wg, 0));
        int i = atomic_fetch_add(&grp_nretired, 1);
        NP_CHECK_LT(i, 4096);
        grp_retired[i] = g->wg;
        g->wg = NULL;
    }
    for (int i = 0; i < g->nth; i++)
        NP_CHECK_OK(pthread_join(g->th[i], NULL));
    g->nth = 0;
}

/* Waits (task) until *counter >= n, then lets the callers get blocked. */
static void await_arrivals(_Atomic int *counter, int n)
{
    while (atomic_load(counter) < n)
        np_sleep(1 * MS);
    np_sleep(SETTLE);
}

/* ========================================================================== */
/* ---- make, len, cap ------------------------------------------------------- */

static void body_make_bad(void)
{
    np_chan c = { 0 };
    NP_CHECK_EQ(np_chan_make(NULL, 8, 1), -EINVAL);
    NP_CHECK_EQ(np_chan_make(NULL, 0, 0), -EINVAL);
    NP_CHECK_EQ(np_chan_make(&c, SIZE_MAX, 2), -EINVAL);
    NP_CHECK_EQ(np_chan_make(&c, SIZE_MAX, 1), -EINVAL);
    NP_CHECK_EQ(np_chan_make(&c, 8, SIZE_MAX), -EINVAL);
    NP_CHECK_EQ(np_chan_make(&c, SIZE_MAX / 2 + 1, 2), -EINVAL);     /* wraps to 0 */
    NP_CHECK_EQ(np_chan_make(&c, ((size_t)1 << 62) + 1, 4), -EINVAL); /* wraps to 4 */
    NP_CHECK_EQ(np_chan_make(&c, (size_t)0x5555555555555556ull, 3), -EINVAL); /* to 2 */
    NP_CHECK_EQ(np_chan_make(&c, ((size_t)1 << 30) + 1, 1), -EINVAL); /* over 1 GiB */
    NP_CHECK_EQ(np_chan_make(&c, 1, ((size_t)1 << 30) + 1), -EINVAL);
    NP_CHECK_EQ(np_chan_make(&c, (size_t)1 << 20, (size_t)1 << 11), -EINVAL); /* 2 GiB */
    NP_CHECK_EQ(np_chan_make(&c, SIZE_MAX, 0), -EINVAL); /* an absurd element */
    NP_CHECK_EQ(np_chan_make(&c, ((size_t)1 << 30) + 1, 0), -EINVAL);
    /* Signal-only with a capacity np_chan_cap (an int) cannot report:
     * refused, or reported as a non-negative number, never as an error. */
    int rc = np_chan_make(&c, 0, (size_t)INT_MAX + 1);
    if (rc == 0) {
        NP_CHECK_GE(np_chan_cap(c), 0);
        NP_CHECK_OK(np_chan_free(c));
    } else {
        NP_CHECK_EQ(rc, -EINVAL);
    }
    rc = np_chan_make(&c, 0, SIZE_MAX);
    if (rc == 0) {
        NP_CHECK_GE(np_chan_cap(c), 0);
        NP_CHECK_OK(np_chan_free(c));
    } else {
        NP_CHECK_EQ(rc, -EINVAL);
    }
    /* Sane sizes work. */
    np_chan ok[4];
    NP_CHECK_OK(np_chan_make(&ok[0], 0, 0));
    NP_CHECK_OK(np_chan_make(&ok[1], 0, 1000));
    NP_CHECK_OK(np_chan_make(&ok[2], (size_t)1 << 20, 4)); /* 4 MiB of buffer */
    NP_CHECK_OK(np_chan_make(&ok[3], (size_t)1 << 30, 0)); /* not over 1 GiB */
    for (int i = 0; i < 4; i++) {
        NP_CHECK_NE(ok[i].id, 0);
        for (int j = 0; j < i; j++)
            NP_CHECK_NE(ok[i].id, ok[j].id);
        NP_CHECK_OK(np_chan_free(ok[i]));
    }
}

/* make: -EINVAL for a NULL out and absurd sizes (elem_size * capacity
 * overflowing, to 0 or to a small number, or over 1 GiB); sane sizes work
 * and get distinct non-zero ids. */
static void t_chan_make_bad_sizes_einval(void)
{
    run_n(1, body_make_bad);
}

static void body_len_cap(void)
{
    np_chan b = mk(8, 3), u = mk(8, 0), z = mk(0, 5);
    NP_CHECK_EQ(np_chan_cap(b), 3);
    NP_CHECK_EQ(np_chan_cap(u), 0);
    NP_CHECK_EQ(np_chan_cap(z), 5);
    for (int i = 0; i < 3; i++) {
        NP_CHECK_EQ(np_chan_len(b), i);
        send_ok(b, (uint64_t)i);
        NP_CHECK_OK(np_chan_send(z, NULL, 0));
        NP_CHECK_EQ(np_chan_len(z), i + 1);
    }
    NP_CHECK_EQ(np_chan_len(b), 3);
    NP_CHECK_EQ(np_chan_len(u), 0);
    (void)recv_ok(b);
    NP_CHECK_EQ(np_chan_len(b), 2);
    NP_CHECK_OK(np_chan_close(b));
    NP_CHECK_EQ(np_chan_len(b), 2); /* still buffered after close */
    NP_CHECK_EQ(np_chan_cap(b), 3);
    (void)recv_ok(b);
    (void)recv_ok(b);
    NP_CHECK_EQ(np_chan_len(b), 0);
    NP_CHECK_OK(np_chan_free(b));
    NP_CHECK_OK(np_chan_free(u));
    NP_CHECK_OK(np_chan_free(z));
}

/* len counts buffered elements (also after close), cap the capacity. */
static void t_chan_len_cap(void)
{
    run_n(1, body_len_cap);
}

/* ---- no runtime ---- */

static void t_chan_no_runtime(void)
{
    /* Calls that need not block work without a runtime; one that would
     * have to block gives -ESRCH; a past deadline is a try. */
    np_chan c = mk(8, 2);
    int64_t t0 = np_now();
    send_ok(c, 1);
    NP_CHECK_OK(np_chan_send(c, &(uint64_t){ 2 }, np_now() - 1));
    NP_CHECK_EQ(np_chan_send(c, &(uint64_t){ 3 }, 0), -ESRCH);
    NP_CHECK_EQ(np_chan_send(c, &(uint64_t){ 3 }, np_now() + 10 * NP_SECOND), -ESRCH);
    NP_CHECK_EQ(np_chan_send(c, &(uint64_t){ 3 }, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_chan_len(c), 2);
    uint64_t v = 0;
    np_select_case cs[1] = { { c, NP_RECV, &v, 99 } };
    NP_CHECK_EQ(np_select(cs, 1, 0), 0);
    NP_CHECK_EQ(cs[0].result, 0);
    NP_CHECK_EQ(v, 1);
    NP_CHECK_EQ(recv_ok(c), 2);
    NP_CHECK_EQ(np_chan_recv(c, &v, 0), -ESRCH);
    NP_CHECK_EQ(np_chan_recv(c, &v, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_select(cs, 1, 0), -ESRCH);
    NP_CHECK_EQ(np_select(cs, 1, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_chan_recv((np_chan){ 0 }, &v, 0), -ESRCH); /* nil: forever */
    NP_CHECK_OK(np_chan_close(c));
    NP_CHECK_EQ(np_chan_recv(c, &v, 0), -EPIPE); /* closed: need not block */
    NP_CHECK_OK(np_chan_free(c));
    CHECK_QUICK(t0);
}

/* ========================================================================== */
/* ---- buffered ------------------------------------------------------------- */

static void body_fifo(void)
{
    np_chan c = mk(8, 100);
    for (uint64_t i = 0; i < 100; i++)
        send_ok(c, i * 7);
    for (uint64_t i = 0; i < 100; i++)
        NP_CHECK_EQ(recv_ok(c), i * 7);
    NP_CHECK_OK(np_chan_free(c));
    /* Wrapping around a small ring with a varying fill level. */
    np_chan w = mk(8, 7);
    uint64_t next_in = 0, next_out = 0, rng = 42;
    for (int i = 0; i < 20000; i++) {
        int fill = (int)(next_in - next_out);
        bool push = fill == 0 || (fill < 7 && rng_next(&rng) % 2);
        if (push) {
            NP_CHECK_OK(np_chan_send(w, &next_in, np_now() - 1));
            next_in++;
        } else {
            NP_CHECK_EQ(recv_ok(w), next_out);
            next_out++;
        }
        NP_CHECK_EQ(np_chan_len(w), (int)(next_in - next_out));
    }
    NP_CHECK_OK(np_chan_free(w));
}

/* A buffered channel delivers in FIFO order, also wrapping its ring. */
static void t_chan_buffered_fifo_order(void)
{
    run_n(1, body_fifo);
}

#define FC_N (20000 / SCALE)
static np_chan fc_ch;
static void fc_receiver(void *arg)
{
    (void)arg;
    for (uint64_t i = 0; i < FC_N; i++)
        NP_CHECK_EQ(recv_ok(fc_ch), i);
}
static void fc_sender(void *arg)
{
    (void)arg;
    for (uint64_t i = 0; i < FC_N; i++)
        send_ok(fc_ch, i);
}

static void body_fifo_concurrent(void)
{
    grp g = { 0 };
    fc_ch = mk(8, 5);
    grp_thread(&g, fc_receiver, NULL); /* task sends, thread receives */
    fc_sender(NULL);
    grp_wait(&g);
    grp_thread(&g, fc_sender, NULL); /* thread sends, task receives */
    fc_receiver(NULL);
    grp_wait(&g);
    grp_task(&g, fc_sender, NULL); /* task to task */
    fc_receiver(NULL);
    grp_wait(&g);
    NP_CHECK_EQ(np_chan_len(fc_ch), 0);
    NP_CHECK_OK(np_chan_free(fc_ch));
}

/* FIFO order holds with the two ends blocking on each other (full and
 * empty in turn): task to plain thread, thread to task, task to task. */
static void t_chan_buffered_fifo_concurrent(void)
{
    run_n(2, body_fifo_concurrent);
}

/* ---- full / empty with deadlines ---- */

static np_chan dl_ch;
static void dl_caller(void *arg)
{
    int op = (int)(intptr_t)arg;
    static const int64_t d[] = { 1 * MS, 5 * MS, 20 * MS };
    for (int i = 0; i < 3; i++) {
        uint64_t v = 77;
        int64_t deadline = np_now() + d[i];
        int rc = op == NP_SEND ? np_chan_send(dl_ch, &v, deadline)
                               : np_chan_recv(dl_ch, &v, deadline);
        NP_CHECK_EQ(rc, -ETIMEDOUT);
        CHECK_AT_DEADLINE(deadline);
    }
}

static void deadlines_on(np_chan c, int op)
{
    grp g = { 0 };
    dl_ch = c;
    grp_task(&g, dl_caller, (void *)(intptr_t)op);
    grp_thread(&g, dl_caller, (void *)(intptr_t)op);
    dl_caller((void *)(intptr_t)op);
    grp_wait(&g);
}

static void body_deadlines(void)
{
    np_chan full = mk(8, 2), empty = mk(8, 2), unb = mk(8, 0);
    send_ok(full, 1);
    send_ok(full, 2);
    deadlines_on(full, NP_SEND);
    NP_CHECK_EQ(np_chan_len(full), 2); /* the timed-out sends added nothing */
    NP_CHECK_EQ(recv_ok(full), 1);
    NP_CHECK_EQ(recv_ok(full), 2);
    deadlines_on(empty, NP_RECV);
    deadlines_on(unb, NP_SEND);
    deadlines_on(unb, NP_RECV);
    deadlines_on((np_chan){ 0 }, NP_SEND); /* nil */
    deadlines_on((np_chan){ 0 }, NP_RECV);
    /* The timed-out callers left no trace: tries find nobody. */
    uint64_t v = 5;
    NP_CHECK_EQ(np_chan_send(unb, &v, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_chan_recv(unb, &v, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_chan_recv(empty, &v, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_OK(np_chan_free(full));
    NP_CHECK_OK(np_chan_free(empty));
    NP_CHECK_OK(np_chan_free(unb));
}

/* Send on a full channel, receive on an empty one, either end of an
 * unbuffered one with no partner, and the nil channel: -ETIMEDOUT never
 * before the deadline (tasks and plain threads, 1 to 20 ms), nothing
 * added, and no waiter left behind. */
static void t_chan_deadlines_never_early(void)
{
    run_n(2, body_deadlines);
}

static void body_past_deadline(void)
{
    static const int64_t past[] = { 1, -1, INT64_MIN, 0 /* replaced by now */ };
    np_chan c = mk(8, 2);
    uint64_t v;
    for (int i = 0; i < 4; i++) {
        int64_t d = past[i] ? past[i] : np_now();
        int64_t t0 = np_now();
        NP_CHECK_OK(np_chan_send(c, &(uint64_t){ 10 + (uint64_t)i }, d)); /* room */
        NP_CHECK_OK(np_chan_send(c, &(uint64_t){ 20 + (uint64_t)i }, d));
        NP_CHECK_EQ(np_chan_send(c, &(uint64_t){ 30 }, d), -ETIMEDOUT); /* full */
        NP_CHECK_EQ(np_chan_len(c), 2);
        v = 0;
        NP_CHECK_OK(np_chan_recv(c, &v, d));
        NP_CHECK_EQ(v, 10 + (uint64_t)i);
        NP_CHECK_OK(np_chan_recv(c, &v, d));
        NP_CHECK_EQ(v, 20 + (uint64_t)i);
        NP_CHECK_EQ(np_chan_recv(c, &v, d), -ETIMEDOUT); /* empty */
        NP_CHECK_LT(np_now() - t0, 100 * MS);
    }
    NP_CHECK_OK(np_chan_free(c));
}

/* A deadline at or before now (1, -1, INT64_MIN, now) is a non-blocking
 * try: proceeds when it can, -ETIMEDOUT at once when it cannot. */
static void t_chan_past_deadline_is_try(void)
{
    run_n(1, body_past_deadline);
}

/* A blocked partner makes an unbuffered try succeed. */
static np_chan tp_ch;
static _Atomic int tp_arrived;
static uint64_t tp_got;
static void tp_receiver(void *arg)
{
    (void)arg;
    atomic_fetch_add(&tp_arrived, 1);
    tp_got = recv_ok(tp_ch);
}
static void tp_sender(void *arg)
{
    (void)arg;
    atomic_fetch_add(&tp_arrived, 1);
    send_ok(tp_ch, 4242);
}

static void try_until(int op, uint64_t *v)
{
    /* The partner is (very likely) blocked already; retry a while if not. */
    int64_t end = np_now() + SLACK;
    int rc;
    while ((rc = op == NP_SEND ? np_chan_send(tp_ch, v, np_now() - 1)
                               : np_chan_recv(tp_ch, v, np_now() - 1)) == -ETIMEDOUT &&
           np_now() < end)
        np_sleep(1 * MS);
    NP_CHECK_MSG(rc == 0, "a try with a blocked partner gave %d", rc);
}

static void body_try_with_partner(void)
{
    grp g = { 0 };
    tp_ch = mk(8, 0);
    for (int thread = 0; thread < 2; thread++) {
        atomic_store(&tp_arrived, 0);
        if (thread)
            grp_thread(&g, tp_receiver, NULL);
        else
            grp_task(&g, tp_receiver, NULL);
        await_arrivals(&tp_arrived, 1);
        uint64_t v = 1717;
        try_until(NP_SEND, &v);
        grp_wait(&g);
        NP_CHECK_EQ(tp_got, 1717);
        atomic_store(&tp_arrived, 0);
        if (thread)
            grp_thread(&g, tp_sender, NULL);
        else
            grp_task(&g, tp_sender, NULL);
        await_arrivals(&tp_arrived, 1);
        v = 0;
        try_until(NP_RECV, &v);
        NP_CHECK_EQ(v, 4242);
        grp_wait(&g);
    }
    NP_CHECK_OK(np_chan_free(tp_ch));
}

/* An unbuffered try (past deadline) succeeds when a partner (task or plain
 * thread) is blocked on the other end: it need not block. */
static void t_chan_unbuffered_try_with_blocked_partner(void)
{
    run_n(2, body_try_with_partner);
}

/* ---- unbuffered rendezvous ---- */

static np_chan rv_ch;
static _Atomic int rv_send_returned;
static _Atomic int64_t rv_recv_called_at;

static void rv_sender(void *arg)
{
    (void)arg;
    send_ok(rv_ch, 99);
    int64_t called = atomic_load(&rv_recv_called_at);
    NP_CHECK_MSG(called != 0, "unbuffered send returned before any receive was called");
    atomic_store(&rv_send_returned, 1);
}

static void rv_receiver(void *arg)
{
    (void)arg;
    atomic_store(&rv_recv_called_at, np_now());
    NP_CHECK_EQ(recv_ok(rv_ch), 99);
}

static void body_rendezvous(void)
{
    grp g = { 0 };
    rv_ch = mk(8, 0);
    for (int variant = 0; variant < 4; variant++) {
        bool sender_thread = variant & 1, receiver_thread = variant & 2;
        atomic_store(&rv_send_returned, 0);
        atomic_store(&rv_recv_called_at, 0);
        if (sender_thread)
            grp_thread(&g, rv_sender, NULL);
        else
            grp_task(&g, rv_sender, NULL);
        np_sleep(SETTLE);
        NP_CHECK_MSG(!atomic_load(&rv_send_returned), "unbuffered send did not block");
        NP_CHECK_EQ(np_chan_len(rv_ch), 0); /* nothing is buffered */
        if (receiver_thread)
            grp_thread(&g, rv_receiver, NULL);
        else
            grp_task(&g, rv_receiver, NULL);
        grp_wait(&g);
        NP_CHECK(atomic_load(&rv_send_returned));
    }
    /* Receiver first: it blocks until the send. */
    for (int i = 0; i < 200; i++) {
        uint64_t v = (uint64_t)i;
        atomic_store(&rv_recv_called_at, 0);
        grp_task(&g, rv_receiver, NULL);
        if (i % 2)
            np_yield();
        v = 99;
        NP_CHECK_OK(np_chan_send(rv_ch, &v, 0));
        NP_CHECK_NE(atomic_load(&rv_recv_called_at), 0);
        grp_wait(&g);
    }
    NP_CHECK_OK(np_chan_free(rv_ch));
}

/* Unbuffered: a send completes only when a receiver takes the element (it
 * blocks until then; its return implies the receive was called), tasks and
 * plain threads on either end; nothing is ever buffered. */
static void t_chan_unbuffered_rendezvous(void)
{
    run_n(2, body_rendezvous);
}

/* ---- elem_size 0 ---- */

static np_chan z_ch;
static void z_sender(void *arg)
{
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++)
        NP_CHECK_OK(np_chan_send(z_ch, NULL, 0));
}

static void body_zero_size(void)
{
    grp g = { 0 };
    z_ch = mk(0, 0);
    grp_task(&g, z_sender, (void *)(intptr_t)500);
    grp_thread(&g, z_sender, (void *)(intptr_t)500);
    uint64_t canary = CANARY;
    for (int i = 0; i < 1000; i++)
        NP_CHECK_OK(np_chan_recv(z_ch, i % 2 ? NULL : &canary, 0));
    NP_CHECK_EQ(canary, CANARY); /* zero bytes copied */
    grp_wait(&g);
    NP_CHECK_OK(np_chan_close(z_ch));
    NP_CHECK_EQ(np_chan_recv(z_ch, NULL, 0), -EPIPE);
    NP_CHECK_EQ(np_chan_send(z_ch, NULL, 0), -EPIPE);
    NP_CHECK_OK(np_chan_free(z_ch));

    np_chan b = mk(0, 3);
    for (int i = 0; i < 3; i++)
        NP_CHECK_OK(np_chan_send(b, NULL, np_now() - 1));
    NP_CHECK_EQ(np_chan_send(b, NULL, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_chan_len(b), 3);
    NP_CHECK_OK(np_chan_close(b));
    for (int i = 0; i < 3; i++)
        NP_CHECK_OK(np_chan_recv(b, NULL, 0));
    NP_CHECK_EQ(np_chan_recv(b, NULL, 0), -EPIPE);
    np_select_case cs[2] = { { b, NP_RECV, NULL, 99 }, { b, NP_SEND, NULL, 99 } };
    int rc = np_select(cs, 2, 0);
    NP_CHECK(rc == 0 || rc == 1);
    NP_CHECK_EQ(cs[rc].result, -EPIPE);
    NP_CHECK_OK(np_chan_free(b));
}

/* elem_size 0: signal-only channels, NULL elem pointers, unbuffered and
 * buffered, counting and closing like any other. */
static void t_chan_elem_size_zero(void)
{
    run_n(2, body_zero_size);
}

/* ---- large elements by value ---- */

typedef struct big {
    uint64_t seq;
    unsigned char pad[1016];
} big;

static void big_fill(big *b, uint64_t seq)
{
    b->seq = seq;
    for (size_t i = 0; i < sizeof b->pad; i++)
        b->pad[i] = (unsigned char)(seq * 31 + i * 7);
}

static void big_check(const big *b, uint64_t seq)
{
    NP_CHECK_EQ(b->seq, seq);
    for (size_t i = 0; i < sizeof b->pad; i++)
        if (b->pad[i] != (unsigned char)(seq * 31 + i * 7))
            NP_CHECK_MSG(0, "element %" PRIu64 " byte %zu corrupted", seq, i);
}

#define BIG_N (2000 / SCALE)
static np_chan big_ch;
static void big_sender(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg;
    big b; /* on the sender's stack */
    for (uint64_t i = 0; i < BIG_N; i++) {
        big_fill(&b, base + i);
        NP_CHECK_OK(np_chan_send(big_ch, &b, 0));
        memset(&b, 0xEE, sizeof b); /* the channel had its own copy */
    }
}

static void big_receiver(void *arg)
{
    uint64_t base = (uint64_t)(uintptr_t)arg;
    big b;
    for (uint64_t i = 0; i < BIG_N; i++) {
        memset(&b, 0, sizeof b);
        NP_CHECK_OK(np_chan_recv(big_ch, &b, 0));
        big_check(&b, base + i);
    }
}

static void body_big(void)
{
    grp g = { 0 };
    for (int cap = 0; cap <= 4; cap += 4) {
        for (int variant = 0; variant < 3; variant++) {
            big_ch = mk(sizeof(big), (size_t)cap);
            uintptr_t base = (uintptr_t)(variant * 100000 + cap);
            if (variant == 1)
                grp_thread(&g, big_sender, (void *)base);
            else
                grp_task(&g, big_sender, (void *)base);
            if (variant == 2)
                grp_thread(&g, big_receiver, (void *)base);
            else
                grp_task(&g, big_receiver, (void *)base);
            grp_wait(&g);
            NP_CHECK_OK(np_chan_free(big_ch));
        }
    }
    /* 64 KiB elements, buffered: copied in, the source reused at once. */
    size_t sz = 64 * 1024;
    np_chan c = mk(sz, 3);
    unsigned char *buf = malloc(sz), *out = malloc(sz);
    NP_CHECK(buf && out);
    for (int i = 0; i < 3; i++) {
        memset(buf, 'a' + i, sz);
        NP_CHECK_OK(np_chan_send(c, buf, 0));
    }
    memset(buf, 0, sz);
    for (int i = 0; i < 3; i++) {
        NP_CHECK_OK(np_chan_recv(c, out, 0));
        for (size_t k = 0; k < sz; k += 509)
            NP_CHECK_EQ(out[k], 'a' + i);
        NP_CHECK_EQ(out[sz - 1], 'a' + i);
    }
    free(buf);
    free(out);
    NP_CHECK_OK(np_chan_free(c));
}

/* Large elements (1 KiB structs; 64 KiB buffers) are copied by value:
 * buffered and unbuffered, task and plain-thread stacks on either end, the
 * sender overwriting its copy as soon as send returns. */
static void t_chan_large_elements_by_value(void)
{
    run_n(2, body_big);
}

/* ========================================================================== */
/* ---- close ---------------------------------------------------------------- */

static void body_close_drain(void)
{
    np_chan c = mk(8, 3);
    send_ok(c, 11);
    send_ok(c, 22);
    NP_CHECK_OK(np_chan_close(c));
    NP_CHECK_EQ(np_chan_len(c), 2);
    NP_CHECK_EQ(recv_ok(c), 11); /* delivered after close */
    uint64_t v = CANARY;
    NP_CHECK_OK(np_chan_recv(c, &v, np_now() - 1));
    NP_CHECK_EQ(v, 22);
    for (int i = 0; i < 3; i++) {
        v = CANARY;
        NP_CHECK_EQ(np_chan_recv(c, &v, 0), -EPIPE); /* drained: at once */
        NP_CHECK_EQ(v, 0);                           /* Go's zero value */
        v = CANARY;
        NP_CHECK_EQ(np_chan_recv(c, &v, np_now() - 1), -EPIPE); /* not -ETIMEDOUT */
        NP_CHECK_EQ(v, 0);
    }
    big b;
    memset(&b, 0x5A, sizeof b);
    np_chan bc = mk(sizeof b, 0);
    NP_CHECK_OK(np_chan_close(bc));
    NP_CHECK_EQ(np_chan_recv(bc, &b, 0), -EPIPE);
    for (size_t i = 0; i < sizeof b.pad; i++)
        NP_CHECK_EQ(b.pad[i], 0); /* every byte zeroed */
    NP_CHECK_EQ(b.seq, 0);
    NP_CHECK_OK(np_chan_free(bc));
    NP_CHECK_OK(np_chan_free(c));
}

/* Close: buffered elements are still delivered, then receive gives -EPIPE
 * with the element zeroed, every time and at once (a past deadline too). */
static void t_chan_close_drains_then_epipe_zeroed(void)
{
    run_n(1, body_close_drain);
}

static void body_send_closed(void)
{
    np_chan b = mk(8, 4), u = mk(8, 0);
    send_ok(b, 1);
    NP_CHECK_OK(np_chan_close(b));
    NP_CHECK_OK(np_chan_close(u));
    uint64_t v = 2;
    NP_CHECK_EQ(np_chan_send(b, &v, 0), -EPIPE); /* room, but closed */
    NP_CHECK_EQ(np_chan_send(b, &v, np_now() - 1), -EPIPE);
    NP_CHECK_EQ(np_chan_send(b, &v, np_now() + NP_SECOND), -EPIPE);
    NP_CHECK_EQ(np_chan_send(u, &v, 0), -EPIPE);
    NP_CHECK_EQ(np_chan_send(u, &v, np_now() - 1), -EPIPE);
    NP_CHECK_EQ(np_chan_len(b), 1); /* nothing added */
    NP_CHECK_EQ(recv_ok(b), 1);
    NP_CHECK_EQ(np_chan_close(b), -EPIPE); /* twice */
    NP_CHECK_EQ(np_chan_close(u), -EPIPE);
    NP_CHECK_EQ(np_chan_close(u), -EPIPE);
    NP_CHECK_OK(np_chan_free(b));
    NP_CHECK_OK(np_chan_free(u));
}

/* Send on a closed channel: -EPIPE (whatever the room or the deadline),
 * nothing added; close twice: -EPIPE. */
static void t_chan_send_on_closed_and_close_twice_epipe(void)
{
    run_n(1, body_send_closed);
}

#define CW_N 8
static np_chan cw_ch;
static _Atomic int cw_arrived;
static _Atomic int cw_results[CW_N];

static void cw_receiver(void *arg)
{
    int i = (int)(intptr_t)arg;
    uint64_t v = CANARY;
    atomic_fetch_add(&cw_arrived, 1);
    int rc = np_chan_recv(cw_ch, &v, np_now() + 4 * SLACK);
    NP_CHECK_EQ(v, rc == -EPIPE ? 0 : v);
    atomic_store(&cw_results[i], rc);
}

static void cw_sender(void *arg)
{
    int i = (int)(intptr_t)arg;
    uint64_t v = 1000 + (uint64_t)i;
    atomic_fetch_add(&cw_arrived, 1);
    atomic_store(&cw_results[i], np_chan_send(cw_ch, &v, np_now() + 4 * SLACK));
}

static void cw_round(void (*fn)(void *))
{
    grp g = { 0 };
    atomic_store(&cw_arrived, 0);
    for (int i = 0; i < CW_N; i++) {
        atomic_store(&cw_results[i], 1);
        if (i % 4 == 1)
            grp_thread(&g, fn, (void *)(intptr_t)i);
        else
            grp_task(&g, fn, (void *)(intptr_t)i);
    }
    await_arrivals(&cw_arrived, CW_N);
    NP_CHECK_OK(np_chan_close(cw_ch));
    grp_wait(&g);
    for (int i = 0; i < CW_N; i++)
        NP_CHECK_MSG(atomic_load(&cw_results[i]) == -EPIPE, "caller %d got %d, not -EPIPE", i,
                     atomic_load(&cw_results[i]));
}

static void body_close_wakes(void)
{
    cw_ch = mk(8, 0); /* blocked receivers */
    cw_round(cw_receiver);
    NP_CHECK_OK(np_chan_free(cw_ch));
    cw_ch = mk(8, 0); /* blocked senders, unbuffered */
    cw_round(cw_sender);
    NP_CHECK_OK(np_chan_free(cw_ch));
    cw_ch = mk(8, 1); /* blocked senders on a full buffer */
    send_ok(cw_ch, 7);
    cw_round(cw_sender);
    NP_CHECK_EQ(np_chan_len(cw_ch), 1); /* none of theirs got in */
    NP_CHECK_EQ(recv_ok(cw_ch), 7);
    uint64_t v = CANARY;
    NP_CHECK_EQ(np_chan_recv(cw_ch, &v, 0), -EPIPE);
    NP_CHECK_EQ(v, 0);
    NP_CHECK_OK(np_chan_free(cw_ch));
}

/* Close wakes every blocked receiver (-EPIPE, element zeroed) and every
 * blocked sender (-EPIPE; a full buffer keeps only what was in it), tasks
 * and plain threads alike. */
static void t_chan_close_wakes_every_blocked_caller(void)
{
    run_n(2, body_close_wakes);
}

/* ========================================================================== */
/* ---- free and bad ids ----------------------------------------------------- */

static void check_all_ebadf(np_chan c)
{
    uint64_t v = 1;
    NP_CHECK_EQ(np_chan_send(c, &v, 0), -EBADF);
    NP_CHECK_EQ(np_chan_send(c, &v, np_now() - 1), -EBADF);
    NP_CHECK_EQ(np_chan_recv(c, &v, 0), -EBADF);
    NP_CHECK_EQ(np_chan_recv(c, &v, np_now() + NP_SECOND), -EBADF);
    NP_CHECK_EQ(np_chan_close(c), -EBADF);
    NP_CHECK_EQ(np_chan_free(c), -EBADF);
    NP_CHECK_EQ(np_chan_len(c), -EBADF);
    NP_CHECK_EQ(np_chan_cap(c), -EBADF);
    np_select_case cs[1] = { { c, NP_RECV, &v, 99 } };
    NP_CHECK_EQ(np_select(cs, 1, 0), -EBADF);
    cs[0].op = NP_SEND;
    NP_CHECK_EQ(np_select(cs, 1, np_now() - 1), -EBADF);
}

static void fr_caller(void *arg)
{
    int i = (int)(intptr_t)arg;
    uint64_t v = CANARY;
    atomic_fetch_add(&cw_arrived, 1);
    int rc;
    /* Mostly receivers (one sender, one select that can do either), so
     * at most 2 pairs meet (3 with a buffer) and the rest stay blocked. */
    if (i != 2 && i != 3) {
        rc = np_chan_recv(cw_ch, &v, np_now() + 4 * SLACK);
    } else if (i == 3) {
        rc = np_chan_send(cw_ch, &v, np_now() + 4 * SLACK);
    } else {
        np_select_case cs[2] = { { cw_ch, NP_RECV, &v, 99 }, { cw_ch, NP_SEND, &v, 99 } };
        rc = np_select(cs, 2, np_now() + 4 * SLACK);
        if (rc >= 0) /* a case proceeded: its result */
            rc = cs[rc].result;
    }
    atomic_store(&cw_results[i], rc);
}

static void body_free_wakes(void)
{
    for (int buffered = 0; buffered < 2; buffered++) {
        grp g = { 0 };
        cw_ch = mk(8, (size_t)buffered);
        atomic_store(&cw_arrived, 0);
        for (int i = 0; i < CW_N; i++) {
            atomic_store(&cw_results[i], 1);
            if (i % 4 == 1)
                grp_thread(&g, fr_caller, (void *)(intptr_t)i);
            else
                grp_task(&g, fr_caller, (void *)(intptr_t)i);
        }
        await_arrivals(&cw_arrived, CW_N);
        /* Some pairs may have met (a sender and a receiver): those got 0. */
        NP_CHECK_OK(np_chan_free(cw_ch));
        grp_wait(&g);
        int canceled = 0, ok = 0;
        for (int i = 0; i < CW_N; i++) {
            int rc = atomic_load(&cw_results[i]);
            NP_CHECK_MSG(rc == -ECANCELED || rc == 0, "caller %d got %d", i, rc);
            canceled += rc == -ECANCELED;
            ok += rc == 0;
        }
        NP_CHECK_MSG(canceled >= CW_N - 4 && canceled + ok == CW_N, "%d canceled, %d completed",
                     canceled, ok);
        check_all_ebadf(cw_ch);
    }
    /* Blocked receivers only: every one -ECANCELED. */
    grp g = { 0 };
    cw_ch = mk(8, 2);
    atomic_store(&cw_arrived, 0);
    for (int i = 0; i < CW_N; i++) {
        atomic_store(&cw_results[i], 1);
        if (i % 4 == 1)
            grp_thread(&g, cw_receiver, (void *)(intptr_t)i);
        else
            grp_task(&g, cw_receiver, (void *)(intptr_t)i);
    }
    await_arrivals(&cw_arrived, CW_N);
    NP_CHECK_OK(np_chan_free(cw_ch));
    grp_wait(&g);
    for (int i = 0; i < CW_N; i++)
        NP_CHECK_MSG(atomic_load(&cw_results[i]) == -ECANCELED,
                     "blocked receiver %d got %d, not -ECANCELED", i, atomic_load(&cw_results[i]));
    check_all_ebadf(cw_ch);
    /* Blocked senders on a full buffer: -ECANCELED; the buffered element
     * is dropped (LeakSanitizer checks the buffer's memory went too). */
    cw_ch = mk(8, 1);
    send_ok(cw_ch, 7);
    atomic_store(&cw_arrived, 0);
    for (int i = 0; i < CW_N; i++) {
        atomic_store(&cw_results[i], 1);
        if (i % 4 == 1)
            grp_thread(&g, cw_sender, (void *)(intptr_t)i);
        else
            grp_task(&g, cw_sender, (void *)(intptr_t)i);
    }
    await_arrivals(&cw_arrived, CW_N);
    NP_CHECK_OK(np_chan_free(cw_ch));
    grp_wait(&g);
    for (int i = 0; i < CW_N; i++)
        NP_CHECK_MSG(atomic_load(&cw_results[i]) == -ECANCELED,
                     "blocked sender %d got %d, not -ECANCELED", i, atomic_load(&cw_results[i]));
    check_all_ebadf(cw_ch);
}

/* Free: callers blocked on the channel (receive, send, select; tasks and
 * plain threads) return -ECANCELED; every later call gives -EBADF;
 * buffered elements are dropped. */
static void t_chan_free_wakes_ecanceled_then_ebadf(void)
{
    run_n(2, body_free_wakes);
}

static void body_bad_ids(void)
{
    /* Zero: not a channel for close, free, len, cap. */
    NP_CHECK_EQ(np_chan_close((np_chan){ 0 }), -EBADF);
    NP_CHECK_EQ(np_chan_free((np_chan){ 0 }), -EBADF);
    NP_CHECK_EQ(np_chan_len((np_chan){ 0 }), -EBADF);
    NP_CHECK_EQ(np_chan_cap((np_chan){ 0 }), -EBADF);
    /* Forged. */
    np_chan live = mk(8, 1);
    uint64_t forged[] = { 1, 2, 3, 0xFFFFFFFFull, 0x100000000ull, UINT64_MAX,
                          live.id ^ 1, live.id + 1, live.id - 1, live.id ^ (1ull << 32),
                          live.id ^ (1ull << 63), live.id ^ (1ull << 40) };
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        if (forged[i] == live.id || forged[i] == 0)
            continue;
        check_all_ebadf((np_chan){ forged[i] });
    }
    NP_CHECK_EQ(np_chan_cap(live), 1); /* untouched by all that */
    NP_CHECK_EQ(np_chan_len(live), 0);
    /* Another kind of handle is not a channel. */
    np_listener l;
    NP_CHECK_OK(np_listen(&l, "tcp4", "127.0.0.1:0"));
    if (l.id != live.id)
        check_all_ebadf((np_chan){ l.id });
    NP_CHECK_OK(np_listener_close(l));
    /* Freed, and its slot reused by newer channels: still -EBADF. */
    np_chan old = live;
    NP_CHECK_OK(np_chan_free(live));
    check_all_ebadf(old);
    np_chan ids[200];
    for (int i = 0; i < 200; i++) {
        ids[i] = mk(8, (size_t)(i % 3));
        NP_CHECK_NE(ids[i].id, old.id); /* ids are not reissued */
        if (i % 2 == 0) {
            NP_CHECK_OK(np_chan_free(ids[i]));
        }
    }
    check_all_ebadf(old);
    for (int i = 0; i < 200; i++) {
        if (i % 2 == 0) {
            check_all_ebadf(ids[i]);
        } else {
            NP_CHECK_EQ(np_chan_cap(ids[i]), i % 3);
            NP_CHECK_OK(np_chan_free(ids[i]));
        }
    }
}

/* -EBADF for zero (where the nil channel's meaning does not apply), forged
 * (near a live id, other kinds of handle), and freed ids, also after the
 * freed slot was reused; live channels are unaffected. */
static void t_chan_bad_ids_ebadf(void)
{
    run_n(1, body_bad_ids);
}

/* ---- nil channel ---- */

static void nil_caller(void *arg)
{
    (void)arg;
    np_chan nil = { 0 };
    uint64_t v = CANARY;
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_chan_send(nil, &v, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_chan_recv(nil, &v, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_LT(np_now() - t0, 100 * MS);
    int64_t d = np_now() + 30 * MS;
    NP_CHECK_EQ(np_chan_recv(nil, &v, d), -ETIMEDOUT);
    CHECK_AT_DEADLINE(d);
    d = np_now() + 30 * MS;
    NP_CHECK_EQ(np_chan_send(nil, &v, d), -ETIMEDOUT);
    CHECK_AT_DEADLINE(d);
    NP_CHECK_EQ(v, CANARY);
}

static void body_nil(void)
{
    grp g = { 0 };
    grp_task(&g, nil_caller, NULL);
    grp_thread(&g, nil_caller, NULL);
    nil_caller(NULL);
    grp_wait(&g);
}

/* The nil channel (id 0): send and receive block until their deadline and
 * give -ETIMEDOUT, never early (tasks, plain threads); a past deadline:
 * -ETIMEDOUT at once. */
static void t_chan_nil_blocks_until_deadline(void)
{
    run_n(2, body_nil);
}

/* ========================================================================== */
/* ---- select --------------------------------------------------------------- */

static void body_fair(void)
{
    int iters = 10000;
    /* Two always-ready receives. */
    np_chan a = mk(8, 1), b = mk(8, 1);
    send_ok(a, 1);
    send_ok(b, 2);
    int count[2] = { 0, 0 };
    for (int i = 0; i < iters; i++) {
        uint64_t va = CANARY, vb = CANARY;
        np_select_case cs[3] = { { a, NP_RECV, &va, 99 }, { (np_chan){ 0 }, NP_RECV, &vb, 99 },
                                 { b, NP_RECV, &vb, 99 } };
        int rc = np_select(cs, 3, 0);
        NP_CHECK(rc == 0 || rc == 2);
        NP_CHECK_EQ(cs[rc].result, 0);
        if (rc == 0) {
            NP_CHECK_EQ(va, 1);
            NP_CHECK_EQ(vb, CANARY);
            send_ok(a, 1);
        } else {
            NP_CHECK_EQ(vb, 2);
            NP_CHECK_EQ(va, CANARY);
            send_ok(b, 2);
        }
        count[rc / 2]++;
    }
    NP_CHECK_MSG(count[0] >= iters * 4 / 10 && count[0] <= iters * 6 / 10,
                 "receive cases chosen %d / %d times", count[0], count[1]);
    /* Two always-ready sends. */
    NP_CHECK_EQ(recv_ok(a), 1);
    NP_CHECK_EQ(recv_ok(b), 2);
    count[0] = count[1] = 0;
    for (int i = 0; i < iters; i++) {
        uint64_t va = 10, vb = 20;
        np_select_case cs[2] = { { a, NP_SEND, &va, 99 }, { b, NP_SEND, &vb, 99 } };
        int rc = np_select(cs, 2, np_now() - 1);
        NP_CHECK(rc == 0 || rc == 1);
        NP_CHECK_EQ(cs[rc].result, 0);
        NP_CHECK_EQ(np_chan_len(rc ? b : a), 1);
        NP_CHECK_EQ(np_chan_len(rc ? a : b), 0);
        NP_CHECK_EQ(recv_ok(rc ? b : a), rc ? 20 : 10);
        count[rc]++;
    }
    NP_CHECK_MSG(count[0] >= iters * 4 / 10 && count[0] <= iters * 6 / 10,
                 "send cases chosen %d / %d times", count[0], count[1]);
    /* A ready receive and a ready send. */
    count[0] = count[1] = 0;
    send_ok(a, 5);
    for (int i = 0; i < iters; i++) {
        uint64_t va = CANARY, vb = 30;
        np_select_case cs[2] = { { a, NP_RECV, &va, 99 }, { b, NP_SEND, &vb, 99 } };
        int rc = np_select(cs, 2, 0);
        NP_CHECK(rc == 0 || rc == 1);
        if (rc == 0) {
            NP_CHECK_EQ(va, 5);
            send_ok(a, 5);
        } else {
            NP_CHECK_EQ(recv_ok(b), 30);
        }
        count[rc]++;
    }
    NP_CHECK_MSG(count[0] >= iters * 4 / 10 && count[0] <= iters * 6 / 10,
                 "recv / send cases chosen %d / %d times", count[0], count[1]);
    /* A closed channel is a ready case like any other. */
    np_chan closed = mk(8, 0);
    NP_CHECK_OK(np_chan_close(closed));
    count[0] = count[1] = 0;
    for (int i = 0; i < iters; i++) {
        uint64_t va = CANARY, vc = CANARY;
        np_select_case cs[2] = { { closed, NP_RECV, &vc, 99 }, { a, NP_RECV, &va, 99 } };
        int rc = np_select(cs, 2, 0);
        NP_CHECK(rc == 0 || rc == 1);
        if (rc == 0) {
            NP_CHECK_EQ(cs[0].result, -EPIPE);
            NP_CHECK_EQ(vc, 0);
        } else {
            NP_CHECK_EQ(va, 5);
            send_ok(a, 5);
        }
        count[rc]++;
    }
    NP_CHECK_MSG(count[0] >= iters * 4 / 10 && count[0] <= iters * 6 / 10,
                 "closed / ready cases chosen %d / %d times", count[0], count[1]);
    NP_CHECK_OK(np_chan_free(closed));
    NP_CHECK_OK(np_chan_free(a));
    NP_CHECK_OK(np_chan_free(b));
}

/* Fairness: two always-ready cases (receives, sends, one of each, a closed
 * channel and a ready one; a nil case in between) are each chosen 40-60%
 * of 10,000 times. */
static void t_select_fairness(void)
{
    run_n(1, body_fair);
}

static void body_nil_cases(void)
{
    np_chan c = mk(8, 1);
    np_chan nil = { 0 };
    for (int i = 0; i < 1000; i++) {
        uint64_t v = CANARY, w = 3;
        send_ok(c, (uint64_t)i);
        np_select_case cs[4] = { { nil, NP_RECV, &v, 99 }, { nil, NP_SEND, &w, 99 },
                                 { c, NP_RECV, &v, 99 }, { nil, NP_RECV, &v, 99 } };
        NP_CHECK_EQ(np_select(cs, 4, i % 2 ? 0 : np_now() - 1), 2);
        NP_CHECK_EQ(cs[2].result, 0);
        NP_CHECK_EQ(v, (uint64_t)i);
    }
    /* Only nil cases: blocks until the deadline. */
    uint64_t v = CANARY;
    np_select_case cs[2] = { { nil, NP_RECV, &v, 99 }, { nil, NP_SEND, &v, 99 } };
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_select(cs, 2, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_LT(np_now() - t0, 100 * MS);
    int64_t d = np_now() + 30 * MS;
    NP_CHECK_EQ(np_select(cs, 2, d), -ETIMEDOUT);
    CHECK_AT_DEADLINE(d);
    NP_CHECK_EQ(v, CANARY);
    NP_CHECK_OK(np_chan_free(c));
}

/* Nil cases never proceed: with a ready case it is always chosen; only nil
 * cases block until the deadline. */
static void t_select_nil_cases_never_chosen(void)
{
    run_n(1, body_nil_cases);
}

static void body_default(void)
{
    np_chan empty = mk(8, 2), full = mk(8, 1), unb = mk(8, 0);
    send_ok(full, 1);
    uint64_t v1 = CANARY, v2 = 9, v3 = CANARY, v4 = 8;
    np_select_case cs[4] = { { empty, NP_RECV, &v1, 99 }, { full, NP_SEND, &v2, 99 },
                             { unb, NP_RECV, &v3, 99 }, { unb, NP_SEND, &v4, 99 } };
    int64_t t0 = np_now();
    for (int i = 0; i < 100; i++)
        NP_CHECK_EQ(np_select(cs, 4, i % 2 ? np_now() : -1), -ETIMEDOUT);
    NP_CHECK_LT(np_now() - t0, 500 * MS);
    NP_CHECK_EQ(v1, CANARY);
    NP_CHECK_EQ(v3, CANARY);
    NP_CHECK_EQ(np_chan_len(full), 1);
    NP_CHECK_EQ(np_chan_len(empty), 0);
    send_ok(empty, 55); /* now one is ready */
    NP_CHECK_EQ(np_select(cs, 4, np_now() - 1), 0);
    NP_CHECK_EQ(cs[0].result, 0);
    NP_CHECK_EQ(v1, 55);
    NP_CHECK_EQ(v3, CANARY);
    NP_CHECK_EQ(np_chan_len(full), 1);
    NP_CHECK_OK(np_chan_free(empty));
    NP_CHECK_OK(np_chan_free(full));
    NP_CHECK_OK(np_chan_free(unb));
}

/* A past deadline is Go's default: -ETIMEDOUT at once when nothing is
 * ready (nothing performed), the ready case when one is. */
static void t_select_past_deadline_is_default(void)
{
    run_n(1, body_default);
}

static void body_n0(void)
{
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_select(NULL, 0, np_now() - 1), -ETIMEDOUT);
    np_select_case dummy[1] = { { { 0 }, 77, NULL, 99 } }; /* not looked at */
    NP_CHECK_EQ(np_select(dummy, 0, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_LT(np_now() - t0, 100 * MS);
    int64_t d = np_now() + 30 * MS;
    NP_CHECK_EQ(np_select(NULL, 0, d), -ETIMEDOUT);
    CHECK_AT_DEADLINE(d);
}

static void n0_thread(void *arg)
{
    (void)arg;
    body_n0();
}

static void body_n0_all(void)
{
    grp g = { 0 };
    grp_thread(&g, n0_thread, NULL);
    body_n0();
    grp_wait(&g);
}

/* n = 0 (cases NULL or not) blocks until the deadline: -ETIMEDOUT, never
 * early; at once for a past one. Task and plain thread. */
static void t_select_n0_waits_for_deadline(void)
{
    run_n(2, body_n0_all);
}

static void body_einval(void)
{
    np_chan c = mk(8, 2);
    send_ok(c, 1);
    uint64_t v = CANARY, w = 2;
    np_select_case cs[2] = { { c, NP_RECV, &v, 99 }, { c, 0, &w, 99 } };
    int bad_ops[] = { 0, 3, -1, NP_SEND | NP_RECV, 100 };
    for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++) {
        cs[1].op = bad_ops[i];
        NP_CHECK_EQ(np_select(cs, 2, 0), -EINVAL);
        NP_CHECK_EQ(np_select(cs, 2, np_now() - 1), -EINVAL);
    }
    cs[1].chan = (np_chan){ 0 }; /* a bad op on a nil case is still bad */
    NP_CHECK_EQ(np_select(cs, 2, 0), -EINVAL);
    NP_CHECK_EQ(v, CANARY);          /* the ready case was not performed */
    NP_CHECK_EQ(np_chan_len(c), 1);
    NP_CHECK_EQ(np_select(NULL, 1, 0), -EINVAL);
    NP_CHECK_EQ(np_select(NULL, 1, np_now() - 1), -EINVAL);
    cs[1].op = NP_RECV;
    NP_CHECK_EQ(np_select(cs, -1, 0), -EINVAL);
    NP_CHECK_EQ(np_select(cs, INT_MIN, 0), -EINVAL);
    NP_CHECK_EQ(np_select(NULL, -1, 0), -EINVAL);
    /* 64 cases is the limit. */
    np_select_case many[65];
    for (int i = 0; i < 65; i++)
        many[i] = (np_select_case){ (np_chan){ 0 }, NP_RECV, &w, 99 };
    many[63].chan = c;
    many[63].elem = &v;
    NP_CHECK_EQ(np_select(many, 65, 0), -EINVAL);
    NP_CHECK_EQ(np_chan_len(c), 1);
    NP_CHECK_EQ(np_select(many, INT_MAX, 0), -EINVAL);
    NP_CHECK_EQ(np_select(many, 64, 0), 63);
    NP_CHECK_EQ(many[63].result, 0);
    NP_CHECK_EQ(v, 1);
    NP_CHECK_OK(np_chan_free(c));
}

/* -EINVAL for a bad op (on a nil case too), NULL cases with n > 0, n < 0,
 * n > 64; nothing performed. n = 64 works. */
static void t_select_einval(void)
{
    run_n(1, body_einval);
}

static void body_select_ebadf(void)
{
    np_chan ready = mk(8, 2), gone = mk(8, 1);
    NP_CHECK_OK(np_chan_free(gone));
    send_ok(ready, 1);
    uint64_t v = CANARY, w = 2;
    np_select_case cs[2] = { { ready, NP_RECV, &v, 99 }, { gone, NP_RECV, &w, 99 } };
    NP_CHECK_EQ(np_select(cs, 2, 0), -EBADF);
    NP_CHECK_EQ(np_select(cs, 2, np_now() - 1), -EBADF);
    cs[1].op = NP_SEND;
    NP_CHECK_EQ(np_select(cs, 2, 0), -EBADF);
    cs[1].chan = (np_chan){ 0xDEADBEEF12345678ull }; /* forged */
    NP_CHECK_EQ(np_select(cs, 2, 0), -EBADF);
    cs[1].chan = (np_chan){ ready.id ^ 1 };
    NP_CHECK_EQ(np_select(cs, 2, 0), -EBADF);
    NP_CHECK_EQ(v, CANARY); /* nothing performed */
    NP_CHECK_EQ(np_chan_len(ready), 1);
    NP_CHECK_OK(np_chan_free(ready));
}

/* A case naming a freed or forged channel: -EBADF, and the ready case next
 * to it is not performed. */
static void t_select_freed_or_forged_case_ebadf(void)
{
    run_n(1, body_select_ebadf);
}

static np_chan sf_a, sf_b;
static _Atomic int sf_arrived;
static _Atomic int sf_rc;
static void sf_selector(void *arg)
{
    (void)arg;
    uint64_t va = CANARY, vb = CANARY;
    np_select_case cs[2] = { { sf_a, NP_RECV, &va, 99 }, { sf_b, NP_RECV, &vb, 99 } };
    atomic_fetch_add(&sf_arrived, 1);
    atomic_store(&sf_rc, np_select(cs, 2, np_now() + 4 * SLACK));
    NP_CHECK_EQ(va, CANARY);
    NP_CHECK_EQ(vb, CANARY);
}

static void body_select_freed_while_blocked(void)
{
    for (int thread = 0; thread < 2; thread++) {
        grp g = { 0 };
        sf_a = mk(8, 0);
        sf_b = mk(8, 1);
        atomic_store(&sf_arrived, 0);
        atomic_store(&sf_rc, 1);
        if (thread)
            grp_thread(&g, sf_selector, NULL);
        else
            grp_task(&g, sf_selector, NULL);
        await_arrivals(&sf_arrived, 1);
        NP_CHECK_OK(np_chan_free(sf_a));
        grp_wait(&g);
        NP_CHECK_EQ(atomic_load(&sf_rc), -ECANCELED);
        /* Its node on b is gone: a try on b finds no receiver, and b is
         * still a working channel. */
        uint64_t v = 4;
        NP_CHECK_OK(np_chan_send(sf_b, &v, np_now() - 1)); /* buffered room */
        NP_CHECK_EQ(np_chan_len(sf_b), 1);
        NP_CHECK_EQ(recv_ok(sf_b), 4);
        NP_CHECK_OK(np_chan_free(sf_b));
    }
}

/* A select blocked on a channel that is freed returns -ECANCELED (task and
 * plain thread), performing nothing; its other channels stay usable. */
static void t_select_freed_while_blocked_ecanceled(void)
{
    run_n(2, body_select_freed_while_blocked);
}

/* ---- no ghost waiters ---- */

static np_chan gw_a, gw_b;
static _Atomic int gw_arrived;
static _Atomic int gw_rc;
static void gw_selector(void *arg)
{
    (void)arg;
    uint64_t va = CANARY, vb = CANARY;
    np_select_case cs[2] = { { gw_a, NP_RECV, &va, 99 }, { gw_b, NP_RECV, &vb, 99 } };
    atomic_fetch_add(&gw_arrived, 1);
    int rc = np_select(cs, 2, np_now() + 4 * SLACK);
    atomic_store(&gw_rc, rc);
    NP_CHECK_EQ(rc, 0);
    NP_CHECK_EQ(va, 321);
    NP_CHECK_EQ(vb, CANARY);
}

static void body_ghosts(void)
{
    gw_a = mk(8, 0);
    gw_b = mk(8, 0);
    uint64_t v = 1;
    /* A select that timed out. */
    uint64_t x = CANARY, y = CANARY;
    np_select_case cs[2] = { { gw_a, NP_RECV, &x, 99 }, { gw_b, NP_RECV, &y, 99 } };
    int64_t d = np_now() + 10 * MS;
    NP_CHECK_EQ(np_select(cs, 2, d), -ETIMEDOUT);
    CHECK_AT_DEADLINE(d);
    NP_CHECK_EQ(np_chan_send(gw_a, &v, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_EQ(np_chan_send(gw_b, &v, np_now() - 1), -ETIMEDOUT);
    /* A select that completed on a: its node on b is gone. */
    for (int thread = 0; thread < 2; thread++) {
        grp g = { 0 };
        atomic_store(&gw_arrived, 0);
        if (thread)
            grp_thread(&g, gw_selector, NULL);
        else
            grp_task(&g, gw_selector, NULL);
        await_arrivals(&gw_arrived, 1);
        v = 321;
        NP_CHECK_OK(np_chan_send(gw_a, &v, np_now() + SLACK));
        grp_wait(&g);
        NP_CHECK_EQ(np_chan_send(gw_b, &v, np_now() - 1), -ETIMEDOUT);
        NP_CHECK_EQ(np_chan_send(gw_a, &v, np_now() - 1), -ETIMEDOUT);
    }
    NP_CHECK_OK(np_chan_free(gw_a));
    NP_CHECK_OK(np_chan_free(gw_b));
}

/* A select that timed out, or completed on one case, leaves no waiter on
 * its other channels: a later try on them finds no partner. */
static void t_select_leaves_no_ghost_waiters(void)
{
    run_n(2, body_ghosts);
}

/* ---- mixed send and receive cases ---- */

static np_chan mx_a, mx_b;
static _Atomic int mx_arrived;
static void mx_partner(void *arg)
{
    int mode = (int)(intptr_t)arg;
    atomic_fetch_add(&mx_arrived, 1);
    if (mode == NP_RECV) {
        NP_CHECK_EQ(recv_ok(mx_a), 5); /* takes the select's send */
    } else {
        send_ok(mx_b, 6); /* meets the select's receive */
    }
}

static void body_mixed(void)
{
    mx_a = mk(8, 0);
    mx_b = mk(8, 0);
    grp g = { 0 };
    for (int round = 0; round < 8; round++) {
        int mode = round % 2 ? NP_SEND : NP_RECV;
        uint64_t out = 5, in = CANARY;
        np_select_case cs[2] = { { mx_a, NP_SEND, &out, 99 }, { mx_b, NP_RECV, &in, 99 } };
        atomic_store(&mx_arrived, 0);
        if (round % 4 >= 2)
            grp_thread(&g, mx_partner, (void *)(intptr_t)mode);
        else
            grp_task(&g, mx_partner, (void *)(intptr_t)mode);
        if (round % 3 == 0)
            await_arrivals(&mx_arrived, 1); /* partner first */
        int rc = np_select(cs, 2, np_now() + SLACK);
        if (mode == NP_RECV) {
            NP_CHECK_EQ(rc, 0);
            NP_CHECK_EQ(cs[0].result, 0);
            NP_CHECK_EQ(in, CANARY); /* the receive was not performed */
        } else {
            NP_CHECK_EQ(rc, 1);
            NP_CHECK_EQ(cs[1].result, 0);
            NP_CHECK_EQ(in, 6);
        }
        grp_wait(&g);
        uint64_t t;
        NP_CHECK_EQ(np_chan_recv(mx_a, &t, np_now() - 1), -ETIMEDOUT); /* no send left */
    }
    NP_CHECK_OK(np_chan_free(mx_a));
    NP_CHECK_OK(np_chan_free(mx_b));
}

/* Send and receive cases mixed in one select: a receiver elsewhere takes
 * the send case, or a sender elsewhere meets the receive case; exactly the
 * chosen one is performed (partner first or select first; tasks and
 * threads). */
static void t_select_mixed_send_and_recv(void)
{
    run_n(2, body_mixed);
}

/* ---- racing senders, one selecting receiver ---- */

#define RS_SENDERS 5
#define RS_PER (4000 / SCALE)
static np_chan rs_a, rs_b;
static _Atomic unsigned char rs_seen[RS_SENDERS * RS_PER];

static void rs_sender(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    for (uint64_t k = 0; k < RS_PER; k++) {
        uint64_t v = id * RS_PER + k;
        NP_CHECK_OK(np_chan_send(k % 2 ? rs_a : rs_b, &v, 0));
    }
}

static void body_racing_senders(void)
{
    grp g = { 0 };
    rs_a = mk(8, 0);
    rs_b = mk(8, 1);
    for (int i = 0; i < RS_SENDERS; i++) {
        if (i == 2)
            grp_thread(&g, rs_sender, (void *)(uintptr_t)i);
        else
            grp_task(&g, rs_sender, (void *)(uintptr_t)i);
    }
    uint64_t sum = 0;
    for (int n = 0; n < RS_SENDERS * RS_PER; n++) {
        uint64_t va = CANARY, vb = CANARY, vn = CANARY;
        np_select_case cs[3] = { { rs_a, NP_RECV, &va, 99 }, { (np_chan){ 0 }, NP_RECV, &vn, 99 },
                                 { rs_b, NP_RECV, &vb, 99 } };
        int rc = np_select(cs, 3, n % 5 == 0 ? np_now() + SLACK : 0);
        NP_CHECK(rc == 0 || rc == 2);
        NP_CHECK_EQ(cs[rc].result, 0);
        uint64_t v = rc == 0 ? va : vb;
        NP_CHECK_EQ(rc == 0 ? vb : va, CANARY); /* exactly one performed */
        NP_CHECK_EQ(vn, CANARY);
        NP_CHECK_LT(v, (uint64_t)RS_SENDERS * RS_PER);
        NP_CHECK_EQ((v % RS_PER) % 2, rc == 0 ? 1 : 0); /* came from that channel */
        NP_CHECK_EQ(atomic_fetch_add(&rs_seen[v], 1), 0);
        sum += v;
    }
    grp_wait(&g);
    uint64_t total = (uint64_t)RS_SENDERS * RS_PER;
    NP_CHECK_EQ(sum, total * (total - 1) / 2);
    /* Nothing extra. */
    uint64_t t;
    np_select_case cs[2] = { { rs_a, NP_RECV, &t, 99 }, { rs_b, NP_RECV, &t, 99 } };
    NP_CHECK_EQ(np_select(cs, 2, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_OK(np_chan_free(rs_a));
    NP_CHECK_OK(np_chan_free(rs_b));
}

/* Several senders (4 tasks, 1 plain thread) race one selecting receiver on
 * an unbuffered and a buffered channel: every element arrives exactly once,
 * through the case of its channel, the other case untouched. */
static void t_select_exactly_one_case_racing_senders(void)
{
    run_n(4, body_racing_senders);
}

/* ---- select against select ---- */

#define SS_SENDERS 4
#define SS_PER (3000 / SCALE)
static np_chan ss_a, ss_b;
static _Atomic unsigned char ss_via_send[SS_SENDERS * SS_PER];
static _Atomic unsigned char ss_via_recv[SS_SENDERS * SS_PER];
static _Atomic int ss_received;

static void ss_sender(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    for (uint64_t k = 0; k < SS_PER; k++) {
        uint64_t v = id * SS_PER + k; /* offered on both: sent once */
        np_select_case cs[2] = { { ss_a, NP_SEND, &v, 99 }, { ss_b, NP_SEND, &v, 99 } };
        int rc = np_select(cs, 2, 0);
        NP_CHECK(rc == 0 || rc == 1);
        NP_CHECK_EQ(cs[rc].result, 0);
        NP_CHECK_EQ(atomic_exchange(&ss_via_send[v], (unsigned char)(rc + 1)), 0);
    }
}

static void ss_receiver(void *arg)
{
    (void)arg;
    int total = SS_SENDERS * SS_PER;
    while (atomic_load(&ss_received) < total) {
        uint64_t va = CANARY, vb = CANARY;
        np_select_case cs[2] = { { ss_a, NP_RECV, &va, 99 }, { ss_b, NP_RECV, &vb, 99 } };
        int rc = np_select(cs, 2, np_now() + 5 * MS);
        if (rc == -ETIMEDOUT)
            continue;
        NP_CHECK(rc == 0 || rc == 1);
        NP_CHECK_EQ(cs[rc].result, 0);
        uint64_t v = rc == 0 ? va : vb;
        NP_CHECK_EQ(rc == 0 ? vb : va, CANARY);
        NP_CHECK_LT(v, (uint64_t)total);
        NP_CHECK_EQ(atomic_exchange(&ss_via_recv[v], (unsigned char)(rc + 1)), 0);
        atomic_fetch_add(&ss_received, 1);
    }
}

static void body_select_vs_select(void)
{
    grp g = { 0 };
    ss_a = mk(8, 0);
    ss_b = mk(8, 0);
    for (int i = 0; i < SS_SENDERS; i++) {
        if (i == 1)
            grp_thread(&g, ss_sender, (void *)(uintptr_t)i);
        else
            grp_task(&g, ss_sender, (void *)(uintptr_t)i);
    }
    grp_task(&g, ss_receiver, NULL);
    grp_task(&g, ss_receiver, NULL);
    grp_thread(&g, ss_receiver, NULL);
    grp_wait(&g);
    NP_CHECK_EQ(atomic_load(&ss_received), SS_SENDERS * SS_PER);
    for (int v = 0; v < SS_SENDERS * SS_PER; v++)
        NP_CHECK_MSG(ss_via_send[v] != 0 && ss_via_send[v] == ss_via_recv[v],
                     "value %d: sender says case %d, receiver case %d", v, ss_via_send[v],
                     ss_via_recv[v]);
    NP_CHECK_OK(np_chan_free(ss_a));
    NP_CHECK_OK(np_chan_free(ss_b));
}

/* Selecting senders (each value offered on two unbuffered channels at
 * once) meet selecting receivers: every value is sent once and received
 * once, through the same channel on both sides. */
static void t_select_against_select_each_value_once(void)
{
    run_n(4, body_select_vs_select);
}

/* ---- a channel in several cases, opposite orders ---- */

#define DUP_N (4000 / SCALE)
static np_chan dup_a, dup_b;
static _Atomic long dup_got;

static void dup_selector(void *arg)
{
    int order = (int)(intptr_t)arg;
    for (int i = 0; i < DUP_N; i++) {
        uint64_t e[4] = { CANARY, CANARY, CANARY, CANARY };
        np_chan x = order ? dup_b : dup_a, y = order ? dup_a : dup_b;
        np_select_case cs[4] = { { x, NP_RECV, &e[0], 99 }, { y, NP_RECV, &e[1], 99 },
                                 { x, NP_RECV, &e[2], 99 }, { y, NP_RECV, &e[3], 99 } };
        int rc = np_select(cs, 4, np_now() + SLACK);
        NP_CHECK_MSG(rc >= 0 && rc < 4, "select gave %d", rc);
        NP_CHECK_EQ(cs[rc].result, 0);
        int performed = 0;
        for (int k = 0; k < 4; k++)
            performed += e[k] != CANARY;
        NP_CHECK_EQ(performed, 1);
        NP_CHECK_EQ(e[rc], 7);
        atomic_fetch_add(&dup_got, 1);
    }
}

static void dup_sender(void *arg)
{
    int order = (int)(intptr_t)arg;
    for (int i = 0; i < DUP_N; i++) {
        uint64_t v = 7;
        np_chan x = order ? dup_b : dup_a, y = order ? dup_a : dup_b;
        np_select_case cs[3] = { { y, NP_SEND, &v, 99 }, { x, NP_SEND, &v, 99 },
                                 { y, NP_SEND, &v, 99 } };
        int rc = np_select(cs, 3, np_now() + SLACK);
        NP_CHECK_MSG(rc >= 0 && rc < 3, "select gave %d", rc);
        NP_CHECK_EQ(cs[rc].result, 0);
    }
}

static void body_dup(void)
{
    grp g = { 0 };
    dup_a = mk(8, 0);
    dup_b = mk(8, 0);
    /* Alone: the same channel twice, nothing ready, then a sender. */
    uint64_t e0 = CANARY, e1 = CANARY;
    np_select_case cs[2] = { { dup_a, NP_RECV, &e0, 99 }, { dup_a, NP_RECV, &e1, 99 } };
    int64_t d = np_now() + 10 * MS;
    NP_CHECK_EQ(np_select(cs, 2, d), -ETIMEDOUT);
    CHECK_AT_DEADLINE(d);
    /* Selectors and senders taking a and b in opposite orders, each
     * naming a channel more than once: no deadlock, one case each. */
    grp_task(&g, dup_selector, (void *)(intptr_t)0);
    grp_task(&g, dup_selector, (void *)(intptr_t)1);
    grp_thread(&g, dup_selector, (void *)(intptr_t)1);
    grp_task(&g, dup_sender, (void *)(intptr_t)0);
    grp_task(&g, dup_sender, (void *)(intptr_t)1);
    grp_thread(&g, dup_sender, (void *)(intptr_t)0);
    grp_wait(&g);
    NP_CHECK_EQ(atomic_load(&dup_got), 3L * DUP_N);
    NP_CHECK_OK(np_chan_free(dup_a));
    NP_CHECK_OK(np_chan_free(dup_b));
}

/* A channel named in several cases of one select, and selects taking two
 * channels in opposite orders concurrently (tasks and plain threads, 4
 * workers): no deadlock, exactly one case performed each time. */
static void t_select_repeated_channels_opposite_orders(void)
{
    run_n(4, body_dup);
}

/* ---- closed channels in select ---- */

static np_chan sc_ch;
static _Atomic int sc_arrived;
static void sc_selector(void *arg)
{
    (void)arg;
    uint64_t v = CANARY, n = CANARY;
    np_select_case cs[2] = { { (np_chan){ 0 }, NP_RECV, &n, 99 }, { sc_ch, NP_RECV, &v, 99 } };
    atomic_fetch_add(&sc_arrived, 1);
    NP_CHECK_EQ(np_select(cs, 2, np_now() + 4 * SLACK), 1);
    NP_CHECK_EQ(cs[1].result, -EPIPE);
    NP_CHECK_EQ(v, 0);
    NP_CHECK_EQ(n, CANARY);
}

static void body_select_closed(void)
{
    /* Already closed, buffered: elements first, then -EPIPE zeroed. */
    np_chan c = mk(8, 2), other = mk(8, 0);
    send_ok(c, 8);
    NP_CHECK_OK(np_chan_close(c));
    uint64_t v = CANARY, o = CANARY;
    np_select_case cs[2] = { { other, NP_RECV, &o, 99 }, { c, NP_RECV, &v, 99 } };
    NP_CHECK_EQ(np_select(cs, 2, 0), 1);
    NP_CHECK_EQ(cs[1].result, 0);
    NP_CHECK_EQ(v, 8);
    for (int i = 0; i < 10; i++) {
        v = CANARY;
        NP_CHECK_EQ(np_select(cs, 2, i % 2 ? 0 : np_now() - 1), 1);
        NP_CHECK_EQ(cs[1].result, -EPIPE);
        NP_CHECK_EQ(v, 0);
        NP_CHECK_EQ(o, CANARY);
    }
    /* A send case on a closed channel proceeds, with -EPIPE. */
    uint64_t s = 3;
    np_select_case ss[2] = { { other, NP_RECV, &o, 99 }, { c, NP_SEND, &s, 99 } };
    NP_CHECK_EQ(np_select(ss, 2, 0), 1);
    NP_CHECK_EQ(ss[1].result, -EPIPE);
    NP_CHECK_EQ(np_chan_len(c), 0);
    NP_CHECK_OK(np_chan_free(c));
    /* Blocked, then closed: woken with that case, -EPIPE. */
    for (int thread = 0; thread < 2; thread++) {
        grp g = { 0 };
        sc_ch = mk(8, thread ? 1 : 0);
        atomic_store(&sc_arrived, 0);
        if (thread)
            grp_thread(&g, sc_selector, NULL);
        else
            grp_task(&g, sc_selector, NULL);
        await_arrivals(&sc_arrived, 1);
        NP_CHECK_OK(np_chan_close(sc_ch));
        grp_wait(&g);
        NP_CHECK_OK(np_chan_free(sc_ch));
    }
    NP_CHECK_OK(np_chan_free(other));
}

/* Select on a closed channel returns that case with result -EPIPE (receive:
 * once drained, element zeroed; send: at once); a blocked select is woken
 * by the close the same way. */
static void t_select_closed_channel_case_epipe(void)
{
    run_n(2, body_select_closed);
}

static void body_self(void)
{
    np_chan u = mk(8, 0);
    uint64_t out = 1, in = CANARY;
    np_select_case cs[2] = { { u, NP_SEND, &out, 99 }, { u, NP_RECV, &in, 99 } };
    int64_t d = np_now() + 20 * MS;
    NP_CHECK_EQ(np_select(cs, 2, d), -ETIMEDOUT);
    CHECK_AT_DEADLINE(d);
    NP_CHECK_EQ(in, CANARY);
    NP_CHECK_EQ(np_select(cs, 2, np_now() - 1), -ETIMEDOUT);
    NP_CHECK_OK(np_chan_free(u));
}

/* A select never meets itself: send and receive on one unbuffered channel
 * in the same select, with nobody else, times out. */
static void t_select_does_not_match_itself(void)
{
    run_n(1, body_self);
}

/* ---- idle stacks ---- */

static np_chan is_ch;
static _Atomic int is_arrived;
static void is_sender(void *arg)
{
    (void)arg;
    big b; /* on this task's stack: copied straight to the receiver */
    big_fill(&b, 4242);
    atomic_fetch_add(&is_arrived, 1);
    NP_CHECK_OK(np_chan_send(is_ch, &b, 0));
}

static void is_receiver(void *arg)
{
    (void)arg;
    big b; /* on this task's stack: the sender copies into it */
    memset(&b, 0, sizeof b);
    atomic_fetch_add(&is_arrived, 1);
    NP_CHECK_OK(np_chan_recv(is_ch, &b, 0));
    big_check(&b, 4343);
}

static void body_idle_stack(void)
{
    grp g = { 0 };
    is_ch = mk(sizeof(big), 0);
    /* A sender blocked far longer than idle_stack_ns, then received. */
    atomic_store(&is_arrived, 0);
    grp_task(&g, is_sender, NULL);
    await_arrivals(&is_arrived, 1);
    np_sleep(60 * MS);
    big b;
    memset(&b, 0, sizeof b);
    NP_CHECK_OK(np_chan_recv(is_ch, &b, 0));
    big_check(&b, 4242);
    grp_wait(&g);
    /* A receiver blocked that long, then sent to. */
    atomic_store(&is_arrived, 0);
    grp_task(&g, is_receiver, NULL);
    await_arrivals(&is_arrived, 1);
    np_sleep(60 * MS);
    big_fill(&b, 4343);
    NP_CHECK_OK(np_chan_send(is_ch, &b, 0));
    grp_wait(&g);
    NP_CHECK_OK(np_chan_free(is_ch));
}

/* With idle_stack_ns set (1 ms), a task blocked on an unbuffered channel
 * for 60+ ms still has its element where the partner copies it from or
 * into (the direct copy between stacks). */
static void t_chan_direct_copy_with_idle_stacks(void)
{
    np_config c = { .workers = 2, .idle_stack_ns = 1 * MS };
    NP_CHECK_OK(np_run(&c, run_body, (void *)body_idle_stack));
    grp_free_retired();
}

/* ========================================================================== */
/* ---- the named tests ---------------------------------------------- */

#define PP_ROUNDS 10000
static np_chan pp_ping, pp_pong;

static void pp_thread(void *arg)
{
    (void)arg;
    for (uint64_t i = 0; i < PP_ROUNDS; i++) {
        send_ok(pp_ping, i);
        NP_CHECK_EQ(recv_ok(pp_pong), i * 2 + 1);
    }
}

static void body_pingpong(void)
{
    grp g = { 0 };
    pp_ping = mk(8, 0);
    pp_pong = mk(8, 0);
    grp_thread(&g, pp_thread, NULL);
    for (uint64_t i = 0; i < PP_ROUNDS; i++) {
        uint64_t v = recv_ok(pp_ping);
        NP_CHECK_EQ(v, i);
        send_ok(pp_pong, v * 2 + 1);
    }
    grp_wait(&g);
    NP_CHECK_OK(np_chan_free(pp_ping));
    NP_CHECK_OK(np_chan_free(pp_pong));
}

/* Ping-pong between a plain thread and a task over two unbuffered
 * channels: 10,000 round trips, every value in order. */
static void t_pingpong_thread_task_10k(void)
{
    run_n(2, body_pingpong);
}

#define RING 100
#define HOPS (SAN ? 30000 : 100000)
static np_chan ring[RING];
static int ring_recvs[RING];
static _Atomic int ring_final = -1;

static void ring_node(void *arg)
{
    int i = (int)(intptr_t)arg;
    np_chan left = ring[i], right = ring[(i + 1) % RING];
    for (;;) {
        uint64_t tok = CANARY;
        int rc = np_chan_recv(left, &tok, 0);
        if (rc == -EPIPE) {
            NP_CHECK_EQ(tok, 0);
            NP_CHECK_OK(np_chan_close(right)); /* pass the end on */
            return;
        }
        NP_CHECK_OK(rc);
        ring_recvs[i]++;
        NP_CHECK_EQ(tok % RING, (uint64_t)i); /* the token went round in order */
        if (tok == HOPS) {
            atomic_store(&ring_final, i);
            NP_CHECK_OK(np_chan_close(right));
            return;
        }
        tok++;
        NP_CHECK_OK(np_chan_send(right, &tok, 0));
    }
}

static void body_ring(void)
{
    grp g = { 0 };
    for (int i = 0; i < RING; i++)
        ring[i] = mk(8, 0);
    for (int i = 0; i < RING; i++)
        grp_task(&g, ring_node, (void *)(intptr_t)i);
    send_ok(ring[0], 0);
    grp_wait(&g);
    for (int i = 0; i < RING; i++) {
        uint64_t v;
        NP_CHECK_EQ(np_chan_recv(ring[i], &v, 0), -EPIPE); /* each closed once */
        NP_CHECK_OK(np_chan_free(ring[i]));
    }
}

/* A ring of 100 tasks (each receives from its left channel and sends to its
 * right) passes a token 100,000 hops on 4 workers; every task saw its
 * share in order, and the close propagated round the ring ends them all. */
static void t_token_ring_100_tasks(void)
{
    run_n(4, body_ring);
    NP_CHECK_EQ(atomic_load(&ring_final), HOPS % RING);
    long total = 0;
    for (int i = 0; i < RING; i++) {
        total += ring_recvs[i];
        NP_CHECK_GE(ring_recvs[i], HOPS / RING);
    }
    NP_CHECK_EQ(total, HOPS + 1);
}

#define PC_PROD 8
#define PC_CONS 8
#define PC_PER (SAN ? 1500 : 20000)
static np_chan pc_ch;
static np_waitgroup pc_producers;
static _Atomic uint64_t pc_sum, pc_count;
static _Atomic unsigned char pc_seen[(PC_PROD + 1) * PC_PER];

static void pc_producer(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    for (uint64_t k = 0; k < PC_PER; k++)
        send_ok(pc_ch, id * PC_PER + k);
    NP_CHECK_OK(np_waitgroup_done(&pc_producers));
}

static void pc_consumer(void *arg)
{
    (void)arg;
    uint64_t sum = 0, count = 0;
    for (;;) {
        uint64_t v = CANARY;
        int rc = np_chan_recv(pc_ch, &v, 0);
        if (rc == -EPIPE)
            break;
        NP_CHECK_OK(rc);
        NP_CHECK_LT(v, (uint64_t)(PC_PROD + 1) * PC_PER);
        NP_CHECK_EQ(atomic_fetch_add(&pc_seen[v], 1), 0);
        sum += v;
        count++;
    }
    atomic_fetch_add(&pc_sum, sum);
    atomic_fetch_add(&pc_count, count);
}

static void pc_closer(void *arg)
{
    (void)arg;
    NP_CHECK_OK(np_waitgroup_wait(&pc_producers, 0));
    NP_CHECK_OK(np_chan_close(pc_ch));
}

static void body_prodcons(void)
{
    grp g = { 0 };
    pc_ch = mk(8, 16);
    NP_CHECK_OK(np_waitgroup_add(&pc_producers, PC_PROD + 1));
    for (int i = 0; i < PC_CONS; i++)
        grp_task(&g, pc_consumer, NULL);
    grp_thread(&g, pc_consumer, NULL);
    for (int i = 0; i < PC_PROD; i++)
        grp_task(&g, pc_producer, (void *)(uintptr_t)i);
    grp_thread(&g, pc_producer, (void *)(uintptr_t)PC_PROD);
    grp_task(&g, pc_closer, NULL);
    grp_wait(&g);
    uint64_t n = (uint64_t)(PC_PROD + 1) * PC_PER;
    NP_CHECK_EQ(atomic_load(&pc_count), n);
    NP_CHECK_EQ(atomic_load(&pc_sum), n * (n - 1) / 2);
    NP_CHECK_EQ(np_chan_len(pc_ch), 0);
    NP_CHECK_OK(np_chan_free(pc_ch));
}

/* 8 producer and 8 consumer tasks, plus a producing and a consuming plain
 * thread, on 4 workers over a buffered channel; closed when the producers
 * are done: count, sum and uniqueness exact. Sized for ThreadSanitizer. */
static void t_prodcons_8x8_with_threads(void)
{
    run_n(4, body_prodcons);
}

/* ---- stress: select with deadlines, close and free races ---- */

#define ST_SEND_TASKS 4
#define ST_RECV_TASKS 4
#define ST_SENDERS (ST_SEND_TASKS + 1)
#define ST_PER (SAN ? 20000 : 100000)
#define ST_ROUNDS (SAN ? 5 : 14)
static np_chan st_ch[3];          /* a: unbuffered, b: buffered 4, c: unbuffered */
static _Atomic int st_freed = -1; /* the index freed this round, set before the free */
static _Atomic unsigned char st_sent[ST_SENDERS * ST_PER];  /* 1 + channel index */
static _Atomic unsigned char st_recvd[ST_SENDERS * ST_PER]; /* 1 + channel index */
static _Atomic long st_n_sent, st_n_recvd, st_n_failed;

static int64_t st_deadline(uint64_t *rng)
{
    switch (rng_next(rng) % 6) {
    case 0: return np_now() - 1;
    case 1: return np_now() + 50 * NP_MICROSECOND;
    case 2: return np_now() + 1 * MS;
    case 3: return np_now() + 3 * MS;
    case 4: return np_now() + 10 * MS;
    default: return 0;
    }
}

/* A select (or a single send / receive, for use_single) over the live
 * channels; returns the channel index that proceeded (result in *res), or
 * -1 with *res the call's error. */
static int st_op(int op, unsigned live, uint64_t *elems, bool single, uint64_t *rng, int *res,
                 int *target)
{
    *target = -1;
    np_select_case cs[3];
    int map[3], n = 0;
    for (int i = 0; i < 3; i++) {
        if (live & (1u << i)) {
            elems[i] = op == NP_RECV ? CANARY : elems[i];
            cs[n] = (np_select_case){ st_ch[i], op, &elems[i], 99 };
            map[n++] = i;
        }
    }
    int64_t d = st_deadline(rng);
    if (single) {
        int j = (int)(rng_next(rng) % (uint64_t)n);
        int rc = op == NP_SEND ? np_chan_send(cs[j].chan, cs[j].elem, d)
                               : np_chan_recv(cs[j].chan, cs[j].elem, d);
        if (rc == 0 || rc == -EPIPE) {
            *res = rc;
            return map[j];
        }
        *res = rc;
        *target = map[j];
        return -1;
    }
    int rc = np_select(cs, n, d);
    if (rc >= 0) {
        NP_CHECK_LT(rc, n);
        *res = cs[rc].result;
        if (op == NP_RECV)
            for (int k = 0; k < n; k++)
                if (k != rc)
                    NP_CHECK_EQ(*(uint64_t *)cs[k].elem, CANARY); /* exactly one */
        return map[rc];
    }
    *res = rc;
    return -1;
}

static void st_failed_call(int rc, int target, unsigned *live)
{
    if (rc == -ETIMEDOUT)
        return;
    NP_CHECK_MSG(rc == -EBADF || rc == -ECANCELED, "unexpected %d", rc);
    int f = atomic_load(&st_freed);
    NP_CHECK_MSG(f >= 0 && (*live & (1u << f)), "%d but no live channel was freed", rc);
    NP_CHECK_MSG(target < 0 || target == f, "%d from channel %d, which was not freed (%d was)",
                 rc, target, f);
    *live &= ~(1u << f);
}

static void st_sender(void *arg)
{
    uint64_t id = (uint64_t)(uintptr_t)arg;
    bool thread = np_sleep(0) == -EPERM;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (id + 1) + (uint64_t)np_now();
    unsigned live = 7;
    uint64_t k = 0;
    while (k < ST_PER && live) {
        uint64_t v = id * ST_PER + k, elems[3] = { v, v, v };
        int res, target;
        int ch = st_op(NP_SEND, live, elems, thread && rng_next(&rng) % 2, &rng, &res, &target);
        if (ch >= 0 && res == 0) {
            NP_CHECK_EQ(atomic_exchange(&st_sent[v], (unsigned char)(ch + 1)), 0);
            atomic_fetch_add(&st_n_sent, 1);
            k++;
        } else if (ch >= 0) {
            NP_CHECK_EQ(res, -EPIPE);
            NP_CHECK_NE(ch, atomic_load(&st_freed));
            live &= ~(1u << ch);
            atomic_fetch_add(&st_n_failed, 1);
        } else {
            st_failed_call(res, target, &live);
            atomic_fetch_add(&st_n_failed, 1);
        }
    }
}

static void st_receiver(void *arg)
{
    (void)arg;
    bool thread = np_sleep(0) == -EPERM;
    uint64_t rng = 0xD1B54A32D192ED03ull * ((uint64_t)(uintptr_t)arg + 7) + (uint64_t)np_now();
    unsigned live = 7;
    while (live) {
        uint64_t elems[3];
        int res, target;
        int ch = st_op(NP_RECV, live, elems, thread && rng_next(&rng) % 2, &rng, &res, &target);
        if (ch >= 0 && res == 0) {
            uint64_t v = elems[ch];
            NP_CHECK_LT(v, (uint64_t)ST_SENDERS * ST_PER);
            unsigned char prev = atomic_exchange(&st_recvd[v], (unsigned char)(ch + 1));
            NP_CHECK_MSG(prev == 0, "value %" PRIu64 " received twice", v);
            atomic_fetch_add(&st_n_recvd, 1);
        } else if (ch >= 0) {
            NP_CHECK_EQ(res, -EPIPE);
            NP_CHECK_EQ(elems[ch], 0);
            NP_CHECK_NE(ch, atomic_load(&st_freed));
            live &= ~(1u << ch);
        } else {
            st_failed_call(res, target, &live);
        }
    }
}

static void body_stress(void)
{
    uint64_t rng = (uint64_t)np_now() | 1;
    long total_sent = 0, total_recvd = 0, total_dropped = 0;
    for (int round = 0; round < ST_ROUNDS; round++) {
        grp g = { 0 };
        memset((void *)st_sent, 0, sizeof st_sent);
        memset((void *)st_recvd, 0, sizeof st_recvd);
        atomic_store(&st_n_sent, 0);
        atomic_store(&st_n_recvd, 0);
        atomic_store(&st_freed, -1);
        st_ch[0] = mk(8, 0);
        st_ch[1] = mk(8, 4);
        st_ch[2] = mk(8, 0);
        /* Which one gets freed (the others are closed): c, or the buffered
         * b (its buffered elements are then dropped). */
        int freed = round % 3 == 2 ? 1 : 2;
        for (int i = 0; i < ST_SEND_TASKS; i++)
            grp_task(&g, st_sender, (void *)(uintptr_t)i);
        grp_thread(&g, st_sender, (void *)(uintptr_t)ST_SEND_TASKS);
        for (int i = 0; i < ST_RECV_TASKS; i++)
            grp_task(&g, st_receiver, (void *)(uintptr_t)i);
        grp_thread(&g, st_receiver, (void *)(uintptr_t)ST_RECV_TASKS);
        int order[3] = { 1, 2, 0 };
        if (round % 2)
            order[0] = 2, order[1] = 1;
        for (int s = 0; s < 3; s++) {
            np_sleep((int64_t)(rng_next(&rng) % 30) * MS + 2 * MS);
            int i = order[s];
            if (i == freed) {
                atomic_store(&st_freed, i);
                NP_CHECK_OK(np_chan_free(st_ch[i]));
            } else {
                NP_CHECK_OK(np_chan_close(st_ch[i]));
            }
        }
        grp_wait(&g);
        long sent = atomic_load(&st_n_sent), recvd = atomic_load(&st_n_recvd), lost = 0;
        for (long v = 0; v < (long)ST_SENDERS * ST_PER; v++) {
            unsigned char s = atomic_load(&st_sent[v]), r = atomic_load(&st_recvd[v]);
            if (s == r)
                continue;
            NP_CHECK_MSG(r == 0, "round %d: value %ld received via %d but sent via %d", round, v,
                         r - 1, s - 1);
            /* Sent, never received: only what a freed buffer dropped. */
            NP_CHECK_MSG(s - 1 == freed && freed == 1,
                         "round %d: value %ld sent via channel %d was lost (freed: %d)", round, v,
                         s - 1, freed);
            lost++;
        }
        NP_CHECK_LE(lost, 4); /* the buffer's capacity */
        NP_CHECK_EQ(sent, recvd + lost);
        for (int i = 0; i < 3; i++) {
            if (i == freed) {
                NP_CHECK_EQ(np_chan_len(st_ch[i]), -EBADF);
            } else {
                NP_CHECK_EQ(np_chan_len(st_ch[i]), 0); /* drained */
                NP_CHECK_OK(np_chan_free(st_ch[i]));
            }
        }
        total_sent += sent;
        total_recvd += recvd;
        total_dropped += lost;
    }
    NP_CHECK_GT(total_recvd, 0);
    printf("  stress: %ld sent = %ld received + %ld dropped by free; %ld failed attempts\n",
           total_sent, total_recvd, total_dropped, atomic_load(&st_n_failed));
}

/* Stress: 4 sending and 4 receiving tasks and a sending and a receiving
 * plain thread, on 4 workers, select (and single send / receive) with
 * deadlines from past to none over three channels while they are closed
 * and freed under them. Conservation: every value sent was received once,
 * via the channel it was sent on, or dropped from the freed buffer. */
static void t_stress_select_close_free(void)
{
    run_n(4, body_stress);
}

NP_TEST_LIST(NP_CASE(t_chan_make_bad_sizes_einval),
             NP_CASE(t_chan_len_cap),
             NP_CASE(t_chan_no_runtime),
             NP_CASE(t_chan_buffered_fifo_order),
             NP_CASE(t_chan_buffered_fifo_concurrent),
             NP_CASE(t_chan_deadlines_never_early),
             NP_CASE(t_chan_past_deadline_is_try),
             NP_CASE(t_chan_unbuffered_try_with_blocked_partner),
             NP_CASE(t_chan_unbuffered_rendezvous),
             NP_CASE(t_chan_elem_size_zero),
             NP_CASE(t_chan_large_elements_by_value),
             NP_CASE(t_chan_direct_copy_with_idle_stacks),
             NP_CASE(t_chan_close_drains_then_epipe_zeroed),
             NP_CASE(t_chan_send_on_closed_and_close_twice_epipe),
             NP_CASE(t_chan_close_wakes_every_blocked_caller),
             NP_CASE(t_chan_free_wakes_ecanceled_then_ebadf),
             NP_CASE(t_chan_bad_ids_ebadf),
             NP_CASE(t_chan_nil_blocks_until_deadline),
             NP_CASE(t_select_fairness),
             NP_CASE(t_select_nil_cases_never_chosen),
             NP_CASE(t_select_past_deadline_is_default),
             NP_CASE(t_select_n0_waits_for_deadline),
             NP_CASE(t_select_einval),
             NP_CASE(t_select_freed_or_forged_case_ebadf),
             NP_CASE(t_select_freed_while_blocked_ecanceled),
             NP_CASE(t_select_leaves_no_ghost_waiters),
             NP_CASE(t_select_mixed_send_and_recv),
             NP_CASE(t_select_exactly_one_case_racing_senders),
             NP_CASE(t_select_against_select_each_value_once),
             NP_CASE(t_select_repeated_channels_opposite_orders),
             NP_CASE(t_select_closed_channel_case_epipe),
             NP_CASE(t_select_does_not_match_itself),
             NP_CASE(t_pingpong_thread_task_10k),
             NP_CASE(t_token_ring_100_tasks),
             NP_CASE(t_prodcons_8x8_with_threads),
             NP_CASE(t_stress_select_close_free))
