#!/usr/bin/env python3
"""Mutation test of the ring core and the batch API; prints the score.

Runs mutmut over ``src/xdp_socket/_ring.py`` and ``src/xdp_socket/batch.py``
with only the tests that need no kernel (``tests/test_ring*.py`` and
``tests/test_batch*.py``, against the fake kernel), then prints, per file,
how many mutants the tests caught and the score. Mutants that no test reaches
("no tests") count as survivors: code nothing runs is code nothing checks.

Not part of ``.ci/run``: it takes many minutes. Usage::

    pip install mutmut==3.8.1        # the version this script was written for
    python3 tools/mutation.py        # full run, then the table
    python3 tools/mutation.py --jobs 1 --survivors   # also list survivors
    python3 tools/mutation.py --report-only --work DIR   # table of an earlier run

It works on a copy of ``src/`` and ``tests/`` in a scratch directory (``--work``,
default a fresh one under /tmp), so the checkout is never touched and no
``mutants/`` directory appears in it. mutmut runs under ``nice -n 10``: the
machine is shared. Exit status: 0 when the score reaches ``--min-score``
(default 90), 1 below it, 2 when mutmut could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MUTMUT_VERSION = "3.8.1"
FILES = ["src/xdp_socket/_ring.py", "src/xdp_socket/batch.py"]
TEST_GLOBS = ["test_ring*.py", "test_batch*.py"]

# mutmut 3.8.1's exit-code table (mutmut/stats.py), folded into what the score needs
KILLED = {1, 3}
TIMEOUT = {36, 24, -24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


def prepare(repo: Path, work: Path) -> list[str]:
    """Copy what mutmut needs into ``work`` and write its configuration there."""
    for name in ("src", "tests"):
        shutil.copytree(repo / name, work / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    tests = sorted(str(p.relative_to(work)) for g in TEST_GLOBS for p in (work / "tests").glob(g))
    config = (repo / "pyproject.toml").read_text()
    config += "\n[tool.mutmut]\n"
    config += 'source_paths = ["src/xdp_socket/"]\n'
    config += f"only_mutate = {json.dumps(FILES)}\n"
    config += f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
    # the copy is not a git checkout: compare file hashes, not git history
    config += "use_git_change_detection = false\n"
    # A failing Hypothesis test would shrink its example for minutes; a
    # mutation run only needs to know that it failed. Fixed seed: the same
    # tests give the same score.
    config += 'pytest_add_cli_args = ["--hypothesis-profile=mutation", "--hypothesis-seed=0"]\n'
    with open(work / "tests" / "conftest.py", "a") as f:  # (the scratch copy only)
        f.write("\n\nfrom hypothesis import Phase as _Phase\n"
                "from hypothesis import settings as _s\n"
                "_s.register_profile('mutation', deadline=None, database=None,\n"
                "                    phases=[_Phase.explicit, _Phase.generate])\n")
    (work / "pyproject.toml").write_text(config)
    return tests


def run_mutmut(work: Path, mutmut: str, jobs: int) -> int:
    cmd = ["nice", "-n", "10", mutmut, "run", "--max-children", str(jobs)]
    env = dict(os.environ)
    # the mutated copy must be what the tests import, never an installed one
    env.pop("PYTHONPATH", None)
    print("+", " ".join(cmd), f"(in {work})", flush=True)
    return subprocess.call(cmd, cwd=work, env=env)


def report(work: Path, show_survivors: bool) -> float | None:
    total = {"mutants": 0, "caught": 0, "survived": 0, "no_tests": 0, "other": 0}
    survivors: list[str] = []
    rows = []
    for f in FILES:
        meta = work / "mutants" / (f + ".meta")
        if not meta.exists():
            print(f"no results for {f} ({meta} missing)", file=sys.stderr)
            return None
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        c = {"mutants": len(codes), "caught": 0, "survived": 0, "no_tests": 0, "other": 0}
        for name, code in sorted(codes.items()):
            if code in KILLED or code in TIMEOUT:
                c["caught"] += 1
            elif code in SURVIVED:
                c["survived"] += 1
                survivors.append(f"{name}: survived")
            elif code in NO_TESTS:
                c["no_tests"] += 1
                survivors.append(f"{name}: no tests")
            else:  # not checked, suspicious, segfault ...: not a catch either
                c["other"] += 1
                survivors.append(f"{name}: exit code {code}")
        rows.append((f, c))
        for key in total:
            total[key] += c[key]
    rows.append(("total", total))
    print(f"{'file':<26} {'mutants':>7} {'caught':>7} {'survived':>8} {'no tests':>8} "
          f"{'other':>5} {'score':>7}")
    for f, c in rows:
        score = 100.0 * c["caught"] / c["mutants"] if c["mutants"] else 0.0
        print(f"{f:<26} {c['mutants']:>7} {c['caught']:>7} {c['survived']:>8} "
              f"{c['no_tests']:>8} {c['other']:>5} {score:>6.1f}%")
    if show_survivors:
        print("\nsurvivors (see them with: cd WORK && mutmut show NAME):")
        for s in survivors:
            print("   ", s)
    return 100.0 * total["caught"] / total["mutants"] if total["mutants"] else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="scratch directory (default: a new one in /tmp)")
    ap.add_argument("--jobs", type=int, default=2, help="parallel mutmut workers (default 2)")
    ap.add_argument("--mutmut", default=shutil.which("mutmut") or "mutmut",
                    help="the mutmut executable")
    ap.add_argument("--survivors", action="store_true", help="list every surviving mutant")
    ap.add_argument("--report-only", action="store_true",
                    help="print the table of an earlier run in --work")
    ap.add_argument("--min-score", type=float, default=90.0)
    args = ap.parse_args()
    repo = Path(__file__).resolve().parent.parent
    if args.report_only:
        if args.work is None:
            ap.error("--report-only needs --work")
        work = args.work
    else:
        try:
            out = subprocess.run([args.mutmut, "--version"], capture_output=True, text=True,
                                 check=False).stdout
        except FileNotFoundError:
            print(f"mutmut not found: pip install mutmut=={MUTMUT_VERSION}", file=sys.stderr)
            return 2
        if MUTMUT_VERSION not in out:
            print(f"warning: written for mutmut {MUTMUT_VERSION}, found: {out.strip()}",
                  file=sys.stderr)
        if args.work is None:
            work = Path(tempfile.mkdtemp(prefix="xdp-mutation."))
        else:
            work = args.work
            if work.exists() and any(work.iterdir()):
                print(f"{work} is not empty (use --report-only to read it)", file=sys.stderr)
                return 2
            work.mkdir(parents=True, exist_ok=True)
        tests = prepare(repo, work)
        print("tests:", " ".join(tests), flush=True)
        rc = run_mutmut(work, args.mutmut, args.jobs)
        if rc != 0:
            print(f"mutmut exited with {rc}", file=sys.stderr)
    score = report(work, args.survivors)
    if score is None:
        return 2
    print(f"\nmutation score {score:.1f}% (target {args.min_score:.0f}%); results in {work}")
    return 0 if score >= args.min_score else 1


if __name__ == "__main__":
    sys.exit(main())
