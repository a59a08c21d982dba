/* routes.h: what the C servers answer, the same on both loops.
 *
 *   /                 hello (socket I/O only)
 *   /file             the lab's data file        -> WORK_FILE
 *   /sleep?ms=N       an answer after N ms       -> WORK_SLEEP
 *   /dns?host=NAME    NAME's address             -> WORK_DNS, only for names
 *                     /etc/hosts lists, so no query leaves the machine
 *
 * Bad input gets a 4xx with a reason; how the deferred work is done is the
 * loop's business (routes.c does no I/O after start-up).
 */
#ifndef ROUTES_H
#define ROUTES_H

#include <stddef.h>

#include "http.h"
#include "session.h"

#define MAX_SLEEP_MS 10000
#define FILE_MAX 8192           /* the most /file reads */
#define HOSTS_FILE "/etc/hosts"

/* Answer req on s, or fill *plan with the work its answer needs. */
void route(struct session *s, struct http_request *req, struct plan *plan);

/* The /file answer's body for `bytes` read; failed: NULL, "open" or "read". */
int file_body(char *body, size_t cap, const char *mechanism, const char *failed, long bytes);

/* The /dns answer's body; address NULL: the name did not resolve. */
int dns_body(char *body, size_t cap, const char *mechanism, const char *host, const char *address);

/* The names /etc/hosts lists, read once at start-up ("localhost" always). */
void hosts_load(void);
void hosts_free(void);

/* The first address /etc/hosts text lists for name: 1 found, 0 not. */
int hosts_find(char *text, size_t len, const char *name, char *address, size_t cap);

#endif
