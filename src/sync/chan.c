/* Channels: the handle table, make / send / recv / close / free. See chan.h
 * for the layout and wait.h for the waiting protocol. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/np_assert.h"
#include "netpoll.h"
#include "sync/chan.h"

#define MAX_CHAN_BYTES ((size_t)1 << 30)

/* ---- the handle table --------------------------------------------------- */

#define CHUNK_SHIFT 10
#define CHUNK_SIZE (1u << CHUNK_SHIFT)
#define NUM_CHUNKS 1024u /* 1M channels */

static np__chan *_Atomic chunks[NUM_CHUNKS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static np__chan *free_list; /* under table_lock */
static uint32_t nslots;     /* under table_lock */

static np__chan *slot_at(uint32_t index)
{
    if (index >= NUM_CHUNKS * CHUNK_SIZE)
        return NULL;
    np__chan *chunk = atomic_load_explicit(&chunks[index >> CHUNK_SHIFT], memory_order_acquire);
    return chunk ? &chunk[index & (CHUNK_SIZE - 1)] : NULL;
}

static np__chan *slot_alloc(void)
{
    np__chan *c = NULL;
    pthread_mutex_lock(&table_lock);
    if (free_list) {
        c = free_list;
        free_list = c->next_free;
        goto out;
    }
    if (nslots == NUM_CHUNKS * CHUNK_SIZE)
        goto out;
    uint32_t k = nslots >> CHUNK_SHIFT;
    np__chan *chunk = atomic_load_explicit(&chunks[k], memory_order_relaxed);
    if (!chunk) {
        chunk = calloc(CHUNK_SIZE, sizeof *chunk);
        if (!chunk)
            goto out;
        for (uint32_t i = 0; i < CHUNK_SIZE; i++)
            chunk[i].index = k * CHUNK_SIZE + i;
        atomic_store_explicit(&chunks[k], chunk, memory_order_release);
    }
    c = &chunk[nslots & (CHUNK_SIZE - 1)];
    nslots++;
out:
    pthread_mutex_unlock(&table_lock);
    return c;
}

static void slot_free(np__chan *c)
{
    pthread_mutex_lock(&table_lock);
    c->next_free = free_list;
    free_list = c;
    pthread_mutex_unlock(&table_lock);
}

static uint64_t id_of(np__chan *c, uint32_t gen)
{
    return ((uint64_t)gen << 32) | ((uint64_t)c->index + 1);
}

np__chan *np__chan_lookup(uint64_t id)
{
    uint32_t gen = (uint32_t)(id >> 32), idx = (uint32_t)id;
    if (idx == 0 || !(gen & 1))
        return NULL;
    np__chan *c = slot_at(idx - 1);
    if (!c || atomic_load_explicit(&c->gen, memory_order_acquire) != gen)
        return NULL;
    return c;
}

bool np__chan_live(const np__chan *c, uint64_t id)
{
    return atomic_load_explicit(&c->gen, memory_order_relaxed) == (uint32_t)(id >> 32);
}

/* Looks id up and locks its channel: NULL (-EBADF) if stale. */
static np__chan *lock_live(uint64_t id)
{
    np__chan *c = np__chan_lookup(id);
    if (!c)
        return NULL;
    np__spin_lock(&c->lock);
    if (!np__chan_live(c, id)) {
        np__spin_unlock(&c->lock);
        return NULL;
    }
    return c;
}

/* ---- moving elements ------------------------------------------------------ */

static void copy(void *to, const void *from, size_t n)
{
    if (n == sizeof(uint64_t)) /* the common element (a pointer, an int64) */
        memcpy(to, from, sizeof(uint64_t));
    else if (n)
        memcpy(to, from, n);
}

static void zero(void *to, size_t n)
{
    if (n && to)
        memset(to, 0, n);
}

static char *slot_ptr(np__chan *c, size_t i)
{
    return c->buf + (i % c->cap) * c->elem_size;
}

int np__chan_try_send(np__chan *c, const void *elem, int *result, np__wrec **wake)
{
    *wake = NULL;
    if (c->closed) {
        *result = -EPIPE;
        return 1;
    }
    bool parked = false;
    np__wnode *n = np__wq_claim_first(&c->recvq, &parked);
    if (n) { /* a receiver is waiting: the buffer is empty; hand it over */
        copy(n->elem, elem, c->elem_size);
        np__wrec *r = np__wnode_done(n, 0);
        *wake = parked ? r : NULL;
        *result = 0;
        return 1;
    }
    if (c->count < c->cap) {
        copy(slot_ptr(c, c->head + c->count), elem, c->elem_size);
        c->count++;
        *result = 0;
        return 1;
    }
    return 0;
}

int np__chan_try_recv(np__chan *c, void *elem, int *result, np__wrec **wake)
{
    *wake = NULL;
    bool parked = false;
    np__wnode *n = np__wq_claim_first(&c->sendq, &parked);
    if (n) {
        if (c->cap == 0) {
            copy(elem, n->elem, c->elem_size);
        } else { /* full: take the head, the sender's element goes last */
            copy(elem, slot_ptr(c, c->head), c->elem_size);
            copy(slot_ptr(c, c->head), n->elem, c->elem_size);
            c->head = (c->head + 1) % c->cap;
        }
        np__wrec *r = np__wnode_done(n, 0);
        *wake = parked ? r : NULL;
        *result = 0;
        return 1;
    }
    if (c->count > 0) {
        copy(elem, slot_ptr(c, c->head), c->elem_size);
        c->head = (c->head + 1) % c->cap;
        c->count--;
        *result = 0;
        return 1;
    }
    if (c->closed) {
        zero(elem, c->elem_size);
        *result = -EPIPE;
        return 1;
    }
    return 0;
}

/* ---- the calls ------------------------------------------------------------ */

int np_chan_make(np_chan *out, size_t elem_size, size_t capacity)
{
    if (!out)
        return -EINVAL;
    out->id = 0;
    size_t bytes;
    if (__builtin_mul_overflow(elem_size, capacity, &bytes) || bytes > MAX_CHAN_BYTES ||
        elem_size > MAX_CHAN_BYTES || capacity > MAX_CHAN_BYTES)
        return -EINVAL;
    char *buf = NULL;
    if (bytes > 0 && !(buf = malloc(bytes)))
        return -ENOMEM;
    np__chan *c = slot_alloc();
    if (!c) {
        free(buf);
        return -ENOMEM;
    }
    np__spin_lock(&c->lock);
    np__assert(!c->recvq.head && !c->sendq.head);
    c->closed = false;
    c->elem_size = elem_size;
    c->cap = capacity;
    c->buf = buf;
    c->head = c->count = 0;
    uint32_t g = atomic_load(&c->gen) + 1;
    np__assert(g & 1);
    atomic_store_explicit(&c->gen, g, memory_order_release);
    np__spin_unlock(&c->lock);
    out->id = id_of(c, g);
    return 0;
}

/* Blocks on the nil channel: only the deadline ends it. */
static int block_forever(int64_t deadline)
{
    if (np__deadline_past(deadline))
        return -ETIMEDOUT;
    np__wrec *r;
    int rc = np__wait_begin(&r);
    if (rc < 0)
        return rc;
    np__wait_arm(r, deadline);
    static const np__park_site site_nil = { "np_chan_send/recv", "nil chan", NP__ON_WREC };
    unsigned st = np__wait_park(r, NULL, NULL, &site_nil, NULL);
    np__assert(st == NP__W_TIMEDOUT);
    return -ETIMEDOUT;
}

/* Queues the caller on q of the locked channel c and parks. */
static int wait_on(np__chan *c, np__wqueue *q, void *elem, int64_t deadline)
{
    np__wrec *r;
    int rc = np__deadline_past(deadline) ? -ETIMEDOUT : np__wait_begin(&r);
    if (rc < 0) {
        np__spin_unlock(&c->lock);
        return rc;
    }
    np__wnode n = { .rec = r, .seq = np__wait_seq(r), .elem = elem };
    np__wq_push(q, &n);
    np__wait_arm(r, deadline);
    static const np__park_site site_send = { "np_chan_send", "chan", NP__ON_WREC };
    static const np__park_site site_recv = { "np_chan_recv", "chan", NP__ON_WREC };
    if (np__wait_park(r, np__spin_unlock_cb, &c->lock, q == &c->sendq ? &site_send : &site_recv,
                      c) == NP__W_DONE)
        return n.result;
    /* The deadline won. A free or close since has unlinked the node, and
     * the slot may hold another channel by now: unlinking is then a no-op. */
    np__spin_lock(&c->lock);
    np__wq_unlink(q, &n);
    np__spin_unlock(&c->lock);
    return -ETIMEDOUT;
}

/* A send or a receive: at once if it can proceed, else queued and parked. */
static int chan_op(np_chan ch, void *elem, int64_t deadline, bool send)
{
    if (ch.id == 0)
        return block_forever(deadline);
    np__chan *c = lock_live(ch.id);
    if (!c)
        return -EBADF;
    if (c->elem_size && !elem) {
        np__spin_unlock(&c->lock);
        return -EINVAL;
    }
    int result;
    np__wrec *wake;
    if (send ? np__chan_try_send(c, elem, &result, &wake)
             : np__chan_try_recv(c, elem, &result, &wake)) {
        np__spin_unlock(&c->lock);
        if (wake)
            np__wait_ready(wake);
        return result;
    }
    return wait_on(c, send ? &c->sendq : &c->recvq, elem, deadline);
}

int np_chan_send(np_chan ch, const void *elem, int64_t deadline)
{
    return chan_op(ch, (void *)elem, deadline, true);
}

int np_chan_recv(np_chan ch, void *elem, int64_t deadline)
{
    return chan_op(ch, elem, deadline, false);
}

/* Under c's lock: ends every wait on q with result; receivers' elements
 * are zeroed first (Go's zero value). Readied under the lock: the nodes are
 * gone once done, and there may be any number of them. */
static void end_waits(np__chan *c, np__wqueue *q, int result, bool zero_elem)
{
    bool parked;
    np__wnode *n;
    while ((n = np__wq_claim_first(q, &parked))) {
        if (zero_elem)
            zero(n->elem, c->elem_size);
        np__wrec *r = np__wnode_done(n, result);
        if (parked)
            np__wait_ready(r);
    }
}

int np_chan_close(np_chan ch)
{
    np__chan *c = lock_live(ch.id);
    if (!c)
        return -EBADF;
    if (c->closed) {
        np__spin_unlock(&c->lock);
        return -EPIPE;
    }
    c->closed = true;
    end_waits(c, &c->recvq, -EPIPE, true); /* any receiver: the buffer is empty */
    end_waits(c, &c->sendq, -EPIPE, false);
    np__spin_unlock(&c->lock);
    return 0;
}

int np_chan_free(np_chan ch)
{
    np__chan *c = lock_live(ch.id);
    if (!c)
        return -EBADF;
    atomic_fetch_add(&c->gen, 1); /* even: every handle to it is stale */
    end_waits(c, &c->recvq, -ECANCELED, false);
    end_waits(c, &c->sendq, -ECANCELED, false);
    free(c->buf);
    c->buf = NULL;
    c->count = 0;
    np__spin_unlock(&c->lock);
    slot_free(c);
    return 0;
}

static int locked_field(np_chan ch, bool want_cap)
{
    np__chan *c = lock_live(ch.id);
    if (!c)
        return -EBADF;
    size_t v = want_cap ? c->cap : c->count;
    np__spin_unlock(&c->lock);
    return v > INT32_MAX ? INT32_MAX : (int)v;
}

int np_chan_len(np_chan ch)
{
    return locked_field(ch, false);
}

int np_chan_cap(np_chan ch)
{
    return locked_field(ch, true);
}
