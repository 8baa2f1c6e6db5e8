/* Portable contexts: makecontext/swapcontext. Slower (swapcontext saves the
 * signal mask with a syscall) but available on any POSIX target. */
#include <stdint.h>

#include "runtime/context.h"
#include "base/np_assert.h"
#include "base/sanitizer.h"

/* makecontext passes int arguments only: split the pointers. */
static void entry(unsigned fhi, unsigned flo, unsigned ahi, unsigned alo)
{
    void (*fn)(void *) = (void (*)(void *))(((uintptr_t)fhi << 32) | flo);
    void *arg = (void *)(((uintptr_t)ahi << 32) | alo);
    fn(arg);
    NP__PANIC("task entry returned");
}

void np__ctx_make(np__ctx *ctx, void *lo, size_t size, void (*fn)(void *), void *arg)
{
    if (getcontext(&ctx->uc) != 0)
        NP__PANIC("getcontext failed");
    ctx->uc.uc_stack.ss_sp = lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    uint64_t f = (uint64_t)(uintptr_t)fn, a = (uint64_t)(uintptr_t)arg;
    makecontext(&ctx->uc, (void (*)(void))entry, 4, (unsigned)(f >> 32), (unsigned)f,
                (unsigned)(a >> 32), (unsigned)a);
}

void np__ctx_switch(np__ctx *from, np__ctx *to)
{
    if (swapcontext(&from->uc, &to->uc) != 0)
        NP__PANIC("swapcontext failed");
}

void *np__ctx_sp(const np__ctx *ctx)
{
#if defined(__x86_64__)
    return (void *)ctx->uc.uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (void *)ctx->uc.uc_mcontext.sp;
#else
    (void)ctx;
    return NULL;
#endif
}

/* Read while the context may be resumed (np_dump's snapshot): unsynchronised
 * on purpose, so not instrumented by ThreadSanitizer. */
NP_NO_TSAN bool np__ctx_frame(const np__ctx *ctx, np__peek_fn peek, void *cx, uintptr_t *pc,
                              uintptr_t *fp, uintptr_t *sp)
{
    (void)peek;
    (void)cx;
#if defined(__x86_64__)
    const volatile greg_t *g = ctx->uc.uc_mcontext.gregs;
    *pc = (uintptr_t)g[REG_RIP];
    *fp = (uintptr_t)g[REG_RBP];
    *sp = (uintptr_t)g[REG_RSP];
    return true;
#elif defined(__aarch64__)
    const volatile mcontext_t *m = &ctx->uc.uc_mcontext;
    *pc = (uintptr_t)m->pc;
    *fp = (uintptr_t)m->regs[29];
    *sp = (uintptr_t)m->sp;
    return true;
#else
    (void)ctx;
    (void)pc;
    (void)fp;
    (void)sp;
    return false;
#endif
}

const char *np__ctx_kind(void)
{
    return "ucontext";
}
