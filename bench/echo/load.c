/* Echo ping-pong load generator for bench/echo (plain epoll, one thread, so
 * it is the same program for every server under test).
 *
 * Opens CONNS connections (and no other sockets), then on each: writes a
 * SIZE-byte message, reads until SIZE bytes have come back, checks them
 * byte for byte against what was sent (each message carries the connection
 * number and a sequence number over per-connection random bytes), and sends
 * the next. After WARMUP seconds it measures for DURATION seconds: round
 * trips, round trips per second, latency percentiles (write of a message to
 * the end of its echo; histogram buckets 3% wide), and, with -p PID, the
 * CPU time the server process used in exactly that window (all its
 * threads, user + system), taken twice:
 *   server_cpu_ns       from the process CPU clock (clock_getcpuclockid(PID)),
 *                       nanosecond resolution — the figure run.sh reports;
 *   server_stat_cpu_ns  utime + stime from /proc/PID/stat (clock ticks), a
 *                       cross-check at 10 ms resolution;
 * and of that, server_sys_ns_per_rt (stime alone, per round trip). Also,
 * machine-wide, the TCP segments and delayed ACKs per round trip
 * (tcp_segs_per_rt, delayed_acks_per_rt), which show when the kernel's
 * own work per round trip changes with the load (see the end of main);
 * the CPU of the kernel's softirq threads (ksoftirqd_pct), where some of
 * that work runs; and other_pct, the machine's busy time charged to none
 * of these: interference.
 *
 * With -a ACTIVE (< CONNS), at most ACTIVE messages are in flight at once:
 * when an echo completes, the next message goes to the connection that has
 * waited longest since its last echo (a FIFO of idle connections), so every
 * connection still carries traffic in turn and each server touches all of
 * its per-connection state, but a message never queues behind CONNS - 1
 * others. Without it every connection has a message in flight, and at
 * 10,000 connections a message waits about 100 ms for its turn: past the
 * kernel's delayed-ACK timer, which then sends bare ACKs (see the end of
 * main). -a tells that queueing apart from the cost of the per-connection
 * state going cold.
 *
 * Usage: load [-c CONNS] [-a ACTIVE] [-d SECONDS] [-w SECONDS] [-s SIZE] [-p PID] ADDRESS
 * Output: one line of key=value pairs. Exit status 1 on any error (connect
 * failure, short or wrong echo, server closing a connection).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXEV 1024

struct conn {
    int            fd;
    uint32_t       idx;
    uint32_t       sent, got; /* bytes of the current message */
    bool           want_out;  /* EPOLLOUT registered (partial write) */
    uint64_t       seq;
    int64_t        t_send;
    unsigned char *tx, *rx;
};

static int      ep;
static uint32_t size = 512;
static bool     measuring;
static uint64_t round_trips;

/* With -a: the connections with no message in flight, oldest echo first. */
static struct conn **idle_q;
static int           idle_cap, idle_head, idle_len;

static void idle_push(struct conn *c)
{
    idle_q[(idle_head + idle_len++) % idle_cap] = c;
}

static struct conn *idle_pop(void)
{
    struct conn *c = idle_q[idle_head];
    idle_head = (idle_head + 1) % idle_cap;
    idle_len--;
    return c;
}

/* Latency histogram: values below 64 ns exact, then 32 buckets per power
 * of two (about 3% wide). */
#define HBUCKETS (64 + 58 * 32)
static uint64_t hist[HBUCKETS];

static int hidx(uint64_t v)
{
    if (v < 64) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    return 64 + (msb - 6) * 32 + (int)((v >> (msb - 5)) & 31);
}

static double hval(int i) /* bucket midpoint, ns */
{
    if (i < 64) return i;
    int msb = (i - 64) / 32 + 6, sub = (i - 64) % 32;
    double lo = (double)((uint64_t)(32 + sub) << (msb - 5));
    return lo + (double)((uint64_t)1 << (msb - 5)) / 2;
}

