"""The SPECT system model: rotate-attenuate-blur-sum projector with per-view factors."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from recon._memory import available_memory_bytes, format_bytes
from recon._validation import as_mu_map
from recon.backend import Backend
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.spect.collimator import Collimator
from recon.spect.geometry import SpectGeometry
from recon.system_model import ViewModel, ViewSubsets

__all__ = ["SpectModel", "default_attenuation_cache_bytes", "shared_attenuation_cache_bytes"]

log = logging.getLogger("recon")

#: Largest variance (in pixels²) one 3-tap pass [w, 1−2w, w] may add: w = 1/4 is the binomial
#: kernel [1/4, 1/2, 1/4], the closest 3-tap approximation of a Gaussian.
_MAX_PASS_VARIANCE = 0.5
#: Largest stride of a pass's outer taps (pixels); see :func:`_pass_strides`.
_MAX_STRIDE = 16
_DEFAULT_CHUNK_BYTES = 256 * 2**20
_DEFAULT_GPU_ATTENUATION_CACHE_BYTES = 1536 * 2**20
#: Share of the available memory the attenuation cache may take on the CPU by default.
_CPU_CACHE_FRACTION = 0.25


def default_attenuation_cache_bytes(backend: Backend) -> int:
    """The attenuation cache budget of one :class:`SpectModel` built now when none is given: on
    the CPU a quarter of the memory available (the fused kernels compute uncached views on the
    fly at a modest cost), on a GPU 1.5 GiB of its memory."""
    if backend.is_gpu:
        return _DEFAULT_GPU_ATTENUATION_CACHE_BYTES
    return int(_CPU_CACHE_FRACTION * available_memory_bytes())


def shared_attenuation_cache_bytes(total: int | None, backend: Backend, n_models: int) -> int:
    """Each model's share of ``total`` bytes (default: one model's default budget) when
    ``n_models`` SPECT models (the windows of one study) are built together: without sharing,
    each window would take a quarter of what the ones before it left."""
    if total is None:
        total = default_attenuation_cache_bytes(backend)
    if isinstance(total, bool) or not isinstance(total, (int, np.integer)) or total < 0:
        raise InputError(
            f"attenuation_cache_bytes must be a non-negative whole number of bytes, got {total!r}"
        )
    return int(total) // max(int(n_models), 1)


def _blur_steps(
    variance: np.ndarray, stride: np.ndarray | int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Number of 3-tap passes ``[w, 1 − 2w, w]`` with outer taps ``stride`` pixels from the
    centre, and their weight, that add ``variance`` (pixels²) to a plane: a pass adds
    ``2 w stride²``."""
    variance = np.maximum(variance, 0.0)
    s2 = np.asarray(stride, np.float64) ** 2
    n = np.where(variance > 1e-9, np.ceil(variance / (_MAX_PASS_VARIANCE * s2)), 0).astype(np.int32)
    w = np.where(n > 0, variance / (2.0 * np.maximum(n, 1) * s2), 0.0)
    return w.astype(np.float32), n


