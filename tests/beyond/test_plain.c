/* Plain threads doing I/O, and bad input, against include/netpoll.h ("Which
 * thread may call what"): a plain thread and a task on the two ends of one
 * connection, a plain thread's accept woken by a close, plain-thread sleeps,
 * -ESRCH for every blocking call with no runtime, and NULL pointers, huge
 * lengths and forged handles giving their documented errors, never a crash. */
#include <fcntl.h>
#include <limits.h>
#include <sys/socket.h>
#include <time.h>

#include <stdlib.h>
#include "beyond.h"
#include "dns_fake.h"
#include "net/resolve.h"

/* ---- a plain thread and a task: 10k messages on one TCP connection ----------------------- */

enum { MSGS = 10000, MSG_LEN = 32 };
static char pp_addr[64];
static np_listener pp_l;

static void read_exact(np_conn c, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = np_read(c, (char *)buf + got, len - got);
        NP_CHECK_MSG(n > 0, "read: %zd (%s)", n, np_strerror((int)n));
        got += (size_t)n;
    }
}

static void *pp_thread(void *arg)
{
    (void)arg;
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "tcp4", pp_addr, np_now() + 5 * NP_SECOND)); /* from this thread */
    NP_CHECK_OK(np_set_deadline(c, np_now() + 60 * NP_SECOND));
    char msg[MSG_LEN], back[MSG_LEN];
    for (int i = 0; i < MSGS; i++) {
        memset(msg, 0, sizeof msg);
        snprintf(msg, sizeof msg, "ping %d", i);
        NP_CHECK_EQ(np_write(c, msg, sizeof msg), (ssize_t)sizeof msg);
        read_exact(c, back, sizeof back);
        NP_CHECK_MSG(memcmp(back, "pong", 4) == 0 && atoi(back + 5) == i, "reply %d: \"%.*s\"", i,
                     MSG_LEN, back);
    }
    NP_CHECK_OK(np_close_write(c));
    char b;
    NP_CHECK_EQ(np_read(c, &b, 1), 0);
    NP_CHECK_OK(np_close(c));
    return NULL;
}

static void body_pingpong(void)
{
    NP_CHECK_OK(np_listen(&pp_l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(pp_l, pp_addr, sizeof pp_addr));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, pp_thread, NULL));
    np_conn s;
    NP_CHECK_OK(np_accept(pp_l, &s));
    char msg[MSG_LEN];
    int64_t t0 = np_now();
    for (int i = 0; i < MSGS; i++) {
        read_exact(s, msg, sizeof msg);
        NP_CHECK(memcmp(msg, "ping", 4) == 0 && atoi(msg + 5) == i);
        memcpy(msg, "pong", 4);
        NP_CHECK_EQ(np_write(s, msg, sizeof msg), (ssize_t)sizeof msg);
    }
    char b;
    NP_CHECK_EQ(np_read(s, &b, 1), 0);
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    fprintf(stderr, "%d round trips thread<->task in %.0f ms\n", MSGS, b_ms_since(t0));
    NP_CHECK_OK(np_listener_close(pp_l));
}

static void t_plain_thread_and_task_10k_messages(void)
{
    b_run(body_pingpong);
}

/* The same over UDP: a plain thread's np_read_from / np_write_to. */
static np_conn up_s;
static char up_addr[64];

static void *up_thread(void *arg)
{
    (void)arg;
    np_conn c;
    NP_CHECK_OK(np_dial(&c, "udp4", up_addr, 0));
    for (int i = 0; i < 2000; i++) {
        char msg[16], back[16];
        int len = snprintf(msg, sizeof msg, "%d", i);
        NP_CHECK_EQ(np_write(c, msg, (size_t)len), len);
        NP_CHECK_OK(np_set_read_deadline(c, np_now() + 5 * NP_SECOND));
        ssize_t n = np_read(c, back, sizeof back);
        NP_CHECK_EQ(n, len);
        NP_CHECK(memcmp(back, msg, (size_t)len) == 0);
    }
    NP_CHECK_EQ(np_write(c, "", 0), 0); /* the end */
    NP_CHECK_OK(np_close(c));
    return NULL;
}

