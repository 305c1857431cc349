"""Drop-in replacement of the PET projector's CPU kernels that runs ``kernels/pet.cu`` on the CPU:
the CuPy launchers of ``recon/pet/_gpu.py`` with the kernels compiled by g++ (``fake_cupy``), so
a LorProjector can be evaluated with the CUDA code."""

from __future__ import annotations

from typing import Any

from recon.pet._gpu import GpuKernels
from tests.cuda_compat.fake_cupy import FakeGpuBackend, fake_get_kernel


class CompatPetKernels(GpuKernels):
    """Same methods as ``recon.pet._cpu.CpuKernels``, running the CUDA source."""

    def __init__(self) -> None:
        super().__init__(FakeGpuBackend())

    def _kernel(self, name: str) -> Any:
        return fake_get_kernel(self.backend, "pet.cu", name)
