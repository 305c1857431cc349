"""Simultaneous dual-isotope SPECT (Tc-99m and In-111): one image per isotope from the windows
of both, the In-111 down-scatter into the Tc-99m window modelled (or, for comparison, ignored)."""

from __future__ import annotations

import numpy as np
import pytest

import recon
from recon.errors import InputError
from recon.physics.attenuation import mu_water_per_mm
from recon.physics.scatter import EnergyWindow
from recon.physics.windows import assign_windows

ACTIVITY = 200_000.0  # Bq/mL in each sphere
DOWNSCATTER = 0.4  # In-111 counts in the Tc-99m window per count in its 245 keV window
SENSITIVITY = {"Tc-99m": 60.0, "In-111": [40.0, 40.0]}  # cps/MBq per photopeak window


def _scene():
    grid = recon.ImageGrid((4, 32, 32), 6.0)
    geometry = recon.SpectGeometry.circular(
        n_views=32, radius_mm=150, n_u=32, n_v=4, pixel_size_mm=6.0, time_per_view_s=20.0
    )
    z, y, x = grid.meshgrid_mm()
    mu = np.where(np.hypot(x, y) < 75.0, mu_water_per_mm(140.5), 0.0).astype(np.float32)
    tc = np.where(np.hypot(x - 35, y) < 15, ACTIVITY, 0.0).astype(np.float32)
    indium = np.where(np.hypot(x + 35, y) < 15, ACTIVITY, 0.0).astype(np.float32)
    windows = {
        "TC": EnergyWindow.centered("TC", 140.5, 15.0),
        "IN171": EnergyWindow.centered("IN171", 171.3, 15.0),
        "IN245": EnergyWindow.centered("IN245", 245.4, 15.0),
    }
    assignment = assign_windows(windows, ["Tc-99m", "In-111"])
    # Regions around each sphere (sphere + 18 mm): the activity there, not the sphere's voxels,
    # so that the comparison does not depend on the resolution.
    near = {"Tc-99m": np.hypot(x - 35, y) < 33, "In-111": np.hypot(x + 35, y) < 33}
    return grid, geometry, mu, {"Tc-99m": tc, "In-111": indium}, assignment, near


def test_dual_isotope_recovers_each_isotope_and_models_the_crosstalk():
    """Expected: each isotope's image holds its own spheres' activity within 10 % and less than
    5 % of the other isotope's where that one's spheres are, when the down-scatter (40 % of the
    In-111 245 keV counts, scatter kernel 30 mm FWHM) is modelled; ignoring it, the Tc-99m image
    shows more than 5 % of the In-111 activity at the In-111 sphere, at most the
    count-conservation bound f · S_In / S_Tc = 0.27 (times 1.3 for the lower attenuation at
    245 keV). Measured (seed 5): recovery 0.98 (Tc-99m), 0.99 (In-111); leak 0.3 % modelled,
    10.9 % ignored."""
    grid, geometry, mu, truth, assignment, near = _scene()
    settings = dict(mu_map=mu, mu_energy_kev=140.5, collimator="ME",
                    sensitivity_cps_per_mbq=SENSITIVITY)  # fmt: skip
    full = recon.multi_isotope_model(
        geometry, grid, assignment, downscatter={("TC", "In-111"): DOWNSCATTER},
        downscatter_fwhm_mm=30.0, **settings,
    )  # fmt: skip
    naive = recon.multi_isotope_model(geometry, grid, assignment, **settings)
    assert full.windows == ("TC", "IN171", "IN245") and full.isotopes == ("Tc-99m", "In-111")
    stacked = np.concatenate([truth["Tc-99m"], truth["In-111"]])
    mean = np.asarray(full.forward(stacked), np.float64)
    counts = np.random.default_rng(5).poisson(mean).astype(np.float32)
    leaks = {}
    for name, model in (("full", full), ("naive", naive)):
        image = recon.osem(model, counts, iterations=6, subsets=8, progress=False)
        parts = model.split(image)
        assert parts["In-111"].isotope == "In-111" and parts["In-111"].units == "Bq/mL"
        tc, indium = (np.asarray(parts[k].data) for k in ("Tc-99m", "In-111"))
        for iso, img in (("Tc-99m", tc), ("In-111", indium)):
            recovery = img[near[iso]].sum() / truth[iso].sum()
            assert recovery == pytest.approx(1.0, abs=0.10), (name, iso, recovery)
        leaks[name] = tc[near["In-111"]].sum() / truth["In-111"].sum()
        assert indium[near["Tc-99m"]].sum() / truth["Tc-99m"].sum() < 0.05  # no up-scatter
    bound = DOWNSCATTER * SENSITIVITY["In-111"][1] / SENSITIVITY["Tc-99m"] * 1.3
    assert leaks["full"] < 0.05
    assert 0.05 < leaks["naive"] < bound, leaks


