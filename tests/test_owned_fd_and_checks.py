"""Unit tests for two small L0 helpers: OwnedFd (one owner per raw fd, a
finalizer that only closes it) and check_int (the shared integer check). No
kernel objects: the fds are pipe ends, and /proc/self/fd is the witness."""

from __future__ import annotations

import gc
import os
import warnings
import weakref

import pytest

from xdp_socket._check import check_int
from xdp_socket._sys.fd import OwnedFd


def is_open(fd: int) -> bool:
    return os.path.exists(f"/proc/self/fd/{fd}")


@pytest.fixture
def pipe() -> list[int]:
    r, w = os.pipe()
    fds = [r, w]
    yield fds
    for fd in fds:  # whatever a test left open
        if is_open(fd):
            os.close(fd)


def test_close_is_idempotent_and_fileno_refuses_after(pipe: list[int]) -> None:
    o = OwnedFd(pipe[0])
    assert o.fileno() == pipe[0] and not o.closed
    o.close()
    assert o.closed and not is_open(pipe[0])
    o.close()
    with pytest.raises(ValueError):
        o.fileno()


def test_dropped_without_close_warns_and_closes_by_refcount(pipe: list[int]) -> None:
    gc.disable()  # refcounting alone must free it: no cycle through the finalizer
    try:
        o = OwnedFd(pipe[0], "unclosed Thing on eth9")
        ref = weakref.ref(o)
        with pytest.warns(ResourceWarning, match="unclosed Thing on eth9"):
            del o
        assert ref() is None
        assert not is_open(pipe[0])
    finally:
        gc.enable()


def test_no_warning_without_a_message_and_none_after_close(pipe: list[int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        o = OwnedFd(pipe[0])
        del o  # quiet owner: closes without a word
        assert not is_open(pipe[0])
        p = OwnedFd(pipe[1], "unclosed Thing")
        p.close()
        del p  # closed properly: nothing to warn about
    assert not is_open(pipe[1])


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_warning_turned_into_an_error_still_closes(pipe: list[int]) -> None:
    # A finalizer's exception is printed by weakref, not raised; the fd must
    # be closed all the same.
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        o = OwnedFd(pipe[0], "unclosed")
        del o
    assert not is_open(pipe[0])


def test_detach_hands_the_fd_over(pipe: list[int]) -> None:
    o = OwnedFd(pipe[0], "unclosed")
    fd = o.detach()
    assert fd == pipe[0] and o.closed
    del o  # no longer the owner: neither closes nor warns
    assert is_open(fd)


def test_fork_child_closing_its_copy_leaves_the_parent_fd_alone(pipe: list[int]) -> None:
    r, w = pipe
    owner = OwnedFd(w)
    pid = os.fork()
    if pid == 0:  # child: close its inherited copy through the owner, then leave
        try:
            owner.close()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    os.write(owner.fileno(), b"x")  # the parent's copy still works
    assert os.read(r, 1) == b"x"
    owner.close()


def test_owned_fd_rejects_a_non_fd() -> None:
    with pytest.raises(ValueError):
        OwnedFd(-1)
    for bad in (True, 3.0, "3"):
        with pytest.raises(TypeError):
            OwnedFd(bad)  # type: ignore[arg-type]


def test_check_int() -> None:
    assert check_int("n", 5) == 5
    assert check_int("n", 0) == 0
    assert check_int("n", -7, min=None) == -7
    assert check_int("n", 10, min=1, max=10) == 10
    for bad_type in (True, False, 1.0, "1", None, 2**0.5):
        with pytest.raises(TypeError, match=r"^n must be an int, not "):
            check_int("n", bad_type)
    with pytest.raises(ValueError, match=r"^n must be >= 0, got -1$"):
        check_int("n", -1)
    with pytest.raises(ValueError, match=r"^n must be in 1\.\.10, got 11$"):
        check_int("n", 11, min=1, max=10)
    with pytest.raises(ValueError, match=r"^n must be <= 3, got 4$"):
        check_int("n", 4, min=None, max=3)
    with pytest.raises(ValueError, match=r"^port must be a port number, got 70000$"):
        check_int("port", 70000, max=0xFFFF, what="a port number")
