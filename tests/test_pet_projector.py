"""Physics of the PET LOR projector: adjointness, analytic line integrals, TOF weights, CPU (numba)
== CUDA source (via the CPU compat header) == GPU, chunking and bad input.

Conventions under test are those of DESIGN.md §3: LOR endpoints are world (x, y, z) mm, images
(z, y, x); projections are line integrals in mm; TOF bins are signed, bin 0 centred on the LOR
midpoint and positive bins towards xend. Every tolerance is stated next to its assert.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

from recon import ImageGrid
from recon.errors import GeometryError, InputError, KernelError
from recon.pet import _cpu
from recon.pet.projector import LorProjector
from recon.pet.tof import Tof
from recon.simulate.phantoms import uniform_cylinder
from tests.cuda_compat.build import gxx_available

ROOT = Path(__file__).resolve().parents[1]

# Anisotropic voxels and an off-centre origin catch axis mix-ups. Every voxel centre coordinate is
# a multiple of 0.25 mm, exact in float32.
GRID = ImageGrid(shape=(24, 32, 28), voxel_size=(2.5, 2.0, 1.75), origin=(-27.5, -33.0, -22.75))
# σ = 19.1 mm, w = 15.0 mm; bins cover ±232 mm of the LOR.
TOF = Tof(fwhm_ps=300.0, n_bins=31, bin_width_ps=100.0)
MODES = ["nontof", "sino", "lm"]


# ------------------------------------------------------------------------------------ helpers
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)))


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _extent(grid: ImageGrid) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-size (x, y, z) in mm of the image box (voxel edges)."""
    centre = np.asarray(grid.centre_mm[::-1])
    half = np.asarray(grid.shape[::-1]) * np.asarray(grid.voxel_size_mm[::-1]) / 2.0
    return centre, half


def _centres(grid: ImageGrid, axis_xyz: int) -> np.ndarray:
    """Voxel-centre coordinates along world axis 0 = x, 1 = y, 2 = z."""
    return grid.axis_mm(2 - axis_xyz)


