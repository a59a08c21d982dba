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
 * Routes mirror the Sanic demo so the two traces can be read side by side:
 *   /                 hello (socket I/O only)
 *   /file             reads the lab's data file INSIDE the loop (blocking)
 *   /sleep?ms=N       answers after N ms via a timerfd in the same epoll set
 *   /dns?host=NAME    getaddrinfo in the loop, or on a thread pool (--pool);
 *                     only names listed in /etc/hosts, so no query leaves
 *
 * Usage: epoll_server [--port N] [--bind ADDR] [--pool] [--data FILE]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
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
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "http.h"

#define MAX_EVENTS 64
#define MAX_CONNS 512
#define OUT_MAX 16384           /* answers queued on one connection */
#define ANSWER_MAX 2048         /* the largest single answer: parse only with this much room */
#define FILE_MAX 8192
#define MAX_SLEEP_MS 10000
#define IDLE_MS 10000           /* default: keep-alive connection with nothing to say */
#define HEADER_MS 5000          /* default: a request started but not finished (slowloris) */
#define POOL_THREADS 2
#define POOL_STOP_MS 1000       /* at shutdown, wait this long for a lookup in flight */
#define HOSTS_MAX 256
#define HOSTS_FILE "/etc/hosts"

/* Every epoll registration points at one of these (data.ptr, as nginx
 * does), so the kernel hands back the object, not an fd to look up. */
enum kind { K_LISTEN, K_CONN, K_TIMER, K_TICK, K_SIGNAL, K_POOL };
struct tag { enum kind kind; };

#define CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

struct job;

struct conn {
    struct tag tag;             /* K_CONN: the socket's registration */
    struct tag timer_tag;       /* K_TIMER: its /sleep timerfd's registration */
    int fd, timer_fd, slot;
    uint32_t watching;          /* what epoll reports for fd now */
    int deferred;               /* the answer is owed by a timer or a pool job */
    struct job *job;            /* that job while a pool thread may hold it */
    int keep_alive;             /* this request's verdict, for deferred answers too */
    int head;                   /* this request is a HEAD: headers only */
    int eof;                    /* the peer shut its sending side */
    int close_after;            /* close once the output is flushed */
    long long last_ms;          /* last progress, for the idle sweep */
    long long started_ms;       /* first byte of an unfinished request, or 0 */
    struct conn *next_closed;
    size_t in_len, out_len, out_off;
    char in[HTTP_HEAD_MAX];
    char out[OUT_MAX];
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
    int pool, quit, nconns;
    const char *data_path;
    long long idle_ms, header_ms;
    struct conn *conns[MAX_CONNS];
    struct conn *closed;        /* freed after the current batch of events */
    struct tag listen_tag, tick_tag, sig_tag, pool_tag;
    char *hosts[HOSTS_MAX];     /* names /etc/hosts lists: the only ones /dns resolves */
    int nhosts;
    /* The pool: everything below mu is shared with pool threads and only
     * touched with mu held. */
    pthread_t threads[POOL_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t work, exited;
    struct job *todo, *todo_tail, *done;
    int pool_stopping, pool_running;
} S;

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int ep_ctl(int op, int fd, uint32_t events, void *ptr) {
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    return epoll_ctl(S.ep, op, fd, &ev);
}

/* ---- answers ------------------------------------------------------------ */

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Internal Server Error";
    }
}

/* Queue an answer; keep-alive and HEAD come from the request it answers. */
static void respond(struct conn *c, int status, const char *body) {
    size_t room = sizeof c->out - c->out_len;
    int n = snprintf(c->out + c->out_len, room,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%sConnection: %s\r\n\r\n%s",
                     status, reason(status), strlen(body),
                     status == 405 ? "Allow: GET, HEAD\r\n" : "",
                     c->keep_alive ? "keep-alive" : "close", c->head ? "" : body);
    if (n < 0 || (size_t)n >= room) {
        c->close_after = 1;     /* no room: drop the connection rather than send half */
        return;
    }
    c->out_len += (size_t)n;
    if (!c->keep_alive) c->close_after = 1;
}

