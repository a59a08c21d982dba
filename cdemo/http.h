/* http.h: read one HTTP/1.x request head (RFC 9112), and nothing else.
 *
 * No sockets here: the loop hands over the bytes it has buffered and learns
 * whether they hold a whole request, need more, or deserve an error status.
 */
#ifndef HTTP_H
#define HTTP_H

#include <stddef.h>

#define HTTP_HEAD_MAX 8192      /* request line + fields; more is a 431 */
#define HTTP_TARGET_MAX 2048    /* longer is a 414 */

enum { HTTP_NEED_MORE = 0, HTTP_DONE = 200 };

struct http_request {
    char method[16];
    char target[HTTP_TARGET_MAX];   /* path and query, as the client sent it */
    int head;                       /* HEAD: answer with headers only */
    int keep_alive;                 /* RFC 9112 section 9.3 */
    size_t length;                  /* bytes of the head, final CRLF CRLF included */
};

/* HTTP_NEED_MORE, HTTP_DONE (req filled in), or an error status (400, 413,
 * 414, 431, 501, 505) with *why saying what was wrong. */
int http_parse(const char *buf, size_t len, struct http_request *req, const char **why);

#endif
