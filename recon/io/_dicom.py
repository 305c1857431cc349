"""Small DICOM helpers shared by the readers: element values, tag names, opening files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from recon.errors import InputError

__all__ = ["load_dataset", "tag_label", "tag_value"]


def tag_label(keyword: str) -> str:
    """``"Number of Frames (0028,0008)"`` for a DICOM keyword, for error messages."""
    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - guards typos in the callers
        return keyword
    return f"{dictionary_description(tag)} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def tag_value(ds: Dataset, keyword: str) -> Any:
    """The element's value, or None when the element is absent or empty."""
    if keyword not in ds:
        return None
    value = ds[keyword].value
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (list, tuple, Sequence)) and not isinstance(value, (str, bytes)):
        if len(value) == 0:
            return None
    return value


def load_dataset(path_or_dataset: Any, what: str, hint: str = "") -> tuple[Dataset, str]:
    """A pydicom Dataset and a name for messages, from a path or a Dataset.

    ``what`` names the expected file (e.g. ``"NM projection file"``); ``hint`` is appended to the
    message when the file is not DICOM.
    """
    if isinstance(path_or_dataset, Dataset):
        return path_or_dataset, f"{what.rsplit(' file', 1)[0]} dataset"
    if isinstance(path_or_dataset, (str, os.PathLike)):
        path = Path(path_or_dataset)
        if not path.is_file():
            raise InputError(f"{what} {path} does not exist or is not a file")
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
            raise InputError(f"{path} could not be read as DICOM ({exc}){hint}") from exc
        return ds, str(path)
    raise InputError(
        f"expected a path to a {what} or a pydicom Dataset, got {type(path_or_dataset).__name__}"
    )
