/*
 * handoff.pml -- Promela model of how a processor (a worker's queues and
 * caches, Go's P) changes hands between threads (Go's M) when the monitor
 * retakes it from a thread stuck in one task.  Checked with SPIN by
 * tests/model/check.sh.  The C is src/runtime/handoff.h and monitor.c.
 *
 * ------------------------------------------------------------------------
 * The ownership word
 * ------------------------------------------------------------------------
 * A processor has one word, `own`, only ever changed with atomic store and
 * compare-and-swap.  It says who may touch the processor's contents (run
 * queue, runnext, stack and struct caches, tick counters):
 *
 *   HELD(m)   thread m runs the scheduler on it: only m touches it.
 *   LENT(m)   thread m runs a task's own code; the processor is untouched
 *             meanwhile and may be taken from m.
 *
 * In C the word also carries a sequence number, bumped by every change, so
 * the monitor can tell "LENT for 20 ms" from "LENT again"; that serves stall
 * detection only, not safety, and is left out here (a retake that the
 * sequence would have prevented takes a processor from a task that was not
 * stuck: harmless, it just becomes a spare thread).
 *
 * Transitions:
 *
 *   m      lend      store LENT(m)         only from HELD(m): m is the only
 *                                          writer while it holds
 *   m      hold      CAS LENT(m)->HELD(m)  at every scheduling point of the
 *                                          task (park, yield, exit, readying
 *                                          or starting another task)
 *          on failure the processor was retaken: m never touches it again;
 *          its task goes to the global queue and m becomes a spare thread
 *   monitor retake   CAS LENT(m)->HELD(s)  s: a spare thread taken off the
 *                                          spare list first (put back if
 *                                          the CAS fails); then s's wake
 *                                          word is set and s is woken
 *
 * Nothing else moves the word; in particular nobody takes a HELD processor
 * (a thread in the scheduler is short, or idle with nothing to hand over).
 *
 * A spare thread sleeps on its own wake word (a futex): it waits until the
 * word is set, then looks at whether it was handed a processor; at the end
 * of the run it is woken without one and exits.
 *
 * What is checked:
 *   - at most one thread touches the processor at a time (`inside`);
 *   - a thread that finds its processor gone is not the owner, and a thread
 *     woken with a processor is its owner (assertions);
 *   - tasks are conserved: every task is in the run queue, the global
 *     queue, on a thread, or finished (assertion at every step it moves);
 *   - no thread waits for ever: every run ends with every task finished and
 *     every thread (spares included) gone (SPIN's invalid end states).
 * Mutants (MUTANT=n) must each be caught:
 *   1  hold is a load then a store, not a CAS        -> two inside
 *   2  the monitor also retakes a HELD processor      -> two inside
 *   3  the monitor hands over without waking the spare -> invalid end state
 *   4  the monitor wakes the spare before it publishes the new owner
 *      (the spare sees no processor and goes back to sleep / exits)
 *                                                     -> invalid end state
 */

#define NM     3          /* threads: 0 starts with the processor, 1 and 2 spare */
#define NT     2          /* tasks */
#define NONE   255
#ifndef MUTANT
#define MUTANT 0
#endif

mtype = { HELD, LENT };

mtype kind = HELD;        /* the ownership word: kind and owner */
byte  owner = 0;
byte  inside = 0;         /* threads touching the processor's contents */

byte  runq = NT;          /* tasks in the processor's run queue */
byte  gq = 0;             /* tasks in the global queue */
byte  oncpu = 0;          /* tasks being run by some thread */
byte  finished = 0;
bool  done = false;       /* every task finished: the run ends */

bool  spare[NM];          /* on the spare list (under the scheduler lock) */
bool  wake[NM];           /* a spare's wake word */
byte  given[NM];          /* a spare's processor, NONE if none */

inline conserved() {
	assert(runq + gq + oncpu + finished == NT)
}

inline touch() {
	inside++;
	assert(inside == 1);
	inside--
}

/* A thread: holds the processor in the scheduler, lends it while a task
 * runs, takes it back at the task's next scheduling point. */
