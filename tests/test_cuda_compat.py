"""Self-test of the CUDA-on-CPU compat layer (tests/cuda_compat/).

Runs the tiny CUDA kernels in tests/cuda_compat/example_kernels.cu on the CPU via
g++ and compares them with numpy, so the layer itself is trusted before it is used
to check the real kernels in kernels/.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.cuda_compat.build import as_ptr, build_harness, gxx_available

pytestmark = pytest.mark.skipif(
    not gxx_available(), reason="g++ not found on PATH: the CUDA-on-CPU compat layer needs it"
)

COMPAT_DIR = Path(__file__).resolve().parent / "cuda_compat"

F32P = ctypes.POINTER(ctypes.c_float)
I32P = ctypes.POINTER(ctypes.c_int32)
INT = ctypes.c_int


@pytest.fixture(scope="module")
def lib() -> ctypes.CDLL:
    lib = build_harness(COMPAT_DIR / "example_harness.cpp", "example")
    signatures = {
        "run_saxpy": (None, [INT, ctypes.c_float, F32P, F32P, INT]),
        "run_block_reverse": (INT, [F32P, F32P, INT, INT]),
        "run_block_sum": (INT, [F32P, F32P, INT, INT]),
        "run_histogram": (None, [I32P, F32P, INT, I32P, F32P, INT, INT, INT]),
        "run_index_2d": (None, [I32P, INT, INT, INT, INT, INT]),
    }
    for name, (restype, argtypes) in signatures.items():
        getattr(lib, name).restype = restype
        getattr(lib, name).argtypes = argtypes
    return lib


def test_saxpy(lib):
    rng = np.random.default_rng(0)
    n = 1000  # not a multiple of the block: exercises the bounds check
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    expected = np.float32(2.5) * x + y
    lib.run_saxpy(n, 2.5, as_ptr(x), as_ptr(y), 128)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("block", [32, 100, 256])
def test_block_reverse_needs_syncthreads(lib, block):
    # Every element is distinct and non-zero, so a thread that reads the shared
    # tile before its partner wrote it (no barrier) gets a wrong value.
    n = 1000
    data = np.arange(1, n + 1, dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    assert lib.run_block_reverse(as_ptr(data), as_ptr(out), n, block) == 0
    expected = np.concatenate([chunk[::-1] for chunk in np.split(data, range(block, n, block))])
    np.testing.assert_array_equal(out, expected)


def test_block_sum(lib):
    rng = np.random.default_rng(1)
    n, block = 1000, 128
    data = rng.integers(-50, 50, n).astype(np.float32)  # integers: sums are exact
    nblocks = -(-n // block)
    out = np.full(nblocks, np.nan, dtype=np.float32)
    assert lib.run_block_sum(as_ptr(data), as_ptr(out), n, block) == 0
    padded = np.zeros(nblocks * block, dtype=np.float32)
    padded[:n] = data
    np.testing.assert_array_equal(out, padded.reshape(nblocks, block).sum(axis=1))


@pytest.mark.parametrize("threaded", [False, True], ids=["sequential", "threaded"])
def test_histogram_atomics(lib, threaded):
    rng = np.random.default_rng(2)
    n, nbins = 5000, 7
    bins = rng.integers(-1, nbins + 1, n).astype(np.int32)  # some out of range on purpose
    weights = rng.integers(1, 10, n).astype(np.float32)  # integers: any summation order is exact
    counts = np.zeros(nbins, dtype=np.int32)
    sums = np.zeros(nbins, dtype=np.float32)
    lib.run_histogram(
        as_ptr(bins), as_ptr(weights), n, as_ptr(counts), as_ptr(sums), nbins, 64, threaded
    )
    inside = (bins >= 0) & (bins < nbins)
    np.testing.assert_array_equal(counts, np.bincount(bins[inside], minlength=nbins))
    np.testing.assert_array_equal(
        sums, np.bincount(bins[inside], weights=weights[inside], minlength=nbins)
    )


@pytest.mark.parametrize("threaded", [False, True], ids=["sequential", "threaded"])
def test_index_2d(lib, threaded):
    width, height = 37, 23  # neither divides the (8, 4) block
    out = np.full((height, width), -1, dtype=np.int32)
    lib.run_index_2d(as_ptr(out), width, height, 8, 4, threaded)
    np.testing.assert_array_equal(out, np.arange(width * height).reshape(height, width))


def test_as_ptr_rejects_bad_arrays():
    with pytest.raises(TypeError):
        as_ptr(np.zeros(4, dtype=np.float16))
    with pytest.raises(ValueError):
        as_ptr(np.zeros((4, 4), dtype=np.float32)[:, ::2])
    with pytest.raises(TypeError):
        as_ptr([1.0, 2.0])


def test_build_errors_are_reported(tmp_path):
    bad = tmp_path / "bad_harness.cpp"
    bad.write_text('#include "recon_cuda_compat.h"\nthis is not C++;\n')
    with pytest.raises(RuntimeError, match="g\\+\\+ failed"):
        build_harness(bad, "bad")


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_example_kernels_are_valid_cuda(tmp_path):
    # The example must stay real CUDA, compiled without the compat header.
    cmd = ["nvcc", "-std=c++17", "-arch=sm_90", "-ptx", str(COMPAT_DIR / "example_kernels.cu")]
    proc = subprocess.run(
        [*cmd, "-o", str(tmp_path / "example.ptx")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
