/* api_fuzz: shared declarations. Written against include/netpoll.h only.
 *
 * Files:
 *   api_fuzz.c          main, seeds, the runs of np_run (main task, plain
 *                       threads, a thread spanning np_run's start and end),
 *                       the checks after each run (descriptors, threads,
 *                       Unix socket files, np_go from the spanning thread)
 *   fuzz_report.c       the ring of recent calls, the watchdog, crash notes,
 *                       result checks (fz_expect) and the summary
 *   fuzz_pool.c         the shared pool of handles (live, closed, forged,
 *                       wrong kind), addresses, helper tasks
 *   fuzz_ops.c          random runtime and stream-socket calls; dispatch
 *   fuzz_scenarios.c    checked stream scenarios (echo with content checks,
 *   fuzz_deadline_sc.c  close racing a blocked call, deadlines, conflicts,
 *   fuzz_net_sc.h       resets, concurrent readers/writers, EMFILE)
 *   fuzz_sync.c         random coordination calls and np_offload
 *   fuzz_sync_sc.c      checked coordination scenarios
 *   fuzz_beyond.c       random datagram, address, foreign-fd, name and
 *                       signal calls
 *   fuzz_beyond_sc.c    checked scenarios of those
 */
#ifndef NP_FUZZ_H
#define NP_FUZZ_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "netpoll.h"

/* ---- the calls, for the ring, the statistics and the messages ---- */
enum {
    C_NOW, C_STRERROR, C_POLLER_NAME, C_RUN, C_GO, C_YIELD, C_SLEEP, C_SLEEP_UNTIL,
    C_LISTEN, C_LISTEN_REUSEPORT, C_LISTENER_ADDR, C_ACCEPT, C_LISTENER_SET_DEADLINE,
    C_LISTENER_CLOSE, C_DIAL, C_READ, C_WRITE, C_WAIT_READABLE, C_SET_DEADLINE,
    C_SET_READ_DEADLINE, C_SET_WRITE_DEADLINE, C_CLOSE, C_CLOSE_WRITE, C_LOCAL_ADDR,
    C_REMOTE_ADDR, C_CONN_FD,
    C_OFFLOAD, C_MUTEX_LOCK, C_MUTEX_LOCK_UNTIL, C_MUTEX_TRYLOCK, C_MUTEX_UNLOCK, C_COND_WAIT,
    C_COND_SIGNAL, C_COND_BROADCAST, C_WG_ADD, C_WG_DONE, C_WG_WAIT, C_CHAN_MAKE, C_CHAN_SEND,
    C_CHAN_RECV, C_CHAN_CLOSE, C_CHAN_FREE, C_CHAN_LEN, C_CHAN_CAP, C_SELECT,
    C_ADDR_PARSE, C_ADDR_FORMAT, C_LISTEN_PACKET, C_READ_FROM, C_WRITE_TO, C_WAIT_FD,
    C_CONN_FROM_FD, C_SIGNAL_NOTIFY, C_SIGNAL_STOP, C_LOOKUP_HOST,
    C_STATS, C_DUMP, C_BLOCK,
    C_COUNT,
    C_SCENARIO = C_COUNT, /* ring entries only */
};
extern const char *const fz_call_name[C_COUNT + 1];

/* Where a call is made from; decides which errors are plausible. */
enum { CTX_TASK, CTX_THREAD, CTX_NORUNTIME, CTX_ANY /* a thread spanning a run's start or end */ };

/* What a handle argument is. LIVE: from the pool, live when picked (another
 * actor may close it meanwhile). DEAD: closed, forged, of the other kind, or
 * from a finished run: every call must give -EBADF. NIL: the nil channel.
 * ANY: may or may not be live (a connection id used as a channel id:
 * channels have a table of their own, the ids may coincide). */
enum { H_NONE, H_LIVE, H_DEAD, H_NIL, H_ANY };

enum { SLOT_FREE, SLOT_CLAIM, SLOT_LIVE };
enum { K_CONN = 1, K_LISTENER = 2 };
/* What a connection is: its plausible errors differ. */
enum { CT_STREAM, CT_DGRAM /* connected */, CT_DGRAM_UNBOUND /* np_listen_packet */,
       CT_FOREIGN /* a pipe or an eventfd, adopted */ };

#define FZ_SLOTS 48
#define FZ_GRAVE 256
#define FZ_BOOK 64
#define FZ_PATHS 128
#define FZ_MAX_THREADS 4
#define FZ_MAX_ACTORS 128

typedef struct fz_slot {
    _Atomic unsigned seq; /* odd while (re)filled: readers retry */
    _Atomic int state;
    _Atomic int kind;
    _Atomic int ctype;
    _Atomic uint64_t id;
    _Atomic int path; /* a Unix socket's file: index into run->paths, or -1 */
} fz_slot;

