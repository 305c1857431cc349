"""Physics of the SPECT projector: adjointness, analytic line integrals, orientation, collimator
response, subsets, CPU (numba) == CUDA source (via the CPU compat header) == GPU, bad input.

Conventions under test are those of DESIGN.md §3: at view angle θ the camera sits at
d(θ) = (sin θ, −cos θ), u runs along t(θ) = (cos θ, sin θ), v along +z; projections are line
integrals in mm. All arrays are float32; every tolerance below is stated next to its assert.
"""

from __future__ import annotations

import numpy as np
import pytest

import recon.backend
from recon import Collimator, Image, ImageGrid, SpectGeometry, SpectModel
from recon.algorithms import osem
from recon.errors import DeviceError, GeometryError, InputError
from tests.cuda_compat.build import gxx_available

PIXEL = 2.0  # mm, voxel and projection pixel unless a test says otherwise
LEHR = Collimator.preset("LEHR")
ME_245 = Collimator.preset("ME").at_energy(245.4)


# ------------------------------------------------------------------------------------ helpers
def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)))


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _voxelised_disk(grid: ImageGrid, radius_mm: float, supersample: int = 8) -> np.ndarray:
    """Fraction of each voxel inside the infinite cylinder x² + y² ≤ r² (all slices)."""
    d = grid.voxel_size_mm[1]
    offsets = ((np.arange(supersample) + 0.5) / supersample - 0.5) * d
    y = (grid.axis_mm(1)[:, None] + offsets)[:, None, :, None]
    x = (grid.axis_mm(2)[:, None] + offsets)[None, :, None, :]
    fraction = (x**2 + y**2 <= radius_mm**2).mean(axis=(2, 3))
    return np.ascontiguousarray(np.broadcast_to(fraction, grid.shape), dtype=np.float32)


def _point(grid: ImageGrid, xyz_mm: tuple[float, float, float]) -> np.ndarray:
    """A unit point source in the voxel whose centre is exactly at ``xyz_mm``."""
    index = grid.world_to_index(np.asarray(xyz_mm))
    k, j, i = np.round(index).astype(int)
    assert np.allclose(index, (k, j, i)), "put point sources on voxel centres"
    x = np.zeros(grid.shape, np.float32)
    x[k, j, i] = 1.0
    return x


def _ellipse_radii(angles_deg: np.ndarray, a_mm: float, b_mm: float, gap_mm: float) -> np.ndarray:
    """Body-contour orbit around an ellipse with semi-axes a (x) and b (y): the support function
    of the ellipse in the camera direction d(θ) = (sin θ, −cos θ), plus a gap."""
    t = np.deg2rad(angles_deg)
    return np.sqrt((a_mm * np.sin(t)) ** 2 + (b_mm * np.cos(t)) ** 2) + gap_mm


def _mu_map(grid: ImageGrid, seed: int = 1) -> np.ndarray:
    """Random non-negative attenuation with mean 0.01/mm (close to soft tissue at 140 keV)."""
    return np.random.default_rng(seed).uniform(0.0, 0.02, grid.shape).astype(np.float32)


# Small problems that together exercise every code path of the projector.
CASES = {
    "plain": dict(),
    "attenuation": dict(mu=True),
    "attenuation+LEHR": dict(mu=True, collimator=LEHR),
    "body-contour": dict(mu=True, collimator=LEHR, contour=True),
    "cor-offset": dict(mu=True, collimator=LEHR, cor_offset_mm=3.3),
    "axial-resampling": dict(mu=True, collimator=LEHR, voxel=(3.0, 2.0, 2.0), axial_offset_mm=1.0),
    "off-centre-origin": dict(mu=True, collimator=LEHR, origin=(-4.0, -25.0, -12.0)),
    "u-pixel-3mm": dict(mu=True, collimator=LEHR, pixel=(2.0, 3.0)),
    "chunked-uncached": dict(
        mu=True, collimator=LEHR, chunk_bytes=1, attenuation_cache_bytes=0, contour=True
    ),
    # 5 of the 12 views' attenuation factors (4 bytes × depth 16 × u 20 × z 10 each) cached.
    "partly-cached": dict(mu=True, collimator=LEHR, attenuation_cache_bytes=5 * 4 * 16 * 20 * 10),
    # In-111's 245 keV line through ME: a second, wide (penetration) component, blurred with
    # strided passes (recon.spect.model._pass_strides).
    "penetration": dict(mu=True, collimator=ME_245),
}


