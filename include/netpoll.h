/* netpoll — Go's integrated network poller, in C.
 *
 * Conventions (see docs and shared/API.md for the full contract):
 *  - Every public name starts with np_; nothing else is exported.
 *  - A call that can fail returns a negative errno value (-ETIMEDOUT, ...);
 *    errno itself is never the only report. np_strerror() turns one into text.
 *  - Time is int64_t nanoseconds of CLOCK_MONOTONIC. Deadlines are absolute
 *    (np_now() + 2 * NP_SECOND); 0 means "no deadline"; any other value at or
 *    before now, negative ones included, is a deadline already past.
 *
 * This header grows issue by issue toward shared/API.md. It declares only what
 * the library implements today.
 */
#ifndef NETPOLL_H
#define NETPOLL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define NP_API __attribute__((visibility("default")))
#else
#define NP_API
#endif

#define NP_MICROSECOND ((int64_t)1000)
#define NP_MILLISECOND ((int64_t)1000000)
#define NP_SECOND      ((int64_t)1000000000)

/* Nanoseconds of CLOCK_MONOTONIC. Callable from any thread. */
NP_API int64_t np_now(void);

/* Text for an error code; err may be negative (-ECONNRESET, as the library
 * returns them) or positive. Never NULL; unknown codes get a generic text. The
 * string is static and must not be freed. Callable from any thread. */
NP_API const char *np_strerror(int err);

/* Name of the poller backend this library was built with: "epoll",
 * "epoll_pipe" (epoll woken through a pipe instead of an eventfd) or "poll".
 * Chosen at build time with -DNP_POLLER=epoll|poll (and -DNP_WAKE=pipe). */
NP_API const char *np_poller_name(void);

#ifdef __cplusplus
}
#endif
#endif /* NETPOLL_H */
