/* Invariant checks that stay on in release builds.
 *
 * np__assert guards a fact the code relies on; if it is false the process is
 * already in a state no caller can recover from, so it aborts with a message.
 * Recoverable conditions (bad input, a syscall failure) return a negative
 * errno instead and never go through here.
 */
#ifndef NP_ASSERT_H
#define NP_ASSERT_H

#include <stdnoreturn.h>

noreturn void np__panic(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), cold));

#define np__assert(cond)                                                     \
    do {                                                                     \
        if (__builtin_expect(!(cond), 0))                                    \
            np__panic(__FILE__, __LINE__, "assertion failed: %s", #cond);    \
    } while (0)

#define NP__PANIC(...) np__panic(__FILE__, __LINE__, __VA_ARGS__)

#endif
