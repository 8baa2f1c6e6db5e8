/* Helpers of the signal tests (test_signal.c, test_signal_stop.c). */
#ifndef NP_BEYOND_SIG_H
#define NP_BEYOND_SIG_H

#include <signal.h>

#include "beyond.h"

static B_UNUSED np_chan make_chan(size_t cap)
{
    np_chan c;
    NP_CHECK_OK(np_chan_make(&c, sizeof(int), cap));
    return c;
}

static B_UNUSED void notify(np_chan c, int signo)
{
    int rc = np_signal_notify(c, signo);
    NP_CHECK_MSG(rc == 0, "np_signal_notify(%d): %s", signo, np_strerror(rc));
}

/* The next signal number on c, within 5 s. */
static B_UNUSED int recv_sig(np_chan c)
{
    int s = -1;
    int rc = np_chan_recv(c, &s, np_now() + 5 * NP_SECOND);
    NP_CHECK_MSG(rc == 0, "no signal on the channel within 5 s: %s", np_strerror(rc));
    return s;
}

static B_UNUSED void (*disposition(int signo))(int)
{
    struct sigaction sa;
    NP_CHECK_SYS(sigaction(signo, NULL, &sa));
    return sa.sa_handler;
}

/* Sends signo to this process: the kernel picks the thread, a worker asleep
 * in the poller or on its futex, or a task's, included (test_signal_threads.c
 * picks each in turn). */
static B_UNUSED int send_sig(int signo)
{
    return kill(getpid(), signo);
}

#endif
