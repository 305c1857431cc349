"""`recon spect`: reconstruct a SPECT acquisition (DICOM NM or Interfile projections)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import save_npy_atomic
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
    print_table,
    write_summary,
)
from recon.commands.options import Option, add_options, resolve
from recon.errors import InputError, ReconError
from recon.figures import save_reconstruction_figure
from recon.grid import ImageGrid
from recon.physics.isotopes import Isotope, get_isotope
from recon.physics.windows import PhotopeakWindow, WindowAssignment, assign_windows
from recon.spect import Collimator, SpectGeometry, SpectModel, photopeak_model

__all__ = ["OPTIONS", "add_parser", "default_grid", "read_projections", "run"]

log = logging.getLogger("recon")

OPTIONS = (
    OUTPUT,
    OVERWRITE,
    Option("ct", "path", "folder of the CT series for attenuation correction", metavar="DIR",
           exclusive_with=("mu",)),
    *mu_options("the photon energy", "see 'recon info'"),
    Option("mu-spectub-mirrored", "flag",
           "the --mu map was made for STIR's SPECT projector (SPECTUB), which mirrors the "
           "emission left-right against the map: mirror the map back (default: the map is "
           "placed where its header says)"),
    Option("scatter", "str", "scatter estimate from the energy windows",
           choices=("tew", "dew", "none"),
           default_text="tew when the file has a scatter window below the photopeak, else none"),
    Option("no-psf", "flag", "no collimator-detector response (resolution) model"),
    Option("collimator", "str",
           f"collimator preset ({', '.join(Collimator.preset_names())})",
           default_text="by photon energy: LEHR below 200 keV, ME below 300 keV, HE above"),
    Option("isotope", "str", "isotope (e.g. Tc-99m, In-111) when the file names none",
           default_text="the file's"),
    Option("isotopes", "str",
           "a simultaneous multi-isotope acquisition: its isotopes, comma-separated (e.g. "
           "Tc-99m,In-111); one image per isotope, reconstructed jointly from every photopeak "
           "window, written to a sub-folder per isotope", metavar="ISO,ISO",
           exclusive_with=("isotope", "photopeaks", "sensitivity")),
    Option("sensitivity", "float",
           "planar sensitivity in cps/MBq, for images in Bq/mL (without it the image is in "
           "counts/s per voxel, uncalibrated); with several photopeak windows, the sensitivity "
           "over all of them, shared out by each window's photons per decay",
           minimum=0.0, above=True),
    Option("window-sensitivities", "str",
           "planar sensitivity in cps/MBq of each photopeak window, comma-separated in the "
           "order 'recon info' lists them (each window's own calibration, yield included)",
           metavar="S1,S2,...", exclusive_with=("sensitivity",)),
    Option("photopeaks", "str",
           "photopeak windows to reconstruct from, jointly: 'all' (every window holding a "
           "photopeak line of the isotope), 'main' (the main line's window) or window names, "
           "comma-separated",
           metavar="all|main|NAME,NAME",
           default_text="all for isotopes with several photopeak lines (In-111, Lu-177, Ga-67, "
           "Tl-201, I-131), else main"),
    Option("mu-energy", "float",
           "photon energy in keV of the --mu map; it is converted to each photopeak window's "
           "energy (NIST water and bone)", minimum=30.0, maximum=1000.0,
           default_text="the isotope's main line"),
    Option("iterations", "int", "iterations", minimum=1, maximum=10_000,
           default_text="4 with osem, 30 with bsrem, 10 with oslmap"),
    Option("subsets", "int", "ordered subsets (at most the number of views)", default=8,
           minimum=1),
    Option("post-filter", "float", "Gaussian post-filter FWHM in mm", minimum=0.0,
           default_text="none"),
    *ALGORITHM_OPTIONS,
    DEVICE,
    Option("ref-time", "str",
           "activity reference time: 'start' (acquisition start), 'injection' or an ISO-8601 "
           "date-time", default="start"),
    config_option("spect"),
)  # fmt: skip

_OUTPUT_FILES = ("image.npy", "image.hv", "image.v", "image.png", "summary.json")


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but lines are never broken at a hyphen: collimator presets
    (``GE-MEGP``) and isotopes (``In-111``) stay whole in ``--help``."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``recon spect`` subcommand and its options to ``commands``.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``recon`` parser (:func:`recon.cli.main`).
    """
    p = commands.add_parser(
        "spect", help="reconstruct SPECT projections (DICOM NM or Interfile)",
        description="OSEM (or BSREM / OSL-MAP with a prior: --algorithm) reconstruction of SPECT "
        "projections with attenuation (CT or mu-map), collimator response, decay and "
        "window-based scatter correction. Writes image.npy "
        "(z, y, x), image.hv/.v (Interfile), image.png, a DICOM NM series in dicom/ and "
        "summary.json into a new output folder.",
        formatter_class=_HelpFormatter,
    )  # fmt: skip
    p.add_argument("projections", help="DICOM NM file or Interfile header (.hs)")
    add_options(p, OPTIONS)


