"""The command line's contract for bad input: one line on stderr, no
traceback, exit code 1 (runtime) or 2 (usage); plus the subcommand plumbing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xdp_socket import testing
from xdp_socket.cli import main as cli_main

CLI = [sys.executable, "-m", "xdp_socket"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)


def one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_every_listed_subcommand_is_registered() -> None:
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = set(sub.choices)  # type: ignore[arg-type]
    assert {"info", "capture", "replay"} <= names
    assert names <= set(cli_main.SUBCOMMANDS)


def test_a_command_imports_only_its_own_module() -> None:
    # main() registers just the subcommand its command line names (start-up
    # time: replay is compared with tcpreplay by its whole run); a command
    # that is not one still gets the full list in its error.
    code = ("import sys; from xdp_socket.cli import main as m\n"
            "p = m.build_parser('filter')\n"
            "sub = next(a for a in p._actions if a.dest == 'command')\n"
            "print(sorted(sub.choices), sorted(k for k in sys.modules\n"
            "      if k.startswith('xdp_socket.cli.') and k.split('.')[-1] in m.SUBCOMMANDS))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['filter'] ['xdp_socket.cli.filter']"
    r = run("no-such-command")
    assert r.returncode == 2
    assert "invalid choice" in r.stderr and "replay" in r.stderr and "capture" in r.stderr
    r = run("filter", "--help")
    assert r.returncode == 0 and "usage: xdp-socket filter" in r.stdout


def test_no_command_is_a_usage_error() -> None:
    r = run()
    assert r.returncode == 2
    assert "usage: xdp-socket" in r.stderr


@pytest.mark.parametrize("cmd", ["info", "capture", "replay"])
def test_help_has_examples(cmd: str) -> None:
    r = run(cmd, "--help")
    assert r.returncode == 0
    assert "examples:" in r.stdout and f"xdp-socket {cmd}" in r.stdout


@pytest.mark.kernel
@pytest.mark.parametrize("cmd", [
    ["capture", "-i", "nosuchif0", "-w", "/dev/null"],
    ["replay", "/dev/null", "-i", "nosuchif0"],
])
def test_unknown_interface(cmd: list[str]) -> None:
    r = run(*cmd)
    assert r.returncode == 2
    assert one_line(r).endswith("no such interface: nosuchif0")


@pytest.mark.kernel
def test_bad_tx_queue(veth: testing.VethPair, tmp_path: Path) -> None:
    r = run("replay", "/dev/null", "-i", veth.a, "-q", "1")
    assert r.returncode == 2
    assert "has 1 TX queue (0..0); queue 1 does not exist" in one_line(r)


@pytest.mark.kernel
def test_missing_file(veth: testing.VethPair, tmp_path: Path) -> None:
    r = run("replay", str(tmp_path / "missing.pcap"), "-i", veth.a)
    assert r.returncode == 1
    assert "No such file or directory" in one_line(r)


@pytest.mark.parametrize("args", [
    ["replay", "x.pcap", "-i", "lo", "--pps", "0"],
    ["replay", "x.pcap", "-i", "lo", "--pps", "nan"],
    ["replay", "x.pcap", "-i", "lo", "--pps", "5", "--topspeed"],
    ["capture", "-i", "lo", "-w", "x", "-c", "-3"],
    ["capture", "-i", "lo", "-w", "x", "-q", "1", "--all-queues"],
    ["capture", "-i", "lo", "-w", "x", "--xdp-mode", "hw"],
])
def test_bad_arguments_are_usage_errors(args: list[str]) -> None:
    r = run(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_missing_subcommand_module_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", ("info", "no_such_tool"))
    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"info"}  # type: ignore[arg-type]


def test_permission_error_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from xdp_socket.errors import xdp_error

    def boom(args: object) -> int:
        raise xdp_error(1, "create AF_XDP socket", "eth9", 0)

    parser = cli_main.build_parser
    monkeypatch.setattr(cli_main, "build_parser",
                        lambda only=None: _with_func(parser(only), boom))
    assert cli_main.main(["info"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("xdp-socket info: permission denied: create AF_XDP socket on eth9")
    assert "\n" not in err


def _with_func(parser: object, func: object) -> object:
    parser.set_defaults(func=func)  # type: ignore[attr-defined]
    # set_defaults on the parent does not reach subparsers' defaults; patch info's parser.
    sub = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
    sub.choices["info"].set_defaults(func=func)
    return parser


# --- edge inputs (issue 7 item 7): one line, the right exit code, never a traceback ----


@pytest.mark.parametrize("index", [
    "18446744073709551616",  # past 2**64: if_indextoname() raised OverflowError
    "4294967297",  # 2**32 + 1: was looked up as index 1 (lo), then struct.error
    "2147483648",  # past the kernel's int ifindex
    "²",  # str.isdigit() is true for it, int() refuses it
])
@pytest.mark.parametrize("cmd", [
    ["capture", "-w", "/dev/null", "-c", "1", "-i"],
    ["replay", "/dev/null", "-i"],
    ["gen", "-c", "1", "-i"],
    ["info"],
])
def test_out_of_range_or_odd_interface_index(cmd: list[str], index: str) -> None:
    r = run(*cmd, index)
    assert r.returncode == 2, r.stderr
    assert one_line(r).endswith(f"no such interface: {index}")


def test_interface_index_zero_is_a_usage_error() -> None:
    r = run("info", "0")
    assert r.returncode == 2
    assert "interface index must be positive" in one_line(r)


@pytest.mark.kernel
def test_info_with_stdout_closed() -> None:
    r = subprocess.run(["sh", "-c", 'exec "$0" -m xdp_socket info >&-', sys.executable],
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 1
    assert one_line(r) == "xdp-socket info: standard output is closed"


@pytest.mark.kernel
def test_replay_from_closed_stdin(veth: testing.VethPair) -> None:
    r = subprocess.run(["sh", "-c", f'exec "$0" -m xdp_socket replay - -i {veth.a} <&-',
                        sys.executable], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert one_line(r) == "xdp-socket replay: standard input is closed"


@pytest.mark.kernel
def test_capture_to_closed_stdout_writes_nothing_elsewhere(veth: testing.VethPair) -> None:
    # With fd 1 closed, a later open() could have been given fd 1 and received
    # the capture; the CLI holds fd 1 on /dev/null and reports the closed stdout.
    r = subprocess.run(["sh", "-c", f'exec "$0" -m xdp_socket capture -i {veth.b} -w - '
                        '-c 1 -d 0.5 >&-', sys.executable],
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert r.returncode == 1
    assert one_line(r) == "xdp-socket capture: standard output is closed"


@pytest.mark.kernel
def test_error_with_stderr_closed_keeps_its_exit_code() -> None:
    r = subprocess.run(["sh", "-c", 'exec "$0" -m xdp_socket info nosuchif0 2>&-',
                        sys.executable], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stdout == ""


@pytest.mark.kernel
@pytest.mark.timeout(60)
def test_gen_tiny_rate_with_a_duration_ends_on_time(veth: testing.VethPair) -> None:
    import json
    import time

    from xdp_socket.gen import xdp_drop

    with xdp_drop(veth.b) as sink:
        t = time.monotonic()
        r = run("gen", "-i", veth.a, "--rate", "1e-300", "-d", "1", "--json")
        wall = time.monotonic() - t
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        out = json.loads(r.stdout)
        # the first tick's one frame leaves at once; the next is 1e300 s away
        assert out["packets"] == 1 == sink.count()
        assert 0.9 <= out["seconds"] <= 1.5
        assert wall < 10


@pytest.mark.kernel
@pytest.mark.timeout(60)
def test_gen_tiny_rate_with_a_count_waits_and_stops_on_ctrl_c(veth: testing.VethPair) -> None:
    import json
    import signal
    import time

    from xdp_socket.gen import xdp_drop

    with xdp_drop(veth.b) as sink:
        p = subprocess.Popen(
            [*CLI, "gen", "-i", veth.a, "--rate", "1e-12", "-c", "2", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            time.sleep(2.5)  # the second frame is 1e12 s away: the run must still be waiting
            assert p.poll() is None
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == 130, err
        assert "Traceback" not in err and "Overflow" not in err
        summary = json.loads(out)
        assert summary["interrupted"] is True
        assert summary["packets"] == 1 == sink.count()
        assert summary["seconds"] < 10
