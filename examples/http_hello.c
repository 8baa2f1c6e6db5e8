/* http_hello — an HTTP/1.1 "Hello, world!" server with keep-alive and
 * pipelining, fast enough to be driven by wrk.
 *
 *   http_hello [-w WORKERS] [ADDRESS]
 *
 * ADDRESS defaults to 127.0.0.1:8080 (port 0 picks a free port); once
 * listening it prints "listening on ADDRESS". Every request gets the same
 * 200 response; try `curl -v http://127.0.0.1:8080/` or
 * `wrk -t2 -c100 -d5s http://127.0.0.1:8080/`.
 *
 * One task per connection reads into a buffer, answers every complete
 * request in it (a pipelining client sends several before reading), writes
 * all the answers at once, and reads again. The parser is deliberately
 * minimal but honest: it takes the request line and the headers that matter
 * here (Connection, Content-Length, Transfer-Encoding), skips request
 * bodies, and answers 400 and closes on anything it does not understand.
 * An idle keep-alive connection is closed after a minute, by a deadline.
 */
#define _GNU_SOURCE /* memmem */
#include <netpoll.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD (8 * 1024)        /* largest request line + headers */
#define IDLE_TIMEOUT (60 * NP_SECOND)

typedef struct request {
    size_t head_len;    /* bytes up to and including the blank line */
    uint64_t body_len;  /* Content-Length */
    bool keep_alive;
    bool http10;        /* HTTP/1.0: keep-alive must be said explicitly */
    bool head;          /* a HEAD request: no body in the answer */
} request;

/* Does the comma-separated header value list the token (any case)? */
static bool has_token(const char *v, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    while (len > 0) {
        while (len > 0 && (*v == ' ' || *v == '\t' || *v == ',')) {
            v++;
            len--;
        }
        size_t n = 0;
        while (n < len && v[n] != ',')
            n++;
        size_t t = n;
        while (t > 0 && (v[t - 1] == ' ' || v[t - 1] == '\t'))
            t--;
        if (t == tlen && strncasecmp(v, token, tlen) == 0)
            return true;
        v += n;
        len -= n;
    }
    return false;
}

/* Parses the request at the start of buf[0, len). Returns 1 and fills *rq,
 * 0 if the request's head is not complete yet, or -1 if it is malformed. */
static int parse_request(const char *buf, size_t len, request *rq)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return 0;
    *rq = (request){.head_len = (size_t)(end - buf) + 4};

    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    const char *line_end = memmem(buf, (size_t)(end - buf) + 2, "\r\n", 2);
    const char *sp1 = memchr(buf, ' ', (size_t)(line_end - buf));
    if (sp1 == NULL || sp1 == buf)
        return -1;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1));
    if (sp2 == NULL || sp2 == sp1 + 1 || line_end - (sp2 + 1) != 8)
        return -1;
    if (memcmp(sp2 + 1, "HTTP/1.1", 8) == 0)
        rq->keep_alive = true; /* HTTP/1.1 keeps the connection by default */
    else if (memcmp(sp2 + 1, "HTTP/1.0", 8) == 0)
        rq->http10 = true;
    else
        return -1;
    rq->head = sp1 - buf == 4 && memcmp(buf, "HEAD", 4) == 0;

    /* Headers: "Name: value" lines up to the blank one. */
    for (const char *p = line_end + 2; p < end + 2;) {
        const char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL || colon == p)
            return -1;
        size_t name_len = (size_t)(colon - p);
        const char *v = colon + 1;
        size_t vlen = (size_t)(eol - v);
        if (name_len == 10 && strncasecmp(p, "Connection", 10) == 0) {
            if (has_token(v, vlen, "close"))
                rq->keep_alive = false;
            else if (has_token(v, vlen, "keep-alive"))
                rq->keep_alive = true;
        } else if (name_len == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
            uint64_t n = 0;
            bool digits = false;
            for (; vlen > 0; v++, vlen--) {
                if (*v >= '0' && *v <= '9') {
                    if (n > UINT64_MAX / 10 - 1)
                        return -1;
                    n = n * 10 + (uint64_t)(*v - '0');
                    digits = true;
                } else if (*v != ' ' && *v != '\t') {
                    return -1;
                }
            }
            if (!digits)
                return -1;
            rq->body_len = n;
        } else if (name_len == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
            return -1; /* chunked bodies: more than hello world needs */
        }
        p = eol + 2;
    }
    return 1;
}

/* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n", which HTTP/1.1 servers send.
 * Formatting it is costly, so each worker thread keeps the current one. The
 * copy must be used before the task next blocks: it may then resume on
 * another thread. */
static const char *date_header(void)
{
    static _Thread_local time_t last;
    static _Thread_local char text[64];
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof text, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
        last = now;
    }
    return text;
}

static const char body[] = "Hello, world!\n";

/* Appends the answer to a request to out[*len]; out has room for it. */
static void respond(char *out, size_t *len, size_t cap, const request *rq)
{
    int n = snprintf(out + *len, cap - *len,
                     "HTTP/1.1 200 OK\r\n"
                     "%s"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "\r\n"
                     "%s",
                     date_header(), sizeof body - 1,
                     !rq->keep_alive ? "Connection: close\r\n"
                     : rq->http10    ? "Connection: keep-alive\r\n"
                                     : "",
                     rq->head ? "" : body);
    *len += (size_t)n;
}

