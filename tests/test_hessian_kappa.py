"""hessian_kappa: the prior weights from the log-likelihood's curvature at an image, against a
dense-matrix float64 reference, the sensitivity weights they reduce to, their units, stacked
images, listmode frames, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import recon
from recon.algorithms.priors import _tissue_level, hessian_kappa, kappa_for, sensitivity_kappa
from recon.errors import InputError, NumericalError
from recon.pet import simulate_listmode
from recon.simulate.phantoms import uniform_cylinder

LEVEL = np.float32(2e5)  # activity (Bq/mL) giving tens of counts per bin with _spect's models


def _spect(
    grid: recon.ImageGrid, calibration: float = 90.0, device: str = "cpu"
) -> recon.SpectModel:
    geometry = recon.SpectGeometry.circular(
        n_views=8, radius_mm=60, n_u=grid.shape[2], n_v=grid.shape[0], pixel_size_mm=6.0
    )
    return recon.SpectModel(geometry, grid, device=device, sensitivity_cps_per_mbq=calibration)


def _dense(model) -> np.ndarray:
    """The model's matrix A (bins × voxels) in float64, one unit image at a time."""
    n = int(np.prod(model.grid.shape))
    columns = []
    for j in range(n):
        unit = np.zeros(n, np.float32)
        unit[j] = 1.0
        columns.append(np.asarray(model.forward(unit.reshape(model.grid.shape))).ravel())
    return np.stack(columns, axis=1).astype(np.float64)


def test_equals_a_dense_float64_reference() -> None:
    """κ² = x̄ · Aᵀ(y ⊙ A1 / ȳ²), ȳ = A x + a, x̄ the median of the seen voxels above a tenth of
    the mean of those above it."""
    grid = recon.ImageGrid((2, 6, 6), 6.0)
    model = _spect(grid)
    rng = np.random.default_rng(11)
    x = rng.uniform(0.2, 3.0, grid.shape).astype(np.float32) * LEVEL
    x[0, 2:4, 2:4] = 12.0 * LEVEL  # a hot spot
    a_matrix = _dense(model)
    mean_bin = float((a_matrix @ x.ravel()).mean())
    additive = rng.uniform(0.05, 0.2, model.data_shape).astype(np.float32) * mean_bin
    expected = a_matrix @ x.ravel().astype(np.float64) + additive.ravel()
    counts = rng.poisson(expected).astype(np.float32).reshape(model.data_shape)
    seen = np.asarray(model.sensitivity()).ravel() > 0
    values = x.ravel()[seen].astype(np.float64)
    threshold = 0.1 * values.mean()
    for _ in range(5):
        threshold = 0.1 * values[values >= threshold].mean()
    level = np.median(values[values >= threshold])
    reference = np.sqrt(
        level * (a_matrix.T @ (counts.ravel() * a_matrix.sum(axis=1) / expected**2))
    ).reshape(grid.shape)
    kappa = np.asarray(hessian_kappa(model, counts, additive, x))
    assert kappa.dtype == np.float32 and kappa.shape == grid.shape
    assert float(counts.mean()) > 10
    np.testing.assert_allclose(kappa, reference, rtol=2e-4)
    # The hot spot gets a weaker penalty than the sensitivity weights give it.
    ratio = kappa / np.asarray(sensitivity_kappa(model))
    assert ratio[0, 2:4, 2:4].mean() < 0.7 * np.median(ratio)


def test_tissue_level_ignores_empty_field_of_view_and_hot_organs() -> None:
    """The level x̄ that keeps β's meaning: a uniform image's value; unchanged by a field of view
    with 10 times more (faintly noisy) empty voxels around the patient and barely moved by
    hot organs, where the mean would fall ten-fold or rise several-fold."""
    rng = np.random.default_rng(6)
    tissue = rng.normal(10.0, 1.0, 5000).clip(0.1)
    assert _tissue_level(np, np.full(100, 3.5)) == pytest.approx(3.5)
    level = _tissue_level(np, tissue)
    assert level == pytest.approx(np.median(tissue))
    air = rng.uniform(0.0, 0.1, 50000)  # a 2-iteration OSEM start is not exactly 0 there
    assert _tissue_level(np, np.concatenate([tissue, air])) == level
    organs = np.full(800, 200.0)  # 14 % of the body at 20x (liver and spleen full of liposomes)
    with_organs = np.concatenate([tissue, organs, air[:5000]])
    assert _tissue_level(np, with_organs) == pytest.approx(level, rel=0.05)
    assert np.mean(with_organs[with_organs > 1]) > 3 * level
    assert _tissue_level(np, np.zeros(10)) == 0.0


