"""Image filters used around reconstructions."""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.errors import InputError

__all__ = ["gaussian_filter_fwhm"]

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def gaussian_filter_fwhm(
    image: Any, fwhm_mm: float, voxel_size_mm: tuple[float, float, float]
) -> Any:
    """3-D Gaussian filter of ``fwhm_mm`` on an image with voxels ``voxel_size_mm`` (z, y, x).

    Works on numpy and CuPy arrays (with ``cupyx.scipy.ndimage`` on the GPU); returns the same kind.
    """
    if not np.isfinite(fwhm_mm) or fwhm_mm < 0:
        raise InputError(f"filter FWHM must be a non-negative number of mm, got {fwhm_mm}")
    if fwhm_mm == 0:
        return image
    sigma = [fwhm_mm / _FWHM_PER_SIGMA / v for v in voxel_size_mm]
    if isinstance(image, np.ndarray):
        from scipy import ndimage
    else:  # CuPy array: use the GPU implementation of the same filter
        from cupyx.scipy import ndimage
    return ndimage.gaussian_filter(image, sigma=sigma, mode="constant", cval=0.0)
