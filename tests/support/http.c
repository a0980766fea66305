/* Hostile helper: from inside a container, send one raw HTTP request (argv[2]) to a Unix socket
 * (argv[1]) and print the answer. Prints "connect-failed" when it cannot connect. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        puts("connect-failed");
        return 0;
    }
    (void)!write(fd, argv[2], strlen(argv[2]));
    char buf[4096];
    long n;
    while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, n, stdout);
    return 0;
}
