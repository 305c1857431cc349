"""Synthetic DICOM objects for the I/O tests: NM TOMO multi-frame acquisitions and CT series.

The builders live in :mod:`recon.io.synthetic` (the product's way to write simulated studies);
this module re-exports them under the names the tests use. :func:`write_series` here numbers
the files backwards, so that listing order is not slice order and the readers must sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.valuerep import DSfloat

from recon.io.synthetic import (
    CT_IMAGE_STORAGE,
    NM_IMAGE_STORAGE,
    ct_series,
    mu_to_hu,
    nm_tomo_dataset,
    save,
    write_simulated_spect_study,
)
from recon.io.synthetic import write_series as _write_series

__all__ = [
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
