"""recon's compact listmode file: one ``.npz`` archive per acquisition.

Layout (format version 1), all arrays of length n (number of events):

=============  ========  ===========================================================
key            dtype     meaning
=============  ========  ===========================================================
format         str       ``"recon-listmode"``
version        int       1
crystal_a      int32     first crystal id (``ring * crystals_per_ring + index``)
crystal_b      int32     second crystal id
tof_bin        int16     signed TOF bin (DESIGN.md §3), 0 for non-TOF data
time_ms        float64   event time, ms from acquisition start, non-decreasing
prompt         bool      True for prompts, False for delayed coincidences
scanner        str       JSON of the PetScanner fields (``tof`` as a nested object)
isotope        str       isotope name, or "" when unknown
start          str       ISO-8601 acquisition start date-time, or ""
=============  ========  ===========================================================

The scanner's ``energy_window_kev`` and ``energy_resolution`` are stored with the other fields;
files written before recon had them read with both None (unknown): single-scatter estimation then
assumes ``recon.pet.scanner.DEFAULT_ENERGY_WINDOW_KEV`` (425-650 keV) and
``DEFAULT_ENERGY_RESOLUTION`` (12 %) and reports that it did.

It is meant for simulated data and for exchanging events between scripts; scanner vendors'
formats are read through PETSIRD.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import write_atomically
from recon._npy import load_npz
from recon.errors import InputError, ReconError
from recon.pet.listmode import ListmodeEvents
from recon.pet.scanner import PetScanner

__all__ = ["ListmodeFile", "read_listmode", "write_listmode"]

_FORMAT = "recon-listmode"
_ARRAYS = {
    "crystal_a": np.int32,
    "crystal_b": np.int32,
    "tof_bin": np.int16,
    "time_ms": np.float64,
    "prompt": np.bool_,
}


class ListmodeFile:
    """What :func:`read_listmode` returns: events, scanner, isotope and start time."""

    def __init__(
        self, events: ListmodeEvents, scanner: PetScanner, isotope: str | None, start: str | None
    ) -> None:
        self.events = events
        self.scanner = scanner
        self.isotope = isotope
        self.start = start


def _scanner_json(scanner: PetScanner) -> str:
    fields = asdict(scanner)
    return json.dumps(fields)


def _scanner_from_json(text: str, where: str) -> PetScanner:
    return PetScanner.from_dict(json.loads(text), where=where)


def write_listmode(
    path: str | os.PathLike[str],
    events: ListmodeEvents,
    scanner: PetScanner,
    isotope: str | None = None,
    start: str | None = None,
) -> Path:
    """Write ``events`` of ``scanner`` to ``path`` (.npz), atomically, after validating them."""
    events.validate(scanner)
    arrays: dict[str, np.ndarray] = {
        key: np.asarray(getattr(events, key), dtype=dt) for key, dt in _ARRAYS.items()
    }
    meta = {
        "format": np.array(_FORMAT),
        "version": np.array(1),
        "scanner": np.array(_scanner_json(scanner)),
        "isotope": np.array(isotope or ""),
        "start": np.array(start or ""),
    }
    members = {**arrays, **meta}
    # mypy checks an unpacked dict against every keyword parameter, allow_pickle (bool) included.
    return write_atomically(
        Path(path),
        lambda handle: np.savez_compressed(handle, **members),  # type: ignore[arg-type]
    )


def _text(value: np.ndarray, key: str, path: Path) -> str:
    """A scalar string member (format, scanner, isotope, start)."""
    if value.ndim != 0 or value.dtype.kind != "U":
        raise InputError(f"{path}: {key} must be a text scalar, got a {value.dtype} of shape "
                         f"{value.shape}; not a recon listmode file")  # fmt: skip
    return str(value)


def read_listmode(path: str | os.PathLike[str]) -> ListmodeFile:
    """Read a file written by :func:`write_listmode`; validates it completely before returning.

    Members are read without pickles, their declared sizes checked against the archive and the
    machine's memory before any data are loaded (:func:`recon._npy.load_npz`).

    Raises
    ------
    InputError
        Not a recon listmode file, a member of the wrong type or size, a truncated archive, or
        events that do not fit the scanner; the message names the file and the member.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such listmode file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a recon listmode file (.npz archive)")
    archive = load_npz(path, "listmode file")
    keys = set(archive)
    missing = ({"format", "version", "scanner"} | set(_ARRAYS)) - keys
    if missing:
        raise InputError(f"{path}: missing entries {sorted(missing)}; not a recon listmode file")
    version = archive["version"]
    if version.ndim != 0 or version.dtype.kind not in "iu":
        raise InputError(f"{path}: version must be an integer scalar; not a recon listmode file")
    fmt = _text(archive["format"], "format", path)
    if fmt != _FORMAT or int(version) != 1:
        raise InputError(f"{path}: format {fmt!r} version {int(version)} is not supported")
    try:
        scanner = _scanner_from_json(_text(archive["scanner"], "scanner", path), f"{path}: scanner")
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: the scanner description is not JSON: {exc}") from None
    arrays: dict[str, Any] = {}
    lengths = set()
    for key, dtype in _ARRAYS.items():
        value = archive[key]
        if value.dtype != dtype or value.ndim != 1:
            raise InputError(
                f"{path}: {key} must be a 1-D {np.dtype(dtype).name} array, got "
                f"{value.dtype} of shape {value.shape}"
            )
        arrays[key] = value
        lengths.add(value.size)
    if len(lengths) != 1:
        raise InputError(f"{path}: the event arrays differ in length; the file is corrupt")
    isotope = _text(archive["isotope"], "isotope", path) if "isotope" in keys else ""
    start = _text(archive["start"], "start", path) if "start" in keys else ""
    try:
        events = ListmodeEvents(**arrays)
        events.validate(scanner)
    except ReconError as exc:
        raise type(exc)(f"{path}: {exc}") from None
    return ListmodeFile(events, scanner, isotope or None, start or None)
