/* pipe_relay — a line relay between this process's stdin/stdout and a TCP
 * peer, like `nc HOST PORT`: what arrives on stdin goes to the peer, what
 * the peer sends goes to stdout.
 *
 *   pipe_relay [-t DIAL_SECONDS] [-l LINGER_SECONDS] ADDRESS
 *
 * ADDRESS is "host:port". The dial gives up after DIAL_SECONDS (default 5,
 * at least 1).
 * When stdin ends, the peer is told so with a half-close and its remaining
 * output is still copied to stdout, for at most LINGER_SECONDS (default 5;
 * 0 = as long as it takes); when the peer closes, the relay stops reading
 * stdin. Either way it exits 0 once both directions are done; 1 if the dial
 * or a copy fails.
 *
 *   echo_server 127.0.0.1:7777 &
 *   printf 'one\ntwo\n' | pipe_relay 127.0.0.1:7777     # prints one, two
 *
 * The netpoll idioms shown here:
 *  - np_conn_from_fd adopts a descriptor the program did not open through
 *    netpoll (a pipe, a tty, a socket inherited from the parent) as a
 *    connection: np_read on it parks the task, not the worker thread, and
 *    np_close wakes a task blocked on it, exactly as for a dialled socket.
 *  - What is adopted is a duplicate of stdin / stdout, not fd 0 / fd 1
 *    themselves. Adopting makes the descriptor non-blocking, and that flag
 *    belongs to the open file, which the shell that started us shares (a
 *    terminal left non-blocking breaks the next program the shell runs). The
 *    duplicate is the handle's to close; fd 0 and fd 1 stay open, so the old
 *    flags can be put back through them at the end.
 *  - A regular file cannot be adopted (-EINVAL): it is always "ready", so
 *    there is nothing to wait for. `pipe_relay ADDR < file` therefore reads
 *    it with plain read(2), which never waits on the network.
 *  - Two directions, two tasks, each plain blocking code: the main task
 *    copies stdin to the peer while a second task (`go`) copies the peer to
 *    stdout. They stop each other by closing handles: a call blocked on a
 *    closed handle returns -ECANCELED.
 *  - Deadlines are absolute times: the dial's bounds the connect, and the
 *    linger is a read deadline set once stdin has ended, which applies to a
 *    read already blocked in the other task too.
 */
#include <netpoll.h>

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int64_t dial_timeout = 5 * NP_SECOND;
static int64_t linger = 5 * NP_SECOND;
static const char *peer_addr;
static int exit_code;

/* One end on this side: an adopted descriptor, or a regular file used with
 * plain read(2) / write(2). */
typedef struct end {
    np_conn conn; /* adopted: a duplicate of fd, owned by the handle */
    int fd;       /* 0 or 1 */
    bool adopted;
    int saved_flags; /* fd's file status flags before adopting, to restore */
} end;

static end in = {.fd = 0}, out = {.fd = 1};
static np_conn peer;
static _Atomic bool peer_done;  /* the peer closed, or reading it failed */
static np_waitgroup downstream_done = NP_WAITGROUP_INIT;

/* Adopts a duplicate of e->fd; a regular file stays a plain descriptor. */
static int end_open(end *e)
{
    e->saved_flags = fcntl(e->fd, F_GETFL);
    if (e->saved_flags < 0)
        return -EBADF; /* closed by whoever started us */
    int dup = fcntl(e->fd, F_DUPFD_CLOEXEC, 3);
    if (dup < 0)
        return -EMFILE;
    int rc = np_conn_from_fd(&e->conn, dup);
    if (rc == -EINVAL) {
        close(dup); /* a regular file: read and write it directly */
        return 0;
    }
    if (rc < 0) {
        close(dup);
        return rc;
    }
    e->adopted = true;
    return 0;
}

/* Closes the handle (and with it the duplicate) and gives fd back the flags
 * it had: its O_NONBLOCK is the shell's too. */
static void end_close(end *e)
{
    if (!e->adopted)
        return;
    np_close(e->conn); /* -EBADF if closed already: harmless */
    fcntl(e->fd, F_SETFL, e->saved_flags);
}

static ssize_t end_read(end *e, void *buf, size_t len)
{
    if (e->adopted)
        return np_read(e->conn, buf, len);
    ssize_t n = read(e->fd, buf, len);
    return n < 0 ? -errno : n;
}

/* All of buf, or a negative error (np_write already writes everything). */
static ssize_t end_write(end *e, const void *buf, size_t len)
{
    if (e->adopted)
        return np_write(e->conn, buf, len);
    for (size_t done = 0; done < len;) {
        ssize_t n = write(e->fd, (const char *)buf + done, len - done);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0)
            done += (size_t)n;
    }
    return (ssize_t)len;
}

/* The second task: the peer to stdout, until the peer closes, the linger
 * deadline passes, or the main task closes the peer. */
