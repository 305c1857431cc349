"""Hounsfield units to linear attenuation at an emission energy (CT-based attenuation correction).

The conversion is the bilinear (air-water / water-bone mixture) model of CT-based attenuation
correction (Kinahan et al., "Attenuation correction for a combined 3D PET/CT scanner", Med. Phys.
25 (1998) 2046-2053; Bai et al., "A generalized model for the conversion from CT numbers to linear
attenuation coefficients", IEEE Trans. Nucl. Sci. 50 (2003) 1510-1515; Brown et al.,
"Investigation of the relationship between linear attenuation coefficients and CT Hounsfield
units using radionuclides for SPECT", Appl. Radiat. Isot. 66 (2008) 1206-1212):

- ``HU ≤ 0``: a mixture of air (μ ≈ 0) and water, ``μ(E) = μ_water(E)·(1 + HU/1000)``;
- ``HU > 0``: a mixture of water and cortical bone,
  ``μ(E) = μ_water(E) + HU·(μ_bone(E) − μ_water(E)) / HU_bone``, where ``HU_bone`` is the CT number
  of cortical bone in the CT beam, ``1000·(μ_bone(E_CT) − μ_water(E_CT))/μ_water(E_CT)`` at the
  beam's effective energy ``E_CT``. The kVp enters only through ``E_CT``.

μ/ρ of water and of cortical bone (ICRU Report 44 composition, 1.92 g/cm³) come from the NIST
tables (Hubbell & Seltzer, "Tables of X-Ray Mass Attenuation Coefficients and Mass
Energy-Absorption Coefficients", NIST Standard Reference Database 126 / NISTIR 5632, which XCOM
reproduces), interpolated log-log. The effective energy of each kVp is the energy at which this
model reproduces the bone-branch slope that Carney et al. measured at 511 keV ("Method for
transforming CT images for attenuation correction in PET/CT imaging", Med. Phys. 33 (2006)
976-983, Table 1); at 511 keV itself their published bilinear coefficients are used directly.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import numpy as np
from scipy.optimize import brentq

from recon.errors import InputError, PhysicsError

__all__ = ["check_energy", "effective_ct_energy_kev", "hu_to_mu", "mu_to_hu", "water_mu_per_mm"]

log = logging.getLogger("recon")

# Photon energies (keV) and total mass attenuation coefficients with coherent scattering (cm²/g):
# NIST SRD 126 (Hubbell & Seltzer), "Water, Liquid" and "Bone, Cortical (ICRU-44)".
_ENERGIES_KEV = np.array(
    [30, 40, 50, 60, 80, 100, 150, 200, 300, 400, 500, 600, 800, 1000], dtype=np.float64
)
_WATER_CM2_PER_G = np.array(
    [0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505, 0.1370, 0.1186, 0.1061, 0.09687,
     0.08956, 0.07865, 0.07072]
)  # fmt: skip
_BONE_CM2_PER_G = np.array(
    [1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480, 0.1309, 0.1113, 0.09908, 0.09022,
     0.08332, 0.07308, 0.06566]
)  # fmt: skip
# Largest CT number a CT image stores: Rescale Intercept −1024 with signed 16-bit pixels.
_HU_MAX = 32767 - 1024
_WATER_G_PER_CM3 = 1.0
_BONE_G_PER_CM3 = 1.92  # ICRU Report 44 cortical bone, as in the NIST table.

# Carney et al. 2006, Table 1: μ(511 keV) in 1/cm is 9.6e-5·(HU + 1000) up to the break point
# (in HU + 1000) and a·(HU + 1000) + b above it. kVp: (a, b, break point).
_CARNEY_LOW_SLOPE = 9.6e-5
_CARNEY = {
    80: (3.64e-5, 6.26e-2, 1050.0),
    100: (4.43e-5, 5.44e-2, 1052.0),
    110: (4.92e-5, 4.88e-2, 1043.0),
    120: (5.10e-5, 4.71e-2, 1047.0),
    130: (5.51e-5, 4.24e-2, 1037.0),
    140: (5.64e-5, 4.08e-2, 1030.0),
}
_CARNEY_KVP = np.array(sorted(_CARNEY), dtype=np.float64)
_ANNIHILATION_KEV = 511.0
# Energies this close to 511 keV use Carney's coefficients directly.
_CARNEY_TOLERANCE_KEV = 1.0


def check_energy(energy_kev: float) -> float:
    """``energy_kev`` as a float, refused (PhysicsError) outside the tables' range."""
    energy = float(energy_kev)
    if not (math.isfinite(energy) and _ENERGIES_KEV[0] <= energy <= _ENERGIES_KEV[-1]):
        raise PhysicsError(
            f"energy_kev={energy_kev} is outside the tabulated {_ENERGIES_KEV[0]:g}-"
            f"{_ENERGIES_KEV[-1]:g} keV range of the water/bone attenuation tables"
        )
    return energy


