"""Acquisition geometry of a rotating gamma camera with a parallel-hole collimator."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from recon.errors import GeometryError

__all__ = ["SpectGeometry"]


def _per_view(value: object, n_views: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_views, float(arr))
    if arr.shape != (n_views,):
        raise GeometryError(f"{name} needs one value per view ({n_views}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} contains NaN or infinite values")
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False, init=False)
class SpectGeometry:
    """Views of a parallel-hole SPECT acquisition (conventions of DESIGN.md §3).

    At view angle θ the camera face sits in direction ``d(θ) = (sin θ, −cos θ)`` in (x, y) from the
    rotation axis (θ = 0 anterior, θ = 90° patient left); projection columns ``u`` run along
    ``t(θ) = (cos θ, sin θ)`` and rows ``v`` along +z.

    Parameters
    ----------
    angles_deg : array of shape (view,)
        View angles θ in degrees.
    radii_mm : array of shape (view,)
        Distance from the rotation axis to the collimator face for each view (body-contour orbits
        have one value per view).
    n_u, n_v : int
        Projection columns and rows.
    pixel_size_mm : float or (float, float)
        Projection pixel size in mm, one value or ``(v, u)``.
    start_times_s, durations_s : array of shape (view,)
        Start of each view's acquisition (seconds from acquisition start) and its duration.
    cor_offset_mm : float
        Centre-of-rotation offset along ``u`` (DESIGN.md §3): bin centres are
        ``u_i = (i − (n_u − 1)/2)·pixel + cor_offset_mm``, so the rotation axis (u = 0) falls on
        column ``(n_u − 1)/2 − cor_offset_mm/pixel``. Readers convert vendor conventions to this.
    axial_offset_mm : float
        World z of the centre of the projection rows.
    """

    # The constructor normalises its arguments, so the stored fields have exact types.
    angles_deg: np.ndarray
    radii_mm: np.ndarray
    n_u: int
    n_v: int
    pixel_size_mm: tuple[float, float]
    start_times_s: np.ndarray
    durations_s: np.ndarray
    cor_offset_mm: float
    axial_offset_mm: float

    def __init__(
        self,
        angles_deg: ArrayLike,
        radii_mm: ArrayLike,
        n_u: int,
        n_v: int,
        pixel_size_mm: float | tuple[float, float],
        start_times_s: ArrayLike | None = None,
        durations_s: ArrayLike | None = None,
        cor_offset_mm: float = 0.0,
        axial_offset_mm: float = 0.0,
    ) -> None:
        angles = np.asarray(angles_deg, dtype=np.float64)
        if angles.ndim != 1 or angles.size == 0:
            raise GeometryError(
                f"angles_deg must be a non-empty 1-D array of view angles, got shape {angles.shape}"
            )
        n = angles.size
        set_ = object.__setattr__
        set_(self, "angles_deg", _per_view(angles, n, "angles_deg"))
        radii = _per_view(radii_mm, n, "radii_mm")
        if np.any(radii <= 0):
            raise GeometryError("radii_mm must be positive (distance from axis to collimator face)")
        set_(self, "radii_mm", radii)
        durations = _per_view(1.0 if durations_s is None else durations_s, n, "durations_s")
        if np.any(durations <= 0):
            raise GeometryError("durations_s must be positive (seconds per view)")
        set_(self, "durations_s", durations)
        if start_times_s is None:  # back to back from 0
            start_times_s = np.concatenate([[0.0], np.cumsum(durations[:-1])])
        set_(self, "start_times_s", _per_view(start_times_s, n, "start_times_s"))
        for name, given in (("n_u", n_u), ("n_v", n_v)):
            count = int(given)
            if count < 1:
                raise GeometryError(f"{name} must be a positive number of projection pixels")
            set_(self, name, count)
        if isinstance(pixel_size_mm, Iterable) and not isinstance(pixel_size_mm, str | bytes):
            pix = tuple(float(p) for p in pixel_size_mm)
        else:
            pix = (float(pixel_size_mm), float(pixel_size_mm))
        if len(pix) != 2 or not all(np.isfinite(pix)) or min(pix) <= 0:
            raise GeometryError(f"pixel_size_mm must be positive: one value or (v, u), got {pix}")
        set_(self, "pixel_size_mm", pix)
        for name, given_mm in (
            ("cor_offset_mm", cor_offset_mm),
            ("axial_offset_mm", axial_offset_mm),
        ):
            offset = float(given_mm)
            if not np.isfinite(offset):
                raise GeometryError(f"{name} must be finite")
            set_(self, name, offset)

    # ------------------------------------------------------------------ construction
    @classmethod
    def circular(
        cls,
        n_views: int,
        radius_mm: float,
        n_u: int,
        n_v: int,
        pixel_size_mm: float | tuple[float, float],
        arc_deg: float = 360.0,
        start_deg: float = 0.0,
        time_per_view_s: float = 1.0,
        start_time_s: float = 0.0,
        n_heads: int = 1,
        cor_offset_mm: float = 0.0,
        axial_offset_mm: float = 0.0,
    ) -> SpectGeometry:
        """A circular orbit: ``θ_k = start_deg + k·arc_deg/n_views``.

        With ``n_heads`` detectors spaced evenly over ``arc_deg``, head ``h`` acquires views
        ``h·n_views/n_heads …`` at the same times as head 0, so the acquisition lasts
        ``n_views/n_heads·time_per_view_s``.
        """
        if int(n_views) < 1:
            raise GeometryError("n_views must be at least 1")
        n_views = int(n_views)
        if n_heads < 1 or n_views % n_heads:
            raise GeometryError(f"n_views ({n_views}) must be a multiple of n_heads ({n_heads})")
        angles = start_deg + np.arange(n_views) * (arc_deg / n_views)
        per_head = n_views // n_heads
        starts = start_time_s + (np.arange(n_views) % per_head) * time_per_view_s
        return cls(
            angles_deg=angles,
            radii_mm=np.full(n_views, float(radius_mm)),
            n_u=n_u,
            n_v=n_v,
            pixel_size_mm=pixel_size_mm,
            start_times_s=starts,
            durations_s=np.full(n_views, float(time_per_view_s)),
            cor_offset_mm=cor_offset_mm,
            axial_offset_mm=axial_offset_mm,
        )

    # ------------------------------------------------------------------ derived values
    @property
    def n_views(self) -> int:
        """Number of views."""
        return int(self.angles_deg.size)

    @property
    def projection_shape(self) -> tuple[int, int, int]:
        """Shape ``(view, v, u)`` of the projection data."""
        return (self.n_views, self.n_v, self.n_u)

    @property
    def u_positions_mm(self) -> np.ndarray:
        """Centre of each projection column along ``t(θ)`` in mm (COR offset included)."""
        pu = self.pixel_size_mm[1]
        return (np.arange(self.n_u) - (self.n_u - 1) / 2.0) * pu + self.cor_offset_mm

    @property
    def v_positions_mm(self) -> np.ndarray:
        """World z in mm of the centre of each projection row."""
        pv = self.pixel_size_mm[0]
        return (np.arange(self.n_v) - (self.n_v - 1) / 2.0) * pv + self.axial_offset_mm

    @property
    def acquisition_end_s(self) -> float:
        """End of the last view in s from acquisition start (the latest start + duration)."""
        return float(np.max(self.start_times_s + self.durations_s))

    def subset(self, views: np.ndarray | list[int]) -> SpectGeometry:
        """The geometry of the given views only (in the given order)."""
        idx = np.asarray(views, dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0 or idx.min() < 0 or idx.max() >= self.n_views:
            raise GeometryError(f"view indices must lie in [0, {self.n_views}) and not be empty")
        return SpectGeometry(
            angles_deg=self.angles_deg[idx],
            radii_mm=self.radii_mm[idx],
            n_u=self.n_u,
            n_v=self.n_v,
            pixel_size_mm=self.pixel_size_mm,
            start_times_s=self.start_times_s[idx],
            durations_s=self.durations_s[idx],
            cor_offset_mm=self.cor_offset_mm,
            axial_offset_mm=self.axial_offset_mm,
        )
