/* np_signal_stop and the errors of np_signal_notify against
 * include/netpoll.h ("Signals"): dispositions put back when nobody
 * watches (the default, or the program's own), the -EINVAL and -EBADF
 * cases, channels freed or closed while watching, no delivery once stop has
 * returned, and watch/stop cycles. */
#include "sig.h"

/* ---- stop, dispositions ------------------------------------------------------------------ */

static void body_stop_default(void)
{
    NP_CHECK(disposition(SIGUSR1) == SIG_DFL);
    np_chan a = make_chan(4), b = make_chan(4);
    notify(a, SIGUSR1);
    notify(b, SIGUSR1);
    NP_CHECK(disposition(SIGUSR1) != SIG_DFL);
    NP_CHECK_OK(np_signal_stop(a));
    NP_CHECK(disposition(SIGUSR1) != SIG_DFL); /* b still watches */
    NP_CHECK_SYS(send_sig(SIGUSR1));
    NP_CHECK_EQ(recv_sig(b), SIGUSR1);
    NP_CHECK_EQ(np_chan_len(a), 0);
    NP_CHECK_OK(np_signal_stop(b));
    NP_CHECK(disposition(SIGUSR1) == SIG_DFL); /* nobody watches: the default again */
    NP_CHECK_OK(np_signal_stop(b)); /* stopping again: harmless */
    NP_CHECK_OK(np_chan_free(a));
    NP_CHECK_OK(np_chan_free(b));
}

static void t_signal_stop_restores_default(void)
{
    b_run(body_stop_default);
}

static _Atomic int own_handler_hits;
static void own_handler(int s)
{
    (void)s;
    atomic_fetch_add(&own_handler_hits, 1);
}

static void body_stop_own(void)
{
    struct sigaction sa = { .sa_handler = own_handler };
    sigemptyset(&sa.sa_mask);
    NP_CHECK_SYS(sigaction(SIGUSR2, &sa, NULL));
    NP_CHECK_SYS(signal(SIGHUP, SIG_IGN) == SIG_ERR ? -1 : 0);
    np_chan c = make_chan(4);
    notify(c, SIGUSR2);
    notify(c, SIGHUP);
    NP_CHECK_SYS(send_sig(SIGUSR2));
    NP_CHECK_EQ(recv_sig(c), SIGUSR2);
    NP_CHECK_SYS(send_sig(SIGHUP)); /* watched: delivered though ignored before */
    NP_CHECK_EQ(recv_sig(c), SIGHUP);
    NP_CHECK_EQ(atomic_load(&own_handler_hits), 0);
    NP_CHECK_OK(np_signal_stop(c));
    NP_CHECK(disposition(SIGUSR2) == own_handler); /* what it was before */
    NP_CHECK(disposition(SIGHUP) == SIG_IGN);
    NP_CHECK_SYS(send_sig(SIGUSR2));
    int64_t t0 = np_now();
    while (atomic_load(&own_handler_hits) == 0 && np_now() - t0 < 5 * NP_SECOND)
        np_sleep(NP_MILLISECOND);
    NP_CHECK_EQ(atomic_load(&own_handler_hits), 1);
    NP_CHECK_OK(np_chan_free(c));
}

static void t_signal_stop_restores_previous_handler(void)
{
    b_run(body_stop_own);
}

/* ---- errors --------------------------------------------------------------------------- */

static void body_errors(void)
{
    np_chan c = make_chan(4);
    const int bad[] = { SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, 0, -1, 65, 1000,
                        -2147483647 - 1, 2147483647 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = np_signal_notify(c, bad[i]);
        NP_CHECK_MSG(rc == -EINVAL, "np_signal_notify(signo %d) = %d, want -EINVAL", bad[i], rc);
    }
    NP_CHECK(disposition(SIGSEGV) != SIG_IGN);
    np_chan c8, c0;
    NP_CHECK_OK(np_chan_make(&c8, sizeof(long long), 4));
    NP_CHECK_OK(np_chan_make(&c0, 0, 4));
    NP_CHECK_EQ(np_signal_notify(c8, SIGUSR1), -EINVAL);
    NP_CHECK_EQ(np_signal_notify(c0, SIGUSR1), -EINVAL);
    NP_CHECK(disposition(SIGUSR1) == SIG_DFL); /* nothing installed by the failures */
    NP_CHECK_EQ(np_signal_notify((np_chan){ 0 }, SIGUSR1), -EBADF);
    NP_CHECK_EQ(np_signal_notify((np_chan){ 0xdeadbeefcafeULL }, SIGUSR1), -EBADF);
    np_chan gone = make_chan(1);
    NP_CHECK_OK(np_chan_free(gone));
    NP_CHECK_EQ(np_signal_notify(gone, SIGUSR1), -EBADF);
    NP_CHECK(disposition(SIGUSR1) == SIG_DFL);
    NP_CHECK_EQ(np_signal_stop((np_chan){ 0 }), -EBADF);
    NP_CHECK_OK(np_chan_free(c));
    NP_CHECK_OK(np_chan_free(c8));
    NP_CHECK_OK(np_chan_free(c0));
}

static void t_signal_errors(void)
{
    b_run(body_errors);
}

