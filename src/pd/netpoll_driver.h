/* The network poller driver: one round = run due timers, poll (blocking at
 * most until the next timer), hand ready descriptors to their waiters.
 *
 * One thread polls at a time; a round started while another thread polls
 * returns -EBUSY at once. A timer set earlier than the time the poller is
 * blocked until wakes it (the timers' kick hook), so blocking "until the next
 * timer" stays correct while timers change.
 */
#ifndef NP_NETPOLL_DRIVER_H
#define NP_NETPOLL_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

int  np__netpoll_init(void);
void np__netpoll_fini(void);

/* Also told when a timer is set earlier than any other in its shard (after
 * the poller is woken if need be): the runtime's monitor, which makes busy
 * workers look at due timers (NULL: nobody). */
void np__netpoll_on_earlier_timer(void (*fn)(int64_t when));

/* One round. block: wait for an event, a wake or the next timer (capped at
 * `until` if that is earlier; INT64_MAX for no cap); otherwise just look.
 * At most max events are taken (the rest stay with the kernel for the next
 * round). A round whose timers fired does not block (a callback may have
 * made work for this very thread). Returns the number of events handed on,
 * or -EBUSY. */
int np__netpoll_round(bool block, int64_t until, int max);

/* A thread that runs rounds until stopped: descriptors and deadlines then
 * work for plain threads (thread waiters), with no scheduler. */
int  np__pollthread_start(void);
void np__pollthread_stop(void);

#endif
