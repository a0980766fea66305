/* Hostile helper: from inside a sandbox, connect to the agent's socket and try to start a call.
 * Prints "connect-failed", or the number of bytes the agent answered before closing. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 2) return 2;
    signal(SIGPIPE, SIG_IGN); /* the agent may close before we write */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        puts("connect-failed");
        return 0;
    }
    /* Anything that could look like a hello or a request. */
    const char junk[] = "\0\0\0\x10\x01{\"version\":1}    ";
    (void)!write(fd, junk, sizeof junk);
    char buf[4096];
    long total = 0, n;
    while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
    printf("answered %ld bytes\n", total);
    return 0;
}
