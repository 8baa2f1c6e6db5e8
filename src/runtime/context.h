/* Execution contexts: the register state of a suspended task.
 *
 * Three implementations, chosen at build time (NP_CONTEXT=asm|ucontext):
 *   ctx_x86_64.S + ctx_asm.c   System V x86-64: rbx rbp r12-r15, MXCSR, x87 CW
 *   ctx_aarch64.S + ctx_asm.c  AAPCS64: x19-x28, fp, lr, d8-d15, FPCR
 *   ctx_ucontext.c             makecontext/swapcontext, any POSIX target
 *
 * A suspended asm context is just its stack pointer; everything else is on
 * its stack:
 *
 *   x86-64, at ctx->sp (low to high):         aarch64, at ctx->sp:
 *     +0   MXCSR (4) | x87 control word (2)      +0   x19 x20 ... x28 (80)
 *     +8   r15 r14 r13 r12 rbx rbp (48)          +80  x29 (fp) x30 (lr)
 *     +56  return address                        +96  d8 ... d15 (64)
 *                                                +160 FPCR, pad (16)
 */
#ifndef NP_CONTEXT_H
#define NP_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(NP_CONTEXT_UCONTEXT)
#include <ucontext.h>
typedef struct np__ctx {
    ucontext_t uc;
} np__ctx;
#else
typedef struct np__ctx {
    void *sp;
} np__ctx;
#endif

/* Prepares ctx to run fn(arg) on the stack [lo, lo + size) when first
 * switched to. fn must never return. */
void np__ctx_make(np__ctx *ctx, void *lo, size_t size, void (*fn)(void *), void *arg);

/* Saves the running context into from and resumes to. Returns when
 * something switches back to from. */
void np__ctx_switch(np__ctx *from, np__ctx *to);

/* The stack pointer of a suspended context: everything the context still
 * needs on its stack lies at or above it (less the x86-64 red zone, which the
 * caller allows for). NULL where it cannot be told. */
void *np__ctx_sp(const np__ctx *ctx);
#if !defined(NP_CONTEXT_UCONTEXT) || defined(__x86_64__) || defined(__aarch64__)
#define NP__CTX_KNOWS_SP 1
#else
#define NP__CTX_KNOWS_SP 0
#endif

/* A hint, from a worker about to run other work first: start loading the
 * top of ctx's saved stack (the registers a switch to it pops, and the
 * frames it returns through) into the cache. With thousands of tasks, a
 * task's stack has gone cold by the time its turn comes, and the switch
 * to it otherwise stalls on that first load. The load then overlaps the
 * other work; a page walk, when the stack's page has left the TLB, is
 * still waited for here (a prefetch translates its address before it
 * retires), which is why this is not done further ahead.
 * ctx may belong to a task another worker is starting or running: sp is
 * read atomically (np__ctx_make stores it so) and only as an address to
 * prefetch, which never faults. */
#if defined(NP_CONTEXT_UCONTEXT)
static inline void np__ctx_prefetch(const np__ctx *ctx)
{
    (void)ctx;
}
#else
static inline void np__ctx_prefetch(const np__ctx *ctx)
{
    const char *sp = __atomic_load_n(&ctx->sp, __ATOMIC_RELAXED);
    __builtin_prefetch(sp);
    __builtin_prefetch(sp + 64);
}
#endif

/* Where a frame-pointer walk of a suspended context starts (np_dump): the
 * address it resumes at, its frame pointer and its stack pointer. An asm
 * context keeps them on its stack (the layout above), read through
 * peek(cx, addr, out, n), which must fail rather than fault; a ucontext
 * keeps them in ctx. False if they cannot be had. The context may be
 * resumed meanwhile (a snapshot): the caller bounds what it then reads. */
typedef bool (*np__peek_fn)(void *cx, uintptr_t addr, void *out, size_t n);
bool np__ctx_frame(const np__ctx *ctx, np__peek_fn peek, void *cx, uintptr_t *pc,
                   uintptr_t *fp, uintptr_t *sp);

/* "asm-x86_64", "asm-aarch64" or "ucontext". */
const char *np__ctx_kind(void);

#endif
