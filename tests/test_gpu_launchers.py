"""The CuPy launchers (recon/spect/_gpu.py) run against the CUDA source on the CPU.

A fake GPU backend hands numpy arrays to the real launch code; its kernels are kernels/spect.cu
compiled by g++ and run over the grid each launch asks for, with each argument checked against
the kernel's parameter types. This catches argument order, dtype and scalar-width mistakes that
only a GPU would otherwise reveal.
"""

from __future__ import annotations

import numpy as np
import pytest

import recon
from tests.cuda_compat.build import gxx_available

pytestmark = pytest.mark.skipif(not gxx_available(), reason="g++ is needed to run CUDA sources")


@pytest.fixture
def fake_gpu(monkeypatch):
    from tests.cuda_compat import fake_cupy

    monkeypatch.setattr("recon.spect._gpu.get_kernel", fake_cupy.fake_get_kernel)
    return fake_cupy.FakeGpuBackend()


def _models(backend, **kwargs):
    grid = recon.ImageGrid((6, 14, 14), 5.0)
    geometry = recon.SpectGeometry.circular(
        n_views=6, radius_mm=60, n_u=16, n_v=6, pixel_size_mm=5.0, cor_offset_mm=0.7
    )
    rng = np.random.default_rng(5)
    mu = (0.015 * rng.random(grid.shape)).astype(np.float32)
    common = dict(mu_map=mu, collimator=recon.Collimator.preset("LEHR"), isotope="Tc-99m")
    common.update(kwargs)
    gpu = recon.SpectModel(geometry, grid, device=backend, **common)
    cpu = recon.SpectModel(geometry, grid, device="cpu", **common)
    return gpu, cpu, rng


@pytest.mark.parametrize("cache", [True, False], ids=["attenuation-cached", "per-chunk"])
def test_gpu_launchers_match_numba(fake_gpu, cache):
    from recon.spect._gpu import GpuKernels

    gpu, cpu, rng = _models(fake_gpu, attenuation_cache_bytes=2**30 if cache else 0, chunk_bytes=1)
    assert isinstance(gpu._kernels, GpuKernels)
    x = rng.random(gpu.grid.shape, dtype=np.float32)
    y = rng.random(gpu.geometry.projection_shape, dtype=np.float32)
    for a, b in ((gpu.forward(x), cpu.forward(x)), (gpu.back(y), cpu.back(y))):
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-5


def test_osem_runs_through_gpu_launchers(fake_gpu):
    gpu, cpu, rng = _models(fake_gpu)
    truth = rng.random(gpu.grid.shape, dtype=np.float32)
    counts = cpu.forward(truth)
    a = np.asarray(recon.osem(gpu, counts, iterations=2, subsets=3, progress=False))
    b = np.asarray(recon.osem(cpu, counts, iterations=2, subsets=3, progress=False))
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-4


def test_fake_kernel_rejects_python_scalars(fake_gpu):
    from tests.cuda_compat.fake_cupy import fake_get_kernel

    kernel = fake_get_kernel(fake_gpu, "spect.cu", "spect_blur_sum_forward")
    q = np.zeros((1, 2, 2, 2), np.float32)
    ids = np.zeros(1, np.int32)
    w, n = np.zeros((1, 2, 2), np.float32), np.zeros((1, 2, 2), np.int32)
    scratch, out = np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 2), np.float32)
    with pytest.raises(TypeError, match="CuPy would widen"):
        kernel((1,), (32,), (q, ids, 1, np.int32(2), np.int32(2), np.int32(2), w, n, scratch, out))
    with pytest.raises(TypeError, match="int32 array"):
        kernel((1,), (32,), (q, ids.astype(np.int64), np.int32(1), np.int32(2), np.int32(2),
                             np.int32(2), w, n, scratch, out))  # fmt: skip
