"""Interfile images, placed where STIR's projectors put them (or centred, as CASToR does).

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
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.io.interfile.data_file import _read_data
from recon.io.interfile.header import (
    FileFormatError,
    InterfileHeader,
    _float,
    _int,
    _is_castor,
    _kind,
    _read_header,
    _word,
)
from recon.io.interfile.writing import (
    _float32_le,
    _fmt,
    _output_paths,
    _sources,
    _write_pair_atomically,
)

__all__ = ["STIR_PLACEMENTS", "read_interfile_image"]

log = logging.getLogger("recon")

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
    ox, oy, oz = (_float(h, f"first pixel offset (mm) [{i}]", required=False) for i in (1, 2, 3))
    if oz is None:
        if ox is not None or oy is not None:
            log.warning(
                "%s: 'first pixel offset (mm) [1]/[2]' without [3]: STIR ignores them and puts "
                "index 0 at the origin; so does recon", h._where(),
            )  # fmt: skip
        return 0.0, 0.0, 0.0
    if ox is None or oy is None:
        raise FileFormatError(
            f"{h._where()}: 'first pixel offset (mm) [3]' is given without [1] and [2]; STIR "
            "then reads an undefined x/y origin: give all three (0 or −⌊n/2⌋·voxel for an "
            "image centred on the axis)"
        )
    # STIR's minimum indices: -⌊n/2⌋ in x and y, 0 in z.
    return ox + (sizes[0] // 2) * voxel[0], oy + (sizes[1] // 2) * voxel[1], oz


def _stir_first_voxel(
    h: InterfileHeader,
    origin: tuple[float, float, float],
    sizes: list[int],
    voxel: list[float],
    placement: str,
) -> tuple[float, float, float]:
    """Gantry (x, y, z) in mm of the first voxel of the data file, where STIR's projector for
    ``placement`` puts an image with STIR origin ``origin`` (module docstring)."""
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
    oz, oy, ox = grid.origin
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


def read_interfile_image(
    path: str | os.PathLike[str], *, assume_hfs: bool = False, stir_placement: str | None = None
) -> Image:
    """Read an image where STIR's projectors put it (module docstring).

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
    for index, axis_name in ((1, "x"), (2, "y"), (3, "z")):
        label = _word(h, f"matrix axis label [{index}]")
        if label is not None and label != axis_name:
            raise FileFormatError(
                f"{where}: 'matrix axis label [{index}] := {label}' must be {axis_name}"
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
