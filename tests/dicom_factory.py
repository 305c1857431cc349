"""Synthetic DICOM objects for the I/O tests: NM TOMO multi-frame acquisitions and CT series.

The builders live in :mod:`recon.simulate.dicom_study` (the product's way to write simulated
studies); this module re-exports them under the names the tests use. :func:`write_series` here
numbers the files backwards, so that listing order is not slice order and the readers must sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.valuerep import DSfloat

from recon.grid import ImageGrid
from recon.image import Image
from recon.physics.attenuation import mu_to_hu
from recon.simulate.dicom_study import (
    CT_IMAGE_STORAGE,
    NM_IMAGE_STORAGE,
    ct_series,
    nm_tomo_dataset,
    save,
    write_simulated_spect_study,
)
from recon.simulate.dicom_study import write_series as _write_series

__all__ = [
    "asymmetric_grid",
    "reconstruction",
    "CT_IMAGE_STORAGE",
    "NM_IMAGE_STORAGE",
    "ct_series",
    "ds_value",
    "mu_to_hu",
    "nm_tomo_dataset",
    "save",
    "write_series",
    "write_simulated_spect_study",
]


def ds_value(value: float) -> DSfloat:
    """A DS value that fits the 16-character limit."""
    return DSfloat(float(value), auto_format=True)


def write_series(datasets: Sequence[Dataset], directory: str | Path) -> list[Path]:
    """Write each dataset to ``directory`` (named in reverse order, so listing order is not slice
    order) and return the paths."""
    return _write_series(datasets, directory, reverse_names=True)


def asymmetric_grid() -> ImageGrid:
    """Anisotropic voxels, odd sizes and an off-centre origin, so that any swapped or flipped axis
    moves an off-centre voxel somewhere else."""
    return ImageGrid((5, 6, 7), (3.0, 2.5, 2.0), origin=(-10.5, 20.25, -30.0))


def reconstruction(
    grid: ImageGrid,
    bright: tuple[int, int, int],
    *,
    units: str = "Bq/mL",
    isotope: str | None = "F-18",
    reference_time_s: float | None = 0.0,
    info: dict | None = None,
    scale: float = 1000.0,
    floor: float = 0.0,
    bright_factor: float = 100.0,
    seed: int = 0,
) -> Image:
    """A reconstruction-like Image: uniform noise in [floor, 1)·scale and one bright voxel."""
    data = np.random.default_rng(seed).uniform(floor, 1.0, grid.shape) * scale
    data[bright] = bright_factor * scale
    return Image(
        data.astype(np.float32), grid, units=units, isotope=isotope,
        reference_time_s=reference_time_s, info=dict(info or {}),
    )  # fmt: skip
