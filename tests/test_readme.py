"""Every Python example in README.md runs, against a veth pair named as the
README names it (veth0 <-> veth1), in the test process's private namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from xdp_socket import testing

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)

pytestmark = pytest.mark.kernel


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int) -> None:
    with testing.veth_pair("veth0", "veth1"):
        code = compile(BLOCKS[index], f"README.md example {index + 1}", "exec")
        exec(code, {"__name__": f"readme_example_{index}"})