def _pass_strides(far_variance: np.ndarray) -> np.ndarray:
    """Stride of the strided passes of a view's blur, from the variance (pixels²) of its
    farthest plane's response.

    A pass ``[w, 1 − 2w, w]`` whose outer taps lie ``s`` pixels from the centre adds ``2 w s²``,
    s² times what a unit-stride pass adds, but alone it spreads a plane onto a comb of spacing
    ``s``. A Gaussian of σ = s fills the comb's gaps to within exp(−2π²) ≈ 3·10⁻⁹ of its mean,
    so a step may be strided when every plane it reaches also gets unit-stride variance ≥ s²
    from the steps nearer the camera (:meth:`SpectModel._blur_tables`). With ``V`` the farthest
    plane's variance that costs about ``2 s² + 2 V / s²`` passes, fewest at ``s = V^(1/4)``: the
    septal-penetration tail of In-111's 245 keV line through a medium-energy collimator (σ up to
    ~40 pixels of 4.4 mm) takes about 170 passes per view and axis instead of 1700. Narrow
    responses (σ below 4 pixels) keep stride 1, and with it the arithmetic of unit passes.
    """
    stride = np.floor(np.maximum(far_variance, 0.0) ** 0.25).astype(np.int32)
    return np.clip(stride, 1, _MAX_STRIDE).astype(np.int32)


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
        GPU only: bound on the rotated-volume scratch memory, views are projected in chunks of
        this size (the CPU projects one view per thread and needs no such scratch).
    attenuation_cache_bytes : int, optional
        Memory for the attenuation factors computed once at construction (4 bytes per sample:
        views × depth × u × z). The first views that fit are cached; the kernels compute the
        factors of the others in every projection (on the CPU on the fly, fused with the
        projection; on the GPU per chunk). Default: a quarter of the memory available at
        construction on the CPU, 1.5 GiB on a GPU. The number of cached views is
        ``attenuation_cached_views`` (and logged when not all).
    attenuation_from : SpectModel, optional
        Another model of the same :class:`SpectGeometry` object, grid and μ-map (e.g. another
        response at the same energy) whose attenuation factors this one shares instead of
        computing and storing its own; ``attenuation_cache_bytes`` is then not used.

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
        attenuation_cache_bytes: int | None = None,
        attenuation_from: SpectModel | None = None,
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
        # The kernels' layout: (y, x, z), z innermost (see recon/spect/_cpu.py).
        self._mu_t = None if self._mu is None else self._kernels.to_yxz(self._mu)
        self._build_tables()
        self.isotope = isotope
        self.reference_time_s = 0.0 if reference_time_s is None else float(reference_time_s)
        self.sensitivity_cps_per_mbq = sensitivity_cps_per_mbq
        self.view_factors = self._view_factors()
        self.additive = None if additive is None else self.validate_data(additive, "additive")

        self._att_cache = None
        self.attenuation_cached_views = 0
        if attenuation_from is not None:
            self._share_attenuation(attenuation_from)
        elif self._mu is not None:
            self._att_cache = self._cache_attenuation(attenuation_cache_bytes)

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
        self._blurs: list[tuple[float, tuple[Any, Any, Any]]] = []
        for weight, sigma in components:
            blur_w, blur_n, blur_s = self._blur_tables(sigma, dz)
            tables = (
                b.asarray(blur_w, np.float32),
                b.asarray(blur_n, np.int32),
                b.asarray(blur_s, np.int32),
            )
            self._blurs.append((float(weight), tables))
        self._tables["blur_w"], self._tables["blur_n"], self._tables["blur_s"] = self._blurs[0][1]
        # All components stacked, for the CPU's fused kernels: (blur_w, blur_n, blur_s, weights).
        self._blur_stack = (
            b.xp.stack([t[0] for _, t in self._blurs]),
            b.xp.stack([t[1] for _, t in self._blurs]),
            b.xp.stack([t[2] for _, t in self._blurs]),
            b.asarray(np.array([w for w, _ in self._blurs], np.float32), np.float32),
        )

        # Axial resampling from image slices to projection rows (box overlap, rows sum to 1).
        w = _overlap_matrix(geom.v_positions_mm, geom.pixel_size_mm[0], grid.axis_mm(0), dz)
        self._axial = (
            None
            if (w.shape[0] == w.shape[1] and np.allclose(w, np.eye(nz), atol=1e-6))
            else b.asarray(w)
        )

    def _blur_tables(self, sigma: Any, dz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weights, numbers and strides of the 3-tap passes ``[view, depth, axis, part]`` that
        give each depth plane the Gaussian ``sigma`` (mm, per view and depth; None: no blur).

        Part 0 holds unit-stride passes, part 1 passes of the view's stride ``s``
        (:func:`_pass_strides`). A plane gets the increments of every step nearer the camera
        and the final blur (entry 0); the final blur's first ``s²`` (or all of it) and the
        increments of the steps whose nearer planes have less than ``s²`` in all are unit
        passes, so every plane a strided pass reaches has had ``s²`` of unit-stride variance.
        Views and axes where that would not save a quarter of the passes keep unit passes only.
        """
        geom = self.geometry
        shape = (geom.n_views, self.n_depth, 2, 2)
        blur_w = np.zeros(shape, np.float32)
        blur_n = np.zeros(shape, np.int32)
        blur_s = np.ones(shape, np.int32)
        if sigma is None:
            return blur_w, blur_n, blur_s
        for axis, pixel in enumerate((geom.pixel_size_mm[1], dz)):
            var = (np.asarray(sigma) / pixel) ** 2  # (view, depth): plane 0 the farthest
            stride = _pass_strides(var[:, 0])[:, None]
            s2 = stride.astype(np.float64) ** 2
            step = np.empty_like(var)
            step[:, 0] = var[:, -1]  # final blur: the nearest plane's full response
            step[:, 1:] = var[:, :-1] - var[:, 1:]
            # Unit variance each step adds: the final blur's first s², and every increment whose
            # nearer planes (var[:, j], all unit passes) hold less than s².
            unit = np.where(var < s2, step, 0.0)
            unit[:, 0] = np.minimum(step[:, 0], s2[:, 0])
            w_unit, n_unit = _blur_steps(unit)
            w_strided, n_strided = _blur_steps(step - unit, stride)
            # A step takes at least one pass, so strides pay only where the steps are wide:
            # elsewhere (e.g. a geometric response over many depth planes) unit passes all
            # along, which keeps their arithmetic.
            w_plain, n_plain = _blur_steps(step)
            pays = (n_unit + n_strided).sum(axis=1) < 0.75 * n_plain.sum(axis=1)
            keep = pays[:, None]
            blur_w[:, :, axis, 0] = np.where(keep, w_unit, w_plain)
            blur_n[:, :, axis, 0] = np.where(keep, n_unit, n_plain)
            blur_s[:, :, axis, 1] = np.where(keep, stride, 1)
            blur_w[:, :, axis, 1] = np.where(keep, w_strided, 0.0)
            blur_n[:, :, axis, 1] = np.where(keep, n_strided, 0)
        return blur_w, blur_n, blur_s

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

    def _share_attenuation(self, other: SpectModel) -> None:
        """Use ``other``'s attenuation cache: refused unless the factors would be the same."""
        same = (
            isinstance(other, SpectModel)
            and other.backend is self.backend
            and other.grid.same_as(self.grid)
            and other.geometry is self.geometry
            and (other._mu is None) == (self._mu is None)
            and (self._mu is None or bool(self.xp.array_equal(other._mu, self._mu)))
        )
        if not same:
            raise InputError(
                "attenuation_from must be a SpectModel of the same geometry, grid, μ-map and "
                "device (its attenuation factors are shared as they are)"
            )
        self._att_cache = other._att_cache
        self.attenuation_cached_views = other.attenuation_cached_views

    def _cache_attenuation(self, budget_bytes: int | None) -> Any:
        """Attenuation factors of the first views that fit in ``budget_bytes`` (all views when
        they fit), ``[view, depth, u, z]``; the kernels compute the others on the fly."""
        nz, n_views = self.grid.shape[0], self.geometry.n_views
        per_view = 4 * self.n_depth * self.geometry.n_u * nz
        if budget_bytes is None:
            budget_bytes = default_attenuation_cache_bytes(self.backend)
        n_cached = int(min(n_views, max(0, int(budget_bytes)) // per_view))
        self.attenuation_cached_views = n_cached
        if n_cached < n_views:
            log.info(
                "SPECT attenuation factors cached for %d of %d views (%s budget); the others are "
                "computed in every projection",
                n_cached,
                n_views,
                format_bytes(budget_bytes),
            )
        if n_cached == 0:
            return None
        out = self.xp.empty((n_cached, self.n_depth, self.geometry.n_u, nz), np.float32)
        ids = self.backend.asarray(np.arange(n_cached), np.int32)
        self._kernels.attenuation(self, self._mu_t, ids, out)
        return out

    def _att_rows(self, views: np.ndarray) -> tuple[Any, Any]:
        """The attenuation cache and the row of each view in it (−1: not cached)."""
        if self._att_cache is None:
            return None, None
        n_cached = int(self._att_cache.shape[0])
        rows = np.where(views < n_cached, views, -1).astype(np.int32)
        return self._att_cache, self.backend.asarray(rows, np.int32)

    def project(self, image: Any, subset: Any = None) -> Any:
        """The linear projector without view factors: ``P x`` for the given views."""
        x = self.validate_image(image)
        xp = self.xp
        views = self._views(subset)
        geom, nz = self.geometry, self.grid.shape[0]
        planes = xp.empty((views.size, geom.n_u, nz), np.float32)
        att, rows = self._att_rows(views)
        self._kernels.project(self, x, att, rows, self._ids(views), planes)
        planes = xp.transpose(planes, (0, 2, 1))  # (view, z, u)
        if self._axial is not None:
            planes = xp.matmul(self._axial, planes)
        return xp.ascontiguousarray(planes, dtype=np.float32)

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
        planes = y if self._axial is None else xp.matmul(self._axial.T, y)
        planes = xp.ascontiguousarray(xp.transpose(planes, (0, 2, 1)), dtype=np.float32)
        att, rows = self._att_rows(views)
        return self._kernels.backproject(self, planes, att, rows, self._ids(views))

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