def read_projections(path: Path) -> tuple[np.ndarray, SpectGeometry, dict[str, Any]]:
    """Counts, geometry and metadata from a DICOM NM file or an Interfile header."""
    existing_file(path, "projection file")
    if path.suffix.lower() in (".hs", ".h33", ".hdr"):
        from recon.io.interfile import read_interfile_spect

        counts, geometry, metadata = read_interfile_spect(path)
        return counts, geometry, dict(metadata)
    from recon.io.dicom_nm import read_nm_projections

    return read_nm_projections(path)


def _isotope(name: str | None, metadata: dict[str, Any]) -> Isotope | None:
    if name:
        return get_isotope(name)
    found = metadata.get("isotope")
    if isinstance(found, Isotope):
        return found
    return get_isotope(found) if isinstance(found, str) and found else None


def _collimator(args: argparse.Namespace, isotope: Isotope | None) -> Collimator | None:
    if args.no_psf:
        return None
    if args.collimator:
        return Collimator.preset(args.collimator)
    energy = isotope.main_photon.energy_kev if isotope else 140.5
    name = "LEHR" if energy < 200 else ("ME" if energy < 300 else "HE")
    log.info("collimator not given: using %s for %.0f keV", name, energy)
    return Collimator.preset(name)


def _reference_time(spec: str | None, metadata: dict[str, Any]) -> float:
    """Reference time in s from acquisition start."""
    if spec in (None, "start"):
        return 0.0
    if spec == "injection":
        delay = metadata.get("injection_to_acquisition_s")
        if delay is None:
            raise InputError("--ref-time injection needs the injection time in the file")
        return -float(delay)
    try:
        when = dt.datetime.fromisoformat(str(spec))
    except ValueError:
        raise InputError(
            f"--ref-time {spec!r}: use start, injection or an ISO-8601 date-time "
            "(e.g. 2024-03-05T10:00:00)"
        ) from None
    start = metadata.get("acquisition_datetime")
    if not isinstance(start, dt.datetime):
        raise InputError("--ref-time with a date-time needs the acquisition date/time in the file")
    if (when.tzinfo is None) != (start.tzinfo is None):
        when = when.replace(tzinfo=start.tzinfo)
    return (when - start).total_seconds()


def default_grid(geometry: SpectGeometry) -> ImageGrid:
    """The grid `recon spect` reconstructs on: the projection sampling, centred on the axis.

    ``n_u × n_u`` transverse voxels of the bin size and one slice per projection row, axially
    where the rows are.
    """
    pv, pu = geometry.pixel_size_mm
    nz = geometry.n_v
    origin_z = geometry.axial_offset_mm - (nz - 1) / 2.0 * pv
    n = geometry.n_u
    origin_xy = -(n - 1) / 2.0 * pu
    return ImageGrid((nz, n, n), (pv, pu, pu), origin=(origin_z, origin_xy, origin_xy))


