"""A non-TOF sinogram model on explicit LOR endpoints, for projection data of other software.

:class:`recon.PetSinogramModel` builds its LORs from a :class:`recon.SinogramLayout` (span 1, one
crystal pair per bin). Data written by other software come in other layouts: arc-corrected bins
(parallel lines at equal spacing), axially compressed segments (span > 1), another view and
tangential numbering. :class:`PetLorSinogramModel` takes the world coordinates of each bin's LOR
instead (e.g. from :func:`recon.io.stir_lor_endpoints`), so any such sinogram is reconstructed by
the same projector, corrections and algorithms.

The LORs of a cylindrical scanner's sinogram are *separable*: the transaxial ends of a bin depend
on its (view, tangential) position only and the axial ends on its plane only.
:meth:`PetLorSinogramModel.separable` keeps just those two small tables on the device and makes
the endpoints of one subset at a time, so the memory does not grow with planes × views × bins × 6
(a span-1 sinogram of a long scanner has billions of bins).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon._validation import as_mu_map
from recon.backend import Backend
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.pet.model import frame_time_factor
from recon.pet.projector import LorProjector
from recon.pet.resolution import ImageResolution, add_resolution_info, resolution_operator
from recon.system_model import ViewModel, ViewSubsets

__all__ = ["PetLorSinogramModel"]


class _ExplicitLors:
    """Endpoint arrays ``(plane, view, tangential, 3)`` kept on the device."""

    def __init__(self, xstart: Any, xend: Any) -> None:
        start = np.asarray(xstart, dtype=np.float32)
        end = np.asarray(xend, dtype=np.float32)
        if start.ndim != 4 or start.shape[-1] != 3 or start.shape != end.shape:
            raise GeometryError(
                "xstart and xend must both have shape (plane, view, tangential, 3), got "
                f"{start.shape} and {end.shape}"
            )
        _check_finite(start, end)
        self.shape: tuple[int, int, int] = tuple(start.shape[:3])
        self._host = (start, end)

    def to(self, backend: Backend) -> None:
        self._start, self._end = (backend.asarray(a) for a in self._host)
        del self._host

    def endpoints(self, views: Any, xp: Any) -> tuple[Any, Any]:
        """Ends of the LORs of ``views`` (device int array), each ``(n, 3)``."""
        return (
            xp.ascontiguousarray(self._start[:, views]).reshape(-1, 3),
            xp.ascontiguousarray(self._end[:, views]).reshape(-1, 3),
        )


class _SeparableLors:
    """Transaxial ends per (view, tangential) and axial ends per plane, combined on demand."""

    def __init__(self, xy_start: Any, xy_end: Any, z_start: Any, z_end: Any) -> None:
        xy1 = np.asarray(xy_start, dtype=np.float32)
        xy2 = np.asarray(xy_end, dtype=np.float32)
        z1 = np.asarray(z_start, dtype=np.float32)
        z2 = np.asarray(z_end, dtype=np.float32)
        if xy1.ndim != 3 or xy1.shape[-1] != 2 or xy1.shape != xy2.shape:
            raise GeometryError(
                "xy_start and xy_end must both have shape (view, tangential, 2), got "
                f"{xy1.shape} and {xy2.shape}"
            )
        if z1.ndim != 1 or z1.shape != z2.shape or z1.size == 0:
            raise GeometryError(
                f"z_start and z_end must both have shape (plane,), got {z1.shape} and {z2.shape}"
            )
        _check_finite(xy1, xy2, z1, z2)
        self.shape: tuple[int, int, int] = (z1.size, *xy1.shape[:2])
        self._host = (xy1, xy2, z1, z2)

    def to(self, backend: Backend) -> None:
        self._xy1, self._xy2, self._z1, self._z2 = (backend.asarray(a) for a in self._host)
        del self._host

    def endpoints(self, views: Any, xp: Any) -> tuple[Any, Any]:
        """Ends of the LORs of ``views`` (device int array), each ``(n, 3)``."""
        shape = (self.shape[0], int(views.shape[0]), self.shape[2], 3)
        out = []
        for xy, z in ((self._xy1, self._z1), (self._xy2, self._z2)):
            pts = xp.empty(shape, dtype=np.float32)
            pts[..., :2] = xy[views][None]
            pts[..., 2] = z[:, None, None]
            out.append(pts.reshape(-1, 3))
        return out[0], out[1]


def _check_finite(*arrays: np.ndarray) -> None:
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise GeometryError("LOR endpoints contain NaN or infinite values")


class PetLorSinogramModel(ViewModel):
    r"""Sinogram model ``ȳ = m ⊙ (P x) + a`` whose bins are given as LOR endpoints.

    Data have shape ``(plane, view, tangential)``; bin ``[p, v, t]`` is the line from
    ``xstart[p, v, t]`` to ``xend[p, v, t]``. Ordered subsets take every ``n``-th view. For a
    cylindrical geometry, :meth:`separable` needs far less memory.

    Parameters
    ----------
    xstart, xend : float arrays of shape (plane, view, tangential, 3)
        World (x, y, z) in mm (DESIGN.md §3, LPS) of the two ends of each bin's LOR. Ends should
        lie on or outside the field of view: the projector integrates between them.
    grid : ImageGrid
    mu_map : array of grid.shape, optional
        Linear attenuation at 511 keV in 1/mm.
    normalization : array of the data shape, optional
        Multiplicative efficiency of each bin (0 for bins without detectors, e.g. gaps).
    randoms, scatter : array of the data shape, optional
        Expected additive counts per bin.
    isotope : str, optional
        Enables decay correction within the frame and the positron branching ratio.
    frame_start_s, frame_duration_s, reference_time_s : float
        Frame timing and the time activities refer to (s from scan start).
    calibration : float, optional
        Counts per (Bq/mL · s) per unit line integral; the image is then in Bq/mL.
    device : {"auto", "cpu", "gpu"}, optional
    chunk_lors : int
        LORs per projector launch.
    resolution : ImageResolution, optional
        Image-space resolution model ``G`` (``P → P·G``, back projection ``Gᵀ Pᵀ``); default:
        none.

    Raises
    ------
    GeometryError
        Endpoint arrays of the wrong shape, or non-finite.
    InputError
        Corrections of the wrong shape or with negative or non-finite values.
    """

    def __init__(
        self,
        xstart: Any,
        xend: Any,
        grid: ImageGrid,
        mu_map: Any = None,
        normalization: Any = None,
        randoms: Any = None,
        scatter: Any = None,
        isotope: str | None = None,
        frame_start_s: float = 0.0,
        frame_duration_s: float = 1.0,
        reference_time_s: float = 0.0,
        calibration: float | None = None,
        device: str | Backend | None = None,
        chunk_lors: int = 2**20,
        resolution: ImageResolution | None = None,
    ) -> None:
        self._setup(
            _ExplicitLors(xstart, xend), grid, mu_map, normalization, randoms, scatter, isotope,
            frame_start_s, frame_duration_s, reference_time_s, calibration, device, chunk_lors,
            resolution,
        )  # fmt: skip

    @classmethod
    def separable(
        cls,
        xy_start: Any,
        xy_end: Any,
        z_start: Any,
        z_end: Any,
        grid: ImageGrid,
        **kwargs: Any,
    ) -> PetLorSinogramModel:
        """The model of a sinogram whose LOR ends separate into transaxial and axial parts.

        Bin ``[p, v, t]`` runs from ``(xy_start[v, t], z_start[p])`` to
        ``(xy_end[v, t], z_end[p])``; the endpoints of a subset are made on the device when
        needed.

        Parameters
        ----------
        xy_start, xy_end : float arrays of shape (view, tangential, 2)
            World (x, y) in mm of the two ends.
        z_start, z_end : float arrays of shape (plane,)
            World z in mm of the two ends.
        grid : ImageGrid
        **kwargs
            As for the constructor (mu_map, normalization, randoms, scatter, isotope, frame
            timing, calibration, device, chunk_lors, resolution).
        """
        model = cls.__new__(cls)
        options: dict[str, Any] = dict(
            mu_map=None, normalization=None, randoms=None, scatter=None, isotope=None,
            frame_start_s=0.0, frame_duration_s=1.0, reference_time_s=0.0, calibration=None,
            device=None, chunk_lors=2**20, resolution=None,
        )  # fmt: skip
        unknown = set(kwargs) - set(options)
        if unknown:
            raise InputError(f"unknown options {sorted(unknown)}")
        options.update(kwargs)
        model._setup(_SeparableLors(xy_start, xy_end, z_start, z_end), grid, **options)
        return model

    def _setup(
        self,
        lors: _ExplicitLors | _SeparableLors,
        grid: ImageGrid,
        mu_map: Any,
        normalization: Any,
        randoms: Any,
        scatter: Any,
        isotope: str | None,
        frame_start_s: float,
        frame_duration_s: float,
        reference_time_s: float,
        calibration: float | None,
        device: str | Backend | None,
        chunk_lors: int,
        resolution: ImageResolution | None,
    ) -> None:
        if calibration is not None and not calibration > 0:
            raise InputError("calibration must be a positive factor (counts per Bq·s per mL)")
        ViewModel.__init__(self, grid, device, "a PET model")
        self._data_shape = lors.shape
        self.view_subsets = ViewSubsets(lors.shape[1], view_axis=1)
        lors.to(self.backend)
        self._lors = lors
        self.projector = LorProjector(grid, tof=None, device=self.backend, chunk_lors=chunk_lors)
        self.resolution = resolution
        self._blur = resolution_operator(resolution, grid, self.xp)
        self.isotope = isotope
        self.reference_time_s = float(reference_time_s)
        self.calibration = calibration
        self.frame_start_s = float(frame_start_s)
        self.frame_duration_s = float(frame_duration_s)
        self.time_factor = frame_time_factor(
            self.frame_start_s, self.frame_duration_s, isotope, self.reference_time_s, calibration
        )
        factor = self.xp.full(self.data_shape, np.float32(self.time_factor), dtype=np.float32)
        self._mu = None  # kept for scatter estimation (recon.pet.scatter)
        if normalization is not None:
            factor *= self.validate_data(normalization, "normalization")
        if mu_map is not None:
            mu = as_mu_map(mu_map, grid, self.backend, max_per_mm=0.5, water="0.0096/mm at 511 keV")
            self._mu = mu
            # A few views at a time, so that endpoints never exist for the whole sinogram.
            per_view = self.data_shape[0] * self.data_shape[2]
            step = max(1, chunk_lors // max(per_view, 1))
            for first in range(0, self.data_shape[1], step):
                views = self.xp.arange(first, min(first + step, self.data_shape[1]))
                xs, xe = lors.endpoints(views, self.xp)
                line = self.projector.forward(mu, xs, xe, checked=False)
                shape = (self.data_shape[0], int(views.shape[0]), self.data_shape[2])
                factor[:, views] *= self.xp.exp(-line).reshape(shape).astype(np.float32)
        self._factor = factor
        self.additive = None
        parts = [p for p in (randoms, scatter) if p is not None]
        if parts:
            self.additive = sum(self.validate_data(p, "additive") for p in parts)

    def __repr__(self) -> str:
        return (
            f"PetLorSinogramModel(data_shape={self.data_shape}, grid={self.grid.shape}, "
            f"device={self.backend.name!r})"
        )

    # ------------------------------------------------------------------ interface
    @property
    def data_shape(self) -> tuple[int, int, int]:
        """``(plane, view, tangential)``."""
        return self._data_shape

    @property
    def units(self) -> str:
        """``"Bq/mL"`` with a calibration, else counts/s (uncalibrated)."""
        return "Bq/mL" if self.calibration is not None else "counts/s (uncalibrated)"

    @property
    def multiplicative(self) -> Any:
        """``m`` per bin (time factor × normalisation × attenuation), on the device."""
        return self._factor

    def _geometry(self, subset: Any) -> tuple[Any, Any, Any]:
        views = self._device_indices(self._views(subset))
        xs, xe = self._lors.endpoints(views, self.xp)
        return xs, xe, self._factor[:, views]

    def forward(self, image: Any, subset: Any = None) -> Any:
        """``m ⊙ (P x)`` for the views of ``subset`` (None: all)."""
        x = self.validate_image(image)
        if self._blur is not None:
            x = self._blur.apply(x)
        xs, xe, factor = self._geometry(subset)
        return self.projector.forward(x, xs, xe, checked=False).reshape(factor.shape) * factor

    def back(self, data: Any, subset: Any = None) -> Any:
        """``Pᵀ (m ⊙ y)`` for the views of ``subset`` (None: all)."""
        xs, xe, factor = self._geometry(subset)
        y = self.backend.asarray(data)
        if tuple(y.shape) != tuple(factor.shape):
            raise InputError(f"data has shape {tuple(y.shape)}, expected {tuple(factor.shape)}")
        weighted = self.xp.ascontiguousarray((y * factor).reshape(-1).astype(np.float32))
        return self._blurred_adjoint(self.projector.back(weighted, xs, xe, checked=False))

    def _compute_sensitivity(self, views: np.ndarray) -> Any:
        """``Gᵀ Pᵀ m`` over ``views``, from the factors directly (no array of ones)."""
        xs, xe, factor = self._geometry(views)
        image = self.projector.back(
            self.xp.ascontiguousarray(factor.reshape(-1)), xs, xe, checked=False
        )
        return self._blurred_adjoint(image)

    def _blurred_adjoint(self, image: Any) -> Any:
        """``Gᵀ y`` (``y`` itself without a resolution model)."""
        return image if self._blur is None else self._blur.adjoint(image)

    def to_image(self, data: Any, **info: Any) -> Image:
        """Wrap an image array as a :class:`recon.Image`; its ``info`` names the resolution model
        (``resolution_model``) when there is one."""
        return super().to_image(data, **add_resolution_info(info, self.resolution))
