"""Shared fixtures: the backend matrix (numpy always, CuPy only when a GPU is really usable)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from recon.backend import Backend, gpu_available, resolve_backend

_GPU = gpu_available()
_NO_GPU = pytest.mark.skip(reason="needs CuPy and a usable CUDA device (install recon[cuda12])")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every test marked ``gpu`` when no GPU is usable, with one clear reason."""
    if _GPU:
        return
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(_NO_GPU)


@pytest.fixture(params=["cpu", pytest.param("gpu", marks=pytest.mark.gpu)] if _GPU else ["cpu"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The resolved backend to run a test on; pass it as ``device=`` to a model."""
    return resolve_backend(request.param)


@pytest.fixture
def to_numpy() -> Callable[[Any], np.ndarray]:
    """Convert a numpy or CuPy array to numpy."""
    return resolve_backend("cpu").to_host


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the user's cache folder (a test that wants the on-disk
    sensitivity cache points RECON_CACHE_DIR at its own temporary folder)."""
    monkeypatch.setenv("RECON_CACHE_DIR", "off")
