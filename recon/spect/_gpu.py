"""CuPy launchers of the SPECT kernels in ``kernels/spect.cu``.

CuPy does not check raw-kernel arguments (a Python int becomes a 64-bit integer, strides are
ignored), so every launch goes through :func:`_check` and passes scalars as explicit numpy types.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import Backend, get_kernel
from recon.backend import check_kernel_array as _check
from recon.errors import KernelError

_SOURCE = "spect.cu"
_THREADS = 256
_BLUR_THREADS = 512


def _blocks(n: int, threads: int) -> int:
    return (int(n) + threads - 1) // threads


class GpuKernels:
    """Same methods as the CPU dispatcher in ``recon.spect.model``, launching CUDA kernels."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.cp = backend.xp
        self._no_att = self.cp.zeros(1, np.float32)
        self._no_rows = self.cp.zeros(1, np.int32)

    def _kernel(self, name: str) -> Any:
        return get_kernel(self.backend, _SOURCE, name)

    def _tables(self, model: Any, n_views_chunk: int, ids: Any) -> tuple:
        t = model._tables
        b = self.backend
        n_all = model.geometry.n_views
        _check(b, "view_ids", ids, np.int32, (n_views_chunk,))
        for key in ("cos_t", "sin_t", "s0"):
            _check(b, key, t[key], np.float32, (n_all,))
        _check(b, "u_pos", t["u_pos"], np.float32, (model.geometry.n_u,))
        return (
            ids, np.int32(n_views_chunk),
            t["cos_t"], t["sin_t"], t["s0"], t["u_pos"], np.int32(model.geometry.n_u),
            np.float32(model._x0), np.float32(model._y0), np.float32(1.0 / model._delta),
            np.float32(model._delta), np.int32(model.n_depth),
        )  # fmt: skip

    def _image_args(self, model: Any, name: str, image: Any) -> tuple:
        nz, ny, nx = model.grid.shape
        _check(self.backend, name, image, np.float32, (nz, ny, nx))
        return (image, np.int32(nz), np.int32(ny), np.int32(nx))

    def _att_args(self, model: Any, att: Any, rows: Any, n: int) -> tuple:
        if att is None:
            return (self._no_att, self._no_rows, np.int32(0))
        nz = model.grid.shape[0]
        _check(self.backend, "att", att, np.float32)
        if tuple(att.shape[1:]) != (model.n_depth, nz, model.geometry.n_u):
            raise KernelError(f"att has shape {tuple(att.shape)}; wrong depth/z/u sizes")
        _check(self.backend, "att_rows", rows, np.int32, (n,))
        return (att, rows, np.int32(1))

    def _q_shape(self, model: Any, n: int) -> tuple[int, int, int, int]:
        return (n, model.n_depth, model.grid.shape[0], model.geometry.n_u)

    def attenuation(self, model: Any, mu: Any, ids: Any, out: Any) -> None:
        n = int(ids.shape[0])
        _check(self.backend, "out_att", out, np.float32, self._q_shape(model, n))
        total = n * model.grid.shape[0] * model.geometry.n_u
        args = (*self._image_args(model, "mu", mu), *self._tables(model, n, ids), out)
        self._kernel("spect_attenuation")((_blocks(total, _THREADS),), (_THREADS,), args)

    def rotate_forward(self, model: Any, x: Any, att: Any, rows: Any, ids: Any, q: Any) -> None:
        n = int(ids.shape[0])
        _check(self.backend, "out_q", q, np.float32, self._q_shape(model, n))
        args = (
            *self._image_args(model, "image", x), *self._att_args(model, att, rows, n),
            *self._tables(model, n, ids), q,
        )  # fmt: skip
        self._kernel("spect_rotate_forward")((_blocks(q.size, _THREADS),), (_THREADS,), args)

    def rotate_back(self, model: Any, q: Any, att: Any, rows: Any, ids: Any, image: Any) -> None:
        n = int(ids.shape[0])
        _check(self.backend, "q", q, np.float32, self._q_shape(model, n))
        nz, ny, nx = model.grid.shape
        _check(self.backend, "out_image", image, np.float32, (nz, ny, nx))
        args = (
            q, np.int32(nz), np.int32(ny), np.int32(nx), *self._att_args(model, att, rows, n),
            *self._tables(model, n, ids), image,
        )  # fmt: skip
        self._kernel("spect_rotate_back")((_blocks(image.size, _THREADS),), (_THREADS,), args)

    def _blur_args(self, model: Any, ids: Any, n: int) -> tuple:
        t = model._tables
        shape = (model.geometry.n_views, model.n_depth, 2)
        _check(self.backend, "view_ids", ids, np.int32, (n,))
        _check(self.backend, "blur_w", t["blur_w"], np.float32, shape)
        _check(self.backend, "blur_n", t["blur_n"], np.int32, shape)
        nz, n_u = model.grid.shape[0], model.geometry.n_u
        scratch = self.cp.empty((n, 2, nz, n_u), np.float32)
        head = (ids, np.int32(n), np.int32(model.n_depth), np.int32(nz), np.int32(n_u))
        return head, (t["blur_w"], t["blur_n"], scratch)

    def blur_sum_forward(self, model: Any, q: Any, ids: Any, planes: Any) -> None:
        n = int(ids.shape[0])
        _check(self.backend, "q", q, np.float32, self._q_shape(model, n))
        _check(
            self.backend,
            "out_planes",
            planes,
            np.float32,
            (n, model.grid.shape[0], model.geometry.n_u),
        )
        head, tail = self._blur_args(model, ids, n)
        self._kernel("spect_blur_sum_forward")((n,), (_BLUR_THREADS,), (q, *head, *tail, planes))

    def blur_spread_back(self, model: Any, planes: Any, ids: Any, q: Any) -> None:
        n = int(ids.shape[0])
        _check(
            self.backend, "planes", planes, np.float32, (n, model.grid.shape[0], model.geometry.n_u)
        )
        _check(self.backend, "out_q", q, np.float32, self._q_shape(model, n))
        head, tail = self._blur_args(model, ids, n)
        self._kernel("spect_blur_spread_back")((n,), (_BLUR_THREADS,), (planes, *head, *tail, q))
