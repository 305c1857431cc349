"""One contract, every system model (:mod:`tests.model_contract_cases`): what the algorithms rely
on holds for each of them.

- it satisfies :class:`recon.SystemModel`;
- ``forward`` and ``back`` are exact adjoints on every subset: ``<P_S x, y> = <x, P_Sᵀ y>``;
- the subsets partition the data (every bin in exactly one subset);
- ``sensitivity(S)`` is ``back(1, S)`` (a listmode frame: the same image for every subset, the
  ``n``-th part of the frame's all-LOR sensitivity);
- ``forward`` and ``back`` are linear and map non-negative inputs to non-negative outputs;
- float32 in, float32 out, with the shapes of the data and the image, on the model's device;
- the CUDA kernels (run on the CPU through the compatibility harness and the fake GPU backend)
  give what the numba kernels give.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import recon
from tests.cuda_compat.build import gxx_available
from tests.model_contract_cases import CASES

SUBSETS = 3


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    contract = CASES[request.param]
    return contract, contract.build("cpu")


def _subset_shapes(model: Any) -> list[tuple[Any, tuple[int, ...]]]:
    ones = model.xp.ones(model.data_shape, np.float32)
    return [(s, tuple(model.take(ones, s).shape)) for s in model.subsets(SUBSETS)]


def _dot(a: Any, b: Any) -> float:
    return float(np.vdot(np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()))


def test_models_satisfy_the_protocol(case) -> None:
    _, model = case
    assert isinstance(model, recon.SystemModel)
    assert model.image_shape == model.grid.shape
    assert isinstance(model.units, str) and model.units


def test_forward_and_back_are_adjoint_on_every_subset(case) -> None:
    _, model = case
    rng = np.random.default_rng(0)
    x = rng.random(model.image_shape, dtype=np.float32)
    for subset, shape in [(None, tuple(model.data_shape)), *_subset_shapes(model)]:
        y = rng.random(shape, dtype=np.float32)
        lhs, rhs = _dot(model.forward(x, subset), y), _dot(x, model.back(y, subset))
        assert lhs > 0
        assert abs(lhs - rhs) <= 1e-4 * abs(lhs), (subset, lhs, rhs)


def test_subsets_partition_the_data(case) -> None:
    _, model = case
    n = math.prod(model.data_shape)
    assert n < 2**24  # every index exact in float32
    index = np.arange(n, dtype=np.float32).reshape(model.data_shape)
    parts = [np.asarray(model.take(index, s)).ravel() for s in model.subsets(SUBSETS)]
    assert all(p.size > 0 for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n, dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(model.take(index, None)), index)


def test_sensitivity_is_the_back_projection_of_ones(case) -> None:
    contract, model = case
    subsets = _subset_shapes(model)
    if contract.sensitivity_is_back_of_ones:
        for subset, shape in subsets:
            expected = np.asarray(model.back(np.ones(shape, np.float32), subset))
            got = np.asarray(model.sensitivity(subset))
            np.testing.assert_allclose(
                got, expected, rtol=contract.sensitivity_rtol, atol=1e-6 * expected.max()
            )
        total = sum(np.asarray(model.sensitivity(s), np.float64) for s, _ in subsets)
        np.testing.assert_allclose(total, np.asarray(model.sensitivity(None)), rtol=1e-5,
                                   atol=1e-6 * total.max())  # fmt: skip
    else:
        full = np.asarray(model.sensitivity(None), np.float64)
        for subset, _ in subsets:
            np.testing.assert_allclose(
                np.asarray(model.sensitivity(subset)) * SUBSETS, full, rtol=1e-6
            )
        assert full.max() > 0


def test_forward_and_back_are_linear_and_non_negative(case) -> None:
    _, model = case
    rng = np.random.default_rng(1)
    x1, x2 = (rng.random(model.image_shape, dtype=np.float32) for _ in range(2))
    y1, y2 = (rng.random(model.data_shape, dtype=np.float32) for _ in range(2))
    f = [np.asarray(model.forward(v), np.float64) for v in (x1, x2, 2.0 * x1 + 3.0 * x2)]
    b = [np.asarray(model.back(v), np.float64) for v in (y1, y2, 2.0 * y1 + 3.0 * y2)]
    for one, two, combined in (f, b):
        np.testing.assert_allclose(combined, 2.0 * one + 3.0 * two, rtol=1e-5,
                                   atol=1e-6 * combined.max())  # fmt: skip
        assert one.min() >= 0 and two.min() >= 0 and combined.max() > 0


def test_float32_shapes_and_device(case) -> None:
    _, model = case
    xp = model.xp
    x = np.ones(model.image_shape, np.float32)
    for subset, shape in [(None, tuple(model.data_shape)), *_subset_shapes(model)]:
        projected = model.forward(x, subset)
        assert isinstance(projected, xp.ndarray) and projected.dtype == np.float32
        assert tuple(projected.shape) == shape
        image = model.back(xp.ones(shape, np.float32), subset)
        assert isinstance(image, xp.ndarray) and image.dtype == np.float32
        assert tuple(image.shape) == model.image_shape
        sens = model.sensitivity(subset)
        assert isinstance(sens, xp.ndarray) and sens.dtype == np.float32
    data = model.validate_data(np.ones(model.data_shape, np.float64))
    assert isinstance(data, xp.ndarray) and data.dtype == np.float32
    with pytest.raises(recon.InputError):
        model.validate_data(-np.ones(model.data_shape, np.float32))
    with pytest.raises(recon.InputError):
        model.validate_data(np.ones((2, 2), np.float32))


@pytest.mark.skipif(not gxx_available(), reason="g++ is needed to run the CUDA sources")
def test_cuda_kernels_agree_with_numba(case, monkeypatch) -> None:
    """The model built on the fake GPU backend runs kernels/*.cu (compiled by g++) through the
    CuPy launchers; its projections equal the numba model's on every subset."""
    from tests.cuda_compat import fake_cupy

    contract, cpu = case
    monkeypatch.setattr(f"recon.{contract.kernels}._gpu.get_kernel", fake_cupy.fake_get_kernel)
    gpu = contract.build(fake_cupy.FakeGpuBackend())
    assert gpu.backend.is_gpu
    rng = np.random.default_rng(2)
    x = rng.random(cpu.image_shape, dtype=np.float32)
    for subset, shape in _subset_shapes(cpu):
        y = rng.random(shape, dtype=np.float32)
        for a, b in (
            (gpu.forward(x, subset), cpu.forward(x, subset)),
            (gpu.back(y, subset), cpu.back(y, subset)),
            (gpu.sensitivity(subset), cpu.sensitivity(subset)),
        ):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b)