def _case(
    name: str,
    device: object = "cpu",
    n_views: int = 12,
    shape: tuple[int, int, int] = (10, 16, 16),
    n_u: int = 20,
    n_v: int = 10,
    isotope: str | None = None,
    **model_kwargs: object,
) -> SpectModel:
    c = CASES[name]
    voxel = c.get("voxel", PIXEL)
    grid = ImageGrid(shape=shape, voxel_size=voxel, origin=c.get("origin"))
    angles = np.arange(n_views) * (360.0 / n_views) + 7.0  # off the axes: general rotations
    radii = _ellipse_radii(angles, 40.0, 25.0, 15.0) if c.get("contour") else 120.0
    geom = SpectGeometry(
        angles_deg=angles,
        radii_mm=radii,
        n_u=n_u,
        n_v=n_v,
        pixel_size_mm=c.get("pixel", PIXEL),
        durations_s=np.linspace(10.0, 21.0, n_views),  # non-trivial view factors m
        cor_offset_mm=c.get("cor_offset_mm", 0.0),
        axial_offset_mm=c.get("axial_offset_mm", 0.0),
    )
    extra = {k: c[k] for k in ("chunk_bytes", "attenuation_cache_bytes") if k in c}
    extra.update(model_kwargs)
    return SpectModel(
        geom,
        grid,
        mu_map=_mu_map(grid) if c.get("mu") else None,
        collimator=c.get("collimator"),
        isotope=isotope,
        device=device,
        **extra,
    )


# ------------------------------------------------------------------------------- adjointness
@pytest.mark.parametrize("case", list(CASES))
def test_project_backproject_are_adjoint(case, backend, to_numpy):
    model = _case(case, backend)
    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 1.0, model.image_shape).astype(np.float32)
    y = rng.uniform(0.0, 1.0, model.data_shape).astype(np.float32)
    px = to_numpy(model.project(x))
    pty = to_numpy(model.backproject(y))
    assert px.shape == model.data_shape and px.dtype == np.float32
    assert pty.shape == model.image_shape and pty.dtype == np.float32
    lhs, rhs = _dot(px, y), _dot(x, pty)
    assert lhs > 0
    assert abs(lhs - rhs) / abs(lhs) < 1e-4  # float32 sums of ~1e5 terms: ~1e-6 expected


@pytest.mark.parametrize("case", ["plain", "attenuation+LEHR", "body-contour", "axial-resampling"])
def test_forward_is_the_projector_times_the_view_factors(case, backend, to_numpy):
    # Varying durations and Tc-99m decay make m differ per view. (forward and back are adjoint:
    # the model contract test, tests/test_model_contract.py.)
    model = _case(case, backend, isotope="Tc-99m")
    m = to_numpy(model.view_factors)
    assert np.ptp(m) > 0.1 * m.mean()
    x = np.random.default_rng(12).uniform(0.0, 1.0, model.image_shape).astype(np.float32)
    np.testing.assert_allclose(
        to_numpy(model.forward(x)), to_numpy(model.project(x)) * m[:, None, None], rtol=1e-6
    )


# --------------------------------------------------------------------------- analytic values
def _cylinder_setup(angles_deg, mu_per_mm=None):
    grid = ImageGrid(shape=(3, 72, 72), voxel_size=PIXEL)
    geom = SpectGeometry(angles_deg=angles_deg, radii_mm=150.0, n_u=72, n_v=3, pixel_size_mm=PIXEL)
    x = _voxelised_disk(grid, 60.0)
    mu = None if mu_per_mm is None else x * np.float32(mu_per_mm)
    return SpectModel(geom, grid, mu_map=mu, device="cpu"), x


ANGLES = [0.0, 30.0, 90.0, 137.0, 225.0]


def test_uniform_cylinder_projects_to_chord_length():
    model, x = _cylinder_setup(ANGLES)
    p = model.project(x)
    u = model.geometry.u_positions_mm
    chord = 2.0 * np.sqrt(np.clip(60.0**2 - u**2, 0.0, None))
    central = np.abs(u) < 50.0  # chords ≥ 66 mm; the voxelised edge matters less there
    for k in range(len(ANGLES)):
        for row in p[k]:
            # Supersampled voxelisation + bilinear sampling: ≤ 0.5 % observed; allow 1 %.
            np.testing.assert_allclose(row[central], chord[central], rtol=1e-2)
            # Outside the cylinder (beyond one voxel of blur) nothing is seen.
            assert np.all(row[np.abs(u) > 64.0] == 0.0)
            # Σ_u p · pixel = cross-section area π r² (0.1 %).
            assert row.sum() * PIXEL == pytest.approx(np.pi * 60.0**2, rel=1e-3)


