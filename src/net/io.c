/* The I/O loops: np_read, np_write, np_wait_readable, and the datagram
 * calls np_read_from and np_write_to. Every loop has Go's shape:
 *
 *     lock the direction (serialises readers, or writers), reset the pd
 *     loop: try the syscall (non-blocking)
 *           EINTR  -> retry
 *           EAGAIN -> wait on the pd (deadline, close, readiness); retry
 *           else   -> done
 *     unlock (the last reference after a close closes the fd)
 *
 * The syscall depends on the descriptor: recv/send on sockets (send with
 * MSG_NOSIGNAL: a gone peer is -EPIPE, not a signal), read/write on an
 * adopted pipe or tty (np_conn_from_fd), with SIGPIPE held off around the
 * write. A datagram write is one send, never partial.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/sys.h"
#include "net/addr.h"
#include "net/fd.h"
#include "netpoll.h"
#include "os/os.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "runtime/scheduler.h"

/* A write to a pipe whose reader is gone raises SIGPIPE, which send's
 * MSG_NOSIGNAL avoids for sockets only: block it in this thread for the
 * write, and take back the one the write raised. */
static ssize_t pipe_write(int fd, const void *buf, size_t len)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    /* Where the thread blocked SIGPIPE already, one may be pending that is
     * not ours to take; where it did not, none can be (it would have been
     * delivered). */
    bool was_pending = false;
    if (sigismember(&old, SIGPIPE) && sigpending(&pending) == 0)
        was_pending = sigismember(&pending, SIGPIPE);
    ssize_t n = NP__SYS(write(fd, buf, len));
    if (n == -EPIPE && !was_pending)
        np__os_discard_pending(SIGPIPE);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return n;
}

static ssize_t sys_read(np__fd *fd, void *buf, size_t len, struct sockaddr_storage *from,
                        socklen_t *fromlen)
{
    if (fd->sotype == 0)
        return NP__SYS(read(fd->sysfd, buf, len));
    if (from)
        return NP__SYS(recvfrom(fd->sysfd, buf, len, 0, (struct sockaddr *)from, fromlen));
    return NP__SYS(recv(fd->sysfd, buf, len, 0));
}

static ssize_t sys_write(np__fd *fd, const void *buf, size_t len, const struct sockaddr *to,
                         socklen_t tolen)
{
    if (fd->sotype == 0)
        return pipe_write(fd->sysfd, buf, len);
    if (to)
        return NP__SYS(sendto(fd->sysfd, buf, len, MSG_NOSIGNAL, to, tolen));
    return NP__SYS(send(fd->sysfd, buf, len, MSG_NOSIGNAL));
}

/* Starts an I/O call: the connection, locked in one direction, or an error. */
static int io_begin(np_conn c, bool read, np__fd **out)
{
    if (np__no_runtime())
        return -ESRCH;
    np__fd *fd = np__fd_get(c.id, NP__FD_CONN);
    if (!fd)
        return -EBADF;
    bool locked = np__fd_lock(fd, read);
    np__fd_decref(fd);
    if (!locked)
        return -ECANCELED; /* closed while we queued behind another call */
    /* After a short read, np_read waits first: keep what the poller said. */
    int rc = read && fd->read_drained ? np__pd_check(fd->pd, NP__PD_READ)
                                      : np__pd_reset(fd->pd, read ? NP__PD_READ : NP__PD_WRITE);
    if (rc < 0) {
        np__fd_unlock(fd, read);
        return rc;
    }
    *out = fd;
    return 0;
}

/* A read that returned less than asked for emptied the socket's receive
 * queue, so the next read would very likely fail with EAGAIN: it waits for
 * the poller's word first instead (libuv does the same). Nothing is lost
 * that way:
 *   - data that arrives after that short read raises a new readiness event
 *     (epoll and kqueue report every arrival on a stream socket; the poll
 *     backend looks at the level); data that came before it was part of it;
 *   - the end of the stream or an error is not data: it may have come with
 *     the last bytes, and no event follows it. But its event set the pd's
 *     sticky read-ended bit, looked at below, before it set READY, which
 *     this read keeps (np__pd_check, not np__pd_reset): a reader that looks
 *     too early finds READY, or is woken. TCP urgent data, at whose mark a
 *     read stops short of what is queued, sets the same bit (EPOLLPRI);
 *   - Unix stream sockets and backends that cannot promise the above
 *     (short_read_waits) always try the socket first.
 * At worst, a stale readiness costs the one EAGAIN saved. */
