/* Error text and the abort path for broken invariants. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netpoll.h"
#include "base/np_assert.h"
#include "os/os.h"

const char *np_strerror(int err)
{
    if (err == INT_MIN)
        return "Unknown error"; /* -INT_MIN does not exist */
    if (err == NP_ENOHOST || err == -NP_ENOHOST)
        return "no such host";
    if (err < 0)
        err = -err;
    if (err == 0)
        return "Success";
    /* Static and thread-safe text (os.h): strerror() is neither. */
    const char *s = np__os_strerror(err);
    return s ? s : "Unknown error";
}

void np__panic(const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(msg, sizeof msg, "netpoll: fatal: %s:%d: ", file, line);
    if (n < 0 || (size_t)n >= sizeof msg)
        n = 0;
    int m = vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len >= sizeof msg - 1)
        len = sizeof msg - 2;
    msg[len++] = '\n';
    /* write(2), not stdio: this may run in a signal handler or with stdio
     * locks held by the thread that broke the invariant. */
    ssize_t w = write(STDERR_FILENO, msg, len);
    (void)w;
    abort();
}
