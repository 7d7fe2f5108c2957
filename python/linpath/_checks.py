"""Checks of Python arguments shared by the trainer, the models and the recorders.

An integer that reaches the Rust core must fit its type there (an i64 for sizes, counts and
steps, a u64 for seeds), or PyO3 raises a bare OverflowError; :func:`integer` checks the type
and the range first, with a message that states the limit.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

I64_END = 2**63
"""One past the largest integer the native core takes for sizes, counts and steps (an i64)."""

U64_END = 2**64
"""One past the largest seed the native core takes (a u64)."""


def _bound(value: int) -> str:
    """``value`` as written in messages: powers of two from 2**16 on as ``2**k``."""
    magnitude = abs(value)
    if magnitude >= 2**16 and magnitude & (magnitude - 1) == 0:
        return f"{'-' if value < 0 else ''}2**{magnitude.bit_length() - 1}"
    return str(value)


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high)`` (a missing bound is no limit).

    Raises:
        TypeError: Naming ``name``, for anything but an integer (bools included).
        ValueError: Naming ``name`` and stating the limits, for a value outside them.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    number = int(value)
    if (low is None or number >= low) and (high is None or number < high):
        return number
    if low is not None and high is None:
        raise ValueError(f"{name} must be at least {_bound(low)}, got {number}")
    if high is not None and low is None:
        raise ValueError(f"{name} must be below {_bound(high)}, got {number}")
    assert low is not None and high is not None  # the range check passes when both bounds are missing
    raise ValueError(f"{name} must lie in [{_bound(low)}, {_bound(high)}), got {number}")


def real(name: str, value: Any) -> float:
    """``value`` as a float; TypeError naming ``name`` for anything that is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


def positive(name: str, value: Any) -> float:
    """``value`` as a finite float > 0.

    Raises:
        TypeError: Naming ``name``, for anything that is not a real number.
        ValueError: Naming ``name``, for a value that is not finite and positive.
    """
    number = real(name, value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {number}")
    return number
