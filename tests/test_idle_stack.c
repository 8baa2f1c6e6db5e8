/* Idle stacks (np_config.idle_stack_ns): a task blocked long enough in
 * network I/O or np_sleep has its stack's memory released, and finds every
 * byte of its stack where it left it when it runs again. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "runtime/idle_stack.h"
#include "runtime/stack.h"
#include "netpoll.h"
#include "np_test.h"

enum { NCONN = 48, BUF = 3000 };

static unsigned char pattern(int idx, int i)
{
    return (unsigned char)((idx * 131 + i * 7) ^ (i >> 5));
}

static bool resident(const void *p)
{
    long ps = sysconf(_SC_PAGESIZE);
    unsigned char v = 0;
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)(ps - 1));
    NP_CHECK_OK(mincore(page, (size_t)ps, &v));
    return v & 1;
}

typedef struct slot {
    int idx;
    np_conn srv, cli;
    bool use_read;             /* np_read into the stack buffer, else np_wait_readable */
    /* An address in the reader's frame on its task stack, watched with
     * mincore. Not the buffer's: AddressSanitizer's use-after-return mode
     * (the asan preset) puts addressable locals on a heap "fake stack". */
    _Atomic(unsigned char *) frame_at;
    bool buf_on_stack;         /* the buffer is on the task stack after all */
    _Atomic int64_t parked_at; /* just before it blocks */
    int64_t released_at;       /* when the main task first saw its page gone */
    _Atomic int done, bad;
} slot;

typedef struct world {
    int64_t idle_ns;
    np_listener l;
    slot s[NCONN];
    int64_t moved_bytes_peak;
    unsigned long moves_before;
} world;

static void reader(void *arg)
{
    slot *s = arg;
    unsigned char buf[BUF];
    unsigned char *volatile self = buf; /* a pointer into the stack, kept on the stack */
    for (int i = 0; i < BUF; i++)
        buf[i] = pattern(s->idx, i);
    unsigned char *frame = __builtin_frame_address(0);
    s->buf_on_stack = buf < frame && frame - buf < 64 * 1024;
    atomic_store(&s->frame_at, frame);
    atomic_store(&s->parked_at, np_now());
    int check_upto = BUF;
    if (s->use_read) {
        ssize_t n = np_read(s->srv, buf + BUF - 8, 8);
        if (n != 1 || buf[BUF - 8] != (unsigned char)s->idx)
            atomic_store(&s->bad, 1);
        check_upto = BUF - 8;
    } else {
        char ch;
        if (np_wait_readable(s->srv) != 0 || np_read(s->srv, &ch, 1) != 1)
            atomic_store(&s->bad, 1);
    }
    if (self != buf)
        atomic_store(&s->bad, 2);
    for (int i = 0; i < check_upto; i++)
        if (self[i] != pattern(s->idx, i)) {
            atomic_store(&s->bad, 3);
            break;
        }
    atomic_store(&s->done, 1);
}

static void open_conns(world *w)
{
    char addr[64];
    snprintf(addr, sizeof addr, "@np_idle_stack_%d", (int)getpid());
    NP_CHECK_OK(np_listen(&w->l, "unix", addr));
    for (int i = 0; i < NCONN; i++) {
        slot *s = &w->s[i];
        s->idx = i;
        s->use_read = i % 2;
        NP_CHECK_OK(np_dial(&s->cli, "unix", addr, 0));
        NP_CHECK_OK(np_accept(w->l, &s->srv));
    }
}

static void close_conns(world *w)
{
    for (int i = 0; i < NCONN; i++) {
        np_close(w->s[i].srv);
        np_close(w->s[i].cli);
    }
    np_listener_close(w->l);
}

static void wait_all_parked(world *w)
{
    for (int i = 0; i < NCONN; i++)
        while (!atomic_load(&w->s[i].parked_at))
            np_yield();
}

static void wake_all_and_check(world *w)
{
    /* In an order unlike the parking order. */
    for (int k = 0; k < NCONN; k++) {
        slot *s = &w->s[(k * 17) % NCONN];
        unsigned char b = (unsigned char)s->idx;
        NP_CHECK_EQ(np_write(s->cli, &b, 1), 1);
    }
    int64_t until = np_now() + 10 * NP_SECOND;
    for (int i = 0; i < NCONN; i++) {
        while (!atomic_load(&w->s[i].done)) {
            NP_CHECK_MSG(np_now() < until, "reader %d never finished", i);
            np_sleep(NP_MILLISECOND);
        }
        NP_CHECK_EQ(atomic_load(&w->s[i].bad), 0);
    }
}

