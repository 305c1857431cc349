"""CuPy launchers of the SPECT kernels in ``kernels/spect.cu`` (the GPU twin of ``_cpu.py``).

The kernels use the layout of ``_cpu.py``: images ``(y, x, z)`` and rotated samples
``[view, depth, u, z]``, z innermost, so that consecutive threads (along z) read and write
consecutive addresses. :meth:`GpuKernels.project` / :meth:`GpuKernels.backproject` run the stages
(attenuation where not cached, rotation, blur per response component) chunk by chunk of views,
where the CPU fuses them per view.

CuPy does not check raw-kernel arguments (a Python int becomes a 64-bit integer, strides are
ignored), so every launch goes through :func:`_check` and passes scalars as explicit numpy types.
The kernels' ``SpectGrid`` and ``SpectViews`` are passed by value: CuPy hands the driver the data
of a one-element numpy array, of which it copies ``sizeof`` the struct (CuPy user guide, "Custom
user types"), so :data:`SPECT_GRID` and :data:`SPECT_VIEWS` must have the structs' layout (the
launcher tests compare them with ``kernels/spect.cu`` compiled by g++). ``SpectViews`` holds the
device addresses of the view tables: each is checked like any array argument before its address is
taken, and the tables outlive the launch (the model keeps them; the caller keeps ``view_ids``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import Backend, get_kernel
from recon.backend import check_kernel_array as _check
from recon.errors import KernelError

_SOURCE = "spect.cu"
_THREADS = 256

# ``struct SpectGrid`` (4-byte fields) and ``struct SpectViews`` (64-bit device addresses) of
# kernels/spect.cu, with C alignment.
SPECT_GRID = np.dtype(
    [(name, np.int32) for name in ("nz", "ny", "nx", "n_views", "n_d", "n_u")]
    + [(name, np.float32) for name in ("x0", "y0", "delta", "inv_delta")],
    align=True,
)
SPECT_VIEWS = np.dtype(
    [(name, np.uint64) for name in ("view_ids", "cos_t", "sin_t", "s0", "u_pos")], align=True
)


def _blocks(n: int, threads: int) -> int:
    return (int(n) + threads - 1) // threads


class GpuKernels:
    """Launches the kernels for a ``SpectModel`` (same methods as ``_cpu.CpuKernels``)."""

    blur_threads = 512  # threads per block (one block per view) of the blur kernels

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.cp = backend.xp
        self._no_att = self.cp.zeros(1, np.float32)
        self._no_rows = self.cp.zeros(1, np.int32)

    @staticmethod
    def _grid(model: Any, ids: Any) -> np.ndarray:
        """``SpectGrid`` of a launch over the views ``ids``, as a one-element array."""
        sizes = (*model.grid.shape, int(ids.shape[0]), model.n_depth, model.geometry.n_u)
        delta = model._delta
        return np.array([(*sizes, model._x0, model._y0, delta, 1.0 / delta)], SPECT_GRID)

    def _views(self, model: Any, ids: Any) -> np.ndarray:
        """``SpectViews`` of the views ``ids``, checked, as a one-element array."""
        t = model._tables
        b = self.backend
        tables = (ids, t["cos_t"], t["sin_t"], t["s0"], t["u_pos"])
        _check(b, "view_ids", ids, np.int32, (int(ids.shape[0]),))
        for key in ("cos_t", "sin_t", "s0"):
            _check(b, key, t[key], np.float32, (model.geometry.n_views,))
        _check(b, "u_pos", t["u_pos"], np.float32, (model.geometry.n_u,))
        return np.array([tuple(b.address(a) for a in tables)], SPECT_VIEWS)

    def _att(self, model: Any, att: Any, rows: Any, n: int) -> tuple:
        """``(att, att_rows, has_att)``, checked; placeholders when there is no attenuation."""
        if att is None:
            return (self._no_att, self._no_rows, np.int32(0))
        nz = model.grid.shape[0]
        _check(self.backend, "att", att, np.float32)
        if tuple(att.shape[1:]) != (model.n_depth, model.geometry.n_u, nz):
            raise KernelError(f"att has shape {tuple(att.shape)}; wrong depth/u/z sizes")
        _check(self.backend, "att_rows", rows, np.int32, (n,))
        return (att, rows, np.int32(1))

    @staticmethod
    def _q_shape(model: Any, n: int) -> tuple[int, int, int, int]:
        """Rotated samples ``[view, depth, u, z]``."""
        return (n, model.n_depth, model.geometry.n_u, model.grid.shape[0])

    @staticmethod
    def _planes_shape(model: Any, n: int) -> tuple[int, int, int]:
        """Projections ``[view, u, z]``."""
        return (n, model.geometry.n_u, model.grid.shape[0])

    def _kernel(self, name: str) -> Any:
        return get_kernel(self.backend, _SOURCE, name)

    def _blur(
        self, name: str, model: Any, src: Any, ids: Any, dst: Any, tables: Any = None
    ) -> None:
        """Launch a blur kernel, ``name(src, grid, view_ids, blur_w, blur_n, blur_s, scratch,
        dst)``, with one block per view; ``tables`` is one response component's ``(blur_w,
        blur_n, blur_s)`` (default: the model's first)."""
        t = model._tables
        blur_w, blur_n, blur_s = (
            (t["blur_w"], t["blur_n"], t["blur_s"]) if tables is None else tables
        )
        n = int(ids.shape[0])
        shape = (model.geometry.n_views, model.n_depth, 2, 2)  # view, depth, axis, part
        _check(self.backend, "view_ids", ids, np.int32, (n,))
        _check(self.backend, "blur_w", blur_w, np.float32, shape)
        _check(self.backend, "blur_n", blur_n, np.int32, shape)
        _check(self.backend, "blur_s", blur_s, np.int32, shape)
        scratch = self.cp.empty((n, 2, model.geometry.n_u, model.grid.shape[0]), np.float32)
        args = (src, self._grid(model, ids), ids, blur_w, blur_n, blur_s, scratch, dst)
        self._kernel(name)((n,), (self.blur_threads,), args)

    # ------------------------------------------------------------------ projector
    @staticmethod
    def _chunks(model: Any, n: int) -> list[slice]:
        """Slices of the launch's views whose rotated samples fit in ``model.chunk_bytes``."""
        per_view = 4 * model.n_depth * model.grid.shape[0] * model.geometry.n_u
        size = max(1, model.chunk_bytes // per_view)
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    def _chunk_att(self, model: Any, att: Any, rows: Any, ids: Any) -> tuple[Any, Any]:
        """The chunk's attenuation rows: the cache's, or freshly computed when some are not."""
        if model._mu_t is None:
            return None, None
        if att is not None and int(rows.min()) >= 0:
            return att, rows
        n = int(ids.shape[0])
        fresh = self.cp.empty(self._q_shape(model, n), np.float32)
        self.attenuation(model, model._mu_t, ids, fresh)
        return fresh, self.cp.arange(n, dtype=np.int32)

    def project(self, model: Any, x: Any, att: Any, rows: Any, ids: Any, planes: Any) -> None:
        """``planes[k]`` ``[u, z]``: the views ``ids`` of the ``(z, y, x)`` image ``x``, by
        chunks: rotate (attenuated) into ``q``, then blur-sum each response component."""
        x = self.to_yxz(x)
        for chunk in self._chunks(model, int(ids.shape[0])):
            c_ids = self.cp.ascontiguousarray(ids[chunk])
            c_rows = None if rows is None else self.cp.ascontiguousarray(rows[chunk])
            c_att, c_rows = self._chunk_att(model, att, c_rows, c_ids)
            q = self.cp.empty(self._q_shape(model, int(c_ids.shape[0])), np.float32)
            self.rotate_forward(model, x, c_att, c_rows, c_ids, q)
            total = None
            for weight, tables in model._blurs:
                part = self.cp.empty(self._planes_shape(model, int(c_ids.shape[0])), np.float32)
                self.blur_sum_forward(model, q, c_ids, part, tables)
                if len(model._blurs) > 1:
                    part *= np.float32(weight)
                total = part if total is None else total + part
            planes[chunk] = total

    def to_yxz(self, volume: Any) -> Any:
        """A ``(z, y, x)`` volume in the kernels' layout: contiguous float32 ``(y, x, z)``."""
        return self.cp.ascontiguousarray(self.cp.transpose(volume, (1, 2, 0)), dtype=np.float32)

    def backproject(self, model: Any, planes: Any, att: Any, rows: Any, ids: Any) -> Any:
        """The ``(z, y, x)`` back-projection of ``planes`` (views ``ids``, ``[u, z]``): the
        transpose of :meth:`project`, chunk by chunk into a ``(y, x, z)`` image."""
        nz, ny, nx = model.grid.shape
        image = self.cp.zeros((ny, nx, nz), np.float32)
        for chunk in self._chunks(model, int(ids.shape[0])):
            c_ids = self.cp.ascontiguousarray(ids[chunk])
            c_rows = None if rows is None else self.cp.ascontiguousarray(rows[chunk])
            c_planes = self.cp.ascontiguousarray(planes[chunk])
            q = None
            for weight, tables in model._blurs:
                part = self.cp.empty(self._q_shape(model, int(c_ids.shape[0])), np.float32)
                self.blur_spread_back(model, c_planes, c_ids, part, tables)
                if len(model._blurs) > 1:
                    part *= np.float32(weight)
                q = part if q is None else q + part
            c_att, c_rows = self._chunk_att(model, att, c_rows, c_ids)
            self.rotate_back(model, q, c_att, c_rows, c_ids, image)
        return self.cp.ascontiguousarray(self.cp.transpose(image, (2, 0, 1)))

    # ------------------------------------------------------------------ rotate
    def attenuation(self, model: Any, mu: Any, ids: Any, out: Any) -> None:
        n = int(ids.shape[0])
        nz, ny, nx = model.grid.shape
        _check(self.backend, "mu", mu, np.float32, (ny, nx, nz))
        _check(self.backend, "out_att", out, np.float32, self._q_shape(model, n))
        total = n * model.grid.shape[0] * model.geometry.n_u
        args = (mu, self._grid(model, ids), self._views(model, ids), out)
        self._kernel("spect_attenuation")((_blocks(total, _THREADS),), (_THREADS,), args)

    def rotate_forward(self, model: Any, x: Any, att: Any, rows: Any, ids: Any, q: Any) -> None:
        n = int(ids.shape[0])
        nz, ny, nx = model.grid.shape
        _check(self.backend, "image", x, np.float32, (ny, nx, nz))
        _check(self.backend, "out_q", q, np.float32, self._q_shape(model, n))
        views = self._views(model, ids)
        args = (x, self._grid(model, ids), views, *self._att(model, att, rows, n), q)
        self._kernel("spect_rotate_forward")((_blocks(q.size, _THREADS),), (_THREADS,), args)

    def rotate_back(self, model: Any, q: Any, att: Any, rows: Any, ids: Any, image: Any) -> None:
        n = int(ids.shape[0])
        _check(self.backend, "q", q, np.float32, self._q_shape(model, n))
        nz, ny, nx = model.grid.shape
        _check(self.backend, "out_image", image, np.float32, (ny, nx, nz))
        views = self._views(model, ids)
        args = (q, self._grid(model, ids), views, *self._att(model, att, rows, n), image)
        self._kernel("spect_rotate_back")((_blocks(image.size, _THREADS),), (_THREADS,), args)

    # ------------------------------------------------------------------ blur
    def blur_sum_forward(
        self, model: Any, q: Any, ids: Any, planes: Any, tables: Any = None
    ) -> None:
        n = int(ids.shape[0])
        _check(self.backend, "q", q, np.float32, self._q_shape(model, n))
        _check(self.backend, "out_planes", planes, np.float32, self._planes_shape(model, n))
        self._blur("spect_blur_sum_forward", model, q, ids, planes, tables)

    def blur_spread_back(
        self, model: Any, planes: Any, ids: Any, q: Any, tables: Any = None
    ) -> None:
        n = int(ids.shape[0])
        _check(self.backend, "planes", planes, np.float32, self._planes_shape(model, n))
        _check(self.backend, "out_q", q, np.float32, self._q_shape(model, n))
        self._blur("spect_blur_spread_back", model, planes, ids, q, tables)
