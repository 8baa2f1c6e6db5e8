/* Object-format directives for the context-switch assembly (ctx_*.S), so
 * that one source serves ELF (Linux, the BSDs) and Mach-O (macOS):
 *
 *   ELF      name as written; .hidden; .type and .size for debuggers and
 *            profilers; a .note.GNU-stack section (no executable stack)
 *   Mach-O   C names take a leading underscore; .private_extern is hidden;
 *            there are no symbol types, sizes or stack notes
 *
 * Preprocessor macros, one directive each: Apple's AArch64 assembler takes
 * ';' for a comment, so no macro may expand to two statements. */
#ifndef NP_CTX_ASM_H
#define NP_CTX_ASM_H

#if defined(__APPLE__)
#define NP_ASM_NAME(n) _##n
#define NP_ASM_HIDDEN(n) .private_extern _##n
#define NP_ASM_TYPE(n)
#define NP_ASM_SIZE(n)
#define NP_ASM_NOEXEC_STACK
#else
#define NP_ASM_NAME(n) n
#define NP_ASM_HIDDEN(n) .hidden n
#define NP_ASM_TYPE(n) .type n, %function
#define NP_ASM_SIZE(n) .size n, .-n
#define NP_ASM_NOEXEC_STACK .section .note.GNU-stack, "", %progbits
#endif

#endif
