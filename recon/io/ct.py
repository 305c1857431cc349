"""CT series to attenuation maps: reading a CT series and resampling it onto a reconstruction grid.

The conversion of Hounsfield units to linear attenuation at the emission energy (the bilinear
air-water / water-bone model, NIST SRD 126 coefficients, effective CT energies after Carney et al.
2006) is :mod:`recon.physics.attenuation`, whose docstring states the model and its sources; this
module applies it to DICOM CT series.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.io._dicom import rescaled_pixels as _pixels
from recon.io._guard import malformed_input_is_input_error
from recon.physics.attenuation import check_energy, effective_ct_energy_kev, hu_to_mu
from recon.resample import sample_on_grid

__all__ = [
    "CtSeries",
    "effective_ct_energy_kev",
    "hu_to_mu",
    "read_ct_mu_map",
    "read_ct_series",
]

log = logging.getLogger("recon")

# A step this much longer than the usual slice spacing means slices are missing (helical CT
# spacing varies by a few percent at most).
_GAP_FACTOR = 1.5


# ---------------------------------------------------------------------------------- series
@dataclass(frozen=True, eq=False)
class CtSeries:
    """A CT series sorted along its slice normal.

    Attributes
    ----------
    hu : ndarray of float32, shape (slice, row, column)
        CT numbers, slices in increasing position along ``normal``.
    origin_mm : ndarray (3,)
        Image Position (Patient) of the first sorted slice: centre of its first pixel, world mm.
    row_direction, column_direction, normal : ndarray (3,)
        Direction of increasing column, of increasing row (Image Orientation (Patient)), and
        their cross product.
    pixel_spacing_mm : (float, float)
        (row spacing, column spacing).
    slice_positions_mm : ndarray (slice,)
        Position of each slice along ``normal`` (increasing).
    kvp : float or None
        KVP (0018,0060).
    frame_of_reference_uid, series_instance_uid : str or None
    """

    hu: np.ndarray
    origin_mm: np.ndarray
    row_direction: np.ndarray
    column_direction: np.ndarray
    normal: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    slice_positions_mm: np.ndarray
    kvp: float | None
    frame_of_reference_uid: str | None
    series_instance_uid: str | None


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword) or 0
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _numbers(ds: Dataset, keyword: str, n: int, source: str) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or value == "":
        raise GeometryError(
            f"{source}: {_tag(keyword)} is missing; a CT slice needs it to be placed"
        )
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{source}: {_tag(keyword)} is not numeric: {value!r}") from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise GeometryError(
            f"{source}: {_tag(keyword)} must hold {n} finite numbers, got {value!r}"
        )
    return arr


def _read(path: Path) -> Dataset | None:
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, EOFError, OSError, ValueError):
        return None


def _load(ct_dir_or_files: Any) -> list[tuple[Dataset, str]]:
    if isinstance(ct_dir_or_files, (str, os.PathLike)):
        path = Path(ct_dir_or_files)
        if path.is_dir():
            found = []
            for file in sorted(p for p in path.iterdir() if p.is_file()):
                ds = _read(file)
                if ds is not None and ds.get("Modality") == "CT":
                    found.append((ds, str(file)))
            if not found:
                raise InputError(f"no CT DICOM files in {path}")
            return found
        if not path.is_file():
            raise InputError(f"CT path {path} does not exist")
        items: Iterable[Any] = [path]
    elif isinstance(ct_dir_or_files, Dataset):
        items = [ct_dir_or_files]
    elif isinstance(ct_dir_or_files, Iterable):
        items = list(ct_dir_or_files)
    else:
        raise InputError(
            "expected a CT folder, a list of CT files or pydicom Datasets, got "
            f"{type(ct_dir_or_files).__name__}"
        )
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Dataset):
            ds, source = item, f"CT dataset {i + 1}"
        else:
            ds, source = _read(Path(item)), str(item)
            if ds is None:
                raise InputError(f"{source} could not be read as DICOM")
        if ds.get("Modality") != "CT":
            raise InputError(
                f"{source}: Modality (0008,0060) is {ds.get('Modality')!r}, not 'CT'; pass the "
                "slices of one CT series"
            )
        out.append((ds, source))
    if not out:
        raise InputError("no CT slices were given")
    return out


@malformed_input_is_input_error("CT series")
def read_ct_series(ct_dir_or_files: Any) -> CtSeries:
    """Read one CT series and sort its slices along the slice normal.

    Parameters
    ----------
    ct_dir_or_files : path, sequence of paths or pydicom Datasets
        A folder (every CT file in it; other files are ignored) or the slices themselves.

    Returns
    -------
    CtSeries

    Raises
    ------
    InputError
        No CT slices, several series, slices of different size, two slices at one position,
        unreadable or undecodable pixel data.
    GeometryError
        Missing or inconsistent orientation/position/spacing, gantry tilt, several frames of
        reference.
    """
    slices = _load(ct_dir_or_files)
    series = {str(ds.get("SeriesInstanceUID")) for ds, _ in slices}
    if len(series) > 1:
        raise InputError(
            f"the CT slices belong to {len(series)} series ({', '.join(sorted(series))}); pass "
            "the files of one series"
        )
    if len(slices) < 2:
        raise InputError("a CT volume needs at least two slices")
    first, first_source = slices[0]
    iop = _numbers(first, "ImageOrientationPatient", 6, first_source)
    spacing = _numbers(first, "PixelSpacing", 2, first_source)
    if np.any(spacing <= 0):
        raise GeometryError(
            f"{first_source}: {_tag('PixelSpacing')} must be positive, got {spacing}"
        )
    row_dir, col_dir = iop[:3], iop[3:]
    if not (
        abs(np.linalg.norm(row_dir) - 1) < 1e-3
        and abs(np.linalg.norm(col_dir) - 1) < 1e-3
        and abs(float(row_dir @ col_dir)) < 1e-3
    ):
        raise GeometryError(
            f"{first_source}: {_tag('ImageOrientationPatient')} {iop.tolist()} is not two "
            "orthonormal direction cosines"
        )
    normal = np.cross(row_dir, col_dir)
    shape = (int(first.Rows), int(first.Columns))
    frames = {str(ds.get("FrameOfReferenceUID")) for ds, _ in slices}
    if len(frames) > 1:
        raise GeometryError(
            f"the CT slices have {len(frames)} Frame of Reference UIDs; they are not one volume"
        )
    positions = []
    for ds, source in slices:
        if not np.allclose(_numbers(ds, "ImageOrientationPatient", 6, source), iop, atol=1e-4):
            raise GeometryError(
                f"{source}: {_tag('ImageOrientationPatient')} differs from other slices"
            )
        if not np.allclose(_numbers(ds, "PixelSpacing", 2, source), spacing, atol=1e-4):
            raise GeometryError(f"{source}: {_tag('PixelSpacing')} differs from other slices")
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise InputError(f"{source}: Rows/Columns differ from other slices")
        positions.append(_numbers(ds, "ImagePositionPatient", 3, source))
    positions_arr = np.asarray(positions)
    along = positions_arr @ normal
    order = np.argsort(along, kind="stable")
    along = along[order]
    positions_arr = positions_arr[order]
    if np.any(np.diff(along) < 1e-3):
        k = int(np.argmin(np.diff(along)))
        raise InputError(
            f"two CT slices lie at the same position {along[k]:.3f} mm along the slice normal "
            "(duplicated files or two series mixed)"
        )
    _warn_missing_slices(along)
    # Positions must move along the normal only; otherwise the gantry was tilted (sheared grid).
    offsets = positions_arr - positions_arr[0] - np.outer(along - along[0], normal)
    if np.max(np.linalg.norm(offsets, axis=1)) > 1e-2 + 1e-4 * float(along[-1] - along[0]):
        raise GeometryError(
            "the CT slice positions do not follow the slice normal (gantry tilt or an oblique "
            "stack); resample the CT to an untilted series first"
        )
    hu = np.empty((len(slices), *shape), dtype=np.float32)
    for i, k in enumerate(order):
        ds, source = slices[int(k)]
        pixels = _pixels(ds, source)
        if pixels.shape != shape:
            raise InputError(f"{source}: pixel data have shape {pixels.shape}, expected {shape}")
        hu[i] = pixels
    kvp = first.get("KVP")
    return CtSeries(
        hu=hu,
        origin_mm=positions_arr[0],
        row_direction=row_dir,
        column_direction=col_dir,
        normal=normal,
        pixel_spacing_mm=(float(spacing[0]), float(spacing[1])),
        slice_positions_mm=along,
        kvp=float(kvp) if kvp not in (None, "") else None,
        frame_of_reference_uid=frames.pop() if frames != {"None"} else None,
        series_instance_uid=series.pop() if series != {"None"} else None,
    )


def _warn_missing_slices(along: np.ndarray) -> None:
    """Warn when the slice positions have a gap: a slice file missing from the series."""
    steps = np.diff(along)
    if steps.size < 2:
        return
    usual = float(np.median(steps))
    gaps = np.flatnonzero(steps > _GAP_FACTOR * usual)
    if gaps.size:
        k = int(gaps[0])
        missing = int(round(float(steps[k]) / usual)) - 1
        log.warning(
            "the CT series has a gap of %.2f mm between slices at %.2f and %.2f mm (it is "
            "spaced %.2f mm elsewhere; about %d slice(s) missing%s); the attenuation map is "
            "interpolated across it: check that every CT file was given",
            steps[k], along[k], along[k + 1], usual, max(missing, 1),
            f", and {gaps.size - 1} more gap(s)" if gaps.size > 1 else "",
        )  # fmt: skip


def _world_to_stack(ct: CtSeries) -> np.ndarray:
    """Affine from world mm to (position along the normal in mm, row index, column index)."""
    origin = np.asarray(ct.origin_mm, dtype=np.float64)
    m = np.zeros((4, 4))
    for row, (direction, scale, offset) in enumerate(
        (
            (ct.normal, 1.0, float(ct.slice_positions_mm[0])),
            (ct.column_direction, 1.0 / ct.pixel_spacing_mm[0], 0.0),
            (ct.row_direction, 1.0 / ct.pixel_spacing_mm[1], 0.0),
        )
    ):
        m[row, :3] = np.asarray(direction) * scale
        m[row, 3] = offset - float(np.asarray(direction) @ origin) * scale
    m[3, 3] = 1.0
    return m


def _resample(values: np.ndarray, ct: CtSeries, grid: ImageGrid) -> np.ndarray:
    """``values`` (slice, row, column) sampled trilinearly at the grid's voxel centres; air (0)
    outside the stack, whose slices may be unevenly spaced."""
    return sample_on_grid(
        values, _world_to_stack(ct), grid, order=1, axis0_positions_mm=ct.slice_positions_mm
    )


@malformed_input_is_input_error("CT series")
def read_ct_mu_map(
    ct_dir_or_files: Any,
    grid: ImageGrid,
    energy_kev: float,
    frame_of_reference_uid: str | None = None,
    kvp: float | None = None,
) -> Image:
    """Attenuation map (1/mm) at ``energy_kev`` on ``grid`` from a CT series.

    The slices are sorted along the normal of Image Orientation (Patient) by the projection of
    Image Position (Patient), converted to HU with Rescale Slope/Intercept and to μ with
    :func:`hu_to_mu`, then sampled at the grid's voxel centres in world coordinates by trilinear
    interpolation (:func:`recon.resample.sample_on_grid`, order 1). Whatever lies outside the CT is
    air (μ = 0), so CT and emission fields of view, voxel sizes, slice spacings (even uneven) and
    table positions may differ. The CT is sampled, not averaged: a CT much finer than the grid
    keeps its noise.

    Parameters
    ----------
    ct_dir_or_files : path, sequence of paths or pydicom Datasets
        A folder with one CT series, or its slices.
    grid : ImageGrid
        The reconstruction grid (world = DICOM patient coordinates, mm).
    energy_kev : float
        Photon energy of the emission data (e.g. 140.5 for Tc-99m, 511 for PET).
    frame_of_reference_uid : str, optional
        Frame of Reference UID of the emission data; a CT in another frame raises.
    kvp : float, optional
        CT tube voltage; default: the series' KVP (0018,0060).

    Returns
    -------
    Image
        μ in 1/mm on ``grid`` (``units="1/mm"``); ``info`` records the energy, kVp, effective CT
        energy and series.

    Raises
    ------
    GeometryError
        The CT's Frame of Reference UID differs from ``frame_of_reference_uid``; bad geometry.
    InputError
        KVP missing and ``kvp`` not given; see :func:`read_ct_series`.
    PhysicsError
        Energy outside 30-1000 keV.
    """
    if not isinstance(grid, ImageGrid):
        raise GeometryError("grid must be an ImageGrid")
    energy = check_energy(energy_kev)
    ct = read_ct_series(ct_dir_or_files)
    if frame_of_reference_uid is not None and ct.frame_of_reference_uid != str(
        frame_of_reference_uid
    ):
        raise GeometryError(
            f"the CT's Frame of Reference UID ({ct.frame_of_reference_uid}) differs from the "
            f"emission data's ({frame_of_reference_uid}): their world coordinates are not the "
            "same; register the CT to the emission data first"
        )
    if kvp is None:
        if ct.kvp is None:
            raise InputError(
                "the CT series has no KVP (0018,0060), which sets the bone branch of the HU to "
                "μ conversion; pass kvp= (the tube voltage of the scan)"
            )
        kvp = ct.kvp
    mu_ct = hu_to_mu(ct.hu, energy, kvp)
    mu = _resample(mu_ct, ct, grid)
    return Image(
        data=mu,
        grid=grid,
        units="1/mm",
        info={
            "kind": "attenuation map",
            "energy_kev": energy,
            "kvp": float(kvp),
            "effective_ct_energy_kev": effective_ct_energy_kev(kvp),
            "hu_to_mu": "bilinear water/bone (NIST, ICRU-44; Carney et al. 2006 at 511 keV)",
            "series_instance_uid": ct.series_instance_uid,
            "frame_of_reference_uid": ct.frame_of_reference_uid,
            "n_slices": int(ct.hu.shape[0]),
        },
    )
