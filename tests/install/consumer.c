/* A program that uses netpoll as an outside user would: only <netpoll.h>,
 * linked through pkg-config, find_package(netpoll) or add_subdirectory.
 * It echoes a message through a loopback connection between two tasks and
 * checks that the header and the library agree on the version. Exit 0 on
 * success. */
#include <netpoll.h>
#include <stdio.h>
#include <string.h>

static char addr[64];

static void echo_once(void *arg)
{
    np_listener l = *(np_listener *)arg;
    np_conn c;
    if (np_accept(l, &c) < 0)
        return;
    char buf[64];
    ssize_t n = np_read(c, buf, sizeof buf);
    if (n > 0)
        (void)np_write(c, buf, (size_t)n);
    np_close(c);
}

static int result = 1;

static void main_task(void *arg)
{
    (void)arg;
    static np_listener l;
    if (np_listen(&l, "tcp", "127.0.0.1:0") < 0 || np_listener_addr(l, addr, sizeof addr) < 0)
        return;
    np_go(echo_once, &l);
    np_conn c;
    int rc = np_dial(&c, "tcp", addr, np_now() + 5 * NP_SECOND);
    if (rc < 0) {
        fprintf(stderr, "consumer: dial %s: %s (%s)\n", addr, np_strerror(rc), np_err_name(rc));
        return;
    }
    char buf[16] = { 0 };
    np_set_deadline(c, np_now() + 5 * NP_SECOND);
    if (np_write(c, "hello", 5) == 5 && np_read(c, buf, sizeof buf) == 5 && memcmp(buf, "hello", 5) == 0)
        result = 0;
    np_close(c);
    np_listener_close(l);
}

int main(void)
{
    if (np_version() != NP_VERSION_HEX || strcmp(np_version_string(), NP_VERSION_STRING) != 0) {
        fprintf(stderr, "consumer: header %s, library %s\n", NP_VERSION_STRING, np_version_string());
        return 1;
    }
    int rc = np_run(NULL, main_task, NULL);
    if (rc != 0 || result != 0) {
        fprintf(stderr, "consumer: np_run = %d, echo %s\n", rc, result ? "failed" : "ok");
        return 1;
    }
    printf("consumer: netpoll %s (%s), echo ok\n", np_version_string(), np_poller_name());
    return 0;
}
