/* Backtraces of suspended tasks, for np_dump: a frame-pointer walk over
 * memory that may change or go away while it is read, and names for the
 * addresses it finds.
 *
 * Everything here is meant to run in a signal handler: no malloc, no stdio,
 * no locks of ours. Memory of other tasks is read through the kernel
 * (os.h's np__os_read_self: process_vm_readv on Linux, vm_read_overwrite on
 * macOS), which fails with EFAULT instead of faulting (and is not
 * seen by the sanitizers, which would otherwise report reads of another
 * fiber's stack); where that call is refused (seccomp, qemu-user), plain
 * reads, bounded by the task's stack, are used instead (and on FreeBSD).
 *
 * Names: dladdr1 gives the exported symbol and its size; an address inside
 * no exported symbol (a static function, the library's hidden ones, a
 * program not linked with -rdynamic) is looked up in the file's .symtab,
 * mapped for the length of one dump (Linux; elsewhere dladdr alone, which
 * names the nearest symbol below). Without either: module+offset.
 */
#ifndef NP_BACKTRACE_H
#define NP_BACKTRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How to read memory that is not ours to trust. A window [moved_at,
 * moved_at + moved_len) is read from moved_copy instead: a stack the idle
 * sweep moved out (idle_stack.h) is walked in its copy. */
typedef struct np__peeker {
    bool direct;             /* np__os_read_self refused: plain reads */
    uintptr_t moved_at, moved_copy;
    size_t moved_len;
} np__peeker;

void np__peeker_init(np__peeker *p);
bool np__peek(void *peeker, uintptr_t addr, void *out, size_t n); /* an np__peek_fn */

/* Walks the frame-pointer chain from (pc, fp): out[0] = pc, then each
 * frame's return address, while the frame records stay inside [lo, hi),
 * aligned and going up. Returns the number of addresses (at most max). */
int np__fp_walk(np__peeker *p, uintptr_t pc, uintptr_t fp, uintptr_t lo, uintptr_t hi,
                uintptr_t *out, int max);

/* Names for addresses, with what one dump has mapped and found so far. */
#define NP__SYM_MODULES 8
#define NP__SYM_CACHE 64
typedef struct np__symmod {
    uintptr_t base;          /* dli_fbase */
    const void *map;         /* the file, mapped; NULL if it had no .symtab */
    size_t map_len;
    const void *syms;        /* ElfW(Sym)[nsyms] */
    size_t nsyms;
    const char *strs;
    size_t strs_len;
    bool relative;           /* ET_DYN: symbol values are offsets from base */
} np__symmod;

typedef struct np__syms {
    np__symmod mod[NP__SYM_MODULES];
    int nmod;
    struct {
        uintptr_t pc;
        const char *name;    /* NULL: not found */
        uintptr_t start;
        const char *module;
        uintptr_t base;
    } cache[NP__SYM_CACHE];
} np__syms;

void np__syms_init(np__syms *s);
void np__syms_fini(np__syms *s); /* unmaps the files */

/* Finds pc's function. *name: its symbol (NULL if none) and *off the
 * offset into it; else *module (a file name, maybe NULL) and *off the
 * offset into that. A return address is looked up one byte back, so that
 * a call at a function's very end names that function. */
void np__symbolize(np__syms *s, uintptr_t pc, bool is_return, const char **name,
                   const char **module, uintptr_t *off);

#endif