static void moved_main(void *arg)
{
    world *w = arg;
    int64_t bytes;
    np__idle_stack_counts(&bytes, &w->moves_before);
    open_conns(w);
    for (int i = 0; i < NCONN; i++)
        NP_CHECK_OK(np_go(reader, &w->s[i]));
    wait_all_parked(w);
    /* Watch each reader's stack page go: never before it has been blocked
     * for idle_ns. No event announces a release, so look every millisecond. */
    int64_t until = np_now() + 10 * NP_SECOND;
    for (int left = NCONN; left > 0;) {
        NP_CHECK_MSG(np_now() < until, "%d stacks still resident", left);
        np_sleep(NP_MILLISECOND);
        for (int i = 0; i < NCONN; i++) {
            slot *s = &w->s[i];
            if (s->released_at || resident(atomic_load(&s->frame_at)))
                continue;
            s->released_at = np_now();
            NP_CHECK_GE(s->released_at - atomic_load(&s->parked_at), w->idle_ns);
            left--;
        }
    }
    unsigned long moves;
    np__idle_stack_counts(&bytes, &moves);
    NP_CHECK_GE(moves - w->moves_before, (unsigned long)NCONN);
    /* Compact: the buffer, the frames and the stack header (more of them
     * under the sanitizers), less than the two pages resident before. */
    printf("  %d stacks moved out, %lld bytes each\n", NCONN, (long long)(bytes / NCONN));
    bool bufs_on_stack = true;
    for (int i = 0; i < NCONN; i++)
        bufs_on_stack &= w->s[i].buf_on_stack;
    if (bufs_on_stack)
        NP_CHECK_GT(bytes, (int64_t)NCONN * BUF);
    NP_CHECK_LT(bytes, (int64_t)NCONN * (BUF + 4096)); /* resident, it was 2 pages */
    wake_all_and_check(w);
    np__idle_stack_counts(&bytes, &moves);
    NP_CHECK_EQ(bytes, 0);
    close_conns(w);
}

static void t_blocked_stacks_move_out_and_back(void)
{
    static world w = { .idle_ns = 30 * NP_MILLISECOND };
    np_config c = { .workers = 1, .idle_stack_ns = w.idle_ns };
    NP_CHECK_OK(np_run(&c, moved_main, &w));
}

static void t_two_workers(void)
{
    static world w = { .idle_ns = 20 * NP_MILLISECOND };
    np_config c = { .workers = 2, .idle_stack_ns = w.idle_ns };
    NP_CHECK_OK(np_run(&c, moved_main, &w));
}

static void off_main(void *arg)
{
    world *w = arg;
    open_conns(w);
    for (int i = 0; i < NCONN; i++)
        NP_CHECK_OK(np_go(reader, &w->s[i]));
    wait_all_parked(w);
    np_sleep(100 * NP_MILLISECOND);
    for (int i = 0; i < NCONN; i++)
        NP_CHECK(resident(atomic_load(&w->s[i].frame_at)));
    int64_t bytes;
    unsigned long moves;
    np__idle_stack_counts(&bytes, &moves);
    NP_CHECK_EQ(bytes, 0);
    wake_all_and_check(w);
    close_conns(w);
}

static void t_off_by_default(void)
{
    static world w;
    np_config c = { .workers = 1 };
    NP_CHECK_OK(np_run(&c, off_main, &w));
}

static void noop(void *arg)
{
    (void)arg;
}

static void t_negative_is_einval(void)
{
    np_config c = { .workers = 1, .idle_stack_ns = -1 };
    NP_CHECK_EQ(np_run(&c, noop, NULL), -EINVAL);
}

/* An idle runtime: everything has been moved out, the poller is blocked
 * with no pass scheduled, and the other worker sleeps. A task started then
 * from a plain thread parks on that other worker; it must still be moved. */
typedef struct late {
    world w;                   /* s[0]: the early reader, s[1]: the late one */
    np_conn mine_srv, mine_cli; /* the main task blocks reading mine_srv */
    pthread_t thread;
    _Atomic int failed;
} late;

/* From a plain thread: waits (polling: a move announces itself to nobody)
 * until s's reader has parked and its stack page is gone. */
static bool wait_moved_out(slot *s, int64_t until)
{
    while (!atomic_load(&s->parked_at) || resident(atomic_load(&s->frame_at))) {
        if (np_now() > until)
            return false;
        usleep(1000);
    }
    return true;
}

