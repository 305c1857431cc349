"""Refuse, before allocating, work that cannot fit in this machine's memory."""

from __future__ import annotations

import math
import os

import numpy as np

from recon.errors import InputError

__all__ = [
    "available_memory_bytes",
    "check_memory",
    "format_bytes",
    "page_aligned_copy",
    "page_aligned_empty",
]

_PAGE_BYTES = 4096

# Leave room for the interpreter, the libraries and the arrays not counted by an estimate.
_USABLE_FRACTION = 0.8


def available_memory_bytes() -> int:
    """Memory this process may still use: MemAvailable on Linux, else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return 1 << 62


def format_bytes(n: float) -> str:
    """``1.5 GB``-style text (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.3g} EB"  # pragma: no cover


def check_memory(n_bytes: float, what: str, fix: str) -> None:
    """Raise :class:`InputError` when ``n_bytes`` cannot fit in the available memory.

    Parameters
    ----------
    n_bytes : float
        Estimated size of what is about to be allocated.
    what : str
        What needs it ("a 100000 x 100000 x 100000 image grid").
    fix : str
        What the user can change ("use a smaller grid (--shape)").
    """
    available = available_memory_bytes()
    if n_bytes > _USABLE_FRACTION * available:
        raise InputError(
            f"{what} needs about {format_bytes(n_bytes)} of memory, more than this machine has "
            f"available ({format_bytes(available)}); {fix}"
        )


def page_aligned_empty(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """An uninitialised C-contiguous host array that starts on a 4 KiB page boundary.

    The CPU prior kernel reads the image and κ and writes its output row by row; on a 128³ image
    its time varied up to twofold with nothing but the arrays' offsets within a page (measured;
    4 KiB aliasing of loads behind stores or cache-set conflicts are the likely causes, not
    pinned down), and was at its fastest with all three page-aligned. BSREM keeps its image, κ
    and the prior's output page-aligned.
    """
    itemsize = np.dtype(dtype).itemsize
    count = math.prod(int(n) for n in shape)  # not np.prod: BSREM asks several times a subset
    buffer = np.empty(count * itemsize + _PAGE_BYTES, np.uint8)
    start = -buffer.__array_interface__["data"][0] % _PAGE_BYTES
    return buffer[start : start + count * itemsize].view(dtype).reshape(shape)


def page_aligned_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``array`` that starts on a page boundary (see
    :func:`page_aligned_empty`)."""
    out = page_aligned_empty(array.shape, array.dtype.type)
    out[...] = array
    return out
