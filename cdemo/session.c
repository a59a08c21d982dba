/* session.c: one client connection's HTTP state (see session.h). */
#define _GNU_SOURCE
#include "session.h"

#include <stdio.h>
#include <string.h>

#include "routes.h"

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

void session_open(struct session *s, int slot, long long now) {
    s->slot = slot;
    s->last_ms = s->started_ms = now;
}

void session_got(struct session *s, size_t n, long long now) {
    s->last_ms = now;
    if (!s->started_ms) s->started_ms = now;
    s->in_len += n;
    if (s->close_after) s->in_len = 0;  /* nothing after the last answer is a request */
}

void session_sent(struct session *s, size_t n, long long now) {
    s->last_ms = now;
    s->out_off += n;
    if (s->out_off == s->out_len) s->out_off = s->out_len = 0;
}

/* Keep-alive and HEAD come from the request it answers. */
void session_answer(struct session *s, int status, const char *body) {
    size_t room = sizeof s->out - s->out_len;
    int n = snprintf(s->out + s->out_len, room,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%s%sConnection: %s\r\n\r\n%s",
                     status, reason(status), strlen(body),
                     status == 405 ? "Allow: GET, HEAD\r\n" : "",
                     status == 503 ? "Retry-After: 1\r\n" : "",
                     s->keep_alive ? "keep-alive" : "close", s->head ? "" : body);
    s->deferred = 0;
    if (n < 0 || (size_t)n >= room) {
        s->close_after = 1;     /* no room: drop the connection rather than send half */
        return;
    }
    s->out_len += (size_t)n;
    if (!s->keep_alive) s->close_after = 1;
}

void session_fail(struct session *s, int status, const char *why) {
    char body[512];
    snprintf(body, sizeof body, "{\"status\":%d,\"error\":\"%.400s\"}", status, why);
    session_answer(s, status, body);
}

void session_refuse(struct session *s) {
    char why[128];
    snprintf(why, sizeof why, "all %d connections are busy with requests; try again shortly", MAX_CONNS);
    s->keep_alive = 0;
    session_fail(s, 503, why);
}

int session_serve(struct session *s, defer_fn *defer) {
    size_t used = 0;
    int full = 0;
    while (!s->deferred && !s->close_after) {
        if (sizeof s->out - s->out_len < ANSWER_MAX) {
            full = 1;
            break;
        }
        struct http_request req;
        const char *why = "";
        int status = http_parse(s->in + used, s->in_len - used, &req, &why);
        if (status == HTTP_NEED_MORE) break;
        s->head = 0;            /* this request's, not the last one's */
        if (status != HTTP_DONE) {
            /* We cannot tell where the next request starts: answer, close. */
            s->keep_alive = 0;
            session_fail(s, status, why);
            used = s->in_len;
            break;
        }
        used += req.length;
        s->head = req.head;
        s->keep_alive = req.keep_alive;
        struct plan plan;
        route(s, &req, &plan);
        if (plan.work != WORK_NONE) {
            s->deferred = 1;
            defer(s, &plan);    /* may answer at once, which clears deferred */
        }
    }
    if (used > 0) {
        memmove(s->in, s->in + used, s->in_len - used);
        s->in_len -= used;
        s->started_ms = s->in_len ? s->last_ms : 0;
    }
    return full;
}

int session_wants_input(const struct session *s) {
    if (s->eof) return 0;
    if (s->lingering) return 1;
    /* A client that pipelines and never reads must not grow our memory:
     * no reading while answers wait to go out. While a deferred answer is
     * owed we still read, until the buffer is full. */
    return !s->close_after && s->in_len < sizeof s->in && s->out_len == 0;
}

enum next session_next(const struct session *s) {
    if (s->deferred || s->out_len > 0) return NEXT_WAIT;
    if (s->eof) return NEXT_CLOSE;      /* everything it sent is read: a close is a FIN */
    if (s->close_after && !s->lingering) return NEXT_LINGER;
    return NEXT_WAIT;
}

void session_lingers(struct session *s, long long now) {
    s->lingering = 1;
    s->linger_ms = now;
    s->in_len = 0;
}

int session_expired(const struct session *s, long long now, long long idle_ms, long long header_ms) {
    if (s->lingering) return now - s->linger_ms > LINGER_MS;
    if (s->deferred) return 0;
    return (s->started_ms && now - s->started_ms > header_ms) || now - s->last_ms > idle_ms;
}

long long session_sweep_ms(long long idle_ms, long long header_ms) {
    long long ms = idle_ms < header_ms ? idle_ms : header_ms;
    ms = (ms < LINGER_MS ? ms : LINGER_MS) / 4;
    return ms > 1000 ? 1000 : ms < 10 ? 10 : ms;
}

static int slot_free(struct session *const slots[], int from, int to) {
    for (int i = from; i < to; i++)
        if (!slots[i]) return i;
    return -1;
}

static struct session *slot_oldest_idle(struct session *const slots[]) {
    struct session *oldest = NULL;
    for (int i = 0; i < MAX_CONNS; i++) {
        struct session *s = slots[i];
        if (s && !s->deferred && s->out_len == 0 && (!oldest || s->last_ms < oldest->last_ms))
            oldest = s;
    }
    return oldest;
}

int slot_take(struct session *slots[], void (*close_fn)(struct session *), int *refuse) {
    *refuse = 0;
    int slot = slot_free(slots, 0, MAX_CONNS);
    if (slot >= 0) return slot;
    struct session *idle = slot_oldest_idle(slots);
    if (idle) {
        slot = idle->slot;
        close_fn(idle);
        return slot;
    }
    *refuse = 1;
    return slot_free(slots, MAX_CONNS, SLOTS);
}
