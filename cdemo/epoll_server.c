/* epoll_server.c: the textbook event loop, with nothing hidden.
 *
 * Read it in the order it runs (main, at the end):
 *   1. set-up: a listening socket, one epoll instance, and in it the
 *      listener, a tick timer, a signalfd and (--pool) an eventfd;
 *   2. run_loop(): sleep in epoll_wait, then for each ready thing a switch
 *      on what kind of thing it is;
 *   3. shutdown: stop the pool, close every fd, free every connection.
 *
 * Level-triggered everywhere: a ready fd we did not finish with is reported
 * again, so a handler may stop early and lose nothing. The price: we must
 * stop *watching* what we cannot act on yet (conn_watch), or epoll_wait
 * returns at once for it, forever: a 100% CPU spin.
 *
 * What a request means (routes.c) and a connection's HTTP state
 * (session.c) are shared with the io_uring server; this file is the
 * readiness loop that moves the bytes:
 *   /file             reads the lab's data file INSIDE the loop (blocking)
 *   /sleep?ms=N       answers after N ms via a timerfd in the same epoll set
 *   /dns?host=NAME    getaddrinfo in the loop, or on a thread pool (--pool)
 *
 * Usage: epoll_server [--port N] [--bind ADDR] [--pool] [--data FILE]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "routes.h"
#include "server.h"
#include "session.h"

#define MAX_EVENTS 64
#define POOL_THREADS 2
#define POOL_STOP_MS 1000       /* at shutdown, wait this long for a lookup in flight */

/* Every epoll registration points at one of these (data.ptr, as nginx
 * does), so the kernel hands back the object, not an fd to look up. */
enum kind { K_LISTEN, K_CONN, K_TIMER, K_TICK, K_SIGNAL, K_POOL };
struct tag { enum kind kind; };

#define CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct job;

struct conn {
    struct tag tag;             /* K_CONN: the socket's registration */
    struct tag timer_tag;       /* K_TIMER: its /sleep timerfd's registration */
    int fd, timer_fd;
    uint32_t watching;          /* what epoll reports for fd now */
    struct job *job;            /* the pool job that owes the answer, while a thread may hold it */
    struct conn *next_closed;
    struct session s;           /* the HTTP side: buffers, keep-alive, time-outs */
};

enum job_kind { JOB_FILE, JOB_DNS };

struct job {
    struct job *next;
    struct conn *c;             /* read and written by the loop thread only */
    enum job_kind kind;
    char arg[256];
    int status;
    char body[1024];
};

