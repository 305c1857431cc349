"""Interfile headers: the ``key := value`` syntax, typed values, and what a header holds.

Header syntax (:func:`parse_interfile_header`)
    One ``key := value`` per line. Keys are case-insensitive; a leading ``!`` (the standard's
    "required key" mark) or ``%`` (Siemens) is ignored, runs of blanks collapse to one and an
    index is normalised to ``key [i]`` (``!Matrix Size[1]`` is ``matrix size [1]``). ``;`` starts
    a comment, ``{a, b, c}`` is a list, lines without ``:=`` are ignored. The first key must be
    ``!INTERFILE``. A key given twice with different values is an error when a reader uses it.

:func:`_kind` tells SPECT projections, a PET sinogram and an image apart; :func:`_is_castor`
recognises a header CASToR wrote, whose conventions differ from STIR's.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload

from recon.errors import InputError

__all__ = ["FileFormatError", "InterfileHeader", "parse_interfile_header"]

#: A header larger than this is not a header (guards against passing the binary file).
_MAX_HEADER_BYTES = 1 << 20


class FileFormatError(InputError):
    """An Interfile header or data file is malformed, contradictory or unsupported."""


_INDEX = re.compile(r"\s*\[\s*(\d+)\s*\]")


def _normalise_key(raw: str) -> str:
    key = raw.strip().lstrip("!%").strip().lower()
    key = " ".join(key.split())
    return _INDEX.sub(lambda m: f" [{int(m.group(1))}]", key).strip()


@dataclass(frozen=True)
class InterfileHeader:
    """Parsed ``key := value`` lines of an Interfile header, in file order.

    ``entries`` holds ``(key, raw key, value, line number)``; keys are normalised (see the module
    docstring), values stripped, comments removed.
    """

    entries: tuple[tuple[str, str, str, int], ...]
    path: Path | None = None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and any(e[0] == _normalise_key(key) for e in self.entries)

    def values(self, key: str) -> list[str]:
        """Every value given for ``key`` (normalised), in file order."""
        norm = _normalise_key(key)
        return [e[2] for e in self.entries if e[0] == norm]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key``, or ``default`` when absent.

        Raises
        ------
        FileFormatError
            ``key`` is given more than once with different values.
        """
        values = self.values(key)
        if not values:
            return default
        if len(set(values)) > 1:
            raise FileFormatError(
                f"{self._where()}: key '{_normalise_key(key)}' is given {len(values)} times with "
                f"different values {sorted(set(values))}; keep one"
            )
        return values[0]

    def as_dict(self) -> dict[str, str]:
        """Normalised key -> value (the last one where a key repeats)."""
        return {e[0]: e[2] for e in self.entries}

    def _where(self) -> str:
        return f"Interfile header {self.path}" if self.path is not None else "Interfile header"


def parse_interfile_header(
    text: str, path: str | os.PathLike[str] | None = None
) -> InterfileHeader:
    """Parse the text of an Interfile header.

    Parameters
    ----------
    text : str
        Header text.
    path : path-like, optional
        Where it came from (used in error messages).

    Returns
    -------
    InterfileHeader

    Raises
    ------
    FileFormatError
        The text contains NUL bytes or its first key is not ``!INTERFILE``.
    """
    where = f"Interfile header {path}" if path is not None else "Interfile header"
    if "\x00" in text:
        raise FileFormatError(f"{where} contains binary data: pass the header (.hs/.hv), not data")
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split(";", 1)[0]
        if ":=" not in line:
            continue
        raw_key, value = line.split(":=", 1)
        key = _normalise_key(raw_key)
        if key:
            entries.append((key, raw_key.strip(), value.strip(), number))
        if key == "end of interfile":
            break  # CASToR appends a copy of its data-file header after the end
    if not entries or entries[0][0] != "interfile":
        raise FileFormatError(
            f"{where} does not start with '!INTERFILE :=': not an Interfile header"
        )
    return InterfileHeader(tuple(entries), None if path is None else Path(path))


def _read_header(path: str | os.PathLike[str]) -> InterfileHeader:
    p = Path(path)
    if not p.is_file():
        raise FileFormatError(f"Interfile header {p} does not exist or is not a file")
    try:
        size = p.stat().st_size
        if size > _MAX_HEADER_BYTES:
            raise FileFormatError(
                f"{p} is {size} bytes, too large for an Interfile header "
                f"(limit {_MAX_HEADER_BYTES}); pass the header (.hs/.hv), not the data file"
            )
        raw = p.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"cannot read Interfile header {p}: {exc}") from None
    return parse_interfile_header(raw.decode("utf-8", errors="replace"), p)


def _split_list(value: str, key: str, where: str) -> list[str]:
    text = value.strip()
    if text.startswith("{") or text.endswith("}"):
        if not (text.startswith("{") and text.endswith("}")):
            raise FileFormatError(
                f"{where}: '{key}' has an unbalanced list '{value}'; use {{a, b}}"
            )
        text = text[1:-1]
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        return []
    if any(item == "" for item in items):
        raise FileFormatError(f"{where}: '{key}' has an empty list element in '{value}'")
    return items


