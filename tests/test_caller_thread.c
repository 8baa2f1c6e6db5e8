/* What np_run leaves of the thread that called it: the program's own
 * settings of that thread are as they were once np_run returns. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "netpoll.h"
#include "np_test.h"

static void nothing(void *arg)
{
    (void)arg;
    np_yield();
}

/* The program's alternate signal stack survives np_run (np_run gives each
 * of its threads one for its SIGSEGV guard; it disabled the caller's at
 * the end instead of putting the program's back). */
static void t_alternate_signal_stack_restored(void)
{
    size_t size = 64 * 1024;
    void *mine = malloc(size);
    NP_CHECK(mine != NULL);
    stack_t ss = { .ss_sp = mine, .ss_size = size, .ss_flags = 0 };
    NP_CHECK_SYS(sigaltstack(&ss, NULL));
    for (int workers = 1; workers <= 2; workers++) {
        np_config cfg = { .workers = workers };
        NP_CHECK_OK(np_run(&cfg, nothing, NULL));
        stack_t now;
        memset(&now, 0, sizeof now);
        NP_CHECK_SYS(sigaltstack(NULL, &now));
        NP_CHECK_MSG(!(now.ss_flags & SS_DISABLE), "the program's alternate stack was disabled");
        NP_CHECK(now.ss_sp == mine);
        NP_CHECK_EQ(now.ss_size, size);
    }
    stack_t off = { .ss_flags = SS_DISABLE };
    NP_CHECK_SYS(sigaltstack(&off, NULL));
    free(mine);
}

/* A thread that had none has none after. */
static void t_no_alternate_stack_stays_none(void)
{
    stack_t off = { .ss_flags = SS_DISABLE };
    NP_CHECK_SYS(sigaltstack(&off, NULL));
    NP_CHECK_OK(np_run(NULL, nothing, NULL));
    stack_t now;
    NP_CHECK_SYS(sigaltstack(NULL, &now));
    NP_CHECK(now.ss_flags & SS_DISABLE);
}

NP_TEST_LIST(NP_CASE(t_alternate_signal_stack_restored), NP_CASE(t_no_alternate_stack_stays_none))
