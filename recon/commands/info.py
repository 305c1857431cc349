"""`recon info`: what the readers understood of a file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from recon.commands.common import print_table
from recon.errors import InputError

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("info", help="describe a projection, listmode or image file")
    p.add_argument("file")


def _spect_rows(counts: np.ndarray, geometry: Any, metadata: dict[str, Any]) -> list[dict]:
    angles = geometry.angles_deg
    rows = [
        ("kind", "SPECT projections"),
        ("shape (view, v, u)", counts.shape),
        ("total counts", float(counts.sum())),
        ("angles (deg)", f"{angles[0]:.2f} .. {angles[-1]:.2f}, step {np.diff(angles).mean():.3f}"
         if angles.size > 1 else f"{angles[0]:.2f}"),
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
    for name, (window, _) in (metadata.get("windows") or {}).items():
        limits = f"{window.lower_kev:.1f}-{window.upper_kev:.1f} keV" if window else "?"
        rows.append((f"window {name}", limits))
    return [{"item": k, "value": v} for k, v in rows]


def run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        from recon.io.listmode_file import read_listmode

        data = read_listmode(path)
        ev = data.events
        rows = [
            {"item": "kind", "value": "PET listmode (recon .npz)"},
            {"item": "scanner", "value": data.scanner.name},
            {"item": "events", "value": ev.n_events},
            {
                "item": "prompts / delayeds",
                "value": f"{ev.prompts().n_events} / {ev.delayeds().n_events}",
            },
            {"item": "time span (s)", "value": float(ev.time_ms[-1] - ev.time_ms[0]) / 1000.0},
            {"item": "isotope", "value": data.isotope},
            {"item": "TOF", "value": data.scanner.tof},
        ]
    elif suffix in (".hs", ".hv", ".h33", ".hdr", ".mhd"):
        from recon.io.interfile import read_interfile

        result = read_interfile(path)
        if hasattr(result, "geometry"):
            rows = _spect_rows(result.counts, result.geometry, dict(result.metadata))
        elif hasattr(result, "grid"):
            rows = [{"item": "kind", "value": "image"}, {"item": "grid", "value": result.grid},
                    {"item": "modality", "value": result.info.get("modality") or "not given"},
                    {"item": "units", "value": result.units}]  # fmt: skip
        else:
            rows = _sinogram_rows(result)
    elif _is_dicom_image(path):
        from recon.io.dicom_image import read_dicom_image

        result = read_dicom_image(path)
        rows = _dicom_image_rows(result if isinstance(result, list) else [result])
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
            {"item": "default image grid", "value": stir_default_grid(sino)},
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
