/*
 * chan.pml -- Promela model of channel send / receive / close / select under
 * the coordination-wait protocol of src/sync/wait.h, checked with SPIN by
 * tests/model/check.sh.
 *
 * ------------------------------------------------------------------------
 * What is modelled
 * ------------------------------------------------------------------------
 * Records (one per owner, i.e. per task or thread that may block):
 *   claim word  cseq[r] | cst[r]: the wait's sequence number and its state
 *               OPEN, PARKED, CLAIMING, DONE, TIMEDOUT.  Every transition is
 *               one atomic step (a CAS whose expected value carries the seq).
 *   winner[r]   the select case that won (written by the claiming waker)
 *   rdy[r]      the wake-up flag a parked owner blocks on ("ready")
 *   tarm[r]     the deadline timer: the seq it is armed with (0: disarmed)
 *
 * Nodes (on the owner's stack; two slots per owner, one per select case):
 *   node r*2+i belongs to owner r, case i.  nseq (the wait it belongs to),
 *   nlinked, nelem (the element: to send, or received), nres (outcome).
 *
 * Channels: lock clk[c], closed[c], capacity cap[c] (0 or 1), the buffer
 *   (cnt[c], buf[c]) and two FIFO queues of nodes, sendq SQ(c) and recvq
 *   RQ(c), touched only under clk[c].
 *
 * Operations, Go's chansend / chanrecv / selectgo / closechan with wait.h's
 * claim word in place of selectDone:
 *   op      begin (seq+1 | OPEN, no lock); lock the channels of all cases in
 *           channel order; poll the cases in order (a send: closed -> CLOSED;
 *           claim the first claimable receiver and hand it the element; else
 *           room in the buffer.  A receive: an element in the buffer -- then
 *           claim the first claimable sender and move its element into the
 *           buffer; else closed -> CLOSED; else claim the first claimable
 *           sender and take its element).  Nothing ready: link one node per
 *           case, arm the deadline, park.
 *   park    commit: release the queue locks (the owner has switched away),
 *           then CAS OPEN -> PARKED; if that fails the owner does not sleep.
 *           Parked: block until rdy (no end label: a lost wake-up is an
 *           invalid end state).
 *   finish  wait while CLAIMING; DONE: take the outcome from the winning
 *           node; TIMEDOUT: lock the queues, unlink the nodes still linked.
 *           Then a select (DONE too) locks its queues and unlinks the losing
 *           case's node (see SPEC_DONE_NO_UNLINK below).  Stop the timer
 *           (it may already be firing: a stale expiry).  Return: the nodes
 *           die (ghost ndead).
 *   claim   (a waker, queue lock held) take the head node, unlink it, CAS
 *           OPEN|PARKED -> CLAIMING with the node's seq (a failed claim just
 *           drops the node and tries the next), write the outcome, store
 *           DONE, and after unlocking ready the owner iff it was PARKED.
 *   close   lock; closed = 1; claim every receiver, then every sender, with
 *           outcome CLOSED; unlock; ready the parked ones.
 *   expire  (timer, no lock) CAS OPEN|PARKED -> TIMEDOUT if seq matches;
 *           ready iff it was PARKED.
 *
 * ------------------------------------------------------------------------
 * Properties
 * ------------------------------------------------------------------------
 *   Lost wake-up: the parked owner blocks on rdy with no end label, and all
 *     other processes terminate (every channel is closed at some point, so
 *     every wait has something that ends it): an owner left parked is an
 *     invalid end state.  With -DLTL: [] (parked[r] -> <> !parked[r]).
 *   Double wake-up: ready() asserts the owner is parked, was handed to the
 *     readier by a successful claim of its current wait, and is not readied
 *     yet.
 *   One winner: every successful claim or expiry of a wait increments
 *     wins[r]; assert it stays 1 (exactly one case of a select wins, and the
 *     deadline never wins too).  The owner asserts its outcome agrees.
 *   No element lost or duplicated: elements are distinct values 1..NV; the
 *     sender records sok[v] or sfail[v] (closed, timed out, select lost),
 *     receivers record rcv[v] (asserting no duplicate).  When everything has
 *     ended, Checker asserts sok + sfail == 1 and sok == rcv + in-buffer for
 *     every element, and that every queue is empty.  A timed-out or losing
 *     receiver that was handed an element would make it vanish: caught.
 *   No use of a dead node: the owner marks its nodes dead when it returns
 *     (after asserting they are unlinked); every waker access to a node
 *     (taking it from a queue, the claim, writing the outcome, DONE) asserts
 *     it is alive and still the same wait (nseq).
 *   TIMEDOUT only for a wait that armed a deadline (a stale timer must not
 *     end a later wait); CLOSED only on a closed channel.
 *
 * ------------------------------------------------------------------------
 * Scenarios (-DSCENARIO=n)
 * ------------------------------------------------------------------------
 *   1  unbuffered ch0, ch1.  S: select { recv ch0, recv ch1 } with a
 *      deadline, then recv ch1 without one (a stale timer of the select may
 *      still fire; the nodes are reused).  A: send 1 on ch0.  B: send 2 on
 *      ch1.  C: close ch0, close ch1.
 *   2  buffered ch0 (capacity 1).  R: recv with a deadline, then recv.
 *      A: send 1, then send 2 with a deadline (blocks while the buffer is
 *      full; a receiver moves its element into the buffer).  Q: recv (a
 *      second receiver).  C: close ch0 (buffered elements are still
 *      delivered after it; blocked senders get CLOSED).
 *   3  buffered ch0 (capacity 1), unbuffered ch1.  S: select { send 1 on
 *      ch0, recv ch1 } with a deadline.  A: send 2 on ch0.  Q: recv ch0.
 *      B: send 3 on ch1.  C: close ch1, close ch0.
 *   4  unbuffered ch0, ch1: select against select.  S: select { recv ch0,
 *      recv ch1 } with a deadline.  T: select { send 1 on ch0, send 2 on
 *      ch1 }, then recv ch1 (reuses its nodes).  C: close ch0, close ch1.
 *
 * ------------------------------------------------------------------------
 * Mutants (check.sh proves each one is caught)
 * ------------------------------------------------------------------------
 *   MUTANT_NO_READY        a waker that claimed a PARKED owner does not
 *                          ready it (lost wake-up).
 *   MUTANT_NO_TIMER_READY  the timer does not ready a PARKED owner.
 *   MUTANT_CLAIM_NO_SEQ    the timer's CAS ignores seq: a stale timer of an
 *                          earlier wait ends a later one.
 *   MUTANT_NO_SPIN         finish does not wait while CLAIMING: it takes
 *                          the outcome before it is written and returns
 *                          while the waker still writes into its node.
 *   MUTANT_PEEK_UNLINKED   a timed-out owner whose node is already unlinked
 *                          returns without taking the queue lock: a waker
 *                          that unlinked the node may not have claimed it
 *                          yet (it still reads the node's rec and seq).
 *   SPEC_DONE_NO_UNLINK    wait.h's finish taken literally: only TIMEDOUT
 *                          unlinks the owner's nodes, so a select won by one
 *                          case returns with its other case's node still
 *                          linked in the other channel's queue.  Define
 *                          NO_RETURN_CHECK as well to see the consequence
 *                          (a waker taking the dead node) rather than the
 *                          owner's own "all unlinked" assertion.
 *
 * ------------------------------------------------------------------------
 * Coverage points (-DCOVERPT=n turns point n into a failing assertion;
 * check.sh requires each to be reached, in the scenario given)
 * ------------------------------------------------------------------------
 *   1  a waker claims an owner that is still OPEN (before its commit)  S1
 *   2  a failed claim drops a node (timed out, or another case won)    S4
 *   3  a receiver moves a blocked sender's element into the buffer     S3
 *   5  a buffered element is received after close                      S2
 *   6  close claims a blocked sender                                   S4
 *   7  a parked select is woken by its second case                     S1
 *   8  a timed-out owner finds its node already dropped by a waker     S2
 *   9  a stale timer of an earlier wait is turned away by seq          S2
 *   (A PARKED owner readied by a waker and by the timer, a stale timer
 *   reaching a later wait, and an owner finding CLAIMING are shown by the
 *   mutants above.)
 *
 * ------------------------------------------------------------------------
 * What the checker shows
 * ------------------------------------------------------------------------
 *   - wait.h's finish, read literally, is wrong for select: "DONE: take the
 *     outcome" leaves the losing case's node linked in the other channel's
 *     queue when the owner returns (its stack node is then garbage in that
 *     queue; the owner's next wait even finds its own dead node there), and
 *     even "seeing it unlinked" without the lock is not enough: a waker on
 *     that channel may have unlinked it and not yet run its (failing) claim,
 *     which still reads n->rec and n->seq.  Counterexample (S4, T selects
 *     send on ch0 and ch1, C closes both): T links both nodes and releases
 *     the locks; C's close(ch0) claims T's ch0 node while T is still OPEN
 *     and stores DONE; close(ch1) takes T's ch1 node from ch1's sendq and
 *     unlinks it; T's commit fails (DONE), finish returns CLOSED for case 0
 *     and the stack frame is gone; close(ch1) now reads the node's rec and
 *     seq for its claim.  The fix modelled here (Go's selectgo does the
 *     same): after DONE, a wait with more than one node locks every queue
 *     (in lock order) and unlinks the nodes still linked, exactly as for
 *     TIMEDOUT.  A single-node wait needs no lock on DONE: its only node
 *     was unlinked by the winner before DONE.
 *   - The timed-out owner must take the queue lock even when its node is
 *     already unlinked (MUTANT_PEEK_UNLINKED): np__wq_claim_first unlinks
 *     before it claims.
 *   - The seq in the timer's CAS matters: without it a timer of an earlier
 *     wait, already firing when np__timer_stop ran, times out the next wait
 *     (which had no deadline) -- MUTANT_CLAIM_NO_SEQ.
 *
 * Not modelled: memory ordering (the model is sequentially consistent: the
 * release on DONE / acquire in finish is assumed), free (a waker like
 * close), np__wait_expired (a deadline already past), select cases on the
 * same channel, a random poll order (cases are polled in order), and a
 * cond-style park that releases the queue lock before parking.
 */

