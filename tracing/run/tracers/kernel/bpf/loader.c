/* epoll-lab-ktrace: load epoll_lab.bpf.c, attach it, and copy its records
 * from the ring buffer to a file (or a pipe) until SIGINT or SIGTERM. It
 * only moves bytes: each committed stretch of the ring goes out in one
 * write(), the kernel's 8-byte record headers included, and
 * tracing/run/tracers/kernel/records.py reads them back; kernel_lines.py formats them
 * after the run.
 *
 *   epoll-lab-ktrace --out FILE|- (--exec PID | --pid PID) [--syscalls N,N,...]
 *                    [--libc PATH] [--ring-kb N] [--wake-kb N] [--interval-ms N] [--ready-fd N]
 *   epoll-lab-ktrace --floor [--ready-fd N]      empty programs on the same tracepoints
 *
 * --exec follows PID from its next execve, --pid at once (and its threads);
 * --wake-kb: how much unread data makes the programs wake the loader before
 * its next interval (default WAKE_KB, or a quarter of a smaller ring; 0: never, only the interval);
 * --ready-fd: a byte is written there once every probe is attached.
 *
 * Exit: 0 done, 1 a write failed, 2 bad usage, 3 cannot load or attach. */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "epoll_lab.h"
#include "epoll_lab.skel.h"

#define NR_MAX 512
/* Woken at this much unread data, the loader copies records the programs
 * wrote moments ago, still in the CPU's cache; at a quarter of a 64 MiB ring
 * they had left it, and both sides paid for that (dd: about 50 ns more per
 * traced call in the program and 15 ns more in the loader). */
#define WAKE_KB 256

static volatile sig_atomic_t stopping;
static int out = -1;
static const char *out_path = "-";
static unsigned long long records;

/* The ring as the kernel lays it out: a consumer page we write, then the
 * producer page and the data, mapped twice in a row so that a stretch that
 * wraps around the end is still one piece of memory. */
struct ring {
	int epfd;
	unsigned long mask;
	unsigned long *cons, *prod;
	unsigned char *data;
};

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void die(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("epoll-lab-ktrace: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(code);
}

/* libbpf's own messages only when something fails, and only the last one matters. */
static char last_warning[512];

static int verbose;

static int keep_warning(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (verbose)
		return vfprintf(stderr, fmt, ap);
	if (level != LIBBPF_DEBUG)
		vsnprintf(last_warning, sizeof(last_warning), fmt, ap);
	return 0;
}

static void write_all(const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(out, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die(1, "cannot write %s: %s", out_path, n < 0 ? strerror(errno) : "no progress");
		p += n;
		len -= n;
	}
}

/* A record of the loader's own (losses it reports, its count), framed as the ring frames them. */
static void put_head(struct el_head *h)
{
	unsigned int frame[2] = {sizeof(*h), 0};

	write_all(frame, sizeof(frame));
	write_all(h, sizeof(*h));
}

static void ring_open(struct ring *r, int fd, size_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	struct epoll_event ev = {.events = EPOLLIN};
	void *p;

	r->mask = size - 1;
	p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die(3, "cannot map the ring's consumer page: %s", strerror(errno));
	r->cons = p;
	p = mmap(NULL, page + 2 * size, PROT_READ, MAP_SHARED, fd, page);
	if (p == MAP_FAILED)
		die(3, "cannot map the ring buffer: %s", strerror(errno));
	r->prod = p;
	r->data = (unsigned char *)p + page;
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0 || epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev))
		die(3, "cannot watch the ring buffer: %s", strerror(errno));
}

/* Everything the programs committed, out in one write: records stop at the
 * first one still being written (busy). */
static void ring_drain(struct ring *r)
{
	unsigned long cons = *r->cons, start = cons;
	unsigned long prod = __atomic_load_n(r->prod, __ATOMIC_ACQUIRE);

	while (cons < prod) {
		unsigned int *hdr = (unsigned int *)(r->data + (cons & r->mask));
		unsigned int len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);

		if (len & BPF_RINGBUF_BUSY_BIT)
			break;
		len &= ~BPF_RINGBUF_DISCARD_BIT;
		cons += (len + BPF_RINGBUF_HDR_SZ + 7) & ~7UL;
		records++;
	}
	if (cons == start)
		return;
	write_all(r->data + (start & r->mask), cons - start);
	__atomic_store_n(r->cons, cons, __ATOMIC_RELEASE);
}

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* Losses a CPU counted but could not report (nothing came after them on
 * that CPU): one EL_LOST record each, then the total. */
