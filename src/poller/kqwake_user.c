/* kqueue wake-up: an EVFILT_USER event.
 *
 * Registered once with EV_ADD | EV_CLEAR; a wake fires it with NOTE_TRIGGER.
 * EV_CLEAR makes the kernel reset the trigger when kevent() reports the
 * event, so a blocking poll that sees it has nothing left to drain (one
 * syscall per wake, the trigger). The price is on the other side: a
 * non-blocking poll that sees it has consumed a wake it must not swallow, and
 * fires it again.
 *
 * User events live in their own namespace (filter, ident), so the ident
 * cannot collide with a descriptor; a distinctive value makes it easy to
 * recognise in a kernel trace.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>

#include "base/sys.h"
#include "poller/kqwake.h"
#include "netpoll.h"
#include "base/np_assert.h"
#include "poller/pollreg.h"

#define WAKE_IDENT ((uintptr_t)0x6e70776bu) /* "npwk" */

/* Applies one change to the user event. 0 or -errno. */
static int user_change(int kq, unsigned flags, unsigned fflags)
{
    struct kevent ch;
    memset(&ch, 0, sizeof ch);
    ch.ident = WAKE_IDENT;
    ch.filter = EVFILT_USER;
    ch.flags = flags;
    ch.fflags = fflags;
    /* Every change to an existing event also replaces its udata (FreeBSD and
     * Darwin both do), so each one carries the wake tag, not just the add. */
    ch.udata = (__typeof__(ch.udata))(uintptr_t)NP__POLLREG_NO_TAG;
    /* No event list: the call only applies the change, so it can neither
     * take events that belong to the polling thread nor block. An error
     * comes back as -1. EINTR should not happen for a change alone; if it
     * does, applying the change again is harmless. */
    for (;;) {
        int rc = NP__SYS(kevent(kq, &ch, 1, NULL, 0, NULL));
        if (rc != -EINTR)
            return rc < 0 ? rc : 0;
    }
}

/* Fires the event; a failure here would lose a wake, so it is fatal. */
static void trigger(int kq, const char *why)
{
    int rc = user_change(kq, 0, NOTE_TRIGGER);
    if (rc < 0)
        NP__PANIC("kevent(EVFILT_USER, NOTE_TRIGGER) to %s: %s", why, np_strerror(rc));
}

int np__kqwake_open(int kq)
{
    return user_change(kq, EV_ADD | EV_CLEAR, 0);
}

void np__kqwake_close(void)
{
    /* The event lives and dies with the kqueue. */
}

void np__kqwake_signal(int kq)
{
    trigger(kq, "wake");
}

void np__kqwake_drain(int kq)
{
    (void)kq; /* EV_CLEAR reset the trigger when the event was reported */
}

void np__kqwake_keep(int kq)
{
    trigger(kq, "re-post a wake");
}

bool np__kqwake_owns(int fd)
{
    (void)fd;
    return false;
}
