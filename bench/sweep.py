"""Sweep benchmark: the loss along a line, side by side with the peers, in one process.

ReLU MLP 784-1024-1024-10, 10,000 real MNIST training images, 101 values of α over [-0.5, 1.5],
from the initial parameters to those after one epoch of SGD. Two settings, each the same for
every method: the whole 10,000 examples as one batch (loss-landscapes' ``Loss`` metric can only
do this), and batches of 2,500 (the plain loop's fastest batch size here, since large activation
tensors cost page faults on every allocation). Errors are measured against a float64 evaluation
of the same formula at 21 of the 101 α (every fifth).

Peers: a plain PyTorch loop (write (1-α)θ0 + αθ1 into the model, evaluate); torch.func's
functional_call vmapped over chunks of α; loss-landscapes 3.0 (``linear_interpolation``, which
adds (θ1-θ0)/101 to the model 101 times and evaluates after each addition, so it never evaluates
θ0 itself; its errors are measured at its own α = i/101). Ours: ``linpath.interpolate`` on the
plain module (module engine), and on a ``linpath.models.MLP`` (native engine) in float32 and bf16.

Each method is also reported as a fraction of this machine's floor (``bench/floors.py``): the least
arithmetic of the sweep (the first layer twice, every other layer once per α) at the matmul peak
measured in the same run on the hidden layer's shape, in float32, or in bf16 plus the float32 check.

Run: ``make bench`` (or ``python bench/sweep.py`` inside the venv).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

sys.path.insert(0, str(Path(__file__).parent))
from common import best_time, machine, save, table  # noqa: E402
from floors import fraction_of_floor, matmul_peak, mlp_sweep_flops  # noqa: E402

import linpath  # noqa: E402
import linpath.datasets  # noqa: E402
from linpath.models import MLP, TorchMLP  # noqa: E402

SIZES = (784, 1024, 1024, 10)
N, ALPHAS = 10_000, np.linspace(-0.5, 1.5, 101)
CHECK = np.arange(0, 101, 5)  # α indices compared with the float64 reference


def endpoints(x: torch.Tensor, y: torch.Tensor) -> tuple[MLP, MLP]:
    """θ0: a fresh MLP; θ1: the same after one epoch of SGD + momentum (batch 128)."""
    start, end = MLP(SIZES, seed=0), MLP(SIZES, seed=0)
    twin = end.to_torch()
    opt = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for idx in torch.randperm(len(x), generator=gen).split(128):
        loss = F.cross_entropy(twin(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    end.load_state_dict(twin.state_dict())
    return start, end


def reference(
    t0: torch.Tensor, t1: torch.Tensor, x: torch.Tensor, y: torch.Tensor, alphas: np.ndarray
) -> np.ndarray:
    """Mean cross-entropy at each α, all in float64."""
    model = TorchMLP(SIZES).double().eval()
    params = list(model.parameters())
    out = []
    with torch.no_grad():
        for a in alphas:
            torch.nn.utils.vector_to_parameters((1 - a) * t0 + a * t1, params)
            out.append(F.cross_entropy(model(x.double()), y).item())
    return np.array(out)


def plain_loop(
    model: torch.nn.Module, t0: torch.Tensor, t1: torch.Tensor, x, y, alphas, batch: int
) -> np.ndarray:
    params = list(model.parameters())
    out = []
    with torch.no_grad():
        for a in alphas:
            torch.nn.utils.vector_to_parameters((1 - a) * t0 + a * t1, params)
            total = sum(
                F.cross_entropy(model(xb), yb, reduction="sum").item()
                for xb, yb in zip(x.split(batch), y.split(batch), strict=True)
            )
            out.append(total / len(x))
    return np.array(out)


def vmapped(
    model: torch.nn.Module, t0: torch.Tensor, t1: torch.Tensor, x, y, alphas, chunk: int = 8
) -> np.ndarray:
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss_at(theta: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(theta, [s.numel() for s in shapes])
        params = {n: p.view(s) for n, p, s in zip(names, pieces, shapes, strict=True)}
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    out = []
    with torch.no_grad():
        for i in range(0, len(alphas), chunk):
            a = torch.tensor(alphas[i : i + chunk], dtype=t0.dtype)[:, None]
            out.append(torch.vmap(loss_at)((1 - a) * t0 + a * t1))
    return torch.cat(out).numpy()


def loss_landscapes_run(start: torch.nn.Module, end: torch.nn.Module, x, y) -> np.ndarray:
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    model = copy.deepcopy(start)
    return np.asarray(
        loss_landscapes.linear_interpolation(model, end, Loss(F.cross_entropy, x, y), steps=101)
    )


def ours(model, start, end, x, y, engine: str, precision: str, batch: int) -> tuple[np.ndarray, dict | None]:
    sweep = linpath.interpolate(
        model,
        start,
        end,
        (x, y),
        alphas=ALPHAS,
        metrics=("loss",),
        batch_size=batch,
        progress=False,
        engine=engine,
        precision=precision,
    )
    return sweep.values["data"]["loss"], sweep.precision_check


def measure(runs: dict, batch: int) -> list[dict]:
    """Best of two runs (one for the slow vmap and loss-landscapes peers); errors at the CHECK α;
    speed relative to the fastest peer."""
    rows = []
    for name, (kind, precision, fn, reference_values) in runs.items():
        seconds, result = best_time(fn, repeats=1 if name.startswith(("torch.func", "loss-")) else 2)
        values, check = result if isinstance(result, tuple) else (result, None)
        rel = np.max(np.abs(np.asarray(values)[CHECK] - reference_values) / np.abs(reference_values))
        rows.append(
            {
                "batch": batch,
                "method": name,
                "kind": kind,
                "precision": precision,
                "seconds": seconds,
                "rel_error": float(rel),
                "throughput": len(ALPHAS) * N / seconds,
                "precision_check": check,
            }
        )
    fastest_peer = min(r["seconds"] for r in rows if r["kind"] == "peer")
    for r in rows:
        r["speedup"] = fastest_peer / r["seconds"]
    return rows


def runs_for(batch: int, start, end, x, y, ref, ll_ref) -> dict:
    t0, t1 = linpath.flatten(start).tensor, linpath.flatten(end).tensor
    plain = start.to_torch().eval()
    runs = {
        "plain PyTorch loop": (
            "peer",
            "float32",
            lambda: plain_loop(plain, t0, t1, x, y, ALPHAS, batch),
            ref,
        ),
        "torch.func vmap (8 α per call)": (
            "peer",
            "float32",
            lambda: vmapped(plain, t0, t1, x, y, ALPHAS, batch),
            ref,
        ),
    }
    if batch == N:  # its Loss metric evaluates all inputs at once
        twin_start, twin_end = start.to_torch().eval(), end.to_torch()
        runs["loss-landscapes 3.0"] = (
            "peer",
            "float32",
            lambda: loss_landscapes_run(twin_start, twin_end, x, y),
            ll_ref,
        )
    runs |= {
        "linpath, nn.Module engine": (
            "ours",
            "float32",
            lambda: ours(plain, t0, t1, x, y, "module", "float32", batch)[0],
            ref,
        ),
        "linpath, nn.Module engine bf16": (
            "ours",
            "bf16",
            lambda: ours(plain, t0, t1, x, y, "module", "bf16", batch),
            ref,
        ),
        "linpath, native float32": (
            "ours",
            "float32",
            lambda: ours(start, start, end, x, y, "native", "float32", batch)[0],
            ref,
        ),
        "linpath, native bf16": (
            "ours",
            "bf16",
            lambda: ours(start, start, end, x, y, "native", "bf16", batch),
            ref,
        ),
    }
    return runs


def measure_peaks(batch: int) -> dict:
    """The float32 and bf16 matmul peaks on the hidden layer's shape at ``batch`` rows (at most N).
    Measured before the sweeps and again after them: floors.matmul_peak returns the highest reading
    of the process, so a low one (between sweeps they varied by 1.4x for one shape in
    bench/scaling.py) cannot inflate the fractions."""
    rows_per_product = min(batch, N)
    peak32 = matmul_peak(rows_per_product, SIZES[1], SIZES[2])
    peak16 = matmul_peak(rows_per_product, SIZES[1], SIZES[2], torch.bfloat16)
    return {"batch": batch, "rows": rows_per_product, "float32": peak32, "bf16": peak16}


def add_floors(rows: list[dict], peaks: dict) -> None:
    """Each row's floor at its batch (the least arithmetic, bench/floors.py, at the peaks measured
    for it) and its fraction of it: bf16 rows against the bf16 floor plus their float32 check's
    alphas at the float32 peak."""
    flops = mlp_sweep_flops(SIZES, N, len(ALPHAS))
    for r in (r for r in rows if r["batch"] == peaks["batch"]):
        check = r["precision_check"]
        floor = flops / peaks["float32"]
        if r["precision"] == "bf16":
            floor = flops / peaks["bf16"] + mlp_sweep_flops(SIZES, N, len(check["alphas"])) / peaks["float32"]
        r["floor_seconds"], r["floor_fraction"] = floor, fraction_of_floor(floor, r["seconds"])


def main() -> None:
    data = linpath.datasets.mnist()
    x, y = data.train[0][:N], data.train[1][:N]
    start, end = endpoints(x, y)
    t0, t1 = linpath.flatten(start).tensor.double(), linpath.flatten(end).tensor.double()
    ref = reference(t0, t1, x, y, ALPHAS[CHECK])
    ll_ref = reference(t0, t1, x, y, (np.arange(1, 102) / 101)[CHECK])  # loss-landscapes' own grid
    rows = []
    batches = (N, 2500)
    for batch in batches:
        measure_peaks(batch)
    for batch in batches:
        rows += measure(runs_for(batch, start, end, x, y, ref, ll_ref), batch)
    peaks = [measure_peaks(batch) for batch in batches]  # again: the highest reading of the run counts
    for p in peaks:
        add_floors(rows, p)
    print(
        f"Sweep: MLP {SIZES}, {N} MNIST examples, {len(ALPHAS)} α in [-0.5, 1.5]  ({machine()['cpu']}, "
        f"{machine()['cores']} cores)"
    )
    print(
        table(
            rows,
            [
                ("batch", "batch", "d"),
                ("method", "method", ""),
                ("seconds", "time (s)", ".2f"),
                ("throughput", "α·examples/s", ",.0f"),
                ("rel_error", "max rel. error vs float64", ".1e"),
                ("speedup", "speed vs fastest peer", ".2f"),
                ("floor_fraction", "fraction of this machine's floor", ".0%"),
            ],
        )
    )
    for p in peaks:
        print(
            f"batch {p['batch']}: highest matmul peak of the run on ({p['rows']}, {SIZES[1]}) @ "
            f"({SIZES[1]}, {SIZES[2]}): {p['float32'] / 1e9:.0f} GFLOP/s float32, {p['bf16'] / 1e9:.0f} bf16"
        )
    for r in rows:
        if r["precision_check"]:
            c = r["precision_check"]
            print(
                f"batch {r['batch']}, {r['method']}: precision check at α={c['alphas']}: max relative loss "
                f"deviation {c['max_rel_loss_deviation']:.2e} (threshold {c['threshold']:.0e})"
            )
    print("saved", save("sweep", {"rows": rows, "peaks": peaks}))


if __name__ == "__main__":
    main()