def _scatter(args: argparse.Namespace, metadata: dict[str, Any], source: Path) -> tuple[Any, str]:
    """The scatter estimate (or None) and the method used (``--scatter`` or the default)."""
    from recon.io.dicom_nm import scatter_estimate, select_scatter_windows

    windows = metadata.get("windows") or {}
    lower = upper = None
    if windows and metadata.get("photopeak_window") in windows:
        try:
            lower, upper = select_scatter_windows(windows, metadata["photopeak_window"])
        except ReconError:
            lower = upper = None
    method = args.scatter
    if method is None:
        if lower is None:
            note(
                f"{source.name} has no scatter window below the photopeak, so no scatter "
                "correction is applied (--scatter none); the image includes scattered counts"
            )
            return None, "none"
        method = "tew"
    if method == "none":
        return None, "none"
    if lower is None:
        names = ", ".join(windows) or "none"
        raise InputError(
            f"--scatter {method} needs a scatter window below the photopeak; {source} has "
            f"energy windows: {names}; use --scatter none"
        )
    if method == "tew" and upper is None:
        _note_one_sided_tew([str(metadata["photopeak_window"])])
    return scatter_estimate(metadata, method=method, smooth_sigma_px=2.0), method


def _note_one_sided_tew(peaks: list[str]) -> None:
    """Say that TEW took the scatter above these photopeak windows as 0 (no upper window)."""
    note(
        f"TEW for photopeak window(s) {', '.join(peaks)}: no scatter window above, so the scatter "
        "density at the upper edge is taken as 0 (usual for the highest photopeak); scatter "
        "above it, if the spectrum has any, stays in the image"
    )


def _write_dicom(image: Any, folder: Path, source: Path, metadata: dict, ref: str | None) -> None:
    """NM reconstructed-TOMO series next to the other outputs, sharing the input's study."""
    from recon.io.dicom_write import write_dicom

    dataset = None
    if metadata.get("study_instance_uid"):
        import pydicom

        dataset = pydicom.dcmread(source, stop_before_pixels=True)
    injection = None
    if (
        metadata.get("injection_datetime")
        and metadata.get("injected_activity_bq")
        and image.isotope
    ):
        injection = {
            "radionuclide": image.isotope,
            "activity_bq": metadata["injected_activity_bq"],
            "datetime": metadata["injection_datetime"],
        }
    if image.reference_time_s is None:
        decay = "NONE"
    else:
        decay = "ADMIN" if ref == "injection" else "START"
    write_dicom(
        image, folder, modality="NM", patient=dataset,
        frame_of_reference_uid=metadata.get("frame_of_reference_uid"),
        decay_correction=decay, acquisition_datetime=metadata.get("acquisition_datetime"),
        injection=injection, input_paths=[source],
    )  # fmt: skip


def _inputs(source: Path, metadata: dict[str, Any], args: argparse.Namespace) -> list[Path]:
    paths = [source, metadata.get("data_path"), args.ct, args.mu]
    return [Path(p) for p in paths if p]


