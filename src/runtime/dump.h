/* np_dump's signal (np_config.dump_signal): installed by np_run for the
 * length of the run. See dump.c. */
#ifndef NP_DUMP_H
#define NP_DUMP_H

#include <stdbool.h>

/* Whether sig may be a dump signal: 0 (none), or a catchable signal the
 * runtime does not use itself (not SIGSEGV, SIGKILL, SIGSTOP). */
bool np__dump_signal_valid(int sig);

/* Installs the handler (sig 0: nothing); np__dump_signal_remove puts the
 * previous one back unless the program has replaced ours meanwhile. */
void np__dump_signal_install(int sig);
void np__dump_signal_remove(void);

#endif