static void *late_thread(void *arg)
{
    late *L = arg;
    int64_t until = np_now() + 10 * NP_SECOND;
    if (!wait_moved_out(&L->w.s[0], until)) {
        atomic_store(&L->failed, 1);
    } else {
        usleep(3 * 1000 * (useconds_t)(L->w.idle_ns / NP_MILLISECOND)); /* passes find nothing */
        if (np_go(reader, &L->w.s[1]) != 0)
            atomic_store(&L->failed, 2);
        else if (!wait_moved_out(&L->w.s[1], until))
            atomic_store(&L->failed, 3);
    }
    unsigned char b = 0;
    for (int i = 0; i < 2; i++) {
        b = (unsigned char)i;
        if (write(np_conn_fd(L->w.s[i].cli), &b, 1) != 1)
            atomic_store(&L->failed, 4);
    }
    if (write(np_conn_fd(L->mine_cli), &b, 1) != 1)
        atomic_store(&L->failed, 5);
    return NULL;
}

static void late_main(void *arg)
{
    late *L = arg;
    world *w = &L->w;
    open_conns(w);
    char addr[64];
    snprintf(addr, sizeof addr, "@np_idle_stack_late_%d", (int)getpid());
    np_listener l;
    NP_CHECK_OK(np_listen(&l, "unix", addr));
    NP_CHECK_OK(np_dial(&L->mine_cli, "unix", addr, 0));
    NP_CHECK_OK(np_accept(l, &L->mine_srv));
    NP_CHECK_OK(np_go(reader, &w->s[0]));
    NP_CHECK_OK(pthread_create(&L->thread, NULL, late_thread, L));
    char b;
    NP_CHECK_EQ(np_read(L->mine_srv, &b, 1), 1); /* no timer pending: the poller may block for good */
    for (int i = 0; i < 2; i++)
        while (!atomic_load(&w->s[i].done))
            np_sleep(NP_MILLISECOND);
    NP_CHECK_OK(pthread_join(L->thread, NULL));
    NP_CHECK_EQ(atomic_load(&L->failed), 0);
    for (int i = 0; i < 2; i++)
        NP_CHECK_EQ(atomic_load(&w->s[i].bad), 0);
    np_close(L->mine_srv);
    np_close(L->mine_cli);
    np_listener_close(l);
    close_conns(w);
}

static void t_late_park_in_idle_runtime(void)
{
    static late L = { .w = { .idle_ns = 20 * NP_MILLISECOND } };
    np_config c = { .workers = 2, .idle_stack_ns = L.w.idle_ns };
    NP_CHECK_OK(np_run(&c, late_main, &L));
}

/* Races: with a 1 ms threshold, tasks sleeping around it are moved out,
 * woken while being moved, moved again, on two workers; each checks a
 * fresh canary across every sleep. */
enum { RACERS = 32, ROUNDS = 150 };
static _Atomic int race_bad;

static void racer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    volatile uint64_t canary[64];
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t v = (uint64_t)rand_r(&seed) << 32 | (uint64_t)r;
        for (int i = 0; i < 64; i++)
            canary[i] = v + (uint64_t)i;
        np_sleep((int64_t)(rand_r(&seed) % 3000) * NP_MICROSECOND);
        for (int i = 0; i < 64; i++)
            if (canary[i] != v + (uint64_t)i)
                atomic_store(&race_bad, 1);
    }
}

static void race_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < RACERS; i++)
        NP_CHECK_OK(np_go(racer, (void *)(uintptr_t)(i + 1)));
}

static void t_moves_race_wakeups(void)
{
    int64_t bytes;
    unsigned long before, after;
    np__idle_stack_counts(&bytes, &before);
    np_config c = { .workers = 2, .idle_stack_ns = NP_MILLISECOND };
    NP_CHECK_OK(np_run(&c, race_main, NULL));
    np__idle_stack_counts(&bytes, &after);
    printf("  %lu stacks moved out and back\n", after - before);
    NP_CHECK_EQ(atomic_load(&race_bad), 0);
    NP_CHECK_GT(after - before, 0ul);
    NP_CHECK_EQ(bytes, 0);
}

/* ---- a mass wake ----------------------------------------------------------
 *
 * Thousands of tasks whose stacks were moved out wake at the same instant
 * (one deadline): the workers fault the next queued tasks' stack pages in
 * together (np__idle_stack_prefault) while thieves take tasks from the
 * same queues. Every byte of every stack must come back, a buffer that
 * spans pages included. */
#if defined(NP_ASAN) || defined(NP_TSAN)
#define MASS 400
#else
#define MASS 4000
#endif
enum { MASS_BUF = 1500 };

static struct {
    int64_t deadline;
    np_waitgroup done;
    _Atomic int parked, bad;
} mass;

