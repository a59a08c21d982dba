/* epoll_server.c: the textbook event loop, with nothing hidden.
 *
 * One thread, one epoll instance, one epoll_wait loop: create, register the
 * listening socket, wait, accept, register the client, read until EAGAIN,
 * answer, deregister and close. Routes mirror the Sanic demo so the two
 * traces can be read side by side:
 *   /                 hello (socket I/O only)
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
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
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

#define MAX_EVENTS 64
#define MAX_CONNS 512
#define REQ_MAX 8192        /* request line + headers; more is a 431 */
#define OUT_MAX 16384
#define FILE_MAX 8192
#define MAX_SLEEP_MS 10000
#define IDLE_MS 10000       /* default: keep-alive connection with nothing to say */
#define HEADER_MS 5000      /* default: a request started but not finished (slowloris) */
#define POOL_THREADS 2

enum kind { K_LISTEN, K_CONN, K_TICK, K_SLEEP, K_SIGNAL, K_POOL };

/* Every epoll registration points at one of these: data.ptr, as nginx does,
 * so the kernel hands back the object, not just an fd to look up. */
struct tag { enum kind kind; };

struct conn {
    struct tag tag;             /* K_CONN */
    int fd;
    int timer_fd;               /* /sleep: armed timerfd, else -1 */
    struct timer_tag *timer;    /* its epoll tag */
    int busy;                   /* a pool job is out for this connection */
    int sleeping;               /* waiting for its timerfd */
    int head;                   /* the request being answered is a HEAD */
    struct conn *dead_next;     /* on S.dead once closed */
    int want_out;               /* registered for EPOLLOUT */
    int close_after;            /* close once the output is flushed */
    long long last_ms;          /* last activity, for the idle sweep */
    long long started_ms;       /* first byte of an unfinished request, or 0 */
    size_t in_len, out_len, out_off;
    char in[REQ_MAX];
    char out[OUT_MAX];
};

struct timer_tag { struct tag tag; struct conn *c; };

struct job {
    struct job *next;
    struct conn *c;
    int is_dns;
    char arg[256];
    int status;
    char body[1024];
};

static struct {
    int ep, listen_fd, tick_fd, sig_fd, pool_fd;
    int pool;
    const char *data_path;
    int reserve_fd;             /* spare fd, given up to shed a connection on EMFILE */
    int nconns;
    long long idle_ms, header_ms;
    int stopping;
    struct conn *conns[MAX_CONNS];
    struct conn *dead;          /* closed, freed after the current batch of events */
    struct tag listen_tag, tick_tag, sig_tag, pool_tag;
    pthread_t threads[POOL_THREADS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *todo, *done;
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

/* ---- connections ------------------------------------------------------ */

static void bury(struct conn *c) {
    c->dead_next = S.dead;
    S.dead = c;
}

static void free_dead(void) {
    while (S.dead) {
        struct conn *c = S.dead;
        S.dead = c->dead_next;
        free(c->timer);
        free(c);
    }
}

static int conn_slot(const struct conn *c) {
    for (int i = 0; i < MAX_CONNS; i++)
        if (S.conns[i] == c) return i;
    return -1;
}

static void conn_close(struct conn *c) {
    int slot = conn_slot(c);
    /* DEL before close: the kernel would drop it at close anyway, but only
     * when no dup of the fd is left; saying it keeps the trace honest. */
    if (epoll_ctl(S.ep, EPOLL_CTL_DEL, c->fd, NULL) < 0) perror("epoll_ctl DEL");
    if (close(c->fd) < 0) perror("close");
    if (c->timer_fd >= 0) {
        epoll_ctl(S.ep, EPOLL_CTL_DEL, c->timer_fd, NULL);
        close(c->timer_fd);
        c->timer_fd = -1;
        c->timer->c = NULL;
    }
    if (slot >= 0) S.conns[slot] = NULL;
    S.nconns--;
    c->fd = -1;
    /* Not freed yet: later events of this epoll_wait batch may still point
     * at it (or its timer). A pool job that holds it frees it on return. */
    if (!c->busy) bury(c);
}

static void set_out_interest(struct conn *c, int want) {
    if (c->want_out == want) return;
    /* Level-triggered EPOLLOUT fires on every wait while the socket has
     * room, so ask for it only while a response is partly written. */
    uint32_t ev = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
    if (ep_ctl(EPOLL_CTL_MOD, c->fd, ev, c) < 0) perror("epoll_ctl MOD");
    c->want_out = want;
}

/* Returns 0 when everything queued was written, 1 if some is left, -1 on error. */
static int conn_flush(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out_interest(c, 1);
            return 1;
        } else {
            return -1;          /* EPIPE, ECONNRESET: the peer is gone */
        }
    }
    c->out_off = c->out_len = 0;
    set_out_interest(c, 0);
    return 0;
}

