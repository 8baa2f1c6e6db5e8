/* np_test_run: a test body as a runtime's main task. In a file of its own
 * so that programs which use only the harness do not need np_run. */
#include <string.h>

#include "netpoll.h"
#include "np_test.h"

static void run_trampoline(void *arg)
{
    void (*body)(void);
    memcpy(&body, &arg, sizeof body);
    body();
}

void np_test_run(int workers, void (*body)(void))
{
    np_config c = { .workers = workers };
    void *arg;
    memcpy(&arg, &body, sizeof arg);
    NP_CHECK_OK(np_run(&c, run_trampoline, arg));
}
