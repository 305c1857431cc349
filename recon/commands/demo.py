"""`recon demo`: a simulated phantom study reconstructed end to end (Tc-99m SPECT or F-18 PET)."""

from __future__ import annotations

import argparse

from recon.commands.common import DEVICE, OVERWRITE
from recon.commands.options import Option, add_options, resolve

__all__ = ["OPTIONS", "add_parser", "run"]

OPTIONS = (
    Option("output", "path", "output folder (new or empty, see --overwrite)", short="-o",
           default="recon_demo_output", in_config=False, metavar="OUT"),
    OVERWRITE,
    Option("pet", "flag", "the PET demo (F-18 TOF listmode, LM-OSEM) instead of SPECT",
           in_config=False),
    Option("iterations", "int", "iterations", minimum=1, maximum=1000,
           default_text="8 (SPECT), 3 (PET)", in_config=False),
    Option("subsets", "int", "subsets (SPECT: at most the 120 views)", default=8, minimum=1,
           maximum=120, in_config=False),
    DEVICE,
    Option("seed", "int", "seed of the simulated noise", default=20261125, minimum=0,
           in_config=False),
)  # fmt: skip


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``recon demo`` subcommand and its options to ``commands``.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``recon`` parser (:func:`recon.cli.main`).
    """
    p = commands.add_parser(
        "demo",
        help="simulate and reconstruct a phantom study (Tc-99m SPECT, or F-18 TOF PET)",
        description="Simulate a NEMA-IEC-like phantom study, reconstruct it and print the sphere "
        "recovery coefficients; writes the image (.npy, Bq/mL), a figure (.png) and a JSON "
        "summary.",
    )
    add_options(p, OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Run ``recon demo``: simulate a phantom study and reconstruct it.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (the options of :func:`add_parser`).

    Returns
    -------
    int
        The exit status, 0 (the results are in ``args.output``).

    Raises
    ------
    ReconError
        An option, an input file or the output folder is unusable; :func:`recon.cli.main` prints
        the message and exits with status 2.
    """
    resolve(args, OPTIONS, "demo")
    if args.pet:
        from recon.simulate.demo_pet import run_pet_demo as demo
    else:
        from recon.simulate.demo_spect import run_spect_demo as demo
    settings = {} if args.iterations is None else {"iterations": args.iterations}
    demo(
        output_dir=args.output, subsets=args.subsets, device=args.device, seed=args.seed,
        overwrite=args.overwrite, **settings,
    )  # fmt: skip
    return 0
