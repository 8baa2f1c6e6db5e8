/*
 * pollsem.pml -- Promela model of one direction semaphore (the read side)
 * of a netpoll descriptor, checked with SPIN by tests/model/check.sh.
 *
 * ------------------------------------------------------------------------
 * The semaphore
 * ------------------------------------------------------------------------
 * `sem` is a single word that is only ever touched with atomic load, store,
 * compare-and-swap and swap.  It holds one of:
 *
 *   S_NIL     nothing pending, nobody waiting
 *   S_READY   the poller reported readiness that no waiter has consumed yet
 *   S_WAIT    a waiter has announced that it is about to sleep, but has not
 *             committed yet (it is still re-checking the error bits)
 *   S_WAITER  the waiter is asleep; in C this is the waiter's own pointer.
 *             There is a single waiter per direction, so one value suffices.
 *
 * Transitions (who may move the word, and how):
 *
 *   waiter  reset       store NIL          (only when no error is published;
 *                                            drops a stale READY)
 *   waiter  announce    CAS READY->NIL     (consume: the wait succeeds at once)
 *                       CAS NIL->WAIT      (then re-check errors)
 *                       any other value here means two waiters: abort
 *   waiter  commit      CAS WAIT->WAITER   (fails if a waker got in between;
 *                                            then the waiter does not sleep)
 *   waiter  finish      SWAP(NIL); the wait succeeded iff the old value was
 *                       READY.  The old value can never be WAITER.
 *   poller  ready       loop: READY stays READY; otherwise CAS old->READY and,
 *                       if old was WAITER, wake that waiter.
 *   close / deadline    under the descriptor lock: set the lock-protected
 *           unblock     field, publish the summary bits, then loop: READY and
 *                       NIL are left alone; otherwise CAS old->NIL and, if old
 *                       was WAITER, wake the waiter (after dropping the lock).
 *   set deadline into   under the lock: clear the expired bit and publish.  A
 *   the future          waiter already woken by the timeout just finds no error
 *                       and waits again.
 *
 * The summary bits (pub_closing, pub_rexp) are what the lock-free waiter
 * reads; "publish" copies the lock-protected fields into them in one atomic
 * step.  The ordering that makes the protocol work is the mirror image on
 * both sides:
 *     waiter: write WAIT   then read the summary bits
 *     closer: write bits   then read the semaphore
 * so at least one of the two sees the other's write.
 *
 * A sleeping waiter is modelled with a binary wake-up token `tok`: a waker
 * sets it, the waiter blocks until it is set and then consumes it.
 *
 * ------------------------------------------------------------------------
 * Actors
 * ------------------------------------------------------------------------
 *   Waiter   NWAITS consecutive I/O waits (reset + wait loop), modelling reuse
 *            of the descriptor across calls.
 *   Poller   up to NREADY readiness notifications, at arbitrary times; it may
 *            stop early.
 *   Closer   closes the descriptor exactly once, at an arbitrary time (so the
 *            waiter always has something that eventually ends its last wait).
 *   Timer    up to NEXPIRE read-deadline expiries (the first deadline, and the
 *            re-armed one after a move into the future).  An expiry that
 *            finds the descriptor closed or already expired is a stale timer
 *            and does nothing.
 *   Setter   NUNEXPIRE moves of the read deadline into the future.
 *   Monitor  checks the global invariants below in every reachable state.
 *
 * ------------------------------------------------------------------------
 * Properties
 * ------------------------------------------------------------------------
 *   Lost wake-up (end state): the waiter's sleep carries no `end` label, and
 *       every other actor terminates, so a waiter that is asleep when nothing
 *       else can move is reported by pan as an "invalid end state".  Because
 *       close always happens, this catches every interleaving in which close
 *       fails to wake a sleeper.
 *   INV_HANDOFF: while the waiter sleeps and no waker has claimed it, the
 *       semaphore still says WAITER -- i.e. whoever takes WAITER out of the
 *       word is the one that must wake it, and nobody else can.
 *   INV_READY: a readiness notification is never lost: while one is pending
 *       (delivered by the poller, not yet consumed by the waiter or dropped by
 *       a reset) the word says READY.  Together with INV_HANDOFF this means a
 *       sleeper never coexists with an unconsumed readiness.
 *   INV_CLOSE (no parking after close): the waiter is never asleep, unclaimed,
 *       while closing is published and the closer has already finished its
 *       unblock -- that sleeper would have nobody left to wake it.
 *   INV_DEADLINE: the same for an expired (and still expired) read deadline
 *       whose unblock has already run.
 *   INV_TOKEN, and the assertions in wake(): the token is only ever set for a
 *       sleeping, claimed waiter, and at most once per sleep (no double ready).
 *   Result correctness (asserted by the waiter when a wait returns):
 *       E_CANCELED  => the descriptor was closed;
 *       E_TIMEDOUT  => the read deadline had expired at some point;
 *       E_OK        => the poller delivered readiness since the last reset.
 *   Sanity: the waiter never finds a foreign value when announcing ("double
 *       wait"), never swaps out WAITER, and a reset never overwrites WAIT or
 *       WAITER.
 *   With -DLTL the file also carries  [] (parked -> <> !parked).
 *
 * ------------------------------------------------------------------------
 * Deliberately broken variants (check.sh proves each one is caught)
 * ------------------------------------------------------------------------
 *   BROKEN=1  the waiter skips the error re-check after writing WAIT.
 *   BROKEN=2  close / deadline expiry unblock BEFORE publishing the bits.
 *   BROKEN=3  the waiter commits with a plain store instead of CAS WAIT->WAITER,
 *             overwriting a concurrent READY or NIL.
 *   BROKEN=4  the waiter finishes with a load followed by a separate store of
 *             NIL instead of one swap, so a READY that lands in between is
 *             wiped.  The waiter then just waits again until a later event
 *             (in the model close always comes), so nothing hangs and no
 *             result is wrong: only INV_READY notices the lost notification.
 *
 * ------------------------------------------------------------------------
 * Notes on what the checker shows (all hold for the correct model)
 * ------------------------------------------------------------------------
 *   - The re-check after WAIT and the CAS commit each close a different
 *     window.  Without the re-check (BROKEN=1) a close whose unblock ran
 *     while the word was still NIL is missed.  Without the CAS (BROKEN=3) a
 *     close whose unblock turned WAIT into NIL after the re-check is missed.
 *   - A wait can return success after close has been published: readiness
 *     that reached the word first (a READY, or the poller claiming the
 *     sleeper) wins, because unblock leaves READY alone.  Callers must not
 *     read success as "not closed", and the OS descriptor must stay valid
 *     until in-flight waits return.
 *   - E_TIMEDOUT can be returned when the deadline has just been moved back
 *     into the future; a waiter woken by an expiry that was undone before it
 *     ran finds no error and sleeps again (that retry path is reachable).
 *   - Reset throws away a READY delivered before it.  That is only safe
 *     because the caller resets BEFORE trying the I/O (not modelled here);
 *     resetting after EAGAIN would lose an edge.
 *   - The liveness check passes without weak fairness (and with it): no actor
 *     loops forever, so the only infinite runs are the final state repeated.
 */

