/* Foreign descriptors: np_conn_from_fd (adopt one as a connection) here;
 * np_wait_fd (wait on a descriptor that stays the caller's) is in
 * foreign_wait.c, with its cache of registrations.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/sys.h"
#include "net/fd.h"
#include "netpoll.h"
#include "os/os.h"

int np_conn_from_fd(np_conn *out, int fd)
{
    if (!out)
        return -EINVAL;
    out->id = 0;
    if (fd < 0)
        return -EBADF;
    if (np__no_runtime())
        return -ESRCH;
    int fl = NP__SYS(fcntl(fd, F_GETFL));
    if (fl < 0)
        return fl;
    struct stat st;
    int rc = NP__SYS(fstat(fd, &st));
    if (rc < 0)
        return rc;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode) || S_ISBLK(st.st_mode))
        return -EINVAL; /* always "ready": nothing to wait for */
    int sotype = 0, family = AF_UNSPEC;
    if (S_ISSOCK(st.st_mode)) {
        socklen_t l = sizeof sotype;
        if (NP__SYS(getsockopt(fd, SOL_SOCKET, SO_TYPE, &sotype, &l)) < 0)
            return -EINVAL;
        if ((family = np__os_socket_family(fd)) < 0)
            return -EINVAL;
        if (sotype == SOCK_SEQPACKET)
            sotype = SOCK_DGRAM; /* message at a time, as a datagram */
        else if (sotype != SOCK_STREAM && sotype != SOCK_DGRAM)
            return -EINVAL;
        if ((rc = np__os_adopt_socket(fd)) < 0) /* no SIGPIPE from its writes */
            return rc;
    }
    if (!(fl & O_NONBLOCK) && (rc = NP__SYS(fcntl(fd, F_SETFL, fl | O_NONBLOCK))) < 0)
        return rc;
    np__fd *f;
    uint64_t id;
    rc = np__fd_new_full(fd, NP__FD_CONN, family, sotype, NULL, &f, &id);
    if (rc < 0) {
        if (!(fl & O_NONBLOCK))
            fcntl(fd, F_SETFL, fl); /* not ours after all: as it was */
        return rc == -EPERM ? -EINVAL : rc;
    }
    np__fd_decref(f);
    out->id = id;
    return 0;
}
