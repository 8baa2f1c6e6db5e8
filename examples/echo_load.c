/* echo_load — a load generator for echo servers, written with netpoll itself.
 *
 *   echo_load [-c CONNECTIONS] [-d SECONDS] [-s MSG_SIZE] [-w WORKERS] ADDRESS
 *
 * Opens CONNECTIONS (default 100) connections to ADDRESS; on each, a task
 * plays ping-pong for SECONDS (default 5): it writes MSG_SIZE bytes (default
 * 512), reads until the whole echo is back, checks it, and records how long
 * the round trip took. A live line on stderr shows progress every 250 ms;
 * at the end a summary goes to stdout: connections, round trips per second
 * and latency percentiles. The exit status is 0 when there were no errors.
 *
 * How it stops by itself: every connection gets a deadline at the end time,
 * for reads and writes alike. Whatever a task is blocked in then returns
 * -ETIMEDOUT, so even a server that stops answering cannot hang the test.
 *
 * Latency is kept in a histogram per connection (log-linear buckets, 64 per
 * power of two: every value is known to within 1.6%), written only by its
 * own task and merged by the reader, so recording a round trip takes no lock.
 */
#include <netpoll.h>

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Histogram: a value v (ns) below 128 has a bucket of its own; above, the
 * bucket is (shift, v >> shift) with v >> shift in [64, 128), i.e. 64
 * buckets per power of two. Values beyond ~275 s share the last bucket. */
#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define MAX_SHIFT 31
#define BUCKETS ((MAX_SHIFT + 2) * SUB)

static int bucket_of(int64_t v)
{
    if (v < 2 * SUB)
        return v < 0 ? 0 : (int)v;
    int shift = 63 - __builtin_clzll((uint64_t)v) - SUB_BITS;
    if (shift > MAX_SHIFT)
        return BUCKETS - 1;
    return shift * SUB + (int)(v >> shift);
}

/* The middle of a bucket: what we report for the values in it. */
static int64_t bucket_value(int b)
{
    int shift = b < 2 * SUB ? 0 : b / SUB - 1;
    int64_t low = (int64_t)(b - shift * SUB) << shift;
    return low + (((int64_t)1 << shift) >> 1);
}

/* Per connection. Only the connection's task writes these; the progress
 * task reads them meanwhile, hence relaxed atomics (plain loads and stores
 * on the usual CPUs, not read-modify-write instructions). */
typedef struct conn_stats {
    _Atomic uint32_t hist[BUCKETS];
    _Atomic int64_t max_ns;
} conn_stats;

