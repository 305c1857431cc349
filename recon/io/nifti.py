"""NIfTI-1 export of images and import of images and VOI masks (nibabel, an optional dependency).

NIfTI world coordinates are RAS+ (+x right, +y anterior, +z superior), ours are DICOM LPS (DESIGN.md
§3), so ``x_RAS = −x_LPS``, ``y_RAS = −y_LPS``, ``z_RAS = z_LPS``. A NIfTI array is indexed
``[i, j, k]`` with its first axis fastest on disk and conventionally along x, so our ``(z, y, x)``
arrays are transposed to ``(x, y, z)``; the affine then maps ``(i, j, k)`` to RAS millimetres:

    [x_RAS, y_RAS, z_RAS, 1]ᵀ = A · [i, j, k, 1]ᵀ,
    A = [[−Δx, 0, 0, −x0], [0, −Δy, 0, −y0], [0, 0, Δz, z0], [0, 0, 0, 1]]

with ``(x0, y0, z0)`` the LPS position of the centre of voxel ``[0, 0, 0]`` (NIfTI-1 header
documentation, "qform/sform", https://nifti.nimh.nih.gov/nifti-1/documentation/nifti1fields).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import write_atomically
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.resample import sample_on_grid
from recon.voi import Voi

__all__ = ["grid_affine_ras", "read_nifti_image", "read_voi", "read_voi_mask", "write_nifti"]

# NIFTI_XFORM_SCANNER_ANAT: coordinates are the scanner's (here: the DICOM patient frame).
_XFORM_SCANNER_ANAT = 1
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _nibabel() -> Any:
    try:
        import nibabel
    except ImportError:
        raise InputError(
            "NIfTI files need the optional package nibabel: pip install nibabel "
            "(or pip install 'recon[nifti]')"
        ) from None
    return nibabel


def grid_affine_ras(grid: ImageGrid) -> np.ndarray:
    """The 4×4 NIfTI affine of ``grid``: voxel ``(i, j, k)`` = ``(x, y, z)`` index to RAS mm."""
    dz, dy, dx = grid.voxel_size_mm
    z0, y0, x0 = grid.origin
    lps = np.array(
        [[dx, 0.0, 0.0, x0], [0.0, dy, 0.0, y0], [0.0, 0.0, dz, z0], [0.0, 0.0, 0.0, 1.0]]
    )
    return _LPS_TO_RAS @ lps


def _suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    if name.endswith(".nii"):
        return ".nii"
    raise InputError(f"NIfTI file names end in .nii or .nii.gz, got {path.name!r}")


def write_nifti(image: Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` as a single-file NIfTI-1 volume (``.nii`` or ``.nii.gz``), atomically.

    Parameters
    ----------
    image : Image
        Volume of shape ``(z, y, x)``; written as float32 of shape ``(x, y, z)`` with the affine of
        :func:`grid_affine_ras` as both sform and qform (code 1, scanner anatomical), spatial units
        mm, and the image's units and isotope in the header's description.
    path : path-like
        Output file; its folder must exist. An existing file is replaced atomically.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        nibabel is missing, the file name does not end in .nii/.nii.gz, or the values are not
        finite.
    """
    nib = _nibabel()
    if not isinstance(image, Image):
        raise InputError(f"write_nifti needs a recon.Image, got {type(image).__name__}")
    path = Path(path)
    suffix = _suffix(path)
    data = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise InputError("image contains NaN or infinite values")
    affine = grid_affine_ras(image.grid)
    nifti = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), affine)
    nifti.set_sform(affine, code=_XFORM_SCANNER_ANAT)
    nifti.set_qform(affine, code=_XFORM_SCANNER_ANAT)
    header = nifti.header
    header.set_xyzt_units(xyz="mm", t="sec")
    description = " ".join(str(p) for p in ("recon", image.units, image.isotope or "") if p)
    header["descrip"] = description.encode("ascii", "replace")[:79]
    payload = nifti.to_bytes()
    if suffix == ".nii.gz":
        payload = gzip.compress(payload, mtime=0)
    return write_atomically(path, lambda handle: handle.write(payload))


def read_voi(
    path: str | os.PathLike[str],
    grid: ImageGrid,
    name: str | None = None,
    label: int | None = None,
) -> Voi:
    """A :class:`recon.voi.Voi` from a NIfTI mask or label file, on ``grid``.

    The mask is read as :func:`read_voi_mask` reads it; ``name`` defaults to the file name
    without its extension.
    """
    mask = read_voi_mask(path, grid, label)
    if name is None:
        name = os.path.basename(os.fspath(path)).split(".")[0]
    return Voi.from_mask(mask, grid, name)


