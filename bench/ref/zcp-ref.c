/*
 * zcp-ref: the physical reference for `zcp --checksum none` in the benchmark
 * suite (bench/run.sh). It moves bytes the way zcp's zero-copy path does and
 * does nothing else: no protocol, no authentication, no hashing.
 *
 *   zcp-ref recv ADDR PORT OUT   listen on ADDR:PORT (0: any free port), take
 *                                one connection and write it to OUT with
 *                                splice(socket -> pipe -> file); prints
 *                                "zcp-ref: listening on ADDR:PORT" on stderr
 *   zcp-ref send SOURCE ADDR PORT
 *                                connect and send SOURCE with sendfile(2) in
 *                                large chunks, or, for SOURCE "-", splice
 *                                stdin (a pipe) into the socket
 *
 * The pipes are enlarged with F_SETPIPE_SZ to /proc/sys/fs/pipe-max-size:
 * with the default 64 KiB pipe the splice path moves a fraction of the data
 * per call. Socket buffers are left to the kernel's autotuning.
 *
 * Build: gcc -O2 -Wall -Wextra -o zcp-ref zcp-ref.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* One sendfile(2) call moves at most this much. */
#define SEND_CHUNK (1L << 30)

static void die(const char *what)
{
    fprintf(stderr, "zcp-ref: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage(void)
{
    fprintf(stderr, "usage: zcp-ref recv ADDR PORT OUT | zcp-ref send SOURCE|- ADDR PORT\n");
    exit(2);
}

/* Grow `fd`'s pipe to fs.pipe-max-size; return the size it got. */
static long grow_pipe(int fd)
{
    long want = 1L << 20;
    FILE *max = fopen("/proc/sys/fs/pipe-max-size", "r");
    if (max != NULL) {
        if (fscanf(max, "%ld", &want) != 1)
            want = 1L << 20;
        fclose(max);
    }
    long got = fcntl(fd, F_SETPIPE_SZ, (int)want);
    if (got < 0)
        got = fcntl(fd, F_GETPIPE_SZ);
    if (got < 0)
        die("F_GETPIPE_SZ");
    return got;
}

static struct sockaddr_in address(const char *host, const char *port)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(port));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "zcp-ref: not an IPv4 address: %s\n", host);
        exit(2);
    }
    return sa;
}

/* Move everything from `in` to `out` (one of them a pipe) with splice(2),
 * `chunk` bytes per call at most; returns the bytes moved. */
static long long splice_all(int in, int out, long chunk)
{
    long long total = 0;
    for (;;) {
        ssize_t n = splice(in, NULL, out, NULL, (size_t)chunk, SPLICE_F_MOVE | SPLICE_F_MORE);
        if (n == 0)
            return total;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("splice");
        }
        total += n;
    }
}

static int receive(const char *host, const char *port, const char *path)
{
    struct sockaddr_in sa = address(host, port);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (listener < 0)
        die("socket");
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(listener, 1) < 0)
        die("bind/listen");
    socklen_t len = sizeof sa;
    if (getsockname(listener, (struct sockaddr *)&sa, &len) < 0)
        die("getsockname");
    fprintf(stderr, "zcp-ref: listening on %s:%u\n", host, ntohs(sa.sin_port));

    int sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (sock < 0)
        die("accept");
    close(listener);
    int file = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (file < 0)
        die(path);
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        die("pipe");
    long chunk = grow_pipe(pipefd[1]);

    for (;;) {
        ssize_t in = splice(sock, NULL, pipefd[1], NULL, (size_t)chunk, SPLICE_F_MOVE | SPLICE_F_MORE);
        if (in == 0)
            break;
        if (in < 0) {
            if (errno == EINTR)
                continue;
            die("splice socket -> pipe");
        }
        while (in > 0) {
            ssize_t out = splice(pipefd[0], NULL, file, NULL, (size_t)in, SPLICE_F_MOVE | SPLICE_F_MORE);
            if (out < 0) {
                if (errno == EINTR)
                    continue;
                die("splice pipe -> file");
            }
            in -= out;
        }
    }
    if (close(file) < 0)
        die("close");
    return 0;
}

static int send_source(const char *source, const char *host, const char *port)
{
    struct sockaddr_in sa = address(host, port);
    int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0)
        die("socket");
    if (connect(sock, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");

    if (strcmp(source, "-") == 0) {
        splice_all(STDIN_FILENO, sock, grow_pipe(STDIN_FILENO));
    } else {
        int file = open(source, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (file < 0 || fstat(file, &st) < 0)
            die(source);
        off_t offset = 0;
        while (offset < st.st_size) {
            off_t left = st.st_size - offset;
            ssize_t n = sendfile(sock, file, &offset, left < SEND_CHUNK ? (size_t)left : SEND_CHUNK);
            if (n < 0 && errno != EINTR)
                die("sendfile");
            if (n == 0)
                break; /* the file shrank */
        }
        close(file);
    }
    if (close(sock) < 0)
        die("close");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "recv") == 0)
        return receive(argv[2], argv[3], argv[4]);
    if (argc == 5 && strcmp(argv[1], "send") == 0)
        return send_source(argv[2], argv[3], argv[4]);
    usage();
    return 2;
}