#ifndef SCENARIO
#define SCENARIO 1
#endif

#define NCH   2
#define NOWN  4               /* owners (records) */
#define NN    8               /* nodes: 2 per owner */
#define QMAX  3               /* nodes per queue */
#define NV    4               /* element values 1..3 (0: none) */
#define NONE  255

/* claim word states (wait.h) */
#define OPEN     0
#define PARKED   1
#define CLAIMING 2
#define DONE     3
#define TIMEDOUT 4

/* results */
#define R_OK       1
#define R_CLOSED   2
#define R_TIMEDOUT 3

/* case kinds */
#define SEND 0
#define RECV 1

#define SQ(c) ((c) * 2)
#define RQ(c) ((c) * 2 + 1)

/* ---- real state ------------------------------------------------------- */
bit  clk[NCH];
bit  closed[NCH];
byte cap[NCH];
byte cnt[NCH];
byte buf[NCH];
byte qn[4 * QMAX];            /* queue q's nodes: qn[q*QMAX .. +qlen[q]-1] */
byte qlen[4];

byte cst[NOWN];
byte cseq[NOWN];
byte winner[NOWN];
bit  rdy[NOWN];
byte tarm[NOWN];

byte nseq[NN];
bit  nlinked[NN];
byte nelem[NN];
byte nres[NN];

