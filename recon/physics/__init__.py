"""Physics tables and factors: isotopes, decay, energy windows and scatter estimates."""

from __future__ import annotations

from recon.physics.decay import (
    activity_at,
    decay_constant,
    decay_correction_factor,
    mean_activity_fraction,
)
from recon.physics.isotopes import ANNIHILATION_KEV, ISOTOPES, Isotope, Photon, get_isotope
from recon.physics.scatter import EnergyWindow, dew_scatter, tew_scatter

__all__ = [
    "ANNIHILATION_KEV",
    "ISOTOPES",
    "EnergyWindow",
    "Isotope",
    "Photon",
    "activity_at",
    "decay_constant",
    "decay_correction_factor",
    "dew_scatter",
    "get_isotope",
    "mean_activity_fraction",
    "tew_scatter",
]
