/* Wake-up descriptor: a non-blocking pipe, for systems without eventfd.
 * Built and tested on Linux too, so this path cannot rot. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "base/np_assert.h"
#include "poller/wakefd.h"

static int set_flags(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

const bool np__wakefd_undrained_ok = false;

int np__wakefd_open(np__wakefd *w)
{
    int p[2];
    if (pipe(p) < 0)
        return -errno;
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
        if (write(w->wfd, &b, 1) == 1)
            return;
        int err = errno;
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
        ssize_t n = read(w->rfd, buf, sizeof buf);
        if (n > 0)
            continue;
        int err = errno;
        if (n < 0 && err == EINTR)
            continue;
        if (n < 0 && err == EAGAIN)
            return;
        NP__PANIC("wake pipe read: n=%zd errno=%d", n, err);
    }
}

bool np__wakefd_owns(const np__wakefd *w, int fd)
{
    return fd >= 0 && (fd == w->rfd || fd == w->wfd);
}