static void body_udp_plain(void)
{
    NP_CHECK_OK(np_listen_packet(&up_s, "udp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_local_addr(up_s, up_addr, sizeof up_addr));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, up_thread, NULL));
    for (;;) {
        char buf[16];
        np_addr from;
        NP_CHECK_OK(np_set_read_deadline(up_s, np_now() + 10 * NP_SECOND));
        ssize_t n = np_read_from(up_s, buf, sizeof buf, &from);
        NP_CHECK_GE(n, 0);
        if (n == 0)
            break;
        NP_CHECK_EQ(np_write_to(up_s, buf, (size_t)n, &from), n);
    }
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_OK(np_close(up_s));
}

static void t_plain_thread_and_task_udp_echo(void)
{
    b_run(body_udp_plain);
}

/* ---- a plain thread blocked in np_accept, woken by np_listener_close ------------------------ */

static np_listener acc_l;
static _Atomic int acc_started, acc_result = 12345;

static void *acc_thread(void *arg)
{
    (void)arg;
    np_conn c;
    atomic_store(&acc_started, 1);
    atomic_store(&acc_result, np_accept(acc_l, &c));
    return NULL;
}

static void body_accept_close(void)
{
    NP_CHECK_OK(np_listen(&acc_l, "tcp4", "127.0.0.1:0"));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, acc_thread, NULL));
    NP_CHECK(b_wait_flag(&acc_started, 5000));
    np_sleep(100 * NP_MILLISECOND); /* blocked in the accept by now */
    NP_CHECK_EQ(atomic_load(&acc_result), 12345);
    int64_t t0 = np_now();
    NP_CHECK_OK(np_listener_close(acc_l));
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_EQ(atomic_load(&acc_result), -ECANCELED);
    NP_CHECK_LT(np_now() - t0, NP_SECOND);
}

static void t_plain_thread_accept_woken_by_listener_close(void)
{
    b_run(body_accept_close);
}

/* ---- plain-thread sleeps: never early ---------------------------------------------------- */

static void *sleeper(void *arg)
{
    (void)arg;
    const int64_t waits[] = { 1, NP_MICROSECOND, NP_MILLISECOND, 5 * NP_MILLISECOND, 20 * NP_MILLISECOND };
    for (int r = 0; r < 3; r++)
        for (size_t i = 0; i < sizeof waits / sizeof waits[0]; i++) {
            int64_t t0 = np_now();
            NP_CHECK_OK(np_sleep(waits[i]));
            NP_CHECK_GE(np_now() - t0, waits[i]);
            int64_t d = np_now() + waits[i];
            NP_CHECK_OK(np_sleep_until(d));
            NP_CHECK_GE(np_now(), d);
        }
    int64_t t0 = np_now();
    NP_CHECK_OK(np_sleep(0));
    NP_CHECK_OK(np_sleep(-5));
    NP_CHECK_OK(np_sleep(INT64_MIN));
    NP_CHECK_OK(np_sleep_until(np_now() - 1));
    NP_CHECK_OK(np_sleep_until(INT64_MIN));
    NP_CHECK_LT(np_now() - t0, 100 * NP_MILLISECOND);
    return NULL;
}

static void body_sleep(void)
{
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, sleeper, NULL));
    NP_CHECK_OK(np_offload(b_join_thread, &th));
}

static void t_plain_thread_sleep_never_early(void)
{
    b_run(body_sleep);
}

/* ---- deadlines move while a plain thread is blocked -------------------------------------- */

static np_conn mv_c, mv_s;
static _Atomic int mv_started;
static _Atomic ssize_t mv_result = 12345;
static _Atomic int64_t mv_at;

