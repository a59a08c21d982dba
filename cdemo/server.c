/* server.c: the set-up both C servers share (see server.h). */
#define _GNU_SOURCE
#include "server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static void usage(const char *prog, const char *about, const char *pool_help) {
    fprintf(stderr, "usage: %s [--port N] [--bind ADDR]%s [--data FILE] [--idle-ms N] [--header-ms N]\n"
                    "  %s (routes: / /file /sleep?ms=N /dns?host=NAME)\n"
                    "%s"
                    "  --idle-ms    close a keep-alive connection idle this long (default %d)\n"
                    "  --header-ms  close a connection whose request head is not whole this long after\n"
                    "               its accept or the request's first byte (default %d)\n",
            prog, pool_help ? " [--pool]" : "", about, pool_help ? pool_help : "", IDLE_MS, HEADER_MS);
}

int options_parse(int argc, char **argv, struct options *o, const char *about, const char *pool_help) {
    *o = (struct options){.bind = "127.0.0.1", .data = "server/data/lab.txt", .port = 8080,
                          .idle_ms = IDLE_MS, .header_ms = HEADER_MS};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--port") && v) o->port = atoi(argv[++i]);
        else if (!strcmp(a, "--bind") && v) o->bind = argv[++i];
        else if (!strcmp(a, "--data") && v) o->data = argv[++i];
        else if (!strcmp(a, "--pool") && pool_help) o->pool = 1;
        else if (!strcmp(a, "--idle-ms") && v) o->idle_ms = atoll(argv[++i]);
        else if (!strcmp(a, "--header-ms") && v) o->header_ms = atoll(argv[++i]);
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(argv[0], about, pool_help);
            return 0;
        } else {
            usage(argv[0], about, pool_help);
            return 2;
        }
    }
    if (o->port <= 0 || o->port > 65535 || o->idle_ms <= 0 || o->header_ms <= 0) {
        usage(argv[0], about, pool_help);
        return 2;
    }
    return -1;
}

int listen_on(const char *addr, int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("setsockopt");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad --bind address: %s\n", addr);
        exit(2);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("bind");
    if (listen(fd, 511) < 0) die("listen");
    return fd;
}

long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void die(const char *what) {
    perror(what);
    exit(1);
}
