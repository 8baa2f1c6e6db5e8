/* The soak test: one server process and N client processes echoing framed,
 * verifiable random data over loopback TCP and a Unix socket, for a fixed
 * time, while deadlines, resets, half-closes, cancels and stale handles are
 * exercised on purpose. Written against include/netpoll.h only: it is a user
 * program, and it checks what the header promises, nothing internal.
 *
 * Files:
 *   soak.h         shared declarations (this file)
 *   soak.c         the parent: options, fork, watchdog, summary, verdict
 *   soak_frame.c   the PRNG, frames and the verifier
 *   soak_util.c    logging, deadline bookkeeping, the sleep watch, I/O and
 *                  stale-handle helpers, /proc, the monitor task
 *   soak_server.c  the echo server process (verifies too)
 *   soak_client.c  the client processes (writer + reader task per connection)
 *
 * Processes share one anonymous MAP_SHARED region created by the parent
 * before any fork: the configuration, the server's addresses, the run's
 * clock marks and one block of counters per process. Counters are lock-free
 * 64-bit atomics, so the children update them live and the parent can print
 * progress and still report what a child counted if that child hangs.
 * No child starts the runtime before it has forked; the parent never starts
 * it at all (np_now() needs no runtime).
 */
#ifndef NP_SOAK_H
#define NP_SOAK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netpoll.h"

/* ---- configuration -------------------------------------------------------------------------- */

typedef struct soak_cfg {
    int conns;           /* -c: connections held open at once, over all clients */
    int seconds;         /* -d: duration of the traffic phase */
    int procs;           /* -p: client processes */
    int workers;         /* -w: worker threads per process */
    int guard_s;         /* -g: per-call stall guard, seconds */
    int unix_permille;   /* -u: share of sessions dialled over the Unix socket */
    int pause_ms;        /* -P: longest pause between two frames of a session */
    int test_permille;   /* -t: share of calls given a deliberate short deadline */
    int probe_permille;  /* -b: share of calls given a past / elapsed deadline */
    int max_frames;      /* -f: most frames in one session (log-uniform 1..max) */
    int slack_s;         /* -W: watchdog: abort when the run exceeds d + this */
    int ramp_ms;         /* -r: the clients' first dials are spread over this */
    uint64_t seed;       /* -s */
    int verbose;         /* -v: progress lines every 10 s */
} soak_cfg;

/* ---- counters ------------------------------------------------------------------------------- */

/* X(name, is_failure): failures must all be 0 for the run to pass. */
#define SOAK_COUNTERS(X)                                                                   \
    X(conns, 0)           /* sessions dialled (client) / accepted (server) */             \
    X(conns_unix, 0)      /* of which over the Unix socket */                             \
    X(active, 0)          /* connections open now (a gauge) */                            \
    X(active_peak, 0)     /* most open at once */                                         \
    X(frames, 0)          /* frames verified complete */                                  \
    X(bytes, 0)           /* bytes verified (client: echoed back) */                      \
    X(corrupt, 1)         /* bytes that differ from what the PRNG regenerates */          \
    X(bad_frames, 1)      /* frames with a wrong header or trailer, or beyond a cut */    \
    X(stalls, 1)          /* a guard deadline was reached */                              \
    X(early, 1)           /* -ETIMEDOUT before the deadline, or a sleep cut short */      \
    X(ignored_past, 1)    /* call succeeded with a deadline already past when set */      \
    X(ignored_elapsed, 1) /* call succeeded with a deadline that had since passed */      \
    X(probes, 0)          /* calls made with a deadline known to be past */               \
    X(test_timeouts, 0)   /* deliberate short deadlines that fired (as they may) */       \
    X(cancels_ok, 0)      /* blocked read woken by np_close with -ECANCELED */            \
    X(cancels_bad, 1)     /* ... woken with anything else (or not woken) */               \
    X(cancels_late, 0)    /* -EBADF: the read had not started yet (a race, reported) */   \
    X(resets_sent, 0)     /* SO_LINGER {1,0} + np_close mid-frame */                      \
    X(resets_seen, 0)     /* peer saw -ECONNRESET / -EPIPE / EOF mid-frame */             \
    X(half_closes, 0)     /* client: np_close_write, every echo, then EOF twice;          \
                           * server: EOF at a frame boundary, twice */                    \
    X(stale_checks, 0)    /* calls on closed or forged handles */                         \
    X(stale_bad, 1)       /* ... that did not return -EBADF */                            \
    X(forged_live, 0)     /* random forged id that happened to be live (not a fault) */   \
    X(unexpected, 1)      /* results not plausible for the situation */                   \
    X(short_writes, 0)    /* np_write returned a short count (deadline or close) */       \
    X(flow_waits, 0)      /* a write's guard passed while its connection still moved:     \
                           * the peer's window (flow control), not a stall */             \
    X(dial_retries, 0)    /* transient dial failures (-EADDRNOTAVAIL, -EAGAIN) */         \
    X(accept_retries, 0)  /* -EMFILE / -ENFILE / -ECONNABORTED on accept */

