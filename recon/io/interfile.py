"""Interfile 3.3 SPECT projections, PET sinograms and images in the dialect STIR and CASToR read.

Header syntax (:func:`parse_interfile_header`)
    One ``key := value`` per line. Keys are case-insensitive; a leading ``!`` (the standard's
    "required key" mark) or ``%`` (Siemens) is ignored, runs of blanks collapse to one and an
    index is normalised to ``key [i]`` (``!Matrix Size[1]`` is ``matrix size [1]``). ``;`` starts
    a comment, ``{a, b, c}`` is a list, lines without ``:=`` are ignored. The first key must be
    ``!INTERFILE``. A key given twice with different values is an error when a reader uses it.

SPECT projections (``.hs`` + ``.s``; ``!type of data := Tomographic``)
    The data file holds views one after the other, each ``!matrix size [2]`` rows of
    ``!matrix size [1]`` bins (STIR's Segment_View_AxialPos_TangPos order). Rows are flipped on
    reading so that ``v`` runs along +z (the first stored row is the head end, as in DICOM), bins
    already run along ``t(θ)``, and the view angles follow :func:`_stir_angles_to_design`. Keys:
    ``!number of projections``, ``!extent of rotation``, ``!direction of rotation := CW|CCW``,
    ``start angle`` (default 0, as in STIR), ``orbit := circular|non-circular`` with ``radius``
    or ``radii := {…}`` (mm, one per view), ``!scaling factor (mm/pixel) [1]/[2]``, and optionally
    ``!time per projection (sec)`` or ``image duration (sec) [1]`` (whole acquisition).

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

Images (``.hv`` + ``.v``): STIR's conventions
    Each rule is taken from STIR's source (UCL/STIR; file and function named so it can be
    re-checked):

    - Index ranges. x and y indices are centred on 0, from ``−⌊n/2⌋`` to ``n − 1 − ⌊n/2⌋`` (so
      for an even size the voxel ``n/2`` of the file is index 0, not the middle of the array);
      z indices run from 0 (``src/IO/interfile.cxx``, ``create_image_and_header_from``; the same
      ranges in ``GenerateImage::compute`` and
      ``VoxelsOnCartesianGrid::construct_from_projdata_info``).
    - Origin. ``first pixel offset (mm) [1|2|3]`` is the physical position of the voxel with
      the smallest indices, so STIR's origin (the position of index 0) is
      ``first pixel offset − min index × voxel size``; without ``[3]`` the origin is 0 and
      ``[1]``, ``[2]`` are ignored (``create_image_and_header_from``). STIR writes
      ``origin + min index × voxel size`` (``write_basic_interfile_image_header``), so an image
      STIR made (``generate_image``, a reconstruction) has origin 0 and offsets
      ``(−⌊nx/2⌋·dx, −⌊ny/2⌋·dy, 0)``; its physical z = 0 is the first plane, not the scanner
      centre.
    - Placement in the scanner. The PET projectors put voxel ``(k, j, i)`` at gantry
      ``(origin x + i·dx, origin y + j·dy, origin z + (k − (k_min + k_max)/2)·dz)``, z = 0 at
      the scanner's axial centre: the middle plane sits at the origin's z, whatever the first
      pixel offset says (``ProjMatrixByBinUsingRayTracing``: ``offset_in_z``; it refuses an x/y
      origin beyond 0.05 mm; ``ParallelprojHelper`` shifts z the same way). SPECT's SPECTUB
      ignores the origin: every image is centred on the rotation axis and axially
      (``ProjMatrixByBinSPECTUB::set_up``: first voxel at ``(0.5 − n/2)·voxel`` in x, y and z),
      image plane ``k`` meets projection row ``k`` (it requires as many planes as rows, of the
      same size), and the attenuation map is used in its own, x-mirrored frame (see
      :func:`recon.io.read_mu_map`).
    - Patient frame. The gantry frame has x to the right and y downwards as seen from the bed,
      z from deep in the gantry out along the bed (STIR developers' overview, "Coordinate
      system"). In LPS that is ``(x, y, −z)`` for head-first supine and for an unknown position,
      ``(−x, −y, −z)`` head-first prone, ``(−x, y, z)`` feet-first supine, ``(x, −y, z)``
      feet-first prone; decubitus positions have no mapping
      (``DiscretisedDensity::swap_axes_based_on_orientation``, ``PatientPosition``).
    - Values are multiplied by ``image scaling factor [1]``; the non-standard ``quantification
      units`` (Louvain-la-Neuve's extension: a scale, optionally followed by a unit label, e.g.
      ``1 Bq/ml``) sets that factor when it is not 1, and is refused when both differ
      (``InterfileHeader::post_processing``; STIR reads only its leading number).

    recon reads an image where STIR's projector puts it, in LPS with the isocentre at the
    scanner centre (DESIGN.md §3): ``stir_placement="pet"`` (the default, and for PET images)
    takes x and y from the origin and centres z on the origin's z; ``"spect"`` (the default for
    ``!imaging modality := nucmed``/``NM``) centres x and y on the array as SPECTUB does when
    the origin is 0, as STIR writes it, and otherwise takes the position the header states
    (noting that SPECTUB would centre it). So the slices of an image STIR made are centred
    axially on the isocentre (the axial centring is the rule, not an option: the former
    ``centre_z`` flag is gone), SPECT image plane ``k`` lies at the height of projection row
    ``k``, and STIR's ``first pixel offset (mm) [3] := 0`` no longer puts a 47-plane image
    75 mm towards the feet. The patient positions STIR maps are mapped to LPS as STIR does
    (``assume_hfs=True`` keeps the scanner frame; mu-maps are read that way, as STIR's
    projectors ignore the position). The writer inverts this: ``first pixel offset [1], [2]``
    = the position of recon's first voxel (so a centred even-sized grid has origin
    ``(dx/2, dy/2)``, which STIR's ray tracer refuses: use odd sizes, as
    :func:`recon.io.stir_default_grid` does), ``[3]`` = minus the height of the grid's centre
    (0 for a centred grid); a SPECT image on a centred grid is written with origin 0, as STIR
    writes its own. Headers are written head-first supine (``patient orientation := head_in``,
    ``patient rotation := supine``), x and y as LPS, z reversed (recon's slice ``k`` is STIR
    plane ``n_z − 1 − k``). ``!imaging modality`` is ``nucmed`` (SPECT, with STIR's SPECT
    study keys) or ``PT``, and the image's unit is the label of ``quantification units := 1
    <unit>`` (the leading 1 keeps STIR's and CASToR's scaling unchanged); a label read back
    becomes the image's ``units``.

CASToR
    CASToR (3.1.1, ``oInterfileIO.cc``) reads images and projections with its own rules: keys
    lower-cased without blanks, ``number format`` matched case-sensitively (we write ``float``),
    only ``LITTLEENDIAN`` is little-endian, the data file next to the header, offsets ignored
    (every image is centred on the scanner), and projection data hold ``!total number of
    images`` projections (default 1), which the SPECT writer therefore writes. Headers CASToR
    writes (``.hdr/.img``; ``!version of keys := CASToRv…`` or ``CASToR version``) are read with
    its conventions: the grid is centred and ``first pixel offset`` (CASToR's FOV offset) is
    reported as ``info["castor_fov_offset_mm"]``; ``data rescale slope`` × a numeric
    ``quantification units`` + ``data rescale intercept`` rescale the values; what CASToR appends
    after ``!END OF INTERFILE`` is not read. CASToR's source ties its axes to no patient
    orientation; its files are taken in the STIR dialect's order, so an image that goes to CASToR
    and comes back keeps its orientation. Dynamic CASToR output is read frame by frame (its
    default one header per frame); a metaheader (``.mhd``) is named as such. SPECT projections
    written by CASToR are refused: its angles follow its own scanner frame, not STIR's.

Validation happens before anything is allocated: missing or contradictory keys (named in the
message with the fix), an unknown number format, a declared size larger than the data file, a data
file outside the header's folder, impossible angles, a radius list of the wrong length. Every
such problem raises :class:`FileFormatError` (an :class:`~recon.errors.InputError`) or
:class:`~recon.errors.GeometryError`. Writers put the header and the data file in temporary files
in the destination folder and rename both only when both are complete, never write over the files
an object was read from, and accept only a plain data-file name next to the header.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from recon._files import create_temporary_file
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.pet.scanner import PetScanner
from recon.spect.geometry import SpectGeometry

__all__ = [
    "FileFormatError",
    "InterfileHeader",
    "PetSinogram",
    "SpectProjections",
    "parse_interfile_header",
    "read_interfile",
    "read_interfile_image",
    "read_interfile_sinogram",
    "read_interfile_spect",
    "write_interfile",
]

#: A header larger than this is not a header (guards against passing the binary file).
_MAX_HEADER_BYTES = 1 << 20
#: Interfile 3.3 "data starting block" unit.
_BLOCK_BYTES = 2048
_ANGLE_TOL_DEG = 1e-6
log = logging.getLogger("recon")


class FileFormatError(InputError):
    """An Interfile header or data file is malformed, contradictory or unsupported."""


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


# ================================================================================ header parsing
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


# ================================================================================ value parsing
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


def _float(
    h: InterfileHeader,
    key: str,
    *,
    required: bool = True,
    default: float | None = None,
    positive: bool = False,
    hint: str = "",
) -> float:
    text = _scalar_text(h, key)
    if text is None:
        if required:
            raise FileFormatError(f"{h._where()}: required key '{key}' is missing{hint}")
        return default  # type: ignore[return-value]
    value = _to_float(text, key, h._where())
    if positive and value <= 0:
        raise FileFormatError(f"{h._where()}: '{key}' must be positive, got {text}")
    return value


def _int(
    h: InterfileHeader,
    key: str,
    *,
    required: bool = True,
    default: int | None = None,
    minimum: int | None = 1,
    hint: str = "",
) -> int:
    text = _scalar_text(h, key)
    if text is None:
        if required:
            raise FileFormatError(f"{h._where()}: required key '{key}' is missing{hint}")
        return default  # type: ignore[return-value]
    value = _to_int(text, key, h._where())
    if minimum is not None and value < minimum:
        raise FileFormatError(f"{h._where()}: '{key}' must be at least {minimum}, got {text}")
    return value


def _word(h: InterfileHeader, key: str, default: str | None = None) -> str | None:
    value = h.get(key)
    if value is None or not value.strip():
        return default
    return " ".join(value.strip().lower().split())


# ================================================================================ data files
_FORMATS = {
    ("unsigned integer", 1): "u1",
    ("unsigned integer", 2): "u2",
    ("unsigned integer", 4): "u4",
    ("unsigned integer", 8): "u8",
    ("signed integer", 1): "i1",
    ("signed integer", 2): "i2",
    ("signed integer", 4): "i4",
    ("signed integer", 8): "i8",
    ("float", 4): "f4",
    ("float", 8): "f8",
    ("short float", 4): "f4",
    ("long float", 8): "f8",
}


def _dtype(h: InterfileHeader) -> np.dtype:
    where = h._where()
    fmt = _word(h, "number format")
    if fmt is None:
        raise FileFormatError(f"{where}: required key '!number format' is missing (e.g. float)")
    nbytes = _int(h, "number of bytes per pixel", required=False)
    known = sorted({f for f, _ in _FORMATS})
    if fmt not in known:
        raise FileFormatError(
            f"{where}: '!number format := {fmt}' is not supported; use one of {known}"
        )
    if nbytes is None:
        nbytes = {"short float": 4, "long float": 8, "float": 4}.get(fmt)
        if nbytes is None:
            raise FileFormatError(
                f"{where}: required key '!number of bytes per pixel' is missing for '{fmt}'"
            )
    code = _FORMATS.get((fmt, nbytes))
    if code is None:
        sizes = sorted(n for f, n in _FORMATS if f == fmt)
        raise FileFormatError(
            f"{where}: '!number format := {fmt}' contradicts '!number of bytes per pixel := "
            f"{nbytes}'; {fmt} takes {sizes} bytes"
        )
    order = _word(h, "imagedata byte order", "bigendian")  # Interfile 3.3 default
    if order not in ("bigendian", "littleendian"):
        raise FileFormatError(
            f"{where}: 'imagedata byte order := {order}' must be LITTLEENDIAN or BIGENDIAN"
        )
    return np.dtype(("<" if order == "littleendian" else ">") + code)


def _data_offset(h: InterfileHeader) -> int:
    offsets = {}
    for key in ("data offset in bytes", "data offset in bytes [1]"):
        value = _int(h, key, required=False, minimum=0)
        if value is not None:
            offsets[key] = value
    block = _int(h, "data starting block", required=False, minimum=0)
    if block is not None:
        offsets["data starting block"] = block * _BLOCK_BYTES
    if len(set(offsets.values())) > 1:
        raise FileFormatError(
            f"{h._where()}: contradictory data offsets {offsets} (bytes); keep one key"
        )
    return next(iter(offsets.values()), 0)


def _data_path(h: InterfileHeader, header_path: Path) -> Path:
    where = h._where()
    name = h.get("name of data file")
    if name is None or not name.strip():
        raise FileFormatError(f"{where}: required key 'name of data file' is missing")
    try:
        folder = header_path.resolve().parent
        candidate = Path(name.strip())
        target = (candidate if candidate.is_absolute() else folder / candidate).resolve()
        if not target.is_relative_to(folder):
            raise FileFormatError(
                f"{where}: data file '{name.strip()}' lies outside the header's folder {folder}; "
                "put the data file next to the header and give its plain name"
            )
        if not target.is_file():
            raise FileFormatError(f"{where}: data file '{name.strip()}' ({target}) does not exist")
    except OSError as exc:  # e.g. a name too long for the file system
        raise FileFormatError(f"{where}: unusable data file name '{name.strip()}': {exc}") from None
    return target


def _read_data(
    h: InterfileHeader, header_path: Path, shape: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, Any]]:
    """Validate the data file against ``shape`` and read it (float32, rescaled), checked first."""
    where = h._where()
    dtype = _dtype(h)
    offset = _data_offset(h)
    path = _data_path(h, header_path)
    count = math.prod(shape)
    needed = offset + count * dtype.itemsize
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FileFormatError(f"{where}: cannot read data file {path}: {exc}") from None
    if needed > size:
        raise FileFormatError(
            f"{where}: the header declares {count} values of {dtype.itemsize} bytes "
            f"{'x'.join(map(str, shape))} after an offset of {offset} bytes ({needed} bytes), but "
            f"the data file {path.name} has {size} bytes; check the matrix sizes, the number "
            "format and the data offset"
        )
    slopes = {}
    for key in (
        "data rescale slope",
        "rescale slope",
        "data rescale factor",
        "image scaling factor [1]",
        "image scaling factor",
    ):
        value = _float(h, key, required=False)
        if value is not None:
            slopes[key] = value
    if len(set(slopes.values())) > 1:
        raise FileFormatError(f"{where}: contradictory scaling factors {slopes}; keep one key")
    slope = next(iter(slopes.values()), 1.0)
    units_scale, units_label = _quantification_units(h)
    if _is_castor(h):
        slope *= units_scale  # CASToR: data rescale slope × quantification units
    elif units_scale != 1.0:
        # STIR (InterfileHeader::post_processing): the scale replaces image scaling factors
        # that are absent or equal to it, and any other combination is an error.
        if slope not in (1.0, units_scale):
            raise FileFormatError(
                f"{where}: 'quantification units' scale {units_scale:g} contradicts the scaling "
                f"factor {slope:g}; STIR accepts it only when the image scaling factors are "
                "absent or equal to it: keep one"
            )
        slope = units_scale
    intercepts = {}
    for key in ("data rescale offset", "data rescale intercept", "rescale intercept"):
        value = _float(h, key, required=False)
        if value is not None:
            intercepts[key] = value
    if len(set(intercepts.values())) > 1:
        raise FileFormatError(f"{where}: contradictory intercepts {intercepts}; keep one key")
    intercept = next(iter(intercepts.values()), 0.0)
    try:
        raw = np.fromfile(path, dtype=dtype, count=count, offset=offset)
    except (OSError, ValueError) as exc:
        raise FileFormatError(f"{where}: cannot read data file {path}: {exc}") from None
    if raw.size != count:
        raise FileFormatError(f"{where}: data file {path} ended early ({raw.size} of {count})")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        if slope == 1.0 and intercept == 0.0:
            data = raw.astype(np.float32)
        else:
            data = (raw.astype(np.float64) * slope + intercept).astype(np.float32)
    if not np.all(np.isfinite(data)):
        raise FileFormatError(f"{where}: data file {path} contains NaN or infinite values")
    info = {
        "data_path": str(path),
        "number_format": dtype.str,
        "data_offset_bytes": offset,
        "rescale_slope": slope,
        "rescale_offset": intercept,
        "units_label": units_label,
    }
    return data.reshape(shape), info


_LEADING_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(.*)$")


def _quantification_units(h: InterfileHeader) -> tuple[float, str | None]:
    """Scale and unit label of ``quantification units`` (1 and None when absent).

    Louvain-la-Neuve's extension of Interfile 3.3 (ECAT/EcatX ``interfile.cpp``) writes a
    scale followed by a unit label (``1 Bq/ml``); STIR (``KeyParser``: ``istream >> double``)
    and CASToR (``ConvertFromString``: ``strtod``) read only the leading number. A value
    without a number is a label with scale 1.
    """
    text = h.get("quantification units")
    if text is None or not text.strip():
        return 1.0, None
    match = _LEADING_NUMBER.match(text)
    if match is None:
        return 1.0, text.strip()
    scale = _to_float(match.group(1), "quantification units", h._where())
    if scale == 0.0:
        raise FileFormatError(f"{h._where()}: 'quantification units := {text}' scales by 0")
    return scale, match.group(2).strip() or None


# ================================================================================ orientation
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


# ================================================================================ image placement
#: Where recon puts a STIR image: as STIR's PET projectors or as its SPECT projector (SPECTUB).
STIR_PLACEMENTS = ("pet", "spect")
#: LPS sign of STIR's gantry (x, y, z) per patient position
#: (``DiscretisedDensity::swap_axes_based_on_orientation``).
_LPS_SIGNS = {"HFS": (1, 1, -1), "HFP": (-1, -1, -1), "FFS": (-1, 1, 1), "FFP": (1, -1, 1)}
_ORIENTATION_CODES = {"head_in": "HF", "feet_in": "FF"}
_ROTATION_CODES = {"supine": "S", "prone": "P", "right": "DR", "left": "DL"}
#: An origin within this fraction of a voxel of 0 is STIR's default origin (STIR writes offsets
#: with 6 significant digits, so its own images come back a few 1e-6 voxels away from 0).
_ORIGIN_TOL_VOXELS = 0.01


def _modality(value: Any) -> str | None:
    """``"NM"``, ``"PT"`` or None from an ``!imaging modality`` (or DICOM Modality) value, read
    as STIR's ``ImagingModality`` reads it (``pt``/``pet``; ``nm``/``nucmed``/``spect``)."""
    text = str(value or "").strip().lower()
    if text in ("pt", "pet"):
        return "PT"
    if text in ("nm", "nucmed", "spect"):
        return "NM"
    return None