def test_attenuated_uniform_cylinder():
    mu = 0.015  # 1/mm, water at 140 keV
    model, x = _cylinder_setup(ANGLES, mu_per_mm=mu)
    p = model.project(x)
    u = model.geometry.u_positions_mm
    chord = 2.0 * np.sqrt(np.clip(60.0**2 - u**2, 0.0, None))
    expected = (1.0 - np.exp(-mu * chord)) / mu  # ∫_0^L e^(−μ l) dl
    central = np.abs(u) < 50.0
    for k in range(len(ANGLES)):
        # ≤ 0.3 % observed (midpoint rule and voxelised edge); allow 1 %.
        np.testing.assert_allclose(p[k, 1, central], expected[central], rtol=1e-2)


def test_image_of_ones_projects_to_path_length():
    # A rectangular block of ones: 20 voxels (40 mm) along y, 30 voxels (60 mm) along x.
    grid = ImageGrid(shape=(4, 20, 30), voxel_size=PIXEL)
    geom = SpectGeometry(
        angles_deg=[0.0, 90.0, 180.0, 270.0], radii_mm=200.0, n_u=40, n_v=4, pixel_size_mm=PIXEL
    )
    p = SpectModel(geom, grid, device="cpu").project(np.ones(grid.shape, np.float32))
    u = geom.u_positions_mm  # ±1, ±3, … : aligned with the voxel centres of both axes
    for k, (length, half_width) in enumerate([(40.0, 30.0), (60.0, 20.0)] * 2):
        inside = np.abs(u) < half_width
        np.testing.assert_allclose(p[k][:, inside], length, rtol=1e-5)  # float32 rounding
        # Outside the block: 0 up to the float32 rounding of cos 90° (~1e-14 mm seen).
        np.testing.assert_allclose(p[k][:, ~inside], 0.0, atol=1e-5)


def _smooth_blob(grid: ImageGrid) -> np.ndarray:
    zz, yy, xx = grid.meshgrid_mm()
    r2 = (xx - 8.0) ** 2 + (yy + 5.0) ** 2
    return np.exp(-r2 / (2 * 7.0**2) - zz**2 / (2 * 4.0**2)).astype(np.float32)


@pytest.mark.parametrize("collimator", [None, LEHR], ids=["no-response", "LEHR"])
def test_counts_per_view_are_conserved_without_attenuation(collimator):
    # An off-centre smooth blob well inside the field of view (also axially, so that the blur
    # along z loses nothing at the first and last rows).
    grid = ImageGrid(shape=(28, 40, 40), voxel_size=PIXEL)
    geom = SpectGeometry.circular(n_views=24, radius_mm=150.0, n_u=64, n_v=28, pixel_size_mm=PIXEL)
    x = _smooth_blob(grid)
    p = SpectModel(geom, grid, collimator=collimator, device="cpu").project(x)
    per_view = p.sum(axis=(1, 2), dtype=np.float64) * PIXEL * PIXEL  # mm² · mm = mm³
    assert np.ptp(per_view) / per_view.mean() < 1e-3
    # Every view sees the whole activity: Σ x · voxel volume (0.1 %).
    total = x.sum(dtype=np.float64) * PIXEL**3
    np.testing.assert_allclose(per_view, total, rtol=1e-3)