typedef struct soak_stats {
#define SOAK_FIELD(name, fail) _Atomic uint64_t name;
    SOAK_COUNTERS(SOAK_FIELD)
#undef SOAK_FIELD
    _Atomic int64_t rss_start_kb; /* after warm-up */
    _Atomic int64_t rss_end_kb;   /* at the end of the traffic phase */
    _Atomic int64_t rss_peak_kb;
    _Atomic int64_t fds_before; /* /proc/self/fd entries before np_run */
    _Atomic int64_t fds_after;  /* ... after it returned */
    _Atomic int np_run_rc;
    _Atomic int done; /* the child reached the end of its main() */
    _Atomic int pid;
} soak_stats;

#define SOAK_MAX_PROCS 64

typedef struct soak_shared {
    soak_cfg cfg;
    _Atomic int server_ready; /* 1: addresses below are valid; -1: the server failed */
    _Atomic int stop;         /* set by the parent once every client has exited */
    char tcp_addr[64];
    char unix_addr[108];
    _Atomic int64_t t0;     /* clients start; 0 until known */
    _Atomic int64_t t_warm; /* RSS baseline sample */
    _Atomic int64_t t_end;  /* no new frames after this */
    soak_stats st[1 + SOAK_MAX_PROCS]; /* [0] server, [1..procs] clients */
} soak_shared;

/* ---- per-process context -------------------------------------------------------------------- */

typedef struct soak_proc {
    soak_shared *sh;
    soak_stats *st;
    const soak_cfg *cfg;
    int index;       /* 0 = server, 1..procs = clients */
    char name[32];   /* "server", "client 3" */
    int64_t guard;   /* ns */
    _Atomic int msgs; /* unexpected-result lines printed so far */
} soak_proc;

extern soak_proc g_proc; /* this process's context (set once, before np_run) */

#define STAT_ADD(name, n) atomic_fetch_add_explicit(&g_proc.st->name, (uint64_t)(n), memory_order_relaxed)
#define STAT_INC(name)    STAT_ADD(name, 1)

/* Prints a line prefixed with the process name, counting nothing, within
 * the budget of lines soak_fail has (a note that could come thousands of
 * times). */
void soak_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Counts one `counter` failure and prints the first few of them with the
 * line; `counter` is the field's address (e.g. &g_proc.st->stalls). */