static struct {
    int ep, listen_fd, tick_fd, sig_fd, pool_fd, reserve_fd;
    int quit;
    struct options o;
    struct session *slots[SLOTS];       /* each live connection's session, by slot */
    struct conn *closed;        /* freed after the current batch of events */
    struct tag listen_tag, tick_tag, sig_tag, pool_tag;
    /* The pool: everything below mu is shared with pool threads and only
     * touched with mu held. */
    pthread_t threads[POOL_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t work, exited;
    struct job *todo, *todo_tail, *done;
    int pool_stopping, pool_running;
} S;

static int ep_ctl(int op, int fd, uint32_t events, void *ptr) {
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    return epoll_ctl(S.ep, op, fd, &ev);
}

static struct conn *conn_of(struct session *s) {
    return CONTAINER_OF(s, struct conn, s);
}

static const char *mechanism(void) {
    return S.o.pool ? "thread-pool" : "blocking-in-loop";
}

/* ---- connections -------------------------------------------------------- */

static void timer_stop(struct conn *c) {
    if (c->timer_fd < 0) return;
    if (epoll_ctl(S.ep, EPOLL_CTL_DEL, c->timer_fd, NULL) < 0) perror("epoll_ctl DEL timer");
    if (close(c->timer_fd) < 0) perror("close timer");
    c->timer_fd = -1;
}

static int job_cancel(struct job *j);

static void conn_close(struct conn *c) {
    /* DEL before close: the kernel would drop it at close anyway, but only
     * when no dup of the fd is left; saying it keeps the trace honest. */
    if (epoll_ctl(S.ep, EPOLL_CTL_DEL, c->fd, NULL) < 0) perror("epoll_ctl DEL");
    if (close(c->fd) < 0) perror("close");
    timer_stop(c);
    S.slots[c->s.slot] = NULL;
    c->fd = -1;
    /* A job still queued goes with its client. One a pool thread is running
     * still points here: on_pool_done frees c when it comes back. */
    if (c->job && job_cancel(c->job)) c->job = NULL;
    if (c->job) return;
    /* Not freed yet: later events of this epoll_wait batch may point at it. */
    c->next_closed = S.closed;
    S.closed = c;
}

static void free_closed(void) {
    while (S.closed) {
        struct conn *c = S.closed;
        S.closed = c->next_closed;
        free(c);
    }
}

/* Tell epoll what c can act on now; a no-op when that has not changed. */
static void conn_watch(struct conn *c) {
    uint32_t want = session_wants_input(&c->s) ? EPOLLIN : 0;
    /* Level-triggered EPOLLOUT fires on every wait while the socket has
     * room, so ask for it only while an answer is partly written. */
    if (c->s.out_off < c->s.out_len) want |= EPOLLOUT;
    if (want == c->watching) return;
    if (ep_ctl(EPOLL_CTL_MOD, c->fd, want, &c->tag) < 0) perror("epoll_ctl MOD");
    c->watching = want;
}

/* Read until EAGAIN, or a buffer's worth (a draining client cannot keep
 * the loop here). 0 is EOF: the peer may have half-closed after its
 * request, which still gets its answer. */
static int conn_read(struct conn *c) {
    struct session *s = &c->s;
    for (size_t total = 0; total < sizeof s->in && s->in_len < sizeof s->in;) {
        ssize_t n = read(c->fd, s->in + s->in_len, sizeof s->in - s->in_len);
        if (n > 0) {
            total += (size_t)n;
            session_got(s, (size_t)n, now_ms());
        } else if (n == 0) {
            s->eof = 1;
            return 0;
        } else if (errno != EINTR) {
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;  /* -1: ECONNRESET... */
        }
    }
    return 0;
}

/* 0 when everything queued is written, 1 if some is left, -1 on error. */
static int conn_flush(struct conn *c) {
    struct session *s = &c->s;
    while (s->out_off < s->out_len) {
        ssize_t n = write(c->fd, s->out + s->out_off, s->out_len - s->out_off);
        if (n > 0) {
            session_sent(s, (size_t)n, now_ms());
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 1;
        } else {
            return -1;          /* EPIPE, ECONNRESET: the peer is gone */
        }
    }
    return 0;
}

static void start_work(struct session *s, const struct plan *plan);

/* The one place that decides what happens next to a connection: answer what
 * the buffer holds, write what the socket takes, then close the connection
 * if it is done, else tell epoll what to wait for. Every handler ends here. */
static void conn_progress(struct conn *c) {
    for (;;) {
        int full = session_serve(&c->s, start_work);
        int left = conn_flush(c);
        if (left < 0) {
            conn_close(c);
            return;
        }
        if (left > 0 || !full) break;   /* wait for EPOLLOUT, or for more input */
    }
    switch (session_next(&c->s)) {
    case NEXT_CLOSE:
        conn_close(c);
        return;
    case NEXT_LINGER:
        /* Our FIN after the answer; the client's unread bytes are drained
         * before close, or the close would be an RST. */
        if (shutdown(c->fd, SHUT_WR) < 0) {
            conn_close(c);
            return;
        }
        session_lingers(&c->s, now_ms());
        break;
    case NEXT_WAIT:
        break;
    }
    conn_watch(c);
}

/* ---- the work a route defers ------------------------------------------------ */

/* Runs on the loop thread, or on a pool thread with --pool. */
static int do_file(char *body, size_t cap) {
    char buf[FILE_MAX];
    int fd = open(S.o.data, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return file_body(body, cap, mechanism(), "open", 0);
    ssize_t total = 0, n = 0;
    while (total < (ssize_t)sizeof buf && (n = read(fd, buf + total, sizeof buf - (size_t)total)) > 0)
        total += n;
    if (close(fd) < 0) perror("close data file");
    return file_body(body, cap, mechanism(), n < 0 ? "read" : NULL, (long)total);
}

/* Blocking getaddrinfo: only for names /etc/hosts lists, which libc answers
 * from that file without a query. */
static int do_dns(const char *host, char *body, size_t cap) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return dns_body(body, cap, mechanism(), host, NULL);
    char addr[INET6_ADDRSTRLEN] = "?";
    void *src = res->ai_family == AF_INET
        ? (void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
        : (void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    if (!inet_ntop(res->ai_family, src, addr, sizeof addr)) perror("inet_ntop");
    freeaddrinfo(res);
    return dns_body(body, cap, mechanism(), host, addr);
}

static void pool_submit(struct conn *c, enum job_kind kind, const char *arg) {
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        session_fail(&c->s, 503, "out of memory");
        return;
    }
    j->c = c;
    j->kind = kind;
    snprintf(j->arg, sizeof j->arg, "%s", arg);
    c->job = j;
    pthread_mutex_lock(&S.mu);
    if (S.todo_tail) S.todo_tail->next = j;
    else S.todo = j;
    S.todo_tail = j;
    pthread_cond_signal(&S.work);
    pthread_mutex_unlock(&S.mu);
}

static void timer_start(struct conn *c, int ms) {
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) {
        session_fail(&c->s, 503, "no timer available");
        return;
    }
    struct itimerspec its = {.it_value = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L}};
    if (ms == 0) its.it_value.tv_nsec = 1;  /* zero would disarm it */
    if (timerfd_settime(tfd, 0, &its, NULL) < 0 || ep_ctl(EPOLL_CTL_ADD, tfd, EPOLLIN, &c->timer_tag) < 0) {
        if (close(tfd) < 0) perror("close timer");
        session_fail(&c->s, 503, "cannot arm a timer");
        return;
    }
    c->timer_fd = tfd;
}

