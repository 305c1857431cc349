"""Attenuation maps from files: NumPy, Interfile (STIR/CASToR) and NIfTI, onto a recon grid.

CT series have their own reader (:func:`recon.io.read_ct_mu_map`, HU → μ at the photon energy).
This module reads maps that already hold linear attenuation coefficients, as STIR, CASToR and
other pipelines write them, converts them to 1/mm (recon's unit) and resamples them onto the
reconstruction grid in world coordinates.

Units
    STIR and CASToR keep attenuation images in cm⁻¹, so Interfile maps are read as 1/cm unless
    told otherwise; ``.npy`` arrays are taken as 1/mm (recon's own unit, as written by its
    examples); NIfTI files carry no convention, so their unit must be given. A value range that
    cannot be a linear attenuation coefficient in the stated unit (negative, or more than
    0.5/mm anywhere, or a typical body voxel above 0.05/mm where water is 0.0096-0.019/mm) is
    refused with the fix named.
Geometry
    A ``.npy`` array has no geometry: it must have the grid's shape. Interfile and NIfTI images
    carry their grid (DESIGN.md §3 world coordinates); when it differs from the reconstruction
    grid the map is sampled trilinearly at the grid's voxel centres, and 0 (air) outside it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.grid import ImageGrid
from recon.image import Image

__all__ = ["MU_UNITS", "read_mu_map", "resample_onto"]

#: Accepted unit names and their factor to 1/mm.
MU_UNITS = {"1/mm": 1.0, "1/cm": 0.1}
_MAX_PER_MM = 0.5
# Soft tissue ranges from 0.0096/mm (511 keV) to 0.019/mm (water at 70 keV, NIST XCOM): a map
# whose typical (median non-zero) voxel exceeds this is in 1/cm or is not a mu-map.
_MAX_TYPICAL_PER_MM = 0.05


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def resample_onto(image: Image, grid: ImageGrid) -> np.ndarray:
    """``image`` sampled trilinearly at the voxel centres of ``grid`` (world coordinates).

    Points outside ``image``'s voxel centres get 0. Returns a float32 array of ``grid.shape``;
    the array itself when the grids coincide.
    """
    values = np.asarray(image, dtype=np.float32)
    if image.grid.same_as(grid):
        return values
    from scipy.ndimage import map_coordinates

    z, y, x = grid.meshgrid_mm()
    index = image.grid.world_to_index(np.stack([x, y, z], axis=-1))  # (..., 3) in (z, y, x)
    coords = [index[..., axis] for axis in range(3)]
    return map_coordinates(
        values, coords, order=1, mode="constant", cval=0.0, prefilter=False
    ).astype(np.float32)


def read_mu_map(
    path: str | os.PathLike[str], grid: ImageGrid, *, units: str | None = None
) -> Image:
    """Read a linear-attenuation map and put it on ``grid`` in 1/mm.

    Parameters
    ----------
    path : path-like
        ``.npy`` (the grid's shape), an Interfile image header (``.hv``, ``.h33``, ``.hdr``) or a
        NIfTI image (``.nii``, ``.nii.gz``; needs nibabel).
    grid : ImageGrid
        The reconstruction grid.
    units : {"1/mm", "1/cm"}, optional
        Unit of the file's values. Default: 1/mm for ``.npy``, 1/cm for Interfile (STIR and
        CASToR); required for NIfTI.

    Returns
    -------
    Image
        The map on ``grid`` in 1/mm (``units="1/mm"``; ``info`` names the source and unit).

    Raises
    ------
    InputError
        Unknown format or unit, a ``.npy`` of another shape, unreadable files, values that are
        not attenuation coefficients in the stated unit.
    """
    source = Path(path)
    if not source.is_file():
        raise InputError(f"attenuation map {source} does not exist or is not a file")
    if units is not None and units not in MU_UNITS:
        raise InputError(f"mu-map units must be one of {sorted(MU_UNITS)}, got {units!r}")
    suffix = _suffix(source)
    if suffix == ".npy":
        values = _read_npy(source, grid)
        unit = units or "1/mm"
    elif suffix in (".hv", ".h33", ".hdr"):
        from recon.io.interfile import read_interfile_image

        values = resample_onto(read_interfile_image(source), grid)
        unit = units or "1/cm"
    elif suffix in (".nii", ".nii.gz"):
        if units is None:
            raise InputError(
                f"{source.name}: a NIfTI file does not say its unit; give the mu-map units "
                "(1/mm or 1/cm, e.g. --mu-units 1/cm)"
            )
        from recon.io.nifti import read_nifti_image

        values = resample_onto(read_nifti_image(source), grid)
        unit = units
    else:
        raise InputError(
            f"{source.name}: unknown attenuation-map format {suffix!r}; use .npy (1/mm, on the "
            "reconstruction grid), an Interfile image (.hv) or NIfTI (.nii, .nii.gz)"
        )
    mu = values.astype(np.float64) * MU_UNITS[unit]
    _check_values(mu, source, unit)
    info = {"source": str(source), "file_units": unit}
    return Image(mu.astype(np.float32), grid, units="1/mm", info=info)


def _read_npy(path: Path, grid: ImageGrid) -> np.ndarray:
    from recon._npy import NpyHeader, load_npy

    with path.open("rb") as handle:  # the shape first: a wrong one is refused without reading
        header = NpyHeader.read(handle, f"attenuation map {path}")
    if header.shape != tuple(grid.shape):
        raise InputError(
            f"{path.name} has shape {header.shape} but the reconstruction grid is {grid.shape}; "
            "a .npy map has no geometry, so it must be on that grid ('recon info' on the "
            "projections or listmode shows it), or give an Interfile or NIfTI map, which is "
            "resampled"
        )
    if header.dtype.kind not in "fiu":
        raise InputError(
            f"{path.name} holds {header.dtype} values; an attenuation map holds real numbers "
            "(float32 in 1/mm)"
        )
    return load_npy(path, "attenuation map")


def _check_values(mu: np.ndarray, source: Path, unit: str) -> None:
    if not np.all(np.isfinite(mu)):
        raise InputError(f"{source.name}: the attenuation map holds NaN or infinite values")
    if mu.min() < -1e-6:
        raise InputError(
            f"{source.name}: negative attenuation coefficients (minimum {mu.min():.3g}/mm); is it "
            "a CT in HU? read CT series with --ct"
        )
    body = mu[mu > 1e-4]
    typical = float(np.median(body)) if body.size else 0.0
    if mu.max() > _MAX_PER_MM or typical > _MAX_TYPICAL_PER_MM:
        other = "1/cm" if unit == "1/mm" else "1/mm"
        raise InputError(
            f"{source.name}: values up to {mu.max() / MU_UNITS[unit]:.3g} (median "
            f"{typical / MU_UNITS[unit]:.3g}) are not linear attenuation coefficients in {unit} "
            f"(water is 0.0096/mm at 511 keV, 0.019/mm at 70 keV); if the file is in {other}, "
            f"say so (--mu-units {other})"
        )
