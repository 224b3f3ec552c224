"""bench/run.py's table writer, on a saved result (``--from-json``): no kernel,
no root. The figures below are made up; what is checked is where they go."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUN_PY = Path(__file__).resolve().parent.parent / "bench" / "run.py"
START = "<!-- bench/run.py table: start -->"
END = "<!-- bench/run.py table: end -->"


def _run(r: dict[str, Any], row: str, impl: str, run: int, pps: float,
         **result: Any) -> dict[str, Any]:
    packets = int(pps * 3)
    r.update(row=row, impl=impl, run=run, ok=True, pps=pps, packets=packets, seconds=3.0,
             result={"pps": pps, "packets": packets, **result})
    return r


def results(accel: str | None) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for run, jitter in ((1, 0.0), (2, 0.02), (3, -0.02)):
        for impl, mpps in (("c", 1.0), ("batch", 0.9), ("batch-py", 0.8), ("packet", 0.7),
                           ("afpacket", 0.5)):
            if impl == "batch-py" and not accel:
                continue
            extra: dict[str, Any] = {"cpu": {"user_s": 0.3, "sys_s": 3.0}}
            if impl == "batch" and accel:
                extra["accel"] = accel
            pps = (mpps + jitter) * 1e6
            rec = _run({"peer_pps": pps}, "txonly", impl, run, pps, **extra)
            if impl != "afpacket":
                rec["result"]["counters"] = {"looks": rec["packets"] // 64,
                                             "batches": rec["packets"] // 64}
                rec["syscalls"] = {"syscalls": rec["packets"] // 32, "kicks": rec["packets"] // 32,
                                   "kicks_eagain": rec["packets"] // 64, "poll": 0, "ppoll": 0}
            runs.append(rec)
            if impl != "afpacket":
                base = {"c": 10.0, "batch": 20.0, "batch-py": 25.0, "packet": 15.0}[impl]
                samples = [base + i / 100 for i in range(1000)]
                runs.append(_run({}, "latency-poll", impl, run, 1000.0, samples_us=samples,
                                 lost=0, **({"accel": accel} if impl == "batch" and accel
                                            else {})))
    runs.append({"row": "txonly", "impl": "packet", "run": 4, "ok": False, "error": "boom"})
    meta = {
        "date": "2031-01-02 03:04 UTC", "kernel": "6.18.0-test", "machine": "x86_64",
        "cpu_model": "Test CPU @ 1.00GHz", "cpus": 2, "python": "3.11.7", "commit": "abc1234",
        "command": "python3 bench/run.py -n 3 -d 3 --modes txonly,latency-poll",
        "load_before": [0.1, 0.2, 0.3], "load_after": [1.0, 1.0, 1.0], "runs": 3,
        "duration": 3.0, "modes": ["txonly", "latency-poll"], "impls_asked": [],
        "method": True, "pings": 1000, "source_core": 0, "measured_core": 1,
        "settings": {"frame_bytes": 64, "batch": 256, "umem_frames": 4096,
                     "umem_frame_size": 4096, "ring_entries": 2048, "copy_mode": True,
                     "need_wakeup": True, "xdp_mode": "native"},
    }  # fmt: skip
    return {"meta": meta, "runs": runs}


def _files(tmp: Path) -> tuple[Path, Path]:
    top, bench = tmp / "README.md", tmp / "bench" / "README.md"
    bench.parent.mkdir()
    for f in (top, bench):
        f.write_text(f"# {f}\n\nbefore\n\n{START}\nold figures 9.99\n{END}\n\nafter\n")
    return top, bench


def _render(tmp: Path, data: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    saved = tmp / "results.json"
    saved.write_text(json.dumps(data))
    return subprocess.run([sys.executable, str(RUN_PY), "--from-json", str(saved), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def _block(text: str) -> str:
    return text[text.index(START): text.index(END) + len(END)]


def test_writes_both_files_between_the_markers(tmp_path: Path) -> None:
    top, bench = _files(tmp_path)
    r = _render(tmp_path, results(None), "--write-to", str(top), "--write-to", str(bench))
    assert r.returncode == 0, r.stderr
    for f in (top, bench):
        text = f.read_text()
        assert text.startswith(f"# {f}\n\nbefore\n\n") and text.endswith("\n\nafter\n")
        assert "9.99" not in text and text.count(START) == text.count(END) == 1
        block = _block(text)
        for fact in ("2031-01-02 03:04 UTC", "Linux 6.18.0-test", "Test CPU @ 1.00GHz",
                     "2 cores", "commit abc1234", "**batch 256**",
                     "`python3 bench/run.py -n 3 -d 3 --modes txonly,latency-poll`"):
            assert fact in block, fact
        # medians (min-max) of the three runs, a failed run marked, the ratio to C
        assert "| 0.90 (0.88-0.92) |" in block
        assert "0.70 (0.68-0.72) [1 failed]" in block
        assert "0.90x (target 0.95x)" in block
        # pooled latency percentiles: 3000 samples base + i/100, nearest rank
        assert "| ping-pong, poll / C libxdp" in block and "| 14.99 " not in block
        line = next(ln for ln in block.splitlines() if ln.startswith("| ping-pong, poll / C"))
        assert [c.strip() for c in line.strip("|").split("|")][1:4] == ["15.0", "19.9", "20.0"]
        # no pure-Python column without an accelerator
        assert "pure Python" not in block
    top_block, bench_block = _block(top.read_text()), _block(bench.read_text())
    # the top-level README gets the short set, bench/README.md everything
    assert "Where the time goes" not in top_block and "Cross-checks" not in top_block
    assert "Where the time goes" in bench_block and "Cross-checks" in bench_block
    method = bench_block[bench_block.index("Where the time goes"):]
    line = next(ln for ln in method.splitlines() if ln.startswith("| txonly / C libxdp"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # user, sys us/frame; avg batch; syscalls/frame; frames/kick; EAGAIN %
    assert cells[1:7] == ["0.100", "1.000", "64.0", "0.031", "32.0", "50"]
    # the terminal output has the same tables
    assert "xdp-socket batch" in r.stdout


def test_another_batch_size_writes_its_own_block(tmp_path: Path) -> None:
    """A run at a batch other than the default goes between markers of its
    own, so the default batch's table stays beside it."""
    f = tmp_path / "README.md"
    s64, e64 = ("<!-- bench/run.py table (batch 64): start -->",
                "<!-- bench/run.py table (batch 64): end -->")
    f.write_text(f"{START}\ndefault 1.11\n{END}\n\n{s64}\nold 2.22\n{e64}\n")
    data = results(None)
    data["meta"]["settings"]["batch"] = 64
    r = _render(tmp_path, data, "--write-to", str(f))
    assert r.returncode == 0, r.stderr
    text = f.read_text()
    assert "default 1.11" in text and "old 2.22" not in text
    assert "**batch 64**" in text[text.index(s64): text.index(e64)]
    # a file with only the default block has nowhere to put it
    f.write_text(f"{START}\ndefault 1.11\n{END}\n")
    r = _render(tmp_path, data, "--write-to", str(f))
    assert r.returncode == 2 and "(batch 64): start" in r.stderr
    assert f.read_text() == f"{START}\ndefault 1.11\n{END}\n"


