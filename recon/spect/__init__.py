"""SPECT: acquisition geometry, collimator response and the system model."""

from recon.spect.collimator import Collimator
from recon.spect.geometry import SpectGeometry
from recon.spect.model import SpectModel

__all__ = ["Collimator", "SpectGeometry", "SpectModel"]
