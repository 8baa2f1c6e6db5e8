/* Coordination waits: the protocol every blocking call of src/sync/ follows
 * (mutex, cond, wait group, channels, select). Go's sudog + selectDone,
 * with deadlines and plain threads added.
 *
 * Who is involved
 *   - The owner: a task or a plain thread that has to wait. It has one wait
 *     record (np__wrec) for life: in its task struct, or (a thread) in a
 *     type-stable pool. The record holds the claim word, the owner's waiter
 *     (how to ready it) and a deadline timer.
 *   - Nodes: one per queue the owner waits in (one for a lock or a channel
 *     operation, one per case for select), on the owner's stack. A node
 *     names its record and the wait's sequence number, and carries the
 *     case's data (the element pointer, the result).
 *   - Wakers: whoever makes the wait's condition true — an unlock, a signal,
 *     the count reaching zero, a matching send or receive, a close, a free
 *     — always while holding the lock of the queue the node is in.
 *   - The timer: the deadline, firing with no queue lock held. A timer
 *     run by the workers; a plain thread also keeps the deadline itself
 *     (its futex sleep's timeout, wait.c), which still fires once the
 *     runtime has ended. Both make the same claim, "expire" below.
 *
 * The claim word (per record): seq << 3 | state. seq is bumped for every
 * wait, so a node or a timer of an earlier wait can never claim a later one.
 *
 *   OPEN      waiting; not yet parked (the owner still runs, or is switching)
 *   PARKED    waiting; parked: whoever claims must ready the waiter
 *   CLAIMING  a waker won and is writing the outcome (copying an element)
 *   DONE      a waker finished: outcome in the winning node; node unlinked
 *   TIMEDOUT  the deadline won; the owner unlinks its nodes itself
 *
 * Transitions (each a CAS on the claim word, expected value built from the
 * node's or timer's seq, so stale parties fail):
 *
 *   begin   (owner, no lock)          -> seq+1 | OPEN
 *   enqueue (owner, queue locks held) link nodes; then park with a commit
 *   commit  (owner's park, after the switch; releases the queue locks
 *            first)                    OPEN -> PARKED, or abandon the park if
 *                                      the word is no longer OPEN
 *   claim   (waker, queue lock held)   OPEN | PARKED -> CLAIMING; unlink the
 *                                      node; write the outcome; store DONE
 *                                      (release); after unlocking, ready the
 *                                      waiter iff the old state was PARKED.
 *                                      A failed claim: unlink the node (the
 *                                      owner will find it unlinked) and try
 *                                      the next.
 *   expire  (timer, no lock)           OPEN | PARKED -> TIMEDOUT; ready iff
 *                                      it was PARKED
 *   finish  (owner, after park)        spin while CLAIMING (a waker that won
 *                                      before the commit is still copying);
 *                                      DONE: take the outcome; TIMEDOUT: lock
 *                                      each queue, unlink its nodes still
 *                                      linked; stop the timer. A wait with
 *                                      several nodes (select) locks and
 *                                      unlinks on DONE too: its losing nodes
 *                                      are still queued, and a waker may hold
 *                                      one it has unlinked but not yet tried
 *                                      to claim (the model's counterexample
 *                                      SPEC_DONE_NO_UNLINK). Taking each lock
 *                                      waits that waker out.
 *
 * Why nothing is lost or doubled:
 *   - Exactly one party moves the word out of OPEN/PARKED, and only it
 *     readies the waiter (if it saw PARKED), or nobody does (it saw OPEN: the
 *     commit then fails and the owner never sleeps). No lost and no double
 *     wake-up.
 *   - A waker finds a node only through a queue, under that queue's lock;
 *     the owner links its nodes under the same locks and releases them only
 *     in the commit, after it has switched away: a task is never readied
 *     while still running on its stack.
 *   - Nodes on the owner's stack are safe: a waker touches a node only under
 *     the queue lock while it is linked, and the owner unlinks (or sees
 *     unlinked) every node, under the locks, before it returns. The timer
 *     touches only the record, which outlives every wait.
 *   - The outcome is written before DONE is stored, and the owner reads it
 *     only after seeing DONE (acquire): its copy is complete.
 *
 * tests/model/chan.pml models this (send, receive, close, select with two
 * cases, a deadline) and spin checks it in CI.
 */
#ifndef NP_SYNC_WAIT_H
#define NP_SYNC_WAIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "netpoll.h"
#include "pd/waitrec.h"