@pytest.mark.parametrize("case", ["attenuation", "body-contour", "cor-offset"])
def test_attenuation_on_the_fly_equals_the_cached_factors(case, caplog):
    # The same model with all, some (views 0-4) and none of its attenuation factors cached: the
    # CPU computes the others inside the projection (far to near as T − C in the projection, near
    # to far in the back-projection and the cache), which changes only float32 rounding: the path
    # integrals are a few units, so ~1e-7 relative per factor; 1e-6 allows for the sums.
    full = _case(case, "cpu")
    assert full.attenuation_cached_views == 12
    with caplog.at_level("INFO", logger="recon"):
        part = _case(case, "cpu", attenuation_cache_bytes=5 * 4 * 16 * 20 * 10 + 7)
    assert part.attenuation_cached_views == 5
    assert "cached for 5 of 12 views" in caplog.text  # the fallback is said, not silent
    none = _case(case, "cpu", attenuation_cache_bytes=0)
    assert none.attenuation_cached_views == 0 and none._att_cache is None
    rng = np.random.default_rng(21)
    x = rng.uniform(0.0, 1.0, full.image_shape).astype(np.float32)
    y = rng.uniform(0.0, 1.0, full.data_shape).astype(np.float32)
    for other in (part, none):
        assert _rel_l2(other.project(x), full.project(x)) < 1e-6
        assert _rel_l2(other.backproject(y), full.backproject(y)) < 1e-6


def test_vectorised_exp_is_float32_accurate():
    # The CPU kernels' exp(−p) (recon/spect/_fastexp.py) against float64 exp over the whole range
    # of path integrals it is used for: the docstring states ≤ 1.0e-7 relative (2 float32 ulp).
    import numba

    from recon.spect._fastexp import exp_neg

    @numba.njit
    def apply(p, out):
        for k in range(p.size):
            out[k] = exp_neg(p[k])

    p = np.concatenate(
        [np.random.default_rng(4).uniform(0.0, 87.0, 200_000), [0.0, 1e-9, 0.5, 1.0, 86.99]]
    ).astype(np.float32)
    out = np.empty_like(p)
    apply(p, out)
    exact = np.exp(-p.astype(np.float64))
    assert np.max(np.abs(out - exact) / exact) < 1.1e-7
    apply(np.array([100.0, 1e30], np.float32), out[:2])  # clamped at exp(−87), not 0 or NaN
    np.testing.assert_allclose(out[:2], np.exp(-87.0), rtol=1e-6)


# ------------------------------------------------------------------------------- orientation
def _orientation_model(angles_deg, mu=None, cor_offset_mm=0.0):
    grid = ImageGrid(shape=(25, 49, 49), voxel_size=PIXEL)  # odd sizes: a voxel centre at 0
    geom = SpectGeometry(
        angles_deg=angles_deg,
        radii_mm=150.0,
        n_u=49,
        n_v=25,
        pixel_size_mm=PIXEL,
        cor_offset_mm=cor_offset_mm,
    )
    mu_map = None if mu is None else mu(grid)
    return SpectModel(geom, grid, mu_map=mu_map, device="cpu"), grid


def _peak_uv(model: SpectModel, view_projection: np.ndarray) -> tuple[float, float]:
    row, col = np.unravel_index(np.argmax(view_projection), view_projection.shape)
    return model.geometry.u_positions_mm[col], model.geometry.v_positions_mm[row]


def test_point_at_patient_left_orientation():
    model, grid = _orientation_model([0.0, 90.0, 180.0, 270.0])
    p = model.project(_point(grid, (40.0, 0.0, 20.0)))  # +x = patient left, +z = superior
    # θ = 0: camera anterior, u along t = (1, 0) -> u = x = +40; v = z = +20.
    assert _peak_uv(model, p[0]) == (40.0, 20.0)
    # θ = 90°: camera at the patient's left, t = (0, 1) -> u = y = 0.
    assert _peak_uv(model, p[1]) == (0.0, 20.0)
    # θ = 180°: t = (−1, 0) -> u = −40;  θ = 270°: t = (0, −1) -> u = −y = 0.
    assert _peak_uv(model, p[2]) == (-40.0, 20.0)
    assert _peak_uv(model, p[3]) == (0.0, 20.0)
    # A point on a voxel centre seen on aligned bins is one bin of Δ = 2 mm (line integral).
    np.testing.assert_allclose(p.max(axis=(1, 2)), PIXEL, rtol=1e-6)


def test_posterior_point_orientation():
    model, grid = _orientation_model([0.0, 90.0])
    p = model.project(_point(grid, (0.0, 40.0, 0.0)))  # +y = posterior
    assert _peak_uv(model, p[0]) == (0.0, 0.0)
    assert _peak_uv(model, p[1]) == (40.0, 0.0)  # θ = 90°: u = y


