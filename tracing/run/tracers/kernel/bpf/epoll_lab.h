/* The records the kernel tracer writes: shared by epoll_lab.bpf.c (which
 * fills them), loader.c (which only copies them to a file) and
 * tracing/run/tracers/kernel/records.py (which reads them; keep the three in step).
 *
 * A record is a fixed 96-byte head, followed by head.blob bytes of data (a
 * multiple of 8, at most EL_CAP; head.n of them valid): a call with no
 * buffer costs no more than the head, a 40-byte read 40 more. All fields
 * are little-endian and naturally aligned. */
#ifndef EPOLL_LAB_H
#define EPOLL_LAB_H

#define EL_CAP 160   /* bytes kept of a buffer, path or struct: strace -s 128 and then some */
#define EL_SETS 16   /* bytes kept of each select fd_set: fds 0 to 127 */

enum el_kind {
	EL_CALL = 1,      /* a story syscall: entry and exit in one record */
	EL_NORETURN = 2,  /* exit_group, at its entry: it never returns */
	EL_URING_SUB = 3, /* io_uring submission; nr the opcode; layout by `more` (below) */
	EL_URING_DONE = 4,/* io_uring completion; nr the opcode; layout by `more` (below) */
	EL_EXIT = 5,      /* a thread exits; ret the exit code */
	EL_SIGNAL = 6,    /* a signal is delivered; nr the signal, args[0] its si_code */
	EL_GAI = 7,       /* getaddrinfo returned; data the node name */
	EL_FORK = 8,      /* a task is made; args[0] its tid, args[1] its tgid, args[2] clone flags known */
	EL_LOST = 9,      /* ret calls lost on CPU nr between t0 and t0 + dur (the ring was full) */
	EL_STATS = 10,    /* written last, by the loader; args: records, lost, untraceable tasks */
	EL_URING_ASYNC = 11, /* the kernel hands a request to io-wq; nr the opcode, args[0] user_data */
};

/* io_uring records (`more` says which layout; 0: only args[0], the user_data):
 *   EL_URING_SUB, more EL_SUB_EPOLL: args user_data, epfd, fd, op, events, data
 *     (IORING_OP_EPOLL_CTL as the kernel prepared it, struct io_epoll);
 *   EL_URING_SUB, more EL_SUB_OP: args user_data, fd, len, a, b, sqe flags; what
 *     a and b are, and what data holds (a path, the bytes sent), depends on the
 *     opcode: tracing/run/tracers/kernel/records.py (SUB_FIELDS) says it;
 *   EL_URING_DONE, more EL_DONE_OP: args user_data, cflags, 1 if an io-wq worker
 *     posted it, -, then its comm (16 bytes in args[4..5]); data: an accept's new
 *     fd (struct el_sock), or the bytes a recv or read brought. */
#define EL_SUB_EPOLL 1
#define EL_SUB_OP 2
#define EL_DONE_OP 2

struct el_head {
	unsigned short kind;
	unsigned short blob; /* data bytes that follow this head: 0 to EL_CAP, a multiple of 8 */
	unsigned int nr;     /* syscall number, io_uring opcode, signal, CPU */
	unsigned int tgid;
	unsigned int tid;
	unsigned long long t0;  /* ns, CLOCK_MONOTONIC */
	unsigned long long dur; /* ns */
	long long ret;
	unsigned long long args[6];
	unsigned int n;         /* data bytes that are valid */
	unsigned int more;      /* per-call detail (see below) */
};

struct el_rec {
	struct el_head h;
	unsigned char data[EL_CAP];
};

/* What a socket or pipe fd is, read from the kernel when a call makes or
 * names it (socket, accept, bind, listen, connect, socketpair, pipe2): the
 * -yy decoration strace would print. */
struct el_sock {
	unsigned long long ino;
	unsigned long long peer_ino; /* a UNIX socket's peer */
	unsigned short family;       /* 0: not a socket (a pipe) */
	unsigned short type;
	unsigned short sport;        /* host order */
	unsigned short dport;        /* host order */
	unsigned char saddr[16];
	unsigned char daddr[16];
};

/* readv, writev (iovecs), sendmsg, recvmsg (msghdr): the vector's first
 * four lengths, then the bytes of each in turn until EL_CAP is full. */
struct el_iov {
	unsigned int count;       /* iovcnt, msg_iovlen */
	unsigned int lens[4];
	unsigned int namelen;
	unsigned int controllen;
	unsigned int flags;       /* msg_flags */
};

#endif