def _lor_set(grid: ImageGrid, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """About 10^4 LORs of every kind the kernels must handle, as float32 (n, 3) pairs."""
    rng = np.random.default_rng(seed)
    centre, half = _extent(grid)
    radius = 1.5 * float(np.linalg.norm(half))
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # Oblique: both endpoints uniform on a sphere around the image (a few miss it).
    n = 7000
    sets["oblique"] = (
        centre + radius * _unit(rng.normal(size=(n, 3))),
        centre + radius * _unit(rng.normal(size=(n, 3))),
    )
    # Parallel to each axis, through random points and through voxel centres, both directions.
    for axis in range(3):
        m = 400
        p = centre + rng.uniform(-1.1, 1.1, (m, 3)) * half  # ~20 % pass beside the image
        for other in {0, 1, 2} - {axis}:
            c = _centres(grid, other)
            snap = rng.random(m) < 0.5
            p[snap, other] = c[rng.integers(0, c.size, snap.sum())]
        xs, xe = p.copy(), p.copy()
        sign = np.where(rng.random(m) < 0.5, 1.0, -1.0)
        xs[:, axis] = centre[axis] - sign * radius
        xe[:, axis] = centre[axis] + sign * radius
        sets[f"along-{'xyz'[axis]}"] = (xs, xe)
    # Exact ties between the largest direction components (|dx| = |dy|, |dx| = |dz|, all three).
    dirs = np.array([[1, 1, 0], [1, -1, 0], [1, 0, 1], [0, 1, -1], [1, 1, 1], [-1, 1, 1]], float)
    m = 300
    p = centre + rng.uniform(-0.8, 0.8, (m, 3)) * half
    d = dirs[rng.integers(0, len(dirs), m)] * 100.0
    sets["ties"] = (np.round(p - d), np.round(p + d))  # integers: the tie survives float32
    # Missing the image: lines beside the box, parallel or oblique.
    m = 300
    # 10 mm beyond the box's circumscribed sphere, more than the bilinear footprint (1 voxel).
    offset = _unit(rng.normal(size=(m, 3))) * (np.linalg.norm(half) + 10.0)
    u = _unit(np.cross(offset, rng.normal(size=(m, 3))))  # perpendicular to the offset
    sets["missing"] = (centre + offset - radius * u, centre + offset + radius * u)
    # Endpoints inside the image (short segments) and degenerate LORs (xstart == xend).
    m = 300
    a = centre + rng.uniform(-1, 1, (m, 3)) * half
    b = centre + rng.uniform(-1, 1, (m, 3)) * half
    sets["inside"] = (a, b)
    pts = centre + rng.uniform(-1.5, 1.5, (50, 3)) * half
    sets["degenerate"] = (pts, pts.copy())
    return {k: (v[0].astype(np.float32), v[1].astype(np.float32)) for k, v in sets.items()}


def _all_lors(grid: ImageGrid = GRID, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    sets = _lor_set(grid, seed)
    return (
        np.concatenate([s[0] for s in sets.values()]),
        np.concatenate([s[1] for s in sets.values()]),
    )


def _projector(mode: str, device: object = "cpu", **kwargs: object) -> LorProjector:
    return LorProjector(GRID, tof=None if mode == "nontof" else TOF, device=device, **kwargs)


def _bins(mode: str, n: int, seed: int = 3) -> np.ndarray | None:
    if mode != "lm":
        return None
    rng = np.random.default_rng(seed)
    return rng.integers(-TOF.max_bin, TOF.max_bin + 1, n).astype(np.int16)


def _values_shape(mode: str, n: int) -> tuple[int, ...]:
    return (n, TOF.n_bins) if mode == "sino" else (n,)


def _sphere(grid: ImageGrid, centre_xyz: tuple, radius: float, supersample: int = 4) -> np.ndarray:
    """Fraction of each voxel inside a sphere, from supersample³ sub-samples per voxel."""
    off = [((np.arange(supersample) + 0.5) / supersample - 0.5) * v for v in grid.voxel_size_mm]
    z = (grid.axis_mm(0)[:, None] + off[0]).ravel() - centre_xyz[2]
    y = (grid.axis_mm(1)[:, None] + off[1]).ravel() - centre_xyz[1]
    x = (grid.axis_mm(2)[:, None] + off[2]).ravel() - centre_xyz[0]
    inside = (z[:, None, None] ** 2 + y[None, :, None] ** 2 + x[None, None, :] ** 2) <= radius**2
    nz, ny, nx = grid.shape
    s = supersample
    return inside.reshape(nz, s, ny, s, nx, s).mean(axis=(1, 3, 5)).astype(np.float32)


def _tof_profile(s: float, tof: Tof) -> np.ndarray:
    """Closed-form TOF weights of all bins for a sample at s (no truncation)."""
    b = np.arange(-tof.max_bin, tof.max_bin + 1)
    w, k = tof.bin_width_mm, 1.0 / (math.sqrt(2.0) * tof.sigma_mm)
    return 0.5 * (erf(((b + 0.5) * w - s) * k) - erf(((b - 0.5) * w - s) * k))


# ------------------------------------------------------------------------------- adjointness
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunk_lors", [2**20, 1999], ids=["one-chunk", "chunked"])
def test_forward_back_are_adjoint(mode, chunk_lors, backend, to_numpy):
    proj = _projector(mode, backend, chunk_lors=chunk_lors)
    xs, xe = _all_lors()
    n = xs.shape[0]
    assert 9000 < n < 11000
    bins = _bins(mode, n)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 1.0, GRID.shape).astype(np.float32)
    y = rng.uniform(0.0, 1.0, _values_shape(mode, n)).astype(np.float32)
    px = to_numpy(proj.forward(x, xs, xe, bins))
    pty = to_numpy(proj.back(y, xs, xe, bins))
    assert px.shape == _values_shape(mode, n) and px.dtype == np.float32
    assert pty.shape == GRID.shape and pty.dtype == np.float32
    lhs, rhs = _dot(px, y), _dot(x, pty)
    assert lhs > 0
    assert abs(lhs - rhs) / abs(lhs) < 1e-4  # float32 sums of ~10^6 terms: ~1e-7 seen


@pytest.mark.parametrize("mode", MODES)
def test_each_kind_of_lor_is_adjoint(mode):
    # Per group, so that a wrong transpose in a rare branch (ties, endpoints inside the image)
    # is not averaged away by the oblique majority.
    proj = _projector(mode)
    rng = np.random.default_rng(2)
    x = rng.uniform(0.0, 1.0, GRID.shape).astype(np.float32)
    for name, (xs, xe) in _lor_set(GRID).items():
        n = xs.shape[0]
        bins = _bins(mode, n)
        y = rng.uniform(0.0, 1.0, _values_shape(mode, n)).astype(np.float32)
        px, pty = proj.forward(x, xs, xe, bins), proj.back(y, xs, xe, bins)
        lhs, rhs = _dot(px, y), _dot(x, pty)
        if name in ("missing", "degenerate"):
            assert lhs == 0.0 and rhs == 0.0, name  # exactly nothing, both ways
        else:
            assert lhs > 0, name
            assert abs(lhs - rhs) / lhs < 1e-4, name


# ------------------------------------------------------------------------- exact line sums
@pytest.mark.parametrize("axis", [0, 1, 2], ids=["x", "y", "z"])
def test_lors_along_voxel_rows_sum_the_row(axis):
    # Through voxel centres, Joseph's samples fall on voxel centres: the projection is the row
    # sum times the voxel size along the row, whatever the direction of travel.
    rng = np.random.default_rng(4)
    x = rng.uniform(0.0, 1.0, GRID.shape).astype(np.float32)
    proj = LorProjector(GRID, device="cpu")
    others = [a for a in range(3) if a != axis]
    i1 = rng.integers(0, GRID.shape[2 - others[0]], 40)
    i2 = rng.integers(0, GRID.shape[2 - others[1]], 40)
    centre, half = _extent(GRID)
    xs = np.empty((40, 3))
    xs[:, others[0]] = _centres(GRID, others[0])[i1]
    xs[:, others[1]] = _centres(GRID, others[1])[i2]
    xe = xs.copy()
    xs[:, axis] = centre[axis] - half[axis] - 7.0
    xe[:, axis] = centre[axis] + half[axis] + 7.0
    index = [slice(None)] * 3  # (z, y, x) index of each row
    expected = np.empty(40)
    for m in range(40):
        index[2 - others[0]], index[2 - others[1]] = i1[m], i2[m]
        index[2 - axis] = slice(None)
        expected[m] = x[tuple(index)].sum(dtype=np.float64) * GRID.voxel_size_mm[2 - axis]
    for a, b in ((xs, xe), (xe, xs)):
        got = proj.forward(x, a.astype(np.float32), b.astype(np.float32))
        np.testing.assert_allclose(got, expected, rtol=1e-5)  # float32 sums of ≤ 32 terms


def test_segment_inside_an_image_of_ones_has_its_length():
    # Only planes crossed between the endpoints count: from one voxel edge to another, along a
    # row or obliquely in a plane of voxel centres, the result is the segment length.
    proj = LorProjector(GRID, device="cpu")
    ones = np.ones(GRID.shape, np.float32)
    xc, yc, zc = (_centres(GRID, a) for a in range(3))
    dx, dy = GRID.voxel_size_mm[2], GRID.voxel_size_mm[1]
    xs = np.array(
        [
            [xc[3] - dx / 2, yc[5], zc[7]],  # along x, 20 voxels
            [xc[9], yc[2] - dy / 2, zc[1]],  # along y, 25 voxels
            [xc[4] - dx / 2, yc[10], zc[12]],  # in a z plane, |Δy| < |Δx|: x principal
        ]
    )
    xe = np.array(
        [
            [xc[22] + dx / 2, yc[5], zc[7]],
            [xc[9], yc[26] + dy / 2, zc[1]],
            [xc[20] + dx / 2, yc[16], zc[12]],
        ]
    )
    got = proj.forward(ones, xs.astype(np.float32), xe.astype(np.float32))
    length = np.linalg.norm(xe - xs, axis=1)
    # The oblique one samples y between voxel centres, still inside the ones: exact too.
    np.testing.assert_allclose(got, length, rtol=1e-5)


def _check_chords(got: np.ndarray, chord: np.ndarray, voxel: float) -> None:
    """Joseph samples a voxelised object once per plane, bilinearly in-plane: each edge is off by
    a fraction of a voxel (partial volume, sampling phase), with a small negative bias where the
    boundary curves. Seen over 2000 LORs at 2 mm and 1 mm voxels (v): max 0.46 v, rms 0.11 v,
    mean −0.065 v (sphere); in mm all shrink with v. Allowed: 0.6 v, 0.15 v, 0.1 v."""
    err = got.astype(np.float64) - chord
    assert np.abs(err).max() <= 0.6 * voxel
    assert np.sqrt(np.mean(err**2)) <= 0.15 * voxel
    assert abs(err.mean()) <= 0.1 * voxel


SIZES = [pytest.param(2.0, 32, id="2mm"), pytest.param(1.0, 64, id="1mm")]


@pytest.mark.parametrize(("voxel", "size"), SIZES)
def test_uniform_sphere_chords(voxel, size):
    grid = ImageGrid(shape=(size,) * 3, voxel_size=voxel)
    centre, radius = np.array([1.3, -0.7, 0.4]), 24.0
    image = _sphere(grid, tuple(centre), radius, supersample=4)
    rng = np.random.default_rng(5)
    n = 500
    u = _unit(rng.normal(size=(n, 3)))
    offset = _unit(np.cross(u, rng.normal(size=(n, 3))))  # perpendicular to u
    d = radius * np.sqrt(rng.uniform(0.0, 0.8**2, n))  # impact parameter up to 0.8 r
    mid = centre + offset * d[:, None]
    xs, xe = (mid - 150.0 * u).astype(np.float32), (mid + 150.0 * u).astype(np.float32)
    got = LorProjector(grid, device="cpu").forward(image, xs, xe)
    _check_chords(got, 2.0 * np.sqrt(radius**2 - d**2), voxel)  # chords ≥ 28.8 mm


@pytest.mark.parametrize(("voxel", "size"), SIZES)
def test_uniform_cylinder_chords(voxel, size):
    grid = ImageGrid(shape=(size,) * 3, voxel_size=voxel)
    r, length = 24.0, 50.0
    image = uniform_cylinder(grid, r, length, supersample=8)
    rng = np.random.default_rng(6)
    n = 500
    # Lines whose transverse projection passes at distance d from the axis, with polar angle θ
    # from the axis; they cross the curved wall at z0 ± (half chord) / tan θ, kept inside
    # |z| ≤ length/2 − 3 mm, so the chord is 2 √(r² − d²) / sin θ.
    phi = rng.uniform(0.0, 2 * np.pi, n)
    transverse = rng.random(n) < 0.5  # half with z fixed, half oblique
    theta = np.where(transverse, np.pi / 2, np.deg2rad(rng.uniform(50.0, 130.0, n)))
    d = r * np.sqrt(rng.uniform(0.0, 0.8**2, n))
    half_chord = np.sqrt(r**2 - d**2)
    z_reach = half_chord * np.abs(np.cos(theta)) / np.sin(theta)
    z0 = rng.uniform(-1.0, 1.0, n) * np.maximum(length / 2 - 3.0 - z_reach, 0.0)
    assert np.all(np.abs(z0) + z_reach <= length / 2 - 3.0 + 1e-9)
    u = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], 1)
    perp = np.stack([-np.sin(phi), np.cos(phi), np.zeros(n)], 1)
    mid = perp * d[:, None] + np.stack([np.zeros(n), np.zeros(n), z0], 1)
    xs, xe = (mid - 150.0 * u).astype(np.float32), (mid + 150.0 * u).astype(np.float32)
    got = LorProjector(grid, device="cpu").forward(image, xs, xe)
    _check_chords(got, 2.0 * half_chord / np.sin(theta), voxel)


