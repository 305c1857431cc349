"""Drop-in replacement of the SPECT model's CPU kernels that runs ``kernels/spect.cu`` on the CPU:
the CuPy launchers of ``recon/spect/_gpu.py`` with the kernels compiled by g++ (``fake_cupy``), so
a SpectModel can be evaluated with the CUDA code."""

from __future__ import annotations

from typing import Any

from recon.spect._gpu import GpuKernels
from tests.cuda_compat.fake_cupy import FakeGpuBackend, fake_get_kernel


class CompatSpectKernels(GpuKernels):
    """Same methods as ``recon.spect._cpu.CpuKernels``; runs the CUDA source instead of numba.

    ``block_threads`` sets the threads per block of the blur kernels (fewer than on the GPU, as
    each CUDA thread of a block that meets ``__syncthreads()`` runs as a CPU thread here).
    """

    def __init__(self, block_threads: int = 64) -> None:
        super().__init__(FakeGpuBackend())
        self.blur_threads = block_threads

    def _kernel(self, name: str) -> Any:
        return fake_get_kernel(self.backend, "spect.cu", name)
