"""A non-TOF sinogram model on explicit LOR endpoints, for projection data of other software.

:class:`recon.PetSinogramModel` builds its LORs from a :class:`recon.SinogramLayout` (span 1, one
crystal pair per bin). Data written by other software come in other layouts: arc-corrected bins
(parallel lines at equal spacing), axially compressed segments (span > 1), another view and
tangential numbering. :class:`PetLorSinogramModel` takes the world coordinates of each bin's LOR
instead (e.g. from :func:`recon.io.stir_lor_endpoints`), so any such sinogram is reconstructed by
the same projector, corrections and algorithms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon._validation import as_mu_map
from recon.backend import Backend, resolve_backend
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.pet.model import PetImageSide, frame_time_factor, validated_counts
from recon.pet.projector import LorProjector

__all__ = ["PetLorSinogramModel"]


class PetLorSinogramModel(PetImageSide):
    r"""Sinogram model ``ȳ = m ⊙ (P x) + a`` whose bins are given as LOR endpoints.

    Data have shape ``(plane, view, tangential)``; bin ``[p, v, t]`` is the line from
    ``xstart[p, v, t]`` to ``xend[p, v, t]``. Ordered subsets take every ``n``-th view.

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
    ) -> None:
        if not isinstance(grid, ImageGrid):
            raise GeometryError("grid must be an ImageGrid")
        start = np.asarray(xstart, dtype=np.float32)
        end = np.asarray(xend, dtype=np.float32)
        if start.ndim != 4 or start.shape[-1] != 3 or start.shape != end.shape:
            raise GeometryError(
                "xstart and xend must both have shape (plane, view, tangential, 3), got "
                f"{start.shape} and {end.shape}"
            )
        if not (np.all(np.isfinite(start)) and np.all(np.isfinite(end))):
            raise GeometryError("LOR endpoints contain NaN or infinite values")
        if calibration is not None and not calibration > 0:
            raise InputError("calibration must be a positive factor (counts per Bq·s per mL)")
        self.grid = grid
        self.backend = resolve_backend(device)
        self.xp = self.backend.xp
        self.data_shape: tuple[int, int, int] = tuple(start.shape[:3])  # type: ignore[assignment]
        self._xstart = self.backend.asarray(start)
        self._xend = self.backend.asarray(end)
        self.projector = LorProjector(grid, tof=None, device=self.backend, chunk_lors=chunk_lors)
        self.isotope = isotope
        self.reference_time_s = float(reference_time_s)
        self.calibration = calibration
        self.frame_start_s = float(frame_start_s)
        self.frame_duration_s = float(frame_duration_s)
        self.time_factor = frame_time_factor(
            self.frame_start_s, self.frame_duration_s, isotope, self.reference_time_s, calibration
        )
        factor = self.xp.full(self.data_shape, np.float32(self.time_factor), dtype=np.float32)
        if normalization is not None:
            factor *= self.validate_data(normalization, "normalization")
        if mu_map is not None:
            mu = as_mu_map(mu_map, grid, self.backend, max_per_mm=0.5, water="0.0096/mm at 511 keV")
            line = self.projector.forward(
                mu, self._xstart.reshape(-1, 3), self._xend.reshape(-1, 3), checked=False
            )
            factor *= self.xp.exp(-line).reshape(self.data_shape).astype(np.float32)
        self._factor = factor
        self._sensitivity_cache: dict[tuple[int, ...], Any] = {}
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
    def multiplicative(self) -> Any:
        """``m`` per bin (time factor × normalisation × attenuation), on the device."""
        return self._factor

    def validate_data(self, data: Any, name: str = "counts") -> Any:
        return validated_counts(self.backend, data, self.data_shape, name)

    def subsets(self, n_subsets: int) -> list[np.ndarray]:
        n_views = self.data_shape[1]
        if int(n_subsets) != n_subsets or not 1 <= int(n_subsets) <= n_views:
            raise InputError(f"subsets must be between 1 and the number of views ({n_views})")
        return [np.arange(s, n_views, int(n_subsets)) for s in range(int(n_subsets))]

    def _views(self, subset: Any) -> Any:
        views = np.arange(self.data_shape[1]) if subset is None else np.asarray(subset, np.int64)
        return self.backend.asarray(views, np.int64)

    def take(self, data: Any, subset: Any) -> Any:
        return data if subset is None else data[:, self._views(subset)]

    def _geometry(self, subset: Any) -> tuple[Any, Any, Any]:
        views = self._views(subset)
        xs = self.xp.ascontiguousarray(self._xstart[:, views]).reshape(-1, 3)
        xe = self.xp.ascontiguousarray(self._xend[:, views]).reshape(-1, 3)
        return xs, xe, self._factor[:, views]

    def forward(self, image: Any, subset: Any = None) -> Any:
        """``m ⊙ (P x)`` for the views of ``subset`` (None: all)."""
        x = self.validate_image(image)
        xs, xe, factor = self._geometry(subset)
        return self.projector.forward(x, xs, xe, checked=False).reshape(factor.shape) * factor

    def back(self, data: Any, subset: Any = None) -> Any:
        """``Pᵀ (m ⊙ y)`` for the views of ``subset`` (None: all)."""
        xs, xe, factor = self._geometry(subset)
        y = self.backend.asarray(data)
        if tuple(y.shape) != tuple(factor.shape):
            raise InputError(f"data has shape {tuple(y.shape)}, expected {tuple(factor.shape)}")
        weighted = self.xp.ascontiguousarray((y * factor).reshape(-1).astype(np.float32))
        return self.projector.back(weighted, xs, xe, checked=False)

    def sensitivity(self, subset: Any = None) -> Any:
        """``Pᵀ m`` over the views of ``subset`` (cached)."""
        key = tuple(int(v) for v in self.backend.to_host(self._views(subset)))
        if key not in self._sensitivity_cache:
            xs, xe, factor = self._geometry(subset)
            self._sensitivity_cache[key] = self.projector.back(
                self.xp.ascontiguousarray(factor.reshape(-1)), xs, xe, checked=False
            )
        return self._sensitivity_cache[key]
