"""Validation and time helpers shared by the quantification modules (private)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np

from recon._checks import check_grid, finite, non_negative, positive, xyz
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.physics.isotopes import Isotope, get_isotope

__all__ = [
    "LN2",
    "TimeLike",
    "check_grid",
    "check_same_grid",
    "decay_constant_per_s",
    "elapsed_s",
    "finite",
    "finite_array",
    "half_life_s",
    "non_negative",
    "positive",
    "xyz",
]

#: A point in time: a :class:`datetime.datetime`, or seconds on a clock shared by every time
#: passed to the same call (e.g. seconds after injection, or POSIX seconds).
TimeLike = datetime | float | int

LN2 = math.log(2.0)


def finite_array(values: Any, name: str, ndim: int | None = None) -> np.ndarray:
    """``values`` as a float64 array with finite entries (and ``ndim`` dimensions if given)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers, got {values!r}") from None
    if ndim is not None and array.ndim != ndim:
        raise InputError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values")
    return array


def elapsed_s(start: TimeLike, end: TimeLike, start_name: str, end_name: str) -> float:
    """Seconds from ``start`` to ``end`` (negative when ``end`` is earlier).

    Both must be :class:`datetime` objects (both naive or both time-zone aware), or both numbers
    of seconds on the same clock; mixing the two is an error, because a number of seconds has no
    meaning next to a calendar time.
    """
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise InputError(
            f"{start_name} and {end_name} must both be datetime objects or both be seconds on one "
            f"clock; got {type(start).__name__} and {type(end).__name__}"
        )
    if isinstance(start, datetime) and isinstance(end, datetime):
        try:
            delta = end - start
        except TypeError:
            raise InputError(
                f"{start_name} and {end_name} must both be naive or both be time-zone aware "
                "datetimes"
            ) from None
        return delta.total_seconds()
    return finite(end, end_name) - finite(start, start_name)


def half_life_s(isotope: str | Isotope | float) -> float:
    """Half-life in s of an isotope (name or :class:`Isotope`) or of a number of seconds."""
    if isinstance(isotope, (str, Isotope)):
        return get_isotope(isotope).half_life_s
    return positive(isotope, "half-life", "s")


def decay_constant_per_s(isotope: str | Isotope | float) -> float:
    """λ = ln 2 / T½ in 1/s."""
    return LN2 / half_life_s(isotope)


def check_same_grid(a: ImageGrid, b: ImageGrid, what_a: str, what_b: str) -> None:
    """Raise GeometryError unless ``a`` and ``b`` describe the same voxels.

    ``what_a`` and ``what_b`` name the two in the message, which gives both grids and how to
    resample one onto the other.
    """
    if not a.same_as(b):
        raise GeometryError(
            f"{what_a} and {what_b} are on different grids ({what_a}: shape {a.shape}, voxel "
            f"{a.voxel_size_mm} mm, origin {a.origin}; {what_b}: shape {b.shape}, voxel "
            f"{b.voxel_size_mm} mm, origin {b.origin}); resample one onto the other first "
            "(recon.quant.timeseries.resample_voi / resample_image)"
        )
