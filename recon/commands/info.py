"""`recon info`: what the readers understood of a file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recon.commands.common import print_table
from recon.errors import InputError, ReconError

if TYPE_CHECKING:  # the readers and models are imported when a file needs them
    from recon.spect.geometry import SpectGeometry

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``recon info`` subcommand and its options to ``commands``.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``recon`` parser (:func:`recon.cli.main`).
    """
    p = commands.add_parser("info", help="describe a projection, listmode or image file")
    p.add_argument("file")


def describe_orbit(angles_deg: np.ndarray) -> str:
    """Start, step, direction and arc of view angles (DESIGN.md §3: θ = 0 anterior, 90° the
    patient's left, so increasing θ is clockwise seen from the feet)."""
    angles = np.mod(np.asarray(angles_deg, dtype=np.float64), 360.0)
    if angles.size < 2:
        return f"{angles[0]:.2f} deg (one view)"
    # Steps across the 0/360 wrap are taken the short way round.
    steps = np.mod(np.diff(angles) + 180.0, 360.0) - 180.0
    step = float(np.median(steps))
    regular = bool(np.allclose(steps, step, atol=1e-3))
    direction = "clockwise" if step > 0 else "counter-clockwise"
    arc = abs(step) * angles.size
    text = (
        f"start {angles[0]:.2f}, step {abs(step):.3f} {direction} seen from the feet, "
        f"{angles.size} views over {arc:.1f}"
    )
    return text if regular else text + " (steps vary: several heads or an irregular orbit)"


def _spect_rows(
    counts: np.ndarray, geometry: SpectGeometry, metadata: dict[str, Any]
) -> list[dict[str, Any]]:
    from recon.commands.spect import default_grid

    rows = [
        ("kind", "SPECT projections"),
        ("shape (view, v, u)", counts.shape),
        ("total counts", float(counts.sum())),
        ("orbit (deg; 0 = anterior)", describe_orbit(geometry.angles_deg)),
        ("radius (mm)", f"{geometry.radii_mm.min():.1f} .. {geometry.radii_mm.max():.1f}"),
        ("pixel (v, u) mm", geometry.pixel_size_mm),
        ("COR offset (mm)", geometry.cor_offset_mm),
        ("view duration (s)", float(geometry.durations_s.mean())),
        ("acquisition (s)", geometry.acquisition_end_s),
    ]  # fmt: skip
    for key in ("isotope", "injected_activity_bq", "injection_datetime", "acquisition_datetime",
                "patient_position", "frame_of_reference_uid"):  # fmt: skip
        if metadata.get(key) is not None:
            value = metadata[key]
            rows.append((key, getattr(value, "name", value)))
    windows = metadata.get("windows") or {}
    roles = _window_roles(windows, metadata.get("isotope"))
    for name, (window, _) in windows.items():
        limits = f"{window.lower_kev:.1f}-{window.upper_kev:.1f} keV" if window else "?"
        role = roles.get(name)
        rows.append((f"window {name}", f"{limits}: {role}" if role else limits))
    rows.append(("recon spect grid (z, y, x)", _grid_text(default_grid(geometry))))
    return [{"item": k, "value": v} for k, v in rows]


def _window_roles(windows: dict[str, Any], isotope: Any) -> dict[str, str]:
    """What each energy window is for the file's isotope (photopeak with its lines and yield,
    scatter window, unused and why); empty for one window or an unknown isotope."""
    if len(windows) < 2 or isotope is None:
        return {}
    from recon.physics.windows import assign_windows

    try:
        assignment = assign_windows(windows, [isotope])
    except ReconError as exc:
        return {name: f"not assigned ({exc})" for name in windows}
    roles: dict[str, str] = {}
    for p in assignment.peaks:
        lines = "+".join(f"{q.energy_kev:g}" for q in p.lines)
        scatter = f"{p.lower_scatter or '-'}/{p.upper_scatter or '-'}"
        roles[p.name] = (
            f"photopeak of {p.isotope} {lines} keV, yield {p.yield_per_decay:.3g}/decay, "
            f"scatter windows {scatter}"
        )
    for name in assignment.scatter:
        roles.setdefault(name, "scatter window")
    for name, reason in assignment.unused.items():
        roles.setdefault(name, f"not used: {reason}")
    return roles


