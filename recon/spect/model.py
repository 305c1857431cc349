"""The SPECT system model: rotate-attenuate-blur-sum projector with per-view factors."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from recon._validation import as_mu_map
from recon.backend import Backend
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.spect.collimator import Collimator
from recon.spect.geometry import SpectGeometry
from recon.system_model import ViewModel, ViewSubsets

__all__ = ["SpectModel"]

log = logging.getLogger("recon")

#: Largest variance (in pixels²) one 3-tap pass [w, 1−2w, w] may add: w = 1/4 is the binomial
#: kernel [1/4, 1/2, 1/4], the closest 3-tap approximation of a Gaussian.
_MAX_PASS_VARIANCE = 0.5
_DEFAULT_CHUNK_BYTES = 256 * 2**20
_DEFAULT_ATTENUATION_CACHE_BYTES = 1536 * 2**20


def _blur_steps(variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Number of 3-tap passes and their weight that add ``variance`` (pixels²) to a plane."""
    variance = np.maximum(variance, 0.0)
    n = np.where(variance > 1e-9, np.ceil(variance / _MAX_PASS_VARIANCE), 0).astype(np.int32)
    w = np.where(n > 0, variance / (2.0 * np.maximum(n, 1)), 0.0).astype(np.float32)
    return w, n


def _overlap_matrix(
    centres_out: np.ndarray, width_out: float, centres_in: np.ndarray, width_in: float
) -> np.ndarray:
    """``W[a, b]``: overlap of output bin ``a`` with input bin ``b``, over the output width."""
    lo = np.maximum.outer(centres_out - width_out / 2, centres_in - width_in / 2)
    hi = np.minimum.outer(centres_out + width_out / 2, centres_in + width_in / 2)
    return np.clip(hi - lo, 0.0, None) / width_out


