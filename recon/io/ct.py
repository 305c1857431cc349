"""CT series to attenuation maps: Hounsfield units to linear attenuation at an emission energy.

The conversion is the bilinear (air-water / water-bone mixture) model of CT-based attenuation
correction (Kinahan et al., "Attenuation correction for a combined 3D PET/CT scanner", Med. Phys.
25 (1998) 2046-2053; Bai et al., "A generalized model for the conversion from CT numbers to linear
attenuation coefficients", IEEE Trans. Nucl. Sci. 50 (2003) 1510-1515; Brown et al.,
"Investigation of the relationship between linear attenuation coefficients and CT Hounsfield
units using radionuclides for SPECT", Appl. Radiat. Isot. 66 (2008) 1206-1212):

- ``HU ≤ 0``: a mixture of air (μ ≈ 0) and water, ``μ(E) = μ_water(E)·(1 + HU/1000)``;
- ``HU > 0``: a mixture of water and cortical bone,
  ``μ(E) = μ_water(E) + HU·(μ_bone(E) − μ_water(E)) / HU_bone``, where ``HU_bone`` is the CT number
  of cortical bone in the CT beam, ``1000·(μ_bone(E_CT) − μ_water(E_CT))/μ_water(E_CT)`` at the
  beam's effective energy ``E_CT``. The kVp enters only through ``E_CT``.

μ/ρ of water and of cortical bone (ICRU Report 44 composition, 1.92 g/cm³) come from the NIST
tables (Hubbell & Seltzer, "Tables of X-Ray Mass Attenuation Coefficients and Mass
Energy-Absorption Coefficients", NIST Standard Reference Database 126 / NISTIR 5632, which XCOM
reproduces), interpolated log-log. The effective energy of each kVp is the energy at which this
model reproduces the bone-branch slope that Carney et al. measured at 511 keV ("Method for
transforming CT images for attenuation correction in PET/CT imaging", Med. Phys. 33 (2006)
976-983, Table 1); at 511 keV itself their published bilinear coefficients are used directly.
"""

from __future__ import annotations

import functools
import logging
import math
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
from scipy.optimize import brentq

from recon.errors import GeometryError, InputError, PhysicsError
from recon.grid import ImageGrid
from recon.image import Image
from recon.io._dicom import rescaled_pixels as _pixels
from recon.io._guard import malformed_input_is_input_error
from recon.resample import sample_on_grid

__all__ = [
    "CtSeries",
    "effective_ct_energy_kev",
    "hu_to_mu",
    "read_ct_mu_map",
    "read_ct_series",
]

log = logging.getLogger("recon")

# Photon energies (keV) and total mass attenuation coefficients with coherent scattering (cm²/g):
# NIST SRD 126 (Hubbell & Seltzer), "Water, Liquid" and "Bone, Cortical (ICRU-44)".
_ENERGIES_KEV = np.array(
    [30, 40, 50, 60, 80, 100, 150, 200, 300, 400, 500, 600, 800, 1000], dtype=np.float64
)
_WATER_CM2_PER_G = np.array(
    [0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505, 0.1370, 0.1186, 0.1061, 0.09687,
     0.08956, 0.07865, 0.07072]
)  # fmt: skip
_BONE_CM2_PER_G = np.array(
    [1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480, 0.1309, 0.1113, 0.09908, 0.09022,
     0.08332, 0.07308, 0.06566]
)  # fmt: skip
_WATER_G_PER_CM3 = 1.0
_BONE_G_PER_CM3 = 1.92  # ICRU Report 44 cortical bone, as in the NIST table.

# Carney et al. 2006, Table 1: μ(511 keV) in 1/cm is 9.6e-5·(HU + 1000) up to the break point
# (in HU + 1000) and a·(HU + 1000) + b above it. kVp: (a, b, break point).
_CARNEY_LOW_SLOPE = 9.6e-5
_CARNEY = {
    80: (3.64e-5, 6.26e-2, 1050.0),
    100: (4.43e-5, 5.44e-2, 1052.0),
    110: (4.92e-5, 4.88e-2, 1043.0),
    120: (5.10e-5, 4.71e-2, 1047.0),
    130: (5.51e-5, 4.24e-2, 1037.0),
    140: (5.64e-5, 4.08e-2, 1030.0),
}
_CARNEY_KVP = np.array(sorted(_CARNEY), dtype=np.float64)
_ANNIHILATION_KEV = 511.0
# Energies this close to 511 keV use Carney's coefficients directly.
_CARNEY_TOLERANCE_KEV = 1.0
# A step this much longer than the usual slice spacing means slices are missing (helical CT
# spacing varies by a few percent at most).
_GAP_FACTOR = 1.5


# ---------------------------------------------------------------------------------- physics
def _check_energy(energy_kev: float) -> float:
    energy = float(energy_kev)
    if not (math.isfinite(energy) and _ENERGIES_KEV[0] <= energy <= _ENERGIES_KEV[-1]):
        raise PhysicsError(
            f"energy_kev={energy_kev} is outside the tabulated {_ENERGIES_KEV[0]:g}-"
            f"{_ENERGIES_KEV[-1]:g} keV range of the water/bone attenuation tables"
        )
    return energy


def _interp_loglog(table: np.ndarray, energy_kev: float) -> float:
    return float(np.exp(np.interp(np.log(energy_kev), np.log(_ENERGIES_KEV), np.log(table))))


