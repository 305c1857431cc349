"""Penalised-likelihood reconstruction: BSREM converges to the maximiser an independent optimiser
finds, the objective rises, β = 0 is maximum likelihood, a large β flattens; OSL-MAP; listmode."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

import recon
import recon.algorithms.map as map_module
from recon.algorithms.priors import sensitivity_kappa
from recon.errors import InputError
from recon.simulate.phantoms import sphere_mask, uniform_cylinder

GRID = recon.ImageGrid((8, 16, 16), 6.0)


@pytest.fixture(scope="module")
def problem():
    """A small SPECT study: a cylinder with a hot sphere, 2e4 counts."""
    geometry = recon.SpectGeometry.circular(n_views=16, radius_mm=80, n_u=16, n_v=8,
                                            pixel_size_mm=6.0)  # fmt: skip
    model = recon.SpectModel(geometry, GRID, collimator=recon.Collimator.preset("LEHR"),
                             device="cpu")  # fmt: skip
    activity = uniform_cylinder(GRID, radius_mm=40, length_mm=40, value=1.0)
    activity[sphere_mask(GRID, (15.0, 0.0, 0.0), 18.0)] = 4.0
    expected = np.asarray(model.forward(activity))
    counts = np.random.default_rng(1).poisson(expected * 2e4 / expected.sum())
    return model, counts.astype(np.float32), activity


def _maximiser(model, counts, prior, start):
    """argmax Φ by L-BFGS-B with x ≥ 0, on −Φ computed through model.forward (float64 sums)."""
    sens = np.asarray(model.sensitivity(), np.float64)

    def negative(v):
        x = v.reshape(GRID.shape).astype(np.float32)
        expected = np.maximum(np.asarray(model.forward(x), np.float64), 1e-30)
        value = (
            (counts * np.log(expected)).sum() - expected.sum() - prior.beta * prior.value(x, GRID)
        )
        ratio = (counts / expected).astype(np.float32)
        gradient = (np.asarray(model.back(ratio), np.float64) - sens
                    - prior.beta * np.asarray(prior.gradient(x, GRID), np.float64))  # fmt: skip
        return -value, -gradient.ravel()

    result = minimize(negative, start.ravel().astype(np.float64), jac=True, method="L-BFGS-B",
                      bounds=[(0, None)] * start.size,
                      options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-16, "gtol": 1e-12,
                               "maxcor": 30})  # fmt: skip
    return result.x.reshape(GRID.shape), -result.fun


def test_bsrem_converges_to_the_maximiser_of_an_independent_optimiser(problem) -> None:
    model, counts, _ = problem
    prior = recon.RelativeDifferencePrior(beta=50.0, gamma=2.0, epsilon=0.01)
    start = np.asarray(recon.osem(model, counts, iterations=3, subsets=4, progress=False))
    best, best_value = _maximiser(model, counts, prior, start)
    image = recon.bsrem(model, counts, prior=prior, iterations=100, subsets=4, x0=start,
                        progress=False)  # fmt: skip
    x = np.asarray(image)
    assert np.linalg.norm(x - best) / np.linalg.norm(best) < 0.01
    objective = image.info["map"].objective
    assert objective[-1] == pytest.approx(best_value, abs=1e-4 * abs(best_value))
    assert objective[-1] == pytest.approx(
        recon.penalised_log_likelihood(model, counts, None, prior, x), rel=1e-9
    )
    # Once the relaxation is small, Φ never decreases (float32 noise aside).
    assert np.all(np.diff(objective[10:]) >= -1e-7 * abs(objective[-1]))
    assert objective[-1] > objective[0]


def test_bsrem_without_prior_and_relaxation_is_mlem(problem, monkeypatch) -> None:
    """α = 1 (no decay), β = 0 and no preconditioner offset: exactly the EM update (one subset;
    with several, OSEM zeroes the voxels a subset misses where BSREM leaves them)."""
    model, counts, _ = problem
    monkeypatch.setattr(map_module, "_PRECONDITIONER_OFFSET", 0.0)
    settings = dict(iterations=3, subsets=1, objective=False, progress=False)
    a = recon.bsrem(model, counts, prior=recon.RelativeDifferencePrior(beta=0.0),
                    relaxation_decay=1e12, **settings)  # fmt: skip
    b = recon.mlem(model, counts, iterations=3, progress=False)
    c = recon.osl_map(model, counts, prior=None, **settings)
    for other in (a, c):
        np.testing.assert_allclose(np.asarray(other), np.asarray(b), rtol=1e-4, atol=1e-7)


def test_beta_zero_keeps_the_maximum_likelihood(problem) -> None:
    """Without a prior, the maximum likelihood is a fixed point: started from a long MLEM run,
    unrelaxed one-subset BSREM keeps raising the likelihood and stays at MLEM's image."""
    model, counts, _ = problem
    mlem = np.asarray(recon.mlem(model, counts, iterations=300, progress=False))
    bsrem = recon.bsrem(model, counts, prior=None, iterations=20, subsets=1, x0=mlem,
                        relaxation_decay=1e12, progress=False)  # fmt: skip
    start = recon.penalised_log_likelihood(model, counts, None, None, mlem)
    objective = bsrem.info["map"].objective
    assert objective[0] >= start - 1e-7 * abs(start)
    assert np.all(np.diff(objective) >= -1e-7 * abs(start))
    x = np.asarray(bsrem)
    assert np.linalg.norm(x - mlem) / np.linalg.norm(mlem) < 0.05