# -------------------------------------------------------------------------------------- TOF
@pytest.mark.parametrize("n_sigmas", [3.0, 6.0])
def test_tof_bins_sum_to_the_non_tof_projection(n_sigmas):
    # Per sample the included bins cover at least [s − nσ, s + nσ] (every point within nσ of s lies
    # in a bin whose centre is within nσ + w/2), so the TOF weights sum to between
    # erf(n/√2) = 1 − erfc(n/√2) and 1 whenever the bins cover the LOR: a relative deficit of at
    # most erfc(3/√2) = 2.7e-3 at 3σ and 2.0e-9 at 6σ. Bins reach ±232 mm; here |s| ≤ 50 mm (the
    # image's half-diagonal) + 5 mm (midpoint jitter), and 50 + 5 + 6σ = 170 mm.
    rng = np.random.default_rng(7)
    centre, half = _extent(GRID)
    n = 2000
    u = _unit(rng.normal(size=(n, 3)))
    mid = centre + rng.uniform(-3.0, 3.0, (n, 3))
    xs, xe = (mid - 300.0 * u).astype(np.float32), (mid + 300.0 * u).astype(np.float32)
    s_max = float(np.linalg.norm(half)) + 3.0 * math.sqrt(3.0)
    assert s_max + 6 * TOF.sigma_mm < (TOF.max_bin + 0.5) * TOF.bin_width_mm
    x = rng.uniform(0.5, 1.0, GRID.shape).astype(np.float32)
    nontof = LorProjector(GRID, device="cpu").forward(x, xs, xe)
    tof = LorProjector(GRID, tof=TOF, n_sigmas=n_sigmas, device="cpu").forward(x, xs, xe)
    hit = nontof > 1.0
    assert hit.sum() > 0.9 * n
    ratio = tof.sum(axis=1, dtype=np.float64)[hit] / nontof[hit]
    deficit = math.erfc(n_sigmas / math.sqrt(2.0))
    assert ratio.max() <= 1.0 + 1e-5  # float32 rounding
    assert ratio.min() >= 1.0 - deficit - 1e-5
    if n_sigmas == 3.0:
        assert ratio.mean() < 1.0 - 1e-4  # the truncation is really there


