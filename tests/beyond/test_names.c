/* Names against include/netpoll.h ("Names"): np_lookup_host and np_dial's
 * resolution honour the deadline; NP_ENOHOST; numeric hosts and /etc/hosts
 * need no DNS; bad input; plain threads; many lookups at once.
 *
 * Every lookup of an unknown name is asked of tests/dns_fake.h, a fake
 * server on 127.0.0.1, never the machine's resolver: those cases need the
 * c-ares build (NP_RESOLV_CONF / NP_DNS_SERVERS) and are skipped otherwise. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "beyond.h"
#include "dns_fake.h"
#include "net/resolve.h"

static dns_fake dns;

static void need_cares(void)
{
    if (strcmp(np__resolver_name(), "c-ares") != 0)
        NP_SKIP("not the c-ares build: unknown names would reach the real resolver");
}

/* Starts the fake server (in this case's process, before np_run). */
static void fake(int mode)
{
    need_cares();
    NP_CHECK_OK(dns_fake_start(&dns, mode));
}

static void is_loopback4(const np_addr *a)
{
    NP_CHECK_STR_EQ(b_fmt(a), "127.0.0.1:0");
}

/* ---- an unresponsive resolver: the deadline, never early, not much late ----------------- */

static void body_silent_lookup(void)
{
    np_addr out[4];
    int64_t t0 = np_now(), d = t0 + NP_SECOND;
    int rc = np_lookup_host("silent.example", out, 4, d);
    int64_t t1 = np_now();
    NP_CHECK_MSG(rc == -ETIMEDOUT, "np_lookup_host with a silent server: %d (%s) after %.0f ms", rc,
                 np_strerror(rc), (double)(t1 - t0) / 1e6);
    NP_CHECK_GE(t1, d); /* never early */
    NP_CHECK_LT(t1 - t0, 1500 * NP_MILLISECOND);
    NP_CHECK_GT(atomic_load(&dns.queries), 0); /* it did ask the fake */
}

static void t_names_silent_server_lookup_deadline(void)
{
    fake(DNS_SILENT);
    b_run(body_silent_lookup);
    dns_fake_stop(&dns);
}

static void body_silent_dial(void)
{
    np_conn c;
    int64_t t0 = np_now(), d = t0 + NP_SECOND;
    int rc = np_dial(&c, "tcp", "name.example:80", d);
    int64_t t1 = np_now();
    NP_CHECK_MSG(rc == -ETIMEDOUT, "np_dial with a silent server: %d (%s) after %.0f ms", rc,
                 np_strerror(rc), (double)(t1 - t0) / 1e6);
    NP_CHECK_GE(t1, d);
    NP_CHECK_LT(t1 - t0, 1500 * NP_MILLISECOND);
    NP_CHECK_EQ(c.id, 0);
}

static void t_names_silent_server_dial_deadline(void)
{
    fake(DNS_SILENT);
    b_run(body_silent_dial);
    dns_fake_stop(&dns);
}

/* No deadline, and a server that refuses (its port is closed: ICMP port
 * unreachable on loopback): "-EAGAIN (the resolver failed for now: no
 * answer, a server failure)", at once, not a hang. (A silent server with no
 * deadline is left out: c-ares 1.18 ignores resolv.conf's "options timeout:1
 * attempts:1" and retries for some 75 s.) */
static void body_refused_no_deadline(void)
{
    np_addr out[4];
    int64_t t0 = np_now();
    int rc = np_lookup_host("refused.example", out, 4, 0);
    NP_CHECK_MSG(rc == -EAGAIN, "np_lookup_host, no deadline, refusing server: %d (%s) after %.0f ms", rc,
                 np_strerror(rc), b_ms_since(t0));
    NP_CHECK_LT(np_now() - t0, 5 * NP_SECOND);
    np_conn c;
    NP_CHECK_EQ(np_dial(&c, "tcp", "refused.example:80", 0), -EAGAIN);
}

