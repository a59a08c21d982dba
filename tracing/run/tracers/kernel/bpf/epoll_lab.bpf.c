// SPDX-License-Identifier: GPL-2.0
/* epoll-lab's kernel tracer: the story's syscalls of one program (its
 * threads and the children it forks), io_uring submissions, signals, exits
 * and getaddrinfo, as binary records in a BPF ring buffer (epoll_lab.h: a
 * fixed 96-byte head, then at most 160 bytes of the call's data). Nothing is
 * formatted here: loader.c copies the ring to a file and
 * tracing/run/tracers/kernel/lines.py writes strace lines from it after the run.
 *
 * A task is followed when it has an entry (`followed`): made at the
 * followed pid's execve (or its first syscall, when attached to a running
 * process), and at fork for the children and threads of a followed task.
 * Every other task's syscall is turned away by one comparison. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "epoll_lab.h"

char LICENSE[] SEC("license") = "GPL";

/* x86_64 syscall numbers of the calls whose buffers are copied. */
enum {
	NR_read = 0, NR_write = 1, NR_open = 2, NR_poll = 7, NR_pread64 = 17, NR_readv = 19,
	NR_writev = 20, NR_select = 23, NR_socket = 41, NR_connect = 42, NR_accept = 43,
	NR_sendto = 44, NR_recvfrom = 45, NR_sendmsg = 46, NR_recvmsg = 47, NR_bind = 49,
	NR_listen = 50, NR_socketpair = 53, NR_execve = 59, NR_exit_group = 231,
	NR_epoll_wait = 232, NR_epoll_ctl = 233, NR_openat = 257, NR_pselect6 = 270,
	NR_ppoll = 271, NR_epoll_pwait = 281, NR_timerfd_settime = 286, NR_accept4 = 288,
	NR_pipe2 = 293, NR_clone3 = 435, NR_epoll_pwait2 = 441,
};
#define NR_MAX 512
#define PF_IO_WORKER 0x00000010 /* an io-wq worker (iou-wrk): made by the kernel, no clone */
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define EPOLL_EVENT 12 /* sizeof(struct epoll_event) on x86_64: packed */
#define SOCK_SIZE ((int)sizeof(struct el_sock))

/* Set by the loader before load. */
const volatile __u32 follow_tgid = 0;   /* the process to follow */
const volatile __u8 follow_exec = 1;    /* from its next execve (a started command), or at once (--pid) */
const volatile __u64 wake_at = 1 << 20; /* wake the loader when this much is unread */
const volatile __u8 story[NR_MAX] = {}; /* the syscalls recorded */

struct task {
	__u32 tid;       /* whose entry this is (a slot holds one thread's) */
	__u32 pad;
	__u64 t0;        /* entry time of the call in flight; 0: none */
	__u64 args[6];
	__u32 nr;
	__u32 pre_n;
	__u8 pre[EL_CAP]; /* what the call's entry shows and its exit cannot: execve's path, select's sets */
	__u64 gai_t0;
	__u32 gai_n;
	__u8 gai[EL_CAP]; /* getaddrinfo's node name */
};

struct lost {
	__u64 count; /* not yet reported in an EL_LOST record */
	__u64 first, last, total;
	__u32 tid, tgid;
};

/* A followed thread's entry: in the slot its tid picks (an array look-up
 * costs a few instructions, it is on every syscall of the followed
 * program), or, when another thread holds that slot, in task storage. */
#define SLOTS 8192
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, struct task);
} slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct task);
} tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 26); /* the loader sets the size (--ring-kb) */
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lost);
} losses SEC(".maps");

/* Where a call's record is put together before it goes into the ring with
 * only the data bytes it holds (a read of 40 bytes takes 136, not 256). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct el_rec);
} stage SEC(".maps");

/* Room to gather an iovec's pieces at any offset before one fixed-size copy. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[2 * EL_CAP]);
} scratch SEC(".maps");

__u64 untraceable = 0; /* tasks that could get no entry (no memory) */
__u32 children = 0;    /* processes followed besides follow_tgid: forked by a followed task */
__u32 shared = 0;      /* followed threads whose slot another holds: they are in `tasks` */

