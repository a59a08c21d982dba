/* uring_server.c: the same server on completions, not readiness.
 *
 * The epoll server asks the kernel "which fd is ready?" and then does the
 * I/O itself. This one hands the I/O to the kernel: it queues operations
 * ("accept on this socket", "recv into this buffer", "send these bytes",
 * "open and read this file", "wake me in 200 ms") in io_uring's submission
 * ring and waits for their results in the completion ring. A regular file
 * read is an operation like any other: the kernel does it inline, or on its
 * own worker threads (iou-wrk, io-wq) when it would block. No user-space
 * pool, no readiness, no EAGAIN.
 *
 * Read it in the order it runs (main, at the end):
 *   1. set-up: a listening socket, one ring, and in it an accept, a tick
 *      timeout and a read of a signalfd;
 *   2. run_loop(): one io_uring_enter submits what the handlers queued and
 *      sleeps until something completes; then a switch on what completed;
 *   3. shutdown: cancel everything in flight, reap it, close the ring.
 *
 * The rule completion adds: the kernel owns a buffer while its operation is
 * in flight. A connection is freed only once every operation on it has
 * completed (a cancel is itself an operation that completes).
 *
 * Routes, limits and a connection's HTTP state are the epoll server's
 * (routes.c, session.c):
 *   /file             IORING_OP_OPENAT, READ, CLOSE of the lab's data file
 *   /sleep?ms=N       IORING_OP_TIMEOUT
 *   /dns?host=NAME    /etc/hosts read through the ring (OPENAT, READ, CLOSE)
 *                     and searched on the loop; names it does not list are
 *                     a 400, so no query leaves the machine
 *
 * --pool: the file's operations go to the kernel's own thread pool (io-wq,
 * IOSQE_ASYNC) instead of being tried inline first: the epoll server's
 * --pool, done by the kernel.
 *
 * Usage: uring_server [--port N] [--bind ADDR] [--data FILE] [--pool]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "routes.h"
#include "server.h"
#include "session.h"

#define SQ_ENTRIES 256
#define CQ_ENTRIES 4096         /* room for every connection's operations completing at once */
#define HOSTS_READ_MAX 65536    /* the most of /etc/hosts /dns reads */
#define STOP_MS 1000            /* at shutdown, wait this long for what is in flight */

/* Every submission carries a pointer to one of these (user_data), so a
 * completion says what completed and for whom. */
enum kind { K_ACCEPT, K_LISTEN, K_RECV, K_SEND, K_SHUTDOWN, K_CLOSE, K_SLEEP, K_FILE, K_TICK,
            K_SIGNAL, K_CANCEL };
struct tag { enum kind kind; };

#define CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define BIT(kind) (1u << (kind))

/* /file and /dns: a file opened, read and closed through the ring. */
enum file_step { F_OPEN, F_READ, F_CLOSE };

struct file_read {
    enum work work;             /* WORK_FILE or WORK_DNS */
    enum file_step step;
    int fd;
    const char *failed;         /* NULL, "open" or "read" */
    char host[256];
    size_t len, cap;
    char buf[];
};

struct conn {
    struct tag recv_tag, send_tag, shut_tag, close_tag, sleep_tag, file_tag;
    int fd;
    unsigned pending;           /* operations in flight, a BIT(kind) each */
    int ending;                 /* cancelled, closing, freed when nothing is in flight */
    struct __kernel_timespec sleep_ts;     /* read by the kernel at submission */
    struct file_read *file;
    char rbuf[HTTP_HEAD_MAX];   /* recv lands here: `in` may move while a recv is in flight */
    struct session s;           /* the HTTP side: buffers, keep-alive, time-outs */
};

static struct {
    struct io_uring ring;
    int listen_fd, sig_fd, reserve_fd;
    int quit, inflight, accepting, ticking;
    long long stop_by;
    struct options o;
    struct session *slots[SLOTS];       /* each live connection's session, by slot */
    struct tag accept_tag, listen_tag, tick_tag, sig_tag, cancel_tag;
    struct __kernel_timespec tick_ts;
    struct signalfd_siginfo siginfo;
} S;

static void die_rc(const char *what, int rc) {
    errno = -rc;
    die(what);
}

static struct conn *conn_of(struct session *s) {
    return CONTAINER_OF(s, struct conn, s);
}

/* A submission queue entry for an operation whose completion goes to t.
 * The handlers queue; run_loop submits them all in its one io_uring_enter
 * (here only if the queue is full). */
