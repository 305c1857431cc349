"""A dependency-free PNG writer and quick-look montages of reconstructed volumes.

PNG (ISO/IEC 15948, https://www.w3.org/TR/png/) needs only a deflate stream and CRC-32, both in
:mod:`zlib`, so quick-look images cost no extra dependency (no Pillow, no matplotlib).
"""

from __future__ import annotations

import os
import struct
import uuid
import zlib
from pathlib import Path

import numpy as np

from recon.errors import InputError

__all__ = ["write_png", "to_uint8", "montage_slices_mip"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPE_GREY = 0
_COLOUR_TYPE_RGB = 2
# Deflate level 6 is zlib's default trade-off; quick-look images are small either way.
_COMPRESSION_LEVEL = 6
# Separator between montage panels: mid-dark grey, visible against both black background and
# bright activity, so panels whose edges are black still read as separate.
_GAP_PX = 2
_GAP_VALUE = 64


def _chunk(kind: bytes, data: bytes) -> bytes:
    # The CRC covers the chunk type and data but not the length (PNG spec §5.3).
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _encode_png(image: np.ndarray) -> bytes:
    height, width = image.shape[:2]
    colour_type = _COLOUR_TYPE_GREY if image.ndim == 2 else _COLOUR_TYPE_RGB
    # IHDR: width, height, bit depth 8, colour type, deflate, adaptive filtering, no interlace.
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    rows = np.ascontiguousarray(image).reshape(height, -1)
    # Filter type 0 (None) on every row: a leading zero byte per scanline.
    raw = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 0] = 0
    raw[:, 1:] = rows
    idat = zlib.compress(raw.tobytes(), _COMPRESSION_LEVEL)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an 8-bit greyscale or RGB image as a PNG file, atomically.

    The file is written to a temporary file in the destination folder and then moved into
    place with :func:`os.replace`, so readers never see a half-written PNG and an existing file
    is either kept or fully replaced.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file. Its folder must exist.
    image : ndarray of shape (height, width) or (height, width, 3), dtype uint8
        Grey levels, or RGB triplets. Row 0 is the top of the picture.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    InputError
        ``image`` is not uint8, has the wrong number of dimensions or channels, or is empty.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise InputError(f"write_png needs a uint8 image, got {array.dtype}; see to_uint8()")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise InputError(
            f"write_png needs shape (height, width) or (height, width, 3), got {array.shape}"
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError(f"a PNG needs at least one pixel, got shape {array.shape}")
    if max(array.shape[:2]) >= 2**31:
        raise InputError(f"PNG dimensions are limited to 2**31 - 1, got {array.shape[:2]}")
    data = _encode_png(array)

    target = Path(path)
    # The temporary file must be in the target's folder (same filesystem) for os.replace to be
    # atomic. os.open with mode 0o666 lets the umask decide the final permissions, as for any
    # ordinary file (mkstemp would leave the PNG readable by its owner only).
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def to_uint8(array: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Scale an array linearly to 0…255 grey levels.

    Parameters
    ----------
    array : ndarray
        Real values of any shape.
    vmin, vmax : float, optional
        Values mapped to 0 and 255; values outside are clipped. By default the smallest and
        largest finite values of ``array``.

    Returns
    -------
    ndarray of dtype uint8, same shape as ``array``
        Scaled and rounded grey levels. NaN maps to 0, +inf to 255 and -inf to 0. When
        ``vmax <= vmin`` (e.g. a constant image) values up to ``vmax`` map to 0 and larger ones
        to 255.

    Raises
    ------
    InputError
        ``array`` is not real-valued, or ``vmin``/``vmax`` is not finite.
    """
    a = _real_float64(array, "to_uint8")
    finite = np.isfinite(a)
    if vmin is None:
        vmin = float(a[finite].min()) if finite.any() else 0.0
    if vmax is None:
        vmax = float(a[finite].max()) if finite.any() else 0.0
    vmin, vmax = float(vmin), float(vmax)
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        raise InputError(f"vmin and vmax must be finite, got {vmin} and {vmax}")
    # Halved so that differences of values near the float64 limits cannot overflow.
    half_span = vmax / 2 - vmin / 2
    with np.errstate(invalid="ignore"):
        if half_span > 0:
            scaled = (a / 2 - vmin / 2) * (255.0 / half_span)
        else:
            # Nothing to resolve: values up to vmax go to black, larger ones (and +inf) to white.
            scaled = np.where(a > vmax, 255.0, 0.0)
        scaled = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0), 0.0, 255.0)
    return np.rint(scaled).astype(np.uint8)


def _real_float64(array: np.ndarray, caller: str) -> np.ndarray:
    a = np.asarray(array)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise InputError(f"{caller} needs a real-valued array, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _panel(image2d: np.ndarray) -> np.ndarray:
    # Each panel on its own scale (0 .. its max) so a faint slice is still visible next to a
    # bright MIP; negative values (e.g. difference images) extend the range downwards.
    finite = image2d[np.isfinite(image2d)]
    if finite.size == 0:
        return np.zeros(image2d.shape, dtype=np.uint8)
    return to_uint8(image2d, vmin=min(float(finite.min()), 0.0), vmax=float(finite.max()))


def montage_slices_mip(volume: np.ndarray) -> np.ndarray:
    """Quick-look montage: central transverse, coronal and sagittal slices and a coronal MIP.

    Panels from left to right, separated by a 2-pixel grey gap, each scaled from
    ``min(0, panel minimum)`` to its own maximum:

    1. transverse slice ``volume[nz // 2]``: rows run along +y (anterior at the top), columns
       along +x (patient left on the right of the picture, as radiologists view it);
    2. coronal slice ``volume[:, ny // 2, :]``: superior (+z, larger index) at the top, columns
       along +x;
    3. sagittal slice ``volume[:, :, nx // 2]``: superior at the top, columns along +y
       (anterior on the left);
    4. coronal maximum-intensity projection over y, oriented as panel 2.

    Panels shorter than the tallest one are centred vertically on a black background. Voxels
    are drawn square whatever the voxel size.

    Parameters
    ----------
    volume : ndarray of shape (z, y, x)
        Real-valued image, e.g. activity concentration.

    Returns
    -------
    ndarray of shape (max(ny, nz), 3·nx + ny + 6), dtype uint8
        The montage, ready for :func:`write_png`.

    Raises
    ------
    InputError
        ``volume`` is not a non-empty 3-D real array.
    """
    vol = _real_float64(volume, "montage_slices_mip")
    if vol.ndim != 3 or vol.size == 0:
        raise InputError(f"montage_slices_mip needs a non-empty (z, y, x) volume, got {vol.shape}")
    nz, ny, nx = vol.shape
    # NaN would win every max; as -inf it loses, and an all-NaN ray draws black.
    mip = np.where(np.isnan(vol), -np.inf, vol).max(axis=1)
    # Row 0 of a picture is its top, so z is flipped to put superior (largest index) up.
    panels = [
        _panel(vol[nz // 2]),
        _panel(vol[::-1, ny // 2, :]),
        _panel(vol[::-1, :, nx // 2]),
        _panel(mip[::-1]),
    ]
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + _GAP_PX * (len(panels) - 1)
    out = np.zeros((height, width), dtype=np.uint8)
    col = 0
    for k, panel in enumerate(panels):
        if k:
            out[:, col : col + _GAP_PX] = _GAP_VALUE
            col += _GAP_PX
        top = (height - panel.shape[0]) // 2
        out[top : top + panel.shape[0], col : col + panel.shape[1]] = panel
        col += panel.shape[1]
    return out
