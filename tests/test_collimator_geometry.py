"""Collimator response formulas, SPECT acquisition geometry and the image grid."""

from __future__ import annotations

import numpy as np
import pytest

from recon import Collimator, ImageGrid, SpectGeometry
from recon.errors import GeometryError
from recon.spect.collimator import FWHM_TO_SIGMA

# ---------------------------------------------------------------------------------- collimator


@pytest.mark.parametrize(
    ("distance_mm", "geometric_mm", "system_mm"),
    [
        # LEHR: D = 1.11 mm, l = 24.05 mm, μ_Pb = 2.71/mm, no gap, intrinsic 3.8 mm FWHM.
        # l_eff = 24.05 − 2/2.71 = 23.31199 mm; R_geo = 1.11·(23.31199 + d)/23.31199;
        # FWHM = sqrt(R_geo² + 3.8²) (worked out on paper, not with the code under test).
        (0.0, 1.11000, 3.95880),
        (100.0, 5.87150, 6.99389),
        (200.0, 10.63300, 11.29162),
    ],
)
def test_lehr_resolution_by_hand(distance_mm, geometric_mm, system_mm):
    lehr = Collimator.preset("LEHR")
    assert lehr.effective_length_mm == pytest.approx(23.31199, abs=1e-5)
    assert float(lehr.geometric_fwhm_mm(distance_mm)) == pytest.approx(geometric_mm, abs=1e-4)
    assert float(lehr.fwhm_mm(distance_mm)) == pytest.approx(system_mm, abs=1e-4)
    assert float(lehr.sigma_mm(distance_mm)) == pytest.approx(system_mm / 2.354820, rel=1e-6)


def test_fwhm_to_sigma_constant():
    assert pytest.approx(1.0 / 2.3548200450309493, rel=1e-12) == FWHM_TO_SIGMA


def test_resolution_formula_with_gap_and_no_septal_penetration():
    c = Collimator(
        hole_diameter_mm=2.0,
        hole_length_mm=40.0,
        septal_thickness_mm=0.5,
        intrinsic_fwhm_mm=3.0,
        detector_gap_mm=10.0,
    )
    assert c.effective_length_mm == 40.0  # septal_mu_per_mm=None: the physical length
    # R_geo(d) = 2·(40 + 50 + 10)/40 = 5 mm; FWHM = sqrt(5² + 3²)
    assert float(c.geometric_fwhm_mm(50.0)) == pytest.approx(5.0, rel=1e-12)
    assert float(c.fwhm_mm(50.0)) == pytest.approx(np.sqrt(34.0), rel=1e-12)
    # Negative distances clamp to the collimator face; arrays are accepted.
    np.testing.assert_allclose(c.fwhm_mm(np.array([-5.0, 0.0])), [c.fwhm_mm(0.0)] * 2)
    # Efficiency g = K² (D/l_eff)² (D/(D+t))² with K = 0.26 (hexagonal holes).
    assert c.geometric_efficiency() == pytest.approx(0.26**2 * (2 / 40) ** 2 * (2 / 2.5) ** 2)


def test_resolution_grows_with_distance():
    for name in ("LEHR", "LEGP", "ME", "HE"):
        fwhm = Collimator.preset(name).fwhm_mm(np.linspace(0.0, 400.0, 41))
        assert np.all(np.diff(fwhm) > 0), name


@pytest.mark.parametrize("name", ["LEHR", "LEGP", "ME", "HE", "LEAP", "lehr", "MEGP", "HEGP"])
def test_every_preset_exists(name):
    c = Collimator.preset(name)
    assert c.effective_length_mm > 0
    assert 0 < c.geometric_efficiency() < 1e-3
    assert 3.8 < float(c.fwhm_mm(100.0)) < 30.0


def test_leap_is_an_alias_of_legp_and_legp_is_coarser_than_lehr():
    assert Collimator.preset("LEAP") == Collimator.preset("LEGP")
    assert Collimator.preset("LEAP").name == "LEGP"
    lehr, legp = Collimator.preset("LEHR"), Collimator.preset("LEGP")
    assert legp.fwhm_mm(100.0) > lehr.fwhm_mm(100.0)
    assert legp.geometric_efficiency() > lehr.geometric_efficiency()


def test_unknown_preset_lists_the_known_names():
    with pytest.raises(GeometryError, match="unknown collimator preset 'XYZ'") as info:
        Collimator.preset("XYZ")
    for known in ("HE", "LEAP", "LEGP", "LEHR", "ME"):
        assert known in str(info.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hole_diameter_mm": 0.0}, "hole_diameter_mm must be positive"),
        ({"hole_length_mm": -1.0}, "hole_length_mm must be positive"),
        ({"intrinsic_fwhm_mm": -1.0}, "intrinsic_fwhm_mm must be non-negative"),
        ({"septal_mu_per_mm": 0.0}, "septal_mu_per_mm must be positive"),
        ({"septal_mu_per_mm": 0.05}, "effective hole length"),
    ],
)
def test_collimator_validation(changes, message):
    args = dict(
        hole_diameter_mm=1.0, hole_length_mm=20.0, septal_thickness_mm=0.2, intrinsic_fwhm_mm=3.5
    )
    with pytest.raises(GeometryError, match=message):
        Collimator(**{**args, **changes})


