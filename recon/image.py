"""The result of a reconstruction: an array that knows its grid, units, isotope and time."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.grid import ImageGrid

__all__ = ["Image"]


@dataclass(frozen=True, eq=False)
class Image:
    """A reconstructed volume.

    ``np.asarray(image)`` gives the numpy array of shape ``grid.shape`` (copied from the GPU when
    the data live there); ``image.data`` is the array as computed (numpy or CuPy).

    Attributes
    ----------
    data : ndarray of shape (z, y, x)
        Voxel values in ``units``.
    grid : ImageGrid
        Where the voxels are.
    units : str
        ``"Bq/mL"`` when calibrated, otherwise a description of the uncalibrated unit.
    isotope : str or None
        Isotope name, when known.
    reference_time_s : float or None
        Time (seconds from acquisition start) to which activities are decay-corrected, or None when
        no decay correction was applied.
    info : dict
        Free-form provenance (algorithm, iterations, subsets, corrections applied).
    """

    data: Any
    grid: ImageGrid
    units: str = "counts/s (uncalibrated)"
    isotope: str | None = None
    reference_time_s: float | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if tuple(self.data.shape) != tuple(self.grid.shape):
            raise InputError(
                f"image data shape {tuple(self.data.shape)} does not match "
                f"grid shape {self.grid.shape}"
            )

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self.data
        if not isinstance(data, np.ndarray):
            data = data.get()
        return np.asarray(data, dtype=dtype)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape ``(z, y, x)``, the grid's."""
        return self.grid.shape

    def numpy(self) -> np.ndarray:
        """The voxel values as a numpy array."""
        return np.asarray(self)

    def with_data(self, data: Any, **changes: Any) -> Image:
        """A copy holding ``data`` (same grid) with other fields optionally changed."""
        return replace(self, data=data, **changes)