def test_equals_the_sensitivity_weights_on_noise_free_uniform_data() -> None:
    """Uniform x, counts = A x, no additive term: κ² = x̄ Aᵀ(A1 / (x̄ A1)) = s."""
    grid = recon.ImageGrid((4, 12, 12), 6.0)
    model = _spect(grid)
    x = np.full(grid.shape, 2.5, np.float32) * LEVEL
    counts = model.forward(x)
    kappa = np.asarray(hessian_kappa(model, counts, None, x))
    np.testing.assert_allclose(kappa, np.asarray(sensitivity_kappa(model)), rtol=1e-4, atol=1e-7)


def test_scales_with_units_and_scan_time_as_the_sensitivity_does() -> None:
    """A calibration c times larger (the same counts, an image 1/c as large) divides κ² by c,
    as it divides s: β keeps its meaning. Twice the counts with twice the sensitivity (a scan
    twice as long) doubles κ², as it doubles s."""
    grid = recon.ImageGrid((4, 12, 12), 6.0)
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 2.0, grid.shape).astype(np.float32) * LEVEL
    base = _spect(grid)
    counts = rng.poisson(np.asarray(base.forward(x))).astype(np.float32)
    k2 = np.asarray(hessian_kappa(base, counts, None, x)) ** 2
    assert float(counts.mean()) > 10 and float(k2.max()) > 0
    c = 50.0
    scaled = _spect(grid, calibration=90.0 / c)  # A/c: the image is c times larger
    k2_units = np.asarray(hessian_kappa(scaled, counts, None, x * np.float32(c))) ** 2
    np.testing.assert_allclose(k2_units, k2 / c, rtol=1e-4)
    longer = _spect(grid, calibration=180.0)
    k2_long = np.asarray(hessian_kappa(longer, 2 * counts, None, x)) ** 2
    np.testing.assert_allclose(k2_long, 2 * k2, rtol=1e-4)


class _BlockDiagonal:
    """Two images stacked along z, each seen by its own copy of a SPECT model (as a
    multi-isotope model stacks isotopes); data stacked likewise."""

    def __init__(self, model: recon.SpectModel) -> None:
        self.inner, self.xp, self.additive, self.image_blocks = model, np, None, 2
        self.grid = recon.ImageGrid((2 * model.grid.shape[0], *model.grid.shape[1:]), 6.0)

    def _halves(self, v):
        return np.split(np.asarray(v), 2)

    def validate_data(self, v, name):
        return np.asarray(v, np.float32)

    def validate_image(self, v, name):
        return np.asarray(v, np.float32)

    def forward(self, x):
        return np.concatenate([self.inner.forward(h) for h in self._halves(x)])

    def back(self, v):
        return np.concatenate([self.inner.back(h) for h in self._halves(v)])

    def sensitivity(self, subset=None):
        s = self.inner.sensitivity(subset)
        return np.concatenate([s, s])


def test_stacked_images_each_take_their_own_mean() -> None:
    """With image_blocks = 2, each stacked image is scaled by its own mean: the result equals
    each image's κ computed alone (an image 10× fainter is not weighted by the other's mean)."""
    grid = recon.ImageGrid((4, 12, 12), 6.0)
    model = _spect(grid)
    rng = np.random.default_rng(8)
    bright = rng.uniform(1.0, 3.0, grid.shape).astype(np.float32) * LEVEL
    faint = bright[::-1] * np.float32(0.1)
    counts = [rng.poisson(np.asarray(model.forward(v))).astype(np.float32) for v in (bright, faint)]
    stacked = _BlockDiagonal(model)
    kappa = hessian_kappa(stacked, np.concatenate(counts), None, np.concatenate([bright, faint]))
    alone = [
        np.asarray(hessian_kappa(model, c, None, v))
        for c, v in zip(counts, (bright, faint), strict=True)
    ]
    assert min(float(k.max()) for k in alone) > 0
    np.testing.assert_allclose(kappa, np.concatenate(alone), rtol=1e-5)


