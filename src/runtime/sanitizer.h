/* Which sanitizers this translation unit is built with, for gcc and clang. */
#ifndef NP_SANITIZER_H
#define NP_SANITIZER_H

#if defined(__SANITIZE_ADDRESS__)
#define NP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NP_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define NP_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NP_TSAN 1
#endif
#endif

/* For functions whose frames never return (a task's entry, its last
 * switch): ThreadSanitizer must not push them on the fiber's shadow stack. */
#if defined(__GNUC__) || defined(__clang__)
#define NP_NO_TSAN __attribute__((no_sanitize("thread"), noinline))
#else
#define NP_NO_TSAN
#endif

#ifdef NP_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef NP_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define NP_VALGRIND 1
#endif
#endif

#endif
