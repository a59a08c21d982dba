/* session.h: one client connection's HTTP state, shared by both C servers.
 *
 * No I/O here. A loop puts the bytes it read into `in`, asks what to do
 * next, writes what `out` holds, and carries out the work a route defers
 * (the file, the lookup, the timer) its own way: the epoll server when an
 * fd is ready, the io_uring server when an operation has completed.
 */
#ifndef SESSION_H
#define SESSION_H

#include <stddef.h>

#include "http.h"

#define MAX_CONNS 512           /* clients served at once */
#define REFUSALS 64             /* more slots, for clients being refused (a 503, then a graceful close) */
#define SLOTS (MAX_CONNS + REFUSALS)
#define OUT_MAX 16384           /* answers queued on one connection */
#define ANSWER_MAX 2048         /* the largest single answer: parse only with this much room */
#define LINGER_MS 2000          /* after our FIN: how long to read what the client still sends */

struct session {
    int slot;                   /* its index in the loop's slot table */
    int deferred;               /* an answer is owed by a timer, a file or a lookup */
    int keep_alive;             /* this request's verdict, for deferred answers too */
    int head;                   /* this request is a HEAD: headers only */
    int eof;                    /* the peer shut its sending side */
    int close_after;            /* close once the output is flushed */
    int lingering;              /* our side is shut; reading only to drain, until EOF or LINGER_MS */
    long long last_ms;          /* last progress, for the idle time-out */
    long long started_ms;       /* accept, or the first byte of an unfinished request; 0 between requests */
    long long linger_ms;        /* when lingering began */
    size_t in_len, out_len, out_off;
    char in[HTTP_HEAD_MAX];
    char out[OUT_MAX];
};

/* Work a route hands to the loop instead of answering at once. */
enum work { WORK_NONE, WORK_FILE, WORK_DNS, WORK_SLEEP };

struct plan {
    enum work work;
    int ms;                     /* WORK_SLEEP */
    char host[256];             /* WORK_DNS: a valid name that /etc/hosts lists */
};

/* A loop's function that starts deferred work; it may answer at once. */
typedef void defer_fn(struct session *s, const struct plan *plan);

/* A new connection, accepted at `now`: its first request head must be whole
 * within the header time-out, which starts now, not at its first byte. */
void session_open(struct session *s, int slot, long long now);

/* n more bytes are in `in` (after a read or recv). Once the answer says
 * close, they are dropped: the loop only drains the socket. */
void session_got(struct session *s, size_t n, long long now);

/* n bytes of `out` went out. */
void session_sent(struct session *s, size_t n, long long now);

/* Answer each complete request in `in`, in order (pipelining), while no
 * answer is owed and a whole answer fits; deferred work goes to `defer`.
 * Returns 1 if it stopped only for lack of output room. */
int session_serve(struct session *s, defer_fn *defer);

/* Queue an answer (the owed one, if one was owed). */
void session_answer(struct session *s, int status, const char *body);
void session_fail(struct session *s, int status, const char *why);

/* Refuse a client no slot is left for: a 503 with a reason, then close. */
void session_refuse(struct session *s);

/* Whether to read from the socket now: not after EOF, not into a full
 * buffer, not while answers wait to go out; while lingering, to drain. */
int session_wants_input(const struct session *s);

enum next { NEXT_WAIT, NEXT_LINGER, NEXT_CLOSE };

/* After writing what it could: wait (for input, output room or the owed
 * answer), linger (shut our side, drain: a close with unread bytes is an
 * RST, which can destroy the answer before the client reads it), or close. */
enum next session_next(const struct session *s);

/* The loop has shut its side (shutdown SHUT_WR). */
void session_lingers(struct session *s, long long now);

/* Whether the time-outs say close: the header time-out from accept or a
 * request's first byte, the idle one between requests, the linger bound. */
int session_expired(const struct session *s, long long now, long long idle_ms, long long header_ms);

/* How often a loop should sweep its sessions for session_expired. */
long long session_sweep_ms(long long idle_ms, long long header_ms);

/* A slot of the loop's table (the first MAX_CONNS for clients served, the
 * rest for refusals) for a new connection: a free one; else, as nginx
 * reuses connections, the one of the session idle longest among those that
 * owe nothing (never sent a whole request, idle keep-alive, lingering),
 * which close_fn closes (and takes out of the table); else a refusal slot,
 * with *refuse set. -1: not even that is left. */
int slot_take(struct session *slots[], void (*close_fn)(struct session *), int *refuse);

#endif