static void t_names_refusing_server_no_deadline_eagain(void)
{
    need_cares();
    /* A port on loopback that nobody listens on. */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t al = sizeof a;
    NP_CHECK_SYS(bind(s, (struct sockaddr *)&a, sizeof a));
    NP_CHECK_SYS(getsockname(s, (struct sockaddr *)&a, &al));
    close(s);
    char conf[64], servers[32];
    snprintf(conf, sizeof conf, "/tmp/np_beyond_resolv_%d.conf", (int)getpid());
    FILE *f = fopen(conf, "w");
    NP_CHECK(f);
    fprintf(f, "nameserver 127.0.0.1:%d\n", ntohs(a.sin_port));
    fclose(f);
    snprintf(servers, sizeof servers, "127.0.0.1:%d", ntohs(a.sin_port));
    setenv("NP_RESOLV_CONF", conf, 1);
    setenv("NP_DNS_SERVERS", servers, 1);
    b_run(body_refused_no_deadline);
    unlink(conf);
}

/* ---- NXDOMAIN, and A answers ------------------------------------------------------------ */

static void body_nxdomain(void)
{
    np_addr out[4];
    NP_CHECK_EQ(np_lookup_host("no-such-host.example", out, 4, np_now() + 5 * NP_SECOND), NP_ENOHOST);
    NP_CHECK_EQ(np_lookup_host("no-such-host.example", out, 4, 0), NP_ENOHOST);
    np_conn c;
    NP_CHECK_EQ(np_dial(&c, "tcp", "no-such-host.example:80", np_now() + 5 * NP_SECOND), NP_ENOHOST);
    NP_CHECK_EQ(np_dial(&c, "udp", "no-such-host.example:53", np_now() + 5 * NP_SECOND), NP_ENOHOST);
    NP_CHECK_STR_EQ(np_strerror(NP_ENOHOST), "no such host");
    NP_CHECK_STR_EQ(np_strerror(-NP_ENOHOST), "no such host"); /* either sign */
}

static void t_names_nxdomain_enohost(void)
{
    fake(DNS_NXDOMAIN);
    b_run(body_nxdomain);
    dns_fake_stop(&dns);
}

static void echo_once(void *arg)
{
    np_listener l = *(np_listener *)arg;
    np_conn s;
    NP_CHECK_OK(np_accept(l, &s));
    char b;
    NP_CHECK_EQ(np_read(s, &b, 1), 1);
    NP_CHECK_EQ(np_write(s, &b, 1), 1);
    NP_CHECK_OK(np_close(s));
}

