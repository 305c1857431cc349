"""Interfile PET sinograms in STIR's projection-data layout, both ways.


PET sinograms (``.hs`` + ``.s``; ``!type of data := PET``, ``matrix axis label [4] := segment``)
    STIR's projection-data layout: segments in the order the header lists them (``minimum/maximum
    ring difference per segment``, ``!matrix size [2|3] := {axial positions per segment}``), each
    stored view by view (``[3] := view``, ``[2] := axial coordinate``, STIR's default "viewgram"
    order) or sinogram by sinogram (``[3] := axial coordinate``, ``[2] := view``). The reader
    returns every sinogram as an array ``(plane, view, tangential)`` (DESIGN.md §3 axis order),
    planes segment after segment in file order, with a description of the segments and the
    scanner. Which line of response each bin holds (STIR's view/tangential/segment conventions,
    arc correction, span) is :mod:`recon.io.stir_geometry`'s job: it gives every bin's LOR in
    recon's world frame for :class:`recon.PetLorSinogramModel`, and moves span-1 data that are not
    arc-corrected into a :class:`recon.SinogramLayout`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from recon.errors import InputError
from recon.io.interfile.data_file import _read_data
from recon.io.interfile.header import (
    FileFormatError,
    InterfileHeader,
    _float,
    _int,
    _kind,
    _read_header,
    _scalar_text,
    _split_list,
    _to_int,
    _word,
)
from recon.io.interfile.writing import (
    _float32_le,
    _fmt,
    _output_paths,
    _sources,
    _write_pair_atomically,
)
from recon.pet.scanner import PetScanner

__all__ = ["PetSinogram", "read_interfile_sinogram"]


class PetSinogram(NamedTuple):
    """A PET sinogram in STIR's layout: ``data, description = read_interfile(p)``.

    Attributes
    ----------
    data : float32 ndarray of shape (plane, view, tangential)
        All sinograms, segment after segment in the order of ``description["segments"]``, axial
        positions increasing inside a segment.
    description : dict
        ``segments`` (list of dicts: ``min_ring_difference``, ``max_ring_difference``,
        ``n_axial``, ``first_plane``, ``segment_number``), ``storage_order`` (``"view"`` or
        ``"sinogram"``), ``n_views``, ``n_tangential``, ``span1`` (every segment one ring
        difference), ``plane_rings`` (span 1 only: STIR ``(ring1, ring2)`` of each plane, else
        None), ``arc_corrected``, ``bin_size_mm``, ``scanner`` (values in mm), ``scanner_keys``
        (the scanner block as written), ``pet_scanner`` (a :class:`~recon.PetScanner` when the
        header describes one, else None), ``layout`` (always None: bins are mapped by
        :mod:`recon.io.stir_geometry`), ``axes``, ``header`` and paths.
    """

    data: np.ndarray
    description: dict


def read_interfile_sinogram(path: str | os.PathLike[str]) -> PetSinogram:
    """Read a PET sinogram in STIR's projection-data layout (module docstring).

    Parameters
    ----------
    path : path-like
        The sinogram header (``.hs``); its data file must lie in the same folder.

    Returns
    -------
    PetSinogram
        ``data`` float32 ``(plane, view, tangential)``, segment after segment, and its
        ``description`` (segments, storage order, scanner in mm, frame timing in s).

    Raises
    ------
    FileFormatError
        The file holds something else; a key is missing, malformed or contradicts another
        (segments, ring differences, axial positions); the data file is missing or too small.
    """
    h = _read_header(path)
    if _kind(h) != "sinogram":
        raise FileFormatError(f"{h._where()} does not hold a PET sinogram ({_kind(h)})")
    return _read_sinogram(h, Path(path))


def _read_sinogram(h: InterfileHeader, path: Path) -> PetSinogram:
    where = h._where()
    dims = _int(h, "number of dimensions", required=False, default=4)
    labels = {i: _word(h, f"matrix axis label [{i}]") for i in range(1, 6)}
    if dims != 4 or labels[5] is not None:
        raise FileFormatError(
            f"{where}: only non-TOF sinograms with 4 dimensions (segment, view, axial coordinate, "
            f"tangential coordinate) are supported, got number of dimensions := {dims}"
        )
    if labels[4] != "segment" or labels[1] != "tangential coordinate":
        raise FileFormatError(
            f"{where}: expected 'matrix axis label [4] := segment' and 'matrix axis label [1] := "
            f"tangential coordinate', got {labels[4]!r} and {labels[1]!r}"
        )
    if (labels[3], labels[2]) == ("view", "axial coordinate"):
        order, view_index, axial_index = "view", 3, 2
    elif (labels[3], labels[2]) == ("axial coordinate", "view"):
        order, view_index, axial_index = "sinogram", 2, 3
    else:
        raise FileFormatError(
            f"{where}: 'matrix axis label [3]'/'[2]' must be view/axial coordinate (STIR's "
            f"default) or axial coordinate/view, got {labels[3]!r}/{labels[2]!r}"
        )
    n_segments = _int(h, "matrix size [4]", hint=" (number of segments)")
    n_views = _int(h, f"matrix size [{view_index}]", hint=" (views)")
    n_tang = _int(h, "matrix size [1]", hint=" (tangential positions)")
    axial_key = f"matrix size [{axial_index}]"
    lo_key = "minimum ring difference per segment"
    hi_key = "maximum ring difference per segment"
    per_segment: dict[str, list[str]] = {}
    for key in (axial_key, lo_key, hi_key):
        text = h.get(key)
        if text is None:
            raise FileFormatError(
                f"{where}: required key '{key}' (one value per segment) is missing"
            )
        per_segment[key] = _split_list(text, key, where)
        if len(per_segment[key]) != n_segments:
            raise FileFormatError(
                f"{where}: '{key}' needs one value per segment ({n_segments}), got '{text}'"
            )
    n_axial = [_to_int(v, "axial positions", where) for v in per_segment[axial_key]]
    lo = [_to_int(v, "minimum ring difference", where) for v in per_segment[lo_key]]
    hi = [_to_int(v, "maximum ring difference", where) for v in per_segment[hi_key]]
    if min(n_axial) < 1 or any(a > b for a, b in zip(lo, hi, strict=True)):
        raise FileFormatError(
            f"{where}: every segment needs at least one axial position and minimum ring "
            f"difference ≤ maximum (got {n_axial}, {lo}, {hi})"
        )
    sums = [a + b for a, b in zip(lo, hi, strict=True)]
    if sums.count(0) != 1 or len(set(sums)) != n_segments:
        raise FileFormatError(
            f"{where}: the segments' ring differences must be distinct and include exactly one "
            f"segment 0 (minimum {lo}, maximum {hi})"
        )
    n_rings = _int(h, "number of rings", required=False)
    span1 = all(a == b for a, b in zip(lo, hi, strict=True))
    if n_rings is not None:
        for a, b, n in zip(lo, hi, n_axial, strict=True):
            limit = n_rings - abs(a) if a == b else 2 * n_rings - 1
            if max(abs(a), abs(b)) >= n_rings or (a == b and n != limit) or n > limit:
                raise FileFormatError(
                    f"{where}: a segment with ring differences {a}..{b} of a {n_rings}-ring "
                    f"scanner cannot have {n} axial positions"
                    + (f" (span 1: {limit})" if a == b else f" (at most {limit})")
                )
    scanner, scanner_keys = _scanner_block(h)
    shape = (sum(n_axial) * n_views * n_tang,)
    raw, info = _read_data(h, path, shape)

    planes, first = [], 0
    segments = []
    ordered = sorted(range(n_segments), key=lambda i: sums[i])
    zero = ordered.index(sums.index(0))
    for i in range(n_segments):
        count = n_axial[i] * n_views * n_tang
        block = raw[first : first + count]
        if order == "view":
            block = block.reshape(n_views, n_axial[i], n_tang).transpose(1, 0, 2)
        else:
            block = block.reshape(n_axial[i], n_views, n_tang)
        segments.append(
            {
                "segment_number": ordered.index(i) - zero,
                "min_ring_difference": lo[i],
                "max_ring_difference": hi[i],
                "n_axial": n_axial[i],
                "first_plane": sum(n_axial[:i]),
            }
        )
        planes.append(block)
        first += count
    data = np.ascontiguousarray(np.concatenate(planes, axis=0))
    plane_rings = None
    if span1:
        rows = []
        for seg in segments:
            delta = seg["min_ring_difference"]
            for axial in range(seg["n_axial"]):
                ring1 = axial + max(0, -delta)
                rows.append((ring1, ring1 + delta))
        plane_rings = np.asarray(rows, dtype=np.int32).reshape(-1, 2)
    corrections = [
        c.lower() for c in _split_list(h.get("applied corrections", "") or "", "", where)
    ]
    bin_cm = _float(h, "effective central bin size (cm)", required=False, positive=True)
    frame_start, frame_duration = _frame_timing(h)
    description = {
        "kind": "pet_sinogram",
        "axes": ("plane", "view", "tangential"),
        "storage_order": order,
        "segments": segments,
        "n_views": n_views,
        "n_tangential": n_tang,
        "span1": span1,
        "plane_rings": plane_rings,
        "arc_corrected": any("arc correction" in c for c in corrections),
        "applied_corrections": corrections,
        "bin_size_mm": None if bin_cm is None else bin_cm * 10.0,
        "pet_data_type": h.get("pet data type"),
        "frame_start_s": frame_start,
        "frame_duration_s": frame_duration,
        "originating_system": h.get("originating system"),
        "scanner": scanner,
        "scanner_keys": scanner_keys,
        "pet_scanner": _pet_scanner(scanner),
        "layout": None,
        "header_path": str(path.resolve()),
        "header": h.as_dict(),
        **info,
    }
    return PetSinogram(data, description)


def _frame_timing(h: InterfileHeader) -> tuple[float | None, float | None]:
    """STIR's time frame of projection data: ``image relative start time (sec)[1]`` and
    ``image duration (sec)[1]`` (None when the header does not say)."""
    frames = _int(h, "number of time frames", required=False, default=1, minimum=0)
    if frames > 1:
        raise FileFormatError(
            f"{h._where()}: {frames} time frames; only single-frame sinograms are read"
        )
    values = []
    for key in ("image relative start time (sec)", "image duration (sec)"):
        found = {k: _float(h, k, required=False) for k in (f"{key} [1]", key) if _scalar_text(h, k)}
        if len(set(found.values())) > 1:
            raise FileFormatError(f"{h._where()}: contradictory values {found}; keep one key")
        values.append(next(iter(found.values()), None))
    start, duration = values
    if duration is not None and not duration > 0:
        raise FileFormatError(f"{h._where()}: 'image duration (sec)' must be positive")
    if start is not None and not math.isfinite(start):
        raise FileFormatError(f"{h._where()}: 'image relative start time (sec)' must be finite")
    return start, duration


_SCANNER_KEYS = {
    "scanner type": ("type", None),
    "number of rings": ("n_rings", None),
    "number of detectors per ring": ("detectors_per_ring", None),
    "inner ring diameter (cm)": ("inner_ring_diameter_mm", 10.0),
    "average depth of interaction (cm)": ("average_depth_of_interaction_mm", 10.0),
    "distance between rings (cm)": ("ring_spacing_mm", 10.0),
    "default bin size (cm)": ("default_bin_size_mm", 10.0),
    "view offset (degrees)": ("view_offset_deg", 1.0),
}


def _scanner_block(h: InterfileHeader) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Scanner description in mm, and the raw lines between 'scanner parameters' and its end."""
    where = h._where()
    scanner: dict[str, Any] = {}
    for key, (name, scale) in _SCANNER_KEYS.items():
        if scale is None:
            if name == "type":
                scanner[name] = h.get(key)
            else:
                scanner[name] = _int(h, key, required=False)
        else:
            value = _float(h, key, required=False)
            scanner[name] = None if value is None else value * scale
    block: list[tuple[str, str]] = []
    inside = False
    for key, raw_key, text, _ in h.entries:
        if key == "scanner parameters":
            inside = True
            continue
        if key == "end scanner parameters":
            inside = False
            continue
        if inside:
            block.append((raw_key, text))
    for name in ("inner_ring_diameter_mm", "ring_spacing_mm"):
        if scanner[name] is not None and scanner[name] <= 0:
            raise FileFormatError(f"{where}: scanner '{name}' must be positive")
    return scanner, block


