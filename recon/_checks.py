"""Validation helpers shared by the core modules (numbers, points, grids); private."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid

__all__ = ["check_grid", "finite", "non_negative", "positive", "xyz"]


def finite(value: Any, name: str) -> float:
    """``value`` as a finite float, or an InputError naming it."""
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {value!r}")
    return v


def positive(value: Any, name: str, unit: str = "") -> float:
    """``value`` as a finite float > 0, or an InputError naming it and its unit."""
    v = finite(value, name)
    if v <= 0:
        suffix = f" ({unit})" if unit else ""
        raise InputError(f"{name} must be positive{suffix}, got {value!r}")
    return v


def non_negative(value: Any, name: str, unit: str = "") -> float:
    """``value`` as a finite float ≥ 0, or an InputError naming it and its unit."""
    v = finite(value, name)
    if v < 0:
        suffix = f" ({unit})" if unit else ""
        raise InputError(f"{name} must not be negative{suffix}, got {value!r}")
    return v


def xyz(point: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """Three finite world coordinates ``(x, y, z)`` in mm, or a GeometryError."""
    p = np.asarray(point, dtype=np.float64).ravel()
    if p.size != 3 or not np.all(np.isfinite(p)):
        raise GeometryError(
            f"{name} must be 3 finite world coordinates (x, y, z) in mm, got {point!r}"
        )
    return p


def check_grid(grid: Any) -> ImageGrid:
    """``grid`` itself when it is an :class:`~recon.grid.ImageGrid`.

    Raises
    ------
    GeometryError
        ``grid`` is something else (the message names its type).
    """
    if not isinstance(grid, ImageGrid):
        raise GeometryError(f"grid must be a recon.ImageGrid, got {type(grid).__name__}")
    return grid
