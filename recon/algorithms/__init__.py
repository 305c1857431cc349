"""Reconstruction algorithms, written against the system-model interface (any modality/device)."""

from recon.algorithms.additive import ScatterEstimate, estimate_scatter
from recon.algorithms.em import IterationState, mlem, osem
from recon.algorithms.filters import gaussian_filter_fwhm
from recon.algorithms.map import bsrem, lm_bsrem, osl_map, penalised_log_likelihood
from recon.algorithms.priors import (
    QuadraticPrior,
    RelativeDifferencePrior,
    hessian_kappa,
    sensitivity_kappa,
)

__all__ = [
    "IterationState",
    "QuadraticPrior",
    "RelativeDifferencePrior",
    "ScatterEstimate",
    "bsrem",
    "estimate_scatter",
    "gaussian_filter_fwhm",
    "hessian_kappa",
    "lm_bsrem",
    "mlem",
    "osem",
    "osl_map",
    "penalised_log_likelihood",
    "sensitivity_kappa",
]