def test_a_large_beta_flattens_the_image(problem) -> None:
    model, counts, activity = problem
    inside = activity > 0
    spread = []
    for beta in (0.0, 30.0, 3000.0):
        prior = recon.RelativeDifferencePrior(beta=beta, gamma=2.0, epsilon=0.01)
        x = np.asarray(recon.bsrem(model, counts, prior=prior, iterations=40, subsets=4,
                                   objective=False, progress=False))  # fmt: skip
        spread.append(x[inside].std() / x[inside].mean())
    assert spread[0] > spread[1] > spread[2]
    assert spread[2] < 0.3 * spread[0]


def test_osl_map_raises_the_objective_with_a_moderate_prior(problem) -> None:
    model, counts, _ = problem
    prior = recon.QuadraticPrior(beta=0.5)
    image = recon.osl_map(model, counts, prior=prior, iterations=10, subsets=4, progress=False)
    objective = image.info["map"].objective
    assert objective[-1] > objective[0]
    assert np.all(np.isfinite(np.asarray(image))) and np.asarray(image).min() >= 0


def test_osl_map_says_where_its_denominator_was_floored(problem) -> None:
    """A huge quadratic β makes ``s + β∇R`` negative next to the hot sphere in every iteration, and
    the record counts those voxels instead of hiding them; a moderate β needs the floor at most
    in the first iteration (near-empty voxels beside the object after the uniform start)."""
    model, counts, _ = problem
    settings = {"iterations": 3, "subsets": 4, "objective": False, "progress": False}
    mild = recon.osl_map(model, counts, prior=recon.QuadraticPrior(beta=0.5), **settings)
    assert mild.info["map"].floored_voxels[1:] == [0, 0]
    harsh = recon.osl_map(model, counts, prior=recon.QuadraticPrior(beta=500.0), **settings)
    floored = harsh.info["map"].floored_voxels
    assert len(floored) == 3 and min(floored) > 0
    assert max(floored) <= int((np.asarray(model.sensitivity()) > 0).sum())


def test_listmode_bsrem_raises_the_objective_on_the_events() -> None:
    scanner = recon.PetScanner(n_rings=3, crystals_per_ring=48, radius_mm=90.0,
                               ring_spacing_mm=6.0)  # fmt: skip
    grid = recon.ImageGrid((5, 16, 16), (6.0, 7.0, 7.0))
    activity = uniform_cylinder(grid, radius_mm=40, length_mm=30, value=0.2)
    simulator = recon.PetSinogramModel(scanner, grid, frame_duration_s=60.0, device="cpu")
    events = recon.pet.simulate_listmode(simulator, activity, 60.0, np.random.default_rng(4))
    model = recon.PetListmodeModel(scanner, grid, device="cpu")
    prior = recon.RelativeDifferencePrior(beta=0.05, gamma=2.0, epsilon=1e-3)
    image = recon.lm_bsrem(model, events, prior, frame_duration_s=60.0, iterations=15,
                           subsets=4, progress=False)  # fmt: skip
    objective = image.info["map"].objective
    assert np.all(np.diff(objective[3:]) > -1e-7 * abs(objective[-1]))
    frame = model.frame(events, 0.0, 60.0)
    assert objective[-1] == pytest.approx(
        recon.penalised_log_likelihood(frame, frame.counts(), None, prior, image), rel=1e-9
    )
    assert image.info["n_prompts"] == frame.n_prompts