/* ---- ghost state ------------------------------------------------------- */
bit  ndead[NN];               /* the owner returned: the node is gone */
bit  parked[NOWN];            /* committed to sleep, not yet woken */
bit  handed[NOWN];            /* a claimer saw PARKED and must ready */
byte wins[NOWN];              /* successful claims/expiries of this wait */
bit  dl[NOWN];                /* this wait armed a deadline */
bit  sok[NV];                 /* element v: its send succeeded */
bit  sfail[NV];               /* element v: its send failed */
bit  rcv[NV];                 /* element v: received */
byte alive;                   /* processes (not timers) still running */
bit  started;                 /* init has run */

/* Coverage: with -DCOVERPT=n, reaching point n is an assertion failure;
 * check.sh requires each point to be reached (the model is not vacuous). */
#ifdef COVERPT
#define COVER(n) ; assert(COVERPT != (n))
#else
#define COVER(n)
#endif

/* ---- primitives -------------------------------------------------------- */
inline lock(c)   { atomic { clk[c] == 0 -> clk[c] = 1 } }
inline unlock(c) { clk[c] = 0 }

/* a waker's access to node m, taken from a queue with seq ms */
#define ALIVE(m, ms) (!ndead[m] && nseq[m] == (ms))

/* remove the entry at index j of queue q (under its lock) */
inline qremove(q, j) {
	do
	:: j + 1 < qlen[q] -> qn[q * QMAX + j] = qn[q * QMAX + j + 1]; j++
	:: else -> break
	od;
	qlen[q]--;
	qn[q * QMAX + qlen[q]] = 0;
	j = 0
}

