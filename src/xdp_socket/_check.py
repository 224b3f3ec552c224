"""Layer 0: the one integer-argument check every layer shares.

Python's ``bool`` is an ``int`` subclass, so ``isinstance(True, int)`` holds and
``frame_size=True`` would quietly mean 1; and a float such as ``64.0`` is not an
index. Both are refused here, once, with the argument's name in the message:
:class:`TypeError` for the wrong type, :class:`ValueError` for a value out of
range (the split the stdlib uses, e.g. ``range("3")`` vs ``chr(-1)``).
"""

from __future__ import annotations

__all__ = ["check_int"]


def check_int(name: str, value: object, *, min: int | None = 0, max: int | None = None,
              what: str = "") -> int:
    """``value`` if it is an ``int`` (not a ``bool``) in ``min..max`` (both
    inclusive; ``None``: unbounded on that side), else TypeError/ValueError
    naming ``name``. ``what`` words the range in the message ("a port number",
    "a file descriptor") instead of the bare bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    if (min is not None and value < min) or (max is not None and value > max):
        if what:
            rng = what
        elif max is None:
            rng = f">= {min}"
        elif min is None:
            rng = f"<= {max}"
        else:
            rng = f"in {min}..{max}"
        raise ValueError(f"{name} must be {rng}, got {value}")
    return value
