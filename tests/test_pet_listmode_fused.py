"""The fused listmode EM subset on the CPU (forward, ratio and back projection in one walk per
event) against the two-pass path it replaces, and the one-pass CPU EM update against numpy's."""

from __future__ import annotations

import numpy as np
import pytest

import recon
from recon.algorithms.em import em_reconstruct
from recon.algorithms.em_update import MAX_RATIO, SMALLEST_NORMAL, em_apply, em_ratio
from recon.algorithms.priors import sensitivity_kappa
from recon.pet import simulate_listmode
from recon.simulate.phantoms import uniform_cylinder

# The fused kernel computes each event's samples with the two-pass kernels' helpers and rounds
# the ratio as they do; only float64 products are grouped differently and float32 partial images
# are summed in another order. Sums of a few hundred float32 terms: 1e-5 relative is generous
# against their ~1e-6 spread and far below anything a wrong weight, sample or ratio gives.
RTOL = 1e-5


def _scanner(tof: bool) -> recon.PetScanner:
    return recon.PetScanner(
        n_rings=4, crystals_per_ring=96, radius_mm=120.0, ring_spacing_mm=4.0,
        tof=recon.Tof(fwhm_ps=400.0, n_bins=25, bin_width_ps=110.0) if tof else None,
    )  # fmt: skip


def _problem(tof: bool, seed: int = 0, **model_kwargs):
    grid = recon.ImageGrid((6, 36, 36), 4.0)
    activity = uniform_cylinder(grid, radius_mm=50, length_mm=20, value=1.0)
    mu = (0.0096 * (activity > 0.5)).astype(np.float32)
    scanner = _scanner(tof)
    simulator = recon.PetSinogramModel(scanner, grid, mu_map=mu, device="cpu")
    scale = np.float32(6000.0 / float(simulator.forward(activity).sum()))
    events = simulate_listmode(simulator, activity * scale, 1.0, np.random.default_rng(seed))
    model = recon.PetListmodeModel(scanner, grid, mu_map=mu, device="cpu", **model_kwargs)
    return grid, events, model


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _count_fused_calls(frame) -> list:
    """Wrap the frame's fused pass so that each call appends to the returned list."""
    calls: list = []
    fused_pass = frame.ratio_back

    def counted(*args):
        calls.append(1)
        return fused_pass(*args)

    frame.ratio_back = counted
    return calls


@pytest.mark.parametrize("tof", [True, False], ids=["tof", "non-tof"])
@pytest.mark.parametrize("with_additive", [False, True], ids=["no-additive", "additive"])
def test_fused_subset_equals_forward_ratio_back(tof, with_additive):
    grid, events, model = _problem(tof)
    rng = np.random.default_rng(1)
    n = events.n_events
    additive = rng.uniform(0.0, 2e-3, n) if with_additive else None
    frame = model.frame(events, 0.0, 1.0, additive_rate=additive)
    x = rng.uniform(0.2, 1.0, grid.shape).astype(np.float32)
    x[:, :4] = 0.0  # zero voxels: events through them only
    subsets = frame.subsets(3)
    assert frame.n_prompts > 1000
    for subset in subsets:
        y = frame.take(frame.counts(), subset)
        a = None if frame.additive is None else frame.take(frame.additive, subset)
        expected = frame.forward(x, subset)
        if a is not None:
            expected = expected + a
        reference = frame.back(em_ratio(np, expected, y), subset)
        fused = frame.ratio_back(x, subset, y, a, MAX_RATIO, SMALLEST_NORMAL)
        assert fused.dtype == np.float32 and fused.shape == grid.shape
        assert float(reference.max()) > 0
        assert _rel(fused, reference) < RTOL


def test_fused_subset_without_subsets_takes_the_given_order():
    """``subset=None`` takes counts and additive in the given order of the prompts, as
    :meth:`ListmodeFrame.back` does, although the events are stored in subset order."""
    grid, events, model = _problem(True, seed=2)
    rng = np.random.default_rng(3)
    frame = model.frame(events, 0.0, 1.0, additive_rate=rng.uniform(0, 1e-3, events.n_events))
    frame.subsets(4)  # stores the events reordered
    x = rng.uniform(0.2, 1.0, grid.shape).astype(np.float32)
    y = rng.uniform(0.5, 2.0, frame.n_prompts).astype(np.float32)  # distinct per event
    expected = frame.forward(x) + frame.additive
    reference = frame.back(em_ratio(np, expected, y))
    fused = frame.ratio_back(x, None, y, frame.additive, MAX_RATIO, SMALLEST_NORMAL)
    assert _rel(fused, reference) < RTOL


