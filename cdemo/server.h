/* server.h: the set-up both C servers share: options, the listening
 * socket, the clock. */
#ifndef SERVER_H
#define SERVER_H

#define IDLE_MS 10000           /* default: keep-alive connection with nothing to say */
#define HEADER_MS 5000          /* default: from accept, or a request's first byte, to its whole head */

struct options {
    const char *bind, *data;
    int port, pool;
    long long idle_ms, header_ms;
};

/* Fill o from argv. Returns -1 to go on, else the exit code (--help: 0).
 * pool_help: what --pool does in this server (NULL: it has none). */
int options_parse(int argc, char **argv, struct options *o, const char *about, const char *pool_help);

/* A listening TCP socket on addr:port, non-blocking (the EMFILE shed
 * accepts from it directly); exits with a message if it cannot. */
int listen_on(const char *addr, int port);

long long now_ms(void);
void die(const char *what);

#endif