def _interp_loglog(table: np.ndarray, energy_kev: float) -> float:
    return float(np.exp(np.interp(np.log(energy_kev), np.log(_ENERGIES_KEV), np.log(table))))


def _mu_water_per_cm(energy_kev: float) -> float:
    return _WATER_G_PER_CM3 * _interp_loglog(_WATER_CM2_PER_G, energy_kev)


def water_mu_per_mm(energy_kev: float) -> float:
    """Linear attenuation coefficient of liquid water (1 g/cm³) at ``energy_kev``, in 1/mm.

    Total attenuation with coherent scattering from the NIST tables (Hubbell & Seltzer, NIST SRD
    126, the values XCOM gives), interpolated log-log between the tabulated energies (30-1000 keV):
    0.00969/mm at 511 keV.

    Raises
    ------
    PhysicsError
        ``energy_kev`` is outside 30-1000 keV.
    """
    return _mu_water_per_cm(check_energy(energy_kev)) / 10.0


def _mu_bone_per_cm(energy_kev: float) -> float:
    return _BONE_G_PER_CM3 * _interp_loglog(_BONE_CM2_PER_G, energy_kev)


def _bone_hu(energy_kev: float) -> float:
    """CT number of cortical bone in a monoenergetic beam of ``energy_kev``."""
    water = _mu_water_per_cm(energy_kev)
    return 1000.0 * (_mu_bone_per_cm(energy_kev) - water) / water


def _check_kvp(kvp: float) -> float:
    value = float(kvp)
    if not (math.isfinite(value) and value > 0):
        raise PhysicsError(f"kvp must be a positive tube voltage in kV, got {kvp}")
    lo, hi = _CARNEY_KVP[0], _CARNEY_KVP[-1]
    if not lo <= value <= hi:
        log.warning(
            "CT tube voltage %g kVp is outside the %g-%g kVp range of the calibration (Carney "
            "et al. 2006); using %g kVp",
            value,
            lo,
            hi,
            min(max(value, lo), hi),
        )
        value = min(max(value, lo), hi)
    return value


def _carney(kvp: float) -> tuple[float, float, float]:
    """Carney's (a, b, break point) at ``kvp``, linear between the tabulated voltages."""
    rows = np.array([_CARNEY[int(k)] for k in _CARNEY_KVP])
    a, b, break_point = (float(np.interp(kvp, _CARNEY_KVP, rows[:, i])) for i in range(3))
    return a, b, break_point


@functools.lru_cache(maxsize=64)
def _effective_energy(kvp: float) -> float:
    a, _, _ = _carney(kvp)
    # Carney's bone slope a = (μ_bone − μ_water)(511 keV) / HU_bone, so the beam gives bone this
    # CT number; find the monoenergetic beam that gives the same.
    target = (_mu_bone_per_cm(_ANNIHILATION_KEV) - _mu_water_per_cm(_ANNIHILATION_KEV)) / a
    return float(brentq(lambda e: _bone_hu(e) - target, 30.0, 200.0, xtol=1e-6))


def effective_ct_energy_kev(kvp: float) -> float:
    """Effective energy (keV) of a CT beam of ``kvp``, as used by :func:`hu_to_mu`.

    The energy at which the water/bone mixture model gives the bone-branch slope Carney et al.
    (Med. Phys. 33 (2006) 976, Table 1) measured at 511 keV for that kVp (about 57 keV at 80 kVp,
    74 keV at 120 kVp, 80 keV at 140 kVp). Voltages outside 80-140 kVp are clamped (a warning is
    logged).
    """
    return _effective_energy(_check_kvp(kvp))


