"""CuPy launchers of the PET projector kernels in ``kernels/pet.cu`` (the GPU twin of ``_cpu.py``).

CuPy does not check raw-kernel arguments (a Python int becomes a 64-bit integer, strides are
ignored), so every launch goes through :func:`_check` and passes scalars as explicit numpy types.
The kernels' ``PetGrid`` and ``PetTof`` are passed by value: CuPy hands the driver the data of a
one-element numpy array, of which it copies ``sizeof`` the struct (CuPy user guide, "Custom user
types"), so :data:`PET_GRID` and :data:`PET_TOF` must have the structs' layout (the launcher tests
compare them with ``kernels/pet.cu`` compiled by g++). This module never imports CuPy itself: it
uses the backend's array module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import Backend, get_kernel
from recon.backend import check_kernel_array as _check

_SOURCE = "pet.cu"
_THREADS = 256  # one thread per LOR

# ``struct PetGrid`` and ``struct PetTof`` of kernels/pet.cu (4-byte fields, C alignment).
PET_GRID = np.dtype(
    [("nz", np.int32), ("ny", np.int32), ("nx", np.int32)]
    + [(name, np.float32) for name in ("x0", "y0", "z0", "dx", "dy", "dz")],
    align=True,
)
PET_TOF = np.dtype(
    [("width", np.float32), ("sigma", np.float32), ("n_sigmas", np.float32), ("max_bin", np.int32)],
    align=True,
)


def _blocks(n: int) -> int:
    return (int(n) + _THREADS - 1) // _THREADS


class GpuKernels:
    """Launches the kernels for a ``LorProjector`` (same methods as ``_cpu.CpuKernels``)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @staticmethod
    def _grid(proj: Any) -> np.ndarray:
        """``PetGrid`` of the projector's image, as a one-element array (passed by value)."""
        return np.array([(*proj.grid.shape, *proj._geometry)], PET_GRID)

    @staticmethod
    def _tof(proj: Any) -> np.ndarray:
        """``PetTof`` of the projector's TOF bins, as a one-element array (passed by value)."""
        return np.array([(*proj._tof_params, proj.max_bin)], PET_TOF)

    def _lors(
        self, proj: Any, data: Any, data_name: str, data_shape: tuple, xs: Any, xe: Any
    ) -> tuple[tuple, int]:
        """``(data, grid, xstart, xend, n_lors)``, checked, and ``n_lors``."""
        b = self.backend
        _check(b, "xstart", xs, np.float32)
        n = int(xs.shape[0])
        _check(b, "xstart", xs, np.float32, (n, 3))
        _check(b, "xend", xe, np.float32, (n, 3))
        shape = tuple(n if s is None else s for s in data_shape)
        _check(b, data_name, data, np.float32, shape)
        return (data, self._grid(proj), xs, xe, np.int32(n)), n

    def _tof_table(self, proj: Any) -> tuple[Any, np.float32, np.int32]:
        """``(tof_table, tof_inv_step, tof_table_size)`` of the listmode TOF kernels."""
        table, inv_step = proj.tof_table
        _check(self.backend, "tof_table", table, np.float32, (int(table.shape[0]),))
        return table, np.float32(inv_step), np.int32(table.shape[0])

    def _tof_bins(self, tof_bin: Any, n: int) -> Any:
        _check(self.backend, "tof_bin", tof_bin, np.int32, (n,))
        return tof_bin

    def _kernel(self, name: str) -> Any:
        return get_kernel(self.backend, _SOURCE, name)

    def _launch(self, name: str, n: int, args: tuple) -> None:
        if n == 0:
            return
        with self.backend.on_device():
            self._kernel(name)((_blocks(n),), (_THREADS,), args)

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
        self._launch("pet_joseph_tof_sino_forward", n, (*args, self._tof(proj), out))

    def tof_sino_back(self, proj: Any, values: Any, xs: Any, xe: Any, image: Any) -> None:
        args, n = self._lors(proj, values, "values", (None, proj.tof.n_bins), xs, xe)
        _check(self.backend, "out_image", image, np.float32, proj.grid.shape)
        self._launch("pet_joseph_tof_sino_back", n, (*args, self._tof(proj), image))

    # ------------------------------------------------------------------ TOF, listmode
    def tof_lm_forward(
        self, proj: Any, image: Any, xs: Any, xe: Any, tof_bin: Any, out: Any
    ) -> None:
        args, n = self._lors(proj, image, "image", proj.grid.shape, xs, xe)
        _check(self.backend, "out_values", out, np.float32, (n,))
        tail = (self._tof(proj), self._tof_bins(tof_bin, n), *self._tof_table(proj), out)
        self._launch("pet_joseph_tof_lm_forward", n, (*args, *tail))

    def tof_lm_back(
        self, proj: Any, values: Any, xs: Any, xe: Any, tof_bin: Any, image: Any
    ) -> None:
        args, n = self._lors(proj, values, "values", (None,), xs, xe)
        _check(self.backend, "out_image", image, np.float32, proj.grid.shape)
        tail = (self._tof(proj), self._tof_bins(tof_bin, n), *self._tof_table(proj), image)
        self._launch("pet_joseph_tof_lm_back", n, (*args, *tail))