static void respond(struct conn *c, int status, const char *reason, const char *body, int keep) {
    int n = snprintf(c->out + c->out_len, sizeof c->out - c->out_len,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: %s\r\n\r\n%s",
                     status, reason, strlen(body), keep ? "keep-alive" : "close", c->head ? "" : body);
    if (n < 0 || (size_t)n >= sizeof c->out - c->out_len) {
        c->close_after = 1;     /* no room: drop the connection rather than send half */
        return;
    }
    c->out_len += (size_t)n;
    if (!keep) c->close_after = 1;
}

static void error_reply(struct conn *c, int status, const char *reason, const char *why) {
    char body[256];
    snprintf(body, sizeof body, "{\"status\":%d,\"error\":\"%s\"}", status, why);
    respond(c, status, reason, body, 0);
}

/* ---- routes ----------------------------------------------------------- */

static int query_param(const char *query, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            const char *v = p + nl + 1;
            size_t len = strcspn(v, "&");
            if (len >= cap) return -1;
            memcpy(out, v, len);
            out[len] = '\0';
            return 1;
        }
    }
    return 0;
}

static int valid_host(const char *h) {
    size_t len = strlen(h), label = 0;
    if (len == 0 || len > 253) return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        if (ch == '.') {
            if (label == 0 || h[i - 1] == '-') return 0;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || (ch == '-' && label > 0)) {
            if (++label > 63) return 0;
        } else {
            return 0;
        }
    }
    return h[len - 1] != '-';
}

/* Runs on the loop thread, or on a pool thread with --pool. */
static void do_file(char *body, size_t cap, int *status) {
    char buf[FILE_MAX];
    int fd = open(S.data_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(body, cap, "{\"error\":\"cannot open the data file\"}");
        *status = 500;
        return;
    }
    ssize_t total = 0, n;
    while ((n = read(fd, buf + total, sizeof buf - (size_t)total)) > 0) total += n;
    close(fd);
    snprintf(body, cap, "{\"mechanism\":\"%s\",\"bytes\":%zd}",
             S.pool ? "thread-pool" : "blocking-in-loop", total);
    *status = n < 0 ? 500 : 200;
}

static void do_dns(const char *host, char *body, size_t cap, int *status) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(body, cap, "{\"status\":400,\"error\":\"%s does not resolve\"}", host);
        *status = 400;
        return;
    }
    char addr[INET6_ADDRSTRLEN] = "";
    void *src = res->ai_family == AF_INET
        ? (void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
        : (void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
    inet_ntop(res->ai_family, src, addr, sizeof addr);
    freeaddrinfo(res);
    snprintf(body, cap, "{\"mechanism\":\"%s\",\"host\":\"%s\",\"address\":\"%s\"}",
             S.pool ? "thread-pool" : "blocking-in-loop", host, addr);
    *status = 200;
}

static void queue_job(struct conn *c, int is_dns, const char *arg) {
    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        error_reply(c, 503, "Service Unavailable", "out of memory");
        return;
    }
    j->c = c;
    j->is_dns = is_dns;
    snprintf(j->arg, sizeof j->arg, "%s", arg);
    c->busy = 1;
    pthread_mutex_lock(&S.mu);
    j->next = S.todo;
    S.todo = j;
    pthread_cond_signal(&S.cv);
    pthread_mutex_unlock(&S.mu);
}

static void start_sleep(struct conn *c, int ms) {
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) {
        error_reply(c, 503, "Service Unavailable", "no timer available");
        return;
    }
    struct itimerspec its = {.it_value = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L}};
    if (ms == 0) its.it_value.tv_nsec = 1;  /* zero would disarm it */
    struct timer_tag *tt = malloc(sizeof *tt);
    if (!tt || timerfd_settime(tfd, 0, &its, NULL) < 0 ||
        ep_ctl(EPOLL_CTL_ADD, tfd, EPOLLIN, tt) < 0) {
        free(tt);
        close(tfd);
        error_reply(c, 503, "Service Unavailable", "cannot arm a timer");
        return;
    }
    tt->tag.kind = K_SLEEP;
    tt->c = c;
    c->timer_fd = tfd;
    c->timer = tt;
    c->sleeping = 1;
}