static void fail(struct conn *c, int status, const char *why) {
    char body[512];
    snprintf(body, sizeof body, "{\"status\":%d,\"error\":\"%.400s\"}", status, why);
    respond(c, status, body);
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
    S.conns[c->slot] = NULL;
    S.nconns--;
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
    uint32_t want = 0;
    /* Read only while we can use the bytes: not after EOF, not into a full
     * buffer, not while answers wait to go out (a client that pipelines and
     * never reads must not grow our memory). While a /sleep or pool answer
     * is owed we still read, until the buffer is full: then we stop. */
    if (!c->eof && !c->close_after && c->in_len < sizeof c->in && c->out_len == 0)
        want |= EPOLLIN;
    /* Level-triggered EPOLLOUT fires on every wait while the socket has
     * room, so ask for it only while an answer is partly written. */
    if (c->out_off < c->out_len) want |= EPOLLOUT;
    if (want == c->watching) return;
    if (ep_ctl(EPOLL_CTL_MOD, c->fd, want, &c->tag) < 0) perror("epoll_ctl MOD");
    c->watching = want;
}

/* Read until EAGAIN or a full buffer. 0 is EOF: the peer may have
 * half-closed after its request, which still gets its answer. */
static int conn_read(struct conn *c) {
    while (c->in_len < sizeof c->in) {
        ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
        if (n > 0) {
            c->last_ms = now_ms();
            if (c->in_len == 0) c->started_ms = c->last_ms;
            c->in_len += (size_t)n;
        } else if (n == 0) {
            c->eof = 1;
            return 0;
        } else if (errno != EINTR) {
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;  /* -1: ECONNRESET... */
        }
    }
    return 0;
}

/* 0 when everything queued is written, 1 if some is left, -1 on error. */
static int conn_flush(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            c->last_ms = now_ms();
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 1;
        } else {
            return -1;          /* EPIPE, ECONNRESET: the peer is gone */
        }
    }
    c->out_off = c->out_len = 0;
    return 0;
}

static void route(struct conn *c, struct http_request *req);

/* Answer each complete request in the buffer, in order (pipelining), while
 * no answer is owed and a whole answer fits. Returns 1 if it stopped only
 * for lack of output room. */
static int serve_buffered(struct conn *c) {
    size_t used = 0;
    int full = 0;
    while (!c->deferred && !c->close_after) {
        if (sizeof c->out - c->out_len < ANSWER_MAX) {
            full = 1;
            break;
        }
        struct http_request req;
        const char *why = "";
        int status = http_parse(c->in + used, c->in_len - used, &req, &why);
        if (status == HTTP_NEED_MORE) break;
        c->head = 0;            /* this request's, not the last one's */
        if (status != HTTP_DONE) {
            /* We cannot tell where the next request starts: answer, close. */
            c->keep_alive = 0;
            fail(c, status, why);
            used = c->in_len;
            break;
        }
        used += req.length;
        c->head = req.head;
        c->keep_alive = req.keep_alive;
        route(c, &req);
    }
    if (used > 0) {
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        c->started_ms = c->in_len ? now_ms() : 0;
    }
    return full;
}

/* The one place that decides what happens next to a connection: answer what
 * the buffer holds, write what the socket takes, then close the connection
 * if it is done, else tell epoll what to wait for. Every handler ends here. */
static void conn_progress(struct conn *c) {
    for (;;) {
        int full = serve_buffered(c);
        int left = conn_flush(c);
        if (left < 0) {
            conn_close(c);
            return;
        }
        if (left > 0 || !full) break;   /* wait for EPOLLOUT, or for more input */
    }
    int owes = c->deferred || c->out_len > 0;
    if (!owes && (c->close_after || c->eof)) conn_close(c);
    else conn_watch(c);
}

/* ---- routes --------------------------------------------------------------- */

/* The value of name in the query: 1 found, 0 absent; -1 once it has
 * answered 400 to a blank or too long value. */