def test_cor_offset_shifts_the_axis_per_design():
    # DESIGN.md §3: u_i = (i − (n_u−1)/2)·pixel + COR offset, so the column whose u_position is 0
    # (where the rotation axis projects) is COR/pixel columns below the centre.
    model, grid = _orientation_model([0.0, 90.0], cor_offset_mm=4.0)
    p = model.project(_point(grid, (0.0, 0.0, 0.0)))
    centre = (model.geometry.n_u - 1) // 2
    for k in range(2):
        assert np.argmax(p[k].sum(axis=0)) == centre - 2
        assert _peak_uv(model, p[k]) == (0.0, 0.0)


def test_attenuation_favours_the_near_camera():
    mu = 0.015
    model, grid = _orientation_model(
        [90.0, 270.0], mu=lambda g: _voxelised_disk(g, 46.0) * np.float32(mu)
    )
    p = model.project(_point(grid, (40.0, 0.0, 20.0)))
    near, far = p[0].sum(dtype=np.float64), p[1].sum(dtype=np.float64)
    assert near > 2.0 * far  # θ = 90° looks from the patient's left: ~6 mm of tissue vs ~86 mm
    # Both paths run along the x axis through the same voxelised disk; the partial edge voxels
    # (x = ±46) and the source's own half voxel appear in both, so the ratio is exactly
    # exp(μ·80 mm) (x from −38 to +40 plus half voxels): float32 precision, 1e-4.
    assert near / far == pytest.approx(np.exp(mu * 80.0), rel=1e-4)
    assert near < PIXEL  # some attenuation even on the near side


# ---------------------------------------------------------------------------------- response
@pytest.mark.parametrize(
    ("radius_mm", "point_mm", "angle_deg", "distance_mm"),
    [
        (50.0, (0.0, 0.0, 0.0), 0.0, 50.0),
        (200.0, (0.0, 0.0, 0.0), 90.0, 200.0),
        (124.0, (0.0, 76.0, 0.0), 0.0, 200.0),  # posterior point, anterior camera: R + y
        (124.0, (0.0, 76.0, 0.0), 180.0, 48.0),  # posterior camera: R − y
        (124.0, (76.0, 0.0, 0.0), 90.0, 48.0),  # left point, left camera: R − x
    ],
)
def test_response_width_matches_collimator(radius_mm, point_mm, angle_deg, distance_mm):
    # The point sits on a voxel centre and the views are axis-aligned with pixel = voxel = 2 mm,
    # so rotation puts it into exactly one (depth, z, u) sample: bilinear sampling adds no
    # variance, and nothing needs subtracting. The blur is a cascade of 3-tap passes whose
    # variances add up to σ(d)²/pixel² exactly, so the second moment of the projected profile
    # gives FWHM = 2.3548·σ, to ~1e-5 here. Physics would accept 5 %; 0.5 % is asserted because
    # the variance budget is exact, and applying the response of the neighbouring depth plane
    # (2 mm off) already changes the FWHM at 48 mm by 1.2 %.
    grid = ImageGrid(shape=(31, 81, 81), voxel_size=PIXEL)
    geom = SpectGeometry(
        angles_deg=[angle_deg], radii_mm=radius_mm, n_u=61, n_v=31, pixel_size_mm=PIXEL
    )
    p = SpectModel(geom, grid, collimator=LEHR, device="cpu").project(_point(grid, point_mm))[0]
    p = p.astype(np.float64)
    expected = float(LEHR.fwhm_mm(distance_mm))
    for profile, positions in (
        (p.sum(axis=0), geom.u_positions_mm),
        (p.sum(axis=1), geom.v_positions_mm),
    ):
        mean = (profile * positions).sum() / profile.sum()
        sigma = np.sqrt((profile * (positions - mean) ** 2).sum() / profile.sum())
        assert 2.3548 * sigma == pytest.approx(expected, rel=5e-3)
    assert p.sum() == pytest.approx(PIXEL, rel=1e-4)  # the blur conserves the line integral


