"""recon.backend.Backend: the device in words (benchmark records and reports)."""

from __future__ import annotations

import os
import types

import numpy as np

from recon.backend import Backend, resolve_backend


def test_cpu_device_name_gives_the_core_count() -> None:
    assert resolve_backend("cpu").device_name.endswith(f"({os.cpu_count()} cores)")


def test_gpu_device_name_is_the_cuda_device_name() -> None:
    """CuPy's ``getDeviceProperties`` gives the name as bytes (or str): either is decoded, for
    the backend's own device ordinal."""
    asked = []

    def properties(device_id: int) -> dict:
        asked.append(device_id)
        return {"name": b"NVIDIA H100 80GB HBM3" if device_id == 1 else "other"}

    runtime = types.SimpleNamespace(getDeviceProperties=properties)
    cupy_like = types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=runtime), ndarray=np.ndarray
    )
    assert Backend("gpu", cupy_like, 1).device_name == "NVIDIA H100 80GB HBM3"  # type: ignore[arg-type]
    assert Backend("gpu", cupy_like, 0).device_name == "other"  # type: ignore[arg-type]
    assert asked == [1, 0]
