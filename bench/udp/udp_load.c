/* UDP echo load generator for bench/udp (plain sockets and epoll, one
 * thread, so it is the same program for every server under test).
 *
 * Opens SOCKETS connected UDP sockets to the server (connect(2): the kernel
 * then drops datagrams from anyone else, and send/recv need no address) and
 * keeps INFLIGHT datagrams in flight over them, spread round-robin: slot i
 * belongs to socket i % SOCKETS. Each datagram is SIZE bytes: the slot
 * number, a generation number, then bytes derived from both; an echo is
 * checked byte for byte against that, and the slot's next datagram (next
 * generation) goes out on the same socket at once.
 *
 * UDP may drop a datagram (a full socket buffer, on loopback too). A slot
 * whose datagram has not come back within LOSS_MS (200 ms) counts as lost
 * and sends its next generation; an echo of an older generation arriving
 * after that counts as stale and is ignored. So the load never stalls, and
 * the output says how much was lost: with a bounded number in flight and
 * buffers far larger than INFLIGHT datagrams, it should be nothing.
 *
 * After WARMUP seconds it measures for DURATION seconds: round trips
 * (datagrams echoed), their rate, latency percentiles (send to echo checked,
 * histogram buckets 3% wide), and, with -p PID, the server's CPU time (user +
 * system, all threads) over exactly that window, read through the process
 * CPU clock (clock_getcpuclockid) and, as a cross-check at clock-tick
 * resolution, utime + stime from /proc/PID/stat (stime alone per round
 * trip: server_sys_ns_per_rt). Beside it, as bench/echo/load.c: this
 * program's CPU use, the kernel's softirq threads' (ksoftirqd), and
 * other_pct, the machine's busy time charged to none of them: interference.
 *
 * Usage: udp_load [-k SOCKETS] [-n INFLIGHT] [-d SECONDS] [-w SECONDS]
 *                 [-s SIZE] [-p PID] HOST:PORT
 * Output: one line of key=value pairs. Exit status 1 on any error (a wrong
 * echo, the server gone: ECONNREFUSED, nothing echoed in the window).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
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

#define LOSS_NS  (200 * 1000000LL)
#define MAXEV    64
#define MAXSIZE  65507

struct slot {
    int      sock;   /* index into socks */
    uint32_t gen;
    int64_t  t_send; /* 0: not in flight (a send failed; resent by the sweep) */
};

static int          *socks;
static struct slot  *slots;
static int           nslots;
static uint32_t      size = 64;
static bool          measuring;
static uint64_t      round_trips, lost, stale, send_fail;
static unsigned char rxbuf[MAXSIZE + 1], txbuf[MAXSIZE];

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
    fputs("udp_load: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Latency histogram: as bench/echo/load.c (below 64 ns exact, then 32
 * buckets per power of two). */
#define HBUCKETS (64 + 58 * 32)
static uint64_t hist[HBUCKETS];

static int hidx(uint64_t v)
{
    if (v < 64) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    return 64 + (msb - 6) * 32 + (int)((v >> (msb - 5)) & 31);
}

static double hval(int i)
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
    return hval(HBUCKETS - 1);
}

/* Server and machine CPU: as bench/echo/load.c ----------------------------- */

static clockid_t server_clock;
static bool      have_server_clock;
static pid_t     server_pid;

static int64_t server_cpu_clock(void)
{
    struct timespec ts;
    if (!have_server_clock || clock_gettime(server_clock, &ts) < 0) return -1;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t stat_cpu(const char *path, int64_t *sys_ns)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long long ut, st;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    unsigned long long tick = 1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK);
    if (sys_ns) *sys_ns = (int64_t)(st * tick);
    return (int64_t)((ut + st) * tick);
}

static int64_t server_cpu_stat(int64_t *sys_ns)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)server_pid);
    return stat_cpu(path, sys_ns);
}

static bool machine_cpu(int64_t *busy)
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
    return true;
}

