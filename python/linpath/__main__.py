"""Command line: ``python -m linpath demo`` (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    args = parser.parse_args(argv)

    from . import demo as demo_module

    cfg = demo_module.DemoConfig.smoke(args.out) if args.smoke else demo_module.DemoConfig(out=args.out)
    overrides = {"seed": args.seed} | ({"epochs": args.epochs} if args.epochs is not None else {})
    import dataclasses

    cfg = dataclasses.replace(cfg, **overrides)
    if cfg.epochs < 1:
        parser.error("--epochs must be at least 1")
    summary = demo_module.run(cfg)
    print(demo_module.report(summary, cfg.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