# ----------------------------------------------------------------------------------- subsets
def test_subsets_partition_views_and_match_full_forward(backend, to_numpy):
    model = _case("attenuation+LEHR", backend)
    subsets = model.subsets(5)
    assert len(subsets) == 5
    views = np.concatenate(subsets)
    assert sorted(views.tolist()) == list(range(model.geometry.n_views))  # disjoint, complete
    np.testing.assert_array_equal(subsets[1], [1, 6, 11])  # interleaved
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 1.0, model.image_shape).astype(np.float32)
    y = rng.uniform(0.0, 1.0, model.data_shape).astype(np.float32)
    full = to_numpy(model.forward(x))
    back_sum = np.zeros(model.image_shape, np.float64)
    for s in [*subsets, np.array([9, 2, 5])]:  # any order of views works too
        np.testing.assert_allclose(to_numpy(model.forward(x, s)), full[s], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(to_numpy(model.take(model.xp.asarray(y), s)), y[s])
    for s in subsets:
        back_sum += to_numpy(model.back(y[s], s))
    full_back = to_numpy(model.back(y))
    np.testing.assert_allclose(back_sum, full_back, rtol=1e-5, atol=1e-5 * full_back.max())
    with pytest.raises(InputError, match="between 1 and the number of views"):
        model.subsets(13)


def test_strided_blur_tables_keep_each_planes_variance_and_fill_the_comb():
    """Per view and axis: every step's passes add its variance (Σ 2 w n s² over both parts),
    and every plane a strided pass reaches gets unit-stride variance ≥ s² from the steps nearer
    the camera and the final blur (so the comb of a stride-s pass is filled)."""
    model = _case("penetration", "cpu")
    bw, bn, bs = (np.asarray(a, np.float64) for a in model._blurs[1][1])
    added = (2.0 * bw * bn * bs**2).sum(axis=-1)  # (view, depth, axis)
    geom = model.geometry
    s0 = model._host_tables["s0"][:, None] + np.arange(model.n_depth)[None, :] * model._delta
    sigma = model.collimator.components(np.maximum(geom.radii_mm[:, None] - s0, 0.0))[1][1]
    for axis, pixel in enumerate((geom.pixel_size_mm[1], model.grid.voxel_size_mm[0])):
        var = (sigma / pixel) ** 2
        np.testing.assert_allclose(added[:, 0, axis], var[:, -1], rtol=1e-5)
        np.testing.assert_allclose(added[:, 1:, axis], var[:, :-1] - var[:, 1:], rtol=1e-4,
                                   atol=1e-6)  # fmt: skip
        unit = 2.0 * bw[:, :, axis, 0] * bn[:, :, axis, 0]
        strided = bn[:, :, axis, 1] > 0
        assert strided.any()
        for v, j in zip(*np.nonzero(strided), strict=True):
            # Step j >= 1 reaches plane j - 1 and farther, which also get the steps nearer
            # (j + 1 …) and the final blur; the final blur (j = 0) reaches the nearest plane,
            # which gets nothing else.
            received = unit[v, 0] + (unit[v, j + 1 :].sum() if j > 0 else 0.0)
            assert received >= bs[v, j, axis, 1] ** 2 * (1 - 1e-5), (v, j, axis)


def test_strided_blur_passes_match_unit_passes(monkeypatch):
    """A wide response (In-111 245 keV through ME: a penetration tail ~10 pixels wide) blurred
    with strided passes projects as with unit-stride passes only (the previous scheme, 3.5×
    more passes), to 10⁻³, counts included; a narrow one (LEHR) keeps unit passes exactly."""
    import recon.spect.model as spect_model

    def build(collimator, max_stride):
        monkeypatch.setattr(spect_model, "_MAX_STRIDE", max_stride)
        grid = ImageGrid((12, 40, 40), 4.8)
        geom = SpectGeometry.circular(n_views=12, radius_mm=260.0, n_u=40, n_v=12,
                                      pixel_size_mm=4.8)  # fmt: skip
        return SpectModel(geom, grid, mu_map=np.full(grid.shape, 0.011, np.float32),
                          collimator=collimator, device="cpu")  # fmt: skip

    strided, unit = build(ME_245, 16), build(ME_245, 1)
    tail_strides = np.asarray(strided._blurs[1][1][2])
    assert tail_strides.max() >= 2 and np.asarray(unit._blurs[1][1][2]).max() == 1
    assert np.asarray(strided._blurs[1][1][1]).sum() * 3 < np.asarray(unit._blurs[1][1][1]).sum()
    rng = np.random.default_rng(12)
    x = rng.uniform(0.0, 1.0, strided.image_shape).astype(np.float32)
    point = np.zeros(strided.image_shape, np.float32)
    point[6, 20, 28] = 1.0
    for image in (x, point):
        a, b = np.asarray(strided.forward(image)), np.asarray(unit.forward(image))
        assert _rel_l2(a, b) < 1e-3
        assert a.sum() == pytest.approx(b.sum(), rel=1e-3)
    narrow = build(LEHR, 16)
    assert np.asarray(narrow._blurs[0][1][2]).max() == 1
    np.testing.assert_array_equal(narrow.forward(x), build(LEHR, 1).forward(x))


# ------------------------------------------------------------- CPU numba == CUDA source on CPU
COMPAT_CASES = ["plain", "attenuation", "attenuation+LEHR", "body-contour", "penetration"]


@pytest.mark.skipif(
    not gxx_available(), reason="g++ not found on PATH: the CUDA-on-CPU compat layer needs it"
)
@pytest.mark.parametrize("case", COMPAT_CASES)
def test_numba_matches_cuda_source_through_compat_header(case):
    from tests.cuda_compat.spect_compat import CompatSpectKernels

    # Small: the barrier kernels run one OS thread per CUDA thread.
    size = dict(n_views=8, shape=(12, 20, 20), n_u=24, n_v=12)
    cpu = _case(case, "cpu", **size)
    # Attenuation factors would be cached at construction with the numba kernel: without the
    # cache the compat model computes them per chunk with spect_attenuation.
    compat = _case(case, "cpu", attenuation_cache_bytes=0, **size)
    assert compat._att_cache is None
    compat._kernels = CompatSpectKernels()
    rng = np.random.default_rng(5)
    x = rng.uniform(0.0, 1.0, cpu.image_shape).astype(np.float32)
    y = rng.uniform(0.0, 1.0, cpu.data_shape).astype(np.float32)
    # numba accumulates partly in float64, CUDA in float32: agreement to float32 precision.
    assert _rel_l2(compat.forward(x), cpu.forward(x)) < 1e-5
    assert _rel_l2(compat.back(y), cpu.back(y)) < 1e-5


# ------------------------------------------------------------------------------- GPU == CPU
@pytest.mark.gpu
@pytest.mark.parametrize(
    "case", ["plain", "attenuation+LEHR", "body-contour", "chunked-uncached", "penetration"]
)
def test_gpu_matches_cpu(case, to_numpy):
    cpu = _case(case, "cpu")
    gpu = _case(case, "gpu")
    assert gpu.backend.is_gpu
    rng = np.random.default_rng(6)
    x = rng.uniform(0.0, 1.0, cpu.image_shape).astype(np.float32)
    y = rng.uniform(0.0, 1.0, cpu.data_shape).astype(np.float32)
    assert _rel_l2(to_numpy(gpu.forward(x)), cpu.forward(x)) < 1e-5
    assert _rel_l2(to_numpy(gpu.back(y)), cpu.back(y)) < 1e-5


# --------------------------------------------------------------------------------- bad input
@pytest.fixture
def small_model() -> SpectModel:
    grid = ImageGrid(shape=(4, 10, 10), voxel_size=PIXEL)
    geom = SpectGeometry.circular(n_views=6, radius_mm=100.0, n_u=10, n_v=4, pixel_size_mm=PIXEL)
    return SpectModel(geom, grid, device="cpu")


def test_back_rejects_wrong_detector_shape(small_model):
    with pytest.raises(InputError, match=r"data has shape \(6, 4, 11\), expected \(6, 4, 10\)"):
        small_model.back(np.ones((6, 4, 11), np.float32))
    with pytest.raises(InputError, match=r"data has shape \(6, 5, 10\)"):
        small_model.backproject(np.ones((6, 5, 10), np.float32))


def test_back_rejects_wrong_number_of_views(small_model):
    with pytest.raises(InputError, match=r"data has shape \(5, 4, 10\)"):
        small_model.back(np.ones((5, 4, 10), np.float32))


def test_back_reports_the_shape_it_was_given(small_model):
    with pytest.raises(InputError, match=r"data has shape \(6, 10\)"):
        small_model.back(np.ones((6, 10), np.float32))


def test_forward_rejects_wrong_image_shape(small_model):
    with pytest.raises(InputError, match=r"image has shape \(4, 10, 11\)"):
        small_model.forward(np.ones((4, 10, 11), np.float32))
    with pytest.raises(InputError, match="view indices must be within"):
        small_model.forward(np.ones((4, 10, 10), np.float32), subset=[6])


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        (np.ones((5, 4, 10)), r"counts has shape \(5, 4, 10\) but the model expects"),
        (np.ones((6, 10, 4)), r"counts has shape \(6, 10, 4\)"),
        (np.full((6, 4, 10), -1.0), "counts contains negative values"),
        (np.where(np.eye(10, dtype=bool)[:4], np.nan, 1.0)[None].repeat(6, 0), "NaN or infinite"),
    ],
    ids=["views", "transposed", "negative", "nan"],
)
def test_osem_rejects_bad_counts(small_model, counts, message):
    with pytest.raises(InputError, match=message):
        osem(small_model, counts, iterations=1, subsets=2)