proctype Thread(byte me; bool has)
{
	bool ok;
	if
	:: has -> goto sched
	:: else -> goto sparewait
	fi;

sched:	/* HELD(me): take a task, or end, or wait for one */
	assert(kind == HELD && owner == me);
	touch();
	if
	:: atomic { runq > 0 -> runq--; oncpu++ }
	:: atomic { runq == 0 && gq > 0 -> gq--; oncpu++ }
	:: atomic { runq == 0 && gq == 0 && done } -> goto out
	fi;
	conserved();
	/* switch to the task: lend (one store of the whole word) */
	atomic { kind = LENT; owner = me };

	/* the task's own code runs here, for as long as it likes; then it
	 * reaches a scheduling point (finishes or yields) and takes the
	 * processor back */
#if MUTANT == 1
	if
	:: kind == LENT && owner == me -> kind = HELD; ok = true
	:: else -> ok = false
	fi;
#else
	atomic {
		if
		:: kind == LENT && owner == me -> kind = HELD; ok = true
		:: else -> ok = false
		fi
	}
#endif
	if
	:: ok ->
		touch();
		if
		:: atomic { oncpu--; runq++ }             /* yield: back in the queue */
		:: atomic { oncpu--; finished++; done = (finished == NT) }
		fi;
		conserved();
		goto sched
	:: else ->
		/* retaken: never touch it again; the task goes global */
		assert(owner != me);
		if
		:: atomic { oncpu--; gq++ }
		:: atomic { oncpu--; finished++; done = (finished == NT) }
		fi;
		conserved();
		/* onto the spare list, under the lock that the last task's exit
		 * takes to wake the spares: either it sees us, or we see done */
		atomic { spare[me] = true; wake[me] = done }
	fi;

sparewait:
	/* futex wait: until the wake word is set; consume it, then look */
	atomic { wake[me] -> wake[me] = false };
	if
	:: given[me] != NONE ->
		given[me] = NONE;
		assert(kind == HELD && owner == me);
		goto sched
	:: else ->
		if
		:: done -> goto out
		:: else -> goto sparewait   /* woken for nothing: sleep again */
		fi
	fi;
out:
	skip
}

/* The monitor: retakes a lent processor (here: any time it finds one; in C,
 * after stall_ns with the same sequence) and hands it to a spare thread.
 * At the end it wakes every spare so they exit. */
proctype Monitor()
{
	byte s, o;
	bool ok;
	do
	:: done -> break
	:: !done ->
		o = owner;
#if MUTANT != 2
		if :: kind == LENT :: else -> goto next fi;
#endif
		/* a spare off the list, under the lock */
		atomic {
			if
			:: spare[0] -> s = 0
			:: spare[1] -> s = 1
			:: spare[2] -> s = 2
			:: else -> s = NONE
			fi;
			if :: s != NONE -> spare[s] = false :: else fi
		}
		if :: s == NONE -> goto next :: else fi;
#if MUTANT == 4
		wake[s] = true;
		atomic {
			if
			:: (kind == LENT && owner == o) -> owner = s; kind = HELD; ok = true
			:: else -> ok = false
			fi
		}
		if :: ok -> given[s] = s :: else fi;
#elif MUTANT == 2
		atomic {
			if
			:: owner == o -> owner = s; kind = HELD; ok = true
			:: else -> ok = false
			fi
		}
#else
		atomic {
			if
			:: (kind == LENT && owner == o) -> owner = s; kind = HELD; ok = true
			:: else -> ok = false
			fi
		}
#endif
		if
		:: ok ->
#if MUTANT != 4
			given[s] = s;
#if MUTANT != 3
			wake[s] = true
#else
			skip
#endif
#endif
		:: else ->
			atomic { spare[s] = true }    /* back on the list */
		fi;
next:		skip
	od;
	/* the end: wake every spare (under the lock) */
	atomic {
		wake[0] = wake[0] || spare[0];
		wake[1] = wake[1] || spare[1];
		wake[2] = wake[2] || spare[2]
	}
}

init {
	given[0] = NONE; given[1] = NONE; given[2] = NONE;
	spare[1] = true; spare[2] = true;
	atomic {
		run Thread(0, true);
		run Thread(1, false);
		run Thread(2, false);
		run Monitor()
	}
}
