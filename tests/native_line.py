"""A line sweep through a native model's binding (``model._native.sweep``), for tests that call the
Rust side directly: the line's subspace, one pass of α points, ``(losses, errors)`` back."""

from __future__ import annotations

from typing import Any

from linpath import _linpath


def native_line(
    model: Any,
    theta0: Any,
    theta1: Any,
    x: Any,
    y: Any,
    alphas: list[float],
    progress: Any = None,
    batch_size: int = 1024,
    precision: str = "float32",
) -> tuple[list[float], list[float]]:
    """J and the error rate of ``model`` at θ0 + α·(θ1 − θ0) for each α, natively."""
    line = _linpath.Subspace.line(theta0, theta1)
    points = [[float(a)] for a in alphas]
    (values,) = model._native.sweep(line, x, y, [(points, precision)], batch_size, progress)
    by_name = dict(values)
    return by_name["loss"], by_name["error"]