def test_osem_rejects_bad_additive(small_model):
    with pytest.raises(InputError, match=r"additive has shape \(6, 4, 9\)"):
        osem(small_model, np.ones((6, 4, 10)), additive=np.ones((6, 4, 9)), iterations=1)


def _geometry_and_grid():
    grid = ImageGrid(shape=(4, 10, 10), voxel_size=PIXEL)
    geom = SpectGeometry.circular(n_views=4, radius_mm=100.0, n_u=10, n_v=4, pixel_size_mm=PIXEL)
    return geom, grid


def test_mu_map_of_another_shape():
    geom, grid = _geometry_and_grid()
    with pytest.raises(GeometryError, match=r"mu-map shape \(4, 10, 12\) does not match"):
        SpectModel(geom, grid, mu_map=np.zeros((4, 10, 12), np.float32), device="cpu")


def test_mu_map_image_on_another_grid():
    geom, grid = _geometry_and_grid()
    shifted = ImageGrid(shape=grid.shape, voxel_size=PIXEL, origin=(0.0, 0.0, 0.0))
    mu = Image(np.zeros(grid.shape, np.float32), shifted)
    with pytest.raises(GeometryError, match="mu-map is on another grid"):
        SpectModel(geom, grid, mu_map=mu, device="cpu")
    # The same Image on the model's own grid is accepted.
    SpectModel(geom, grid, mu_map=Image(np.zeros(grid.shape, np.float32), grid), device="cpu")


