/* The net API: listeners, dialing (streams and datagrams), datagram
 * sockets, deadlines, close and addresses. The I/O loops are in io.c,
 * foreign descriptors in foreign.c.
 *
 * No code here reads errno: after a wait the task may be running on another
 * thread, with another errno, and a compiler may keep the first thread's
 * errno address across the wait. Every syscall goes through NP__SYS
 * (base/sys.h), which gives -errno in the same expression as the call.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/sys.h"
#include "net/addr.h"
#include "net/fd.h"
#include "netpoll.h"
#include "os/os.h"
#include "pd/pd.h"
#include "poller/poller.h"
#include "runtime/scheduler.h"

/* What a parked call waits in (np_dump). */
static const np__park_site site_accept = { "np_accept", "listener", NP__ON_PD_READ };
static const np__park_site site_dial = { "np_dial", "conn", NP__ON_PD_WRITE };

static void set_nodelay(int s, int family)
{
    if (family == AF_INET || family == AF_INET6) {
        int one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

/* A Unix socket's file, made by bind: the handle removes it at close. If
 * what follows the bind fails, it goes at once, so the path stays free. */
static char *unix_file(const struct sockaddr *sa)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
    return sa->sa_family == AF_UNIX && un->sun_path[0] ? (char *)un->sun_path : NULL;
}

/* After a successful bind: the fd takes the file (strdup), or, on failure,
 * the socket is closed and the file removed. */
static int finish_bind(int s, const struct sockaddr *sa, int kind, int sotype, np__fd **out,
                       uint64_t *id)
{
    char *file = unix_file(sa), *copy = NULL;
    int rc = file && !(copy = strdup(file)) ? -ENOMEM : 0;
    if (rc == 0) /* the fd owns copy from here, failure or not */
        rc = np__fd_new_full(s, kind, sa->sa_family, sotype, copy, out, id);
    if (rc < 0) {
        close(s);
        if (file)
            unlink(file);
        return rc;
    }
    return 0;
}

/* ---- listeners ---------------------------------------------------------------- */

/* "tcp6"/"udp6" name IPv6 alone, as in Go; "tcp"/"udp" on the unspecified
 * address [::] serve IPv4 too (a dual-stack socket). */
static bool v6_only(const char *network)
{
    size_t n = strlen(network);
    return n > 0 && network[n - 1] == '6';
}

static int listen_on(const struct sockaddr *sa, socklen_t len, int reuse_port, bool v6only_net,
                     np__fd **out,
                     uint64_t *id)
{
    int s = np__os_socket(sa->sa_family, SOCK_STREAM, 0);
    if (s < 0)
        return s;
    int one = 1, zero = 0, rc;
    if (sa->sa_family != AF_UNIX) {
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (reuse_port &&
            (rc = NP__SYS(setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one))) < 0)
            goto fail;
    }
    if (sa->sa_family == AF_INET6) { /* "tcp" on [::] serves IPv4 too */
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        int v6only = v6only_net || !IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof one);
    }
    if ((rc = NP__SYS(bind(s, sa, len))) < 0)
        goto fail;
    if ((rc = NP__SYS(listen(s, 4096))) < 0) {
        if (unix_file(sa))
            unlink(unix_file(sa));
        goto fail;
    }
    return finish_bind(s, sa, NP__FD_LISTENER, SOCK_STREAM, out, id);
fail:
    close(s);
    return rc;
}

int np_listen_reuseport(np_listener *out, const char *network, const char *address, int reuse_port)
{
    if (!out)
        return -EINVAL;
    out->id = 0;
    if (np__no_runtime())
        return -ESRCH; /* a handle lives in a running runtime's poller */
    if (np__sotype(network) != SOCK_STREAM)
        return -EINVAL; /* datagrams: np_listen_packet */
    np__addrs addrs;
    int rc = np__resolve(network, address, true, 0, &addrs);
    if (rc < 0)
        return rc;
    np__fd *fd = NULL;
    uint64_t id = 0;
    for (int i = 0; i < addrs.n; i++) { /* each address in turn, as Go */
        rc = listen_on((struct sockaddr *)&addrs.sa[i], addrs.len[i], reuse_port, v6_only(network),
                       &fd, &id);
        if (rc == 0)
            break;
    }
    if (rc < 0)
        return rc;
    np__fd_decref(fd);
    out->id = id;
    return 0;
}

int np_listen(np_listener *out, const char *network, const char *address)
{
    return np_listen_reuseport(out, network, address, 0);
}

int np_listener_addr(np_listener l, char *buf, size_t len)
{
    np__fd *fd = np__fd_get(l.id, NP__FD_LISTENER);
    if (!fd)
        return -EBADF;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int rc = NP__SYS(getsockname(fd->sysfd, (struct sockaddr *)&ss, &sl));
    np__fd_decref(fd);
    return rc ? rc : np__format_addr((struct sockaddr *)&ss, sl, buf, len);
}