static unsigned long long report_pending_losses(struct epoll_lab_bpf *skel)
{
	struct lost_rec { unsigned long long count, first, last, total; unsigned int tid, tgid; };
	int ncpu = libbpf_num_possible_cpus();
	struct lost_rec *per = calloc(ncpu > 0 ? ncpu : 1, sizeof(*per));
	unsigned long long total = 0;
	unsigned int zero = 0;

	if (!per || ncpu <= 0)
		die(1, "out of memory");
	if (bpf_map__lookup_elem(skel->maps.losses, &zero, sizeof(zero), per,
				 sizeof(*per) * ncpu, 0))
		die(1, "cannot read the loss counters: %s", strerror(errno));
	for (int cpu = 0; cpu < ncpu; cpu++) {
		total += per[cpu].total;
		if (per[cpu].count) {
			struct el_head h = {.kind = EL_LOST, .nr = cpu, .tgid = per[cpu].tgid,
					    .tid = per[cpu].tid, .t0 = per[cpu].first,
					    .dur = per[cpu].last - per[cpu].first,
					    .ret = (long long)per[cpu].count};
			put_head(&h);
		}
	}
	free(per);
	return total;
}

static void parse_syscalls(struct epoll_lab_bpf *skel, const char *list)
{
	char *copy = strdup(list), *save = NULL;

	if (!copy)
		die(1, "out of memory");
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		long nr = strtol(tok, &end, 10);

		if (*end || nr < 0 || nr >= NR_MAX)
			die(2, "--syscalls takes numbers 0-%d separated by commas, not %s", NR_MAX - 1, tok);
		skel->rodata->story[nr] = 1;
	}
	free(copy);
}

static long number(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < lo || v > hi)
		die(2, "%s takes a number from %ld to %ld, not %s", opt, lo, hi, s);
	return v;
}

static void attach_gai(struct epoll_lab_bpf *skel, const char *libc)
{
	LIBBPF_OPTS(bpf_uprobe_opts, enter, .func_name = "getaddrinfo", .retprobe = false);
	LIBBPF_OPTS(bpf_uprobe_opts, exit_, .func_name = "getaddrinfo", .retprobe = true);

	skel->links.gai_enter = bpf_program__attach_uprobe_opts(skel->progs.gai_enter, -1, libc, 0, &enter);
	if (!skel->links.gai_enter)
		die(3, "cannot attach the getaddrinfo uprobe to %s: %s", libc, strerror(errno));
	skel->links.gai_exit = bpf_program__attach_uprobe_opts(skel->progs.gai_exit, -1, libc, 0, &exit_);
	if (!skel->links.gai_exit)
		die(3, "cannot attach the getaddrinfo uretprobe to %s: %s", libc, strerror(errno));
}

