"""Scaling benchmark: how the native sweep's time grows with α, examples and width, and projection's
with checkpoints; the basis of a cost model users can plan with.

Each axis is varied alone around a base workload (ReLU MLP 784-1024-1024-10, 2,000 real MNIST
training images, 21 α, batches of 2,000), the rest held fixed; projection varies the number of
checkpoints of 1,048,576 float32 values held in memory. A log–log fit of time against the varied
size gives the exponent: about 1 for α (beyond the fixed first-layer cost), examples and checkpoints,
about 2 for the width of the hidden layers; where a fixed cost bends the log-log line, the cost model
t = a + b·n (+ c·n² for the width) is fitted and its largest deviation from a measured time reported.
Each time is also compared with this machine's floor
(``bench/floors.py``). Writes ``results/bench/scaling.png`` and ``scaling.json``.

Run: ``make bench`` (or ``python bench/scaling.py`` inside the venv).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, best_time, machine, save, table  # noqa: E402
from floors import matmul_peak, mlp_sweep_flops  # noqa: E402

import linpath  # noqa: E402
import linpath.datasets  # noqa: E402
from linpath import _linpath  # noqa: E402
from linpath.models import MLP  # noqa: E402

BASE = {"alphas": 21, "examples": 2000, "width": 1024}
AXES = {
    "alphas": (6, 11, 21, 41, 81),
    "examples": (500, 1000, 2000, 4000, 8000),
    "width": (128, 256, 512, 1024, 2048),
}
CHECKPOINTS, CHECKPOINT_SIZE = (25, 50, 100, 200), 1 << 20


def sweep_seconds(x: torch.Tensor, y: torch.Tensor, alphas: int, examples: int, width: int) -> float:
    """Best of two native float32 sweeps of a fresh 784-w-w-10 MLP towards another seed's."""
    start, end = MLP((784, width, width, 10), seed=0), MLP((784, width, width, 10), seed=1)
    data = (x[:examples], y[:examples])
    grid = np.linspace(-0.5, 1.5, alphas)
    run = lambda: linpath.interpolate(  # noqa: E731
        start, start, end, data, alphas=grid, metrics=("loss",), batch_size=examples, progress=False
    )
    return best_time(run, repeats=2)[0]


def project_seconds(checkpoints: int) -> float:
    """Best of three in-memory projections of ``checkpoints`` random-walk checkpoints."""
    gen = torch.Generator().manual_seed(0)
    store = _linpath.TrajectoryStore.in_memory(["theta"], [[CHECKPOINT_SIZE]], "float32")
    theta = torch.zeros(CHECKPOINT_SIZE)
    for t in range(checkpoints):
        theta += 0.01 * torch.randn(CHECKPOINT_SIZE, generator=gen)
        store.append(t, theta)
    trajectory = linpath.Trajectory(store)
    t0, t1 = np.zeros(CHECKPOINT_SIZE), theta.double().numpy()
    return best_time(lambda: linpath.project(trajectory, t0, t1), repeats=3)[0]