static const char bad_request[] = "HTTP/1.1 400 Bad Request\r\n"
                                  "Content-Length: 0\r\n"
                                  "Connection: close\r\n"
                                  "\r\n";

/* Closes a connection the client may still be sending on. Closing a socket
 * with unread input makes the kernel send a reset, which can destroy the
 * answer still on its way; so first half-close, and read until the client
 * closes too (for a second at most). */
static void lingering_close(np_conn c)
{
    char buf[4096];
    np_close_write(c);
    np_set_read_deadline(c, np_now() + NP_SECOND);
    while (np_read(c, buf, sizeof buf) > 0)
        ;
    np_close(c);
}

static void serve(void *arg)
{
    np_conn c = *(np_conn *)arg;
    free(arg);
    char in[MAX_HEAD], out[16 * 1024];
    size_t have = 0;     /* bytes in `in` */
    uint64_t skip = 0;   /* body bytes of the last request still to discard */
    bool open = true;

    while (open) {
        /* Keep-alive timeout: a deadline pushed forward before each read.
         * np_set_deadline covers the writes below too, so a client that
         * stops reading cannot hold the task either. */
        np_set_deadline(c, np_now() + IDLE_TIMEOUT);
        ssize_t n = np_read(c, in + have, sizeof in - have);
        if (n <= 0)
            goto done; /* the client closed (0), went away or timed out (< 0) */
        have += (size_t)n;

        /* Answer every complete request in the buffer, into `out`. */
        size_t used = 0, out_len = 0;
        for (;;) {
            if (skip > 0) { /* a request body we do not need */
                size_t k = have - used < skip ? have - used : (size_t)skip;
                used += k;
                skip -= k;
                if (skip > 0)
                    break;
            }
            request rq;
            int rc = parse_request(in + used, have - used, &rq);
            if (rc == 0)
                break; /* incomplete: wait for the rest of it */
            if (out_len > sizeof out - 512) { /* `out` is full: send it */
                if (np_write(c, out, out_len) != (ssize_t)out_len)
                    goto done;
                out_len = 0;
            }
            if (rc < 0) {
                memcpy(out + out_len, bad_request, sizeof bad_request - 1);
                out_len += sizeof bad_request - 1;
                open = false;
                break;
            }
            respond(out, &out_len, sizeof out, &rq);
            used += rq.head_len;
            skip = rq.body_len;
            if (!rq.keep_alive) {
                open = false;
                break;
            }
        }
        /* np_write sends all of it, or returns less because of an error. */
        if (out_len > 0 && np_write(c, out, out_len) != (ssize_t)out_len)
            goto done;

        /* Keep the unanswered part for the next read. */
        memmove(in, in + used, have - used);
        have -= used;
        if (open && have == sizeof in) { /* a request head larger than we take */
            static const char too_large[] = "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                            "Content-Length: 0\r\n"
                                            "Connection: close\r\n"
                                            "\r\n";
            np_write(c, too_large, sizeof too_large - 1);
            open = false;
        }
    }
    /* We end the connection: "Connection: close", or a bad request. */
    lingering_close(c);
    return;
done:
    np_close(c); /* the client closed, went away, or timed out */
}

static int exit_code;

static void accept_loop(void *arg)
{
    const char *address = arg;
    np_listener l;
    int rc = np_listen(&l, "tcp", address);
    if (rc < 0) {
        fprintf(stderr, "http_hello: listen %s: %s\n", address, np_strerror(rc));
        exit_code = 1;
        return;
    }
    char name[128];
    np_listener_addr(l, name, sizeof name);
    printf("listening on %s\n", name);
    fflush(stdout);

    for (;;) {
        np_conn c;
        rc = np_accept(l, &c);
        if (rc < 0) {
            /* Typically -EMFILE: out of descriptors. The listener stays
             * usable, but retrying at once would fail again: back off. */
            fprintf(stderr, "http_hello: accept: %s\n", np_strerror(rc));
            np_sleep(100 * NP_MILLISECOND);
            continue;
        }
        np_conn *handle = malloc(sizeof *handle); /* for the new task */
        if (handle == NULL) {
            np_close(c);
            continue;
        }
        *handle = c;
        if (np_go(serve, handle) < 0) { /* `go serve(c)` */
            np_close(c);
            free(handle);
        }
    }
}

int main(int argc, char **argv)
{
    const char *usage = "usage: http_hello [-w WORKERS] [ADDRESS]\n";
    const char *address = "127.0.0.1:8080";
    np_config cfg = {0};
    int opt;
    while ((opt = getopt(argc, argv, "w:h")) != -1) {
        char *end;
        if (opt != 'w' || (cfg.workers = (int)strtol(optarg, &end, 10)) < 0 || *end != '\0' ||
            end == optarg) {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind < argc)
        address = argv[optind++];
    if (optind < argc) {
        fputs(usage, stderr);
        return 2;
    }

    /* Runs until killed: the accept loop never ends by itself. */
    int rc = np_run(&cfg, accept_loop, (void *)address);
    if (rc < 0) {
        fprintf(stderr, "http_hello: %s\n", np_strerror(rc));
        return 1;
    }
    return exit_code;
}