def test_listmode_frame_equals_the_sinogram_of_its_events() -> None:
    """On the events (counts 1 per event) the curvature equals the sinogram model's on their
    histogram: the same sums over the same lines."""
    grid = recon.ImageGrid((4, 36, 36), 4.0)
    scanner = recon.PetScanner(
        name="kappa-test", n_rings=4, crystals_per_ring=96, radius_mm=120.0,
        ring_spacing_mm=4.0, tof=recon.Tof(fwhm_ps=400.0, n_bins=25, bin_width_ps=110.0),
    )  # fmt: skip
    activity = uniform_cylinder(grid, radius_mm=50, length_mm=16, value=0.002)
    activity[:, 14:20, 14:20] *= 4.0
    mu = (0.0096 * (activity > 0)).astype(np.float32)
    sinogram = recon.PetSinogramModel(scanner, grid, mu_map=mu, frame_duration_s=30.0,
                                      device="cpu")  # fmt: skip
    events = simulate_listmode(sinogram, activity, 30.0, np.random.default_rng(3))
    counts, dropped = recon.pet.histogram(events, sinogram.layout)
    assert dropped == 0
    frame = recon.PetListmodeModel(scanner, grid, mu_map=mu, device="cpu").frame(events, 0.0, 30.0)
    x = recon.mlem(sinogram, counts, iterations=2, progress=False).data
    from_events = np.asarray(hessian_kappa(frame, frame.counts(), None, x))
    from_sinogram = np.asarray(hessian_kappa(sinogram, counts, None, x))
    assert float(from_sinogram.max()) > 0
    assert np.linalg.norm(from_events - from_sinogram) / np.linalg.norm(from_sinogram) < 1e-4


def test_bsrem_runs_with_it_and_bad_input_is_refused() -> None:
    grid = recon.ImageGrid((4, 12, 12), 6.0)
    model = _spect(grid)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.5, 2.0, grid.shape).astype(np.float32) * LEVEL
    counts = rng.poisson(np.asarray(model.forward(x))).astype(np.float32)
    start = recon.osem(model, counts, iterations=2, subsets=4, progress=False).data
    kappa = hessian_kappa(model, counts, None, start)
    prior = recon.RelativeDifferencePrior(0.3, epsilon=1e-3, kappa=kappa)
    image = recon.bsrem(model, counts, prior=prior, iterations=3, subsets=4, x0=start,
                        progress=False)  # fmt: skip
    assert np.all(np.isfinite(image.data)) and float(image.data.max()) > 0
    with pytest.raises(InputError, match="no activity"):
        hessian_kappa(model, counts, None, np.zeros(grid.shape, np.float32))
    with pytest.raises(InputError, match="non-negative"):
        hessian_kappa(model, counts, None, -x)
    with pytest.raises(InputError):
        hessian_kappa(model, counts[:2], None, x)
    # The commands' choice by name: the same weights, an unknown name refused.
    assert kappa_for("sensitivity", model, counts, None, start) is sensitivity_kappa
    np.testing.assert_array_equal(kappa_for("hessian", model, counts, None, start), kappa)
    with pytest.raises(InputError, match="sensitivity, hessian"):
        kappa_for("fisher", model, counts, None, start)
    # Counts where the model expects (nearly) nothing overflow the curvature: said, not inf.
    tiny = np.full(grid.shape, 1e-30, np.float32)
    with pytest.raises(NumericalError, match="overflowed"):
        hessian_kappa(model, counts, None, tiny)


@pytest.mark.gpu
def test_gpu_matches_cpu(to_numpy) -> None:
    """The same weights from a model on the GPU (its projectors, CuPy's median) as on the CPU."""
    grid = recon.ImageGrid((4, 12, 12), 6.0)
    rng = np.random.default_rng(12)
    x = rng.uniform(0.5, 2.0, grid.shape).astype(np.float32) * LEVEL
    x[1, 4:7, 4:7] *= 8.0
    cpu, gpu = _spect(grid), _spect(grid, device="gpu")
    counts = rng.poisson(np.asarray(cpu.forward(x))).astype(np.float32)
    additive = np.full(cpu.data_shape, float(counts.mean()) * 0.2, np.float32)
    on_cpu = np.asarray(hessian_kappa(cpu, counts, additive, x))
    xp = gpu.xp
    on_gpu = hessian_kappa(gpu, xp.asarray(counts), xp.asarray(additive), xp.asarray(x))
    assert gpu.backend.owns(on_gpu)
    np.testing.assert_allclose(to_numpy(on_gpu), on_cpu, rtol=1e-4, atol=1e-6 * on_cpu.max())
