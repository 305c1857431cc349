"""Priors: value, gradient and Hessian diagonal against an independent float64 reference and
finite differences; the properties the relative difference prior is chosen for; CUDA source ==
numba through the compatibility harness."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import recon
from recon.algorithms.priors import neighbour_weights, sensitivity_kappa
from recon.errors import InputError
from tests.cuda_compat.build import gxx_available

GRID = recon.ImageGrid((5, 6, 7), (3.0, 2.0, 2.5))  # anisotropic: weights by true distance


def _reference(x: np.ndarray, grid: recon.ImageGrid, prior: recon.algorithms.priors.Prior,
               kappa: np.ndarray | None) -> float:  # fmt: skip
    """R(x) in float64, written independently: every ordered pair of 26-neighbours once, ½."""
    x = x.astype(np.float64)
    k = np.ones_like(x) if kappa is None else kappa.astype(np.float64)
    dz, dy, dx = grid.voxel_size_mm
    shape = x.shape
    total = 0.0
    for offset in itertools.product((-1, 0, 1), repeat=3):
        if offset == (0, 0, 0):
            continue
        w = 1.0 / math.sqrt(sum((o * d) ** 2 for o, d in zip(offset, (dz, dy, dx), strict=True)))
        here = tuple(slice(max(0, -o), n - max(0, o)) for o, n in zip(offset, shape, strict=True))
        there = tuple(slice(max(0, o), n - max(0, -o)) for o, n in zip(offset, shape, strict=True))
        a, b = x[here], x[there]
        if prior.kind == 0:
            phi = (a - b) ** 2
        else:
            phi = (a - b) ** 2 / (a + b + prior.gamma * np.abs(a - b) + prior.epsilon)
        total += float((w * k[here] * k[there] * phi).sum())
    return 0.5 * total


def _priors(kappa=None):
    return [
        recon.RelativeDifferencePrior(1.0, gamma=2.0, epsilon=0.1, kappa=kappa),
        recon.RelativeDifferencePrior(1.0, gamma=0.0, epsilon=0.01, kappa=kappa),
        recon.QuadraticPrior(1.0, kappa=kappa),
    ]


def _kappa_with_a_field_of_view(rng: np.random.Generator) -> np.ndarray:
    """κ > 0 inside a disc of each plane and 0 outside it (as sensitivity_kappa gives outside a
    scanner's field of view), one row wholly 0 and zeros scattered inside."""
    kappa = rng.uniform(0.5, 1.5, GRID.shape).astype(np.float32)
    _, ny, nx = GRID.shape
    y, x = np.mgrid[0:ny, 0:nx]
    kappa[:, (y - 2.5) ** 2 + (x - 3.0) ** 2 > 3.2**2] = 0.0
    kappa[2, 1, :] = 0.0
    kappa[rng.random(GRID.shape) < 0.1] = 0.0
    return kappa


@pytest.mark.parametrize("kappa_kind", ["none", "kappa", "field of view"])
def test_value_gradient_and_curvature_match_the_reference(kappa_kind: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 2.0, GRID.shape).astype(np.float32)
    kappa = {
        "none": None,
        "kappa": rng.uniform(0.5, 1.5, GRID.shape).astype(np.float32),
        "field of view": _kappa_with_a_field_of_view(rng),
    }[kappa_kind]
    picks = rng.choice(x.size, 25, replace=False)
    if kappa is not None and kappa_kind == "field of view":  # half the picks where κ = 0
        zeros = np.flatnonzero(kappa == 0)
        picks = np.concatenate([picks[:13], rng.choice(zeros, 12, replace=False)])
    h = 1e-4
    for prior in _priors(kappa):
        assert prior.value(x, GRID) == pytest.approx(_reference(x, GRID, prior, kappa), rel=1e-6)
        gradient = prior.gradient(x, GRID)
        curvature = prior.hessian_diagonal(x, GRID)
        assert gradient.dtype == np.float32 and gradient.shape == GRID.shape
        x64 = x.astype(np.float64)
        for i in picks:
            up, down = x64.copy(), x64.copy()
            up.flat[i] += h
            down.flat[i] -= h
            r_up, r_down = (_reference(v, GRID, prior, kappa) for v in (up, down))
            r_mid = _reference(x64, GRID, prior, kappa)
            scale_g = max(1.0, abs((r_up - r_down) / (2 * h)))
            assert gradient.flat[i] == pytest.approx((r_up - r_down) / (2 * h), abs=2e-5 * scale_g)
            second = (r_up - 2 * r_mid + r_down) / h**2
            assert curvature.flat[i] == pytest.approx(second, rel=1e-3, abs=1e-3)


def test_curvature_is_non_negative_and_bounds_the_prior_locally() -> None:
    """R is convex on x ≥ 0: the Hessian diagonal is ≥ 0, and R along any coordinate lies above
    its tangent (the curvature bound the separable surrogate relies on)."""
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 3.0, GRID.shape).astype(np.float32)
    x[rng.random(GRID.shape) < 0.2] = 0.0  # zeros where tracer is absent
    for prior in _priors():
        assert prior.hessian_diagonal(x, GRID).min() >= 0
        gradient = prior.gradient(x, GRID)
        base = _reference(x, GRID, prior, None)
        for i in rng.choice(x.size, 10, replace=False):
            for step in (0.5, 1.0, 2.0):
                moved = x.astype(np.float64).copy()
                moved.flat[i] += step
                assert _reference(moved, GRID, prior, None) >= base + step * gradient.flat[i] - 1e-4


