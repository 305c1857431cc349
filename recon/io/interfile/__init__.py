"""Interfile 3.3 SPECT projections, PET sinograms and images in the dialect STIR and CASToR read.

The package is split by job: :mod:`~recon.io.interfile.header` (syntax and typed values),
:mod:`~recon.io.interfile.data_file` (number formats, offsets, scaling),
:mod:`~recon.io.interfile.spect` (projections), :mod:`~recon.io.interfile.sinogram` (PET
sinograms), :mod:`~recon.io.interfile.image` (images and STIR's placement rules) and
:mod:`~recon.io.interfile.writing` (what the writers share). Each module's docstring states the
conventions it implements, with the STIR or CASToR source they come from.
:func:`read_interfile` and :func:`write_interfile` dispatch on what a header or an object holds.

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

import os
from pathlib import Path
from typing import Any

from recon.errors import InputError
from recon.image import Image
from recon.io.interfile.header import (
    FileFormatError,
    InterfileHeader,
    _kind,
    _read_header,
    parse_interfile_header,
)
from recon.io.interfile.image import _read_image, _write_image, read_interfile_image
from recon.io.interfile.sinogram import (
    PetSinogram,
    _read_sinogram,
    _write_sinogram,
    read_interfile_sinogram,
)
from recon.io.interfile.spect import (
    SpectProjections,
    _read_spect,
    _write_spect,
    read_interfile_spect,
)
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
        place the image (:mod:`recon.io.interfile.image`).

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