class SpectModel(ViewModel):
    r"""Parallel-hole SPECT system model ``ȳ = m ⊙ (P x) + a``.

    ``P`` rotates the image to each view, attenuates every depth plane by ``exp(−∫μ)`` to the
    collimator face, blurs it with the collimator-detector response of its distance to the face and
    sums over depth; it gives line integrals in mm (an image of ones seen through L mm projects to
    L). ``m`` holds one factor per view: the view's duration times the mean fraction of the
    reference-time activity left during the view (decay), times the calibration when given. ``a`` is
    an optional additive term per bin (scatter).

    Parameters
    ----------
    geometry : SpectGeometry
        The views.
    grid : ImageGrid
        Reconstruction grid; transverse voxels must be square (``voxel_size[1] == voxel_size[2]``).
    mu_map : ndarray of shape grid.shape, or Image on the same grid, optional
        Linear attenuation coefficients at the photon energy in 1/mm. ``None``: no attenuation.
    collimator : Collimator, optional
        Depth-dependent response. ``None``: no response modelling. When the collimator models
        septal penetration (:meth:`Collimator.components`), each depth plane is blurred by both
        Gaussian components (geometric and penetration) and their weighted sum is projected.
    isotope : str, optional
        Isotope name (e.g. ``"Tc-99m"``); enables decay modelling during and between views.
    reference_time_s : float, optional
        Time (s from acquisition start) at which activities are reported; default: the start.
    sensitivity_cps_per_mbq : float, optional
        Planar system sensitivity; when given the image is in Bq/mL.
    additive : ndarray of shape (view, v, u), optional
        Additive expected counts per bin (scatter estimate).
    device : {"auto", "cpu", "gpu"}, optional
        Where to compute; default from ``RECON_DEVICE`` or ``"auto"``.
    chunk_bytes : int
        Bound on the rotated-volume scratch memory: views are projected in chunks of this size.
    attenuation_cache_bytes : int
        Attenuation factors of all views are computed once and kept when they fit in this many
        bytes (they are recomputed per chunk otherwise).

    Notes
    -----
    The depth samples cover the cylinder inscribed in the transverse field of view; activity in the
    corners of a square grid outside that cylinder is seen by some views only.
    """

    def __init__(
        self,
        geometry: SpectGeometry,
        grid: ImageGrid,
        mu_map: Any = None,
        collimator: Collimator | None = None,
        isotope: str | None = None,
        reference_time_s: float | None = None,
        sensitivity_cps_per_mbq: float | None = None,
        additive: Any = None,
        device: str | Backend | None = None,
        chunk_bytes: int = _DEFAULT_CHUNK_BYTES,
        attenuation_cache_bytes: int = _DEFAULT_ATTENUATION_CACHE_BYTES,
    ) -> None:
        if not isinstance(geometry, SpectGeometry):
            raise GeometryError("geometry must be a SpectGeometry")
        # The model keeps a few images (mu-map, attenuation tables); OSEM adds its own.
        super().__init__(grid, device, "a SPECT model")
        dz, dy, dx = grid.voxel_size_mm
        if not math.isclose(dy, dx, rel_tol=1e-6):
            raise GeometryError(
                "transverse voxels must be square for the SPECT projector, "
                f"got y={dy} mm, x={dx} mm; "
                "resample the grid"
            )
        self.geometry = geometry
        self.view_subsets = ViewSubsets(geometry.n_views, view_axis=0)
        self.collimator = collimator
        self.chunk_bytes = int(chunk_bytes)

        self._kernels = _kernels_for(self.backend)
        self._mu = (
            None
            if mu_map is None
            else as_mu_map(mu_map, grid, self.backend, max_per_mm=1.0, water="0.015/mm at 140 keV")
        )
        self._build_tables()
        self.isotope = isotope
        self.reference_time_s = 0.0 if reference_time_s is None else float(reference_time_s)
        self.sensitivity_cps_per_mbq = sensitivity_cps_per_mbq
        self.view_factors = self._view_factors()
        self.additive = None if additive is None else self.validate_data(additive, "additive")

        self._att_cache = None
        plane_bytes = 4 * self.n_depth * grid.shape[0] * geometry.n_u
        if self._mu is not None and plane_bytes * geometry.n_views <= attenuation_cache_bytes:
            self._att_cache = self._attenuation(np.arange(geometry.n_views, dtype=np.int32))

    # ------------------------------------------------------------------ tables
    def _build_tables(self) -> None:
        geom, grid = self.geometry, self.grid
        nz, ny, nx = grid.shape
        dz, delta, _ = grid.voxel_size_mm
        theta = np.deg2rad(geom.angles_deg)
        cos_t, sin_t = np.cos(theta), np.sin(theta)
        cz, cy, cx = grid.centre_mm
        self.n_depth = int(max(nx, ny))
        # First (farthest) depth sample of each view: the image centre's depth minus half the range.
        s_centre = cx * sin_t - cy * cos_t
        s0 = s_centre - (self.n_depth - 1) / 2.0 * delta
        self._host_tables = dict(
            cos_t=cos_t.astype(np.float32),
            sin_t=sin_t.astype(np.float32),
            s0=s0.astype(np.float32),
            u_pos=geom.u_positions_mm.astype(np.float32),
        )
        self._x0 = float(grid.origin[2])
        self._y0 = float(grid.origin[1])
        self._delta = float(delta)

        # One pair of blur tables per Gaussian component of the response (the geometric one,
        # and the septal-penetration tail where the collimator models it), with its weight.
        components: list[tuple[float, Any]] = [(1.0, None)]
        if self.collimator is not None:
            s = s0[:, None] + np.arange(self.n_depth)[None, :] * delta
            distance = np.maximum(geom.radii_mm[:, None] - s, 0.0)
            components = self.collimator.components(distance)
        b = self.backend
        self._tables = {k: b.asarray(v, dtype=v.dtype) for k, v in self._host_tables.items()}
        self._blurs: list[tuple[float, tuple[Any, Any]]] = []
        for weight, sigma in components:
            blur_w, blur_n = self._blur_tables(sigma, dz)
            self._blurs.append(
                (float(weight), (b.asarray(blur_w, np.float32), b.asarray(blur_n, np.int32)))
            )
        self._tables["blur_w"], self._tables["blur_n"] = self._blurs[0][1]

        # Axial resampling from image slices to projection rows (box overlap, rows sum to 1).
        w = _overlap_matrix(geom.v_positions_mm, geom.pixel_size_mm[0], grid.axis_mm(0), dz)
        self._axial = (
            None
            if (w.shape[0] == w.shape[1] and np.allclose(w, np.eye(nz), atol=1e-6))
            else b.asarray(w)
        )

    def _blur_tables(self, sigma: Any, dz: float) -> tuple[np.ndarray, np.ndarray]:
        """Weights and numbers of 3-tap passes (view, depth, axis) that give each depth plane the
        Gaussian ``sigma`` (mm, per view and depth; None: no blur)."""
        geom = self.geometry
        blur_w = np.zeros((geom.n_views, self.n_depth, 2), np.float32)
        blur_n = np.zeros((geom.n_views, self.n_depth, 2), np.int32)
        if sigma is None:
            return blur_w, blur_n
        for axis, pixel in enumerate((geom.pixel_size_mm[1], dz)):
            var = (np.asarray(sigma) / pixel) ** 2
            step = np.empty_like(var)
            step[:, 0] = var[:, -1]  # final blur: the nearest plane's full response
            step[:, 1:] = var[:, :-1] - var[:, 1:]
            blur_w[:, :, axis], blur_n[:, :, axis] = _blur_steps(step)
        return blur_w, blur_n

    @property
    def response_weights(self) -> tuple[float, ...]:
        """Weights of the response's Gaussian components (geometric first, then the septal
        penetration tail when the collimator models it); they sum to 1."""
        return tuple(weight for weight, _ in self._blurs)

    def _view_factors(self) -> Any:
        """``m`` per view, computed on the device from the per-view times."""
        xp = self.xp
        geom = self.geometry
        start = self.backend.asarray(geom.start_times_s, dtype=np.float64)
        duration = self.backend.asarray(geom.durations_s, dtype=np.float64)
        factors = duration.copy()
        if self.isotope is not None:
            from recon.physics.decay import mean_activity_fraction
            from recon.physics.isotopes import get_isotope

            half_life = get_isotope(self.isotope).half_life_s
            factors = factors * mean_activity_fraction(
                half_life, start, duration, self.reference_time_s
            )
        if self.sensitivity_cps_per_mbq is not None:
            if not self.sensitivity_cps_per_mbq > 0:
                raise InputError("sensitivity_cps_per_mbq must be positive")
            pv, pu = geom.pixel_size_mm
            # counts/s per (Bq/mL · mm) in one bin: S[cps/Bq] · pixel area [mm²] / 1000 [mm³/mL]
            factors = factors * (self.sensitivity_cps_per_mbq * 1e-6 * pu * pv / 1000.0)
        return xp.ascontiguousarray(factors.astype(xp.float32))

    @property
    def units(self) -> str:
        """``"Bq/mL"`` with a sensitivity, else counts/s per voxel (uncalibrated)."""
        return "Bq/mL" if self.sensitivity_cps_per_mbq is not None else "counts/s (uncalibrated)"

    # ------------------------------------------------------------------ system-model interface
    @property
    def data_shape(self) -> tuple[int, int, int]:
        """Projections ``(view, v, u)``."""
        return self.geometry.projection_shape

    def _ids(self, views: np.ndarray) -> Any:
        """The views as int32 device indices, for the kernels (uploaded once per list)."""
        return self._device_indices(views, np.int32)

    def _chunks(self, views: np.ndarray) -> list[np.ndarray]:
        nz = self.grid.shape[0]
        per_view = 4 * self.n_depth * nz * self.geometry.n_u
        size = max(1, self.chunk_bytes // per_view)
        return [views[i : i + size] for i in range(0, views.size, size)]

    def _attenuation(self, views: np.ndarray) -> Any:
        nz = self.grid.shape[0]
        out = self.xp.empty((views.size, self.n_depth, nz, self.geometry.n_u), np.float32)
        self._kernels.attenuation(self, self._mu, self.backend.asarray(views, np.int32), out)
        return out

    def _att_for(self, chunk: np.ndarray) -> tuple[Any, Any]:
        """Attenuation array and its row per chunk view (cached rows, or a fresh chunk array)."""
        if self._mu is None:
            return None, None
        if self._att_cache is not None:
            return self._att_cache, self._ids(chunk)
        return self._attenuation(chunk), self._ids(np.arange(chunk.size))

    def project(self, image: Any, subset: Any = None) -> Any:
        """The linear projector without view factors: ``P x`` for the given views."""
        x = self.validate_image(image)
        xp = self.xp
        views = self._views(subset)
        geom, nz = self.geometry, self.grid.shape[0]
        out = xp.empty((views.size, geom.n_v, geom.n_u), np.float32)
        start = 0
        for chunk in self._chunks(views):
            ids = self._ids(chunk)
            att, rows = self._att_for(chunk)
            q = xp.empty((chunk.size, self.n_depth, nz, geom.n_u), np.float32)
            self._kernels.rotate_forward(self, x, att, rows, ids, q)
            planes = self._blur_sum(q, ids)
            del q
            if self._axial is not None:
                planes = xp.matmul(self._axial, planes)
            out[start : start + chunk.size] = planes
            start += chunk.size
        return out

    def backproject(self, data: Any, subset: Any = None) -> Any:
        """Exact adjoint of :meth:`project`."""
        xp = self.xp
        views = self._views(subset)
        geom = self.geometry
        y = self.backend.asarray(data)
        if tuple(y.shape) != (views.size, geom.n_v, geom.n_u):
            raise InputError(
                f"data has shape {tuple(y.shape)}, expected {(views.size, geom.n_v, geom.n_u)}"
            )
        image = xp.zeros(self.grid.shape, np.float32)
        start = 0
        for chunk in self._chunks(views):
            ids = self._ids(chunk)
            planes = y[start : start + chunk.size]
            start += chunk.size
            if self._axial is not None:
                planes = xp.matmul(self._axial.T, planes)
            planes = xp.ascontiguousarray(planes, dtype=np.float32)
            q = self._blur_spread(planes, ids)
            att, rows = self._att_for(chunk)
            self._kernels.rotate_back(self, q, att, rows, ids, image)
        return image

    def _blur_sum(self, q: Any, ids: Any) -> Any:
        """Depth planes ``q`` blurred by each response component and summed, weighted."""
        xp = self.xp
        shape = (q.shape[0], self.grid.shape[0], self.geometry.n_u)
        planes = None
        for weight, tables in self._blurs:
            part = xp.empty(shape, np.float32)
            self._kernels.blur_sum_forward(self, q, ids, part, tables)
            if len(self._blurs) > 1:
                part *= np.float32(weight)
            planes = part if planes is None else planes + part
        return planes

    def _blur_spread(self, planes: Any, ids: Any) -> Any:
        """Transpose of :meth:`_blur_sum`."""
        xp = self.xp
        shape = (planes.shape[0], self.n_depth, self.grid.shape[0], self.geometry.n_u)
        q = None
        for weight, tables in self._blurs:
            part = xp.empty(shape, np.float32)
            self._kernels.blur_spread_back(self, planes, ids, part, tables)
            if len(self._blurs) > 1:
                part *= np.float32(weight)
            q = part if q is None else q + part
        return q

    def forward(self, image: Any, subset: Any = None) -> Any:
        """Linear part of the model, ``m ⊙ (P x)``, for the views in ``subset`` (None: all)."""
        views = self._views(subset)
        proj = self.project(image, views)
        m = self.view_factors[self._device_indices(views)]
        return proj * m[:, None, None]

    def back(self, data: Any, subset: Any = None) -> Any:
        """Adjoint of :meth:`forward`: ``Pᵀ (m ⊙ y)``."""
        views = self._views(subset)
        y = self.backend.asarray(data)
        expected = (views.size, self.geometry.n_v, self.geometry.n_u)
        if tuple(y.shape) != expected:
            raise InputError(f"data has shape {tuple(y.shape)}, expected {expected} (view, v, u)")
        m = self.view_factors[self._device_indices(views)]
        return self.backproject(y * m[:, None, None], views)


# ---------------------------------------------------------------------- kernel dispatch
def _kernels_for(backend: Backend) -> Any:
    if backend.is_gpu:
        from recon.spect._gpu import GpuKernels

        return GpuKernels(backend)
    from recon.spect._cpu import CpuKernels

    return CpuKernels()
