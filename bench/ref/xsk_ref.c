// SPDX-License-Identifier: MIT
/*
 * xsk_ref: the C reference for xdp-socket's benchmarks, on libxdp's xsk API.
 *
 * Modes follow the kernel's xdpsock sample:
 *   rxdrop  receive and drop, count
 *   txonly  send fixed UDP/IPv4 frames as fast as the kernel takes them
 *   l2fwd   receive, swap source/destination MAC, send back on the same queue
 *   drop    helper, no socket: a counting XDP_DROP program on -i, reports what arrives
 *   latency ping-pong: send one frame, wait for it to come back (run `xsk_ref l2fwd`
 *           on the peer as the echo), record the round-trip time; -n pings
 *
 * Method counters (the "counters" and "cpu" objects of the JSON line): every syscall
 * the loops make is counted where it is made (TX kicks and how many returned EAGAIN,
 * Fill-ring wakeups, poll(2) calls), with how often the RX ring was looked at and how
 * many looks found frames (the average batch actually taken), and the user and system
 * CPU time of the measurement window (getrusage at its start and end).
 *
 * One JSON line on stdout at the end, per-second rates on stderr.
 *
 * Settings are pinned to what the Python side uses so the comparison is fair:
 * UMEM 4096 frames x 4096 bytes, all rings 2048, copy mode, need_wakeup on unless
 * --no-need-wakeup, the default TX budget unless --tx-budget.
 *
 * Receivers spin on an empty RX ring unless -p/--poll, which makes them wait in
 * poll(2) instead (xdpsock's -p; the same wait as xdp-socket's `bench --poll`).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <getopt.h>
#include <linux/if_xdp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <xdp/libxdp.h>
#include <xdp/xsk.h>

#include "ref_common.h"

#define NUM_FRAMES 4096
#define FRAME_SIZE 4096
#define RING_SIZE 2048
#define XSKMAP_ENTRIES 64

/* Not yet in Debian 12's linux/if_xdp.h; kernel 6.16+ has it (SOL_XDP optname 9). */
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9
#endif

enum mode { M_RXDROP, M_TXONLY, M_L2FWD, M_DROP, M_LATENCY };
#define N_MODES 5
static const char *const mode_names[] = { "rxdrop", "txonly", "l2fwd", "drop", "latency" };

/* latency: pings discarded before recording (cold caches, first wakeups) */
#define LAT_WARMUP 100
/* latency: a ping not back within this is counted lost and the next one sent */
#define LAT_TIMEOUT_S 0.1
/* latency: where the sequence number sits in the frame: after Ethernet (14), IPv4 (20),
 * UDP (8) and the payload tag (8); the echo only swaps MAC addresses */
#define LAT_SEQ_OFF 50

struct opts {
	enum mode mode;
	const char *ifname;
	unsigned int queue;
	double duration;
	double wait;
	unsigned int batch;
	unsigned int frame_len;
	bool native;
	bool need_wakeup;
	unsigned long long count;
	int tx_budget; /* 0: kernel default */
	const char *drop_peer;
	bool libxdp_prog; /* let libxdp load its default program (else our own) */
	unsigned char dst_mac[6];
	bool quiet;
	bool poll; /* rx modes: poll(2) on an empty RX ring instead of spinning */
	unsigned long long pings; /* latency: round trips to record */
	unsigned long long batch_work_ns; /* rxdrop: busy time added to every batch */
};

/* Where the syscalls go; see the file comment. */
struct counters {
	unsigned long long kicks;	 /* sendto() on the TX ring */
	unsigned long long kicks_eagain; /* ... that returned EAGAIN */
	unsigned long long fill_wakeups; /* recvfrom() for the Fill ring */
	unsigned long long polls;	 /* poll(2) calls */
	unsigned long long rx_looks;	 /* RX ring peeks */
	unsigned long long rx_batches;	 /* ... that found frames */
	unsigned long long tx_batches;	 /* TX descriptor batches submitted */
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

struct ctx {
	struct opts o;
	int ifindex;
	void *area;
	struct xsk_umem *umem;
	struct xsk_socket *xsk;
	struct xsk_ring_prod fq, tx;
	struct xsk_ring_cons cq, rx;
	int fd;
	int map_fd, prog_fd, link_fd;
	struct drop_counter peer;
	unsigned long long rx_pkts, tx_pkts; /* tx_pkts: completed by the kernel */
	unsigned long long tx_outstanding;
	unsigned long long kick_errors;
	struct counters cnt;
	struct rusage ru0, ru1; /* at the window's start and end */
	double *rtts;		/* latency: round-trip times in seconds */
	unsigned long long n_rtts, lost, pongs; /* latency: pongs = round trips done */
	int fatal_errno;
	const char *fatal_step;
	double t0, t_end;
	bool started;
	/* per-second report */
	double next_report, last_report;
	unsigned long long last_rx, last_tx;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: xsk_ref MODE -i IFACE [options]\n"
		"  MODE            rxdrop | txonly | l2fwd | drop (counting XDP_DROP on IFACE)\n"
		"                  | latency (ping-pong against `xsk_ref l2fwd` on the peer)\n"
		"  -i IFACE        interface\n"
		"  -q QUEUE        queue id (default 0)\n"
		"  -d SECONDS      measurement window (default 5); rx modes start it at the\n"
		"                  first packet, so run the traffic source longer than this\n"
		"  -w SECONDS      rx modes: give up if no packet arrives within this (default 10)\n"
		"  -b BATCH        descriptors per ring operation (default 64)\n"
		"  -s BYTES        txonly frame length without FCS (default 64)\n"
		"  --xdp-mode M    native | skb (default native)\n"
		"  --no-need-wakeup  bind without XDP_USE_NEED_WAKEUP\n"
		"  --count N       stop after N packets\n"
		"  --tx-budget N   setsockopt XDP_MAX_TX_SKB_BUDGET (default: kernel's 32)\n"
		"  --drop-peer IF  txonly: counting XDP_DROP on IF for the run, report peer_packets\n"
		"  --prog P        rx program: own (hand-written XSKMAP redirect over a BPF link,\n"
		"                  default) | libxdp (libxdp's default program and loader)\n"
		"  --dst-mac MAC   txonly destination MAC (default 02:00:00:00:00:02)\n"
		"  -p, --poll      rxdrop, l2fwd, latency: when the RX ring is empty, wait in\n"
		"                  poll(2) for POLLIN (100 ms timeout) instead of spinning\n"
		"  -n PINGS        latency: round trips to record (default 10000), after %d\n"
		"                  unrecorded warm-up pings; -d bounds the run too\n"
		"  --batch-work-ns N  rxdrop: spin N ns on every non-empty batch (an\n"
		"                  experiment: what a slower receiver loop costs; see\n"
		"                  bench/README.md, \"Same core, poll\")\n"
		"  --quiet         no per-second lines on stderr\n",
		LAT_WARMUP);
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

static int parse_secs(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v > 0) || v > 1e6)
		return -1;
	*out = v;
	return 0;
}

