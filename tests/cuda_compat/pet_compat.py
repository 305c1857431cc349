"""Drop-in replacement of the PET projector's CPU kernel dispatcher that runs kernels/pet.cu on the
CPU (through g++ and the compat header), so a LorProjector can be evaluated with the CUDA code."""

from __future__ import annotations

import ctypes
from ctypes import c_float, c_int
from typing import Any

import numpy as np

from tests.cuda_compat.build import as_ptr, build_harness

_P = ctypes.c_void_p


def _load() -> ctypes.CDLL:
    lib = build_harness("tests/cuda_compat/pet_harness.cpp", "pet")
    grid = [c_int, c_int, c_int, *[c_float] * 6, _P, _P, c_int]
    tof = [c_float, c_float, c_float]
    lib.run_pet_joseph_forward.argtypes = [_P, *grid, _P]
    lib.run_pet_joseph_back.argtypes = [_P, *grid, _P]
    lib.run_pet_joseph_tof_sino_forward.argtypes = [_P, *grid, *tof, c_int, _P]
    lib.run_pet_joseph_tof_sino_back.argtypes = [_P, *grid, *tof, c_int, _P]
    lib.run_pet_joseph_tof_lm_forward.argtypes = [_P, *grid, *tof, _P, _P]
    lib.run_pet_joseph_tof_lm_back.argtypes = [_P, *grid, *tof, _P, _P]
    for name in (
        "forward", "back", "tof_sino_forward", "tof_sino_back", "tof_lm_forward", "tof_lm_back"
    ):  # fmt: skip
        getattr(lib, f"run_pet_joseph_{name}").restype = None
    return lib


def _ptr(array: np.ndarray) -> int:
    return ctypes.cast(as_ptr(array), ctypes.c_void_p).value  # type: ignore[return-value]


class CompatPetKernels:
    """Same methods as ``recon.pet.projector._CpuKernels``, running the CUDA source."""

    def __init__(self) -> None:
        self.lib = _load()

    @staticmethod
    def _grid(proj: Any, xs: np.ndarray, xe: np.ndarray) -> list:
        nz, ny, nx = proj.grid.shape
        return [nz, ny, nx, *proj._geometry, _ptr(xs), _ptr(xe), int(xs.shape[0])]

    @staticmethod
    def _tof(proj: Any) -> list:
        return list(proj._tof_params)

    def forward(self, proj: Any, image: np.ndarray, xs: Any, xe: Any, out: np.ndarray) -> None:
        self.lib.run_pet_joseph_forward(_ptr(image), *self._grid(proj, xs, xe), _ptr(out))

    def back(self, proj: Any, values: np.ndarray, xs: Any, xe: Any, image: np.ndarray) -> None:
        self.lib.run_pet_joseph_back(_ptr(values), *self._grid(proj, xs, xe), _ptr(image))

    def tof_sino_forward(self, proj: Any, image: Any, xs: Any, xe: Any, out: Any) -> None:
        self.lib.run_pet_joseph_tof_sino_forward(
            _ptr(image), *self._grid(proj, xs, xe), *self._tof(proj), proj.max_bin, _ptr(out)
        )

    def tof_sino_back(self, proj: Any, values: Any, xs: Any, xe: Any, image: Any) -> None:
        self.lib.run_pet_joseph_tof_sino_back(
            _ptr(values), *self._grid(proj, xs, xe), *self._tof(proj), proj.max_bin, _ptr(image)
        )

    def tof_lm_forward(
        self, proj: Any, image: Any, xs: Any, xe: Any, tof_bin: np.ndarray, out: Any
    ) -> None:
        self.lib.run_pet_joseph_tof_lm_forward(
            _ptr(image), *self._grid(proj, xs, xe), *self._tof(proj), _ptr(tof_bin), _ptr(out)
        )

    def tof_lm_back(
        self, proj: Any, values: Any, xs: Any, xe: Any, tof_bin: np.ndarray, image: Any
    ) -> None:
        self.lib.run_pet_joseph_tof_lm_back(
            _ptr(values), *self._grid(proj, xs, xe), *self._tof(proj), _ptr(tof_bin), _ptr(image)
        )
