/* np_signal_notify against include/netpoll.h ("Signals, Go's os/signal"):
 * each signal an int on the channel, several channels per signal and
 * signals per channel, full and unbuffered channels (Go's non-blocking
 * send), bursts, a busy runtime and no runtime at all, real-time signals,
 * SIGCHLD, SA_RESTART, and a storm of signals during I/O. Stopping,
 * dispositions and errors are in test_signal_stop.c. Signals coalesce in
 * the kernel: no exact counts for bursts, only "at least one". */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include "sig.h"

extern char **environ;

/* ---- delivery -------------------------------------------------------------------------- */

static void body_basic(void)
{
    np_chan c = make_chan(8);
    notify(c, SIGUSR1);
    NP_CHECK_SYS(send_sig(SIGUSR1));
    NP_CHECK_EQ(recv_sig(c), SIGUSR1);
    /* Each arrival again. */
    for (int i = 0; i < 5; i++) {
        NP_CHECK_SYS(send_sig(SIGUSR1));
        NP_CHECK_EQ(recv_sig(c), SIGUSR1);
    }
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK_OK(np_chan_free(c));
}

static void t_signal_delivered_as_int(void)
{
    b_run(body_basic);
}

/* Watching twice is the same as once: one signal, one element. A second
 * channel watching too tells us when the delivery pass is over. */
static void body_twice(void)
{
    np_chan c = make_chan(8), sentinel = make_chan(8);
    notify(c, SIGUSR1);
    notify(c, SIGUSR1);
    NP_CHECK_SYS(send_sig(SIGUSR1));
    NP_CHECK_EQ(recv_sig(c), SIGUSR1);
    notify(sentinel, SIGUSR2);
    notify(c, SIGUSR2);
    NP_CHECK_SYS(send_sig(SIGUSR2));
    NP_CHECK_EQ(recv_sig(sentinel), SIGUSR2);
    NP_CHECK_EQ(recv_sig(c), SIGUSR2); /* not a second SIGUSR1 first */
    NP_CHECK_EQ(np_chan_len(c), 0);
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK_OK(np_signal_stop(sentinel));
    NP_CHECK_OK(np_chan_free(c));
    NP_CHECK_OK(np_chan_free(sentinel));
}

static void t_signal_watching_twice_is_once(void)
{
    b_run(body_twice);
}

static void body_several(void)
{
    np_chan a = make_chan(4), b = make_chan(4), c = make_chan(4);
    notify(a, SIGUSR1);
    notify(b, SIGUSR1);
    notify(c, SIGUSR1);
    notify(c, SIGUSR2); /* one channel, several signals */
    NP_CHECK_SYS(send_sig(SIGUSR1));
    NP_CHECK_EQ(recv_sig(a), SIGUSR1);
    NP_CHECK_EQ(recv_sig(b), SIGUSR1);
    NP_CHECK_EQ(recv_sig(c), SIGUSR1);
    NP_CHECK_SYS(send_sig(SIGUSR2));
    NP_CHECK_EQ(recv_sig(c), SIGUSR2);
    /* Stopping one leaves the others. */
    NP_CHECK_OK(np_signal_stop(a));
    NP_CHECK_SYS(send_sig(SIGUSR1));
    NP_CHECK_EQ(recv_sig(b), SIGUSR1);
    NP_CHECK_EQ(recv_sig(c), SIGUSR1);
    NP_CHECK_EQ(np_chan_len(a), 0);
    NP_CHECK_OK(np_signal_stop(b));
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK_OK(np_chan_free(a));
    NP_CHECK_OK(np_chan_free(b));
    NP_CHECK_OK(np_chan_free(c));
}

static void t_signal_several_channels_and_signals(void)
{
    b_run(body_several);
}

/* Go's non-blocking send: an unbuffered channel with a receiver waiting
 * gets the signal; with none, it is dropped. */
static np_chan unbuf;
static _Atomic int unbuf_ready, unbuf_got = -1;

static void unbuf_receiver(void *arg)
{
    (void)arg;
    atomic_store(&unbuf_ready, 1);
    int s = -1;
    if (np_chan_recv(unbuf, &s, np_now() + 5 * NP_SECOND) == 0)
        atomic_store(&unbuf_got, s);
    else
        atomic_store(&unbuf_got, 0);
}