/* A handle argument, as picked: its id, what it is, where it lives. */
typedef struct fz_pick {
    uint64_t id;
    int hclass;
    int slot;
    int path;
    int ctype;
} fz_pick;

typedef struct fz_book_entry {
    _Atomic int ready;
    char network[8];
    char address[120];
} fz_book_entry;

struct fz_run;

typedef struct fz_actor {
    int id;
    char kind;              /* 'M' main task, 'T' task, 'S' spawned task, 'E' echo,
                             * 'A' acceptor, 'P' pthread, 'X' stray thread, 'N' no runtime */
    int ctx;                /* CTX_* */
    uint64_t rng;
    struct fz_run *run;
    unsigned char *buf;     /* FZ_BUF bytes, private */
    int64_t last_now;
    int depth;              /* spawn depth */
    int reg;                /* registry entry (what it is in now, for the watchdog) */
    unsigned char *guard;   /* 64 bytes followed by an inaccessible page */
    char *abuf;             /* FZ_ABUF bytes for address strings */
    uint64_t echo_id;       /* E: the connection served */
    int acc_slot;           /* A: the listener's slot */
    uint64_t acc_id;        /* A: the listener */
    int nops;               /* S: calls left */
} fz_actor;
#define FZ_ABUF 8192
#define FZ_GUARD 64
#define FZ_BUF (128 * 1024)

typedef struct fz_run {
    uint64_t seed;
    int index;              /* run number within the seed */
    int64_t end_ns;         /* fuzzing stops here */
    _Atomic bool stop;
    _Atomic int live;       /* actors still running (tasks and threads) */
    _Atomic int spawned;    /* tasks started with np_go, for the cap */
    _Atomic int scenarios_running;
    bool leave_open;        /* end: wake with past deadlines, leave handles to np_run */
    fz_slot slots[FZ_SLOTS];
    _Atomic unsigned book_n;
    fz_book_entry book[FZ_BOOK];
    _Atomic unsigned paths_n;
    char paths[FZ_PATHS][108];
    /* The socket file's identity when it was bound: another listener may
     * bind the same path (from the address book) once the first has
     * unlinked it, and its file is no leftover. 0: unknown. */
    uint64_t path_dev[FZ_PATHS], path_ino[FZ_PATHS];
    _Atomic int emfile_done;
    _Atomic int actor_seq;
    struct fz_sync *sync;   /* coordination objects (fuzz_sync.c) */
    struct fz_beyond *beyond; /* foreign descriptors, signal channels (fuzz_beyond.c) */
} fz_run;

/* ---- globals (api_fuzz.c) ---- */
extern _Atomic uint64_t fz_cur_seed;
extern _Atomic long fz_failures;
extern bool fz_verbose;
extern bool fz_dns;          /* allow addresses that need a name lookup beyond localhost */
extern bool fz_skip[C_COUNT + 1]; /* --skip: calls left out (a known defect being fixed) */
extern bool fz_names;        /* allow "localhost" (a name lookup): --no-names turns it off */
extern int fz_pid;
extern const char *fz_poller;
extern bool fz_ipv6;          /* ::1 usable */
extern char fz_regular_file[64]; /* a plain file, for dials to a non-socket path */
extern _Atomic uint64_t fz_grave[FZ_GRAVE];
extern _Atomic unsigned fz_grave_n;

/* ---- random numbers ---- */
static inline uint64_t fz_splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint64_t fz_rand(fz_actor *a) { return fz_splitmix(&a->rng); }
static inline uint64_t fz_below(fz_actor *a, uint64_t n) { return n ? fz_rand(a) % n : 0; }
static inline bool fz_chance(fz_actor *a, int pct) { return (int)fz_below(a, 100) < pct; }

/* ---- actors, ring, checks (api_fuzz.c) ---- */
void fz_actor_init(fz_actor *a, fz_run *run, char kind, int ctx, uint64_t salt);
void fz_actor_fini(fz_actor *a);

/* Records a call in the ring and as the actor's current call; returns the
 * ring index for fz_end. */
unsigned fz_begin(fz_actor *a, int call, uint64_t handle, int64_t arg);
void fz_end(fz_actor *a, unsigned ring_idx, int call, long long rc);

/* A failed check: counted, printed with the seed and the actor, and the
 * first one of a seed prints the recent calls. */