static int query_param(struct conn *c, const char *query, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, nl) != 0 || (p[nl] != '=' && p[nl] != '&' && p[nl] != '\0')) continue;
        const char *v = p[nl] == '=' ? p + nl + 1 : p + nl;
        size_t len = strcspn(v, "&");
        if (len == 0 || len >= cap) {
            /* Same answer as the Sanic server: a blank value is a mistake,
             * not a request for the default. */
            char why[96];
            snprintf(why, sizeof why, len ? "%s is too long" : "%s is blank; give a value or leave it out", name);
            fail(c, 400, why);
            return -1;
        }
        memcpy(out, v, len);
        out[len] = '\0';
        return 1;
    }
    return 0;
}

/* RFC 1123 labels, at most 253 characters, no trailing dot: "localhost."
 * is an absolute name getaddrinfo would send to a nameserver. */
static int valid_host(const char *h) {
    size_t len = strlen(h), label = 0;
    if (len == 0 || len > 253) return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-') return 0;
            label = 0;
        } else if (isalnum((unsigned char)ch) || (ch == '-' && label > 0)) {
            if (++label > 63) return 0;
        } else {
            return 0;
        }
    }
    return label > 0 && h[len - 1] != '-';
}

static int listed_in_hosts(const char *name) {
    for (int i = 0; i < S.nhosts; i++)
        if (strcasecmp(S.hosts[i], name) == 0) return 1;
    return 0;
}

/* Runs on the loop thread, or on a pool thread with --pool. */
static int do_file(char *body, size_t cap) {
    char buf[FILE_MAX];
    int fd = open(S.data_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(body, cap, "{\"status\":500,\"error\":\"cannot open the data file\"}");
        return 500;
    }
    ssize_t total = 0, n = 0;
    while (total < (ssize_t)sizeof buf && (n = read(fd, buf + total, sizeof buf - (size_t)total)) > 0)
        total += n;
    if (close(fd) < 0) perror("close data file");
    if (n < 0) {
        snprintf(body, cap, "{\"status\":500,\"error\":\"cannot read the data file\"}");
        return 500;
    }
    snprintf(body, cap, "{\"mechanism\":\"%s\",\"bytes\":%zd}",
             S.pool ? "thread-pool" : "blocking-in-loop", total);
    return 200;
}

/* Blocking getaddrinfo: only for names /etc/hosts lists, which libc answers
 * from that file without a query. */
static int do_dns(const char *host, char *body, size_t cap) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) {
        snprintf(body, cap, "{\"status\":400,\"error\":\"%s does not resolve\"}", host);
        return 400;
    }
    char addr[INET6_ADDRSTRLEN] = "?";
    void *src = res->ai_family == AF_INET
        ? (void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
        : (void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    if (!inet_ntop(res->ai_family, src, addr, sizeof addr)) perror("inet_ntop");
    freeaddrinfo(res);
    snprintf(body, cap, "{\"mechanism\":\"%s\",\"host\":\"%s\",\"address\":\"%s\"}",
             S.pool ? "thread-pool" : "blocking-in-loop", host, addr);
    return 200;
}

static void pool_submit(struct conn *c, enum job_kind kind, const char *arg) {
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        fail(c, 503, "out of memory");
        return;
    }
    j->c = c;
    j->kind = kind;
    snprintf(j->arg, sizeof j->arg, "%s", arg);
    c->job = j;
    c->deferred = 1;
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
        fail(c, 503, "no timer available");
        return;
    }
    struct itimerspec its = {.it_value = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L}};
    if (ms == 0) its.it_value.tv_nsec = 1;  /* zero would disarm it */
    if (timerfd_settime(tfd, 0, &its, NULL) < 0 || ep_ctl(EPOLL_CTL_ADD, tfd, EPOLLIN, &c->timer_tag) < 0) {
        if (close(tfd) < 0) perror("close timer");
        fail(c, 503, "cannot arm a timer");
        return;
    }
    c->timer_fd = tfd;
    c->deferred = 1;
}