/* The header's -EBADF for a bad channel, for np_signal_stop too. */
static void body_stop_forged(void)
{
    int rc = np_signal_stop((np_chan){ 0xdeadbeefcafeULL });
    NP_CHECK_MSG(rc == -EBADF, "np_signal_stop(never-issued channel) = %d, want -EBADF", rc);
}

static void t_signal_stop_forged_channel_ebadf(void)
{
    b_run(body_stop_forged);
}

/* A channel freed while watching is dropped; a newer channel (perhaps in
 * its slot) gets nothing it did not ask for. */
static void body_freed(void)
{
    np_chan old = make_chan(4), sentinel = make_chan(4);
    notify(old, SIGUSR1);
    notify(sentinel, SIGUSR1);
    NP_CHECK_OK(np_chan_free(old));
    np_chan fresh = make_chan(4);
    NP_CHECK_SYS(send_sig(SIGUSR1));
    NP_CHECK_EQ(recv_sig(sentinel), SIGUSR1);
    NP_CHECK_EQ(np_chan_len(fresh), 0);
    NP_CHECK_SYS(send_sig(SIGUSR1)); /* the dropped watcher does not trip it up */
    NP_CHECK_EQ(recv_sig(sentinel), SIGUSR1);
    NP_CHECK_OK(np_signal_stop(sentinel));
    NP_CHECK_OK(np_chan_free(sentinel));
    NP_CHECK_OK(np_chan_free(fresh));
}

static void t_signal_freed_channel_dropped(void)
{
    b_run(body_freed);
}

/* A closed (not freed) channel still watching: nothing breaks, and the
 * other watchers still get theirs. */
static void body_closed(void)
{
    np_chan closed = make_chan(4), other = make_chan(4);
    notify(closed, SIGUSR1);
    notify(other, SIGUSR1);
    NP_CHECK_OK(np_chan_close(closed));
    for (int i = 0; i < 3; i++) {
        NP_CHECK_SYS(send_sig(SIGUSR1));
        NP_CHECK_EQ(recv_sig(other), SIGUSR1);
    }
    int s = 0;
    NP_CHECK_EQ(np_chan_recv(closed, &s, -1), -EPIPE);
    NP_CHECK_OK(np_signal_stop(closed));
    NP_CHECK_OK(np_signal_stop(other));
    NP_CHECK_OK(np_chan_free(closed));
    NP_CHECK_OK(np_chan_free(other));
}

static void t_signal_closed_channel_no_crash(void)
{
    b_run(body_closed);
}

/* Go: once Stop returns, the channel receives no more signals. A plain
 * thread keeps signalling; a second watcher keeps the handler installed. */
static _Atomic int spam_stop;
static void *spammer(void *arg)
{
    (void)arg;
    while (!atomic_load(&spam_stop)) {
        send_sig(SIGUSR1);
        usleep(200);
    }
    return NULL;
}

static void body_after_stop(void)
{
    np_chan keep = make_chan(1), c = make_chan(100000);
    notify(keep, SIGUSR1);
    notify(c, SIGUSR1);
    pthread_t th;
    NP_CHECK_OK(pthread_create(&th, NULL, spammer, NULL));
    NP_CHECK_EQ(recv_sig(c), SIGUSR1);
    np_sleep(20 * NP_MILLISECOND);
    NP_CHECK_OK(np_signal_stop(c));
    int len = np_chan_len(c);
    np_sleep(100 * NP_MILLISECOND); /* signals keep coming meanwhile */
    NP_CHECK_MSG(np_chan_len(c) == len, "%d signals on the channel after np_signal_stop returned",
                 np_chan_len(c) - len);
    atomic_store(&spam_stop, 1);
    NP_CHECK_OK(np_offload(b_join_thread, &th));
    NP_CHECK_OK(np_signal_stop(keep));
    NP_CHECK_OK(np_chan_free(keep));
    NP_CHECK_OK(np_chan_free(c));
}

static void t_signal_nothing_after_stop_returns(void)
{
    b_run(body_after_stop);
}

/* Watch, signal, stop, many times over: the machinery starts and stops
 * cleanly each time. */
static void body_cycles(void)
{
    for (int i = 0; i < 50; i++) {
        np_chan c = make_chan(2);
        notify(c, i % 2 ? SIGUSR1 : SIGUSR2);
        NP_CHECK_SYS(send_sig(i % 2 ? SIGUSR1 : SIGUSR2));
        NP_CHECK_EQ(recv_sig(c), i % 2 ? SIGUSR1 : SIGUSR2);
        NP_CHECK_OK(np_signal_stop(c));
        NP_CHECK_OK(np_chan_free(c));
        NP_CHECK(disposition(SIGUSR1) == SIG_DFL);
        NP_CHECK(disposition(SIGUSR2) == SIG_DFL);
    }
}

static void t_signal_watch_stop_cycles(void)
{
    b_run(body_cycles);
}


NP_TEST_LIST(
    NP_CASE(t_signal_stop_restores_default),
    NP_CASE(t_signal_stop_restores_previous_handler),
    NP_CASE(t_signal_errors),
    NP_CASE(t_signal_stop_forged_channel_ebadf),
    NP_CASE(t_signal_freed_channel_dropped),
    NP_CASE(t_signal_closed_channel_no_crash),
    NP_CASE(t_signal_nothing_after_stop_returns),
    NP_CASE(t_signal_watch_stop_cycles))