static void body_unbuffered(void)
{
    unbuf = make_chan(0);
    notify(unbuf, SIGUSR1);
    NP_CHECK_OK(np_go(unbuf_receiver, NULL));
    NP_CHECK(b_wait_flag(&unbuf_ready, 5000));
    np_sleep(50 * NP_MILLISECOND); /* blocked in its receive by now */
    NP_CHECK_SYS(send_sig(SIGUSR1));
    int64_t t0 = np_now();
    while (atomic_load(&unbuf_got) == -1 && np_now() - t0 < 6 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_MSG(atomic_load(&unbuf_got) == SIGUSR1, "a receiver waiting on an unbuffered channel got "
                 "%d (0 = nothing within 5 s)", atomic_load(&unbuf_got));
    NP_CHECK_OK(np_signal_stop(unbuf));
    NP_CHECK_OK(np_chan_free(unbuf));
}

static void t_signal_unbuffered_channel_with_waiting_receiver(void)
{
    b_run(body_unbuffered);
}

/* A full channel drops the signal, and blocks neither the delivery to the
 * other watchers nor anything else. */
static void body_full(void)
{
    np_chan full = make_chan(1), other = make_chan(16);
    notify(full, SIGUSR1);
    notify(other, SIGUSR1);
    NP_CHECK_SYS(send_sig(SIGUSR1));
    NP_CHECK_EQ(recv_sig(other), SIGUSR1);
    NP_CHECK_EQ(np_chan_len(full), 1); /* full now */
    for (int i = 0; i < 5; i++) {
        NP_CHECK_SYS(send_sig(SIGUSR1));
        NP_CHECK_EQ(recv_sig(other), SIGUSR1); /* still delivered elsewhere */
    }
    NP_CHECK_EQ(np_chan_len(full), 1); /* the rest dropped */
    NP_CHECK_EQ(recv_sig(full), SIGUSR1);
    NP_CHECK_SYS(send_sig(SIGUSR1)); /* room again: delivered again */
    NP_CHECK_EQ(recv_sig(full), SIGUSR1);
    NP_CHECK_OK(np_signal_stop(full));
    NP_CHECK_OK(np_signal_stop(other));
    NP_CHECK_OK(np_chan_free(full));
    NP_CHECK_OK(np_chan_free(other));
}

static void t_signal_full_channel_drops_without_blocking(void)
{
    b_run(body_full);
}

/* ---- bursts, busy workers, no runtime, real-time and SIGCHLD -------------------------------- */

static void body_burst(void)
{
    np_chan c = make_chan(1000);
    notify(c, SIGUSR1);
    int64_t t0 = np_now();
    for (int i = 0; i < 100; i++)
        NP_CHECK_SYS(send_sig(SIGUSR1));
    NP_CHECK_EQ(recv_sig(c), SIGUSR1); /* at least one */
    NP_CHECK_LT(np_now() - t0, 5 * NP_SECOND);
    while (np_chan_len(c) > 0)
        NP_CHECK_EQ(recv_sig(c), SIGUSR1);
    /* And nothing is stuck: one more is delivered. */
    np_chan s = make_chan(1);
    notify(s, SIGUSR2);
    NP_CHECK_SYS(send_sig(SIGUSR2));
    NP_CHECK_EQ(recv_sig(s), SIGUSR2);
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK_OK(np_signal_stop(s));
    NP_CHECK_OK(np_chan_free(c));
    NP_CHECK_OK(np_chan_free(s));
}

static void t_signal_burst_delivers_and_never_hangs(void)
{
    b_run(body_burst);
}

/* workers = 1 and that worker spinning: the signal still lands. */
static void body_busy(void)
{
    np_chan c = make_chan(4);
    notify(c, SIGUSR1);
    NP_CHECK_SYS(send_sig(SIGUSR1));
    int64_t t0 = np_now();
    volatile unsigned long spin = 0;
    while (np_chan_len(c) == 0 && np_now() - t0 < 5 * NP_SECOND)
        spin++; /* never yields, never blocks */
    NP_CHECK_MSG(np_chan_len(c) == 1, "the signal did not reach the channel in 5 s of a busy worker");
    int s = 0;
    NP_CHECK_OK(np_chan_recv(c, &s, -1)); /* non-blocking: it is there */
    NP_CHECK_EQ(s, SIGUSR1);
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK_OK(np_chan_free(c));
}

static void t_signal_delivered_while_the_only_worker_spins(void)
{
    b_run_workers(1, body_busy);
}

static void t_signal_delivered_with_no_runtime(void)
{
    np_chan c = make_chan(4);
    notify(c, SIGUSR1);
    NP_CHECK_SYS(send_sig(SIGUSR1));
    int64_t t0 = np_now();
    while (np_chan_len(c) == 0 && np_now() - t0 < 5 * NP_SECOND)
        usleep(1000);
    int s = 0;
    NP_CHECK_OK(np_chan_recv(c, &s, -1));
    NP_CHECK_EQ(s, SIGUSR1);
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK(disposition(SIGUSR1) == SIG_DFL);
    NP_CHECK_OK(np_chan_free(c));
}

static void body_rt(void)
{
    np_chan c = make_chan(8);
    notify(c, SIGRTMIN);
    notify(c, SIGRTMAX);
    int sent = send_sig(SIGRTMAX);
    if (sent < 0 && (sent == -EINVAL || errno == EINVAL)) {
        /* qemu-user keeps the highest real-time signals for itself. */
        np_chan_free(c);
        return;
    }
    NP_CHECK_SYS(sent);
    NP_CHECK_EQ(recv_sig(c), SIGRTMAX);
    NP_CHECK_SYS(send_sig(SIGRTMIN));
    NP_CHECK_EQ(recv_sig(c), SIGRTMIN);
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK(disposition(SIGRTMIN) == SIG_DFL);
    NP_CHECK_OK(np_chan_free(c));
}

static void t_signal_realtime_signals(void)
{
    b_run(body_rt);
}

static void body_sigchld(void)
{
    np_chan c = make_chan(4);
    notify(c, SIGCHLD);
    pid_t pid;
    char *argv[] = { "/bin/true", NULL };
    int rc = posix_spawn(&pid, "/bin/true", NULL, NULL, argv, environ);
    NP_CHECK_MSG(rc == 0, "posix_spawn: %s", strerror(rc));
    NP_CHECK_EQ(recv_sig(c), SIGCHLD);
    int st;
    NP_CHECK_EQ(waitpid(pid, &st, 0), pid); /* exited already: no wait */
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK_OK(np_chan_free(c));
}

static void t_signal_sigchld_from_a_child(void)
{
    b_run(body_sigchld);
}

/* "they interrupt a thread's slow syscalls with EINTR only where SA_RESTART
 * does not apply": a plain thread blocked in read(2) on a pipe keeps
 * reading when a watched signal lands on it. */
static int rs_pipe[2];
static _Atomic int rs_started;
static _Atomic ssize_t rs_result = 12345;
static _Atomic int rs_errno;

static void *rs_reader(void *arg)
{
    (void)arg;
    char b;
    atomic_store(&rs_started, 1);
    ssize_t n = read(rs_pipe[0], &b, 1);
    atomic_store(&rs_errno, n < 0 ? errno : 0);
    atomic_store(&rs_result, n);
    return NULL;
}

static void body_restart(void)
{
    NP_CHECK_SYS(pipe(rs_pipe));
    np_chan c = make_chan(4);
    notify(c, SIGUSR1);
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, rs_reader, NULL));
    while (!atomic_load(&rs_started))
        np_sleep(NP_MILLISECOND);
    np_sleep(50 * NP_MILLISECOND); /* in read(2) by now */
    NP_CHECK_OK(pthread_kill(th, SIGUSR1));
    NP_CHECK_EQ(recv_sig(c), SIGUSR1);
    np_sleep(50 * NP_MILLISECOND);
    NP_CHECK_MSG(atomic_load(&rs_result) == 12345, "read(2) returned %zd (errno %d) when the watched "
                 "signal landed on its thread", atomic_load(&rs_result), atomic_load(&rs_errno));
    NP_CHECK_EQ(write(rs_pipe[1], "r", 1), 1);
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_EQ(atomic_load(&rs_result), 1);
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK_OK(np_chan_free(c));
    close(rs_pipe[0]);
    close(rs_pipe[1]);
}