inline qpush(q, n) {
	assert(qlen[q] < QMAX);
	assert(!nlinked[n]);          /* a node is in one queue at a time */
	qn[q * QMAX + qlen[q]] = n;
	qlen[q]++;
	nlinked[n] = 1
}

/* the owner unlinks its node n from q if still linked (lock held) */
inline qunlink(q, n) {
	d_step {
		if
		:: nlinked[n] ->
			j = 0;
			do
			:: j < qlen[q] && qn[q * QMAX + j] == n -> break
			:: j < qlen[q] && qn[q * QMAX + j] != n -> j++
			:: j >= qlen[q] -> assert(false)   /* linked elsewhere */
			od;
			qremove(q, j);
			nlinked[n] = 0
		:: else
		fi
	}
}

/* deliver the wake-up to a claimed, parked owner */
inline ready(o) {
	atomic {
		assert(parked[o] && handed[o] && !rdy[o]);   /* no double ready */
		rdy[o] = 1
	}
}

/* Under q's lock: unlink nodes from the front until one is claimed.
 * m = the claimed node (NONE: queue exhausted), ms = its seq, wp = it was
 * PARKED.  A failed claim drops the node.  As in np__wq_claim_first, the
 * node is unlinked first and claimed (its rec and seq read) in a second
 * step: the owner must not return in between, although the node is no
 * longer linked (it finds it unlinked only under the lock). */
inline claim_first(q, m, ms, wp) {
	m = NONE;
	do
	:: qlen[q] == 0 -> break
	:: qlen[q] > 0 ->
		d_step {                          /* np__wq_unlink */
			m = qn[q * QMAX];
			ms = nseq[m];
			assert(!ndead[m]);        /* waker found a dead node */
			j = 0;
			qremove(q, j);
			nlinked[m] = 0
		}
		atomic {                          /* np__wnode_claim */
			assert(ALIVE(m, ms));     /* reads n->rec, n->seq */
			o = m / 2;
			if
			:: cseq[o] == ms && (cst[o] == OPEN || cst[o] == PARKED) ->
				if
				:: cst[o] == PARKED -> wp = 1; handed[o] = 1
				:: else -> wp = 0 COVER(1)   /* won before the commit */
				fi;
				cst[o] = CLAIMING;
				wins[o]++;
				assert(wins[o] == 1)
			:: else -> m = NONE; ms = 0 COVER(2)  /* dropped */
			fi;
			o = 0
		}
		if
		:: m != NONE -> break
		:: else
		fi
	od
}

/* publish the outcome (already written): DONE, release.  No node access
 * after this. */
inline wdone(m, ms) {
	atomic {
		assert(ALIVE(m, ms));
		o = m / 2;
		assert(cst[o] == CLAIMING && cseq[o] == ms);
		winner[o] = m % 2;
		cst[o] = DONE;
		o = 0
	}
}

/* hand-off after the waker's locks are released */
inline wake(wr) {
	if
	:: wr != 0 ->
#ifndef MUTANT_NO_READY
		ready(wr - 1);
#endif
		wr = 0
	:: else
	fi
}

