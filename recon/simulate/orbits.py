"""Camera orbits for simulated SPECT acquisitions: the body-contour orbit.

Clinical cameras follow the patient's outline (a non-circular, body-contour orbit) so that the
collimator stays close to the body at every view; the resolution of a parallel-hole collimator
falls with distance, so this orbit images with finer resolution than a circle that clears the
body's widest extent. :func:`body_contour_radii` gives such an orbit's radius per view for a
body on an image grid, to build a :class:`recon.SpectGeometry` with one radius per view.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from recon.errors import GeometryError
from recon.grid import ImageGrid

__all__ = ["body_contour_radii"]


def body_contour_radii(
    body: ArrayLike, grid: ImageGrid, angles_deg: ArrayLike, clearance_mm: float = 25.0
) -> np.ndarray:
    """Radius per view of a body-contour orbit: the collimator face ``clearance_mm`` from the
    body's outline.

    At view angle θ the camera face lies in direction ``d(θ) = (sin θ, −cos θ)`` from the
    rotation axis (the world z axis through x = y = 0; DESIGN.md §3), so its radius is the
    body's largest extent along ``d(θ)``, over every slice, plus ``clearance_mm``. Each voxel
    counts with its whole footprint (its centre's extent plus half its diagonal in the
    transaxial plane), so the face never cuts a body voxel.

    Parameters
    ----------
    body : array of bool, shape ``grid.shape`` (z, y, x)
        The voxels the camera must clear: the patient's outline, or ``mu_map > 0`` for a
        simulated phantom (a map made from a CT also holds the couch: leave it out of the
        mask unless the orbit is to clear it too).
    grid : ImageGrid
        The grid ``body`` lies on.
    angles_deg : array of shape (view,)
        View angles θ in degrees.
    clearance_mm : float
        Gap between the body's outline and the collimator face (mm, ≥ 0).

    Returns
    -------
    numpy.ndarray of shape (view,)
        Radii in mm, for ``SpectGeometry(angles_deg, radii_mm=…, …)``.

    Raises
    ------
    GeometryError
        When ``body`` does not match the grid or is empty, the clearance is negative or not
        finite, or a radius would not be positive (a body wholly behind the axis at some view
        with no clearance).
    """
    mask = np.asarray(body)
    if mask.shape != grid.shape:
        raise GeometryError(
            f"body has shape {mask.shape}, the grid {grid.shape}: give the mask on the grid"
        )
    if mask.dtype != bool:
        raise GeometryError(f"body must be a boolean mask, got dtype {mask.dtype}")
    clearance = float(clearance_mm)
    if not (math.isfinite(clearance) and clearance >= 0):
        raise GeometryError(f"clearance_mm must be a finite distance >= 0, got {clearance_mm}")
    footprint = mask.any(axis=0)  # (y, x): the outline over every slice
    if not footprint.any():
        raise GeometryError("body is empty: the orbit needs at least one voxel to clear")
    angles = np.deg2rad(np.atleast_1d(np.asarray(angles_deg, dtype=np.float64)))
    if angles.ndim != 1 or angles.size == 0 or not np.all(np.isfinite(angles)):
        raise GeometryError("angles_deg must be a non-empty 1-D array of finite view angles")
    iy, ix = np.nonzero(footprint)
    y = grid.axis_mm(1)[iy]
    x = grid.axis_mm(2)[ix]
    half_diagonal = 0.5 * math.hypot(grid.voxel_size_mm[1], grid.voxel_size_mm[2])
    # One view at a time: memory of one footprint, not views × footprint.
    extent = np.array([float((math.sin(t) * x - math.cos(t) * y).max()) for t in angles])
    radii = extent + half_diagonal + clearance
    if np.any(radii <= 0):
        raise GeometryError(
            "a body-contour radius is not positive (the body lies wholly behind the rotation "
            "axis at some view): give a clearance or centre the body on the axis"
        )
    return radii
