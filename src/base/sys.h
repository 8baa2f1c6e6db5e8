/* System calls that give -errno: the only place in src/ that reads errno.
 *
 * Tasks migrate between threads, and errno is thread-local: a compiler may
 * compute errno's address once, before a point where the task switches
 * threads, and read the old thread's errno after it (it did, in np_dial).
 * So no code in src/ names errno. Every call whose failure it wants to know
 * goes through NP__SYS, which reads errno in the same expression as the
 * call, before anything can switch:
 *
 *     ssize_t n = NP__SYS(recv(fd, buf, len, 0));   // bytes, or -EAGAIN, ...
 *     int rc = NP__SYS(shutdown(fd, SHUT_WR));      // 0, or -ENOTCONN, ...
 *
 * And NP__SYS does not read errno itself: it calls np__errno(), defined
 * out of line in errno.c. glibc declares __errno_location const, so a
 * compiler may compute errno's address once and reuse it after a switch
 * even when every read sits right after its syscall; a call into another
 * translation unit is made afresh each time.
 *
 * tests/check_errno.sh enforces the rule: outside this file and errno.c,
 * the word errno appears in src/ only in comments, and no object of the
 * library but errno.c's refers to __errno_location.
 */
#ifndef NP_SYS_H
#define NP_SYS_H

#include <errno.h>

/* errno of the calling thread, read (or set) by a call that is never
 * inlined (errno.c). */
int np__errno(void);
void np__set_errno(int e);

/* The call's result when it is >= 0, else -errno (the call's own). For calls
 * that return -1 and set errno on failure. */
#define NP__SYS(call)                                                        \
    __extension__({                                                          \
        __typeof__(call) np_sys_r_ = (call);                                 \
        np_sys_r_ < 0 ? (__typeof__(np_sys_r_))-np__errno() : np_sys_r_;      \
    })

/* For calls that return a pointer, or NULL and set errno: -errno or 0. */
#define NP__SYS_PTR(call, out)                                               \
    __extension__({                                                          \
        (out) = (call);                                                      \
        (out) ? 0 : -np__errno();                                            \
    })

/* A signal handler must leave errno as it found it: the interrupted code
 * may be between a syscall and its errno read. */
#define NP__ERRNO_SAVE() int np_saved_errno_ = np__errno()
#define NP__ERRNO_RESTORE() np__set_errno(np_saved_errno_)

#endif
