/* routes.c: what the C servers answer (see routes.h). */
#define _GNU_SOURCE
#include "routes.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOSTS_MAX 256

static char *hosts[HOSTS_MAX];  /* names /etc/hosts lists: the only ones /dns resolves */
static int nhosts;

/* The value of name in the query: 1 found, 0 absent; -1 once it has
 * answered 400 to a blank or too long value. */
static int query_param(struct session *s, const char *query, const char *name, char *out, size_t cap) {
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
            session_fail(s, 400, why);
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
    for (int i = 0; i < nhosts; i++)
        if (strcasecmp(hosts[i], name) == 0) return 1;
    return 0;
}

static void route_sleep(struct session *s, const char *query, struct plan *plan) {
    char arg[256];
    int got = query_param(s, query, "ms", arg, sizeof arg);
    char *end = NULL;
    long ms = got > 0 && isdigit((unsigned char)arg[0]) ? strtol(arg, &end, 10) : 200;
    if (got > 0 && (!end || *end != '\0' || ms > MAX_SLEEP_MS)) {
        session_fail(s, 400, "ms must be a whole number from 0 to 10000");
    } else if (got >= 0) {
        plan->work = WORK_SLEEP;
        plan->ms = (int)ms;
    }
}

static void route_dns(struct session *s, const char *query, struct plan *plan) {
    char why[512];
    int got = query_param(s, query, "host", plan->host, sizeof plan->host);
    if (got < 0) return;                /* query_param has answered 400 */
    if (got == 0) {
        session_fail(s, 400, "host is required, e.g. /dns?host=localhost");
    } else if (!valid_host(plan->host)) {
        session_fail(s, 400, "host must be a valid host name");
    } else if (!listed_in_hosts(plan->host)) {
        /* Answered without a lookup: the lab never sends a DNS query. */
        snprintf(why, sizeof why, "%s is not in /etc/hosts; the lab only resolves local names", plan->host);
        session_fail(s, 400, why);
    } else {
        plan->work = WORK_DNS;
    }
}

void route(struct session *s, struct http_request *req, struct plan *plan) {
    plan->work = WORK_NONE;
    if (!req->head && strcmp(req->method, "GET") != 0) {
        session_fail(s, 405, "only GET and HEAD");
        return;
    }
    char *query = strchr(req->target, '?');
    if (query) *query++ = '\0';
    const char *path = req->target;
    if (strcmp(path, "/") == 0) session_answer(s, 200, "{\"mechanism\":\"socket\",\"pollable\":true}");
    else if (strcmp(path, "/file") == 0) plan->work = WORK_FILE;
    else if (strcmp(path, "/sleep") == 0) route_sleep(s, query, plan);
    else if (strcmp(path, "/dns") == 0) route_dns(s, query, plan);
    else session_fail(s, 404, "no such route");
}

int file_body(char *body, size_t cap, const char *mechanism, const char *failed, long bytes) {
    if (failed) {
        snprintf(body, cap, "{\"status\":500,\"error\":\"cannot %s the data file\"}", failed);
        return 500;
    }
    snprintf(body, cap, "{\"mechanism\":\"%s\",\"bytes\":%ld}", mechanism, bytes);
    return 200;
}

int dns_body(char *body, size_t cap, const char *mechanism, const char *host, const char *address) {
    if (!address) {
        snprintf(body, cap, "{\"status\":400,\"error\":\"%s does not resolve\"}", host);
        return 400;
    }
    snprintf(body, cap, "{\"mechanism\":\"%s\",\"host\":\"%s\",\"address\":\"%s\"}", mechanism, host, address);
    return 200;
}

/* One /etc/hosts line, "ADDRESS NAME [NAME...] [# comment]": fn for each
 * name until it returns nonzero, which this returns. */
static int hosts_line(char *line, int (*fn)(const char *address, const char *name, void *arg), void *arg) {
    line[strcspn(line, "#")] = '\0';
    char *save = NULL, *address = strtok_r(line, " \t\r\n", &save);
    for (char *name; address && (name = strtok_r(NULL, " \t\r\n", &save));)
        if (fn(address, name, arg)) return 1;
    return 0;
}

static int add_name(const char *address, const char *name, void *arg) {
    (void)address, (void)arg;
    if (nhosts < HOSTS_MAX && valid_host(name) && !listed_in_hosts(name) && !(hosts[nhosts++] = strdup(name))) {
        perror("strdup");
        exit(1);
    }
    return 0;
}

/* Read once: reading it per request would be a blocking file read for a check. */
void hosts_load(void) {
    add_name(NULL, "localhost", NULL);
    FILE *f = fopen(HOSTS_FILE, "re");
    if (!f) {
        perror(HOSTS_FILE);
        return;
    }
    char line[1024];
    while (fgets(line, sizeof line, f)) hosts_line(line, add_name, NULL);
    if (fclose(f) != 0) perror("fclose");
}

void hosts_free(void) {
    for (int i = 0; i < nhosts; i++) free(hosts[i]);
    nhosts = 0;
}

struct wanted {
    const char *name;
    char *address;
    size_t cap;
};

static int is_wanted(const char *address, const char *name, void *arg) {
    struct wanted *w = arg;
    if (strcasecmp(name, w->name) != 0) return 0;
    snprintf(w->address, w->cap, "%s", address);
    return 1;
}

int hosts_find(char *text, size_t len, const char *name, char *address, size_t cap) {
    struct wanted w = {name, address, cap};
    char line[1024];
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
        snprintf(line, sizeof line, "%.*s", (int)n, text + at);    /* a longer line is cut, as fgets would */
        if (hosts_line(line, is_wanted, &w)) return 1;
        at += n + 1;
    }
    return 0;
}
