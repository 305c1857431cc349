"""CuPy launchers of the PET projector kernels in ``kernels/pet.cu``.

CuPy does not check raw-kernel arguments (a Python int becomes a 64-bit integer, strides are
ignored), so every launch goes through :func:`_check` and passes scalars as explicit numpy types.
This module never imports CuPy itself: it uses the backend's array module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import Backend, get_kernel
from recon.backend import check_kernel_array as _check

_SOURCE = "pet.cu"
_THREADS = 256  # one thread per LOR


def _blocks(n: int) -> int:
    return (int(n) + _THREADS - 1) // _THREADS


class GpuKernels:
    """Same methods as the CPU dispatcher in ``recon.pet.projector``, launching CUDA kernels."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _launch(self, name: str, n: int, args: tuple) -> None:
        if n == 0:
            return
        with self.backend.on_device():
            get_kernel(self.backend, _SOURCE, name)((_blocks(n),), (_THREADS,), args)

    def _lors(self, proj: Any, data: Any, data_name: str, data_shape: tuple, xs: Any, xe: Any):
        """``(data, nz, ny, nx, x0, y0, z0, dx, dy, dz, xstart, xend, n_lors)``, checked."""
        b = self.backend
        _check(b, "xstart", xs, np.float32)
        n = int(xs.shape[0])
        _check(b, "xstart", xs, np.float32, (n, 3))
        _check(b, "xend", xe, np.float32, (n, 3))
        shape = tuple(n if s is None else s for s in data_shape)
        _check(b, data_name, data, np.float32, shape)
        nz, ny, nx = proj.grid.shape
        x0, y0, z0, dx, dy, dz = proj._geometry
        return (
            data, np.int32(nz), np.int32(ny), np.int32(nx),
            np.float32(x0), np.float32(y0), np.float32(z0),
            np.float32(dx), np.float32(dy), np.float32(dz),
            xs, xe, np.int32(n),
        ), n  # fmt: skip

    @staticmethod
    def _tof(proj: Any) -> tuple:
        w, sigma, n_sigmas = proj._tof_params
        return (np.float32(w), np.float32(sigma), np.float32(n_sigmas))

    def _tof_bins(self, tof_bin: Any, n: int) -> Any:
        _check(self.backend, "tof_bin", tof_bin, np.int32, (n,))
        return tof_bin

    # ------------------------------------------------------------------ non-TOF
    def forward(self, proj: Any, image: Any, xs: Any, xe: Any, out: Any) -> None:
        args, n = self._lors(proj, image, "image", proj.grid.shape, xs, xe)
        _check(self.backend, "out_values", out, np.float32, (n,))
        self._launch("pet_joseph_forward", n, (*args, out))

    def back(self, proj: Any, values: Any, xs: Any, xe: Any, image: Any) -> None:
        args, n = self._lors(proj, values, "values", (None,), xs, xe)
        _check(self.backend, "out_image", image, np.float32, proj.grid.shape)
        self._launch("pet_joseph_back", n, (*args, image))

    # ------------------------------------------------------------------ TOF, sinogram
    def tof_sino_forward(self, proj: Any, image: Any, xs: Any, xe: Any, out: Any) -> None:
        args, n = self._lors(proj, image, "image", proj.grid.shape, xs, xe)
        _check(self.backend, "out_values", out, np.float32, (n, proj.tof.n_bins))
        tail = (*self._tof(proj), np.int32(proj.max_bin), out)
        self._launch("pet_joseph_tof_sino_forward", n, (*args, *tail))

    def tof_sino_back(self, proj: Any, values: Any, xs: Any, xe: Any, image: Any) -> None:
        args, n = self._lors(proj, values, "values", (None, proj.tof.n_bins), xs, xe)
        _check(self.backend, "out_image", image, np.float32, proj.grid.shape)
        tail = (*self._tof(proj), np.int32(proj.max_bin), image)
        self._launch("pet_joseph_tof_sino_back", n, (*args, *tail))

    # ------------------------------------------------------------------ TOF, listmode
    def tof_lm_forward(
        self, proj: Any, image: Any, xs: Any, xe: Any, tof_bin: Any, out: Any
    ) -> None:
        args, n = self._lors(proj, image, "image", proj.grid.shape, xs, xe)
        _check(self.backend, "out_values", out, np.float32, (n,))
        tail = (*self._tof(proj), self._tof_bins(tof_bin, n), out)
        self._launch("pet_joseph_tof_lm_forward", n, (*args, *tail))

    def tof_lm_back(
        self, proj: Any, values: Any, xs: Any, xe: Any, tof_bin: Any, image: Any
    ) -> None:
        args, n = self._lors(proj, values, "values", (None,), xs, xe)
        _check(self.backend, "out_image", image, np.float32, proj.grid.shape)
        tail = (*self._tof(proj), self._tof_bins(tof_bin, n), image)
        self._launch("pet_joseph_tof_lm_back", n, (*args, *tail))