#define DIE_USAGE(...)                                  \
	do {                                            \
		fprintf(stderr, "xsk_ref: " __VA_ARGS__); \
		fputc('\n', stderr);                    \
		exit(2);                                \
	} while (0)

static void parse_args(int argc, char **argv, struct opts *o)
{
	enum { O_XDP_MODE = 256, O_NO_WAKEUP, O_COUNT, O_BUDGET, O_DROP_PEER, O_PROG, O_DST, O_QUIET,
	       O_WORK };
	static const struct option lo[] = {
		{ "xdp-mode", required_argument, NULL, O_XDP_MODE },
		{ "no-need-wakeup", no_argument, NULL, O_NO_WAKEUP },
		{ "count", required_argument, NULL, O_COUNT },
		{ "tx-budget", required_argument, NULL, O_BUDGET },
		{ "drop-peer", required_argument, NULL, O_DROP_PEER },
		{ "prog", required_argument, NULL, O_PROG },
		{ "dst-mac", required_argument, NULL, O_DST },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "batch-work-ns", required_argument, NULL, O_WORK },
		{ "poll", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned long long v;
	int c;

	memset(o, 0, sizeof(*o));
	o->duration = 5;
	o->wait = 10;
	o->batch = 64;
	o->frame_len = 64;
	o->native = true;
	o->need_wakeup = true;
	o->pings = 10000;
	parse_mac("02:00:00:00:00:02", o->dst_mac);

	if (argc < 2 || argv[1][0] == '-') {
		if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
			usage(stdout);
			exit(0);
		}
		usage(stderr);
		exit(2);
	}
	for (c = 0; c < N_MODES; c++)
		if (!strcmp(argv[1], mode_names[c]))
			break;
	if (c == N_MODES)
		DIE_USAGE("unknown mode '%s' (rxdrop, txonly, l2fwd, drop, latency)", argv[1]);
	o->mode = (enum mode)c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "i:q:d:w:b:s:n:ph", lo, NULL)) != -1) {
		switch (c) {
		case 'i':
			o->ifname = optarg;
			break;
		case 'q':
			if (parse_uint(optarg, XSKMAP_ENTRIES - 1, &v))
				DIE_USAGE("-q: queue must be 0..%d", XSKMAP_ENTRIES - 1);
			o->queue = (unsigned int)v;
			break;
		case 'd':
			if (parse_secs(optarg, &o->duration))
				DIE_USAGE("-d: need a positive number of seconds");
			break;
		case 'w':
			if (parse_secs(optarg, &o->wait))
				DIE_USAGE("-w: need a positive number of seconds");
			break;
		case 'b':
			if (parse_uint(optarg, RING_SIZE, &v) || v == 0)
				DIE_USAGE("-b: batch must be 1..%d", RING_SIZE);
			o->batch = (unsigned int)v;
			break;
		case 's':
			if (parse_uint(optarg, FRAME_SIZE, &v) || v < REF_MIN_FRAME)
				DIE_USAGE("-s: frame length must be %d..%d", REF_MIN_FRAME, FRAME_SIZE);
			o->frame_len = (unsigned int)v;
			break;
		case O_XDP_MODE:
			if (!strcmp(optarg, "native") || !strcmp(optarg, "drv"))
				o->native = true;
			else if (!strcmp(optarg, "skb") || !strcmp(optarg, "generic"))
				o->native = false;
			else
				DIE_USAGE("--xdp-mode: native or skb");
			break;
		case O_NO_WAKEUP:
			o->need_wakeup = false;
			break;
		case O_COUNT:
			if (parse_uint(optarg, ~0ULL, &o->count) || o->count == 0)
				DIE_USAGE("--count: need a positive integer");
			break;
		case O_BUDGET:
			if (parse_uint(optarg, RING_SIZE, &v) || v < 1)
				DIE_USAGE("--tx-budget: 1..%d", RING_SIZE);
			o->tx_budget = (int)v;
			break;
		case O_DROP_PEER:
			o->drop_peer = optarg;
			break;
		case O_PROG:
			if (!strcmp(optarg, "libxdp"))
				o->libxdp_prog = true;
			else if (!strcmp(optarg, "own"))
				o->libxdp_prog = false;
			else
				DIE_USAGE("--prog: own or libxdp");
			break;
		case O_DST:
			if (parse_mac(optarg, o->dst_mac))
				DIE_USAGE("--dst-mac: need aa:bb:cc:dd:ee:ff");
			break;
		case O_QUIET:
			o->quiet = true;
			break;
		case O_WORK:
			if (parse_uint(optarg, 100000000, &o->batch_work_ns))
				DIE_USAGE("--batch-work-ns: 0..100000000");
			break;
		case 'p':
			o->poll = true;
			break;
		case 'n':
			if (parse_uint(optarg, 10000000, &o->pings) || o->pings == 0)
				DIE_USAGE("-n: pings must be 1..10000000");
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc)
		DIE_USAGE("unexpected argument '%s'", argv[optind]);
	if (!o->ifname)
		DIE_USAGE("-i IFACE is required");
	if (o->drop_peer && o->mode != M_TXONLY)
		DIE_USAGE("--drop-peer only goes with txonly");
	if (o->batch_work_ns && o->mode != M_RXDROP)
		DIE_USAGE("--batch-work-ns is for rxdrop");
	if (o->poll && o->mode != M_RXDROP && o->mode != M_L2FWD && o->mode != M_LATENCY)
		DIE_USAGE("--poll only goes with rxdrop, l2fwd and latency");
}

