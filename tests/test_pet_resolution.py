"""PET resolution modelling (recon/pet/resolution.py): the image-space Gaussian ``G`` in ``P·G``.

- ``G`` and ``Gᵀ`` are exact adjoints (isotropic, transaxial ≠ axial, radially growing; on
  anisotropic voxels and an off-centre grid); the models' ``P·G`` is checked by the contract test
  (tests/model_contract_cases.py registers every PET model with a resolution model);
- the FWHM measured on a blurred point source equals the setting: from the second moment of its
  line spread function on any grid, and read at half maximum as NEMA NU 2 does once the kernel is
  a voxel or more wide; at two radii for the radially growing FWHM;
- the presets carry their cited NEMA figures; scanner files keep the resolution;
- a reconstructed sphere recovers more of its activity with the resolution model than without, on
  sinograms simulated with the same blur.

The measurements below are written from the definitions, not through the code under test.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import scipy.ndimage

import recon
from recon.backend import Backend

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# ---------------------------------------------------------------------- measurements
def _line_spread(image: np.ndarray, axis: int) -> np.ndarray:
    """The profile along ``axis`` of everything in the image (sum over the other two axes)."""
    others = tuple(a for a in range(3) if a != axis)
    return np.asarray(image, np.float64).sum(axis=others)


def _second_moment_fwhm(profile: np.ndarray, spacing_mm: float) -> float:
    """FWHM of the Gaussian with the profile's variance, mm."""
    positions = np.arange(profile.size) * spacing_mm
    mean = (profile @ positions) / profile.sum()
    variance = (profile @ np.square(positions - mean)) / profile.sum()
    return FWHM_PER_SIGMA * math.sqrt(variance)


def _half_maximum_fwhm(profile: np.ndarray, spacing_mm: float) -> float:
    """NEMA NU 2 style: the peak from a parabola through the maximum sample and its neighbours,
    the two half-maximum crossings by linear interpolation between adjacent samples, mm."""
    i = int(np.argmax(profile))
    left, centre, right = profile[i - 1 : i + 2]
    peak = centre - (right - left) ** 2 / (8.0 * (right - 2.0 * centre + left))
    half = peak / 2.0
    j = i
    while profile[j] > half:
        j += 1
    upper = j - 1 + (profile[j - 1] - half) / (profile[j - 1] - profile[j])
    j = i
    while profile[j] > half:
        j -= 1
    lower = j + 1 - (profile[j + 1] - half) / (profile[j + 1] - profile[j])
    return (upper - lower) * spacing_mm


def _blurred_point(
    resolution: recon.ImageResolution, grid: recon.ImageGrid, index: tuple, backend: Backend
) -> np.ndarray:
    point = np.zeros(grid.shape, np.float32)
    point[index] = 1.0
    blurred = resolution.bind(grid, backend.xp).apply(backend.asarray(point))
    return backend.to_host(blurred)


def _expected_transaxial_fwhm(f0: float, far: float, radius: float, r: float) -> float:
    """The documented growth law, FWHM(r)² = FWHM(0)² + (FWHM(R)² − FWHM(0)²)(r/R)²."""
    return math.sqrt(f0**2 + (far**2 - f0**2) * (r / radius) ** 2)


# ---------------------------------------------------------------------- adjoint
_RESOLUTIONS = {
    "isotropic": recon.ImageResolution(6.0),
    "transaxial != axial": recon.ImageResolution(4.0, fwhm_axial_mm=9.0),
    "radially growing": recon.ImageResolution(
        4.0, fwhm_axial_mm=5.0, radius_mm=40.0, fwhm_transaxial_at_radius_mm=9.0
    ),
}


