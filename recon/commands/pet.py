"""`recon pet`: reconstruct a listmode file, as one frame or as a dynamic series."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import save_npy_atomic
from recon._png import montage_slices_mip, write_png
from recon.algorithms.listmode import reconstruct_frames
from recon.commands.common import output_folder, parse_frames, print_table, write_summary
from recon.errors import InputError
from recon.grid import ImageGrid
from recon.io.listmode_file import read_listmode
from recon.pet import PetListmodeModel, PetScanner, randoms_from_delayeds

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "pet", help="reconstruct PET listmode (recon .npz or PETSIRD) or a STIR sinogram (.hs)"
    )
    p.add_argument(
        "listmode", help="recon listmode file (.npz), a PETSIRD file or a STIR Interfile sinogram"
    )
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument(
        "--scanner",
        help="scanner preset name, or a JSON file of PetScanner fields (overrides the file)",
    )
    p.add_argument(
        "--mu",
        help="attenuation map at 511 keV: .npy (1/mm, on the image grid, see --shape), "
        "Interfile .hv (1/cm, as STIR and CASToR write them) or NIfTI; resampled onto the grid",
    )
    p.add_argument("--mu-units", choices=("1/mm", "1/cm"), help="unit of the --mu file's values")
    p.add_argument(
        "--multiplicative",
        help="sinograms only: per-bin factors m of the model m*(P x) + a, as a sinogram file of "
        "the data's shape: detection efficiencies, times the attenuation exp(-line integral of mu) "
        "unless --mu is given (factors, not their inverse correction factors)",
    )
    p.add_argument(
        "--additive",
        help="sinograms only: expected additive counts a per bin (randoms + scatter), as a "
        "sinogram file of the data's shape",
    )
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"))
    p.add_argument("--voxel-mm", type=float, nargs=3, metavar=("Z", "Y", "X"))
    p.add_argument("--frames", help="'start:stop,...' in s or 'NxSECONDS' (default: one frame)")
    p.add_argument("--isotope", help="isotope, if the file does not name one")
    p.add_argument("--calibration", type=float, help="counts per (Bq/mL·s·mm): image in Bq/mL")
    p.add_argument("--no-tof", action="store_true", default=None, help="ignore TOF information")
    p.add_argument("--iterations", type=int)
    p.add_argument("--subsets", type=int)
    p.add_argument("--device", choices=("auto", "cpu", "gpu"))
    p.add_argument("--config", help="TOML file whose [pet] table supplies defaults")


def _default_grid(scanner: PetScanner) -> ImageGrid:
    """Voxels of half a crystal pitch over 80% of the ring, one plane per ring spacing / 2."""
    pitch = 2 * math.pi * scanner.radius_mm / scanner.crystals_per_ring
    voxel_xy = pitch
    n_xy = int(2 * math.ceil(0.8 * scanner.radius_mm / voxel_xy))
    voxel_z = scanner.ring_spacing_mm / 2
    n_z = 2 * scanner.n_rings - 1
    return ImageGrid((n_z, n_xy, n_xy), (voxel_z, voxel_xy, voxel_xy))


def _petsird_isotope(meta: dict) -> str | None:
    """The radionuclide named in a PETSIRD exam, when recon knows it."""
    from recon.errors import PhysicsError
    from recon.physics.isotopes import get_isotope

    for item in meta.get("radiopharmaceuticals") or []:
        code = item.get("radionuclide") or {}
        try:
            return get_isotope(code.get("code_meaning", "")).name
        except PhysicsError:
            continue
    return None


def _scanner(spec: str) -> PetScanner:
    """A preset name, or a JSON file holding PetScanner fields (``tof`` as a nested object)."""
    path = Path(spec)
    if path.suffix.lower() != ".json":
        return PetScanner.preset(spec)
    import json

    from recon.pet.tof import Tof

    try:
        fields = json.loads(path.read_text())
        tof = fields.pop("tof", None)
        return PetScanner(**fields, tof=None if tof is None else Tof(**tof))
    except FileNotFoundError:
        raise InputError(f"{path}: scanner file not found") from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a scanner description ({exc})") from None


def _mu_map(args: argparse.Namespace, grid: ImageGrid) -> Any:
    """The --mu file on the reconstruction grid in 1/mm, or None."""
    if not args.mu:
        return None
    from recon.io.mu_map import read_mu_map

    return read_mu_map(args.mu, grid, units=args.mu_units)


def run(args: argparse.Namespace) -> int:
    source = Path(args.listmode)
    if source.suffix.lower() in (".hs", ".h33"):
        return _run_sinogram(args, source)
    for option in ("multiplicative", "additive"):
        if getattr(args, option):
            raise InputError(f"{source}: --{option} applies to sinograms, not to listmode")
    given = _scanner(args.scanner) if args.scanner else None
    if source.suffix.lower() == ".npz":
        data = read_listmode(source)
        events, scanner, file_isotope = data.events, given or data.scanner, data.isotope
    else:
        from recon.io.petsird import read_petsird

        events, scanner, meta = read_petsird(source, scanner=given)
        file_isotope = _petsird_isotope(meta)
    isotope = args.isotope or file_isotope
    grid = _default_grid(scanner)
    if args.shape or args.voxel_mm:
        grid = ImageGrid(
            tuple(args.shape or grid.shape), tuple(args.voxel_mm or grid.voxel_size_mm)
        )
    mu = _mu_map(args, grid)
    duration_s = float(events.time_ms[-1]) / 1000.0 if events.n_events else 0.0
    if duration_s <= 0:
        raise InputError(f"{source}: events span no time; cannot define a frame")
    frames = parse_frames(args.frames, math.ceil(duration_s))
    out = output_folder(args.output, [source])
    model = PetListmodeModel(
        scanner, grid, mu_map=mu, isotope=isotope, calibration=args.calibration,
        use_tof=False if args.no_tof else None, device=args.device,
    )  # fmt: skip
    results = []
    for start, length in frames:
        frame_events = events.time_window(start * 1000.0, (start + length) * 1000.0)
        kwargs = {}
        if frame_events.delayeds().n_events:
            # Randoms of this frame from its own delayed coincidences (fan-sum estimate).
            randoms = randoms_from_delayeds(frame_events, model.layout)
            kwargs["additive_rate"] = model.additive_rate(frame_events, randoms, length)
        results += reconstruct_frames(
            model, frame_events, [(start, length)], iterations=args.iterations or 3,
            subsets=args.subsets or 8, **kwargs,
        )  # fmt: skip
    rows = []
    total = None
    for index, result in enumerate(results):
        values = np.asarray(result.image)
        save_npy_atomic(out / f"frame_{index:03d}.npy", values)
        total = values if total is None else total + values
        rows.append({
            "frame": index, "start_s": result.start_s, "duration_s": result.duration_s,
            "prompts": result.n_prompts, "decay_factor": result.decay_factor,
            "mean": float(values.mean()), "max": float(values.max()),
        })  # fmt: skip
    write_png(out / "frames_sum.png", montage_slices_mip(total))
    write_summary(out, "summary.json", {
        "input": str(source), "scanner": scanner.name, "isotope": isotope,
        "units": results[0].image.units,
        "grid": {"shape": grid.shape, "voxel_mm": grid.voxel_size_mm},
        "frames": rows,
    })  # fmt: skip
    print_table(rows, ["frame", "start_s", "duration_s", "prompts", "decay_factor", "mean", "max"])
    print(f"wrote {len(rows)} frame(s) to {out}")
    return 0


def _run_sinogram(args: argparse.Namespace, source: Path) -> int:
    """OSEM of a STIR Interfile sinogram on explicit LORs (any span, arc-corrected or not)."""
    from recon.algorithms import osem
    from recon.io.interfile import read_interfile_sinogram, write_interfile
    from recon.io.stir_geometry import stir_default_grid, stir_sinogram_model

    for option in ("frames", "scanner", "no_tof"):
        if getattr(args, option):
            flag = "--" + option.replace("_", "-")
            raise InputError(f"{source}: {flag} applies to listmode, not to a sinogram")
    sino = read_interfile_sinogram(source)
    multiplicative = _companion_sinogram(args.multiplicative, sino, "--multiplicative")
    additive = _companion_sinogram(args.additive, sino, "--additive")
    grid = stir_default_grid(sino)
    if args.shape or args.voxel_mm:
        grid = ImageGrid(
            tuple(args.shape or grid.shape), tuple(args.voxel_mm or grid.voxel_size_mm)
        )
    mu = _mu_map(args, grid)
    counts = np.asarray(sino.data, dtype=np.float32)
    # Pre-corrected sinograms hold small negative values; the Poisson model needs counts >= 0.
    n_negative = int(np.count_nonzero(counts < 0))
    if n_negative:
        counts = np.clip(counts, 0.0, None)
    # The frame's timing from the header (STIR's image relative start time / image duration);
    # without it the image is per second of acquisition.
    start_s = sino.description.get("frame_start_s") or 0.0
    duration_s = sino.description.get("frame_duration_s")
    model = stir_sinogram_model(
        sino, grid, mu_map=mu, normalization=multiplicative, scatter=additive,
        isotope=args.isotope, calibration=args.calibration, frame_start_s=start_s,
        frame_duration_s=duration_s or 1.0, device=args.device,
    )  # fmt: skip
    inputs = [Path(p) for p in (source, args.mu, args.multiplicative, args.additive) if p]
    out = output_folder(args.output, inputs)
    image = osem(model, counts, iterations=args.iterations or 3, subsets=args.subsets or 8)
    values = np.asarray(image)
    fit = np.asarray(model.backend.to_host(model.forward(image)))
    if additive is not None:
        fit = fit + additive
    residual = float(np.linalg.norm(fit - counts) / max(np.linalg.norm(counts), 1e-30))
    save_npy_atomic(out / "image.npy", values)
    write_interfile(out / "image.hv", image)
    write_png(out / "image.png", montage_slices_mip(values))
    summary = {
        "input": str(source), "arc_corrected": sino.description["arc_corrected"],
        "segments": len(sino.description["segments"]), "isotope": args.isotope,
        "units": image.units, "iterations": image.info["iterations"],
        "subsets": image.info["subsets"], "negative_bins_set_to_0": n_negative,
        "frame_start_s": start_s, "frame_duration_s": duration_s,
        "multiplicative": args.multiplicative, "additive": args.additive,
        "counts": float(counts.sum()), "relative_residual": residual,
        "image_total": float(values.sum()),
        "grid": {"shape": grid.shape, "voxel_mm": grid.voxel_size_mm, "origin_mm": grid.origin},
    }  # fmt: skip
    write_summary(out, "summary.json", summary)
    print_table([{"item": k, "value": v} for k, v in summary.items() if k != "grid"],
                ["item", "value"])  # fmt: skip
    print(f"wrote image.npy, image.hv/.v, image.png and summary.json to {out}")
    return 0


def _companion_sinogram(path: str | None, sino: Any, flag: str) -> np.ndarray | None:
    """A sinogram file that goes with the data (factors or additive counts), checked."""
    if path is None:
        return None
    from recon.io.interfile import read_interfile_sinogram

    other = read_interfile_sinogram(path)
    if other.data.shape != sino.data.shape:
        raise InputError(
            f"{flag} {path} has shape {other.data.shape}; the data have {sino.data.shape}"
        )
    values = np.asarray(other.data, dtype=np.float32)
    if not np.all(np.isfinite(values)) or values.min() < 0:
        raise InputError(f"{flag} {path} must hold finite, non-negative values")
    return values
