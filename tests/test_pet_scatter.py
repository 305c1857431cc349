"""Scatter estimation: tail fitting (recon/pet/tails.py), the estimator for every PET model kind
(recon/pet/scatter.py), the reconstruct → SSS → scale loop (recon/algorithms/additive.py) and the
TOF-resolved listmode additive term (PetListmodeModel.additive_rate).

The end-to-end study's scatter comes from the independent Monte Carlo of
tests/sss_monte_carlo.py, not from recon's single-scatter simulation.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import recon
from recon.pet.sss import ScatterDetectors, SingleScatterSimulation
from recon.pet.tails import fit_tail_scale, tail_mask
from tests import sss_monte_carlo as mc


# ------------------------------------------------------------------------------- tail fits
def _tail_problem(rng, n_planes=6, scale=0.7, tails_in=None):
    """Sinograms (plane, view, radial) with a body in the middle radial bins."""
    n_views, n_radial = 20, 41
    radial = np.arange(n_radial) - 20
    body = np.abs(radial) <= 10
    lines = np.broadcast_to(np.where(body, 1.0, 0.0), (n_planes, n_views, n_radial)).copy()
    if tails_in is not None:  # planes outside tails_in have the body everywhere (no tails)
        for p in range(n_planes):
            if p not in tails_in:
                lines[p] = 1.0
    shape = np.exp(-((radial / 15.0) ** 2)) * 50.0 * (1 + 0.3 * np.arange(n_planes))[:, None, None]
    shape = np.broadcast_to(shape, lines.shape).copy()
    trues = np.where(body, 400.0, 0.0) * np.ones_like(shape)
    randoms = np.full(lines.shape, 5.0)
    prompts = rng.poisson(scale * shape + trues + randoms).astype(np.float64)
    return lines, shape, randoms, prompts


def test_tail_mask_leaves_a_margin_around_the_body():
    lines = np.zeros((1, 1, 11))
    lines[0, 0, 4:7] = 0.5
    mask = tail_mask(lines, threshold=0.003, margin_bins=2)
    np.testing.assert_array_equal(mask[0, 0], [1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    with pytest.raises(recon.InputError, match="margin_bins"):
        tail_mask(lines, margin_bins=-1)


def test_tail_fit_recovers_a_known_scale():
    rng = np.random.default_rng(11)
    lines, shape, randoms, prompts = _tail_problem(rng, scale=0.7)
    mask = tail_mask(lines, margin_bins=1)
    fit = fit_tail_scale(prompts, shape, randoms, mask)
    assert fit.fallback is None and fit.methods == ["fit"] * 6 and not fit.notes
    # Each plane has about 360 tail bins of ~5-20 counts: a statistical error of about 2 %.
    np.testing.assert_allclose(fit.scales, 0.7, rtol=0.08)
    assert fit.global_scale == pytest.approx(0.7, rel=0.03)
    # One scale per group of planes: the groups share it.
    grouped = fit_tail_scale(prompts, shape, randoms, mask, plane_groups=[0, 0, 0, 1, 1, 1])
    assert grouped.scales[0] == grouped.scales[2] and grouped.scales[3] == grouped.scales[5]
    np.testing.assert_allclose(grouped.scales, 0.7, rtol=0.05)
    # Without the randoms the fit would be biased high: they are accounted for.
    biased = fit_tail_scale(prompts, shape, None, mask)
    assert biased.global_scale > 0.8


def test_tail_fit_is_non_negative_and_falls_back_with_a_report():
    rng = np.random.default_rng(12)
    # No scatter at all: the scale is 0, not negative.
    lines, shape, randoms, _ = _tail_problem(rng, scale=0.0)
    prompts = rng.poisson(np.where(lines > 0, 400.0, 0.0) + randoms * 0.5).astype(float)
    fit = fit_tail_scale(prompts, shape, randoms, tail_mask(lines))
    np.testing.assert_array_equal(fit.scales, 0.0)
    # Tails only in planes 1 and 4: the others take the global scale, and say so.
    lines, shape, randoms, prompts = _tail_problem(rng, scale=0.7, tails_in=(1, 4))
    fit = fit_tail_scale(prompts, shape, randoms, tail_mask(lines))
    assert fit.methods == ["global", "fit", "global", "global", "fit", "global"]
    assert fit.fallback == "global"
    assert any("4 of 6 plane groups" in note for note in fit.notes)
    assert fit.scales[0] == fit.global_scale == pytest.approx(0.7, rel=0.05)
    assert "fell back (global)" in fit.summary()
    # No tails anywhere (the body fills the field of view): the stated default.
    lines, shape, randoms, prompts = _tail_problem(rng, scale=0.7, tails_in=())
    fit = fit_tail_scale(prompts, shape, randoms, tail_mask(lines), default_scale=1.0)
    assert fit.methods == ["default"] * 6 and fit.global_scale is None
    np.testing.assert_array_equal(fit.scales, 1.0)
    assert any("default scale 1" in note for note in fit.notes)
    with pytest.raises(recon.InputError, match="share one"):
        fit_tail_scale(prompts, shape[:, :, :5], randoms, tail_mask(lines))


def test_pooled_tail_fit_is_less_noisy_and_stays_within_each_segment():
    """pool_planes = 1: each plane's scale from its own and its axial neighbours' tails in the
    same segment. At low counts the plane-to-plane scatter of the scales falls by about √3, the
    mean stays, and two segments with different scales are never mixed."""
    rng = np.random.default_rng(13)
    n_planes = 40  # two segments of 20 planes, interleaved in the plane order
    segments = np.arange(n_planes) % 2
    z_mm = (np.arange(n_planes) // 2) * 4.0
    truth = np.where(segments == 0, 0.5, 1.0)
    lines, shape, randoms, _ = _tail_problem(rng, n_planes=n_planes)
    low = shape * 0.02  # ~0.1-1 scatter counts per tail bin: a late, low-count scan
    expected = truth[:, None, None] * low + np.where(lines > 0, 50.0, 0.0) + 0.2 * randoms
    mask = tail_mask(lines, margin_bins=1)
    own, pooled = [], []
    for _ in range(8):
        prompts = rng.poisson(expected).astype(np.float64)
        alone = fit_tail_scale(prompts, low, 0.2 * randoms, mask)
        fit = fit_tail_scale(prompts, low, 0.2 * randoms, mask, pool_planes=1,
                             plane_segments=segments, plane_z_mm=z_mm)  # fmt: skip
        assert alone.fallback is None and fit.fallback is None and fit.pool_planes == 1
        own.append(alone.scales / truth)
        pooled.append(fit.scales / truth)
    own_arr, pooled_arr = np.array(own), np.array(pooled)
    # Interior planes pool three planes' tails: the noise falls by about √3.
    ratio = pooled_arr[:, 2:-2].std() / own_arr[:, 2:-2].std()
    assert 0.45 < ratio < 0.75, ratio
    # Unbiased, and each segment keeps its own scale (a mixed window would pull both to 0.75).
    for segment in (0, 1):
        mean = pooled_arr[:, segments == segment].mean()
        assert mean == pytest.approx(1.0, abs=0.05), (segment, mean)
    assert "within ±1" in fit.summary()


def test_pooled_tail_fit_windows_and_bad_settings():
    rng = np.random.default_rng(14)
    lines, shape, randoms, prompts = _tail_problem(rng, n_planes=6)
    mask = tail_mask(lines, margin_bins=1)
    segments, z_mm = np.zeros(6, int), np.array([0.0, 20.0, 4.0, 16.0, 8.0, 12.0])
    # A plane's window is its segment's planes nearest in z, not in index: plane 0 (z = 0) pools
    # plane 2 (z = 4), never plane 1 (z = 20); with a window reaching every plane, one scale.
    wide = fit_tail_scale(prompts, shape, randoms, mask, pool_planes=5, plane_segments=segments,
                          plane_z_mm=z_mm)  # fmt: skip
    assert np.ptp(wide.scales) < 1e-12
    narrow = fit_tail_scale(prompts, shape, randoms, mask, pool_planes=1,
                            plane_segments=segments, plane_z_mm=z_mm)  # fmt: skip
    by_hand = fit_tail_scale(prompts[[0, 2]], shape[[0, 2]], randoms[[0, 2]], mask[[0, 2]],
                             plane_groups=[0, 0])  # fmt: skip
    assert narrow.scales[0] == pytest.approx(by_hand.scales[0], rel=1e-12)
    for kwargs, message in (
        (dict(pool_planes=-1, plane_segments=segments, plane_z_mm=z_mm), ">= 0"),
        (dict(pool_planes=True, plane_segments=segments, plane_z_mm=z_mm), "whole number"),
        (dict(pool_planes=1), "plane_segments and plane_z_mm"),
        (dict(pool_planes=1, plane_segments=segments[:3], plane_z_mm=z_mm), "one finite value"),
        (dict(pool_planes=1, plane_segments=segments, plane_z_mm=z_mm, plane_groups=segments),
         "no plane_groups"),
    ):  # fmt: skip
        with pytest.raises(recon.InputError, match=message):
            fit_tail_scale(prompts, shape, randoms, mask, **kwargs)


# ----------------------------------------------------------------------- estimator contract
def _small_scene():
    scanner = recon.PetScanner.preset("small")
    grid = recon.ImageGrid((8, 32, 32), (8.0, 8.0, 8.0))
    z, y, x = grid.meshgrid_mm()
    body = ((x - 10.0) / 60.0) ** 2 + (y / 45.0) ** 2 <= 1
    mu = np.where(body, 0.0096, 0.0).astype(np.float32)
    activity = body.astype(np.float32) * 2.0
    return scanner, grid, mu, activity


def test_estimator_agrees_across_sinogram_lor_and_listmode_models(caplog):
    """The same scatter for the same lines whatever the model kind; listmode gets each prompt's
    TOF bin of the TOF sinogram estimate."""
    scanner, grid, mu, activity = _small_scene()
    common = dict(mu_map=mu, max_ring_difference=1, device="cpu")
    options = dict(fit="global", point_spacing_mm=30.0)
    tof_model = recon.PetSinogramModel(scanner, grid, use_tof=True, **common)
    rng = np.random.default_rng(5)
    expected = np.asarray(tof_model.forward(activity))
    level = 2e5 / expected.sum()  # 200 000 trues
    activity = activity * level
    expected = expected * level
    # A flat stand-in for scatter, so that the tails carry counts to fit.
    counts = rng.poisson(expected + 0.1 * expected.mean() + 0.2).astype(np.float32)
    randoms = np.full(tof_model.layout.shape, 0.2 * scanner.tof.n_bins, np.float32)
    tof_est = recon.pet.ScatterEstimation(tof_model, counts, randoms, **options)
    tof_scatter, tof_fit = tof_est.scatter_sinogram(activity)
    assert tof_scatter.shape == tof_model.data_shape
    additive = tof_est(activity)
    np.testing.assert_allclose(
        additive, tof_scatter + randoms[..., None] / scanner.tof.n_bins, rtol=1e-5
    )
    assert len(tof_est.rounds) == 1 and 0 < tof_est.rounds[0].scatter_fraction < 1

    # Non-TOF sinogram model with the same data summed over TOF: the TOF sum.
    model = recon.PetSinogramModel(scanner, grid, use_tof=False, **common)
    est = recon.pet.ScatterEstimation(model, counts.sum(-1), randoms, **options)
    scatter, fit = est.scatter_sinogram(activity)
    # (The TOF estimate loses what falls outside the TOF bins: a few 0.1 %.)
    assert fit.global_scale == pytest.approx(tof_fit.global_scale, rel=5e-3)
    np.testing.assert_allclose(scatter.sum(), tof_scatter.sum(), rtol=5e-3)

    # Explicit LORs (the layout's, as another program's sinogram): the same estimate, with the
    # energy window assumed and reported (no scanner).
    layout = model.layout
    xs, xe = layout.endpoints()
    parts = (xs[0, :, :, :2], xe[0, :, :, :2], xs[:, 0, 0, 2], xe[:, 0, 0, 2])
    lor_model = recon.PetLorSinogramModel.separable(*parts, grid, mu_map=mu, device="cpu")
    with caplog.at_level(logging.WARNING, logger="recon"):
        lor_est = recon.pet.ScatterEstimation(lor_model, counts.sum(-1), randoms, **options)
    assert "energy window or resolution unknown" in caplog.text
    lor_scatter, _ = lor_est.scatter_sinogram(activity)
    lor_est(activity)
    assert any("assumed 425-650 keV" in note for note in lor_est.rounds[0].notes)
    np.testing.assert_allclose(lor_scatter, scatter, rtol=1e-3, atol=1e-3 * scatter.max())

    # Listmode: the events of the same expected data; each prompt's rate is its TOF bin's.
    lm_model = recon.PetListmodeModel(scanner, grid, **common)
    background = np.full(tof_model.data_shape, 0.1 * expected.mean() + 0.2, np.float32)
    events = recon.pet.simulate_listmode(tof_model, activity, 1.0, rng, additive=background)
    histogram = recon.pet.histogram(events, layout)[0]
    lm_est = recon.pet.ScatterEstimation(
        lm_model, events, randoms, frame_start_s=0.0, frame_duration_s=1.0, **options
    )
    sino_est = recon.pet.ScatterEstimation(tof_model, histogram, randoms, **options)
    sino_scatter, sino_fit = sino_est.scatter_sinogram(activity)
    rate = np.asarray(lm_est(activity))
    assert lm_est.rounds[0].fit.global_scale == pytest.approx(sino_fit.global_scale, rel=1e-4)
    prompts = events.prompts()
    plane, view, radial, swapped, valid = layout.bins_of(prompts.crystal_a, prompts.crystal_b)
    signed = np.where(swapped, -prompts.tof_bin, prompts.tof_bin) + scanner.tof.max_bin
    exact = sino_scatter[plane, view, radial, signed] + 0.2  # randoms spread evenly
    np.testing.assert_allclose(rate[valid], exact[valid], rtol=2e-3)


def test_estimator_works_a_few_views_at_a_time(monkeypatch):
    """Large sinograms are handled in chunks of views: the same result as in one piece."""
    scanner, grid, mu, activity = _small_scene()
    model = recon.PetSinogramModel(
        scanner, grid, mu_map=mu, use_tof=False, max_ring_difference=1, device="cpu"
    )
    counts = np.ones(model.data_shape, np.float32)
    options = dict(fit="global", point_spacing_mm=40.0)
    whole = recon.pet.ScatterEstimation(model, counts, **options)
    monkeypatch.setattr("recon.pet.scatter._CHUNK_LORS", 5000)  # 3 views of 22 x 65 lines
    chunked = recon.pet.ScatterEstimation(model, counts, **options)
    np.testing.assert_array_equal(chunked.tails, whole.tails)
    np.testing.assert_array_equal(
        chunked.scatter_sinogram(activity)[0], whole.scatter_sinogram(activity)[0]
    )


def test_estimator_refuses_bad_input():
    scanner, grid, mu, activity = _small_scene()
    no_mu = recon.PetSinogramModel(scanner, grid, use_tof=False, max_ring_difference=0)
    counts = np.zeros(no_mu.data_shape, np.float32)
    with pytest.raises(recon.InputError, match="mu_map"):
        recon.pet.ScatterEstimation(no_mu, counts)
    model = recon.PetSinogramModel(scanner, grid, mu_map=mu, use_tof=False, max_ring_difference=0)
    with pytest.raises(recon.InputError, match="fit must be"):
        recon.pet.ScatterEstimation(model, counts, fit="view")
    with pytest.raises(recon.InputError, match="pool_planes must be >= 0"):
        recon.pet.ScatterEstimation(model, counts, pool_planes=-1)  # before any simulation
    with pytest.raises(recon.InputError, match="randoms have shape"):
        recon.pet.ScatterEstimation(model, counts, np.zeros((2, 2, 2)))
    with pytest.raises(recon.InputError, match="energy_window_kev"):
        recon.pet.ScatterEstimation(model, counts, energy_window_kev=(550.0, 650.0))
    with pytest.raises(recon.InputError, match="rounds"):
        recon.estimate_scatter(recon.pet.ScatterEstimation(model, counts), rounds=0)


# -------------------------------------------------------------- TOF-resolved listmode additive
def test_listmode_additive_rate_takes_a_tof_sinogram():
    scanner = recon.PetScanner.preset("small")
    grid = recon.ImageGrid((4, 16, 16), 10.0)
    model = recon.PetListmodeModel(scanner, grid, max_ring_difference=1, device="cpu")
    layout, tof = model.layout, scanner.tof
    tof_counts = np.zeros(layout.tof_shape)
    tof_counts[2, 5, 10] = np.arange(tof.n_bins)  # value = stored TOF index
    ca, cb = layout.crystals_of(2, 5, 10)
    events = recon.ListmodeEvents(
        crystal_a=[ca, cb, ca], crystal_b=[cb, ca, ca + 1], tof_bin=[3, 3, 0],
        time_ms=[0.0, 1.0, 2.0],
    )  # fmt: skip
    rate = np.asarray(model.additive_rate(events, tof_counts, 2.0))
    # Canonical order: bin +3 is index 3 + 9 = 12; reversed order: bin −3, index 6; the third
    # pair is another bin (0).
    np.testing.assert_allclose(rate, [12 / 2.0, 6 / 2.0, 0.0])
    # Non-TOF: spread evenly over the TOF bins, as before.
    flat = np.zeros(layout.shape)
    flat[2, 5, 10] = 19.0
    np.testing.assert_allclose(np.asarray(model.additive_rate(events, flat, 1.0))[:2], 1.0)
    with pytest.raises(recon.InputError, match="additive sinogram has shape"):
        model.additive_rate(events, np.zeros((*layout.shape, 3)), 1.0)


def test_exact_tof_scatter_term_is_unbiased_where_an_even_spread_is_not():
    """Listmode data with TOF-localised scatter: LM-OSEM with the TOF-resolved term recovers the
    activity; spreading the same scatter evenly over TOF bins biases the centre high."""
    scanner, grid, mu, _ = _small_scene()
    z, y, x = grid.meshgrid_mm()
    body = (x / 70.0) ** 2 + (y / 70.0) ** 2 <= 1
    mu = np.where(body, 0.0096, 0.0).astype(np.float32)
    common = dict(mu_map=mu, max_ring_difference=1, device="cpu")
    sino_model = recon.PetSinogramModel(scanner, grid, use_tof=True, **common)
    level = 2e5 / float(np.asarray(sino_model.forward(body.astype(np.float32))).sum())
    activity = (body * level).astype(np.float32)  # 200 000 trues
    sss = SingleScatterSimulation(
        grid, mu, ScatterDetectors.from_scanner(scanner), energy_window_kev=(425.0, 650.0),
        energy_resolution=0.12, tof=scanner.tof, point_spacing_mm=25.0, device="cpu",
    )  # fmt: skip
    xs, xe = sino_model.layout.endpoints()
    shape = np.asarray(sss.simulate(activity).at(xs, xe), np.float64)
    trues = np.asarray(sino_model.forward(activity), np.float64)
    scatter = shape * (0.6 * trues.sum() / shape.sum())  # a strong scatter fraction, 38 %
    rng = np.random.default_rng(21)
    events = recon.pet.simulate_listmode(sino_model, activity, 1.0, rng, additive=scatter)
    lm_model = recon.PetListmodeModel(scanner, grid, **common)
    centre = body & (x**2 + y**2 <= 30.0**2) & (np.abs(z) < 24)
    means = {}
    for name, term in (("exact", scatter), ("even", scatter.sum(-1))):
        rate = lm_model.additive_rate(events, term, 1.0)
        image = recon.lm_osem(
            lm_model, events, iterations=3, subsets=4, additive_rate=rate, frame_start_s=0.0,
            frame_duration_s=1.0, progress=False,
        )  # fmt: skip
        means[name] = float(np.asarray(image.data)[centre].mean()) / level
    assert means["exact"] == pytest.approx(1.0, abs=0.04)
    # Spread evenly, the scatter concentrated at the centre's TOF positions is under-subtracted
    # there (measured: +54 %; asserted: more than 20 %).
    assert means["even"] - 1.0 > 0.20


# ----------------------------------------------------------------------------- end to end
SPHERES = ((40.0, -5.0, 0.0, 18.5, 4.0), (-22.0, 10.0, 0.0, 18.5, 4.0))  # 37 mm, 4:1


def test_end_to_end_scatter_corrected_study_recovers_the_activity():
    """A study whose scatter is the Monte Carlo's: scatter-corrected OSEM is within 5 % in a
    large uniform region and 10 % in 37 mm spheres; without correction it is biased high."""
    scanner = recon.PetScanner.preset("small")
    grid = recon.ImageGrid((8, 48, 48), (8.0, 6.0, 6.0))
    phantom = mc.Phantom(cx=10.0, cy=-5.0, a=70.0, b=55.0, half_z=32.0)
    ring = mc.Ring(
        scanner.crystal_radius_mm, scanner.crystals_per_ring, scanner.n_rings,
        scanner.ring_spacing_mm,
    )  # fmt: skip
    events = mc.simulate(
        phantom, ring, 3_000_000, np.random.default_rng(7), (425.0, 650.0), 0.12,
        scanner.tof.sigma_mm, spheres=SPHERES,
    )  # fmt: skip
    mu = (mc.voxelise(phantom, grid) * float(mc.water_mu(np.array(511.0)))).astype(np.float32)
    activity = mc.voxelise(phantom, grid, spheres=SPHERES).astype(np.float32)
    # n_radial 95 reaches 135 mm from the axis, well past the body: tails to fit.
    model = recon.PetSinogramModel(
        scanner, grid, mu_map=mu, use_tof=False, n_radial=95, device="cpu"
    )
    layout = model.layout
    plane, view, radial, _, valid = layout.bins_of(events["crystal_a"], events["crystal_b"])
    mc_sinos = {}
    for name, sel in (("trues", ~events["scattered"]), ("scatter", events["scattered"])):
        sino = np.zeros(layout.shape)
        keep = valid & sel
        np.add.at(sino, (plane[keep], view[keep], radial[keep]), events["weight"][keep])
        mc_sinos[name] = sino
    trues = np.asarray(model.forward(activity), np.float64)
    counts_per_unit = 4e6 / trues.sum()  # 4 million trues
    scatter = mc_sinos["scatter"] * (trues.sum() / mc_sinos["trues"].sum()) * counts_per_unit
    randoms = np.full(layout.shape, 0.1 * 4e6 / np.prod(layout.shape))
    rng = np.random.default_rng(8)
    counts = rng.poisson(trues * counts_per_unit + scatter + randoms).astype(np.float32)
    truth = activity * counts_per_unit

    estimation = recon.pet.ScatterEstimation(model, counts, randoms)
    result = recon.estimate_scatter(
        estimation, rounds=3, iterations=3, subsets=8, first_iterations=4, progress=False
    )
    assert len(result.images) == 4 and len(result.reports) == 3
    assert result.reports[-1].fit.fallback is None
    # The default per-plane fit pools each plane's axial neighbours, and the report says so.
    assert result.reports[-1].fit.pool_planes == 1
    assert "within ±1" in result.reports[-1].fit.summary()

    z, y, x = grid.meshgrid_mm()
    uniform = (((x - 10.0) / 55.0) ** 2 + ((y + 5.0) / 40.0) ** 2 <= 1) & (np.abs(z) < 20)
    for sx, sy, sz, radius, _ in SPHERES:
        uniform &= (x - sx) ** 2 + (y - sy) ** 2 + (z - sz) ** 2 > (radius + 12.0) ** 2
    spheres = [
        (x - sx) ** 2 + (y - sy) ** 2 + (z - sz) ** 2 <= 12.0**2 for sx, sy, sz, *_ in SPHERES
    ]

    def recovery(image, region):
        return float(np.asarray(image.data)[region].mean() / truth[region].mean())

    assert recovery(result.image, uniform) == pytest.approx(1.0, abs=0.05)
    for region in spheres:
        assert recovery(result.image, region) == pytest.approx(1.0, abs=0.10)
    # The estimated scatter is the Monte Carlo's within 10 %.
    estimated = np.asarray(result.additive, np.float64) - randoms
    assert estimated.sum() == pytest.approx(scatter.sum(), rel=0.10)
    # Without scatter correction (round 0, randoms only) the uniform region is biased high by
    # about the scatter-to-trues ratio of the lines through it (the MC's 19 % on average; more
    # through the centre).
    ratio = scatter.sum() / (trues.sum() * counts_per_unit)
    bias = recovery(result.images[0], uniform) - 1.0
    assert 0.5 * ratio < bias < 2.0 * ratio
    assert abs(recovery(result.image, uniform) - 1.0) < bias / 4