static void t_signal_sa_restart_read_not_interrupted(void)
{
#ifdef NP_TSAN
    NP_SKIP("TSan holds a signal back while its thread is in read(2)");
#endif
    b_run(body_restart);
}

/* A storm of watched signals while tasks and a plain thread do I/O and
 * sleep: no call fails with EINTR or returns early, nothing is lost. */
static _Atomic int storm_stop;

static void *stormer(void *arg)
{
    (void)arg;
    while (!atomic_load(&storm_stop)) {
        send_sig(SIGUSR1);
        usleep(100);
    }
    return NULL;
}

static np_conn storm_s;
static void storm_echo(void *arg)
{
    (void)arg;
    char buf[64];
    np_addr from;
    ssize_t n;
    while ((n = np_read_from(storm_s, buf, sizeof buf, &from)) > 0)
        NP_CHECK_EQ(np_write_to(storm_s, buf, (size_t)n, &from), n);
    NP_CHECK_MSG(n == -ECANCELED || n == -EBADF, "echo read under signals: %zd", n);
}

static int storm_pipe[2];
static _Atomic int storm_plain_rounds;

static void *storm_plain(void *arg)
{
    (void)arg;
    while (!atomic_load(&storm_stop)) {
        int64_t d = np_now() + 2 * NP_MILLISECOND;
        int rc = np_wait_fd(storm_pipe[0], NP_READABLE, d);
        NP_CHECK_MSG(rc == -ETIMEDOUT, "a plain thread's np_wait_fd under signals: %d", rc);
        NP_CHECK_GE(np_now(), d);
        int64_t t0 = np_now();
        NP_CHECK_OK(np_sleep(NP_MILLISECOND));
        NP_CHECK_GE(np_now() - t0, NP_MILLISECOND);
        atomic_fetch_add(&storm_plain_rounds, 1);
    }
    return NULL;
}