/* ---- one case, polled under the channel lock ---------------------------
 * fin = 1 when it completed (res, val); wr = owner to ready + 1. */
inline trycase(k, c, v) {
	if
	:: k == SEND ->
		if
		:: closed[c] -> fin = 1; res = R_CLOSED
		:: else ->
			claim_first(RQ(c), m, ms, wp);
			if
			:: m != NONE ->
				atomic {
					assert(ALIVE(m, ms));
					nelem[m] = v; nres[m] = R_OK
				}
				wdone(m, ms);
				if :: wp -> wr = m / 2 + 1 :: else fi;
				fin = 1; res = R_OK
			:: else ->
				if
				:: cnt[c] < cap[c] ->
					buf[c] = v; cnt[c]++;
					fin = 1; res = R_OK
				:: else
				fi
			fi
		fi
	:: k == RECV ->
		if
		:: cnt[c] > 0 ->
			atomic {
				val = buf[c]; buf[c] = 0; cnt[c]--
				if :: closed[c] COVER(5) :: else fi   /* after close */
			}
			/* room again: move the first blocked sender's element in */
			claim_first(SQ(c), m, ms, wp);
			if
			:: m != NONE ->
				atomic {
					assert(ALIVE(m, ms));
					buf[c] = nelem[m]; cnt[c]++; nres[m] = R_OK
					COVER(3)      /* sender's element moved in */
				}
				wdone(m, ms);
				if :: wp -> wr = m / 2 + 1 :: else fi
			:: else
			fi;
			fin = 1; res = R_OK
		:: cnt[c] == 0 && closed[c] -> fin = 1; res = R_CLOSED
		:: cnt[c] == 0 && !closed[c] ->
			claim_first(SQ(c), m, ms, wp);
			if
			:: m != NONE ->
				atomic {
					assert(ALIVE(m, ms));
					val = nelem[m]; nres[m] = R_OK
				}
				wdone(m, ms);
				if :: wp -> wr = m / 2 + 1 :: else fi;
				fin = 1; res = R_OK
			:: else
			fi
		fi
	fi;
	m = NONE; ms = 0; wp = 0
}

/* ---- a blocking operation: nc cases (1 or 2) ---------------------------
 * case i: kind ki, channel ci, element vi (sends).  usedl: a deadline.
 * Result in res (R_OK, R_CLOSED, R_TIMEDOUT), val (received element),
 * win (the case).  Needs the caller's OWNER_LOCALS. */