def test_zero_on_constant_images_and_scale_invariance_of_rdp() -> None:
    rng = np.random.default_rng(2)
    for prior in _priors():
        constant = np.full(GRID.shape, 3.5, np.float32)
        assert prior.value(constant, GRID) == 0
        assert np.all(prior.gradient(constant, GRID) == 0)
    x = rng.uniform(0.5, 2.0, GRID.shape).astype(np.float32)
    # RDP is homogeneous of degree 1: R(c x; c ε) = c R(x; ε) (the penalty scales with counts).
    for c in (0.01, 10.0, 1e4):
        rdp = recon.RelativeDifferencePrior(1.0, gamma=2.0, epsilon=0.05)
        scaled = recon.RelativeDifferencePrior(1.0, gamma=2.0, epsilon=0.05 * c)
        assert scaled.value(x * np.float32(c), GRID) == pytest.approx(
            c * rdp.value(x, GRID), rel=1e-5
        )


def test_edge_preservation_grows_with_gamma() -> None:
    """A step edge costs less relative to a ramp of the same height as γ grows."""
    step = np.ones(GRID.shape, np.float32)
    step[:, :, 4:] = 5.0
    costs = [recon.RelativeDifferencePrior(1.0, gamma=g, epsilon=1e-3).value(step, GRID)
             for g in (0.0, 2.0, 10.0)]  # fmt: skip
    assert costs[0] > costs[1] > costs[2] > 0


class _StackedModel:
    """What :meth:`Prior.for_model` reads of a model that stacks three images along z."""

    image_blocks = 3


def test_a_prior_bound_to_stacked_images_leaves_out_their_seams() -> None:
    """Bound to a model of three images stacked along z (one per isotope), the prior's terms
    equal those of each image on its own grid: the slices either side of a seam are not
    neighbours. Unbound, the same prior joins them (so the test can tell)."""
    rng = np.random.default_rng(6)
    images = [rng.uniform(0.0, 2.0, GRID.shape).astype(np.float32) for _ in range(3)]
    kappas = [rng.uniform(0.5, 1.5, GRID.shape).astype(np.float32) for _ in range(3)]
    nz, ny, nx = GRID.shape
    stacked_grid = recon.ImageGrid((3 * nz, ny, nx), GRID.voxel_size_mm)
    stacked = np.concatenate(images)
    per_block = list(zip(*[_priors(k) for k in kappas], strict=True))
    for prior, blocks in zip(_priors(np.concatenate(kappas)), per_block, strict=True):
        bound = prior.for_model(_StackedModel())
        assert bound.image_blocks == 3 and prior.image_blocks == 1
        for method in ("gradient", "hessian_diagonal"):
            got = getattr(bound, method)(stacked, stacked_grid)
            want = np.concatenate(
                [getattr(p, method)(x, GRID) for p, x in zip(blocks, images, strict=True)]
            )
            np.testing.assert_array_equal(got, want)
            joined = getattr(prior, method)(stacked, stacked_grid)
            assert not np.array_equal(joined[nz - 1 : nz + 1], want[nz - 1 : nz + 1])
        separate = sum(p.value(x, GRID) for p, x in zip(blocks, images, strict=True))
        assert bound.value(stacked, stacked_grid) == pytest.approx(separate, rel=1e-6)
    with pytest.raises(InputError, match="stacked images"):
        recon.QuadraticPrior(1.0).for_model(_StackedModel()).value(images[0], GRID)


def test_weights_are_one_over_the_true_distance() -> None:
    w = neighbour_weights(GRID)
    assert w[13] == 0  # the centre
    assert w[(0 + 1) * 9 + (0 + 1) * 3 + (1 + 1)] == pytest.approx(1 / 2.5)
    assert w[(1 + 1) * 9 + (0 + 1) * 3 + (1 + 1)] == pytest.approx(1 / math.hypot(3.0, 2.5))
    assert w[0] == pytest.approx(1 / math.sqrt(9 + 4 + 6.25))