def _pet_scanner(scanner: dict[str, Any]) -> PetScanner | None:
    """A recon PetScanner when the header describes a cylindrical scanner (crystals at STIR's
    effective radius: inner radius + average depth of interaction)."""
    needed = ("n_rings", "detectors_per_ring", "inner_ring_diameter_mm", "ring_spacing_mm")
    if any(scanner.get(k) is None for k in needed) or scanner["detectors_per_ring"] % 2:
        return None
    depth = scanner.get("average_depth_of_interaction_mm") or 0.0
    if depth < 0:
        return None
    return PetScanner(
        n_rings=scanner["n_rings"],
        crystals_per_ring=scanner["detectors_per_ring"],
        radius_mm=scanner["inner_ring_diameter_mm"] / 2.0,
        ring_spacing_mm=scanner["ring_spacing_mm"],
        crystal_depth_mm=2.0 * depth,
        name=str(scanner.get("type") or "interfile"),
    )


def _write_sinogram(path: str | os.PathLike[str], sino: PetSinogram, data_name: str | None) -> Path:
    data_in, d = sino
    try:
        segments = list(d["segments"])
        n_views, n_tang = int(d["n_views"]), int(d["n_tangential"])
        order = d.get("storage_order", "view")
        n_axial = [int(s["n_axial"]) for s in segments]
        lo = [int(s["min_ring_difference"]) for s in segments]
        hi = [int(s["max_ring_difference"]) for s in segments]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"PetSinogram description is incomplete ({exc}); use read_interfile's"
        ) from None
    if order not in ("view", "sinogram"):
        raise InputError(f"storage_order must be 'view' or 'sinogram', got {order!r}")
    values = _float32_le(data_in, (sum(n_axial), n_views, n_tang), "sinogram data")
    blocks, first = [], 0
    for n in n_axial:
        block = values[first : first + n]
        blocks.append(block.transpose(1, 0, 2) if order == "view" else block)
        first += n
    header, data = _output_paths(path, data_name, ".s", _sources(d))
    labels = ("view", "axial coordinate") if order == "view" else ("axial coordinate", "view")
    sizes: tuple[int | str, int | str] = (n_views, "{ " + ",".join(map(str, n_axial)) + "}")
    if order == "sinogram":
        sizes = sizes[::-1]
    corrections = d.get("applied_corrections") or []
    lines = [
        "!INTERFILE  :=",
        "!imaging modality := PT",
        f"name of data file := {data.name}",
        f"originating system := {d.get('originating_system') or 'Unknown'}",
        "!version of keys := STIR4.0",
        "!GENERAL DATA :=",
        "!GENERAL IMAGE DATA :=",
        "!type of data := PET",
        "imagedata byte order := LITTLEENDIAN",
        "!PET STUDY (General) :=",
        f"!PET data type := {d.get('pet_data_type') or 'Emission'}",
        "applied corrections := {" + ", ".join(corrections) + "}",
        "!number format := float",
        "!number of bytes per pixel := 4",
        "number of dimensions := 4",
        "matrix axis label [4] := segment",
        f"!matrix size [4] := {len(segments)}",
        f"matrix axis label [3] := {labels[0]}",
        f"!matrix size [3] := {sizes[0]}",
        f"matrix axis label [2] := {labels[1]}",
        f"!matrix size [2] := {sizes[1]}",
        "matrix axis label [1] := tangential coordinate",
        f"!matrix size [1] := {n_tang}",
        "minimum ring difference per segment := {" + ",".join(map(str, lo)) + "}",
        "maximum ring difference per segment := {" + ",".join(map(str, hi)) + "}",
    ]
    scanner_keys = d.get("scanner_keys") or []
    if scanner_keys:
        lines.append("Scanner parameters:=")
        lines += [f"{k} := {v}" for k, v in scanner_keys]
        lines.append("end scanner parameters:=")
    if d.get("bin_size_mm"):
        lines.append(f"effective central bin size (cm) := {_fmt(float(d['bin_size_mm']) / 10.0)}")
    lines.append("number of time frames := 1")
    if d.get("frame_start_s") is not None:
        lines.append(f"image relative start time (sec)[1] := {_fmt(float(d['frame_start_s']))}")
    if d.get("frame_duration_s") is not None:
        lines.append(f"image duration (sec)[1] := {_fmt(float(d['frame_duration_s']))}")
    lines += [
        "data offset in bytes [1] := 0",
        "!END OF INTERFILE :=",
    ]

    def write_blocks(handle: IO[bytes]) -> None:
        for block in blocks:
            np.ascontiguousarray(block).tofile(handle)

    _write_pair_atomically(header, "\n".join(lines) + "\n", data, write_blocks)
    return header
