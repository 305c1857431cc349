"""Joseph projection of separable sinograms with the transaxial walk shared by all planes (CPU).

A sinogram is separable when bin ``[plane, pair]`` runs from ``(xy_start[pair], z_start[plane])``
to ``(xy_end[pair], z_end[plane])``: the span-1 sinogram of a cylindrical scanner
(:class:`recon.SinogramLayout`, pair = (view, radial)) and
:meth:`recon.PetLorSinogramModel.separable`. :class:`SeparableProjector` computes the same line
integrals as :class:`recon.pet.projector.LorProjector` (non-TOF) on those LORs, but walks each
pair's transaxial path once for all planes (:mod:`recon.pet._cpu_separable`); LORs whose principal
axis is z (only with very large ring differences) go through the per-LOR kernels. The CUDA
kernels have no separable twin yet, so this projector is CPU only; models use the per-LOR
projector on a GPU.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numba as nb
import numpy as np

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.pet import _cpu_separable as kernels
from recon.pet._cpu import PetGrid
from recon.pet.projector import LorProjector

__all__ = ["AxialMirror", "SeparableProjector", "axial_mirror"]


class AxialMirror(NamedTuple):
    """The planes of a separable sinogram split by the mirror ``z → −z`` (see
    :func:`axial_mirror`): ``half`` holds one plane of every mirrored pair, ``partner[i]`` the
    plane that mirrors ``half[i]``, and ``fixed`` the planes that are their own mirror image."""

    half: np.ndarray
    partner: np.ndarray
    fixed: np.ndarray


def axial_mirror(z_start: Any, z_end: Any, grid: ImageGrid) -> AxialMirror | None:
    """How the mirror ``z → −z`` maps the planes of a separable sinogram onto each other, when it
    maps both the planes and the image grid onto themselves; None otherwise.

    Every plane's LORs run from ``(xy_start[pair], z_start[plane])`` to ``(xy_end[pair],
    z_end[plane])``, so the mirror image of plane ``p`` is the plane ``q`` with ``z_start[q] =
    −z_start[p]`` and ``z_end[q] = −z_end[p]`` (the same transaxial pairs). When every plane has
    such a partner (exact float32 equality, as a cylindrical scanner's ring positions give) and
    the grid's voxel centres along z are symmetric about ``z = 0`` (a grid centred axially on the
    isocentre, to 1e-6 voxel), the back projection of plane ``q`` of values ``v`` is the z-flipped
    back projection of plane ``p`` of the same values: Joseph's walk along x or y visits the same
    crossings, and its axial index ``e + t·g`` becomes ``(nz − 1) − (e + t·g)`` (equal up to
    rounding). Values that are equal on mirrored planes then need only ``half`` and ``fixed``
    projected.
    """
    z1 = np.asarray(z_start, np.float32).reshape(-1)
    z2 = np.asarray(z_end, np.float32).reshape(-1)
    if z1.shape != z2.shape or z1.size == 0:
        return None
    centres = grid.axis_mm(0)
    if not np.all(np.abs(centres + centres[::-1]) <= 1e-6 * grid.voxel_size_mm[0]):
        return None
    where = {(float(a), float(b)): p for p, (a, b) in enumerate(zip(z1, z2, strict=True))}
    if len(where) != z1.size:  # two planes with the same ends: no one-to-one mirror
        return None
    half, partner, fixed = [], [], []
    for p, (a, b) in enumerate(zip(z1, z2, strict=True)):
        q = where.get((float(-a), float(-b)))
        if q is None:
            return None
        if q == p:
            fixed.append(p)
        elif p < q:
            half.append(p)
            partner.append(q)
    as_index = [np.asarray(v, np.int64) for v in (half, partner, fixed)]
    return AxialMirror(*as_index)


class SeparableProjector:
    """Non-TOF line integrals of a separable sinogram, and their exact adjoint (CPU).

    Parameters
    ----------
    projector : LorProjector
        A non-TOF CPU projector on the image grid: its grid and geometry are used, and it
        projects the LORs whose principal axis is z.

    Notes
    -----
    Memory per call besides the result: a padded z-innermost copy of the image
    (``ny·nx·(nz + 3)`` float32) and, for :meth:`back`, one such image per numba thread and a
    ``(pair, plane)`` copy of the values.
    """

    def __init__(self, projector: LorProjector) -> None:
        if not isinstance(projector, LorProjector):
            raise GeometryError("projector must be a LorProjector")
        if projector.tof is not None or projector.backend.is_gpu:
            raise GeometryError("the separable projector needs a non-TOF CPU LorProjector")
        self.projector = projector
        self.grid = projector.grid
        self._pet_grid = PetGrid(*(np.float32(v) for v in projector._geometry))

    # ------------------------------------------------------------------ public interface
    def forward(self, image: Any, xy_start: Any, xy_end: Any, z_start: Any, z_end: Any) -> Any:
        """Line integrals of ``image`` along every LOR ``[plane, pair]``.

        Parameters
        ----------
        image : ndarray of shape grid.shape (z, y, x)
        xy_start, xy_end : ndarray of shape (n_pairs, 2)
            World (x, y) in mm of the two ends of each transaxial pair.
        z_start, z_end : ndarray of shape (n_planes,)
            World z in mm of the two ends of each plane.

        Returns
        -------
        ndarray of float32, shape (n_planes, n_pairs)
            In mm times image units.
        """
        tables = self._tables(xy_start, xy_end, z_start, z_end)
        x = np.ascontiguousarray(np.asarray(image, np.float32))
        if x.shape != self.grid.shape:
            raise InputError(f"image has shape {x.shape}, expected {self.grid.shape} (z, y, x)")
        nz, ny, nx = x.shape
        padded = np.empty((ny, nx, nz + kernels.Z_PAD_BELOW + kernels.Z_PAD_ABOVE), np.float32)
        kernels.padded_transpose(x, padded)
        out_t = np.empty((tables[0].shape[0], tables[2].shape[0]), np.float32)
        kernels.separable_forward(padded, self._pet_grid, *tables, out_t)
        out = np.ascontiguousarray(out_t.T)
        steep = self._steep(*tables)
        if steep is not None:
            xs, xe = self._endpoints(steep, *tables)
            out[steep] = self.projector.forward(x, xs, xe, checked=False)
        return out

    def back(self, values: Any, xy_start: Any, xy_end: Any, z_start: Any, z_end: Any) -> Any:
        """Exact adjoint of :meth:`forward`: ``values`` (n_planes, n_pairs) spread along the LORs.

        Returns
        -------
        ndarray of float32, shape grid.shape
        """
        tables = self._tables(xy_start, xy_end, z_start, z_end)
        shape = (tables[2].shape[0], tables[0].shape[0])
        v = np.asarray(values, np.float32)
        if v.shape != shape:
            raise InputError(f"values have shape {v.shape}, expected {shape} (plane, pair)")
        nz, ny, nx = self.grid.shape
        image = np.zeros(self.grid.shape, np.float32)
        n_parts = max(1, min(nb.get_num_threads(), shape[1]))
        padded = (n_parts, ny, nx, nz + kernels.Z_PAD_BELOW + kernels.Z_PAD_ABOVE)
        scratch = np.empty(padded, np.float32)
        kernels.separable_back(np.ascontiguousarray(v.T), self._pet_grid, *tables, scratch)
        kernels.add_parts_unpadded(scratch, image)
        steep = self._steep(*tables)
        if steep is not None:
            xs, xe = self._endpoints(steep, *tables)
            image += self.projector.back(np.ascontiguousarray(v[steep]), xs, xe, checked=False)
        return image

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _tables(xy_start: Any, xy_end: Any, z_start: Any, z_end: Any) -> tuple[np.ndarray, ...]:
        xy1, xy2 = (np.ascontiguousarray(np.asarray(a, np.float32)) for a in (xy_start, xy_end))
        z1, z2 = (np.ascontiguousarray(np.asarray(a, np.float32)) for a in (z_start, z_end))
        if xy1.ndim != 2 or xy1.shape[1] != 2 or xy1.shape != xy2.shape:
            raise InputError(
                f"xy_start and xy_end must both have shape (n_pairs, 2), got {xy1.shape} and "
                f"{xy2.shape}"
            )
        if z1.ndim != 1 or z1.shape != z2.shape:
            raise InputError(
                f"z_start and z_end must both have shape (n_planes,), got {z1.shape} and {z2.shape}"
            )
        return xy1, xy2, z1, z2

    @staticmethod
    def _steep(
        xy1: np.ndarray, xy2: np.ndarray, z1: np.ndarray, z2: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``(plane, pair)`` indices of the LORs whose principal axis is z (the per-LOR walk's
        float32 test ``|dz| > max(|dx|, |dy|)``), or None when there are none."""
        if z1.size == 0 or xy1.shape[0] == 0:
            return None
        amax = np.abs(xy2 - xy1).max(axis=1)  # float32, as in the kernels
        adz = np.abs(z2 - z1)
        if not adz.max() > amax.min():
            return None
        planes = np.flatnonzero(adz > amax.min())
        mask = adz[planes, None] > amax[None, :]
        p, pair = np.nonzero(mask)
        if p.size == 0:
            return None
        return planes[p], pair

    @staticmethod
    def _endpoints(
        steep: tuple[np.ndarray, np.ndarray],
        xy1: np.ndarray,
        xy2: np.ndarray,
        z1: np.ndarray,
        z2: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        plane, pair = steep
        xs = np.empty((plane.size, 3), np.float32)
        xe = np.empty((plane.size, 3), np.float32)
        xs[:, :2], xs[:, 2] = xy1[pair], z1[plane]
        xe[:, :2], xe[:, 2] = xy2[pair], z2[plane]
        return xs, xe