def run(args: argparse.Namespace) -> int:
    """Run ``recon spect``: reconstruct SPECT projections (DICOM NM or Interfile).

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
    resolve(args, OPTIONS, "spect")
    check_algorithm(args, osem_iterations=4)
    source = existing_file(args.projections, "projection file")
    target = OutputFolder(
        args.output, inputs=_inputs(source, {}, args), overwrite=args.overwrite,
        expected=_OUTPUT_FILES, command="recon spect",
    )  # fmt: skip
    counts, geometry, metadata = read_projections(source)
    target.add_inputs(_inputs(source, metadata, args))
    if args.subsets > geometry.n_views:
        raise InputError(
            f"--subsets {args.subsets} is more than the {geometry.n_views} views of {source.name}"
        )
    if args.isotopes:
        from recon.commands.spect_isotopes import run_isotopes

        return run_isotopes(args, source, target, geometry, metadata)
    isotope = _isotope(args.isotope, metadata)
    grid = default_grid(geometry)
    peaks, assignment = _photopeaks(args, metadata, isotope, source)
    main_kev = isotope.main_photon.energy_kev if isotope else 140.5
    mu_energy = float(args.mu_energy) if args.mu_energy is not None else main_kev
    mu: Any = None
    if args.ct:
        from recon.io.ct import read_ct_mu_map

        mu_energy = main_kev
        mu = read_ct_mu_map(
            args.ct, grid, main_kev, frame_of_reference_uid=metadata.get("frame_of_reference_uid")
        )
    elif args.mu:
        from recon.io.mu_map import read_mu_map

        mu = read_mu_map(
            args.mu, grid, units=args.mu_units, stir_placement="spect",
            spectub_mirrored=bool(args.mu_spectub_mirrored),
        )  # fmt: skip
    elif args.mu_energy is not None:
        raise InputError("--mu-energy gives the energy of a --mu map: pass --mu too")
    collimator = _collimator(args, isotope)
    reference_time = _reference_time(args.ref_time, metadata)
    sensitivity = _sensitivities(args)
    if peaks is None or len(peaks) == 1:
        window_kev = peaks[0].energy_kev if peaks else main_kev
        if peaks:
            metadata = {**metadata, "photopeak_window": peaks[0].name}
            counts = metadata["windows"][peaks[0].name][1]
        if mu is not None and abs(window_kev - mu_energy) > 1e-6:
            from recon.physics.attenuation import mu_at_energy

            mu = mu_at_energy(np.asarray(getattr(mu, "data", mu)), mu_energy, window_kev)
        if isinstance(sensitivity, list):
            if len(sensitivity) != 1:
                raise InputError(
                    f"--window-sensitivities gives {len(sensitivity)} values for 1 photopeak window"
                )
            sensitivity = sensitivity[0]
        if collimator is not None and isotope is not None:
            collimator = collimator.at_energy(window_kev)
        model: Any = SpectModel(
            geometry, grid, mu_map=mu, collimator=collimator,
            isotope=isotope.name if isotope else None, reference_time_s=reference_time,
            sensitivity_cps_per_mbq=sensitivity, device=args.device,
        )  # fmt: skip
        scatter_windows: Any = None
        if peaks:
            # The window's own scatter windows (never another photopeak window).
            scatter, method, scatter_windows = _scatter_per_peak(args, metadata, peaks, source)
            scatter = None if scatter is None else scatter[0]
        else:
            scatter, method = _scatter(args, metadata, source)
    else:
        model = photopeak_model(
            geometry, grid, peaks, mu_map=mu, mu_energy_kev=mu_energy, collimator=collimator,
            isotope=isotope.name if isotope else None, reference_time_s=reference_time,
            sensitivity_cps_per_mbq=sensitivity, device=args.device,
        )  # fmt: skip
        counts = np.stack([metadata["windows"][p.name][1] for p in peaks])
        scatter, method, scatter_windows = _scatter_per_peak(args, metadata, peaks, source)
    if sensitivity is None:
        note("no --sensitivity given: the image is in counts/s per voxel, not Bq/mL")
    image = reconstruct(model, counts, scatter, args, post_filter_fwhm_mm=args.post_filter)
    values = np.asarray(image)
    collimators = [m.collimator for m in getattr(model, "models", [model])]
    summary = {
        "input": str(source), "isotope": image.isotope, "units": image.units,
        "reference_time_s": image.reference_time_s, "attenuation": mu is not None,
        "mu_energy_kev": mu_energy if mu is not None else None,
        "mu_spectub_mirrored": bool(args.mu_spectub_mirrored) if args.mu else None,
        "scatter": method, "collimator": getattr(collimators[0], "name", None),
        "photopeaks": _photopeak_summary(peaks, collimators, scatter_windows),
        "sensitivity_mode": getattr(model, "sensitivity_mode", None),
        **algorithm_summary(image),
        "grid": {"shape": grid.shape, "voxel_mm": grid.voxel_size_mm, "origin_mm": grid.origin},
        "counts": float(np.sum(counts)), "image_total": float(values.sum()),
        "timing": image_timing(
            "NM", metadata.get("acquisition_datetime"), image.reference_time_s,
            "injection" if args.ref_time == "injection" else "time",
            metadata.get("injection_datetime"), metadata.get("injected_activity_bq"),
        ),
    }  # fmt: skip
    if assignment is not None and assignment.unused:
        summary["unused_windows"] = dict(assignment.unused)
    from recon.io.interfile import write_interfile

    with target.writing({"settings": _settings(args)}) as out:
        save_npy_atomic(out / "image.npy", values)
        write_interfile(out / "image.hv", image, modality="NM")
        save_reconstruction_figure(image, out / "image.png", title=f"recon spect: {source.name}")
        _write_dicom(image, out / "dicom", source, metadata, args.ref_time)
        write_summary(out, "summary.json", summary)
    hidden = ("grid", "timing", "objective", "relaxation", "photopeaks", "unused_windows")
    rows = [{"item": k, "value": v} for k, v in summary.items() if k not in hidden]
    print_table(rows, ["item", "value"])
    if summary["photopeaks"]:
        print_table(summary["photopeaks"], list(summary["photopeaks"][0]))
    print(f"wrote image.npy, image.hv/.v, image.png, dicom/ and summary.json to {args.output}")
    return 0


def _sensitivities(args: argparse.Namespace) -> float | list[float] | None:
    """``--sensitivity`` (one value) or ``--window-sensitivities`` (a list), or None."""
    text = getattr(args, "window_sensitivities", None)
    if not text:
        return args.sensitivity
    values = []
    for part in str(text).split(","):
        try:
            value = float(part)
        except ValueError:
            raise InputError(
                f"--window-sensitivities {text!r}: give numbers in cps/MBq separated by commas "
                "(e.g. 52.1,48.7)"
            ) from None
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"--window-sensitivities: {part.strip()} is not a positive number")
        values.append(value)
    return values


def _photopeaks(
    args: argparse.Namespace, metadata: dict[str, Any], isotope: Isotope | None, source: Path
) -> tuple[list[PhotopeakWindow] | None, WindowAssignment | None]:
    """The photopeak windows to use (``--photopeaks``) and the file's window assignment; None
    when the file records no energy windows (Interfile) or no isotope is known."""
    choice = (args.photopeaks or "").strip()
    windows = metadata.get("windows") or {}
    if not windows or isotope is None:
        if choice and choice != "main":
            raise InputError(
                f"--photopeaks {choice}: {source.name} records no energy windows recon can "
                "assign (or no isotope: pass --isotope); leave --photopeaks out"
            )
        return None, None
    assignment = assign_windows(windows, [isotope])
    peaks = list(assignment.peaks)
    main = _main_window(peaks, isotope, metadata)
    if not choice:
        if len(isotope.photopeak_lines) > 1 and len(peaks) > 1:
            chosen = peaks
            note(
                f"{isotope.name} has several photopeaks: reconstructing jointly from every "
                f"photopeak window of {source.name}: "
                + "; ".join(p.describe() for p in chosen)
                + " (--photopeaks main for the main line's window only)"
            )
        else:
            chosen = [main]
    elif choice == "all":
        chosen = peaks
    elif choice == "main":
        chosen = [main]
    else:
        names = [n.strip() for n in choice.split(",")]
        known = {p.name: p for p in peaks}
        for n in names:
            if n not in known:
                raise InputError(
                    f"--photopeaks: {n!r} is not a photopeak window of {isotope.name} in "
                    f"{source.name}; its photopeak windows are {', '.join(known) or 'none'} "
                    "('recon info' lists every window)"
                )
        if len(set(names)) != len(names):
            raise InputError(f"--photopeaks {choice}: a window is named twice")
        chosen = [known[n] for n in names]
    return chosen, assignment


def _main_window(
    peaks: list[PhotopeakWindow], isotope: Isotope, metadata: dict[str, Any]
) -> PhotopeakWindow:
    """The photopeak window of the main line (the reader's choice when it is a photopeak)."""
    for p in peaks:
        if p.name == metadata.get("photopeak_window"):
            return p
    energy = isotope.main_photon.energy_kev
    return min(peaks, key=lambda p: abs(p.window.center_kev - energy))


def _scatter_per_peak(
    args: argparse.Namespace,
    metadata: dict[str, Any],
    peaks: list[PhotopeakWindow],
    source: Path,
) -> tuple[Any, str, list[tuple[str | None, str | None]]]:
    """A scatter estimate per photopeak window, stacked (window, view, v, u), or None; the
    method; the scatter windows each estimate used."""
    from recon.physics.scatter import dew_scatter, tew_scatter

    windows = metadata["windows"]
    missing = [p.name for p in peaks if p.lower_scatter is None]
    method = args.scatter
    if method is None:
        if missing:
            note(
                f"photopeak window(s) {', '.join(missing)} of {source.name} have no scatter "
                "window below them, so no scatter correction is applied (--scatter none); the "
                "image includes scattered counts"
            )
            method = "none"
        else:
            method = "tew"
    used: list[tuple[str | None, str | None]] = [(None, None)] * len(peaks)
    if method == "none":
        return None, "none", used
    if missing:
        raise InputError(
            f"--scatter {method} needs a scatter window below every photopeak; "
            f"{', '.join(missing)} in {source.name} has none (energy windows: "
            f"{', '.join(windows)}); use --scatter none"
        )
    one_sided = [p.name for p in peaks if p.upper_scatter is None]
    if method == "tew" and one_sided:
        _note_one_sided_tew(one_sided)
    estimates = []
    used = []
    for p in peaks:
        lower_window, lower_counts = windows[p.lower_scatter]
        if method == "dew":
            estimate = dew_scatter(lower_counts, smooth_sigma_px=2.0)
            used.append((p.lower_scatter, None))
        else:
            upper_window, upper_counts = (
                windows[p.upper_scatter] if p.upper_scatter is not None else (None, None)
            )
            estimate = tew_scatter(
                lower_counts, upper_counts, lower_window, upper_window, p.window,
                smooth_sigma_px=2.0,
            )  # fmt: skip
            used.append((p.lower_scatter, p.upper_scatter))
        estimates.append(estimate)
    return np.stack(estimates).astype(np.float32), method, used


def _photopeak_summary(
    peaks: list[PhotopeakWindow] | None,
    collimators: list[Any],
    scatter_windows: list[tuple[str | None, str | None]] | None,
) -> list[dict[str, Any]]:
    """One row per photopeak window used: lines, yield, energy, scatter windows, penetration."""
    rows = []
    for k, p in enumerate(peaks or []):
        lower, upper = scatter_windows[k] if scatter_windows else (None, None)
        collimator = collimators[k] if k < len(collimators) else None
        tail = collimator.penetration_tail()[0] if collimator is not None else 0.0
        rows.append({
            "window": p.name,
            "range_kev": f"{p.window.lower_kev:g}-{p.window.upper_kev:g}",
            "lines_kev": "+".join(f"{q.energy_kev:g}" for q in p.lines),
            "yield_per_decay": round(p.yield_per_decay, 4),
            "lower_scatter": lower,
            "upper_scatter": upper,
            "penetration_fraction": round(tail, 4)
            if collimator is not None and collimator.models_penetration else 0.0,
        })  # fmt: skip
    return rows


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of this run, for the output manifest."""
    return {o.dest: getattr(args, o.dest, None) for o in OPTIONS if o.in_config}
