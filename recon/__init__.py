"""recon: GPU-accelerated tomographic reconstruction for quantitative nuclear medicine.

Importing recon has no side effects: nothing is printed, no warning filter is changed and no GPU is
probed until a model asks for a device.
"""

from recon.algorithms import (
    IterationState,
    QuadraticPrior,
    RelativeDifferencePrior,
    ScatterEstimate,
    bsrem,
    estimate_scatter,
    gaussian_filter_fwhm,
    lm_bsrem,
    mlem,
    osem,
    osl_map,
    penalised_log_likelihood,
)
from recon.algorithms.listmode import FrameResult, lm_osem, reconstruct_frames
from recon.errors import (
    DeviceError,
    GeometryError,
    InputError,
    KernelError,
    NumericalError,
    PhysicsError,
    ReconError,
)
from recon.grid import ImageGrid
from recon.image import Image
from recon.pet import (
    ImageResolution,
    ListmodeEvents,
    ListmodeFrame,
    LorProjector,
    Normalization,
    PetListmodeModel,
    PetLorSinogramModel,
    PetScanner,
    PetSinogramModel,
    SinogramLayout,
    Tof,
)
from recon.spect import Collimator, SpectGeometry, SpectModel
from recon.system_model import SystemModel

__version__ = "0.1.0"

# File formats and quantification pull in more dependencies (pydicom, scipy.optimize); they are
# imported on first use, so `recon.io.read_nm_projections(...)` works after `import recon`.
_LAZY_SUBPACKAGES = ("io", "quant")


def __getattr__(name: str) -> object:
    if name in _LAZY_SUBPACKAGES:
        import importlib

        return importlib.import_module(f"recon.{name}")
    raise AttributeError(f"module 'recon' has no attribute {name!r}")


__all__ = [
    "Collimator",
    "DeviceError",
    "FrameResult",
    "GeometryError",
    "Image",
    "ImageGrid",
    "ImageResolution",
    "InputError",
    "IterationState",
    "KernelError",
    "ListmodeEvents",
    "ListmodeFrame",
    "LorProjector",
    "Normalization",
    "NumericalError",
    "PetListmodeModel",
    "PetLorSinogramModel",
    "PetScanner",
    "PetSinogramModel",
    "PhysicsError",
    "QuadraticPrior",
    "ReconError",
    "RelativeDifferencePrior",
    "ScatterEstimate",
    "SinogramLayout",
    "SpectGeometry",
    "SpectModel",
    "SystemModel",
    "Tof",
    "bsrem",
    "estimate_scatter",
    "gaussian_filter_fwhm",
    "lm_bsrem",
    "lm_osem",
    "mlem",
    "osem",
    "osl_map",
    "penalised_log_likelihood",
    "reconstruct_frames",
    "__version__",
]