inline op(r, nc, k0, c0, v0, k1, c1, v1, usedl) {
	/* begin: a new wait on the record */
	atomic { cseq[r]++; cst[r] = OPEN; wins[r] = 0; dl[r] = 0 }
	lock(c0);
	if :: nc == 2 -> assert(c0 < c1); lock(c1) :: else fi;
	/* poll */
	fin = 0; i = 0;
	do
	:: i < nc && !fin ->
		if
		:: i == 0 -> trycase(k0, c0, v0)
		:: i == 1 -> trycase(k1, c1, v1)
		fi;
		if :: fin -> win = i :: else -> i++ fi
	:: else -> break
	od;
	i = 0;
	if
	:: fin ->
		if :: nc == 2 -> unlock(c1) :: else fi;
		unlock(c0);
		wake(wr)
	:: else ->
		/* enqueue one node per case (the node is created here) */
		atomic {
			nseq[r * 2] = cseq[r]; ndead[r * 2] = 0;
			nres[r * 2] = 0;
			if :: k0 == SEND -> nelem[r * 2] = v0; qpush(SQ(c0), r * 2)
			   :: else -> nelem[r * 2] = 0; qpush(RQ(c0), r * 2) fi
		}
		if
		:: nc == 2 ->
			atomic {
				nseq[r * 2 + 1] = cseq[r]; ndead[r * 2 + 1] = 0;
				nres[r * 2 + 1] = 0;
				if :: k1 == SEND -> nelem[r * 2 + 1] = v1; qpush(SQ(c1), r * 2 + 1)
				   :: else -> nelem[r * 2 + 1] = 0; qpush(RQ(c1), r * 2 + 1) fi
			}
		:: else
		fi;
		if :: usedl -> atomic { tarm[r] = cseq[r]; dl[r] = 1 } :: else fi;
		/* park; the commit runs after the switch: locks first */
		if :: nc == 2 -> unlock(c1) :: else fi;
		unlock(c0);
		atomic {
			if
			:: cst[r] == OPEN -> cst[r] = PARKED; parked[r] = 1; pk = 1
			:: else -> pk = 0
			fi
		}
		if
		:: pk ->
			/* asleep: no end label here on purpose */
			atomic {
				rdy[r] -> rdy[r] = 0; parked[r] = 0; handed[r] = 0;
				/* a parked select woken by its second case */
				if :: nc == 2 && cst[r] == DONE && winner[r] == 1 COVER(7) :: else fi
			}
		:: else
		fi;
		pk = 0;
		/* finish: a waker that won before the commit may still write
		 * (np__wait_park's spin, then np__timer_stop) */
#ifdef MUTANT_NO_SPIN
		atomic { st = cst[r]; if :: st == CLAIMING -> st = DONE :: else fi }
#else
		atomic { cst[r] != CLAIMING -> st = cst[r] }
#endif
		assert(st == DONE || st == TIMEDOUT);
		assert(wins[r] == 1);
		tarm[r] = 0;          /* stop: a firing callback is not stopped */
		if
		:: st == DONE ->
			win = winner[r];
			assert(win < nc);
			assert(!nlinked[r * 2 + win]);   /* the waker unlinked it */
			res = nres[r * 2 + win];
			if
			:: ((win == 0 && k0 == RECV) || (win == 1 && k1 == RECV)) && res == R_OK ->
				val = nelem[r * 2 + win]
			:: else
			fi;
#ifndef SPEC_DONE_NO_UNLINK
			/* the losing case's node may still be linked */
			if
			:: nc == 2 ->
				lock(c0); lock(c1);
				if
				:: win == 0 -> if :: k1 == SEND -> qunlink(SQ(c1), r * 2 + 1)
				                  :: else -> qunlink(RQ(c1), r * 2 + 1) fi
				:: win == 1 -> if :: k0 == SEND -> qunlink(SQ(c0), r * 2)
				                  :: else -> qunlink(RQ(c0), r * 2) fi
				fi;
				unlock(c1); unlock(c0)
			:: else
			fi
#endif
		:: st == TIMEDOUT ->
			assert(dl[r]);        /* only this wait's own deadline */
#ifdef MUTANT_PEEK_UNLINKED
			if
			:: nc == 1 && !nlinked[r * 2] -> skip   /* no lock */
			:: else ->
#endif
			lock(c0);
			if :: !nlinked[r * 2] COVER(8) :: else fi;   /* already dropped */
			if :: k0 == SEND -> qunlink(SQ(c0), r * 2)
			   :: else -> qunlink(RQ(c0), r * 2) fi;
			if
			:: nc == 2 ->
				lock(c1);
				if :: k1 == SEND -> qunlink(SQ(c1), r * 2 + 1)
				   :: else -> qunlink(RQ(c1), r * 2 + 1) fi;
				unlock(c1)
			:: else
			fi;
			unlock(c0);
#ifdef MUTANT_PEEK_UNLINKED
			fi;
#endif
			res = R_TIMEDOUT; win = 0
		fi;
		st = 0;
		/* return: the nodes on the stack are gone */
		atomic {
#ifndef NO_RETURN_CHECK
			assert(!nlinked[r * 2]);
			assert(nc == 1 || !nlinked[r * 2 + 1]);
#endif
			ndead[r * 2] = 1;
			if :: nc == 2 -> ndead[r * 2 + 1] = 1 :: else fi
		}
	fi;
	/* accounting */
	atomic {
		assert(res == R_OK || res == R_CLOSED || res == R_TIMEDOUT);
		assert(res != R_CLOSED || (win == 0 && closed[c0]) || (win == 1 && closed[c1]));
		if
		:: k0 == SEND -> if :: res == R_OK && win == 0 -> sok[v0] = 1
		                    :: else -> sfail[v0] = 1 fi
		:: else
		fi;
		if
		:: nc == 2 && k1 == SEND -> if :: res == R_OK && win == 1 -> sok[v1] = 1
		                              :: else -> sfail[v1] = 1 fi
		:: else
		fi;
		if
		:: res == R_OK && ((win == 0 && k0 == RECV) || (win == 1 && k1 == RECV)) ->
			assert(val != 0 && !rcv[val]);   /* an element, never twice */
			rcv[val] = 1
		:: else -> assert(val == 0)
		fi
	}
	fin = 0; res = 0; val = 0; win = 0
}