# ---------------------------------------------------------------------------------- geometry


def test_circular_angles_radii_and_timing():
    g = SpectGeometry.circular(
        n_views=6,
        radius_mm=220.0,
        n_u=16,
        n_v=8,
        pixel_size_mm=4.0,
        arc_deg=180.0,
        start_deg=10.0,
        time_per_view_s=15.0,
        start_time_s=100.0,
    )
    np.testing.assert_allclose(g.angles_deg, [10, 40, 70, 100, 130, 160])
    np.testing.assert_allclose(g.radii_mm, 220.0)
    np.testing.assert_allclose(g.start_times_s, 100.0 + 15.0 * np.arange(6))
    np.testing.assert_allclose(g.durations_s, 15.0)
    assert g.acquisition_end_s == pytest.approx(100.0 + 6 * 15.0)
    assert g.n_views == 6
    assert g.projection_shape == (6, 8, 16)
    assert g.pixel_size_mm == (4.0, 4.0)


def test_two_heads_acquire_opposite_views_simultaneously():
    g = SpectGeometry.circular(
        n_views=8, radius_mm=200.0, n_u=4, n_v=4, pixel_size_mm=2.0, time_per_view_s=20.0, n_heads=2
    )
    np.testing.assert_allclose(g.angles_deg, 45.0 * np.arange(8))
    # Head 1 takes views 4..7, 180° from head 0's views 0..3, at the same times.
    np.testing.assert_allclose(g.start_times_s[:4], [0, 20, 40, 60])
    np.testing.assert_allclose(g.start_times_s[4:], g.start_times_s[:4])
    np.testing.assert_allclose(g.angles_deg[4:] - g.angles_deg[:4], 180.0)
    assert g.acquisition_end_s == pytest.approx(80.0)


def test_circular_head_count_must_divide_views():
    with pytest.raises(GeometryError, match="multiple of n_heads"):
        SpectGeometry.circular(n_views=9, radius_mm=200, n_u=4, n_v=4, pixel_size_mm=2, n_heads=2)
    with pytest.raises(GeometryError, match="n_views must be at least 1"):
        SpectGeometry.circular(n_views=0, radius_mm=200, n_u=4, n_v=4, pixel_size_mm=2)


def test_u_and_v_positions_with_offsets():
    g = SpectGeometry(
        angles_deg=[0.0],
        radii_mm=200.0,
        n_u=4,
        n_v=3,
        pixel_size_mm=(3.0, 2.0),  # (v, u)
        cor_offset_mm=1.5,
        axial_offset_mm=-10.0,
    )
    # DESIGN.md §3: u_i = (i − (n_u−1)/2)·pixel + COR offset; v_j = (j − (n_v−1)/2)·pixel + axial.
    np.testing.assert_allclose(g.u_positions_mm, [-3.0 + 1.5, -1.0 + 1.5, 1.0 + 1.5, 3.0 + 1.5])
    np.testing.assert_allclose(g.v_positions_mm, [-13.0, -10.0, -7.0])
    centred = SpectGeometry(angles_deg=[0.0], radii_mm=200.0, n_u=5, n_v=2, pixel_size_mm=2.0)
    np.testing.assert_allclose(centred.u_positions_mm, [-4, -2, 0, 2, 4])
    np.testing.assert_allclose(centred.v_positions_mm, [-1, 1])


def test_per_view_values_and_default_start_times():
    g = SpectGeometry(
        angles_deg=[0, 90, 180],
        radii_mm=[150.0, 200.0, 250.0],
        n_u=8,
        n_v=8,
        pixel_size_mm=2.0,
        durations_s=[10.0, 20.0, 30.0],
    )
    np.testing.assert_allclose(g.radii_mm, [150, 200, 250])
    np.testing.assert_allclose(g.start_times_s, [0, 10, 30])  # back to back by default
    assert g.acquisition_end_s == pytest.approx(60.0)
    with pytest.raises(ValueError, match="read-only"):
        g.radii_mm[0] = 1.0  # the arrays of a frozen geometry are frozen too