#ifndef BROKEN
#define BROKEN 0
#endif
#ifndef NWAITS
#define NWAITS 2
#endif
#ifndef NREADY
#define NREADY 2
#endif
#ifndef NEXPIRE
#define NEXPIRE 2
#endif
#ifndef NUNEXPIRE
#define NUNEXPIRE 1
#endif

#define S_NIL    0
#define S_READY  1
#define S_WAIT   2
#define S_WAITER 3

#define E_OK       0
#define E_CANCELED 1
#define E_TIMEDOUT 2

/* ---- real state ------------------------------------------------------- */
byte sem = S_NIL;     /* the read semaphore */

bit lk;               /* descriptor lock */
bit closing;          /* lock-protected: descriptor closed */
bit rd_expired;       /* lock-protected: read deadline in the past */

bit pub_closing;      /* published summary, read without the lock */
bit pub_rexp;

bit tok;              /* the waiter's wake-up token */

/* ---- ghost state (observation only; never read by the algorithm) ------- */
bit parked;           /* waiter committed to sleep, token not yet consumed */
bit handed;           /* a waker took WAITER out of sem and must wake it */
byte wakes;           /* wakes delivered during the current sleep */
bit rdy_pend;         /* readiness delivered and not yet consumed/reset */
bit rdy_since_reset;  /* poller delivered readiness since the last reset */
bit expired_ever;     /* the read deadline expired at least once */
bit close_unblocked;  /* closer has finished its unblock of sem */
bit exp_unblocked;    /* the current expiry has finished its unblock */

