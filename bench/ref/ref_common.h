/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the C reference programs (xsk_ref.c, livegen.c):
 * clocks, the test frame, hand-assembled BPF programs and their attachment.
 *
 * The BPF programs are written as raw instructions rather than compiled from C so
 * the references need neither clang nor a BPF object file at run time, and so
 * they are exactly the programs the Python side loads (same instructions, same cost).
 */
#ifndef XSK_REF_COMMON_H
#define XSK_REF_COMMON_H

#include <arpa/inet.h>
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

/* ---- time ------------------------------------------------------------- */

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- BPF instruction encoding (the uapi header has the struct, not the macros) ---- */

#define RI(c, d, s, o, i)                                                            \
	((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), \
			    .imm = (i) })
#define R_MOV64_IMM(d, i) RI(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define R_ADD64_IMM(d, i) RI(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, i)
#define R_MOV64_REG(d, s) RI(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define R_LDX(sz, d, s, o) RI(BPF_LDX | (sz) | BPF_MEM, d, s, o, 0)
#define R_STX(sz, d, s, o) RI(BPF_STX | (sz) | BPF_MEM, d, s, o, 0)
#define R_ST(sz, d, o, i) RI(BPF_ST | (sz) | BPF_MEM, d, 0, o, i)
#define R_JEQ_IMM(d, i, o) RI(BPF_JMP | BPF_JEQ | BPF_K, d, 0, o, i)
#define R_CALL(f) RI(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define R_EXIT() RI(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)
/* 64-bit immediate load of a map fd: two instruction slots, the second carries
 * the upper 32 bits (zero). The verifier swaps the fd for the map pointer. */
#define R_LD_MAP_FD(d, fd)                                      \
	RI(BPF_LD | BPF_DW | BPF_IMM, d, BPF_PSEUDO_MAP_FD, 0, fd), \
		RI(0, 0, 0, 0, 0)

/* offsetof(struct xdp_md, rx_queue_index) in linux/bpf.h */
#define XDP_MD_RX_QUEUE_INDEX_OFF 16

static char ref_bpf_log[65536];

static inline int load_xdp_insns(const char *name, const struct bpf_insn *insns, size_t n)
{
	LIBBPF_OPTS(bpf_prog_load_opts, o, .log_buf = ref_bpf_log,
		    .log_size = sizeof(ref_bpf_log), .log_level = 0);
	int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, name, "GPL", insns, n, &o);

	if (fd < 0) {
		int err = errno;

		fprintf(stderr, "bpf_prog_load(%s): %s\n%s\n", name, strerror(err), ref_bpf_log);
		errno = err;
	}
	return fd;
}

/* XSKMAP redirect: r0 = bpf_redirect_map(&xskmap, ctx->rx_queue_index, XDP_PASS).
 * The low bits of the flags argument are the action returned when the queue has
 * no socket in the map, so unrelated traffic still reaches the stack. */
static inline int load_xsk_redirect_prog(int xskmap_fd)
{
	const struct bpf_insn insns[] = {
		R_LDX(BPF_W, BPF_REG_2, BPF_REG_1, XDP_MD_RX_QUEUE_INDEX_OFF),
		R_LD_MAP_FD(BPF_REG_1, xskmap_fd),
		R_MOV64_IMM(BPF_REG_3, XDP_PASS),
		R_CALL(BPF_FUNC_redirect_map),
		R_EXIT(),
	};
	return load_xdp_insns("xsk_ref_redir", insns, sizeof(insns) / sizeof(insns[0]));
}

/* Counting drop: one per-CPU u64 counter at key 0, then XDP_DROP. Per-CPU so the
 * two cores never share a cache line (no atomic needed). */
static inline int load_count_drop_prog(int counter_fd)
{
	const struct bpf_insn insns[] = {
		R_ST(BPF_W, BPF_REG_10, -4, 0),
		R_MOV64_REG(BPF_REG_2, BPF_REG_10),
		R_ADD64_IMM(BPF_REG_2, -4),
		R_LD_MAP_FD(BPF_REG_1, counter_fd),
		R_CALL(BPF_FUNC_map_lookup_elem),
		R_JEQ_IMM(BPF_REG_0, 0, 3),
		R_LDX(BPF_DW, BPF_REG_1, BPF_REG_0, 0),
		R_ADD64_IMM(BPF_REG_1, 1),
		R_STX(BPF_DW, BPF_REG_0, BPF_REG_1, 0),
		R_MOV64_IMM(BPF_REG_0, XDP_DROP),
		R_EXIT(),
	};
	return load_xdp_insns("xsk_ref_drop", insns, sizeof(insns) / sizeof(insns[0]));
}

/* Attach through a BPF link, not netlink: the kernel detaches the program when the
 * last fd of the link closes, so even a SIGKILLed run leaves no program behind. */
static inline int attach_xdp_link(int prog_fd, int ifindex, __u32 xdp_flags)
{
	LIBBPF_OPTS(bpf_link_create_opts, o, .flags = xdp_flags);
	int fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &o);

	if (fd < 0) {
		int err = errno;

		fprintf(stderr, "bpf_link_create(XDP, ifindex %d, flags 0x%x): %s%s\n", ifindex,
			xdp_flags, strerror(err),
			err == EBUSY || err == EEXIST ? " (another XDP program is attached)" : "");
		errno = err;
	}
	return fd;
}