static struct io_uring_sqe *sqe_for(struct tag *t) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&S.ring);
    if (!sqe) {
        int rc = io_uring_submit(&S.ring);
        if (rc < 0) die_rc("io_uring_submit", rc);
        if (!(sqe = io_uring_get_sqe(&S.ring))) die_rc("io_uring_get_sqe", -EBUSY);
    }
    io_uring_sqe_set_data(sqe, t);
    S.inflight++;
    return sqe;
}

static void cancel(struct tag *t) {
    io_uring_prep_cancel(sqe_for(&S.cancel_tag), t, 0);
}

/* ---- connections -------------------------------------------------------- */

static void submit_recv(struct conn *c) {
    io_uring_prep_recv(sqe_for(&c->recv_tag), c->fd, c->rbuf, sizeof c->s.in - c->s.in_len, 0);
    c->pending |= BIT(K_RECV);
}

static void submit_send(struct conn *c) {
    struct session *s = &c->s;
    io_uring_prep_send(sqe_for(&c->send_tag), c->fd, s->out + s->out_off, s->out_len - s->out_off, MSG_NOSIGNAL);
    c->pending |= BIT(K_SEND);
}

/* Free c once nothing is in flight for it: first its socket's close (an
 * operation too), then the memory. */
static void conn_reap(struct conn *c) {
    if (c->pending) return;
    if (c->fd >= 0) {
        io_uring_prep_close(sqe_for(&c->close_tag), c->fd);
        c->pending |= BIT(K_CLOSE);
        c->fd = -1;
        return;
    }
    free(c);
}

/* End a connection: out of the slot table now; its recv, send and timer
 * cancelled; a file step runs to its end (it closes its file). */
static void conn_end(struct conn *c) {
    if (c->ending) return;
    c->ending = 1;
    S.slots[c->s.slot] = NULL;
    if (c->pending & BIT(K_RECV)) cancel(&c->recv_tag);
    if (c->pending & BIT(K_SEND)) cancel(&c->send_tag);
    if (c->pending & BIT(K_SLEEP)) cancel(&c->sleep_tag);
    conn_reap(c);
}

static void start_work(struct session *s, const struct plan *plan);

/* The one place that decides what happens next to a connection: answer what
 * the buffer holds, send what is queued, then end the connection if it is
 * done, else keep a recv in flight while it can use the bytes. Every
 * completion handler ends here. */
static void conn_progress(struct conn *c) {
    struct session *s = &c->s;
    /* A full output buffer is served again when its send completes. */
    session_serve(s, start_work);
    if (s->out_off < s->out_len && !(c->pending & BIT(K_SEND))) submit_send(c);
    switch (session_next(s)) {
    case NEXT_CLOSE:
        conn_end(c);
        return;
    case NEXT_LINGER:
        /* Our FIN after the answer; the client's unread bytes are drained
         * before close, or the close would be an RST. */
        io_uring_prep_shutdown(sqe_for(&c->shut_tag), c->fd, SHUT_WR);
        c->pending |= BIT(K_SHUTDOWN);
        session_lingers(s, now_ms());
        break;
    case NEXT_WAIT:
        break;
    }
    if (session_wants_input(s) && !(c->pending & BIT(K_RECV))) submit_recv(c);
}

/* ---- the work a route defers: all of it through the ring ------------------- */

static void file_submit(struct conn *c) {
    struct file_read *f = c->file;
    struct io_uring_sqe *sqe = sqe_for(&c->file_tag);
    if (f->step == F_OPEN)
        io_uring_prep_openat(sqe, AT_FDCWD, f->work == WORK_DNS ? HOSTS_FILE : S.o.data, O_RDONLY | O_CLOEXEC, 0);
    else if (f->step == F_READ)
        io_uring_prep_read(sqe, f->fd, f->buf + f->len, (unsigned)(f->cap - f->len), f->len);
    else
        io_uring_prep_close(sqe, f->fd);
    if (S.o.pool) io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
    c->pending |= BIT(K_FILE);
}

static void file_start(struct conn *c, const struct plan *plan) {
    size_t cap = plan->work == WORK_DNS ? HOSTS_READ_MAX : FILE_MAX;
    struct file_read *f = calloc(1, sizeof *f + cap);
    if (!f) {
        session_fail(&c->s, 503, "out of memory");
        return;
    }
    f->work = plan->work;
    f->step = F_OPEN;
    f->fd = -1;
    f->cap = cap;
    snprintf(f->host, sizeof f->host, "%s", plan->host);
    c->file = f;
    file_submit(c);
}

