/* chat_server — a chat room: every line a client sends goes to every client.
 *
 *   chat_server [-w WORKERS] [-q QUEUE] [-b SNDBUF_KIB] [ADDRESS]
 *
 * ADDRESS defaults to 127.0.0.1:0 (any free port). Once the server accepts
 * connections it prints "listening on ADDRESS" (with the real port) on
 * stdout, which scripts and tests wait for. Try it with a few terminals:
 *
 *   $ chat_server 127.0.0.1:7000          $ nc 127.0.0.1 7000
 *                                         * you are 127.0.0.1:51122, 1 online
 *                                         hello
 *                                         127.0.0.1:51122: hello
 *
 * Each client sees "* you are ADDR, N online" when it joins, "* ADDR joined"
 * and "* ADDR left" for the others, and "ADDR: text" for every line anyone
 * sends (its own included). A line longer than 400 bytes is cut into
 * 400-byte lines. SIGINT or SIGTERM stops the server: it says
 * "* server shutting down" to every client, gives each one a second to take
 * what is queued for it, closes the connections, prints a summary line and
 * exits 0; a second signal exits at once.
 *
 * The shape is the chat server of Go's classic tutorials (The Go Programming
 * Language, 8.10), with channels and select doing all the coordination:
 *
 *   - One task, the hub, owns the set of clients. Nothing else touches it,
 *     so it needs no lock: joining, leaving and broadcasting are messages
 *     sent to the hub on channels, and the hub does them one at a time.
 *   - Per client, a reader task (reads lines, hands them to the hub) and a
 *     writer task (takes messages off the client's own buffered channel
 *     and writes them to the socket).
 *   - The hub never waits for a client. It puts each message into every
 *     client's channel with a non-blocking send; when a client's channel is
 *     full (the client reads slower than the room talks), that client loses
 *     the message and the hub counts a drop. One stalled client cannot
 *     stall the room. (Go spells the non-blocking send `select { case ch <-
 *     m: default: }`; here it is a send with a deadline already past.)
 *   - Shutdown is a closed channel, `quit`: every blocking step that could
 *     outlive the hub waits in a select that also receives from quit, so
 *     nothing is left waiting for a hub that is gone.
 *
 * -q is the depth of each client's channel, in messages (default 64): how
 * far a client may fall behind the room before it loses messages. It has
 * to absorb a burst of the whole room, and whatever else arrives while the
 * client's writer waits for a CPU: tasks are not preempted, so the writers
 * the hub wakes wait, queued behind it on its worker, until it parks or an
 * idle worker steals them. 64 suits a few dozen people typing; a room of
 * programs talking as fast as they can needs more (tests/examples/
 * test_chat.c floods 49 clients and uses 1024).
 *
 * -b sets each client connection's kernel send buffer (SO_SNDBUF, in KiB;
 * default 64, 0 = the kernel's auto-tuning). The queue in front of a slow
 * client is that buffer plus its channel; left to itself, Linux lets the
 * buffer grow to megabytes per connection before the drop policy even
 * notices. WORKERS is the number of worker threads (default 0: one per
 * CPU).
 */
#include <netpoll.h>

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    MAX_LINE = 400,   /* longest line broadcast as one; longer ones are cut */
    MSG_SIZE = 512,   /* room for "ADDRESS: " + MAX_LINE + "\n" */
    HUB_QUEUE = 256,  /* lines queued for the hub (senders wait when full) */
};

/* A deadline already past: a channel call that would have to wait fails at
 * once with -ETIMEDOUT instead. */
#define NO_WAIT ((int64_t)-1)

/* How long a client still gets, at shutdown, to take what is queued for it
 * before its connection is closed anyway. */
#define SHUTDOWN_GRACE (1 * NP_SECOND)

/* What travels on the channels: a line, already formatted. Channels copy
 * their elements, so a fixed-size struct is the simplest element there is:
 * no allocation per message, no question of who frees it. */
typedef struct message {
    uint32_t len;
    char text[MSG_SIZE];
} message;

