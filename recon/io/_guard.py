"""Turn low-level failures on malformed files into the project's own errors."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np

from recon.errors import InputError, ReconError

__all__ = ["malformed_input_is_input_error"]

P = ParamSpec("P")
R = TypeVar("R")

# What pydicom and numpy raise when a tag holds a value of the wrong kind or a size is absurd.
_LOW_LEVEL = (
    ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError,
    ZeroDivisionError, MemoryError, EOFError, FloatingPointError,
)  # fmt: skip


def malformed_input_is_input_error(
    what: str,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator for readers: a failure the reader did not anticipate on a malformed input is
    reported as :class:`InputError` naming ``what`` was being read and the underlying problem,
    so callers and the CLI see one kind of error. ReconErrors pass through, their message
    prefixed with the file's name when it does not say it already."""

    def decorate(reader: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(reader)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            source = args[0] if args else kwargs.get("path", "input")
            name = getattr(source, "filename", None) or source
            if not isinstance(name, str | bytes) and not hasattr(name, "__fspath__"):
                name = "dataset"
            try:
                # Absurd numbers (a size of 1e308) must fail loudly, not wrap around in a cast.
                with np.errstate(over="raise", invalid="raise"):
                    return reader(*args, **kwargs)
            except ReconError as exc:
                shown = os.fsdecode(name) if name != "dataset" else None
                if shown and shown not in str(exc) and Path(shown).name not in str(exc):
                    # Say which file the problem is in (a CT folder holds hundreds).
                    raise type(exc)(f"{shown}: {exc}") from exc
                raise
            except _LOW_LEVEL as exc:
                raise InputError(
                    f"{name}: malformed {what} ({type(exc).__name__}: {exc}); check the file's "
                    "tags against the DICOM standard or re-export it"
                ) from exc

        return wrapper

    return decorate