int np_accept(np_listener l, np_conn *out)
{
    if (!out)
        return -EINVAL;
    out->id = 0;
    if (np__no_runtime())
        return -ESRCH;
    np__fd *fd = np__fd_get(l.id, NP__FD_LISTENER);
    if (!fd)
        return -EBADF;
    if (!np__fd_lock(fd, true)) {
        np__fd_decref(fd);
        return -ECANCELED;
    }
    np__fd_decref(fd); /* the lock holds a reference of its own */
    int rc = np__pd_reset(fd->pd, NP__PD_READ);
    int s = -1;
    while (rc == 0) {
        s = np__os_accept(fd->sysfd);
        if (s >= 0)
            break;
        int err = -s;
        if (err == EINTR || err == ECONNABORTED)
            continue;
        if (err == EAGAIN) {
            rc = np__pd_wait_in(fd->pd, NP__PD_READ, &site_accept);
            continue;
        }
        /* EMFILE / ENFILE and the rest: reported; the listener stays as it
         * is, and the pending connection stays queued for a later call. */
        rc = -err;
    }
    int family = fd->family;
    np__fd_unlock(fd, true);
    if (rc < 0)
        return rc;
    set_nodelay(s, family);
    np__fd *c;
    uint64_t id;
    rc = np__fd_new(s, NP__FD_CONN, family, &c, &id);
    if (rc < 0) {
        close(s);
        return rc;
    }
    np__fd_decref(c);
    out->id = id;
    return 0;
}

int np_listener_set_deadline(np_listener l, int64_t deadline)
{
    np__fd *fd = np__fd_get(l.id, NP__FD_LISTENER);
    if (!fd)
        return -EBADF;
    np__pd_set_deadline(fd->pd, deadline, NP__PD_READ);
    np__fd_decref(fd);
    return 0;
}

int np_listener_close(np_listener l)
{
    np__fd *fd = np__fd_get(l.id, NP__FD_LISTENER);
    if (!fd) {
        np__fd_close_wait(l.id);
        return -EBADF;
    }
    return np__fd_close(fd);
}

/* ---- datagram sockets ------------------------------------------------------------ */

static int bind_packet(const struct sockaddr *sa, socklen_t len, bool v6only_net, np__fd **out,
                       uint64_t *id)
{
    int s = np__os_socket(sa->sa_family, SOCK_DGRAM, 0);
    if (s < 0)
        return s;
    int rc;
    bool dual = false;
    if (sa->sa_family == AF_INET6) { /* "udp" on [::] serves IPv4 too */
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        int v6only = v6only_net || !IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr);
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        dual = !v6only;
    }
    if ((rc = NP__SYS(bind(s, sa, len))) < 0) {
        close(s);
        return rc;
    }
    rc = finish_bind(s, sa, NP__FD_CONN, SOCK_DGRAM, out, id);
    if (rc == 0)
        (*out)->dual_stack = dual;
    return rc;
}

int np_listen_packet(np_conn *out, const char *network, const char *address)
{
    if (!out)
        return -EINVAL;
    out->id = 0;
    if (np__no_runtime())
        return -ESRCH;
    if (np__sotype(network) != SOCK_DGRAM)
        return -EINVAL; /* streams: np_listen */
    np__addrs addrs;
    int rc = np__resolve(network, address, true, 0, &addrs);
    if (rc < 0)
        return rc;
    np__fd *fd = NULL;
    uint64_t id = 0;
    for (int i = 0; i < addrs.n; i++) { /* each address in turn */
        rc = bind_packet((struct sockaddr *)&addrs.sa[i], addrs.len[i], v6_only(network), &fd, &id);
        if (rc == 0)
            break;
    }
    if (rc < 0)
        return rc;
    np__fd_decref(fd);
    out->id = id;
    return 0;
}

/* ---- dialing ----------------------------------------------------------------------- */

