"""recon.resample: one world-coordinate resampler for every grid-to-grid move.

Each expectation is computed from the geometry alone: a world point that is a voxel centre of
both grids keeps its value, trilinear interpolation reproduces any linear function exactly
inside the source's voxel centres, nearest takes the voxel containing the point.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import recon.resample
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.resample import grid_world_to_index, resample, sample_on_grid

SOURCE = ImageGrid(shape=(9, 11, 13), voxel_size=(3.0, 2.0, 2.5), origin=(-12.0, -10.0, -15.0))


def _linear(points_xyz: np.ndarray) -> np.ndarray:
    """A linear function of world position: trilinear interpolation reproduces it exactly."""
    return 0.7 * points_xyz[..., 0] - 1.3 * points_xyz[..., 1] + 0.4 * points_xyz[..., 2] + 5.0


def _centres_xyz(grid: ImageGrid) -> np.ndarray:
    z, y, x = grid.meshgrid_mm()
    return np.stack([x, y, z], axis=-1)


def _inside_hull(grid: ImageGrid, points_xyz: np.ndarray, margin: float = 0.0) -> np.ndarray:
    index = grid.world_to_index(points_xyz)
    upper = np.asarray(grid.shape) - 1
    return np.all((index >= -margin) & (index <= upper + margin), axis=-1)


def _rotation_z(degrees: float, shift_xyz: tuple[float, float, float]) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    t = np.eye(4)
    t[:2, :2] = [[c, -s], [s, c]]
    t[:3, 3] = shift_xyz
    return t


def test_world_to_index_matches_the_grid():
    points = np.random.default_rng(0).uniform(-30.0, 30.0, (50, 3))
    homogeneous = np.c_[points, np.ones(len(points))]
    got = homogeneous @ grid_world_to_index(SOURCE).T
    np.testing.assert_allclose(got[:, :3], SOURCE.world_to_index(points), atol=1e-12)
    np.testing.assert_array_equal(got[:, 3], 1.0)


def test_identity_grids_return_the_array():
    values = np.random.default_rng(1).uniform(size=SOURCE.shape).astype(np.float32)
    assert resample(values, SOURCE, SOURCE) is values
    same = ImageGrid(SOURCE.shape, SOURCE.voxel_size_mm, origin=SOURCE.origin)
    assert resample(values, SOURCE, same, order=0) is values
    # An identity transform is still a transform: sampled, but every centre is on a centre.
    np.testing.assert_array_equal(resample(values, SOURCE, SOURCE, transform=np.eye(4)), values)


@pytest.mark.parametrize("order", [0, 1])
def test_a_point_lands_in_the_same_world_place(order):
    # One hot voxel; the target grid is finer and shifted, with a voxel centre on the hot one.
    values = np.zeros(SOURCE.shape, dtype=np.float32)
    hot = (4, 6, 3)
    values[hot] = 10.0
    hot_xyz = SOURCE.index_to_world(np.asarray(hot, dtype=float))
    step = np.array([1.5, 1.0, 1.25])
    target = ImageGrid((30, 24, 20), tuple(step), origin=tuple(hot_xyz[::-1] - (12, 9, 7) * step))
    out = resample(values, SOURCE, target, order=order)
    assert out[12, 9, 7] == pytest.approx(10.0)
    offset = np.abs(_centres_xyz(target) - hot_xyz)  # (x, y, z) mm from the hot voxel's centre
    if order == 0:  # exactly the target centres inside the hot voxel (half-open: ⌊i + ½⌋)
        half = np.asarray(SOURCE.voxel_size_mm[::-1]) / 2.0
        d = _centres_xyz(target) - hot_xyz
        in_voxel = np.all((d >= -half - 1e-9) & (d < half - 1e-9), axis=-1)
        np.testing.assert_array_equal(out > 0, in_voxel)
    else:  # the value falls off linearly to 0 one source voxel away along each axis
        weight = np.prod(np.clip(1.0 - offset / SOURCE.voxel_size_mm[::-1], 0.0, None), axis=-1)
        np.testing.assert_allclose(out, 10.0 * weight, atol=1e-5)


def test_a_rigid_transform_moves_points_where_it_says():
    # p_source = T · p_target: the target voxel centre q shows the source value at T·q.
    transform = _rotation_z(90.0, (4.0, -6.0, 3.0))
    values = _linear(_centres_xyz(SOURCE))
    target = ImageGrid((12, 14, 14), 2.0, origin=(-10.0, -13.0, -13.0))
    out = resample(values, SOURCE, target, transform=transform)
    q = _centres_xyz(target)
    p = q @ transform[:3, :3].T + transform[:3, 3]
    inside = _inside_hull(SOURCE, p)
    assert inside.sum() > 500 and (~inside).sum() > 100
    np.testing.assert_allclose(out[inside], _linear(p[inside]), rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(out[~_inside_hull(SOURCE, p, margin=1e-6)], 0.0)


def test_trilinear_is_exact_for_linear_functions_and_zero_outside():
    values = _linear(_centres_xyz(SOURCE))
    target = ImageGrid((20, 20, 20), (1.7, 1.3, 1.9), origin=(-20.0, -15.0, -20.0))
    out = resample(values, SOURCE, target)
    points = _centres_xyz(target)
    inside = _inside_hull(SOURCE, points)
    assert inside.any() and (~inside).any()
    np.testing.assert_allclose(out[inside], _linear(points[inside]), rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(out[~inside], 0.0)
    assert out.dtype == np.float64
    assert resample(values.astype(np.float32), SOURCE, target).dtype == np.float32


def test_a_block_of_the_source_comes_back_exactly_with_its_edges():
    # Target voxel centres on source centres, the last plane on the source's last plane: index
    # arithmetic may land a hair outside, which must not blank the edge.
    source = ImageGrid((7, 9, 11), (0.1, 0.3, 0.7), origin=(-70.1, -118.3, -117.7))
    values = np.random.default_rng(2).uniform(1.0, 2.0, source.shape)
    first = np.asarray(source.origin) + np.asarray(source.voxel_size_mm) * (3, 4, 5)
    block = ImageGrid((4, 5, 6), source.voxel_size_mm, origin=tuple(first))
    last_x = grid_world_to_index(source) @ [block.axis_mm(2)[-1], 0.0, 0.0, 1.0]
    assert last_x[2] > source.shape[2] - 1  # rounding puts the last column a hair outside
    for order in (0, 1):
        np.testing.assert_allclose(
            resample(values, source, block, order=order), values[3:, 4:, 5:], rtol=1e-12
        )


def test_nearest_takes_the_voxel_that_contains_the_point():
    source = ImageGrid((1, 1, 4), 2.0, origin=(0.0, 0.0, 0.0))  # x centres 0, 2, 4, 6 mm
    values = np.array([[[1, 2, 3, 4]]], dtype=np.int16)
    # x from −1.4 to 7.4 mm: −1.4 and 7.4 lie outside every voxel (edges at −1 and 7 mm).
    target = ImageGrid((1, 1, 12), 0.8, origin=(0.0, 0.0, -1.4))
    out = resample(values, source, target, order=0)
    x = target.axis_mm(2)
    expected = np.where((x >= -1.0) & (x < 7.0), np.floor(x / 2.0 + 0.5) + 1, 0)
    np.testing.assert_array_equal(out[0, 0], expected)
    assert out.dtype == np.int16
    mask = resample(values > 2, source, target, order=0)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask[0, 0], expected > 2)


def test_unevenly_spaced_planes():
    # A stack along x with a missing plane: positions 0, 2, 4, 8, 10 mm.
    positions = np.array([0.0, 2.0, 4.0, 8.0, 10.0])
    values = np.broadcast_to((3.0 * positions + 1.0)[:, None, None], (5, 2, 2)).copy()
    world_to_stack = np.array(
        [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.5], [0.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 1.0]]
    )  # (position along x in mm, y index, z index)
    target = ImageGrid((1, 1, 15), 1.0, origin=(0.0, 0.0, -2.0))  # x from −2 to 12 mm
    out = sample_on_grid(values, world_to_stack, target, axis0_positions_mm=positions)[0, 0]
    x = target.axis_mm(2)
    inside = (x >= 0.0) & (x <= 10.0)
    np.testing.assert_allclose(out[inside], 3.0 * x[inside] + 1.0, rtol=1e-12)
    np.testing.assert_array_equal(out[~inside], 0.0)


def test_large_grids_are_sampled_in_slabs(monkeypatch):
    values = _linear(_centres_xyz(SOURCE))
    target = ImageGrid((10, 12, 12), 2.2, origin=(-10.0, -10.0, -12.0))
    whole = resample(values, SOURCE, target)
    monkeypatch.setattr(recon.resample, "_SLAB_VOXELS", 100)  # one plane at a time
    np.testing.assert_array_equal(resample(values, SOURCE, target), whole)


def test_bad_input():
    values = np.zeros(SOURCE.shape)
    with pytest.raises(GeometryError, match="shape"):
        resample(np.zeros((2, 2, 2)), SOURCE, SOURCE, transform=np.eye(4))
    with pytest.raises(GeometryError, match="4×4"):
        resample(values, SOURCE, SOURCE, transform=np.eye(3))
    with pytest.raises(GeometryError, match="4×4"):
        sample_on_grid(values, np.full((4, 4), np.nan), SOURCE)
    for order in (-1, 6, 1.5, True):
        with pytest.raises(InputError, match="order"):
            resample(values, SOURCE, SOURCE, transform=np.eye(4), order=order)
    with pytest.raises(GeometryError, match="3-D"):
        sample_on_grid(np.zeros((3, 3)), np.eye(4), SOURCE)
    for positions in (np.arange(4.0), np.r_[np.arange(8.0), 7.0], np.r_[np.arange(8.0), np.nan]):
        with pytest.raises(GeometryError, match="axis0_positions_mm"):
            sample_on_grid(values, np.eye(4), SOURCE, axis0_positions_mm=positions)


def test_the_resampler_is_core():
    # Core layer (DESIGN.md §2): io and quant use it, so it must not import them (or anything
    # above the core).
    tree = ast.parse(Path(recon.resample.__file__).read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    recon_modules = {m for m in imported if m.split(".")[0] == "recon"}
    assert recon_modules <= {"recon.errors", "recon.grid"}, recon_modules
