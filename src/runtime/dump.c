/* np_dump: every live task, its state and its backtrace; and the dump signal.
 *
 * Where the facts come from:
 *   - the tasks: the registry of task structs (task.h), a list walked with
 *     no lock; a struct whose id is 0 is pooled, not live;
 *   - running: the workers' current task (np__sched_running_on);
 *   - parked: the park's descriptor and object, stored by the task's park
 *     (scheduler.c, task_park) and cleared when it resumes. Whether it is
 *     still parked or already readied, and its deadline, are read from the
 *     object it waits on (pd/waiter.h, NP__ON_*);
 *   - the backtrace: the frame-pointer chain from the registers the context
 *     switch saved (context.h), read through backtrace.c's safe reads.
 *
 * Nothing here synchronises with the tasks: a dump is a snapshot of a
 * runtime that keeps running, and one entry's fields may come from
 * different moments (a task seen parked may have been readied since). The
 * reads that race with the tasks' own writes are deliberate and harmless —
 * each is a single aligned word, and nothing read is dereferenced without a
 * bound (stack memory only through backtrace.c, which cannot fault;
 * objects only where they live in type-stable memory: pds, task structs).
 * So the functions that read them are not instrumented by ThreadSanitizer
 * (NP_NO_TSAN), and each such read is a relaxed atomic load (RD below),
 * which the compiler may neither tear nor repeat.
 *
 * Signal safety: no malloc, no stdio, no lock of the runtime's; output goes
 * through a buffer on the stack to write(2). dladdr1 takes the dynamic
 * loader's lock: a dump signal that interrupts dlopen on the same thread
 * could wait for ever (accepted: "async-signal-safe enough").
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/sys.h"
#include "netpoll.h"
#include "os/os.h"
#include "pd/pd.h"
#include "runtime/backtrace.h"
#include "runtime/dump.h"
#include "runtime/idle_stack.h"
#include "base/sanitizer.h"
#include "runtime/scheduler.h"
#include "runtime/task.h"

#define RD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define ARD(x) atomic_load_explicit(&(x), memory_order_relaxed) /* _Atomic fields (clang) */
#define MAX_FRAMES 48
#define MAX_RUNNING (1024 + NP_HANDOFF_THREADS) /* threads that run tasks, at most */

/* ---- output ------------------------------------------------------------------ */

typedef struct out {
    int fd;
    int err;         /* first write error, as -errno */
    size_t len;
    char buf[2048];
} out;

static void flush(out *o)
{
    size_t done = 0;
    while (done < o->len && !o->err) {
        ssize_t n = NP__SYS(write(o->fd, o->buf + done, o->len - done));
        if (n > 0)
            done += (size_t)n;
        else if (n == -EINTR)
            continue;
        else
            o->err = n < 0 ? (int)n : -EIO;
    }
    o->len = 0;
}

static void put_n(out *o, const char *s, size_t n)
{
    while (n > 0) {
        if (o->len == sizeof o->buf)
            flush(o);
        size_t k = sizeof o->buf - o->len < n ? sizeof o->buf - o->len : n;
        memcpy(o->buf + o->len, s, k);
        o->len += k;
        s += k;
        n -= k;
    }
}

static void put(out *o, const char *s)
{
    put_n(o, s, strlen(s));
}