def test_down_scatter_is_in_the_window_below_only():
    """The modelled down-scatter adds counts to the Tc-99m window only, in the proportion
    given: the In-111 image's counts in the TC window are DOWNSCATTER times its counts in its
    245 keV window when both see the same attenuation and the kernel keeps the total."""
    grid, geometry, _, truth, assignment, _ = _scene()
    model = recon.multi_isotope_model(
        geometry, grid, assignment, sensitivity_cps_per_mbq=SENSITIVITY,
        downscatter={("TC", "In-111"): DOWNSCATTER}, downscatter_fwhm_mm=30.0,
    )  # fmt: skip
    only_in = np.concatenate([np.zeros_like(truth["In-111"]), truth["In-111"]])
    counts = np.asarray(model.forward(only_in), np.float64).sum(axis=(1, 2, 3))
    assert counts[0] == pytest.approx(DOWNSCATTER * counts[2], rel=1e-3)


def test_bad_multi_isotope_settings_are_refused():
    grid, geometry, _, _, assignment, _ = _scene()
    with pytest.raises(InputError, match="every isotope"):
        recon.multi_isotope_model(geometry, grid, assignment,
                                  sensitivity_cps_per_mbq={"Tc-99m": 60.0})  # fmt: skip
    with pytest.raises(InputError, match="not one of"):
        recon.multi_isotope_model(geometry, grid, assignment,
                                  sensitivity_cps_per_mbq={"I-131": 60.0})  # fmt: skip
    with pytest.raises(InputError, match="downscatter_fwhm_mm"):
        recon.multi_isotope_model(geometry, grid, assignment,
                                  downscatter={("TC", "In-111"): 0.3})  # fmt: skip
    with pytest.raises(InputError, match="the windows are"):
        recon.multi_isotope_model(geometry, grid, assignment, downscatter_fwhm_mm=20.0,
                                  downscatter={("NOPE", "In-111"): 0.3})  # fmt: skip


def test_dicom_dual_isotope_windows_are_assigned(tmp_path):
    """A synthetic NM file of a simultaneous Tc-99m + In-111 acquisition with seven windows:
    each is assigned (photopeak of which isotope, scatter window, unused)."""
    from recon.io.dicom_nm import assign_nm_windows, read_nm_projections
    from tests.dicom_factory import nm_tomo_dataset, save

    windows = (("TC", 129.9, 151.1), ("TC_SC", 120.0, 129.9), ("IN171", 158.5, 184.1),
               ("IN171_SC", 184.1, 195.0), ("IN245", 227.0, 263.8), ("IN245_SC", 263.8, 280.0),
               ("XRAY", 20.0, 35.0))  # fmt: skip
    frames = np.random.default_rng(0).poisson(5.0, (len(windows), 1, 8, 4, 8)).astype(np.uint16)
    ds = nm_tomo_dataset(frames, angular_step_deg=45.0, windows=windows)  # file names Tc-99m
    path = save(ds, tmp_path / "dual.dcm")
    _, _, metadata = read_nm_projections(path)
    own = metadata["window_assignment"]
    assert [p.name for p in own.peaks] == ["TC"]
    a = assign_nm_windows(metadata, ["Tc-99m", "In-111"])
    roles = {p.name: (p.isotope, p.lower_scatter, p.upper_scatter) for p in a.peaks}
    assert roles == {
        "TC": ("Tc-99m", "TC_SC", None),
        "IN171": ("In-111", None, "IN171_SC"),
        "IN245": ("In-111", None, "IN245_SC"),
    }
    assert set(a.scatter) == {"TC_SC", "IN171_SC", "IN245_SC"}
    assert list(a.unused) == ["XRAY"]
    np.testing.assert_array_equal(metadata["windows"]["IN245"][1].sum(), frames[4].sum())


def test_terms_share_one_attenuation_cache_budget(monkeypatch):
    """The three photopeak windows get a third of one budget each (together never more than a
    single model would take), and the down-scatter term uses its isotope's main-line factors
    (the same array): same projections as with its own."""
    grid, geometry, mu, _, assignment, _ = _scene()
    one = recon.SpectModel(geometry, grid, mu_map=mu, device="cpu")
    per_view = 4 * one.n_depth * geometry.n_u * grid.shape[0]
    monkeypatch.setattr("recon.spect.model.available_memory_bytes", lambda: 4 * 32 * per_view)
    model = recon.multi_isotope_model(
        geometry, grid, assignment, mu_map=mu, device="cpu",
        downscatter={("TC", "In-111"): DOWNSCATTER}, downscatter_fwhm_mm=30.0,
    )  # fmt: skip
    assert [t[2].attenuation_cached_views for t in model.terms] == [10, 10, 10, 10]
    own, down = model.terms[2][2], model.terms[3][2]  # In-111's 245 keV term (main line)
    assert down._att_cache is own._att_cache
    alone = recon.SpectModel(
        geometry, grid, mu_map=down._mu, collimator=down.collimator, isotope="In-111",
        sensitivity_cps_per_mbq=down.sensitivity_cps_per_mbq, device="cpu",
        attenuation_cache_bytes=10 * per_view,
    )  # fmt: skip
    x = np.random.default_rng(3).uniform(0.0, 1.0, grid.shape).astype(np.float32)
    np.testing.assert_array_equal(down.forward(x), alone.forward(x))
    with pytest.raises(recon.InputError, match="attenuation_from"):
        recon.SpectModel(geometry, grid, mu_map=mu * 2, device="cpu", attenuation_from=own)
