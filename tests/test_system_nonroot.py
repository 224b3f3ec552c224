"""A socket program run as a non-root user (``nobody``) with exactly the
capabilities docs/without-root.md lists, started with the setpriv line the
page gives; and without one of them, the error the page promises."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import xdp_socket
from xdp_socket import testing

pytestmark = pytest.mark.kernel

NOBODY = 65534
CAPS = "+net_raw,+net_admin,+bpf,+ipc_lock"

PROGRAM = """
import os, sys
import xdp_socket as xs
a, b = sys.argv[1:3]
frame = bytes.fromhex("ffffffffffff020000000001") + b"\\x88\\xb5" + b"non-root".ljust(46)
with xs.create_rx_socket(b, 0) as rx, xs.create_tx_socket(a, 0) as tx:
    tx.send(frame)
    got = rx.recv(timeout=2.0)
print(os.getuid(), got == frame)
"""


def _unreachable_ancestor(path: Path) -> Path | None:
    """The first directory above ``path`` that others cannot enter (e.g. a
    pyenv interpreter under /root), or None."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & 0o001:
            return parent
    return None


def run_as_nobody(caps: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run PROGRAM as uid 65534 with ``caps`` (setpriv, as the docs say), in a
    child mount namespace where the interpreter is reachable for that user."""
    if shutil.which("setpriv") is None or shutil.which("unshare") is None:
        pytest.skip("needs setpriv and unshare (util-linux)")
    prefix = Path(sys.base_prefix).resolve()
    pkg = Path(xdp_socket.__file__).resolve().parent.parent
    if _unreachable_ancestor(pkg) is not None:
        pytest.skip(f"the package under test ({pkg}) is not readable for other users")
    prep = ["mount --make-rprivate /"]
    blocked = _unreachable_ancestor(prefix)
    keep = tempfile.mkdtemp()
    if blocked is not None:
        # Cover the closed directory with an open tmpfs (in this child's own
        # mount namespace only) and put the interpreter back at its old path.
        inner = blocked / prefix.relative_to(blocked).parts[0]
        prep += [f"mount --bind {shlex.quote(str(inner))} {keep}",
                 f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(str(blocked))}",
                 f"mkdir -p {shlex.quote(str(inner))}",
                 f"mount --bind {keep} {shlex.quote(str(inner))}"]
    prog = Path(keep + ".py")
    prog.write_text(PROGRAM)
    prog.chmod(0o644)
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--init-groups",
               f"--inh-caps={caps}", f"--ambient-caps={caps}", sys.executable, str(prog), *args]
    script = " && ".join(prep) + " && exec " + shlex.join(setpriv)
    env = dict(os.environ, PYTHONPATH=str(pkg), PYTHONDONTWRITEBYTECODE="1")
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                              text=True, timeout=60, env=env)
    finally:
        prog.unlink()
        os.rmdir(keep)


def test_socket_program_as_nobody_with_the_documented_capabilities(
    veth: testing.VethPair,
) -> None:
    r = run_as_nobody(CAPS, veth.a, veth.b)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(NOBODY), "True"]


@pytest.mark.parametrize(("drop", "step"), [
    ("net_admin", "create BPF map"),
    ("net_raw", "create AF_XDP socket"),
    ("ipc_lock", "register UMEM"),
])
def test_each_capability_is_needed(veth: testing.VethPair, drop: str, step: str) -> None:
    import resource

    if drop == "ipc_lock" and resource.getrlimit(resource.RLIMIT_MEMLOCK)[0] >= 16 << 20:
        pytest.skip("the memlock limit alone covers a 16 MiB UMEM here")
    caps = ",".join(c for c in CAPS.split(",") if c != f"+{drop}")
    r = run_as_nobody(caps, veth.a, veth.b)
    assert r.returncode == 1
    assert step in r.stderr.strip().splitlines()[-1]


def test_the_docs_show_the_tested_line() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "without-root.md").read_text()
    assert f"--inh-caps={CAPS}" in page and f"--ambient-caps={CAPS}" in page
    assert "--init-groups" in page