static bool short_read_waits(const np__fd *fd)
{
    /* A Unix stream read also stops short at a message carrying descriptors
     * or credentials, or at out-of-band data, and nothing is reported then. */
    return np__poller_short_read_waits && fd->sotype == SOCK_STREAM &&
           (fd->family == AF_INET || fd->family == AF_INET6);
}

/* One read: bytes (> 0), 0 at the end of the stream, or -errno. */
/* What a parked call waits in (np_dump). */
static const np__park_site site_read = { "np_read", "conn", NP__ON_PD_READ };
static const np__park_site site_write = { "np_write", "conn", NP__ON_PD_WRITE };
static const np__park_site site_readable = { "np_wait_readable", "conn", NP__ON_PD_READ };

static ssize_t read_loop(np_conn c, void *buf, size_t len, struct sockaddr_storage *from,
                         socklen_t *fromlen, bool dgram_only)
{
    if (len > SSIZE_MAX)
        len = SSIZE_MAX; /* as read(2): the count must fit the result */
    if (len == 0) { /* Go's: nothing asked, nothing to fail (the handle aside) */
        if (np__no_runtime())
            return -ESRCH;
        np__fd *fd = np__fd_get(c.id, NP__FD_CONN);
        if (!fd)
            return -EBADF;
        bool wrong_kind = dgram_only && fd->sotype != SOCK_DGRAM;
        np__fd_decref(fd);
        return wrong_kind ? -EINVAL : 0;
    }
    np__fd *fd;
    int rc = io_begin(c, true, &fd);
    if (rc < 0)
        return rc;
    if (dgram_only && fd->sotype != SOCK_DGRAM) {
        np__fd_unlock(fd, true);
        return -EINVAL;
    }
    if (fd->pending_err) { /* taken from the socket by np_wait_readable */
        int err = fd->pending_err;
        fd->pending_err = 0;
        np__fd_unlock(fd, true);
        return -err;
    }
    bool drained = fd->read_drained && !np__pd_read_ended(fd->pd);
    fd->read_drained = false;
    ssize_t n;
    for (;;) {
        if (drained) {
            drained = false;
            rc = np__pd_wait_in(fd->pd, NP__PD_READ, &site_read);
            if (rc < 0) {
                n = rc;
                break;
            }
        }
        n = sys_read(fd, buf, len, from, fromlen);
        if (n >= 0) {
            fd->read_drained = n > 0 && (size_t)n < len && short_read_waits(fd);
            break;
        }
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN) {
            rc = np__pd_wait_in(fd->pd, NP__PD_READ, &site_read);
            if (rc == 0)
                continue;
            n = rc;
        }
        break;
    }
    np__fd_unlock(fd, true);
    return n;
}

ssize_t np_read(np_conn c, void *buf, size_t len)
{
    return read_loop(c, buf, len, NULL, NULL, false);
}

ssize_t np_read_from(np_conn c, void *buf, size_t len, np_addr *from)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ssize_t n = read_loop(c, buf, len, &ss, &sl, true);
    if (len == 0) { /* nothing was received, so there is no sender */
        if (n == 0 && from)
            memset(from, 0, sizeof *from);
        return n;
    }
    struct sockaddr_in in;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    if (n >= 0 && ss.ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
        /* A v4 peer of a dual-stack socket: report it as IPv4. */
        memset(&in, 0, sizeof in);
        in.sin_family = AF_INET;
        in.sin_port = in6->sin6_port;
        memcpy(&in.sin_addr, &in6->sin6_addr.s6_addr[12], 4);
        memcpy(&ss, &in, sizeof in);
        sl = sizeof in;
    }
    if (n >= 0 && sl < sizeof(sa_family_t)) {
        /* An unnamed sender (a Unix socket never bound): the kernel gives no
         * address at all; say "a Unix socket, no name" (formats as ""). */
        ss.ss_family = AF_UNIX;
        sl = sizeof(sa_family_t);
    }
    if (n >= 0 && from && np__addr_store(from, (struct sockaddr *)&ss, sl) < 0)
        memset(from, 0, sizeof *from); /* a sender with no address (unnamed Unix socket) */
    return n;
}