static __u32 xdp_attach_flags(const struct opts *o)
{
	return o->native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
}

static void fatal(struct ctx *c, const char *step, int err)
{
	if (!c->fatal_errno) {
		c->fatal_errno = err;
		c->fatal_step = step;
		fprintf(stderr, "xsk_ref: %s: %s\n", step, strerror(err));
	}
	stop_flag = 1;
}

/* ---- setup ---------------------------------------------------------- */

static int setup_umem(struct ctx *c)
{
	struct xsk_umem_config cfg = {
		.fill_size = RING_SIZE,
		.comp_size = RING_SIZE,
		.frame_size = FRAME_SIZE,
		.frame_headroom = 0,
		.flags = 0,
	};
	int rc;

	c->area = mmap(NULL, (size_t)NUM_FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->area == MAP_FAILED) {
		c->area = NULL;
		perror("xsk_ref: mmap umem");
		return -1;
	}
	rc = xsk_umem__create(&c->umem, c->area, (__u64)NUM_FRAMES * FRAME_SIZE, &c->fq, &c->cq,
			      &cfg);
	if (rc) {
		fprintf(stderr, "xsk_ref: xsk_umem__create: %s\n", strerror(-rc));
		c->umem = NULL;
		return -1;
	}
	return 0;
}

static int setup_socket(struct ctx *c)
{
	bool rx = c->o.mode != M_TXONLY;
	bool own_prog = rx && !c->o.libxdp_prog;
	struct xsk_socket_config cfg = {
		.rx_size = RING_SIZE,
		.tx_size = RING_SIZE,
		/* txonly needs no program; with --prog own we attach our own. */
		.libxdp_flags = (!rx || own_prog) ? XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD : 0,
		.xdp_flags = xdp_attach_flags(&c->o),
		/* veth has no zero-copy; ask for copy mode explicitly so a driver that does
		 * support it cannot make the C side faster than the Python side. */
		.bind_flags = XDP_COPY | (c->o.need_wakeup ? XDP_USE_NEED_WAKEUP : 0),
	};
	int rc = -EBUSY;

	/* The kernel frees a closed socket's queue slot in deferred work, so a bind right
	 * after a previous run exited can fail with EBUSY for some tens of ms: retry. */
	for (int i = 0; i < 50 && rc == -EBUSY && !stop_flag; i++) {
		if (i)
			usleep(10000);
		rc = xsk_socket__create(&c->xsk, c->o.ifname, c->o.queue, c->umem,
					rx ? &c->rx : NULL, &c->tx, &cfg);
	}
	if (rc) {
		c->xsk = NULL;
		fprintf(stderr, "xsk_ref: xsk_socket__create(%s, queue %u): %s\n", c->o.ifname,
			c->o.queue, strerror(-rc));
		return -1;
	}
	c->fd = xsk_socket__fd(c->xsk);

	if (c->o.tx_budget) {
		int b = c->o.tx_budget;

		if (setsockopt(c->fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &b, sizeof(b))) {
			perror("xsk_ref: setsockopt(XDP_MAX_TX_SKB_BUDGET)");
			return -1;
		}
	}

	if (own_prog) {
		c->map_fd = bpf_map_create(BPF_MAP_TYPE_XSKMAP, "xsk_ref_xsks", 4, 4,
					   XSKMAP_ENTRIES, NULL);
		if (c->map_fd < 0) {
			perror("xsk_ref: bpf_map_create(XSKMAP)");
			return -1;
		}
		rc = xsk_socket__update_xskmap(c->xsk, c->map_fd);
		if (rc) {
			fprintf(stderr, "xsk_ref: xsk_socket__update_xskmap: %s\n", strerror(-rc));
			return -1;
		}
		c->prog_fd = load_xsk_redirect_prog(c->map_fd);
		if (c->prog_fd < 0)
			return -1;
		/* Attached last, once the socket is in the map: no frame is redirected to
		 * an empty slot (it would fall back to XDP_PASS anyway). */
		c->link_fd = attach_xdp_link(c->prog_fd, c->ifindex, xdp_attach_flags(&c->o));
		if (c->link_fd < 0)
			return -1;
	}
	return 0;
}