def _image_position(h: InterfileHeader, assume_hfs: bool) -> tuple[str, tuple[int, int, int]]:
    """Patient position of an image header and the LPS sign of each gantry axis (x, y, z).

    As STIR: a missing or ``unknown`` orientation or rotation is an unknown position, taken as
    head-first supine; decubitus and ``other`` positions have no LPS mapping.
    """
    if assume_hfs:
        return "HFS (assumed)", _LPS_SIGNS["HFS"]
    orientation = _word(h, "patient orientation", "unknown")
    rotation = _word(h, "patient rotation", "unknown")
    if orientation == "unknown" or rotation == "unknown":
        return "HFS (position not given)", _LPS_SIGNS["HFS"]
    name = _ORIENTATION_CODES.get(orientation or "", "?") + _ROTATION_CODES.get(rotation or "", "?")
    if name not in _LPS_SIGNS:
        raise GeometryError(
            f"{h._where()}: 'patient orientation := {orientation}', 'patient rotation := "
            f"{rotation}': STIR maps only head/feet-first supine or prone images to patient (LPS) "
            "coordinates; pass assume_hfs=True to read the image in scanner coordinates as if "
            "head-first supine"
        )
    return name, _LPS_SIGNS[name]


def _stir_origin(
    h: InterfileHeader, sizes: list[int], voxel: list[float]
) -> tuple[float, float, float]:
    """STIR's origin, the gantry (x, y, z) of index (0, 0, 0), from the first pixel offsets
    (``create_image_and_header_from`` in STIR's ``interfile.cxx``)."""
    offsets = [_float(h, f"first pixel offset (mm) [{i}]", required=False) for i in (1, 2, 3)]
    if offsets[2] is None:
        if offsets[0] is not None or offsets[1] is not None:
            log.warning(
                "%s: 'first pixel offset (mm) [1]/[2]' without [3]: STIR ignores them and puts "
                "index 0 at the origin; so does recon", h._where(),
            )  # fmt: skip
        return 0.0, 0.0, 0.0
    if offsets[0] is None or offsets[1] is None:
        raise FileFormatError(
            f"{h._where()}: 'first pixel offset (mm) [3]' is given without [1] and [2]; STIR "
            "then reads an undefined x/y origin: give all three (0 or −⌊n/2⌋·voxel for an "
            "image centred on the axis)"
        )
    minimum = (-(sizes[0] // 2), -(sizes[1] // 2), 0)
    return tuple(o - m * d for o, m, d in zip(offsets, minimum, voxel, strict=True))  # type: ignore[return-value]


def _stir_first_voxel(
    h: InterfileHeader,
    origin: tuple[float, float, float],
    sizes: list[int],
    voxel: list[float],
    placement: str,
) -> tuple[float, float, float]:
    """Gantry (x, y, z) in mm of the first voxel of the data file, where STIR's projector for
    ``placement`` puts an image with STIR origin ``origin`` (module docstring, "Images")."""
    first = []
    for axis, (o, n, d) in enumerate(zip(origin, sizes, voxel, strict=True)):
        centred = -(n - 1) / 2.0 * d  # SPECTUB: the array centred on the axis and axially
        if axis == 2:  # PET projectors: the middle plane at the origin's z
            physical = o + centred
        else:  # index −⌊n/2⌋ at origin − ⌊n/2⌋·voxel
            physical = o - (n // 2) * d
        if placement == "spect" and abs(o) <= _ORIGIN_TOL_VOXELS * d:
            first.append(centred)
            continue
        if placement == "spect" and abs(physical - centred) > _ORIGIN_TOL_VOXELS * d:
            log.warning(
                "%s: %s origin %.4g mm; STIR's SPECT projector ignores it and centres the "
                "image, recon places the image where the header says", h._where(), "xyz"[axis], o,
            )  # fmt: skip
        first.append(physical)
    return first[0], first[1], first[2]


def _stir_first_pixel_offsets(grid: ImageGrid, modality: str) -> tuple[float, float, float]:
    """``first pixel offset (mm) [1..3]`` that make STIR's projectors for ``modality`` put the
    image where ``grid`` is (head-first supine), the inverse of :func:`_stir_first_voxel`."""
    nz, ny, nx = grid.shape
    dz, dy, dx = grid.voxel_size_mm
    oz, oy, ox = grid.origin  # type: ignore[misc]
    offsets = []
    for first, n, d, name in ((ox, nx, dx, "x"), (oy, ny, dy, "y")):
        centre = first + (n - 1) / 2.0 * d
        if modality == "NM" and abs(centre) <= _ORIGIN_TOL_VOXELS * d:
            offsets.append(-(n // 2) * d)  # origin 0, as STIR writes the SPECT images it makes
            continue
        if modality == "NM" and abs(first + (n // 2) * d) <= _ORIGIN_TOL_VOXELS * d:
            log.warning(
                "SPECT image: its %s grid puts voxel %d on the axis, half a voxel off centre; "
                "written as STIR writes a centred image, so readers that follow SPECTUB "
                "(recon, STIR) will centre it; write it with modality 'PT' to keep the shift",
                name, n // 2,
            )  # fmt: skip
        offsets.append(first)
    offsets.append(-(oz + (nz - 1) / 2.0 * dz))  # minus the height of the grid centre
    return offsets[0], offsets[1], offsets[2]


# ================================================================================ SPECT angles
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


# ================================================================================ readers
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


def read_interfile(
    path: str | os.PathLike[str], *, assume_hfs: bool = False
) -> SpectProjections | PetSinogram | Image:
    """Read an Interfile header and its data file, whatever they hold.

    Parameters
    ----------
    path : path-like
        The header (``.hs`` or ``.hv``); its data file must lie in the same folder.
    assume_hfs : bool
        Read a patient position other than head-first supine as if it were HFS (scanner
        coordinates) instead of raising.

    Returns
    -------
    SpectProjections or PetSinogram or Image
        SPECT projections ``(counts, geometry, metadata)``, a PET sinogram ``(data,
        description)`` or a :class:`recon.Image`, by what the header describes.

    Raises
    ------
    FileFormatError
        A key is missing, malformed or contradicts another; the data file is missing, too small
        or outside the header's folder.
    GeometryError
        The acquisition geometry is impossible (angles, radii, patient position).
    """
    h = _read_header(path)
    kind = _kind(h)
    if kind == "spect":
        return _read_spect(h, Path(path), assume_hfs)
    if kind == "sinogram":
        return _read_sinogram(h, Path(path))
    return _read_image(h, Path(path), assume_hfs, placement=None)


def read_interfile_spect(
    path: str | os.PathLike[str], *, assume_hfs: bool = False
) -> SpectProjections:
    """Read SPECT projections; :class:`FileFormatError` if the file holds something else."""
    h = _read_header(path)
    if _kind(h) != "spect":
        raise FileFormatError(f"{h._where()} does not hold SPECT projections ({_kind(h)})")
    return _read_spect(h, Path(path), assume_hfs)


def read_interfile_sinogram(path: str | os.PathLike[str]) -> PetSinogram:
    """Read a PET sinogram; :class:`FileFormatError` if the file holds something else."""
    h = _read_header(path)
    if _kind(h) != "sinogram":
        raise FileFormatError(f"{h._where()} does not hold a PET sinogram ({_kind(h)})")
    return _read_sinogram(h, Path(path))


def read_interfile_image(
    path: str | os.PathLike[str], *, assume_hfs: bool = False, stir_placement: str | None = None
) -> Image:
    """Read an image where STIR's projectors put it (module docstring, "Images").

    Parameters
    ----------
    path : path-like
        The image header (``.hv``); its data file must lie in the same folder.
    assume_hfs : bool
        Read the image in scanner coordinates as if the patient were head-first supine,
        whatever its ``patient orientation``/``patient rotation`` say (instead of mapping
        HFP/FFS/FFP to LPS as STIR does, or raising for decubitus positions).
    stir_placement : {"pet", "spect"}, optional
        Place a STIR image as STIR's PET projectors do (x, y from the origin; the default for
        everything but SPECT images) or as SPECTUB does (x, y centred on the array when the
        origin is 0; the default for ``!imaging modality := nucmed``). Axially both centre the
        image on the origin's z. CASToR images are always centred.

    Returns
    -------
    Image
        float32 ``(z, y, x)`` on a grid in LPS mm; ``units`` from the ``quantification units``
        label when there is one; ``info`` holds the modality (``"NM"``, ``"PT"`` or None), the
        placement rule, STIR's origin and the patient position used.

    Raises
    ------
    FileFormatError
        The file holds something else, or its header is malformed.
    GeometryError
        A patient position STIR cannot map to LPS (without ``assume_hfs``).
    """
    h = _read_header(path)
    if _kind(h) != "image":
        raise FileFormatError(f"{h._where()} does not hold an image ({_kind(h)})")
    return _read_image(h, Path(path), assume_hfs, placement=stir_placement)


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


def _read_image(
    h: InterfileHeader, path: Path, assume_hfs: bool, *, placement: str | None
) -> Image:
    where = h._where()
    if placement is not None and placement not in STIR_PLACEMENTS:
        raise InputError(
            f"stir_placement must be one of {STIR_PLACEMENTS} or None, got {placement!r}"
        )
    position, signs = _image_position(h, assume_hfs)
    dims = _int(h, "number of dimensions", required=False, default=3)
    frames = _int(h, "number of time frames", required=False, default=1, minimum=0)
    if dims != 3 or frames > 1:
        raise FileFormatError(
            f"{where}: only single-frame 3-D images are supported (number of dimensions := "
            f"{dims}, number of time frames := {frames}); write one header per frame (CASToR's "
            "default split mode, <name>_fr<i>.hdr)"
        )
    sizes, voxel = [], []
    for index, axis in ((1, "x"), (2, "y"), (3, "z")):
        label = _word(h, f"matrix axis label [{index}]")
        if label is not None and label != axis:
            raise FileFormatError(
                f"{where}: 'matrix axis label [{index}] := {label}' must be {axis}"
            )
        sizes.append(_int(h, f"matrix size [{index}]"))
        voxel.append(
            _float(
                h, f"scaling factor (mm/pixel) [{index}]", positive=True, hint=" (voxel size in mm)"
            )
        )
    modality = _modality(h.get("imaging modality"))
    castor = _is_castor(h)
    extra: dict[str, Any] = {}
    if castor:
        # CASToR centres every image on the scanner and writes its FOV offset (its -off option,
        # normally 0) under 'first pixel offset', not the first voxel's position.
        extra["castor_fov_offset_mm"] = tuple(
            _float(h, f"first pixel offset (mm) [{i}]", required=False, default=0.0)
            for i in (1, 2, 3)
        )
        first = tuple(-(n - 1) / 2.0 * d for n, d in zip(sizes, voxel, strict=True))
    else:
        rule = placement or ("spect" if modality == "NM" else "pet")
        stir_origin = _stir_origin(h, sizes, voxel)
        first = _stir_first_voxel(h, stir_origin, sizes, voxel, rule)
        extra.update(stir_placement=rule, stir_origin_mm=stir_origin)
    nx, ny, nz = sizes
    raw, info = _read_data(h, path, (nz, ny, nx))
    # File axes (x, y, z) are array axes (2, 1, 0); an axis whose LPS sign is −1 is reversed.
    data, origin = raw, [0.0, 0.0, 0.0]
    for axis, (g0, n, d, sign) in enumerate(zip(first, sizes, voxel, signs, strict=True)):
        if sign > 0:
            origin[2 - axis] = g0
        else:
            origin[2 - axis] = -(g0 + (n - 1) * d)
            data = np.flip(data, axis=2 - axis)
    grid = ImageGrid(shape=(nz, ny, nx), voxel_size=(voxel[2], voxel[1], voxel[0]),
                     origin=tuple(origin))  # fmt: skip
    info.update(
        extra,
        source="interfile",
        header_path=str(path.resolve()),
        header=h.as_dict(),
        patient_position=position,
        modality=modality,
    )
    units = info.pop("units_label")
    return Image(
        data=np.ascontiguousarray(data),
        grid=grid,
        isotope=h.get("isotope name"),
        info=info,
        **({"units": units} if units else {}),
    )


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
    axial_text = h.get(f"matrix size [{axial_index}]")
    lo_text = h.get("minimum ring difference per segment")
    hi_text = h.get("maximum ring difference per segment")
    for key, text in (
        (f"matrix size [{axial_index}]", axial_text),
        ("minimum ring difference per segment", lo_text),
        ("maximum ring difference per segment", hi_text),
    ):
        if text is None:
            raise FileFormatError(
                f"{where}: required key '{key}' (one value per segment) is missing"
            )
        if len(_split_list(text, key, where)) != n_segments:
            raise FileFormatError(
                f"{where}: '{key}' needs one value per segment ({n_segments}), got '{text}'"
            )
    n_axial = [_to_int(v, "axial positions", where) for v in _split_list(axial_text, "", where)]  # type: ignore[arg-type]
    lo = [_to_int(v, "minimum ring difference", where) for v in _split_list(lo_text, "", where)]  # type: ignore[arg-type]
    hi = [_to_int(v, "maximum ring difference", where) for v in _split_list(hi_text, "", where)]  # type: ignore[arg-type]
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
    block, inside = [], False
    for key, raw_key, value, _ in h.entries:
        if key == "scanner parameters":
            inside = True
            continue
        if key == "end scanner parameters":
            inside = False
            continue
        if inside:
            block.append((raw_key, value))
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


# ================================================================================ writers
def _fmt(value: float) -> str:
    """Shortest text that reads back as the same float64."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def _sources(obj: Any) -> set[Path]:
    paths = set()
    if isinstance(obj, dict):
        for key in ("header_path", "data_path"):
            if obj.get(key):
                paths.add(Path(obj[key]).resolve())
    return paths


def _output_paths(
    path: str | os.PathLike[str], data_name: str | None, suffix: str, sources: Iterable[Path]
) -> tuple[Path, Path]:
    header = Path(path)
    if data_name is None:
        data_name = header.with_suffix(suffix).name if header.suffix else header.name + suffix
    name = str(data_name)
    if not name or name in (".", "..") or "/" in name or "\\" in name or Path(name).name != name:
        raise InputError(
            f"data_name {data_name!r} must be a plain file name: the data file is written next "
            "to the header, in the same folder"
        )
    data = header.parent / name
    if data.resolve() == header.resolve():
        raise InputError(f"the data file and the header are the same file ({header}); rename one")
    for out in (header, data):
        if out.resolve() in set(sources):
            raise InputError(
                f"refusing to write {out}: it is a file the data were read from; choose another "
                "output name (inputs are never modified)"
            )
    return header, data


def _write_pair_atomically(
    header_path: Path, header_text: str, data_path: Path, write_data: Callable[[IO[bytes]], None]
) -> None:
    """Write both files to temporaries in the destination folder, then rename both.

    ``recon._files`` replaces one file at a time; a header and its data file are complete only
    together, so neither is renamed until both are written. The two renames follow each other
    directly (data first): only a failure between them can pair a new data file with an old
    header.
    """
    folder = header_path.parent
    if not folder.is_dir():
        raise InputError(f"output folder {folder} does not exist; create it first")
    temps: list[Path] = []
    try:
        for target, write in (
            (data_path, write_data),
            (header_path, lambda handle: handle.write(header_text.encode("utf-8"))),
        ):
            fd, tmp = create_temporary_file(target)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as handle:
                write(handle)
        os.replace(temps[0], data_path)
        os.replace(temps[1], header_path)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise


def _float32_le(array: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(array, np.ndarray) and hasattr(array, "get"):
        array = array.get()  # CuPy -> host
    arr = np.asarray(array)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{what} must be real numbers, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise InputError(f"{what} has shape {arr.shape}, expected {shape}")
    with np.errstate(over="ignore", invalid="ignore"):  # reported just below
        out = np.ascontiguousarray(arr, dtype="<f4")
    if not np.all(np.isfinite(out)):
        raise InputError(f"{what} contains NaN or infinite values (or values beyond float32)")
    return out


def write_interfile(
    path: str | os.PathLike[str],
    data: Any,
    geometry: SpectGeometry | None = None,
    *,
    metadata: dict | None = None,
    data_name: str | None = None,
    modality: str | None = None,
) -> Path:
    """Write SPECT projections, a PET sinogram or an image as an Interfile header + data file.

    Parameters
    ----------
    path : path-like
        The header to write (``.hs`` for projections and sinograms, ``.hv`` for images by
        convention). Its folder must exist.
    data : ndarray (view, v, u) with ``geometry``, SpectProjections, PetSinogram or Image
        What to write; float32 little-endian on disk.
    geometry : SpectGeometry, optional
        The views of SPECT projections given as an array. Angles must be equally spaced
        (``start angle + k·extent/n``, at most one turn); per-view radii are written as a
        non-circular orbit.
    metadata : dict, optional
        For SPECT: ``metadata`` from :func:`read_interfile` (its source paths are protected) and
        ``isotope``.
    data_name : str, optional
        Plain file name of the data file, next to the header; default: the header's name with
        ``.s`` (projections, sinograms) or ``.v`` (images).
    modality : {"NM", "PT"}, optional
        Images only: a SPECT (``NM``, also ``nucmed``/``SPECT``; written ``!imaging modality :=
        nucmed`` with STIR's SPECT keys) or PET image. Default: the image's
        ``info["modality"]`` (set by the readers), else PET. It also chooses where STIR will
        place the image (module docstring, "Images").

    Returns
    -------
    Path
        The header path.

    Raises
    ------
    InputError
        Unknown data, a wrong shape, non-finite values, a data name with a folder in it, or an
        output that is one of the files the data were read from.
    GeometryError
        Angles that Interfile cannot describe.
    """
    if isinstance(data, SpectProjections):
        counts, geom, meta = data
        return _write_spect(path, counts, geom, meta if metadata is None else metadata, data_name)
    if isinstance(data, PetSinogram):
        return _write_sinogram(path, data, data_name)
    if isinstance(data, Image):
        return _write_image(path, data, data_name, modality)
    if isinstance(geometry, SpectGeometry):
        return _write_spect(path, data, geometry, metadata or {}, data_name)
    raise InputError(
        "write_interfile needs SPECT projections with a SpectGeometry, SpectProjections, a "
        f"PetSinogram or a recon.Image; got {type(data).__name__}"
    )


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
    pixel_v, pixel_u = geometry.pixel_size_mm  # type: ignore[misc]
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


def _write_image(
    path: str | os.PathLike[str], image: Image, data_name: str | None, modality: str | None
) -> Path:
    if modality is not None:
        kind = _modality(modality)
        if kind is None:
            raise InputError(
                f"modality must be 'NM' (SPECT, also 'nucmed') or 'PT', got {modality!r}"
            )
    else:
        kind = _modality(image.info.get("modality")) or "PT"
    nm = kind == "NM"
    grid = image.grid
    nz, ny, nx = grid.shape
    raw = _float32_le(np.asarray(image), grid.shape, "image data")[::-1]
    header, data = _output_paths(path, data_name, ".v", _sources(image.info))
    dz, dy, dx = grid.voxel_size_mm
    offsets = _stir_first_pixel_offsets(grid, kind)
    lines = [
        "!INTERFILE  :=",
        f"!imaging modality := {'nucmed' if nm else 'PT'}",
        f"name of data file := {data.name}",
        "!version of keys := 3.3",
        "!GENERAL DATA :=",
        "!GENERAL IMAGE DATA :=",
        f"!type of data := {'Tomographic' if nm else 'PET'}",
        "imagedata byte order := LITTLEENDIAN",
    ]
    if image.isotope:
        lines.append(f"isotope name := {image.isotope}")
    lines += [
        "patient orientation := head_in",
        "patient rotation := supine",
        f"!{'SPECT' if nm else 'PET'} STUDY (General) :=",
        *([] if nm else ["!PET data type := Image"]),
        "process status := Reconstructed",
        "!number format := float",
        "!number of bytes per pixel := 4",
        "number of dimensions := 3",
    ]
    for index, (axis, size, step) in enumerate((("x", nx, dx), ("y", ny, dy), ("z", nz, dz)), 1):
        lines += [
            f"matrix axis label [{index}] := {axis}",
            f"!matrix size [{index}] := {size}",
            f"scaling factor (mm/pixel) [{index}] := {_fmt(step)}",
        ]
    lines += [f"first pixel offset (mm) [{i}] := {_fmt(o)}" for i, o in enumerate(offsets, 1)]
    units = " ".join(str(image.units or "").replace(";", ",").split())
    if units:
        # Louvain-la-Neuve's "scale unit" form: STIR and CASToR read the 1 (no rescaling).
        lines.append(f"quantification units := 1 {units}")
    lines += [
        "number of time frames := 1",
        "data offset in bytes [1] := 0",
        "!END OF INTERFILE :=",
    ]
    _write_pair_atomically(header, "\n".join(lines) + "\n", data, raw.tofile)
    return header


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
    sizes = (n_views, "{ " + ",".join(map(str, n_axial)) + "}")
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
