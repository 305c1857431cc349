"""Energy windows and window-based scatter estimates for SPECT projections.

The estimates are additive terms ``a`` of the model ``ȳ = m ⊙ (P x) + a``: counts expected in the
photopeak window from scattered photons, per projection bin, shape ``(view, v, u)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from recon.errors import InputError, PhysicsError

__all__ = ["EnergyWindow", "dew_scatter", "tew_scatter"]


@dataclass(frozen=True)
class EnergyWindow:
    """An acquisition energy window.

    Parameters
    ----------
    name : str
        Label, e.g. ``"photopeak"`` or the DICOM Energy Window Name.
    lower_kev, upper_kev : float
        Window limits in keV, ``0 < lower_kev < upper_kev``.

    Raises
    ------
    PhysicsError
        The limits are not finite or not ordered as ``0 < lower < upper``.
    """

    name: str
    lower_kev: float
    upper_kev: float

    def __post_init__(self) -> None:
        lower, upper = float(self.lower_kev), float(self.upper_kev)
        if not (math.isfinite(lower) and math.isfinite(upper) and 0 < lower < upper):
            raise PhysicsError(
                f"energy window {self.name!r} [{self.lower_kev}, {self.upper_kev}] keV is "
                "impossible; limits must satisfy 0 < lower_kev < upper_kev"
            )

    @classmethod
    def centered(cls, name: str, center_kev: float, width_percent: float) -> EnergyWindow:
        """Window ``width_percent`` % wide centred on ``center_kev`` (140 keV, 20 % → 126-154)."""
        half = 0.5 * float(width_percent) / 100.0 * float(center_kev)
        return cls(name, float(center_kev) - half, float(center_kev) + half)

    @property
    def width_kev(self) -> float:
        """Window width ``upper_kev − lower_kev`` in keV."""
        return float(self.upper_kev) - float(self.lower_kev)

    @property
    def center_kev(self) -> float:
        """Window centre in keV."""
        return 0.5 * (float(self.lower_kev) + float(self.upper_kev))

    def contains(self, energy_kev: float) -> bool:
        """True when ``energy_kev`` lies in ``[lower_kev, upper_kev]``."""
        return float(self.lower_kev) <= float(energy_kev) <= float(self.upper_kev)


def _width(value: float | EnergyWindow | None, name: str) -> float:
    if isinstance(value, EnergyWindow):
        return value.width_kev
    if value is None:
        raise PhysicsError(f"{name} is needed (a width in keV or an EnergyWindow)")
    width = float(value)
    if not (math.isfinite(width) and width > 0):
        raise PhysicsError(f"{name} must be a positive window width in keV, got {value}")
    return width


def _counts(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 numpy array of shape (view, v, u), finite and non-negative."""
    if type(value).__module__.split(".")[0] == "cupy":
        # Window estimates are computed once per acquisition on the CPU; the model moves `a`.
        value = value.get()
    array = np.asarray(value)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InputError(
            f"{name} must hold integer or real counts, got dtype {array.dtype}; "
            "pass the projection data as a numeric array"
        )
    if array.ndim != 3:
        raise InputError(
            f"{name} must have shape (view, v, u), got {array.ndim} dimensions {array.shape}; "
            "for a single view add the view axis with counts[None]"
        )
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or infinite values; check the energy-window frames")
    if np.any(array < 0):
        raise InputError(
            f"{name} has negative counts (minimum {array.min()}); pass raw window counts, "
            "not background-subtracted or corrected data"
        )
    return array


def _smooth(estimate: np.ndarray, smooth_sigma_px: float | None) -> np.ndarray:
    if smooth_sigma_px is None:
        return estimate.astype(np.float32)
    sigma = float(smooth_sigma_px)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise InputError(
            f"smooth_sigma_px must be a non-negative number of pixels, got {smooth_sigma_px}"
        )
    if sigma > 0:
        # Smooth within each view only (sigma 0 along the view axis): neighbouring views are
        # different projections, and mixing them would blur the object's angular information.
        estimate = gaussian_filter(estimate, sigma=(0.0, sigma, sigma), mode="reflect")
    return estimate.astype(np.float32)