static void cleanup(struct ctx *c)
{
	if (c->link_fd >= 0)
		close(c->link_fd);
	if (c->xsk)
		xsk_socket__delete(c->xsk);
	if (c->umem)
		xsk_umem__delete(c->umem);
	if (c->prog_fd >= 0)
		close(c->prog_fd);
	if (c->map_fd >= 0)
		close(c->map_fd);
	if (c->area)
		munmap(c->area, (size_t)NUM_FRAMES * FRAME_SIZE);
	drop_counter_close(&c->peer);
}

/* Put `n` frames, starting at frame `first`, on the Fill ring. */
static int populate_fill(struct ctx *c, unsigned int first, unsigned int n)
{
	__u32 idx;

	if (xsk_ring_prod__reserve(&c->fq, n, &idx) != n)
		return -1;
	for (unsigned int i = 0; i < n; i++)
		*xsk_ring_prod__fill_addr(&c->fq, idx + i) = (__u64)(first + i) * FRAME_SIZE;
	xsk_ring_prod__submit(&c->fq, n);
	return 0;
}

/* ---- reporting ------------------------------------------------------ */

static void report_tick(struct ctx *c, double now)
{
	double dt;

	if (now < c->next_report)
		return;
	dt = now - c->last_report;
	if (!c->o.quiet && dt > 0)
		fprintf(stderr, "xsk_ref %s: %6.2fs rx %10.0f pps  tx %10.0f pps\n",
			mode_names[c->o.mode], c->started ? now - c->t0 : 0.0,
			(double)(c->rx_pkts - c->last_rx) / dt,
			(double)(c->tx_pkts - c->last_tx) / dt);
	c->last_report = now;
	c->next_report = now + 1.0;
	c->last_rx = c->rx_pkts;
	c->last_tx = c->tx_pkts;
}

/*
 * bench/run.py --method counts our syscalls with `perf stat --control`, for the window
 * only: it names perf's control and ack FIFOs in XDP_BENCH_PERF_CTL / _ACK, and we say
 * "enable" at the window's start and "disable" at its end, waiting (at most 1 s) for
 * perf's ack so that the count starts and stops where the window does. Without the
 * variables (or without a reader on the FIFO) this does nothing.
 */
static void perf_ctl(const char *cmd)
{
	const char *ctl = getenv("XDP_BENCH_PERF_CTL"), *ack = getenv("XDP_BENCH_PERF_ACK");
	char buf[16];
	int fd;

	if (!ctl)
		return;
	fd = open(ctl, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	if (write(fd, cmd, strlen(cmd)) < 0) {
		close(fd);
		return;
	}
	close(fd);
	if (!ack)
		return;
	fd = open(ack, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 1000) <= 0)
			break;
		n = read(fd, buf, sizeof(buf));
		if (n <= 0 || memchr(buf, '\n', (size_t)n))
			break;
	}
	close(fd);
}

static void start_clock(struct ctx *c, double now)
{
	perf_ctl("enable\n");
	getrusage(RUSAGE_SELF, &c->ru0);
	c->started = true;
	c->t0 = now;
	c->last_report = now;
	c->next_report = now + 1.0;
}

/* True when the run is over: signal, --count, window elapsed, or no traffic came. */
static bool time_up(struct ctx *c, double now, double t_setup, unsigned long long done)
{
	if (stop_flag)
		return true;
	if (c->o.count && done >= c->o.count)
		return true;
	if (c->started)
		return now - c->t0 >= c->o.duration;
	if (now - t_setup >= c->o.wait) {
		fprintf(stderr, "xsk_ref: no packet within %.1f s, giving up\n", c->o.wait);
		return true;
	}
	return false;
}

/* ---- TX helpers ------------------------------------------------------ */

/* The end of the window: CPU time is read here, before the JSON is written. */
static void stop_clock(struct ctx *c)
{
	c->t_end = now_s();
	getrusage(RUSAGE_SELF, &c->ru1);
	perf_ctl("disable\n");
}