inline close_ch(c) {
	lock(c);
	assert(!closed[c]);
	closed[c] = 1;
	do                                    /* receivers: CLOSED */
	:: claim_first(RQ(c), m, ms, wp);
	   if
	   :: m == NONE -> break
	   :: else ->
		atomic { assert(ALIVE(m, ms)); nres[m] = R_CLOSED }
		wdone(m, ms);
		if :: wp -> wk = wk | (1 << (m / 2)) :: else fi
	   fi
	od;
	do                                    /* senders: CLOSED */
	:: claim_first(SQ(c), m, ms, wp);
	   if
	   :: m == NONE -> break
	   :: else ->
		atomic { assert(ALIVE(m, ms)); nres[m] = R_CLOSED COVER(6) }
		wdone(m, ms);
		if :: wp -> wk = wk | (1 << (m / 2)) :: else fi
	   fi
	od;
	m = 0; ms = 0; wp = 0;
	unlock(c);
	i = 0;
	do
	:: i < NOWN ->
		if
		:: wk & (1 << i) ->
#ifndef MUTANT_NO_READY
			ready(i);
#endif
			skip
		:: else
		fi;
		i++
	:: else -> break
	od;
	i = 0; wk = 0
}

/* the deadline timer of record r */
proctype Timer(byte r) {
	byte ts;
	bit tp;
end_idle:
	do
	:: atomic { tarm[r] != 0 -> ts = tarm[r]; tarm[r] = 0 }   /* due */
	   atomic {
		if
#ifdef MUTANT_CLAIM_NO_SEQ
		:: (cst[r] == OPEN || cst[r] == PARKED) ->
#else
		:: cseq[r] == ts && (cst[r] == OPEN || cst[r] == PARKED) ->
#endif
			if
			:: cst[r] == PARKED -> tp = 1; handed[r] = 1
			:: else -> tp = 0
			fi;
			cst[r] = TIMEDOUT;
			wins[r]++;
			assert(wins[r] == 1)
		:: else -> tp = 0          /* stale, or a waker won */
			if :: cseq[r] != ts COVER(9) :: else fi
		fi
	   }
	   if
	   :: tp ->
#ifndef MUTANT_NO_TIMER_READY
		ready(r);
#endif
		tp = 0
	   :: else
	   fi;
	   ts = 0
	od
}

#define OWNER_LOCALS byte res, val, win, fin, i, m, ms, wp, wr, pk, st, j, o
#define CLOSER_LOCALS byte i, m, ms, wp, wk, j, o

inline finished() { alive-- }

/* ---- scenarios ----------------------------------------------------------- */
#if SCENARIO == 1
#define NPROC 4
#define NUSED 2
proctype S() {                          /* record 0 */
	OWNER_LOCALS;
	op(0, 2, RECV, 0, 0, RECV, 1, 0, 1);
	op(0, 1, RECV, 1, 0, 0, 0, 0, 0);
	finished()
}
proctype A() {                          /* record 1 */
	OWNER_LOCALS;
	op(1, 1, SEND, 0, 1, 0, 0, 0, 0);
	finished()
}
proctype B() {                          /* record 2 */
	OWNER_LOCALS;
	op(2, 1, SEND, 1, 2, 0, 0, 0, 0);
	finished()
}
proctype C() {
	CLOSER_LOCALS;
	close_ch(0);
	close_ch(1);
	finished()
}
init {
	atomic {
		cap[0] = 0; cap[1] = 0;
		alive = NPROC; started = 1;
		run S(); run A(); run B(); run C();
		run Timer(0)
	}
}
#endif