enum {
    NP__W_OPEN = 0,
    NP__W_PARKED = 1,
    NP__W_CLAIMING = 2,
    NP__W_DONE = 3,
    NP__W_TIMEDOUT = 4,
};
#define NP__W_STATE(word) ((unsigned)((word) & 7u))
#define NP__W_SEQ(word) ((word) >> 3)


typedef struct np__wnode {
    np__wrec *rec;
    uint64_t seq;
    struct np__wnode *prev, *next;
    bool linked;              /* under the queue's lock */
    bool parked;              /* set by a successful claim: ready the owner */
    int index;                /* the case (select), else 0 */
    void *elem;               /* the element: to send, or to receive into */
    int result;               /* outcome, written by the claiming waker */
} np__wnode;

/* Claimed nodes waiting to be finished once the waker has let go of the
 * object (np__wake_all). Linked through next. */
typedef struct np__wake_list {
    struct np__wnode *head;
} np__wake_list;

/* A FIFO of nodes, guarded by a lock the caller holds. */
typedef struct np__wqueue {
    np__wnode *head, *tail;
} np__wqueue;

void np__wq_push(np__wqueue *q, np__wnode *n);
void np__wq_unlink(np__wqueue *q, np__wnode *n);

/* Under the queue's lock: unlinks nodes from the front until one is
 * claimed (CLAIMING) and returns it, or NULL when the queue is empty. The
 * caller writes the outcome, then np__wait_done(n, &was_parked), and after
 * releasing its locks readies the waiter if was_parked. */
np__wnode *np__wq_claim_first(np__wqueue *q, bool *was_parked);

/* Claims one given node (select: a case of another waiter). */
bool np__wnode_claim(np__wnode *n, bool *was_parked);

/* Publishes the outcome of a claimed node (DONE, release) and returns its
 * record: after this the node may be gone (an owner that had not parked
 * returns as soon as it sees DONE), the record never is. */
np__wrec *np__wnode_done(np__wnode *n, int result);

/* The caller's record, and a new wait on it (-ESRCH: a plain thread with
 * no runtime running, which nothing could wake). */
int np__wait_begin(np__wrec **out);

/* The same without the -ESRCH: for a wait that must happen whatever (the
 * mutex np_cond_wait takes back), which only a plain thread can end once
 * no runtime runs. */
int np__wait_begin_anyway(np__wrec **out);

/* Arms the deadline (0: none). */
void np__wait_arm(np__wrec *r, int64_t deadline);

/* The current wait's sequence number, for the caller's nodes. */
uint64_t np__wait_seq(const np__wrec *r);

/* Ends the wait as timed out before parking (a deadline already past):
 * true, unless a waker has claimed it meanwhile (then finish as DONE). */
bool np__wait_expired(np__wrec *r);

/* Parks until claimed or expired; unlock(arg) runs in the commit, after
 * the switch, to release the queue locks. Returns DONE or TIMEDOUT; on
 * DONE the outcome is in the winning node. Stops the timer. site and obj
 * say what the wait is for (np_dump; site->on is NP__ON_WREC or _NONE). */
unsigned np__wait_park(np__wrec *r, void (*unlock)(void *), void *arg,
                       const np__park_site *site, const void *obj);

/* Readies the waiter of a claimed node (after the claimer's locks are
 * released). */
void np__wait_ready(np__wrec *r);

/* The waker's last step, for objects the owner may free as soon as its
 * wait returns (a mutex, a cond, a wait group — Go allows it, and so do
 * pthreads): under the object's lock, claim nodes and set their outcome
 * (n->result) and push them on a wake list; release the lock; only then
 * finish them with np__wake_all, which publishes DONE and readies the
 * parked owners, touching nothing but the nodes (whose owners are held in
 * CLAIMING until then) and the records. */
void np__wake_list_push(np__wake_list *l, np__wnode *n);
void np__wake_all(np__wake_list *l);

/* A deadline (0: none) already reached: the call must not block. */
static inline bool np__deadline_past(int64_t deadline)
{
    return deadline != 0 && deadline <= np_now();
}

/* np__wait_park's unlock callback for a queue guarded by one spinlock
 * (arg: the lock). */
void np__spin_unlock_cb(void *lock);

/* A short spinlock for the queues: held across the owner's switch (it is
 * released by the commit, in another context of the same thread), which a
 * pthread mutex's ownership rules would not allow. */
void np__spin_lock(_Atomic int *l);
void np__spin_unlock(_Atomic int *l);

#endif