def test_listmode_equals_the_sinogram_column():
    xs, xe = _all_lors()
    n = xs.shape[0]
    bins = _bins("lm", n)
    col = bins.astype(np.int64) + TOF.max_bin
    rng = np.random.default_rng(8)
    x = rng.uniform(0.0, 1.0, GRID.shape).astype(np.float32)
    proj = LorProjector(GRID, tof=TOF, device="cpu")
    sino = proj.forward(x, xs, xe)
    lm = proj.forward(x, xs, xe, tof_bin=bins)
    # Same weights; the sinogram accumulates in float32 per bin, listmode in float64: ~1e-7.
    np.testing.assert_allclose(lm, sino[np.arange(n), col], rtol=1e-5, atol=1e-5 * lm.max())
    # And back: a one-hot sinogram back-projects like the listmode events.
    v = rng.uniform(0.5, 1.0, n).astype(np.float32)
    one_hot = np.zeros((n, TOF.n_bins), np.float32)
    one_hot[np.arange(n), col] = v
    assert _rel_l2(proj.back(v, xs, xe, tof_bin=bins), proj.back(one_hot, xs, xe)) < 1e-5


@pytest.mark.parametrize("direction", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1), (-1, 1, 0)])
@pytest.mark.parametrize("d_bins", [2.3, -1.4, 0.2, 4.45])
def test_tof_peak_sits_at_the_source(direction, d_bins):
    # A unit point in the voxel at the origin (odd grid, cubic voxels). The LOR passes through it
    # along a direction whose planes all fall on voxel centres, so only the source's plane
    # contributes, with weight voxel·|u|/|u_p|; its midpoint lies d mm *before* the source, so the
    # source is at s = +d and the profile must peak in bin round(d / w) with the closed form.
    grid = ImageGrid(shape=(33, 33, 33), voxel_size=2.0)
    x = np.zeros(grid.shape, np.float32)
    x[16, 16, 16] = 1.0
    u = np.asarray(direction, float)
    step = 2.0 * np.linalg.norm(u) / np.abs(u).max()
    u = _unit(u)
    d = d_bins * TOF.bin_width_mm
    mid = -d * u
    xs, xe = (mid - 200.0 * u)[None].astype(np.float32), (mid + 200.0 * u)[None].astype(np.float32)
    proj = LorProjector(grid, tof=TOF, n_sigmas=8.0, device="cpu")  # 8σ: no visible truncation
    profile = proj.forward(x, xs, xe)[0]
    assert np.argmax(profile) - TOF.max_bin == round(d_bins)
    # float32 endpoints put s within ~1e-4 mm of d: ≤ 1e-5 relative error on the peak.
    np.testing.assert_allclose(profile, step * _tof_profile(d, TOF), rtol=1e-4, atol=1e-6)
    # Reversed LOR: the source now lies at −d.
    reverse = proj.forward(x, xe, xs)[0]
    assert np.argmax(reverse) - TOF.max_bin == -round(d_bins)
    np.testing.assert_allclose(reverse, profile[::-1], rtol=1e-4, atol=1e-6)


