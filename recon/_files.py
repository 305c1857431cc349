"""Atomic output files: write to a temporary file in the destination folder, then rename."""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from recon.errors import InputError

__all__ = [
    "create_temporary_file",
    "load_toml",
    "save_npy_atomic",
    "write_atomically",
    "write_summary",
    "write_text_atomic",
]


def create_temporary_file(target: Path) -> tuple[int, Path]:
    """Create a new, empty temporary file next to ``target``; returns ``(fd, path)``.

    Unlike :func:`tempfile.mkstemp` (mode 0600), the file is created with mode 0666 filtered by
    the process umask, so once renamed it has the permissions of any ordinary new file (0644
    under the usual umask 022).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue
    raise OSError(f"cannot create a temporary file next to {target}")  # pragma: no cover


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"output folder {path.parent} does not exist; create it first")
    fd, tmp = create_temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_npy_atomic(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Save ``array`` as ``.npy`` at ``path`` without ever leaving a half-written file."""
    return write_atomically(Path(path), lambda handle: np.save(handle, np.asarray(array)))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_atomically(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def write_summary(folder: Path, name: str, summary: dict[str, Any]) -> Path:
    """Write ``summary`` as indented JSON to ``folder/name``, atomically."""
    return write_text_atomic(Path(folder) / name, json.dumps(summary, indent=2, default=str))


def load_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; missing or malformed files raise InputError naming the file."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not a TOML file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a TOML file (it is not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
