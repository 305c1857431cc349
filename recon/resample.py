"""Sampling an array at the voxel centres of an image grid, in world coordinates.

This is recon's one grid-to-grid resampler: mu-maps put on the reconstruction grid, CT stacks (in
any orientation, with uneven slice spacing), VOI masks and images carried by a rigid transform,
and NIfTI masks drawn on another grid all go through :func:`sample_on_grid`.

Rules
    Each voxel centre of the target grid, a world point ``(x, y, z)`` in mm (DESIGN.md §3, LPS),
    is mapped by a 4×4 affine to a fractional index of the source array (its axes in the
    array's own order). Then, by ``order``:

    - ``1`` (trilinear) and ``2``–``5`` (splines): :func:`scipy.ndimage.map_coordinates` with
      ``mode="constant"``: points inside the box spanned by the source's outermost voxel
      *centres* are interpolated, points outside it are 0. A point within ``1e-6`` voxel of
      that box counts as on it, so the rounding of the index arithmetic never blanks an edge
      voxel that lies exactly on a source voxel centre.
    - ``0`` (nearest): a point takes the value of the source voxel that *contains* it (the
      index rounded half up, ``⌊i + ½⌋``), and 0 (or ``False``) outside every source voxel,
      that is beyond half a voxel past the outermost centres.

    A stack whose first axis is unevenly spaced (a CT series with a missing slice) gives the
    position of each of its planes (``axis0_positions_mm``); the affine's first row then gives
    a position in mm along that axis, which becomes a fractional plane index by linear
    interpolation between the listed positions; points beyond the first or last plane are
    outside.

This module belongs to the core layer (DESIGN.md §2): it imports only numpy, scipy and
:mod:`recon.grid`/:mod:`recon.errors`, so io and quant may both use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import map_coordinates

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid

__all__ = ["grid_world_to_index", "resample", "sample_on_grid"]

#: Indices this close (in voxels) outside the box of source voxel centres are taken as on it.
_EDGE_TOL_VOXELS = 1e-6
#: Target voxels whose index coordinates are computed at once (bounds the temporary memory to
#: about 130 MB of float64 coordinates).
_SLAB_VOXELS = 4_000_000
_MAX_ORDER = 5


def grid_world_to_index(grid: ImageGrid) -> np.ndarray:
    """The affine taking world points to fractional indices of ``grid``.

    Parameters
    ----------
    grid : ImageGrid
        The grid whose array is indexed.

    Returns
    -------
    float64 ndarray of shape (4, 4)
        ``M`` with ``M @ (x, y, z, 1) = (k, j, i, 1)``: world mm (LPS) to fractional
        ``(z, y, x)`` array indices, as :meth:`ImageGrid.world_to_index`.
    """
    step = np.asarray(grid.voxel_size_mm, dtype=np.float64)  # (z, y, x)
    origin = np.asarray(grid.origin, dtype=np.float64)
    m = np.zeros((4, 4))
    for row in range(3):  # index row: z, y, x; world column: x, y, z
        m[row, 2 - row] = 1.0 / step[row]
        m[row, 3] = -origin[row] / step[row]
    m[3, 3] = 1.0
    return m


def resample(
    values: Any,
    source: ImageGrid,
    target: ImageGrid,
    *,
    transform: Any = None,
    order: int = 1,
) -> np.ndarray:
    """Values on ``source`` sampled at the voxel centres of ``target`` (module docstring).

    Parameters
    ----------
    values : array-like of shape ``source.shape`` (z, y, x)
        The source array (numpy; a CuPy array is copied to the host).
    source, target : ImageGrid
        Where the source voxels are, and the grid to sample on.
    transform : array-like of shape (4, 4), optional
        Affine on homogeneous world ``(x, y, z, 1)`` in mm taking a point of ``target``'s frame
        to the same point in ``source``'s frame (``p_source = T · p_target``). None: one world
        frame.
    order : int
        0 nearest, 1 trilinear (default), 2–5 spline.

    Returns
    -------
    ndarray of shape ``target.shape``
        ``values`` itself when ``transform`` is None and the grids are the same
        (:meth:`ImageGrid.same_as`); otherwise as :func:`sample_on_grid` returns.

    Raises
    ------
    GeometryError
        ``values`` does not have ``source``'s shape, or ``transform`` is not a finite 4×4 matrix.
    InputError
        An unsupported ``order``.
    """
    array = _host_array(values)
    if array.shape != tuple(source.shape):
        raise GeometryError(
            f"the array has shape {array.shape} but its grid has {tuple(source.shape)}"
        )
    if transform is None:
        if source.same_as(target):
            return array
        world_to_index = grid_world_to_index(source)
    else:
        world_to_index = grid_world_to_index(source) @ _affine(transform)
    return sample_on_grid(array, world_to_index, target, order=order)


def sample_on_grid(
    values: Any,
    world_to_index: Any,
    grid: ImageGrid,
    *,
    order: int = 1,
    axis0_positions_mm: Any = None,
) -> np.ndarray:
    """``values`` sampled at every voxel centre of ``grid`` (module docstring).

    Parameters
    ----------
    values : array-like, 3-D
        The source array, indexed in its own axis order.
    world_to_index : array-like of shape (4, 4)
        Affine taking world ``(x, y, z, 1)`` in mm to fractional source indices
        ``(i0, i1, i2, 1)``; with ``axis0_positions_mm`` its first row gives a position in mm
        along the first axis instead of an index.
    grid : ImageGrid
        The grid to sample on.
    order : int
        0 nearest, 1 trilinear (default), 2–5 spline.
    axis0_positions_mm : array-like of shape (values.shape[0],), optional
        Strictly increasing positions in mm of the source's planes along its first axis (at
        least two), for unevenly spaced stacks.

    Returns
    -------
    ndarray of shape ``grid.shape`` (z, y, x)
        Order 0 keeps the dtype of ``values`` (0 or ``False`` outside). Interpolation gives
        float32 for float32 input and float64 otherwise (0 outside).

    Raises
    ------
    GeometryError
        A source that is not 3-D or is empty, a matrix that is not a finite 4×4, or plane
        positions that do not match the array or do not increase.
    InputError
        An unsupported ``order``.
    """
    array = _host_array(values)
    if array.ndim != 3 or array.size == 0:
        raise GeometryError(f"the source array must be 3-D and not empty, got shape {array.shape}")
    matrix = _affine(world_to_index)
    if isinstance(order, bool) or int(order) != order or not 0 <= int(order) <= _MAX_ORDER:
        raise InputError(
            f"interpolation order must be 0 (nearest), 1 (trilinear) or a spline order up to "
            f"{_MAX_ORDER}, got {order!r}"
        )
    order = int(order)
    positions = None if axis0_positions_mm is None else _positions(axis0_positions_mm, array)
    if order == 0:
        out = np.zeros(grid.shape, dtype=array.dtype)
    else:
        if array.dtype not in (np.float32, np.float64):
            array = array.astype(np.float64)
        out = np.zeros(grid.shape, dtype=array.dtype)
    nz, ny, nx = grid.shape
    slab = max(1, _SLAB_VOXELS // (ny * nx))
    yy, xx = np.meshgrid(grid.axis_mm(1), grid.axis_mm(2), indexing="ij")
    z_mm = grid.axis_mm(0)
    for start in range(0, nz, slab):
        zs = z_mm[start : start + slab]
        points = np.empty((zs.size, ny, nx, 3))
        points[..., 0] = xx
        points[..., 1] = yy
        points[..., 2] = zs[:, None, None]
        index = points @ matrix[:3, :3].T + matrix[:3, 3]
        if positions is not None:
            index[..., 0] = _plane_index(index[..., 0], positions)
        coords = np.moveaxis(index, -1, 0)
        if order == 0:
            out[start : start + zs.size] = _nearest(array, coords)
        else:
            _snap_to_edges(coords, array.shape)
            out[start : start + zs.size] = map_coordinates(
                array, coords, order=order, mode="constant", cval=0.0, prefilter=order > 1
            )
    return out


def _host_array(values: Any) -> np.ndarray:
    if not isinstance(values, np.ndarray) and hasattr(values, "get"):
        values = values.get()  # CuPy -> host
    return np.asarray(values)


def _affine(matrix: Any) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise GeometryError(f"an affine must be a finite 4×4 matrix, got shape {m.shape}")
    return m


def _positions(axis0_positions_mm: Any, array: np.ndarray) -> np.ndarray:
    positions = np.asarray(axis0_positions_mm, dtype=np.float64)
    if positions.shape != (array.shape[0],) or not np.all(np.isfinite(positions)):
        raise GeometryError(
            f"axis0_positions_mm needs one finite position per plane ({array.shape[0]}), got "
            f"shape {positions.shape}"
        )
    if positions.size < 2 or np.any(np.diff(positions) <= 0):
        raise GeometryError("axis0_positions_mm must hold at least two, strictly increasing")
    return positions


def _plane_index(along_mm: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Fractional plane index of positions along an unevenly spaced axis; outside: far out."""
    n = positions.size
    tol = _EDGE_TOL_VOXELS * float(np.min(np.diff(positions)))
    along = np.where(
        (along_mm < positions[0]) & (along_mm >= positions[0] - tol), positions[0], along_mm
    )
    along = np.where((along > positions[-1]) & (along <= positions[-1] + tol), positions[-1], along)
    # Outside the stack: an index more than a voxel outside, which is 0 for every order.
    return np.interp(along, positions, np.arange(n, dtype=np.float64), left=-2.0, right=n + 1.0)


def _snap_to_edges(coords: np.ndarray, shape: tuple[int, ...]) -> None:
    """Move indices within the edge tolerance outside ``[0, n − 1]`` onto the edge, in place."""
    for axis, n in enumerate(shape):
        c = coords[axis]
        c[(c < 0.0) & (c >= -_EDGE_TOL_VOXELS)] = 0.0
        c[(c > n - 1) & (c <= n - 1 + _EDGE_TOL_VOXELS)] = n - 1


def _nearest(array: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """The value of the voxel containing each point; 0 where none does."""
    index = np.floor(coords + 0.5)
    inside = np.ones(coords.shape[1:], dtype=bool)
    for axis, n in enumerate(array.shape):
        inside &= (index[axis] >= 0) & (index[axis] <= n - 1)
    out = np.zeros(coords.shape[1:], dtype=array.dtype)
    i, j, k = (index[axis][inside].astype(np.int64) for axis in range(3))
    out[inside] = array[i, j, k]
    return out
