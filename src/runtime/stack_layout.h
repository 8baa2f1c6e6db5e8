/* Task stacks: what stack.c (the layouts' common part and the MAPPED
 * fallback) and stack_carved.c (the CARVED layout) share. Private to the
 * two; the rest of the runtime uses stack.h. */
#ifndef NP_STACK_LAYOUT_H
#define NP_STACK_LAYOUT_H

#include <stddef.h>

#include "runtime/stack.h"

/* Debian 12's headers predate them (Linux 6.13). */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MADV_GUARD_REMOVE
#define MADV_GUARD_REMOVE 103
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef PIDFD_SELF_THREAD
#define PIDFD_SELF_THREAD (-10000) /* Linux 6.15: "this process" for pidfd calls */
#endif

/* Guard region, stack and header: a slot's bytes for a stack of
 * stack_size (stack.c). */
size_t np__stack_slot_size(size_t stack_size);
/* Fills in the header of a slot whose memory is readable and writable
 * (stack.c); c is its chunk, NULL for a mapping of its own. */
np__stack *np__stack_slot_init(char *slot, size_t size, struct np__stack_chunk *c);
/* A stack in a mapping of its own, its guard PROT_NONE (stack.c): the
 * fallback, and a chunk's when the kernel refuses guard markers. */
np__stack *np__stack_mapped_map(size_t stack_size);

/* The CARVED layout (stack_carved.c). */
np__stack *np__stack_carved_map(size_t stack_size);
void np__stack_carved_unmap(np__stack *s);

#endif
