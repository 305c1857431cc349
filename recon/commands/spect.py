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
from recon.spect import Collimator, SpectGeometry, SpectModel

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
    Option("sensitivity", "float",
           "planar sensitivity in cps/MBq, for images in Bq/mL (without it the image is in "
           "counts/s per voxel, uncalibrated)", minimum=0.0, above=True),
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
    lower = None
    if windows and metadata.get("photopeak_window") in windows:
        try:
            lower, _ = select_scatter_windows(windows, metadata["photopeak_window"])
        except ReconError:
            lower = None
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
    return scatter_estimate(metadata, method=method, smooth_sigma_px=2.0), method


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
    isotope = _isotope(args.isotope, metadata)
    grid = default_grid(geometry)
    mu = None
    if args.ct:
        from recon.io.ct import read_ct_mu_map

        energy = isotope.main_photon.energy_kev if isotope else 140.5
        mu = read_ct_mu_map(
            args.ct, grid, energy, frame_of_reference_uid=metadata.get("frame_of_reference_uid")
        )
    elif args.mu:
        from recon.io.mu_map import read_mu_map

        mu = read_mu_map(
            args.mu, grid, units=args.mu_units, stir_placement="spect",
            spectub_mirrored=bool(args.mu_spectub_mirrored),
        )  # fmt: skip
    model = SpectModel(
        geometry, grid, mu_map=mu, collimator=_collimator(args, isotope),
        isotope=isotope.name if isotope else None,
        reference_time_s=_reference_time(args.ref_time, metadata),
        sensitivity_cps_per_mbq=args.sensitivity, device=args.device,
    )  # fmt: skip
    scatter, method = _scatter(args, metadata, source)
    if args.sensitivity is None:
        note("no --sensitivity given: the image is in counts/s per voxel, not Bq/mL")
    image = reconstruct(model, counts, scatter, args, post_filter_fwhm_mm=args.post_filter)
    values = np.asarray(image)
    summary = {
        "input": str(source), "isotope": image.isotope, "units": image.units,
        "reference_time_s": image.reference_time_s, "attenuation": mu is not None,
        "mu_spectub_mirrored": bool(args.mu_spectub_mirrored) if args.mu else None,
        "scatter": method, "collimator": getattr(model.collimator, "name", None),
        **algorithm_summary(image),
        "grid": {"shape": grid.shape, "voxel_mm": grid.voxel_size_mm, "origin_mm": grid.origin},
        "counts": float(np.sum(counts)), "image_total": float(values.sum()),
        "timing": image_timing(
            "NM", metadata.get("acquisition_datetime"), image.reference_time_s,
            "injection" if args.ref_time == "injection" else "time",
            metadata.get("injection_datetime"), metadata.get("injected_activity_bq"),
        ),
    }  # fmt: skip
    from recon.io.interfile import write_interfile

    with target.writing({"settings": _settings(args)}) as out:
        save_npy_atomic(out / "image.npy", values)
        write_interfile(out / "image.hv", image, modality="NM")
        save_reconstruction_figure(image, out / "image.png", title=f"recon spect: {source.name}")
        _write_dicom(image, out / "dicom", source, metadata, args.ref_time)
        write_summary(out, "summary.json", summary)
    hidden = ("grid", "timing", "objective", "relaxation")
    rows = [{"item": k, "value": v} for k, v in summary.items() if k not in hidden]
    print_table(rows, ["item", "value"])
    print(f"wrote image.npy, image.hv/.v, image.png, dicom/ and summary.json to {args.output}")
    return 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of this run, for the output manifest."""
    return {o.dest: getattr(args, o.dest, None) for o in OPTIONS if o.in_config}