static void record(conn_stats *st, int64_t ns)
{
    _Atomic uint32_t *h = &st->hist[bucket_of(ns)];
    atomic_store_explicit(h, atomic_load_explicit(h, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (ns > atomic_load_explicit(&st->max_ns, memory_order_relaxed))
        atomic_store_explicit(&st->max_ns, ns, memory_order_relaxed);
}

/* The value below which a fraction q of the `total` samples lie. */
static int64_t percentile(const uint64_t h[BUCKETS], uint64_t total, double q)
{
    uint64_t rank = (uint64_t)(q * (double)total + 0.5), seen = 0;
    if (rank < 1)
        rank = 1;
    for (int b = 0; b < BUCKETS; b++) {
        seen += h[b];
        if (seen >= rank)
            return bucket_value(b);
    }
    return 0;
}

/* Test settings and shared state. */
static const char *target;
static int connections = 100;
static int64_t duration = 5 * NP_SECOND;
static size_t msg_size = 512;
static int64_t start_time, end_time;
static conn_stats *stats;         /* one per connection */
static _Atomic int tasks_left;    /* connection tasks not yet finished */
/* Connections open, not counting those the end of the run is closing: the
 * last progress line, printed as they close, agrees with the summary. */
static _Atomic int connected;
static _Atomic int ever_connected;
static _Atomic int lost;          /* ended before the end of the run */
static _Atomic uint64_t errors;
static bool tty;                  /* stderr is a terminal: live line with '\r' */

/* Sums every connection's histogram into `out`; returns the count. */
static uint64_t merge(uint64_t out[BUCKETS])
{
    uint64_t total = 0;
    memset(out, 0, BUCKETS * sizeof out[0]);
    for (int i = 0; i < connections; i++)
        for (int b = 0; b < BUCKETS; b++) {
            uint32_t n = atomic_load_explicit(&stats[i].hist[b], memory_order_relaxed);
            out[b] += n;
            total += n;
        }
    return total;
}

/* Counts an error, and prints the first few of them. */
static void fail(int id, const char *what, ssize_t err)
{
    if (atomic_fetch_add(&errors, 1) < 5)
        fprintf(stderr, "%secho_load: connection %d: %s%s%s\n", tty ? "\n" : "", id, what,
                err < 0 ? ": " : "", err < 0 ? np_strerror((int)err) : "");
}

/* True when `rc`, a failed or short I/O result, is just the end-of-test
 * deadline firing rather than a real problem. */
static bool test_over(ssize_t rc)
{
    return (rc >= 0 || rc == -ETIMEDOUT) && np_now() >= end_time;
}

static void ping_pong(void *arg)
{
    int id = (int)(intptr_t)arg;
    conn_stats *st = &stats[id];
    unsigned char *out = malloc(msg_size), *in = malloc(msg_size);
    np_conn c;
    ssize_t rc;

    if (out == NULL || in == NULL) {
        fail(id, "out of memory", 0);
        goto done;
    }
    /* The dial shares the test's deadline: a server that does not accept
     * cannot hold us past the end either. */
    rc = np_dial(&c, "tcp", target, end_time);
    if (rc < 0) {
        if (!test_over(rc))
            fail(id, "connect", rc);
        goto done;
    }
    atomic_fetch_add(&connected, 1);
    atomic_fetch_add(&ever_connected, 1);
    np_set_deadline(c, end_time); /* reads and writes stop at the end time */

    for (size_t i = 0; i < msg_size; i++)
        out[i] = (unsigned char)('a' + (id + i) % 26);
    for (uint64_t seq = 0;; seq++) {
        /* Stamp each message, so that a stale or misplaced echo shows. */
        memcpy(out, &seq, msg_size < sizeof seq ? msg_size : sizeof seq);

        int64_t t0 = np_now();
        rc = np_write(c, out, msg_size);
        if (rc != (ssize_t)msg_size) {
            if (!test_over(rc))
                fail(id, rc < 0 ? "write" : "short write", rc);
            break;
        }
        size_t got = 0;
        while (got < msg_size) {
            rc = np_read(c, in + got, msg_size - got);
            if (rc <= 0)
                break;
            got += (size_t)rc;
        }
        if (got < msg_size) {
            if (rc == 0)
                fail(id, "the server closed the connection", 0);
            else if (!test_over(rc))
                fail(id, "read", rc);
            break;
        }
        record(st, np_now() - t0);
        if (memcmp(in, out, msg_size) != 0) {
            fail(id, "the echo differs from what was sent", 0);
            break;
        }
    }
    np_close(c);
    if (np_now() < end_time) {
        atomic_fetch_sub(&connected, 1);
        atomic_fetch_add(&lost, 1);
    }
done:
    free(out);
    free(in);
    atomic_fetch_sub(&tasks_left, 1);
}

/* 1234567 -> "1,234,567" */
static const char *with_commas(uint64_t v, char buf[32])
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v), j = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            buf[j++] = ',';
        buf[j++] = digits[i];
    }
    buf[j] = '\0';
    return buf;
}

static double ms(int64_t ns) { return (double)ns / (double)NP_MILLISECOND; }

/* Prints a line every tick: rate and latency over the last tick. On a
 * terminal the line rewrites itself ('\r'); in a log, one a second. */
static void progress(void *arg)
{
    (void)arg;
    static uint64_t now_h[BUCKETS], prev_h[BUCKETS], delta[BUCKETS];
    int64_t tick = tty ? 250 * NP_MILLISECOND : NP_SECOND;
    int64_t prev_t = start_time;
    uint64_t prev_total = 0;

    for (int64_t next = start_time + tick; atomic_load(&tasks_left) > 0; next += tick) {
        np_sleep_until(next < end_time ? next : end_time);
        int64_t now = np_now();
        uint64_t total = merge(now_h);
        for (int b = 0; b < BUCKETS; b++)
            delta[b] = now_h[b] - prev_h[b];
        uint64_t n = total - prev_total;
        int64_t dt = now > prev_t ? now - prev_t : 1;
        char rate[32];
        fprintf(stderr, "%s%6.1fs  connections %5d  round trips/s %11s  p50 %7.3f ms  p99 %7.3f ms%s",
                tty ? "\r" : "", ms(now - start_time) / 1000, atomic_load(&connected),
                with_commas((uint64_t)((double)n * NP_SECOND / (double)dt), rate),
                n ? ms(percentile(delta, n, 0.50)) : 0.0, n ? ms(percentile(delta, n, 0.99)) : 0.0,
                tty ? "" : "\n");
        memcpy(prev_h, now_h, sizeof prev_h);
        prev_total = total;
        prev_t = now;
        if (now >= end_time)
            break;
    }
    if (tty)
        fputc('\n', stderr);
}

