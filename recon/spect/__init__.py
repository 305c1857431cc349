"""SPECT: acquisition geometry, collimator response and the system model."""

from recon.spect.collimator import Collimator
from recon.spect.dual import MultiIsotopeModel, multi_isotope_model
from recon.spect.geometry import SpectGeometry
from recon.spect.model import SpectModel
from recon.spect.multi import StackedModel, photopeak_model, window_sensitivities

__all__ = [
    "Collimator",
    "MultiIsotopeModel",
    "SpectGeometry",
    "SpectModel",
    "StackedModel",
    "multi_isotope_model",
    "photopeak_model",
    "window_sensitivities",
]