/* Called by session_serve for a route's deferred work: the timer and the
 * pool answer later; without the pool the file and the lookup block the
 * loop and answer now. */
static void start_work(struct session *s, const struct plan *plan) {
    struct conn *c = conn_of(s);
    char body[1024];
    switch (plan->work) {
    case WORK_SLEEP:
        timer_start(c, plan->ms);
        break;
    case WORK_FILE:
        if (S.o.pool) pool_submit(c, JOB_FILE, "");
        else session_answer(s, do_file(body, sizeof body), body);
        break;
    case WORK_DNS:
        if (S.o.pool) pool_submit(c, JOB_DNS, plan->host);
        else session_answer(s, do_dns(plan->host, body, sizeof body), body);
        break;
    case WORK_NONE:
        break;
    }
}

/* ---- what the loop does for each kind of ready thing ----------------------- */

static void session_close(struct session *s) {
    conn_close(conn_of(s));
}

static void conn_open(int fd) {
    int refuse, slot = slot_take(S.slots, session_close, &refuse);
    struct conn *c = slot >= 0 ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        /* Not even a refusal slot: the last resort, a close (an RST if the
         * request is already here). */
        if (close(fd) < 0) perror("close");
        return;
    }
    c->tag.kind = K_CONN;
    c->timer_tag.kind = K_TIMER;
    c->fd = fd;
    c->timer_fd = -1;
    c->watching = EPOLLIN;
    if (ep_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, &c->tag) < 0) {
        perror("epoll_ctl ADD");
        if (close(fd) < 0) perror("close");
        free(c);
        return;
    }
    session_open(&c->s, slot, now_ms());
    S.slots[slot] = &c->s;
    if (refuse) {
        /* Every client is owed an answer: read what is there, answer 503,
         * then the graceful close. */
        if (conn_read(c) < 0) {
            conn_close(c);
            return;
        }
        session_refuse(&c->s);
        conn_progress(c);
    }
}

static void on_accept(void) {
    for (;;) {
        int fd = accept4(S.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of fds: level-triggered epoll would report the listener
                 * again at once, a busy loop. Free the spare fd, accept and
                 * close the connection, then take the spare back. */
                if (close(S.reserve_fd) < 0) perror("close spare fd");
                fd = accept4(S.listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0 && close(fd) < 0) perror("close");
                S.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                /* accept4 reports EMFILE even with an empty backlog, so stop
                 * once the shed attempt finds nobody waiting. */
                if (fd < 0) return;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
                perror("accept4");
            return;             /* EAGAIN: no more pending connections */
        }
        conn_open(fd);
    }
}

static void on_conn_event(struct conn *c, uint32_t ev) {
    if (c->fd < 0) return;      /* closed by an earlier event of this batch */
    /* ERR, or HUP while not lingering: a reset; nobody is left to answer.
     * HUP while lingering is the client's FIN after ours: drain, then close. */
    if ((ev & EPOLLERR) || ((ev & EPOLLHUP) && !c->s.lingering) ||
        ((ev & (EPOLLIN | EPOLLHUP)) && conn_read(c) < 0)) {
        conn_close(c);
        return;
    }
    conn_progress(c);           /* EPOLLOUT needs no more than this */
}