def _grid_text(grid: Any) -> str:
    """Shape, voxel size and extent of a grid, as a --mu .npy must match it."""
    (oz, oy, ox), (dz, dy, dx) = grid.origin, grid.voxel_size_mm
    nz, ny, nx = grid.shape
    return (
        f"{nz} x {ny} x {nx} voxels of {dz:g} x {dy:g} x {dx:g} mm, voxel centres "
        f"z {oz:g}..{oz + (nz - 1) * dz:g}, y {oy:g}..{oy + (ny - 1) * dy:g}, "
        f"x {ox:g}..{ox + (nx - 1) * dx:g} mm"
    )


# Data files of Interfile pairs, and the header suffixes that point at them.
_DATA_SUFFIXES = {".s": (".hs",), ".v": (".hv",), ".img": (".hdr",), ".i33": (".h33",),
                  ".a": (".h33", ".hs")}  # fmt: skip


def _refuse_data_file(path: Path) -> None:
    """An Interfile data file given instead of its header: name the header."""
    for suffix in _DATA_SUFFIXES.get(path.suffix.lower(), ()):
        for header in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
            if header.is_file():
                raise InputError(
                    f"{path} is the data file of the Interfile header {header.name}; "
                    f"run 'recon info {header}'"
                )
    if path.suffix.lower() in _DATA_SUFFIXES:
        raise InputError(
            f"{path} looks like the raw data file of an Interfile pair; give its header "
            "(.hs for projections and sinograms, .hv for images)"
        )


def run(args: argparse.Namespace) -> int:
    """Run ``recon info``: print what the readers understood of a file.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (the options of :func:`add_parser`).

    Returns
    -------
    int
        The exit status, 0 (the description is printed).

    Raises
    ------
    ReconError
        An option, an input file or the output folder is unusable; :func:`recon.cli.main` prints
        the message and exits with status 2.
    """
    path = Path(args.file)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    _refuse_data_file(path)
    suffix = path.suffix.lower()
    rows: list[dict[str, Any]]
    if suffix == ".npz":
        from recon.commands.pet import default_grid as pet_grid
        from recon.io.listmode_file import read_listmode

        data = read_listmode(path)
        ev = data.events
        times = ev.time_ms
        if times is None:
            span: str | float = "not recorded"
        else:
            span = float(times[-1] - times[0]) / 1000.0 if ev.n_events else 0.0
        rows = [
            {"item": "kind", "value": "PET listmode (recon .npz)"},
            {"item": "scanner", "value": data.scanner.name},
            {"item": "events", "value": ev.n_events},
            {
                "item": "prompts / delayeds",
                "value": f"{ev.prompts().n_events} / {ev.delayeds().n_events}",
            },
            {"item": "time span (s)", "value": span},
            {"item": "isotope", "value": data.isotope},
            {"item": "TOF", "value": data.scanner.tof},
            {"item": "recon pet grid (z, y, x)", "value": _grid_text(pet_grid(data.scanner))},
        ]
    elif suffix in (".hs", ".hv", ".h33", ".hdr", ".mhd"):
        from recon.image import Image
        from recon.io.interfile import SpectProjections, read_interfile

        result = read_interfile(path)
        if isinstance(result, SpectProjections):
            rows = _spect_rows(result.counts, result.geometry, dict(result.metadata))
        elif isinstance(result, Image):
            rows = [
                {"item": "kind", "value": "image"},
                {"item": "modality", "value": result.info.get("modality") or "not given"},
                {"item": "grid (z, y, x)", "value": _grid_text(result.grid)},
                {"item": "units", "value": result.units},
                {"item": "isotope", "value": result.isotope},
            ]
        else:
            rows = _sinogram_rows(result)
    elif _is_dicom_image(path):
        from recon.io.dicom_image import read_dicom_image

        images = read_dicom_image(path)
        rows = _dicom_image_rows(images if isinstance(images, list) else [images])
    else:
        from recon.io.dicom_nm import read_nm_projections

        counts, geometry, metadata = read_nm_projections(path)
        rows = _spect_rows(counts, geometry, metadata)
    print_table(rows, ["item", "value"])
    return 0


