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
    monkeypatch.setattr(cli_main, "build_parser", lambda: _with_func(parser(), boom))
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
