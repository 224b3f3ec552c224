"""The house rules of ARCHITECTURE.md, checked on the source: imports only go
down the layers, ctypes lives only in _sys, the CLI uses no private module,
and the public namespace exports each symbol once."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import xdp_socket

PKG = Path(xdp_socket.__file__).resolve().parent

# Layer of each module (dotted name under xdp_socket). Lower may never import higher.
LAYERS: dict[str, int] = {
    "errors": 0,
    "_check": 0,
    "_sys": 0,
    "_ring": 1,
    "config": 1,
    "umem": 2,
    "iface": 2,
    "_netdev": 2,
    "filter": 2,
    "program": 2,
    "drop": 2,
    "core": 2,
    "socket": 3,
    "batch": 3,
    "_aio": 3,
    "scapy_compat": 3,
    "frames": 3,
    "gen": 3,
    "workers": 3,
    "pcap": 3,
    "testing": 3,
    "__init__": 3,
    "cli": 4,
    "__main__": 4,
}

# Rank within a layer: a module may import a module of its own layer only if
# that one's rank is strictly lower, so no two modules of one layer import each
# other (no cycles, and a split stays a split). Layer 4 (the CLI package) is
# one unit. When adding a module, give it a rank here too.
RANKS: dict[str, int] = {
    # layer 0
    "errors": 0,
    "_check": 0,
    "_sys": 1,  # its modules raise errors.XdpError and use _check
    # layer 1
    "_ring": 0,
    "config": 0,
    # layer 2: netlink plumbing, then interface facts, then what attaches programs
    "_netdev": 0,
    "umem": 0,
    "iface": 1,
    "filter": 1,  # classic BPF -> eBPF, pure; program loads what it makes
    "program": 2,
    "drop": 2,
    "core": 3,  # the socket resource: imports program (late) and iface, umem
    # layer 3: frame builder, file formats and the async helpers at the
    # bottom; the batches below the socket halves; what builds on the halves
    # above them
    "frames": 0,
    "pcap": 0,
    "_aio": 0,
    "batch": 0,
    "socket": 1,
    "testing": 1,
    "gen": 1,
    "scapy_compat": 2,
    "workers": 2,  # builds on the halves (socket) and batches
    "__init__": 3,
    "cli": 0,
    "__main__": 1,
}

# Same-layer imports that go up a rank and are known (none today; an entry
# here is a debt, and the test below fails once it is paid, so it goes away).
KNOWN_UPWARD: set[tuple[str, str]] = set()

THIRD_PARTY_ALLOWED = {
    0: set(),
    1: {"numpy"},
    2: {"numpy", "pyroute2"},
    3: {"numpy", "pyroute2", "scapy"},
    4: {"numpy", "pyroute2", "scapy"},
}
STDLIB = set(__import__("sys").stdlib_module_names)


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        out.append((".".join(rel.parts), path))
    return out


def layer_of(dotted: str) -> int:
    top = dotted.split(".")[0]
    return LAYERS[top]


def imports_of(dotted: str, path: Path) -> list[tuple[str, int]]:
    """(module imported, line) for every import, relative ones resolved to
    names under xdp_socket ("pkg:NAME"), absolute ones as given."""
    tree = ast.parse(path.read_text())
    parts = dotted.split(".")
    is_pkg = path.name == "__init__.py"
    base = parts if is_pkg else parts[:-1]
    if is_pkg and parts == ["__init__"]:
        base = []
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.module or "", node.lineno))
                continue
            anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = [*anchor, *(node.module.split(".") if node.module else [])]
            if node.module is None:  # from . import x, y: modules, or names of the package
                for a in node.names:
                    sub = [*target, a.name]
                    is_module = (PKG.joinpath(*sub).with_suffix(".py").exists()
                                 or PKG.joinpath(*sub).is_dir())
                    found.append(("pkg:" + ".".join(sub if is_module else target), node.lineno))
            else:
                found.append(("pkg:" + ".".join(target), node.lineno))
    return found


@pytest.mark.parametrize("dotted,path", modules(), ids=[m for m, _ in modules()])
def test_imports_go_down(dotted: str, path: Path) -> None:
    mine = layer_of(dotted)
    for name, line in imports_of(dotted, path):
        if name.startswith("pkg:"):
            target = name[4:] or "__init__"
            if target.startswith("cli") and mine == 4:
                continue
            if target.split(".")[0] == "":
                continue
            theirs = layer_of(target)
            assert theirs <= mine, f"{path.name}:{line} (layer {mine}) imports {target} " \
                                   f"(layer {theirs})"
            if mine == 4:
                private = [p for p in target.split(".") if p.startswith("_") and
                           p not in ("__init__", "__main__", "_common")]
                assert not private, f"{path.name}:{line}: the CLI uses only the public " \
                                    f"API, not {target}"
        elif name.split(".")[0] == "xdp_socket":
            # absolute imports of the public API: fine from the CLI only
            assert mine == 4, f"{path.name}:{line}: use relative imports inside the package"
            sub = name.split(".")[1:]
            assert not any(p.startswith("_") for p in sub), \
                f"{path.name}:{line}: the CLI uses only the public API, not {name}"
        else:
            top = name.split(".")[0]
            if top in STDLIB or top == "__future__":
                continue
            assert top in THIRD_PARTY_ALLOWED[mine], \
                f"{path.name}:{line} (layer {mine}) imports {top}"


def test_every_module_has_a_rank() -> None:
    assert set(RANKS) == set(LAYERS)


def test_no_module_imports_its_own_layer_upward() -> None:
    seen_known: set[tuple[str, str]] = set()
    problems = []
    for dotted, path in modules():
        mine = dotted.split(".")[0]
        for name, line in imports_of(dotted, path):
            if not name.startswith("pkg:"):
                continue
            theirs = (name[4:] or "__init__").split(".")[0]
            if theirs in ("", mine) or LAYERS[theirs] != LAYERS[mine]:
                continue
            if (mine, theirs) in KNOWN_UPWARD:
                seen_known.add((mine, theirs))
                continue
            if RANKS[theirs] >= RANKS[mine]:
                problems.append(f"{path.name}:{line}: {mine} (layer {LAYERS[mine]}, rank "
                                f"{RANKS[mine]}) imports {theirs} (rank {RANKS[theirs]})")
    assert not problems, "\n".join(problems)
    assert seen_known == KNOWN_UPWARD, \
        f"no longer imported, remove from KNOWN_UPWARD: {KNOWN_UPWARD - seen_known}"


def test_ctypes_only_in_sys() -> None:
    for dotted, path in modules():
        if dotted.startswith("_sys"):
            continue
        names = [n for n, _ in imports_of(dotted, path)]
        assert "ctypes" not in names, f"{path.name} uses ctypes outside _sys"


def test_public_namespace_exports_each_symbol_once() -> None:
    names = xdp_socket.__all__
    assert len(names) == len(set(names)), "duplicate names in __all__"
    for name in names:
        obj = getattr(xdp_socket, name)
        mod = getattr(obj, "__module__", "")
        assert mod.startswith("xdp_socket"), f"{name} comes from {mod}"
    # each public class is exported by exactly one public module's __all__
    # besides the package itself
    owners: dict[str, list[str]] = {}
    for dotted, _ in modules():
        if dotted.startswith(("_", "cli")) or dotted in ("__init__", "__main__"):
            continue
        mod = importlib.import_module(f"xdp_socket.{dotted}")
        for n in getattr(mod, "__all__", []):
            if n in names:
                owners.setdefault(n, []).append(dotted)
    for n, mods in owners.items():
        assert len(mods) == 1, f"{n} is exported by {mods}"


def test_py_typed_marker() -> None:
    assert (PKG / "py.typed").exists()