def _sinogram_rows(sino: Any) -> list[dict[str, Any]]:
    """What the STIR sinogram reader understood, and how its bins become LORs."""
    from recon.errors import ReconError
    from recon.io.stir_geometry import (
        stir_default_grid,
        stir_geometry_summary,
        stir_sinogram_to_layout,
    )

    d = sino.description
    scanner = d["scanner"]
    segments = ", ".join(
        f"{s['min_ring_difference']}..{s['max_ring_difference']} ({s['n_axial']})"
        for s in d["segments"]
    )
    rows = [
        {"item": "kind", "value": "PET sinogram (STIR projection data)"},
        {"item": "shape (plane, view, tangential)", "value": sino.data.shape},
        {"item": "segments: ring differences (axial)", "value": segments},
        {"item": "arc-corrected", "value": d["arc_corrected"]},
        {"item": "bin size (mm)", "value": d["bin_size_mm"]},
        {
            "item": "rings x detectors",
            "value": f"{scanner['n_rings']} x {scanner['detectors_per_ring']}",
        },
        {"item": "view offset (deg)", "value": scanner.get("view_offset_deg")},
        {"item": "negative bins", "value": int((sino.data < 0).sum())},
    ]
    try:
        summary = stir_geometry_summary(sino)
        rows += [
            {"item": "effective ring radius (mm)", "value": summary["effective_radius_mm"]},
            {"item": "view mashing", "value": summary["view_mashing"]},
            {"item": "view 0 angle (deg)", "value": summary["view0_angle_deg"]},
            {"item": "recon pet grid (z, y, x)", "value": _grid_text(stir_default_grid(sino))},
        ]
    except ReconError as exc:
        rows.append({"item": "reconstructed on", "value": f"nothing: {exc}"})
        return rows
    try:
        stir_sinogram_to_layout(sino)
        lors = "crystal pairs (recon SinogramLayout) or explicit LORs"
    except ReconError as exc:
        lors = f"explicit LORs only ({str(exc).split(';')[0]})"
    rows.append({"item": "reconstructed on", "value": lors})
    return rows


def _is_dicom_image(path: Path) -> bool:
    """A folder (of a PET or NM image series) or a reconstructed PET/NM DICOM image file."""
    if path.is_dir():
        return True
    import pydicom

    from recon.io.dicom_write import NM_IMAGE_STORAGE, PET_IMAGE_STORAGE

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not DICOM (or unreadable): the NM reader reports it in one line
        return False
    sop = str(ds.get("SOPClassUID", ""))
    kind = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return sop == PET_IMAGE_STORAGE or (sop == NM_IMAGE_STORAGE and "RECON TOMO" in kind)


def _dicom_image_rows(images: list[Any]) -> list[dict[str, Any]]:
    """What the DICOM image reader understood: grid, units, isotope, times, frames."""
    first = images[0]
    info = first.info
    rows = [
        ("kind", f"{info.get('modality')} image series" + (
            f", {len(images)} frames" if len(images) > 1 else "")),
        ("grid", first.grid),
        ("units", first.units),
        ("isotope", first.isotope),
        ("decay correction", info.get("decay_correction")),
        ("reference time (s from start)", first.reference_time_s),
    ]  # fmt: skip
    for key in ("acquisition_datetime", "injection_datetime", "injected_activity_bq",
                "patient_weight_kg", "frame_of_reference_uid"):  # fmt: skip
        if info.get(key) is not None:
            rows.append((key, info[key]))
    if len(images) > 1:
        starts = [im.info.get("frame_start_s") for im in images]
        rows.append(("frame starts (s)", ", ".join(f"{s:g}" for s in starts if s is not None)))
    rows.append(("max value", float(np.max(np.asarray(first)))))
    return [{"item": k, "value": v} for k, v in rows]
