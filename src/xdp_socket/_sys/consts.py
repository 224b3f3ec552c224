"""Kernel constants, each with the header it comes from.

Values are part of the kernel's stable UAPI; they are spelled out here rather
than read from headers so that nothing needs a compiler at install time.
"""

from __future__ import annotations

# --- include/linux/socket.h -------------------------------------------------
AF_XDP = 44
SOL_XDP = 283

# --- include/uapi/linux/if_xdp.h ------------------------------------------
# sockaddr_xdp.sxdp_flags
XDP_SHARED_UMEM = 1 << 0
XDP_COPY = 1 << 1  # force copy mode
XDP_ZEROCOPY = 1 << 2  # force zero-copy mode
XDP_USE_NEED_WAKEUP = 1 << 3
XDP_USE_SG = 1 << 4  # multi-buffer (jumbo) support

# xdp_umem_reg.flags
XDP_UMEM_UNALIGNED_CHUNK_FLAG = 1 << 0

# SOL_XDP socket options
XDP_MMAP_OFFSETS = 1
XDP_RX_RING = 2
XDP_TX_RING = 3
XDP_UMEM_REG = 4
XDP_UMEM_FILL_RING = 5
XDP_UMEM_COMPLETION_RING = 6
XDP_STATISTICS = 7
XDP_OPTIONS = 8
XDP_MAX_TX_SKB_BUDGET = 9  # Linux 6.15+

# xdp_options.flags
XDP_OPTIONS_ZEROCOPY = 1 << 0

# Ring flags word (xdp_ring_offset.flags)
XDP_RING_NEED_WAKEUP = 1 << 0

# mmap page offsets of the four rings
XDP_PGOFF_RX_RING = 0
XDP_PGOFF_TX_RING = 0x80000000
XDP_UMEM_PGOFF_FILL_RING = 0x100000000
XDP_UMEM_PGOFF_COMPLETION_RING = 0x180000000

# xdp_desc.options
XDP_PKT_CONTD = 1 << 0  # multi-buffer: more fragments follow

# --- include/uapi/linux/bpf.h -----------------------------------------------
# XDP_PACKET_HEADROOM: the kernel reserves this much before packet data in
# every frame it receives into (copy mode), on top of the UMEM headroom.
XDP_PACKET_HEADROOM = 256

# XDP actions
XDP_ABORTED = 0
XDP_DROP = 1
XDP_PASS = 2
XDP_TX = 3
XDP_REDIRECT = 4

# --- include/uapi/linux/if_link.h -------------------------------------------
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3

# Largest interface index: the kernel's ifindex is a signed int (struct
# net_device.ifindex, rtnetlink.h struct ifinfomsg.ifi_index), positive when valid.
IFINDEX_MAX = (1 << 31) - 1

# IFLA_XDP_ATTACHED values
XDP_ATTACHED_NONE = 0
XDP_ATTACHED_DRV = 1
XDP_ATTACHED_SKB = 2
XDP_ATTACHED_HW = 3
XDP_ATTACHED_MULTI = 4

# --- include/uapi/asm-generic/mman-common.h / mman.h ---------------------------
MAP_HUGETLB = 0x40000
MAP_POPULATE = 0x8000

# --- include/uapi/linux/sched.h ----------------------------------------------
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000

# --- include/uapi/linux/mount.h ----------------------------------------------
MS_REC = 16384
MS_PRIVATE = 1 << 18

# Huge page size used for the UMEM when huge pages are asked for.
HUGE_PAGE_SIZE = 2 * 1024 * 1024

# --- include/uapi/linux/bpf.h: the bpf(2) syscall (added for _sys/bpf.py) -----
# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_LINK_CREATE = 28
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31

# enum bpf_map_type
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_XSKMAP = 17

# enum bpf_prog_type
BPF_PROG_TYPE_XDP = 6

# enum bpf_attach_type
BPF_XDP = 37

# enum bpf_link_type
BPF_LINK_TYPE_XDP = 6

# map update flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

# BPF_PROG_TEST_RUN flags
# BPF_PROG_LOAD prog_flags (bpf.h): the program copes with multi-buffer
# (fragmented) packets; Linux 5.18+. Without it, veth refuses native XDP when a
# frame can exceed a page (MTU above ~3500: ERANGE).
BPF_F_XDP_HAS_FRAGS = 1 << 5

BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1

# Length of prog/map names, including the terminating NUL (BPF_OBJ_NAME_LEN).
BPF_OBJ_NAME_LEN = 16

# enum bpf_func_id: helpers the built-in programs call
BPF_FUNC_redirect = 23
BPF_FUNC_redirect_map = 51
BPF_FUNC_xdp_get_buff_len = 188  # the whole frame's length, all buffers (Linux 5.18+)

# struct xdp_md field offsets (the XDP program's ctx)
XDP_MD_DATA = 0
XDP_MD_DATA_END = 4
XDP_MD_DATA_META = 8
XDP_MD_INGRESS_IFINDEX = 12
XDP_MD_RX_QUEUE_INDEX = 16
XDP_MD_EGRESS_IFINDEX = 20
XDP_MD_SIZE = 24

# --- arch syscall tables: __NR_bpf -------------------------------------------
NR_BPF = {"x86_64": 321, "aarch64": 280}

# --- include/uapi/linux/bpf.h: added for gen.py (live-frames generator, drop counter) ---
# enum bpf_func_id
BPF_FUNC_map_lookup_elem = 1
# Atomic memory operations: BPF_STX | size | BPF_ATOMIC, the operation in imm
BPF_ATOMIC = 0xC0
BPF_ATOMIC_ADD = 0x00  # BPF_ADD used as an atomic op (no BPF_FETCH)
