"""Small DICOM helpers shared by the readers: element values and numbers, tag names, opening
files, DA/TM/DT values (the one date and time parser), radionuclide codes, rescaled pixel
data."""

from __future__ import annotations

import datetime as _dt
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import pydicom
from pydicom.datadict import dictionary_description, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from recon.errors import GeometryError, InputError, PhysicsError
from recon.physics.isotopes import get_isotope
from recon.physics.radionuclide_codes import isotope_for_code

__all__ = [
    "MBQ_PLAUSIBLE_MAX",
    "as_list",
    "combine_datetime",
    "load_dataset",
    "number",
    "numbers",
    "parse_date_time",
    "radionuclide_names",
    "rescaled_pixels",
    "seconds_between",
    "tag_label",
    "tag_value",
    "utc_offset",
]

log = logging.getLogger("recon")


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


# DICOM dates and times (PS3.5 section 6.2, Table 6.2-1). Components may be left off from the
# right (TM "HH", "HHMM"; DT "YYYY" ... "YYYYMMDDHHMMSS"); a fraction of 1-6 digits follows the
# seconds only; a DT may end in a UTC offset "&ZZXX" (& is + or -, from -1200 to +1400). The
# ACR-NEMA forms "YYYY.MM.DD" (DA) and "HH:MM:SS.frac" (TM), which PS3.5 notes as not compliant
# but older files still carry, are read too, as is an ISO "YYYY-MM-DD".
_DA = re.compile(r"(\d{4})(\d{2})(\d{2})")
_TM = re.compile(r"(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?")
_DT = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?)?)?)?"
    r"([+-]\d{4})?"
)
_OFFSET = re.compile(r"([+-])(\d{2})(\d{2})")
#: PS3.5 Table 6.2-1: UTC offsets run from -1200 to +1400.
_OFFSET_RANGE_MINUTES = (-12 * 60, 14 * 60)


@overload
def parse_date_time(value: Any, vr: Literal["DA"]) -> _dt.date | None: ...
@overload
def parse_date_time(value: Any, vr: Literal["TM"]) -> _dt.time | None: ...
@overload
def parse_date_time(value: Any, vr: Literal["DT"]) -> _dt.datetime | None: ...


def parse_date_time(value: Any, vr: str) -> _dt.date | _dt.time | _dt.datetime | None:
    """A DICOM DA, TM or DT value as a Python date, time or datetime (PS3.5 6.2).

    Parameters
    ----------
    value : str, bytes, date, time, datetime or None
        The element value; padding blanks are ignored. A Python value of the right kind is
        returned as it is (pydicom may already have converted the element).
    vr : {"DA", "TM", "DT"}
        The value representation.

    Returns
    -------
    datetime.date, datetime.time or datetime.datetime, or None
        ``DA`` ``YYYYMMDD`` gives a date; ``TM`` ``HH[MM[SS[.F…]]]`` a time; ``DT``
        ``YYYY[MM[DD[HH[MM[SS[.F…]]]]]][&ZZXX]`` a datetime. Components left off are their
        smallest value (month and day 1, hours, minutes and seconds 0): such a value is only as
        precise as its last component. Fractions of up to 6 digits are microseconds. A DT with
        a UTC offset is time-zone aware, one without is naive (the local time it was recorded
        in). A leap second (``SS`` = 60) becomes the last microsecond of its minute, the closest
        instant Python represents. None when the value is absent, empty or malformed (wrong
        length, an impossible date or time, an offset outside −1200…+1400).

    Raises
    ------
    ValueError
        ``vr`` is not DA, TM or DT (a programming error, not a file problem).
    """
    if vr not in ("DA", "TM", "DT"):
        raise ValueError(f"vr must be 'DA', 'TM' or 'DT', got {vr!r}")
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value if vr == "DT" else value.date() if vr == "DA" else value.timetz()
    if isinstance(value, _dt.date):
        return value if vr == "DA" else None
    if isinstance(value, _dt.time):
        return value if vr == "TM" else None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    text = str(value).strip().rstrip("\0").strip()
    if not text:
        return None
    try:
        if vr == "DA":
            return _date(text)
        if vr == "TM":
            return _time(text)
        return _datetime(text)
    except ValueError:  # a component out of range: month 13, hour 24, ...
        return None


def utc_offset(value: Any) -> _dt.timezone | None:
    """The time zone of a UTC offset ``&ZZXX`` (e.g. Timezone Offset From UTC (0008,0201)).

    Returns None when the value is absent or is not an offset from −1200 to +1400.
    """
    if value is None:
        return None
    match = _OFFSET.fullmatch(str(value).strip())
    return _zone(match.group(0)) if match else None