static void route(struct conn *c, struct http_request *req) {
    if (!req->head && strcmp(req->method, "GET") != 0) {
        fail(c, 405, "only GET and HEAD");
        return;
    }
    char *query = strchr(req->target, '?');
    if (query) *query++ = '\0';
    const char *path = req->target;
    char arg[256], body[1024];
    if (strcmp(path, "/") == 0) {
        respond(c, 200, "{\"mechanism\":\"socket\",\"pollable\":true}");
    } else if (strcmp(path, "/file") == 0) {
        if (S.pool) pool_submit(c, JOB_FILE, "");
        else respond(c, do_file(body, sizeof body), body);
    } else if (strcmp(path, "/sleep") == 0) {
        int got = query_param(c, query, "ms", arg, sizeof arg);
        char *end = NULL;
        long ms = got > 0 && isdigit((unsigned char)arg[0]) ? strtol(arg, &end, 10) : 200;
        if (got > 0 && (!end || *end != '\0' || ms > MAX_SLEEP_MS))
            fail(c, 400, "ms must be a whole number from 0 to 10000");
        else if (got >= 0)
            timer_start(c, (int)ms);        /* the answer comes when it fires */
    } else if (strcmp(path, "/dns") == 0) {
        int got = query_param(c, query, "host", arg, sizeof arg);
        if (got < 0) return;                /* query_param has answered 400 */
        if (got == 0) {
            fail(c, 400, "host is required, e.g. /dns?host=localhost");
        } else if (!valid_host(arg)) {
            fail(c, 400, "host must be a valid host name");
        } else if (!listed_in_hosts(arg)) {
            /* Answered without a lookup: the lab never sends a DNS query. */
            snprintf(body, sizeof body, "%s is not in /etc/hosts; the lab only resolves local names", arg);
            fail(c, 400, body);
        } else if (S.pool) {
            pool_submit(c, JOB_DNS, arg);
        } else {
            respond(c, do_dns(arg, body, sizeof body), body);
        }
    } else {
        fail(c, 404, "no such route");
    }
}

/* ---- what the loop does for each kind of ready thing ----------------------- */

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
        int slot = -1;
        for (int i = 0; i < MAX_CONNS && slot < 0; i++)
            if (!S.conns[i]) slot = i;
        struct conn *c = slot >= 0 ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            static const char full[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                       "Connection: close\r\n\r\n";
            if (write(fd, full, sizeof full - 1) < 0) { /* best effort */ }
            if (close(fd) < 0) perror("close");
            continue;
        }
        c->tag.kind = K_CONN;
        c->timer_tag.kind = K_TIMER;
        c->fd = fd;
        c->timer_fd = -1;
        c->slot = slot;
        c->last_ms = now_ms();
        c->watching = EPOLLIN;
        if (ep_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, &c->tag) < 0) {
            perror("epoll_ctl ADD");
            if (close(fd) < 0) perror("close");
            free(c);
            continue;
        }
        S.conns[slot] = c;
        S.nconns++;
    }
}