def test_bad_settings_and_inputs_are_refused() -> None:
    with pytest.raises(InputError, match="beta"):
        recon.RelativeDifferencePrior(-1.0)
    with pytest.raises(InputError, match="epsilon"):
        recon.RelativeDifferencePrior(1.0, epsilon=0.0)
    with pytest.raises(InputError, match="gamma"):
        recon.RelativeDifferencePrior(1.0, gamma=-1.0)
    prior = recon.QuadraticPrior(1.0, kappa=np.ones((2, 2, 2), np.float32))
    with pytest.raises(InputError, match="kappa has shape"):
        prior.value(np.ones(GRID.shape, np.float32), GRID)
    with pytest.raises(InputError, match="shape"):
        recon.QuadraticPrior(1.0).value(np.ones((2, 2, 2), np.float32), GRID)


def test_relative_difference_prior_refuses_images_outside_its_domain() -> None:
    """Negative or NaN voxels (where φ's denominator can vanish) are refused by value, gradient
    and Hessian diagonal unless the caller opts out (BSREM, whose images are >= 0); the
    quadratic prior takes signed images."""
    x = np.random.default_rng(9).uniform(0.5, 2.0, GRID.shape).astype(np.float32)
    rdp = recon.RelativeDifferencePrior(1.0, epsilon=0.01)
    for bad in (-1.0, np.nan):
        image = x.copy()
        image[2, 3, 3] = bad
        for method in (rdp.value, rdp.gradient, rdp.hessian_diagonal):
            with pytest.raises(InputError, match="images >= 0"):
                method(image, GRID)
    rdp.gradient(x, GRID, check=False)  # the unchecked path of BSREM still runs
    signed = x - np.float32(1.0)
    quadratic = recon.QuadraticPrior(1.0)
    assert quadratic.value(signed, GRID) == pytest.approx(_reference(signed, GRID, quadratic, None),
                                                          rel=1e-5)  # fmt: skip


def test_sensitivity_kappa_makes_beta_independent_of_units_and_scan_time() -> None:
    """κ² = s: with the calibration (or the scan time) scaled by c, the image scales by 1/c and
    the sensitivity by c, and the RDP gradient with κ² = s scales by c like the likelihood's:
    the balance, hence β's meaning, is unchanged."""
    grid = recon.ImageGrid((4, 12, 12), 6.0)
    geometry = recon.SpectGeometry.circular(n_views=8, radius_mm=60, n_u=12, n_v=4,
                                            pixel_size_mm=6.0)  # fmt: skip
    x = np.random.default_rng(5).uniform(0.5, 2.0, grid.shape).astype(np.float32)
    gradients = []
    for c in (1.0, 50.0):
        model = recon.SpectModel(geometry, grid, device="cpu", sensitivity_cps_per_mbq=90.0 * c)
        kappa = np.asarray(sensitivity_kappa(model))
        np.testing.assert_allclose(kappa**2, np.asarray(model.sensitivity()), rtol=1e-5)
        prior = recon.RelativeDifferencePrior(1.0, epsilon=1e-3 / c, kappa=sensitivity_kappa)
        gradients.append(prior.for_model(model).gradient(x / np.float32(c), grid) / c)
    np.testing.assert_allclose(gradients[1], gradients[0], rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not gxx_available(), reason="g++ is needed to run the CUDA sources")
@pytest.mark.parametrize("layout", ["rows", "pairs"])
def test_cuda_source_matches_numba(monkeypatch, layout) -> None:
    """kernels/prior.cu through the CuPy launcher (on the fake GPU backend) equals numba: bit
    for bit the rows layout (the same terms added in the same order), to float32 rounding the
    pairs layout (the library's default on the CPU)."""
    from tests.cuda_compat import fake_cupy

    monkeypatch.setattr("recon.algorithms._prior_gpu.get_kernel", fake_cupy.fake_get_kernel)
    monkeypatch.setattr("recon.algorithms._prior_cpu.DEFAULT_LAYOUT", layout)
    gpu = fake_cupy.FakeGpuBackend()
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 2.0, GRID.shape).astype(np.float32)
    kappas = (rng.uniform(0.5, 1.5, GRID.shape).astype(np.float32),
              _kappa_with_a_field_of_view(rng))  # fmt: skip
    priors = [p for kappa in kappas for p in _priors(kappa)]
    priors += [p.for_model(_StackedModel()) for p in _priors()]  # 3 images of 5 slices: none
    grid = recon.ImageGrid((15, 6, 7), GRID.voxel_size_mm)
    x15 = rng.uniform(0.0, 2.0, grid.shape).astype(np.float32)
    for prior in priors:
        image, on = (x15, grid) if prior.image_blocks == 3 else (x, GRID)
        for method in ("gradient", "hessian_diagonal"):
            on_gpu = getattr(prior, method)(image, on, gpu)
            on_cpu = getattr(prior, method)(image, on)
            if layout == "rows":
                np.testing.assert_array_equal(on_gpu, on_cpu)
            else:
                atol = 2e-6 * float(np.abs(on_cpu).max())
                np.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=atol)
            if prior.kappa is not None:
                outside = np.asarray(prior.kappa) == 0
                assert np.all(on_cpu[outside] == 0) and np.all(on_gpu[outside] == 0)
        assert prior.value(image, on, gpu) == pytest.approx(prior.value(image, on), rel=1e-6)