def _mu_water_per_cm(energy_kev: float) -> float:
    return _WATER_G_PER_CM3 * _interp_loglog(_WATER_CM2_PER_G, energy_kev)


def _mu_bone_per_cm(energy_kev: float) -> float:
    return _BONE_G_PER_CM3 * _interp_loglog(_BONE_CM2_PER_G, energy_kev)


def _bone_hu(energy_kev: float) -> float:
    """CT number of cortical bone in a monoenergetic beam of ``energy_kev``."""
    water = _mu_water_per_cm(energy_kev)
    return 1000.0 * (_mu_bone_per_cm(energy_kev) - water) / water


def _check_kvp(kvp: float) -> float:
    value = float(kvp)
    if not (math.isfinite(value) and value > 0):
        raise PhysicsError(f"kvp must be a positive tube voltage in kV, got {kvp}")
    lo, hi = _CARNEY_KVP[0], _CARNEY_KVP[-1]
    if not lo <= value <= hi:
        log.warning(
            "CT tube voltage %g kVp is outside the %g-%g kVp range of the calibration (Carney "
            "et al. 2006); using %g kVp",
            value,
            lo,
            hi,
            min(max(value, lo), hi),
        )
        value = min(max(value, lo), hi)
    return value


def _carney(kvp: float) -> tuple[float, float, float]:
    """Carney's (a, b, break point) at ``kvp``, linear between the tabulated voltages."""
    rows = np.array([_CARNEY[int(k)] for k in _CARNEY_KVP])
    return tuple(float(np.interp(kvp, _CARNEY_KVP, rows[:, i])) for i in range(3))  # type: ignore[return-value]


@functools.lru_cache(maxsize=64)
def _effective_energy(kvp: float) -> float:
    a, _, _ = _carney(kvp)
    # Carney's bone slope a = (μ_bone − μ_water)(511 keV) / HU_bone, so the beam gives bone this
    # CT number; find the monoenergetic beam that gives the same.
    target = (_mu_bone_per_cm(_ANNIHILATION_KEV) - _mu_water_per_cm(_ANNIHILATION_KEV)) / a
    return float(brentq(lambda e: _bone_hu(e) - target, 30.0, 200.0, xtol=1e-6))


def effective_ct_energy_kev(kvp: float) -> float:
    """Effective energy (keV) of a CT beam of ``kvp``, as used by :func:`hu_to_mu`.

    The energy at which the water/bone mixture model gives the bone-branch slope Carney et al.
    (Med. Phys. 33 (2006) 976, Table 1) measured at 511 keV for that kVp (about 57 keV at 80 kVp,
    74 keV at 120 kVp, 80 keV at 140 kVp). Voltages outside 80-140 kVp are clamped (a warning is
    logged).
    """
    return _effective_energy(_check_kvp(kvp))


def hu_to_mu(hu: Any, energy_kev: float, kvp: float = 120.0) -> Any:
    """Linear attenuation coefficient (1/mm) at ``energy_kev`` from CT numbers.

    Parameters
    ----------
    hu : float or array_like
        CT numbers (Hounsfield units).
    energy_kev : float
        Photon energy of the emission image, 30-1000 keV (140.5 for Tc-99m, 511 for PET).
    kvp : float
        CT tube voltage; it sets the bone branch (see the module notes). Calibrated for 80-140 kVp.

    Returns
    -------
    float or ndarray of float32
        μ in 1/mm (≥ 0; air and anything below −1000 HU give 0).

    Notes
    -----
    ``HU ≤ 0``: ``μ_water(E)·(1 + HU/1000)``; ``HU > 0``:
    ``μ_water(E) + HU·(μ_bone(E) − μ_water(E))/HU_bone(kVp)`` with NIST water and ICRU-44 cortical
    bone and ``HU_bone`` the bone CT number at :func:`effective_ct_energy_kev`. Within 1 keV of
    511 keV the published bilinear fit of Carney et al. (2006) is used:
    ``9.6e-5·(HU+1000)`` /cm below the break point, ``a·(HU+1000) + b`` above.
    """
    energy = _check_energy(energy_kev)
    kvp = _check_kvp(kvp)
    scalar = np.ndim(hu) == 0
    values = np.asarray(hu, dtype=np.float32)
    if values.size and not np.all(np.isfinite(values)):
        raise InputError("CT numbers contain NaN or infinite values")
    shifted = values + np.float32(1000.0)
    if abs(energy - _ANNIHILATION_KEV) <= _CARNEY_TOLERANCE_KEV:
        a, b, knee = _carney(kvp)
        mu_cm = np.where(
            shifted <= knee,
            np.float32(_CARNEY_LOW_SLOPE) * shifted,
            np.float32(a) * shifted + np.float32(b),
        )
    else:
        water = _mu_water_per_cm(energy)
        bone_slope = (_mu_bone_per_cm(energy) - water) / _bone_hu(_effective_energy(kvp))
        mu_cm = np.where(
            values <= 0,
            np.float32(water / 1000.0) * shifted,
            np.float32(water) + np.float32(bone_slope) * values,
        )
    mu_mm = np.maximum(mu_cm, np.float32(0.0)).astype(np.float32) / np.float32(10.0)
    return float(mu_mm) if scalar else mu_mm


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
    energy = _check_energy(energy_kev)
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
