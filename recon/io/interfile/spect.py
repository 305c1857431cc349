"""Interfile SPECT projections: STIR's view order, angles and orbit keys, both ways.

SPECT projections (``.hs`` + ``.s``; ``!type of data := Tomographic``)
    The data file holds views one after the other, each ``!matrix size [2]`` rows of
    ``!matrix size [1]`` bins (STIR's Segment_View_AxialPos_TangPos order). Rows are flipped on
    reading so that ``v`` runs along +z (the first stored row is the head end, as in DICOM), bins
    already run along ``t(θ)``, and the view angles follow :func:`_stir_angles_to_design`. Keys:
    ``!number of projections``, ``!extent of rotation``, ``!direction of rotation := CW|CCW``,
    ``start angle`` (default 0, as in STIR), ``orbit := circular|non-circular`` with ``radius``
    or ``radii := {…}`` (mm, one per view), ``!scaling factor (mm/pixel) [1]/[2]``, and optionally
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from recon.errors import GeometryError, InputError
from recon.io.interfile.data_file import _read_data
from recon.io.interfile.header import (
    FileFormatError,
    InterfileHeader,
    _float,
    _int,
    _is_castor,
    _kind,
    _read_header,
    _split_list,
    _to_float,
    _word,
)
from recon.io.interfile.writing import (
    _float32_le,
    _fmt,
    _output_paths,
    _sources,
    _write_pair_atomically,
)
from recon.spect.geometry import SpectGeometry

__all__ = ["SpectProjections", "read_interfile_spect"]

_ANGLE_TOL_DEG = 1e-6


class SpectProjections(NamedTuple):
    """SPECT projections read from Interfile: ``counts, geometry, metadata = read_interfile(p)``.

    Attributes
    ----------
    counts : float32 ndarray of shape (view, v, u)
        Counts per bin (rows along +z, columns along t(θ); DESIGN.md §3).
    geometry : SpectGeometry
        View angles, radii, pixel size and per-view durations.
    metadata : dict
        The header (``"header"``), file paths, and the Interfile values the geometry came from.
    """

    counts: np.ndarray
    geometry: SpectGeometry
    metadata: dict


def _check_orientation(h: InterfileHeader, assume_hfs: bool) -> str:
    orientation = _word(h, "patient orientation", "head_in")
    rotation = _word(h, "patient rotation", "supine")
    position = f"{orientation}/{rotation}"
    if (orientation, rotation) != ("head_in", "supine") and not assume_hfs:
        raise GeometryError(
            f"{h._where()}: 'patient orientation := {orientation}', 'patient rotation := "
            f"{rotation}': only head-first supine maps onto patient (LPS) coordinates here; "
            "pass assume_hfs=True to read the data in scanner coordinates as if HFS"
        )
    return position


def _stir_angles_to_design(start_angle: float, direction: str, n: int, extent: float) -> np.ndarray:
    """View angles θ_k (DESIGN.md §3) of STIR's SPECT Interfile keys.

    STIR (``InterfilePDFSHeaderSPECT``) gives view ``k`` the azimuth
    ``φ_k = start angle + s·k·extent/n`` with ``s = −1`` for ``CW`` and ``+1`` for ``CCW``. Its
    SPECTUB projector puts the camera face at ``R·(−sin φ, cos φ)`` and counts bins along
    ``(cos φ, sin φ)`` in its internal frame, whose x is STIR's image x inverted (the x-flip
    fix of STIR issue #452 in ``SPECTUB_Weight3d``); STIR's image frame is (patient left,
    posterior, inferior) for a head-first supine patient. In LPS the camera therefore sits at
    ``(sin φ, cos φ)`` and bins run along ``(−cos φ, sin φ)``, which are ``d(θ)`` and ``t(θ)``
    for ``θ = 180° − φ``. That is DESIGN.md §3a's DICOM mapping: ``start angle`` is measured
    like DICOM Start Angle (0 at the patient's back, increasing counter-clockwise seen from the
    feet) and STIR's ``SPECT_dicom_to_interfile`` copies Start Angle, Rotation Direction
    (``CC`` written ``CCW``) and frames unchanged. So::

        θ_k = (180° − start) mod 360  −  s·k·extent/n       (unwrapped: monotonic in k)

    ``CW`` with ``start angle := 180`` starts with the camera anterior (θ = 0) and θ increases
    (clockwise seen from the feet). STIR before that fix had the opposite chirality, and its
    developers discuss changing it again (STIR PR #1631): data made for such a version would
    need θ = φ + 180° with bins reversed. Only this function encodes the mapping.

    Parameters
    ----------
    start_angle : float
        ``start angle`` in degrees.
    direction : {"CW", "CCW"}
        ``direction of rotation`` (case-insensitive).
    n : int
        ``number of projections``.
    extent : float
        ``extent of rotation`` in degrees, in (0, 360].

    Returns
    -------
    float64 ndarray of shape (n,)
        θ_k in degrees, θ_0 in [0, 360).

    Raises
    ------
    GeometryError
        Unknown direction, ``n < 1``, or an extent outside (0, 360] (which would repeat views).
    """
    sense = str(direction).strip().upper()
    if sense not in ("CW", "CCW"):
        raise GeometryError(f"'direction of rotation := {direction}' must be CW or CCW")
    if int(n) < 1:
        raise GeometryError(f"'number of projections' must be at least 1, got {n}")
    if not (math.isfinite(extent) and 0.0 < extent <= 360.0 + _ANGLE_TOL_DEG):
        raise GeometryError(
            f"'extent of rotation := {extent}' must lie in (0, 360] degrees: more than a turn "
            "repeats view angles, 0 gives them all the same angle"
        )
    if not math.isfinite(start_angle):
        raise GeometryError(f"'start angle := {start_angle}' must be finite")
    s = -1.0 if sense == "CW" else 1.0
    theta0 = (180.0 - float(start_angle)) % 360.0
    return theta0 - s * np.arange(int(n)) * (float(extent) / int(n))


def _design_angles_to_stir(angles_deg: np.ndarray) -> tuple[float, str, float]:
    """Inverse of :func:`_stir_angles_to_design`: ``(start angle, direction, extent)``.

    Raises
    ------
    GeometryError
        The angles are not equally spaced and monotonic over at most one turn (STIR's keys only
        describe ``start + k·step``).
    """
    a = np.asarray(angles_deg, dtype=np.float64)
    n = a.size
    if n == 1:
        return float((180.0 - a[0]) % 360.0), "CW", 360.0
    steps = np.diff(a)
    step = float(np.mean(steps))
    if step == 0.0 or np.any(np.abs(steps - step) > _ANGLE_TOL_DEG * max(1.0, abs(step))):
        raise GeometryError(
            "Interfile SPECT keys describe equally spaced views (start angle + k·extent/n): the "
            "geometry's angles are duplicated, non-monotonic or unevenly spaced "
            f"(steps from {steps.min():g} to {steps.max():g} degrees); resample the views"
        )
    extent = abs(step) * n
    if extent > 360.0 + _ANGLE_TOL_DEG:
        raise GeometryError(
            f"the views cover {extent:g} degrees, more than one turn: Interfile's extent of "
            "rotation must be at most 360"
        )
    start = (180.0 - a[0]) % 360.0
    if start > 360.0 - 1e-9:
        start = 0.0
    return float(start), ("CW" if step > 0 else "CCW"), float(min(extent, 360.0))


def read_interfile_spect(
    path: str | os.PathLike[str], *, assume_hfs: bool = False
) -> SpectProjections:
    """Read SPECT projections (module docstring: STIR's view order, angles and orbit keys).

    Parameters
    ----------
    path : path-like
        The projection header (``.hs``); its data file must lie in the same folder.
    assume_hfs : bool
        Read a patient position other than head-first supine as if it were HFS (scanner
        coordinates) instead of raising.

    Returns
    -------
    SpectProjections
        ``counts`` float32 ``(view, v, u)`` with rows along +z, the ``geometry`` (angles in
        degrees, radii and pixel sizes in mm, durations in s) and the ``metadata``.

    Raises
    ------
    FileFormatError
        The file holds something else, or a key is missing, malformed or contradictory.
    GeometryError
        Impossible angles (direction, extent), or a patient position other than head-first
        supine without ``assume_hfs``.
    """
    h = _read_header(path)
    if _kind(h) != "spect":
        raise FileFormatError(f"{h._where()} does not hold SPECT projections ({_kind(h)})")
    return _read_spect(h, Path(path), assume_hfs)


def _read_spect(h: InterfileHeader, path: Path, assume_hfs: bool) -> SpectProjections:
    where = h._where()
    if _is_castor(h):
        # CASToR measures projection angles in its own frame (iScannerSPECTConv: detector at +y
        # for angle 0), whose tie to the patient is not documented; guessing would mirror.
        raise FileFormatError(
            f"{where} holds SPECT projections written by CASToR, whose angle convention is not "
            "STIR's; convert them to DICOM NM or STIR Interfile with known start angle and "
            "direction first"
        )
    position = _check_orientation(h, assume_hfs)
    status = _word(h, "process status", "acquired")
    if status != "acquired":
        raise FileFormatError(
            f"{where}: '!process status := {status}': only acquired SPECT projections are read "
            "as projections (reconstructed data are images: number of dimensions := 3)"
        )
    dims = _int(h, "number of dimensions", required=False)
    if dims is not None and dims != 2:
        raise FileFormatError(f"{where}: 'number of dimensions := {dims}' must be 2 for SPECT")
    for index, expected in ((1, "bin coordinate"), (2, "axial coordinate")):
        label = _word(h, f"matrix axis label [{index}]")
        if label is not None and label != expected:
            raise FileFormatError(
                f"{where}: 'matrix axis label [{index}] := {label}' must be '{expected}'"
            )
    n_views = _int(h, "number of projections")
    n_u = _int(h, "matrix size [1]", hint=" (bins per row)")
    n_v = _int(h, "matrix size [2]", hint=" (rows)")
    pixel_u = _float(h, "scaling factor (mm/pixel) [1]", positive=True, hint=" (bin size, mm)")
    pixel_v = _float(h, "scaling factor (mm/pixel) [2]", positive=True, hint=" (row size, mm)")
    extent = _float(h, "extent of rotation", hint=" (degrees, e.g. 360)")
    direction = _word(h, "direction of rotation")
    if direction is None:
        raise FileFormatError(f"{where}: required key '!direction of rotation' (CW|CCW) is missing")
    start = _float(h, "start angle", required=False, default=0.0)
    step = _float(h, "angular step", required=False)
    if step is not None and abs(abs(step) - extent / n_views) > _ANGLE_TOL_DEG * max(
        1.0, abs(step)
    ):
        raise FileFormatError(
            f"{where}: 'angular step := {step}' contradicts 'extent of rotation := {extent}' over "
            f"{n_views} projections ({extent / n_views:g} per view); correct one of them"
        )
    first = _float(h, "first projection angle in data set", required=False)
    if first is not None and abs((first - start + 180.0) % 360.0 - 180.0) > _ANGLE_TOL_DEG:
        raise FileFormatError(
            f"{where}: 'first projection angle in data set := {first}' contradicts "
            f"'start angle := {start}'; correct one of them"
        )
    total_images = _int(h, "total number of images", required=False)
    if total_images is not None and total_images != n_views:
        raise FileFormatError(
            f"{where}: 'total number of images := {total_images}' contradicts "
            f"'number of projections := {n_views}'"
        )
    radii_text, orbit = _radii_text(h, n_views)

    # Everything below allocates per view or per bin: the data file size is checked first.
    raw, info = _read_data(h, path, (n_views, n_v, n_u))
    radii = [_to_float(r, "radii", where) for r in radii_text]
    if len(radii) == 1:
        radii = radii * n_views
    durations = _durations(h, n_views)
    angles = _stir_angles_to_design(start, direction, n_views, extent)
    geometry = SpectGeometry(
        angles_deg=angles,
        radii_mm=np.asarray(radii, dtype=np.float64),
        n_u=n_u,
        n_v=n_v,
        pixel_size_mm=(pixel_v, pixel_u),
        durations_s=durations,
        cor_offset_mm=_float(
            h, "recon centre of rotation offset (mm)", required=False, default=0.0
        ),
        axial_offset_mm=_float(h, "recon axial offset (mm)", required=False, default=0.0),
    )
    counts = np.ascontiguousarray(raw[:, ::-1, :])  # first stored row = head end: v along +z
    metadata = {
        "kind": "spect",
        "header_path": str(path.resolve()),
        "header": h.as_dict(),
        "start_angle_deg": start,
        "direction_of_rotation": direction.upper(),
        "extent_of_rotation_deg": extent,
        "orbit": orbit,
        "patient_position": position,
        "isotope": h.get("isotope name"),
        **info,
    }
    return SpectProjections(counts, geometry, metadata)


def _radii_text(h: InterfileHeader, n_views: int) -> tuple[list[str], str]:
    """Per-view radius strings (one value for a circular orbit) and the orbit name."""
    where = h._where()
    orbit = _word(h, "orbit", "circular")
    radius, radii = h.get("radius"), h.get("radii")
    if orbit not in ("circular", "non-circular"):
        raise FileFormatError(f"{where}: 'orbit := {orbit}' must be circular or non-circular")
    if radius is not None and radii is not None:
        raise FileFormatError(
            f"{where}: both 'radius' and 'radii' are given; keep 'radius' for a circular orbit "
            "or 'radii := {...}' for a non-circular one"
        )
    text = radii if radii is not None else radius
    if text is None:
        key = "radius" if orbit == "circular" else "radii"
        raise FileFormatError(f"{where}: required key '{key}' (mm) is missing for orbit {orbit}")
    values = _split_list(text, "radii" if radii is not None else "radius", where)
    if orbit == "circular" and len(values) not in (1, n_views):
        raise FileFormatError(
            f"{where}: a circular orbit needs one radius, got {len(values)} values"
        )
    if orbit == "non-circular" and len(values) != n_views:
        raise FileFormatError(
            f"{where}: 'radii' has {len(values)} values but 'number of projections' is "
            f"{n_views}; give one radius per view"
        )
    for value in values:
        if _to_float(value, "radii", where) <= 0:
            raise FileFormatError(f"{where}: radii must be positive (mm), got {value}")
    return values, orbit


def _durations(h: InterfileHeader, n_views: int) -> np.ndarray:
    where = h._where()
    per_view = _float(h, "time per projection (sec)", required=False, positive=True)
    frames = _int(h, "number of time frames", required=False, minimum=0)
    total = None
    if frames in (None, 0, 1):
        for key in ("image duration (sec) [1]", "image duration (sec)"):
            value = _float(h, key, required=False, positive=True)
            if value is not None:
                if total is not None and value != total:
                    raise FileFormatError(f"{where}: contradictory image durations")
                total = value
    if per_view is not None and total is not None:
        if abs(per_view * n_views - total) > 1e-3 * total:
            raise FileFormatError(
                f"{where}: 'time per projection (sec) := {per_view}' × {n_views} views "
                f"contradicts 'image duration (sec) := {total}'; correct one of them"
            )
    if per_view is None:
        per_view = 1.0 if total is None else total / n_views
    return np.full(n_views, per_view)


def _write_spect(
    path: str | os.PathLike[str],
    counts: Any,
    geometry: SpectGeometry,
    metadata: dict,
    data_name: str | None,
) -> Path:
    if not isinstance(geometry, SpectGeometry):
        raise InputError("SPECT projections need a SpectGeometry")
    raw = _float32_le(counts, geometry.projection_shape, "SPECT counts")[:, ::-1, :]
    start, direction, extent = _design_angles_to_stir(geometry.angles_deg)
    header, data = _output_paths(path, data_name, ".s", _sources(metadata))
    pixel_v, pixel_u = geometry.pixel_size_mm
    radii = geometry.radii_mm
    lines = [
        "!INTERFILE  :=",
        "!imaging modality := nucmed",
        "!version of keys := 3.3",
        f"name of data file := {data.name}",
        "data offset in bytes := 0",
        "!GENERAL DATA :=",
        "!GENERAL IMAGE DATA :=",
        "!type of data := Tomographic",
        "imagedata byte order := LITTLEENDIAN",
        "!number format := float",
        "!number of bytes per pixel := 4",
    ]
    if metadata.get("isotope"):
        lines.append(f"isotope name := {metadata['isotope']}")
    lines += [
        "patient orientation := head_in",
        "patient rotation := supine",
        "!SPECT STUDY (General) :=",
        "number of dimensions := 2",
        "matrix axis label [2] := axial coordinate",
        f"!matrix size [2] := {geometry.n_v}",
        f"!scaling factor (mm/pixel) [2] := {_fmt(pixel_v)}",
        "matrix axis label [1] := bin coordinate",
        f"!matrix size [1] := {geometry.n_u}",
        f"!scaling factor (mm/pixel) [1] := {_fmt(pixel_u)}",
        f"!number of projections := {geometry.n_views}",
        # CASToR reads this many projections (its default is 1); STIR takes it as information.
        f"!total number of images := {geometry.n_views}",
        f"!extent of rotation := {_fmt(extent)}",
    ]
    durations = geometry.durations_s
    if np.all(durations == durations[0]):
        total = float(np.sum(durations))
        lines += [
            f"!time per projection (sec) := {_fmt(durations[0])}",
            "number of time frames := 1",
            f"image duration (sec) [1] := {_fmt(total)}",
        ]
    lines += [
        "!process status := acquired",
        "!SPECT STUDY (acquired data) :=",
        f"!direction of rotation := {direction}",
        f"start angle := {_fmt(start)}",
    ]
    if np.all(radii == radii[0]):
        lines += ["orbit := circular", f"radius := {_fmt(radii[0])}"]
    else:
        lines += ["orbit := non-circular", "radii := {" + ", ".join(map(_fmt, radii)) + "}"]
    # Not Interfile 3.3 keys (STIR ignores them): written only when they carry information.
    if geometry.cor_offset_mm:
        lines.append(f"recon centre of rotation offset (mm) := {_fmt(geometry.cor_offset_mm)}")
    if geometry.axial_offset_mm:
        lines.append(f"recon axial offset (mm) := {_fmt(geometry.axial_offset_mm)}")
    lines.append("!END OF INTERFILE :=")
    _write_pair_atomically(header, "\n".join(lines) + "\n", data, raw.tofile)
    return header
