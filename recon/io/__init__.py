"""File formats: DICOM NM/PT/CT, Interfile 3.3 (STIR/CASToR), NIfTI, PETSIRD, recon listmode."""

from recon.io.ct import CtSeries, read_ct_mu_map, read_ct_series
from recon.io.dicom_image import read_dicom_image
from recon.io.dicom_nm import read_nm_projections, scatter_estimate, select_scatter_windows
from recon.io.dicom_seg import read_seg_vois
from recon.io.dicom_write import write_dicom
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
from recon.io.mu_map import read_mu_map
from recon.io.nifti import (
    grid_affine_ras,
    read_nifti_image,
    read_voi,
    read_voi_mask,
    write_nifti,
)
from recon.io.normalization_file import read_normalization, write_normalization
from recon.io.petsird import read_petsird
from recon.io.stir_geometry import (
    layout_to_stir_sinogram,
    stir_default_grid,
    stir_geometry_summary,
    stir_lor_endpoints,
    stir_lor_tables,
    stir_sinogram_to_layout,
)

__all__ = [
    "CtSeries",
    "FileFormatError",
    "InterfileHeader",
    "ListmodeFile",
    "PetSinogram",
    "SpectProjections",
    "grid_affine_ras",
    "layout_to_stir_sinogram",
    "parse_interfile_header",
    "read_ct_mu_map",
    "read_ct_series",
    "read_dicom_image",
    "read_interfile",
    "read_interfile_image",
    "read_interfile_sinogram",
    "read_interfile_spect",
    "read_listmode",
    "read_mu_map",
    "read_nm_projections",
    "read_normalization",
    "read_nifti_image",
    "read_petsird",
    "read_seg_vois",
    "read_voi",
    "read_voi_mask",
    "scatter_estimate",
    "select_scatter_windows",
    "stir_default_grid",
    "stir_geometry_summary",
    "stir_lor_endpoints",
    "stir_lor_tables",
    "stir_sinogram_to_layout",
    "write_dicom",
    "write_interfile",
    "write_listmode",
    "write_nifti",
    "write_normalization",
]
