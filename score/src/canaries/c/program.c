#include <stdio.h>
#include <stdlib.h>

int main(int argc, char *argv[]) {
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 0;
    printf("%ld\n", n * n);
    return 0;
}