/* Connects one socket; the fd has a pd and a reference on success. */
static int dial_one(const struct sockaddr *sa, socklen_t len, int sotype, int64_t deadline,
                    np__fd **out, uint64_t *id)
{
    int s = np__os_socket(sa->sa_family, sotype, 0);
    if (s < 0)
        return s;
    if (sotype == SOCK_STREAM)
        set_nodelay(s, sa->sa_family);
    int rc = NP__SYS(connect(s, sa, len));
    if (rc < 0) {
        /* In progress, as Go takes them. Not EAGAIN: that is a Unix
         * listener's full backlog (for TCP, the routing cache full; no
         * free local port is EADDRNOTAVAIL), and no event would ever end
         * the wait. */
        if (rc != -EINPROGRESS && rc != -EINTR && rc != -EALREADY) {
            close(s);
            return rc;
        }
        rc = 1; /* in progress */
    }
    np__fd *fd;
    int err = np__fd_new_full(s, NP__FD_CONN, sa->sa_family, sotype, NULL, &fd, id);
    if (err < 0) {
        close(s);
        return err;
    }
    fd->connected = true;
    if (rc == 1) {
        np__pd_set_deadline(fd->pd, deadline, NP__PD_WRITE);
        /* No reset here (unlike the I/O loops, which reset and then try
         * the syscall): the connection may have completed before the fd
         * was registered, and the poller's report of that, possibly
         * delivered already, is the only one there will be. A new pd
         * starts with no stale readiness to clear. */
        rc = 0;
        for (;;) {
            rc = np__pd_wait_in(fd->pd, NP__PD_WRITE, &site_dial);
            if (rc < 0)
                break;
            /* Wake-ups can be spurious: SO_ERROR says how it went, and a
             * socket with no error may simply not be connected yet. */
            int soerr = 0;
            socklen_t sl = sizeof soerr;
            int grc = NP__SYS(getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl));
            if (grc < 0)
                soerr = -grc;
            if (soerr == 0) {
                struct sockaddr_storage peer;
                socklen_t pl = sizeof peer;
                int prc = NP__SYS(getpeername(s, (struct sockaddr *)&peer, &pl));
                if (prc == 0) {
                    rc = 0;
                    break;
                }
                if (prc != -ENOTCONN) {
                    rc = prc;
                    break;
                }
                continue;
            }
            if (soerr != EINPROGRESS && soerr != EALREADY && soerr != EINTR) {
                rc = -soerr;
                break;
            }
        }
        np__pd_set_deadline(fd->pd, 0, NP__PD_WRITE); /* the dial's, not the conn's */
    }
    if (rc < 0) {
        np__fd_close(fd); /* drops our reference: the socket is closed */
        return rc;
    }
    *out = fd;
    return 0;
}

int np_dial(np_conn *out, const char *network, const char *address, int64_t deadline)
{
    if (!out)
        return -EINVAL;
    out->id = 0;
    if (np__no_runtime())
        return -ESRCH;
    int sotype = np__sotype(network);
    if (sotype < 0)
        return sotype;
    np__addrs addrs;
    int rc = np__resolve(network, address, false, deadline, &addrs);
    if (rc < 0)
        return rc;
    if (deadline != 0 && deadline <= np_now())
        return -ETIMEDOUT;
    for (int i = 0; i < addrs.n; i++) { /* each address in turn, as Go */
        np__fd *fd = NULL;
        uint64_t id = 0;
        rc = dial_one((struct sockaddr *)&addrs.sa[i], addrs.len[i], sotype, deadline, &fd, &id);
        if (rc == 0) {
            np__fd_decref(fd);
            out->id = id;
            return 0;
        }
        if (rc == -ETIMEDOUT)
            break;
    }
    return rc;
}

/* ---- deadlines, close, addresses ------------------------------------------------------------- */

static int set_deadline(np_conn c, int64_t deadline, int mode)
{
    np__fd *fd = np__fd_get(c.id, NP__FD_CONN);
    if (!fd)
        return -EBADF;
    np__pd_set_deadline(fd->pd, deadline, mode);
    np__fd_decref(fd);
    return 0;
}

int np_set_deadline(np_conn c, int64_t deadline)
{
    return set_deadline(c, deadline, NP__PD_BOTH);
}

int np_set_read_deadline(np_conn c, int64_t deadline)
{
    return set_deadline(c, deadline, NP__PD_READ);
}

int np_set_write_deadline(np_conn c, int64_t deadline)
{
    return set_deadline(c, deadline, NP__PD_WRITE);
}

int np_close(np_conn c)
{
    np__fd *fd = np__fd_get(c.id, NP__FD_CONN);
    if (!fd) {
        np__fd_close_wait(c.id); /* a bound unixgram socket's file */
        return -EBADF;
    }
    return np__fd_close(fd);
}

int np_close_write(np_conn c)
{
    np__fd *fd = np__fd_get(c.id, NP__FD_CONN);
    if (!fd)
        return -EBADF;
    int rc = NP__SYS(shutdown(fd->sysfd, SHUT_WR));
    np__fd_decref(fd);
    return rc;
}

static int conn_addr(np_conn c, char *buf, size_t len, bool peer)
{
    np__fd *fd = np__fd_get(c.id, NP__FD_CONN);
    if (!fd)
        return -EBADF;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int rc = peer ? NP__SYS(getpeername(fd->sysfd, (struct sockaddr *)&ss, &sl))
                  : NP__SYS(getsockname(fd->sysfd, (struct sockaddr *)&ss, &sl));
    np__fd_decref(fd);
    return rc ? rc : np__format_addr((struct sockaddr *)&ss, sl, buf, len);
}

int np_local_addr(np_conn c, char *buf, size_t len)
{
    return conn_addr(c, buf, len, false);
}

int np_remote_addr(np_conn c, char *buf, size_t len)
{
    return conn_addr(c, buf, len, true);
}

int np_conn_fd(np_conn c)
{
    np__fd *fd = np__fd_get(c.id, NP__FD_CONN);
    if (!fd)
        return -EBADF;
    int s = fd->sysfd;
    np__fd_decref(fd);
    return s;
}