int main(int argc, char **argv)
{
	const char *syscalls = NULL, *libc = NULL;
	long pid = 0, ring_kb = 64 * 1024, wake_kb = -1, interval = 100, ready_fd = -1;
	int follow_exec = 1, floor = 0, err;
	struct epoll_lab_bpf *skel;
	struct ring ring;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--floor")) {
			floor = 1;
			continue;
		}
		if (!v)
			die(2, "%s needs a value (see the comment at the top of loader.c)", a);
		i++;
		if (!strcmp(a, "--out"))
			out_path = v;
		else if (!strcmp(a, "--exec") || !strcmp(a, "--pid")) {
			pid = number(a, v, 1, 0x7fffffff);
			follow_exec = !strcmp(a, "--exec");
		} else if (!strcmp(a, "--syscalls"))
			syscalls = v;
		else if (!strcmp(a, "--libc"))
			libc = v;
		else if (!strcmp(a, "--ring-kb"))
			ring_kb = number(a, v, 4, 1 << 22);
		else if (!strcmp(a, "--wake-kb"))
			wake_kb = number(a, v, 0, 1 << 22);
		else if (!strcmp(a, "--interval-ms"))
			interval = number(a, v, 1, 10000);
		else if (!strcmp(a, "--ready-fd"))
			ready_fd = number(a, v, 0, 1 << 20);
		else
			die(2, "unknown option %s", a);
	}
	if (!floor && !pid)
		die(2, "needs --exec PID or --pid PID (or --floor), and --out FILE or -");
	/* A ring is a power of two pages. */
	if (ring_kb & (ring_kb - 1))
		die(2, "--ring-kb must be a power of two, not %ld", ring_kb);

	verbose = getenv("EPOLL_LAB_KTRACE_VERBOSE") != NULL; /* libbpf's and the verifier's messages */
	libbpf_set_print(keep_warning);
	skel = epoll_lab_bpf__open();
	if (!skel)
		die(3, "cannot open the BPF object: %s", strerror(errno));
	if (floor) {
		struct bpf_program *p;

		bpf_object__for_each_program(p, skel->obj)
			bpf_program__set_autoload(p, p == skel->progs.floor_enter || p == skel->progs.floor_exit);
		ring_kb = 4;
	} else {
		bpf_program__set_autoload(skel->progs.floor_enter, false);
		bpf_program__set_autoload(skel->progs.floor_exit, false);
		if (!libc) {
			bpf_program__set_autoload(skel->progs.gai_enter, false);
			bpf_program__set_autoload(skel->progs.gai_exit, false);
		}
		skel->rodata->follow_tgid = pid;
		skel->rodata->follow_exec = follow_exec;
		if (wake_kb < 0)
			wake_kb = ring_kb / 4 < WAKE_KB ? ring_kb / 4 : WAKE_KB;
		skel->rodata->wake_at = wake_kb ? (unsigned long long)wake_kb * 1024 : ~0ULL;
		if (syscalls)
			parse_syscalls(skel, syscalls);
	}
	if (bpf_map__set_max_entries(skel->maps.ring, ring_kb * 1024))
		die(3, "cannot size the ring buffer to %ld KiB", ring_kb);
	err = epoll_lab_bpf__load(skel);
	if (err)
		die(3, "cannot load the BPF programs (%s): %s", strerror(-err), last_warning);
	err = epoll_lab_bpf__attach(skel);
	if (err)
		die(3, "cannot attach the BPF programs (%s): %s", strerror(-err), last_warning);
	if (!floor && libc)
		attach_gai(skel, libc);
	if (!floor) {
		out = strcmp(out_path, "-") ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
					    : STDOUT_FILENO;
		if (out < 0)
			die(1, "cannot open %s: %s", out_path, strerror(errno));
		ring_open(&ring, bpf_map__fd(skel->maps.ring), ring_kb * 1024);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	signal(SIGPIPE, SIG_IGN);
	if (ready_fd >= 0) {
		/* Every probe is attached: the caller may start the program now. */
		if (write(ready_fd, "1", 1) != 1)
			die(1, "cannot say ready on fd %ld: %s", ready_fd, strerror(errno));
		close(ready_fd);
	}
	if (floor) {
		while (!stopping)
			pause();
		epoll_lab_bpf__destroy(skel);
		return 0;
	}
	while (!stopping) {
		/* The programs wake us only when WAKE_KB is unread; in
		 * between, every `interval` ms, take what is there. */
		struct epoll_event ev;

		if (epoll_wait(ring.epfd, &ev, 1, interval) < 0 && errno != EINTR)
			die(1, "epoll_wait on the ring failed: %s", strerror(errno));
		ring_drain(&ring);
	}
	/* No new records once detached; then take what is left. */
	epoll_lab_bpf__detach(skel);
	ring_drain(&ring);
	{
		unsigned long long lost = report_pending_losses(skel);
		struct el_head stats = {.kind = EL_STATS, .t0 = now_ns(), .args = {records, lost,
								   skel->bss->untraceable}};

		put_head(&stats);
		fprintf(stderr, "epoll-lab-ktrace: %llu records, %llu calls lost\n", records, lost);
	}
	epoll_lab_bpf__destroy(skel);
	if (out != STDOUT_FILENO && close(out))
		die(1, "cannot write %s: %s", out_path, strerror(errno));
	return 0;
}