/* Handle one complete request; returns 0 to go on, -1 to stop reading. */
static int route(struct conn *c, const char *method, char *target, int keep) {
    char *query = strchr(target, '?');
    if (query) *query++ = '\0';
    c->head = strcmp(method, "HEAD") == 0;
    if (strcmp(method, "GET") != 0 && !c->head) {
        error_reply(c, 405, "Method Not Allowed", "only GET and HEAD");
        return -1;
    }
    char body[1024], arg[256];
    int status = 200;
    if (strcmp(target, "/") == 0) {
        respond(c, 200, "OK", "{\"mechanism\":\"socket\",\"pollable\":true}", keep);
    } else if (strcmp(target, "/file") == 0) {
        if (S.pool) {
            queue_job(c, 0, "");
            return -1;
        }
        do_file(body, sizeof body, &status);
        respond(c, status, status == 200 ? "OK" : "Internal Server Error", body, keep);
    } else if (strcmp(target, "/sleep") == 0) {
        int got = query_param(query, "ms", arg, sizeof arg);
        char *end = NULL;
        long ms = got > 0 ? strtol(arg, &end, 10) : 200;
        if (got < 0 || (got > 0 && (*arg == '\0' || *end != '\0')) || ms < 0 || ms > MAX_SLEEP_MS) {
            error_reply(c, 400, "Bad Request", "ms must be a whole number from 0 to 10000");
            return -1;
        }
        start_sleep(c, (int)ms);
        return -1;              /* the answer comes when the timer fires */
    } else if (strcmp(target, "/dns") == 0) {
        if (query_param(query, "host", arg, sizeof arg) <= 0 || !valid_host(arg)) {
            error_reply(c, 400, "Bad Request", "host must be a valid host name");
            return -1;
        }
        if (S.pool) {
            queue_job(c, 1, arg);
            return -1;
        }
        do_dns(arg, body, sizeof body, &status);
        if (status != 200) {
            respond(c, status, "Bad Request", body, 0);
            return -1;
        }
        respond(c, 200, "OK", body, keep);
    } else {
        error_reply(c, 404, "Not Found", "no such route");
        return -1;
    }
    return 0;
}

/* Parse as many complete requests as the buffer holds (pipelining). */
static void handle_input(struct conn *c) {
    while (c->in_len > 0 && !c->busy && !c->sleeping && !c->close_after) {
        char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (!end) {
            if (c->in_len >= REQ_MAX) {
                error_reply(c, 431, "Request Header Fields Too Large", "request headers too large");
                c->in_len = 0;
            } else if (!c->started_ms) {
                c->started_ms = now_ms();
            }
            return;
        }
        size_t req_len = (size_t)(end - c->in) + 4;
        *end = '\0';
        char method[16], target[2048], version[16];
        int keep = 1;
        if (sscanf(c->in, "%15s %2047s %15s", method, target, version) != 3 ||
            strncmp(version, "HTTP/1.", 7) != 0 || target[0] != '/') {
            error_reply(c, 400, "Bad Request", "malformed request line");
        } else {
            if (strcmp(version, "HTTP/1.0") == 0 || strcasestr(c->in, "\r\nconnection: close"))
                keep = 0;
            if (strcasestr(c->in, "\r\ncontent-length:") || strcasestr(c->in, "\r\ntransfer-encoding:"))
                error_reply(c, 413, "Content Too Large", "request bodies are not accepted");
            else
                route(c, method, target, keep);
        }
        memmove(c->in, c->in + req_len, c->in_len - req_len);
        c->in_len -= req_len;
        c->started_ms = c->in_len ? now_ms() : 0;
    }
}

