"""Test session setup: the whole pytest process moves into a private network
namespace at import time, so every veth pair and XDP program a test creates
lives and dies there, never on the host.

This runs before the test modules import numpy: numpy's BLAS starts threads,
and a mount namespace (needed for a fresh /sys) can only be entered by a
single-threaded process. Capping the BLAS thread count first keeps that true
even if something imported numpy already.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from xdp_socket import testing

_SKIP_REASON: str | None = None
if os.geteuid() != 0:
    _SKIP_REASON = "kernel tests need root (AF_XDP, BPF, network namespaces)"
else:
    try:
        testing.enter_private_netns()
    except OSError as e:  # e.g. a container without CAP_SYS_ADMIN
        _SKIP_REASON = f"cannot enter a private network namespace: {e}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _SKIP_REASON is None:
        return
    skip = pytest.mark.skip(reason=_SKIP_REASON)
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)


VethFactory = Callable[..., testing.VethPair]


@pytest.fixture
def veth_factory() -> Iterator[VethFactory]:
    """Make veth pairs (``veth_factory(queues=4, mtu=4000)``); all are deleted
    when the test ends."""
    with contextlib.ExitStack() as stack:

        def make(*, queues: int = 1, mtu: int | None = None) -> testing.VethPair:
            return stack.enter_context(testing.veth_pair(queues=queues, mtu=mtu))

        yield make


@pytest.fixture
def veth(veth_factory: VethFactory) -> testing.VethPair:
    """One single-queue veth pair with fresh names, up and with carrier."""
    return veth_factory()