@pytest.mark.parametrize("name", list(_RESOLUTIONS))
def test_the_blur_and_its_adjoint_are_exact_adjoints(name: str, backend: Backend) -> None:
    # Anisotropic voxels, and a grid whose centre is off the scanner axis.
    grid = recon.ImageGrid((9, 23, 31), (3.0, 2.0, 2.5), origin=(-12.0, -30.0, -20.0))
    operator = _RESOLUTIONS[name].bind(grid, backend.xp)
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.random(grid.shape, dtype=np.float32)
        y = rng.random(grid.shape, dtype=np.float32)
        gx = backend.to_host(operator.apply(backend.asarray(x)))
        gty = backend.to_host(operator.adjoint(backend.asarray(y)))
        assert gx.dtype == np.float32 and gty.dtype == np.float32 and gx.shape == grid.shape
        lhs = np.vdot(gx.astype(np.float64), y.astype(np.float64))
        rhs = np.vdot(x.astype(np.float64), gty.astype(np.float64))
        # float32 sums of ~6000 terms: a few 1e-7 relative.
        assert abs(lhs - rhs) <= 1e-5 * abs(lhs)
    assert np.abs(gx - x).max() > 0.1  # it does blur


def test_a_constant_blur_is_symmetric_and_leaves_its_input_alone() -> None:
    grid = recon.ImageGrid((7, 20, 20), (2.0, 2.5, 2.5))
    operator = _RESOLUTIONS["transaxial != axial"].bind(grid)
    x = np.random.default_rng(1).random(grid.shape, dtype=np.float32)
    before = x.copy()
    np.testing.assert_allclose(operator.apply(x), operator.adjoint(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(x, before)
    assert operator.n_blurs == 1


# ---------------------------------------------------------------------- FWHM on a point source
@pytest.mark.parametrize(
    ("resolution", "voxel_mm", "expected_zyx_mm"),
    [
        (recon.ImageResolution(6.0), (1.5, 1.5, 1.5), (6.0, 6.0, 6.0)),
        # anisotropic voxels: the FWHM is in mm, whatever the voxel size along each axis
        (recon.ImageResolution(6.0), (1.75, 1.5, 1.0), (6.0, 6.0, 6.0)),
        (recon.ImageResolution(5.0, fwhm_axial_mm=9.0), (2.0, 1.5, 1.5), (9.0, 5.0, 5.0)),
    ],
    ids=["isotropic", "anisotropic voxels", "transaxial != axial"],
)
def test_the_fwhm_of_a_blurred_point_source_is_the_setting(
    resolution: recon.ImageResolution, voxel_mm: tuple, expected_zyx_mm: tuple, backend: Backend
) -> None:
    grid = recon.ImageGrid((31, 33, 41), voxel_mm)
    blurred = _blurred_point(resolution, grid, (15, 16, 20), backend)
    assert blurred.sum() == pytest.approx(1.0, abs=1e-5)  # counts kept away from the edges
    for axis, expected in enumerate(expected_zyx_mm):
        profile = _line_spread(blurred, axis)
        # The kernel's variance is the setting's (to the cut at 4 sigma, 1e-3 of the variance).
        assert _second_moment_fwhm(profile, voxel_mm[axis]) == pytest.approx(expected, rel=2e-3)
        # With sigma at 1.4 voxels or more, the half-maximum reading agrees to within what the
        # linear interpolation between samples adds (1 % at most there; 4 % at 1 voxel).
        assert _half_maximum_fwhm(profile, voxel_mm[axis]) == pytest.approx(expected, rel=0.02)


def test_a_kernel_narrower_than_a_voxel_keeps_its_variance() -> None:
    """A 4 mm FWHM on 4 mm voxels (sigma = 0.42 voxel): a Gaussian sampled at that width has 40 %
    less variance (scipy.ndimage.gaussian_filter's kernel would measure 3.1 mm); ours has the
    setting's."""
    grid = recon.ImageGrid((15, 15, 15), 4.0)
    blurred = _blurred_point(recon.ImageResolution(4.0), grid, (7, 7, 7), recon.backend.Backend(
        "cpu", np))  # fmt: skip
    for axis in range(3):
        assert _second_moment_fwhm(_line_spread(blurred, axis), 4.0) == pytest.approx(4.0, rel=2e-3)
    sampled = np.exp(-0.5 * (np.arange(-2, 3) / (4.0 / FWHM_PER_SIGMA / 4.0)) ** 2)
    assert _second_moment_fwhm(sampled, 4.0) < 3.2  # what a plainly sampled kernel would give


def test_a_radially_growing_fwhm_is_the_setting_at_two_radii(backend: Backend) -> None:
    f0, far, radius = 5.0, 9.0, 60.0
    resolution = recon.ImageResolution(
        f0, fwhm_axial_mm=5.0, radius_mm=radius, fwhm_transaxial_at_radius_mm=far
    )
    # The grid's centre is 21 mm off the scanner axis: radii are measured from the axis.
    voxel = (2.5, 1.5, 1.5)
    grid = recon.ImageGrid((13, 81, 81), voxel, origin=(-15.0, -60.0, -39.0))
    x_mm, y_mm = grid.axis_mm(2), grid.axis_mm(1)
    for x_world, y_world in ((0.0, -15.0), (45.0, 0.0)):
        i, j = int(np.argmin(abs(x_mm - x_world))), int(np.argmin(abs(y_mm - y_world)))
        r = math.hypot(x_mm[i], y_mm[j])
        assert r == pytest.approx(math.hypot(x_world, y_world))
        expected = _expected_transaxial_fwhm(f0, far, radius, r)
        blurred = _blurred_point(resolution, grid, (6, j, i), backend)
        assert blurred.sum() == pytest.approx(1.0, abs=1e-5)  # weights on the source: counts kept
        for axis in (1, 2):  # y and x: the transaxial blur is isotropic
            profile = _line_spread(blurred, axis)
            # A mixture of two Gaussians with the variance of FWHM(r): exact second moment, and
            # a half-maximum width within 0.6 % (module docstring) plus the interpolation (sigma
            # is 1.5 voxels or more here).
            assert _second_moment_fwhm(profile, voxel[axis]) == pytest.approx(expected, rel=2e-3)
            assert _half_maximum_fwhm(profile, voxel[axis]) == pytest.approx(expected, rel=0.02)
        axial = _second_moment_fwhm(_line_spread(blurred, 0), voxel[0])
        assert axial == pytest.approx(5.0, rel=2e-3)
        assert resolution.transaxial_fwhm_mm(r) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------- NEMA figures and presets
def test_from_nema_passes_through_the_1_cm_and_10_cm_figures() -> None:
    psf = recon.ImageResolution.from_nema(4.2, 4.6, transaxial_10cm_mm=5.1)
    assert psf.transaxial_fwhm_mm(10.0) == pytest.approx(4.2, rel=1e-12)
    assert psf.transaxial_fwhm_mm(100.0) == pytest.approx(5.1, rel=1e-12)
    assert psf.fwhm_axial_mm == 4.6 and psf.radially_varying
    constant = recon.ImageResolution.from_nema(4.2, 4.6)
    assert not constant.radially_varying and constant.transaxial_fwhm_mm(150.0) == 4.2
    with pytest.raises(recon.GeometryError, match="below the 1 cm"):
        recon.ImageResolution.from_nema(5.0, 5.0, transaxial_10cm_mm=4.0)


def _quadrature(radial: float, tangential: float) -> float:
    return math.sqrt((radial**2 + tangential**2) / 2.0)


def test_presets_carry_their_published_resolution() -> None:
    # Hsu et al. 2017 (Discovery MI, FBP): radial / tangential / axial at 1 cm and 10 cm.
    dmi = recon.PetScanner.preset("dmi4").resolution
    assert dmi is not None and dmi.radially_varying
    assert dmi.transaxial_fwhm_mm(10.0) == pytest.approx(_quadrature(4.10, 4.19), rel=1e-9)
    assert dmi.transaxial_fwhm_mm(100.0) == pytest.approx(_quadrature(5.47, 4.49), rel=1e-9)
    assert dmi.fwhm_axial_mm == 4.48
    # Prenosil et al. 2022 (Vision Quadra, same detectors): 3.3 / 3.4 / 3.8 mm.
    vision = recon.PetScanner.preset("vision").resolution
    assert vision is not None and not vision.radially_varying
    assert vision.fwhm_transaxial_mm == pytest.approx(_quadrature(3.3, 3.4), rel=1e-9)
    assert vision.fwhm_axial_mm == 3.8
    small = recon.PetScanner.preset("small").resolution
    assert small == recon.ImageResolution(5.0, fwhm_axial_mm=5.5)


def test_scanner_descriptions_keep_the_resolution() -> None:
    scanner = recon.PetScanner.preset("dmi4")
    fields = json.loads(json.dumps(asdict(scanner)))
    assert recon.PetScanner.from_dict(fields) == scanner
    del fields["resolution"]
    assert recon.PetScanner.from_dict(fields).resolution is None
    fields["resolution"] = {"fwhm_mm": 4.0}
    with pytest.raises(recon.GeometryError, match="resolution"):
        recon.PetScanner.from_dict(fields, where="scanner.json")
    fields["resolution"] = {"fwhm_transaxial_mm": -4.0}
    with pytest.raises(recon.GeometryError, match="scanner.json: fwhm_transaxial_mm"):
        recon.PetScanner.from_dict(fields, where="scanner.json")
    with pytest.raises(recon.GeometryError, match="ImageResolution"):
        recon.PetScanner(n_rings=2, crystals_per_ring=8, radius_mm=50.0, ring_spacing_mm=4.0,
                         resolution=4.0)  # fmt: skip


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fwhm_transaxial_mm": -1.0}, "fwhm_transaxial_mm"),
        ({"fwhm_transaxial_mm": float("nan")}, "fwhm_transaxial_mm"),
        ({"fwhm_transaxial_mm": "4"}, "fwhm_transaxial_mm"),
        ({"fwhm_transaxial_mm": 4.0, "fwhm_axial_mm": float("inf")}, "fwhm_axial_mm"),
        ({"fwhm_transaxial_mm": 4.0, "radius_mm": 100.0}, "needs both"),
        ({"fwhm_transaxial_mm": 4.0, "fwhm_transaxial_at_radius_mm": 5.0}, "needs both"),
        ({"fwhm_transaxial_mm": 4.0, "radius_mm": 0.0, "fwhm_transaxial_at_radius_mm": 5.0},
         "positive distance"),
        ({"fwhm_transaxial_mm": 4.0, "radius_mm": 100.0, "fwhm_transaxial_at_radius_mm": 3.0},
         "only lets the FWHM grow"),
        ({"fwhm_transaxial_mm": 0.0, "radius_mm": 100.0, "fwhm_transaxial_at_radius_mm": 3.0},
         "positive FWHM on the axis"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(recon.GeometryError, match=message):
        recon.ImageResolution(**kwargs)


def test_models_refuse_what_is_not_a_resolution_model_and_the_blur_checks_shapes() -> None:
    scanner = recon.PetScanner(n_rings=2, crystals_per_ring=32, radius_mm=60.0,
                               ring_spacing_mm=4.0)  # fmt: skip
    grid = recon.ImageGrid((3, 16, 16), 4.0)
    for build in (
        lambda: recon.PetSinogramModel(scanner, grid, resolution=4.5, device="cpu"),
        lambda: recon.PetListmodeModel(scanner, grid, resolution=4.5, device="cpu"),
    ):
        with pytest.raises(recon.GeometryError, match="ImageResolution"):
            build()
    with pytest.raises(recon.InputError, match=r"shape \(3, 16, 16\)"):
        recon.ImageResolution(4.0).bind(grid).apply(np.zeros((3, 16, 15), np.float32))
    # zero widths are no blur at all
    identity = recon.ImageResolution(0.0)
    x = np.random.default_rng(2).random(grid.shape, dtype=np.float32)
    np.testing.assert_array_equal(identity.apply(x, grid), x)


# ---------------------------------------------------------------------- inside the models
def _scene() -> tuple[recon.PetScanner, recon.ImageGrid]:
    scanner = recon.PetScanner(n_rings=3, crystals_per_ring=48, radius_mm=90.0,
                               ring_spacing_mm=6.0)  # fmt: skip
    return scanner, recon.ImageGrid((5, 16, 16), (6.0, 7.0, 7.0))


def test_the_sinogram_model_projects_the_blurred_image() -> None:
    """``P·G``, not ``G`` somewhere else: the model with the PSF projects what the model without
    it projects of the blurred image."""
    scanner, grid = _scene()
    psf = _RESOLUTIONS["radially growing"]
    plain = recon.PetSinogramModel(scanner, grid, use_tof=False, device="cpu")
    model = recon.PetSinogramModel(scanner, grid, use_tof=False, device="cpu", resolution=psf)
    x = np.random.default_rng(3).random(grid.shape, dtype=np.float32)
    np.testing.assert_allclose(
        np.asarray(model.forward(x)), np.asarray(plain.forward(psf.apply(x, grid))), rtol=1e-5,
        atol=1e-6,
    )  # fmt: skip


def test_the_listmode_sensitivity_is_the_blurred_back_projection_over_all_lors() -> None:
    """``Gᵀ Pᵀ m`` over every LOR of the layout, against the sinogram model's back projection of
    its factors (another route through the same LORs)."""
    scanner, grid = _scene()
    psf = _RESOLUTIONS["radially growing"]
    z, y, x = grid.meshgrid_mm()
    mu = np.where(np.hypot(x, y) < 40.0, 0.0096, 0.0)
    listmode = recon.PetListmodeModel(scanner, grid, mu_map=mu, use_tof=False, device="cpu",
                                      resolution=psf)  # fmt: skip
    sinogram = recon.PetSinogramModel(scanner, grid, mu_map=mu, use_tof=False, device="cpu",
                                      resolution=psf)  # fmt: skip
    expected = np.asarray(sinogram.back(np.ones(sinogram.data_shape, np.float32)))
    got = np.asarray(listmode.geometric_sensitivity())
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * expected.max())
    plain = recon.PetListmodeModel(scanner, grid, mu_map=mu, use_tof=False, device="cpu")
    assert np.abs(got - np.asarray(plain.geometric_sensitivity())).max() > 0.01 * got.max()


# ---------------------------------------------------------------------- recovery
def test_a_sphere_recovers_more_with_the_resolution_model() -> None:
    """Sinograms simulated with the blur G (8 mm transaxial, 5 mm axial FWHM on 4 mm voxels) and
    Poisson noise: 10 OSEM iterations without G converge towards G x, so the 16 mm sphere's mean
    recovery is that of the blurred sphere (the data hold no more); with G the model explains the
    blur and recovers a good part of what it spilled, without overshooting the true mean."""
    scanner = recon.PetScanner(n_rings=7, crystals_per_ring=64, radius_mm=80.0,
                               ring_spacing_mm=4.0)  # fmt: skip
    grid = recon.ImageGrid((7, 32, 32), 4.0)
    z, y, x = grid.meshgrid_mm()
    background = (np.hypot(x, y) < 44.0) & (np.abs(z) < 9.0)
    distance = np.sqrt(z**2 + y**2 + (x - 20.0) ** 2)
    sphere = distance < 8.0
    truth = np.where(sphere, 4.0, np.where(background, 1.0, 0.0)).astype(np.float32)
    psf = recon.ImageResolution(8.0, fwhm_axial_mm=5.0)
    with_psf = recon.PetSinogramModel(scanner, grid, use_tof=False, resolution=psf, device="cpu")
    without = recon.PetSinogramModel(scanner, grid, use_tof=False, device="cpu")
    expected = np.asarray(with_psf.forward(truth))
    scale = 2e6 / expected.sum()  # 2 million counts
    counts = np.random.default_rng(12).poisson(expected * scale).astype(np.float32)

    def recovery(image: np.ndarray) -> float:
        return float(image[sphere].mean()) / 4.0

    # What the data can give without G: the sphere blurred (scipy's own Gaussian filter).
    sigma_voxels = (5.0 / FWHM_PER_SIGMA / 4.0, 8.0 / FWHM_PER_SIGMA / 4.0,
                    8.0 / FWHM_PER_SIGMA / 4.0)  # fmt: skip
    blurred = scipy.ndimage.gaussian_filter(truth.astype(np.float64), sigma_voxels,
                                            mode="constant")  # fmt: skip
    spill = 1.0 - recovery(blurred)  # the partial-volume loss, about 0.28
    results = {}
    for name, model in (("without", without), ("with", with_psf)):
        image = recon.osem(model, counts, iterations=10, subsets=4, progress=False)
        values = np.asarray(image) / scale
        results[name] = recovery(values)
        quiet = background & (distance > 16.0) & (np.hypot(x, y) < 36.0) & (np.abs(z) < 5.0)
        assert float(values[quiet].mean()) == pytest.approx(1.0, abs=0.03)  # no global bias
        assert ("resolution_model" in image.info) == (model is with_psf)
    assert results["without"] == pytest.approx(recovery(blurred), abs=0.02)
    assert results["with"] - results["without"] >= 0.25 * spill
    assert results["with"] <= 1.03
