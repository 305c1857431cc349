"""The `recon` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from recon.errors import ReconError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recon", description="Quantitative SPECT/PET reconstruction."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="simulate and reconstruct a Tc-99m SPECT phantom study")
    demo.add_argument("-o", "--output", default="recon_demo_output", help="output folder")
    demo.add_argument("--iterations", type=int, default=8)
    demo.add_argument("--subsets", type=int, default=8)
    demo.add_argument("--device", choices=("auto", "cpu", "gpu"), default=None)
    demo.add_argument("--seed", type=int, default=20261125)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 only on success)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        if args.command == "demo":
            from recon.demo import run_spect_demo

            run_spect_demo(
                output_dir=args.output, iterations=args.iterations, subsets=args.subsets,
                device=args.device, seed=args.seed,
            )  # fmt: skip
        return 0
    except ReconError as exc:
        print(f"recon: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrecon: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"recon: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