static void on_readable(struct conn *c) {
    for (;;) {
        if (c->in_len == sizeof c->in) {
            handle_input(c);    /* full buffer: answer (431) before reading more */
            if (c->in_len == sizeof c->in || c->close_after) break;
        }
        ssize_t n = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
        if (n > 0) {
            c->in_len += (size_t)n;
            c->last_ms = now_ms();
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        /* Read until EAGAIN: level-triggered would call us again anyway, but
         * draining now answers pipelined requests in one pass. */
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_close(c);          /* 0 = EOF, or an error such as ECONNRESET */
        return;
    }
    handle_input(c);
    if (conn_flush(c) < 0 || (c->close_after && c->out_len == 0)) conn_close(c);
}

/* ---- the listening socket ---------------------------------------------- */

static void on_accept(void) {
    for (;;) {
        int fd = accept4(S.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of fds: level-triggered epoll would report the listener
                 * again at once, a busy loop. Free the spare fd, accept and
                 * close the connection, then take the spare back. */
                close(S.reserve_fd);
                fd = accept4(S.listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) close(fd);
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
        for (int i = 0; i < MAX_CONNS; i++)
            if (!S.conns[i]) { slot = i; break; }
        struct conn *c = slot >= 0 ? calloc(1, sizeof *c) : NULL;
        if (!c) {
            static const char full[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                       "Connection: close\r\n\r\n";
            if (write(fd, full, sizeof full - 1) < 0) { /* best effort */ }
            close(fd);
            continue;
        }
        c->tag.kind = K_CONN;
        c->fd = fd;
        c->timer_fd = -1;
        c->last_ms = now_ms();
        /* EPOLLRDHUP: learn that the peer closed its end without a read. */
        if (ep_ctl(EPOLL_CTL_ADD, fd, EPOLLIN | EPOLLRDHUP, c) < 0) {
            perror("epoll_ctl ADD");
            close(fd);
            free(c);
            continue;
        }
        S.conns[slot] = c;
        S.nconns++;
    }
}

/* ---- timers, pool completions, signals ---------------------------------- */

static void on_sleep_done(struct timer_tag *tt) {
    struct conn *c = tt->c;
    uint64_t expirations;
    if (read(c->timer_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) perror("read timerfd");
    epoll_ctl(S.ep, EPOLL_CTL_DEL, c->timer_fd, NULL);
    close(c->timer_fd);
    c->timer_fd = -1;
    c->timer = NULL;
    free(tt);
    c->sleeping = 0;
    respond(c, 200, "OK", "{\"mechanism\":\"timerfd\",\"pollable\":true}", 1);
    if (conn_flush(c) < 0 || (c->close_after && c->out_len == 0)) {
        conn_close(c);
        return;
    }
    handle_input(c);            /* a pipelined request may be waiting */
    if (conn_flush(c) < 0 || (c->close_after && c->out_len == 0)) conn_close(c);
}

static void on_idle_tick(void) {
    uint64_t expirations;
    if (read(S.tick_fd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) perror("read tick");
    long long now = now_ms();
    for (int i = 0; i < MAX_CONNS; i++) {
        struct conn *c = S.conns[i];
        if (!c || c->busy || c->sleeping) continue;
        if ((c->started_ms && now - c->started_ms > S.header_ms) || now - c->last_ms > S.idle_ms)
            conn_close(c);      /* idle keep-alive, or headers trickling in too slowly */
    }
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
        struct conn *c = j->c;
        if (c->fd < 0) {
            c->busy = 0;
            bury(c);            /* closed while the job ran */
        } else {
            c->busy = 0;
            respond(c, j->status, j->status == 200 ? "OK" : "Bad Request", j->body, j->status == 200);
            handle_input(c);
            if (conn_flush(c) < 0 || (c->close_after && c->out_len == 0)) conn_close(c);
        }
        free(j);
    }
}

static void *pool_main(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&S.mu);
        while (!S.todo && !S.stopping) pthread_cond_wait(&S.cv, &S.mu);
        if (S.stopping) {
            pthread_mutex_unlock(&S.mu);
            return NULL;
        }
        struct job *j = S.todo;
        S.todo = j->next;
        pthread_mutex_unlock(&S.mu);

        if (j->is_dns) do_dns(j->arg, j->body, sizeof j->body, &j->status);
        else do_file(j->body, sizeof j->body, &j->status);

        pthread_mutex_lock(&S.mu);
        j->next = S.done;
        S.done = j;
        pthread_mutex_unlock(&S.mu);
        /* The loop sleeps in epoll_wait; a write to the eventfd it watches
         * is what wakes it, the way libuv's uv_async_send does. */
        uint64_t one = 1;
        if (write(S.pool_fd, &one, sizeof one) < 0) perror("write eventfd");
    }
}

/* ---- set-up and the loop ------------------------------------------------ */

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
    signal(SIGPIPE, SIG_IGN);   /* a reset peer must be an EPIPE, not death */

    S.ep = epoll_create1(EPOLL_CLOEXEC);
    if (S.ep < 0) die("epoll_create1");
    S.listen_fd = listen_on(bind_addr, port);
    S.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (S.reserve_fd < 0) die("open /dev/null");
    /* Level-triggered everywhere: a ready fd we did not finish with is
     * reported again, so no event is lost if a handler stops early. */
    S.listen_tag.kind = K_LISTEN;
    if (ep_ctl(EPOLL_CTL_ADD, S.listen_fd, EPOLLIN, &S.listen_tag) < 0) die("epoll_ctl listen");

    S.tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    /* One periodic timer sweeps idle and slow connections: a coarse timer
     * wheel with a single slot, enough at this scale. */
    long long tick_ms = (S.idle_ms < S.header_ms ? S.idle_ms : S.header_ms) / 4;
    if (tick_ms > 1000) tick_ms = 1000;
    if (tick_ms < 10) tick_ms = 10;
    struct timespec every = {.tv_sec = tick_ms / 1000, .tv_nsec = (tick_ms % 1000) * 1000000L};
    struct itimerspec tick = {.it_value = every, .it_interval = every};
    if (S.tick_fd < 0 || timerfd_settime(S.tick_fd, 0, &tick, NULL) < 0) die("timerfd");
    S.tick_tag.kind = K_TICK;
    if (ep_ctl(EPOLL_CTL_ADD, S.tick_fd, EPOLLIN, &S.tick_tag) < 0) die("epoll_ctl tick");

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) die("sigprocmask");
    S.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    S.sig_tag.kind = K_SIGNAL;
    if (S.sig_fd < 0 || ep_ctl(EPOLL_CTL_ADD, S.sig_fd, EPOLLIN, &S.sig_tag) < 0) die("signalfd");

    S.pool_fd = -1;
    if (S.pool) {
        S.pool_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        S.pool_tag.kind = K_POOL;
        if (S.pool_fd < 0 || ep_ctl(EPOLL_CTL_ADD, S.pool_fd, EPOLLIN, &S.pool_tag) < 0) die("eventfd");
        pthread_mutex_init(&S.mu, NULL);
        pthread_cond_init(&S.cv, NULL);
        for (int i = 0; i < POOL_THREADS; i++)
            if (pthread_create(&S.threads[i], NULL, pool_main, NULL) != 0) die("pthread_create");
    }
    fprintf(stderr, "epoll_server: http://%s:%d/ (%s)\n", bind_addr, port,
            S.pool ? "pool mode" : "single thread");

    struct epoll_event events[MAX_EVENTS];
    while (!S.stopping) {
        int n = epoll_wait(S.ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct tag *t = events[i].data.ptr;
            uint32_t ev = events[i].events;
            if (t->kind == K_LISTEN) {
                on_accept();
            } else if (t->kind == K_TICK) {
                on_idle_tick();
            } else if (t->kind == K_SIGNAL) {
                S.stopping = 1;
            } else if (t->kind == K_POOL) {
                on_pool_done();
            } else if (t->kind == K_SLEEP) {
                if (((struct timer_tag *)t)->c) on_sleep_done((struct timer_tag *)t);
            } else {
                struct conn *c = (struct conn *)t;
                if (c->fd < 0) continue;
                if (ev & (EPOLLERR | EPOLLHUP)) {
                    conn_close(c);
                } else if (ev & EPOLLOUT) {
                    if (conn_flush(c) < 0 || (c->close_after && c->out_len == 0)) conn_close(c);
                    else if (c->out_len == 0) handle_input(c);
                } else if (ev & (EPOLLIN | EPOLLRDHUP)) {
                    on_readable(c);
                }
            }
        }
        free_dead();
    }
    /* Clean shutdown: stop the pool, close every fd, free every connection. */
    if (S.pool) {
        pthread_mutex_lock(&S.mu);
        pthread_cond_broadcast(&S.cv);
        pthread_mutex_unlock(&S.mu);
        for (int i = 0; i < POOL_THREADS; i++) pthread_join(S.threads[i], NULL);
        on_pool_done();
        while (S.todo) { struct job *j = S.todo; S.todo = j->next; free(j); }
        close(S.pool_fd);
    }
    for (int i = 0; i < MAX_CONNS; i++) {
        struct conn *c = S.conns[i];
        if (!c) continue;
        c->busy = 0;
        conn_close(c);
    }
    free_dead();
    close(S.listen_fd);
    close(S.tick_fd);
    close(S.sig_fd);
    close(S.reserve_fd);
    close(S.ep);
    fprintf(stderr, "epoll_server: stopped\n");
    return 0;
}
