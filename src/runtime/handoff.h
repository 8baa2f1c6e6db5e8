/* Who may touch a worker's queues: the hand-off protocol (issue 14).
 *
 * A worker (Go's P: run queue, runnext, stack and struct caches, tick
 * counters) is run by one thread at a time (Go's M: a pthread with its own
 * scheduler context). Normally a worker keeps its thread for the whole run.
 * But a task may keep the thread for long — in sleep(3), a blocking library
 * call, a long computation — and C has no entersyscall to say so. The
 * monitor thread (monitor.c) notices a worker whose thread has run one task
 * for longer than np_config.stall_ns, takes the worker from that thread and
 * hands it to a spare thread, which goes on running the worker's other
 * tasks, its timers and the poller. The stuck thread finds out at its
 * task's next scheduling point, queues the task globally and becomes a
 * spare itself.
 *
 * The ownership word, worker.own (64 bits):
 *
 *   bit 0       LENT: 1 while the thread runs a task's own code, 0 while it
 *               runs the scheduler (HELD)
 *   bits 1-20   the thread's index (np__sched.threads)
 *   bits 21-63  a sequence number, bumped at every switch of task, so that
 *               the monitor can tell "lent for 20 ms" from "lent again"
 *
 * States and transitions (modelled in tests/model/handoff.pml):
 *
 *   HELD(m,s)   thread m runs the scheduler on the worker: only m reads or
 *               writes its contents. Nobody else moves the word.
 *   LENT(m,s)   thread m runs task code; the worker's contents are not being
 *               touched by m (others may still steal from its run queue and
 *               runnext, which are built for that).
 *
 *   m: lend      HELD(m,s) -> LENT(m,s+1)   store-release, on the way into a
 *                task's code after a switch (lend_switched), or
 *                HELD(m,s) -> LENT(m,s)     after a call that did not switch
 *                (lend_same: a task readying another is still one stall)
 *   m: hold      LENT(m,s) -> HELD(m,s)     CAS, at every scheduling point
 *                of the task: park, yield, exit, readying or starting a
 *                task. Fails only if the monitor took the worker: then m
 *                never touches it again (m->p = NULL), its task goes to the
 *                global queue at its next switch, and m becomes a spare.
 *   monitor:     LENT(m,s) -> HELD(n,s+1)   CAS, after seeing the same LENT
 *   retake                                  word for stall_ns; n is a spare
 *                thread taken off the spare list (or started) before the
 *                CAS, given the worker (n->p) before it, woken after it; put
 *                back on the list if the CAS fails.
 *
 * Outside the word: a worker's runnext (an atomic exchange) and its run
 * queue's steal side take any thread, as before. A task readying another
 * puts it in its worker's runnext without holding (task_ready), then
 * checks that the worker is still lent by it; if it was handed on, the
 * task is taken back to the global queue, since the new thread may be on
 * its way to sleep without another look at runnext.
 *
 * The monitor never takes a HELD worker: a thread in the scheduler is either
 * quick, or idle with nothing to hand over (on the idle list, or blocked in
 * the poller, which any readiness or timer wakes).
 *
 * Memory order: lend is a release store and hold and retake are acq_rel
 * CASes, so whatever m did to the worker before lending happens before the
 * spare's first touch, through the monitor's CAS; and a failed hold
 * (acquire) sees the retake.
 *
 * Cost on the hot path: one CAS per park or yield (hold) and one plain
 * release store per switch (lend), on the worker's own cache line; the
 * monitor reads it every stall_ns / 2.
 */
#ifndef NP_HANDOFF_H
#define NP_HANDOFF_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define NP__OWN_LENT ((uint64_t)1)
#define NP__OWN_THREAD_SHIFT 1
#define NP__OWN_THREAD_MASK ((uint64_t)0xfffff << NP__OWN_THREAD_SHIFT)
#define NP__OWN_SEQ_ONE ((uint64_t)1 << 21)

static inline uint64_t np__own_held(int thread_idx, uint64_t seq_bits)
{
    return (seq_bits & ~(NP__OWN_SEQ_ONE - 1)) | ((uint64_t)thread_idx << NP__OWN_THREAD_SHIFT);
}

static inline int np__own_thread(uint64_t word)
{
    return (int)((word & NP__OWN_THREAD_MASK) >> NP__OWN_THREAD_SHIFT);
}

#endif
