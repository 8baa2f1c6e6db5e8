/* The one place the library reads errno (see sys.h).
 *
 * glibc declares __errno_location const, so a compiler may call it once
 * and keep the address across a point where the task switches threads,
 * even when each read sits right after its syscall. A call to a function
 * of another translation unit, not inlined, is made afresh each time: the
 * address is always this thread's. tests/check_errno.sh checks that no
 * other object of the library refers to errno's location. */
#include <errno.h>

#include "base/sys.h"

__attribute__((noinline)) int np__errno(void)
{
    return errno;
}

__attribute__((noinline)) void np__set_errno(int e)
{
    errno = e;
}