/* ---- invariants -------------------------------------------------------- */
#define SLEEPING      (parked && !handed)
#define INV_HANDOFF   (!SLEEPING || sem == S_WAITER)
#define INV_READY     (!rdy_pend || sem == S_READY)
#define INV_CLOSE     (!(SLEEPING && pub_closing && close_unblocked))
#define INV_DEADLINE  (!(SLEEPING && pub_rexp && exp_unblocked))
#define INV_TOKEN     (!tok || (parked && handed))
#define INV (INV_HANDOFF && INV_READY && INV_CLOSE && INV_DEADLINE && INV_TOKEN)

/* ---- primitives -------------------------------------------------------- */
inline lock()   { atomic { lk == 0 -> lk = 1 } }
inline unlock() { lk = 0 }

inline publish() {
	atomic { pub_closing = closing; pub_rexp = rd_expired }
}

/* one atomic load of the summary word */
inline checkerr(e) {
	atomic {
		if
		:: pub_closing               -> e = E_CANCELED
		:: !pub_closing && pub_rexp  -> e = E_TIMEDOUT
		:: else                      -> e = E_OK
		fi
	}
}

/* deliver the wake-up token to the (claimed) sleeping waiter */
inline wake() {
	atomic {
		wakes++;
		assert(wakes == 1);            /* no double ready within one sleep */
		assert(parked && handed && !tok);
		tok = 1
	}
}

/* close / deadline unblock (ioready == false); caller holds the lock.
 * `w` is set if this caller claimed the sleeper; `doneflag` is the ghost
 * recording that the unblock has reached its decision. */
inline unblock_err(w, doneflag) {
	w = 0;
	do
	:: atomic {
		old = sem;
		if
		:: old == S_READY || old == S_NIL -> doneflag = 1
		:: else
		fi
	   }
	   if
	   :: old == S_READY || old == S_NIL -> break
	   :: else ->
		atomic {
			if
			:: sem == old ->
				sem = S_NIL;
				if
				:: old == S_WAITER -> assert(!handed); handed = 1; w = 1
				:: else
				fi;
				doneflag = 1;
				cas = 1
			:: else -> cas = 0
			fi
		}
		if
		:: cas -> break
		:: else
		fi
	   fi
	od;
	old = 0; cas = 0
}

/* poller readiness (ioready == true) */
inline ready(w) {
	w = 0;
	do
	:: atomic { old = sem }
	   if
	   :: old == S_READY -> break
	   :: else ->
		atomic {
			if
			:: sem == old ->
				sem = S_READY;
				rdy_pend = 1;
				rdy_since_reset = 1;
				if
				:: old == S_WAITER -> assert(!handed); handed = 1; w = 1
				:: else
				fi;
				cas = 1
			:: else -> cas = 0
			fi
		}
		if
		:: cas -> break
		:: else
		fi
	   fi
	od;
	old = 0; cas = 0
}

