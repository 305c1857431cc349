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


def test_adjoint(pair) -> None:
    _, model, x = pair
    y = np.random.default_rng(2).random(model.data_shape).astype(np.float32)
    lhs = np.vdot(np.asarray(model.forward(x), np.float64), y)
    rhs = np.vdot(x.astype(np.float64), np.asarray(model.back(y), np.float64))
    assert abs(lhs - rhs) / abs(rhs) < 1e-5


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
