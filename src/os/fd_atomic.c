/* Descriptor flags set as the descriptor is made (os.h): SOCK_NONBLOCK,
 * SOCK_CLOEXEC, accept4 and pipe2, where the system has them (Linux,
 * FreeBSD), so that no fork+exec in another thread can inherit one before
 * its flags are set. Sends carry MSG_NOSIGNAL (net/io.c). */
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/sys.h"
#include "os/os.h"

int np__os_socket(int domain, int type, int protocol)
{
    return NP__SYS(socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol));
}

int np__os_accept(int listen_fd)
{
    return NP__SYS(accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

int np__os_pipe(int p[2])
{
    return NP__SYS(pipe2(p, O_CLOEXEC));
}

int np__os_adopt_socket(int fd)
{
    (void)fd; /* sends carry MSG_NOSIGNAL */
    return 0;
}
