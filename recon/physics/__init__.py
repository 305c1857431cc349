"""Physics tables and factors: isotopes, decay, attenuation (HU → μ), energy windows and scatter
estimates."""

from __future__ import annotations

from recon.physics.attenuation import effective_ct_energy_kev, hu_to_mu, mu_to_hu
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
    "effective_ct_energy_kev",
    "dew_scatter",
    "get_isotope",
    "hu_to_mu",
    "mean_activity_fraction",
    "mu_to_hu",
    "tew_scatter",
]
