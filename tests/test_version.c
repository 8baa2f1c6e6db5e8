/* The version (header macros against the library) and the error names and
 * texts: np_err_name, np_strerror for the library's own codes. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "netpoll.h"
#include "np_test.h"

static void t_version_header_and_library_agree(void)
{
    NP_CHECK_EQ(np_version(), (unsigned)NP_VERSION_HEX);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", NP_VERSION_MAJOR, NP_VERSION_MINOR, NP_VERSION_PATCH);
    NP_CHECK_STR_EQ(np_version_string(), want);
    NP_CHECK_STR_EQ(NP_VERSION_STRING, want);
    NP_CHECK_EQ((np_version() >> 16) & 0xff, (unsigned)NP_VERSION_MAJOR);
    NP_CHECK_EQ((np_version() >> 8) & 0xff, (unsigned)NP_VERSION_MINOR);
    NP_CHECK_EQ(np_version() & 0xff, (unsigned)NP_VERSION_PATCH);
}

static void t_err_name_both_signs(void)
{
    NP_CHECK_STR_EQ(np_err_name(-ETIMEDOUT), "ETIMEDOUT");
    NP_CHECK_STR_EQ(np_err_name(ETIMEDOUT), "ETIMEDOUT");
    NP_CHECK_STR_EQ(np_err_name(-ECONNREFUSED), "ECONNREFUSED");
    NP_CHECK_STR_EQ(np_err_name(-EBADF), "EBADF");
    NP_CHECK_STR_EQ(np_err_name(-EINVAL), "EINVAL");
    NP_CHECK_STR_EQ(np_err_name(-ESRCH), "ESRCH");
    NP_CHECK_STR_EQ(np_err_name(-EMFILE), "EMFILE");
    /* Shared values: the usual spelling. */
    NP_CHECK_STR_EQ(np_err_name(-EWOULDBLOCK), "EAGAIN");
    NP_CHECK_STR_EQ(np_err_name(0), "0");
}

static void t_err_name_unknown_and_extremes(void)
{
    NP_CHECK_STR_EQ(np_err_name(INT_MIN), "UNKNOWN");
    NP_CHECK_STR_EQ(np_err_name(INT_MAX), "UNKNOWN");
    NP_CHECK_STR_EQ(np_err_name(-99999), "UNKNOWN");
}

/* Every library-specific code: its own name and its own text, whichever
 * the sign. Add new codes here as they come. */
static void t_library_codes(void)
{
    static const struct {
        int code;
        const char *name, *text;
    } codes[] = {
        { NP_ENOHOST, "NP_ENOHOST", "no such host" },
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        NP_CHECK(codes[i].code < -1000); /* far from any errno */
        NP_CHECK_STR_EQ(np_err_name(codes[i].code), codes[i].name);
        NP_CHECK_STR_EQ(np_err_name(-codes[i].code), codes[i].name);
        NP_CHECK_STR_EQ(np_strerror(codes[i].code), codes[i].text);
        NP_CHECK_STR_EQ(np_strerror(-codes[i].code), codes[i].text);
    }
}

/* Every errno a call of the library may return has a name and a text of its
 * own (not the generic ones). */
static void t_every_returned_errno_is_named(void)
{
    static const int codes[] = { EPERM, ENOENT, ESRCH, EINTR, EIO, EBADF, EAGAIN, ENOMEM, EACCES,
                                 EFAULT, EBUSY, EEXIST, ENOTDIR, EINVAL, ENFILE, EMFILE, ENOSPC,
                                 EPIPE, ERANGE, ENAMETOOLONG, ENOSYS, ELOOP, EOVERFLOW, ENOTSOCK,
                                 EDESTADDRREQ, EMSGSIZE, EPROTOTYPE, ENOPROTOOPT, EPROTONOSUPPORT,
                                 EOPNOTSUPP, EAFNOSUPPORT, EADDRINUSE, EADDRNOTAVAIL, ENETDOWN,
                                 ENETUNREACH, ENETRESET, ECONNABORTED, ECONNRESET, ENOBUFS, EISCONN,
                                 ENOTCONN, ESHUTDOWN, ETIMEDOUT, ECONNREFUSED, EHOSTDOWN,
                                 EHOSTUNREACH, EALREADY, EINPROGRESS, ECANCELED };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        NP_CHECK_MSG(strcmp(np_err_name(-codes[i]), "UNKNOWN") != 0, "errno %d has no name", codes[i]);
        NP_CHECK_MSG(strcmp(np_strerror(-codes[i]), "Unknown error") != 0, "errno %d has no text",
                     codes[i]);
    }
}

NP_TEST_LIST(NP_CASE(t_version_header_and_library_agree), NP_CASE(t_err_name_both_signs),
             NP_CASE(t_err_name_unknown_and_extremes), NP_CASE(t_library_codes),
             NP_CASE(t_every_returned_errno_is_named))
