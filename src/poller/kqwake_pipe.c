/* kqueue wake-up: a non-blocking pipe (wakefd_pipe.c), for kqueues without
 * EVFILT_USER (OpenBSD, NetBSD < 10).
 *
 * The read end is watched with EVFILT_READ and no EV_CLEAR: level-triggered,
 * so the event keeps being reported for as long as a byte is in the pipe. A
 * blocking poll that sees it reads the pipe empty; a non-blocking one leaves
 * the bytes where they are, and the wake stays pending by itself.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>

#include "base/sys.h"
#include "poller/kqwake.h"
#include "poller/pollreg.h"
#include "poller/wakefd.h"

static np__wakefd wakefd = { -1, -1 };

int np__kqwake_open(int kq)
{
    int rc = np__wakefd_open(&wakefd);
    if (rc < 0)
        return rc;
    struct kevent ch;
    memset(&ch, 0, sizeof ch);
    ch.ident = (uintptr_t)wakefd.rfd;
    ch.filter = EVFILT_READ;
    ch.flags = EV_ADD;
    ch.udata = (__typeof__(ch.udata))(uintptr_t)NP__POLLREG_NO_TAG;
    for (;;) {
        rc = NP__SYS(kevent(kq, &ch, 1, NULL, 0, NULL));
        if (rc >= 0)
            return 0;
        if (rc != -EINTR)
            break;
    }
    np__wakefd_close(&wakefd);
    return rc;
}

void np__kqwake_close(void)
{
    if (wakefd.rfd >= 0)
        np__wakefd_close(&wakefd); /* closing rfd removes its event */
}

void np__kqwake_signal(int kq)
{
    (void)kq;
    np__wakefd_signal(&wakefd);
}

void np__kqwake_drain(int kq)
{
    (void)kq;
    np__wakefd_drain(&wakefd);
}

void np__kqwake_keep(int kq)
{
    (void)kq; /* level-triggered: the unread bytes keep it pending */
}

bool np__kqwake_owns(int fd)
{
    return np__wakefd_owns(&wakefd, fd);
}