def read_voi_mask(
    path: str | os.PathLike[str], grid: ImageGrid, label: int | None = None
) -> np.ndarray:
    """Read a NIfTI VOI mask onto ``grid``.

    Parameters
    ----------
    path : path-like
        NIfTI-1/2 file (``.nii`` or ``.nii.gz``) holding a 3-D mask or label map (a trailing axis
        of length 1 is allowed). It needs an orientation (sform or qform code > 0).
    grid : ImageGrid
        The grid to return the mask on.
    label : int, optional
        Voxels equal to ``label`` form the mask; by default every non-zero voxel does.

    Returns
    -------
    ndarray of bool, shape ``grid.shape`` (z, y, x)
        When the file's grid equals ``grid`` (shape and affine within 1e-3 mm) its voxels are taken
        as they are; otherwise each grid voxel centre takes the value of the file voxel that
        contains it (nearest neighbour), and centres outside the file's volume are outside the mask.

    Raises
    ------
    InputError
        nibabel is missing, the file cannot be read, or it is not a 3-D volume.
    GeometryError
        The file has no orientation, a singular affine, or a non-empty mask none of which falls on
        ``grid`` (drawn on another study, or in another frame of reference).
    """
    nib = _nibabel()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"VOI mask file {path} does not exist")
    try:
        nifti = nib.load(str(path))
    except Exception as exc:  # nibabel raises several unrelated types for unreadable files
        raise InputError(f"cannot read {path} as NIfTI: {exc}") from None
    header = nifti.header
    codes = [int(c) for c in (header.get("sform_code", 0), header.get("qform_code", 0))]
    if not any(codes):
        raise GeometryError(
            f"{path.name} has no orientation (sform and qform codes are 0), so its voxels cannot "
            "be placed in world coordinates; save the mask with its image's affine"
        )
    data = np.asanyarray(nifti.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path.name} holds a {data.ndim}-D array; a VOI mask must be 3-D")
    # NaN (as some tools store "outside") is never inside the mask.
    inside = (data != 0) & ~np.isnan(data) if label is None else data == label
    affine = np.asarray(nifti.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise GeometryError(f"{path.name} has a singular or non-finite affine:\n{affine}")

    target = grid_affine_ras(grid)
    if inside.shape == grid.shape[::-1] and np.allclose(affine, target, atol=1e-3):
        return np.ascontiguousarray(inside.transpose(2, 1, 0))

    # Nearest neighbour: every grid voxel centre (LPS) goes through RAS into the file's indices.
    out = sample_on_grid(inside, np.linalg.inv(affine) @ _LPS_TO_RAS, grid, order=0)
    if inside.any() and not out.any():
        raise GeometryError(
            f"the VOI in {path.name} does not overlap the image grid; was it drawn on this study?"
        )
    return out


def read_nifti_image(path: str | os.PathLike[str]) -> Image:
    """Read a NIfTI volume as an :class:`~recon.Image` on its own grid (world LPS mm).

    Parameters
    ----------
    path : path-like
        NIfTI-1/2 file (``.nii`` or ``.nii.gz``) holding a 3-D volume (a trailing axis of length
        1 is allowed) whose affine is axis-aligned; axes running backwards are flipped.

    Returns
    -------
    Image
        float32 values ``(z, y, x)``; units are not stored in NIfTI, so they are left unset
        (``info["source"] == "nifti"``).

    Raises
    ------
    InputError
        nibabel is missing, the file cannot be read, or it is not a 3-D volume.
    GeometryError
        An oblique or permuted affine, or a zero voxel size.
    """
    nib = _nibabel()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"NIfTI image {path} does not exist")
    try:
        nifti = nib.load(str(path))
        data = np.asarray(nifti.dataobj, dtype=np.float64)
    except Exception as exc:  # nibabel raises several unrelated types for unreadable files
        raise InputError(f"cannot read {path.name} as NIfTI: {exc}") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path.name} holds a {data.ndim}-D array; an image must be 3-D")
    lps = _LPS_TO_RAS @ np.asarray(nifti.affine, dtype=np.float64)  # the matrix is its own inverse
    rot = lps[:3, :3]
    if not np.all(np.isfinite(lps)) or not np.allclose(
        rot, np.diag(np.diag(rot)), atol=1e-4 * max(np.abs(rot).max(), 1e-12)
    ):
        raise GeometryError(
            f"{path.name}: oblique or permuted NIfTI axes are not supported; resample the image "
            "onto an axis-aligned grid"
        )
    steps = np.diag(rot).copy()
    origin = lps[:3, 3].copy()  # world (x, y, z) of voxel (0, 0, 0)
    for axis in range(3):
        if steps[axis] < 0:
            data = np.flip(data, axis=axis)
            origin[axis] += (data.shape[axis] - 1) * steps[axis]
            steps[axis] = -steps[axis]
    if np.any(steps <= 0):
        raise GeometryError(f"{path.name}: the NIfTI affine has a zero voxel size")
    array = np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32)
    grid = ImageGrid(array.shape, tuple(steps[::-1]), origin=tuple(origin[::-1]))
    return Image(array, grid, info={"source": "nifti", "path": str(path)})
