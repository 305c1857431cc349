"""Single-scatter simulation (recon/pet/sss.py, kernels/sss.cu, recon/physics/compton.py).

The reference is an independent single-scatter Monte Carlo (tests/sss_monte_carlo.py): its own
photon transport in an analytic off-centre water ellipse, Klein–Nishina sampling, ring geometry
and sampled energy and timing blurs. SSS and MC are both normalised to their own true
coincidences (the projector's attenuated line integrals against the MC's unscattered pairs), so
the comparison is of the scatter-to-trues ratio, bin by bin, which is what scatter correction
needs; the MC trues are first checked against the projector.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import recon
from recon.pet.sss import CoarseScatter, ScatterDetectors, SingleScatterSimulation
from recon.physics import compton
from recon.physics.attenuation import water_mu_per_mm
from tests import sss_monte_carlo as mc
from tests.cuda_compat.build import gxx_available

WINDOW = (425.0, 650.0)
RESOLUTION = 0.12
N_DECAYS = 3_000_000  # about 15 s; gives about 145 000 weighted single scatters


# ------------------------------------------------------------------------------------ physics
def test_klein_nishina_against_its_integral_and_published_values():
    # Total cross-section at 511 keV: 0.2867 b (Evans 1955; NIST XCOM incoherent for a free
    # electron); 1 b = 1e-22 mm^2.
    assert compton.klein_nishina_total(511.0) == pytest.approx(0.2867e-22, rel=2e-3)
    # The closed form equals the differential cross-section integrated numerically.
    for energy in (140.0, 340.0, 511.0):
        c = np.linspace(-1, 1, 20001)
        integral = 2 * math.pi * np.trapezoid(compton.klein_nishina(energy, c), c)
        assert compton.klein_nishina_total(energy) == pytest.approx(integral, rel=1e-6)
    # Thomson limit forward: r_e^2 per steradian at cos θ = 1.
    assert compton.klein_nishina(511.0, 1.0) == pytest.approx(
        compton.CLASSICAL_ELECTRON_RADIUS_MM**2
    )
    # Compton: a 511 keV photon backscattered keeps 511/3 keV; at 90 degrees 255.5 keV.
    assert compton.scattered_energy_kev(511.0, -1.0) == pytest.approx(510.999 / 3, rel=1e-4)
    assert compton.scattered_energy_kev(511.0, 0.0) == pytest.approx(255.5, rel=1e-3)


def test_water_attenuation_at_scattered_energies_is_nists():
    # NIST XCOM / SRD 126, water, total with coherent: 0.1186 cm^2/g at 300 keV, 0.09687 at
    # 500 keV, 0.1061 at 400 keV.
    assert water_mu_per_mm(300.0) == pytest.approx(0.01186, rel=5e-3)
    assert water_mu_per_mm(400.0) == pytest.approx(0.01061, rel=5e-3)
    assert water_mu_per_mm(500.0) == pytest.approx(0.009687, rel=5e-3)
    assert compton.attenuation_scale_water(511.0) == pytest.approx(1.0)
    assert compton.attenuation_scale_water(300.0) == pytest.approx(0.1186 / 0.09598, rel=1e-2)


def test_window_efficiency_is_the_gaussian_response_sampled():
    rng = np.random.default_rng(3)
    for energy in (511.0, 450.0, 400.0):
        sigma = RESOLUTION * 511.0 * math.sqrt(energy / 511.0) / 2.3548200450309493
        measured = energy + sigma * rng.standard_normal(400_000)
        sampled = np.mean((measured >= WINDOW[0]) & (measured <= WINDOW[1]))
        assert compton.window_efficiency(energy, *WINDOW, RESOLUTION) == pytest.approx(
            sampled, abs=3e-3
        )
    with pytest.raises(recon.PhysicsError, match="window"):
        compton.window_efficiency(511.0, 600.0, 500.0, 0.1)


# ------------------------------------------------------------------------- against the MC
def _sinogram(events, layout, tof):
    plane, view, radial, swapped, valid = layout.bins_of(events["crystal_a"], events["crystal_b"])
    signed = np.round(events["tof_mm"] / tof.bin_width_mm).astype(np.int64)
    signed = np.where(swapped, -signed, signed)
    valid &= np.abs(signed) <= tof.max_bin
    out = {}
    for name, sel in (("trues", ~events["scattered"]), ("scatter", events["scattered"])):
        sino = np.zeros(layout.tof_shape)
        keep = valid & sel
        index = (plane[keep], view[keep], radial[keep], signed[keep] + tof.max_bin)
        np.add.at(sino, index, events["weight"][keep])
        out[name] = sino
    return out


@pytest.fixture(scope="module")
def mc_study():
    scanner = recon.PetScanner.preset("small")
    grid = recon.ImageGrid((8, 40, 40), (8.0, 6.0, 6.0))  # z within the rings' ±32 mm
    phantom = mc.Phantom(cx=15.0, cy=-10.0, a=85.0, b=60.0, half_z=32.0)
    ring = mc.Ring(
        scanner.crystal_radius_mm,
        scanner.crystals_per_ring,
        scanner.n_rings,
        scanner.ring_spacing_mm,
    )
    events = mc.simulate(
        phantom, ring, N_DECAYS, np.random.default_rng(2024), WINDOW, RESOLUTION,
        scanner.tof.sigma_mm,
    )  # fmt: skip
    layout = recon.SinogramLayout(scanner)
    sinos = _sinogram(events, layout, scanner.tof)
    fraction = mc.voxelise(phantom, grid)
    mu = (fraction * float(mc.water_mu(np.array(511.0)))).astype(np.float32)
    activity = fraction.astype(np.float32)
    model = recon.PetSinogramModel(scanner, grid, mu_map=mu, use_tof=True, device="cpu")
    trues = np.asarray(model.forward(activity), np.float64)
    kappa = sinos["trues"].sum() / trues.sum()  # MC counts per unit of projected trues
    return dict(
        scanner=scanner, grid=grid, layout=layout, mu=mu, activity=activity, sinos=sinos,
        trues=trues * kappa, kappa=kappa,
    )  # fmt: skip


def _simulate(study, tof):
    scanner = study["scanner"]
    sss = SingleScatterSimulation(
        study["grid"], study["mu"], ScatterDetectors.from_scanner(scanner),
        energy_window_kev=WINDOW, energy_resolution=RESOLUTION, tof=tof,
        point_spacing_mm=12.0, seed=5, device="cpu",
    )  # fmt: skip
    xs, xe = study["layout"].endpoints()
    return np.asarray(sss.simulate(study["activity"]).at(xs, xe), np.float64) * study["kappa"]


def _radial_profiles(sino):
    """Radial profiles (groups of 5 bins) in four view quadrants, summed over planes."""
    n_views = sino.shape[1]
    q = n_views // 4
    rows = []
    for k in range(4):
        profile = sino[:, k * q : (k + 1) * q].sum(axis=(0, 1))
        rows.append(profile[:60].reshape(12, 5).sum(axis=1))
    return np.array(rows)


def test_monte_carlo_trues_match_the_projector(mc_study):
    """The MC's ring and phantom agree with recon's projector (so its scatter can be trusted)."""
    mc_true = mc_study["sinos"]["trues"].sum(axis=-1)
    model = mc_study["trues"].sum(axis=-1)
    a, b = _radial_profiles(mc_true), _radial_profiles(model)
    assert np.all(np.abs(a - b) <= 0.05 * b.max())


def test_non_tof_sss_matches_the_monte_carlo(mc_study):
    estimate = _simulate(mc_study, None)
    truth = mc_study["sinos"]["scatter"].sum(axis=-1)
    # The MC's scatter fraction for this 17 cm water ellipse is about 17 % (a sanity check).
    fraction = truth.sum() / (truth.sum() + mc_study["sinos"]["trues"].sum())
    assert 0.10 < fraction < 0.25
    assert estimate.sum() == pytest.approx(truth.sum(), rel=0.10)
    a, b = _radial_profiles(estimate), _radial_profiles(truth)
    # Shape within 15 % where the profile carries signal (a quarter of its peak or more, where
    # the MC's own noise is under 3 %), and within 15 % of the peak in the low tails.
    strong = b >= 0.25 * b.max(axis=1, keepdims=True)
    assert np.all(np.abs(a - b)[strong] <= 0.15 * b[strong])
    assert np.all(np.abs(a - b) <= 0.15 * b.max(axis=1, keepdims=True))


def test_tof_sss_matches_the_monte_carlo(mc_study):
    estimate = _simulate(mc_study, mc_study["scanner"].tof)
    truth = mc_study["sinos"]["scatter"]
    assert estimate.sum() == pytest.approx(truth.sum(), rel=0.10)
    # The TOF estimate holds the non-TOF estimate split over the bins.
    non_tof = _simulate(mc_study, None)
    assert estimate.sum() == pytest.approx(non_tof.sum(), rel=0.01)
    n_views = truth.shape[1]
    q = n_views // 4
    for k in range(4):  # the off-centre ellipse shifts the TOF distribution per view quadrant
        a = estimate[:, k * q : (k + 1) * q].sum(axis=(0, 1, 2))
        b = truth[:, k * q : (k + 1) * q].sum(axis=(0, 1, 2))
        a, b = a / a.sum(), b / b.sum()
        strong = b >= 0.05
        assert np.all(np.abs(a - b)[strong] <= 0.15 * b[strong])
        assert np.all(np.abs(a - b) <= 0.15 * b.max())
        # The mean TOF position (in bins) agrees within a tenth of a bin.
        centres = np.arange(a.size)
        assert (a * centres).sum() == pytest.approx((b * centres).sum(), abs=0.1)
    # Summed over TOF and quadrants the TOF estimate matches as the non-TOF one does.
    ra, rb = _radial_profiles(estimate.sum(-1)), _radial_profiles(truth.sum(-1))
    assert np.all(np.abs(ra - rb) <= 0.15 * rb.max(axis=1, keepdims=True))


# ------------------------------------------------------------------------------ the result
def test_coarse_scatter_interpolates_and_orients_tof():
    detectors = ScatterDetectors(100.0, 8, (0.0, 10.0))
    tof = recon.Tof(fwhm_ps=300.0, n_bins=3, bin_width_ps=200.0)
    table = np.zeros((16, 16, 3), np.float32)
    table[0, 8] = [1.0, 2.0, 3.0]  # detector 0: angle 0, z 0; detector 8: angle π, z 0
    table[8, 0] = [3.0, 2.0, 1.0]
    table[1, 9] = [5.0, 5.0, 5.0]  # detector 1: angle 0, z 10; detector 9: angle π, z 10
    coarse = CoarseScatter(detectors, table, tof, np)
    a, b = np.array([[100.0, 0, 0]]), np.array([[-100.0, 0, 0]])
    np.testing.assert_allclose(coarse.at(a, b)[0], [1, 2, 3])
    np.testing.assert_allclose(coarse.at(b, a)[0], [3, 2, 1])
    np.testing.assert_allclose(coarse.at(a, b, np.array([1]))[0], 3.0)
    # Both ends halfway in z: the mean of the four ring pairs (0-8, 0-9, 1-8, 1-9; two are 0).
    mid_a, mid_b = np.array([[100.0, 0, 5.0]]), np.array([[-100.0, 0, 5.0]])
    np.testing.assert_allclose(coarse.at(mid_a, mid_b)[0], [1.5, 1.75, 2.0])
    np.testing.assert_allclose(coarse.nontof().at(a, b), [6.0])
    with pytest.raises(recon.InputError, match="tof_bin"):
        coarse.at(a, b, np.array([2]))


def test_sss_refuses_bad_input():
    grid = recon.ImageGrid((2, 10, 10), 10.0)
    detectors = ScatterDetectors(150.0, 8, (0.0,))
    common = dict(energy_window_kev=WINDOW, energy_resolution=RESOLUTION, device="cpu")
    with pytest.raises(recon.InputError, match="no voxel above"):
        SingleScatterSimulation(grid, np.zeros(grid.shape, np.float32), detectors, **common)
    with pytest.raises(recon.PhysicsError, match="accepts no 511 keV"):
        SingleScatterSimulation(
            grid, np.full(grid.shape, 0.0096, np.float32), detectors,
            energy_window_kev=(300.0, 350.0), energy_resolution=0.05, device="cpu",
        )  # fmt: skip
    with pytest.raises(recon.GeometryError, match="n_phi"):
        ScatterDetectors(150.0, 4, (0.0,))
    sss = SingleScatterSimulation(
        grid, np.full(grid.shape, 0.0096, np.float32), detectors, **common
    )
    with pytest.raises(recon.InputError, match="non-negative"):
        sss.simulate(-np.ones(grid.shape, np.float32))


# --------------------------------------------------------------------------------- kernels
@pytest.mark.skipif(not gxx_available(), reason="g++ is needed to run the CUDA source")
@pytest.mark.parametrize("use_tof", [False, True], ids=["non-TOF", "TOF"])
def test_cuda_source_matches_numba(monkeypatch, use_tof):
    """kernels/sss.cu through the CuPy launcher (compiled by g++ on the CPU) equals numba."""
    from tests.cuda_compat import fake_cupy

    monkeypatch.setattr("recon.pet._gpu.get_kernel", fake_cupy.fake_get_kernel)
    monkeypatch.setattr("recon.pet._sss_gpu.get_kernel", fake_cupy.fake_get_kernel)
    scanner = recon.PetScanner.preset("small")
    grid = recon.ImageGrid((4, 16, 16), (16.0, 12.0, 12.0))
    z, y, x = grid.meshgrid_mm()
    body = (x / 80.0) ** 2 + ((y - 10.0) / 60.0) ** 2 <= 1
    mu = np.where(body, 0.0096, 0.0).astype(np.float32)
    rng = np.random.default_rng(4)
    activity = (body * rng.uniform(0.5, 1.5, grid.shape)).astype(np.float32)
    detectors = ScatterDetectors.from_scanner(scanner, n_phi=16, axial_spacing_mm=40.0)
    tof = scanner.tof if use_tof else None
    out = []
    for device in (fake_cupy.FakeGpuBackend(), "cpu"):
        sss = SingleScatterSimulation(
            grid, mu, detectors, energy_window_kev=WINDOW, energy_resolution=RESOLUTION,
            tof=tof, point_spacing_mm=40.0, device=device,
        )  # fmt: skip
        out.append(np.asarray(sss.simulate(activity).table, np.float64))
    gpu, cpu = out
    assert cpu.sum() > 0
    # float32 in CUDA against float64 in numba.
    assert np.linalg.norm(gpu - cpu) <= 1e-4 * np.linalg.norm(cpu)


@pytest.mark.gpu
def test_gpu_sss_matches_cpu():
    scanner = recon.PetScanner.preset("small")
    grid = recon.ImageGrid((4, 16, 16), (16.0, 12.0, 12.0))
    z, y, x = grid.meshgrid_mm()
    body = (x / 80.0) ** 2 + (y / 60.0) ** 2 <= 1
    mu = np.where(body, 0.0096, 0.0).astype(np.float32)
    activity = body.astype(np.float32)
    detectors = ScatterDetectors.from_scanner(scanner, n_phi=16, axial_spacing_mm=40.0)
    out = []
    for device in ("gpu", "cpu"):
        sss = SingleScatterSimulation(
            grid, mu, detectors, energy_window_kev=WINDOW, energy_resolution=RESOLUTION,
            tof=scanner.tof, point_spacing_mm=40.0, device=device,
        )  # fmt: skip
        table = sss.simulate(activity).table
        out.append(np.asarray(sss.backend.to_host(table), np.float64))
    assert np.linalg.norm(out[0] - out[1]) <= 1e-4 * np.linalg.norm(out[1])
