/* Context switch, AArch64 (AAPCS64). See context.h for the frame layout.
 * void np__ctx_switch(np__ctx *from, np__ctx *to): x0 = from, x1 = to.
 * Saves the callee-saved x19-x28, fp, lr, the low halves of v8-v15 (d8-d15)
 * and FPCR. */
#include "runtime/ctx_asm.h"

    .text
    .globl NP_ASM_NAME(np__ctx_switch)
    NP_ASM_HIDDEN(np__ctx_switch)
    NP_ASM_TYPE(np__ctx_switch)
    .p2align 4
NP_ASM_NAME(np__ctx_switch):
    .cfi_startproc
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mrs x9, fpcr
    str x9, [sp, #160]
    mov x9, sp
    str x9, [x0]
    ldr x9, [x1]
    mov sp, x9
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    ldr x9, [sp, #160]
    msr fpcr, x9
    add sp, sp, #176
    ret
    .cfi_endproc
    NP_ASM_SIZE(np__ctx_switch)

/* First frame of a new context: np__ctx_make put fn in x19 and arg in x20
 * and this address in lr. */
    .globl NP_ASM_NAME(np__ctx_trampoline)
    NP_ASM_HIDDEN(np__ctx_trampoline)
    NP_ASM_TYPE(np__ctx_trampoline)
    .p2align 4
NP_ASM_NAME(np__ctx_trampoline):
    .cfi_startproc
    .cfi_undefined x30
    mov x29, #0
    mov x0, x20
    blr x19
    brk #0              /* fn must not return */
    .cfi_endproc
    NP_ASM_SIZE(np__ctx_trampoline)

    NP_ASM_NOEXEC_STACK