void soak_fail(_Atomic uint64_t *counter, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- PRNG ------------------------------------------------------------------------------------ */

uint64_t soak_mix64(uint64_t z);
static inline uint64_t rnd(uint64_t *s) /* splitmix64 */
{
    *s += 0x9E3779B97F4A7C15ull;
    return soak_mix64(*s);
}
static inline uint64_t rnd_below(uint64_t *s, uint64_t n) { return n ? rnd(s) % n : 0; }
static inline bool chance(uint64_t *s, unsigned permille) { return rnd_below(s, 1000) < permille; }

/* ---- frames ---------------------------------------------------------------------------------
 *
 * A frame is a 20-byte header, the payload (1 B .. 64 KiB) and a 4-byte
 * trailer; all of it follows from (conn id, seq, flags), so either end can
 * regenerate what it should have received and compare every byte:
 *
 *   0  magic    "NPSK"
 *   4  conn id  (client process << 24 | session number): seeds the payload
 *   8  seq      0, 1, 2 ... within the connection
 *  12  len | flags << 24   len = soak_frame_len(conn, seq)
 *  16  header checksum: mix of the 16 bytes above
 *  20  payload: bytes of mix64 words seeded by (conn, seq)
 *  .. trailer: FNV-1a 32 of the payload
 *
 * All fields little-endian (both ends are this machine).
 */
#define FRAME_HDR   20
#define FRAME_TRL   4
#define FRAME_MAGIC 0x4B53504Eu /* "NPSK" little-endian */
#define FRAME_MAX_PAYLOAD 65536u
#define FLAG_RESET_ME 1u /* the server resets the connection inside this frame */

uint32_t soak_frame_len(uint32_t conn_id, uint32_t seq);
static inline uint32_t soak_frame_total(uint32_t conn_id, uint32_t seq)
{
    return FRAME_HDR + soak_frame_len(conn_id, seq) + FRAME_TRL;
}

/* Produces one frame's bytes in order, in pieces of any size. */
typedef struct frame_gen {
    uint32_t conn_id, seq, flags, len;
    uint32_t off;   /* bytes of the frame produced so far */
    uint32_t total; /* FRAME_HDR + len + FRAME_TRL */
    uint32_t fnv;   /* FNV-1a of the payload produced so far */
    uint64_t seed;
    uint8_t hdr[FRAME_HDR];
} frame_gen;

void fg_start(frame_gen *g, uint32_t conn_id, uint32_t seq, uint32_t flags);
size_t fg_fill(frame_gen *g, uint8_t *out, size_t n); /* next min(n, left) bytes */
static inline uint32_t fg_left(const frame_gen *g) { return g->total - g->off; }

/* Compares received bytes against the regenerated stream of one connection.
 * The client knows every frame's flags; the server learns them (and the conn
 * id, from the first frame) from each header, which it checks in full. */
typedef struct verifier {
    frame_gen g;
    bool in_frame;
    bool server;       /* learn conn id and flags from the headers */
    bool desync;       /* a header was wrong: the rest cannot be checked */
    uint32_t conn_id;  /* 0 until known (server) */
    uint32_t next_seq;
    uint32_t reset_seq; /* client: the frame sent with FLAG_RESET_ME (UINT32_MAX: none) */
    uint8_t hdr[FRAME_HDR];
    uint32_t hdr_got;
    uint64_t offset;   /* stream bytes consumed */
    uint64_t frames;
    uint64_t corrupt;  /* this connection's count, for the failure message */
    int max_procs;     /* server: conn ids name a client 1..max_procs */
    /* Server: the header of a FLAG_RESET_ME frame was just completed at this
     * stream offset (the server then picks where to cut); 0 = none. */
    uint64_t reset_hdr_end;
} verifier;

void verifier_init(verifier *v, bool server, uint32_t conn_id);
/* Checks the next n bytes of the stream; counts frames, corrupt bytes and
 * bad frames (in this process's counters and in v). */
void verifier_feed(verifier *v, const uint8_t *p, size_t n, const char *who);
static inline bool verifier_at_boundary(const verifier *v) { return !v->in_frame && v->hdr_got == 0; }

/* ---- deadlines ------------------------------------------------------------------------------
 *
 * Every blocking call gets its own deadline, set just before the call:
 *   GUARD   now + guard (10 s): must never be reached; -ETIMEDOUT = a stall.
 *   TEST    now + 0 .. 2 ms: may fire; checked never to fire early.
 *   PAST    a value at or before now (now - x, -1, INT64_MIN, 1, now): the
 *           call must fail with -ETIMEDOUT even if it need not block.
 *   ELAPSED now + 1 .. 200 us, then the task waits (spins, yields or sleeps)
 *           until np_now() is past it before the call: the same rule.
 * For every kind: -ETIMEDOUT with np_now() < deadline is "early"; success
 * when np_now() read just before the call was >= the deadline is "ignored".
 */
enum dl_kind { DL_GUARD, DL_TEST, DL_PAST, DL_ELAPSED };

typedef struct dl {
    np_conn c;        /* the connection it was set on */
    int64_t d;        /* the deadline set */
    int64_t t_set;    /* np_now() when it was set */
    int64_t t_before; /* np_now() just before the call */
    enum dl_kind kind;
} dl;

enum dl_dir { DIR_READ, DIR_WRITE, DIR_BOTH };

/* Chooses a deadline kind (from cfg's shares unless guard_only), sets it on c
 * with the setter for `dir`, waits past it for ELAPSED, and stamps
 * t_before. Returns the setter's result (0, or -EBADF once closed). */
int dl_arm(dl *x, np_conn c, enum dl_dir dir, uint64_t *rng, bool guard_only);
/* The same with the kind given (a probe right after np_wait_readable said
 * data is there: the case where nothing would make the call block). */
int dl_arm_kind(dl *x, np_conn c, enum dl_dir dir, uint64_t *rng, enum dl_kind kind);
/* Books a call's result against its deadline: early, ignored, stall, test
 * timeout. Returns true if the result was -ETIMEDOUT (of any kind). */
bool dl_book(const dl *x, long long result, const char *what, uint32_t conn_id);

/* np_sleep, counted "early" if it returns before its time, and watched by
 * the monitor task: a sleep not back a guard after its due time is a stall
 * (np_sleep has no deadline of its own to guard it). */
void soak_sleep(int64_t ns);

/* ---- I/O helpers ----------------------------------------------------------------------------- */

/* Writes n bytes with a fresh deadline per call (and chunking left to the
 * caller). Returns n, or the first negative error that stopped it (with
 * *done the bytes that went out before it). A short count is followed at
 * once by another call under the same deadline: the contract says that
 * call reports why. -ETIMEDOUT of a test kind is booked and retried; of the
 * guard kind, booked as a stall and returned. */
long long write_all(np_conn c, const uint8_t *p, size_t n, uint64_t *rng, uint32_t conn_id,
                    size_t *done, bool guard_only);

/* write_all, where the connection's progress decides what a guard's
 * -ETIMEDOUT is. progress(ctx) is a count that moves whenever the
 * connection does (the client: echo bytes its reader has taken). A write
 * stays blocked while the peer's window is shut, and over a Unix socket
 * with a small send buffer on the far side the window opens only after the
 * peer has echoed, and our reader has taken back, most of what is queued,
 * one scheduling round of each process per buffer: under the 6,000-
 * connection load that round trip can take longer than the guard while
 * every byte moves. So a guard that passes while the count moved is booked
 * as flow_waits and the write goes on under a new guard; one that passes
 * with the count still is a stall, as always. A writer that truly missed
 * its wake-up is still caught: the echo pipeline drains, the count stops,
 * and the next guard reports it. */
long long write_all_ex(np_conn c, const uint8_t *p, size_t n, uint64_t *rng, uint32_t conn_id,
                       size_t *done, bool guard_only, uint64_t (*progress)(void *), void *ctx);

/* Checks that every call on a closed (or never issued) handle returns
 * -EBADF. `full`: also the calls that would do harm on a live connection
 * (reads, writes, close). */
void stale_check(np_conn c, bool full, const char *what);
/* Forged handles: id 0 gets every call; random ids only harmless ones. */
void forged_check(uint64_t *rng);
void stale_listener_check(np_listener l);

/* The kernel's view of a connection, for a stall report: bytes queued in
 * and out, TCP state, window probes and backoff, both addresses. */
void sock_diag(np_conn c, char *buf, size_t len);

/* Sets SO_LINGER {1, 0} through np_conn_fd (so np_close sends a reset). */
int set_linger0(np_conn c);
/* On one connection in four, a small send buffer (4 .. 32 KiB): loopback's
 * defaults are so large that writes would hardly ever block, and a write
 * that blocks is what a deadline can cut short (the short-count path). */
void maybe_small_buffers(np_conn c, uint64_t *rng);

/* ---- /proc ----------------------------------------------------------------------------------- */
int64_t soak_rss_kb(void);
int soak_count_fds(void);
/* The monitor task: RSS at warm-up, peak, and just before t_end; overdue
 * sleeps. Returns once t_end has passed and the sessions have drained
 * (clients), or at the stop flag (server). */
void soak_monitor_task(void *arg);

/* ---- the processes ---------------------------------------------------------------------------- */
int soak_server_main(void);
int soak_client_main(void);
/* Runs main_task under np_run with the configured workers, counting fds
 * before and after and recording the result; returns np_run's result. */
int soak_run_runtime(void (*main_task)(void *), void *arg);

#endif