def test_listmode_walk_covers_only_the_tof_window():
    # A narrow timing kernel (σ = 6.4 mm, w = 7.5 mm: reach 3σ + w/2 = 22.9 mm) on a 64-plane LOR.
    tof = Tof(fwhm_ps=100.0, n_bins=21, bin_width_ps=50.0)
    reach = 3.0 * tof.sigma_mm + tof.bin_width_mm / 2
    grid = ImageGrid(shape=(8, 8, 64), voxel_size=2.0)
    nz, ny, nx = grid.shape
    z0, y0, x0 = grid.origin
    xs = np.array([[-300.0, 1.0, 1.0]], np.float32)
    xe = np.array([[300.0, 1.0, 1.0]], np.float32)
    pet_grid = _cpu.PetGrid(*np.float32([x0, y0, z0, 2.0, 2.0, 2.0]))
    args = (grid.shape, pet_grid, xs, xe, 0)
    k0, k1 = _cpu._lor_setup(*args, -np.inf, np.inf)[:2]
    assert (k0, k1) == (0, nx - 1)  # non-TOF: every plane
    for b in (-3, 0, 2):
        c = b * tof.bin_width_mm
        k0, k1 = _cpu._lor_setup(*args, c - reach, c + reach)[:2]
        assert k1 - k0 + 1 <= 2 * reach / 2.0 + 3  # the window's planes, plus one at each end
        centre_plane = (c - x0) / 2.0
        assert k0 <= centre_plane - reach / 2.0 + 1e-9 and k1 >= centre_plane + reach / 2.0 - 1e-9