def test_bsrem_images_are_page_aligned_on_the_cpu(problem) -> None:
    """BSREM's images start on page boundaries, as the prior's κ and output do (the CPU prior
    kernel is up to 2× slower when they sit at unrelated page offsets)."""
    model, counts, _ = problem
    addresses = []
    prior = recon.RelativeDifferencePrior(0.5, epsilon=1e-3, kappa=sensitivity_kappa)
    recon.bsrem(
        model,
        counts,
        prior=prior,
        iterations=2,
        subsets=4,
        objective=False,
        progress=False,
        callback=lambda s: addresses.append(s.image.ctypes.data),
    )
    assert len(addresses) == 8 and all(a % 4096 == 0 for a in addresses)


def test_bad_settings_are_refused(problem) -> None:
    model, counts, _ = problem
    with pytest.raises(InputError, match="relaxation"):
        recon.bsrem(model, counts, relaxation=1.5, progress=False)
    with pytest.raises(InputError, match="relaxation_decay"):
        recon.bsrem(model, counts, relaxation_decay=0.0, progress=False)
    with pytest.raises(InputError, match="prior"):
        recon.bsrem(model, counts, prior="rdp", progress=False)
    prior = recon.RelativeDifferencePrior(1.0, epsilon=1e-3)
    for bad in (-1.0, np.nan):
        x = np.ones(GRID.shape, np.float32)
        x[2, 3, 4] = bad
        with pytest.raises(InputError, match="finite and non-negative"):
            recon.penalised_log_likelihood(model, counts, None, prior, x)


@pytest.mark.parametrize("with_gradient", [True, False])
@pytest.mark.parametrize("with_curvature", [True, False])
def test_the_cpu_bsrem_step_is_numpys_expression_to_the_bit(with_gradient, with_curvature) -> None:
    """The one-pass numba step (C-contiguous float32 images) and numpy's expression (the same
    images in Fortran order, which the kernel does not take) agree bit for bit, including the
    voxels the subset does not see, those outside the support, both clip bounds and a NaN."""
    rng = np.random.default_rng(7)
    shape = (5, 6, 7)

    def image(low, high):
        return rng.uniform(low, high, shape).astype(np.float32)

    x, back, sens = image(0, 3), image(0, 4), image(0.5, 2)
    inv_sens = (1 / sens).astype(np.float32)
    inv_sens[0, :, :3] = 0  # not seen by this subset
    seen = rng.uniform(size=shape) > 0.1
    x[1, 2, 3] = np.nan
    gradient = image(-50, 50) if with_gradient else None  # large: some steps go below 0
    curvature = image(0, 0.5) if with_curvature else None
    scalars = (np.float32(0.7), np.float32(0.01), np.float32(4.0))  # alpha, delta, upper
    args = (back, sens, gradient, np.float32(0.3), curvature, inv_sens, seen)
    fused = map_module._bsrem_step(np, x, *args, *scalars)
    fortran = [None if a is None else np.asfortranarray(a) for a in (x, *args)]
    reference = map_module._bsrem_step(np, *fortran, *scalars)
    assert reference.flags.f_contiguous and not reference.flags.c_contiguous  # numpy's path
    np.testing.assert_array_equal(fused, reference)
    assert np.isnan(fused[1, 2, 3]) == bool(seen[1, 2, 3])
    assert np.nanmin(fused) == 0 and np.nanmax(fused) == np.float32(4.0)
    assert np.all(fused[~seen] == 0)
