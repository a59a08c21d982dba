/* http.c: parse one HTTP/1.x request head, strictly, as RFC 9112 says.
 *
 * Strict on purpose. Two parsers that disagree about where a request ends
 * are how request smuggling happens, so where the RFC lets a recipient
 * either repair or reject, this one rejects (400) and says why. Every such
 * choice below names its section. The server takes no request bodies.
 */
#define _GNU_SOURCE
#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 section 5.6.2: the characters of a method or a field name. */
static int is_tchar(unsigned char ch) {
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static size_t span_tchar(const char *p, const char *end) {
    const char *s = p;
    while (s < end && is_tchar((unsigned char)*s)) s++;
    return (size_t)(s - p);
}

/* Case-insensitive compare of [p, p+n) with a NUL-terminated name. */
static int is_name(const char *p, size_t n, const char *name) {
    return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

/* Length of the head up to and including CRLF CRLF; 0 if not there yet;
 * -1 (with *why) on a byte no valid head contains. */
static long head_length(const char *p, size_t len, const char **why) {
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\0') {
            *why = "a NUL byte in the request head";
            return -1;
        }
        /* Section 2.2 lets a recipient take a bare LF as a line end; we do
         * not: a proxy that does not would see a different request. */
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
            *why = "a bare LF: lines end with CRLF (RFC 9112 section 2.2)";
            return -1;
        }
        /* Section 2.2: a bare CR is invalid (or replaced by SP); invalid. */
        if (p[i] == '\r' && i + 1 < len && p[i + 1] != '\n') {
            *why = "a bare CR in the request head (RFC 9112 section 2.2)";
            return -1;
        }
        if (p[i] == '\n' && i >= 3 && p[i - 2] == '\n')  /* the CRs were checked above */
            return (long)i + 1;
    }
    return 0;
}

/* Section 3: request-line = method SP request-target SP HTTP-version.
 * Exactly one SP between parts (we do not take the MAY of splitting on any
 * whitespace). Returns HTTP_DONE or an error status. */
static int parse_request_line(const char *p, const char *eol, struct http_request *req,
                              const char **why) {
    size_t n = span_tchar(p, eol);
    if (n == 0 || p + n == eol || p[n] != ' ') {
        *why = "malformed request line: METHOD SP /path SP HTTP/1.1";
        return 400;
    }
    if (n >= sizeof req->method) {      /* section 3: longer than any we know */
        *why = "method not implemented";
        return 501;
    }
    memcpy(req->method, p, n);
    req->method[n] = '\0';
    req->head = strcmp(req->method, "HEAD") == 0;   /* methods are case-sensitive */

    const char *t = p + n + 1, *te = t;
    while (te < eol && *te > ' ' && *te < 0x7f) te++;   /* visible ASCII only */
    if (te == t || te == eol || *te != ' ') {
        *why = "malformed request line: METHOD SP /path SP HTTP/1.1";
        return 400;
    }
    /* Section 3.2.2: a server MUST accept the absolute-form; keep its path. */
    if ((size_t)(te - t) > 7 && (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0)) {
        const char *path = memchr(t + 8, '/', (size_t)(te - t) - 8);
        t = path ? path : te;
    }
    if (t < te && *t != '/') {
        *why = "the request target must be a path such as /file (origin-form)";
        return 400;
    }
    if ((size_t)(te - t) >= sizeof req->target) {
        *why = "the request target is too long";
        return 414;
    }
    int len = snprintf(req->target, sizeof req->target, "%s%.*s", t == te ? "/" : "", (int)(te - t), t);
    if (len < 0) {
        *why = "malformed request target";
        return 400;
    }

    /* Section 2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive. */
    const char *v = te + 1;
    if (eol - v != 8 || strncmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9') {
        *why = "malformed HTTP version: HTTP/1.1 or HTTP/1.0";
        return 400;
    }
    if (v[5] != '1') {
        *why = "only HTTP/1.x is spoken here";
        return 505;
    }
    /* RFC 9110 section 2.5: a higher minor version (HTTP/1.9) is processed
     * as the highest we implement, 1.1. Only 1.0 differs: it closes. */
    req->keep_alive = v[7] != '0';
    return HTTP_DONE;
}