def test_tof_is_normalised_per_sample_for_a_wide_timing_kernel():
    # One plane, at s = −20 mm: bins covering s ± 8σ sum to the non-TOF value, 1 voxel (2 mm).
    grid = ImageGrid(shape=(9, 9, 9), voxel_size=2.0)
    x = np.zeros(grid.shape, np.float32)
    x[4, 4, 4] = 1.0
    tof = Tof(fwhm_ps=300.0, n_bins=41, bin_width_ps=60.0)  # σ = 19.1 mm, bins to ±184 mm
    xs, xe = np.array([[-80.0, 0, 0]], np.float32), np.array([[120.0, 0, 0]], np.float32)
    profile = LorProjector(grid, tof=tof, n_sigmas=8.0, device="cpu").forward(x, xs, xe)
    assert profile.sum() == pytest.approx(2.0, rel=1e-6)


# -------------------------------------------------------------------------- CPU vs CUDA code
def _assert_matches_numba(mode: str, kernels: object, seed: int, chunk_lors: int) -> tuple:
    """Forward and back projections with ``kernels`` equal numba's (relative L2 < 1e-5) on every
    LOR of a small scanner; returns ``(projector, image, xstart, xend)``."""
    xs, xe = _all_lors(seed=seed)
    n = xs.shape[0]
    bins = _bins(mode, n)
    rng = np.random.default_rng(seed + 1)
    x = rng.uniform(0.0, 1.0, GRID.shape).astype(np.float32)
    y = rng.uniform(0.0, 1.0, _values_shape(mode, n)).astype(np.float32)
    cpu = _projector(mode, chunk_lors=chunk_lors)
    other = _projector(mode, chunk_lors=chunk_lors)
    other._kernels = kernels
    assert _rel_l2(other.forward(x, xs, xe, bins), cpu.forward(x, xs, xe, bins)) < 1e-5
    assert _rel_l2(other.back(y, xs, xe, bins), cpu.back(y, xs, xe, bins)) < 1e-5
    return other, x, xs, xe


@pytest.mark.skipif(
    not gxx_available(), reason="g++ not found on PATH: the CUDA-on-CPU compat layer needs it"
)
@pytest.mark.parametrize("mode", MODES)
def test_numba_matches_cuda_source_through_compat_header(mode):
    from tests.cuda_compat.pet_compat import CompatPetKernels

    _assert_matches_numba(mode, CompatPetKernels(), seed=9, chunk_lors=4000)


@pytest.mark.skipif(
    not gxx_available(), reason="g++ not found on PATH: the CUDA-on-CPU compat layer needs it"
)
@pytest.mark.parametrize("mode", MODES)
def test_gpu_launchers_match_the_kernel_signatures(mode, monkeypatch):
    # The CuPy launch wrappers of recon.pet._gpu, run without a GPU: their argument tuples go to
    # the same kernels compiled by g++, each argument checked against the kernel's parameter (every
    # scalar an explicit np.int32 / np.float32, as CuPy would pass a Python int or float as 64
    # bits; PetGrid and PetTof laid out as the structs), and the results must match numba.
    from recon.pet import _gpu
    from tests.cuda_compat import fake_cupy

    launched = []

    def fake_get_kernel(backend: object, source: str, name: str) -> object:
        assert source == "pet.cu"
        kernel = fake_cupy.fake_get_kernel(backend, source, name)

        def launch(grid: tuple, block: tuple, args: tuple) -> None:
            assert grid[0] * block[0] >= args[4], name  # one thread per LOR (n_lors)
            kernel(grid, block, args)
            launched.append(name)

        return launch

    monkeypatch.setattr(_gpu, "get_kernel", fake_get_kernel)
    kernels = _gpu.GpuKernels(fake_cupy.FakeGpuBackend())
    gpu, x, xs, xe = _assert_matches_numba(mode, kernels, seed=14, chunk_lors=6000)
    n = xs.shape[0]
    suffix = {"nontof": "", "sino": "_tof_sino", "lm": "_tof_lm"}[mode]
    assert launched == [f"pet_joseph{suffix}_forward"] * 2 + [f"pet_joseph{suffix}_back"] * 2
    # The launchers refuse what CuPy would silently misread.
    with pytest.raises(KernelError, match="xstart must be float32"):
        gpu._kernels.forward(gpu, x, xs.astype(np.float64), xe, np.empty(n, np.float32))
    with pytest.raises(KernelError, match="image must be C-contiguous"):
        gpu._kernels.forward(gpu, np.asfortranarray(x), xs, xe, np.empty(n, np.float32))
    with pytest.raises(KernelError, match=r"out_values has shape"):
        gpu._kernels.forward(gpu, x, xs, xe, np.empty(n + 1, np.float32))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_gpu_matches_cpu(mode, to_numpy):
    gpu = _projector(mode, "gpu")
    assert gpu.backend.is_gpu
    cpu = _projector(mode, "cpu")
    xs, xe = _all_lors(seed=11)
    n = xs.shape[0]
    bins = _bins(mode, n)
    rng = np.random.default_rng(12)
    x = rng.uniform(0.0, 1.0, GRID.shape).astype(np.float32)
    y = rng.uniform(0.0, 1.0, _values_shape(mode, n)).astype(np.float32)
    # numpy inputs are uploaded per chunk; CuPy inputs are used in place.
    assert _rel_l2(to_numpy(gpu.forward(x, xs, xe, bins)), cpu.forward(x, xs, xe, bins)) < 1e-5
    xp = gpu.xp
    dev = [xp.asarray(a) for a in (y, xs, xe)] + [None if bins is None else xp.asarray(bins)]
    assert _rel_l2(to_numpy(gpu.back(*dev)), cpu.back(y, xs, xe, bins)) < 1e-5


