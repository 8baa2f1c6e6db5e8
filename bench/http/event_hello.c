/* libevent evhttp "Hello, world!" server for bench/http: the same answer as
 * examples/http_hello (200, text/plain; charset=utf-8, "Hello, world!\n"),
 * HTTP/1.1 keep-alive, one event loop thread.
 *
 *   event_hello HOST:PORT     (port 0 = a free port)
 *
 * Prints "listening on <host:port>" once ready.
 */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char body[] = "Hello, world!\n";

static void on_request(struct evhttp_request *req, void *arg)
{
    struct evbuffer *out = arg;
    evbuffer_add_reference(out, body, sizeof body - 1, NULL, NULL);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", out);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: event_hello HOST:PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char host[256];
    const char *colon = strrchr(argv[1], ':');
    if (!colon || (size_t)(colon - argv[1]) >= sizeof host) {
        fprintf(stderr, "event_hello: bad address %s\n", argv[1]);
        return 2;
    }
    memcpy(host, argv[1], (size_t)(colon - argv[1]));
    host[colon - argv[1]] = 0;
    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    struct evbuffer *out = evbuffer_new();
    if (!http || !out)
        return 1;
    evhttp_set_gencb(http, on_request, out);
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(http, *host ? host : "127.0.0.1", (ev_uint16_t)atoi(colon + 1));
    if (!bs) {
        fprintf(stderr, "event_hello: cannot listen on %s\n", argv[1]);
        return 1;
    }
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &len);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
    printf("listening on %s:%d\n", ip, ntohs(sa.sin_port));
    fflush(stdout);
    event_base_dispatch(base);
    return 0;
}
