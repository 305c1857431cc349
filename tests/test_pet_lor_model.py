"""PetLorSinogramModel: explicit LORs reproduce the layout-based sinogram model exactly."""

from __future__ import annotations

import numpy as np
import pytest

import recon
from recon.errors import GeometryError, InputError
from recon.pet import PetLorSinogramModel, PetScanner, PetSinogramModel


@pytest.fixture(scope="module")
def pair() -> tuple[PetSinogramModel, PetLorSinogramModel, np.ndarray]:
    scanner = PetScanner.preset("small")
    grid = recon.ImageGrid((15, 48, 48), (4.0, 4.0, 4.0))
    mu = np.full(grid.shape, 0.0096, np.float32)
    timing = dict(isotope="F-18", frame_start_s=100.0, frame_duration_s=600.0)
    reference = PetSinogramModel(
        scanner, grid, mu_map=mu, use_tof=False, max_ring_difference=3, device="cpu", **timing
    )
    xstart, xend = reference.layout.endpoints()
    model = PetLorSinogramModel(xstart, xend, grid, mu_map=mu, device="cpu", **timing)
    x = np.random.default_rng(0).random(grid.shape).astype(np.float32)
    return reference, model, x


def test_same_projections_factors_and_sensitivity_as_the_layout_model(pair) -> None:
    reference, model, x = pair
    assert model.data_shape == reference.layout.shape
    np.testing.assert_allclose(model.forward(x), reference.forward(x), rtol=1e-6)
    subset = model.subsets(4)[1]
    np.testing.assert_array_equal(subset, reference.subsets(4)[1])
    np.testing.assert_allclose(model.forward(x, subset), reference.forward(x, subset), rtol=1e-6)
    np.testing.assert_allclose(
        model.sensitivity(subset), reference.sensitivity(subset), rtol=1e-5, atol=1e-6
    )
    y = np.random.default_rng(1).random(reference.layout.shape).astype(np.float32)
    np.testing.assert_allclose(model.back(y), reference.back(y), rtol=1e-5, atol=1e-4)


def test_bad_inputs_are_named(pair) -> None:
    _, model, _ = pair
    grid = model.grid
    good = np.zeros((2, 3, 4, 3), np.float32)
    with pytest.raises(GeometryError, match="shape"):
        PetLorSinogramModel(good[..., :2], good[..., :2], grid)
    bad = good.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(GeometryError, match="NaN"):
        PetLorSinogramModel(bad, good, grid)
    with pytest.raises(InputError, match="clip"):
        model.validate_data(-np.ones(model.data_shape, np.float32))
    with pytest.raises(InputError, match="shape"):
        PetLorSinogramModel(good, good, grid, normalization=np.ones((2, 3), np.float32))
    with pytest.raises(InputError, match="subsets"):
        model.subsets(0)


def test_separable_lors_give_the_same_model(pair) -> None:
    """The layout's LORs separate into (view, radial) transaxial ends and per-plane z: the
    separable model (endpoints made per subset) equals the explicit one, attenuation included."""
    reference, model, x = pair
    xstart, xend = reference.layout.endpoints()
    mu = np.full(model.grid.shape, 0.0096, np.float32)
    separable = PetLorSinogramModel.separable(
        xstart[0, :, :, :2], xend[0, :, :, :2], xstart[:, 0, 0, 2], xend[:, 0, 0, 2],
        model.grid, mu_map=mu, isotope="F-18", frame_start_s=100.0, frame_duration_s=600.0,
        device="cpu", chunk_lors=5000,  # several chunks for the attenuation factors
    )  # fmt: skip
    assert separable.data_shape == model.data_shape
    np.testing.assert_allclose(separable.multiplicative, model.multiplicative, rtol=1e-6)
    subset = model.subsets(3)[2]
    np.testing.assert_allclose(separable.forward(x, subset), model.forward(x, subset), rtol=1e-6)
    y = np.random.default_rng(3).random(model.data_shape).astype(np.float32)
    np.testing.assert_allclose(separable.back(y), model.back(y), rtol=1e-5, atol=1e-4)
    with pytest.raises(InputError, match="unknown options"):
        PetLorSinogramModel.separable(
            xstart[0, :, :, :2], xend[0, :, :, :2], xstart[:, 0, 0, 2], xend[:, 0, 0, 2],
            model.grid, mu=mu,
        )  # fmt: skip
    with pytest.raises(GeometryError, match="view, tangential, 2"):
        PetLorSinogramModel.separable(
            xstart[0], xend[0], xstart[:, 0, 0, 2], xend[:, 0, 0, 2], model.grid
        )


@pytest.mark.gpu
def test_gpu_matches_cpu(pair, to_numpy) -> None:
    """The separable model on the GPU (endpoints made on the device) equals the CPU one."""
    reference, model, x = pair
    xstart, xend = reference.layout.endpoints()
    mu = np.full(model.grid.shape, 0.0096, np.float32)
    parts = (xstart[0, :, :, :2], xend[0, :, :, :2], xstart[:, 0, 0, 2], xend[:, 0, 0, 2])
    cpu = PetLorSinogramModel.separable(*parts, model.grid, mu_map=mu, device="cpu")
    gpu = PetLorSinogramModel.separable(*parts, model.grid, mu_map=mu, device="gpu")
    assert gpu.backend.is_gpu
    y = np.random.default_rng(4).random(model.data_shape).astype(np.float32)
    for a, b in ((gpu.forward(x), cpu.forward(x)), (gpu.back(y), cpu.back(y))):
        a = to_numpy(a)
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-5