def _to_float(text: str, key: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FileFormatError(f"{where}: '{key}' must be a number, got '{text}'") from None
    if not math.isfinite(value):
        raise FileFormatError(f"{where}: '{key}' must be finite, got '{text}'")
    return value


def _to_int(text: str, key: str, where: str) -> int:
    value = _to_float(text, key, where)
    if not value.is_integer() or abs(value) > 2**62:
        raise FileFormatError(f"{where}: '{key}' must be an integer, got '{text}'")
    return int(value)


def _scalar_text(h: InterfileHeader, key: str) -> str | None:
    value = h.get(key)
    if value is None:
        return None
    items = _split_list(value, key, h._where())
    if len(items) != 1:
        raise FileFormatError(f"{h._where()}: '{key}' must be one value, got '{value}'")
    return items[0]


# A value that may be missing (``required=False`` without a default) is ``None``; the overloads
# say so, so that callers handle it.
@overload
def _float(
    h: InterfileHeader,
    key: str,
    *,
    required: Literal[True] = ...,
    default: float | None = ...,
    positive: bool = ...,
    hint: str = ...,
) -> float: ...
@overload
def _float(
    h: InterfileHeader,
    key: str,
    *,
    required: bool = ...,
    default: float,
    positive: bool = ...,
    hint: str = ...,
) -> float: ...
@overload
def _float(
    h: InterfileHeader,
    key: str,
    *,
    required: bool = ...,
    default: None = ...,
    positive: bool = ...,
    hint: str = ...,
) -> float | None: ...
def _float(
    h: InterfileHeader,
    key: str,
    *,
    required: bool = True,
    default: float | None = None,
    positive: bool = False,
    hint: str = "",
) -> float | None:
    text = _scalar_text(h, key)
    if text is None:
        if required:
            raise FileFormatError(f"{h._where()}: required key '{key}' is missing{hint}")
        return default
    value = _to_float(text, key, h._where())
    if positive and value <= 0:
        raise FileFormatError(f"{h._where()}: '{key}' must be positive, got {text}")
    return value


@overload
def _int(
    h: InterfileHeader,
    key: str,
    *,
    required: Literal[True] = ...,
    default: int | None = ...,
    minimum: int | None = ...,
    hint: str = ...,
) -> int: ...
@overload
def _int(
    h: InterfileHeader,
    key: str,
    *,
    required: bool = ...,
    default: int,
    minimum: int | None = ...,
    hint: str = ...,
) -> int: ...
@overload
def _int(
    h: InterfileHeader,
    key: str,
    *,
    required: bool = ...,
    default: None = ...,
    minimum: int | None = ...,
    hint: str = ...,
) -> int | None: ...
def _int(
    h: InterfileHeader,
    key: str,
    *,
    required: bool = True,
    default: int | None = None,
    minimum: int | None = 1,
    hint: str = "",
) -> int | None:
    text = _scalar_text(h, key)
    if text is None:
        if required:
            raise FileFormatError(f"{h._where()}: required key '{key}' is missing{hint}")
        return default
    value = _to_int(text, key, h._where())
    if minimum is not None and value < minimum:
        raise FileFormatError(f"{h._where()}: '{key}' must be at least {minimum}, got {text}")
    return value


def _word(h: InterfileHeader, key: str, default: str | None = None) -> str | None:
    value = h.get(key)
    if value is None or not value.strip():
        return default
    return " ".join(value.strip().lower().split())


def _is_castor(h: InterfileHeader) -> bool:
    """True for a header CASToR wrote (it names its version)."""
    version = (h.get("version of keys") or "").strip().lower()
    return "castor version" in h or version.startswith("castor")


def _kind(h: InterfileHeader) -> str:
    if "total number of data sets" in h:
        sets = [v for k, _, v, _ in h.entries if k.startswith("data set [")]
        raise FileFormatError(
            f"{h._where()} is a metaheader listing {len(sets)} data set(s) "
            f"({', '.join(sets[:3])}{' ...' if len(sets) > 3 else ''}); read each data set's "
            "own header (e.g. CASToR's <name>_fr<i>.hdr, one per frame)"
        )
    labels = {_word(h, f"matrix axis label [{i}]", "") for i in range(1, 6)}
    data_type = _word(h, "type of data", "")
    if "segment" in labels:
        return "sinogram"
    if "number of projections" in h:
        return "spect"
    if (
        _word(h, "pet data type") == "image"
        or _word(h, "process status") == "reconstructed"
        or {"x", "y", "z"} <= labels
        or _word(h, "number of dimensions") == "3"
    ):
        return "image"
    if data_type == "pet":
        return "sinogram"
    if data_type == "tomographic":
        return "spect"
    raise FileFormatError(
        f"{h._where()}: cannot tell whether this holds SPECT projections, a PET sinogram or an "
        "image; set '!type of data := Tomographic' with '!number of projections' (SPECT), "
        "'matrix axis label [4] := segment' (sinogram) or 'number of dimensions := 3' (image)"
    )
