"""Image-space resolution model of PET: a Gaussian blur ``G`` inside the model, ``P → P·G``.

The system models (:class:`recon.PetSinogramModel`, :class:`recon.PetLorSinogramModel`,
:class:`recon.PetListmodeModel`) take ``resolution=ImageResolution(...)`` and then compute
``ȳ = m ⊙ (P G x) + a``: the activity image is blurred before it is projected, the back
projection is blurred by ``Gᵀ`` after it, and the sensitivity becomes ``Gᵀ Pᵀ m``. This is the
image-based resolution model of e.g. Reader et al. 2003 (IEEE TMI 22:1) and of the vendors' PSF
reconstructions: the detector blur (crystal size, inter-crystal scatter, parallax), positron range
and photon non-collinearity lumped into one shift-invariant (or radially varying) Gaussian.

The blur
--------
``G`` is separable: one 1-D kernel along each axis, with zero boundaries (activity blurred out of
the grid is lost, as it would be out of the field of view). Each kernel is symmetric and applied
with zero padding, so its matrix is symmetric: ``G`` is its own adjoint for a shift-invariant blur,
and the adjoint of the radially varying blur below is exact as well (no approximation in
``Gᵀ``; the contract test of every model checks ``<P G x, y> = <x, Gᵀ Pᵀ y>``).

A FWHM in mm becomes a standard deviation ``σ = FWHM / (2√(2 ln 2))`` in voxels of each axis, so
anisotropic voxels are handled. The weights of a kernel are a Gaussian sampled at the voxel
centres, cut at 4 σ and normalised to sum 1 (the blur conserves counts away from the edges), with
the sampling width chosen so that the kernel's variance is exactly ``σ²``: a plain sampled Gaussian
is too narrow when σ is below about 0.7 voxel (at 0.42 voxel, a 4 mm FWHM on 4 mm voxels, its
variance is 40 % short), and the variance is what a blur adds (blurs in series add variances).
So the second moment of a blurred point source equals the setting on any grid; its FWHM read at
half maximum (as NEMA NU 2 does, interpolating linearly between samples) agrees with the setting
to 1 % once σ is 1.4 voxels or more (4 % at 1 voxel, where the interpolation itself is coarse).

Radially growing transaxial FWHM
--------------------------------
Off the scanner axis, the transaxial resolution degrades (parallax: depth of interaction in long
crystals). With ``radius_mm`` and ``fwhm_transaxial_at_radius_mm`` set, the transaxial FWHM at
distance ``r`` from the scanner axis (world ``x = y = 0``) is

    FWHM(r)² = FWHM(0)² + (FWHM(R)² − FWHM(0)²) · (r / R)²,

an added blur growing linearly with ``r`` (as parallax does, to first order) in quadrature with the
on-axis one. It is made from fixed blurs ``G_k`` of widths ``σ_k`` spanning the grid's radii
(neighbouring widths at most 10 % apart) and per-voxel weights ``w_k(r) ≥ 0``, ``Σ_k w_k = 1``:

    G x = A Σ_k G_k (w_k ⊙ x),        Gᵀ y = Σ_k w_k ⊙ G_k (A y),

``A`` the axial blur. The weights sit on the *source* voxel, so a point source at radius ``r``
spreads into a mixture of the two Gaussians whose variances bracket ``σ(r)²``, weighted (linearly
in variance) so that the mixture's variance is exactly ``σ(r)²``, and its counts are conserved.
(The other order, ``Σ_k w_k ⊙ G_k x``, weights by where the blurred counts land: it neither
conserves counts nor gives a point source a definite width.) The transaxial blur is isotropic
(radial and tangential resolution are not told apart), and the axial FWHM does not vary. The
mixture's FWHM read at half maximum is within 0.6 % of the Gaussian of the same variance.

Published resolution (presets)
------------------------------
The NEMA NU 2 resolution of a scanner is measured on an FBP reconstruction of a point source, so it
holds positron range (F-18), non-collinearity and the detector blur, but also the reconstruction's
own blur. :meth:`ImageResolution.from_nema` takes it, to first order, as the image-space kernel (as
vendors' image-space PSF models are fitted to point-source images): radial and tangential FWHM are
combined in quadrature into the isotropic transaxial FWHM, and the 1 cm and 10 cm figures fix the
growth with radius. That kernel is somewhat wider than the blur the projection data carry, so
reconstructions with it can show edge overshoot; other isotopes (the positron range of Ga-68 or
Zr-89) or a measured kernel call for an explicit ``ImageResolution``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, SupportsFloat

import numpy as np

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid

__all__ = [
    "ImageResolution",
    "ResolutionOperator",
    "add_resolution_info",
    "resolution_operator",
]

_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# Kernels are cut at this many standard deviations (the tail beyond 4 σ holds 6e-5 of a Gaussian).
_TRUNCATE_SIGMAS = 4.0
# Largest ratio between neighbouring widths of the radially growing blur: a mixture of two
# Gaussians whose widths differ by 10 % has a half-maximum width within 0.6 % of the Gaussian of
# the same variance.
_NODE_RATIO = 1.1
# Widths below this (in voxels) are no blur at all.
_NO_BLUR_VOXELS = 1e-3
# NEMA NU 2 measures the resolution at 1 cm and 10 cm from the axis.
_NEMA_NEAR_MM = 10.0
_NEMA_FAR_MM = 100.0


def _fwhm(value: object, name: str, *, optional: bool = False) -> float | None:
    """``value`` as a finite non-negative length in mm (None allowed when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool | str) or not isinstance(value, SupportsFloat):
        raise GeometryError(f"{name} must be a length in mm, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise GeometryError(f"{name} must be a finite length of 0 mm or more, got {value!r}")
    return number


@dataclass(frozen=True)
class ImageResolution:
    """A Gaussian image-space resolution model (see the module docstring for the model).

    Parameters
    ----------
    fwhm_transaxial_mm : float
        Transaxial FWHM in mm on the scanner axis (in x and y).
    fwhm_axial_mm : float, optional
        Axial FWHM in mm; default: ``fwhm_transaxial_mm`` (an isotropic blur).
    radius_mm : float, optional
        A distance from the scanner axis, mm, at which the transaxial FWHM is
        ``fwhm_transaxial_at_radius_mm``; with both set, the transaxial FWHM grows with the radius
        ``r`` as ``FWHM(r)² = FWHM(0)² + (FWHM(R)² − FWHM(0)²)(r/R)²``. Default: no growth.
    fwhm_transaxial_at_radius_mm : float, optional
        Transaxial FWHM in mm at ``radius_mm`` (at least ``fwhm_transaxial_mm``).

    Raises
    ------
    GeometryError
        A FWHM negative or not finite, a radius not positive, only one of the two growth fields,
        or a FWHM shrinking with the radius.

    Examples
    --------
    >>> psf = ImageResolution(4.5)                      # isotropic, 4.5 mm
    >>> psf = ImageResolution(4.1, fwhm_axial_mm=4.5)   # transaxial and axial differ
    >>> psf = ImageResolution(4.1, 4.5, radius_mm=100.0, fwhm_transaxial_at_radius_mm=5.0)
    """

    fwhm_transaxial_mm: float
    fwhm_axial_mm: float | None = None
    radius_mm: float | None = None
    fwhm_transaxial_at_radius_mm: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        transaxial = _fwhm(self.fwhm_transaxial_mm, "fwhm_transaxial_mm")
        axial = _fwhm(self.fwhm_axial_mm, "fwhm_axial_mm", optional=True)
        set_(self, "fwhm_transaxial_mm", transaxial)
        set_(self, "fwhm_axial_mm", transaxial if axial is None else axial)
        far = _fwhm(self.fwhm_transaxial_at_radius_mm, "fwhm_transaxial_at_radius_mm",
                    optional=True)  # fmt: skip
        radius = _fwhm(self.radius_mm, "radius_mm", optional=True)
        if (radius is None) != (far is None):
            raise GeometryError(
                "a transaxial FWHM growing with the radius needs both radius_mm and "
                "fwhm_transaxial_at_radius_mm (or neither, for a constant FWHM)"
            )
        if radius is not None and far is not None:
            assert transaxial is not None
            if radius == 0:
                raise GeometryError("radius_mm must be a positive distance from the scanner axis")
            if far < transaxial:
                raise GeometryError(
                    f"fwhm_transaxial_at_radius_mm ({far} mm) is below the FWHM on the axis "
                    f"({transaxial} mm); the model only lets the FWHM grow with the radius"
                )
            if transaxial == 0:
                raise GeometryError(
                    "a transaxial FWHM growing with the radius needs a positive FWHM on the axis"
                )
        set_(self, "radius_mm", radius)
        set_(self, "fwhm_transaxial_at_radius_mm", far)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_nema(
        cls,
        transaxial_1cm_mm: float,
        axial_1cm_mm: float,
        transaxial_10cm_mm: float | None = None,
    ) -> ImageResolution:
        """The kernel of a NEMA NU 2 system resolution (first-order model, module docstring).

        Parameters
        ----------
        transaxial_1cm_mm, axial_1cm_mm : float
            Transaxial and axial FWHM in mm at 1 cm from the axis (combine a radial and a
            tangential figure in quadrature, ``√((r² + t²)/2)``, for the transaxial one).
        transaxial_10cm_mm : float, optional
            Transaxial FWHM in mm at 10 cm; with it, the FWHM grows with the radius through both
            points (extrapolated to the axis); without it, it is constant.

        Raises
        ------
        GeometryError
            Invalid figures, or a 10 cm figure below the 1 cm one.
        """
        near = _fwhm(transaxial_1cm_mm, "transaxial_1cm_mm")
        axial = _fwhm(axial_1cm_mm, "axial_1cm_mm")
        far = _fwhm(transaxial_10cm_mm, "transaxial_10cm_mm", optional=True)
        assert near is not None
        if far is None:
            return cls(near, axial)
        if far < near:
            raise GeometryError(
                f"the 10 cm transaxial FWHM ({far} mm) is below the 1 cm one ({near} mm)"
            )
        growth = (far**2 - near**2) / (_NEMA_FAR_MM**2 - _NEMA_NEAR_MM**2)  # mm² per mm²
        on_axis = math.sqrt(near**2 - growth * _NEMA_NEAR_MM**2)
        return cls(on_axis, axial, radius_mm=_NEMA_FAR_MM, fwhm_transaxial_at_radius_mm=far)

    # ------------------------------------------------------------------ description
    @property
    def radially_varying(self) -> bool:
        """True when the transaxial FWHM grows with the distance from the scanner axis."""
        return self.radius_mm is not None and self.fwhm_transaxial_at_radius_mm != (
            self.fwhm_transaxial_mm
        )

    def transaxial_fwhm_mm(self, radius_mm: Any) -> Any:
        """Transaxial FWHM in mm at distance(s) ``radius_mm`` from the scanner axis."""
        r = np.asarray(radius_mm, dtype=np.float64)
        return np.sqrt(self._variance_mm2(r)) * _FWHM_PER_SIGMA

    def _variance_mm2(self, radius_mm: np.ndarray) -> np.ndarray:
        """Transaxial variance σ² in mm² at ``radius_mm``."""
        sigma0 = float(self.fwhm_transaxial_mm) / _FWHM_PER_SIGMA
        if not self.radially_varying:
            return np.full(np.shape(radius_mm), sigma0**2)
        assert self.radius_mm is not None and self.fwhm_transaxial_at_radius_mm is not None
        sigma_far = self.fwhm_transaxial_at_radius_mm / _FWHM_PER_SIGMA
        growth = (sigma_far**2 - sigma0**2) / self.radius_mm**2
        return sigma0**2 + growth * np.square(radius_mm)

    def describe(self) -> str:
        """One line naming the model, e.g. for a reconstruction's record."""
        text = f"Gaussian PSF, FWHM {self.fwhm_transaxial_mm:.3g} mm transaxial"
        if self.radially_varying:
            text += (
                f" on the axis growing to {self.fwhm_transaxial_at_radius_mm:.3g} mm at "
                f"{self.radius_mm:.3g} mm"
            )
        return text + f", {self.fwhm_axial_mm:.3g} mm axial"

    # ------------------------------------------------------------------ operator
    def bind(self, grid: ImageGrid, xp: ModuleType = np) -> ResolutionOperator:
        """The blur on ``grid`` for arrays of module ``xp`` (numpy or cupy)."""
        return ResolutionOperator(self, grid, xp)

    def apply(self, image: Any, grid: ImageGrid, xp: ModuleType | None = None) -> Any:
        """``G x`` for one image of ``grid.shape`` (``xp`` default: the image's array module).

        Models keep a bound operator (:meth:`bind`) instead: this sets the kernels up each call.
        """
        module = _array_module(image) if xp is None else xp
        return self.bind(grid, module).apply(image)

    def adjoint(self, image: Any, grid: ImageGrid, xp: ModuleType | None = None) -> Any:
        """``Gᵀ y`` for one image of ``grid.shape`` (``xp`` default: the image's array module)."""
        module = _array_module(image) if xp is None else xp
        return self.bind(grid, module).adjoint(image)


def _array_module(array: Any) -> ModuleType:
    if isinstance(array, np.ndarray):
        return np
    if type(array).__module__.startswith("cupy"):
        import cupy

        return cupy
    raise InputError(f"an image must be a numpy or CuPy array, got {type(array).__name__}")


def _ndimage(xp: ModuleType) -> ModuleType:
    """``scipy.ndimage`` for numpy arrays, ``cupyx.scipy.ndimage`` for CuPy arrays."""
    if xp is np:
        import scipy.ndimage

        return scipy.ndimage
    import cupyx.scipy.ndimage

    return cupyx.scipy.ndimage


def _gaussian_kernel(sigma_voxels: float) -> np.ndarray:
    """Symmetric weights (odd length, sum 1, float64) of a Gaussian of standard deviation
    ``sigma_voxels`` whose variance is exactly ``sigma_voxels²`` (voxels²).

    A Gaussian sampled at integer offsets, cut at 4 σ, with its sampling width solved for so that
    the normalised weights have the requested variance (module docstring).
    """
    from scipy.optimize import brentq

    sigma = float(sigma_voxels)
    if sigma < _NO_BLUR_VOXELS:
        return np.ones(1)
    radius = max(1, math.ceil(_TRUNCATE_SIGMAS * max(sigma, 0.5)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)

    def weights(width: float) -> np.ndarray:
        w = np.exp(-0.5 * np.square(offsets / width))
        return w / w.sum()

    def excess(width: float) -> float:
        return float(weights(width) @ np.square(offsets)) - sigma**2

    # The variance rises monotonically with the width (an exponential family in offset²), from 0
    # towards radius(radius + 1)/3, which is above σ² for radius ≥ 4σ.
    width = brentq(excess, 1e-3, 2.0 * sigma + 1.0, xtol=1e-12, rtol=1e-12)
    return weights(width)


class ResolutionOperator:
    """:class:`ImageResolution` bound to a grid and an array module: ``G`` and its adjoint.

    The kernels and the radial weights are made once, on the device; :meth:`apply` and
    :meth:`adjoint` run only separable filters (``scipy.ndimage.correlate1d`` or its CuPy twin)
    and products, so an iteration makes no host transfer.

    Parameters
    ----------
    resolution : ImageResolution
    grid : ImageGrid
    xp : module
        ``numpy`` or ``cupy``: the arrays the operator takes and returns.
    """

    def __init__(self, resolution: ImageResolution, grid: ImageGrid, xp: ModuleType) -> None:
        if not isinstance(resolution, ImageResolution):
            raise GeometryError(
                f"resolution must be a recon ImageResolution, got {type(resolution).__name__}"
            )
        if not isinstance(grid, ImageGrid):
            raise GeometryError("grid must be an ImageGrid")
        self.resolution = resolution
        self.grid = grid
        self.xp = xp
        self._ndimage = _ndimage(xp)
        vz, vy, vx = grid.voxel_size_mm
        self._axial = self._device_kernel(float(resolution.fwhm_axial_mm or 0.0) / vz)
        variance = resolution._variance_mm2(self._radius_mm())
        sigmas = _node_sigmas(float(np.sqrt(variance.min())), float(np.sqrt(variance.max())))
        self._transaxial = [
            (self._device_kernel(s * _FWHM_PER_SIGMA / vy),
             self._device_kernel(s * _FWHM_PER_SIGMA / vx))
            for s in sigmas
        ]  # fmt: skip
        self._weights: list[Any] | None = None
        if len(sigmas) > 1:
            host = _mixture_weights(variance, np.square(sigmas))
            used = [k for k in range(len(sigmas)) if host[k].any()]
            self._transaxial = [self._transaxial[k] for k in used]
            self._weights = [xp.asarray(host[k], dtype=np.float32) for k in used]

    @property
    def n_blurs(self) -> int:
        """Fixed-width transaxial blurs the operator mixes (1 without radial growth)."""
        return len(self._transaxial)

    def _radius_mm(self) -> np.ndarray:
        """Distance in mm of each (y, x) voxel centre from the scanner axis, (ny, nx)."""
        y = self.grid.axis_mm(1)[:, None]
        x = self.grid.axis_mm(2)[None, :]
        return np.hypot(x, y)

    def _device_kernel(self, fwhm_voxels: float) -> Any:
        """The weights of a FWHM in voxels on the device (None: no blur along that axis)."""
        weights = _gaussian_kernel(fwhm_voxels / _FWHM_PER_SIGMA)
        if weights.size == 1:
            return None
        dtype = np.float64 if self.xp is np else np.float32
        return self.xp.asarray(weights, dtype=dtype)

    def _along(self, image: Any, kernel: Any, axis: int) -> Any:
        if kernel is None:
            return image
        return self._ndimage.correlate1d(image, kernel, axis=axis, mode="constant", cval=0.0)

    def _blur_transaxial(self, image: Any, k: int) -> Any:
        ky, kx = self._transaxial[k]
        return self._along(self._along(image, ky, 1), kx, 2)

    def _checked(self, image: Any) -> Any:
        if tuple(getattr(image, "shape", ())) != self.grid.shape:
            raise InputError(
                f"the resolution model takes images of shape {self.grid.shape}, got "
                f"{tuple(getattr(image, 'shape', ()))}"
            )
        return image.astype(np.float32, copy=False)

    def apply(self, image: Any) -> Any:
        """``G x``: the image blurred (float32, same shape and module)."""
        x = self._checked(image)
        if self._weights is None:
            out = self._blur_transaxial(x, 0)
        else:
            out = self.xp.zeros_like(x)
            for k, weight in enumerate(self._weights):
                out += self._blur_transaxial(x * weight, k)
        out = self._along(out, self._axial, 0)
        return out if out is not x else out.copy()

    def adjoint(self, image: Any) -> Any:
        """``Gᵀ y``, the exact adjoint of :meth:`apply` (float32, same shape and module)."""
        y = self._along(self._checked(image), self._axial, 0)
        if self._weights is None:
            out = self._blur_transaxial(y, 0)
        else:
            out = self.xp.zeros_like(y)
            for k, weight in enumerate(self._weights):
                out += weight * self._blur_transaxial(y, k)
        return out if out is not image else out.copy()


def _node_sigmas(sigma_min: float, sigma_max: float) -> np.ndarray:
    """Widths (mm) from ``sigma_min`` to ``sigma_max``, neighbours at most 10 % apart."""
    if sigma_max <= sigma_min * (1.0 + 1e-9):
        return np.array([sigma_max])
    n = math.ceil(math.log(sigma_max / sigma_min) / math.log(_NODE_RATIO)) + 1
    return sigma_min * (sigma_max / sigma_min) ** (np.arange(n) / (n - 1))


def _mixture_weights(variance: np.ndarray, node_variances: np.ndarray) -> np.ndarray:
    """Weights ``(n_nodes, *variance.shape)``: each voxel mixes the two nodes that bracket its
    variance, linearly in variance, so that the mixture has exactly that variance."""
    v = np.clip(variance, node_variances[0], node_variances[-1])
    upper = np.clip(np.searchsorted(node_variances, v, side="right"), 1, node_variances.size - 1)
    lower = upper - 1
    fraction = (v - node_variances[lower]) / (node_variances[upper] - node_variances[lower])
    weights = np.zeros((node_variances.size, *variance.shape))
    np.put_along_axis(weights, lower[None], (1.0 - fraction)[None], axis=0)
    np.put_along_axis(weights, upper[None], fraction[None], axis=0)
    return weights


def resolution_operator(
    resolution: ImageResolution | None, grid: ImageGrid, xp: ModuleType
) -> ResolutionOperator | None:
    """The bound blur of a model's ``resolution=`` argument (None: no resolution model).

    Raises
    ------
    GeometryError
        ``resolution`` is neither None nor an :class:`ImageResolution`.
    """
    if resolution is None:
        return None
    if not isinstance(resolution, ImageResolution):
        raise GeometryError(
            "resolution must be None or a recon.ImageResolution (e.g. ImageResolution(4.5) or "
            f"scanner.resolution), got {resolution!r:.80}"
        )
    return ResolutionOperator(resolution, grid, xp)


def add_resolution_info(info: dict[str, Any], resolution: ImageResolution | None) -> dict[str, Any]:
    """``info`` (a reconstruction's record) with ``resolution_model`` set to the description of
    ``resolution`` when there is one, so that images say which model made them."""
    if resolution is not None:
        info.setdefault("resolution_model", resolution.describe())
    return info
