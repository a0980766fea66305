/* Prints the real and effective uid: run setuid to see whether the bit took effect. */
#include <stdio.h>
#include <unistd.h>
int main(void) {
    printf("uid=%d euid=%d\n", (int)getuid(), (int)geteuid());
    return 0;
}
