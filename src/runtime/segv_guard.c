/* The SIGSEGV handler that tells a task's stack overflow (a fault in its
 * guard page) from the program's own faults, which go to the program's
 * handler.
 */
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/sched_internal.h"

/* ---- stack overflow --------------------------------------------------------- */

/* The handler the program had when np_run installed ours. A fault that is
 * not an overflow into a task's guard page is the program's: it is passed to
 * that handler, and ours stays installed, so detection lasts the whole run.
 * At the end of the run ours is replaced by the saved one only if it is still
 * installed: a handler the program set meanwhile is left alone. */
static struct sigaction old_segv;
static _Atomic int segv_installed;

/* Puts the default action back and makes the fault happen again with it:
 * a fault re-runs its instruction when the handler returns; a SIGSEGV
 * sent by kill or raise (si_code <= 0) does not, so it is raised again
 * (pending while this handler runs, delivered when it returns). */
static void refault_default(int sig, const siginfo_t *si)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (si->si_code <= 0)
        raise(sig);
}

/* The frame of the on_segv that is running the program's handler on this
 * thread, or NULL. If that handler calls ours again (it chained to us, as
 * handlers do), the chain has come round: the default action ends it. The
 * program's handler may also leave by siglongjmp, leaving this stale; a
 * nested call is recognised by its frame lying below the recorded one on
 * the same stack (within STACK_WINDOW), which a later, fresh delivery's
 * frame never does. */
static _Thread_local char *segv_outer __attribute__((tls_model("initial-exec")));
#define STACK_WINDOW ((uintptr_t)256 * 1024)

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
    sched_thread *m = np__tls_thread;
    np__task *t = m ? m->current : NULL;
    if (t && np__task_in_guard(t, si->si_addr)) {
        static const char msg[] =
            "netpoll: fatal: task stack overflow: the task ran past the end of its stack "
            "and hit the guard page (raise np_config.stack_size)\n";
        ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)n;
        abort();
    }
    /* Not ours: the program's. SIG_DFL / SIG_IGN first: the kernel may keep
     * SA_SIGINFO in the flags of a default disposition. A fault cannot be
     * ignored, so SIG_IGN is the default too. */
    const struct sigaction *old = &old_segv;
    char here;
    bool nested = segv_outer && (uintptr_t)&here < (uintptr_t)segv_outer &&
                  (uintptr_t)segv_outer - (uintptr_t)&here < STACK_WINDOW;
    if (nested || old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
        refault_default(sig, si);
        return;
    }
    /* Call it as the kernel would have: with its mask, and, for a one-shot
     * handler (SA_RESETHAND), with the default action installed first. */
    if (old->sa_flags & SA_RESETHAND)
        refault_default(sig, &(siginfo_t){ .si_code = 1 });
    sigset_t mask, saved;
    mask = old->sa_mask;
    if (!(old->sa_flags & SA_NODEFER))
        sigaddset(&mask, sig);
    pthread_sigmask(SIG_BLOCK, &mask, &saved);
    char *outer = segv_outer;
    segv_outer = &here;
    if (old->sa_flags & SA_SIGINFO)
        old->sa_sigaction(sig, si, uctx);
    else
        old->sa_handler(sig);
    segv_outer = outer;
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

void np__segv_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    struct sigaction prev;
    if (sigaction(SIGSEGV, &sa, &prev) != 0)
        return;
    /* Ours already (left by a run whose program chained to it): what we
     * would chain to is then the default, never ourselves. */
    if ((prev.sa_flags & SA_SIGINFO) && prev.sa_sigaction == on_segv) {
        memset(&prev, 0, sizeof prev);
        prev.sa_handler = SIG_DFL;
        sigemptyset(&prev.sa_mask);
    }
    old_segv = prev;
    atomic_store(&segv_installed, 1);
}

void np__segv_remove(void)
{
    if (!atomic_exchange(&segv_installed, 0))
        return;
    struct sigaction now;
    if (sigaction(SIGSEGV, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO) &&
        now.sa_sigaction == on_segv)
        sigaction(SIGSEGV, &old_segv, NULL);
}
