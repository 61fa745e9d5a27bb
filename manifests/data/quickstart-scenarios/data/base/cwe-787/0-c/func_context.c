int main(int argc, char *argv[]) {
    char name[16];
    // copy argv[1] into name, then print "Hello, <name>!"
