/* libuv echo server for bench/echo.
 *
 * uv_tcp handles, uv_read_start into one static 64 KiB buffer (reads are
 * delivered one at a time on the loop thread, so one buffer serves every
 * connection), and each chunk written back with uv_try_write; only what the
 * kernel does not take is copied into a uv_write request. Reading stops
 * while more than WQ_MAX bytes are queued. Accepted sockets get TCP_NODELAY.
 *
 * Usage: uv_echo ADDRESS      (host:port, [v6]:port)
 * Prints "listening on <host:port>" once ready.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define WQ_MAX (1u << 20)

struct wreq {
    uv_write_t req;
    char data[];
};

static char rbuf[65536];

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status)
{
    uv_stream_t *s = req->handle;
    free(req);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (s->write_queue_size <= WQ_MAX && !uv_is_closing((uv_handle_t *)s) && s->data) {
        s->data = NULL; /* reading was paused */
        uv_read_start(s, alloc_cb, read_cb);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread == 0) return;
    if (nread < 0) { /* UV_EOF or an error */
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    uv_buf_t b = uv_buf_init(buf->base, (unsigned)nread);
    int w = uv_try_write(s, &b, 1);
    if (w == nread) return;
    if (w < 0) {
        if (w != UV_EAGAIN) {
            uv_close((uv_handle_t *)s, on_close);
            return;
        }
        w = 0;
    }
    size_t rest = (size_t)nread - (size_t)w;
    struct wreq *r = malloc(sizeof *r + rest);
    if (!r) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    memcpy(r->data, buf->base + w, rest);
    uv_buf_t rb = uv_buf_init(r->data, (unsigned)rest);
    if (uv_write(&r->req, s, &rb, 1, write_cb) < 0) {
        free(r);
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (s->write_queue_size > WQ_MAX) {
        uv_read_stop(s);
        s->data = s; /* marks "paused"; write_cb resumes */
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "accept: %s\n", uv_strerror(status));
        return;
    }
    uv_tcp_t *c = malloc(sizeof *c);
    if (!c) return;
    uv_tcp_init(server->loop, c);
    c->data = NULL;
    if (uv_accept(server, (uv_stream_t *)c) < 0) {
        uv_close((uv_handle_t *)c, on_close);
        return;
    }
    uv_tcp_nodelay(c, 1);
    uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    char host[256];
    const char *colon = strrchr(argv[1], ':');
    if (!colon || (size_t)(colon - argv[1]) >= sizeof host) {
        fprintf(stderr, "bad address %s (want host:port)\n", argv[1]);
        return 2;
    }
    size_t hl = (size_t)(colon - argv[1]);
    memcpy(host, argv[1], hl);
    host[hl] = 0;
    int port = atoi(colon + 1);
    struct sockaddr_storage ss;
    int rc;
    if (hl >= 2 && host[0] == '[') {
        host[hl - 1] = 0;
        rc = uv_ip6_addr(host + 1, port, (struct sockaddr_in6 *)&ss);
    } else {
        rc = uv_ip4_addr(hl ? host : "0.0.0.0", port, (struct sockaddr_in *)&ss);
    }
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], uv_strerror(rc));
        return 2;
    }

    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    if ((rc = uv_tcp_bind(&server, (struct sockaddr *)&ss, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&server, 4096, on_connection)) < 0) {
        fprintf(stderr, "listen %s: %s\n", argv[1], uv_strerror(rc));
        return 1;
    }
    int sl = sizeof ss;
    char ip[64];
    uv_tcp_getsockname(&server, (struct sockaddr *)&ss, &sl);
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
        printf("listening on [%s]:%d\n", ip, ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        printf("listening on %s:%d\n", ip, ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