/* The calling task's entry, if it is followed. Every task on the machine
 * passes here twice a syscall: while only follow_tgid is followed, the
 * others are turned away by one comparison, before any look-up. */
static __always_inline struct task *followed(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, slot = tid & (SLOTS - 1);
	struct task *t;

	if (id >> 32 != follow_tgid && !children)
		return NULL;
	t = bpf_map_lookup_elem(&slots, &slot);
	if (t && t->tid == tid)
		return t;
	if (!shared)
		return NULL;
	return bpf_task_storage_get(&tasks, bpf_get_current_task_btf(), 0, 0);
}

/* Follow `task` from now on: its slot if free, else task storage. */
static __always_inline struct task *follow(struct task_struct *task, __u32 tid)
{
	__u32 slot = tid & (SLOTS - 1);
	struct task *t = bpf_map_lookup_elem(&slots, &slot);

	if (t && (t->tid == tid || __sync_val_compare_and_swap(&t->tid, 0, tid) == 0)) {
		t->t0 = 0;
		t->gai_t0 = 0;
		return t;
	}
	__sync_fetch_and_add(&shared, 1);
	t = bpf_task_storage_get(&tasks, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		__sync_fetch_and_add(&untraceable, 1);
	else
		t->tid = tid;
	return t;
}

/* A followed thread ends: its slot is free for the next one. */
static __always_inline void unfollow(__u32 tid)
{
	__u32 slot = tid & (SLOTS - 1);
	struct task *t = bpf_map_lookup_elem(&slots, &slot);

	if (t && t->tid == tid)
		t->tid = 0;
}

/* The loader takes what is in the ring every few ms; it is woken early only
 * when the ring is filling up (a wakeup per record would cost more than the
 * record). */
static __always_inline __u64 wake_flag(void)
{
	return bpf_ringbuf_query(&ring, BPF_RB_AVAIL_DATA) >= wake_at ? BPF_RB_FORCE_WAKEUP
								      : BPF_RB_NO_WAKEUP;
}

static __always_inline void head(struct el_head *h, __u16 kind, __u16 blob, __u32 nr, __u64 t0)
{
	__u64 id = bpf_get_current_pid_tgid();

	h->kind = kind;
	h->blob = blob;
	h->nr = nr;
	h->tgid = id >> 32;
	h->tid = (__u32)id;
	h->t0 = t0;
	h->dur = 0;
	h->ret = 0;
	for (int i = 0; i < 6; i++)
		h->args[i] = 0;
	h->n = 0;
	h->more = 0;
}

/* Calls the ring had no room for are counted here, per CPU, and reported
 * in an EL_LOST record before the next record this CPU writes. */
static __always_inline void report_losses(void)
{
	__u32 zero = 0;
	struct lost *l = bpf_map_lookup_elem(&losses, &zero);
	struct el_head *h;

	if (!l || !l->count)
		return;
	h = bpf_ringbuf_reserve(&ring, sizeof(*h), 0);
	if (!h)
		return;
	head(h, EL_LOST, 0, bpf_get_smp_processor_id(), l->first);
	h->tid = l->tid;
	h->tgid = l->tgid;
	h->dur = l->last - l->first;
	h->ret = l->count;
	l->count = 0;
	bpf_ringbuf_submit(h, wake_flag());
}

static __always_inline void count_loss(__u64 now)
{
	__u32 zero = 0;
	struct lost *l = bpf_map_lookup_elem(&losses, &zero);
	__u64 id = bpf_get_current_pid_tgid();

	if (!l)
		return;
	if (!l->count) {
		l->first = now;
		l->tid = (__u32)id;
		l->tgid = id >> 32;
	}
	l->count++;
	l->total++;
	l->last = now;
}

/* Room in the ring for a record of `size` bytes (a constant: always inlined),
 * after any losses this CPU has yet to report; a loss counted if none. */
static __always_inline void *reserve(__u64 size, __u64 now)
{
	void *p;

	report_losses();
	p = bpf_ringbuf_reserve(&ring, size, 0);
	if (!p)
		count_loss(now);
	return p;
}

/* An io-wq worker of a followed process: the kernel makes it without a
 * clone a fork tracepoint would see, so it has no entry; its io_uring
 * records are the process's all the same. */
static __always_inline int io_worker_of_followed(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, slot = tgid & (SLOTS - 1);
	struct task *t;

	if (!(BPF_CORE_READ(task, flags) & PF_IO_WORKER))
		return 0;
	if (tgid == follow_tgid)
		return 1;
	t = bpf_map_lookup_elem(&slots, &slot);
	return t && t->tid == tgid;
}

/* A record of a moment (a fork, an exit, a signal, an io_uring request) of a
 * followed task (`workers`: or of its process's io-wq workers), head filled
 * in; NULL for another task, or no room. */
static __always_inline struct el_head *point(__u16 kind, __u32 nr, int workers)
{
	__u64 now = bpf_ktime_get_ns();
	struct el_head *h;

	if (!followed() && !(workers && io_worker_of_followed()))
		return NULL;
	h = reserve(sizeof(struct el_head), now);
	if (h)
		head(h, kind, 0, nr, now);
	return h;
}

static __always_inline __u32 clamp(__u64 n, __u32 cap)
{
	return n > cap ? cap : (__u32)n;
}

/* n bytes of user memory at the start of dst (EL_CAP long); how many were read. */
static __always_inline __u32 copy_user(void *dst, __u64 n, __u64 src)
{
	__u32 len = clamp(n, EL_CAP);

	if (!src || !len)
		return 0;
	if (bpf_probe_read_user(dst, len, (void *)src))
		return 0;
	return len;
}

static __always_inline struct file *fd_file(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;

	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

static __always_inline __u64 ino_of(struct file *f)
{
	return BPF_CORE_READ(f, f_inode, i_ino);
}

/* What fd is, as strace -yy would name it: its inode and, for a socket,
 * family, type and the two addresses. */
static __always_inline void sock_info(struct el_sock *s, int fd)
{
	struct file *f = fd_file(fd);
	struct socket *sock;
	struct sock *sk, *peer;

	__builtin_memset(s, 0, sizeof(*s));
	if (!f)
		return;
	s->ino = ino_of(f);
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return;
	sock = BPF_CORE_READ(f, private_data);
	sk = BPF_CORE_READ(sock, sk);
	s->type = BPF_CORE_READ(sock, type);
	s->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (s->family == AF_INET) {
		__u32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 b = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memcpy(s->saddr, &a, 4);
		__builtin_memcpy(s->daddr, &b, 4);
	} else if (s->family == AF_INET6) {
		BPF_CORE_READ_INTO(&s->saddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&s->daddr, sk, __sk_common.skc_v6_daddr);
	} else if (s->family == AF_UNIX) {
		peer = BPF_CORE_READ((struct unix_sock *)sk, peer);
		if (peer)
			s->peer_ino = BPF_CORE_READ(peer, sk_socket, file, f_inode, i_ino);
		return;
	}
	s->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	s->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

/* readv/writev/sendmsg/recvmsg: the first four iovecs' lengths, then their
 * bytes in turn (at most `total`: what a read returned) while there is room.
 * Each user-memory read costs ~150 ns here, so the vector is read in one. */
static __always_inline __u32 copy_iov(struct el_rec *r, __u64 iov, __u64 count, __u64 total)
{
	struct el_iov *v = (void *)r->data;
	struct iovec io[4] = {};
	__u32 zero = 0;
	__u64 off = 0, size = (count > 4 ? 4 : count) * sizeof(io[0]);
	__u8 *buf = bpf_map_lookup_elem(&scratch, &zero);

	__builtin_memset(v, 0, sizeof(*v));
	v->count = count;
	if (!buf || !iov || !size || size > sizeof(io) || bpf_probe_read_user(io, size, (void *)iov))
		return sizeof(*v);
	for (int i = 0; i < 4; i++) {
		__u64 len;

		if (i >= count)
			break;
		v->lens[i] = clamp(io[i].iov_len, 0xffffffff);
		len = io[i].iov_len < total ? io[i].iov_len : total;
		total -= len;
		if (len > EL_CAP - sizeof(*v) - off)
			len = EL_CAP - sizeof(*v) - off;
		/* 64-bit all the way: the verifier must see the bound on the register used */
		if (off < EL_CAP && len > 0 && len <= EL_CAP)
			bpf_probe_read_user(buf + off, len, io[i].iov_base);
		off += len;
	}
	bpf_probe_read_kernel(r->data + sizeof(*v), EL_CAP - sizeof(*v), buf);
	return sizeof(*v) + off;
}

static __always_inline __u32 copy_msg(struct el_rec *r, __u64 msg, __u64 total)
{
	struct user_msghdr m = {};
	struct el_iov *v = (void *)r->data;
	__u32 n;

	if (!msg || bpf_probe_read_user(&m, sizeof(m), (void *)msg))
		return 0;
	n = copy_iov(r, (__u64)m.msg_iov, m.msg_iovlen, total);
	v->namelen = m.msg_namelen;
	v->controllen = clamp(m.msg_controllen, 0xffffffff);
	v->flags = m.msg_flags;
	return n;
}

/* The select sets and timeout at entry (the kernel overwrites them). */
static __always_inline void save_sets(struct task *t, __u64 *a)
{
	for (int i = 0; i < 3; i++)
		if (a[1 + i])
			bpf_probe_read_user(t->pre + i * EL_SETS, EL_SETS, (void *)a[1 + i]);
	if (a[4])
		bpf_probe_read_user(t->pre + 3 * EL_SETS, 16, (void *)a[4]);
	t->pre_n = 4 * EL_SETS;
}

/* What the call's buffers held: the layout per call is in kernel_records.py. */
static __always_inline __u32 fill(struct el_rec *r, struct task *t, __u32 nr, long ret)
{
	__u64 *a = t->args;
	__u64 got = ret > 0 ? ret : 0;
	__u32 n = 0;

	switch (nr) {
	case NR_read: case NR_pread64: case NR_recvfrom:
		return copy_user(r->data, got, a[1]);
	case NR_write: case NR_sendto:
		return copy_user(r->data, a[2], a[1]);
	case NR_readv:
		return copy_iov(r, a[1], a[2], got);
	case NR_writev:
		return copy_iov(r, a[1], a[2], ~0ULL);
	case NR_recvmsg:
		return copy_msg(r, a[1], got);
	case NR_sendmsg:
		return copy_msg(r, a[1], ~0ULL);
	case NR_open: case NR_openat: {
		long len = bpf_probe_read_user_str(r->data, EL_CAP, (void *)a[nr == NR_open ? 0 : 1]);
		return len > 0 ? len : 0;
	}
	case NR_execve:
		bpf_probe_read_kernel(r->data, EL_CAP, t->pre);
		return clamp(t->pre_n, EL_CAP);
	case NR_epoll_wait: case NR_epoll_pwait: case NR_epoll_pwait2:
		return copy_user(r->data, got * EPOLL_EVENT, a[1]);
	case NR_epoll_ctl:
		return copy_user(r->data, a[3] ? EPOLL_EVENT : 0, a[3]);
	case NR_poll:
		return copy_user(r->data, a[1] * 8, a[0]);
	case NR_ppoll:
		/* the timeout at entry, what is left of it, the pollfds */
		bpf_probe_read_kernel(r->data, 16, t->pre);
		if (a[2])
			bpf_probe_read_user(r->data + 16, 16, (void *)a[2]);
		if (a[0] && a[1])
			bpf_probe_read_user(r->data + 32, clamp(a[1] * 8, EL_CAP - 32), (void *)a[0]);
		return 32 + clamp(a[1] * 8, EL_CAP - 32);
	case NR_select: case NR_pselect6:
		/* sets and timeout at entry, then as the kernel left them */
		bpf_probe_read_kernel(r->data, 4 * EL_SETS, t->pre);
		for (int i = 0; i < 3; i++)
			if (a[1 + i])
				bpf_probe_read_user(r->data + (4 + i) * EL_SETS, EL_SETS, (void *)a[1 + i]);
		if (a[4])
			bpf_probe_read_user(r->data + 7 * EL_SETS, 16, (void *)a[4]);
		return 8 * EL_SETS;
	case NR_socket: case NR_accept: case NR_accept4:
		if (ret < 0)
			return 0;
		sock_info((void *)r->data, ret);
		n = SOCK_SIZE;
		if (nr != NR_socket && a[1] && a[2]) {
			__u32 len = 0;

			bpf_probe_read_user(&len, sizeof(len), (void *)a[2]);
			len = clamp(len, EL_CAP - SOCK_SIZE);
			if (len && !bpf_probe_read_user(r->data + SOCK_SIZE, len, (void *)a[1]))
				n += len;
		}
		return n;
	case NR_bind: case NR_connect: case NR_listen:
		sock_info((void *)r->data, a[0]);
		n = SOCK_SIZE;
		if (nr != NR_listen && a[1]) {
			__u32 len = clamp(a[2], EL_CAP - SOCK_SIZE);

			if (len && !bpf_probe_read_user(r->data + SOCK_SIZE, len, (void *)a[1]))
				n += len;
		}
		return n;
	case NR_socketpair: case NR_pipe2: {
		int fds[2] = {-1, -1};

		if (ret < 0)
			return 0;
		bpf_probe_read_user(fds, sizeof(fds), (void *)a[nr == NR_pipe2 ? 0 : 3]);
		__builtin_memcpy(r->data, fds, sizeof(fds));
		sock_info((void *)(r->data + 8), fds[0]);
		sock_info((void *)(r->data + 8 + SOCK_SIZE), fds[1]);
		return 8 + 2 * SOCK_SIZE;
	}
	case NR_timerfd_settime:
		return copy_user(r->data, 32, a[2]);
	case NR_clone3:
		return copy_user(r->data, 8, a[0]);
	}
	return 0;
}

/* Whether the call's record carries data: a call that failed has nothing to
 * show of what it would have read or made (a read's EAGAIN costs a head). */
static __always_inline int has_blob(__u32 nr, long ret)
{
	switch (nr) {
	case NR_read: case NR_pread64: case NR_recvfrom: case NR_readv: case NR_recvmsg:
	case NR_accept: case NR_accept4: case NR_socket: case NR_socketpair: case NR_pipe2:
	case NR_epoll_wait: case NR_epoll_pwait: case NR_epoll_pwait2:
		return ret >= 0;
	case NR_write: case NR_open: case NR_poll: case NR_writev: case NR_select:
	case NR_connect: case NR_sendto: case NR_sendmsg: case NR_bind: case NR_listen:
	case NR_execve: case NR_epoll_ctl: case NR_openat: case NR_pselect6: case NR_ppoll:
	case NR_timerfd_settime: case NR_clone3:
		return 1;
	}
	return 0;
}

/* A record put together in `stage` goes into the ring with only the data
 * bytes it holds (r->h.n of them, rounded up to 8). */
static __always_inline void output(struct el_rec *r, __u64 now)
{
	__u64 size = ((__u64)r->h.n + 7) & ~7ULL;

	/* the verifier must see the bound on the very register passed on */
	asm volatile("" : "+r"(size));
	if (size > EL_CAP)
		size = EL_CAP;
	r->h.blob = size;
	report_losses();
	if (bpf_ringbuf_output(&ring, r, sizeof(r->h) + size, wake_flag()))
		count_loss(now);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	struct task *t = followed();
	__u32 nr = id;

	if (!t) {
		if (!follow_tgid || bpf_get_current_pid_tgid() >> 32 != follow_tgid)
			return 0;
		if (follow_exec && id != NR_execve)
			return 0;
		t = follow(bpf_get_current_task_btf(), (__u32)bpf_get_current_pid_tgid());
		if (!t)
			return 0;
	}
	if (nr >= NR_MAX || !story[nr & (NR_MAX - 1)])
		return 0;
	t->t0 = bpf_ktime_get_ns();
	t->nr = nr;
	/* tp_btf: regs is a kernel pointer the verifier knows, read directly. */
	t->args[0] = regs->di;
	t->args[1] = regs->si;
	t->args[2] = regs->dx;
	t->args[3] = regs->r10;
	t->args[4] = regs->r8;
	t->args[5] = regs->r9;
	if (nr == NR_execve) {
		long len = bpf_probe_read_user_str(t->pre, EL_CAP, (void *)t->args[0]);

		t->pre_n = len > 0 ? len : 0;
	} else if (nr == NR_select || nr == NR_pselect6) {
		save_sets(t, t->args);
	} else if (nr == NR_ppoll) {
		__builtin_memset(t->pre, 0, 16);
		if (t->args[2])
			bpf_probe_read_user(t->pre, 16, (void *)t->args[2]);
	} else if (nr == NR_exit_group) {
		struct el_head *h = reserve(sizeof(struct el_head), t->t0);

		t->t0 = 0;
		if (!h)
			return 0;
		head(h, EL_NORETURN, 0, nr, bpf_ktime_get_ns());
		h->args[0] = t->args[0];
		bpf_ringbuf_submit(h, wake_flag());
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	struct task *t = followed();
	__u64 now, t0;
	__u32 nr;

	if (!t || !t->t0)
		return 0;
	now = bpf_ktime_get_ns();
	t0 = t->t0;
	nr = t->nr;
	t->t0 = 0;
	if (has_blob(nr, ret)) {
		__u32 zero = 0;
		struct el_rec *r = bpf_map_lookup_elem(&stage, &zero);

		if (!r)
			return 0;
		head(&r->h, EL_CALL, 0, nr, t0);
		r->h.dur = now - t0;
		r->h.ret = ret;
		for (int i = 0; i < 6; i++)
			r->h.args[i] = t->args[i];
		r->h.n = fill(r, t, nr, ret);
		output(r, now);
	} else {
		struct el_head *h = reserve(sizeof(struct el_head), now);

		if (!h)
			return 0;
		head(h, EL_CALL, 0, nr, t0);
		h->dur = now - t0;
		h->ret = ret;
		for (int i = 0; i < 6; i++)
			h->args[i] = t->args[i];
		bpf_ringbuf_submit(h, wake_flag());
	}
	return 0;
}

/* The floor: empty programs on the same tracepoints, for `make bench`. */
SEC("tp_btf/sys_enter")
int BPF_PROG(floor_enter)
{
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(floor_exit)
{
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(fork, struct task_struct *parent, struct task_struct *child)
{
	struct el_head *h;

	if (!followed() || !follow(child, BPF_CORE_READ(child, pid)))
		return 0;
	if (BPF_CORE_READ(child, tgid) != BPF_CORE_READ(parent, tgid))
		__sync_fetch_and_add(&children, 1);
	h = point(EL_FORK, 0, 0);
	if (!h)
		return 0;
	h->args[0] = BPF_CORE_READ(child, pid);
	h->args[1] = BPF_CORE_READ(child, tgid);
	bpf_ringbuf_submit(h, wake_flag());
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(task_exit, struct task_struct *p)
{
	struct el_head *h = point(EL_EXIT, 0, 0);

	if (!h)
		return 0;
	h->ret = BPF_CORE_READ(p, exit_code);
	bpf_ringbuf_submit(h, wake_flag());
	unfollow(BPF_CORE_READ(p, pid));
	return 0;
}

SEC("tracepoint/signal/signal_deliver")
int signal_deliver(struct trace_event_raw_signal_deliver *ctx)
{
	struct el_head *h = point(EL_SIGNAL, ctx->sig, 0);

	if (!h)
		return 0;
	h->args[0] = ctx->code;
	bpf_ringbuf_submit(h, wake_flag());
	return 0;
}

/* What a submission asks for, from the request the kernel prepared from the
 * sqe (by submit time the opcode's prep has run): its fd, length, offset or
 * flags, and for an open its path, for a send or write the first bytes.
 * The layout per opcode is in records.py (SUB_FIELDS). */
static __always_inline __u32 sub_op(struct el_rec *r, struct io_kiocb *req, __u8 op)
{
	__u64 *a = r->h.args;

	a[1] = (__u64)-1;
	a[5] = BPF_CORE_READ(req, flags) & 0xff; /* IOSQE_*: IOSQE_ASYNC forces io-wq */
	switch (op) {
	case IORING_OP_READ: case IORING_OP_WRITE: case IORING_OP_READV: case IORING_OP_WRITEV: {
		struct io_rw *rw = (void *)req;

		a[1] = BPF_CORE_READ(req, cqe.fd);
		a[2] = BPF_CORE_READ(rw, len);
		a[3] = BPF_CORE_READ(rw, kiocb.ki_pos);
		a[4] = BPF_CORE_READ(rw, addr);
		return op == IORING_OP_WRITE ? copy_user(r->data, a[2], a[4]) : 0;
	}
	case IORING_OP_SEND: case IORING_OP_RECV: case IORING_OP_SENDMSG: case IORING_OP_RECVMSG: {
		struct io_sr_msg *sr = (void *)req;

		a[1] = BPF_CORE_READ(req, cqe.fd);
		a[2] = (__u32)BPF_CORE_READ(sr, len);
		a[3] = BPF_CORE_READ(sr, msg_flags);
		a[4] = (__u64)BPF_CORE_READ(sr, buf);
		return op == IORING_OP_SEND ? copy_user(r->data, a[2], a[4]) : 0;
	}
	case IORING_OP_ACCEPT:
		a[1] = BPF_CORE_READ(req, cqe.fd);
		a[3] = BPF_CORE_READ((struct io_accept *)req, flags);
		return 0;
	case IORING_OP_POLL_ADD:
		a[1] = BPF_CORE_READ(req, cqe.fd);
		a[3] = BPF_CORE_READ((struct io_poll *)req, events);
		return 0;
	case IORING_OP_SHUTDOWN:
		a[1] = BPF_CORE_READ(req, cqe.fd);
		a[3] = BPF_CORE_READ((struct io_shutdown *)req, how);
		return 0;
	case IORING_OP_CONNECT:
		a[1] = BPF_CORE_READ(req, cqe.fd);
		return 0;
	case IORING_OP_CLOSE:
		a[1] = BPF_CORE_READ((struct io_close *)req, fd);
		return 0;
	case IORING_OP_OPENAT: {
		struct io_open *o = (void *)req;
		const char *name = BPF_CORE_READ(o, filename, name);
		long len;

		a[1] = BPF_CORE_READ(o, dfd);
		a[3] = BPF_CORE_READ(o, how.flags);
		a[4] = BPF_CORE_READ(o, how.mode);
		len = name ? bpf_probe_read_kernel_str(r->data, EL_CAP, name) : 0;
		return len > 0 ? len : 0;
	}
	case IORING_OP_TIMEOUT: {
		struct io_timeout_data *d = BPF_CORE_READ(req, async_data);

		a[2] = BPF_CORE_READ((struct io_timeout *)req, off);
		if (d) {
			a[3] = BPF_CORE_READ(d, ts.tv_sec);
			a[4] = BPF_CORE_READ(d, ts.tv_nsec);
		}
		return 0;
	}
	case IORING_OP_ASYNC_CANCEL: {
		struct io_cancel *x = (void *)req;

		a[1] = BPF_CORE_READ(x, fd);
		a[3] = BPF_CORE_READ(x, addr);
		a[4] = BPF_CORE_READ(x, flags);
		return 0;
	}
	}
	return 0;
}

/* Every io_uring submission of a followed thread, decoded. libuv's
 * IORING_OP_EPOLL_CTL keeps its own layout: the kernel's struct io_epoll
 * beside the user_data libuv packed. */
SEC("tracepoint/io_uring/io_uring_submit_req")
int uring_submit(struct trace_event_raw_io_uring_submit_req *ctx)
{
	struct io_kiocb *req = ctx->req;
	struct io_epoll *ep = ctx->req;
	__u8 op = ctx->opcode;
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	struct el_rec *r;

	if (!followed() && !io_worker_of_followed())
		return 0;
	r = bpf_map_lookup_elem(&stage, &zero);
	if (!r)
		return 0;
	head(&r->h, EL_URING_SUB, 0, op, now);
	r->h.args[0] = ctx->user_data;
	if (op == IORING_OP_EPOLL_CTL) {
		r->h.args[1] = BPF_CORE_READ(ep, epfd);
		r->h.args[2] = BPF_CORE_READ(ep, fd);
		r->h.args[3] = BPF_CORE_READ(ep, op);
		r->h.args[4] = BPF_CORE_READ(ep, event.events);
		r->h.args[5] = BPF_CORE_READ(ep, event.data);
		r->h.more = EL_SUB_EPOLL;
	} else {
		r->h.n = sub_op(r, req, op);
		r->h.more = EL_SUB_OP;
	}
	output(r, now);
	return 0;
}

/* What a completion brought: an accept's new fd (it is in the process's fd
 * table by now), the first bytes a recv or read put in the buffer. */
static __always_inline __u32 done_data(struct el_rec *r, struct io_kiocb *req, __u8 op, int res)
{
	if (res < 0)
		return 0;
	switch (op) {
	case IORING_OP_ACCEPT:
		sock_info((void *)r->data, res);
		return SOCK_SIZE;
	case IORING_OP_RECV:
		return copy_user(r->data, res, (__u64)BPF_CORE_READ((struct io_sr_msg *)req, buf));
	case IORING_OP_READ:
		return copy_user(r->data, res, BPF_CORE_READ((struct io_rw *)req, addr));
	}
	return 0;
}

/* A completion, on the thread that posted it: the submitter (inline, or in
 * its task work) or an io-wq worker that ran the request. */
SEC("tracepoint/io_uring/io_uring_complete")
int uring_complete(struct trace_event_raw_io_uring_complete *ctx)
{
	struct io_kiocb *req = ctx->req;
	__u64 now = bpf_ktime_get_ns();
	__u32 zero = 0;
	struct el_rec *r;
	int worker = 0;
	__u8 op;

	if (!followed()) {
		if (!io_worker_of_followed())
			return 0;
		worker = 1;
	}
	r = bpf_map_lookup_elem(&stage, &zero);
	if (!r)
		return 0;
	op = req ? BPF_CORE_READ(req, opcode) : 0xff;
	head(&r->h, EL_URING_DONE, 0, op, now);
	r->h.args[0] = ctx->user_data;
	r->h.args[1] = ctx->cflags;
	r->h.args[2] = worker;
	r->h.ret = ctx->res;
	r->h.more = EL_DONE_OP;
	if (worker)
		bpf_get_current_comm(&r->h.args[4], 16);
	if (req)
		r->h.n = done_data(r, req, op, ctx->res);
	output(r, now);
	return 0;
}

/* The kernel could not complete a request without blocking and hands it to
 * io-wq, its own thread pool (on the submitter's thread). */
SEC("tracepoint/io_uring/io_uring_queue_async_work")
int uring_async(struct trace_event_raw_io_uring_queue_async_work *ctx)
{
	struct el_head *h = point(EL_URING_ASYNC, ctx->opcode, 1);

	if (!h)
		return 0;
	h->args[0] = ctx->user_data;
	h->args[1] = ctx->rw;
	bpf_ringbuf_submit(h, wake_flag());
	return 0;
}

/* getaddrinfo in the libc the program maps (the loader attaches these). */
SEC("uprobe")
int BPF_KPROBE(gai_enter, const char *node)
{
	struct task *t = followed();
	long len;

	if (!t)
		return 0;
	t->gai_t0 = bpf_ktime_get_ns();
	len = node ? bpf_probe_read_user_str(t->gai, EL_CAP, node) : 0;
	t->gai_n = len > 0 ? len : 0;
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(gai_exit, int ret)
{
	struct task *t = followed();
	struct el_rec *r;
	__u64 now;

	if (!t || !t->gai_t0)
		return 0;
	now = bpf_ktime_get_ns();
	r = reserve(sizeof(struct el_rec), now);
	if (!r) {
		t->gai_t0 = 0;
		return 0;
	}
	head(&r->h, EL_GAI, EL_CAP, 0, t->gai_t0);
	r->h.dur = now - t->gai_t0;
	r->h.ret = ret;
	bpf_probe_read_kernel(r->data, EL_CAP, t->gai);
	r->h.n = clamp(t->gai_n, EL_CAP);
	t->gai_t0 = 0;
	bpf_ringbuf_submit(r, wake_flag());
	return 0;
}
