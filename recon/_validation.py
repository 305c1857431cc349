"""Boundary checks shared by the system models: images and attenuation maps on a grid."""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import Backend
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image

__all__ = ["as_grid_array", "as_mu_map"]


def as_grid_array(image: Any, grid: ImageGrid, backend: Backend, name: str = "image") -> Any:
    """``image`` (array or :class:`recon.Image`) as a float32 array on ``backend`` for ``grid``.

    Raises
    ------
    GeometryError
        An Image on another grid.
    InputError
        An array whose shape is not ``grid.shape``.
    """
    if isinstance(image, Image):
        if not image.grid.same_as(grid):
            raise GeometryError(
                f"the {name} is on another grid than the reconstruction "
                f"({image.grid.shape} vs {grid.shape}); resample it onto the reconstruction grid"
            )
        image = image.data
    shape = tuple(getattr(image, "shape", np.shape(image)))
    if shape != tuple(grid.shape):
        raise InputError(f"{name} has shape {shape} but the model grid is {grid.shape}")
    return backend.asarray(image)


def as_mu_map(mu_map: Any, grid: ImageGrid, backend: Backend, max_per_mm: float, water: str) -> Any:
    """Validated attenuation map (1/mm) on ``backend``.

    ``max_per_mm`` is the largest plausible value at the photon energy and ``water`` names water's
    coefficient there, for the message that catches maps given in 1/cm or in HU.
    """
    if not isinstance(mu_map, Image) and tuple(np.shape(mu_map)) != tuple(grid.shape):
        raise GeometryError(
            f"mu-map shape {tuple(np.shape(mu_map))} does not match the image grid {grid.shape}; "
            "resample it onto the reconstruction grid"
        )
    mu = as_grid_array(mu_map, grid, backend, name="mu-map")
    xp = backend.xp
    if not bool(xp.all(xp.isfinite(mu))):
        raise InputError("mu-map contains NaN or infinite values")
    if float(mu.min()) < 0:
        raise InputError("mu-map has negative attenuation coefficients")
    if float(mu.max()) > max_per_mm:
        raise InputError(
            f"mu-map maximum {float(mu.max()):.3g} is implausible for 1/mm (water is {water}); "
            "convert from 1/cm (divide by 10) or from HU first"
        )
    return mu