static double percentile(double p)
{
    uint64_t total = 0;
    for (int i = 0; i < HBUCKETS; i++) total += hist[i];
    if (!total) return 0;
    uint64_t rank = (uint64_t)(p * (double)total);
    if (rank >= total) rank = total - 1;
    uint64_t acc = 0;
    for (int i = 0; i < HBUCKETS; i++) {
        acc += hist[i];
        if (acc > rank) return hval(i);
    }
    return 0;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Server CPU ------------------------------------------------------------ */

static clockid_t server_clock;
static bool      have_server_clock;
static pid_t     server_pid;

static int64_t server_cpu_clock(void)
{
    struct timespec ts;
    if (!have_server_clock || clock_gettime(server_clock, &ts) < 0) return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* utime + stime from /proc/PID/stat, ns; -1 if unknown. *sys_ns gets stime
 * alone: the server's time in the kernel, which its own code cannot make
 * cheaper (TCP, the socket calls, softirq work that interrupted it). */
static int64_t server_cpu_stat(int64_t *sys_ns)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may contain spaces */
    if (!p) return -1;
    unsigned long long ut, st;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    unsigned long long tick = 1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK);
    *sys_ns = (int64_t)(st * tick);
    return (int64_t)((ut + st) * tick);
}

/* One counter of the machine's TCP statistics: FILE holds pairs of lines,
 * "PREFIX: name name ..." then "PREFIX: value value ...". -1 if absent. */
static int64_t tcp_counter(const char *file, const char *prefix, const char *name)
{
    FILE *f = fopen(file, "r");
    if (!f) return -1;
    char names[4096], values[4096];
    int64_t v = -1;
    size_t plen = strlen(prefix);
    while (v < 0 && fgets(names, sizeof names, f) && fgets(values, sizeof values, f)) {
        if (strncmp(names, prefix, plen) != 0 || strncmp(values, prefix, plen) != 0) continue;
        char *sn, *sv;
        char *kn = strtok_r(names + plen, " \n", &sn), *kv = strtok_r(values + plen, " \n", &sv);
        for (; kn && kv; kn = strtok_r(NULL, " \n", &sn), kv = strtok_r(NULL, " \n", &sv))
            if (strcmp(kn, name) == 0) {
                v = strtoll(kv, NULL, 10);
                break;
            }
    }
    fclose(f);
    return v;
}

/* TCP segments sent and delayed ACKs, machine-wide (on a quiet machine,
 * all of it this benchmark's loopback traffic, both directions). */
static void tcp_counters(int64_t *segs, int64_t *delacks)
{
    *segs = tcp_counter("/proc/net/snmp", "Tcp:", "OutSegs");
    *delacks = tcp_counter("/proc/net/netstat", "TcpExt:", "DelayedACKs");
}

/* Whole machine, from /proc/stat's "cpu" line (clock ticks, as ns): busy
 * (user, nice, system, irq, softirq, steal) and, of that, softirq (mostly
 * loopback TCP delivery; without CONFIG_IRQ_TIME_ACCOUNTING that time is
 * also part of the CPU time of the process it interrupted). */
static bool machine_cpu(int64_t *busy, int64_t *softirq)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return false;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8) return false;
    long long tick = 1000000000LL / sysconf(_SC_CLK_TCK);
    *busy = (int64_t)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * tick;
    *softirq = (int64_t)v[6] * tick;
    return true;
}

/* CPU time (ns) of the kernel's softirq threads, ksoftirqd/N: the packet
 * and timer work the kernel defers to them under load (at 10,000
 * connections, the delayed-ACK timers), done for this benchmark though
 * charged to neither side; -1 if /proc cannot be read. */
static int64_t ksoftirqd_cpu(void)
{
    DIR *d = opendir("/proc");
    if (!d) return -1;
    long long tick = 1000000000LL / sysconf(_SC_CLK_TCK);
    int64_t sum = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (!open || !close || strncmp(open + 1, "ksoftirqd/", 10) != 0) continue;
        unsigned long long ut, st;
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            sum += (int64_t)(ut + st) * tick;
    }
    closedir(d);
    return sum;
}

static int64_t self_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Connections ------------------------------------------------------------ */

static void set_events(struct conn *c, bool out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
    c->want_out = out;
}

static void write_rest(struct conn *c)
{
    while (c->sent < size) {
        ssize_t w = write(c->fd, c->tx + c->sent, size - c->sent);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                if (!c->want_out) set_events(c, true);
                return;
            }
            fail("conn %u: write: %s", c->idx, strerror(errno));
        }
        c->sent += (uint32_t)w;
    }
    if (c->want_out) set_events(c, false);
}

static void send_next(struct conn *c, int64_t now)
{
    c->seq++;
    memcpy(c->tx, &c->seq, sizeof c->seq);
    c->sent = c->got = 0;
    c->t_send = now;
    write_rest(c);
}