/* Wake the kernel for the Fill ring (it asked for it). */
static void fill_wakeup(struct ctx *c)
{
	c->cnt.fill_wakeups++;
	recvfrom(c->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
}

/* Reap the Completion ring. In l2fwd the frames go straight back to the Fill ring. */
static unsigned int complete_tx(struct ctx *c, bool refill)
{
	__u32 idx_cq = 0, idx_fq = 0;
	unsigned int n = xsk_ring_cons__peek(&c->cq, RING_SIZE, &idx_cq);

	if (!n)
		return 0;
	if (refill) {
		/* The Fill ring has room for every frame we own, so this cannot stay
		 * short for long; spin (bounded by the stop flag) rather than lose frames. */
		while (xsk_ring_prod__reserve(&c->fq, n, &idx_fq) != n) {
			if (stop_flag)
				return 0;
			if (c->o.need_wakeup && xsk_ring_prod__needs_wakeup(&c->fq))
				fill_wakeup(c);
		}
		for (unsigned int i = 0; i < n; i++)
			*xsk_ring_prod__fill_addr(&c->fq, idx_fq + i) =
				*xsk_ring_cons__comp_addr(&c->cq, idx_cq + i);
		xsk_ring_prod__submit(&c->fq, n);
	}
	xsk_ring_cons__release(&c->cq, n);
	c->tx_outstanding -= n;
	c->tx_pkts += n;
	return n;
}

/*
 * Kick the kernel to send. In copy mode one sendto() transmits at most the TX budget
 * (32 frames by default) and returns EAGAIN when more are queued, so keep kicking until
 * it does not. EAGAIN also means "Completion ring full", so reap it between kicks.
 */
static void kick_tx(struct ctx *c, bool refill)
{
	if (c->o.need_wakeup && !xsk_ring_prod__needs_wakeup(&c->tx))
		return;
	while (!stop_flag) {
		c->cnt.kicks++;
		if (sendto(c->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
			return;
		switch (errno) {
		case EAGAIN:
			c->cnt.kicks_eagain++;
			complete_tx(c, refill);
			continue;
		case EBUSY: /* another context is sending on this socket: fine, it drains */
		case ENOBUFS: /* skb allocation failed: try again on the next loop */
			c->kick_errors++;
			return;
		default:
			fatal(c, "sendto (TX kick)", errno);
			return;
		}
	}
}

/* ---- the three loops ------------------------------------------------ */

/*
 * --poll: the RX ring is empty, so give the core away until the kernel has frames
 * for us (it wakes POLLIN waiters when it flushes frames to the RX ring) or 100 ms
 * pass. This is what xdp-socket's receivers do with `bench --poll`
 * (RxSocket.poll_wait(0.1)): one poll(2) per empty look at the ring, after the Fill
 * ring wakeup the caller has already done. It matters when the traffic source shares
 * the core: on veth the receive work runs on the sender's core, and a spinning
 * receiver would hold the core for its whole time slice.
 */
static void wait_rx(struct ctx *c)
{
	struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
	int r;

	c->cnt.polls++;
	r = poll(&pfd, 1, 100);

	if (r < 0) {
		if (errno != EINTR) /* EINTR: a signal; stop_flag ends the loop */
			fatal(c, "poll", errno);
		return;
	}
	if (r > 0 && (pfd.revents & (POLLERR | POLLNVAL))) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) || !err)
			err = pfd.revents & POLLNVAL ? EBADF : EIO;
		fatal(c, "poll", err);
	}
}

/* The --batch-work-ns experiment: CPU time spent in the loop, as a slower
 * language's per-batch overhead would be (a spin, not a sleep: it must not
 * hand the core to anyone). */
static void spin_ns(unsigned long long ns)
{
	double end = now_s() + (double)ns * 1e-9;

	while (now_s() < end)
		;
}

static void run_rxdrop(struct ctx *c)
{
	double t_setup = now_s(), now = t_setup;
	__u32 idx_rx = 0, idx_fq = 0;

	while (!time_up(c, now, t_setup, c->rx_pkts)) {
		unsigned int n = xsk_ring_cons__peek(&c->rx, c->o.batch, &idx_rx);

		c->cnt.rx_looks++;
		now = now_s();
		if (!n) {
			/* veth never sets need_wakeup on the Fill ring, real NICs do. */
			if (c->o.need_wakeup && xsk_ring_prod__needs_wakeup(&c->fq))
				fill_wakeup(c);
			if (c->o.poll) {
				wait_rx(c);
				now = now_s(); /* the wait may have used up the window */
			}
			if (c->started)
				report_tick(c, now);
			continue;
		}
		if (!c->started)
			start_clock(c, now);
		c->cnt.rx_batches++;
		if (c->o.batch_work_ns)
			spin_ns(c->o.batch_work_ns);
		while (xsk_ring_prod__reserve(&c->fq, n, &idx_fq) != n) {
			if (stop_flag)
				break;
			if (c->o.need_wakeup && xsk_ring_prod__needs_wakeup(&c->fq))
				fill_wakeup(c);
		}
		if (stop_flag)
			break;
		for (unsigned int i = 0; i < n; i++) {
			__u64 a = xsk_ring_cons__rx_desc(&c->rx, idx_rx + i)->addr;
			/* In copy mode the address carries the headroom offset; hand back
			 * the frame start (aligned mode would mask it anyway). */
			*xsk_ring_prod__fill_addr(&c->fq, idx_fq + i) =
				a & ~(__u64)(FRAME_SIZE - 1);
		}
		xsk_ring_prod__submit(&c->fq, n);
		xsk_ring_cons__release(&c->rx, n);
		c->rx_pkts += n;
		report_tick(c, now);
	}
	stop_clock(c);
}

static void swap_macs(uint8_t *p)
{
	uint8_t t[6];

	memcpy(t, p, 6);
	memcpy(p, p + 6, 6);
	memcpy(p + 6, t, 6);
}

static void run_l2fwd(struct ctx *c)
{
	double t_setup = now_s(), now = t_setup;
	__u32 idx_rx = 0, idx_tx = 0;

	while (!time_up(c, now, t_setup, c->tx_pkts)) {
		unsigned int n;

		if (c->tx_outstanding) {
			kick_tx(c, true);
			complete_tx(c, true);
		}
		n = xsk_ring_cons__peek(&c->rx, c->o.batch, &idx_rx);
		c->cnt.rx_looks++;
		now = now_s();
		if (!n) {
			if (c->o.need_wakeup && xsk_ring_prod__needs_wakeup(&c->fq))
				fill_wakeup(c);
			if (c->o.poll) {
				wait_rx(c);
				now = now_s(); /* the wait may have used up the window */
			}
			if (c->started)
				report_tick(c, now);
			continue;
		}
		if (!c->started)
			start_clock(c, now);
		c->cnt.rx_batches++;
		while (xsk_ring_prod__reserve(&c->tx, n, &idx_tx) != n) {
			if (stop_flag)
				break;
			complete_tx(c, true);
			kick_tx(c, true);
		}
		if (stop_flag)
			break;
		for (unsigned int i = 0; i < n; i++) {
			const struct xdp_desc *d = xsk_ring_cons__rx_desc(&c->rx, idx_rx + i);
			struct xdp_desc *t = xsk_ring_prod__tx_desc(&c->tx, idx_tx + i);

			if (d->len >= 12)
				swap_macs(xsk_umem__get_data(c->area, d->addr));
			t->addr = d->addr;
			t->len = d->len;
			t->options = 0;
		}
		xsk_ring_prod__submit(&c->tx, n);
		xsk_ring_cons__release(&c->rx, n);
		c->cnt.tx_batches++;
		c->rx_pkts += n;
		c->tx_outstanding += n;
		report_tick(c, now);
	}
	stop_clock(c);
}

