"""File formats: Interfile 3.3 (STIR/CASToR dialect), recon's compact listmode file."""

from recon.io.interfile import (
    FileFormatError,
    InterfileHeader,
    PetSinogram,
    SpectProjections,
    parse_interfile_header,
    read_interfile,
    read_interfile_image,
    read_interfile_sinogram,
    read_interfile_spect,
    write_interfile,
)
from recon.io.listmode_file import ListmodeFile, read_listmode, write_listmode

__all__ = [
    "FileFormatError",
    "InterfileHeader",
    "ListmodeFile",
    "PetSinogram",
    "SpectProjections",
    "parse_interfile_header",
    "read_interfile",
    "read_interfile_image",
    "read_interfile_sinogram",
    "read_interfile_spect",
    "read_listmode",
    "write_interfile",
    "write_listmode",
]