def test_subset_keeps_per_view_values_in_order():
    g = SpectGeometry(
        angles_deg=[0, 90, 180, 270],
        radii_mm=[100, 110, 120, 130],
        n_u=8,
        n_v=6,
        pixel_size_mm=2.0,
        durations_s=[1, 2, 3, 4],
        cor_offset_mm=2.0,
    )
    s = g.subset([3, 1])
    np.testing.assert_allclose(s.angles_deg, [270, 90])
    np.testing.assert_allclose(s.radii_mm, [130, 110])
    np.testing.assert_allclose(s.durations_s, [4, 2])
    np.testing.assert_allclose(s.start_times_s, g.start_times_s[[3, 1]])
    assert s.cor_offset_mm == 2.0
    assert s.projection_shape == (2, 6, 8)
    for bad in ([], [4], [-1]):
        with pytest.raises(GeometryError, match="view indices"):
            g.subset(bad)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"angles_deg": []}, "non-empty 1-D array"),
        ({"angles_deg": [[0.0, 90.0]]}, "non-empty 1-D array"),
        ({"angles_deg": [0.0, np.nan]}, "angles_deg contains NaN"),
        ({"radii_mm": -200.0}, "radii_mm must be positive"),
        ({"radii_mm": [200.0, 0.0]}, "radii_mm must be positive"),
        ({"radii_mm": [200.0, 200.0, 200.0]}, r"radii_mm needs one value per view \(2\)"),
        ({"durations_s": 0.0}, "durations_s must be positive"),
        ({"start_times_s": [0.0]}, "start_times_s needs one value per view"),
        ({"n_u": 0}, "n_u must be a positive number"),
        ({"n_v": -3}, "n_v must be a positive number"),
        ({"pixel_size_mm": 0.0}, "pixel_size_mm must be positive"),
        ({"pixel_size_mm": (2.0, 2.0, 2.0)}, "pixel_size_mm must be positive"),
        ({"cor_offset_mm": np.inf}, "cor_offset_mm must be finite"),
    ],
)
def test_geometry_validation(changes, message):
    args = dict(angles_deg=[0.0, 90.0], radii_mm=200.0, n_u=8, n_v=8, pixel_size_mm=2.0)
    with pytest.raises(GeometryError, match=message):
        SpectGeometry(**{**args, **changes})


# ---------------------------------------------------------------------------------- image grid


def test_grid_default_origin_is_centred():
    grid = ImageGrid(shape=(4, 5, 6), voxel_size=(3.0, 2.0, 1.0))
    assert grid.origin == (-4.5, -4.0, -2.5)
    assert grid.centre_mm == pytest.approx((0.0, 0.0, 0.0))
    np.testing.assert_allclose(grid.axis_mm(2), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    assert grid.voxel_volume_ml == pytest.approx(6.0 / 1000.0)
    assert grid.n_voxels == 120
    cubic = ImageGrid(shape=(3, 3, 3), voxel_size=4.42)
    assert cubic.voxel_size_mm == (4.42, 4.42, 4.42)
    assert cubic.axis_mm(0)[1] == pytest.approx(0.0)


def test_grid_world_index_round_trip():
    grid = ImageGrid(shape=(7, 9, 11), voxel_size=(2.5, 2.0, 2.0), origin=(-5.0, 12.0, -30.0))
    # Voxel [k, j, i] is at (x, y, z) = origin[::-1] + (i, j, k)·voxel[::-1].
    np.testing.assert_allclose(
        grid.index_to_world([1, 2, 3]), [-30.0 + 6.0, 12.0 + 4.0, -5.0 + 2.5]
    )
    rng = np.random.default_rng(7)
    xyz = rng.uniform(-50.0, 50.0, size=(20, 3))
    np.testing.assert_allclose(grid.index_to_world(grid.world_to_index(xyz)), xyz, atol=1e-12)
    zyx = rng.uniform(0.0, 6.0, size=(5, 4, 3))
    np.testing.assert_allclose(grid.world_to_index(grid.index_to_world(zyx)), zyx, atol=1e-12)
    zz, yy, xx = grid.meshgrid_mm()
    assert zz.shape == grid.shape
    assert (xx[0, 0, 3], yy[0, 2, 0], zz[1, 0, 0]) == pytest.approx((-24.0, 16.0, -2.5))


def test_grid_same_as():
    a = ImageGrid(shape=(4, 4, 4), voxel_size=2.0)
    assert a.same_as(ImageGrid(shape=(4, 4, 4), voxel_size=2.0, origin=(-3.0, -3.0, -3.0)))
    assert not a.same_as(ImageGrid(shape=(4, 4, 5), voxel_size=2.0))
    assert not a.same_as(ImageGrid(shape=(4, 4, 4), voxel_size=2.0, origin=(0.0, 0.0, 0.0)))
    assert not a.same_as(ImageGrid(shape=(4, 4, 4), voxel_size=2.1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (4, 4)}, "shape must be 3 positive integers"),
        ({"shape": (4, 0, 4)}, "shape must be 3 positive integers"),
        ({"voxel_size": 0.0}, "voxel_size must be positive"),
        ({"voxel_size": (1.0, 2.0)}, r"voxel_size needs 3 values \(z, y, x\)"),
        ({"voxel_size": (1.0, np.nan, 1.0)}, "voxel_size must be finite"),
        ({"origin": (0.0, 0.0)}, "origin needs 3 values"),
    ],
)
def test_grid_validation(kwargs, message):
    with pytest.raises(GeometryError, match=message):
        ImageGrid(**{"shape": (4, 4, 4), "voxel_size": 2.0, **kwargs})