/* Called by session_serve for a route's deferred work: it all answers later. */
static void start_work(struct session *s, const struct plan *plan) {
    struct conn *c = conn_of(s);
    switch (plan->work) {
    case WORK_SLEEP:
        c->sleep_ts = (struct __kernel_timespec){.tv_sec = plan->ms / 1000,
                                                 .tv_nsec = (plan->ms % 1000) * 1000000LL};
        io_uring_prep_timeout(sqe_for(&c->sleep_tag), &c->sleep_ts, 0, 0);
        c->pending |= BIT(K_SLEEP);
        break;
    case WORK_FILE:
    case WORK_DNS:
        file_start(c, plan);
        break;
    case WORK_NONE:
        break;
    }
}

/* The file is read and closed: answer from what was read. */
static void file_answer(struct conn *c) {
    struct file_read *f = c->file;
    char body[1024], address[64];
    int status;
    const char *mechanism = S.o.pool ? "io_uring-io-wq" : "io_uring";
    if (f->work == WORK_FILE)
        status = file_body(body, sizeof body, mechanism, f->failed, (long)f->len);
    else
        status = dns_body(body, sizeof body, mechanism, f->host,
                          !f->failed && hosts_find(f->buf, f->len, f->host, address, sizeof address)
                          ? address : NULL);
    session_answer(&c->s, status, body);
}

/* ---- what the loop does for each kind of completion ------------------------ */

static void submit_accept(void) {
    io_uring_prep_accept(sqe_for(&S.accept_tag), S.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    S.accepting = 1;
}

/* Wait for a connection to be pending without taking an fd for it. */
static void submit_listen_poll(void) {
    io_uring_prep_poll_add(sqe_for(&S.listen_tag), S.listen_fd, POLLIN);
    S.accepting = 1;
}

static void session_end(struct session *s) {
    conn_end(conn_of(s));
}

static void conn_open(int fd) {
    int refuse, slot = slot_take(S.slots, session_end, &refuse);
    struct conn *c = slot >= 0 ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        /* Not even a refusal slot: the last resort, a close (an RST if the
         * request is already here). */
        if (close(fd) < 0) perror("close");
        return;
    }
    c->recv_tag.kind = K_RECV;
    c->send_tag.kind = K_SEND;
    c->shut_tag.kind = K_SHUTDOWN;
    c->close_tag.kind = K_CLOSE;
    c->sleep_tag.kind = K_SLEEP;
    c->file_tag.kind = K_FILE;
    c->fd = fd;
    session_open(&c->s, slot, now_ms());
    S.slots[slot] = &c->s;
    /* Every client is owed an answer: a 503, then the graceful close, which
     * reads what the newcomer sent. */
    if (refuse) session_refuse(&c->s);
    conn_progress(c);
}

/* Out of fds: the ring's accept fails at once, even with nobody waiting,
 * and re-armed it would fail again: a busy loop. Free the spare fd, accept
 * and close whoever waits, take the spare back, then wait with a poll,
 * which needs no fd. */
