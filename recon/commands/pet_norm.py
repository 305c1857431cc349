"""`recon pet-norm`: PET normalisation factors from a calibration scan of a uniform cylinder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from recon.commands.common import (
    OUTPUT,
    OVERWRITE,
    OutputFolder,
    config_option,
    existing_file,
    note,
    print_table,
    write_summary,
)
from recon.commands.options import Option, add_options, resolve
from recon.commands.pet import _scanner, checked_radial_bins
from recon.errors import InputError
from recon.io.listmode_file import read_listmode
from recon.pet import SinogramLayout, randoms_from_delayeds
from recon.pet.listmode import histogram
from recon.pet.norm_estimation import MU_WATER_511_PER_MM, cylinder_sinogram, estimate_normalization

__all__ = ["OPTIONS", "add_parser", "run"]

OPTIONS = (
    OUTPUT,
    OVERWRITE,
    Option("scanner", "str", "scanner preset or JSON description (overrides the file's)",
           default_text="the file's"),
    Option("radius-mm", "float", "inner radius of the cylinder's active volume, mm (required)",
           minimum=0.0, above=True),
    Option("length-mm", "float", "active length of the cylinder, mm", minimum=0.0, above=True,
           default_text="longer than the scanner (no end caps in the field of view)"),
    Option("centre-mm", "floats3", "world position (z y x) of the cylinder's centre, mm",
           default=[0.0, 0.0, 0.0]),
    Option("mu", "float", "linear attenuation at 511 keV inside the cylinder, 1/mm (0: none)",
           minimum=0.0, maximum=0.1, default=MU_WATER_511_PER_MM),
    Option("crystals-per-block", "int",
           "transaxial crystals per detector block (the period of the transaxial geometric "
           "factors; 1: a purely radial profile)", default=1, minimum=1),
    Option("method", "str", "ml (fan-sum start, then ML to convergence) or fansum",
           choices=("ml", "fansum"), default="ml"),
    Option("max-ring-difference", "int", "largest ring difference of the factors",
           minimum=0, default_text="all ring pairs"),
    Option("radial-bins", "int", "radial bins of the span-1 layout (odd)", minimum=1,
           default_text="2*floor(N/4)+1"),
    config_option("pet-norm"),
)  # fmt: skip

_FILES = ("normalization.npz", "efficiencies.png", "summary.json")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``recon pet-norm`` subcommand and its options to ``commands``.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``recon`` parser (:func:`recon.cli.main`).
    """
    p = commands.add_parser(
        "pet-norm", help="PET normalisation from a uniform-cylinder calibration scan",
        description="Estimates crystal efficiencies and geometric (radial/block, ring-pair) "
        "factors from the listmode file of a uniform cylinder scan (trues: prompts minus the "
        "delayeds' randoms estimate) against the cylinder's exact expected sinogram, and writes "
        "normalization.npz for 'recon pet --norm', a PNG of the efficiencies and summary.json.",
    )  # fmt: skip
    p.add_argument("calibration", help="recon listmode file (.npz) of the calibration scan")
    add_options(p, OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Run ``recon pet-norm``.

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
        An option, the calibration file or the output folder is unusable.
    """
    resolve(args, OPTIONS, "pet-norm")
    if args.radius_mm is None:
        raise InputError("give the calibration cylinder's radius: --radius-mm R (mm)")
    source = existing_file(args.calibration, "calibration listmode file")
    if source.suffix.lower() != ".npz":
        raise InputError(f"{source}: recon pet-norm reads a recon listmode file (.npz)")
    inputs = [source] + ([Path(args.scanner)] if str(args.scanner or "").endswith(".json") else [])
    target = OutputFolder(
        args.output, inputs=inputs, overwrite=args.overwrite, expected=_FILES,
        command="recon pet-norm",
    )  # fmt: skip
    data = read_listmode(source)
    scanner = _scanner(args.scanner) if args.scanner else data.scanner
    n_radial = None if args.radial_bins is None else checked_radial_bins(args.radial_bins, scanner)
    layout = SinogramLayout(
        scanner, max_ring_difference=args.max_ring_difference, n_radial=n_radial
    )
    events = data.events.validate(scanner)
    prompts = histogram(events, layout, tof=False)[0].astype(np.float64)
    if not prompts.sum() > 0:
        raise InputError(f"{source}: no prompt lies on a line of response of the layout")
    randoms = None
    if events.delayeds().n_events:
        randoms = randoms_from_delayeds(events, layout)
        trues = np.clip(prompts - randoms, 0.0, None)
    else:
        note(f"{source.name} holds no delayed coincidences: the prompts are taken as trues")
        trues = prompts
    expected = cylinder_sinogram(
        layout,
        args.radius_mm,
        args.length_mm,
        mu_per_mm=args.mu,
        centre_mm=tuple(args.centre_mm)[::-1],  # (z, y, x) on the command line, (x, y, z) here
    )
    normalization = estimate_normalization(
        trues, expected, layout, crystals_per_block=args.crystals_per_block,
        method=args.method, source=f"uniform cylinder r={args.radius_mm:g} mm in {source.name}",
    )  # fmt: skip
    info = normalization.info
    for key in ("dead_crystals", "extrapolated_radial_bins", "unmeasured_ring_pairs"):
        if info.get(key):
            note(f"{key.replace('_', ' ')}: {info[key]}")
    if not info.get("converged", True):
        note(f"the ML estimation stopped after {info.get('iterations')} iterations before "
             "converging; the factors may be less precise than stated")  # fmt: skip
    summary: dict[str, Any] = {
        "input": str(source), "scanner": scanner.name, "layout": {
            "shape": layout.shape, "max_ring_difference": layout.max_ring_difference,
            "n_radial": layout.n_radial,
        },
        "cylinder": {"radius_mm": args.radius_mm, "length_mm": args.length_mm,
                     "centre_zyx_mm": list(args.centre_mm), "mu_per_mm": args.mu},
        "prompts": float(prompts.sum()),
        "randoms": None if randoms is None else float(randoms.sum()),
        "efficiency": _spread(normalization.crystal_efficiency),
        **{k: v for k, v in info.items() if k != "source"},
    }  # fmt: skip
    from recon.io.normalization_file import write_normalization

    with target.writing({"settings": _settings(args)}) as out:
        write_normalization(out / "normalization.npz", normalization)
        _efficiency_figure(normalization.crystal_efficiency, out / "efficiencies.png", source)
        write_summary(out, "summary.json", summary)
    rows = [{"item": k, "value": v} for k, v in summary.items() if k not in ("layout", "cylinder")]
    print_table(rows, ["item", "value"])
    print(f"wrote normalization.npz (for recon pet --norm), efficiencies.png and summary.json "
          f"to {args.output}")  # fmt: skip
    return 0


def _spread(efficiency: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation and range of the live crystals' efficiencies."""
    live = efficiency[efficiency > 0]
    return {"mean": float(live.mean()), "sd": float(live.std()), "min": float(live.min()),
            "max": float(live.max())}  # fmt: skip


def _efficiency_figure(efficiency: np.ndarray, path: Path, source: Path) -> None:
    """Crystal efficiencies as a ring × crystal map with a colour bar."""
    from recon.figures import new_figure, save_figure, style_axes

    values = np.asarray(efficiency, np.float64)
    fig = new_figure(1200, 420, layout="constrained")
    ax = fig.subplots()
    live = values[values > 0]
    low, high = (0.0, 1.0)
    if live.size:
        low, high = float(np.percentile(live, 1)), float(np.percentile(live, 99))
    shown = ax.imshow(values, aspect="auto", cmap="viridis", vmin=low, vmax=high,
                      interpolation="nearest", origin="lower")  # fmt: skip
    ax.set_xlabel("crystal in ring (index, counter-clockwise from +x)")
    ax.set_ylabel("ring (index, -z to +z)")
    ax.set_title(f"crystal efficiencies from {source.name} (window: 1st-99th percentile)")
    bar = fig.colorbar(shown, ax=ax)
    bar.set_label("relative efficiency (mean 1)")
    style_axes(ax)
    save_figure(fig, path)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of this run, for the output manifest."""
    return {o.dest: getattr(args, o.dest, None) for o in OPTIONS if o.in_config}
