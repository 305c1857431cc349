"""The CuPy launchers (recon/spect/_gpu.py, recon/pet/_gpu.py) run against the CUDA source on
the CPU.

A fake GPU backend hands numpy arrays to the real launch code; its kernels are kernels/*.cu
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


def _rotate_args(grid_dtype=None):
    """Arguments of spect_rotate_forward for a 1-view, 1-depth, 2x2x2 problem, checked as valid."""
    from recon.spect._gpu import SPECT_GRID, SPECT_VIEWS

    image, att = np.zeros((2, 2, 2), np.float32), np.zeros((1, 1, 2, 2), np.float32)
    tables = [np.zeros(1, np.int32)] + [np.zeros(k, np.float32) for k in (1, 1, 1, 2)]
    views = np.array([tuple(t.ctypes.data for t in tables)], SPECT_VIEWS)
    grid = np.array([(2, 2, 2, 1, 1, 2, 0.0, 0.0, 1.0, 1.0)], grid_dtype or SPECT_GRID)
    out = np.zeros((1, 1, 2, 2), np.float32)
    return [image, grid, views, att, np.zeros(1, np.int32), np.int32(1), out], tables


def test_fake_kernel_rejects_python_scalars(fake_gpu):
    from tests.cuda_compat.fake_cupy import fake_get_kernel

    kernel = fake_get_kernel(fake_gpu, "spect.cu", "spect_rotate_forward")
    args, tables = _rotate_args()
    kernel((1,), (32,), tuple(args))  # the launchers' types are accepted
    with pytest.raises(TypeError, match="CuPy would widen"):
        kernel((1,), (32,), (*args[:5], 1, args[6]))
    with pytest.raises(TypeError, match="int32 array"):
        kernel((1,), (32,), (*args[:4], np.zeros(1, np.int64), *args[5:]))


@pytest.mark.parametrize(
    "fields",
    [
        [("nz", "i4"), ("ny", "i4"), ("nx", "i4"), ("n_views", "i4"), ("n_d", "i4"),
         ("n_u", "i4"), ("x0", "f8"), ("y0", "f8"), ("delta", "f8"), ("inv_delta", "f8")],
        [("ny", "i4"), ("nz", "i4"), ("nx", "i4"), ("n_views", "i4"), ("n_d", "i4"),
         ("n_u", "i4"), ("x0", "f4"), ("y0", "f4"), ("delta", "f4"), ("inv_delta", "f4")],
        [("nz", "i4"), ("ny", "i4"), ("nx", "i4"), ("n_views", "i4"), ("n_d", "i4"),
         ("n_u", "i4"), ("x0", "f4"), ("y0", "f4"), ("delta", "f4")],
        {"names": ["nz", "ny", "nx", "n_views", "n_d", "n_u", "x0", "y0", "delta", "inv_delta"],
         "formats": ["i4"] * 6 + ["f4"] * 4,
         "offsets": [0, 4, 8, 12, 16, 20, 28, 32, 36, 40]},
    ],
    ids=["doubles", "order", "missing", "offsets"],
)  # fmt: skip
def test_fake_kernel_checks_struct_layout(fake_gpu, fields):
    """A struct passed by value must be a one-element array laid out as the kernel's struct: the
    driver copies sizeof(struct) bytes from it, so any other layout would be misread."""
    from recon.spect._gpu import SPECT_GRID
    from tests.cuda_compat.fake_cupy import fake_get_kernel

    kernel = fake_get_kernel(fake_gpu, "spect.cu", "spect_rotate_forward")
    args, tables = _rotate_args()
    with pytest.raises(TypeError, match="SpectGrid"):
        kernel((1,), (32,), (args[0], np.zeros(1, np.dtype(fields)), *args[2:]))
    with pytest.raises(TypeError, match="one-element"):
        kernel((1,), (32,), (args[0], np.zeros(2, SPECT_GRID), *args[2:]))
    with pytest.raises(TypeError, match="SpectViews"):  # addresses are 64-bit
        views = np.zeros(1, [(n, "u4") for n in ("view_ids", "cos_t", "sin_t", "s0", "u_pos")])
        kernel((1,), (32,), (*args[:2], views, *args[3:]))


# ---------------------------------------------------------------------------------------- PET
@pytest.fixture
def fake_pet_gpu(monkeypatch):
    from tests.cuda_compat import fake_cupy

    monkeypatch.setattr("recon.pet._gpu.get_kernel", fake_cupy.fake_get_kernel)
    return fake_cupy.FakeGpuBackend()


def _pet_scene():
    scanner = recon.PetScanner.preset("small")
    grid = recon.ImageGrid((5, 20, 20), (8.0, 6.0, 6.0))
    rng = np.random.default_rng(8)
    mu = np.full(grid.shape, 0.0096, np.float32)
    return scanner, grid, mu, rng


def _close(a, b, tol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b) < tol


@pytest.mark.parametrize("use_tof", [False, True], ids=["non-TOF", "TOF sinogram"])
def test_pet_sinogram_launchers_match_numba(fake_pet_gpu, use_tof):
    """kernels/pet.cu through recon/pet/_gpu.py equals numba for the sinogram model (non-TOF
    and TOF), attenuation factors included."""
    from recon.pet._gpu import GpuKernels

    scanner, grid, mu, rng = _pet_scene()
    common = dict(mu_map=mu, use_tof=use_tof, max_ring_difference=2, isotope="F-18")
    gpu = recon.PetSinogramModel(scanner, grid, device=fake_pet_gpu, **common)
    cpu = recon.PetSinogramModel(scanner, grid, device="cpu", **common)
    assert isinstance(gpu.projector._kernels, GpuKernels)
    x = rng.random(grid.shape, dtype=np.float32)
    y = rng.random(cpu.data_shape, dtype=np.float32)
    subset = cpu.subsets(8)[3]
    assert _close(gpu.forward(x, subset), cpu.forward(x, subset))
    assert _close(gpu.back(cpu.take(y, subset), subset), cpu.back(cpu.take(y, subset), subset))


def test_pet_listmode_launchers_match_numba(fake_pet_gpu):
    """Listmode TOF projection and LM-OSEM through the launchers equal the numba path."""
    scanner, grid, mu, rng = _pet_scene()
    simulator = recon.PetSinogramModel(scanner, grid, mu_map=mu, max_ring_difference=2)
    activity = np.ones(grid.shape, np.float32)
    events = recon.pet.simulate_listmode(simulator, activity * 0.2, 1.0, rng)
    common = dict(mu_map=mu, max_ring_difference=2)
    gpu = recon.PetListmodeModel(scanner, grid, device=fake_pet_gpu, **common)
    cpu = recon.PetListmodeModel(scanner, grid, device="cpu", **common)
    prepared_gpu, prepared_cpu = gpu.prepare(events), cpu.prepare(events)
    x = rng.random(grid.shape, dtype=np.float32)
    assert _close(gpu.forward_events(x, prepared_gpu), cpu.forward_events(x, prepared_cpu))
    values = rng.random(prepared_cpu["n"], dtype=np.float32)
    assert _close(gpu.back_events(values, prepared_gpu), cpu.back_events(values, prepared_cpu))
    a = recon.lm_osem(gpu, events, iterations=1, subsets=2, frame_duration_s=1.0, progress=False)
    b = recon.lm_osem(cpu, events, iterations=1, subsets=2, frame_duration_s=1.0, progress=False)
    assert _close(np.asarray(a), np.asarray(b), 1e-4)


def test_lor_model_makes_its_endpoints_on_the_device(fake_pet_gpu):
    scanner, grid, mu, rng = _pet_scene()
    layout = recon.SinogramLayout(scanner, max_ring_difference=1)
    xs, xe = layout.endpoints()
    parts = (xs[0, :, :, :2], xe[0, :, :, :2], xs[:, 0, 0, 2], xe[:, 0, 0, 2])
    gpu = recon.PetLorSinogramModel.separable(*parts, grid, mu_map=mu, device=fake_pet_gpu)
    cpu = recon.PetLorSinogramModel.separable(*parts, grid, mu_map=mu, device="cpu")
    x = rng.random(grid.shape, dtype=np.float32)
    assert _close(gpu.forward(x), cpu.forward(x))
    assert _close(gpu.sensitivity(gpu.subsets(4)[1]), cpu.sensitivity(cpu.subsets(4)[1]))
