"""Volumes of interest: a boolean mask on an image grid, with a name.

A :class:`Voi` belongs to the core layer so that file formats (DICOM SEG, NIfTI masks) can build
them and quantification can measure them. A voxel belongs to a VOI when its centre lies inside
the shape. World coordinates are DICOM LPS ``(x, y, z)`` in mm; arrays are ``(z, y, x)``. VOI
statistics, iso-contours and recovery coefficients are in :mod:`recon.quant.voi`; NIfTI masks are
read by :func:`recon.io.read_voi_mask`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon._checks import check_grid, positive, xyz
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid

__all__ = ["Voi"]

log = logging.getLogger("recon")


@dataclass(frozen=True, eq=False)
class Voi:
    """A volume of interest: a boolean mask on a grid, with a name.

    Attributes
    ----------
    mask : ndarray of shape grid.shape, bool
        True inside the VOI.
    grid : ImageGrid
        The grid the mask lives on.
    name : str
        Label used in tables and plots.
    """

    mask: np.ndarray
    grid: ImageGrid
    name: str = "voi"

    def __post_init__(self) -> None:
        check_grid(self.grid)
        mask = np.asarray(self.mask)
        if mask.shape != self.grid.shape:
            raise GeometryError(
                f"VOI {self.name!r}: mask shape {mask.shape} does not match grid shape "
                f"{self.grid.shape}"
            )
        if mask.dtype != np.bool_:
            raise InputError(f"VOI {self.name!r}: mask must be boolean, got {mask.dtype}")
        if not mask.any():
            raise GeometryError(
                f"VOI {self.name!r} is empty: no voxel centre of the grid lies inside it (is it "
                "outside the image?)"
            )
        mask = mask.copy()
        mask.flags.writeable = False
        object.__setattr__(self, "mask", mask)

    # ------------------------------------------------------------------ properties
    @property
    def n_voxels(self) -> int:
        """Number of voxels in the VOI."""
        return int(np.count_nonzero(self.mask))

    @property
    def volume_ml(self) -> float:
        """Volume in mL: number of voxels × voxel volume."""
        return self.n_voxels * self.grid.voxel_volume_ml

    @property
    def centroid_mm(self) -> np.ndarray:
        """Centre of mass of the mask, world ``(x, y, z)`` in mm."""
        idx = np.argwhere(self.mask).mean(axis=0)
        return self.grid.index_to_world(idx)

    def renamed(self, name: str) -> Voi:
        """The same mask under another name."""
        return Voi(self.mask, self.grid, str(name))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_mask(cls, array: Any, grid: ImageGrid, name: str = "voi") -> Voi:
        """A VOI from a binary mask (bool, or numbers that are all 0 or 1).

        Raises
        ------
        GeometryError
            Shape differs from ``grid.shape``, or the mask is empty.
        InputError
            The array holds values other than 0/1 (a label map: use :meth:`from_labels`).
        """
        grid = check_grid(grid)
        a = np.asarray(array)
        if a.dtype != np.bool_:
            if not np.isin(a, (0, 1)).all():
                raise InputError(
                    f"VOI {name!r}: mask holds values other than 0 and 1; for a label map "
                    "use Voi.from_labels"
                )
            a = a.astype(bool)
        return cls(a, grid, name)

    @classmethod
    def from_labels(
        cls,
        labels: Any,
        grid: ImageGrid,
        names: Mapping[int, str] | str = "label",
    ) -> dict[int, Voi]:
        """One VOI per non-zero label of an integer label map (e.g. a segmentation).

        Parameters
        ----------
        labels : ndarray of shape grid.shape, integer
            0 is background; every other value is one VOI.
        grid : ImageGrid
            The grid of ``labels``.
        names : mapping of int to str, or str
            Names by label, or a prefix: label 3 becomes ``"<prefix>_3"``. Labels missing from a
            mapping get the default prefix.

        Returns
        -------
        dict of int to Voi
            By label, in increasing label order.
        """
        grid = check_grid(grid)
        a = np.asarray(labels)
        if a.shape != grid.shape:
            raise GeometryError(f"label map shape {a.shape} does not match grid {grid.shape}")
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise InputError("a label map must hold integers")
        a = a.astype(np.int64)
        out: dict[int, Voi] = {}
        for label in np.unique(a):
            if label == 0:
                continue
            if isinstance(names, Mapping):
                name = names.get(int(label), f"label_{int(label)}")
            else:
                name = f"{names}_{int(label)}"
            out[int(label)] = cls(a == label, grid, name)
        if not out:
            raise GeometryError("the label map has no non-zero label")
        return out

    @classmethod
    def sphere(
        cls,
        grid: ImageGrid,
        centre_xyz_mm: Sequence[float] | np.ndarray,
        diameter_mm: float,
        name: str = "sphere",
    ) -> Voi:
        """Voxels whose centre lies in a sphere.

        Parameters
        ----------
        grid : ImageGrid
            Target grid.
        centre_xyz_mm : sequence of 3 float
            World centre ``(x, y, z)`` in mm.
        diameter_mm : float
            Diameter in mm (> 0).
        name : str
            VOI name.

        Raises
        ------
        GeometryError
            Bad centre or diameter, or no voxel centre inside the sphere (e.g. outside the grid).
        """
        grid = check_grid(grid)
        cx, cy, cz = xyz(centre_xyz_mm, "centre_xyz_mm")
        r = _positive_mm(diameter_mm, "diameter_mm") / 2.0
        z = grid.axis_mm(0)[:, None, None] - cz
        y = grid.axis_mm(1)[None, :, None] - cy
        x = grid.axis_mm(2)[None, None, :] - cx
        mask = z * z + y * y + x * x <= r * r
        _warn_if_clipped(grid, np.array([cx, cy, cz]), np.array([r, r, r]), name)
        return cls(mask, grid, name)

    @classmethod
    def cylinder(
        cls,
        grid: ImageGrid,
        centre_xyz_mm: Sequence[float] | np.ndarray,
        radius_mm: float,
        length_mm: float,
        axis: str = "z",
        name: str = "cylinder",
    ) -> Voi:
        """Voxels whose centre lies in a right circular cylinder along a world axis.

        Parameters
        ----------
        grid : ImageGrid
            Target grid.
        centre_xyz_mm : sequence of 3 float
            World centre ``(x, y, z)`` of the cylinder in mm.
        radius_mm, length_mm : float
            Radius and length in mm (> 0).
        axis : {"x", "y", "z"}
            World axis of the cylinder.
        name : str
            VOI name.
        """
        grid = check_grid(grid)
        c = xyz(centre_xyz_mm, "centre_xyz_mm")
        r = _positive_mm(radius_mm, "radius_mm")
        half = _positive_mm(length_mm, "length_mm") / 2.0
        axes = {"x": 0, "y": 1, "z": 2}
        if axis not in axes:
            raise GeometryError(f"axis must be 'x', 'y' or 'z', got {axis!r}")
        z, y, x = grid.meshgrid_mm()
        d = [x - c[0], y - c[1], z - c[2]]
        along = d.pop(axes[axis])
        mask = (d[0] ** 2 + d[1] ** 2 <= r * r) & (np.abs(along) <= half)
        extent = np.full(3, r)
        extent[axes[axis]] = half
        _warn_if_clipped(grid, c, extent, name)
        return cls(mask, grid, name)


def _positive_mm(value: Any, name: str) -> float:
    try:
        return positive(value, name, "mm")
    except InputError as exc:
        raise GeometryError(str(exc)) from None


def _warn_if_clipped(grid: ImageGrid, centre: np.ndarray, half_xyz: np.ndarray, name: str) -> None:
    lo = grid.world_to_index(centre - half_xyz)
    hi = grid.world_to_index(centre + half_xyz)
    n = np.asarray(grid.shape) - 1
    if np.any(np.minimum(lo, hi) < -0.5) or np.any(np.maximum(lo, hi) > n + 0.5):
        log.warning("VOI %r extends beyond the image grid; it is cut at the edge", name)