typedef struct client {
    np_conn conn;
    np_chan out;      /* hub -> writer: the client's queue (-q deep) */
    np_chan done;     /* closed by the writer when it has finished */
    char who[64];     /* the client's address, its name in the room */
    /* The hub's alone to read and write: */
    uint64_t dropped;           /* messages it lost */
    struct client *prev, *next; /* the room, a list: joining allocates nothing */
} client;

/* The channels everyone talks through. Made before any task that uses them
 * starts, and freed after all of them have ended; the handles themselves
 * never change in between. */
static np_chan quit;     /* closed (never sent on) to say "shut down" */
static np_chan signals;  /* SIGINT and SIGTERM, as ints (np_signal_notify) */
static np_chan joins;    /* client *, unbuffered: see client_task */
static np_chan leaves;   /* client *, unbuffered */
static np_chan messages; /* message, HUB_QUEUE deep */

/* Counts the tasks started by the first one (serve), which waits for them
 * all before it frees the channels above and prints the summary. */
static np_waitgroup tasks = NP_WAITGROUP_INIT;

/* Counted by the hub only; read by the first task after the hub ended. */
static struct {
    uint64_t served, lines, dropped;
} stats;

static const char *listen_addr = "127.0.0.1:0";
static int out_queue = 64; /* messages queued per client before drops start */
static int sndbuf_kib = 64;
static np_listener listener;
static int exit_code;

static void fail(const char *what, int err)
{
    fprintf(stderr, "chat_server: %s: %s\n", what, np_strerror(err));
    exit_code = 1;
}

/* Go's
 *     select { case ch <- *elem: return 0; case <-quit: return -1 }
 * For every send that waits for the hub: once quit is closed that case is
 * always ready, so the caller never waits for a hub that has stopped. */
static int send_or_quit(np_chan ch, void *elem)
{
    np_select_case cases[2] = {
        { .chan = ch, .op = NP_SEND, .elem = elem },
        { .chan = quit, .op = NP_RECV, .elem = NULL },
    };
    int i = np_select(cases, 2, 0);
    return i == 0 && cases[0].result == 0 ? 0 : -1;
}

static void format(message *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void format(message *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->text, sizeof m->text, fmt, ap);
    va_end(ap);
    m->len = n < 0 ? 0 : n >= (int)sizeof m->text ? (uint32_t)sizeof m->text - 1 : (uint32_t)n;
}

/* The hub -----------------------------------------------------------------*/

/* The non-blocking send: the message goes into the client's queue if there
 * is room, and is lost for that client if not. */
static void deliver(client *c, const message *m)
{
    int rc = np_chan_send(c->out, m, NO_WAIT);
    if (rc == -ETIMEDOUT) { /* its queue is full */
        c->dropped++;
        stats.dropped++;
    }
}

static void broadcast(client *room, const message *m, const client *except)
{
    for (client *c = room->next; c != room; c = c->next)
        if (c != except)
            deliver(c, m);
}

static void report_drops(const client *c)
{
    if (c->dropped > 0)
        printf("chat_server: dropped %" PRIu64 " messages for %s (a slow reader)\n", c->dropped,
               c->who);
}

/* Lets go of a client: after this the hub never touches *c again. Closing
 * its queue is the last step and the signal: the writer drains what is
 * queued, finishes, and only then may the client's memory go. */
static void release(client *c)
{
    report_drops(c);
    np_chan_close(c->out);
}