static void on_conn_event(struct conn *c, uint32_t ev) {
    if (c->fd < 0) return;      /* closed by an earlier event of this batch */
    /* ERR or HUP: reset, or shut both ways; nobody is left to answer. */
    if ((ev & (EPOLLERR | EPOLLHUP)) || ((ev & EPOLLIN) && conn_read(c) < 0)) {
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
    c->deferred = 0;
    respond(c, 200, "{\"mechanism\":\"timerfd\",\"pollable\":true}");
    conn_progress(c);           /* a pipelined request may be waiting */
}

static void on_tick(void) {
    uint64_t expirations;
    if (read(S.tick_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) perror("read tick");
    long long now = now_ms();
    for (int i = 0; i < MAX_CONNS; i++) {
        struct conn *c = S.conns[i];
        if (!c || c->deferred) continue;
        if ((c->started_ms && now - c->started_ms > S.header_ms) || now - c->last_ms > S.idle_ms)
            conn_close(c);      /* idle keep-alive, or headers trickling in too slowly */
    }
}

/* A finished job: answer its client, or free it if the client left. */
static void job_finish(struct job *j, int answer) {
    struct conn *c = j->c;
    c->job = NULL;
    c->deferred = 0;
    if (c->fd < 0) {
        c->next_closed = S.closed;     /* closed while the job ran */
        S.closed = c;
    } else if (answer) {
        respond(c, j->status, j->body);
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

/* The names /etc/hosts lists, read once: reading it per request would be a
 * blocking file read for a check. */
static void hosts_load(void) {
    if (!(S.hosts[S.nhosts++] = strdup("localhost"))) die("strdup");
    FILE *f = fopen(HOSTS_FILE, "re");
    if (!f) {
        perror(HOSTS_FILE);
        return;
    }
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "#")] = '\0';
        char *save = NULL, *word = strtok_r(line, " \t\r\n", &save);     /* the address */
        while (word && (word = strtok_r(NULL, " \t\r\n", &save)) && S.nhosts < HOSTS_MAX)
            if (valid_host(word) && !listed_in_hosts(word) && !(S.hosts[S.nhosts++] = strdup(word)))
                die("strdup");
    }
    if (fclose(f) != 0) perror("fclose");
}

static int listen_on(const char *addr, int port) {
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

static int add_timer_every(long long ms) {
    int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct timespec every = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    struct itimerspec its = {.it_value = every, .it_interval = every};
    if (fd < 0 || timerfd_settime(fd, 0, &its, NULL) < 0) die("timerfd");
    return fd;
}

static void setup(const char *bind_addr, int port) {
    signal(SIGPIPE, SIG_IGN);   /* a reset peer must be an EPIPE, not death */
    hosts_load();
    S.ep = epoll_create1(EPOLL_CLOEXEC);
    if (S.ep < 0) die("epoll_create1");
    S.listen_fd = listen_on(bind_addr, port);
    S.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (S.reserve_fd < 0) die("open /dev/null");
    S.listen_tag.kind = K_LISTEN;
    if (ep_ctl(EPOLL_CTL_ADD, S.listen_fd, EPOLLIN, &S.listen_tag) < 0) die("epoll_ctl listen");

    /* One periodic timer sweeps idle and slow connections: a coarse timer
     * wheel with a single slot, enough at this scale. */
    long long tick_ms = (S.idle_ms < S.header_ms ? S.idle_ms : S.header_ms) / 4;
    S.tick_fd = add_timer_every(tick_ms > 1000 ? 1000 : tick_ms < 10 ? 10 : tick_ms);
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
    if (S.pool) pool_start();   /* after sigprocmask: the threads inherit the mask */
    fprintf(stderr, "epoll_server: http://%s:%d/ (%s)\n", bind_addr, port,
            S.pool ? "pool mode" : "single thread");
}

static void shutdown_all(void) {
    if (S.pool) pool_stop();
    for (int i = 0; i < MAX_CONNS; i++)
        if (S.conns[i]) conn_close(S.conns[i]);
    free_closed();
    int fds[] = {S.listen_fd, S.tick_fd, S.sig_fd, S.reserve_fd, S.ep};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (close(fds[i]) < 0) perror("close");
    for (int i = 0; i < S.nhosts; i++) free(S.hosts[i]);
    fprintf(stderr, "epoll_server: stopped\n");
}

static void usage(const char *prog) {
    fprintf(stderr, "usage: %s [--port N] [--bind ADDR] [--pool] [--data FILE] [--idle-ms N] [--header-ms N]\n"
                    "  a single-threaded epoll HTTP server (routes: / /file /sleep?ms=N /dns?host=NAME)\n"
                    "  --pool  run getaddrinfo and the file read on a thread pool woken through an eventfd\n",
            prog);
}

int main(int argc, char **argv) {
    int port = 8080;
    const char *bind_addr = "127.0.0.1";
    S.data_path = "server/data/lab.txt";
    S.idle_ms = IDLE_MS;
    S.header_ms = HEADER_MS;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bind") && i + 1 < argc) bind_addr = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) S.data_path = argv[++i];
        else if (!strcmp(argv[i], "--pool")) S.pool = 1;
        else if (!strcmp(argv[i], "--idle-ms") && i + 1 < argc) S.idle_ms = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--header-ms") && i + 1 < argc) S.header_ms = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(argv[0]); return 0; }
        else { usage(argv[0]); return 2; }
    }
    if (port <= 0 || port > 65535 || S.idle_ms <= 0 || S.header_ms <= 0) { usage(argv[0]); return 2; }
    setup(bind_addr, port);
    run_loop();
    shutdown_all();
    return 0;
}