#if SCENARIO == 2
#define NPROC 4
#define NUSED 2
proctype R() {                          /* record 0 */
	OWNER_LOCALS;
	op(0, 1, RECV, 0, 0, 0, 0, 0, 1);
	op(0, 1, RECV, 0, 0, 0, 0, 0, 0);
	finished()
}
proctype A() {                          /* record 1 */
	OWNER_LOCALS;
	op(1, 1, SEND, 0, 1, 0, 0, 0, 0);
	op(1, 1, SEND, 0, 2, 0, 0, 0, 1);
	finished()
}
proctype Q() {                          /* record 2 */
	OWNER_LOCALS;
	op(2, 1, RECV, 0, 0, 0, 0, 0, 0);
	finished()
}
proctype C() {
	CLOSER_LOCALS;
	close_ch(0);
	finished()
}
init {
	atomic {
		cap[0] = 1; cap[1] = 0;
		alive = NPROC; started = 1;
		run R(); run A(); run Q(); run C();
		run Timer(0); run Timer(1)
	}
}
#endif

#if SCENARIO == 3
#define NPROC 5
#define NUSED 3
proctype S() {                          /* record 0 */
	OWNER_LOCALS;
	op(0, 2, SEND, 0, 1, RECV, 1, 0, 1);
	finished()
}
proctype A() {                          /* record 1 */
	OWNER_LOCALS;
	op(1, 1, SEND, 0, 2, 0, 0, 0, 0);
	finished()
}
proctype Q() {                          /* record 2 */
	OWNER_LOCALS;
	op(2, 1, RECV, 0, 0, 0, 0, 0, 0);
	finished()
}
proctype B() {                          /* record 3 */
	OWNER_LOCALS;
	op(3, 1, SEND, 1, 3, 0, 0, 0, 0);
	finished()
}
proctype C() {
	CLOSER_LOCALS;
	close_ch(1);
	close_ch(0);
	finished()
}
init {
	atomic {
		cap[0] = 1; cap[1] = 0;
		alive = NPROC; started = 1;
		run S(); run A(); run Q(); run B(); run C();
		run Timer(0)
	}
}
#endif

#if SCENARIO == 4
#define NPROC 3
#define NUSED 2
proctype S() {                          /* record 0 */
	OWNER_LOCALS;
	op(0, 2, RECV, 0, 0, RECV, 1, 0, 1);
	finished()
}
proctype T() {                          /* record 1 */
	OWNER_LOCALS;
	op(1, 2, SEND, 0, 1, SEND, 1, 2, 0);
	op(1, 1, RECV, 1, 0, 0, 0, 0, 0);
	finished()
}
proctype C() {
	CLOSER_LOCALS;
	close_ch(0);
	close_ch(1);
	finished()
}
init {
	atomic {
		cap[0] = 0; cap[1] = 0;
		alive = NPROC; started = 1;
		run S(); run T(); run C();
		run Timer(0)
	}
}
#endif

/* everything has ended: the elements add up, the queues are empty */
active proctype Checker() {
	byte v, inb;
end_wait:
	atomic {
		started && alive == 0 ->                        /* all done */
		assert(qlen[0] == 0 && qlen[1] == 0 && qlen[2] == 0 && qlen[3] == 0);
		v = 1;
		do
		:: v < NV ->
			inb = (cnt[0] > 0 && buf[0] == v) + (cnt[1] > 0 && buf[1] == v);
			assert(sok[v] + sfail[v] == (v <= NUSED));
			assert(sok[v] == rcv[v] + inb);
			assert(!sfail[v] || (rcv[v] == 0 && inb == 0));
			v++
		:: else -> break
		od
	}
}

#ifdef LTL
ltl parked_wakes {
	[] ((parked[0] -> <> !parked[0]) && (parked[1] -> <> !parked[1]) &&
	    (parked[2] -> <> !parked[2]) && (parked[3] -> <> !parked[3]))
}
#endif
