"""Volumes of interest: iso-contours and statistics (mean, max, peak, SD, volume, total
activity), plus partial-volume recovery of spheres.

A :class:`~recon.voi.Voi` (re-exported here) is a boolean mask on an
:class:`~recon.grid.ImageGrid` (masks, labels, spheres, cylinders: :mod:`recon.voi`); a voxel
belongs to it when its centre lies inside the shape. World coordinates are DICOM LPS
``(x, y, z)`` in mm; arrays are ``(z, y, x)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, special
from scipy.integrate import quad

from recon.errors import GeometryError, InputError
from recon.image import Image
from recon.quant._common import check_same_grid, finite, non_negative, positive, xyz
from recon.voi import Voi

__all__ = [
    "PEAK_SPHERE_ML",
    "Voi",
    "VoiStats",
    "iso_contour",
    "rc_corrected_mean",
    "recovery_coefficient",
    "voi_stats",
]

log = logging.getLogger("recon")

#: Volume of the sphere whose best-placed mean is the "peak" (PERCIST's SULpeak uses 1 cm³:
#: Wahl et al., J Nucl Med 2009;50:122S).
PEAK_SPHERE_ML = 1.0

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# Sub-sample spacing (mm) for the fractional voxel weights of the peak kernel, and the bounds on
# sub-samples per voxel and axis: 0.25 mm resolves the 6.2 mm sphere's edge within each voxel
# (coarser sampling can put every sub-sample of a 4 mm face neighbour inside the sphere).
_KERNEL_SUBSAMPLE_MM = 0.25
_KERNEL_SUPERSAMPLE_RANGE = (3, 20)


def iso_contour(
    image: Image,
    seed_xyz_mm: Sequence[float] | np.ndarray,
    percent_of_local_max: float,
    search_radius_mm: float,
    *,
    name: str = "iso_contour",
    confine_to_search: bool = False,
    connectivity: int = 1,
) -> Voi:
    """The connected region at or above a percentage of the local maximum around a seed.

    The local maximum is the highest voxel whose centre lies within ``search_radius_mm`` of the
    seed; the VOI is the connected component (:func:`scipy.ndimage.label`) of voxels
    ``≥ p/100 · max`` that contains that voxel (the common fixed-threshold segmentation, e.g.
    41 % or 50 % of SUVmax; Boellaard et al., Eur J Nucl Med Mol Imaging 2015;42:328).

    Parameters
    ----------
    image : Image
        Image to segment.
    seed_xyz_mm : sequence of 3 float
        World position ``(x, y, z)`` in mm near the lesion.
    percent_of_local_max : float
        Threshold in percent of the local maximum, in (0, 100].
    search_radius_mm : float
        Radius in mm (≥ 0) of the sphere around the seed searched for the maximum; 0 uses the
        voxel nearest the seed.
    name : str, keyword-only
        VOI name.
    confine_to_search : bool, keyword-only
        Keep only voxels inside the search sphere (stops leaks into a hot neighbour).
    connectivity : {1, 2, 3}, keyword-only
        Neighbourhood for connectedness: faces (1, default), edges (2) or corners (3).

    Raises
    ------
    GeometryError
        The seed lies outside the image.
    InputError
        Threshold outside (0, 100], negative radius, bad connectivity, or a local maximum ≤ 0.
    """
    if not isinstance(image, Image):
        raise InputError(f"image must be a recon.Image, got {type(image).__name__}")
    grid = image.grid
    seed = xyz(seed_xyz_mm, "seed_xyz_mm")
    p = finite(percent_of_local_max, "percent_of_local_max")
    if not 0 < p <= 100:
        raise InputError(f"percent_of_local_max must be in (0, 100], got {p}")
    radius = non_negative(search_radius_mm, "search_radius_mm", "mm")
    if connectivity not in (1, 2, 3):
        raise InputError(f"connectivity must be 1, 2 or 3, got {connectivity!r}")
    idx = grid.world_to_index(seed)
    if np.any(idx < -0.5) or np.any(idx > np.asarray(grid.shape) - 0.5):
        raise GeometryError(f"seed {tuple(seed)} mm lies outside the image grid")
    data = np.asarray(image, dtype=np.float64)
    z, y, x = grid.meshgrid_mm()
    dist2 = (x - seed[0]) ** 2 + (y - seed[1]) ** 2 + (z - seed[2]) ** 2
    search = dist2 <= radius * radius
    nearest = tuple(np.clip(np.rint(idx).astype(int), 0, np.asarray(grid.shape) - 1))
    search[nearest] = True
    masked = np.where(search, data, -np.inf)
    peak_index = np.unravel_index(int(np.argmax(masked)), grid.shape)
    local_max = float(data[peak_index])
    if not local_max > 0:
        raise InputError(
            f"the local maximum near the seed is {local_max:.4g}; an iso-contour needs uptake"
        )
    above = data >= p / 100.0 * local_max
    if confine_to_search:
        above &= search
    structure = ndimage.generate_binary_structure(3, connectivity)
    labels, _ = ndimage.label(above, structure=structure)
    return Voi(labels == labels[peak_index], grid, name)


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VoiStats:
    """Statistics of an image in a VOI.

    Attributes
    ----------
    name : str
        VOI name.
    units : str
        Units of the image values (e.g. ``"Bq/mL"``).
    n_voxels : int
        Voxels in the VOI.
    volume_ml : float
        VOI volume in mL.
    mean, sd, min, max : float
        Of the voxel values; ``sd`` is the sample standard deviation (ddof = 1; 0 for one voxel).
    peak : float
        Highest mean of a 1 mL sphere whose centre lies in the VOI (see :func:`voi_stats`).
    peak_xyz_mm : tuple of float
        World ``(x, y, z)`` of that sphere's centre, in mm.
    total : float
        ``mean × volume_ml``: total activity in Bq for a Bq/mL image; otherwise image units × mL.
    total_units : str
        ``"Bq"`` for Bq/mL images, else ``"<units>·mL"``.
    """

    name: str
    units: str
    n_voxels: int
    volume_ml: float
    mean: float
    sd: float
    min: float
    max: float
    peak: float
    peak_xyz_mm: tuple[float, float, float]
    total: float
    total_units: str

    @property
    def cv(self) -> float:
        """Coefficient of variation ``sd / mean`` (NaN when the mean is 0)."""
        return self.sd / self.mean if self.mean != 0 else math.nan

    def as_dict(self) -> dict[str, Any]:
        """Flat dict for tables (``peak_xyz_mm`` split into x, y, z)."""
        return {
            "voi": self.name,
            "units": self.units,
            "n_voxels": self.n_voxels,
            "volume_ml": self.volume_ml,
            "mean": self.mean,
            "sd": self.sd,
            "min": self.min,
            "max": self.max,
            "peak": self.peak,
            "peak_x_mm": self.peak_xyz_mm[0],
            "peak_y_mm": self.peak_xyz_mm[1],
            "peak_z_mm": self.peak_xyz_mm[2],
            "total": self.total,
            "total_units": self.total_units,
        }


def _sphere_kernel(voxel_size_mm: tuple[float, float, float], volume_ml: float) -> np.ndarray:
    """Weights of a sphere of ``volume_ml`` on voxels: volume fraction inside, summing to 1."""
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    lo, hi = _KERNEL_SUPERSAMPLE_RANGE
    n = int(min(max(math.ceil(max(voxel_size_mm) / _KERNEL_SUBSAMPLE_MM), lo), hi))
    sub = (np.arange(n) + 0.5) / n - 0.5
    axes = []
    for v in voxel_size_mm:
        half = int(math.ceil(radius / v + 0.5))
        centres = np.arange(-half, half + 1) * v
        axes.append((centres[:, None] + sub[None, :] * v).ravel())
    z, y, x = np.meshgrid(*axes, indexing="ij")
    inside = (z * z + y * y + x * x <= radius * radius).astype(np.float64)
    shape = tuple(len(a) // n for a in axes)
    w = inside.reshape(shape[0], n, shape[1], n, shape[2], n).sum(axis=(1, 3, 5))
    return w / w.sum()


def voi_stats(image: Image, voi: Voi, *, peak_volume_ml: float = PEAK_SPHERE_ML) -> VoiStats:
    """Mean, SD, min, max, peak, volume and total of ``image`` in ``voi``.

    The peak is the largest mean of a sphere of ``peak_volume_ml`` (1 mL, radius 6.20 mm, as
    PERCIST's SULpeak) over all positions whose centre is a voxel of the VOI; the sphere may reach
    outside the VOI. It is computed by correlating the image with the sphere's voxel weights
    (fraction of each voxel inside the sphere, supersampled) and taking the maximum over the VOI.
    Where the sphere reaches past the image edge the mean is over the part inside the image.

    Parameters
    ----------
    image : Image
        The image (e.g. Bq/mL or SUV).
    voi : Voi
        On the same grid as ``image``.
    peak_volume_ml : float, keyword-only
        Volume of the peak sphere in mL (default 1).

    Returns
    -------
    VoiStats

    Raises
    ------
    GeometryError
        The VOI is on another grid.
    InputError
        ``image`` is not an Image, or has non-finite values in the VOI or within the peak
        sphere's reach of it.
    """
    if not isinstance(image, Image):
        raise InputError(f"image must be a recon.Image, got {type(image).__name__}")
    if not isinstance(voi, Voi):
        raise InputError(f"voi must be a recon.quant.Voi, got {type(voi).__name__}")
    check_same_grid(image.grid, voi.grid, "image", f"VOI {voi.name!r}")
    peak_ml = positive(peak_volume_ml, "peak_volume_ml", "mL")
    data = np.asarray(image, dtype=np.float64)
    values = data[voi.mask]
    n = values.size
    mean = float(values.mean())
    sd = float(values.std(ddof=1)) if n > 1 else 0.0

    kernel = _sphere_kernel(image.grid.voxel_size_mm, peak_ml)
    # Work on the VOI's bounding box grown by the kernel half-width: same result, less work.
    pad = np.asarray(kernel.shape) // 2
    where = np.argwhere(voi.mask)
    lo = np.maximum(where.min(axis=0) - pad, 0)
    hi = np.minimum(where.max(axis=0) + pad + 1, np.asarray(image.grid.shape))
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    sub = data[box]
    if not np.all(np.isfinite(sub)):
        raise InputError(
            f"image has NaN or infinite values in or within the peak radius of VOI {voi.name!r}"
        )
    # Every VOI voxel's sphere lies inside the grown box or past the image edge, so correlating
    # the box with zeros outside it gives the in-image sum; dividing by the kernel weight that
    # fell inside (the same correlation of ones) gives the mean over the in-image part.
    num = ndimage.correlate(sub, kernel, mode="constant", cval=0.0)
    den = ndimage.correlate(np.ones_like(sub), kernel, mode="constant", cval=0.0)
    local_mean = num / den
    sub_mask = voi.mask[box]
    candidates = np.where(sub_mask, local_mean, -np.inf)
    best = np.unravel_index(int(np.argmax(candidates)), sub.shape)
    peak = float(local_mean[best])
    peak_xyz = image.grid.index_to_world(np.asarray(best) + lo)

    volume = n * image.grid.voxel_volume_ml
    calibrated = image.units == "Bq/mL"
    return VoiStats(
        name=voi.name,
        units=image.units,
        n_voxels=n,
        volume_ml=volume,
        mean=mean,
        sd=sd,
        min=float(values.min()),
        max=float(values.max()),
        peak=peak,
        peak_xyz_mm=(float(peak_xyz[0]), float(peak_xyz[1]), float(peak_xyz[2])),
        total=mean * volume,
        total_units="Bq" if calibrated else f"{image.units}·mL",
    )


# --------------------------------------------------------------------------------------------
# partial-volume recovery of a sphere
# --------------------------------------------------------------------------------------------


def recovery_coefficient(diameter_mm: float, fwhm_mm: float, kind: str = "mean") -> float:
    """Recovery coefficient of a uniform sphere blurred by an isotropic 3-D Gaussian.

    Cold background, true concentration 1: RC is what the blurred image shows.

    Recovery coefficients of spheres as a partial-volume measure: Hoffman, Huang & Phelps, J Comput
    Assist Tomogr 1979;3:299; Kessler, Ellis & Eden, J Comput Assist Tomogr 1984;8:514. The forms
    below are derived here.

    ``kind="max"``: the value at the sphere centre, the Gaussian's mass inside the ball: for a
    radius ``R`` and Gaussian SD ``σ`` (FWHM = 2√(2 ln 2) σ) this is the CDF of the χ distribution
    with 3 degrees of freedom at ``R/σ``, in closed form

        RC_max = erf(u/√2) − √(2/π) · u · exp(−u²/2),     u = R / σ.

    ``kind="mean"``: the mean over the sphere (a VOI equal to the true sphere). Averaging the
    blurred image over the ball is ``(1/V) ∬ 1_B(x) 1_B(y) g(x − y) dx dy = (1/V) ∫ g(r) V∩(r) d³r``
    with ``V∩(r) = π/12 · (4R + r)(2R − r)²`` the overlap volume of two balls of radius ``R`` whose
    centres are ``r`` apart (0 ≤ r ≤ 2R). So

        RC_mean = (1/V) ∫₀^{2R} 4π r² · (2πσ²)^(−3/2) e^(−r²/2σ²) · π/12 (4R + r)(2R − r)² dr,

    evaluated by adaptive quadrature (:func:`scipy.integrate.quad`, relative error < 1e-10).

    Parameters
    ----------
    diameter_mm : float
        Sphere diameter in mm (> 0).
    fwhm_mm : float
        System resolution FWHM in mm (≥ 0; 0 gives RC = 1).
    kind : {"mean", "max"}
        Which recovery coefficient.

    Returns
    -------
    float
        RC in (0, 1].
    """
    r = positive(diameter_mm, "diameter_mm", "mm") / 2.0
    fwhm = non_negative(fwhm_mm, "fwhm_mm", "mm")
    if kind not in ("mean", "max"):
        raise InputError(f"kind must be 'mean' or 'max', got {kind!r}")
    if fwhm == 0:
        return 1.0
    sigma = fwhm / _FWHM_PER_SIGMA
    if kind == "max":
        u = r / sigma
        return float(
            special.erf(u / math.sqrt(2.0)) - math.sqrt(2.0 / math.pi) * u * math.exp(-u * u / 2)
        )
    volume = 4.0 / 3.0 * math.pi * r**3
    norm = (2.0 * math.pi * sigma * sigma) ** -1.5

    def integrand(d: float) -> float:
        overlap = math.pi / 12.0 * (4.0 * r + d) * (2.0 * r - d) ** 2
        return 4.0 * math.pi * d * d * norm * math.exp(-d * d / (2 * sigma * sigma)) * overlap

    # The Gaussian is negligible beyond ~40 σ; cutting there keeps quad on the part that matters.
    upper = min(2.0 * r, 40.0 * sigma)
    value, _ = quad(integrand, 0.0, upper, epsabs=0.0, epsrel=1e-12, limit=200)
    return float(value / volume)


def rc_corrected_mean(measured_mean: float, rc: float, background: float = 0.0) -> float:
    """Partial-volume-corrected mean of a sphere.

    A sphere of concentration ``C`` in a background ``B`` is seen with mean
    ``m = RC · C + (1 − RC) · B`` (linearity of the blur: the image is ``B`` everywhere plus
    ``C − B`` in the sphere). Hence ``C = (m − (1 − RC) · B) / RC``.

    Parameters
    ----------
    measured_mean : float
        Mean in the sphere VOI (any units).
    rc : float
        Recovery coefficient in (0, 1] (e.g. :func:`recovery_coefficient` ``kind="mean"``).
    background : float
        Background concentration in the same units (default 0).

    Returns
    -------
    float
        Estimated true concentration.
    """
    m = finite(measured_mean, "measured_mean")
    c = finite(rc, "rc")
    if not 0 < c <= 1:
        raise InputError(f"rc must be in (0, 1], got {rc!r}")
    b = finite(background, "background")
    return (m - (1.0 - c) * b) / c