static void put_u(out *o, uint64_t v)
{
    char b[24];
    int i = sizeof b;
    do
        b[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    put_n(o, b + i, sizeof b - (size_t)i);
}

static void put_i(out *o, int64_t v)
{
    if (v < 0) {
        put(o, "-");
        put_u(o, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u(o, (uint64_t)v);
    }
}

static void put_hex(out *o, uint64_t v)
{
    char b[18];
    int i = sizeof b;
    do
        b[--i] = "0123456789abcdef"[v & 15];
    while ((v >>= 4) != 0);
    b[--i] = 'x';
    b[--i] = '0';
    put_n(o, b + i, sizeof b - (size_t)i);
}

/* A duration, non-negative, as seconds with milliseconds: "1.204 s". */
static void put_dur(out *o, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    put_u(o, (uint64_t)(ns / NP_SECOND));
    char ms[5] = { '.', 0, 0, 0, 0 };
    int64_t m = ns % NP_SECOND / NP_MILLISECOND;
    ms[1] = (char)('0' + m / 100);
    ms[2] = (char)('0' + m / 10 % 10);
    ms[3] = (char)('0' + m % 10);
    put_n(o, ms, 4);
    put(o, " s");
}

/* ---- one dump -------------------------------------------------------------------- */

typedef struct dumper {
    out o;
    np__peeker pk;
    np__syms sy;
    int64_t now, coarse_now;
    np__task *self;            /* the task calling np_dump, if any */
    np__task *interrupted;     /* the task the dump signal interrupted, if any */
    uintptr_t int_pc, int_fp, int_sp;
    int nrun;
    np__task *run[MAX_RUNNING];
    int run_on[MAX_RUNNING];
} dumper;

static void put_sym(dumper *d, uintptr_t pc, bool is_return)
{
    const char *name, *module;
    uintptr_t off;
    np__symbolize(&d->sy, pc, is_return, &name, &module, &off);
    if (name) {
        put(&d->o, name);
    } else if (module && module[0]) {
        const char *slash = strrchr(module, '/');
        put(&d->o, slash ? slash + 1 : module);
    } else {
        put_hex(&d->o, pc);
        return;
    }
    put(&d->o, "+");
    put_hex(&d->o, off);
}

static void put_frames(dumper *d, uintptr_t pc, uintptr_t fp, uintptr_t lo, uintptr_t hi,
                       bool first_is_return)
{
    uintptr_t pcs[MAX_FRAMES];
    int n = np__fp_walk(&d->pk, pc, fp, lo, hi, pcs, MAX_FRAMES);
    for (int i = 0; i < n; i++) {
        put(&d->o, "    ");
        put_sym(d, pcs[i], i > 0 || first_is_return);
        put(&d->o, "\n");
    }
    if (n == MAX_FRAMES)
        put(&d->o, "    ...\n");
    if (n == 0)
        put(&d->o, "    (no frames could be read)\n");
}

/* The worker t runs on; NOT_RUNNING, or NO_WORKER: t runs on a thread
 * whose worker was handed to another thread while t kept it (handoff.h). */
#define NOT_RUNNING (-1)
#define NO_WORKER (-2)
static int running_on(const dumper *d, const np__task *t)
{
    for (int i = 0; i < d->nrun; i++)
        if (d->run[i] == t)
            return d->run_on[i];
    return NOT_RUNNING;
}

static void put_running(dumper *d, int w)
{
    if (w == NO_WORKER) {
        put(&d->o, "running (stalled: its worker was handed to another thread)");
        return;
    }
    put(&d->o, "running on worker ");
    put_i(&d->o, w);
}

/* Whether t, parked at site on obj, is still waiting (or was readied and
 * waits for a worker). */
NP_NO_TSAN static bool still_parked(np__task *t, const np__park_site *site, const void *obj)
{
    uintptr_t me = (uintptr_t)&t->waiter;
    switch (site->on) {
    case NP__ON_PD_READ:
        return obj && ARD(((np__pd *)obj)->rg) == me;
    case NP__ON_PD_WRITE:
        return obj && ARD(((np__pd *)obj)->wg) == me;
    case NP__ON_WREC:
    case NP__ON_FD_WREC:
        return NP__WREC_WAITING(ARD(t->wrec.claim));
    case NP__ON_SLEEP:
        return ARD(t->sleep_sem) == me;
    default:
        return true;
    }
}

NP_NO_TSAN static int64_t deadline_of(np__task *t, const np__park_site *site, const void *obj)
{
    switch (site->on) {
    case NP__ON_PD_READ:
        return obj ? ARD(((np__pd *)obj)->rd_at) : 0;
    case NP__ON_PD_WRITE:
        return obj ? ARD(((np__pd *)obj)->wd_at) : 0;
    case NP__ON_WREC:
    case NP__ON_FD_WREC:
        return RD(t->wrec.deadline);
    case NP__ON_SLEEP:
        return RD(t->sleep_timer.when);
    default:
        return 0;
    }
}

/* "np_read on conn fd 9" */
NP_NO_TSAN static void put_wait(dumper *d, const np__park_site *site, const void *obj)
{
    out *o = &d->o;
    put(o, site->call);
    switch (site->on) {
    case NP__ON_PD_READ:
    case NP__ON_PD_WRITE:
        put(o, " on ");
        put(o, site->what);
        put(o, " fd ");
        put_i(o, obj ? RD(((np__pd *)obj)->reg.fd) : -1);
        break;
    case NP__ON_FD_WREC:
        put(o, " on fd ");
        put_i(o, (int64_t)(intptr_t)obj);
        break;
    case NP__ON_FUNC:
        put(o, " running ");
        put_sym(d, (uintptr_t)obj, false);
        break;
    default:
        if (obj) {
            put(o, " on ");
            put(o, site->what);
            put(o, " ");
            put_hex(o, (uintptr_t)obj);
        } else if (site->what[0]) {
            put(o, " on ");
            put(o, site->what);
        }
        break;
    }
}

/* The saved context of a task that is not running: its backtrace. */
NP_NO_TSAN static void put_saved_stack(dumper *d, np__task *t)
{
    out *o = &d->o;
    if (!RD(t->stk)) {
        put(o, "    (not started yet: no stack)\n");
        return;
    }
    uintptr_t lo = (uintptr_t)RD(t->stack.bottom), hi = lo + RD(t->stack.size);
    uint64_t idle = atomic_load_explicit(&t->idle, memory_order_acquire);
    d->pk.moved_len = 0;
    if (NP__IDLE_STATE(idle) == NP__IDLE_MOVING) {
        put(o, "    (stack being moved out while idle: no backtrace)\n");
        return;
    }
    if (NP__IDLE_STATE(idle) == NP__IDLE_MOVED) {
        /* The stack's pages were handed back; its contents are in t->moved,
         * to be copied back to the same addresses: walk the copy. */
        put(o, "    (stack moved out while idle: frames read from its copy)\n");
        d->pk.moved_at = (uintptr_t)RD(t->moved_at);
        d->pk.moved_copy = (uintptr_t)RD(t->moved);
        d->pk.moved_len = RD(t->moved_len);
    }
    uintptr_t pc, fp, sp;
    if (!np__ctx_frame(&t->ctx, np__peek, &d->pk, &pc, &fp, &sp) || sp < lo || sp > hi) {
        put(o, "    (saved registers unreadable)\n");
    } else {
        put_frames(d, pc, fp, sp, hi, true);
    }
    d->pk.moved_len = 0;
}

/* t's entry, if it is live (true). */
NP_NO_TSAN static bool dump_task(dumper *d, np__task *t)
{
    out *o = &d->o;
    int64_t id = RD(t->id);
    if (id <= 0)
        return false;
    void (*fn)(void *) = RD(t->fn);
    const np__park_site *site = RD(t->park_site);
    const void *obj = RD(t->park_obj);
    int64_t since = RD(t->park_since);
    put(o, "task ");
    put_i(o, id);
    put(o, " (");
    put_sym(d, (uintptr_t)fn, false);
    put(o, "): ");
    int w = running_on(d, t);
    if (t == d->self) {
        put_running(d, w);
        put(o, " (it called np_dump)\n");
        uintptr_t lo = (uintptr_t)__builtin_frame_address(0);
        put_frames(d, 0, lo, lo, (uintptr_t)RD(t->stack.bottom) + RD(t->stack.size), true);
        return true;
    }
    if (w != NOT_RUNNING) {
        put_running(d, w);
        if (t == d->interrupted) {
            put(o, " (interrupted by the dump signal)\n");
            uintptr_t hi = (uintptr_t)RD(t->stack.bottom) + RD(t->stack.size);
            put_frames(d, d->int_pc, d->int_fp, d->int_sp, hi, false);
        } else {
            put(o, "\n    (running on another thread: no backtrace)\n");
        }
        return true;
    }
    if (site && still_parked(t, site, obj)) {
        put(o, "parked in ");
        put_wait(d, site, obj);
        put(o, " for ");
        put_dur(o, d->coarse_now - since);
        int64_t dl = deadline_of(t, site, obj);
        if (dl > 0) {
            put(o, dl >= d->now ? ", deadline in " : ", deadline passed ");
            put_dur(o, dl >= d->now ? dl - d->now : d->now - dl);
            if (dl < d->now)
                put(o, " ago");
        }
    } else if (site) {
        put(o, "runnable (readied in ");
        put_wait(d, site, obj);
        put(o, ")");
    } else {
        put(o, "runnable");
    }
    put(o, "\n");
    put_saved_stack(d, t);
    return true;
}

static int dump(int fd, const void *uc)
{
    if (fd < 0)
        return -EBADF;
    if (!np__runtime_enter())
        return -ESRCH; /* np_run cannot end (and free the tasks) until we leave */
    /* Mapped, not on the stack: about 16 KiB, and the caller may be a task
     * with a 16 KiB stack (api_fuzz overflowed one). mmap is a system call:
     * fine in a signal handler, where malloc is not. Zeroed. */
    dumper *d = mmap(NULL, sizeof *d, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (d == MAP_FAILED) {
        np__runtime_leave();
        return -ENOMEM;
    }
    d->o.fd = fd;
    np__peeker_init(&d->pk);
    np__syms_init(&d->sy);
    d->now = np_now();
    d->coarse_now = np__coarse_now();
    d->self = np__sched_current_task();
    if (uc && d->self && np__os_signal_regs(uc, &d->int_pc, &d->int_fp, &d->int_sp)) {
        d->interrupted = d->self; /* the handler runs on the thread, not in the task */
        d->self = NULL;
    }
    int nw = np__sched_workers();
    for (int i = 0; i < np__sched_threads() && d->nrun < MAX_RUNNING; i++) {
        int on;
        np__task *t = np__sched_running_on(i, &on);
        if (t) {
            d->run[d->nrun] = t;
            d->run_on[d->nrun++] = on >= 0 ? on : NO_WORKER;
        }
    }
    put(&d->o, "netpoll: np_dump: ");
    put_i(&d->o, nw);
    put(&d->o, nw == 1 ? " worker\n" : " workers\n");
    int64_t n = 0;
    for (np__task *t = np__task_registry_first(); t; t = t->all_next)
        n += dump_task(d, t);
    put(&d->o, "netpoll: np_dump: ");
    put_i(&d->o, n);
    put(&d->o, n == 1 ? " task\n" : " tasks\n");
    flush(&d->o);
    np__syms_fini(&d->sy);
    np__runtime_leave();
    int err = d->o.err;
    munmap(d, sizeof *d);
    return err;
}

int np_dump(int fd)
{
    return dump(fd, NULL);
}

/* ---- the dump signal ------------------------------------------------------------ */

static struct sigaction old_action;
static _Atomic int installed_sig;

static void on_dump_signal(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    NP__ERRNO_SAVE();
    dump(STDERR_FILENO, uc);
    if (sig == SIGQUIT) {
        /* Its default action next, as without netpoll: the process ends.
         * Blocked while this handler runs, the signal sent here is
         * delivered as it returns. */
        np__os_reraise_default(sig);
    }
    NP__ERRNO_RESTORE();
}

bool np__dump_signal_valid(int sig)
{
    return sig == 0 ||
           (sig > 0 && sig < NSIG && sig != SIGKILL && sig != SIGSTOP && sig != SIGSEGV);
}

void np__dump_signal_install(int sig)
{
    if (sig <= 0)
        return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_dump_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, &old_action) == 0)
        atomic_store(&installed_sig, sig);
}

void np__dump_signal_remove(void)
{
    int sig = atomic_exchange(&installed_sig, 0);
    if (sig <= 0)
        return;
    struct sigaction now;
    if (sigaction(sig, NULL, &now) == 0 && (now.sa_flags & SA_SIGINFO) &&
        now.sa_sigaction == on_dump_signal)
        sigaction(sig, &old_action, NULL);
}
