"""Drop-in replacement of the SPECT model's CPU kernel dispatcher that runs kernels/spect.cu on
the CPU (through g++ and the compat header), so a SpectModel can be evaluated with the CUDA code."""

from __future__ import annotations

import ctypes
from ctypes import c_float, c_int
from typing import Any

import numpy as np

from tests.cuda_compat.build import as_ptr, build_harness

_P = ctypes.c_void_p


def _load() -> ctypes.CDLL:
    lib = build_harness("tests/cuda_compat/spect_harness.cpp", "spect")
    geometry = [_P, c_int, _P, _P, _P, _P, c_int, c_float, c_float, c_float, c_float, c_int]
    lib.run_spect_attenuation.argtypes = [_P, c_int, c_int, c_int, *geometry, _P]
    lib.run_spect_rotate_forward.argtypes = [_P, c_int, c_int, c_int, _P, _P, c_int, *geometry, _P]
    lib.run_spect_rotate_back.argtypes = [_P, c_int, c_int, c_int, _P, _P, c_int, *geometry, _P]
    blur = [_P, _P, c_int, c_int, c_int, c_int, _P, _P, _P, _P, c_int]
    lib.run_spect_blur_sum_forward.argtypes = blur
    lib.run_spect_blur_spread_back.argtypes = blur
    for f in (
        lib.run_spect_attenuation, lib.run_spect_rotate_forward, lib.run_spect_rotate_back,
        lib.run_spect_blur_sum_forward, lib.run_spect_blur_spread_back,
    ):  # fmt: skip
        f.restype = None
    return lib


def _ptr(array: np.ndarray) -> int:
    return ctypes.cast(as_ptr(array), ctypes.c_void_p).value  # type: ignore[return-value]


class CompatSpectKernels:
    """Same methods as ``recon.spect.model._CpuKernels``; runs the CUDA source instead of numba."""

    def __init__(self, block_threads: int = 64) -> None:
        self.lib = _load()
        self.block_threads = block_threads

    @staticmethod
    def _geometry(model: Any, ids: np.ndarray) -> list:
        t = model._tables
        return [
            _ptr(ids), int(ids.shape[0]), _ptr(t["cos_t"]), _ptr(t["sin_t"]), _ptr(t["s0"]),
            _ptr(t["u_pos"]), int(model.geometry.n_u), float(model._x0), float(model._y0),
            float(1.0 / model._delta), float(model._delta), int(model.n_depth),
        ]  # fmt: skip

    def attenuation(self, model: Any, mu: np.ndarray, ids: np.ndarray, out: np.ndarray) -> None:
        nz, ny, nx = mu.shape
        self.lib.run_spect_attenuation(_ptr(mu), nz, ny, nx, *self._geometry(model, ids), _ptr(out))

    def _att(self, att: Any, rows: Any) -> list:
        if att is None:
            dummy = np.zeros(1, np.float32)
            self._keep = (dummy, np.zeros(1, np.int32))
            return [_ptr(self._keep[0]), _ptr(self._keep[1]), 0]
        return [_ptr(att), _ptr(rows), 1]

    def rotate_forward(
        self, model: Any, x: np.ndarray, att: Any, rows: Any, ids: np.ndarray, q: np.ndarray
    ) -> None:
        nz, ny, nx = x.shape
        self.lib.run_spect_rotate_forward(
            _ptr(x), nz, ny, nx, *self._att(att, rows), *self._geometry(model, ids), _ptr(q)
        )

    def rotate_back(
        self, model: Any, q: np.ndarray, att: Any, rows: Any, ids: np.ndarray, image: np.ndarray
    ) -> None:
        nz, ny, nx = image.shape
        self.lib.run_spect_rotate_back(
            _ptr(q), nz, ny, nx, *self._att(att, rows), *self._geometry(model, ids), _ptr(image)
        )

    def _blur(self, fn: Any, model: Any, src: np.ndarray, ids: np.ndarray, dst: np.ndarray) -> None:
        t = model._tables
        n = int(ids.shape[0])
        nz, n_u = model.grid.shape[0], model.geometry.n_u
        scratch = np.zeros((n, 2, nz, n_u), np.float32)
        fn(
            _ptr(src), _ptr(ids), n, int(model.n_depth), nz, n_u,
            _ptr(t["blur_w"]), _ptr(t["blur_n"]),
            _ptr(scratch), _ptr(dst), self.block_threads,
        )  # fmt: skip

    def blur_sum_forward(
        self, model: Any, q: np.ndarray, ids: np.ndarray, planes: np.ndarray
    ) -> None:
        self._blur(self.lib.run_spect_blur_sum_forward, model, q, ids, planes)

    def blur_spread_back(
        self, model: Any, planes: np.ndarray, ids: np.ndarray, q: np.ndarray
    ) -> None:
        self._blur(self.lib.run_spect_blur_spread_back, model, planes, ids, q)