static void *mv_reader(void *arg)
{
    (void)arg;
    char b;
    atomic_store(&mv_started, 1);
    atomic_store(&mv_result, np_read(mv_c, &b, 1));
    atomic_store(&mv_at, np_now());
    return NULL;
}

static void body_moved(void)
{
    np_listener l;
    char addr[64];
    NP_CHECK_OK(np_listen(&l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(l, addr, sizeof addr));
    NP_CHECK_OK(np_dial(&mv_c, "tcp4", addr, 0));
    NP_CHECK_OK(np_accept(l, &mv_s));
    NP_CHECK_OK(np_set_read_deadline(mv_c, np_now() + 30 * NP_SECOND));
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, mv_reader, NULL));
    NP_CHECK(b_wait_flag(&mv_started, 5000));
    np_sleep(50 * NP_MILLISECOND); /* blocked, with 30 s to go */
    int64_t d = np_now() + 50 * NP_MILLISECOND;
    NP_CHECK_OK(np_set_read_deadline(mv_c, d)); /* applies to the blocked call too */
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_EQ(atomic_load(&mv_result), -ETIMEDOUT);
    NP_CHECK_GE(atomic_load(&mv_at), d);
    NP_CHECK_LT(atomic_load(&mv_at) - d, 2 * NP_SECOND);
    NP_CHECK_OK(np_close(mv_c));
    NP_CHECK_OK(np_close(mv_s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_plain_thread_blocked_read_sees_moved_deadline(void)
{
    b_run(body_moved);
}

/* ---- plain threads still blocked when np_run ends ---------------------------------------- */

/* np_run closes every handle left open: a plain thread blocked in np_read
 * on one is woken (-ECANCELED or -EBADF), never left hanging. */
static np_conn end_c;
static np_listener end_l;
static _Atomic int end_started;
static _Atomic ssize_t end_read = 12345, end_acc = 12345;

static void *end_reader(void *arg)
{
    (void)arg;
    char b;
    atomic_fetch_add(&end_started, 1);
    atomic_store(&end_read, np_read(end_c, &b, 1));
    return NULL;
}

static void *end_acceptor(void *arg)
{
    (void)arg;
    np_conn x;
    atomic_fetch_add(&end_started, 1);
    atomic_store(&end_acc, np_accept(end_l, &x));
    return NULL;
}

static pthread_t end_th[2];
static void body_end_blocked(void)
{
    char addr[64];
    NP_CHECK_OK(np_listen(&end_l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(end_l, addr, sizeof addr));
    np_conn s;
    NP_CHECK_OK(np_dial(&end_c, "tcp4", addr, 0));
    NP_CHECK_OK(np_accept(end_l, &s));
    NP_CHECK_OK(pthread_create(&end_th[0], NULL, end_reader, NULL));
    NP_CHECK_OK(pthread_create(&end_th[1], NULL, end_acceptor, NULL));
    while (atomic_load(&end_started) < 2)
        np_sleep(NP_MILLISECOND);
    np_sleep(50 * NP_MILLISECOND); /* both blocked; the last task ends, handles left open */
}

static bool join_within(pthread_t th, int seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    return pthread_timedjoin_np(th, NULL, &ts) == 0;
}

static void t_plain_threads_blocked_on_handles_when_run_ends(void)
{
    b_run(body_end_blocked);
    bool r = join_within(end_th[0], 5), a = join_within(end_th[1], 5);
    NP_CHECK_MSG(r && a, "5 s after np_run returned (closing every handle), a plain thread is still "
                 "blocked in %s", !r ? "np_read" : "np_accept");
    ssize_t rr = atomic_load(&end_read), ar = atomic_load(&end_acc);
    NP_CHECK_MSG(rr == -ECANCELED || rr == -EBADF, "np_read: %zd", rr);
    NP_CHECK_MSG(ar == -ECANCELED || ar == -EBADF, "np_accept: %zd", ar);
}

/* A plain thread's np_sleep never returns early, even if the runtime ends
 * meanwhile; and it does return. */
static _Atomic int sl_started, sl_rc = 12345;
static _Atomic int64_t sl_took;

static void *end_sleeper(void *arg)
{
    (void)arg;
    atomic_store(&sl_started, 1);
    int64_t t0 = np_now();
    atomic_store(&sl_rc, np_sleep(500 * NP_MILLISECOND));
    atomic_store(&sl_took, np_now() - t0);
    return NULL;
}

static pthread_t sl_th;
static void body_end_sleep(void)
{
    NP_CHECK_OK(pthread_create(&sl_th, NULL, end_sleeper, NULL));
    NP_CHECK(b_wait_flag(&sl_started, 5000));
    np_sleep(20 * NP_MILLISECOND);
}

static void t_plain_thread_sleep_across_run_end(void)
{
    b_run(body_end_sleep);
    NP_CHECK_MSG(join_within(sl_th, 5), "a plain thread's np_sleep(500 ms) still sleeping 5 s after "
                 "np_run returned");
    NP_CHECK_EQ(atomic_load(&sl_rc), 0);
    NP_CHECK_GE(atomic_load(&sl_took), 500 * NP_MILLISECOND); /* never early */
}

/* The same for a plain thread's deadline in the coordination calls: a
 * receive with a 1 s deadline on a channel nobody sends on returns by its
 * deadline (-ETIMEDOUT) even though the runtime ended meanwhile. */
static np_chan cr_chan;
static _Atomic int cr_started, cr_rc = 12345;
static _Atomic int64_t cr_took;

static void *end_receiver(void *arg)
{
    (void)arg;
    atomic_store(&cr_started, 1);
    int64_t t0 = np_now();
    int v;
    atomic_store(&cr_rc, np_chan_recv(cr_chan, &v, t0 + NP_SECOND));
    atomic_store(&cr_took, np_now() - t0);
    return NULL;
}

static pthread_t cr_th;
static void body_end_recv(void)
{
    NP_CHECK_OK(np_chan_make(&cr_chan, sizeof(int), 0));
    NP_CHECK_OK(pthread_create(&cr_th, NULL, end_receiver, NULL));
    NP_CHECK(b_wait_flag(&cr_started, 5000));
    np_sleep(50 * NP_MILLISECOND);
}

static void t_plain_thread_chan_deadline_across_run_end(void)
{
    /* Known defect, open: a plain thread still blocked when np_run returns
     * loses its deadline (the workers that ran its timer are gone) and, on
     * the poll backend, its np_wait_fd registration trips the poller's
     * teardown check. Set NP_TEST_KNOWN=1 to run it. */
    if (!getenv("NP_TEST_KNOWN"))
        NP_SKIP("known defect: a plain thread blocked across the end of np_run");
    b_run(body_end_recv);
    NP_CHECK_MSG(join_within(cr_th, 5), "a plain thread's np_chan_recv (1 s deadline) still blocked 5 s "
                 "after np_run returned");
    int rc = atomic_load(&cr_rc);
    NP_CHECK_MSG(rc == -ETIMEDOUT || rc == -ESRCH, "np_chan_recv across the end of np_run: %d", rc);
    if (rc == -ETIMEDOUT)
        NP_CHECK_GE(atomic_load(&cr_took), NP_SECOND);
    np_chan_free(cr_chan);
}

/* ---- no runtime: every blocking call -ESRCH ---------------------------------------------- */

static np_conn kept_conn, kept_udp;
static np_listener kept_l;

static void body_keep(void)
{
    char addr[64];
    NP_CHECK_OK(np_listen(&kept_l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(kept_l, addr, sizeof addr));
    NP_CHECK_OK(np_dial(&kept_conn, "tcp4", addr, 0));
    NP_CHECK_OK(np_listen_packet(&kept_udp, "udp4", "127.0.0.1:0"));
}

static void no_runtime_checks(np_conn c, np_conn u, np_listener l)
{
    char b[8];
    np_conn x;
    np_listener y;
    np_addr a;
    NP_CHECK_OK(np_addr_parse(&a, "udp4", "127.0.0.1:9"));
    int p[2];
    NP_CHECK_SYS(pipe2(p, O_CLOEXEC));
    NP_CHECK_EQ(np_read(c, b, sizeof b), -ESRCH);
    NP_CHECK_EQ(np_write(c, b, 1), -ESRCH);
    NP_CHECK_EQ(np_wait_readable(c), -ESRCH);
    NP_CHECK_EQ(np_accept(l, &x), -ESRCH);
    NP_CHECK_EQ(np_dial(&x, "tcp4", "127.0.0.1:9", 0), -ESRCH);
    NP_CHECK_EQ(np_dial(&x, "udp4", "127.0.0.1:9", 0), -ESRCH);
    NP_CHECK_EQ(np_listen(&y, "tcp4", "127.0.0.1:0"), -ESRCH);
    NP_CHECK_EQ(np_listen_packet(&x, "udp4", "127.0.0.1:0"), -ESRCH);
    NP_CHECK_EQ(np_read_from(u, b, sizeof b, &a), -ESRCH);
    NP_CHECK_EQ(np_write_to(u, b, 1, &a), -ESRCH);
    NP_CHECK_EQ(np_wait_fd(p[1], NP_WRITABLE, 0), -ESRCH);
    NP_CHECK_EQ(np_wait_fd(p[0], NP_READABLE, np_now() + NP_SECOND), -ESRCH);
    NP_CHECK_EQ(np_sleep(NP_MILLISECOND), -ESRCH);
    NP_CHECK_EQ(np_sleep_until(np_now() + NP_MILLISECOND), -ESRCH);
    NP_CHECK_EQ(np_offload(b_join_thread, NULL), -ESRCH);
    NP_CHECK_EQ(np_lookup_host("nowhere.example", &a, 1, np_now() + NP_SECOND), -ESRCH);
    np_chan ch;
    NP_CHECK_OK(np_chan_make(&ch, sizeof(int), 0));
    int v = 0;
    NP_CHECK_EQ(np_chan_recv(ch, &v, 0), -ESRCH);
    NP_CHECK_EQ(np_chan_send(ch, &v, np_now() + NP_SECOND), -ESRCH);
    NP_CHECK_OK(np_chan_free(ch));
    close(p[0]);
    close(p[1]);
}

static void t_no_runtime_every_blocking_call_esrch(void)
{
    /* Lookups of names would reach a server: keep it the fake one. */
    dns_fake d;
    bool cares = strcmp(np__resolver_name(), "c-ares") == 0;
    if (cares)
        NP_CHECK_OK(dns_fake_start(&d, DNS_SILENT));
    int64_t t0 = np_now();
    no_runtime_checks((np_conn){ 1 }, (np_conn){ 2 }, (np_listener){ 3 }); /* before any run */
    b_run(body_keep);
    no_runtime_checks(kept_conn, kept_udp, kept_l); /* after: handles of a finished run */
    NP_CHECK_LT(np_now() - t0, 2 * NP_SECOND); /* nothing waited */
    /* Handles of the finished run are closed: the calls that need no
     * runtime say -EBADF. */
    char b[8];
    NP_CHECK_EQ(np_close(kept_conn), -EBADF);
    NP_CHECK_EQ(np_local_addr(kept_udp, b, sizeof b), -EBADF);
    NP_CHECK_EQ(np_listener_close(kept_l), -EBADF);
    if (cares)
        dns_fake_stop(&d);
}

/* ---- bad input: documented errors, never a crash ---------------------------------------- */

static void body_null(void)
{
    char addr[64];
    np_listener l;
    NP_CHECK_OK(np_listen(&l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(l, addr, sizeof addr));
    np_conn c, s;
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    NP_CHECK_OK(np_accept(l, &s));
    np_conn u;
    NP_CHECK_OK(np_listen_packet(&u, "udp4", "127.0.0.1:0"));
    /* NULL outputs and names. */
    NP_CHECK_EQ(np_dial(NULL, "udp4", addr, 0), -EINVAL);
    np_conn scratch;
    NP_CHECK_EQ(np_dial(&scratch, NULL, addr, 0) < 0, 1);
    NP_CHECK_EQ(np_dial(&scratch, "udp4", NULL, 0), -EINVAL);
    NP_CHECK_EQ(np_listen_packet(NULL, "udp4", "127.0.0.1:0"), -EINVAL);
    NP_CHECK_EQ(np_conn_from_fd(NULL, 0), -EINVAL);
    NP_CHECK_EQ(np_accept(l, NULL), -EINVAL);
    NP_CHECK_EQ(np_addr_format(NULL, addr, sizeof addr), -EINVAL);
    NP_CHECK_EQ(np_write_to(u, "x", 1, NULL), -EINVAL);
    NP_CHECK_EQ(np_local_addr(c, NULL, 64), -EINVAL);
    NP_CHECK_EQ(np_listener_addr(l, NULL, 64), -EINVAL);
    /* NULL buffers with a length: an error from the kernel, no crash. */
    NP_CHECK_EQ(np_write(s, "abc", 3), 3);
    NP_CHECK_OK(np_wait_readable(c));
    NP_CHECK_EQ(np_read(c, NULL, 3), -EFAULT);
    NP_CHECK_EQ(np_write(c, NULL, 3), -EFAULT);
    NP_CHECK_EQ(np_write_to(u, NULL, 3, &(np_addr){ { 0 } }), -EINVAL);
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "udp4", "127.0.0.1:9"));
    NP_CHECK_EQ(np_write_to(u, NULL, 3, &to), -EFAULT);
    /* Zero lengths with NULL buffers are fine. */
    NP_CHECK_EQ(np_read(c, NULL, 0), 0);
    NP_CHECK_EQ(np_write(c, NULL, 0), 0);
    NP_CHECK_OK(np_close(u));
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_bad_input_null_pointers(void)
{
    b_run(body_null);
}

static void body_huge(void)
{
    char addr[64];
    np_listener l;
    NP_CHECK_OK(np_listen(&l, "tcp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_listener_addr(l, addr, sizeof addr));
    np_conn c, s;
    NP_CHECK_OK(np_dial(&c, "tcp4", addr, 0));
    NP_CHECK_OK(np_accept(l, &s));
    char buf[64];
    NP_CHECK_EQ(np_write(c, buf, SIZE_MAX), -EINVAL);
    NP_CHECK_EQ(np_write(c, buf, (size_t)SSIZE_MAX + 1), -EINVAL);
    NP_CHECK_EQ(np_write(s, "hello", 5), 5);
    NP_CHECK_OK(np_wait_readable(c));
    /* As SSIZE_MAX; only 5 are there. qemu-user checks the whole range of a
     * guest buffer and gives EFAULT: the data then stays for the next read. */
    ssize_t huge = np_read(c, buf, SIZE_MAX);
    if (huge == -EFAULT)
        huge = np_read(c, buf, sizeof buf);
    NP_CHECK_EQ(huge, 5);
    /* Datagrams: a huge length is over the limit, never a partial send. */
    np_conn u, k;
    NP_CHECK_OK(np_listen_packet(&u, "udp4", "127.0.0.1:0"));
    NP_CHECK_OK(np_local_addr(u, addr, sizeof addr));
    NP_CHECK_OK(np_dial(&k, "udp4", addr, 0));
    NP_CHECK_EQ(np_write(k, buf, SIZE_MAX), -EINVAL);
    /* -EMSGSIZE from the kernel; qemu-user checks the guest buffer's whole
     * range first and says -EFAULT. Either way nothing is sent. */
    ssize_t w = np_write(k, buf, (size_t)SSIZE_MAX);
    NP_CHECK_MSG(w == -EMSGSIZE || w == -EFAULT, "np_write(SSIZE_MAX) = %zd", w);
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "udp4", addr));
    w = np_write_to(u, buf, (size_t)SSIZE_MAX, &to);
    NP_CHECK_MSG(w == -EMSGSIZE || w == -EFAULT, "np_write_to(SSIZE_MAX) = %zd", w);
    NP_CHECK_EQ(np_write_to(u, buf, SIZE_MAX, &to), -EINVAL);
    /* Far deadlines do not wrap into past ones. */
    NP_CHECK_OK(np_set_deadline(k, INT64_MAX));
    NP_CHECK_EQ(np_write(k, "f", 1), 1);
    NP_CHECK_OK(np_set_read_deadline(u, INT64_MAX));
    NP_CHECK_EQ(np_read_from(u, buf, sizeof buf, NULL), 1);
    NP_CHECK_OK(np_close(k));
    NP_CHECK_OK(np_close(u));
    NP_CHECK_OK(np_close(c));
    NP_CHECK_OK(np_close(s));
    NP_CHECK_OK(np_listener_close(l));
}

static void t_bad_input_huge_lengths_and_deadlines(void)
{
    b_run(body_huge);
}

static void body_forged(void)
{
    const uint64_t ids[] = { 0, 1, 2, 0xffffffffffffffffULL, 0xdeadbeefcafeULL, 1ULL << 63,
                             0x00000001ffffffffULL };
    char b[64];
    np_addr to;
    NP_CHECK_OK(np_addr_parse(&to, "udp4", "127.0.0.1:9"));
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        np_conn c = { ids[i] };
        NP_CHECK_EQ(np_read_from(c, b, sizeof b, NULL), -EBADF);
        NP_CHECK_EQ(np_write_to(c, b, 1, &to), -EBADF);
        NP_CHECK_EQ(np_read(c, b, sizeof b), -EBADF);
        NP_CHECK_EQ(np_write(c, b, 1), -EBADF);
        NP_CHECK_EQ(np_wait_readable(c), -EBADF);
        NP_CHECK_EQ(np_conn_fd(c), -EBADF);
        NP_CHECK_EQ(np_close(c), -EBADF);
        NP_CHECK_EQ(np_close_write(c), -EBADF);
        NP_CHECK_EQ(np_remote_addr(c, b, sizeof b), -EBADF);
        NP_CHECK_EQ(np_set_write_deadline(c, 0), -EBADF);
        np_listener l = { ids[i] };
        np_conn x;
        NP_CHECK_EQ(np_accept(l, &x), -EBADF);
        NP_CHECK_EQ(np_listener_addr(l, b, sizeof b), -EBADF);
        NP_CHECK_EQ(np_listener_close(l), -EBADF);
    }
}

static void t_bad_input_forged_handles(void)
{
    b_run(body_forged);
}

NP_TEST_LIST(
    NP_CASE(t_plain_thread_and_task_10k_messages),
    NP_CASE(t_plain_thread_and_task_udp_echo),
    NP_CASE(t_plain_thread_accept_woken_by_listener_close),
    NP_CASE(t_plain_thread_sleep_never_early),
    NP_CASE(t_plain_thread_blocked_read_sees_moved_deadline),
    NP_CASE(t_plain_threads_blocked_on_handles_when_run_ends),
    NP_CASE(t_plain_thread_sleep_across_run_end),
    NP_CASE(t_plain_thread_chan_deadline_across_run_end),
    NP_CASE(t_no_runtime_every_blocking_call_esrch),
    NP_CASE(t_bad_input_null_pointers),
    NP_CASE(t_bad_input_huge_lengths_and_deadlines),
    NP_CASE(t_bad_input_forged_handles))
