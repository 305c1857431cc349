"""`recon pet`: reconstruct a listmode file (one frame or a dynamic series) or a STIR sinogram."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import save_npy_atomic
from recon.algorithms.listmode import FrameResult
from recon.commands.algorithm import (
    ALGORITHM_OPTIONS,
    algorithm_summary,
    check_algorithm,
    reconstruct,
)
from recon.commands.common import (
    DEVICE,
    OUTPUT,
    OVERWRITE,
    OutputFolder,
    config_option,
    existing_file,
    image_timing,
    mu_options,
    note,
    parse_frames,
    print_table,
    write_summary,
)
from recon.commands.options import Option, add_options, resolve
from recon.errors import InputError
from recon.figures import save_reconstruction_figure, sum_frames
from recon.grid import ImageGrid
from recon.io.listmode_file import read_listmode
from recon.pet import PetListmodeModel, PetScanner, SinogramLayout, randoms_from_delayeds
from recon.pet.listmode import ListmodeEvents
from recon.pet.resolution import ImageResolution

__all__ = ["OPTIONS", "add_parser", "default_grid", "run"]

_SINOGRAM_SUFFIXES = (".hs", ".h33")
# A scanner description is a few hundred bytes; anything much larger is not one.
_MAX_SCANNER_FILE_BYTES = 1 << 16

OPTIONS = (
    OUTPUT,
    OVERWRITE,
    Option("scanner", "str",
           f"scanner preset ({', '.join(PetScanner.preset_names())}) or a JSON file of "
           "PetScanner fields (overrides the file's)", default_text="the file's"),
    *mu_options("511 keV", "see 'recon info' and --shape"),
    Option("multiplicative", "path",
           "sinograms only: per-bin factors m of the model m*(P x) + a, as a sinogram file of "
           "the data's shape: detection efficiencies, times the attenuation exp(-line integral "
           "of mu) unless --mu is given (factors, not their inverse correction factors)",
           metavar="HS"),
    Option("additive", "path",
           "expected additive counts a (randoms + scatter; with --scatter sss: randoms only). "
           "Sinograms: per bin over the frame, a sinogram file of the data's shape. Listmode: a "
           ".npy of counts/s, either per bin of the scanner's span-1 layout (plane, view, radial"
           "[, tof]; TOF-resolved when it has a TOF axis, else spread evenly over the TOF bins) "
           "or one value per prompt of the file", metavar="FILE"),
    Option("norm", "path",
           "listmode only: normalisation file (.npz) written by 'recon pet-norm' (crystal "
           "efficiencies and geometric factors); default: a PETSIRD file's own detection "
           "efficiencies when it has them, else none", metavar="FILE"),
    Option("scatter", "str",
           "scatter correction; sss: single-scatter simulation scaled to the data's tails, "
           "re-estimated from the image (needs --mu)", choices=("none", "sss"),
           default="none"),
    Option("scatter-rounds", "int", "reconstruct -> SSS rounds of --scatter sss", default=3,
           minimum=1, maximum=10),
    Option("radial-bins", "int",
           "listmode only: radial bins of the span-1 sinogram layout (odd, at most crystals per "
           "ring - 1): LORs farther from the axis are left out. The scatter tail fit needs "
           "lines outside the body", minimum=1, maximum=100_001,
           default_text="2*floor(N/4)+1 (0.71 of the ring radius); with --scatter sss, lines "
           "out to 0.9 of the ring radius"),
    Option("shape", "ints3", "image grid in voxels", minimum=1, maximum=4096,
           default_text="listmode: half a crystal pitch over 80% of the ring, 2 planes per "
           "ring; sinogram: STIR's default grid ('recon info FILE' shows it)"),
    Option("voxel-mm", "floats3", "voxel size in mm", minimum=0.0, above=True,
           default_text="as for --shape"),
    Option("frames", "str",
           "listmode only: 'start:stop,...' in s or 'NxSECONDS'; frames must start before the "
           "data end", default_text="one frame over the whole acquisition"),
    Option("isotope", "str", "isotope (e.g. F-18, Zr-89) when the file names none",
           default_text="the file's"),
    Option("calibration", "float",
           "counts per (Bq/mL·s·mm) of the scanner, for images in Bq/mL (without it the image is "
           "in counts/s, uncalibrated)", minimum=0.0, above=True),
    Option("no-tof", "flag", "ignore TOF information"),
    Option("psf", "str",
           "resolution model inside the projector; scanner: the scanner's published "
           "resolution (listmode only)", choices=("none", "scanner"), default="none"),
    Option("psf-mm", "float",
           "resolution model: an isotropic Gaussian of this FWHM in mm inside the projector "
           "(P -> P G)", minimum=0.0, above=True, maximum=100.0, metavar="FWHM"),
    Option("iterations", "int", "iterations", minimum=1, maximum=10_000,
           default_text="3 with osem, 30 with bsrem, 10 with oslmap"),
    Option("subsets", "int", "subsets (sinogram views, or listmode event subsets)", default=8,
           minimum=1, maximum=100_000),
    *ALGORITHM_OPTIONS,
    DEVICE,
    config_option("pet"),
)  # fmt: skip


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``recon pet`` subcommand and its options to ``commands``.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``recon`` parser (:func:`recon.cli.main`).
    """
    p = commands.add_parser(
        "pet", help="reconstruct PET listmode (recon .npz or PETSIRD) or a STIR sinogram (.hs)",
        description="LM-OSEM of listmode data (one frame, or dynamic frames each decay-corrected "
        "to the scan start), or OSEM of a STIR Interfile sinogram on its own lines of response. "
        "Writes frame_NNN.npy/.hv/.v and a dynamic DICOM PET series (listmode) or "
        "image.npy/.hv/.v (sinogram), a PNG and summary.json into a new output folder.",
    )  # fmt: skip
    p.add_argument(
        "listmode", help="recon listmode file (.npz), a PETSIRD file or a STIR Interfile sinogram"
    )
    add_options(p, OPTIONS)


