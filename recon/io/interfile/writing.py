"""What every Interfile writer shares: numbers written so they read back exactly, output paths
that never overwrite an input, and a header and data file that appear together or not at all."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np

from recon._files import create_temporary_file
from recon.errors import InputError


def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float64."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _sources(obj: Any) -> set[Path]:
    paths = set()
    if isinstance(obj, dict):
        for key in ("header_path", "data_path"):
            if obj.get(key):
                paths.add(Path(obj[key]).resolve())
    return paths


def _output_paths(
    path: str | os.PathLike[str], data_name: str | None, suffix: str, sources: Iterable[Path]
) -> tuple[Path, Path]:
    header = Path(path)
    if data_name is None:
        data_name = header.with_suffix(suffix).name if header.suffix else header.name + suffix
    name = str(data_name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or Path(name).name != name:
        raise InputError(
            f"data_name {data_name!r} must be a plain file name: the data file is written next "
            "to the header, in the same folder"
        )
    data = header.parent / name
    if data.resolve() == header.resolve():
        raise InputError(f"the data file and the header are the same file ({header}); rename one")
    for out in (header, data):
        if out.resolve() in set(sources):
            raise InputError(
                f"refusing to write {out}: it is a file the data were read from; choose another "
                "output name (inputs are never modified)"
            )
    return header, data


def _write_pair_atomically(
    header_path: Path, header_text: str, data_path: Path, write_data: Callable[[IO[bytes]], None]
) -> None:
    """Write both files to temporaries in the destination folder, then rename both.

    ``recon._files`` replaces one file at a time; a header and its data file are complete only
    together, so neither is renamed until both are written. The two renames follow each other
    directly (data first): only a failure between them can pair a new data file with an old
    header.
    """
    folder = header_path.parent
    if not folder.is_dir():
        raise InputError(f"output folder {folder} does not exist; create it first")
    temps: list[Path] = []
    try:
        for target, write in (
            (data_path, write_data),
            (header_path, lambda handle: handle.write(header_text.encode("utf-8"))),
        ):
            fd, tmp = create_temporary_file(target)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as handle:
                write(handle)
        os.replace(temps[0], data_path)
        os.replace(temps[1], header_path)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise


def _float32_le(array: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(array, np.ndarray) and hasattr(array, "get"):
        array = array.get()  # CuPy -> host
    arr = np.asarray(array)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{what} must be real numbers, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise InputError(f"{what} has shape {arr.shape}, expected {shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # reported just below
        out = np.ascontiguousarray(arr, dtype="<f4")
    if not np.all(np.isfinite(out)):
        raise InputError(f"{what} contains NaN or infinite values (or values beyond float32)")
    return out
