"""``xdp-socket filter EXPR``: listings, the verifier's verdict, and one-line
errors for what libpcap refuses, what cannot be translated, and a missing
libpcap."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from xdp_socket import LibpcapMissingError
from xdp_socket._sys import pcap as P

CLI = [sys.executable, "-m", "xdp_socket"]

try:
    P.compile_expression("ip")
    _HAVE_LIBPCAP = True
except OSError:
    _HAVE_LIBPCAP = False
needs_libpcap = pytest.mark.skipif(not _HAVE_LIBPCAP, reason="libpcap missing")


def run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", code] if code else [*CLI, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@needs_libpcap
@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="the verifier check needs root")
def test_listing_and_verdict() -> None:
    r = run("filter", "udp", "port", "53")  # words joined as tcpdump does
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "classic BPF (20 instructions, as tcpdump -d):"
    tcpdump = shutil.which("tcpdump")
    if tcpdump:
        want = subprocess.run([tcpdump, "-d", "-y", "EN10MB", "udp port 53"],
                              capture_output=True, text=True, check=True).stdout.splitlines()
        assert out[1:1 + len(want)] == want
    assert any(line.startswith("eBPF for XDP (") for line in out)
    assert any(line.endswith("call 51") for line in out)  # bpf_redirect_map
    assert out[-1] == "verifier: accepted"


@needs_libpcap
@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="the verifier check needs root")
def test_json() -> None:
    r = run("filter", "vlan and tcp[tcpflags] & tcp-syn != 0", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["expression"] == "vlan and tcp[tcpflags] & tcp-syn != 0"
    assert doc["accepted"] is True and doc["verifier"] == "accepted"
    assert doc["classic"][0] == "(000) ldh      [12]"
    assert doc["ebpf"][0] == "r6 = r1"


@needs_libpcap
def test_no_verify_loads_nothing() -> None:
    r = run("filter", "--no-verify", "--json", "ip6 and udp dst port 4789")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["accepted"] is None and doc["verifier"] == "not checked"


@needs_libpcap
def test_bad_expression_is_a_usage_error_in_libpcaps_words() -> None:
    r = run("filter", "udp port")
    assert r.returncode == 2
    assert one_line(r) == ("xdp-socket filter: bad filter expression: "
                           "can't parse filter expression: syntax error")


@needs_libpcap
def test_untranslatable_names_the_instruction() -> None:
    r = run("filter", "--no-verify", "ip6 protochain 6")
    assert r.returncode == 1
    line = one_line(r)
    assert line.startswith("xdp-socket filter: cannot translate classic BPF instruction (018) ja")
    assert "backward jump" in line


_NO_LIBPCAP = """
import ctypes.util, sys
from xdp_socket._sys import pcap
pcap._LIBRARY_NAMES = ("libpcap-not-here.so.9",)
ctypes.util.find_library = lambda name: None
from xdp_socket.cli.main import main
sys.exit(main(["filter", "--no-verify", "ip"]))
"""


def test_missing_libpcap_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    r = run(code=_NO_LIBPCAP)
    assert r.returncode == 1
    line = one_line(r)
    assert "libpcap is not installed" in line and "libpcap0.8" in line

    # and in-process: the error type, and nothing else needs libpcap
    import ctypes.util

    monkeypatch.setattr(P, "_lib", None)
    monkeypatch.setattr(P, "_LIBRARY_NAMES", ("libpcap-not-here.so.9",))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(LibpcapMissingError) as ei:
        P.compile_expression("ip")
    assert ei.value.errno is not None and "libpcap0.8" in str(ei.value)


@needs_libpcap
@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="the verifier check needs root")
def test_refused_program_exits_1_with_the_log(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import xdp_socket.filter as F
    from xdp_socket._sys import bpf_asm as A
    from xdp_socket.cli.main import main

    # a program the verifier must refuse: it reads r5, which nothing wrote
    monkeypatch.setattr(F, "translate", lambda cbpf, tail: A.mov64_reg(A.R0, A.R5) + A.exit_())
    assert main(["filter", "ip"]) == 1
    out = capsys.readouterr().out
    assert "verifier: REFUSED" in out and "R5 !read_ok" in out