def test_rewriting_is_idempotent(tmp_path: Path) -> None:
    top, bench = _files(tmp_path)
    args = ("--write-to", str(top), "--write-to", str(bench))
    assert _render(tmp_path, results(None), *args).returncode == 0
    first = top.read_text(), bench.read_text()
    assert _render(tmp_path, results(None), *args).returncode == 0
    assert (top.read_text(), bench.read_text()) == first


def test_accelerated_and_pure_python_columns(tmp_path: Path) -> None:
    _, bench = _files(tmp_path)
    r = _render(tmp_path, results("cffi"), "--write-to", str(bench))
    assert r.returncode == 0, r.stderr
    block = _block(bench.read_text())
    assert "xdp-socket batch (cffi)" in block and "xdp-socket batch, pure Python" in block
    assert "batch (pure Python) / C" in block and "0.80x" in block


def test_a_file_without_markers_is_refused_before_anything_runs(tmp_path: Path) -> None:
    f = tmp_path / "README.md"
    f.write_text("no markers here\n")
    r = _render(tmp_path, results(None), "--write-to", str(f))
    assert r.returncode == 2 and "no '<!-- bench/run.py table: start -->'" in r.stderr
    assert f.read_text() == "no markers here\n"


def test_the_repository_files_have_the_markers() -> None:
    root = RUN_PY.parent.parent
    for f in (root / "README.md", root / "bench" / "README.md"):
        text = f.read_text()
        assert text.count(START) == 1 and text.count(END) == 1, f
        # and the batch-64 table beside the default batch's
        assert text.count("<!-- bench/run.py table (batch 64): start -->") == 1, f
        assert text.count("<!-- bench/run.py table (batch 64): end -->") == 1, f


def test_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "rtt.png"
    r = _render(tmp_path, results(None), "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_c_batch_work_is_refused_with_write() -> None:
    """The same-core experiment makes the C column something else than C: it
    may never be written into the README's tables."""
    r = subprocess.run([sys.executable, str(RUN_PY), "--c-batch-work-ns", "1000", "--write"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "not for --write" in r.stderr


TOOLS_TABLE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import tools
raw = json.loads(sys.argv[2])
print(tools.table({tuple(k.split("/")): v for k, v in raw.items()}))
"""


def test_tools_table_has_both_replay_counts() -> None:
    """bench/tools.py's replay rows: each counting method gets its own row with
    its own ratio and the commands' CPU time (made-up figures)."""
    def rec(pps: float, user: float, system: float) -> dict[str, Any]:
        return {"wall": 1e6 / pps, "peer": 1000000, "pps": pps, "sent": 1000000,
                "user": user, "sys": system}

    raw = {
        "replay-top/tcpreplay": [rec(250e3, 0.4, 3.0), rec(260e3, 0.4, 3.1)],
        "replay-top/xdp-socket": [rec(350e3, 0.5, 2.0), rec(370e3, 0.5, 2.1)],
        "replay-top-rx/tcpreplay": [rec(300e3, 0.3, 2.6)],
        "replay-top-rx/xdp-socket": [rec(600e3, 0.4, 1.3)],
        "replay-ng-rx/tcpreplay": [rec(300e3, 0.3, 2.6)],
        "replay-ng-rx/xdp-socket": [rec(450e3, 0.5, 1.4)],
    }
    r = subprocess.run([sys.executable, "-c", TOOLS_TABLE, str(RUN_PY.parent), json.dumps(raw)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| replay")]
    assert len(rows) == 3
    xdp_row, rx_row, ng_row = rows
    assert "counting XDP drop" in xdp_row and "rx_packets" in rx_row
    assert "tcpreplay 0.255 (0.250-0.260); user 0.40 (0.40-0.40) s, sys 3.05 (3.00-3.10) s" \
        in xdp_row
    assert xdp_row.endswith("| 1.41x |")  # 0.360 / 0.255
    assert "| 0.600; user 0.40 s, sys 1.30 s | 2.00x |" in rx_row
    assert "pcapng" in ng_row and ng_row.endswith("| 1.50x |")
