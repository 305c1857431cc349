"""Small DICOM helpers shared by the readers: element values and numbers, tag names, opening
files, DA/TM/DT values, rescaled pixel data."""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from recon.errors import GeometryError, InputError

__all__ = [
    "MBQ_PLAUSIBLE_MAX",
    "as_list",
    "combine_datetime",
    "load_dataset",
    "number",
    "numbers",
    "parse_date",
    "parse_datetime",
    "parse_time",
    "rescaled_pixels",
    "tag_label",
    "tag_value",
]


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
        except InvalidDicomError:
            # pydicom's own message suggests force=True, which would read garbage as DICOM.
            raise InputError(
                f"{path} is not a DICOM file (no 'DICM' preamble){hint}; recon reads DICOM "
                "files, Interfile headers (.hs/.hv) and recon listmode (.npz)"
            ) from None
        except (EOFError, OSError, ValueError) as exc:
            raise InputError(f"{path} could not be read as DICOM ({exc}){hint}") from exc
        return ds, str(path)
    raise InputError(
        f"expected a path to a {what} or a pydicom Dataset, got {type(path_or_dataset).__name__}"
    )


# ------------------------------------------------------------------ numbers, dates, pixels
# Patient Radionuclide Total Dose is in MBq in the NM Isotope Module (PS3.3 C.8.4.10) but in Bq in
# the PET Isotope Module; some NM writers use Bq. No administered activity reaches 1e5 MBq
# (100 GBq), so a larger value can only be in Bq.
MBQ_PLAUSIBLE_MAX = 1e5


def as_list(value: Any) -> list[Any]:
    """A multi-valued element as a list; a single value as a one-item list."""
    if isinstance(value, (list, tuple, Sequence)) and not isinstance(value, (str, bytes)):
        return list(value)
    return [value]


def numbers(ds: Dataset, keyword: str, where: str, error: type = GeometryError) -> list[float]:
    """All values of a numeric element (possibly multi-valued); empty list when absent."""
    value = tag_value(ds, keyword)
    if value is None:
        return []
    try:
        out = [float(v) for v in as_list(value)]
    except (TypeError, ValueError) as exc:
        raise error(f"{tag_label(keyword)}{where} is not numeric: {value!r}") from exc
    if not all(math.isfinite(v) for v in out):
        raise error(f"{tag_label(keyword)}{where} holds NaN or infinite values: {value!r}")
    return out


def number(ds: Dataset, keyword: str, where: str, error: type = GeometryError) -> float | None:
    """The single value of a numeric element, None when absent (``error`` if several)."""
    values = numbers(ds, keyword, where, error)
    if not values:
        return None
    if len(values) != 1:
        raise error(f"{tag_label(keyword)}{where} must hold one value, got {len(values)}")
    return values[0]


_DA = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


def parse_date(value: Any) -> _dt.date | None:
    """A DICOM DA ``YYYYMMDD`` (also with ``.`` or ``-``), or None when absent or malformed."""
    if value is None:
        return None
    match = _DA.match(str(value).strip().replace(".", "").replace("-", ""))
    if not match:
        return None
    try:
        return _dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def parse_time(value: Any) -> _dt.time | None:
    """A DICOM TM ``HHMMSS.FFFFFF`` (later parts optional), or None when absent or malformed."""
    if value is None:
        return None
    match = _TM.match(str(value).strip().replace(":", ""))
    if not match:
        return None
    hh, mm, ss, frac = match.groups()
    micro = int((frac or "0").ljust(6, "0"))
    try:
        return _dt.time(int(hh), int(mm or 0), int(ss or 0), micro)
    except ValueError:
        return None


def parse_datetime(value: Any) -> _dt.datetime | None:
    """DICOM DT ``YYYYMMDDHHMMSS.FFFFFF&ZZXX`` as a naive (recorded local) datetime."""
    if value is None:
        return None
    text = re.split(r"[+\-&]", str(value).strip(), maxsplit=1)[0]
    date = parse_date(text[:8])
    if date is None:
        return None
    time = parse_time(text[8:]) if len(text) > 8 else _dt.time()
    return None if time is None else _dt.datetime.combine(date, time)


def combine_datetime(date: Any, time: Any) -> _dt.datetime | None:
    """A DA and a TM value as one datetime, or None when either is missing or malformed."""
    d, t = parse_date(date), parse_time(time)
    return _dt.datetime.combine(d, t) if d is not None and t is not None else None


def rescaled_pixels(ds: Dataset, source: str) -> np.ndarray:
    """Pixel data × Rescale Slope + Rescale Intercept as float32; a compressed transfer syntax
    without an installed decoder is an InputError that names the plugins to install."""
    file_meta = getattr(ds, "file_meta", None)
    syntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if syntax is not None and UID(str(syntax)).is_compressed:
        from pydicom.pixels import get_decoder

        try:
            available = get_decoder(UID(str(syntax))).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise InputError(
                f"{source}: pixel data are compressed with {UID(str(syntax)).name} and no decoder "
                "is installed; install one: `pip install pylibjpeg pylibjpeg-libjpeg "
                "pylibjpeg-openjpeg` or `pip install python-gdcm`"
            )
    try:
        arr = np.asarray(ds.pixel_array, dtype=np.float32)
    except (AttributeError, RuntimeError, ValueError, NotImplementedError) as exc:
        raise InputError(f"{source}: could not read the pixel data ({exc})") from exc
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return arr * np.float32(slope) + np.float32(intercept)