void fz_fail(fz_actor *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks a negative result against a 0-terminated list of errno values
 * (positive), widened by the context (a plain thread's -EPERM, -ESRCH
 * without a runtime) and narrowed to -EBADF for a dead handle. A result
 * >= 0 on a dead handle fails too. `blocking`: the call is one of those that
 * block. True if plausible. */
bool fz_expect(fz_actor *a, int call, int hclass, long long rc, bool blocking,
               const int *allowed, const char *what);
#define FZ_ERRS(...) ((const int[]){ __VA_ARGS__, 0 })

/* The run of seeds (fuzz_report.c): signal handlers, death notes and the
 * watchdog; a seed's start and end (arms and disarms the watchdog; the
 * failures it had); what the main thread is at, for the notes. */
void fz_report_start(int watchdog_s);
void fz_seed_begin(uint64_t seed);
long fz_seed_end(double *ms);
void fz_phase(const char *what);
int fz_take_sigpipes(void);
void fz_summary(unsigned long nseeds, double secs);
int64_t fz_mono_ns(void);
int fz_count_threads(void);
void fz_list_fds(void);

/* Deadlines. Bounded ones expire within ~60 ms (or lie in the past). */
int64_t fz_deadline(fz_actor *a, bool bounded, bool *past);
/* Counts /proc/self/fd entries. */
int fz_count_fds(void);
void fz_grave_push(uint64_t id);
uint64_t fz_grave_pick(fz_actor *a);
void fz_sleep_ms(fz_actor *a, int ms); /* np_sleep in a task, nanosleep elsewhere */

/* ---- the pool (fuzz_ops.c) ---- */
void fz_random_op(fz_actor *a);
void fz_actor_loop(fz_actor *a);       /* ops until stop */
int fz_pool_put(fz_actor *a, int kind, uint64_t id, int path, int ctype); /* slot, or -1 (closed it) */
fz_pick fz_pick_handle(fz_actor *a, int kind);
const char *fz_ctype_name(fz_pick h); /* for messages */
void fz_got_conn(fz_actor *a, uint64_t id, int ctype, int path);
/* np_listen-like (network, address) pairs; packet: for np_listen_packet.
 * The flags say what was picked. */
enum { A_FRESH = 1, A_BOOK = 2, A_BAD = 4, A_BLACKHOLE = 8, A_UNIXFILE = 16 };
int fz_pick_addr(fz_actor *a, bool listen, bool packet, const char **net, const char **addr,
                 char *netbuf);
void fz_check_unlinked(fz_actor *a, fz_run *r, int path);
extern const int fz_listen_errs[];
void fz_pool_mark_closed(fz_run *r, int slot, uint64_t id);
/* End of a run: close (or, leave_open, expire) every live handle. */
void fz_pool_sweep(fz_actor *a, bool final);
void fz_book_add(fz_run *r, const char *network, const char *address);
int fz_path_add(fz_run *r, const char *path);
void fz_unix_path(fz_run *r, char *out, size_t cap, const char *tag);
void fz_start_acceptor(fz_actor *a, int slot);
void fz_start_echo(fz_actor *a, uint64_t conn_id);
void fz_spawn_mini(fz_actor *a);
void fz_noruntime_ops(fz_actor *a, int n);
void fz_stray_op(fz_actor *a);

/* ---- coordination and np_offload (fuzz_sync.c, fuzz_sync_sc.c) ---- */
#define FZ_EMAX 4096 /* largest channel element made here */
/* Elements check themselves: elem_ok says whether one is intact. */
void fz_elem_fill(unsigned char *p, size_t n, uint64_t key);
bool fz_elem_ok(const unsigned char *p, size_t n);
bool fz_all(const unsigned char *p, size_t n, unsigned char v);
void fz_chan_grave_push(uint64_t id);
struct fz_sync *fz_sync_new(void);
void fz_sync_free(struct fz_sync *s);
void fz_sync_op(fz_actor *a, int call);   /* one random call of that family */
void fz_sync_sweep(fz_actor *a, bool final); /* wake everyone; final: free the channels */
void fz_sync_noruntime(fz_actor *a);      /* the calls that need no runtime, and -ESRCH */
void fz_sync_scenario(fz_actor *a);       /* checked: FIFO, fairness, close/free wakes, ... */

/* ---- datagrams, addresses, foreign descriptors, signals (fuzz_beyond.c,
 * fuzz_beyond_sc.c) ---- */
/* ThreadSanitizer reports a close (or a reuse) of a descriptor while
 * another thread fstat()s it as a race, though np_wait_fd documents exactly
 * that use: TSan builds leave it out. */
#if defined(__SANITIZE_THREAD__)
#define FZ_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define FZ_TSAN 1
#endif
#endif
#ifndef FZ_TSAN
#define FZ_TSAN 0
#endif
void fz_check_dispositions(fz_actor *a, const char *when);
bool fz_fd_open(int fd);
struct fz_beyond *fz_beyond_new(fz_actor *a);   /* in the main task */
void fz_beyond_end(fz_actor *a, struct fz_beyond *b); /* after every actor: closes, checks */
void fz_beyond_op(fz_actor *a, int call);
void fz_beyond_noruntime(fz_actor *a);
void fz_beyond_scenario(fz_actor *a);
void fz_beyond_init(void);                      /* once: signal handlers */
void fz_beyond_sweep(fz_actor *a);              /* the end: wake signal-channel readers */

/* ---- checked scenarios (fuzz_scenarios.c) ---- */
void fz_scenario(fz_actor *a);
void fz_scenario_emfile(fz_actor *a);

#endif