/* The first task: starts the connections and the progress line. */
static void start(void *arg)
{
    (void)arg;
    start_time = np_now();
    end_time = start_time + duration;
    atomic_store(&tasks_left, connections);
    for (int i = 0; i < connections; i++) {
        if (np_go(ping_pong, (void *)(intptr_t)i) < 0) {
            fail(i, "cannot start a task", 0);
            atomic_fetch_sub(&tasks_left, 1);
        }
    }
    np_go(progress, NULL);
}

static long number(const char *s, const char *what, long min, long max)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "echo_load: %s must be a number from %ld to %ld, not '%s'\n", what, min,
                max, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *usage =
        "usage: echo_load [-c CONNECTIONS] [-d SECONDS] [-s MSG_SIZE] [-w WORKERS] ADDRESS\n";
    np_config cfg = {0};
    int opt;
    while ((opt = getopt(argc, argv, "c:d:s:w:h")) != -1) {
        switch (opt) {
        case 'c': connections = (int)number(optarg, "connections", 1, 100000); break;
        case 'd': duration = number(optarg, "seconds", 1, 86400) * NP_SECOND; break;
        case 's': msg_size = (size_t)number(optarg, "message size", 1, 64 << 20); break;
        case 'w': cfg.workers = (int)number(optarg, "workers", 0, 1024); break;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return 2;
    }
    target = argv[optind];
    tty = isatty(STDERR_FILENO);
    stats = calloc((size_t)connections, sizeof *stats);
    if (stats == NULL) {
        fprintf(stderr, "echo_load: out of memory\n");
        return 1;
    }

    printf("echo_load: %d connections to %s, %zu-byte messages, %.0f s (poller %s)\n",
           connections, target, msg_size, ms(duration) / 1000, np_poller_name());
    fflush(stdout);
    int rc = np_run(&cfg, start, NULL);
    if (rc < 0) {
        fprintf(stderr, "echo_load: %s\n", np_strerror(rc));
        return 1;
    }

    /* Everything has finished: the summary. */
    static uint64_t h[BUCKETS];
    uint64_t total = merge(h);
    int64_t max = 0;
    for (int i = 0; i < connections; i++)
        if (stats[i].max_ns > max)
            max = stats[i].max_ns;
    double secs = ms(duration) / 1000;
    char a[32], b[32];
    if (atomic_load(&lost))
        printf("  connections     %d of %d (%d ended before the end of the run)\n",
               atomic_load(&ever_connected), connections, atomic_load(&lost));
    else
        printf("  connections     %d of %d\n", atomic_load(&ever_connected), connections);
    printf("  duration        %.2f s\n", secs);
    printf("  round trips     %s\n", with_commas(total, a));
    printf("  round trips/s   %s\n", with_commas((uint64_t)((double)total / secs), b));
    if (total > 0) {
        /* A bucket's middle may lie above the largest value seen. */
        int64_t p50 = percentile(h, total, 0.50), p99 = percentile(h, total, 0.99),
                p999 = percentile(h, total, 0.999);
        printf("  latency p50     %.3f ms\n", ms(p50 < max ? p50 : max));
        printf("  latency p99     %.3f ms\n", ms(p99 < max ? p99 : max));
        printf("  latency p99.9   %.3f ms\n", ms(p999 < max ? p999 : max));
        printf("  latency max     %.3f ms\n", ms(max));
    }
    printf("  errors          %" PRIu64 "\n", atomic_load(&errors));
    if (total == 0)
        printf("echo_load: no round trip completed\n");
    free(stats);
    return atomic_load(&errors) == 0 && total > 0 ? 0 : 1;
}