def tew_scatter(
    lower_counts: Any,
    upper_counts: Any | None,
    lower_width_kev: float | EnergyWindow,
    upper_width_kev: float | EnergyWindow | None,
    peak_width_kev: float | EnergyWindow,
    smooth_sigma_px: float | None = None,
) -> np.ndarray:
    """Triple-energy-window (TEW) estimate of the scatter counts in the photopeak window.

    ``S = (C_l / W_l + C_u / W_u) · W_p / 2`` (Ogawa et al., "A practical method for
    position-dependent Compton-scatter correction in single photon emission CT", IEEE Trans. Med.
    Imaging 10 (1991) 408-412): the scatter spectrum under the photopeak is approximated by the
    trapezoid whose heights at the peak edges are the count densities in two narrow windows
    adjoining the peak. With ``upper_counts=None`` the upper height is taken as 0 (common for
    Tc-99m, where little scatter lies above the photopeak): ``S = C_l / W_l · W_p / 2``.

    Parameters
    ----------
    lower_counts : array_like of shape (view, v, u)
        Counts in the lower scatter window (integer or real, finite, non-negative).
    upper_counts : array_like of shape (view, v, u) or None
        Counts in the upper scatter window, or None to omit it.
    lower_width_kev, upper_width_kev, peak_width_kev : float or EnergyWindow
        Widths of the lower, upper and photopeak windows in keV (or the windows themselves).
        ``upper_width_kev`` may be None when ``upper_counts`` is None.
    smooth_sigma_px : float, optional
        Standard deviation, in projection pixels, of a 2-D Gaussian applied to each view of the
        estimate; narrow windows hold few counts, and smoothing keeps their noise out of ``a``.

    Returns
    -------
    ndarray of float32, shape (view, v, u)
        Estimated scatter counts in the photopeak window, on the CPU.

    Raises
    ------
    InputError
        Counts are not 3-D, differ in shape, or hold NaN/inf/negative values; bad smoothing sigma.
    PhysicsError
        A window width is missing, not finite or not positive.
    """
    lower = _counts(lower_counts, "lower_counts")
    w_lower = _width(lower_width_kev, "lower_width_kev")
    w_peak = _width(peak_width_kev, "peak_width_kev")
    density = lower / w_lower
    if upper_counts is not None:
        upper = _counts(upper_counts, "upper_counts")
        if upper.shape != lower.shape:
            raise InputError(
                f"upper_counts has shape {upper.shape} but lower_counts has {lower.shape}; "
                "pass the frames of the same acquisition for both scatter windows"
            )
        density = density + upper / _width(upper_width_kev, "upper_width_kev")
    return _smooth(density * (0.5 * w_peak), smooth_sigma_px)


def dew_scatter(
    scatter_window_counts: Any, k: float = 0.5, smooth_sigma_px: float | None = None
) -> np.ndarray:
    """Dual-energy-window (DEW) estimate of the scatter counts in the photopeak window.

    ``S = k · C_scatter`` (Jaszczak et al., "Improved SPECT quantification using compensation for
    scattered photons", J. Nucl. Med. 25 (1984) 893-900). ``k = 0.5`` is their value for Tc-99m
    with a 127-153 keV photopeak and a 92-125 keV scatter window; other windows need their own k.

    Parameters
    ----------
    scatter_window_counts : array_like of shape (view, v, u)
        Counts in the (lower) scatter window (integer or real, finite, non-negative).
    k : float, optional
        Scatter multiplier, positive (dimensionless).
    smooth_sigma_px : float, optional
        Standard deviation, in projection pixels, of a 2-D Gaussian applied to each view.

    Returns
    -------
    ndarray of float32, shape (view, v, u)
        Estimated scatter counts in the photopeak window, on the CPU.

    Raises
    ------
    InputError
        Counts are not 3-D or hold NaN/inf/negative values; ``k`` is not positive and finite; bad
        smoothing sigma.
    """
    counts = _counts(scatter_window_counts, "scatter_window_counts")
    k = float(k)
    if not (math.isfinite(k) and k > 0):
        raise InputError(f"k must be a positive finite multiplier, got {k}")
    return _smooth(counts * k, smooth_sigma_px)