static void body_a(void)
{
    np_addr out[8];
    int n = np_lookup_host("svc.example", out, 8, np_now() + 5 * NP_SECOND);
    NP_CHECK_EQ(n, 1);
    is_loopback4(&out[0]);
    /* max = 1 with one answer. */
    NP_CHECK_EQ(np_lookup_host("svc.example", out, 1, np_now() + 5 * NP_SECOND), 1);
    /* A dial by that name reaches a local listener, on the port given. */
    static np_listener l;
    char addr[64], name[64];
    NP_CHECK_OK(np_listen(&l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(l, addr, sizeof addr));
    snprintf(name, sizeof name, "svc.example:%s", strrchr(addr, ':') + 1);
    NP_CHECK_OK(np_go(echo_once, &l));
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "tcp", name, np_now() + 5 * NP_SECOND));
    char remote[64];
    NP_CHECK_OK(np_remote_addr(c, remote, sizeof remote));
    NP_CHECK_STR_EQ(remote, addr);
    NP_CHECK_EQ(np_write(c, "n", 1), 1);
    char b;
    NP_CHECK_OK(np_set_read_deadline(c, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(np_read(c, &b, 1), 1);
    NP_CHECK_EQ(b, 'n');
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_listener_close(l));
    /* Datagrams resolve the same way. */
    np_conn u;
    np_conn k;
    NP_CHECK_OK(np_listen_packet(&k, "udp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_local_addr(k, addr, sizeof addr));
    snprintf(name, sizeof name, "svc.example:%s", strrchr(addr, ':') + 1);
    NP_CHECK_OK(np_dial(&u, "udp4", name, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(np_write(u, "d", 1), 1);
    NP_CHECK_OK(np_set_read_deadline(k, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(np_read_from(k, &b, 1, NULL), 1);
    NP_CHECK_OK(np_close(u));
    NP_CHECK_OK(np_close(k));
}

static void t_names_a_record_lookup_and_dial(void)
{
    fake(DNS_A);
    b_run(body_a);
    dns_fake_stop(&dns);
}

/* ---- no DNS needed: /etc/hosts and numeric hosts --------------------------------------- */

static void body_hosts(void)
{
    np_addr out[8];
    int64_t t0 = np_now();
    int n = np_lookup_host("localhost", out, 8, np_now() + 5 * NP_SECOND);
    NP_CHECK_GT(n, 0);
    bool found = false;
    for (int i = 0; i < n; i++)
        found |= strcmp(b_fmt(&out[i]), "127.0.0.1:0") == 0 || strcmp(b_fmt(&out[i]), "[::1]:0") == 0;
    NP_CHECK(found);
    NP_CHECK_LT(np_now() - t0, NP_SECOND); /* the silent server was never waited for */
    NP_CHECK_EQ(atomic_load(&dns.queries), 0);
    np_conn c;
    char addr[64], name[64];
    static np_listener l;
    NP_CHECK_OK(np_listen(&l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(l, addr, sizeof addr));
    snprintf(name, sizeof name, "localhost:%s", strrchr(addr, ':') + 1);
    NP_CHECK_OK(np_go(echo_once, &l));
    NP_CHECK_OK(np_dial(&c, "tcp4", name, np_now() + 5 * NP_SECOND));
    NP_CHECK_EQ(np_write(c, "h", 1), 1);
    char b;
    NP_CHECK_EQ(np_read(c, &b, 1), 1);
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_listener_close(l));
    NP_CHECK_EQ(atomic_load(&dns.queries), 0);
}

static void t_names_localhost_from_etc_hosts(void)
{
    FILE *f = fopen("/etc/hosts", "r");
    bool listed = false;
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (line[0] != '#' && strstr(line, "localhost"))
            listed = true;
    if (f)
        fclose(f);
    if (!listed)
        NP_SKIP("/etc/hosts names no localhost");
    fake(DNS_SILENT); /* a DNS query would hang until the deadline */
    b_run(body_hosts);
    dns_fake_stop(&dns);
}

static void body_numeric(void)
{
    np_addr out[4];
    int64_t t0 = np_now();
    NP_CHECK_EQ(np_lookup_host("127.0.0.1", out, 4, np_now() + 5 * NP_SECOND), 1);
    is_loopback4(&out[0]);
    NP_CHECK_EQ(np_lookup_host("::1", out, 4, np_now() + 5 * NP_SECOND), 1);
    NP_CHECK_STR_EQ(b_fmt(&out[0]), "[::1]:0");
    NP_CHECK_EQ(np_lookup_host("10.20.30.40", out, 4, 0), 1);
    NP_CHECK_STR_EQ(b_fmt(&out[0]), "10.20.30.40:0");
    /* A deadline already past does not matter to a numeric address. */
    NP_CHECK_EQ(np_lookup_host("192.0.2.1", out, 4, np_now() - 1), 1);
    NP_CHECK_LT(np_now() - t0, NP_SECOND);
    NP_CHECK_EQ(atomic_load(&dns.queries), 0);
}

static void t_names_numeric_hosts_need_no_lookup(void)
{
    if (strcmp(np__resolver_name(), "c-ares") == 0)
        fake(DNS_SILENT);
    b_run(body_numeric);
    if (strcmp(np__resolver_name(), "c-ares") == 0)
        dns_fake_stop(&dns);
}

/* ---- bad input --------------------------------------------------------------------------- */

static void body_bad(void)
{
    np_addr out[4];
    NP_CHECK_EQ(np_lookup_host("", out, 4, 0), -EINVAL);
    NP_CHECK_EQ(np_lookup_host(NULL, out, 4, 0), -EINVAL);
    char big[301];
    memset(big, 'a', 300);
    big[300] = 0;
    for (int i = 50; i < 300; i += 51)
        big[i] = '.'; /* labels short enough: only the total is too long */
    NP_CHECK_EQ(np_lookup_host(big, out, 4, 0), -EINVAL);
    np_conn c;
    char addr[320];
    snprintf(addr, sizeof addr, "%s:80", big);
    NP_CHECK_EQ(np_dial(&c, "tcp", addr, 0), -EINVAL);
    big[254] = 0; /* 254 bytes: one over */
    NP_CHECK_EQ(np_lookup_host(big, out, 4, 0), -EINVAL);
    NP_CHECK_EQ(np_lookup_host("localhost", out, 0, 0), -EINVAL);
    NP_CHECK_EQ(np_lookup_host("localhost", out, -1, 0), -EINVAL);
    NP_CHECK_EQ(np_lookup_host("127.0.0.1", out, 0, 0), -EINVAL);
    NP_CHECK_EQ(np_lookup_host("127.0.0.1", NULL, 4, 0), -EINVAL);
    NP_CHECK_EQ(atomic_load(&dns.queries), 0); /* none of these asked anyone */
}

static void t_names_bad_input_einval(void)
{
    fake(DNS_SILENT);
    b_run(body_bad);
    dns_fake_stop(&dns);
}

/* np_dial's host is a name as np_lookup_host's: over 253 bytes it cannot
 * exist, and is refused without asking anyone. */
static void body_dial_254(void)
{
    char addr[300];
    memset(addr, 'c', 254);
    for (int i = 50; i < 254; i += 51)
        addr[i] = '.';
    snprintf(addr + 254, sizeof addr - 254, ":80");
    np_conn c;
    int64_t t0 = np_now();
    int rc = np_dial(&c, "tcp", addr, np_now() + 3 * NP_SECOND);
    NP_CHECK_MSG(rc == -EINVAL, "np_dial(a 254-byte host) = %d (%s) after %.0f ms, %d DNS queries", rc,
                 np_strerror(rc), b_ms_since(t0), atomic_load(&dns.queries));
}

static void t_names_dial_254_byte_host_einval(void)
{
    fake(DNS_SILENT);
    b_run(body_dial_254);
    dns_fake_stop(&dns);
}

/* A 253-byte name is a name: looked up (NXDOMAIN here), not refused. */
static void body_253(void)
{
    char name[254];
    memset(name, 'b', 253);
    name[253] = 0;
    for (int i = 50; i < 253; i += 51)
        name[i] = '.';
    np_addr out[4];
    NP_CHECK_EQ(np_lookup_host(name, out, 4, np_now() + 5 * NP_SECOND), NP_ENOHOST);
}

static void t_names_253_bytes_is_a_name(void)
{
    fake(DNS_NXDOMAIN);
    b_run(body_253);
    dns_fake_stop(&dns);
}

/* ---- plain threads -------------------------------------------------------------------------- */

static _Atomic int plain_rc = 12345;
static np_addr plain_out[4];

static void *plain_lookup(void *arg)
{
    (void)arg;
    atomic_store(&plain_rc, np_lookup_host("thread.example", plain_out, 4, np_now() + 5 * NP_SECOND));
    return NULL;
}

static void body_plain(void)
{
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, plain_lookup, NULL));
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_EQ(atomic_load(&plain_rc), 1);
    is_loopback4(&plain_out[0]);
}

static void t_names_lookup_from_plain_thread(void)
{
    fake(DNS_A);
    b_run(body_plain);
    /* No runtime: -ESRCH. */
    np_addr out[1];
    NP_CHECK_EQ(np_lookup_host("thread.example", out, 1, np_now() + NP_SECOND), -ESRCH);
    dns_fake_stop(&dns);
}

/* ---- many at once ------------------------------------------------------------------------- */

enum { LOOKUPS = 50 };
static np_waitgroup many_wg;
static _Atomic int many_ok;

static void one_lookup(void *arg)
{
    char name[64];
    snprintf(name, sizeof name, "host%d.example", (int)(intptr_t)arg);
    np_addr out[2];
    int rc = np_lookup_host(name, out, 2, np_now() + 10 * NP_SECOND);
    if (rc == 1 && strcmp(b_fmt(&out[0]), "127.0.0.1:0") == 0)
        atomic_fetch_add(&many_ok, 1);
    else
        fprintf(stderr, "%s: %d (%s)\n", name, rc, rc < 0 ? np_strerror(rc) : b_fmt(&out[0]));
    np_waitgroup_done(&many_wg);
}

static void body_many(void)
{
    NP_CHECK_OK(np_waitgroup_add(&many_wg, LOOKUPS));
    int64_t t0 = np_now();
    for (int i = 0; i < LOOKUPS; i++)
        NP_CHECK_OK(np_go(one_lookup, (void *)(intptr_t)i));
    NP_CHECK_OK(np_waitgroup_wait(&many_wg, np_now() + 30 * NP_SECOND));
    NP_CHECK_MSG(atomic_load(&many_ok) == LOOKUPS, "%d of %d concurrent lookups answered in %.0f ms",
                 atomic_load(&many_ok), LOOKUPS, b_ms_since(t0));
}

static void t_names_50_concurrent_lookups(void)
{
    fake(DNS_A);
    b_run(body_many);
    dns_fake_stop(&dns);
}

/* "tcp6" asks for IPv6 only: a name with only an A record has no address
 * for it. */
static void body_family(void)
{
    np_conn c;
    NP_CHECK_EQ(np_dial(&c, "tcp6", "svc.example:80", np_now() + 5 * NP_SECOND), NP_ENOHOST);
    NP_CHECK_EQ(np_dial(&c, "udp6", "svc.example:53", np_now() + 5 * NP_SECOND), NP_ENOHOST);
    /* A trailing dot is the same name, fully qualified. */
    np_addr out[2];
    NP_CHECK_EQ(np_lookup_host("svc.example.", out, 2, np_now() + 5 * NP_SECOND), 1);
    is_loopback4(&out[0]);
}

static void t_names_family_narrowed_by_network(void)
{
    fake(DNS_A);
    b_run(body_family);
    dns_fake_stop(&dns);
}

/* 50 lookups at once against a silent server: each ends at its deadline. */
static _Atomic int late_ok;
static _Atomic int64_t late_worst;

static void one_late(void *arg)
{
    int64_t d = *(const int64_t *)arg;
    np_addr out[1];
    int rc = np_lookup_host("late.example", out, 1, d);
    int64_t now = np_now();
    if (rc == -ETIMEDOUT && now >= d)
        atomic_fetch_add(&late_ok, 1);
    if (now - d > atomic_load(&late_worst))
        atomic_store(&late_worst, now - d);
    np_waitgroup_done(&many_wg);
}

static void body_many_late(void)
{
    static int64_t d;
    d = np_now() + 500 * NP_MILLISECOND;
    NP_CHECK_OK(np_waitgroup_add(&many_wg, LOOKUPS));
    for (int i = 0; i < LOOKUPS; i++)
        NP_CHECK_OK(np_go(one_late, &d));
    NP_CHECK_OK(np_waitgroup_wait(&many_wg, np_now() + 10 * NP_SECOND));
    NP_CHECK_EQ(atomic_load(&late_ok), LOOKUPS);
    NP_CHECK_MSG(atomic_load(&late_worst) < 500 * NP_MILLISECOND, "a lookup returned %.0f ms after its "
                 "deadline", (double)atomic_load(&late_worst) / 1e6);
}

static void t_names_50_concurrent_timeouts(void)
{
    fake(DNS_SILENT);
    b_run(body_many_late);
    dns_fake_stop(&dns);
}

/* Lookups that time out leave nothing behind: the next run starts clean
 * (and ASan's leak check at exit sees no lost c-ares state). */
static void body_many_timeouts(void)
{
    for (int i = 0; i < 20; i++) {
        np_addr out[1];
        int64_t d = np_now() + 20 * NP_MILLISECOND;
        NP_CHECK_EQ(np_lookup_host("t.example", out, 1, d), -ETIMEDOUT);
        NP_CHECK_GE(np_now(), d);
    }
}

static void t_names_repeated_timeouts_leave_nothing(void)
{
    fake(DNS_SILENT);
    int fds = b_open_fds();
    b_run(body_many_timeouts);
    NP_CHECK_EQ(b_open_fds(), fds);
    dns_fake_stop(&dns);
}

NP_TEST_LIST(
    NP_CASE(t_names_silent_server_lookup_deadline),
    NP_CASE(t_names_silent_server_dial_deadline),
    NP_CASE(t_names_refusing_server_no_deadline_eagain),
    NP_CASE(t_names_nxdomain_enohost),
    NP_CASE(t_names_a_record_lookup_and_dial),
    NP_CASE(t_names_localhost_from_etc_hosts),
    NP_CASE(t_names_numeric_hosts_need_no_lookup),
    NP_CASE(t_names_bad_input_einval),
    NP_CASE(t_names_253_bytes_is_a_name),
    NP_CASE(t_names_dial_254_byte_host_einval),
    NP_CASE(t_names_lookup_from_plain_thread),
    NP_CASE(t_names_50_concurrent_lookups),
    NP_CASE(t_names_family_narrowed_by_network),
    NP_CASE(t_names_50_concurrent_timeouts),
    NP_CASE(t_names_repeated_timeouts_leave_nothing))