def test_cpu_prior_outputs_and_kappa_are_page_aligned() -> None:
    """The CPU kernel's arrays start on page boundaries (recon._memory.page_aligned_empty: rows
    of unrelated page offsets slowed the gradient up to 2× on 128³ images); values unchanged."""
    from recon._memory import page_aligned_copy, page_aligned_empty

    empty = page_aligned_empty((3, 5, 7))
    assert empty.shape == (3, 5, 7) and empty.dtype == np.float32
    assert empty.flags.c_contiguous and empty.ctypes.data % 4096 == 0
    source = np.arange(30, dtype=np.float64).reshape(5, 6)[:, ::2]  # a strided view
    copy = page_aligned_copy(source)
    assert copy.ctypes.data % 4096 == 0 and copy.dtype == np.float64
    assert copy.flags.c_contiguous and np.array_equal(copy, source)

    rng = np.random.default_rng(8)
    x = rng.uniform(0.0, 2.0, GRID.shape).astype(np.float32)
    kappa = rng.uniform(0.5, 1.5, GRID.shape).astype(np.float32)
    prior = recon.RelativeDifferencePrior(1.0, gamma=2.0, epsilon=0.01, kappa=kappa)
    gradient = prior.gradient(x, GRID)
    assert gradient.ctypes.data % 4096 == 0
    assert prior._checked_kappa[2].ctypes.data % 4096 == 0
    # The same numbers as from arrays wherever the allocator put them.
    shifted = np.empty(x.size + 5, np.float32)[5:].reshape(GRID.shape)
    shifted[...] = x
    assert np.array_equal(prior.gradient(shifted, GRID), gradient)
    assert np.array_equal(
        recon.RelativeDifferencePrior(1.0, gamma=2.0, epsilon=0.01, kappa=kappa.copy()).gradient(
            shifted, GRID
        ),
        gradient,
    )


@pytest.mark.parametrize("shape", [(5, 6, 7), (6, 50, 90), (1, 9, 8), (4, 1, 5), (3, 5, 1)])
def test_cpu_kernel_layouts_give_the_same_sums(shape) -> None:
    """The CPU kernel's two loop layouts (per voxel along rows, the CUDA kernel's order; each
    neighbour pair once along runs of whole planes) give the same value, gradient and Hessian
    terms up to float32 rounding (they add the same terms in another order), with and without
    κ, with a field of view (κ = 0 at the corners and in scattered voxels), with stacked images,
    with zeros in the image, a plane with κ = 0 throughout, and one-voxel-wide rows or planes;
    voxels with κ = 0 get exactly 0 in both."""
    from recon.algorithms import _prior_cpu

    rng = np.random.default_rng(11)
    x = rng.uniform(0.0, 2.0, shape).astype(np.float32)
    x[rng.random(shape) < 0.05] = 0.0
    nz, ny, nx = shape
    fov = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    y, xx = np.mgrid[0:ny, 0:nx]
    fov[:, (y - ny / 2) ** 2 + (xx - nx / 2) ** 2 > (min(ny, nx) / 2) ** 2] = 0.0
    fov[rng.random(shape) < 0.05] = 0.0
    if nz > 2:
        fov[nz // 2] = 0.0
    weights = neighbour_weights(recon.ImageGrid(shape, (3.0, 2.0, 2.5)))
    kappas = [(np.zeros((1, 1, 1), np.float32), False), (fov, True)]
    for kappa, has_kappa in kappas:
        for z_block in (nz, nz // 2 if nz % 2 == 0 else nz):
            for kind, gamma, eps in ((0, 0.0, 0.0), (1, 2.0, 0.01)):
                for what in (0, 1, 2):
                    outs = []
                    for layout in ("rows", "pairs"):
                        out = np.full(shape, np.nan, np.float32)
                        _prior_cpu.prior_terms(
                            x, kappa, has_kappa, weights, np.int32(z_block), np.int32(kind),
                            np.float32(gamma), np.float32(eps), np.int32(what), out, layout,
                        )  # fmt: skip
                        outs.append(out)
                    assert np.isfinite(outs[1]).all()
                    scale = float(np.abs(outs[0]).max())
                    np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=2e-6 * scale)
                    if has_kappa:
                        assert np.all(outs[1][kappa == 0] == 0)
