/* np_select: Go's selectgo.
 *
 *   1. Look every case's channel up; lock the distinct channels in address
 *      order (two selects over the same channels cannot deadlock).
 *   2. Visit the cases in a random order; perform the first that can
 *      proceed (uniform choice among the ready ones: no starvation).
 *   3. None: with a deadline already past, -ETIMEDOUT (Go's default).
 *      Otherwise queue one node per case, all sharing the caller's claim
 *      word, and park; the commit unlocks the channels. The first waker to
 *      claim the word wins; the others find it claimed and drop their node.
 *   4. Woken: lock the channels again and unlink the nodes still queued.
 */
#include <errno.h>

#include "netpoll.h"
#include "sync/chan.h"

#define MAX_CASES 64

typedef struct sel {
    np__chan *locked[MAX_CASES]; /* distinct, ascending */
    int nlocked;
} sel;

static void lock_all(sel *s)
{
    for (int i = 0; i < s->nlocked; i++)
        np__spin_lock(&s->locked[i]->lock);
}

static void unlock_all(void *p)
{
    sel *s = p;
    for (int i = s->nlocked - 1; i >= 0; i--)
        np__spin_unlock(&s->locked[i]->lock);
}

/* A handful of pointers: insertion sort beats qsort's call overhead. */
static void sort_ptrs(np__chan **v, int n)
{
    for (int i = 1; i < n; i++) {
        np__chan *x = v[i];
        int j = i;
        for (; j > 0 && (uintptr_t)v[j - 1] > (uintptr_t)x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/* A fast per-caller random number: xorshift on a thread-local state. It is
 * read and written with no switch in between, so a task that migrates
 * merely continues another thread's sequence. */
static _Thread_local uint32_t rng_state;

__attribute__((noinline)) static uint32_t rand_below(uint32_t n)
{
    uint32_t x = rng_state;
    if (x == 0)
        x = (uint32_t)(uintptr_t)&rng_state ^ (uint32_t)np_now() ^ 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_state = x ? x : 1;
    return (uint32_t)(((uint64_t)x * n) >> 32);
}

int np_select(np_select_case *cases, int n, int64_t deadline)
{
    if (n < 0 || n > MAX_CASES || (n > 0 && !cases))
        return -EINVAL;
    np__chan *ch[MAX_CASES];
    sel s = { .nlocked = 0 };
    for (int i = 0; i < n; i++) {
        if (cases[i].op != NP_SEND && cases[i].op != NP_RECV)
            return -EINVAL;
        cases[i].result = 0;
        ch[i] = NULL;
        if (cases[i].chan.id == 0)
            continue; /* the nil channel: never ready */
        if (!(ch[i] = np__chan_lookup(cases[i].chan.id)))
            return -EBADF;
        s.locked[s.nlocked++] = ch[i];
    }
    sort_ptrs(s.locked, s.nlocked);
    int k = 0;
    for (int i = 0; i < s.nlocked; i++)
        if (k == 0 || s.locked[k - 1] != s.locked[i])
            s.locked[k++] = s.locked[i];
    s.nlocked = k;

    lock_all(&s);
    for (int i = 0; i < n; i++) {
        if (ch[i] && !np__chan_live(ch[i], cases[i].chan.id)) {
            unlock_all(&s);
            return -EBADF;
        }
        if (ch[i] && ch[i]->elem_size && !cases[i].elem) {
            unlock_all(&s);
            return -EINVAL;
        }
    }

    /* Pass 1: a random order over the cases; the first that can proceed. */
    int order[MAX_CASES];
    for (int i = 0; i < n; i++) {
        int j = (int)rand_below((uint32_t)i + 1);
        order[i] = order[j];
        order[j] = i;
    }
    for (int o = 0; o < n; o++) {
        int i = order[o];
        if (!ch[i])
            continue;
        int result;
        np__wrec *wake;
        int done = cases[i].op == NP_SEND
                       ? np__chan_try_send(ch[i], cases[i].elem, &result, &wake)
                       : np__chan_try_recv(ch[i], cases[i].elem, &result, &wake);
        if (done) {
            unlock_all(&s);
            if (wake)
                np__wait_ready(wake);
            cases[i].result = result;
            return i;
        }
    }

    /* Pass 2: queue on every channel and park. */
    np__wrec *r;
    int rc = np__deadline_past(deadline) ? -ETIMEDOUT : np__wait_begin(&r);
    if (rc < 0) {
        unlock_all(&s);
        return rc;
    }
    np__wnode nodes[MAX_CASES];
    uint64_t seq = np__wait_seq(r);
    for (int i = 0; i < n; i++) {
        nodes[i] = (np__wnode){ .rec = r, .seq = seq, .index = i, .elem = cases[i].elem };
        if (ch[i])
            np__wq_push(cases[i].op == NP_SEND ? &ch[i]->sendq : &ch[i]->recvq, &nodes[i]);
    }
    np__wait_arm(r, deadline);
    static const np__park_site site = { "np_select", "chans", NP__ON_WREC };
    unsigned st = np__wait_park(r, unlock_all, &s, &site, NULL);

    /* Pass 3: the nodes that did not win are still queued (or were dropped
     * by a waker that found the word claimed). */
    lock_all(&s);
    for (int i = 0; i < n; i++)
        if (ch[i] && nodes[i].linked)
            np__wq_unlink(cases[i].op == NP_SEND ? &ch[i]->sendq : &ch[i]->recvq, &nodes[i]);
    unlock_all(&s);
    if (st != NP__W_DONE)
        return -ETIMEDOUT;
    int w = r->winner;
    if (nodes[w].result == -ECANCELED)
        return -ECANCELED;
    cases[w].result = nodes[w].result;
    return w;
}
