"""recon's PET normalisation file: the components of a :class:`~recon.pet.Normalization`.

One ``.npz`` archive (a zip of ``.npy`` members, readable with ``numpy.load``), format version 1:

======================  ========  ===========================================================
member                  dtype     meaning
======================  ========  ===========================================================
format                  str       ``"recon-pet-normalization"``
version                 int       1
scanner                 str       JSON of the PetScanner fields the factors were made for
max_ring_difference     int       largest ring difference the factors cover
info                    str       JSON object: how the factors were made (method, counts,
                                  iterations, convergence, fallbacks, ``dead_crystals``, ...)
crystal_efficiency      float32   ``(n_rings, crystals_per_ring)`` crystal efficiencies,
                                  positive except the crystals in ``info["dead_crystals"]`` (0)
transaxial              float32   optional, ``(n_radial, crystals_per_block)``: geometric
                                  factor per radial bin (``k = index − (n_radial − 1)/2``, the
                                  offset ``N/2 − d`` of recon's sinogram layout) and in-block
                                  position ``(index of the bin's first crystal) mod B``; positive
axial                   float32   optional, ``(n_rings, n_rings)``: factor per ordered ring pair
                                  (first, second crystal of the bin), positive up to
                                  ``max_ring_difference`` and 0 beyond
module_crystal_module   int32     optional (PETSIRD module-pair factors, all four or none):
module_crystal_element  int32     ``(n_crystals,)`` module (−1: none) and element of each
module_pair_group       int32     crystal, ``(n_modules, n_modules)`` group of each ordered
module_group_values     float32   module pair (−1: not in coincidence), ``(n_groups, n_el,
                                  n_el)`` factor of each element pair of each group
======================  ========  ===========================================================

The LOR factor is the product of the components present (:mod:`recon.pet.normalization`).
Reading checks everything before returning: the format and version, the scanner description,
every member's dtype and shape against the scanner, finite values, the ranges above and, when
a scanner is given, that it has the crystals the factors were made for.
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
from recon.pet.normalization import ModulePairFactors, Normalization, check_same_scanner
from recon.pet.scanner import PetScanner

__all__ = ["read_normalization", "write_normalization"]

_FORMAT = "recon-pet-normalization"
_VERSION = 1
_REQUIRED = ("format", "version", "scanner", "max_ring_difference", "info", "crystal_efficiency")
_OPTIONAL = ("transaxial", "axial")
_MODULE_PAIRS = {
    "module_crystal_module": "crystal_module",
    "module_crystal_element": "crystal_element",
    "module_pair_group": "pair_group",
    "module_group_values": "group_values",
}


def write_normalization(path: str | os.PathLike[str], normalization: Normalization) -> Path:
    """Write ``normalization`` to ``path`` (an ``.npz`` archive, module docstring), atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its folder must exist. Written to a temporary file first, then
        renamed, so a reader never sees a half-written file.
    normalization : Normalization
        The factors; ``normalization.info`` must be JSON-serialisable. Its ``dead_crystals``
        entry is rewritten from the crystals of zero efficiency.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    InputError
        Not a Normalization, an ``info`` that JSON cannot hold, or a missing output folder.
    """
    if not isinstance(normalization, Normalization):
        raise InputError(f"expected a recon.pet.Normalization, got {type(normalization).__name__}")
    record = dict(normalization.info)
    dead = np.flatnonzero(normalization.crystal_efficiency.reshape(-1) == 0)
    record["dead_crystals"] = [int(i) for i in dead]
    try:
        info = json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"normalization.info cannot be saved as JSON: {exc}") from None
    members: dict[str, np.ndarray] = {
        "format": np.array(_FORMAT),
        "version": np.array(_VERSION),
        "scanner": np.array(json.dumps(asdict(normalization.scanner))),
        "max_ring_difference": np.array(normalization.max_ring_difference),
        "info": np.array(info),
        "crystal_efficiency": np.asarray(normalization.crystal_efficiency, np.float32),
    }
    for key in _OPTIONAL:
        value = getattr(normalization, key)
        if value is not None:
            members[key] = np.asarray(value, np.float32)
    if normalization.module_pairs is not None:
        for key, attribute in _MODULE_PAIRS.items():
            members[key] = np.asarray(getattr(normalization.module_pairs, attribute))
    # mypy checks an unpacked dict against every keyword parameter, allow_pickle (bool) included.
    return write_atomically(
        Path(path),
        lambda handle: np.savez_compressed(handle, **members),  # type: ignore[arg-type]
    )


def read_normalization(
    path: str | os.PathLike[str], scanner: PetScanner | None = None
) -> Normalization:
    """Read a file written by :func:`write_normalization`, validated completely.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` normalisation file.
    scanner : PetScanner, optional
        The scanner the factors will be used with: it must have the crystals recorded in the
        file (same rings and crystals per ring; radius, ring spacing and crystal depth within
        0.1 %).

    Returns
    -------
    Normalization
        With the scanner recorded in the file.

    Raises
    ------
    InputError
        No such file, not a recon normalisation file, another format version, a truncated or
        corrupt archive, a member of the wrong type, shape or range, NaN or infinite values,
        zero efficiencies not listed as dead crystals, or a scanner with other crystals; the
        message names the file and the member.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such normalisation file")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a recon normalisation file (an .npz archive)")
    archive = load_npz(path, "normalisation file")
    keys = set(archive)
    missing = [key for key in _REQUIRED if key not in keys]
    if missing:
        raise InputError(f"{path}: missing members {missing}; not a recon normalisation file")
    unknown = sorted(keys - set(_REQUIRED) - set(_OPTIONAL) - set(_MODULE_PAIRS))
    if unknown:
        raise InputError(f"{path}: unknown members {unknown}; not a recon normalisation file")
    fmt = _text(archive, "format", path)
    version = _integer(archive, "version", path)
    if fmt != _FORMAT:
        raise InputError(f"{path}: format {fmt!r} is not {_FORMAT!r}")
    if version != _VERSION:
        raise InputError(
            f"{path}: normalisation file version {version}; this recon reads version {_VERSION}"
        )
    file_scanner = _scanner(archive, path)
    info = _json_object(archive, "info", path)
    components: dict[str, Any] = {
        "crystal_efficiency": _floats(archive, "crystal_efficiency", path),
        "max_ring_difference": _integer(archive, "max_ring_difference", path),
    }
    for key in _OPTIONAL:
        if key in keys:
            components[key] = _floats(archive, key, path)
    present = [key for key in _MODULE_PAIRS if key in keys]
    if present and len(present) != len(_MODULE_PAIRS):
        raise InputError(
            f"{path}: module-pair members must come together ({sorted(_MODULE_PAIRS)}); found "
            f"only {present}"
        )
    try:
        if present:
            arrays = {}
            for key, attribute in _MODULE_PAIRS.items():
                kind = "f" if key == "module_group_values" else "iu"
                arrays[attribute] = _typed(archive, key, path, kind)
            components["module_pairs"] = ModulePairFactors(**arrays)
        normalization = Normalization(file_scanner, info=info, **components)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    _check_dead_crystals(normalization, info, path)
    if scanner is not None:
        check_same_scanner(file_scanner, scanner, f"normalisation file {path}")
    return normalization


# ---------------------------------------------------------------------------------- members
def _text(archive: dict[str, np.ndarray], key: str, path: Path) -> str:
    value = archive[key]
    if value.ndim != 0 or value.dtype.kind != "U":
        raise InputError(f"{path}: member {key!r} must be a text scalar, got {value.dtype} of "
                         f"shape {value.shape}")  # fmt: skip
    return str(value)


def _integer(archive: dict[str, np.ndarray], key: str, path: Path) -> int:
    value = archive[key]
    if value.ndim != 0 or value.dtype.kind not in "iu":
        raise InputError(f"{path}: member {key!r} must be an integer scalar")
    return int(value)


def _typed(archive: dict[str, np.ndarray], key: str, path: Path, kinds: str) -> np.ndarray:
    value = archive[key]
    if value.dtype.kind not in kinds:
        wanted = "floating-point" if kinds == "f" else "integer"
        raise InputError(f"{path}: member {key!r} must be {wanted}, got {value.dtype}")
    return value


def _floats(archive: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    value = _typed(archive, key, path, "f")
    if not np.all(np.isfinite(value)):
        raise InputError(f"{path}: member {key!r} holds NaN or infinite values")
    return value


def _json_object(archive: dict[str, np.ndarray], key: str, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(_text(archive, key, path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: member {key!r} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: member {key!r} must be a JSON object")
    return value


def _scanner(archive: dict[str, np.ndarray], path: Path) -> PetScanner:
    fields = _json_object(archive, "scanner", path)
    try:
        return PetScanner.from_dict(fields, where=f"{path}: scanner")
    except ReconError as exc:
        raise InputError(str(exc)) from None


def _check_dead_crystals(normalization: Normalization, info: dict[str, Any], path: Path) -> None:
    """Zero efficiencies only where the file says the crystal is dead."""
    dead = info.get("dead_crystals", [])
    if not isinstance(dead, list) or not all(isinstance(i, int) for i in dead):
        raise InputError(f"{path}: info['dead_crystals'] must be a list of crystal ids")
    zero = set(np.flatnonzero(normalization.crystal_efficiency.reshape(-1) == 0).tolist())
    if zero != set(dead):
        unlisted = sorted(zero - set(dead))
        listed = sorted(set(dead) - zero)
        raise InputError(
            f"{path}: crystal efficiencies must be positive except for the dead crystals listed "
            f"in info; zero but not listed: {unlisted[:5]}, listed but not zero: {listed[:5]}"
        )
