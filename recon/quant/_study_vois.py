"""The ``[[vois]]`` of a study file: shapes, masks (one, or one per scan) and iso-contours
(private; the schema is in :mod:`recon.quant.study`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recon._npy import load_npy
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.quant._study_images import suffix_of
from recon.quant._toml import check_keys, number, table, triple
from recon.quant.timeseries import resample_voi
from recon.quant.voi import Voi, iso_contour

FIT_KEYS = ("fit_model", "fit_terms", "fit_from", "tail")
VOI_KEYS = (
    "name", "role", "sphere", "cylinder", "mask", "masks", "label", "segment", "iso_contour",
    *FIT_KEYS,
)  # fmt: skip
_VOI_KINDS = ("sphere", "cylinder", "mask", "masks", "iso_contour")
#: VOI roles: lesions are compared with the reference VOIs (every other role).
ROLES = ("lesion", "blood", "background", "organ")
# A VOI carried to a time point must keep this fraction of its volume (else it is cut by the edge).
MIN_CARRIED_FRACTION = 0.9


@dataclass(frozen=True, eq=False)
class ParsedVoi:
    """A ``[[vois]]`` entry read: the VOI on the reference scan, per-scan masks by label."""

    voi: Voi
    role: str
    definition: dict[str, Any]
    per_scan: dict[str, Voi] | None
    sources: list[Path]


def world_extent(grid: ImageGrid) -> tuple[np.ndarray, np.ndarray]:
    """World ``(x, y, z)`` of the outer voxel faces: lowest and highest corner, mm."""
    first = grid.index_to_world(np.array([-0.5, -0.5, -0.5]))
    last = grid.index_to_world(np.asarray(grid.shape, dtype=np.float64) - 0.5)
    return np.minimum(first, last), np.maximum(first, last)


def _check_inside(grid: ImageGrid, centre: np.ndarray, half: np.ndarray, what: str) -> None:
    lo, hi = world_extent(grid)
    tol = 1e-6
    a, b = centre - half, centre + half
    outside = (a < lo - tol) | (b > hi + tol)
    if np.any(outside):
        axis = int(np.argmax(outside))
        name = "xyz"[axis]
        raise GeometryError(
            f"the {what} reaches outside the image: {name} from {a[axis]:.1f} to {b[axis]:.1f} "
            f"mm, the image spans {lo[axis]:.1f} to {hi[axis]:.1f} mm"
        )


def _centre(spec: dict[str, Any], key: str) -> np.ndarray:
    if key not in spec:
        raise InputError(f"needs {key} = [x, y, z] (world mm)")
    return np.asarray(triple(spec[key], key), dtype=np.float64)


def _role(entry: dict[str, Any], name: str) -> str:
    role = entry.get("role", name if name in ("blood", "background") else "lesion")
    if role not in ROLES:
        raise InputError(f"role must be one of {ROLES}, got {role!r}")
    return role


def _mask_options(entry: dict[str, Any]) -> tuple[int | None, str | None]:
    label = entry.get("label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise InputError(f"label must be an integer, got {label!r}")
    segment = entry.get("segment")
    if segment is not None and (not isinstance(segment, str) or not segment):
        raise InputError(f"segment must be a segment label (a string), got {segment!r}")
    return label, segment


def mask_voi(path: Path, grid: ImageGrid, name: str, label: int | None, segment: str | None) -> Voi:
    """A VOI from a NIfTI, ``.npy`` or DICOM SEG file, on ``grid``."""
    if not path.is_file():
        raise InputError(f"mask {path} does not exist")
    suffix = suffix_of(path)
    if suffix == ".dcm":
        if label is not None:
            raise InputError("label is for NIfTI and .npy label maps; a DICOM SEG takes segment")
        from recon.io.dicom_seg import read_seg_vois

        segments = read_seg_vois(path, grid)
        wanted = segment if segment is not None else (name if name in segments else None)
        if wanted is None and len(segments) == 1:
            wanted = next(iter(segments))
        if wanted not in segments:
            raise InputError(
                f"{path.name} has the segments {sorted(segments)}; give segment = one of them"
                if wanted is None
                else f"{path.name} has no segment {wanted!r}; its segments: {sorted(segments)}"
            )
        return segments[wanted].renamed(name)
    if segment is not None:
        raise InputError(f"segment is for DICOM SEG files; {path.name} is not one")
    if suffix in (".nii", ".nii.gz"):
        from recon.io.nifti import read_voi_mask

        return Voi.from_mask(read_voi_mask(path, grid, label), grid, name)
    if suffix != ".npy":
        raise InputError(f"{path.name}: masks are NIfTI (.nii, .nii.gz), .npy or DICOM SEG (.dcm)")
    array = load_npy(path, "VOI mask")  # header, pickles and sizes checked first
    if array.shape != grid.shape:
        raise GeometryError(
            f"{path.name} has shape {array.shape} but the image grid is {grid.shape} "
            "(z, y, x); a .npy mask must be on the grid of its image (or use NIfTI or DICOM SEG, "
            "which carry their position)"
        )
    return Voi.from_mask(array != 0 if label is None else array == label, grid, name)


def _per_scan_files(value: Any, labels: list[str]) -> list[str]:
    """One file name per time point (in listed order), from a list or a table by label."""
    if isinstance(value, list):
        if len(value) != len(labels):
            raise InputError(
                f"masks lists {len(value)} file(s) but the study has {len(labels)} time points "
                f"({', '.join(labels)}): give one per time point, in [[timepoints]] order"
            )
        files = value
    elif isinstance(value, dict):
        missing = [lab for lab in labels if lab not in value]
        extra = sorted(set(value) - set(labels))
        if missing or extra:
            raise InputError(
                f"masks must name every time point label once: missing {missing}, unknown "
                f"{extra} (labels: {', '.join(labels)})"
            )
        files = [value[lab] for lab in labels]
    else:
        raise InputError(
            "masks must be a list of files (one per time point) or a table by time point label"
        )
    for f in files:
        if not isinstance(f, str) or not f:
            raise InputError(f"masks must be file names, got {f!r}")
    return files


def parse_voi(
    entry: dict[str, Any],
    reference: int,
    scans: list[tuple[str, Image]],
    base: Path,
) -> ParsedVoi:
    """Read one ``[[vois]]`` entry; ``scans`` are the time points (label, image) as listed and
    ``reference`` the index of the one the VOIs are drawn on."""
    check_keys(entry, VOI_KEYS, "")
    name = entry["name"]
    reference_image = scans[reference][1]
    grid = reference_image.grid
    kinds = [k for k in _VOI_KINDS if k in entry]
    if len(kinds) != 1:
        raise InputError(f"give exactly one of {', '.join(_VOI_KINDS)}; got {kinds or 'none'}")
    kind = kinds[0]
    if kind not in ("mask", "masks"):
        for key in ("label", "segment"):
            if key in entry:
                raise InputError(f'{key} goes with mask = "file" or masks = [...]')
    sources: list[Path] = []
    per_scan = None
    if kind == "sphere":
        spec = table(entry["sphere"], "sphere")
        check_keys(spec, ("centre_mm", "diameter_mm"), "sphere")
        centre = _centre(spec, "centre_mm")
        diameter = number(spec.get("diameter_mm"), "sphere diameter_mm", "positive")
        _check_inside(grid, centre, np.full(3, diameter / 2), "sphere")
        voi = Voi.sphere(grid, centre, diameter, name)
        definition: dict[str, Any] = {
            "sphere": {"centre_mm": centre.tolist(), "diameter_mm": diameter}
        }
    elif kind == "cylinder":
        spec = table(entry["cylinder"], "cylinder")
        check_keys(spec, ("centre_mm", "radius_mm", "length_mm", "axis"), "cylinder")
        centre = _centre(spec, "centre_mm")
        radius = number(spec.get("radius_mm"), "cylinder radius_mm", "positive")
        length = number(spec.get("length_mm"), "cylinder length_mm", "positive")
        axis = spec.get("axis", "z")
        if axis not in ("x", "y", "z"):
            raise InputError(f"cylinder axis must be 'x', 'y' or 'z', got {axis!r}")
        half = np.full(3, radius)
        half["xyz".index(axis)] = length / 2
        _check_inside(grid, centre, half, "cylinder")
        voi = Voi.cylinder(grid, centre, radius, length, axis, name)
        definition = {
            "cylinder": {
                "centre_mm": centre.tolist(), "radius_mm": radius, "length_mm": length,
                "axis": axis,
            }
        }  # fmt: skip
    elif kind == "mask":
        if not isinstance(entry["mask"], str):
            raise InputError("mask must be a file name")
        label, segment = _mask_options(entry)
        source = base / entry["mask"]
        voi = mask_voi(source, grid, name, label, segment)
        sources.append(source)
        definition = {"mask": str(source), "label": label, "segment": segment}
    elif kind == "masks":
        label, segment = _mask_options(entry)
        files = _per_scan_files(entry["masks"], [lab for lab, _ in scans])
        per_scan = {}
        for (scan_label, image), file in zip(scans, files, strict=True):
            source = base / file
            # In a mixed list, label goes to the label maps and segment to the SEG files.
            is_seg = suffix_of(source) == ".dcm"
            try:
                per_scan[scan_label] = mask_voi(
                    source, image.grid, name, None if is_seg else label, segment if is_seg else None
                )
            except (InputError, GeometryError) as exc:
                raise type(exc)(f"mask of time point {scan_label!r}: {exc}") from None
            sources.append(source)
        voi = per_scan[scans[reference][0]]
        definition = {
            "masks": {lab: str(base / f) for (lab, _), f in zip(scans, files, strict=True)},
            "label": label, "segment": segment,
        }  # fmt: skip
    else:
        spec = table(entry["iso_contour"], "iso_contour")
        check_keys(spec, ("seed_mm", "percent", "search_radius_mm", "confine"), "iso_contour")
        seed = _centre(spec, "seed_mm")
        _check_inside(grid, seed, np.zeros(3), "iso-contour seed")
        if "percent" not in spec:
            raise InputError("iso_contour needs percent (of the local maximum)")
        percent = number(spec["percent"], "iso_contour percent")
        radius = number(spec.get("search_radius_mm", 0.0), "search_radius_mm", "non-negative")
        confine = spec.get("confine", False)
        if not isinstance(confine, bool):
            raise InputError(f"iso_contour confine must be true or false, got {confine!r}")
        voi = iso_contour(
            reference_image, seed, percent, radius, name=name, confine_to_search=confine
        )
        definition = {
            "iso_contour": {
                "seed_mm": seed.tolist(), "percent": percent, "search_radius_mm": radius,
                "confine": confine,
            }
        }  # fmt: skip
    return ParsedVoi(voi, _role(entry, name), definition, per_scan, sources)


def check_carried(
    name: str, voi: Voi, image_grid: ImageGrid, transform: np.ndarray | None, label: str
) -> None:
    """The VOI lands (almost) wholly inside a time point's image."""
    if transform is None and voi.grid.same_as(image_grid):
        return
    try:
        carried = resample_voi(voi, image_grid, transform)
    except GeometryError:
        lo, hi = world_extent(image_grid)
        raise GeometryError(
            f"VOI {name!r} falls outside the image of time point {label!r} (which spans "
            f"x {lo[0]:.1f} to {hi[0]:.1f}, y {lo[1]:.1f} to {hi[1]:.1f}, z {lo[2]:.1f} to "
            f"{hi[2]:.1f} mm); the grids do not match"
        ) from None
    if carried.volume_ml < MIN_CARRIED_FRACTION * voi.volume_ml:
        raise GeometryError(
            f"VOI {name!r}: only {100 * carried.volume_ml / voi.volume_ml:.0f} % of it "
            f"falls inside the image of time point {label!r}; the grids do not match"
        )
