"""Shared helpers of the benchmark scripts: timing, machine description, result tables."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(os.environ.get("LINPATH_BENCH_OUT", "results/bench"))


def machine() -> dict[str, Any]:
    """CPU model, cores and library versions of this machine."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def best_time(
    fn: Callable[[], Any], repeats: int = 1, seconds: float = 0.0, warmup: float = 0.0
) -> tuple[float, Any]:
    """The fastest run of ``fn`` (seconds) and the result of the last run: at least ``repeats`` runs,
    and more until ``seconds`` have passed. With ``warmup`` > 0, ``fn`` first runs untimed until that
    many seconds have passed (at least once): first-call allocation, page faults, thread-pool start
    and clock ramp-up are not part of the measurement."""
    if repeats < 1 or seconds < 0 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and seconds, warmup >= 0; got {repeats}, {seconds}, {warmup}")
    start = time.perf_counter()
    while warmup > 0:
        fn()
        if time.perf_counter() - start >= warmup:
            break
    best, result, runs, start = float("inf"), None, 0, time.perf_counter()
    while runs < repeats or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        result = fn()
        best, runs = min(best, time.perf_counter() - t0), runs + 1
    return best, result


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """A Markdown table; ``columns`` are (key, header, format spec)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [format(row[k], spec) if row.get(k) is not None else "—" for k, _, spec in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save(name: str, payload: dict[str, Any]) -> Path:
    """Writes ``results/bench/<name>.json`` (with the machine description)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path
