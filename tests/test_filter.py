"""tcpdump filters as XDP programs: the translation must give libpcap's own
verdict (``pcap_offline_filter``, libpcap's classic BPF interpreter) for
every frame of a corpus, run in the kernel under BPF_PROG_TEST_RUN.

The program under test is the real one (``filter_program_insns``): its
XSKMAP holds an AF_XDP socket at queue 0 of a veth, so a match returns
XDP_REDIRECT (4) and a miss XDP_PASS (2) - an empty slot would make both
XDP_PASS and the test blind.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest

from xdp_socket import XdpConfig, create_rx_socket, testing
from xdp_socket._sys import bpf
from xdp_socket._sys import bpf_asm as A
from xdp_socket._sys import consts as C
from xdp_socket._sys import pcap as P
from xdp_socket.errors import FilterError, UntranslatableFilterError
from xdp_socket.filter import (
    PASS_TAIL,
    CbpfInsn,
    classic_listing,
    compile_filter,
    describe_filter,
    filter_program_insns,
    translate,
)
from xdp_socket.frames import build_udp_frame

scapy_all = pytest.importorskip("scapy.all")
Ether, Dot1Q, IP, IPv6, UDP, TCP, ICMP, ARP = (
    scapy_all.Ether, scapy_all.Dot1Q, scapy_all.IP, scapy_all.IPv6, scapy_all.UDP,
    scapy_all.TCP, scapy_all.ICMP, scapy_all.ARP)
ICMPv6EchoRequest, IPv6ExtHdrHopByHop = scapy_all.ICMPv6EchoRequest, scapy_all.IPv6ExtHdrHopByHop

try:
    P.compile_expression("ip")
except OSError as e:  # LibpcapMissingError
    pytest.skip(f"libpcap missing: {e}", allow_module_level=True)

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
BCAST = "ff:ff:ff:ff:ff:ff"


def _corpus() -> list[bytes]:
    """Frames of every kind the expressions below tell apart, plus truncated
    ones that exercise the bounds checks."""
    f: list[bytes] = []
    # IPv4/UDP from the project's frame builder: ports, addresses, sizes, TTLs
    for sport, dport in ((9000, 5000), (5000, 9000), (1234, 53), (4789, 4789), (1500, 2000),
                         (999, 2001), (20, 25)):
        f.append(build_udp_frame(sport=sport, dport=dport))
    f.append(build_udp_frame(src_ip="192.168.1.5", dst_ip="8.8.8.8", dport=53, frame_size=200))
    f.append(build_udp_frame(src_ip="10.1.2.3", dst_ip="10.255.0.1", frame_size=1000))
    f.append(build_udp_frame(dst_mac=BCAST, dst_ip="255.255.255.255", dport=67, ttl=1))
    f.append(build_udp_frame(dst_mac="01:00:5e:00:00:fb", dst_ip="224.0.0.251", dport=5353))
    f.append(build_udp_frame(ttl=0, dport=5000))  # A / X with X == 0 below
    f.append(build_udp_frame(frame_size=1514, dport=5000,
                             payload=b"xdp-socket payload tag"))
    # IPv4 with options (IHL 6): indirect loads must use X, not 20
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2",
                                                  options=[b"\x01\x01\x01\x00"])
                   / UDP(sport=7, dport=5000) / b"opt"))
    # IPv4 fragments: the first carries the UDP header, the second does not
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF")
                   / UDP(sport=1, dport=5000) / (b"a" * 40)))
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2", frag=5,
                                                  proto=17) / (b"\x13\x88\x13\x88" + b"b" * 30)))
    # IPv4/TCP with various flags and ports
    for flags, sport, dport in (("S", 40000, 22), ("SA", 22, 40000), ("F", 80, 1025),
                                ("R", 443, 5000), ("PA", 5000, 80), ("FPU", 1, 2)):
        f.append(bytes(Ether(src=MAC2, dst=MAC1) / IP(src="10.0.0.2", dst="192.168.7.7")
                       / TCP(sport=sport, dport=dport, flags=flags)))
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
                   / TCP(sport=40001, dport=22, flags="S", options=[("MSS", 1460), ("NOP", None),
                                                                    ("WScale", 7)])))
    # ICMP echo request / reply
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
                   / ICMP(type=8) / b"ping"))
    f.append(bytes(Ether(src=MAC2, dst=MAC1) / IP(src="10.0.0.2", dst="10.0.0.1")
                   / ICMP(type=0) / b"pong"))
    # IPv6: UDP, TCP, ICMPv6, a hop-by-hop header before UDP
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / IPv6(src="fe80::1", dst="fe80::2")
                   / UDP(sport=5000, dport=5000)))
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / IPv6(src="2001:db8::1", dst="2001:db8::2")
                   / TCP(sport=33000, dport=80, flags="S")))
    f.append(bytes(Ether(src=MAC1, dst="33:33:00:00:00:01") / IPv6(src="fe80::1", dst="ff02::1")
                   / ICMPv6EchoRequest()))
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / IPv6(src="fe80::1", dst="fe80::2")
                   / IPv6ExtHdrHopByHop() / UDP(sport=53, dport=53)))
    # 802.1Q: VLAN 100 and 200, IPv4 and IPv6 inside, and a double tag
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=100)
                   / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=5000)))
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=200)
                   / IPv6(src="fe80::1", dst="fe80::2") / UDP(dport=53)))
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=200)
                   / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=22, flags="S")))
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=100) / Dot1Q(vlan=300)
                   / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=5000)))
    # ARP request and reply, a local experimental ethertype
    f.append(bytes(Ether(src=MAC1, dst=BCAST) / ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2")))
    f.append(bytes(Ether(src=MAC2, dst=MAC1) / ARP(op=2, psrc="10.0.0.2", pdst="10.0.0.1")))
    f.append(testing.make_frame(BCAST, "02:00:00:00:00:03", 0x88B5, b"local experimental"))
    # Truncated frames: headers cut short, so loads fall past data_end
    full_udp = build_udp_frame(dport=5000)
    full_tcp = bytes(Ether(src=MAC1, dst=MAC2) / IP(src="10.0.0.1", dst="10.0.0.2")
                     / TCP(dport=22, flags="S"))
    for cut in (14, 16, 23, 30, 34, 36, 38):
        f.append(full_udp[:cut])
    for cut in (40, 47, 48):
        f.append(full_tcp[:cut])
    f.append(bytes(Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=100))[:17])
    return f


CORPUS = _corpus()

# At least 40 expressions: hosts, nets, ports, ranges, protocols, vlan, ip6,
# tcp flags, ether[...], and/or/not, lengths, arithmetic.
EXPRESSIONS = [
    "",
    "udp port 5000",
    "udp dst port 4789",
    "tcp port 22",
    "port 53",
    "src port 5000",
    "portrange 1000-2000",
    "tcp portrange 20-25 or udp portrange 50-60",
    "host 10.0.0.1",
    "src host 10.0.0.1 and dst host 10.0.0.2",
    "dst host 8.8.8.8",
    "net 10.0.0.0/8",
    "src net 192.168.0.0/16",
    "not net 10.0.0.0/8",
    "ip",
    "ip6",
    "arp",
    "icmp",
    "icmp6",
    "tcp",
    "udp",
    "ip proto 17",
    "ip6 and udp",
    "ip6 and tcp port 80",
    "ip6 host fe80::1",
    "ip6[6] = 17",
    "vlan",
    "vlan 100",
    "vlan and udp port 5000",
    "vlan 200 and ip6",
    "vlan 100 and vlan 300",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] == tcp-syn",
    "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0 and not src port 22",
    "tcp dst port 80 and tcp[tcpflags] & tcp-push != 0",
    "tcp[12] >> 4 > 5",
    "icmp[icmptype] = icmp-echo",
    "ether[0] & 1 != 0",
    "ether broadcast",
    "ether multicast",
    "ether host 02:00:00:00:00:01",
    "ether src 02:00:00:00:00:01 and ether dst ff:ff:ff:ff:ff:ff",
    "ether proto 0x88b5",
    "ether[12:2] = 0x0800",
    "ip multicast",
    "len > 100",
    "len <= 64",
    "greater 500",
    "less 80",
    "len - 14 = ip[2:2]",
    "ip[8] = 64",
    "ip[2:2] > 100",
    "ip[6:2] & 0x1fff != 0",
    "udp[0:2] = 5000",
    "udp[8:4] = 0x7864702d",
    "ip and not udp and not tcp",
    "(tcp or udp) and not port 22",
    "udp and ip[0] & 0xf > 5",
    "ip[2:2] / 4 * 4 = ip[2:2]",
    "ip[2:2] % 7 = 4",
    "ip[2:2] / ip[8] > 0",
    "ip[2:2] % ip[8] = 0",
    "ip[1] | 1 = 1 and ip[8] ^ 0xff > 128",
    "ip[8] << 1 > 100 and ip[8] >> 2 = 16",
    "ip[2:2] - 20 > 30 and 0 - ip[8] != 0",
    "ip[2:2] & ip[8] = ip[8]",
]
assert len(EXPRESSIONS) >= 40


@pytest.fixture(scope="module")
def xsk_in_map() -> Iterator[tuple[int, int]]:
    """(XSKMAP fd, veth ifindex) with an AF_XDP socket in slot 0."""
    if os.geteuid() != 0 or not testing.in_private_netns():
        pytest.skip("needs root in the test namespace")
    with testing.veth_pair() as pair:
        map_fd = bpf.map_create(C.BPF_MAP_TYPE_XSKMAP, 4, 4, 1, "xsk_py_ftest")
        try:
            with create_rx_socket(pair.a, 0, XdpConfig(xskmap_fd=map_fd, frame_count=64)):
                yield map_fd, pair.a_index
        finally:
            os.close(map_fd)


def _run(prog_fd: int, ifindex: int, frame: bytes) -> int:
    # struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress
    md = struct.pack("=6I", 0, len(frame), 0, ifindex, 0, 0)
    return bpf.prog_test_run(prog_fd, frame, ctx=md).retval


def _check_against_libpcap(cbpf: list[CbpfInsn], map_fd: int, ifindex: int,
                           what: str) -> int:
    insns = filter_program_insns(map_fd, cbpf)
    prog_fd = bpf.prog_load(C.BPF_PROG_TYPE_XDP, insns, "GPL", "xsk_py_ftest")
    matched = 0
    try:
        for i, frame in enumerate(CORPUS):
            want = C.XDP_REDIRECT if P.offline_filter(cbpf, frame) else C.XDP_PASS
            got = _run(prog_fd, ifindex, frame)
            assert got == want, (
                f"{what!r}: frame {i} ({frame[:40].hex()}...) libpcap says "
                f"{'match' if want == C.XDP_REDIRECT else 'no match'}, XDP returned {got}\n"
                + "\n".join(classic_listing(cbpf)) + "\n---\n"
                + "\n".join(A.disassemble(insns)))
            matched += want == C.XDP_REDIRECT
    finally:
        os.close(prog_fd)
    return matched


@pytest.mark.kernel
@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_same_verdict_as_libpcap(xsk_in_map: tuple[int, int], expr: str,
                                 optimize: bool) -> None:
    map_fd, ifindex = xsk_in_map
    cbpf = compile_filter(expr, optimize=optimize)
    _check_against_libpcap(cbpf, map_fd, ifindex, expr)


@pytest.mark.kernel
def test_corpus_tells_the_expressions_apart(xsk_in_map: tuple[int, int]) -> None:
    """A corpus where most expressions match nothing (or everything) would
    make the table above pass for a broken translation: each expression must
    match some frames and miss others (the match-all one aside)."""
    map_fd, ifindex = xsk_in_map
    for expr in EXPRESSIONS[1:]:
        n = _check_against_libpcap(compile_filter(expr), map_fd, ifindex, expr)
        assert 0 < n < len(CORPUS), f"{expr!r} matches {n} of {len(CORPUS)} frames"


def _k(v: int) -> int:
    return v & 0xFFFFFFFF


# Hand-written classic programs for what libpcap's compiler rarely emits.
RAW_PROGRAMS: dict[str, list[CbpfInsn]] = {
    # ret A: accept iff the ethertype is nonzero after masking
    "ret a": [CbpfInsn(0x28, 0, 0, 12), CbpfInsn(0x54, 0, 0, 0x0800), CbpfInsn(0x16, 0, 0, 0)],
    # ldx len; txa; ret a  (every frame is longer than 0)
    "ldx len, txa": [CbpfInsn(0x81, 0, 0, 0), CbpfInsn(0x87, 0, 0, 0),
                     CbpfInsn(0x16, 0, 0, 0)],
    # st/stx/ld mem/ldx mem, tax, jgt x: M[3] = P[23]; M[4] = 10; A = M[3]; X = M[4]; A > X?
    "scratch": [CbpfInsn(0x30, 0, 0, 23), CbpfInsn(0x02, 0, 0, 3), CbpfInsn(0x01, 0, 0, 10),
                CbpfInsn(0x03, 0, 0, 4), CbpfInsn(0x60, 0, 0, 3), CbpfInsn(0x61, 0, 0, 4),
                CbpfInsn(0x3D, 0, 1, 0), CbpfInsn(0x06, 0, 0, 1), CbpfInsn(0x06, 0, 0, 0)],
    # msh + ld ind word: X = IP header length; A = P[X + 14 + 4] (UDP len + csum)
    "msh ind": [CbpfInsn(0xB1, 0, 0, 14), CbpfInsn(0x40, 0, 0, 18), CbpfInsn(0x15, 1, 0, 0),
                CbpfInsn(0x06, 0, 0, 1), CbpfInsn(0x06, 0, 0, 0)],
    # neg, jset x, ja
    "neg jset ja": [CbpfInsn(0x30, 0, 0, 22), CbpfInsn(0x84, 0, 0, 0), CbpfInsn(0x01, 0, 0, 3),
                    CbpfInsn(0x45 | 0x08, 0, 1, 0), CbpfInsn(0x05, 0, 0, 1),
                    CbpfInsn(0x06, 0, 0, 0), CbpfInsn(0x06, 0, 0, 0xFFFF)],
    # a word compare with the top bit set (jmp32 must not sign-extend)
    "k >= 2**31": [CbpfInsn(0x20, 0, 0, 0), CbpfInsn(0x25, 0, 1, 0x80000000),
                   CbpfInsn(0x06, 0, 0, 1), CbpfInsn(0x06, 0, 0, 0)],
    # an absolute load far beyond any frame: rejects everything
    "far load": [CbpfInsn(0x20, 0, 0, 70000), CbpfInsn(0x06, 0, 0, 1)],
    # ld ind with a large k
    "ind far": [CbpfInsn(0x01, 0, 0, 2), CbpfInsn(0x50, 0, 0, 40000), CbpfInsn(0x06, 0, 0, 1)],
    # unreachable code after ret (the verifier refuses unreachable eBPF)
    "dead code": [CbpfInsn(0x06, 0, 0, 1), CbpfInsn(0x28, 0, 0, 12), CbpfInsn(0x06, 0, 0, 0)],
}


@pytest.mark.kernel
@pytest.mark.parametrize("name", list(RAW_PROGRAMS))
def test_raw_classic_programs(xsk_in_map: tuple[int, int], name: str) -> None:
    map_fd, ifindex = xsk_in_map
    _check_against_libpcap(RAW_PROGRAMS[name], map_fd, ifindex, name)


@pytest.mark.kernel
def test_unwritten_scratch_reads_as_zero(xsk_in_map: tuple[int, int]) -> None:
    """``ld M[7]; ret a`` with nothing stored: libpcap's interpreter reads an
    uninitialised C array there (no reference verdict), the kernel's socket
    filters refuse such programs; the translation defines M[] as zeros."""
    map_fd, ifindex = xsk_in_map
    cbpf = [CbpfInsn(0x60, 0, 0, 7), CbpfInsn(0x16, 0, 0, 0)]
    prog_fd = bpf.prog_load(C.BPF_PROG_TYPE_XDP, filter_program_insns(map_fd, cbpf), "GPL",
                            "xsk_py_ftest")
    try:
        assert {_run(prog_fd, ifindex, frame) for frame in CORPUS} == {C.XDP_PASS}
    finally:
        os.close(prog_fd)


def test_invalid_expressions_give_libpcap_message() -> None:
    for expr, fragment in (("udp port", "syntax error"),
                           ("port 70000", "port"),
                           ("ip broadcast", "netmask"),
                           ("host not.a.host.invalid.", "host"),
                           ("vlan and ip6 and tcp[tcpflags] & tcp-syn != 0",
                            "rejects all packets")):
        with pytest.raises(FilterError) as ei:
            compile_filter(expr)
        msg = str(ei.value)
        assert fragment in msg, msg
        assert "\n" not in msg
        assert ei.value.expression == expr


@pytest.mark.parametrize(("prog", "index", "fragment"), [
    ([CbpfInsn(0x20, 0, 0, _k(-4096 + 44)), CbpfInsn(0x06, 0, 0, 1)], 0, "ancillary"),
    ([CbpfInsn(0x30, 0, 0, 0), CbpfInsn(0x64, 0, 0, 32), CbpfInsn(0x16, 0, 0, 0)], 1,
     "shift by 32"),
    ([CbpfInsn(0x30, 0, 0, 0), CbpfInsn(0x34, 0, 0, 0), CbpfInsn(0x16, 0, 0, 0)], 1,
     "constant 0"),
    ([CbpfInsn(0x30, 0, 0, 0), CbpfInsn(0x02, 0, 0, 16), CbpfInsn(0x06, 0, 0, 0)], 1,
     "16 words"),
    ([CbpfInsn(0x30, 0, 0, 0), CbpfInsn(0x15, 0, 5, 1), CbpfInsn(0x06, 0, 0, 0)], 1,
     "past the end"),
    ([CbpfInsn(0x30, 0, 0, 0)], 0, "past the end"),
    ([CbpfInsn(0x0E, 0, 0, 0)], 0, "ret must return"),
    ([CbpfInsn(0xC7, 0, 0, 0), CbpfInsn(0x06, 0, 0, 0)], 0, "unknown"),
])
def test_untranslatable_names_instruction_and_reason(prog: list[CbpfInsn], index: int,
                                                      fragment: str) -> None:
    with pytest.raises(UntranslatableFilterError) as ei:
        translate(prog, PASS_TAIL)
    assert ei.value.index == index
    assert fragment in ei.value.reason
    assert f"({index:03d})" in str(ei.value)


def test_protochain_loop_is_refused_with_the_reason() -> None:
    with pytest.raises(UntranslatableFilterError) as ei:
        filter_program_insns(0, "ip6 protochain 6")
    assert "backward jump" in ei.value.reason and "protochain" in ei.value.reason
    assert " ja " in f" {ei.value.instruction} "


def test_classic_listing_matches_tcpdump_d() -> None:
    import shutil
    import subprocess

    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump not installed")
    expr = "udp port 5000 or (vlan and tcp[tcpflags] & tcp-syn != 0)"
    out = subprocess.run([tcpdump, "-d", "-y", "EN10MB", expr], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert classic_listing(compile_filter(expr)) == out


@pytest.mark.kernel
def test_describe_filter_reports_verifier_verdict() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to load programs")
    r = describe_filter("udp port 5000")
    assert r.accepted is True and r.verifier == "accepted"
    assert r.classic[0].startswith("(000) ldh")
    assert any("call 51" in line for line in r.ebpf)  # bpf_redirect_map
    r2 = describe_filter("udp port 5000", verify=False)
    assert r2.accepted is None and r2.classic == r.classic


@pytest.mark.kernel
def test_describe_filter_reports_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the verifier refuses the program, the report says so with its log
    (forced here with a program that reads a register nothing wrote)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to load programs")
    import xdp_socket.filter as F

    monkeypatch.setattr(F, "translate", lambda cbpf, tail: A.mov64_reg(A.R0, A.R5) + A.exit_())
    r = F.describe_filter("ip")
    assert r.accepted is False
    assert "R5 !read_ok" in r.verifier and "load BPF program" in r.verifier