static void body_storm(void)
{
    NP_CHECK_SYS(pipe2(storm_pipe, O_CLOEXEC));
    np_chan c = make_chan(1); /* fills at once: the rest are dropped */
    notify(c, SIGUSR1);
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, stormer, NULL));
    pthread_t plain;
    NP_CHECK_OK(pthread_create(&plain, NULL, storm_plain, NULL));
    NP_CHECK_OK(np_listen_packet(&storm_s, "udp4", "127.0.0.1:0"));
    char addr[64];
    NP_CHECK_OK(np_local_addr(storm_s, addr, sizeof addr));
    NP_CHECK_OK(np_go(storm_echo, NULL));
    np_conn k;
    NP_CHECK_OK(np_dial(&k, "udp4", addr, 0));
    int64_t end = np_now() + 1500 * NP_MILLISECOND;
    int rounds = 0;
    while (np_now() < end) {
        char msg[16], back[16];
        int len = snprintf(msg, sizeof msg, "%d", rounds);
        NP_CHECK_EQ(np_write(k, msg, (size_t)len), len);
        NP_CHECK_OK(np_set_read_deadline(k, np_now() + 5 * NP_SECOND));
        NP_CHECK_EQ(np_read(k, back, sizeof back), len);
        NP_CHECK(memcmp(back, msg, (size_t)len) == 0);
        int64_t t0 = np_now();
        NP_CHECK_OK(np_sleep(200 * NP_MICROSECOND));
        NP_CHECK_GE(np_now() - t0, 200 * NP_MICROSECOND);
        rounds++;
    }
    atomic_store(&storm_stop, 1);
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_OK(np_offload(b_join_thread, &plain));
    NP_CHECK_GT(rounds, 10);
    NP_CHECK_GT(atomic_load(&storm_plain_rounds), 10);
    close(storm_pipe[0]);
    close(storm_pipe[1]);
    NP_CHECK_OK(np_close(k));
    NP_CHECK_OK(np_close(storm_s));
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK_OK(np_chan_free(c));
}

static void t_signal_storm_does_not_disturb_io(void)
{
    b_run(body_storm);
}

NP_TEST_LIST(
    NP_CASE(t_signal_delivered_as_int),
    NP_CASE(t_signal_watching_twice_is_once),
    NP_CASE(t_signal_several_channels_and_signals),
    NP_CASE(t_signal_unbuffered_channel_with_waiting_receiver),
    NP_CASE(t_signal_full_channel_drops_without_blocking),
    NP_CASE(t_signal_burst_delivers_and_never_hangs),
    NP_CASE(t_signal_delivered_while_the_only_worker_spins),
    NP_CASE(t_signal_delivered_with_no_runtime),
    NP_CASE(t_signal_realtime_signals),
    NP_CASE(t_signal_sigchld_from_a_child),
    NP_CASE(t_signal_sa_restart_read_not_interrupted),
    NP_CASE(t_signal_storm_does_not_disturb_io))