def default_grid(scanner: PetScanner) -> ImageGrid:
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
    existing_file(path, "scanner file")
    if path.stat().st_size > _MAX_SCANNER_FILE_BYTES:
        raise InputError(f"{path}: {path.stat().st_size} bytes is not a scanner description")
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a JSON scanner description ({exc})") from None
    return PetScanner.from_dict(fields, where=str(path))


def _isotope_name(name: str | None) -> str | None:
    """The isotope's canonical name (refused early when recon does not know it)."""
    from recon.physics.isotopes import get_isotope

    return get_isotope(name).name if name else None


def _start_datetime(text: str | None) -> dt.datetime | None:
    """The acquisition start a listmode file records (ISO-8601), or None."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def _mu_map(args: argparse.Namespace, grid: ImageGrid) -> Any:
    """The --mu file on the reconstruction grid in 1/mm, or None."""
    if not args.mu:
        return None
    from recon.io.mu_map import read_mu_map

    return read_mu_map(args.mu, grid, units=args.mu_units)


def _grid(args: argparse.Namespace, default: ImageGrid) -> ImageGrid:
    if not (args.shape or args.voxel_mm):
        return default
    return ImageGrid(
        tuple(args.shape or default.shape), tuple(args.voxel_mm or default.voxel_size_mm)
    )


def _resolution(args: argparse.Namespace, scanner: PetScanner | None) -> ImageResolution | None:
    """The resolution model the options ask for (``--psf-mm`` or ``--psf scanner``), or None."""
    if args.psf_mm is not None:
        if args.psf == "scanner":
            raise InputError("give --psf scanner or --psf-mm FWHM, not both")
        return ImageResolution(args.psf_mm)
    if args.psf != "scanner":
        return None
    if scanner is None:
        raise InputError(
            "--psf scanner needs a scanner description; a sinogram's scanner resolution is not "
            "known: give --psf-mm FWHM"
        )
    if scanner.resolution is None:
        raise InputError(
            f"scanner {scanner.name!r} has no published resolution; give --psf-mm FWHM or add "
            "'resolution' to the scanner description"
        )
    return scanner.resolution


def _inputs(args: argparse.Namespace, source: Path) -> list[Path]:
    paths = [source, args.mu, args.multiplicative, args.additive]
    if args.scanner and str(args.scanner).lower().endswith(".json"):
        paths.append(args.scanner)
    return [Path(p) for p in paths if p]


def run(args: argparse.Namespace) -> int:
    """Run ``recon pet``: reconstruct PET listmode data or a STIR sinogram.

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
    resolve(args, OPTIONS, "pet")
    check_algorithm(args, osem_iterations=3)
    source = existing_file(args.listmode, "listmode or sinogram file")
    if source.suffix.lower() in _SINOGRAM_SUFFIXES:
        return _run_sinogram(args, source)
    if args.multiplicative:
        raise InputError(
            f"{source}: --multiplicative applies to sinograms; for listmode give the "
            "normalisation with --norm and the attenuation with --mu"
        )
    _check_scatter_options(args)
    target = OutputFolder(
        args.output, inputs=_inputs(args, source), overwrite=args.overwrite,
        expected=("frames_sum.png", "summary.json"), command="recon pet",
    )  # fmt: skip
    given = _scanner(args.scanner) if args.scanner else None
    start_text = None
    petsird_norm = None
    if source.suffix.lower() == ".npz":
        data = read_listmode(source)
        events, scanner, file_isotope = data.events, given or data.scanner, data.isotope
        start_text = data.start
    else:
        from recon.io.petsird import read_petsird

        events, scanner, meta = read_petsird(source, scanner=given)
        file_isotope = _petsird_isotope(meta)
        petsird_norm = meta.get("normalization")
        if meta.get("normalization_problem"):
            note(f"{source.name}: its detection efficiencies are not used: "
                 f"{meta['normalization_problem']}")  # fmt: skip
    isotope = _isotope_name(args.isotope or file_isotope)
    grid = _grid(args, default_grid(scanner))
    if events.time_ms is None:
        raise InputError(f"{source}: the events carry no detection times; cannot define a frame")
    duration_s = float(events.time_ms[-1]) / 1000.0 if events.n_events else 0.0
    if duration_s <= 0:
        raise InputError(f"{source}: events span no time; cannot define a frame")
    frames = parse_frames(args.frames, math.ceil(duration_s))
    target.expected += tuple(_frame_files(len(frames)))
    if args.scatter == "sss":
        target.expected += tuple(f"scatter_{i:03d}.npy" for i in range(len(frames)))
    target.check()  # a clash with someone else's frame file is refused before any work
    frame_masks = [
        (events.time_ms >= t * 1000.0) & (events.time_ms < (t + d) * 1000.0) for t, d in frames
    ]
    frame_events = [events.select(mask) for mask in frame_masks]
    for (start, length), chosen in zip(frames, frame_events, strict=True):
        if not chosen.prompts().n_events:
            raise InputError(
                f"--frames: the frame {start:g}-{start + length:g} s holds no prompt events; "
                "change the frame list"
            )
    mu = _mu_map(args, grid)
    resolution = _resolution(args, scanner)
    normalization, norm_text = _listmode_normalization(args, scanner, petsird_norm, source)
    n_radial = _radial_bins(args, scanner)
    tof = None if args.no_tof else scanner.tof
    additive = _listmode_additive(args, SinogramLayout(scanner, n_radial=n_radial), tof, events)
    model = PetListmodeModel(
        scanner, grid, mu_map=mu, normalization=normalization, isotope=isotope,
        calibration=args.calibration, use_tof=False if args.no_tof else None,
        resolution=resolution, n_radial=n_radial, device=args.device,
    )  # fmt: skip
    if norm_text is None:
        note("no --norm given: all detector pairs are taken as equally efficient")
    elif args.norm is None:
        note(f"using the detection efficiencies recorded in {source.name} (no --norm given)")
    if args.calibration is None:
        note("no --calibration given: the images are in counts/s, not Bq/mL")
    results, scatter_rows, scatter_sinograms = [], [], []
    for (start, length), mask, events_in_frame in zip(
        frames, frame_masks, frame_events, strict=True
    ):
        randoms = None
        if events_in_frame.delayeds().n_events:
            # Randoms of this frame from its own delayed coincidences (fan-sum estimate).
            randoms = randoms_from_delayeds(events_in_frame, model.layout)
        rate = None if randoms is None else model.additive_rate(events_in_frame, randoms, length)
        if additive is not None:
            given_rate = _frame_additive(additive, model, events, mask, events_in_frame, length)
            rate = given_rate if rate is None else rate + given_rate
        if args.scatter == "sss":
            rate, scatter_row, sinogram = _listmode_scatter(
                args, model, events_in_frame, randoms, start, length
            )
            scatter_rows.append(scatter_row)
            scatter_sinograms.append(sinogram)
        frame = model.frame(events_in_frame, start, length, additive_rate=rate)
        image = reconstruct(frame, frame.counts(), frame.additive, args)
        results.append(FrameResult(image, start, length, frame.n_prompts, frame.decay_factor))
    rows = []
    for index, result in enumerate(results):
        values = np.asarray(result.image)
        rows.append({
            "frame": index, "start_s": result.start_s, "duration_s": result.duration_s,
            "prompts": result.n_prompts, "decay_factor": result.decay_factor,
            "mean": float(values.mean()), "max": float(values.max()),
            **algorithm_summary(result.image),
            **({"scatter_fraction": scatter_rows[index]["scatter_fraction"]}
               if scatter_rows else {}),
        })  # fmt: skip
    summary = {
        "input": str(source), "scanner": scanner.name, "isotope": isotope,
        "units": results[0].image.units,
        "resolution_model": resolution.describe() if resolution else None,
        "normalization": norm_text,
        "additive": args.additive,
        "scatter": None if args.scatter == "none" else {
            "method": "single-scatter simulation, tail-fitted", "rounds": args.scatter_rounds,
            "rounds_reconstructed_with": f"LM-OSEM, 2 iterations of {args.subsets} subsets",
            "frames": scatter_rows,
        },
        "sensitivity_image": getattr(model, "sensitivity_source", None),
        # "axial mirror" when half the planes were projected (exact for this set-up), else None.
        "sensitivity_symmetry": getattr(model, "sensitivity_symmetry", None),
        "grid": {"shape": grid.shape, "voxel_mm": grid.voxel_size_mm},
        "frames": rows,
        # Every frame is decay-corrected to the scan start (its values are the activity then).
        "timing": image_timing(
            "PT", _start_datetime(start_text), results[0].image.reference_time_s, "start"
        ),
    }  # fmt: skip
    acquisition_start = _start_datetime(start_text)
    if acquisition_start is None:
        note(
            f"{source.name} records no acquisition start: the DICOM series is dated by this run, "
            "so uptake values computed from it need the real scan time"
        )
    from recon.io.dicom_write import write_dicom
    from recon.io.interfile import write_interfile

    with target.writing({"settings": _settings(args)}) as out:
        for index, result in enumerate(results):
            save_npy_atomic(out / f"frame_{index:03d}.npy", np.asarray(result.image))
            write_interfile(out / f"frame_{index:03d}.hv", result.image)
        for index, sinogram in enumerate(scatter_sinograms):
            save_npy_atomic(out / f"scatter_{index:03d}.npy", sinogram)
        write_dicom(
            [r.image for r in results], out / "dicom", modality="PT",
            series_description=f"recon pet {source.name}"[:64],
            decay_correction="NONE" if results[0].image.reference_time_s is None else "START",
            acquisition_datetime=acquisition_start,
            frames=[(r.start_s, r.duration_s) for r in results], input_paths=[source],
        )  # fmt: skip
        save_reconstruction_figure(sum_frames([r.image for r in results]), out / "frames_sum.png")
        write_summary(out, "summary.json", summary)
    columns = ["frame", "start_s", "duration_s", "prompts", "decay_factor", "mean", "max"]
    print_table(rows, columns + (["scatter_fraction"] if scatter_rows else []))
    scatter_files = ", scatter_NNN.npy" if scatter_rows else ""
    print(
        f"wrote {len(rows)} frame(s) (frame_NNN.npy, frame_NNN.hv/.v, dicom/{scatter_files}), "
        f"frames_sum.png and summary.json to {args.output}"
    )
    return 0


