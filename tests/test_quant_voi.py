"""Tests of recon.quant.voi: VOI construction, statistics, peak, iso-contours, recovery."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.integrate import quad
from scipy.optimize import brentq

import recon
from recon.errors import GeometryError, InputError
from recon.io import read_voi
from recon.quant import (
    Voi,
    iso_contour,
    rc_corrected_mean,
    recovery_coefficient,
    voi_stats,
)
from recon.simulate.phantoms import sphere_mask

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def sphere_ml(diameter_mm: float) -> float:
    return 4.0 / 3.0 * math.pi * (diameter_mm / 2) ** 3 / 1000.0


@pytest.fixture
def grid() -> recon.ImageGrid:
    return recon.ImageGrid((40, 40, 40), 2.0)


def bq_image(grid, data):
    return recon.Image(np.asarray(data, np.float32), grid, units="Bq/mL", isotope="In-111")


# ------------------------------------------------------------------------------ construction


def test_sphere_and_cylinder_volumes_within_voxelisation_error(grid):
    s = Voi.sphere(grid, (4.0, -6.0, 2.0), 30.0, name="lesion")
    assert s.name == "lesion"
    # Voxel-centre membership: the error scales with surface × voxel size; a few % at 30 mm / 2 mm.
    assert s.volume_ml == pytest.approx(sphere_ml(30.0), rel=0.03)
    np.testing.assert_allclose(s.centroid_mm, (4.0, -6.0, 2.0), atol=0.05)
    c = Voi.cylinder(grid, (0.0, 0.0, 0.0), 12.0, 40.0, axis="z")
    assert c.volume_ml == pytest.approx(math.pi * 12.0**2 * 40.0 / 1000.0, rel=0.03)
    cx = Voi.cylinder(grid, (0.0, 0.0, 0.0), 12.0, 40.0, axis="x")
    assert cx.n_voxels == c.n_voxels  # the cubic grid is symmetric under the axis swap
    # The x-cylinder is long along x: its mask extends over x, not z.
    assert np.ptp(np.argwhere(cx.mask)[:, 2]) > np.ptp(np.argwhere(cx.mask)[:, 0])


def test_sphere_mask_agrees_with_phantoms(grid):
    voi = Voi.sphere(grid, (10.0, 0.0, -4.0), 17.0)
    np.testing.assert_array_equal(voi.mask, sphere_mask(grid, (10.0, 0.0, -4.0), 17.0))


def test_from_mask_and_from_labels(grid):
    labels = np.zeros(grid.shape, np.int16)
    labels[5:10, 5:10, 5:10] = 1
    labels[20:22, 20:30, 20:25] = 4
    vois = Voi.from_labels(labels, grid, names={1: "liver"})
    assert list(vois) == [1, 4]
    assert vois[1].name == "liver" and vois[4].name == "label_4"
    assert vois[1].n_voxels == 125 and vois[4].n_voxels == 100
    assert vois[4].volume_ml == pytest.approx(100 * 0.008)
    single = Voi.from_mask(labels == 1, grid, "liver")
    np.testing.assert_array_equal(single.mask, vois[1].mask)
    assert Voi.from_mask((labels == 4).astype(np.uint8), grid).n_voxels == 100
    with pytest.raises(InputError, match="from_labels"):
        Voi.from_mask(labels, grid)
    with pytest.raises(GeometryError, match="shape"):
        Voi.from_mask(np.ones((3, 3, 3), bool), grid)
    with pytest.raises(GeometryError, match="no non-zero"):
        Voi.from_labels(np.zeros(grid.shape, int), grid)


def test_voi_is_read_only(grid):
    voi = Voi.sphere(grid, (0, 0, 0), 10.0)
    with pytest.raises(ValueError, match="read-only"):
        voi.mask[0, 0, 0] = True


def test_voi_outside_the_image_raises(grid):
    with pytest.raises(GeometryError, match="outside the image"):
        Voi.sphere(grid, (500.0, 0.0, 0.0), 20.0)
    with pytest.raises(GeometryError, match="outside the image"):
        Voi.from_mask(np.zeros(grid.shape, bool), grid)
    with pytest.raises(GeometryError, match="diameter_mm"):
        Voi.sphere(grid, (0.0, 0.0, 0.0), -1.0)
    with pytest.raises(GeometryError, match="centre_xyz_mm"):
        Voi.sphere(grid, (0.0, 0.0), 10.0)
    with pytest.raises(GeometryError, match="axis"):
        Voi.cylinder(grid, (0, 0, 0), 5.0, 10.0, axis="w")


def test_voi_cut_by_the_grid_edge_is_logged(grid, caplog):
    with caplog.at_level(logging.WARNING, logger="recon"):
        voi = Voi.sphere(grid, (38.0, 0.0, 0.0), 20.0)
    assert "beyond the image grid" in caplog.text
    assert voi.volume_ml < sphere_ml(20.0)


def test_nifti_round_trip(grid, tmp_path):
    nibabel = pytest.importorskip("nibabel")
    voi = Voi.sphere(grid, (6.0, -10.0, 4.0), 20.0)
    # Our arrays are (z, y, x) in LPS; NIfTI is (i, j, k) in RAS: i along x with −dx (L→R).
    dz, dy, dx = grid.voxel_size_mm
    oz, oy, ox = grid.origin
    affine = np.array(
        [[-dx, 0, 0, -ox], [0, -dy, 0, -oy], [0, 0, dz, oz], [0, 0, 0, 1]], dtype=np.float64
    )
    data = np.transpose(voi.mask.astype(np.uint8), (2, 1, 0))
    path = tmp_path / "lesion.nii.gz"
    nibabel.save(nibabel.Nifti1Image(data, affine), str(path))
    back = read_voi(path, grid)
    assert back.name == "lesion"
    np.testing.assert_array_equal(back.mask, voi.mask)


def test_nifti_mask_on_another_grid_is_resampled(grid, tmp_path):
    nibabel = pytest.importorskip("nibabel")
    fine = recon.ImageGrid((80, 80, 80), 1.0)
    labels = np.zeros(fine.shape, np.uint8)
    labels[Voi.sphere(fine, (6.0, -10.0, 4.0), 20.0).mask] = 2
    labels[Voi.sphere(fine, (-20.0, 10.0, 0.0), 12.0).mask] = 5
    dz, dy, dx = fine.voxel_size_mm
    oz, oy, ox = fine.origin
    affine = np.array([[-dx, 0, 0, -ox], [0, -dy, 0, -oy], [0, 0, dz, oz], [0, 0, 0, 1.0]])
    path = tmp_path / "labels.nii"
    nibabel.save(nibabel.Nifti1Image(np.transpose(labels, (2, 1, 0)), affine), str(path))
    voi = read_voi(path, grid, name="lesion", label=2)
    assert voi.volume_ml == pytest.approx(sphere_ml(20.0), rel=0.1)
    np.testing.assert_allclose(voi.centroid_mm, (6.0, -10.0, 4.0), atol=1.0)
    both = read_voi(path, grid)
    assert both.n_voxels > voi.n_voxels


def test_nifti_without_nibabel_says_how_to_install(grid, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(InputError, match="pip install nibabel"):
        read_voi(tmp_path / "x.nii", grid)


# ------------------------------------------------------------------------------ statistics


def test_uniform_sphere_statistics(grid):
    centre, d, c = (0.0, 4.0, -2.0), 30.0, 2500.0
    mask = sphere_mask(grid, centre, d)
    img = bq_image(grid, np.where(mask, c, 0.0))
    voi = Voi.sphere(grid, centre, d, name="tumour")
    st = voi_stats(img, voi)
    assert st.name == "tumour" and st.units == "Bq/mL" and st.total_units == "Bq"
    assert st.mean == pytest.approx(c, rel=1e-7)
    assert st.max == pytest.approx(c) and st.min == pytest.approx(c)
    assert st.sd == pytest.approx(0.0, abs=1e-9)
    assert st.volume_ml == pytest.approx(sphere_ml(d), rel=0.03)
    assert st.volume_ml == pytest.approx(mask.sum() * 0.008)
    assert st.total == pytest.approx(c * st.volume_ml, rel=1e-7)
    # A 1 mL sphere fits well inside: the peak is the concentration itself.
    assert st.peak == pytest.approx(c, rel=1e-7)


def test_peak_of_a_hot_spot_in_a_warm_voi(grid):
    hot_centre = (8.0, -8.0, 0.0)
    data = np.full(grid.shape, 100.0)
    data[sphere_mask(grid, hot_centre, 20.0)] = 1000.0
    st = voi_stats(bq_image(grid, data), Voi.sphere(grid, (0.0, 0.0, 0.0), 50.0))
    # The 1 mL sphere (radius 6.2 mm) placed on the hot sphere (radius 10 mm) sees only 1000.
    assert st.peak == pytest.approx(1000.0, rel=1e-7)
    assert st.max == pytest.approx(1000.0)
    assert np.linalg.norm(np.subtract(st.peak_xyz_mm, hot_centre)) < 10.0 - 6.2
    assert st.mean < st.peak


def test_peak_of_a_single_hot_voxel_is_its_share_of_1_ml():
    grid = recon.ImageGrid((15, 15, 15), 4.0)
    data = np.zeros(grid.shape)
    data[7, 7, 7] = 5000.0
    st = voi_stats(bq_image(grid, data), Voi.sphere(grid, (0.0, 0.0, 0.0), 30.0))
    # A 4 mm voxel lies wholly inside the 6.2 mm-radius 1 mL sphere: weight 64 mm³ / 1000 mm³.
    assert st.peak == pytest.approx(5000.0 * 0.064, rel=0.02)
    assert st.max == 5000.0
    np.testing.assert_allclose(st.peak_xyz_mm, (0.0, 0.0, 0.0), atol=1e-9)


def test_peak_at_the_image_edge_averages_inside_the_image(grid):
    img = bq_image(grid, np.ones(grid.shape))
    corner = np.zeros(grid.shape, bool)
    corner[0, 0, 0] = True
    st = voi_stats(img, Voi.from_mask(corner, grid))
    assert st.peak == pytest.approx(1.0, rel=1e-12)
    assert st.n_voxels == 1 and st.sd == 0.0


def test_stats_of_uncalibrated_image_report_units(grid):
    img = recon.Image(np.ones(grid.shape, np.float32), grid)
    st = voi_stats(img, Voi.sphere(grid, (0, 0, 0), 10.0))
    assert st.total_units == "counts/s (uncalibrated)·mL"
    assert st.as_dict()["voi"] == "sphere"


def test_sd_and_cv_of_known_values():
    grid = recon.ImageGrid((1, 1, 4), 10.0)
    img = bq_image(grid, np.array([[[1.0, 2.0, 3.0, 4.0]]]))
    st = voi_stats(img, Voi.from_mask(np.ones(grid.shape, bool), grid))
    assert st.mean == 2.5
    assert st.sd == pytest.approx(math.sqrt(5.0 / 3.0))
    assert st.cv == pytest.approx(math.sqrt(5.0 / 3.0) / 2.5)


def test_mismatched_grids_raise(grid):
    other = recon.ImageGrid((40, 40, 40), 2.5)
    img = bq_image(grid, np.ones(grid.shape))
    voi = Voi.sphere(other, (0, 0, 0), 20.0)
    with pytest.raises(GeometryError, match="different grids"):
        voi_stats(img, voi)
    bad = np.ones(grid.shape)
    bad[20, 20, 20] = np.nan
    with pytest.raises(InputError, match="NaN"):
        voi_stats(bq_image(grid, bad), Voi.sphere(grid, (0, 0, 0), 10.0))


# ------------------------------------------------------------------------------ iso-contour


def _blurred_ball(r: float, radius: float, sigma: float) -> float:
    """Unit ball blurred by an isotropic Gaussian: value at distance r > 0 from its centre."""
    s2 = math.sqrt(2.0) * sigma
    gauss = math.exp(-((radius - r) ** 2) / (2 * sigma**2)) - math.exp(
        -((radius + r) ** 2) / (2 * sigma**2)
    )
    return (
        0.5 * (math.erf((radius - r) / s2) + math.erf((radius + r) / s2))
        - sigma / (r * math.sqrt(2 * math.pi)) * gauss
    )


def test_iso_contour_on_a_blurred_sphere(grid):
    d, fwhm = 30.0, 8.0
    sigma = fwhm / FWHM_PER_SIGMA
    data = np.where(sphere_mask(grid, (0.0, 0.0, 0.0), d), 1000.0, 0.0)
    data[sphere_mask(grid, (0.0, 28.0, 0.0), 8.0)] = 3000.0  # a hotter neighbour, not connected
    img = bq_image(grid, ndimage.gaussian_filter(data, sigma / 2.0))
    voi = iso_contour(img, (2.0, -2.0, 0.0), 50.0, 8.0, name="lesion")
    assert voi.name == "lesion"
    # The 50 % contour of the blurred ball lies at r* with profile(r*) = profile(0) / 2 (inside
    # the true edge: a convex surface point sees less than half of the blur kernel filled).
    centre_value = _blurred_ball(1e-6, d / 2, sigma)
    r_star = brentq(lambda r: _blurred_ball(r, d / 2, sigma) - 0.5 * centre_value, 1.0, d)
    assert r_star < d / 2
    assert voi.volume_ml == pytest.approx(4 / 3 * math.pi * r_star**3 / 1000, rel=0.06)
    values = np.asarray(img)[voi.mask]
    local_max = np.asarray(img)[sphere_mask(grid, (2.0, -2.0, 0.0), 16.0)].max()
    assert values.min() >= 0.5 * local_max
    assert not voi.mask[sphere_mask(grid, (0.0, 28.0, 0.0), 8.0)].any()
    # Seeded near the neighbour, the search finds its maximum and segments it alone.
    other = iso_contour(img, (0.0, 22.0, 0.0), 50.0, 8.0, confine_to_search=True)
    assert other.centroid_mm[1] == pytest.approx(28.0, abs=2.0)
    assert not other.mask[sphere_mask(grid, (0.0, 0.0, 0.0), 20.0)].any()


def test_iso_contour_errors(grid):
    img = bq_image(grid, np.zeros(grid.shape))
    with pytest.raises(GeometryError, match="outside"):
        iso_contour(img, (300.0, 0.0, 0.0), 40.0, 10.0)
    with pytest.raises(InputError, match="uptake"):
        iso_contour(img, (0.0, 0.0, 0.0), 40.0, 10.0)
    with pytest.raises(InputError, match="percent_of_local_max"):
        iso_contour(img, (0.0, 0.0, 0.0), 140.0, 10.0)
    with pytest.raises(InputError, match="connectivity"):
        iso_contour(img, (0.0, 0.0, 0.0), 40.0, 10.0, connectivity=4)


# ------------------------------------------------------------------------------ recovery


@pytest.mark.parametrize(("d", "fwhm"), [(10.0, 10.0), (20.0, 8.0), (37.0, 12.0)])
def test_rc_max_closed_form_equals_gaussian_mass_in_ball(d, fwhm):
    sigma, r = fwhm / FWHM_PER_SIGMA, d / 2
    # Mass of an isotropic 3-D Gaussian within radius R: ∫0^R 4πρ² g(ρ) dρ.
    mass, _ = quad(
        lambda p: 4 * math.pi * p * p * math.exp(-p * p / (2 * sigma**2)), 0, r, epsrel=1e-13
    )
    mass /= (2 * math.pi * sigma**2) ** 1.5
    assert recovery_coefficient(d, fwhm, "max") == pytest.approx(mass, rel=1e-10)


def test_rc_mean_matches_a_blurred_voxelised_sphere():
    grid = recon.ImageGrid((96, 96, 96), 0.5)
    d, fwhm = 16.0, 10.0
    mask = sphere_mask(grid, (0.0, 0.0, 0.0), d)
    blurred = ndimage.gaussian_filter(mask.astype(np.float64), fwhm / FWHM_PER_SIGMA / 0.5)
    measured = blurred[mask].mean()
    assert recovery_coefficient(d, fwhm, "mean") == pytest.approx(measured, rel=0.01)
    assert recovery_coefficient(d, fwhm, "max") == pytest.approx(blurred[48, 48, 48], rel=0.01)


def test_rc_limits_and_correction():
    assert recovery_coefficient(20.0, 0.0) == 1.0
    assert recovery_coefficient(200.0, 1.0, "mean") == pytest.approx(1.0, abs=0.01)
    assert recovery_coefficient(10.0, 10.0) < recovery_coefficient(10.0, 10.0, "max") < 1.0
    rc, c, b = 0.42, 5000.0, 300.0
    measured = rc * c + (1 - rc) * b
    assert rc_corrected_mean(measured, rc, b) == pytest.approx(c, rel=1e-12)
    with pytest.raises(InputError, match="rc"):
        rc_corrected_mean(1.0, 0.0)
    with pytest.raises(InputError, match="kind"):
        recovery_coefficient(10.0, 5.0, "peak")