# ------------------------------------------------------------------ inputs, chunks, devices
def test_inputs_are_converted_and_results_do_not_depend_on_chunks():
    xs, xe = _all_lors()
    n = xs.shape[0]
    rng = np.random.default_rng(13)
    x = rng.uniform(0.0, 1.0, GRID.shape).astype(np.float32)
    bins = _bins("lm", n)
    ref = LorProjector(GRID, tof=TOF, device="cpu")
    small = LorProjector(GRID, tof=TOF, device="cpu", chunk_lors=333)
    expected = ref.forward(x, xs, xe, bins)
    # float64, Fortran-ordered endpoints, an int32 bin array and a float64 image.
    got = small.forward(
        x.astype(np.float64), np.asfortranarray(xs, np.float64), xe.astype(np.float64),
        bins.astype(np.int32),
    )  # fmt: skip
    np.testing.assert_array_equal(got, expected)  # per-LOR results: chunking changes nothing
    y = rng.uniform(0.0, 1.0, n)
    np.testing.assert_allclose(
        small.back(y, xs, xe, bins), ref.back(y.astype(np.float32), xs, xe, bins), rtol=1e-5,
        atol=1e-6,
    )  # fmt: skip


def test_empty_lor_arrays():
    proj = LorProjector(GRID, tof=TOF, device="cpu")
    empty = np.zeros((0, 3), np.float32)
    x = np.ones(GRID.shape, np.float32)
    assert proj.forward(x, empty, empty).shape == (0, TOF.n_bins)
    assert proj.forward(x, empty, empty, np.zeros(0, np.int16)).shape == (0,)
    back = proj.back(np.zeros((0, TOF.n_bins), np.float32), empty, empty)
    assert back.shape == GRID.shape and not back.any()


