/* Test runner: one process per case, a timeout per case, 77 = skipped. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "np_test.h"

#define SKIP_CODE 77

void np_test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

void np_test_skip(const char *why)
{
    fprintf(stderr, "skipped: %s\n", why);
    fflush(stderr);
    exit(SKIP_CODE);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool selected(int argc, char **argv, const char *name)
{
    if (argc <= 1)
        return true;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

/* Runs one case; returns 0 pass, 1 fail, 2 skip. */
static int run_case(const np_test_case *c, bool do_fork, unsigned timeout)
{
    if (!do_fork) {
        c->fn();
        return 0;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        alarm(timeout); /* SIGALRM's default action kills a hung case */
        c->fn();
        fflush(stdout);
        exit(0); /* exit, not _exit: LeakSanitizer checks at exit */
    }
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return 1;
        }
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP_CODE)
        return 2;
    if (WIFSIGNALED(st))
        fprintf(stderr, "  %s: killed by signal %d (%s)%s\n", c->name, WTERMSIG(st),
                strsignal(WTERMSIG(st)),
                WTERMSIG(st) == SIGALRM ? " -- timed out" : "");
    else
        fprintf(stderr, "  %s: exit status %d\n", c->name, WEXITSTATUS(st));
    return 1;
}

int np_test_main(int argc, char **argv, const np_test_case *cases, size_t n)
{
    const char *f = getenv("NP_TEST_FORK");
    bool do_fork = !(f && strcmp(f, "0") == 0);
    const char *t = getenv("NP_TEST_TIMEOUT");
    unsigned timeout = t ? (unsigned)strtoul(t, NULL, 10) : 60;
    if (timeout == 0)
        timeout = 60;
    signal(SIGPIPE, SIG_IGN);

    int passed = 0, failed = 0, skipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (!selected(argc, argv, cases[i].name))
            continue;
        double t0 = now_ms();
        int r = run_case(&cases[i], do_fork, timeout);
        double dt = now_ms() - t0;
        static const char *const label[] = { "ok  ", "FAIL", "skip" };
        printf("%s %-48s %8.1f ms\n", label[r], cases[i].name, dt);
        fflush(stdout);
        passed += r == 0;
        failed += r == 1;
        skipped += r == 2;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed)
        return 1;
    if (passed == 0 && skipped > 0)
        return SKIP_CODE;
    if (passed == 0)
        return 1; /* nothing ran: a typo in a case name must not pass */
    return 0;
}