def _check_scatter_options(args: argparse.Namespace) -> None:
    """Refuse scatter options that cannot work together (before any work)."""
    if args.scatter != "sss":
        return
    if not args.mu:
        raise InputError(
            "--scatter sss needs the attenuation map (--mu): scatter is simulated in it"
        )


def checked_radial_bins(value: int, scanner: PetScanner) -> int:
    """``--radial-bins`` checked against the scanner: odd and at most crystals per ring − 1."""
    largest = scanner.crystals_per_ring - 1
    if not 1 <= value <= largest or value % 2 == 0:
        raise InputError(
            f"--radial-bins must be odd (the bins are centred on the scanner's axis) and between "
            f"1 and {largest} for this scanner, got {value}; e.g. {min(value | 1, largest)}"
        )
    return int(value)


def _radial_bins(args: argparse.Namespace, scanner: PetScanner) -> int | None:
    """``--radial-bins``, or for --scatter sss the bins reaching 0.9 of the ring radius."""
    if args.radial_bins is not None:
        return checked_radial_bins(args.radial_bins, scanner)
    if args.scatter != "sss":
        return None
    n = scanner.crystals_per_ring
    # Radial bin k of a ring of N crystals lies R·sin(πk/N) from the axis.
    half = min(int(n * math.asin(0.9) / math.pi), (n - 2) // 2)
    note(
        f"--scatter sss: {2 * half + 1} radial bins (lines out to 0.9 of the ring radius) so "
        "that the tail fit has lines outside the body; --radial-bins sets it"
    )
    return 2 * half + 1


def _listmode_normalization(
    args: argparse.Namespace, scanner: PetScanner, petsird_norm: Any, source: Path
) -> tuple[Any, str | None]:
    """The normalisation to use (``--norm``, else a PETSIRD file's own), and how to name it."""
    if args.norm:
        from recon.io.normalization_file import read_normalization

        return read_normalization(args.norm, scanner=scanner), str(args.norm)
    if petsird_norm is not None:
        return petsird_norm, f"{source.name} (PETSIRD detection efficiencies)"
    return None, None


def _listmode_additive(
    args: argparse.Namespace, layout: SinogramLayout, tof: Any, events: ListmodeEvents
) -> np.ndarray | None:
    """The ``--additive`` file for listmode: counts/s per layout bin, or per prompt."""
    if not args.additive:
        return None
    from recon._npy import load_npy

    if args.scatter == "sss":
        note("--additive is taken as randoms (counts/s); --scatter sss adds the scatter")
    values = np.asarray(load_npy(args.additive, "additive rates"), dtype=np.float64)
    if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
        raise InputError(f"--additive {args.additive} must hold finite, non-negative counts/s")
    shapes = [tuple(layout.shape)]
    if tof is not None:
        shapes.append((*layout.shape, tof.n_bins))
    n_prompts = int(np.count_nonzero(events.prompt))
    if values.shape not in shapes and values.shape != (n_prompts,):
        raise InputError(
            f"--additive {args.additive} has shape {values.shape}; listmode needs counts/s per "
            f"bin of the layout {' or '.join(map(str, shapes))}, or one value per prompt "
            f"({n_prompts},)"
        )
    return values


def _frame_additive(
    additive: np.ndarray,
    model: PetListmodeModel,
    events: ListmodeEvents,
    mask: np.ndarray,
    events_in_frame: ListmodeEvents,
    length: float,
) -> Any:
    """The per-prompt additive rate of one frame from the ``--additive`` values."""
    if additive.ndim == 1:  # one rate per prompt of the file, in file order
        return model.backend.asarray(additive[mask[events.prompt]])
    return model.additive_rate(events_in_frame, additive * length, length)


def _listmode_scatter(
    args: argparse.Namespace,
    model: PetListmodeModel,
    events_in_frame: ListmodeEvents,
    randoms: Any,
    start: float,
    length: float,
) -> tuple[Any, dict[str, Any], np.ndarray]:
    """The frame's additive rate (randoms + SSS scatter), its report and its scatter sinogram."""
    from recon.algorithms.additive import estimate_scatter
    from recon.pet.scatter import ScatterEstimation

    estimator = ScatterEstimation(
        model, events_in_frame, randoms=randoms, frame_start_s=start, frame_duration_s=length
    )
    estimate = estimate_scatter(
        estimator, rounds=args.scatter_rounds, iterations=2, subsets=args.subsets
    )
    report = estimate.reports[-1]
    for text in report.notes:
        note(f"scatter, frame {start:g}-{start + length:g} s: {text}")
    sinogram = estimator.last_scatter  # the estimate the final additive term holds
    row = {
        "start_s": start, "scatter_fraction": _finite_or_none(report.scatter_fraction),
        "scatter_counts": report.scatter_counts, "net_counts": report.net_counts,
        "tail_fit": report.fit.summary(), "notes": list(report.notes),
        "rounds": [r.summary() for r in estimate.reports],
    }  # fmt: skip
    return estimate.additive, row, np.asarray(model.backend.to_host(sinogram), np.float32)


def _finite_or_none(value: float) -> float | None:
    """``value``, or None where it is NaN or infinite (JSON has no NaN)."""
    return float(value) if math.isfinite(value) else None


def _frame_files(n_frames: int) -> list[str]:
    """The per-frame files of a listmode run (the DICOM series is one new folder)."""
    return [f"frame_{i:03d}{ext}" for i in range(n_frames) for ext in (".npy", ".hv", ".v")]


def _run_sinogram(args: argparse.Namespace, source: Path) -> int:
    """OSEM of a STIR Interfile sinogram on explicit LORs (any span, arc-corrected or not)."""
    from recon.io.interfile import read_interfile_sinogram, write_interfile
    from recon.io.stir_geometry import stir_default_grid, stir_lor_tables
    from recon.pet import PetLorSinogramModel

    for option in ("frames", "scanner", "no_tof", "norm", "radial_bins"):
        if getattr(args, option):
            flag = "--" + option.replace("_", "-")
            raise InputError(f"{source}: {flag} applies to listmode, not to a sinogram")
    _check_scatter_options(args)
    expected = ("image.npy", "image.hv", "image.v", "image.png", "summary.json")
    target = OutputFolder(
        args.output, inputs=_inputs(args, source), overwrite=args.overwrite,
        expected=expected + (("scatter.npy",) if args.scatter == "sss" else ()),
        command="recon pet",
    )  # fmt: skip
    sino = read_interfile_sinogram(source)
    target.add_inputs([sino.description.get("data_path")])
    multiplicative = _companion_sinogram(args.multiplicative, sino, "--multiplicative")
    additive = _companion_sinogram(args.additive, sino, "--additive")
    grid = _grid(args, stir_default_grid(sino))
    mu = _mu_map(args, grid)
    counts = np.asarray(sino.data, dtype=np.float32)
    # Pre-corrected sinograms hold small negative values; the Poisson model needs counts >= 0.
    n_negative = int(np.count_nonzero(counts < 0))
    if n_negative:
        lost = float(-counts[counts < 0].sum())
        note(
            f"{n_negative} of {counts.size} bins ({n_negative / counts.size:.1%}) are negative "
            f"(pre-corrected data?) and were set to 0 (their sum, {lost:.4g}, is "
            f"{lost / max(float(np.abs(counts).sum()), 1e-30):.2%} of the absolute total); OSEM "
            "assumes Poisson counts, so give uncorrected prompts with --multiplicative/--additive "
            "when you have them"
        )
        counts = np.clip(counts, 0.0, None)
    # The frame's timing from the header (STIR's image relative start time / image duration);
    # without it the image is per second of acquisition.
    start_s = sino.description.get("frame_start_s") or 0.0
    duration_s = sino.description.get("frame_duration_s")
    if args.subsets > counts.shape[1]:
        raise InputError(f"--subsets {args.subsets} is more than the {counts.shape[1]} views")
    resolution = _resolution(args, None)
    sss = args.scatter == "sss"
    model = PetLorSinogramModel.separable(
        *stir_lor_tables(sino), grid, mu_map=mu, normalization=multiplicative,
        scatter=None if sss else additive, resolution=resolution,
        isotope=_isotope_name(args.isotope), calibration=args.calibration, frame_start_s=start_s,
        frame_duration_s=duration_s or 1.0, device=args.device,
    )  # fmt: skip
    scatter_report, scatter_sinogram, total_additive = None, None, None
    if sss:
        scatter_report, scatter_sinogram, total_additive = _sinogram_scatter(
            args, model, counts, additive
        )
    image = reconstruct(model, counts, total_additive, args)
    values = np.asarray(image)
    fit = np.asarray(model.backend.to_host(model.forward(image)))
    if total_additive is not None:
        fit = fit + np.asarray(model.backend.to_host(total_additive))
    elif additive is not None:
        fit = fit + additive
    residual = float(np.linalg.norm(fit - counts) / max(np.linalg.norm(counts), 1e-30))
    summary = {
        "input": str(source), "arc_corrected": sino.description["arc_corrected"],
        "segments": len(sino.description["segments"]), "isotope": args.isotope,
        "units": image.units, **algorithm_summary(image), "negative_bins_set_to_0": n_negative,
        "resolution_model": resolution.describe() if resolution else None,
        "frame_start_s": start_s, "frame_duration_s": duration_s,
        "multiplicative": args.multiplicative, "additive": args.additive,
        "scatter": scatter_report,
        "counts": float(counts.sum()), "relative_residual": residual,
        "image_total": float(values.sum()),
        "grid": {"shape": grid.shape, "voxel_mm": grid.voxel_size_mm, "origin_mm": grid.origin},
        "timing": image_timing("PT", None, image.reference_time_s, "start"),
    }  # fmt: skip
    with target.writing({"settings": _settings(args)}) as out:
        save_npy_atomic(out / "image.npy", values)
        write_interfile(out / "image.hv", image)
        if scatter_sinogram is not None:
            save_npy_atomic(out / "scatter.npy", scatter_sinogram)
        save_reconstruction_figure(image, out / "image.png", title=f"recon pet: {source.name}")
        write_summary(out, "summary.json", summary)
    hidden = ("grid", "timing", "objective", "relaxation", "scatter")
    if scatter_report is not None:
        summary_line = scatter_report["scatter_fraction"]
        shown = "n/a" if summary_line is None else f"{summary_line:.1%}"
        print(f"scatter fraction {shown} ({scatter_report['tail_fit']})")
    rows = [{"item": k, "value": v} for k, v in summary.items() if k not in hidden]
    print_table(rows, ["item", "value"])
    print(f"wrote image.npy, image.hv/.v, image.png and summary.json to {args.output}")
    return 0


def _sinogram_scatter(
    args: argparse.Namespace, model: Any, counts: np.ndarray, randoms: np.ndarray | None
) -> tuple[dict[str, Any], np.ndarray, Any]:
    """SSS for a sinogram: its report, the scatter sinogram and the total additive term."""
    from recon.algorithms.additive import estimate_scatter
    from recon.pet.scatter import ScatterEstimation

    if randoms is not None:
        note("--additive is taken as randoms; --scatter sss adds the scatter")
    estimator = ScatterEstimation(model, counts, randoms=randoms)
    estimate = estimate_scatter(
        estimator, rounds=args.scatter_rounds, iterations=2, subsets=args.subsets
    )
    report = estimate.reports[-1]
    for text in report.notes:
        note(f"scatter: {text}")
    sinogram = estimator.last_scatter  # the estimate the final additive term holds
    row = {
        "method": "single-scatter simulation, tail-fitted", "rounds": args.scatter_rounds,
        "rounds_reconstructed_with": f"OSEM, 2 iterations of {args.subsets} subsets",
        "scatter_fraction": _finite_or_none(report.scatter_fraction),
        "scatter_counts": report.scatter_counts, "net_counts": report.net_counts,
        "tail_fit": report.fit.summary(), "notes": list(report.notes),
        "round_summaries": [r.summary() for r in estimate.reports],
    }  # fmt: skip
    host = np.asarray(model.backend.to_host(sinogram), np.float32)
    return row, host, estimate.additive


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


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of this run, for the output manifest."""
    return {o.dest: getattr(args, o.dest, None) for o in OPTIONS if o.in_config}