static int64_t ksoftirqd_cpu(void)
{
    DIR *d = opendir("/proc");
    if (!d) return -1;
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
        char *open = strchr(buf, '(');
        if (!open || strncmp(open + 1, "ksoftirqd/", 10) != 0) continue;
        int64_t c = stat_cpu(path, NULL);
        if (c > 0) sum += c;
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

/* Datagrams ---------------------------------------------------------------- */

/* The bytes of slot s, generation g: its header, then xorshift bytes seeded
 * by both, so that a datagram of another slot or generation never matches. */
static void fill(unsigned char *p, uint32_t s, uint32_t g)
{
    memcpy(p, &s, 4);
    memcpy(p + 4, &g, 4);
    uint64_t x = ((uint64_t)s << 32 | g) * 0x9e3779b97f4a7c15ULL | 1;
    for (uint32_t i = 8; i < size; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (unsigned char)x;
    }
}

static void send_slot(int s, int64_t now)
{
    struct slot *sl = &slots[s];
    sl->gen++;
    fill(txbuf, (uint32_t)s, sl->gen);
    for (;;) {
        ssize_t w = send(socks[sl->sock], txbuf, size, 0);
        if (w == (ssize_t)size) {
            sl->t_send = now;
            return;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == ECONNREFUSED) fail("send: the server is gone (ECONNREFUSED)");
        /* EAGAIN / ENOBUFS: the sweep sends it again. */
        send_fail++;
        sl->t_send = 0;
        return;
    }
}

/* Reads every datagram waiting on socket k, checks each, resends its slot. */
static void on_readable(int k)
{
    for (;;) {
        ssize_t n = recv(socks[k], rxbuf, sizeof rxbuf, 0);
        if (n < 0) {
            if (errno == EAGAIN) return;
            if (errno == EINTR) continue;
            if (errno == ECONNREFUSED) fail("recv: the server is gone (ECONNREFUSED)");
            fail("recv: %s", strerror(errno));
        }
        if ((uint32_t)n != size) fail("socket %d: a %zd-byte echo of a %u-byte datagram", k, n, size);
        uint32_t s, g;
        memcpy(&s, rxbuf, 4);
        memcpy(&g, rxbuf + 4, 4);
        if (s >= (uint32_t)nslots || slots[s].sock != k) fail("socket %d: echo names slot %u, not ours", k, s);
        if (g != slots[s].gen) { /* an echo we stopped waiting for */
            stale++;
            continue;
        }
        fill(txbuf, s, g);
        if (memcmp(rxbuf, txbuf, size) != 0) {
            uint32_t i = 0;
            while (rxbuf[i] == txbuf[i]) i++;
            fail("slot %u generation %u: echoed byte %u differs (0x%02x, sent 0x%02x)", s, g, i,
                 rxbuf[i], txbuf[i]);
        }
        int64_t now = now_ns();
        if (measuring) {
            round_trips++;
            hist[hidx((uint64_t)(now - slots[s].t_send))]++;
        }
        send_slot((int)s, now);
    }
}

/* Slots whose datagram (or echo) was lost, or whose send failed: next one. */
static void sweep(int64_t now)
{
    for (int s = 0; s < nslots; s++) {
        if (slots[s].t_send == 0) {
            send_slot(s, now);
        } else if (now - slots[s].t_send > LOSS_NS) {
            lost++;
            send_slot(s, now);
        }
    }
}

int main(int argc, char **argv)
{
    int nsocks = 4;
    double dur = 5, warm = 1;
    int opt;
    nslots = 64;
    while ((opt = getopt(argc, argv, "k:n:d:w:s:p:")) != -1) {
        switch (opt) {
        case 'k': nsocks = atoi(optarg); break;
        case 'n': nslots = atoi(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'w': warm = atof(optarg); break;
        case 's': size = (uint32_t)atoi(optarg); break;
        case 'p': server_pid = (pid_t)atoi(optarg); break;
        default: goto usage;
        }
    }
    if (optind != argc - 1 || nsocks < 1 || nslots < 1 || dur <= 0 || warm < 0 || size < 8 ||
        size > MAXSIZE) {
    usage:
        fprintf(stderr, "usage: %s [-k SOCKETS] [-n INFLIGHT] [-d SECONDS] [-w SECONDS] [-s SIZE>=8] "
                        "[-p PID] HOST:PORT\n", argv[0]);
        return 2;
    }
    if (server_pid > 0) {
        if (clock_getcpuclockid(server_pid, &server_clock) == 0) {
            have_server_clock = true;
            if (server_cpu_clock() < 0) have_server_clock = false;
        }
        int64_t sys;
        if (!have_server_clock && server_cpu_stat(&sys) < 0)
            fail("cannot read the CPU time of pid %d", (int)server_pid);
    }

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
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV}, *ai;
    int rc = getaddrinfo(*h ? h : "127.0.0.1", colon + 1, &hints, &ai);
    if (rc) fail("%s: %s", addr, gai_strerror(rc));

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) fail("epoll_create1: %s", strerror(errno));
    socks = calloc((size_t)nsocks, sizeof *socks);
    slots = calloc((size_t)nslots, sizeof *slots);
    if (!socks || !slots) fail("out of memory");
    for (int k = 0; k < nsocks; k++) {
        int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) fail("socket: %s", strerror(errno));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) fail("connect: %s", strerror(errno));
        socks[k] = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)k};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) fail("epoll_ctl: %s", strerror(errno));
    }
    freeaddrinfo(ai);
    for (int s = 0; s < nslots; s++) slots[s].sock = s % nsocks;

    int64_t t0 = now_ns();
    for (int s = 0; s < nslots; s++) send_slot(s, t0);

    int64_t warm_end = t0 + (int64_t)(warm * 1e9), m_start = 0, m_end = 0, next_sweep = t0 + LOSS_NS / 2;
    int64_t cpu0 = 0, cpu1 = 0, st0 = -1, st1 = -1, sys0 = 0, sys1 = 0, self0 = 0, self1 = 0;
    int64_t busy0 = 0, busy1 = 0, ksi0 = -1, ksi1 = -1;
    uint64_t lost0 = 0, stale0 = 0, sf0 = 0;
    bool have_machine = true;
    struct epoll_event evs[MAXEV];
    for (;;) {
        int64_t now = now_ns();
        if (!measuring && now >= warm_end) {
            cpu0 = server_cpu_clock();
            st0 = server_pid > 0 ? server_cpu_stat(&sys0) : -1;
            self0 = self_cpu();
            have_machine &= machine_cpu(&busy0);
            ksi0 = ksoftirqd_cpu();
            lost0 = lost, stale0 = stale, sf0 = send_fail;
            m_start = now_ns();
            measuring = true;
        } else if (measuring && now >= m_start + (int64_t)(dur * 1e9)) {
            m_end = now_ns();
            cpu1 = server_cpu_clock();
            st1 = server_pid > 0 ? server_cpu_stat(&sys1) : -1;
            self1 = self_cpu();
            have_machine &= machine_cpu(&busy1);
            ksi1 = ksoftirqd_cpu();
            break;
        }
        if (now >= next_sweep) {
            sweep(now);
            next_sweep = now + LOSS_NS / 2;
        }
        int n = epoll_wait(ep, evs, MAXEV, 50);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) on_readable((int)evs[i].data.u32);
    }
    double secs = (double)(m_end - m_start) / 1e9;
    if (round_trips == 0) fail("no datagram echoed in the measured window");
    printf("sockets=%d inflight=%d size=%u seconds=%.3f round_trips=%llu rt_per_s=%.0f p50_us=%.1f "
           "p99_us=%.1f lost=%llu stale=%llu send_fail=%llu client_cpu_pct=%.1f",
           nsocks, nslots, size, secs, (unsigned long long)round_trips, (double)round_trips / secs,
           percentile(0.50) / 1e3, percentile(0.99) / 1e3, (unsigned long long)(lost - lost0),
           (unsigned long long)(stale - stale0), (unsigned long long)(send_fail - sf0),
           100.0 * (double)(self1 - self0) / (double)(m_end - m_start));
    if (server_pid > 0) {
        int64_t cpu = have_server_clock ? cpu1 - cpu0 : st1 - st0;
        printf(" server_cpu_ns=%lld server_cpu_pct=%.1f server_cpu_ns_per_rt=%.1f", (long long)cpu,
               100.0 * (double)cpu / (double)(m_end - m_start), (double)cpu / (double)round_trips);
        if (st0 >= 0 && st1 >= 0)
            printf(" server_stat_cpu_ns=%lld server_sys_ns_per_rt=%.1f", (long long)(st1 - st0),
                   (double)(sys1 - sys0) / (double)round_trips);
        if (have_machine) {
            double wall = (double)(m_end - m_start);
            int64_t ksi = ksi0 >= 0 && ksi1 >= 0 ? ksi1 - ksi0 : 0;
            printf(" ksoftirqd_pct=%.1f other_pct=%.1f", 100.0 * (double)ksi / wall,
                   100.0 * (double)((busy1 - busy0) - cpu - (self1 - self0) - ksi) / wall);
        }
    }
    putchar('\n');
    fflush(stdout);
    return 0;
}
