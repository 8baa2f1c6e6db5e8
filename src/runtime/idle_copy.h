/* Memory for idle stacks' copies: a slab allocator whose only call that
 * takes the mmap lock for writing is one mmap per 256 MiB (idle_copy.c
 * says why). */
#ifndef NP_IDLE_COPY_H
#define NP_IDLE_COPY_H

#include <stddef.h>

/* len bytes, 16-byte aligned, or NULL. */
void *np__idle_copy_alloc(size_t len);
/* Gives back what np__idle_copy_alloc returned (NULL: nothing). */
void np__idle_copy_free(void *p);
/* Releases the memory of every empty slab, kept or waiting (end of
 * np_run, tests). */
void np__idle_copy_flush(void);
/* Slabs whose memory may be resident (tests). */
long np__idle_copy_slabs(void);

#endif
