/* uring_blocking.c: a completion loop that blocks anyway. It accepts,
 * receives and sends through io_uring, as cdemo/uring_server.c does, but
 * serves GET /file with a plain open() and read() and GET /dns with
 * getaddrinfo("localhost"), made on the loop thread itself: while they run,
 * no completion is reaped. The lab must say so (tests/test_uring_kernel.py).
 *
 * One request per connection, then close. Usage: uring_blocking PORT FILE
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum kind { ACCEPT, RECV, SEND, CLOSE };

struct op {
    enum kind kind;
    int fd;
    char buf[4096];
    size_t len;
};

static struct io_uring ring;
static const char *path;

static void fail(const char *what, int rc) {
    fprintf(stderr, "uring_blocking: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

static struct op *op_new(enum kind kind, int fd) {
    struct op *o = calloc(1, sizeof *o);
    if (!o) fail("calloc", 12);
    o->kind = kind;
    o->fd = fd;
    return o;
}

static struct io_uring_sqe *sqe_for(struct op *o) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) fail("io_uring_get_sqe", 16);
    io_uring_sqe_set_data(sqe, o);
    return sqe;
}

/* The blocking part: plain calls on the loop thread. */
static size_t answer(const char *request, char *out, size_t room) {
    char body[256] = "{\"route\":\"/\"}";
    if (!strncmp(request, "GET /file ", 10)) {
        char data[8192];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd >= 0 ? read(fd, data, sizeof data) : -1;
        if (fd >= 0 && close(fd) < 0) perror("close");
        snprintf(body, sizeof body, "{\"route\":\"/file\",\"bytes\":%zd}", n);
    } else if (!strncmp(request, "GET /dns ", 9)) {
        struct addrinfo *res = NULL, hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
        int rc = getaddrinfo("localhost", NULL, &hints, &res);
        snprintf(body, sizeof body, "{\"route\":\"/dns\",\"found\":%s}", rc == 0 ? "true" : "false");
        if (res) freeaddrinfo(res);
    }
    return (size_t)snprintf(out, room, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                            strlen(body), body);
}

static void on_complete(struct op *o, int res, int listen_fd) {
    switch (o->kind) {
    case ACCEPT:
        if (res >= 0) {
            struct op *r = op_new(RECV, res);
            io_uring_prep_recv(sqe_for(r), res, r->buf, sizeof r->buf - 1, 0);
        }
        io_uring_prep_accept(sqe_for(o), listen_fd, NULL, NULL, SOCK_CLOEXEC);
        return;
    case RECV:
        if (res <= 0) {
            o->kind = CLOSE;
            io_uring_prep_close(sqe_for(o), o->fd);
            return;
        }
        o->buf[res] = '\0';
        o->len = answer(o->buf, o->buf, sizeof o->buf);
        o->kind = SEND;
        io_uring_prep_send(sqe_for(o), o->fd, o->buf, o->len, MSG_NOSIGNAL);
        return;
    case SEND:
        o->kind = CLOSE;
        io_uring_prep_close(sqe_for(o), o->fd);
        return;
    case CLOSE:
        free(o);
        return;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: uring_blocking PORT FILE\n");
        return 2;
    }
    path = argv[2];
    int listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (listen_fd < 0 || setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0
        || bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(listen_fd, 64) < 0)
        fail("listen", 98);
    int rc = io_uring_queue_init(64, &ring, 0);
    if (rc < 0) fail("io_uring_queue_init", rc);
    io_uring_prep_accept(sqe_for(op_new(ACCEPT, listen_fd)), listen_fd, NULL, NULL, SOCK_CLOEXEC);
    for (;;) {
        struct io_uring_cqe *cqe;
        rc = io_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EINTR) fail("io_uring_submit_and_wait", rc);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            on_complete(io_uring_cqe_get_data(cqe), cqe->res, listen_fd);
        }
        io_uring_cq_advance(&ring, seen);
    }
}
