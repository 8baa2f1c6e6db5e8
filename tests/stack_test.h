/* What tests/test_million.c and tests/test_stack.c share: the stack
 * layout a case runs with, and readings of the process's memory and
 * mappings. */
#ifndef NP_STACK_TEST_H
#define NP_STACK_TEST_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sanitizer.h"
#include "runtime/stack.h"
#include "np_test.h"

#ifdef NP_ASAN
/* The runtime's switch, read by every instrumented function as it starts. */
extern int __asan_option_detect_stack_use_after_return;
#endif

/* For the cases that hold more tasks than vm.max_map_count allows
 * mappings: AddressSanitizer's detect_stack_use_after_return (CI sets it)
 * gives every task that has run a fake stack, a mapping of its own, held
 * while the task is parked; that alone would cap the tasks at about
 * 65,000. It is turned off for these cases (each runs in a process of its
 * own). */
static inline void no_fake_stacks(void)
{
#ifdef NP_ASAN
    __asan_option_detect_stack_use_after_return = 0;
#endif
}

static inline bool emulated(void)
{
    return getenv("NP_TEST_EMULATED") != NULL;
}

static inline long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    NP_CHECK(f != NULL);
    char line[256];
    long v = -1;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, k) && line[k] == ':')
            v = atol(line + k + 1);
    fclose(f);
    return v;
}

static inline long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    NP_CHECK(f != NULL);
    long n = 0;
    int c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static inline long max_map_count(void)
{
    long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = 65530;
        fclose(f);
    }
    return v;
}

static inline const char *layout_name(int l)
{
    return l == NP__STACK_CARVED ? "carved (MADV_GUARD_INSTALL)" : "mapped (PROT_NONE guard mapping)";
}

/* This case's layout: the fallback if `mapping`, else the default. Must
 * come before the case's first np_run. */
static inline int use_layout(bool mapping)
{
    if (mapping)
        NP_CHECK_OK(setenv("NP_STACK_GUARD", "mapping", 1));
    int l = np__stack_layout();
    if (mapping && l != NP__STACK_MAPPED)
        NP_SKIP("the layout was chosen earlier in this process (NP_TEST_FORK=0?)");
    printf("  layout: %s\n", layout_name(l));
    return l;
}

#endif
