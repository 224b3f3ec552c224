"""System tests: bad arguments and kernel refusals give clear, typed errors.

Runs in the private network namespace conftest.py entered.
"""

from __future__ import annotations

import errno
import os
import pickle
from typing import Any

import pytest
from helpers import attach_xdp_netlink, load_foreign_xdp_prog, make_test_frame, xdp_prog_id

import xdp_socket as xs

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("field", ["rx_size", "tx_size", "fill_size", "comp_size"])
def test_ring_size_not_power_of_two(veth: Any, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        cfg = xs.XdpConfig(**{field: 1000})
        xs.create_bi_socket(veth.a, 0, cfg)


@pytest.mark.parametrize("size", [1024, 3000, 8192])
def test_frame_size_must_be_2048_or_4096(veth: Any, size: int) -> None:
    with pytest.raises(ValueError, match="frame_size"):
        cfg = xs.XdpConfig(frame_size=size)
        xs.create_tx_socket(veth.a, 0, cfg)


def test_data_longer_than_a_frame(veth: Any) -> None:
    with xs.create_tx_socket(veth.a, 0, xs.XdpConfig(frame_size=2048)) as tx:
        with pytest.raises(ValueError):
            tx.send(bytes(2049))
        with pytest.raises(ValueError):
            tx.send(bytes(2000), header=bytes(49))
        with pytest.raises(ValueError):
            tx.send_blocking(bytes(2049), timeout=1)
        assert tx.seek_n(1) == 1
        with pytest.raises(ValueError):
            tx.peek_at(0, 2049)
        # The whole frame is usable for TX.
        assert len(tx.peek_at(0, 2048)) == 2048


def test_peek_beyond_available(veth: Any) -> None:
    tx, rx = xs.create_bi_socket(veth.a, 0)
    with tx, rx:
        n = tx.seek_n(4)
        assert n == 4
        tx.peek_at(3, 60)
        with pytest.raises(IndexError):
            tx.peek_at(4, 60)
        with pytest.raises(IndexError):
            tx.peek_at(-1, 60)
        assert rx.seek_n(8) == 0
        with pytest.raises(IndexError):
            rx.peek_at(0)
        with pytest.raises(ValueError):
            rx.commit_n(1)  # committing more than is available
        with pytest.raises(ValueError):
            tx.commit_n(5)


def test_use_after_close(veth: Any) -> None:
    tx, rx = xs.create_bi_socket(veth.a, 0)
    tx.close()
    rx.close()
    tx.close()  # closing twice is harmless
    for call in (
        lambda: tx.seek_n(1),
        lambda: tx.peek_at(0, 60),
        lambda: tx.send(make_test_frame(0, 0, 60)),
        lambda: tx.kick(),
        lambda: tx.statistics(),
        lambda: rx.seek_n(1),
        lambda: rx.recv(0),
        lambda: rx.poll_wait(0),
        lambda: rx.commit_n(0),
    ):
        with pytest.raises(xs.SocketClosedError):
            call()
    assert issubclass(xs.SocketClosedError, OSError)


def test_unknown_interface() -> None:
    with pytest.raises(xs.XdpError) as info:
        xs.create_tx_socket("nosuch0", 0)
    assert info.value.errno == errno.ENODEV
    assert "nosuch0" in str(info.value)


def test_queue_that_does_not_exist(veth: Any) -> None:
    for create in (xs.create_tx_socket, xs.create_rx_socket):
        with pytest.raises(xs.XdpError) as info:
            create(veth.a, 5)
        err = info.value
        assert err.errno == errno.EINVAL
        assert (err.ifname, err.queue_id) == (veth.a, 5)
        assert veth.a in str(err) and "queue 5" in str(err)
        # still picklable with its fields (multiprocessing)
        copy = pickle.loads(pickle.dumps(err))
        assert (copy.errno, copy.ifname, copy.queue_id) == (err.errno, err.ifname, err.queue_id)
    # the failed RX attempt left no program behind
    assert xdp_prog_id(veth.a_index) == 0


def test_zero_copy_on_veth_is_refused(veth: Any) -> None:
    with pytest.raises(xs.XdpError) as info:
        xs.create_tx_socket(veth.a, 0, xs.XdpConfig(zero_copy=True))
    assert info.value.errno == errno.EOPNOTSUPP
    assert info.value.ifname == veth.a
    assert veth.a in str(info.value)
    # zero_copy=None means "use it if you can": copy mode on veth
    with xs.create_tx_socket(veth.a, 0, xs.XdpConfig(zero_copy=None)) as tx:
        assert tx.zero_copy is False


@pytest.mark.parametrize("mode", ["auto", "native", "skb"])
def test_foreign_xdp_program_is_left_alone(veth: Any, mode: str) -> None:
    prog_fd = load_foreign_xdp_prog()
    try:
        attach_xdp_netlink(veth.b_index, prog_fd, native=True)
        before = xdp_prog_id(veth.b_index)
        assert before != 0
        with pytest.raises(xs.XdpError) as info:
            xs.create_rx_socket(veth.b, 0, xs.XdpConfig(xdp_mode=mode))
        assert info.value.ifname == veth.b
        assert xdp_prog_id(veth.b_index) == before
        # a TX-only socket needs no program and is fine next to it
        with xs.create_tx_socket(veth.b, 0) as tx:
            assert tx.ifname == veth.b
        assert xdp_prog_id(veth.b_index) == before
    finally:
        os.close(prog_fd)


def test_not_root_gets_permission_error(veth: Any) -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 3
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                xs.create_tx_socket(veth.a, 0)
                msg = "created a socket"
            except PermissionError as e:
                msg = f"ok {type(e).__name__} {isinstance(e, xs.XdpError)} {e}"
            except BaseException as e:
                msg = f"wrong {type(e).__name__}: {e}"
            os.write(w, msg.encode()[:4000])
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            msg = f.read().decode()
    finally:
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, msg
    assert msg.startswith("ok "), msg
    assert " True " in msg, f"expected an XdpError subclass: {msg}"