static void on_timer(struct conn *c) {
    if (c->fd < 0 || c->timer_fd < 0) return;   /* closed earlier in this batch */
    uint64_t expirations;
    if (read(c->timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) perror("read timerfd");
    timer_stop(c);
    session_answer(&c->s, 200, "{\"mechanism\":\"timerfd\",\"pollable\":true}");
    conn_progress(c);           /* a pipelined request may be waiting */
}

static void on_tick(void) {
    uint64_t expirations;
    if (read(S.tick_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) perror("read tick");
    long long now = now_ms();
    for (int i = 0; i < SLOTS; i++) {
        struct session *s = S.slots[i];
        if (s && session_expired(s, now, S.o.idle_ms, S.o.header_ms)) conn_close(conn_of(s));
    }
}

/* A finished job: answer its client, or free it if the client left. */
static void job_finish(struct job *j, int answer) {
    struct conn *c = j->c;
    c->job = NULL;
    if (c->fd < 0) {
        c->next_closed = S.closed;     /* closed while the job ran */
        S.closed = c;
    } else if (answer) {
        session_answer(&c->s, j->status, j->body);
        conn_progress(c);
    }
    free(j);
}

static void on_pool_done(void) {
    uint64_t count;
    if (read(S.pool_fd, &count, sizeof count) < 0 && errno != EAGAIN) perror("read eventfd");
    pthread_mutex_lock(&S.mu);
    struct job *list = S.done;
    S.done = NULL;
    pthread_mutex_unlock(&S.mu);
    while (list) {
        struct job *j = list;
        list = j->next;
        job_finish(j, 1);
    }
}

static void on_signal(void) {
    struct signalfd_siginfo si;
    if (read(S.sig_fd, &si, sizeof si) < 0 && errno != EAGAIN) perror("read signalfd");
    S.quit = 1;
}

/* ---- the loop ------------------------------------------------------------ */

static void run_loop(void) {
    struct epoll_event events[MAX_EVENTS];
    while (!S.quit) {
        /* The only place the server sleeps: until something is ready. */
        int n = epoll_wait(S.ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct tag *t = events[i].data.ptr;
            switch (t->kind) {  /* no default: -Wswitch names a kind left out */
            case K_LISTEN: on_accept(); break;
            case K_CONN: on_conn_event(CONTAINER_OF(t, struct conn, tag), events[i].events); break;
            case K_TIMER: on_timer(CONTAINER_OF(t, struct conn, timer_tag)); break;
            case K_TICK: on_tick(); break;
            case K_POOL: on_pool_done(); break;
            case K_SIGNAL: on_signal(); break;
            }
        }
        free_closed();          /* now no event of this batch can point at them */
    }
}

/* ---- the pool (--pool) ------------------------------------------------------ */

/* Take j off the queue if no thread has it yet. The loop thread only. */
static int job_cancel(struct job *j) {
    int found = 0;
    pthread_mutex_lock(&S.mu);
    for (struct job **p = &S.todo, *prev = NULL; *p; prev = *p, p = &(*p)->next) {
        if (*p != j) continue;
        *p = j->next;
        if (S.todo_tail == j) S.todo_tail = prev;
        found = 1;
        break;
    }
    pthread_mutex_unlock(&S.mu);
    if (found) free(j);
    return found;
}

static void *pool_main(void *arg) {
    (void)arg;
    pthread_mutex_lock(&S.mu);
    for (;;) {
        while (!S.todo && !S.pool_stopping) pthread_cond_wait(&S.work, &S.mu);
        if (S.pool_stopping) break;
        struct job *j = S.todo;
        S.todo = j->next;
        if (!S.todo) S.todo_tail = NULL;
        pthread_mutex_unlock(&S.mu);

        /* The blocking part, the reason the pool exists. */
        if (j->kind == JOB_DNS) j->status = do_dns(j->arg, j->body, sizeof j->body);
        else j->status = do_file(j->body, sizeof j->body);

        pthread_mutex_lock(&S.mu);
        j->next = S.done;
        S.done = j;
        /* The loop sleeps in epoll_wait; a write to the eventfd it watches
         * wakes it, as libuv's uv_async_send does. Under mu, so shutdown can
         * close the eventfd once it has set pool_stopping. */
        uint64_t one = 1;
        if (!S.pool_stopping && write(S.pool_fd, &one, sizeof one) < 0) perror("write eventfd");
    }
    S.pool_running--;
    pthread_cond_signal(&S.exited);
    pthread_mutex_unlock(&S.mu);
    return NULL;
}

static void pool_start(void) {
    S.pool_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    S.pool_tag.kind = K_POOL;
    if (S.pool_fd < 0 || ep_ctl(EPOLL_CTL_ADD, S.pool_fd, EPOLLIN, &S.pool_tag) < 0) die("eventfd");
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0 || pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_mutex_init(&S.mu, NULL) != 0 || pthread_cond_init(&S.work, NULL) != 0 ||
        pthread_cond_init(&S.exited, &attr) != 0)
        die("pthread init");
    pthread_condattr_destroy(&attr);
    S.pool_running = POOL_THREADS;     /* set first: a thread counts itself out on exit */
    for (int i = 0; i < POOL_THREADS; i++)
        if (pthread_create(&S.threads[i], NULL, pool_main, NULL) != 0) die("pthread_create");
}

/* Stop the threads, waiting at most POOL_STOP_MS: a getaddrinfo may take
 * seconds and cannot be interrupted, so one still running is left behind
 * (detached) and dies with the process. Jobs nobody ran are dropped. */
static void pool_stop(void) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += POOL_STOP_MS / 1000;
    deadline.tv_nsec += (POOL_STOP_MS % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&S.mu);
    S.pool_stopping = 1;
    pthread_cond_broadcast(&S.work);
    while (S.pool_running > 0 && pthread_cond_timedwait(&S.exited, &S.mu, &deadline) == 0) {}
    int left = S.pool_running;
    struct job *lists[] = {S.todo, S.done};
    S.todo = S.todo_tail = S.done = NULL;
    pthread_mutex_unlock(&S.mu);
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        while (lists[i]) {
            struct job *j = lists[i];
            lists[i] = j->next;
            job_finish(j, 0);
        }
    }
    if (left) fprintf(stderr, "epoll_server: not waiting for %d lookup(s) still running\n", left);
    for (int i = 0; i < POOL_THREADS; i++)
        if ((left ? pthread_detach(S.threads[i]) : pthread_join(S.threads[i], NULL)) != 0)
            fprintf(stderr, "epoll_server: cannot reap pool thread %d\n", i);
    if (close(S.pool_fd) < 0) perror("close eventfd");
}