static void hub(void *arg)
{
    (void)arg;
    client room = { .prev = &room, .next = &room }; /* the list's head */
    size_t n = 0;

    for (;;) {
        client *joining, *leaving;
        message m;
        np_select_case cases[4] = {
            { .chan = joins, .op = NP_RECV, .elem = &joining },
            { .chan = leaves, .op = NP_RECV, .elem = &leaving },
            { .chan = messages, .op = NP_RECV, .elem = &m },
            { .chan = quit, .op = NP_RECV, .elem = NULL },
        };
        int i = np_select(cases, 4, 0);
        if (i < 0) { /* only a bug gets here: the channels outlive the hub */
            fprintf(stderr, "chat_server: hub: select: %s\n", np_strerror(i));
            abort();
        }

        if (i == 0) { /* a client joins */
            client *c = joining;
            c->next = &room;
            c->prev = room.prev;
            room.prev->next = c;
            room.prev = c;
            n++;
            stats.served++;
            format(&m, "* you are %s, %zu online\n", c->who, n);
            deliver(c, &m); /* its queue is empty: this one always fits */
            format(&m, "* %s joined\n", c->who);
            broadcast(&room, &m, c);
        } else if (i == 1) { /* a client leaves (its reader saw the end) */
            client *c = leaving;
            c->prev->next = c->next;
            c->next->prev = c->prev;
            n--;
            format(&m, "* %s left\n", c->who);
            release(c);
            broadcast(&room, &m, NULL);
        } else if (i == 2) { /* a line for everyone */
            stats.lines++;
            broadcast(&room, &m, NULL);
        } else { /* quit is closed: shut the room down */
            format(&m, "* server shutting down\n");
            for (client *c = room.next, *next; c != &room; c = next) {
                next = c->next; /* release() ends our use of c */
                deliver(c, &m);
                /* A writer stuck on a client that does not read would wait
                 * forever; a write deadline lets it give up in time. */
                np_set_write_deadline(c->conn, np_now() + SHUTDOWN_GRACE);
                release(c);
            }
            break;
        }
    }
    np_waitgroup_done(&tasks);
}

/* A client's two tasks -----------------------------------------------------*/

/* Takes messages off the client's queue and writes them, until the hub
 * closes the queue. What has piled up meanwhile goes out in one write. */
static void writer(void *arg)
{
    client *c = arg;
    char batch[8 * 1024];
    message m;
    bool broken = false;

    while (np_chan_recv(c->out, &m, 0) == 0) { /* -EPIPE: closed and drained */
        if (broken)
            continue; /* keep draining: see below */
        size_t len = 0;
        do {
            memcpy(batch + len, m.text, m.len);
            len += m.len;
        } while (len + MSG_SIZE <= sizeof batch && np_chan_recv(c->out, &m, NO_WAIT) == 0);

        if (np_write(c->conn, batch, len) != (ssize_t)len) {
            /* The client is gone, or (at shutdown) did not take its data in
             * time. Closing the connection wakes the reader, which then
             * tells the hub the client left. The writer itself carries on
             * receiving (and discarding) until the hub closes the queue:
             * that is how the client's memory is known to be the hub's no
             * longer. */
            broken = true;
            np_close(c->conn);
        }
    }
    np_close(c->conn); /* -EBADF, harmless, if it was closed above */
    np_chan_close(c->done);
}

/* Sends one line to the hub, as "ADDRESS: line". */
static int say(client *c, const char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--; /* telnet and friends end lines with \r\n */
    message m;
    format(&m, "%s: %.*s\n", c->who, (int)len, line);
    return send_or_quit(messages, &m);
}

/* The reader and the client's owner: it starts the writer, joins the room,
 * reads lines until the client goes (or the server stops), leaves, waits
 * for the writer and frees everything. */
