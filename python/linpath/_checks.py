"""Type checks of Python arguments shared by the trainer and the models (ranges are checked natively)."""

from __future__ import annotations

import numbers
from typing import Any


def integer(name: str, value: Any) -> int:
    """``value`` as an int; TypeError naming ``name`` for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


def real(name: str, value: Any) -> float:
    """``value`` as a float; TypeError naming ``name`` for anything that is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)