def _date(text: str) -> _dt.date | None:
    if len(text) == 10 and text[4] == text[7] and text[4] in ".-":  # ACR-NEMA or ISO
        text = text[:4] + text[5:7] + text[8:]
    match = _DA.fullmatch(text)
    if match is None:
        return None
    return _dt.date(*(int(g) for g in match.groups()))


def _time(text: str) -> _dt.time | None:
    if ":" in text:  # ACR-NEMA "HH:MM:SS.frac"; a colon must separate every component
        head, dot, fraction = text.partition(".")
        parts = head.split(":")
        if not 1 <= len(parts) <= 3 or any(len(p) != 2 for p in parts) or (dot and len(parts) < 3):
            return None
        text = "".join(parts) + dot + fraction
    match = _TM.fullmatch(text)
    if match is None:
        return None
    hh, mm, ss, fraction = match.groups()
    return _clock(hh, mm, ss, fraction)


def _datetime(text: str) -> _dt.datetime | None:
    match = _DT.fullmatch(text)
    if match is None:
        return None
    year, month, day, hh, mm, ss, fraction, offset = match.groups()
    when = _dt.datetime.combine(
        _dt.date(int(year), int(month or 1), int(day or 1)), _clock(hh, mm, ss, fraction)
    )
    if offset is None:
        return when
    zone = _zone(offset)
    return None if zone is None else when.replace(tzinfo=zone)


def _clock(hh: str | None, mm: str | None, ss: str | None, fraction: str | None) -> _dt.time:
    seconds, micro = int(ss or 0), int((fraction or "0").ljust(6, "0"))
    if seconds == 60:  # a leap second (PS3.5 allows SS = 60)
        seconds, micro = 59, 999_999
    return _dt.time(int(hh or 0), int(mm or 0), seconds, micro)


def _zone(offset: str) -> _dt.timezone | None:
    match = _OFFSET.fullmatch(offset)
    if match is None:
        return None
    hours, minutes = int(match.group(2)), int(match.group(3))
    total = hours * 60 + minutes
    if match.group(1) == "-":
        total = -total
    if minutes > 59 or not _OFFSET_RANGE_MINUTES[0] <= total <= _OFFSET_RANGE_MINUTES[1]:
        return None
    return _dt.timezone(_dt.timedelta(minutes=total))


def combine_datetime(date: Any, time: Any) -> _dt.datetime | None:
    """A DA and a TM value as one naive datetime, or None when either is missing or malformed."""
    d, t = parse_date_time(date, "DA"), parse_date_time(time, "TM")
    if not isinstance(d, _dt.date) or not isinstance(t, _dt.time):
        return None
    return _dt.datetime.combine(d, t.replace(tzinfo=None))


def seconds_between(later: _dt.datetime | None, earlier: _dt.datetime | None) -> float | None:
    """``later − earlier`` in s, None when either is None.

    Two aware datetimes are compared in UTC; when only one carries a UTC offset, both are taken
    as the scanner's local time (the offset is dropped), as a file mixing DT values with offsets
    and DA/TM values without them means.
    """
    if later is None or earlier is None:
        return None
    if (later.tzinfo is None) != (earlier.tzinfo is None):
        later, earlier = later.replace(tzinfo=None), earlier.replace(tzinfo=None)
    return (later - earlier).total_seconds()


def radionuclide_names(code: Dataset) -> list[str]:
    """Names an item of Radionuclide Code Sequence (0054,0300) gives its nuclide, best first.

    Its Code Meaning as written (``"^99m^Technetium"``), then recon's name for its Code Value
    (SNOMED CT or the legacy SNOMED-RT id; :mod:`recon.physics.radionuclide_codes`). When the
    meaning names another nuclide than the value (or one recon does not know), the item
    contradicts itself: a warning names both and only the meaning is used, as these readers did
    before they read code values.
    """
    meaning = tag_value(code, "CodeMeaning")
    value = tag_value(code, "CodeValue")
    isotope = isotope_for_code(value, tag_value(code, "CodingSchemeDesignator"))
    if meaning is None:
        return [] if isotope is None else [isotope]
    if isotope is not None and _isotope_name(str(meaning)) != isotope:
        log.warning(
            "%s: Code Value %s is %s but Code Meaning is %r; the meaning is used",
            tag_label("RadionuclideCodeSequence"), value, isotope, str(meaning),
        )  # fmt: skip
        isotope = None
    return [str(meaning)] + ([] if isotope is None else [isotope])


def _isotope_name(text: str) -> str | None:
    try:
        return get_isotope(text).name
    except PhysicsError:
        return None


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
