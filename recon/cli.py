"""The `recon` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from recon.commands import info, pet, quant, spect
from recon.commands.common import apply_config
from recon.errors import ReconError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recon", description="Quantitative SPECT/PET reconstruction."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="simulate and reconstruct a phantom study (Tc-99m SPECT, or F-18 TOF PET)"
    )
    demo.add_argument("--pet", action="store_true", help="the PET listmode demo instead of SPECT")
    demo.add_argument("-o", "--output", default="recon_demo_output", help="output folder")
    demo.add_argument("--iterations", type=int, default=None, help="default: 8 (SPECT), 3 (PET)")
    demo.add_argument("--subsets", type=int, default=8)
    demo.add_argument("--device", choices=("auto", "cpu", "gpu"), default=None)
    demo.add_argument("--seed", type=int, default=20261125)
    spect.add_parser(commands)
    pet.add_parser(commands)
    info.add_parser(commands)
    quant.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 only on success)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        if args.command == "demo":
            if args.pet:
                from recon.demo_pet import run_pet_demo as run
            else:
                from recon.demo import run_spect_demo as run
            settings = {} if args.iterations is None else {"iterations": args.iterations}
            run(
                output_dir=args.output, subsets=args.subsets, device=args.device,
                seed=args.seed, **settings,
            )  # fmt: skip
        elif args.command == "spect":
            return spect.run(apply_config(args, "spect"))
        elif args.command == "info":
            return info.run(args)
        elif args.command == "pet":
            return pet.run(apply_config(args, "pet"))
        elif args.command == "quant":
            return quant.run(args)
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
