// SPDX-License-Identifier: MIT
/*
 * livegen: a fast traffic source for the rx benchmarks.
 *
 * BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES runs an XDP program on copies of
 * one frame, `repeat` times, inside a single syscall, and really performs the
 * program's redirect. Our program is `return bpf_redirect(IFINDEX, 0)`: each frame is
 * transmitted by IFACE (ndo_xdp_xmit), so on a veth it arrives at the peer, which
 * must have an XDP program (e.g. the receiver's XSKMAP redirect) or veth drops it
 * silently.
 *
 * The kernel loop stops early on a pending signal (EINTR). Each call with repeat > 1
 * costs ~24 ms of setup here, so calls are long (about CHUNK_SECONDS each) and the
 * last one is shortened to end at the deadline.
 *
 * Only frames of completed calls are counted: "packets" and "seconds" are exact, an
 * interrupted call is left out of both.
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include "ref_common.h"

#define CHUNK_SECONDS 0.5
#define FIRST_REPEAT 262144
/* A live frame must fit in one 4 KiB page together with XDP_PACKET_HEADROOM (256) and
 * the aligned skb_shared_info (320): the kernel refuses longer input with EINVAL. */
#define MAX_LIVE_FRAME 3520

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: livegen -i IFACE [-d SECONDS(5)] [-s BYTES(64)] [--count N]\n"
		   "               [--dst-mac MAC] [--quiet]\n"
		   "Sends UDP/IPv4 frames out of IFACE with XDP live-frames test runs; on a veth\n"
		   "they arrive at the peer, which needs an XDP program. Prints one JSON line.\n");
}

static int load_redirect_ifindex_prog(int ifindex)
{
	const struct bpf_insn insns[] = {
		R_MOV64_IMM(BPF_REG_1, ifindex),
		R_MOV64_IMM(BPF_REG_2, 0),
		R_CALL(BPF_FUNC_redirect),
		R_EXIT(),
	};
	return load_xdp_insns("livegen_redir", insns, sizeof(insns) / sizeof(insns[0]));
}

int main(int argc, char **argv)
{
	enum { O_COUNT = 256, O_DST, O_QUIET };
	static const struct option lo[] = {
		{ "count", required_argument, NULL, O_COUNT },
		{ "dst-mac", required_argument, NULL, O_DST },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *ifname = NULL;
	double duration = 5;
	unsigned long long count = 0, sent = 0;
	unsigned int frame_len = 64;
	unsigned char src[6], dst[6];
	bool quiet = false;
	struct sigaction sa = { .sa_handler = on_signal };
	uint8_t frame[4096];
	int c, ifindex, prog_fd, err = 0;
	char *end;

	parse_mac("02:00:00:00:00:02", dst);
	while ((c = getopt_long(argc, argv, "i:d:s:h", lo, NULL)) != -1) {
		switch (c) {
		case 'i':
			ifname = optarg;
			break;
		case 'd':
			duration = strtod(optarg, &end);
			if (end == optarg || *end || !(duration > 0) || duration > 1e6) {
				fprintf(stderr, "livegen: -d: need a positive number of seconds\n");
				return 2;
			}
			break;
		case 's': {
			unsigned long v = strtoul(optarg, &end, 0);

			if (end == optarg || *end || optarg[0] == '-' || v < REF_MIN_FRAME ||
			    v > MAX_LIVE_FRAME) {
				fprintf(stderr, "livegen: -s: %d..%d bytes\n", REF_MIN_FRAME,
					MAX_LIVE_FRAME);
				return 2;
			}
			frame_len = (unsigned int)v;
			break;
		}
		case O_COUNT:
			count = strtoull(optarg, &end, 0);
			if (end == optarg || *end || optarg[0] == '-' || !count) {
				fprintf(stderr, "livegen: --count: need a positive integer\n");
				return 2;
			}
			break;
		case O_DST:
			if (parse_mac(optarg, dst)) {
				fprintf(stderr, "livegen: --dst-mac: need aa:bb:cc:dd:ee:ff\n");
				return 2;
			}
			break;
		case O_QUIET:
			quiet = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!ifname || optind != argc) {
		usage(stderr);
		return 2;
	}
	ifindex = (int)if_nametoindex(ifname);
	if (!ifindex) {
		fprintf(stderr, "livegen: interface '%s': %s\n", ifname, strerror(errno));
		return 1;
	}
	if (iface_mac(ifname, src))
		memset(src, 0, sizeof(src));
	build_udp_frame(frame, frame_len, src, dst);

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	prog_fd = load_redirect_ifindex_prog(ifindex);
	if (prog_fd < 0)
		return 1;

	double t_start = now_s(), deadline = t_start + duration, busy = 0, rate = 0;
	double last_report = t_start;
	unsigned long long last_sent = 0;

	while (!stop_flag && (!count || sent < count)) {
		double now = now_s(), left = deadline - now;
		double want;

		if (left <= 0)
			break;
		/* First call short, to learn the rate; then calls of ~CHUNK_SECONDS, the
		 * last one cut to end at the deadline. */
		want = rate > 0 ? rate * (left < CHUNK_SECONDS ? left : CHUNK_SECONDS) : FIRST_REPEAT;
		if (count && want > (double)(count - sent))
			want = (double)(count - sent);
		if (want > 0x7fffffff) /* repeat is a signed int */
			want = 0x7fffffff;
		if (want < 1)
			break;

		LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = frame_len,
			    .repeat = (int)want, .flags = BPF_F_TEST_XDP_LIVE_FRAMES);
		if (bpf_prog_test_run_opts(prog_fd, &o)) {
			if (errno == EINTR) /* signal: this call's count is unknown, drop it */
				break;
			err = errno;
			fprintf(stderr, "livegen: BPF_PROG_TEST_RUN (live frames): %s\n",
				strerror(err));
			break;
		}
		double t = now_s();
		double dt = t - now;

		sent += (unsigned long long)want;
		busy += dt;
		rate = dt > 0 ? want / dt : 0;
		if (!quiet && t - last_report >= 1.0) {
			fprintf(stderr, "livegen: %6.2fs %10.0f pps\n", t - t_start,
				(double)(sent - last_sent) / (t - last_report));
			last_report = t;
			last_sent = sent;
		}
	}
	close(prog_fd);
	printf("{\"impl\":\"c-livegen\",\"mode\":\"gen\",\"pps\":%.1f,\"packets\":%llu,"
	       "\"seconds\":%.6f,\"iface\":\"%s\",\"frame_size\":%u%s%s%s}\n",
	       busy > 0 ? (double)sent / busy : 0.0, sent, busy, ifname, frame_len,
	       err ? ",\"error\":\"" : "", err ? strerror(err) : "", err ? "\"" : "");
	return err ? 1 : 0;
}
