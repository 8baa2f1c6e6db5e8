/* The test harness: a declared list of cases per test program, each case run
 * in its own process (fork) with a timeout; exit code 77 means skipped.
 *
 *     static void t_something(void) { NP_CHECK_EQ(1 + 1, 2); }
 *     NP_TEST_LIST(NP_CASE(t_something), NP_CASE(t_other))
 *
 * The program runs every case, or the ones named on its command line, and
 * ends with "N passed, N failed, N skipped". NP_TEST_FORK=0 runs cases in the
 * harness process (for a debugger); NP_TEST_TIMEOUT=<seconds> sets the
 * per-case timeout (default 60).
 */
#ifndef NP_TEST_H
#define NP_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct np_test_case {
    const char *name;
    void (*fn)(void);
} np_test_case;

int np_test_main(int argc, char **argv, const np_test_case *cases, size_t n);

_Noreturn void np_test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void np_test_skip(const char *why);

#define NP_CASE(fn) { #fn, fn }
#define NP_TEST_LIST(...)                                                    \
    static const np_test_case np_test_cases_[] = { __VA_ARGS__ };            \
    int main(int argc, char **argv)                                          \
    {                                                                        \
        return np_test_main(argc, argv, np_test_cases_,                      \
                            sizeof np_test_cases_ / sizeof np_test_cases_[0]); \
    }

#define NP_SKIP(why) np_test_skip(why)

#define NP_CHECK(cond)                                                       \
    do {                                                                     \
        if (!(cond))                                                         \
            np_test_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);     \
    } while (0)

#define NP_CHECK_MSG(cond, ...)                                              \
    do {                                                                     \
        if (!(cond))                                                         \
            np_test_fail(__FILE__, __LINE__, __VA_ARGS__);                   \
    } while (0)

/* Integer comparisons: print both expressions and both values. */
#define NP_CHECK_OP_(a, op, b)                                               \
    do {                                                                     \
        intmax_t np_a_ = (intmax_t)(a), np_b_ = (intmax_t)(b);               \
        if (!(np_a_ op np_b_))                                               \
            np_test_fail(__FILE__, __LINE__,                                 \
                         "CHECK(%s %s %s) failed: %s = %" PRIdMAX            \
                         ", %s = %" PRIdMAX,                                 \
                         #a, #op, #b, #a, np_a_, #b, np_b_);                 \
    } while (0)
#define NP_CHECK_EQ(a, b) NP_CHECK_OP_(a, ==, b)
#define NP_CHECK_NE(a, b) NP_CHECK_OP_(a, !=, b)
#define NP_CHECK_LT(a, b) NP_CHECK_OP_(a, <, b)
#define NP_CHECK_LE(a, b) NP_CHECK_OP_(a, <=, b)
#define NP_CHECK_GT(a, b) NP_CHECK_OP_(a, >, b)
#define NP_CHECK_GE(a, b) NP_CHECK_OP_(a, >=, b)

#define NP_CHECK_PTR_EQ(a, b)                                                \
    do {                                                                     \
        const void *np_a_ = (a), *np_b_ = (b);                               \
        if (np_a_ != np_b_)                                                  \
            np_test_fail(__FILE__, __LINE__,                                 \
                         "CHECK(%s == %s) failed: %s = %p, %s = %p", #a, #b, \
                         #a, np_a_, #b, np_b_);                              \
    } while (0)

#define NP_CHECK_STR_EQ(a, b)                                                \
    do {                                                                     \
        const char *np_a_ = (a), *np_b_ = (b);                               \
        if (!np_a_ || !np_b_ || strcmp(np_a_, np_b_) != 0)                   \
            np_test_fail(__FILE__, __LINE__,                                 \
                         "CHECK_STR_EQ(%s, %s) failed: \"%s\" vs \"%s\"",    \
                         #a, #b, np_a_ ? np_a_ : "(null)",                   \
                         np_b_ ? np_b_ : "(null)");                          \
    } while (0)

/* A call returning 0 or -errno (or -1 with errno set, for libc calls via
 * NP_CHECK_SYS) must succeed. */
#define NP_CHECK_OK(expr)                                                    \
    do {                                                                     \
        intmax_t np_r_ = (intmax_t)(expr);                                   \
        if (np_r_ != 0)                                                      \
            np_test_fail(__FILE__, __LINE__, "%s = %" PRIdMAX " (%s)",       \
                         #expr, np_r_, strerror((int)(np_r_ < 0 ? -np_r_ : np_r_))); \
    } while (0)
#define NP_CHECK_SYS(expr)                                                   \
    ({                                                                       \
        __typeof__(expr) np_r_ = (expr);                                     \
        if (np_r_ < 0)                                                       \
            np_test_fail(__FILE__, __LINE__, "%s failed: %s", #expr,         \
                         strerror(errno));                                   \
        np_r_;                                                               \
    })

/* Runs body as the main task of a runtime with `workers` workers (0: the
 * default) and checks that np_run returned 0. */
void np_test_run(int workers, void (*body)(void));

#endif
