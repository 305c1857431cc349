"""The image grid: shape, voxel size and world position of a reconstruction volume."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from recon.errors import GeometryError

__all__ = ["ImageGrid"]


def _triple(value: float | Sequence[float] | np.ndarray, name: str) -> tuple[float, float, float]:
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        values = [float(v) for v in value]
    else:
        values = [float(value)] * 3
    if len(values) != 3:
        raise GeometryError(f"{name} needs 3 values (z, y, x), got {len(values)}")
    if not all(np.isfinite(values)):
        raise GeometryError(f"{name} must be finite, got {tuple(values)}")
    return values[0], values[1], values[2]


@dataclass(frozen=True, init=False)
class ImageGrid:
    """A regular voxel grid in world (DICOM LPS) coordinates.

    Parameters
    ----------
    shape : tuple of int
        Number of voxels ``(z, y, x)``.
    voxel_size : float or tuple of float
        Voxel size in mm, one value for cubic voxels or ``(z, y, x)``.
    origin : tuple of float, optional
        World position in mm of the *centre* of voxel ``[0, 0, 0]``, given as ``(z, y, x)``.
        By default the grid is centred on the isocentre (world origin).

    Notes
    -----
    Arrays on this grid have shape ``(z, y, x)``; index ``[k, j, i]`` is at world position
    ``(x, y, z) = origin[::-1] + (i, j, k) * voxel_size[::-1]``.
    """

    # The constructor normalises its arguments, so the stored fields have exact types.
    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]

    def __init__(
        self,
        shape: Sequence[int],
        voxel_size: float | Sequence[float] | np.ndarray,
        origin: Sequence[float] | np.ndarray | None = None,
    ) -> None:
        dims = [int(s) for s in shape]
        if len(dims) != 3 or any(s < 1 for s in dims):
            raise GeometryError(
                f"ImageGrid shape must be 3 positive integers (z, y, x), got {shape}"
            )
        voxel = _triple(voxel_size, "voxel_size")
        if any(v <= 0 for v in voxel):
            raise GeometryError(f"voxel_size must be positive (mm), got {voxel}")
        if origin is None:
            centred = [-(n - 1) / 2.0 * v for n, v in zip(dims, voxel, strict=True)]
            corner = (centred[0], centred[1], centred[2])
        else:
            corner = _triple(origin, "origin")
        object.__setattr__(self, "shape", (dims[0], dims[1], dims[2]))
        object.__setattr__(self, "voxel_size", voxel)
        object.__setattr__(self, "origin", corner)

    @property
    def voxel_size_mm(self) -> tuple[float, float, float]:
        """Voxel size ``(z, y, x)`` in mm."""
        return self.voxel_size

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm³)."""
        dz, dy, dx = self.voxel_size_mm
        return dz * dy * dx / 1000.0

    @property
    def n_voxels(self) -> int:
        """Total number of voxels."""
        return math.prod(self.shape)

    def check_memory(self, copies: int, what: str = "the reconstruction") -> None:
        """Refuse (InputError) a grid whose ``copies`` float32 images do not fit in memory."""
        from recon._memory import check_memory

        nz, ny, nx = self.shape
        check_memory(
            4.0 * copies * self.n_voxels,
            f"{what} on a {nz} x {ny} x {nx} grid",
            "use a smaller grid or larger voxels",
        )

    def axis_mm(self, axis: int) -> np.ndarray:
        """World coordinates in mm of voxel centres along ``axis`` (0 = z, 1 = y, 2 = x)."""
        return self.origin[axis] + np.arange(self.shape[axis]) * self.voxel_size_mm[axis]

    @property
    def centre_mm(self) -> tuple[float, float, float]:
        """World position ``(z, y, x)`` of the grid centre in mm."""
        (oz, oy, ox), (nz, ny, nx), (vz, vy, vx) = self.origin, self.shape, self.voxel_size
        return oz + (nz - 1) / 2.0 * vz, oy + (ny - 1) / 2.0 * vy, ox + (nx - 1) / 2.0 * vx

    def world_to_index(self, xyz_mm: np.ndarray) -> np.ndarray:
        """Convert world points ``(..., 3)``, (x, y, z) in mm, to fractional (z, y, x) indices."""
        p = np.asarray(xyz_mm, dtype=np.float64)
        zyx = p[..., ::-1]
        return (zyx - np.asarray(self.origin)) / np.asarray(self.voxel_size_mm)

    def index_to_world(self, zyx_index: np.ndarray) -> np.ndarray:
        """Convert fractional (z, y, x) indices ``(..., 3)`` to world points (x, y, z) in mm."""
        idx = np.asarray(zyx_index, dtype=np.float64)
        zyx = np.asarray(self.origin) + idx * np.asarray(self.voxel_size_mm)
        return zyx[..., ::-1]

    def meshgrid_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates ``(z, y, x)`` of every voxel centre, each of shape ``shape``."""
        return np.meshgrid(self.axis_mm(0), self.axis_mm(1), self.axis_mm(2), indexing="ij")

    def same_as(self, other: ImageGrid, tol_mm: float = 1e-4) -> bool:
        """True when ``other`` describes the same voxels (shape, size, origin within ``tol_mm``)."""
        return (
            self.shape == other.shape
            and np.allclose(self.voxel_size_mm, other.voxel_size_mm, atol=tol_mm)
            and np.allclose(self.origin, other.origin, atol=tol_mm)
        )