static void run_txonly(struct ctx *c)
{
	unsigned long long submitted = 0, limit = c->o.count ? c->o.count : ~0ULL;
	unsigned int frame_nb = 0;
	double now = now_s();
	__u32 idx;

	start_clock(c, now);
	while (!time_up(c, now, c->t0, c->tx_pkts)) {
		/* Never more in flight than the Completion ring holds: that keeps EAGAIN
		 * from the kick meaning "ring full" and bounds frame reuse. */
		unsigned long long room = RING_SIZE - c->tx_outstanding;
		unsigned long long want = c->o.batch;

		if (want > room)
			want = room;
		if (want > limit - submitted)
			want = limit - submitted;
		if (want && xsk_ring_prod__reserve(&c->tx, (__u32)want, &idx) == want) {
			for (unsigned int i = 0; i < want; i++) {
				struct xdp_desc *d = xsk_ring_prod__tx_desc(&c->tx, idx + i);

				d->addr = (__u64)frame_nb * FRAME_SIZE;
				d->len = c->o.frame_len;
				d->options = 0;
				frame_nb = (frame_nb + 1) % NUM_FRAMES;
			}
			xsk_ring_prod__submit(&c->tx, (__u32)want);
			c->cnt.tx_batches++;
			c->tx_outstanding += want;
			submitted += want;
		}
		kick_tx(c, false);
		complete_tx(c, false);
		now = now_s();
		report_tick(c, now);
	}
	stop_clock(c);
}

/* ---- latency: ping-pong with an echo on the peer ---------------------- */

/* Wait until the RX ring holds a frame or `deadline` passes: spin, or with --poll
 * wait in poll(2). Returns the number of frames (0 or 1) and their ring index. */
static unsigned int wait_one(struct ctx *c, double deadline, __u32 *idx)
{
	for (;;) {
		unsigned int n = xsk_ring_cons__peek(&c->rx, 1, idx);
		double now;

		c->cnt.rx_looks++;
		if (n || stop_flag)
			return n;
		if (c->o.need_wakeup && xsk_ring_prod__needs_wakeup(&c->fq))
			fill_wakeup(c);
		now = now_s();
		if (now >= deadline)
			return 0;
		if (c->o.poll) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
			int ms = (int)((deadline - now) * 1000) + 1;

			c->cnt.polls++;
			if (poll(&pfd, 1, ms) < 0 && errno != EINTR) {
				fatal(c, "poll", errno);
				return 0;
			}
		}
	}
}

/*
 * One frame goes out of the TX ring, the peer's echo (an l2fwd: swap the MACs, send
 * back) returns it, and the round trip is the time from just before the descriptor is
 * submitted to the moment the RX ring holds it. xdp-socket's `bench latency` times the
 * same two points. The sequence number in the payload tells a late echo of a lost ping
 * from the current one.
 */
static void run_latency(struct ctx *c)
{
	unsigned long long total = c->o.pings + LAT_WARMUP, seq = 0;
	unsigned int frame = RING_SIZE; /* TX frames: RING_SIZE .. NUM_FRAMES-1 */
	double t_setup = now_s(), first_deadline = t_setup + c->o.wait;
	unsigned char src[6];

	c->rtts = calloc(c->o.pings, sizeof(*c->rtts));
	if (!c->rtts) {
		fatal(c, "calloc", ENOMEM);
		return;
	}
	if (iface_mac(c->o.ifname, src))
		memset(src, 0, sizeof(src));
	while (!stop_flag && seq < total) {
		__u32 idx_tx = 0, idx_rx = 0, idx_fq = 0;
		uint8_t *f = (uint8_t *)c->area + (size_t)frame * FRAME_SIZE;
		struct xdp_desc *d;
		double t0, t1, now;
		unsigned int n;

		complete_tx(c, false);
		if (xsk_ring_prod__reserve(&c->tx, 1, &idx_tx) != 1) {
			kick_tx(c, false);
			continue;
		}
		build_udp_frame(f, c->o.frame_len, src, c->o.dst_mac);
		memcpy(f + LAT_SEQ_OFF, &seq, sizeof(seq));
		d = xsk_ring_prod__tx_desc(&c->tx, idx_tx);
		d->addr = (__u64)frame * FRAME_SIZE;
		d->len = c->o.frame_len;
		d->options = 0;
		frame = frame + 1 < NUM_FRAMES ? frame + 1 : RING_SIZE;
		t0 = now_s();
		xsk_ring_prod__submit(&c->tx, 1);
		c->cnt.tx_batches++;
		c->tx_outstanding++;
		kick_tx(c, false);
		for (;;) {
			unsigned long long got;
			const struct xdp_desc *r;

			n = wait_one(c, t0 + LAT_TIMEOUT_S, &idx_rx);
			t1 = now_s();
			if (!n)
				break;
			c->cnt.rx_batches++;
			r = xsk_ring_cons__rx_desc(&c->rx, idx_rx);
			got = ~0ULL;
			if (r->len >= LAT_SEQ_OFF + sizeof(got))
				memcpy(&got, xsk_umem__get_data(c->area, r->addr) + LAT_SEQ_OFF,
				       sizeof(got));
			/* The Fill ring has room for every RX frame we own: this ends. */
			while (xsk_ring_prod__reserve(&c->fq, 1, &idx_fq) != 1)
				if (stop_flag) {
					stop_clock(c);
					return;
				}
			*xsk_ring_prod__fill_addr(&c->fq, idx_fq) = r->addr & ~(__u64)(FRAME_SIZE - 1);
			xsk_ring_prod__submit(&c->fq, 1);
			xsk_ring_cons__release(&c->rx, 1);
			c->rx_pkts++;
			if (got == seq)
				break; /* ours; anything else is a late echo of a lost ping */
		}
		now = t1;
		if (!n) {
			if (!c->started) {
				/* Not started: the echo may not be up yet. */
				if (now >= first_deadline) {
					fprintf(stderr, "xsk_ref: no echo within %.1f s, giving up\n",
						c->o.wait);
					break;
				}
			} else {
				c->lost++;
			}
			continue;
		}
		if (!c->started)
			start_clock(c, now);
		if (seq >= LAT_WARMUP)
			c->rtts[c->n_rtts++] = t1 - t0;
		seq++;
		c->pongs++;
		if (now - c->t0 >= c->o.duration)
			break;
	}
	stop_clock(c);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n-1]; xdp-socket's bench uses the same rule. */
