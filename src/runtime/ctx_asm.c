/* Building the first frame for the hand-written switches (ctx_*.S). */
#include <stdint.h>
#include <string.h>

#include "runtime/context.h"
#include "base/np_assert.h"

void np__ctx_trampoline(void);

void *np__ctx_sp(const np__ctx *ctx)
{
    return __atomic_load_n(&ctx->sp, __ATOMIC_RELAXED);
}

bool np__ctx_frame(const np__ctx *ctx, np__peek_fn peek, void *cx, uintptr_t *pc,
                   uintptr_t *fp, uintptr_t *sp)
{
    uintptr_t s = (uintptr_t)np__ctx_sp(ctx);
    uint64_t r[2];
#if defined(__x86_64__)
    /* rbp at +48, the return address at +56; rsp after the return: +64. */
    if (!s || !peek(cx, s + 48, r, sizeof r))
        return false;
    *sp = s + 64;
#else
    /* x29 (fp) at +80, x30 (lr) at +88; sp after the switch: +176. */
    if (!s || !peek(cx, s + 80, r, sizeof r))
        return false;
    *sp = s + 176;
#endif
    *fp = (uintptr_t)r[0];
    *pc = (uintptr_t)r[1];
    return true;
}

#if defined(__x86_64__)

void np__ctx_make(np__ctx *ctx, void *lo, size_t size, void (*fn)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    /* After the switch pops 8 + 48 bytes and `ret` pops the return address,
     * rsp is `top - 16`: 16-byte aligned at the trampoline, as it wants. */
    uint64_t *sp = (uint64_t *)(top - 16 - 64);
    memset(sp, 0, 64);
    uint32_t mxcsr = 0x1F80;   /* default: all exceptions masked, nearest */
    uint16_t fpucw = 0x037F;   /* default x87 control word */
    memcpy((char *)sp, &mxcsr, 4);
    memcpy((char *)sp + 4, &fpucw, 2);
    sp[1] = 0;                 /* r15 */
    sp[2] = 0;                 /* r14 */
    sp[3] = (uint64_t)arg;     /* r13 */
    sp[4] = (uint64_t)fn;      /* r12 */
    sp[5] = 0;                 /* rbx */
    sp[6] = 0;                 /* rbp: ends frame-pointer walks */
    sp[7] = (uint64_t)np__ctx_trampoline;
    __atomic_store_n(&ctx->sp, (void *)sp, __ATOMIC_RELAXED); /* np__ctx_prefetch */
}

const char *np__ctx_kind(void)
{
    return "asm-x86_64";
}

#elif defined(__aarch64__)

void np__ctx_make(np__ctx *ctx, void *lo, size_t size, void (*fn)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 176);
    memset(sp, 0, 176);
    sp[0] = (uint64_t)fn;                  /* x19 */
    sp[1] = (uint64_t)arg;                 /* x20 */
    sp[10] = 0;                            /* x29 */
    sp[11] = (uint64_t)np__ctx_trampoline; /* x30 */
    sp[20] = 0;                            /* FPCR: default */
    __atomic_store_n(&ctx->sp, (void *)sp, __ATOMIC_RELAXED); /* np__ctx_prefetch */
}

const char *np__ctx_kind(void)
{
    return "asm-aarch64";
}

#else
#error "no hand-written context switch for this architecture: configure with -DNP_CONTEXT=ucontext"
#endif
