"""Reconstruction algorithms, written against the system-model interface (any modality/device)."""

from recon.algorithms.em import IterationState, mlem, osem
from recon.algorithms.filters import gaussian_filter_fwhm

__all__ = ["IterationState", "gaussian_filter_fwhm", "mlem", "osem"]