static void mass_sleeper(void *arg)
{
    int idx = (int)(intptr_t)arg;
    unsigned char buf[MASS_BUF];
    unsigned char *volatile self = buf;
    for (int i = 0; i < MASS_BUF; i++)
        buf[i] = pattern(idx, i);
    atomic_fetch_add(&mass.parked, 1);
    if (np_sleep_until(mass.deadline) != 0)
        atomic_store(&mass.bad, 1);
    for (int i = 0; i < MASS_BUF; i++)
        if (self[i] != pattern(idx, i)) {
            atomic_store(&mass.bad, 2);
            break;
        }
    NP_CHECK_OK(np_waitgroup_done(&mass.done));
}

static unsigned long mass_moves_seen;

static void mass_main(void *arg)
{
    (void)arg;
    int64_t bytes;
    unsigned long moves0, moves;
    np__idle_stack_counts(&bytes, &moves0);
    mass.deadline = np_now() + 2 * NP_SECOND;
    NP_CHECK_OK(np_waitgroup_add(&mass.done, MASS));
    for (int i = 0; i < MASS; i++)
        NP_CHECK_OK(np_go(mass_sleeper, (void *)(intptr_t)i));
    /* Until the sweep has moved them all out (no event says so) or the
     * deadline is near: the wake is checked either way. */
    do {
        np_sleep(NP_MILLISECOND);
        np__idle_stack_counts(&bytes, &moves);
    } while (moves - moves0 < (unsigned long)MASS && np_now() < mass.deadline - 200 * NP_MILLISECOND);
    mass_moves_seen = moves - moves0;
    NP_CHECK_OK(np_waitgroup_wait(&mass.done, mass.deadline + 60 * NP_SECOND));
    NP_CHECK_EQ(atomic_load(&mass.parked), MASS);
}

/* Whether this kernel takes MADV_POPULATE_WRITE through process_madvise. */
static bool populate_works(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, (size_t)ps * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    NP_CHECK(m != MAP_FAILED);
    struct iovec iov[2] = { { m, (size_t)ps }, { m + 2 * ps, (size_t)ps } };
    bool ok = np__stack_populate_ranges(iov, 2) == 0;
    munmap(m, (size_t)ps * 4);
    return ok;
}

/* A call whose ranges went stale (the prefault reads them racing a thief)
 * fails, and later calls still work: EINVAL from a PROT_NONE page once
 * turned the prefault off for good (found in review). */
static void t_populate_survives_a_stale_range(void)
{
    if (!populate_works())
        NP_SKIP("this kernel does not take MADV_POPULATE_WRITE in process_madvise");
    long ps = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, (size_t)ps * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    NP_CHECK(m != MAP_FAILED);
    NP_CHECK_OK(mprotect(m, (size_t)ps, PROT_NONE));
    struct iovec bad[2] = { { m, (size_t)ps }, { m + 2 * ps, (size_t)ps } };
    NP_CHECK_EQ(np__stack_populate_ranges(bad, 2), -1);
    struct iovec good[2] = { { m + ps, (size_t)ps }, { m + 3 * ps, (size_t)ps } };
    NP_CHECK_OK(np__stack_populate_ranges(good, 2));
    NP_CHECK(resident(m + 3 * ps));
    munmap(m, (size_t)ps * 4);
}

static void t_mass_wake_of_moved_stacks(void)
{
    unsigned long before = np__idle_stack_prefaulted();
    np_config c = { .workers = 2, .idle_stack_ns = NP_MILLISECOND, .stack_size = 16 * 1024 };
    NP_CHECK_OK(np_run(&c, mass_main, NULL));
    NP_CHECK_EQ(atomic_load(&mass.bad), 0);
    unsigned long pre = np__idle_stack_prefaulted() - before;
    printf("  %d tasks, %lu stacks moved out before the wake, %lu faulted in ahead\n", MASS,
           mass_moves_seen, pre);
    /* Most stacks were moved out and the kernel takes the batch: the wake
     * must have used it. */
    if (mass_moves_seen > MASS / 2 && populate_works())
        NP_CHECK_GT(pre, 0);
}

NP_TEST_LIST(
    NP_CASE(t_blocked_stacks_move_out_and_back),
    NP_CASE(t_two_workers),
    NP_CASE(t_late_park_in_idle_runtime),
    NP_CASE(t_off_by_default),
    NP_CASE(t_negative_is_einval),
    NP_CASE(t_moves_race_wakeups),
    NP_CASE(t_populate_survives_a_stale_range),
    NP_CASE(t_mass_wake_of_moved_stacks))