static void downstream(void *arg)
{
    (void)arg;
    char buf[16 * 1024];
    for (;;) {
        ssize_t n = np_read(peer, buf, sizeof buf);
        if (n == 0)
            break; /* the peer closed its side: all of its output is out */
        if (n == -ETIMEDOUT) {
            fprintf(stderr, "pipe_relay: the peer did not close within %lld s of the end of input\n",
                    (long long)(linger / NP_SECOND));
            break;
        }
        if (n == -ECANCELED)
            break; /* the main task closed the peer: it reported why */
        if (n < 0) {
            fprintf(stderr, "pipe_relay: read from %s: %s\n", peer_addr, np_strerror((int)n));
            exit_code = 1;
            break;
        }
        ssize_t w = end_write(&out, buf, (size_t)n);
        if (w < 0) {
            /* Typically -EPIPE: whoever read our stdout has gone. */
            fprintf(stderr, "pipe_relay: write to stdout: %s\n", np_strerror((int)w));
            exit_code = 1;
            break;
        }
    }
    /* Wake the main task if it is blocked reading stdin: with the peer
     * gone, nothing more can be relayed. (A plain file is not blocked on;
     * the main task sees peer_done before its next read.) */
    atomic_store(&peer_done, true);
    if (in.adopted)
        np_close(in.conn);
    np_waitgroup_done(&downstream_done);
}

/* The main task: dial, start downstream, then stdin to the peer. */
static void relay(void *arg)
{
    (void)arg;
    int rc = np_dial(&peer, "tcp", peer_addr, np_now() + dial_timeout);
    if (rc < 0) {
        fprintf(stderr, "pipe_relay: dial %s: %s\n", peer_addr, np_strerror(rc));
        exit_code = 1;
        return;
    }
    if ((rc = end_open(&in)) < 0 || (rc = end_open(&out)) < 0) {
        fprintf(stderr, "pipe_relay: stdin / stdout: %s\n", np_strerror(rc));
        exit_code = 1;
        end_close(&in);
        np_close(peer);
        return;
    }

    /* `go io.Copy(os.Stdout, conn)` */
    np_waitgroup_add(&downstream_done, 1);
    if ((rc = np_go(downstream, NULL)) < 0) {
        fprintf(stderr, "pipe_relay: %s\n", np_strerror(rc));
        np_waitgroup_done(&downstream_done);
        exit_code = 1;
        atomic_store(&peer_done, true);
    }

    char buf[16 * 1024];
    while (!atomic_load(&peer_done)) {
        ssize_t n = end_read(&in, buf, sizeof buf);
        if (n == 0) {
            /* End of input: tell the peer (it reads EOF), and give it
             * `linger` to finish answering. The deadline reaches the read
             * downstream is blocked in. */
            np_close_write(peer);
            if (linger > 0)
                np_set_read_deadline(peer, np_now() + linger);
            break;
        }
        if (n == -ECANCELED || n == -EBADF)
            break; /* downstream closed stdin's handle: the peer is gone */
        if (n < 0) {
            fprintf(stderr, "pipe_relay: read from stdin: %s\n", np_strerror((int)n));
            exit_code = 1;
            np_close(peer); /* wakes downstream: -ECANCELED */
            break;
        }
        ssize_t w = np_write(peer, buf, (size_t)n);
        if (w != n) {
            /* A short count means the next call says why; a negative one
             * is the reason (-EPIPE, -ECONNRESET: the peer has gone). */
            if (!atomic_load(&peer_done))
                fprintf(stderr, "pipe_relay: write to %s: %s\n", peer_addr,
                        np_strerror(w < 0 ? (int)w : -EIO));
            exit_code = 1;
            np_close(peer);
            break;
        }
    }

    /* Drain: downstream copies the rest of the peer's output and ends. */
    np_waitgroup_wait(&downstream_done, 0);
    np_close(peer);
    end_close(&in);
    end_close(&out);
}

static int64_t seconds(const char *s, const char *what, long min)
{
    char *rest;
    long v = strtol(s, &rest, 10);
    if (*s == '\0' || *rest != '\0' || v < min || v > 86400) {
        fprintf(stderr, "pipe_relay: bad %s '%s'\n", what, s);
        exit(2);
    }
    return (int64_t)v * NP_SECOND;
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "t:l:h")) != -1) {
        switch (opt) {
        case 't': dial_timeout = seconds(optarg, "dial timeout", 1); break; /* 0: no deadline */
        case 'l': linger = seconds(optarg, "linger time", 0); break;
        default: goto usage;
        }
    }
    if (optind != argc - 1) {
    usage:
        fprintf(stderr, "usage: pipe_relay [-t DIAL_SECONDS] [-l LINGER_SECONDS] HOST:PORT\n");
        return 2;
    }
    peer_addr = argv[optind];

    /* One worker: two tasks that mostly wait need no more. */
    np_config cfg = {.workers = 1};
    int rc = np_run(&cfg, relay, NULL);
    if (rc < 0) {
        fprintf(stderr, "pipe_relay: %s\n", np_strerror(rc));
        return 1;
    }
    return exit_code;
}
