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
    "_sys": 0,
    "_ring": 1,
    "config": 1,
    "umem": 2,
    "iface": 2,
    "_netdev": 2,
    "program": 2,
    "core": 2,
    "socket": 3,
    "batch": 3,
    "_aio": 3,
    "scapy_compat": 3,
    "gen": 3,
    "pcap": 3,
    "testing": 3,
    "__init__": 3,
    "cli": 4,
    "__main__": 4,
}

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