def test_cpu_projector_does_not_import_cupy():
    code = (
        "import sys, numpy as np\n"
        "from recon import ImageGrid\n"
        "from recon.pet.projector import LorProjector\n"
        "p = LorProjector(ImageGrid((4, 4, 4), 2.0), device='cpu')\n"
        "a = np.array([[-9.0, 0, 0]], np.float32)\n"
        "p.back(p.forward(np.ones((4, 4, 4), np.float32), a, -a), a, -a)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'cupy'], 'cupy imported'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def tof_projector() -> LorProjector:
    return LorProjector(GRID, tof=TOF, device="cpu")


_A = np.zeros((4, 3), np.float32)
_B = np.ones((4, 3), np.float32) * 50.0


@pytest.mark.parametrize(
    ("xs", "xe", "message"),
    [
        (np.zeros((4, 2), np.float32), _B[:, :2], r"xstart must have shape \(n, 3\)"),
        (np.zeros(3, np.float32), np.ones(3, np.float32), r"xstart must have shape \(n, 3\)"),
        (_A, np.ones((5, 3), np.float32), "the same shape"),
        (_A, np.ones((4, 3, 1), np.float32), r"xend must have shape \(n, 3\)"),
        (_A.astype(complex), _B, "real numbers"),
    ],
)
def test_bad_endpoint_shapes(tof_projector, xs, xe, message):
    x = np.ones(GRID.shape, np.float32)
    with pytest.raises(InputError, match=message):
        tof_projector.forward(x, xs, xe)
    with pytest.raises(InputError, match=message):
        tof_projector.back(np.ones((4, TOF.n_bins), np.float32), xs, xe)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_endpoints(tof_projector, bad):
    xs = _A.copy()
    xs[2, 1] = bad
    x = np.ones(GRID.shape, np.float32)
    with pytest.raises(InputError, match=r"xstart has NaN or infinite coordinates.*LOR 2"):
        tof_projector.forward(x, xs, _B)
    with pytest.raises(InputError, match=r"xend has NaN or infinite coordinates.*LOR 2"):
        tof_projector.back(np.ones(4, np.float32), _B, xs, tof_bin=np.zeros(4, np.int16))


@pytest.mark.parametrize(
    ("bins", "message"),
    [
        (np.array([0, 1, 16, 0], np.int16), r"tof_bin 16 is outside the TOF range ±15"),
        (np.array([0, -16, 0, 0], np.int32), r"tof_bin -16 is outside the TOF range ±15"),
        (np.array([0, 2**33, 0, 0], np.int64), r"outside the TOF range"),  # no int32 wrap-around
        (np.zeros(5, np.int16), r"tof_bin must have shape \(4,\)"),
        (np.zeros((4, 1), np.int16), r"tof_bin must have shape \(4,\)"),
        (np.zeros(4, np.float32), "tof_bin must hold integers"),
    ],
)
def test_bad_tof_bins(tof_projector, bins, message):
    x = np.ones(GRID.shape, np.float32)
    with pytest.raises(InputError, match=message):
        tof_projector.forward(x, _A, _B, tof_bin=bins)
    with pytest.raises(InputError, match=message):
        tof_projector.back(np.ones(4, np.float32), _A, _B, tof_bin=bins)


def test_tof_bin_needs_a_tof_projector():
    proj = LorProjector(GRID, device="cpu")
    with pytest.raises(InputError, match="non-TOF projector"):
        proj.forward(np.ones(GRID.shape, np.float32), _A, _B, tof_bin=np.zeros(4, np.int16))


@pytest.mark.parametrize("shape", [(24, 32), (28, 32, 24), (1, 24, 32, 28)])
def test_image_of_the_wrong_shape(tof_projector, shape):
    with pytest.raises(InputError, match=r"image has shape .* projector grid is \(24, 32, 28\)"):
        tof_projector.forward(np.ones(shape, np.float32), _A, _B)


@pytest.mark.parametrize(
    ("tof", "shape", "message"),
    [
        (None, (4, 2), r"values have shape \(4, 2\), expected \(4,\)"),
        (TOF, (4,), r"values have shape \(4,\), expected \(4, 31\) \(LOR × TOF bin"),
        (TOF, (4, 30), r"expected \(4, 31\)"),
    ],
)
def test_back_values_of_the_wrong_shape(tof, shape, message):
    proj = LorProjector(GRID, tof=tof, device="cpu")
    with pytest.raises(InputError, match=message):
        proj.back(np.ones(shape, np.float32), _A, _B)


def test_back_values_must_be_finite():
    proj = LorProjector(GRID, device="cpu")
    with pytest.raises(InputError, match="values contain NaN"):
        proj.back(np.array([1.0, np.nan, 0.0, 1.0], np.float32), _A, _B)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(grid=(24, 32, 28)), GeometryError, "grid must be an ImageGrid"),
        (dict(tof=300.0), GeometryError, "tof must be a recon Tof"),
        (dict(n_sigmas=0.0), InputError, "n_sigmas must be a positive number"),
        (dict(n_sigmas=np.nan), InputError, "n_sigmas must be a positive number"),
        (dict(chunk_lors=0), InputError, "chunk_lors must be between 1 and"),
        (dict(chunk_lors=2**31), InputError, "chunk_lors must be between 1 and"),
        (dict(chunk_lors=10.5), InputError, "chunk_lors must be an integer"),
        (dict(device="tpu"), InputError, "device must be one of"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, message):
    args = dict(grid=GRID, device="cpu") | kwargs
    with pytest.raises(error, match=message):
        LorProjector(**args)


@pytest.mark.parametrize(
    ("width_mm", "sigma_mm"), [(16.5, 24.5), (4.0, 40.0), (40.0, 10.0), (12.0, 12.0)]
)
def test_listmode_tof_weight_table_is_within_its_stated_accuracy(width_mm, sigma_mm):
    """The listmode kernels interpolate a table of the bin weight instead of two erfc per sample;
    it must stay within 1e-5 (relative) of the exact Gaussian mass over the bin, tails included."""
    from scipy.special import erf

    from recon.pet.projector import tof_weight_table

    table, inv_step = tof_weight_table(width_mm, sigma_mm, 3.0)
    reach = 3.0 * sigma_mm + 0.5 * width_mm
    d = np.linspace(0.0, reach, 100_001)
    u = d * inv_step
    j = np.minimum(u.astype(int), table.size - 2)
    interpolated = table[j] + (u - j) * (table[j + 1] - table[j])
    k = 1.0 / (np.sqrt(2.0) * sigma_mm)
    # The kernels' definition: the mass over [b w − w/2, b w + w/2] of a Gaussian at s = b w + d.
    exact = 0.5 * (erf((0.5 * width_mm - d) * k) - erf((-0.5 * width_mm - d) * k))
    assert np.max(np.abs(interpolated / exact - 1.0)) < 1e-5
