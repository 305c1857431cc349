"""The data file an Interfile header points to: number format, byte order, offset, location,
and the scaling of its values (STIR's and CASToR's rules), read after the file size is checked."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from recon.io.interfile.header import (
    FileFormatError,
    InterfileHeader,
    _float,
    _int,
    _is_castor,
    _to_float,
    _word,
)

#: Interfile 3.3 "data starting block" unit.
_BLOCK_BYTES = 2048


_FORMATS = {
    ("unsigned integer", 1): "u1",
    ("unsigned integer", 2): "u2",
    ("unsigned integer", 4): "u4",
    ("unsigned integer", 8): "u8",
    ("signed integer", 1): "i1",
    ("signed integer", 2): "i2",
    ("signed integer", 4): "i4",
    ("signed integer", 8): "i8",
    ("float", 4): "f4",
    ("float", 8): "f8",
    ("short float", 4): "f4",
    ("long float", 8): "f8",
}


def _dtype(h: InterfileHeader) -> np.dtype:
    where = h._where()
    fmt = _word(h, "number format")
    if fmt is None:
        raise FileFormatError(f"{where}: required key '!number format' is missing (e.g. float)")
    nbytes = _int(h, "number of bytes per pixel", required=False)
    known = sorted({f for f, _ in _FORMATS})
    if fmt not in known:
        raise FileFormatError(
            f"{where}: '!number format := {fmt}' is not supported; use one of {known}"
        )
    if nbytes is None:
        nbytes = {"short float": 4, "long float": 8, "float": 4}.get(fmt)
        if nbytes is None:
            raise FileFormatError(
                f"{where}: required key '!number of bytes per pixel' is missing for '{fmt}'"
            )
    code = _FORMATS.get((fmt, nbytes))
    if code is None:
        sizes = sorted(n for f, n in _FORMATS if f == fmt)
        raise FileFormatError(
            f"{where}: '!number format := {fmt}' contradicts '!number of bytes per pixel := "
            f"{nbytes}'; {fmt} takes {sizes} bytes"
        )
    order = _word(h, "imagedata byte order", "bigendian")  # Interfile 3.3 default
    if order not in ("bigendian", "littleendian"):
        raise FileFormatError(
            f"{where}: 'imagedata byte order := {order}' must be LITTLEENDIAN or BIGENDIAN"
        )
    return np.dtype(("<" if order == "littleendian" else ">") + code)


def _data_offset(h: InterfileHeader) -> int:
    offsets = {}
    for key in ("data offset in bytes", "data offset in bytes [1]"):
        value = _int(h, key, required=False, minimum=0)
        if value is not None:
            offsets[key] = value
    block = _int(h, "data starting block", required=False, minimum=0)
    if block is not None:
        offsets["data starting block"] = block * _BLOCK_BYTES
    if len(set(offsets.values())) > 1:
        raise FileFormatError(
            f"{h._where()}: contradictory data offsets {offsets} (bytes); keep one key"
        )
    return next(iter(offsets.values()), 0)


def _data_path(h: InterfileHeader, header_path: Path) -> Path:
    where = h._where()
    name = h.get("name of data file")
    if name is None or not name.strip():
        raise FileFormatError(f"{where}: required key 'name of data file' is missing")
    try:
        folder = header_path.resolve().parent
        candidate = Path(name.strip())
        target = (candidate if candidate.is_absolute() else folder / candidate).resolve()
        if not target.is_relative_to(folder):
            raise FileFormatError(
                f"{where}: data file '{name.strip()}' lies outside the header's folder {folder}; "
                "put the data file next to the header and give its plain name"
            )
        if not target.is_file():
            raise FileFormatError(f"{where}: data file '{name.strip()}' ({target}) does not exist")
    except OSError as exc:  # e.g. a name too long for the file system
        raise FileFormatError(f"{where}: unusable data file name '{name.strip()}': {exc}") from None
    return target


def _read_data(
    h: InterfileHeader, header_path: Path, shape: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Validate the data file against ``shape`` and read it (float32, rescaled), checked first."""
    where = h._where()
    dtype = _dtype(h)
    offset = _data_offset(h)
    path = _data_path(h, header_path)
    count = math.prod(shape)
    needed = offset + count * dtype.itemsize
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileFormatError(f"{where}: cannot read data file {path}: {exc}") from None
    if needed > size:
        raise FileFormatError(
            f"{where}: the header declares {count} values of {dtype.itemsize} bytes "
            f"{'x'.join(map(str, shape))} after an offset of {offset} bytes ({needed} bytes), but "
            f"the data file {path.name} has {size} bytes; check the matrix sizes, the number "
            "format and the data offset"
        )
    slopes = {}
    for key in (
        "data rescale slope",
        "rescale slope",
        "data rescale factor",
        "image scaling factor [1]",
        "image scaling factor",
    ):
        value = _float(h, key, required=False)
        if value is not None:
            slopes[key] = value
    if len(set(slopes.values())) > 1:
        raise FileFormatError(f"{where}: contradictory scaling factors {slopes}; keep one key")
    slope = next(iter(slopes.values()), 1.0)
    units_scale, units_label = _quantification_units(h)
    if _is_castor(h):
        slope *= units_scale  # CASToR: data rescale slope × quantification units
    elif units_scale != 1.0:
        # STIR (InterfileHeader::post_processing): the scale replaces image scaling factors
        # that are absent or equal to it, and any other combination is an error.
        if slope not in (1.0, units_scale):
            raise FileFormatError(
                f"{where}: 'quantification units' scale {units_scale:g} contradicts the scaling "
                f"factor {slope:g}; STIR accepts it only when the image scaling factors are "
                "absent or equal to it: keep one"
            )
        slope = units_scale
    intercepts = {}
    for key in ("data rescale offset", "data rescale intercept", "rescale intercept"):
        value = _float(h, key, required=False)
        if value is not None:
            intercepts[key] = value
    if len(set(intercepts.values())) > 1:
        raise FileFormatError(f"{where}: contradictory intercepts {intercepts}; keep one key")
    intercept = next(iter(intercepts.values()), 0.0)
    try:
        raw = np.fromfile(path, dtype=dtype, count=count, offset=offset)
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{where}: cannot read data file {path}: {exc}") from None
    if raw.size != count:
        raise FileFormatError(f"{where}: data file {path} ended early ({raw.size} of {count})")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        if slope == 1.0 and intercept == 0.0:
            data = raw.astype(np.float32)
        else:
            data = (raw.astype(np.float64) * slope + intercept).astype(np.float32)
    if not np.all(np.isfinite(data)):
        raise FileFormatError(f"{where}: data file {path} contains NaN or infinite values")
    info = {
        "data_path": str(path),
        "number_format": dtype.str,
        "data_offset_bytes": offset,
        "rescale_slope": slope,
        "rescale_offset": intercept,
        "units_label": units_label,
    }
    return data.reshape(shape), info


_LEADING_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(.*)$")


def _quantification_units(h: InterfileHeader) -> tuple[float, str | None]:
    """Scale and unit label of ``quantification units`` (1 and None when absent).

    Louvain-la-Neuve's extension of Interfile 3.3 (ECAT/EcatX ``interfile.cpp``) writes a
    scale followed by a unit label (``1 Bq/ml``); STIR (``KeyParser``: ``istream >> double``)
    and CASToR (``ConvertFromString``: ``strtod``) read only the leading number. A value
    without a number is a label with scale 1.
    """
    text = h.get("quantification units")
    if text is None or not text.strip():
        return 1.0, None
    match = _LEADING_NUMBER.match(text)
    if match is None:
        return 1.0, text.strip()
    scale = _to_float(match.group(1), "quantification units", h._where())
    if scale == 0.0:
        raise FileFormatError(f"{h._where()}: 'quantification units := {text}' scales by 0")
    return scale, match.group(2).strip() or None
