"""One behaviour for one kind of input across the subcommands: frame sizes,
batch sizes, the zero-copy hint, the demo's privilege error, and --help that
reads as plain text (no reST markup)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xdp_socket import testing
from xdp_socket.cli.main import SUBCOMMANDS

CLI = [sys.executable, "-m", "xdp_socket"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_help_is_plain_text(cmd: str) -> None:
    r = run(cmd, "--help")
    assert r.returncode == 0, r.stderr
    for markup in ("``", ":class:", ":func:", ":attr:", ":meth:", "**"):
        assert markup not in r.stdout, (cmd, markup)


@pytest.mark.kernel
def test_frame_size_refused_alike_by_gen_and_bench(veth: testing.VethPair) -> None:
    gen = one_line(run("gen", "-i", veth.a, "-s", "10", "-c", "1"))
    bench = one_line(run("bench", "txonly", "-i", veth.a, "-s", "10", "-d", "1"))
    assert gen == "xdp-socket gen: --size must be 60..3520 bytes (the longest live frame), got 10"
    assert bench == ("xdp-socket bench: --size must be 60..4096 bytes (the UMEM frame size, "
                     "--frame-size), got 10")
    r = run("bench", "txonly", "-i", veth.a, "-s", "2049", "--frame-size", "2048")
    assert r.returncode == 2 and "60..2048" in one_line(r)


@pytest.mark.kernel
@pytest.mark.parametrize("mode", ["rxdrop", "txonly", "l2fwd"])
def test_bench_batch_bounded_by_the_ring(veth: testing.VethPair, mode: str) -> None:
    r = run("bench", mode, "-i", veth.a, "-b", "100000", "-d", "1")
    assert r.returncode == 2
    assert one_line(r) == "xdp-socket bench: --batch must be 1..2048 (the ring size), got 100000"


@pytest.mark.kernel
def test_zero_copy_on_veth_gets_a_command_line_hint(veth: testing.VethPair) -> None:
    r = run("bench", "txonly", "-i", veth.a, "--zero-copy", "-d", "1")
    assert r.returncode == 1
    line = one_line(r)
    assert "no zero-copy AF_XDP support" in line and "leave out --zero-copy" in line
    assert "zero_copy=" not in line  # the Python API's spelling


def test_demo_privilege_error_names_cap_sys_admin() -> None:
    """The demo's first step is unshare(CLONE_NEWNET | CLONE_NEWNS): without
    CAP_SYS_ADMIN that is what fails, whatever other capabilities there are."""
    if subprocess.run(["setpriv", "--version"], capture_output=True).returncode != 0:
        pytest.skip("setpriv not installed")
    caps = "-sys_admin"
    r = subprocess.run(["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *CLI, "demo",
                        "-d", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    line = one_line(r)
    assert "private network namespace" in line and "CAP_SYS_ADMIN" in line
    assert "(needs root, or CAP_SYS_ADMIN)" in line


def _shape(line: str) -> str:
    import re

    line = re.sub(r"xt\d+x\d+[ab]", "IF", line)
    line = re.sub(r"\d[\d.,]*", "N", line)
    return " ".join(line.split())


@pytest.mark.kernel
def test_getting_started_shows_the_real_demo_output() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "getting-started.md").read_text()
    block = page.split("The output looks like this", 1)[1].split("```text\n", 1)[1]
    documented = [_shape(x) for x in block.split("```", 1)[0].splitlines() if x.strip()]
    r = run("demo", "-d", "1.2", timeout=60)
    assert r.returncode == 0, r.stderr
    real = {_shape(x) for x in (r.stderr + r.stdout).replace("\r", "\n").splitlines()}
    missing = [d for d in documented if d not in real]
    assert not missing, (missing, sorted(real))
