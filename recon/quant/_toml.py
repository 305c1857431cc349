"""Validation of values read from the quantification TOML files (private).

Every check raises :class:`recon.errors.InputError` with a one-line message naming the table and
key (the caller's :func:`context` adds the file), never a traceback from a wrong type.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from recon.errors import InputError, ReconError

__all__ = [
    "boolean",
    "check_keys",
    "context",
    "date_time",
    "number",
    "table",
    "text",
    "triple",
]


@contextmanager
def context(where: str) -> Iterator[None]:
    """Prefix errors raised inside with ``where``, on one line."""
    try:
        yield
    except ReconError as exc:
        message = " ".join(f"{where}: {exc}".split())
        raise type(exc)(message) from None


def table(value: Any, where: str) -> dict[str, Any]:
    """``value`` when it is a TOML table (a dict), else an InputError naming ``where``."""
    if not isinstance(value, dict):
        raise InputError(f"{where} must be a table, got {type(value).__name__}")
    return value


def check_keys(values: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    """Raise InputError naming the keys of ``values`` not ``allowed`` (prefixed ``where``)."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        prefix = f"{where}: " if where else ""
        raise InputError(
            f"{prefix}unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
        )


def number(value: Any, key: str, sign: str = "any") -> float:
    """A finite number; ``sign`` "positive" (> 0) or "non-negative" (≥ 0) restricts it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{key} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{key} must be finite, got {value!r}")
    if (sign == "positive" and not v > 0) or (sign == "non-negative" and v < 0):
        raise InputError(f"{key} must be {sign}, got {value!r}")
    return v


def boolean(value: Any, key: str) -> bool:
    """``value`` when it is true or false, else an InputError naming ``key``."""
    if not isinstance(value, bool):
        raise InputError(f"{key} must be true or false, got {value!r}")
    return value


def text(value: Any, key: str, choices: Sequence[str] | None = None) -> str:
    """A non-empty string, one of ``choices`` when given; else an InputError naming ``key``."""
    if choices is not None and (not isinstance(value, str) or value not in choices):
        raise InputError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
    if not isinstance(value, str) or not value:
        raise InputError(f"{key} must be a non-empty string, got {value!r}")
    return value


def date_time(value: Any, key: str) -> datetime:
    """A TOML date-time or an ISO-8601 string as a datetime; else an InputError naming ``key``."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InputError(
        f"{key} must be a date and time (TOML 2026-03-01T09:00:00 or an ISO-8601 string), "
        f"got {value!r}"
    )


def triple(value: Any, key: str) -> tuple[float, float, float]:
    """Three numbers ``(z, y, x)`` from a list of 3, or from one positive number used thrice."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = number(value, key, "positive")
        return (v, v, v)
    if not isinstance(value, list) or len(value) != 3:
        raise InputError(f"{key} must be 3 numbers, got {value!r}")
    x, y, z = (number(v, key) for v in value)
    return x, y, z