static void shed_connections(void) {
    if (close(S.reserve_fd) < 0) perror("close spare fd");
    for (int fd; (fd = accept4(S.listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0;)
        if (close(fd) < 0) perror("close");
    S.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_accept(int res) {
    S.accepting = 0;
    if (res >= 0) {
        if (S.quit) {           /* completed as it was being cancelled */
            if (close(res) < 0) perror("close");
            return;
        }
        conn_open(res);
        submit_accept();
        return;
    }
    if (res == -ECANCELED || S.quit) return;
    if (res == -EMFILE || res == -ENFILE) shed_connections();
    else if (res != -EAGAIN && res != -EINTR && res != -ECONNABORTED) fprintf(stderr, "accept: %s\n", strerror(-res));
    submit_listen_poll();       /* never re-armed straight away: it could fail again at once */
}

static void on_listen_ready(int res) {
    S.accepting = 0;
    if (S.quit || res == -ECANCELED) return;
    if (res < 0) fprintf(stderr, "poll listener: %s\n", strerror(-res));
    submit_accept();
}

static void on_recv(struct conn *c, int res) {
    c->pending &= ~BIT(K_RECV);
    if (c->ending) {
        conn_reap(c);
        return;
    }
    if (res < 0) {              /* ECONNRESET...: nobody is left to answer */
        conn_end(c);
        return;
    }
    if (res == 0) {
        c->s.eof = 1;           /* maybe a half-close after a request, which still gets its answer */
    } else {
        size_t room = sizeof c->s.in - c->s.in_len;    /* it only grew since the recv was queued */
        size_t n = (size_t)res < room ? (size_t)res : room;
        memcpy(c->s.in + c->s.in_len, c->rbuf, n);
        session_got(&c->s, n, now_ms());
    }
    conn_progress(c);
}

static void on_send(struct conn *c, int res) {
    c->pending &= ~BIT(K_SEND);
    if (c->ending) {
        conn_reap(c);
        return;
    }
    if (res < 0) {              /* EPIPE, ECONNRESET: the peer is gone */
        conn_end(c);
        return;
    }
    session_sent(&c->s, (size_t)res, now_ms());
    conn_progress(c);           /* the rest of a partial send, or the answers that waited for room */
}

static void on_shutdown(struct conn *c, int res) {
    c->pending &= ~BIT(K_SHUTDOWN);
    if (c->ending) conn_reap(c);
    else if (res < 0) conn_end(c);     /* ENOTCONN: reset meanwhile */
}

static void on_close(struct conn *c, int res) {
    c->pending &= ~BIT(K_CLOSE);
    if (res < 0) fprintf(stderr, "close: %s\n", strerror(-res));
    conn_reap(c);
}

static void on_sleep(struct conn *c, int res) {
    c->pending &= ~BIT(K_SLEEP);
    if (c->ending) {
        conn_reap(c);
        return;
    }
    if (res != -ETIME) fprintf(stderr, "timeout: %s\n", strerror(-res));
    session_answer(&c->s, 200, "{\"mechanism\":\"io_uring-timeout\",\"pollable\":false}");
    conn_progress(c);           /* a pipelined request may be waiting */
}

/* One step of a file read completed: queue the next, or answer. */
static void on_file(struct conn *c, int res) {
    struct file_read *f = c->file;
    c->pending &= ~BIT(K_FILE);
    if (f->step == F_OPEN && res >= 0) {
        f->fd = res;
        f->step = c->ending ? F_CLOSE : F_READ;
    } else if (f->step == F_OPEN) {
        f->failed = "open";
    } else if (f->step == F_READ && res > 0 && !c->ending) {
        f->len += (size_t)res;
        if (f->len == f->cap) f->step = F_CLOSE;    /* as much as it answers with */
    } else if (f->step == F_READ) {
        if (res < 0) f->failed = "read";
        f->step = F_CLOSE;      /* 0: the end of the file */
    } else {
        if (res < 0) fprintf(stderr, "close data file: %s\n", strerror(-res));
        f->fd = -1;
    }
    if (f->fd >= 0) {
        file_submit(c);
        return;
    }
    if (!c->ending) file_answer(c);
    free(f);
    c->file = NULL;
    if (c->ending) conn_reap(c);
    else conn_progress(c);
}

static void submit_tick(void) {
    io_uring_prep_timeout(sqe_for(&S.tick_tag), &S.tick_ts, 0, 0);
    S.ticking = 1;
}

static void on_tick(int res) {
    S.ticking = 0;
    if (S.quit || res == -ECANCELED) return;
    long long now = now_ms();
    for (int i = 0; i < SLOTS; i++) {
        struct session *s = S.slots[i];
        if (s && session_expired(s, now, S.o.idle_ms, S.o.header_ms)) conn_end(conn_of(s));
    }
    submit_tick();
}

/* SIGINT or SIGTERM: end every connection and cancel the rest; run_loop
 * goes on until what is in flight has come back, or STOP_MS. */
static void on_signal(int res) {
    if (res < 0 && res != -ECANCELED) fprintf(stderr, "read signalfd: %s\n", strerror(-res));
    S.quit = 1;
    S.stop_by = now_ms() + STOP_MS;
    for (int i = 0; i < SLOTS; i++)
        if (S.slots[i]) conn_end(conn_of(S.slots[i]));
    if (S.accepting) {
        cancel(&S.accept_tag);  /* one of the two is in flight */
        cancel(&S.listen_tag);
    }
    if (S.ticking) cancel(&S.tick_tag);
}

/* ---- the loop ------------------------------------------------------------ */

static void run_loop(void) {
    struct __kernel_timespec stopping = {.tv_nsec = 100 * 1000000LL};
    while (!S.quit || (S.inflight > 0 && now_ms() < S.stop_by)) {
        /* The only place the server sleeps: one io_uring_enter submits what
         * the handlers queued and waits until something has completed. */
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait_timeout(&S.ring, &cqe, 1, S.quit ? &stopping : NULL, NULL);
        if (rc < 0 && rc != -EINTR && rc != -ETIME) die_rc("io_uring_enter", rc);
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&S.ring, head, cqe) {
            struct tag *t = io_uring_cqe_get_data(cqe);
            int res = cqe->res;
            seen++;
            S.inflight--;
            switch (t->kind) {  /* no default: -Wswitch names a kind left out */
            case K_ACCEPT: on_accept(res); break;
            case K_LISTEN: on_listen_ready(res); break;
            case K_RECV: on_recv(CONTAINER_OF(t, struct conn, recv_tag), res); break;
            case K_SEND: on_send(CONTAINER_OF(t, struct conn, send_tag), res); break;
            case K_SHUTDOWN: on_shutdown(CONTAINER_OF(t, struct conn, shut_tag), res); break;
            case K_CLOSE: on_close(CONTAINER_OF(t, struct conn, close_tag), res); break;
            case K_SLEEP: on_sleep(CONTAINER_OF(t, struct conn, sleep_tag), res); break;
            case K_FILE: on_file(CONTAINER_OF(t, struct conn, file_tag), res); break;
            case K_TICK: on_tick(res); break;
            case K_SIGNAL: on_signal(res); break;
            case K_CANCEL: break;       /* what it cancelled completes on its own */
            }
        }
        io_uring_cq_advance(&S.ring, seen);
    }
}

/* ---- set-up and shutdown ----------------------------------------------------- */

static void setup(void) {
    signal(SIGPIPE, SIG_IGN);   /* a reset peer must be an EPIPE, not death */
    hosts_load();
    struct io_uring_params params = {.flags = IORING_SETUP_CQSIZE, .cq_entries = CQ_ENTRIES};
    int rc = io_uring_queue_init_params(SQ_ENTRIES, &S.ring, &params);
    if (rc < 0) die_rc("io_uring_queue_init (is io_uring disabled here?)", rc);
    S.listen_fd = listen_on(S.o.bind, S.o.port);
    S.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (S.reserve_fd < 0) die("open /dev/null");
    S.accept_tag.kind = K_ACCEPT;
    S.listen_tag.kind = K_LISTEN;
    S.tick_tag.kind = K_TICK;
    S.sig_tag.kind = K_SIGNAL;
    S.cancel_tag.kind = K_CANCEL;
    submit_accept();

    /* One periodic timeout sweeps idle, slow and lingering connections. */
    long long tick = session_sweep_ms(S.o.idle_ms, S.o.header_ms);
    S.tick_ts = (struct __kernel_timespec){.tv_sec = tick / 1000, .tv_nsec = (tick % 1000) * 1000000LL};
    submit_tick();

    /* Signals as a read through the ring: no handler runs mid-loop. The
     * signalfd blocks: the ring waits for it, as for a socket. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask");
    S.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (S.sig_fd < 0) die("signalfd");
    io_uring_prep_read(sqe_for(&S.sig_tag), S.sig_fd, &S.siginfo, sizeof S.siginfo, 0);
    fprintf(stderr, "uring_server: http://%s:%d/ (io_uring, single thread%s)\n", S.o.bind, S.o.port,
            S.o.pool ? "; file work on io-wq" : "");
}

static void shutdown_all(void) {
    /* Only after the deadline: freeing what the kernel may still write is
     * worse than a leak at exit, so say it and leave it. */
    if (S.inflight > 0) fprintf(stderr, "uring_server: not waiting for %d operation(s) still in flight\n", S.inflight);
    io_uring_queue_exit(&S.ring);
    int fds[] = {S.listen_fd, S.sig_fd, S.reserve_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (close(fds[i]) < 0) perror("close");
    hosts_free();
    fprintf(stderr, "uring_server: stopped\n");
}

int main(int argc, char **argv) {
    int code = options_parse(argc, argv, &S.o, "a single-threaded io_uring HTTP server",
                             "  --pool       hand the file's open, read and close to the kernel's io-wq threads\n"
                             "               (IOSQE_ASYNC) rather than letting it try them inline first\n");
    if (code >= 0) return code;
    setup();
    run_loop();
    shutdown_all();
    return 0;
}
