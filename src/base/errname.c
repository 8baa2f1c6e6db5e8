/* np_err_name: the symbolic name of an error code, as libuv's uv_err_name.
 * A table searched in order rather than a switch: some names share a value
 * on some systems (EAGAIN and EWOULDBLOCK, ENOTSUP and EOPNOTSUPP), and the
 * first, the usual spelling, wins. Every entry is guarded, so the table
 * holds what the platform defines. */
#include <errno.h>
#include <limits.h>
#include <stddef.h>

#include "netpoll.h"

struct errname {
    int code;
    const char *name;
};

#define NAME(e) { e, #e }
static const struct errname names[] = {
    { -NP_ENOHOST, "NP_ENOHOST" },
#ifdef EPERM
    NAME(EPERM),
#endif
#ifdef ENOENT
    NAME(ENOENT),
#endif
#ifdef ESRCH
    NAME(ESRCH),
#endif
#ifdef EINTR
    NAME(EINTR),
#endif
#ifdef EIO
    NAME(EIO),
#endif
#ifdef ENXIO
    NAME(ENXIO),
#endif
#ifdef E2BIG
    NAME(E2BIG),
#endif
#ifdef ENOEXEC
    NAME(ENOEXEC),
#endif
#ifdef EBADF
    NAME(EBADF),
#endif
#ifdef ECHILD
    NAME(ECHILD),
#endif
#ifdef EAGAIN
    NAME(EAGAIN),
#endif
#ifdef ENOMEM
    NAME(ENOMEM),
#endif
#ifdef EACCES
    NAME(EACCES),
#endif
#ifdef EFAULT
    NAME(EFAULT),
#endif
#ifdef ENOTBLK
    NAME(ENOTBLK),
#endif
#ifdef EBUSY
    NAME(EBUSY),
#endif
#ifdef EEXIST
    NAME(EEXIST),
#endif
#ifdef EXDEV
    NAME(EXDEV),
#endif
#ifdef ENODEV
    NAME(ENODEV),
#endif
#ifdef ENOTDIR
    NAME(ENOTDIR),
#endif
#ifdef EISDIR
    NAME(EISDIR),
#endif
#ifdef EINVAL
    NAME(EINVAL),
#endif
#ifdef ENFILE
    NAME(ENFILE),
#endif
#ifdef EMFILE
    NAME(EMFILE),
#endif
#ifdef ENOTTY
    NAME(ENOTTY),
#endif
#ifdef ETXTBSY
    NAME(ETXTBSY),
#endif
#ifdef EFBIG
    NAME(EFBIG),
#endif
#ifdef ENOSPC
    NAME(ENOSPC),
#endif
#ifdef ESPIPE
    NAME(ESPIPE),
#endif
#ifdef EROFS
    NAME(EROFS),
#endif
#ifdef EMLINK
    NAME(EMLINK),
#endif
#ifdef EPIPE
    NAME(EPIPE),
#endif
#ifdef EDOM
    NAME(EDOM),
#endif
#ifdef ERANGE
    NAME(ERANGE),
#endif
#ifdef EDEADLK
    NAME(EDEADLK),
#endif
#ifdef ENAMETOOLONG
    NAME(ENAMETOOLONG),
#endif
#ifdef ENOLCK
    NAME(ENOLCK),
#endif
#ifdef ENOSYS
    NAME(ENOSYS),
#endif
#ifdef ENOTEMPTY
    NAME(ENOTEMPTY),
#endif
#ifdef ELOOP
    NAME(ELOOP),
#endif
#ifdef ENOMSG
    NAME(ENOMSG),
#endif
#ifdef EIDRM
    NAME(EIDRM),
#endif
#ifdef ENOSTR
    NAME(ENOSTR),
#endif
#ifdef ENODATA
    NAME(ENODATA),
#endif
#ifdef ETIME
    NAME(ETIME),
#endif
#ifdef ENOSR
    NAME(ENOSR),
#endif
#ifdef EREMOTE
    NAME(EREMOTE),
#endif
#ifdef ENOLINK
    NAME(ENOLINK),
#endif
#ifdef EPROTO
    NAME(EPROTO),
#endif
#ifdef EMULTIHOP
    NAME(EMULTIHOP),
#endif
#ifdef EBADMSG
    NAME(EBADMSG),
#endif
#ifdef EOVERFLOW
    NAME(EOVERFLOW),
#endif
#ifdef EILSEQ
    NAME(EILSEQ),
#endif
#ifdef EUSERS
    NAME(EUSERS),
#endif
#ifdef ENOTSOCK
    NAME(ENOTSOCK),
#endif
#ifdef EDESTADDRREQ
    NAME(EDESTADDRREQ),
#endif
#ifdef EMSGSIZE
    NAME(EMSGSIZE),
#endif
#ifdef EPROTOTYPE
    NAME(EPROTOTYPE),
#endif
#ifdef ENOPROTOOPT
    NAME(ENOPROTOOPT),
#endif
#ifdef EPROTONOSUPPORT
    NAME(EPROTONOSUPPORT),
#endif
#ifdef ESOCKTNOSUPPORT
    NAME(ESOCKTNOSUPPORT),
#endif
#ifdef EOPNOTSUPP
    NAME(EOPNOTSUPP),
#endif
#ifdef EPFNOSUPPORT
    NAME(EPFNOSUPPORT),
#endif
#ifdef EAFNOSUPPORT
    NAME(EAFNOSUPPORT),
#endif
#ifdef EADDRINUSE
    NAME(EADDRINUSE),
#endif
#ifdef EADDRNOTAVAIL
    NAME(EADDRNOTAVAIL),
#endif
#ifdef ENETDOWN
    NAME(ENETDOWN),
#endif
#ifdef ENETUNREACH
    NAME(ENETUNREACH),
#endif
#ifdef ENETRESET
    NAME(ENETRESET),
#endif
#ifdef ECONNABORTED
    NAME(ECONNABORTED),
#endif
#ifdef ECONNRESET
    NAME(ECONNRESET),
#endif
#ifdef ENOBUFS
    NAME(ENOBUFS),
#endif
#ifdef EISCONN
    NAME(EISCONN),
#endif
#ifdef ENOTCONN
    NAME(ENOTCONN),
#endif
#ifdef ESHUTDOWN
    NAME(ESHUTDOWN),
#endif
#ifdef ETOOMANYREFS
    NAME(ETOOMANYREFS),
#endif
#ifdef ETIMEDOUT
    NAME(ETIMEDOUT),
#endif
#ifdef ECONNREFUSED
    NAME(ECONNREFUSED),
#endif
#ifdef EHOSTDOWN
    NAME(EHOSTDOWN),
#endif
#ifdef EHOSTUNREACH
    NAME(EHOSTUNREACH),
#endif
#ifdef EALREADY
    NAME(EALREADY),
#endif
#ifdef EINPROGRESS
    NAME(EINPROGRESS),
#endif
#ifdef ESTALE
    NAME(ESTALE),
#endif
#ifdef EDQUOT
    NAME(EDQUOT),
#endif
#ifdef ECANCELED
    NAME(ECANCELED),
#endif
#ifdef EOWNERDEAD
    NAME(EOWNERDEAD),
#endif
#ifdef ENOTRECOVERABLE
    NAME(ENOTRECOVERABLE),
#endif
#ifdef ERFKILL
    NAME(ERFKILL),
#endif
#ifdef EHWPOISON
    NAME(EHWPOISON),
#endif
#ifdef ENOTSUP
    NAME(ENOTSUP),
#endif
#ifdef EWOULDBLOCK
    NAME(EWOULDBLOCK),
#endif
};
#undef NAME

const char *np_err_name(int err)
{
    if (err == 0)
        return "0";
    if (err == INT_MIN)
        return "UNKNOWN"; /* -INT_MIN does not exist */
    if (err < 0)
        err = -err;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].code == err)
            return names[i].name;
    return "UNKNOWN";
}