@pytest.mark.parametrize(
    ("value", "message"),
    [(-0.01, "negative attenuation"), (np.inf, "NaN or infinite"), (1.5, "implausible for 1/mm")],
)
def test_mu_map_bad_values(value, message):
    geom, grid = _geometry_and_grid()
    mu = np.zeros(grid.shape, np.float32)
    mu[1, 2, 3] = value
    with pytest.raises(InputError, match=message):
        SpectModel(geom, grid, mu_map=mu, device="cpu")


def test_non_square_transverse_voxels():
    geom, _ = _geometry_and_grid()
    grid = ImageGrid(shape=(4, 10, 10), voxel_size=(2.0, 2.0, 2.5))
    with pytest.raises(GeometryError, match="transverse voxels must be square"):
        SpectModel(geom, grid, device="cpu")


def test_geometry_without_views_or_with_negative_radius():
    with pytest.raises(GeometryError, match="non-empty 1-D array"):
        SpectGeometry(angles_deg=[], radii_mm=200.0, n_u=8, n_v=8, pixel_size_mm=2.0)
    with pytest.raises(GeometryError, match="radii_mm must be positive"):
        SpectGeometry(angles_deg=[0.0, 90.0], radii_mm=-200.0, n_u=8, n_v=8, pixel_size_mm=2.0)


def test_gpu_request_without_gpu_names_the_cuda_extra(monkeypatch):
    monkeypatch.setattr(recon.backend, "gpu_available", lambda: False)
    geom, grid = _geometry_and_grid()
    with pytest.raises(DeviceError, match=r"device='gpu' was requested.*recon\[cuda12\]"):
        SpectModel(geom, grid, device="gpu")


def test_recon_device_environment_variable(monkeypatch):
    def probe_forbidden() -> bool:
        raise AssertionError("RECON_DEVICE=cpu must not probe the GPU")

    monkeypatch.setattr(recon.backend, "gpu_available", probe_forbidden)
    monkeypatch.setenv("RECON_DEVICE", "cpu")
    geom, grid = _geometry_and_grid()
    model = SpectModel(geom, grid)
    assert model.backend.name == "cpu" and model.xp is np
    monkeypatch.setenv("RECON_DEVICE", "tpu")
    with pytest.raises(
        InputError, match=r"device must be one of \('auto', 'cpu', 'gpu'\), got 'tpu'"
    ):
        SpectModel(geom, grid)