static double pct(const double *v, unsigned long long n, double q)
{
	unsigned long long k = (unsigned long long)ceil(q * (double)n);

	return v[k ? k - 1 : 0];
}

static void print_latency_json(struct ctx *c)
{
	unsigned long long n = c->n_rtts;
	double sum = 0;

	qsort(c->rtts, n, sizeof(*c->rtts), cmp_double);
	for (unsigned long long i = 0; i < n; i++)
		sum += c->rtts[i];
	printf(",\"pings\":%llu,\"lost\":%llu,\"warmup\":%d", n, c->lost, LAT_WARMUP);
	if (!n)
		return;
	printf(",\"rtt_us\":{\"min\":%.3f,\"p50\":%.3f,\"p99\":%.3f,\"p99.9\":%.3f,"
	       "\"max\":%.3f,\"mean\":%.3f}",
	       c->rtts[0] * 1e6, pct(c->rtts, n, 0.5) * 1e6, pct(c->rtts, n, 0.99) * 1e6,
	       pct(c->rtts, n, 0.999) * 1e6, c->rtts[n - 1] * 1e6, sum / (double)n * 1e6);
	printf(",\"samples_us\":[");
	for (unsigned long long i = 0; i < n; i++)
		printf("%s%.3f", i ? "," : "", c->rtts[i] * 1e6);
	printf("]");
}

/* ---- drop mode: an XDP program counts, no socket --------------------- */

static int run_drop(struct ctx *c)
{
	double t_setup = now_s(), now = t_setup;
	unsigned long long base = 0, cur = 0;

	if (drop_counter_attach(&c->peer, c->ifindex, xdp_attach_flags(&c->o)))
		return -1;
	/* The counter is read with a syscall; 1 ms granularity is plenty for windows of
	 * seconds and costs the (otherwise idle) reader core nothing measurable. */
	while (!stop_flag) {
		usleep(1000);
		now = now_s();
		cur = drop_counter_read(&c->peer);
		if (!c->started) {
			if (cur) {
				start_clock(c, now);
				base = cur;
			} else if (now - t_setup >= c->o.wait) {
				fprintf(stderr, "xsk_ref: no packet within %.1f s, giving up\n",
					c->o.wait);
				break;
			}
			continue;
		}
		c->rx_pkts = cur - base;
		if (c->o.count && c->rx_pkts >= c->o.count)
			break;
		if (now - c->t0 >= c->o.duration)
			break;
		report_tick(c, now);
	}
	c->rx_pkts = c->started ? cur - base : 0;
	c->t_end = now;
	getrusage(RUSAGE_SELF, &c->ru1);
	return 0;
}

/* ---- main ------------------------------------------------------------ */