static void on_readable(struct conn *c)
{
    /* Level-triggered: one read per event is enough (the rest, if any, is
     * reported again). Never read past the current message. */
    ssize_t n = read(c->fd, c->rx + c->got, size - c->got);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        fail("conn %u: read: %s", c->idx, strerror(errno));
    }
    if (n == 0) fail("conn %u: server closed the connection", c->idx);
    c->got += (uint32_t)n;
    if (c->got > c->sent) fail("conn %u: %u bytes echoed, only %u sent", c->idx, c->got, c->sent);
    if (c->got < size) return;
    if (memcmp(c->rx, c->tx, size) != 0) {
        uint32_t i = 0;
        while (c->rx[i] == c->tx[i]) i++;
        fail("conn %u: message %llu: echoed byte %u differs (0x%02x, sent 0x%02x)", c->idx,
             (unsigned long long)(c->seq - ((uint64_t)c->idx << 40)), i, c->rx[i], c->tx[i]);
    }
    int64_t now = now_ns();
    if (measuring) {
        round_trips++;
        hist[hidx((uint64_t)(now - c->t_send))]++;
    }
    if (idle_q) { /* -a: this one rests, the longest-resting one goes */
        idle_push(c);
        c = idle_pop();
    }
    send_next(c, now);
}

static int dial(const struct addrinfo *ai)
{
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket: %s", strerror(errno));
    while (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno == EINTR) continue;
        fail("connect: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

int main(int argc, char **argv)
{
    int conns = 100, active = 0;
    double dur = 5, warm = 1;
    int opt;
    while ((opt = getopt(argc, argv, "c:a:d:w:s:p:")) != -1) {
        switch (opt) {
        case 'c': conns = atoi(optarg); break;
        case 'a': active = atoi(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'w': warm = atof(optarg); break;
        case 's': size = (uint32_t)atoi(optarg); break;
        case 'p': server_pid = (pid_t)atoi(optarg); break;
        default: goto usage;
        }
    }
    if (optind != argc - 1 || conns < 1 || active < 0 || dur <= 0 || warm < 0 || size < 8 || size > (1u << 24)) {
    usage:
        fprintf(stderr, "usage: %s [-c CONNS] [-a ACTIVE] [-d SECONDS] [-w SECONDS] [-s SIZE>=8] [-p PID] "
                        "HOST:PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (server_pid > 0) {
        if (clock_getcpuclockid(server_pid, &server_clock) == 0) {
            have_server_clock = true;
            if (server_cpu_clock() < 0) have_server_clock = false;
        }
        int64_t sys;
        if (!have_server_clock && server_cpu_stat(&sys) < 0)
            fail("cannot read the CPU time of pid %d", (int)server_pid);
    }

    /* Address: host:port or [v6]:port. */
    char host[256];
    const char *addr = argv[optind], *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) fail("bad address %s", addr);
    size_t hl = (size_t)(colon - addr);
    memcpy(host, addr, hl);
    host[hl] = 0;
    char *h = host;
    if (hl >= 2 && host[0] == '[') {
        host[hl - 1] = 0;
        h++;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai;
    int rc = getaddrinfo(*h ? h : "127.0.0.1", colon + 1, &hints, &ai);
    if (rc) fail("%s: %s", addr, gai_strerror(rc));

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) fail("epoll_create1: %s", strerror(errno));
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    unsigned char *bufs = malloc((size_t)conns * size * 2);
    if (!cs || !bufs) fail("out of memory");
    uint64_t rnd = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < conns; i++) {
        struct conn *c = &cs[i];
        c->idx = (uint32_t)i;
        c->tx = bufs + (size_t)i * size * 2;
        c->rx = c->tx + size;
        for (uint32_t j = 0; j < size; j++) { /* xorshift64 */
            rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;
            c->tx[j] = (unsigned char)rnd;
        }
        c->seq = (uint64_t)i << 40; /* bytes 0-7: connection and sequence */
        c->fd = dial(ai);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
    }
    freeaddrinfo(ai);

    if (active == 0 || active > conns) active = conns; /* default: every connection busy */
    if (active < conns) {
        idle_cap = conns;
        idle_q = malloc((size_t)conns * sizeof *idle_q);
        if (!idle_q) fail("out of memory");
        for (int i = active; i < conns; i++) idle_push(&cs[i]);
    }
    int64_t t0 = now_ns();
    for (int i = 0; i < active; i++) send_next(&cs[i], t0);

    int64_t warm_end = t0 + (int64_t)(warm * 1e9), m_start = 0, m_end = 0;
    int64_t cpu0 = 0, cpu1 = 0, st0 = 0, st1 = 0, self0 = 0, self1 = 0;
    int64_t busy0 = 0, busy1 = 0, sirq0 = 0, sirq1 = 0, sys0 = 0, sys1 = 0;
    int64_t segs0 = 0, segs1 = 0, dack0 = 0, dack1 = 0, ksi0 = -1, ksi1 = -1;
    bool have_machine = true;
    struct epoll_event evs[MAXEV];
    for (;;) {
        int64_t now = now_ns();
        if (!measuring && now >= warm_end) {
            cpu0 = server_cpu_clock();
            st0 = server_pid > 0 ? server_cpu_stat(&sys0) : -1;
            tcp_counters(&segs0, &dack0);
            self0 = self_cpu();
            have_machine &= machine_cpu(&busy0, &sirq0);
            ksi0 = ksoftirqd_cpu();
            m_start = now_ns();
            measuring = true;
        } else if (measuring && now >= m_start + (int64_t)(dur * 1e9)) {
            m_end = now_ns();
            cpu1 = server_cpu_clock();
            st1 = server_pid > 0 ? server_cpu_stat(&sys1) : -1;
            tcp_counters(&segs1, &dack1);
            self1 = self_cpu();
            have_machine &= machine_cpu(&busy1, &sirq1);
            ksi1 = ksoftirqd_cpu();
            break;
        }
        int n = epoll_wait(ep, evs, MAXEV, 50);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) write_rest(c);
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        }
    }
    double secs = (double)(m_end - m_start) / 1e9;
    if (round_trips == 0) fail("no round trip completed in the measured window");
    printf("conns=%d active=%d size=%u seconds=%.3f round_trips=%llu rt_per_s=%.0f p50_us=%.1f p99_us=%.1f "
           "client_cpu_pct=%.1f",
           conns, active, size, secs, (unsigned long long)round_trips, (double)round_trips / secs,
           percentile(0.50) / 1e3, percentile(0.99) / 1e3,
           100.0 * (double)(self1 - self0) / (double)(m_end - m_start));
    if (server_pid > 0) {
        int64_t cpu = have_server_clock ? cpu1 - cpu0 : st1 - st0;
        printf(" server_cpu_ns=%lld server_cpu_pct=%.1f server_cpu_ns_per_rt=%.1f",
               (long long)cpu, 100.0 * (double)cpu / (double)(m_end - m_start),
               (double)cpu / (double)round_trips);
        if (st0 >= 0 && st1 >= 0)
            printf(" server_stat_cpu_ns=%lld server_sys_ns_per_rt=%.1f", (long long)(st1 - st0),
                   (double)(sys1 - sys0) / (double)round_trips);
        if (have_machine) {
            /* Busy time of the whole machine not charged to the server, to
             * this program or to the kernel's softirq threads: other
             * processes, i.e. interference (on a kernel with
             * CONFIG_IRQ_TIME_ACCOUNTING also softirq time, which such a
             * kernel charges to no process). */
            double wall = (double)(m_end - m_start);
            int64_t ksi = ksi0 >= 0 && ksi1 >= 0 ? ksi1 - ksi0 : 0;
            printf(" softirq_pct=%.1f ksoftirqd_pct=%.1f other_pct=%.1f",
                   100.0 * (double)(sirq1 - sirq0) / wall, 100.0 * (double)ksi / wall,
                   100.0 * (double)((busy1 - busy0) - cpu - (self1 - self0) - ksi) / wall);
        }
    }
    /* Packets per round trip: 2 while each message's ACK rides on its
     * answer; more once a message waits longer than the delayed-ACK timer
     * (40 ms and up) and the kernel sends a bare ACK for it. */
    if (segs0 >= 0 && segs1 >= 0)
        printf(" tcp_segs_per_rt=%.2f", (double)(segs1 - segs0) / (double)round_trips);
    if (dack0 >= 0 && dack1 >= 0)
        printf(" delayed_acks_per_rt=%.2f", (double)(dack1 - dack0) / (double)round_trips);
    putchar('\n');
    fflush(stdout);
    for (int i = 0; i < conns; i++) close(cs[i].fd);
    return 0;
}