static void client_task(void *arg)
{
    client *c = arg;
    if (np_remote_addr(c->conn, c->who, sizeof c->who) < 0)
        strcpy(c->who, "?");
    if (sndbuf_kib > 0) {
        int bytes = sndbuf_kib * 1024;
        int fd = np_conn_fd(c->conn);
        if (fd >= 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
    }

    int rc = np_chan_make(&c->out, sizeof(message), (size_t)out_queue);
    if (rc == 0) {
        rc = np_chan_make(&c->done, 0, 0);
        if (rc < 0)
            np_chan_free(c->out);
    }
    if (rc == 0) {
        rc = np_go(writer, c);
        if (rc < 0) {
            np_chan_free(c->out);
            np_chan_free(c->done);
        }
    }
    if (rc < 0) {
        fprintf(stderr, "chat_server: %s: %s\n", c->who, np_strerror(rc));
        np_close(c->conn);
        free(c);
        np_waitgroup_done(&tasks);
        return;
    }

    /* Join. The channel is unbuffered, so once the send is done the hub
     * holds the client, and closing c->out is the hub's job. If the server
     * is shutting down instead, the hub never saw it, so it is ours. */
    if (send_or_quit(joins, &c) < 0) {
        np_chan_close(c->out);
        goto wait_for_writer;
    }

    /* Read lines. The buffer always has room for more than MAX_LINE, so a
     * line that does not fit is cut rather than overflowing. */
    char buf[4096];
    size_t have = 0;
    bool stopping = false;
    while (!stopping) {
        ssize_t n = np_read(c->conn, buf + have, sizeof buf - have);
        if (n <= 0)
            break; /* 0: the client closed; < 0: reset, or the writer closed the connection */
        have += (size_t)n;

        size_t start = 0;
        for (;;) {
            size_t left = have - start;
            size_t scan = left < MAX_LINE ? left : MAX_LINE;
            char *nl = memchr(buf + start, '\n', scan);
            size_t len, used;
            if (nl != NULL) {
                len = (size_t)(nl - (buf + start));
                used = len + 1;
            } else if (left >= MAX_LINE) {
                len = used = MAX_LINE;
            } else {
                break; /* an incomplete line: wait for the rest */
            }
            if (say(c, buf + start, len) < 0) {
                stopping = true; /* quit is closed */
                break;
            }
            start += used;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
    }
    if (have > 0 && !stopping)
        say(c, buf, have); /* a last line without its newline */

    /* Leave, unless the hub has stopped: it has then released the client
     * already, or is about to (it does so for every client it holds). */
    send_or_quit(leaves, &c);

wait_for_writer:
    /* The writer ends only after the hub closed c->out, i.e. after the hub
     * let go of c: from here on nobody else uses the client. */
    np_chan_recv(c->done, NULL, 0);
    np_chan_free(c->out);
    np_chan_free(c->done);
    free(c);
    np_waitgroup_done(&tasks);
}

/* The server ---------------------------------------------------------------*/

/* Go's `go func() { <-quit; l.Close() }()`: closing the listener ends the
 * accept loop (np_accept returns -ECANCELED). */
static void close_on_quit(void *arg)
{
    (void)arg;
    np_chan_recv(quit, NULL, 0); /* -EPIPE once quit is closed */
    np_listener_close(listener);
    np_waitgroup_done(&tasks);
}

/* Starts fn(arg) as a task counted in `tasks`. */
static int go_counted(void (*fn)(void *), void *arg)
{
    np_waitgroup_add(&tasks, 1);
    int rc = np_go(fn, arg);
    if (rc < 0)
        np_waitgroup_done(&tasks);
    return rc;
}

/* Signals -------------------------------------------------------------------
 *
 * Go's signal.Notify: SIGINT and SIGTERM arrive as ints on a channel, and a
 * task turns the first into closing quit. Once shutdown has begun it stops
 * watching, so a second signal takes the default action: it ends the
 * process at once, which is what a user pressing ^C twice wants.
 */
static void watch_signals(void *arg)
{
    np_chan sig = *(np_chan *)arg;
    int signo = 0;
    np_select_case cases[] = {
        { .chan = sig, .op = NP_RECV, .elem = &signo },
        { .chan = quit, .op = NP_RECV, .elem = NULL },
    };
    if (np_select(cases, 2, 0) == 0) { /* a signal, not another shutdown */
        fprintf(stderr, "chat_server: %s, shutting down\n", strsignal(signo));
        np_chan_close(quit);
    }
    np_signal_stop(sig);
    np_waitgroup_done(&tasks);
}

static void serve(void *arg)
{
    (void)arg;
    int rc = np_listen(&listener, "tcp", listen_addr);
    if (rc < 0) {
        fail(listen_addr, rc);
        return;
    }
    if ((rc = np_chan_make(&joins, sizeof(client *), 0)) < 0 ||
        (rc = np_chan_make(&leaves, sizeof(client *), 0)) < 0 ||
        (rc = np_chan_make(&messages, sizeof(message), HUB_QUEUE)) < 0 ||
        (rc = go_counted(hub, NULL)) < 0 || (rc = go_counted(close_on_quit, NULL)) < 0 ||
        (rc = go_counted(watch_signals, &signals)) < 0) {
        fail("start", rc);
        np_chan_close(quit); /* stops the hub and close_on_quit, if they started */
        np_listener_close(listener);
    } else {
        char addr[128];
        np_listener_addr(listener, addr, sizeof addr);
        printf("listening on %s\n", addr);
        fflush(stdout);
    }

    for (;;) {
        np_conn conn;
        rc = np_accept(listener, &conn);
        if (rc == -ECANCELED || rc == -EBADF)
            break; /* the listener was closed: we are shutting down */
        if (rc < 0) {
            /* Typically -EMFILE: out of descriptors. The listener stays
             * usable, but retrying at once would fail again: back off. */
            fprintf(stderr, "chat_server: accept: %s\n", np_strerror(rc));
            np_sleep(100 * NP_MILLISECOND);
            continue;
        }
        /* The Go statement: `go handleConn(conn)`. */
        client *c = calloc(1, sizeof *c);
        if (c != NULL)
            c->conn = conn;
        if (c == NULL || go_counted(client_task, c) < 0) {
            free(c);
            np_close(conn);
        }
    }

    /* Every task has ended once the count is 0: nobody uses the channels
     * any more, and the hub's counts are final. */
    np_waitgroup_wait(&tasks, 0);
    np_chan_free(joins);
    np_chan_free(leaves);
    np_chan_free(messages);
    if (exit_code != 0)
        return;
    printf("chat_server: %" PRIu64 " clients served, %" PRIu64 " lines broadcast, %" PRIu64
           " messages dropped\n",
           stats.served, stats.lines, stats.dropped);
    fflush(stdout);
}

static long number(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 1000000) {
        fprintf(stderr, "chat_server: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    static const char usage[] =
        "usage: chat_server [-w WORKERS] [-q QUEUE] [-b SNDBUF_KIB] [ADDRESS]\n";
    np_config cfg = {0};
    int opt;
    while ((opt = getopt(argc, argv, "w:q:b:h")) != -1) {
        switch (opt) {
        case 'w': cfg.workers = (int)number(optarg, "worker count"); break;
        case 'q': out_queue = (int)number(optarg, "queue depth"); break;
        case 'b': sndbuf_kib = (int)number(optarg, "send buffer size"); break;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind < argc)
        listen_addr = argv[optind++];
    if (optind < argc || out_queue < 1) {
        fputs(usage, stderr);
        return 2;
    }

    /* quit exists before anything can close it: a signal may come at once.
     * Making a channel needs no runtime. */
    int rc = np_chan_make(&quit, 0, 0);
    if (rc < 0) {
        fprintf(stderr, "chat_server: %s\n", np_strerror(rc));
        return 1;
    }

    /* Watched from here on: a signal that comes before the watcher task
     * runs waits in the channel (one slot per signal is plenty). */
    if ((rc = np_chan_make(&signals, sizeof(int), 2)) < 0 ||
        (rc = np_signal_notify(signals, SIGINT)) < 0 ||
        (rc = np_signal_notify(signals, SIGTERM)) < 0) {
        fprintf(stderr, "chat_server: signals: %s\n", np_strerror(rc));
        return 1;
    }

    rc = np_run(&cfg, serve, NULL);
    np_signal_stop(signals);
    np_chan_free(signals);
    if (rc < 0) {
        fprintf(stderr, "chat_server: %s\n", np_strerror(rc));
        return 1;
    }
    /* A signal still to come finds the handle freed: np_chan_close then
     * returns -EBADF, harmlessly. */
    np_chan_free(quit);
    return exit_code;
}
