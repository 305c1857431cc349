"""NumPy ``.npy`` and ``.npz`` files read defensively: headers first, sizes checked, no pickles.

``np.load`` trusts a file's header: a 100-byte ``.npy`` that declares 10^15 float32 values makes it
try to allocate petabytes, and a truncated member fails deep inside zlib. These readers parse the
header, refuse object (pickled) arrays, compare the declared size with the bytes actually present
and with the machine's memory, and only then read the data.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from recon._memory import check_memory
from recon.errors import InputError, ReconError

__all__ = ["NpyHeader", "load_npy", "load_npz"]

_NPY_ERRORS = (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile, OverflowError)


class NpyHeader:
    """Shape, dtype and data size declared by a ``.npy`` header."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, fortran: bool, offset: int) -> None:
        self.shape = shape
        self.dtype = dtype
        self.fortran = fortran
        self.offset = offset  # bytes before the data
        self.nbytes = math.prod(shape) * dtype.itemsize

    @classmethod
    def read(cls, handle: IO[bytes], where: str) -> NpyHeader:
        """Parse the header at the start of ``handle`` (left positioned at the data)."""
        fmt = np.lib.format
        try:
            version = fmt.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = fmt.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unknown .npy version {version}")
        except _NPY_ERRORS as exc:
            raise InputError(f"{where}: not a readable .npy array ({exc})") from None
        if dtype.hasobject:
            raise InputError(
                f"{where}: holds Python objects (a pickle), which recon does not load; save "
                "plain numbers (e.g. np.save(path, array.astype(np.float32)))"
            )
        if any(int(n) < 0 for n in shape):
            raise InputError(f"{where}: the header declares a negative size {shape}")
        return cls(tuple(int(n) for n in shape), dtype, bool(fortran), handle.tell())

    def check_size(self, available: int, where: str) -> None:
        """Refuse a header that declares more data than the file holds, or than memory."""
        if self.nbytes > available:
            raise InputError(
                f"{where}: the header declares {self.shape} {self.dtype} values "
                f"({self.nbytes} bytes) but the file holds {max(available, 0)} bytes of data; "
                "it is truncated or corrupt"
            )
        check_memory(self.nbytes, f"{where} ({self.shape} {self.dtype})", "use a smaller file")


def _read_data(handle: IO[bytes], header: NpyHeader, where: str) -> np.ndarray:
    count = math.prod(header.shape)
    try:
        if isinstance(handle, zipfile.ZipExtFile):
            buffer = handle.read(header.nbytes)
            if len(buffer) != header.nbytes:
                raise EOFError("the data end early")
            flat = np.frombuffer(buffer, dtype=header.dtype, count=count).copy()
        else:
            flat = np.fromfile(handle, dtype=header.dtype, count=count)
            if flat.size != count:
                raise EOFError("the data end early")
    except ReconError:
        raise
    except _NPY_ERRORS as exc:
        raise InputError(f"{where}: the data cannot be read ({exc}); the file is corrupt") from None
    order = "F" if header.fortran else "C"
    return flat.reshape(header.shape, order=order)


def load_npy(path: str | os.PathLike[str], what: str = "array") -> np.ndarray:
    """A ``.npy`` file's array, after checking its header against the file size and memory.

    Raises
    ------
    InputError
        Not a ``.npy`` file, a pickle, a declared size the file does not hold, too large for
        memory, or unreadable data; the message names the file.
    """
    source = Path(path)
    where = f"{what} {source}"
    try:
        with source.open("rb") as handle:
            header = NpyHeader.read(handle, where)
            header.check_size(source.stat().st_size - header.offset, where)
            return _read_data(handle, header, where)
    except FileNotFoundError:
        raise InputError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{where}: is a folder, not a .npy file") from None


def load_npz(path: str | os.PathLike[str], what: str = "archive") -> dict[str, np.ndarray]:
    """Every member of an ``.npz`` archive, each checked as :func:`load_npy` does.

    The declared sizes of all members are checked (against the bytes each member holds and,
    together, against memory) before any member's data are read.
    """
    source = Path(path)
    try:
        archive = zipfile.ZipFile(source)
    except FileNotFoundError:
        raise InputError(f"{what} {source}: no such file") from None
    except _NPY_ERRORS as exc:
        raise InputError(f"{what} {source}: not an .npz archive ({exc})") from None
    with archive:
        headers: dict[str, tuple[zipfile.ZipInfo, NpyHeader]] = {}
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            where = f"{what} {source}: member {key!r}"
            try:
                with archive.open(info) as handle:
                    header = NpyHeader.read(handle, where)
            except ReconError:
                raise
            except _NPY_ERRORS as exc:
                raise InputError(f"{where} cannot be read ({exc}); the file is corrupt") from None
            header.check_size(info.file_size - header.offset, where)
            headers[key] = (info, header)
        total = sum(h.nbytes for _, h in headers.values())
        check_memory(total, f"{what} {source}", "use a smaller file")
        arrays: dict[str, Any] = {}
        for key, (info, header) in headers.items():
            where = f"{what} {source}: member {key!r}"
            try:
                with archive.open(info) as handle:
                    NpyHeader.read(handle, where)  # leaves the stream at the data
                    arrays[key] = _read_data(handle, header, where)
            except ReconError:
                raise
            except _NPY_ERRORS as exc:
                raise InputError(f"{where} cannot be read ({exc}); the file is corrupt") from None
    return arrays
