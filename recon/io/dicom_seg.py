"""DICOM Segmentation objects (SEG) read as VOIs on an image grid.

A Segmentation Storage object (SOP Class 1.2.840.10008.5.1.4.1.1.66.4; DICOM PS3.3 C.8.20, the
Segmentation Image module, and C.7.6.16, the Multi-frame Functional Groups) stores one binary
(1 bit per pixel) or fractional frame per segment and plane:

- Segment Sequence (0062,0002) lists the segments: Segment Number (0062,0004) and Segment Label
  (0062,0005), which becomes the VOI name (repeated labels get ``_2``, ``_3``, ...).
- Each frame's Segment Identification Sequence (0062,000A) names its segment by Referenced Segment
  Number (0062,000B); Plane Position Sequence (0020,9113) gives Image Position (Patient), the world
  (LPS) centre of the frame's first pixel; Plane Orientation Sequence (0020,9116) and Pixel
  Measures Sequence (0028,9110) give the orientation and spacing. Each may sit in the frame's
  Per-frame Functional Groups item or in the Shared Functional Groups (per-frame wins).
- Image Orientation (Patient) holds the row direction (towards increasing column index) then the
  column direction (towards increasing row index); Pixel Spacing is (between rows, between
  columns).

Each segment is placed on the grid by nearest neighbour in world coordinates: a grid voxel centre
belongs to the segment when the nearest of the segment's frame planes (sorted along the slice
normal) is within half the slice spacing, its in-plane position rounds to a pixel inside the frame,
and that pixel is set (for FRACTIONAL, at least half the Maximum Fractional Value).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence as _SequenceABC
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.io._dicom import load_dataset
from recon.io._dicom import tag_label as _tag
from recon.io._dicom import tag_value as _value
from recon.io._guard import malformed_input_is_input_error
from recon.voi import Voi

__all__ = ["SEGMENTATION_STORAGE", "read_seg_vois"]

log = logging.getLogger("recon")

#: SOP Class UID of Segmentation Storage.
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

# Orientation vectors must be unit length and perpendicular within this (DICOM stores them as
# decimal strings of limited precision).
_ORTHONORMAL_TOL = 1e-3
# Slack (relative to the slice spacing) on "within half a slice of the plane", so a voxel centre
# exactly half-way that rounding puts a hair outside is still taken.
_PLANE_SLACK = 1e-6
# Decimal places to which plane positions along the normal are merged (frames at one plane).
_PLANE_DECIMALS = 4


def _load(path_or_dataset: Any) -> tuple[Dataset, str]:
    return load_dataset(path_or_dataset, "DICOM SEG file")


def _check_sop(ds: Dataset, source: str) -> None:
    sop = _value(ds, "SOPClassUID")
    file_meta = getattr(ds, "file_meta", None)
    if sop is None and file_meta is not None:
        sop = _value(file_meta, "MediaStorageSOPClassUID")
    if sop is None:
        raise InputError(
            f"{source}: {_tag('SOPClassUID')} is missing; expected Segmentation Storage "
            f"({SEGMENTATION_STORAGE})"
        )
    if str(sop) != SEGMENTATION_STORAGE:
        raise InputError(
            f"{source}: {_tag('SOPClassUID')} is {sop} ({pydicom.uid.UID(str(sop)).name}), not "
            f"Segmentation Storage ({SEGMENTATION_STORAGE}); this is not a DICOM SEG"
        )
    modality = _value(ds, "Modality")
    if modality is not None and str(modality).strip() != "SEG":
        raise InputError(f"{source}: {_tag('Modality')} is {modality!r}, not 'SEG'")


def _positive_int(ds: Dataset, keyword: str, source: str, default: int | None = None) -> int:
    value = _value(ds, keyword)
    if value is None:
        if default is not None:
            return default
        raise InputError(f"{source}: {_tag(keyword)} is missing")
    number = float(value)
    if not math.isfinite(number) or number != int(number) or number < 1:
        raise InputError(f"{source}: {_tag(keyword)} must be a positive integer, got {value!r}")
    return int(number)


def _floats(item: Dataset, keyword: str, n: int, where: str) -> np.ndarray:
    value = _value(item, keyword)
    if value is None:
        raise InputError(f"{where}: {_tag(keyword)} is missing")
    is_seq = isinstance(value, (list, tuple, _SequenceABC)) and not isinstance(value, str)
    values = value if is_seq else [value]
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: {_tag(keyword)} must hold numbers, got {value!r}") from None
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise InputError(f"{where}: {_tag(keyword)} must hold {n} finite numbers, got {value!r}")
    return out


def _group(frame_item: Dataset | None, shared: Dataset | None, keyword: str) -> Dataset | None:
    """The first item of a functional group macro, per-frame first, then shared."""
    for holder in (frame_item, shared):
        if holder is None:
            continue
        seq = _value(holder, keyword)
        if seq is not None:
            return seq[0]
    return None


def _segments(ds: Dataset, source: str) -> dict[int, str]:
    """Segment number -> unique VOI name, in Segment Sequence order."""
    items = _value(ds, "SegmentSequence")
    if items is None:
        raise InputError(f"{source}: {_tag('SegmentSequence')} is missing or empty")
    out: dict[int, str] = {}
    used: set[str] = set()
    for n, item in enumerate(items):
        where = f"{source}: {_tag('SegmentSequence')} item {n + 1}"
        number = _positive_int(item, "SegmentNumber", where)
        if number in out:
            raise InputError(f"{where}: {_tag('SegmentNumber')} {number} is repeated")
        label = _value(item, "SegmentLabel")
        base = str(label).strip() if label is not None else f"segment_{number}"
        name, k = base, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        out[number] = name
    return out


def _frames(ds: Dataset, source: str, n_frames: int, rows: int, cols: int) -> np.ndarray:
    """The pixel data as a bool array (frames, rows, cols)."""
    seg_type = str(_value(ds, "SegmentationType") or "").strip().upper()
    if not seg_type:
        raise InputError(f"{source}: {_tag('SegmentationType')} is missing")
    if seg_type not in ("BINARY", "FRACTIONAL"):
        raise InputError(
            f"{source}: {_tag('SegmentationType')} {seg_type!r} is not supported; "
            "expected BINARY or FRACTIONAL"
        )
    if "PixelData" not in ds:
        raise InputError(f"{source}: {_tag('PixelData')} is missing")
    bits = _positive_int(ds, "BitsAllocated", source)
    file_meta = getattr(ds, "file_meta", None)
    syntax = _value(file_meta, "TransferSyntaxUID") if file_meta is not None else None
    compressed = syntax is not None and pydicom.uid.UID(str(syntax)).is_compressed
    if not compressed:
        expected = math.ceil(n_frames * rows * cols * bits / 8)
        have = len(ds.PixelData)
        if have < expected:
            raise InputError(
                f"{source}: {_tag('PixelData')} holds {have} bytes but {n_frames} frames of "
                f"{rows}×{cols} pixels at {bits} bit(s) need {expected}; the file is truncated"
            )
    pixels = np.asarray(ds.pixel_array).reshape(n_frames, rows, cols)
    if seg_type == "BINARY":
        return pixels != 0
    max_value = _value(ds, "MaximumFractionalValue")
    if max_value is None:
        raise InputError(f"{source}: FRACTIONAL SEG without {_tag('MaximumFractionalValue')}")
    max_value = float(max_value)
    if not math.isfinite(max_value) or max_value <= 0:
        raise InputError(f"{source}: {_tag('MaximumFractionalValue')} must be > 0")
    return pixels.astype(np.float64) >= 0.5 * max_value


def _orientation(iop: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    row, col = iop[:3], iop[3:]
    if (
        abs(np.linalg.norm(row) - 1) > _ORTHONORMAL_TOL
        or abs(np.linalg.norm(col) - 1) > _ORTHONORMAL_TOL
        or abs(float(row @ col)) > _ORTHONORMAL_TOL
    ):
        raise GeometryError(
            f"{where}: {_tag('ImageOrientationPatient')} {iop.tolist()} is not two orthonormal "
            "direction cosines"
        )
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _frame_geometry(ds: Dataset, source: str, n_frames: int) -> list[dict[str, Any]]:
    """Per frame: segment number, position, row/column directions, spacings."""
    per_frame = _value(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame is None:
        raise InputError(f"{source}: {_tag('PerFrameFunctionalGroupsSequence')} is missing")
    if len(per_frame) != n_frames:
        raise InputError(
            f"{source}: {_tag('PerFrameFunctionalGroupsSequence')} has {len(per_frame)} items but "
            f"{_tag('NumberOfFrames')} is {n_frames}"
        )
    shared_seq = _value(ds, "SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq is not None else None
    out = []
    for f, item in enumerate(per_frame):
        where = f"{source}: frame {f + 1}"
        ident = _group(item, shared, "SegmentIdentificationSequence")
        if ident is None:
            raise InputError(f"{where}: {_tag('SegmentIdentificationSequence')} is missing")
        segment = _positive_int(ident, "ReferencedSegmentNumber", where)
        position = _group(item, shared, "PlanePositionSequence")
        if position is None:
            raise InputError(f"{where}: {_tag('PlanePositionSequence')} is missing")
        ipp = _floats(position, "ImagePositionPatient", 3, where)
        orientation = _group(item, shared, "PlaneOrientationSequence")
        if orientation is None:
            raise InputError(f"{where}: {_tag('PlaneOrientationSequence')} is missing")
        row, col = _orientation(_floats(orientation, "ImageOrientationPatient", 6, where), where)
        measures = _group(item, shared, "PixelMeasuresSequence")
        if measures is None:
            raise InputError(f"{where}: {_tag('PixelMeasuresSequence')} is missing")
        spacing = _floats(measures, "PixelSpacing", 2, where)
        if np.any(spacing <= 0):
            raise InputError(f"{where}: {_tag('PixelSpacing')} must be positive, got {spacing}")
        thickness = None
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            if _value(measures, keyword) is not None:
                thickness = float(_floats(measures, keyword, 1, where)[0])
                if thickness <= 0:
                    raise InputError(f"{where}: {_tag(keyword)} must be positive")
                break
        out.append(
            {
                "segment": segment,
                "ipp": ipp,
                "row": row,
                "col": col,
                "spacing": spacing,
                "thickness": thickness,
                "where": where,
            }
        )
    return out


def _place(
    frames: list[dict[str, Any]], indices: list[int], pixels: np.ndarray, points: np.ndarray
) -> np.ndarray:
    """Nearest-neighbour mask (flat, over ``points``) of frames sharing one orientation."""
    row_dir, col_dir = frames[indices[0]]["row"], frames[indices[0]]["col"]
    normal = np.cross(row_dir, col_dir)
    s_frame = np.array([frames[i]["ipp"] @ normal for i in indices])
    planes, plane_of = np.unique(np.round(s_frame, _PLANE_DECIMALS), return_inverse=True)
    thickness = frames[indices[0]]["thickness"]
    if thickness is None:
        if planes.size < 2:
            raise InputError(
                f"{frames[indices[0]]['where']}: neither {_tag('SpacingBetweenSlices')} nor "
                f"{_tag('SliceThickness')} is given, and one plane cannot define a spacing"
            )
        thickness = float(np.min(np.diff(planes)))
    n_rows, n_cols = pixels.shape[1:]
    s = points @ normal
    # Nearest plane of every point.
    k = np.clip(np.searchsorted(planes, s), 1, max(planes.size - 1, 1))
    if planes.size == 1:
        nearest = np.zeros(s.shape, dtype=np.int64)
    else:
        nearest = np.where(np.abs(s - planes[k - 1]) <= np.abs(s - planes[k]), k - 1, k)
    close = np.abs(s - planes[nearest]) <= thickness / 2 * (1 + _PLANE_SLACK) + 1e-9
    out = np.zeros(s.shape, dtype=bool)
    cand = np.flatnonzero(close)
    if cand.size == 0:
        return out
    cand_plane = nearest[cand]
    # Frames at the same plane are OR-ed: handle them in layers of one frame per plane.
    by_plane: list[list[int]] = [[] for _ in range(planes.size)]
    for i, p in zip(indices, plane_of, strict=True):
        by_plane[p].append(i)
    all_ipp = np.stack([f["ipp"] for f in frames])
    all_spacing = np.stack([f["spacing"] for f in frames])
    for layer in range(max(len(v) for v in by_plane)):
        frame_of_plane = np.array([v[layer] if layer < len(v) else -1 for v in by_plane])
        fr = frame_of_plane[cand_plane]
        ok = fr >= 0
        pts, fr, idx = points[cand[ok]], fr[ok], cand[ok]
        spacing = all_spacing[fr]
        d = pts - all_ipp[fr]
        r = np.rint((d @ col_dir) / spacing[:, 0]).astype(np.int64)
        c = np.rint((d @ row_dir) / spacing[:, 1]).astype(np.int64)
        inside = (r >= 0) & (r < n_rows) & (c >= 0) & (c < n_cols)
        out[idx[inside]] |= pixels[fr[inside], r[inside], c[inside]]
    return out


@malformed_input_is_input_error("DICOM SEG")
def read_seg_vois(path_or_dataset: Any, grid: ImageGrid) -> dict[str, Voi]:
    """Read the segments of a DICOM SEG onto ``grid`` as VOIs.

    Parameters
    ----------
    path_or_dataset : path-like or pydicom.Dataset
        A Segmentation Storage object, BINARY or FRACTIONAL (a fractional pixel is inside when it
        is at least half the Maximum Fractional Value (0062,000E)).
    grid : ImageGrid
        Grid to put the VOIs on; the SEG's frames may have any other spacing, position or
        orientation in the same (LPS) frame of reference.

    Returns
    -------
    dict of str to Voi
        By VOI name (the Segment Label; repeated labels get ``_2``, ``_3``, ...), in Segment
        Sequence order. Segments with no set pixel in the file are left out with a warning.

    Raises
    ------
    InputError
        Not a SEG, an unsupported Segmentation Type, truncated pixel data, missing geometry or
        segment tags (named in the message), frames naming an unknown segment, or a malformed
        file.
    GeometryError
        An orientation that is not orthonormal, or a segment none of whose voxels falls on
        ``grid`` (drawn on another study or frame of reference).
    """
    if not isinstance(grid, ImageGrid):
        raise InputError(f"grid must be a recon.ImageGrid, got {type(grid).__name__}")
    ds, source = _load(path_or_dataset)
    _check_sop(ds, source)
    segments = _segments(ds, source)
    n_frames = _positive_int(ds, "NumberOfFrames", source, default=1)
    rows = _positive_int(ds, "Rows", source)
    cols = _positive_int(ds, "Columns", source)
    frames = _frame_geometry(ds, source, n_frames)
    pixels = _frames(ds, source, n_frames, rows, cols)

    unknown = sorted({f["segment"] for f in frames} - set(segments))
    if unknown:
        raise InputError(
            f"{source}: frames reference segment number(s) {unknown} that "
            f"{_tag('SegmentSequence')} does not define"
        )
    z, y, x = grid.meshgrid_mm()
    points = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=-1)
    out: dict[str, Voi] = {}
    for number, name in segments.items():
        mine = [i for i, f in enumerate(frames) if f["segment"] == number]
        if not mine or not pixels[mine].any():
            log.warning("DICOM SEG %s: segment %d (%r) is empty; skipped", source, number, name)
            continue
        # Group this segment's frames by orientation; each group has its own slice normal.
        groups: dict[tuple[float, ...], list[int]] = {}
        for i in mine:
            key = tuple(np.round(np.concatenate([frames[i]["row"], frames[i]["col"]]), 4))
            groups.setdefault(key, []).append(i)
        mask = np.zeros(points.shape[0], dtype=bool)
        for indices in groups.values():
            mask |= _place(frames, indices, pixels, points)
        if not mask.any():
            raise GeometryError(
                f"{source}: segment {number} ({name!r}) does not overlap the image grid; was the "
                "SEG drawn on this study?"
            )
        out[name] = Voi(mask.reshape(grid.shape), grid, name)
    if not out:
        raise InputError(f"{source}: every segment of the SEG is empty")
    return out