/* The tokens of a Connection field value, e.g. "keep-alive, Upgrade". */
static void read_connection(const char *v, const char *ve, int *close, int *keep) {
    while (v < ve) {
        while (v < ve && (*v == ' ' || *v == '\t' || *v == ',')) v++;
        size_t n = span_tchar(v, ve);
        if (is_name(v, n, "close")) *close = 1;
        if (is_name(v, n, "keep-alive")) *keep = 1;
        v += n ? n : 1;
    }
}

int http_parse(const char *buf, size_t len, struct http_request *req, const char **why) {
    /* Section 2.2: a server SHOULD ignore empty lines before a request. */
    size_t skip = 0;
    while (len - skip >= 2 && buf[skip] == '\r' && buf[skip + 1] == '\n') skip += 2;
    const char *p = buf + skip;
    long hl = head_length(p, len - skip, why);
    if (hl < 0) return 400;
    if (hl == 0) {
        if (len < HTTP_HEAD_MAX) return HTTP_NEED_MORE;
        *why = "request head larger than 8 KiB";
        return 431;
    }
    const char *end = p + hl - 2;       /* at the final CRLF */
    const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
    int status = parse_request_line(p, eol, req, why);
    if (status != HTTP_DONE) return status;

    int http11 = req->keep_alive;     /* the version's default, set above */
    int hosts = 0, close = 0, keep = 0, chunked = 0;
    long long length = -1;
    for (const char *line = eol + 2; line < end; line = eol + 2) {
        eol = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
        /* Section 5.2: obs-fold (a line starting with whitespace) is
         * rejected, the server's choice between reject and unfold. */
        if (*line == ' ' || *line == '\t') {
            *why = "a folded header line (obs-fold, RFC 9112 section 5.2)";
            return 400;
        }
        size_t n = span_tchar(line, eol);
        /* Section 5.1: no whitespace between name and colon: MUST be a 400. */
        if (n == 0 || line + n == eol || line[n] != ':') {
            *why = "malformed header field: Name: value, no space before the colon";
            return 400;
        }
        const char *v = line + n + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        for (const char *c = v; c < ve; c++) {
            if ((unsigned char)*c < ' ' && *c != '\t') {    /* RFC 9110 5.5: no CTLs */
                *why = "a control character in a header value";
                return 400;
            }
        }
        if (is_name(line, n, "host")) {
            hosts++;
            for (const char *c = v; c < ve; c++) {
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%", *c)) {
                    *why = "an invalid Host value";
                    return 400;
                }
            }
        } else if (is_name(line, n, "connection")) {
            read_connection(v, ve, &close, &keep);
        } else if (is_name(line, n, "content-length")) {
            /* Section 6.3: an invalid or a second, different length is an
             * unrecoverable framing error. A list ("5, 5") counts as invalid. */
            long long value = 0;
            if (v == ve || ve - v > 15) value = -2;
            for (const char *c = v; c < ve && value >= 0; c++)
                value = *c >= '0' && *c <= '9' ? value * 10 + (*c - '0') : -2;
            if (value < 0 || (length >= 0 && length != value)) {
                *why = "an invalid Content-Length";
                return 400;
            }
            length = value;
        } else if (is_name(line, n, "transfer-encoding")) {
            chunked = 1;
        }
    }
    /* Section 3.2: an HTTP/1.1 request without exactly one Host is a 400. */
    if (hosts > 1 || (http11 && hosts != 1)) {
        *why = "an HTTP/1.1 request needs exactly one Host header";
        return 400;
    }
    /* Section 6.1 and 6.3: Transfer-Encoding with Content-Length, or in an
     * HTTP/1.0 request, is faulty framing. */
    if (chunked && (length >= 0 || !http11)) {
        *why = "Transfer-Encoding with Content-Length or in HTTP/1.0";
        return 400;
    }
    if (chunked || length > 0) {
        *why = "request bodies are not accepted";
        return 413;
    }
    /* Section 9.3: "close" ends it; 1.1 persists by default; 1.0 only when
     * it asks for keep-alive. */
    req->keep_alive = !close && (http11 || keep);
    req->length = skip + (size_t)hl;
    return HTTP_DONE;
}
