/* Wake-up descriptor: a non-blocking pipe, for systems without eventfd.
 * Built and tested on Linux too, so this path cannot rot. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/sys.h"
#include "base/np_assert.h"
#include "poller/wakefd.h"

static int set_flags(int fd)
{
    int fl = NP__SYS(fcntl(fd, F_GETFL));
    if (fl < 0)
        return fl;
    int rc = NP__SYS(fcntl(fd, F_SETFL, fl | O_NONBLOCK));
    if (rc < 0)
        return rc;
    rc = NP__SYS(fcntl(fd, F_SETFD, FD_CLOEXEC));
    return rc < 0 ? rc : 0;
}

const bool np__wakefd_undrained_ok = false;

int np__wakefd_open(np__wakefd *w)
{
    int p[2];
    int prc = NP__SYS(pipe(p));
    if (prc < 0)
        return prc;
    int rc = set_flags(p[0]);
    if (rc == 0)
        rc = set_flags(p[1]);
    if (rc < 0) {
        close(p[0]);
        close(p[1]);
        return rc;
    }
    w->rfd = p[0];
    w->wfd = p[1];
    return 0;
}

void np__wakefd_close(np__wakefd *w)
{
    close(w->rfd);
    close(w->wfd);
    w->rfd = w->wfd = -1;
}

void np__wakefd_signal(np__wakefd *w)
{
    char b = 0;
    for (;;) {
        ssize_t n = NP__SYS(write(w->wfd, &b, 1));
        if (n == 1)
            return;
        int err = n < 0 ? (int)-n : EIO;
        if (err == EINTR)
            continue;
        if (err == EAGAIN) /* pipe full: readable already */
            return;
        NP__PANIC("wake pipe write: %d", err);
    }
}

void np__wakefd_drain(np__wakefd *w)
{
    char buf[64];
    for (;;) {
        ssize_t n = NP__SYS(read(w->rfd, buf, sizeof buf));
        if (n > 0)
            continue;
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN)
            return;
        NP__PANIC("wake pipe read: %zd", n);
    }
}

bool np__wakefd_owns(const np__wakefd *w, int fd)
{
    return fd >= 0 && (fd == w->rfd || fd == w->wfd);
}
