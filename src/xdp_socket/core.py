"""Layer 2: one AF_XDP kernel socket and everything it owns.

:class:`XskCore` is the resource under both halves (``TxSocket``/``RxSocket``,
layer 3). The rules it keeps are the library's lifetime rules:

* **One owner per kernel object.** The core owns the socket (a
  ``socket.socket``, which owns its fd), the four ring mappings and the
  socket's XSKMAP entry (which holds a reference on the attached program).
  Nothing else closes them. The :class:`~xdp_socket.umem.Umem` (which owns
  its mapping) is the core's own when the user passed none; a shared one
  belongs to the user and its sockets together: each core holds a reference
  and a lease on a range of its frames, and tells it when it closes (the
  UMEM unmaps after the last of them; see :mod:`xdp_socket.umem`). The
  halves and batches hold the core; the core holds neither, so there is no
  reference cycle and a dropped socket is freed by reference counting
  at once, with no garbage-collector pass.
* **The finalizer is a leaf action.** A core nobody closed is finalized when
  its last half and batch are gone: it emits a ``ResourceWarning``, closes
  the socket fd and queues a shared UMEM's frame range for reuse, nothing
  more. It takes no lock, starts no netlink request and
  waits for no thread, so it cannot deadlock whatever thread the finalizer
  runs in. The XSKMAP slot needs no action: the kernel removes a socket from
  every map when the socket is released. The program's reference is dropped
  with the entry; the attachment closes its own fds when its last reference
  goes (see :mod:`xdp_socket.program`).
* **Closed is closed everywhere.** :meth:`close` may be called from any
  thread, also while another thread waits in :meth:`poll` (it is woken through
  an eventfd) or works on a batch; every later operation on the socket or on a
  batch taken before raises :class:`~xdp_socket.SocketClosedError`. Mappings
  are never unmapped under a live view: views the user (or a thread still
  inside an operation) holds keep their memory valid until they are dropped.
* **Threads.** One thread per half. For a socket with both halves the TX ring
  is shared with ``RxBatch.forward`` (run by the RX thread), so its ring
  operations take a lock (:class:`~xdp_socket._ring.LockedTxPath`); frames
  given back by TX to RX go through a queue with one producer and one
  consumer.

The wake-up policy lives here too: kick the TX ring and drive it until the
kernel has taken what was committed, kick the Fill ring when it asks, poll.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _ring
from ._check import check_int
from ._sys import consts as C
from ._sys import xsk as _xsk
from ._sys.xsk import Statistics
from .config import Direction, XdpConfig
from .errors import InterfaceDownError, SocketClosedError, xdp_error
from .iface import has_queue, queue_counts, resolve_interface
from .umem import Umem, bind_retrying, release_mappings

if TYPE_CHECKING:
    import socket

    from .program import XskMapEntry

__all__ = ["RingViews", "Statistics", "XskCore"]

_POLL_ERR = select.POLLERR | select.POLLNVAL | select.POLLHUP


class RingViews(NamedTuple):
    """numpy views of a socket's rings: ``fill`` and ``completion`` are uint64
    UMEM addresses, ``rx`` and ``tx`` structured ``(addr u8, len u4, options
    u4)`` descriptors. Empty for a ring the socket does not have."""

    fill: npt.NDArray[np.uint64]
    completion: npt.NDArray[np.uint64]
    rx: np.ndarray[Any, Any]
    tx: np.ndarray[Any, Any]


def _finalize(sock: socket.socket, label: str, umem: Umem | None,
              lease: tuple[int, int] | None, rx: _ring.RxPath | None) -> None:
    """A core nobody closed: warn, close the socket, give a shared UMEM's
    frames back (queued without a lock). A leaf action (see the module
    docstring)."""
    warnings.warn(f"unclosed {label}", ResourceWarning, stacklevel=1)
    sock.close()
    if umem is not None and lease is not None and not (rx is not None and rx.lent):
        umem._give_back(*lease)


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class XskCore:
    """One AF_XDP kernel socket and everything it owns (see the module docstring)."""

    def __init__(
        self, iface: str | int, queue_id: int, direction: Direction, config: XdpConfig,
        umem: Umem | None = None,
    ) -> None:
        if not _ring.ORDERING_SAFE and not os.environ.get("XDP_SOCKET_ALLOW_WEAK_ORDERING"):
            raise RuntimeError(
                "xdp_socket's rings rely on x86-64 memory ordering; this CPU needs "
                "barriers the pure-Python ring code cannot emit (see xdp_socket._ring)"
            )
        check_int("queue_id", queue_id, max=0xFFFFFFFF)
        self.ifname, self.ifindex = resolve_interface(iface)
        self.queue_id = queue_id
        self.config = config
        self.direction = direction
        self.closed = False
        self._kick_always = not config.need_wakeup  # (drive_tx's per-batch question)
        self._pid = os.getpid()
        # close() runs once: popping the token is atomic, so two threads (or a
        # signal handler and the main thread) cannot both run the teardown.
        self._close_token = [True]
        self._open_halves: set[str] = set()
        self._pollers: dict[int, Any] = {}
        self.tx_path: _ring.TxPath | None = None
        self.rx_path: _ring.RxPath | None = None
        self.xskmap: XskMapEntry | None = None
        self.umem: Umem | None = None
        self.group: Any = None  # the queue group of a same-queue shared UMEM
        self._shared_umem = umem
        self._lease: tuple[int, int] | None = None  # (first frame, count) of a shared UMEM
        self._maps: list[Any] = []
        self._areas: list[_ring.RingArea] = []
        self.zero_copy = False
        # Written by close() so that a thread waiting in poll() wakes up. It is
        # closed only with the core itself (never by close()), so a thread
        # about to poll cannot find its number reused by somebody else's fd.
        self._wake_fd = _xsk.make_wake_fd()
        close_wake = weakref.finalize(self, _close_fd, self._wake_fd)
        close_wake.atexit = False
        try:
            self.sock = _xsk.create_socket(self.ifname, queue_id)
        except BaseException:
            close_wake()
            raise
        try:
            self._setup()
        except BaseException:
            # Close everything now: the traceback keeps this object (and the
            # frames of _setup) alive for as long as the caller keeps it.
            self._teardown()
            close_wake()
            raise
        label = (f"AF_XDP socket on {self.ifname} queue {queue_id} "
                 f"({direction.value}; call close() or use 'with')")
        # (a shared UMEM's range goes back only if no other socket may still
        # hold its frames; see umem.py)
        self._finalizer = weakref.finalize(self, _finalize, self.sock, label, umem,
                                           self._lease, self.rx_path)
        self._finalizer.atexit = False  # the process's exit closes every fd anyway

    # --- set-up ---------------------------------------------------------------
    def _setup(self) -> None:
        cfg, name, q = self.config, self.ifname, self.queue_id
        want_rx = self.direction in (Direction.RX, Direction.BOTH)
        want_tx = self.direction in (Direction.TX, Direction.BOTH)
        self._check_queue(want_rx, want_tx)
        flags = 0
        if cfg.need_wakeup:
            flags |= C.XDP_USE_NEED_WAKEUP
        if cfg.zero_copy is True:
            flags |= C.XDP_ZEROCOPY
        elif cfg.zero_copy is False:
            flags |= C.XDP_COPY
        if cfg.multi_buffer:
            flags |= C.XDP_USE_SG
        shared = self._shared_umem
        source: Any = None
        group = None
        base = 0
        if shared is None:
            self.umem = umem = Umem._private(cfg, name, q)
        else:
            shared._check_config(cfg, name, q)
            source = shared._share_source()
            if source is not None:
                self._check_share(source, shared)
            base = shared._lease(cfg.frame_count, name, q)
            if cfg.xskmap_key is None:
                self._lease = (base, cfg.frame_count)
            else:
                # same-queue sharing: the queue's group owns Fill and
                # Completion, and keeps this socket's frames until it goes
                try:
                    group = shared._join_group(name, self.ifindex, q, cfg, flags)
                except BaseException:
                    shared._give_back(base, cfg.frame_count)
                    raise
                group.join((base, cfg.frame_count))
                self.group = group
            self.umem = umem = shared
        if source is None and group is None:
            umem._register(self.sock, name, q)
        if group is None:
            # Fill and Completion rings are required by bind even for a
            # one-way socket; each is mapped with exactly the size we asked
            # for. (A group member must not have its own: EINVAL at bind.)
            _xsk.set_ring_size(self.sock, C.XDP_UMEM_FILL_RING, cfg.fill_size, "fill", name, q)
            _xsk.set_ring_size(self.sock, C.XDP_UMEM_COMPLETION_RING, cfg.comp_size,
                               "completion", name, q)
        if want_rx:
            _xsk.set_ring_size(self.sock, C.XDP_RX_RING, cfg.rx_size, "RX", name, q)
        if want_tx:
            _xsk.set_ring_size(self.sock, C.XDP_TX_RING, cfg.tx_size, "TX", name, q)
        off = _xsk.mmap_offsets(self.sock, name, q)
        if group is None:
            fill = self._map(C.XDP_UMEM_PGOFF_FILL_RING, off.fill, cfg.fill_size, "addr", "fill")
            comp = self._map(C.XDP_UMEM_PGOFF_COMPLETION_RING, off.completion, cfg.comp_size,
                             "addr", "completion")
        # Frames: RX-only and TX-only sockets get all of them; a bidirectional
        # socket splits them in half (RX first). No frame is ever on two rings.
        n_rx = cfg.frame_count if not want_tx else (cfg.frame_count // 2 if want_rx else 0)
        n_tx = cfg.frame_count - n_rx if want_tx else 0
        if want_rx:
            rx = self._map(C.XDP_PGOFF_RX_RING, off.rx, cfg.rx_size, "desc", "RX")
            # The Fill ring is filled before bind so the kernel has frames to
            # receive into from the first packet on.
            rx_addrs = umem._frame_addrs(base, n_rx)
            if group is None:
                self.rx_path = _ring.RxPath(rx, fill, rx_addrs, umem.frame_size, umem.view)
            else:
                self.rx_path = _ring.GroupRxPath(rx, group.fill, group.rx_pool, group.lock,
                                                 rx_addrs, umem.frame_size, umem.view)
            self.rx_path.multi_buffer = cfg.multi_buffer
        if want_tx:
            tx = self._map(C.XDP_PGOFF_TX_RING, off.tx, cfg.tx_size, "desc", "TX")
            tx_addrs = umem._frame_addrs(base + n_rx, n_tx)
            if group is not None:
                self.tx_path = _ring.GroupTxPath(tx, group.comp, group.routes, group.lock,
                                                 tx_addrs, umem.frame_size, umem.view)
                group.add_route((base + n_rx) * umem.frame_size,
                                (base + cfg.frame_count) * umem.frame_size, self.tx_path)
            else:
                # With an RX half, RxBatch.forward (the RX thread) shares the
                # TX ring; on a shared UMEM, so may another socket's RX thread.
                locked = want_rx or shared is not None
                path_type = _ring.LockedTxPath if locked else _ring.TxPath
                self.tx_path = path_type(tx, comp, tx_addrs, umem.frame_size, umem.view)
                if self.rx_path is not None:
                    # one UMEM: RX frames (addresses below rx_limit) may be
                    # forwarded on TX and must come back to the RX side
                    self.tx_path.pair(self.rx_path, (base + n_rx) * umem.frame_size)
            self.tx_path.multi_buffer = cfg.multi_buffer
        if group is not None:
            # the same queue: the kernel shares the group socket's buffer
            # pool (its Fill and Completion rings) with this one
            self._bind(C.XDP_SHARED_UMEM, group.sock.fileno())
        elif source is None:
            self._bind(flags)
        else:
            # The kernel takes need_wakeup, copy mode (and multi-buffer) from
            # the UMEM's first socket and refuses any of them here (EINVAL).
            self._bind(C.XDP_SHARED_UMEM, source.sock.fileno())
        if shared is not None:
            shared._add_socket(self, flags)
        self.zero_copy = bool(_xsk.options(self.sock, name, q) & C.XDP_OPTIONS_ZEROCOPY)
        if cfg.tx_budget is not None and want_tx:
            _xsk.set_tx_budget(self.sock, cfg.tx_budget, name, q)
        if cfg.busy_poll is not None:
            _xsk.set_busy_poll(self.sock, cfg.busy_poll, 64, name, q)
        if want_rx:
            # (imported here: a TX-only socket needs no XDP program, and the
            # program, filter and bpf modules are a tenth of the package's
            # import time, which a short ``replay`` pays in full)
            from .program import attach_xsk

            self.xskmap = attach_xsk(name, self.ifindex, q, self.sock.fileno(),
                                     mode=cfg.xdp_mode, xskmap_fd=cfg.xskmap_fd, filter=cfg.filter,
                                     key=cfg.xskmap_key)

    def _check_share(self, source: XskCore, umem: Umem) -> None:
        """What the kernel would refuse (or silently change) on a socket that
        joins a UMEM, said before it is tried."""
        cfg, name, q = self.config, self.ifname, self.queue_id
        grouped = cfg.xskmap_key is not None
        for other in list(umem._sockets):
            if (not other.closed and (other.ifindex, other.queue_id) == (self.ifindex, q)
                    and not (grouped and other.group is not None)):
                # The kernel would share that socket's Fill and Completion
                # rings with this one: only sockets of a queue group (which
                # owns that pair of rings) may do that.
                raise xdp_error(
                    errno.EBUSY, "bind xsk (shared UMEM)", name, q,
                    hint=f"a socket of this Umem is already bound to {name} queue {q}; "
                         "sockets of a Umem on one queue must all set XdpConfig(xskmap_key=) "
                         "(your XDP program picks the socket), or use different queues",
                )
        if not grouped and umem._live_group(self.ifindex, q) is not None:
            raise xdp_error(
                errno.EBUSY, "bind xsk (shared UMEM)", name, q,
                hint=f"sockets with xskmap_key share {name} queue {q}; set "
                     "XdpConfig(xskmap_key=) to join them",
            )
        first = umem.bind_flags or 0
        if bool(first & C.XDP_USE_NEED_WAKEUP) != cfg.need_wakeup:
            raise ValueError(
                f"socket on {name} queue {q}: need_wakeup={cfg.need_wakeup} differs from the "
                f"shared Umem's first socket (the kernel uses that one's setting for all)"
            )
        if bool(first & C.XDP_USE_SG) != cfg.multi_buffer:
            raise ValueError(
                f"socket on {name} queue {q}: multi_buffer={cfg.multi_buffer} differs from "
                f"the shared Umem's first socket (the kernel uses that one's setting for all)"
            )
        if cfg.zero_copy is not None and cfg.zero_copy != source.zero_copy:
            raise ValueError(
                f"socket on {name} queue {q}: zero_copy={cfg.zero_copy}, but the shared Umem "
                f"is bound in {'zero-copy' if source.zero_copy else 'copy'} mode by its "
                f"first socket"
            )

    def _check_queue(self, want_rx: bool, want_tx: bool) -> None:
        """The kernel binds a queue id that exists in *either* direction, so a
        TX socket on a queue the device can only receive on binds fine and
        then never sends (and an RX socket on a TX-only queue never
        receives). Refuse those up front, naming the counts."""
        # The quick check first: a TX socket then needs no netlink at all.
        if has_queue(self.ifname, self.ifindex, self.queue_id, rx=want_rx, tx=want_tx):
            return
        n_rx, n_tx = queue_counts(self.ifindex)
        for wanted, count, what, never in ((want_rx, n_rx, "RX", "receive"),
                                           (want_tx, n_tx, "TX", "send")):
            if wanted and self.queue_id >= count:
                raise xdp_error(
                    errno.EINVAL, "bind xsk", self.ifname, self.queue_id,
                    hint=f"{self.ifname} has {count} {what} queue(s), 0..{count - 1}; a socket "
                         f"on queue {self.queue_id} would never {never}",
                )

    def _map(self, pgoff: int, ro: _xsk.RingOffsets, entries: int, kind: str,
             what: str) -> _ring.RingArea:
        desc_size = 8 if kind == "addr" else 16
        mm = _xsk.map_ring(self.sock, pgoff, ro, entries, desc_size, what, self.ifname,
                           self.queue_id)
        self._maps.append(mm)
        area = _ring.RingArea(mm, ro.producer, ro.consumer, ro.flags, ro.desc, entries, kind)
        self._areas.append(area)
        return area

    def _bind(self, flags: int, shared_umem_fd: int = 0) -> None:
        bind_retrying(self.sock, self.ifindex, self.queue_id, flags, self.ifname, shared_umem_fd)

    # --- lifetime -------------------------------------------------------------
    def open_half(self, name: str) -> None:
        self._open_halves.add(name)

    def close_half(self, name: str) -> None:
        """A half was closed; the socket goes with the last one. While the
        other half stays open, the closed half's side is marked closed (its
        batches raise SocketClosedError) and a thread waiting on it wakes."""
        self._open_halves.discard(name)
        if not self._open_halves:
            self.close()
            return
        path = self.rx_path if name == "RX socket" else self.tx_path
        if path is not None:
            path.closed = True
        if name == "TX socket" and isinstance(path, _ring.TxPath) and os.getpid() == self._pid:
            self._hand_back_forwarded(path)
        if name == "RX socket" and os.getpid() == self._pid:
            # only the RX side polls the fd (the TX side drives and sleeps,
            # checking ``closed`` on every turn)
            _xsk.signal_wake_fd(self._wake_fd)

    def _hand_back_forwarded(self, tx: _ring.TxPath) -> None:
        """The TX half closes while the RX half stays: RX frames forwarded into
        the TX ring come home only through its Completion ring, which nobody
        reclaims once the TX half is gone, so the RX side would lose them for
        good. Kick what is still queued (copy mode completes frames during the
        kick) and route the completions to their RX sides' return queues; the
        RX side takes them at its next look. Frames a zero-copy driver
        completes later stay out until the socket closes."""
        if not tx.foreign_in_flight:
            return
        try:
            self.drive_tx()
            tx.reclaim()  # (LockedTxPath: under the lock a forward would take)
        except (OSError, _ring.RingCorruptedError):
            # closing must not fail: a device gone down or a corrupt ring
            # leaves those frames out, as before
            pass

    def close(self) -> None:
        """Close the socket now, from any thread; idempotent."""
        try:
            self._close_token.pop()
        except IndexError:
            return
        self._finalizer.detach()
        self._teardown()

    def _teardown(self) -> None:
        """Release everything, in an order that never leaves memory unmapped
        under a live view.

        A ring mapping holds the kernel socket (and so its queue) until it is
        unmapped, so our views of the rings are released explicitly, also
        when something else (a traceback's frame, a thread inside an
        operation) still refers to the ring objects: such a late user gets a
        ValueError, never a dangling pointer, and batches check ``closed``
        first. A mapping that the user still views (``sock.rings``) stays until
        those views go. The UMEM is only unmapped if nobody views it."""
        self.closed = True
        for path in (self.tx_path, self.rx_path):
            if path is not None:
                path.closed = True  # batches taken before check this
        # wake a thread blocked in poll(): it sees ``closed`` and raises. (A
        # forked child shares the eventfd: its close must not wake the parent's
        # pollers, which would then find the fd readable on every poll.)
        if os.getpid() == self._pid:
            _xsk.signal_wake_fd(self._wake_fd)
        # The kernel empties the socket's XSKMAP slot itself when the socket
        # is released; releasing the entry drops our hold on the program.
        entry, self.xskmap = self.xskmap, None
        if entry is not None:
            entry.release()
        self.sock.close()
        lent = self.rx_path is not None and self.rx_path.lent
        self.tx_path = self.rx_path = None
        self._pollers.clear()
        areas, self._areas = self._areas, []
        maps, self._maps = self._maps, []
        release_mappings(areas, maps)
        umem, self.umem = self.umem, None
        self._shared_umem = None  # a closed socket keeps no UMEM alive
        if umem is not None:
            if self._lease is not None and not lent:
                umem._give_back(*self._lease)
            self._lease = None
            umem._detach(self)

    def check_open(self, what: str) -> None:
        if self.closed:
            raise SocketClosedError(what)

    # --- kernel wakeups -------------------------------------------------------
    def wakeup_error(self, err: int, step: str) -> None:
        if err in _xsk.RETRY_ERRNOS or err == 0:
            return
        if self.closed:
            raise SocketClosedError(f"socket on {self.ifname} queue {self.queue_id}")
        if err in (errno.ENETDOWN, errno.ENXIO):
            raise InterfaceDownError(err, step, self.ifname, self.queue_id,
                                     hint="the interface is down or gone")
        raise xdp_error(err, step, self.ifname, self.queue_id)

    def kick_tx(self, always: bool) -> None:
        """Wake the kernel for the TX ring if it asks (or ``always``)."""
        tx = self.tx_path
        if tx is None:
            raise SocketClosedError("TX socket")
        if always or tx.tx.flags[0] & C.XDP_RING_NEED_WAKEUP:
            err = _xsk.wakeup_tx(self.sock)
            if err:
                self.wakeup_error(err, "kick TX")

    def kick_fill(self) -> None:
        """Wake the kernel for the Fill ring if it asks."""
        rx = self.rx_path
        if rx is None:
            raise SocketClosedError("RX socket")
        if rx.fill.flags[0] & C.XDP_RING_NEED_WAKEUP:
            err = _xsk.wakeup_rx(self.sock)
            if err:
                self.wakeup_error(err, "kick RX")

    def wake_fill(self) -> None:
        """Wake the kernel for the Fill ring (the caller saw it ask)."""
        err = _xsk.wakeup_rx(self.sock)
        if err:
            self.wakeup_error(err, "kick RX")

    def drive_tx(self) -> int:
        """Kick until the kernel has consumed the TX ring, or a kick made no
        progress. Returns the number of entries still pending. (Copy mode
        sends at most a budget of frames, 32 by default, per kick.)"""
        path = self.tx_path
        if path is None:
            raise SocketClosedError("TX socket")
        tx = path.tx
        always = self._kick_always
        if tx.ref is not None:
            # the same loop in C (one call, sendto without the GIL)
            left: int
            while True:
                left, status = _ring.C.drive_tx(self.sock.fileno(), tx, always)
                if not status:
                    return left
                if status == -1:  # no progress: see below
                    if path.reclaim():
                        continue
                    return left
                if status == -3:
                    raise _ring.RingCorruptedError(
                        f"ring corrupted: the TX consumer is more than {tx.entries} entries "
                        "behind our producer")
                self.wakeup_error(status, "kick TX")
                return left
        pending = tx.kernel_pending()
        while pending:
            if not (always or tx.flags[0] & C.XDP_RING_NEED_WAKEUP):
                return pending  # the kernel is polling the ring by itself
            err = _xsk.wakeup_tx(self.sock)
            if err and err not in _xsk.RETRY_ERRNOS:
                self.wakeup_error(err, "kick TX")
            left = tx.kernel_pending()
            if left >= pending:
                # No progress: the Completion ring may be full (reclaiming
                # makes room) or the driver is busy (try again later).
                if path.reclaim():
                    continue
                return left
            pending = left
        return 0

    def submit_tx(self, path: _ring.TxPath, n: int, length: int, kick: bool) -> None:
        """``path.submit_len(n, length)`` then, with ``kick``, :meth:`drive_tx`:
        one C call in the usual case (accelerated, no lock to hold)."""
        if path.fast_submit:
            st: int = _ring.C.submit_fast(path, path.tx, n, length,
                                          self.sock.fileno() if kick else -1, self._kick_always)
            if not st:
                return
            if st != -4:  # (-4: not the usual case, nothing done)
                self._kick_status(path, st)
                return
        path.submit_len(n, length)
        if kick:
            self.drive_tx()

    def write_submit_tx(self, path: _ring.TxPath, rows: Any, n: int, lens: Any, kick: bool,
                        rest: int) -> bool:
        """TxBatch.submit_array's usual case in one C call (C.write_submit):
        the first ``n`` reserved frames get the rows and ``lens`` (an int, or
        n uint32) and are published and, with ``kick``, kicked a part at a
        time; the ``rest`` reserved after them get their lengths cleared.
        False: not the usual case (no accelerator, a lock to hold, anything
        to report), nothing done."""
        if not path.fast_submit:
            return False
        st: int = _ring.C.write_submit(path, path.tx, n, path.umem, rows, path.frame_size, lens,
                                       self.sock.fileno() if kick else -1, self._kick_always)
        if st == -4:
            return False
        if rest:
            path.clear_lengths(rest)
        if st:
            self._kick_status(path, st)
        return True

    def _kick_status(self, path: _ring.TxPath, status: int) -> None:
        """What a C kick loop's non-zero status asks for (see drive_tx)."""
        if status == -1:  # no progress: reclaiming may make room
            if path.reclaim():
                self.drive_tx()
            return
        if status == -3:
            raise _ring.RingCorruptedError(
                f"ring corrupted: the TX consumer is more than {path.tx.entries} entries "
                "behind our producer")
        self.wakeup_error(status, "kick TX")

    def drive_until(self, done: Any, timeout: float | None, what: str) -> bool:
        """Drive the TX ring until ``done()``; back off from 50 us to 5 ms
        between looks. False when ``timeout`` seconds passed first; raises
        SocketClosedError when the socket is closed meanwhile (also from
        another thread). In copy mode the kernel sends, and so completes
        frames, only inside a kick."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.00005
        path = self.tx_path
        while True:
            if self.closed or path is None or path.closed:
                raise SocketClosedError(what)
            self.drive_tx()
            if done():
                return True
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return False
            time.sleep(delay if deadline is None else min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 0.005)

    def forward(self, rx: _ring.RxPath, n: int) -> int:
        """Send the first ``n`` available RX packets from their own frames and
        drive the TX ring; returns how many went (see ``TxPath.forward``).
        ``rx`` is this socket's RX side or, on a shared UMEM, another
        socket's (then its frames come back to it through a queue of its own;
        runs in ``rx``'s thread)."""
        tx = self.tx_path
        if tx is None or tx.closed:
            raise SocketClosedError("TX socket")
        if tx.fast_forward and rx is tx.rx_peer and not rx.multi_buffer:
            # The usual l2fwd step (this socket's own RX half, accelerated, no
            # chains to keep whole) in one C call: what TxPath.forward, the
            # kick loop below and take_returns do, the lock held as there.
            res: Any = _ring.C.forward_kick(tx, rx, n, self.sock.fileno(), self._kick_always,
                                            tx.lock)
            if res.__class__ is int:
                if res >= 0:
                    done: int = res
                    return done
                # (< 0: nothing forwarded; not the usual case, or a corrupt
                # kernel value: the code below redoes it and reports)
            else:
                k, status, left = res
                if status:
                    self._kick_status(tx, status)
                if left or rx.returns.tail != rx.returns.head:
                    rx.take_returns()
                sent: int = k
                return sent
        if rx is not tx.rx_peer:
            # (a queue group's socket has no rx_peer: its TX side is a
            # GroupTxPath, whose forward refuses)
            if isinstance(rx, _ring.GroupRxPath):
                # its frames are the queue group's, not in one range a TX side
                # could route completions back by
                raise ValueError("forward is not supported on sockets that share a queue "
                                 "(xskmap_key)")
            tx.add_peer(rx)
        k = tx.forward(rx, n)
        self.drive_tx()
        # Driving reclaimed completions, forwarded RX frames among them: we
        # run in the RX thread, so they may go to the Fill ring right away.
        if rx.returns.tail != rx.returns.head or rx.extra_returns:
            rx.take_returns()
        return k

    # --- facts ----------------------------------------------------------------
    def statistics(self) -> Statistics:
        return _xsk.statistics(self.sock, self.ifname, self.queue_id)

    def ring_views(self) -> RingViews:
        empty_d = np.empty(0, _ring.DESC_DTYPE)
        empty_a = np.empty(0, np.uint64)
        rx, tx = self.rx_path, self.tx_path
        return RingViews(
            fill=rx.fill.area.addrs if rx else empty_a,
            completion=tx.comp.area.addrs if tx else empty_a,
            rx=rx.rx.area.descs if rx else empty_d,
            tx=tx.tx.area.descs if tx else empty_d,
        )

    def wait_rx(self, path: _ring.RxPath, ms: int) -> int:
        """RxSocket.poll_wait's usual step in one C call (look at the RX
        ring, kick the Fill ring if it asks, one poll(2) of up to ``ms``
        milliseconds on the socket and the wake eventfd, look again; a wake
        with nothing polls again for what is left): 1 a packet is there, 0
        timed out, 2 or < 0 left to the caller's Python steps (they redo it
        and report; see _accel.rx_wait)."""
        st: int = _ring.C.rx_wait(path.rx, path.fill, self.sock.fileno(), self._wake_fd, ms)
        return st

    def poll(self, events: int, timeout: float | None, what: str) -> bool:
        """One poll(2) on the fd; True if an asked-for event is ready. Returns
        at once (raising SocketClosedError) when the socket is closed, also
        by another thread during the wait."""
        p = self._pollers.get(events)
        if p is None:  # one poll object per event mask, made once: waits are hot in poll mode
            if self.closed:
                raise SocketClosedError(what)
            p = select.poll()
            p.register(self.sock.fileno(), events)
            p.register(self._wake_fd, select.POLLIN)
            self._pollers[events] = p
        ms = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        res = p.poll(ms)
        rx = self.rx_path
        if self.closed or (rx is not None and rx.closed):
            raise SocketClosedError(what)
        wake = self._wake_fd
        for fd, rev in res:
            if fd == wake:
                continue
            if rev & _POLL_ERR:
                err = self.sock.getsockopt(1, 4)  # SOL_SOCKET, SO_ERROR
                raise xdp_error(err or (errno.EBADF if rev & select.POLLNVAL else errno.EIO),
                                "poll", self.ifname, self.queue_id)
            if rev & events:
                return True
        return False