/* ---- set-up and shutdown ----------------------------------------------------- */

static int add_timer_every(long long ms) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct timespec every = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    struct itimerspec its = {.it_value = every, .it_interval = every};
    if (fd < 0 || timerfd_settime(fd, 0, &its, NULL) < 0) die("timerfd");
    return fd;
}

static void setup(void) {
    signal(SIGPIPE, SIG_IGN);   /* a reset peer must be an EPIPE, not death */
    hosts_load();
    S.ep = epoll_create1(EPOLL_CLOEXEC);
    if (S.ep < 0) die("epoll_create1");
    S.listen_fd = listen_on(S.o.bind, S.o.port);
    S.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (S.reserve_fd < 0) die("open /dev/null");
    S.listen_tag.kind = K_LISTEN;
    if (ep_ctl(EPOLL_CTL_ADD, S.listen_fd, EPOLLIN, &S.listen_tag) < 0) die("epoll_ctl listen");

    /* One periodic timer sweeps idle, slow and lingering connections: a
     * coarse timer wheel with a single slot, enough at this scale. */
    S.tick_fd = add_timer_every(session_sweep_ms(S.o.idle_ms, S.o.header_ms));
    S.tick_tag.kind = K_TICK;
    if (ep_ctl(EPOLL_CTL_ADD, S.tick_fd, EPOLLIN, &S.tick_tag) < 0) die("epoll_ctl tick");

    /* Signals as an fd in the same epoll set: no handler runs mid-loop. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask");
    S.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    S.sig_tag.kind = K_SIGNAL;
    if (S.sig_fd < 0 || ep_ctl(EPOLL_CTL_ADD, S.sig_fd, EPOLLIN, &S.sig_tag) < 0) die("signalfd");

    S.pool_fd = -1;
    if (S.o.pool) pool_start();   /* after sigprocmask: the threads inherit the mask */
    fprintf(stderr, "epoll_server: http://%s:%d/ (%s)\n", S.o.bind, S.o.port,
            S.o.pool ? "pool mode" : "single thread");
}

static void shutdown_all(void) {
    if (S.o.pool) pool_stop();
    for (int i = 0; i < SLOTS; i++)
        if (S.slots[i]) conn_close(conn_of(S.slots[i]));
    free_closed();
    int fds[] = {S.listen_fd, S.tick_fd, S.sig_fd, S.reserve_fd, S.ep};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (close(fds[i]) < 0) perror("close");
    hosts_free();
    fprintf(stderr, "epoll_server: stopped\n");
}

int main(int argc, char **argv) {
    int code = options_parse(argc, argv, &S.o, "a single-threaded epoll HTTP server",
                             "  --pool       run getaddrinfo and the file read on a thread pool woken through an eventfd\n");
    if (code >= 0) return code;
    setup();
    run_loop();
    shutdown_all();
    return 0;
}
