"""Command line: ``python -m linpath demo``, ``reproduce``, ``sweep`` and ``surface`` (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import jobs


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m linpath`` and the ``linpath`` script."""
    parser = argparse.ArgumentParser(prog="linpath", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="ReLU MLP on MNIST: the line (Fig. 1) and the projection (Fig. 5)"
    )
    demo.add_argument("--out", type=Path, default=Path("results/demo"), help="output directory")
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (default 5)")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--smoke", action="store_true", help="a seconds-long run on 2,000 examples (for tests)")
    _add_reproduce(commands)
    jobs.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "reproduce":
        return _reproduce(args)
    if args.command in jobs.COMMANDS:
        return jobs.run(args)

    from . import demo as demo_module

    cfg = demo_module.DemoConfig.smoke(args.out) if args.smoke else demo_module.DemoConfig(out=args.out)
    overrides = {"seed": args.seed} | ({"epochs": args.epochs} if args.epochs is not None else {})
    import dataclasses

    cfg = dataclasses.replace(cfg, **overrides)
    if cfg.epochs < 1:
        parser.error("--epochs must be at least 1")
    try:
        summary = demo_module.run(cfg)
    except (ValueError, OSError) as e:
        parser.exit(2, f"linpath demo: error: {e}\n")
    print(demo_module.report(summary, cfg.out))
    return 0


FIGURE_CHOICES = (
    *(f"fig{i}" for i in range(1, 9)),
    "fig6_init",
    "fig7_init",
    "align",
    "all",
)


def _add_reproduce(commands: argparse._SubParsersAction) -> None:
    reproduce = commands.add_parser(
        "reproduce",
        help="the paper's figures 1-8, the ablations of 6 and 7, and 'align' (between two solutions): "
        "PNG + JSON each, claims.md",
        description="Reproduce figures of Goodfellow, Vinyals & Saxe (2015) on real data: 1-5 MNIST MLPs, "
        "6 conv maxout on CIFAR-10, 7 MP-DBM on MNIST, 8 LSTM on Penn Treebank ('all': these eight); "
        "'fig6_init', 'fig7_init': the ablations of figures 6 and 7 (initial scale, max-norm); "
        "'align': two MNIST MLPs from different seeds before and after permutation alignment and along "
        "a Bezier curve, for several widths. Training runs are cached in OUT/runs/ and reused by later "
        "calls with the same settings.",
    )
    reproduce.add_argument(
        "figures", nargs="+", choices=FIGURE_CHOICES, metavar="FIGURE", help=", ".join(FIGURE_CHOICES)
    )
    reproduce.add_argument(
        "--scale",
        choices=("smoke", "small", "medium", "paper"),
        default="small",
        help="smoke: seconds (CI); small: real data, minutes on a CPU (default); medium: figures 6 and 7 "
        "with the originals' recipes, 3 seeds, and their ablations (fig6_init, fig7_init), up to 90 "
        "minutes a figure on a CPU; paper: as in the paper",
    )
    reproduce.add_argument(
        "--out", type=Path, default=None, help="output directory (default results/reproduce/SCALE)"
    )
    reproduce.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="cpu: native trainer and sweep; cuda: PyTorch on the GPU (figures 1-5); "
        "auto (default): the GPU for figures 1-5 at --scale paper when there is one",
    )
    reproduce.add_argument("--quiet", action="store_true", help="no progress bars")


def _reproduce(args: argparse.Namespace) -> int:
    from . import experiments
    from .experiments.report import report

    out = args.out if args.out is not None else Path("results/reproduce") / args.scale
    device = None if args.device == "auto" else args.device
    try:
        summary = experiments.reproduce(
            args.figures, args.scale, out, progress=False if args.quiet else None, device=device
        )
    except (ValueError, OSError) as e:
        print(f"linpath reproduce: error: {e}", file=sys.stderr)
        return 2
    print(report(summary, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