static void print_json(struct ctx *c)
{
	struct xdp_statistics st;
	socklen_t sl = sizeof(st);
	double secs = c->started ? c->t_end - c->t0 : 0.0;
	unsigned long long pkts = c->o.mode == M_RXDROP || c->o.mode == M_DROP ? c->rx_pkts :
				  c->o.mode == M_LATENCY		  ? c->pongs :
									    c->tx_pkts;
	const struct counters *k = &c->cnt;

	printf("{\"impl\":\"%s\",\"mode\":\"%s\",\"pps\":%.1f,\"packets\":%llu,\"seconds\":%.6f",
	       c->o.mode == M_DROP ? "c-xdp-drop" : "c-libxdp", mode_names[c->o.mode],
	       secs > 0 ? (double)pkts / secs : 0.0, pkts, secs);
	printf(",\"rx_packets\":%llu,\"tx_packets\":%llu,\"iface\":\"%s\",\"queue\":%u",
	       c->rx_pkts, c->tx_pkts, c->o.ifname, c->o.queue);
	printf(",\"batch\":%u,\"frame_size\":%u,\"xdp_mode\":\"%s\",\"need_wakeup\":%s",
	       c->o.batch, c->o.frame_len, c->o.native ? "native" : "skb",
	       c->o.need_wakeup ? "true" : "false");
	if (c->o.mode == M_RXDROP || c->o.mode == M_L2FWD || c->o.mode == M_LATENCY)
		printf(",\"poll\":%s", c->o.poll ? "true" : "false");
	if (c->o.tx_budget)
		printf(",\"tx_budget\":%d", c->o.tx_budget);
	else
		printf(",\"tx_budget\":null");
	if (c->o.mode == M_RXDROP || c->o.mode == M_L2FWD || c->o.mode == M_LATENCY)
		printf(",\"prog\":\"%s\"", c->o.libxdp_prog ? "libxdp" : "own");
	if (c->o.drop_peer) {
		/* Frames still in the veth's NAPI queue land within microseconds. */
		usleep(20000);
		printf(",\"peer\":\"%s\",\"peer_packets\":%llu", c->o.drop_peer,
		       drop_counter_read(&c->peer));
	}
	if (c->fd >= 0 && !getsockopt(c->fd, SOL_XDP, XDP_STATISTICS, &st, &sl))
		printf(",\"xdp_stats\":{\"rx_dropped\":%llu,\"rx_invalid_descs\":%llu,"
		       "\"tx_invalid_descs\":%llu,\"rx_ring_full\":%llu,"
		       "\"rx_fill_ring_empty_descs\":%llu,\"tx_ring_empty_descs\":%llu}",
		       (unsigned long long)st.rx_dropped, (unsigned long long)st.rx_invalid_descs,
		       (unsigned long long)st.tx_invalid_descs, (unsigned long long)st.rx_ring_full,
		       (unsigned long long)st.rx_fill_ring_empty_descs,
		       (unsigned long long)st.tx_ring_empty_descs);
	if (c->kick_errors)
		printf(",\"kick_errors\":%llu", c->kick_errors);
	printf(",\"counters\":{\"kicks\":%llu,\"kicks_eagain\":%llu,\"fill_wakeups\":%llu,"
	       "\"polls\":%llu,\"rx_looks\":%llu,\"rx_batches\":%llu,\"tx_batches\":%llu}",
	       k->kicks, k->kicks_eagain, k->fill_wakeups, k->polls, k->rx_looks, k->rx_batches,
	       k->tx_batches);
	if (c->started)
		printf(",\"cpu\":{\"user_s\":%.6f,\"sys_s\":%.6f}",
		       (double)(c->ru1.ru_utime.tv_sec - c->ru0.ru_utime.tv_sec) +
			       (double)(c->ru1.ru_utime.tv_usec - c->ru0.ru_utime.tv_usec) * 1e-6,
		       (double)(c->ru1.ru_stime.tv_sec - c->ru0.ru_stime.tv_sec) +
			       (double)(c->ru1.ru_stime.tv_usec - c->ru0.ru_stime.tv_usec) * 1e-6);
	if (c->o.mode == M_LATENCY)
		print_latency_json(c);
	if (c->fatal_errno)
		printf(",\"error\":\"%s: %s\"", c->fatal_step, strerror(c->fatal_errno));
	printf("}\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct ctx c;
	int rc = 1;

	memset(&c, 0, sizeof(c));
	c.fd = c.map_fd = c.prog_fd = c.link_fd = -1;
	c.peer.map_fd = c.peer.prog_fd = c.peer.link_fd = -1;
	parse_args(argc, argv, &c.o);

	/* No SA_RESTART: a signal must end the run, not be swallowed by a retried call. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	c.ifindex = (int)if_nametoindex(c.o.ifname);
	if (!c.ifindex) {
		fprintf(stderr, "xsk_ref: interface '%s': %s\n", c.o.ifname, strerror(errno));
		return 1;
	}

	if (c.o.mode == M_DROP) {
		if (run_drop(&c) == 0) {
			print_json(&c);
			rc = 0;
		}
		cleanup(&c);
		return rc;
	}

	if (c.o.drop_peer) {
		int peer_ifindex = (int)if_nametoindex(c.o.drop_peer);

		if (!peer_ifindex) {
			fprintf(stderr, "xsk_ref: --drop-peer '%s': %s\n", c.o.drop_peer,
				strerror(errno));
			return 1;
		}
		if (drop_counter_attach(&c.peer, peer_ifindex, xdp_attach_flags(&c.o)))
			goto out;
	}
	if (setup_umem(&c) || setup_socket(&c))
		goto out;

	switch (c.o.mode) {
	case M_RXDROP:
		if (populate_fill(&c, 0, RING_SIZE))
			goto out;
		run_rxdrop(&c);
		break;
	case M_L2FWD:
		if (populate_fill(&c, 0, RING_SIZE))
			goto out;
		run_l2fwd(&c);
		break;
	case M_TXONLY: {
		unsigned char src[6];

		if (iface_mac(c.o.ifname, src))
			memset(src, 0, sizeof(src));
		for (unsigned int i = 0; i < NUM_FRAMES; i++)
			build_udp_frame((uint8_t *)c.area + (size_t)i * FRAME_SIZE, c.o.frame_len,
					src, c.o.dst_mac);
		run_txonly(&c);
		break;
	}
	case M_LATENCY:
		if (populate_fill(&c, 0, RING_SIZE))
			goto out;
		run_latency(&c);
		break;
	case M_DROP:
		break;
	}
	print_json(&c);
	rc = c.fatal_errno ? 1 : 0;
out:
	free(c.rtts);
	cleanup(&c);
	return rc;
}
