"""Compton scattering of annihilation photons and the energy response of a PET detector.

What single-scatter simulation (:mod:`recon.pet.sss`) needs, each with its source:

- the energy of a photon after Compton scattering through an angle θ (Compton 1923),
  ``E' = E / (1 + (E / m_e c²)(1 − cos θ))``, so a 511 keV photon keeps ``511 / (2 − cos θ)``;
- the Klein–Nishina differential cross-section per electron for unpolarised photons (O. Klein and
  Y. Nishina, Z. Phys. 52 (1929) 853), ``dσ/dΩ = (r_e²/2) (E'/E)² (E'/E + E/E' − sin²θ)``, and its
  integral over all directions (the closed form in R. D. Evans, *The Atomic Nucleus*, McGraw-Hill
  1955, ch. 23, eq. 4.4), 0.2867 b at 511 keV;
- the attenuation of tissue at the scattered energy from its 511 keV value: tissue is treated as
  water-like (Compton-dominated at these energies, so μ scales with electron density at every
  energy alike), ``μ(E') = μ(511) · μ_water(E') / μ_water(511)`` with water from the NIST tables
  (Hubbell & Seltzer, NIST SRD 126, the values XCOM gives;
  :func:`recon.physics.attenuation.water_mu_per_mm`), as in Watson, Newport & Casey (1996);
- the fraction of photons of energy E that a detector records inside its energy window, for a
  Gaussian energy response whose FWHM grows as √E (scintillation photon statistics: G. F. Knoll,
  *Radiation Detection and Measurement*, 4th ed., Wiley 2010, ch. 10; the response used for
  single-scatter simulation by Watson 2000 and by STIR), with the FWHM given as a fraction of
  511 keV at 511 keV: ``σ(E) = R · 511 keV · √(E / 511 keV) / (2√(2 ln 2))`` and
  ``ε(E) = ½ [erf((U − E)/(√2 σ)) − erf((L − E)/(√2 σ))]``.

Constants are CODATA 2018 (NIST): electron rest energy 510.99895 keV, classical electron radius
2.8179403262e-15 m.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import erf

from recon.errors import PhysicsError
from recon.physics.attenuation import water_mu_per_mm
from recon.physics.isotopes import ANNIHILATION_KEV

__all__ = [
    "CLASSICAL_ELECTRON_RADIUS_MM",
    "ELECTRON_REST_ENERGY_KEV",
    "attenuation_scale_water",
    "klein_nishina",
    "klein_nishina_total",
    "scattered_energy_kev",
    "window_efficiency",
]

#: Electron rest energy m_e c², keV (CODATA 2018).
ELECTRON_REST_ENERGY_KEV = 510.99895
#: Classical electron radius r_e, mm (CODATA 2018: 2.8179403262e-15 m).
CLASSICAL_ELECTRON_RADIUS_MM = 2.8179403262e-12
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _positive_energy(energy_kev: Any) -> np.ndarray:
    energy = np.asarray(energy_kev, dtype=np.float64)
    if not np.all(np.isfinite(energy)) or np.any(energy <= 0):
        raise PhysicsError(f"photon energies must be positive and finite, got {energy_kev!r}")
    return energy


def _cosines(cos_theta: Any) -> np.ndarray:
    c = np.asarray(cos_theta, dtype=np.float64)
    if not np.all(np.isfinite(c)) or np.any(np.abs(c) > 1.0 + 1e-12):
        raise PhysicsError("cos θ must lie in [-1, 1]")
    return np.clip(c, -1.0, 1.0)


def scattered_energy_kev(energy_kev: Any, cos_theta: Any) -> Any:
    """Energy of a photon of ``energy_kev`` after Compton scattering through θ (keV).

    Parameters
    ----------
    energy_kev : float or array_like
        Incident photon energy, keV.
    cos_theta : float or array_like
        Cosine of the scattering angle (1: no deflection, −1: backscatter).

    Returns
    -------
    float or ndarray of float64
        ``E / (1 + (E / m_e c²)(1 − cos θ))``, broadcast over the inputs.
    """
    energy = _positive_energy(energy_kev)
    c = _cosines(cos_theta)
    out = energy / (1.0 + energy / ELECTRON_REST_ENERGY_KEV * (1.0 - c))
    return float(out) if out.ndim == 0 else out


def klein_nishina(energy_kev: Any, cos_theta: Any) -> Any:
    """Klein–Nishina differential cross-section per electron, mm²/sr (unpolarised photons).

    Parameters
    ----------
    energy_kev : float or array_like
        Incident photon energy, keV.
    cos_theta : float or array_like
        Cosine of the scattering angle.

    Returns
    -------
    float or ndarray of float64
        ``(r_e²/2) (E'/E)² (E'/E + E/E' − sin²θ)`` in mm² per steradian.
    """
    energy = _positive_energy(energy_kev)
    c = _cosines(cos_theta)
    ratio = 1.0 / (1.0 + energy / ELECTRON_REST_ENERGY_KEV * (1.0 - c))  # E'/E
    sin2 = 1.0 - c * c
    out = 0.5 * CLASSICAL_ELECTRON_RADIUS_MM**2 * ratio**2 * (ratio + 1.0 / ratio - sin2)
    return float(out) if out.ndim == 0 else out


def klein_nishina_total(energy_kev: float) -> float:
    """Total Klein–Nishina cross-section per electron, mm² (Evans 1955, ch. 23).

    With ``k = E / m_e c²``: ``2π r_e² {(1+k)/k² [2(1+k)/(1+2k) − ln(1+2k)/k] + ln(1+2k)/(2k)
    − (1+3k)/(1+2k)²}``; 2.867e-23 mm² (0.2867 b) at 511 keV.

    Parameters
    ----------
    energy_kev : float
        Photon energy, keV.

    Returns
    -------
    float
        The cross-section in mm².
    """
    k = float(_positive_energy(energy_kev)) / ELECTRON_REST_ENERGY_KEV
    log_term = math.log1p(2.0 * k)
    bracket = (
        (1.0 + k) / k**2 * (2.0 * (1.0 + k) / (1.0 + 2.0 * k) - log_term / k)
        + log_term / (2.0 * k)
        - (1.0 + 3.0 * k) / (1.0 + 2.0 * k) ** 2
    )
    return 2.0 * math.pi * CLASSICAL_ELECTRON_RADIUS_MM**2 * bracket


def attenuation_scale_water(energy_kev: Any, reference_kev: float = ANNIHILATION_KEV) -> Any:
    """``μ_water(E) / μ_water(reference)``: scales a μ-map from ``reference_kev`` to ``E``.

    Parameters
    ----------
    energy_kev : float or array_like
        Energies, 30-1000 keV (the NIST table's range).
    reference_kev : float
        Energy of the μ-map (511 keV by default).

    Returns
    -------
    float or ndarray of float64
        The ratio (above 1 below the reference energy: 1.30 at 300 keV).

    Raises
    ------
    PhysicsError
        An energy outside 30-1000 keV.
    """
    energies = np.atleast_1d(np.asarray(energy_kev, dtype=np.float64))
    reference = water_mu_per_mm(reference_kev)
    out = np.array([water_mu_per_mm(float(e)) / reference for e in energies.ravel()])
    out = out.reshape(energies.shape)
    return float(out[0]) if np.ndim(energy_kev) == 0 else out


def window_efficiency(
    energy_kev: Any, lower_kev: float, upper_kev: float, resolution_at_511: float
) -> Any:
    """Fraction of photons of ``energy_kev`` recorded inside the energy window.

    Parameters
    ----------
    energy_kev : float or array_like
        Photon energies, keV.
    lower_kev, upper_kev : float
        Energy window, keV.
    resolution_at_511 : float
        Energy resolution: FWHM of the photopeak at 511 keV as a fraction of 511 keV (0.1 for
        10 %); the FWHM at E is ``resolution · 511 · √(E/511)`` keV.

    Returns
    -------
    float or ndarray of float64
        ``½ [erf((U − E)/(√2 σ(E))) − erf((L − E)/(√2 σ(E)))]``.

    Raises
    ------
    PhysicsError
        A window that is not ``0 ≤ lower < upper`` or a resolution outside (0, 1).
    """
    lower, upper, res = float(lower_kev), float(upper_kev), float(resolution_at_511)
    if not (math.isfinite(lower) and math.isfinite(upper) and 0 <= lower < upper):
        raise PhysicsError(
            f"energy window [{lower_kev}, {upper_kev}] keV is not 0 <= lower < upper"
        )
    if not (math.isfinite(res) and 0 < res < 1):
        raise PhysicsError(
            f"energy resolution must be a fraction in (0, 1), got {resolution_at_511}"
        )
    energy = _positive_energy(energy_kev)
    sigma = res * ANNIHILATION_KEV * np.sqrt(energy / ANNIHILATION_KEV) / _FWHM_PER_SIGMA
    scale = math.sqrt(2.0) * sigma
    out = 0.5 * (erf((upper - energy) / scale) - erf((lower - energy) / scale))
    return float(out) if out.ndim == 0 else out
