"""recon: GPU-accelerated tomographic reconstruction for quantitative nuclear medicine.

Importing recon has no side effects: nothing is printed, no warning filter is changed and no GPU is
probed until a model asks for a device.
"""

from recon.algorithms import IterationState, gaussian_filter_fwhm, mlem, osem
from recon.errors import (
    DeviceError,
    GeometryError,
    InputError,
    KernelError,
    PhysicsError,
    ReconError,
)
from recon.grid import ImageGrid
from recon.image import Image
from recon.spect import Collimator, SpectGeometry, SpectModel

__version__ = "0.1.0"

__all__ = [
    "Collimator",
    "DeviceError",
    "GeometryError",
    "Image",
    "ImageGrid",
    "InputError",
    "IterationState",
    "KernelError",
    "PhysicsError",
    "ReconError",
    "SpectGeometry",
    "SpectModel",
    "gaussian_filter_fwhm",
    "mlem",
    "osem",
    "__version__",
]