def hu_to_mu(hu: Any, energy_kev: float, kvp: float = 120.0) -> Any:
    """Linear attenuation coefficient (1/mm) at ``energy_kev`` from CT numbers.

    Parameters
    ----------
    hu : float or array_like
        CT numbers (Hounsfield units).
    energy_kev : float
        Photon energy of the emission image, 30-1000 keV (140.5 for Tc-99m, 511 for PET).
    kvp : float
        CT tube voltage; it sets the bone branch (see the module notes). Calibrated for 80-140 kVp.

    Returns
    -------
    float or ndarray of float32
        μ in 1/mm (≥ 0; air and anything below −1000 HU give 0).

    Notes
    -----
    ``HU ≤ 0``: ``μ_water(E)·(1 + HU/1000)``; ``HU > 0``:
    ``μ_water(E) + HU·(μ_bone(E) − μ_water(E))/HU_bone(kVp)`` with NIST water and ICRU-44 cortical
    bone and ``HU_bone`` the bone CT number at :func:`effective_ct_energy_kev`. Within 1 keV of
    511 keV the published bilinear fit of Carney et al. (2006) is used:
    ``9.6e-5·(HU+1000)`` /cm below the break point, ``a·(HU+1000) + b`` above.
    """
    energy = check_energy(energy_kev)
    kvp = _check_kvp(kvp)
    scalar = np.ndim(hu) == 0
    values = np.asarray(hu, dtype=np.float32)
    if values.size and not np.all(np.isfinite(values)):
        raise InputError("CT numbers contain NaN or infinite values")
    shifted = values + np.float32(1000.0)
    if abs(energy - _ANNIHILATION_KEV) <= _CARNEY_TOLERANCE_KEV:
        a, b, knee = _carney(kvp)
        mu_cm = np.where(
            shifted <= knee,
            np.float32(_CARNEY_LOW_SLOPE) * shifted,
            np.float32(a) * shifted + np.float32(b),
        )
    else:
        water = _mu_water_per_cm(energy)
        bone_slope = (_mu_bone_per_cm(energy) - water) / _bone_hu(_effective_energy(kvp))
        mu_cm = np.where(
            values <= 0,
            np.float32(water / 1000.0) * shifted,
            np.float32(water) + np.float32(bone_slope) * values,
        )
    mu_mm = np.maximum(mu_cm, np.float32(0.0)).astype(np.float32) / np.float32(10.0)
    return float(mu_mm) if scalar else mu_mm


def mu_to_hu(
    mu: Any, energy_kev: float, kvp: float = 120.0, mu_water_per_mm: float | None = None
) -> np.ndarray:
    """CT numbers of an attenuation map: the inverse of :func:`hu_to_mu`.

    Parameters
    ----------
    mu : array_like
        Linear attenuation coefficients at ``energy_kev`` in 1/mm.
    energy_kev : float
        Photon energy of ``mu`` (e.g. 140.5 keV for Tc-99m).
    kvp : float
        CT tube voltage; it sets the bone branch (values above water).
    mu_water_per_mm : float, optional
        μ of water in ``mu`` (e.g. :data:`recon.simulate.phantoms.MU_WATER_PER_MM_140KEV` for the
        phantoms): water then maps to exactly 0 HU. Default: the reader's own value,
        ``hu_to_mu(0, energy_kev)``, so that ``hu_to_mu(mu_to_hu(mu))`` gives ``mu`` back.

    Returns
    -------
    ndarray of float32
        HU: ``1000·(μ/μ_water − 1)`` up to water (air −1000, lung of 0.3 g/cm³ −700), and the
        reader's bone branch inverted above it; clipped to [−1000, 31743] (what int16 pixels with
        intercept −1024 can hold).
    """
    mu = np.asarray(mu, dtype=np.float64)
    water_reader = float(hu_to_mu(0.0, energy_kev, kvp))
    water = water_reader if mu_water_per_mm is None else float(mu_water_per_mm)
    if not (math.isfinite(water) and water > 0):
        raise InputError(f"mu_water_per_mm must be positive, got {mu_water_per_mm!r}")
    # The reader's bone branch is linear: μ = μ_water + HU·slope for HU > 0.
    slope = (float(hu_to_mu(1000.0, energy_kev, kvp)) - water_reader) / 1000.0
    hu = np.where(mu <= water, 1000.0 * (mu / water - 1.0), (mu - water) / slope)
    return np.clip(hu, -1000.0, _HU_MAX).astype(np.float32)


# ----------------------------------------------------------------------------- simulated study
