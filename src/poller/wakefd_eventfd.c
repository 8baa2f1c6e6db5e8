/* Wake-up descriptor: Linux eventfd. */
#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/sys.h"
#include "base/np_assert.h"
#include "poller/wakefd.h"

const bool np__wakefd_undrained_ok = true;

int np__wakefd_open(np__wakefd *w)
{
    int fd = NP__SYS(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (fd < 0)
        return fd;
    w->rfd = w->wfd = fd;
    return 0;
}

void np__wakefd_close(np__wakefd *w)
{
    close(w->rfd);
    w->rfd = w->wfd = -1;
}

void np__wakefd_signal(np__wakefd *w)
{
    uint64_t one = 1;
    for (;;) {
        ssize_t n = NP__SYS(write(w->wfd, &one, sizeof one));
        if (n == (ssize_t)sizeof one)
            return;
        int err = n < 0 ? (int)-n : EIO;
        if (err == EINTR)
            continue;
        /* EAGAIN: the counter is saturated, so the descriptor is readable
         * already; that is what a signal wants. */
        if (err == EAGAIN)
            return;
        NP__PANIC("eventfd write: %d", err);
    }
}

void np__wakefd_drain(np__wakefd *w)
{
    uint64_t v;
    for (;;) {
        ssize_t n = NP__SYS(read(w->rfd, &v, sizeof v));
        if (n == (ssize_t)sizeof v)
            return; /* one read resets the counter */
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN)
            return;
        NP__PANIC("eventfd read: %zd", n);
    }
}

bool np__wakefd_owns(const np__wakefd *w, int fd)
{
    return fd >= 0 && fd == w->rfd;
}