def exponent(sizes: np.ndarray, seconds: np.ndarray) -> float:
    """The slope of log(seconds) against log(size), least squares over the points."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


#: The cost model's powers of the size per axis: t = Σ c_p·size^p. A fixed cost and a linear term,
#: and for the width of the hidden layers also a square (the hidden product is width², the first
#: layer and the kernels are linear in the width).
POWERS = {"alphas": (0, 1), "examples": (0, 1), "checkpoints": (0, 1), "width": (0, 1, 2)}


def cost_fit(axis: str, sizes: np.ndarray, seconds: np.ndarray) -> dict:
    """Relative least-squares coefficients of t = Σ c_p·size^p (:data:`POWERS`) and the largest relative
    deviation of a measured time from the fit: small when the cost grows as the model says."""
    powers = POWERS[axis]
    design = np.stack([sizes.astype(float) ** p for p in powers], axis=1)
    # Relative least squares (each row divided by its time): a small setting counts as much as a large one.
    coef = np.linalg.lstsq(design / seconds[:, None], np.ones_like(seconds), rcond=None)[0]
    deviation = float(np.max(np.abs(design @ coef - seconds) / seconds))
    return {"powers": list(powers), "coefficients": coef.tolist(), "max_rel_deviation": deviation}


def fit_seconds(fit: dict, sizes: np.ndarray) -> np.ndarray:
    """The fitted times at ``sizes``."""
    return sum(c * sizes.astype(float) ** p for p, c in zip(fit["powers"], fit["coefficients"], strict=True))


def settings() -> list[tuple[str, int, dict[str, int]]]:
    """(axis, size, full setting) for every point of every axis."""
    return [(axis, size, BASE | {axis: size}) for axis, sizes in AXES.items() for size in sizes]


def sweep_rows(x: torch.Tensor, y: torch.Tensor) -> list[dict]:
    """Each setting's time and fraction of its floor. The peaks are measured once per product shape
    before the sweeps and again after them; floors.matmul_peak keeps the highest reading, so a low
    one (between sweeps they varied by 1.4x on one machine) cannot inflate a fraction."""
    shapes = sorted({(s["examples"], s["width"]) for _, _, s in settings()})
    for n, w in shapes:
        matmul_peak(n, w, w, seconds=1.0)
    rows = []
    for axis, size, setting in settings():
        seconds = sweep_seconds(x, y, **setting)
        sizes_mlp = (784, setting["width"], setting["width"], 10)
        flops = mlp_sweep_flops(sizes_mlp, setting["examples"], setting["alphas"])
        rows.append({"axis": axis, "size": size, "seconds": seconds, "flops": flops, "shape": setting})
    peaks = {(n, w): matmul_peak(n, w, w, seconds=1.0) for n, w in shapes}
    for r in rows:
        floor = r.pop("flops") / peaks[r["shape"]["examples"], r["shape"]["width"]]
        r["of_floor"] = floor / r["seconds"]
        del r["shape"]
    return rows


def plot(rows: list[dict], fits: dict[str, float], models: dict[str, dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    fig, axes = plt.subplots(1, len(fits), figsize=(4 * len(fits), 3.6), layout="constrained")
    for ax, (axis, slope) in zip(axes, fits.items(), strict=True):
        sizes = np.array([r["size"] for r in rows if r["axis"] == axis])
        ax.loglog(sizes, [r["seconds"] for r in rows if r["axis"] == axis], "o", label="measured")
        fine = np.geomspace(sizes.min(), sizes.max(), 50)
        terms = " + ".join({0: "a", 1: "b·n", 2: "c·n²"}[p] for p in models[axis]["powers"])
        ax.loglog(
            fine,
            fit_seconds(models[axis], fine),
            "--",
            label=f"{terms} (within {models[axis]['max_rel_deviation']:.0%})",
        )
        ax.set(xlabel=axis, ylabel="seconds", title=f"{axis}: log-log slope {slope:.2f}")
        for which in (ax.xaxis, ax.yaxis):
            which.set_major_formatter(ScalarFormatter())
            which.set_minor_formatter(plt.NullFormatter())
        ax.set_xticks(sizes)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    path = RESULTS / "scaling.png"
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    data = linpath.datasets.mnist()
    x, y = data.train[0][: max(AXES["examples"])], data.train[1][: max(AXES["examples"])]
    rows = sweep_rows(x, y)
    rows += [{"axis": "checkpoints", "size": c, "seconds": project_seconds(c)} for c in CHECKPOINTS]
    fits, models = {}, {}
    for axis in (*AXES, "checkpoints"):
        chosen = [r for r in rows if r["axis"] == axis]
        sizes, seconds = np.array([r["size"] for r in chosen]), np.array([r["seconds"] for r in chosen])
        fits[axis], models[axis] = exponent(sizes, seconds), cost_fit(axis, sizes, seconds)
    print(f"Scaling around {BASE} ({machine()['cpu']}, {machine()['cores']} cores)")
    print(
        table(
            rows,
            [
                ("axis", "varied", ""),
                ("size", "size", "d"),
                ("seconds", "time (s)", ".3f"),
                ("of_floor", "fraction of floor", ".0%"),
            ],
        )
    )
    print("log-log exponents:", ", ".join(f"{k} {v:.2f}" for k, v in fits.items()))
    for axis, m in models.items():
        terms = " + ".join(f"{c:.3g}·n^{p}" for p, c in zip(m["powers"], m["coefficients"], strict=True))
        print(
            f"cost model, {axis}: t = {terms} s; "
            f"largest deviation of a measured time {m['max_rel_deviation']:.1%}"
        )
    print("plot", plot(rows, fits, models))
    print("saved", save("scaling", {"rows": rows, "exponents": fits, "cost_models": models, "base": BASE}))


if __name__ == "__main__":
    main()
