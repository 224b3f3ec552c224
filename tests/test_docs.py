"""The documentation site: every Python example in docs/*.md runs, the CLI
examples use only options the commands have, and ``mkdocs build --strict``
succeeds.

Examples run as tests/test_readme.py runs the README's: in the test process's
private network namespace, with a veth pair ``veth0 <-> veth1`` made for each
one (examples that need other links make their own with the test kit). A
block preceded by a ``<!-- norun -->`` line is not run: that marker is for
snippets that need a real NIC or another process, never for dodging a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from xdp_socket import testing

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
NORUN = "<!-- norun -->"
EXAMPLE_TIMEOUT_S = 60  # generous: the slowest example runs for about a second


def _blocks(page: Path, lang: str) -> list[tuple[int, str, bool]]:
    """``(line number, code, runnable)`` of every fenced ``lang`` block."""
    out: list[tuple[int, str, bool]] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == f"```{lang}":
            start = i
            prev = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
            i += 1
            body: list[str] = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise ValueError(f"{page.name}:{start + 1}: unterminated ```{lang} block")
            out.append((start + 1, "\n".join(body) + "\n", prev != NORUN))
        i += 1
    return out


EXAMPLES = [
    pytest.param(page, line, code, id=f"{page.name}:{line}")
    for page in PAGES
    for line, code, runnable in _blocks(page, "python")
    if runnable
]


def test_docs_have_pages_and_examples() -> None:
    names = {p.name for p in PAGES}
    for need in ("index.md", "getting-started.md", "api-tiers.md", "receive.md", "asyncio.md",
                 "pcap.md", "scapy.md", "testing.md", "gen.md", "cli.md",
                 "troubleshooting.md", "errors.md"):
        assert need in names
    assert len(EXAMPLES) >= 30


_PUBLIC_MODULES = ("xdp_socket", "xdp_socket.pcap", "xdp_socket.gen",
                   "xdp_socket.frames", "xdp_socket.drop",
                   "xdp_socket.testing", "xdp_socket.scapy_compat", "xdp_socket.errors",
                   "xdp_socket.filter", "xdp_socket.workers")
_CLASSES = ("TxSocket", "RxSocket", "RxBatch", "TxBatch", "XdpConfig", "Statistics", "RingViews",
            "Umem")


def test_every_public_name_is_documented() -> None:
    """Each name a public module exports, and each public member of the
    socket, batch and config classes, appears somewhere in the docs."""
    import xdp_socket

    text = "\n".join(p.read_text() for p in PAGES)
    missing = []
    for m in _PUBLIC_MODULES:
        if m.endswith("scapy_compat") and importlib.util.find_spec("scapy") is None:
            continue  # optional dependency
        missing += [f"{m}.{n}" for n in importlib.import_module(m).__all__ if n not in text]
    for cls in _CLASSES:
        for name in dir(getattr(xdp_socket, cls)):
            if not name.startswith("_") and name not in ("count", "index") and name not in text:
                missing.append(f"xdp_socket.{cls}.{name}")
    assert not missing, f"not mentioned in docs/: {missing}"


def test_norun_is_rare() -> None:
    """The marker is for real-NIC snippets: a handful at most."""
    skipped = [(p.name, ln) for p in PAGES for ln, _, ok in _blocks(p, "python") if not ok]
    assert len(skipped) <= 5, skipped


@contextlib.contextmanager
def _time_limit(seconds: int, what: str) -> Iterator[None]:
    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"{what} ran longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.kernel
@pytest.mark.parametrize(("page", "line", "code"), EXAMPLES)
def test_docs_example_runs(page: Path, line: int, code: str) -> None:
    where = f"docs/{page.name} line {line}"
    if "scapy" in code and importlib.util.find_spec("scapy") is None:
        pytest.skip("scapy is not installed (an optional dependency)")
    with testing.veth_pair("veth0", "veth1"), _time_limit(EXAMPLE_TIMEOUT_S, where):
        exec(compile(code, where, "exec"), {"__name__": f"docs_example_{page.stem}_{line}"})


# --- the command line examples ------------------------------------------------------

_COMMANDS = ("info", "capture", "replay", "demo", "bench", "gen", "filter")


def _help(command: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "xdp_socket", command, "--help"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout


def _cli_lines() -> list[tuple[str, list[str]]]:
    """Every ``xdp-socket COMMAND ...`` line of the docs' sh blocks, split."""
    out: list[tuple[str, list[str]]] = []
    for page in PAGES:
        for line, code, _ in _blocks(page, "sh"):
            for k, text in enumerate(code.replace("\\\n", " ").splitlines()):
                for part in text.split("|"):
                    try:
                        words = shlex.split(part, comments=True)
                    except ValueError:
                        continue
                    if words[:1] == ["sudo"]:
                        words = words[1:]
                    if words[:1] == ["xdp-socket"] and len(words) > 1:
                        out.append((f"{page.name}:{line + 1 + k}", words[1:]))
    return out


def test_cli_examples_use_real_options() -> None:
    lines = _cli_lines()
    seen = {words[0] for _, words in lines}
    assert set(_COMMANDS) <= seen, f"commands without an example: {set(_COMMANDS) - seen}"
    helps = {c: _help(c) for c in _COMMANDS}
    for where, words in lines:
        command = words[0]
        if command in ("--help", "--version", "-h"):
            continue
        assert command in helps, f"{where}: no command {command!r}"
        for word in words[1:]:
            if re.fullmatch(r"--?[A-Za-z][\w-]*", word):
                assert re.search(rf"(^|[\s,\[]){re.escape(word)}\b", helps[command]), (
                    f"{where}: `xdp-socket {command}` has no option {word}"
                )


# --- the site builds ------------------------------------------------------------------


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install mkdocs)")
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "index.html").is_file()
