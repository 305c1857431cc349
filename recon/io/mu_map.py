"""Attenuation maps from files: NumPy, Interfile (STIR/CASToR) and NIfTI, onto a recon grid.

CT series have their own reader (:func:`recon.io.read_ct_mu_map`, HU → μ at the photon energy).
This module reads maps that already hold linear attenuation coefficients, as STIR, CASToR and
other pipelines write them, converts them to 1/mm (recon's unit) and resamples them onto the
reconstruction grid in world coordinates.

Units
    STIR and CASToR keep attenuation images in cm⁻¹, so Interfile maps are read as 1/cm unless
    told otherwise or labelled 1/mm (``quantification units := 1 1/mm``, as recon writes);
    ``.npy`` arrays are taken as 1/mm (recon's own unit, as written by its examples); NIfTI
    files carry no convention, so their unit must be given. A value range that
    cannot be a linear attenuation coefficient in the stated unit (negative, or more than
    0.5/mm anywhere, or a typical body voxel above 0.05/mm where water is 0.0096-0.019/mm) is
    refused with the fix named.
Geometry
    A ``.npy`` array has no geometry: it must have the grid's shape. Interfile and NIfTI images
    carry their grid (DESIGN.md §3 world coordinates); when it differs from the reconstruction
    grid the map is sampled trilinearly at the grid's voxel centres, and 0 (air) outside it.
    An Interfile map is placed where STIR's projectors put it (:mod:`recon.io.interfile.image`):
    ``stir_placement="spect"`` as SPECTUB does (``recon spect`` passes it: image
    plane ``k`` at the height of projection row ``k``, centred on the rotation axis),
    ``"pet"`` as the PET projectors do, default by the file's modality. It is read in the
    scanner frame taken as head-first supine, whatever its patient position says, because
    STIR's projectors pair a map with its data in the scanner frame and recon's projection
    readers take that frame as head-first supine.
STIR's SPECT maps and the left-right question
    STIR's SPECT projector SPECTUB computes its weights in an internal frame whose x is STIR's
    image x reversed, and reverses the emission image's x index into it, but copies the
    attenuation map into that frame as it is (``SPECTUB_Weight3d.cxx``, ``wm_calculation``:
    ``InvertAxis::invert_axis_index`` on the emission index only;
    ``ProjMatrixByBinSPECTUB.cxx``: ``std::copy`` of the map; STIR issue #452, whose fix
    was reverted by PR #474). So SPECTUB attenuates the emission voxel at x with the map's
    voxel at −x (mirrored about the array centre), and a map made to work with STIR's SPECT is
    stored mirrored in x:
    STIR's own test data do it (``recon_test_pack/simulate_data_for_tests.sh``: "make up for
    the fliprl of SPECTUB", the SPECT map's cylinder at x = −20 mm where the emission's is at
    +20 mm). recon takes a map's voxels where its header says, like any image, because that is
    what the file states and what every other reader (STIR's PET projectors, its LPS export,
    CASToR, viewers) does; a CT-derived map is right that way. A map that was mirrored for
    SPECTUB needs ``spectub_mirrored=True`` (``recon spect --mu-spectub-mirrored``), which
    reverses its x axis about the array centre before resampling. Which one a file is cannot
    be told from the file, so a map placed for SPECT without the switch is announced with a
    warning that names it, and the choice is kept in the result's ``info``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from recon.errors import InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.resample import resample

__all__ = ["MU_UNITS", "read_mu_map", "resample_onto"]

#: Accepted unit names and their factor to 1/mm.
MU_UNITS = {"1/mm": 1.0, "1/cm": 0.1}
_MAX_PER_MM = 0.5
# Soft tissue ranges from 0.0096/mm (511 keV) to 0.019/mm (water at 70 keV, NIST XCOM): a map
# whose typical (median non-zero) voxel exceeds this is in 1/cm or is not a mu-map.
_MAX_TYPICAL_PER_MM = 0.05
#: Unit labels an Interfile map may carry (``quantification units := 1 1/cm``).
_MU_UNIT_LABELS = {"1/mm": "1/mm", "mm-1": "1/mm", "/mm": "1/mm",
                   "1/cm": "1/cm", "cm-1": "1/cm", "/cm": "1/cm"}  # fmt: skip
log = logging.getLogger("recon")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def resample_onto(image: Image, grid: ImageGrid) -> np.ndarray:
    """``image`` sampled trilinearly at the voxel centres of ``grid`` (world coordinates).

    Parameters
    ----------
    image : Image
        The map on its own grid.
    grid : ImageGrid
        The grid to sample on.

    Returns
    -------
    float32 ndarray of shape ``grid.shape``
        0 at points outside ``image``'s voxel centres (:func:`recon.resample.resample`); the
        image's own array when the grids coincide.
    """
    return resample(np.asarray(image, dtype=np.float32), image.grid, grid)


def read_mu_map(
    path: str | os.PathLike[str],
    grid: ImageGrid,
    *,
    units: str | None = None,
    stir_placement: str | None = None,
    spectub_mirrored: bool = False,
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
        Unit of the file's values. Default: 1/mm for ``.npy``; for Interfile the unit label of
        its ``quantification units`` when that is 1/mm or 1/cm, else 1/cm (STIR and CASToR);
        required for NIfTI.
    stir_placement : {"pet", "spect"}, optional
        Where an Interfile map lies: as STIR's PET projectors or its SPECT projector (SPECTUB)
        place it (module docstring); default by the file's ``!imaging modality``.
    spectub_mirrored : bool
        The map was made for STIR's SPECT projector, which mirrors the emission image in x
        relative to the map: reverse the map's x axis (patient left-right) about its array
        centre before resampling (module docstring).

    Returns
    -------
    Image
        The map on ``grid`` in 1/mm (``units="1/mm"``; ``info`` names the source, the unit,
        the placement and whether the map was mirrored).

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
    info: dict = {"source": str(source), "x_mirrored_for_spectub": bool(spectub_mirrored)}
    if suffix == ".npy":
        values = _mirrored(_read_npy(source, grid), spectub_mirrored)
        unit = units or "1/mm"
    elif suffix in (".hv", ".h33", ".hdr"):
        from recon.io.interfile import read_interfile_image

        image = read_interfile_image(source, assume_hfs=True, stir_placement=stir_placement)
        values = resample_onto(image.with_data(_mirrored(image.data, spectub_mirrored)), grid)
        unit = units or _MU_UNIT_LABELS.get(str(image.units).strip().lower(), "1/cm")
        info.update(
            stir_placement=image.info.get("stir_placement", "centred (CASToR)"),
            patient_position=image.info.get("patient_position"),
        )
        if info["stir_placement"] == "spect" and not spectub_mirrored:
            # The default that can be wrong on real data: say so where the user sees it.
            log.warning(
                "mu-map %s is taken as its header says; if it was made for STIR's SPECT "
                "projector (SPECTUB mirrors it left-right), mirror it back with "
                "--mu-spectub-mirrored (read_mu_map(..., spectub_mirrored=True))", source.name,
            )  # fmt: skip
        else:
            log.info(
                "mu-map %s: %s placement, %s%s", source.name, info["stir_placement"], unit,
                ", mirrored in x for STIR's SPECTUB" if spectub_mirrored else "",
            )  # fmt: skip
    elif suffix in (".nii", ".nii.gz"):
        if units is None:
            raise InputError(
                f"{source.name}: a NIfTI file does not say its unit; give the mu-map units "
                "(1/mm or 1/cm, e.g. --mu-units 1/cm)"
            )
        from recon.io.nifti import read_nifti_image

        image = read_nifti_image(source)
        values = resample_onto(image.with_data(_mirrored(image.data, spectub_mirrored)), grid)
        unit = units
    else:
        raise InputError(
            f"{source.name}: unknown attenuation-map format {suffix!r}; use .npy (1/mm, on the "
            "reconstruction grid), an Interfile image (.hv) or NIfTI (.nii, .nii.gz)"
        )
    mu = values.astype(np.float64) * MU_UNITS[unit]
    _check_values(mu, source, unit)
    info["file_units"] = unit
    return Image(mu.astype(np.float32), grid, units="1/mm", info=info)


def _mirrored(values: np.ndarray, mirror: bool) -> np.ndarray:
    """``values`` (z, y, x) with x reversed when ``mirror`` (SPECTUB's left-right flip)."""
    return np.ascontiguousarray(np.asarray(values)[..., ::-1]) if mirror else values


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
