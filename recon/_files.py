"""Atomic output files: write to a temporary file in the destination folder, then rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from recon.errors import InputError

__all__ = ["save_npy_atomic", "write_atomically", "write_text_atomic"]


def write_atomically(path: Path, write: object) -> Path:
    """Call ``write(handle)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)  # type: ignore[operator]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Save ``array`` as ``.npy`` at ``path`` without ever leaving a half-written file."""
    return write_atomically(Path(path), lambda handle: np.save(handle, np.asarray(array)))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_atomically(Path(path), lambda handle: handle.write(text.encode("utf-8")))