/* A counting XDP_DROP program on an interface: what a benchmark puts on the far end
 * of a veth so the sender is measured against a sink that costs almost nothing. */
struct drop_counter {
	int map_fd;
	int prog_fd;
	int link_fd;
	int ncpus;
};

static inline int drop_counter_attach(struct drop_counter *dc, int ifindex, __u32 xdp_flags)
{
	long n = sysconf(_SC_NPROCESSORS_CONF);

	dc->map_fd = dc->prog_fd = dc->link_fd = -1;
	/* Per-CPU map values are laid out for every *possible* CPU; libbpf's helper
	 * reads that count from sysfs, sysconf is a safe upper bound check below. */
	dc->ncpus = libbpf_num_possible_cpus();
	if (dc->ncpus <= 0)
		dc->ncpus = n > 0 ? (int)n : 1;
	dc->map_fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "xsk_ref_cnt", 4, 8, 1, NULL);
	if (dc->map_fd < 0) {
		perror("bpf_map_create(PERCPU_ARRAY)");
		return -1;
	}
	dc->prog_fd = load_count_drop_prog(dc->map_fd);
	if (dc->prog_fd < 0)
		return -1;
	dc->link_fd = attach_xdp_link(dc->prog_fd, ifindex, xdp_flags);
	return dc->link_fd < 0 ? -1 : 0;
}

static inline unsigned long long drop_counter_read(const struct drop_counter *dc)
{
	unsigned long long vals[1024];
	unsigned long long sum = 0;
	__u32 key = 0;

	if (dc->map_fd < 0 || dc->ncpus > 1024)
		return 0;
	if (bpf_map_lookup_elem(dc->map_fd, &key, vals))
		return 0;
	for (int i = 0; i < dc->ncpus; i++)
		sum += vals[i];
	return sum;
}

static inline void drop_counter_close(struct drop_counter *dc)
{
	if (dc->link_fd >= 0)
		close(dc->link_fd);
	if (dc->prog_fd >= 0)
		close(dc->prog_fd);
	if (dc->map_fd >= 0)
		close(dc->map_fd);
	dc->map_fd = dc->prog_fd = dc->link_fd = -1;
}

/* ---- the test frame: Ethernet + IPv4 + UDP, payload tagged ------------- */

/* Payload tag so tests can tell these frames from the namespace's own IPv6 chatter. */
#define REF_PAYLOAD_TAG "XSKREF01"
#define REF_MIN_FRAME (14 + 20 + 8)

static inline int iface_mac(const char *ifname, unsigned char mac[6])
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	int rc;

	if (fd < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	rc = ioctl(fd, SIOCGIFHWADDR, &ifr);
	close(fd);
	if (rc < 0)
		return -1;
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	return 0;
}

static inline int parse_mac(const char *s, unsigned char mac[6])
{
	unsigned int b[6];

	if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
		return -1;
	for (int i = 0; i < 6; i++) {
		if (b[i] > 0xff)
			return -1;
		mac[i] = (unsigned char)b[i];
	}
	return 0;
}

static inline uint16_t ip_csum(const uint8_t *p, size_t n)
{
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* Write a UDP/IPv4 frame of exactly `len` bytes (no FCS: veth has none).
 * 10.0.0.1:9000 -> 10.0.0.2:9001; the UDP checksum is 0 ("none"), legal in IPv4. */
static inline void build_udp_frame(uint8_t *f, size_t len, const unsigned char src[6],
			    const unsigned char dst[6])
{
	size_t ip_len = len - 14, udp_len = len - 34;
	uint8_t *ip = f + 14, *udp = f + 34;

	memset(f, 0, len);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = 0x08; /* ETH_P_IP */
	f[13] = 0x00;
	ip[0] = 0x45;
	ip[2] = (uint8_t)(ip_len >> 8);
	ip[3] = (uint8_t)ip_len;
	ip[6] = 0x40; /* DF */
	ip[8] = 64;   /* TTL */
	ip[9] = 17;   /* UDP */
	ip[12] = 10, ip[13] = 0, ip[14] = 0, ip[15] = 1;
	ip[16] = 10, ip[17] = 0, ip[18] = 0, ip[19] = 2;
	uint16_t c = ip_csum(ip, 20);
	ip[10] = (uint8_t)(c >> 8);
	ip[11] = (uint8_t)c;
	udp[0] = 9000 >> 8, udp[1] = 9000 & 0xff;
	udp[2] = 9001 >> 8, udp[3] = 9001 & 0xff;
	udp[4] = (uint8_t)(udp_len >> 8);
	udp[5] = (uint8_t)udp_len;
	size_t room = udp_len - 8, tag = strlen(REF_PAYLOAD_TAG);
	memcpy(udp + 8, REF_PAYLOAD_TAG, room < tag ? room : tag);
	for (size_t i = tag; i < room; i++)
		udp[8 + i] = (uint8_t)i;
}

#endif