def test_fused_subset_with_a_resolution_model():
    blur = recon.ImageResolution(fwhm_transaxial_mm=6.0)
    grid, events, model = _problem(True, seed=5, resolution=blur)
    frame = model.frame(events, 0.0, 1.0)
    subset = frame.subsets(2)[1]
    x = np.random.default_rng(6).uniform(0.2, 1.0, grid.shape).astype(np.float32)
    y = frame.take(frame.counts(), subset)
    reference = frame.back(em_ratio(np, frame.forward(x, subset), y), subset)
    fused = frame.ratio_back(x, subset, y, None, MAX_RATIO, SMALLEST_NORMAL)
    assert _rel(fused, reference) < RTOL


def test_fused_ratio_is_guarded_like_em_ratio():
    """An estimate of zero along every event's LOR: each ratio is capped at MAX_RATIO (em_ratio's
    floor ``y / MAX_RATIO``), so the correction is MAX_RATIO times the events' back projection,
    finite, as in the two-pass path."""
    grid, events, model = _problem(True, seed=7)
    frame = model.frame(events, 0.0, 1.0)
    subset = frame.subsets(1)[0]
    x = np.zeros(grid.shape, np.float32)
    y = frame.take(frame.counts(), subset)
    fused = frame.ratio_back(x, subset, y, None, MAX_RATIO, SMALLEST_NORMAL)
    capped = frame.back(np.full(frame.n_prompts, MAX_RATIO, np.float32), subset)
    assert np.all(np.isfinite(fused))
    assert _rel(fused, capped) < RTOL


def test_lm_osem_with_and_without_the_fused_pass_agree():
    """The EM loop takes the fused pass when the frame offers it; refusing it (a GPU frame
    returns None) runs forward and back instead, to the same image."""
    _, events, model = _problem(True, seed=8)
    frame = model.frame(events, 0.0, 1.0)
    order = frame.subsets(4)
    counts = frame.counts()
    calls = _count_fused_calls(frame)
    fused = np.asarray(em_reconstruct(frame, counts, None, order, 2, "LM-OSEM", progress=False))
    assert len(calls) == 2 * len(order)
    frame.ratio_back = lambda *args: None
    two_pass = np.asarray(em_reconstruct(frame, counts, None, order, 2, "LM-OSEM", progress=False))
    assert float(two_pass.max()) > 0
    assert _rel(fused, two_pass) < 1e-4  # two iterations of RTOL-level differences, compounded


def test_one_pass_cpu_update_is_numpys_to_the_bit():
    rng = np.random.default_rng(9)
    shape = (5, 7, 9)
    x = rng.uniform(0.0, 2.0, shape).astype(np.float32)
    correction = rng.uniform(0.0, 3.0, shape).astype(np.float32)
    inv_sens = rng.uniform(0.0, 1.0, shape).astype(np.float32)
    x.flat[:5] = 0.0  # kept at 0 whatever the correction
    correction.flat[5:10] = 1e-30  # products below the smallest normal float32 become 0
    inv_sens.flat[5:10] = 1e-12
    correction.flat[10] = np.nan  # NaN kept for check_finite
    correction.flat[11] = np.inf
    with np.errstate(over="ignore", invalid="ignore"):
        expected = (x * correction) * inv_sens
    gone = (expected < SMALLEST_NORMAL) | (x == 0)
    expected[gone] = 0.0
    got = em_apply(np, x, correction, inv_sens)
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got.flat[10]) and np.isinf(got.flat[11])
    assert np.all(got.flat[5:10] == 0.0)
    # Not float32 images: numpy computes it.
    np.testing.assert_array_equal(
        em_apply(np, x, correction.astype(np.float64), inv_sens), expected
    )


def test_lm_bsrem_takes_the_fused_pass_to_the_same_image():
    """BSREM on a listmode frame takes the frame's fused pass too (once per subset update), and
    refusing it (as a GPU frame does) gives the same image."""
    grid, events, model = _problem(True, seed=9)
    frame = model.frame(events, 0.0, 1.0)
    counts = frame.counts()
    prior = recon.RelativeDifferencePrior(0.5, epsilon=1e-3, kappa=sensitivity_kappa)
    calls = _count_fused_calls(frame)
    common = dict(prior=prior, iterations=3, subsets=4, objective=False, progress=False)
    fused = np.asarray(recon.bsrem(frame, counts, **common).data)
    assert len(calls) == 3 * 4
    frame.ratio_back = lambda *args: None
    two_pass = np.asarray(recon.bsrem(frame, counts, **common).data)
    assert float(two_pass.max()) > 0
    assert _rel(fused, two_pass) < 1e-4