/* Writes all of buf (a stream) or one datagram; see np_write. */
static ssize_t write_loop(np_conn c, const void *buf, size_t len, const struct sockaddr *to,
                          socklen_t tolen)
{
    if (len > SSIZE_MAX)
        return -EINVAL; /* the count written could not be returned */
    np__fd *fd;
    int rc = io_begin(c, false, &fd);
    if (rc < 0)
        return rc;
    bool dgram = fd->sotype == SOCK_DGRAM;
    ssize_t result;
    if (to && !dgram) {
        result = -EINVAL;
        goto out;
    }
    if (to && fd->connected) {
        result = -EISCONN; /* a dialed socket has its peer; Go refuses too */
        goto out;
    }
    struct sockaddr_in6 mapped;
    if (to && to->sa_family == AF_INET && fd->family == AF_INET6 && fd->dual_stack) {
        /* A dual-stack socket reaches IPv4 peers at v4-mapped addresses. */
        const struct sockaddr_in *in = (const struct sockaddr_in *)to;
        memset(&mapped, 0, sizeof mapped);
        mapped.sin6_family = AF_INET6;
        mapped.sin6_port = in->sin_port;
        mapped.sin6_addr.s6_addr[10] = mapped.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&mapped.sin6_addr.s6_addr[12], &in->sin_addr, 4);
        to = (const struct sockaddr *)&mapped;
        tolen = sizeof mapped;
    }
    if (to && to->sa_family != fd->family) {
        result = -EAFNOSUPPORT;
        goto out;
    }
    size_t done = 0;
    for (;;) {
        if (!dgram && done == len) {
            result = (ssize_t)len;
            break;
        }
        ssize_t n = sys_write(fd, (const char *)buf + done, len - done, to, tolen);
        if (n >= 0 && dgram) {
            result = n; /* one datagram, all of it */
            break;
        }
        if (n > 0) {
            done += (size_t)n;
            continue;
        }
        int err = n < 0 ? (int)-n : EAGAIN;
        if (err == EINTR)
            continue;
        if (err == EAGAIN) {
            rc = np__pd_wait_in(fd->pd, NP__PD_WRITE, &site_write);
            if (rc == 0)
                continue;
            err = -rc;
        }
        /* Stopped: report what went out; the next call reports why. */
        result = done > 0 ? (ssize_t)done : -err;
        break;
    }
out:
    np__fd_unlock(fd, false);
    return result;
}

ssize_t np_write(np_conn c, const void *buf, size_t len)
{
    return write_loop(c, buf, len, NULL, 0);
}

ssize_t np_write_to(np_conn c, const void *buf, size_t len, const np_addr *to)
{
    if (!to)
        return -EINVAL;
    struct sockaddr_storage ss;
    socklen_t sl;
    int rc = np__addr_load(to, &ss, &sl);
    if (rc < 0)
        return rc;
    return write_loop(c, buf, len, (struct sockaddr *)&ss, sl);
}

/* MSG_PEEK for what is not a socket: 0 if a read would not block, else
 * -EAGAIN. */
static ssize_t peek_plain(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int n = NP__SYS(poll(&p, 1, 0));
    return n > 0 ? 0 : n == 0 ? -EAGAIN : n;
}

int np_wait_readable(np_conn c)
{
    np__fd *fd;
    int rc = io_begin(c, true, &fd);
    if (rc < 0)
        return rc;
    /* It looks (MSG_PEEK) before it waits and consumes any readiness it
     * waits for: the read after it must try the socket first. */
    fd->read_drained = false;
    for (;;) {
        char b;
        ssize_t n = fd->sotype == 0 ? peek_plain(fd->sysfd)
                                    : NP__SYS(recv(fd->sysfd, &b, 1, MSG_PEEK | MSG_DONTWAIT));
        if (n >= 0)
            break; /* data, or end of stream */
        int err = (int)-n;
        if (err == EINTR)
            continue;
        if (err != EAGAIN) {
            /* An error is waiting, and the peek has taken it from the
             * socket (SO_ERROR is cleared once reported): keep it for the
             * read, which reports it. */
            fd->pending_err = err;
            break;
        }
        rc = np__pd_wait_in(fd->pd, NP__PD_READ, &site_readable);
        if (rc < 0)
            break;
    }
    np__fd_unlock(fd, true);
    return rc;
}