/* the waiter's block step; res = 1 iff readiness was consumed */
inline park(res) {
	res = 0;
	/* announce: consume READY, or move NIL -> WAIT */
	do
	:: atomic {
		if
		:: sem == S_READY -> sem = S_NIL; rdy_pend = 0; cas = 1
		:: else -> cas = 0
		fi
	   }
	   if
	   :: cas -> res = 1; break
	   :: else
	   fi;
	   atomic {
		if
		:: sem == S_NIL -> sem = S_WAIT; cas = 1
		:: else -> cas = 0
		fi
	   }
	   if
	   :: cas -> break
	   :: else
	   fi;
	   atomic { old = sem; assert(old == S_READY || old == S_NIL) } /* double wait */
	od;
	if
	:: res -> skip
	:: else ->
#if BROKEN == 1
		e = E_OK;               /* BROKEN: no re-check after WAIT */
#else
		checkerr(e);            /* re-check after writing WAIT */
#endif
		if
		:: e == E_OK ->
#if BROKEN == 3
			atomic {        /* BROKEN: commit with a plain store */
				sem = S_WAITER; parked = 1; wakes = 0; cas = 1
			}
#else
			atomic {        /* commit: CAS WAIT -> WAITER */
				if
				:: sem == S_WAIT ->
					sem = S_WAITER; parked = 1; wakes = 0; cas = 1
				:: else -> cas = 0
				fi
			}
#endif
			if
			:: cas ->
				/* asleep: no end label here on purpose */
				atomic { tok == 1 -> tok = 0; parked = 0; handed = 0 }
			:: else
			fi
		:: else
		fi;
		/* finish: swap NIL in, keep a concurrent READY */
#if BROKEN == 4
		atomic { old = sem }    /* BROKEN: load, then a separate store */
		atomic {
			sem = S_NIL;
#else
		atomic {
			old = sem;
			sem = S_NIL;
#endif
			assert(old != S_WAITER);        /* corrupted semaphore */
			if
			:: old == S_READY -> rdy_pend = 0; res = 1
			:: else -> res = 0
			fi
		}
	fi;
	old = 0; cas = 0
}

/* ---- actors ------------------------------------------------------------ */
active proctype Waiter() {
	byte it, e, old;
	bit cas, res;

	do
	:: it < NWAITS ->
		it++;
		checkerr(e);                                    /* reset */
		if
		:: e == E_OK ->
			atomic {
				assert(sem == S_NIL || sem == S_READY);
				sem = S_NIL; rdy_pend = 0; rdy_since_reset = 0
			}
			checkerr(e);                            /* wait */
			if
			:: e == E_OK ->
				do
				:: park(res);
				   if
				   :: res -> break
				   :: else ->
					checkerr(e);
					if
					:: e != E_OK -> break
					:: else  /* woken by an un-expired deadline: retry */
					fi
				   fi
				od
			:: else
			fi
		:: else
		fi;
		/* result correctness */
		if
		:: e == E_CANCELED -> assert(closing)
		:: e == E_TIMEDOUT -> assert(expired_ever)
		:: e == E_OK       -> assert(res && rdy_since_reset)
		fi;
		e = 0; res = 0
	:: else -> break
	od
}

active proctype Poller() {
	byte n, old;
	bit w, cas;

	do
	:: n < NREADY ->
		n++;
		ready(w);
		if
		:: w -> wake(); w = 0
		:: else
		fi
	:: break
	od
}

active proctype Closer() {
	byte old;
	bit w, cas;

	atomic { lk == 0 -> lk = 1; assert(!closing); closing = 1 }
#if BROKEN == 2
	unblock_err(w, close_unblocked);   /* BROKEN: unblock before publish */
	publish();
#else
	publish();
	unblock_err(w, close_unblocked);
#endif
	unlock();
	if
	:: w -> wake()
	:: else
	fi
}

active proctype Timer() {
	byte i, old;
	bit w, cas;

	do
	:: i < NEXPIRE ->
		i++;
		lock();
		if
		:: closing || rd_expired -> skip        /* stale timer */
		:: else ->
			rd_expired = 1; expired_ever = 1;
#if BROKEN == 2
			unblock_err(w, exp_unblocked);
			publish();
#else
			publish();
			unblock_err(w, exp_unblocked);
#endif
		fi;
		unlock();
		if
		:: w -> wake(); w = 0
		:: else
		fi
	:: else -> break
	od
}

active proctype Setter() {
	byte i;

	do
	:: i < NUNEXPIRE ->
		i++;
		lock();
		if
		:: closing -> skip
		:: else ->
			rd_expired = 0;
			atomic { publish(); exp_unblocked = 0 }
		fi;
		unlock()
	:: else -> break
	od
}

active proctype Monitor() {
end_mon:
	atomic {
		!(INV) ->
			assert(INV_HANDOFF);
			assert(INV_READY);
			assert(INV_CLOSE);
			assert(INV_DEADLINE);
			assert(INV_TOKEN)
	}
}

#ifdef LTL
ltl sleeper_wakes { [] (parked -> <> !parked) }
#endif
