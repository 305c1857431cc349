"""The system models the contract test runs over (:mod:`tests.test_model_contract`).

Each case builds a small but complete model (attenuation, normalisation, decay, calibration
where the model has them) on a given device. A new model joins the contract test by adding a
function here decorated with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import recon

__all__ = ["CASES", "ContractCase", "register"]


@dataclass(frozen=True)
class ContractCase:
    """A registered model.

    Attributes
    ----------
    build : callable
        ``build(device)`` → the model on that device ("cpu" or a Backend).
    kernels : str
        The kernel family the model runs (``"spect"`` or ``"pet"``), to run it on the fake GPU.
    sensitivity_is_back_of_ones : bool
        Binned models: ``sensitivity(s) == back(ones, s)``. A listmode frame's sensitivity is that
        of every LOR of the layout over the frame (``n`` times its subsets'), not a back
        projection of its events.
    sensitivity_rtol : float
        How closely ``sensitivity(s)`` equals ``back(ones, s)``.
    """

    build: Callable[[Any], Any]
    kernels: str
    sensitivity_is_back_of_ones: bool = True
    sensitivity_rtol: float = 1e-5


CASES: dict[str, ContractCase] = {}


def register(
    name: str, kernels: str, **settings: Any
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Add a model factory ``build(device)`` to the contract test under ``name``
    (``settings``: the other :class:`ContractCase` fields)."""

    def add(build: Callable[[Any], Any]) -> Callable[[Any], Any]:
        CASES[name] = ContractCase(build, kernels, **settings)
        return build

    return add


def _mu(grid: recon.ImageGrid, value: float) -> np.ndarray:
    z, y, x = grid.meshgrid_mm()
    return np.where(np.hypot(x, y) < 0.4 * grid.shape[2] * grid.voxel_size_mm[2], value, 0.0)


@register("SPECT (attenuation, LEHR, decay, calibration)", "spect")
def spect(device: Any) -> recon.SpectModel:
    grid = recon.ImageGrid((6, 14, 14), 5.0)
    geometry = recon.SpectGeometry.circular(
        n_views=12, radius_mm=60, n_u=16, n_v=6, pixel_size_mm=5.0, cor_offset_mm=0.7,
        time_per_view_s=20.0,
    )  # fmt: skip
    return recon.SpectModel(
        geometry, grid, mu_map=_mu(grid, 0.015), collimator=recon.Collimator.preset("LEHR"),
        isotope="Tc-99m", sensitivity_cps_per_mbq=90.0, device=device,
    )  # fmt: skip


def _pet_scene() -> tuple[recon.PetScanner, recon.ImageGrid, np.ndarray]:
    scanner = recon.PetScanner(
        n_rings=3, crystals_per_ring=48, radius_mm=90.0, ring_spacing_mm=6.0,
        tof=recon.Tof(fwhm_ps=300.0, n_bins=9, bin_width_ps=200.0),
    )  # fmt: skip
    grid = recon.ImageGrid((5, 16, 16), (6.0, 7.0, 7.0))
    return scanner, grid, _mu(grid, 0.0096)


def _efficiencies(scanner: recon.PetScanner) -> np.ndarray:
    return np.random.default_rng(3).uniform(0.8, 1.2, scanner.n_crystals)


@register("PET sinogram (non-TOF, mu, crystal efficiencies, F-18)", "pet")
def pet_sinogram(device: Any) -> recon.PetSinogramModel:
    scanner, grid, mu = _pet_scene()
    return recon.PetSinogramModel(
        scanner, grid, mu_map=mu, normalization=_efficiencies(scanner), use_tof=False,
        isotope="F-18", frame_start_s=60.0, frame_duration_s=300.0, calibration=2.0,
        device=device,
    )  # fmt: skip


# The TOF kernel is cut at 3 sigmas, so a LOR's TOF weights sum to 0.9973-1 of the LOR and the
# (non-TOF) sensitivity is up to 0.27 % above the TOF back projection of ones.
@register("PET sinogram (TOF)", "pet", sensitivity_rtol=3e-3)
def pet_sinogram_tof(device: Any) -> recon.PetSinogramModel:
    scanner, grid, mu = _pet_scene()
    return recon.PetSinogramModel(
        scanner, grid, mu_map=mu, max_ring_difference=1, isotope="Zr-89", device=device
    )


def _explicit_lors() -> tuple[np.ndarray, np.ndarray, recon.ImageGrid, np.ndarray]:
    scanner, grid, mu = _pet_scene()
    xstart, xend = recon.SinogramLayout(scanner, n_radial=15).endpoints()
    return xstart, xend, grid, mu


@register("PET sinogram on explicit LORs", "pet")
def pet_lor_explicit(device: Any) -> recon.PetLorSinogramModel:
    xstart, xend, grid, mu = _explicit_lors()
    norm = np.random.default_rng(4).uniform(0.5, 1.0, xstart.shape[:3]).astype(np.float32)
    return recon.PetLorSinogramModel(
        xstart, xend, grid, mu_map=mu, normalization=norm, isotope="Cu-64",
        frame_duration_s=120.0, device=device,
    )  # fmt: skip


@register("PET sinogram on separable LORs", "pet")
def pet_lor_separable(device: Any) -> recon.PetLorSinogramModel:
    xstart, xend, grid, mu = _explicit_lors()
    parts = (xstart[0, :, :, :2], xend[0, :, :, :2], xstart[:, 0, 0, 2], xend[:, 0, 0, 2])
    return recon.PetLorSinogramModel.separable(*parts, grid, mu_map=mu, device=device)


@register("PET listmode frame (TOF, decay per event)", "pet", sensitivity_is_back_of_ones=False)
def pet_listmode_frame(device: Any) -> recon.ListmodeFrame:
    scanner, grid, mu = _pet_scene()
    simulator = recon.PetSinogramModel(scanner, grid, mu_map=mu, frame_duration_s=30.0)
    activity = np.full(grid.shape, 0.05, np.float32)
    events = recon.pet.simulate_listmode(simulator, activity, 30.0, np.random.default_rng(5))
    model = recon.PetListmodeModel(
        scanner, grid, mu_map=mu, normalization=_efficiencies(scanner), isotope="F-18",
        device=device,
    )  # fmt: skip
    rate = np.random.default_rng(6).uniform(0.0, 0.1, events.prompts().n_events)
    return model.frame(events, 0.0, 30.0, additive_rate=rate.astype(np.float32))


# The same models with an image-space resolution model (P -> P·G): the contract then proves that
# G is applied in forward, its exact adjoint in back, and Gᵀ in the sensitivity. The settings
# cover the three forms of G: isotropic, transaxial ≠ axial, and a transaxial FWHM that grows with
# the radius (a mixture of blurs weighted per voxel), all a voxel or more wide on 7 mm voxels.
_GROWING_PSF = recon.ImageResolution(
    9.0, fwhm_axial_mm=12.0, radius_mm=40.0, fwhm_transaxial_at_radius_mm=16.0
)


@register("PET sinogram with a radially growing PSF (non-TOF)", "pet")
def pet_sinogram_psf(device: Any) -> recon.PetSinogramModel:
    scanner, grid, mu = _pet_scene()
    return recon.PetSinogramModel(
        scanner, grid, mu_map=mu, normalization=_efficiencies(scanner), use_tof=False,
        isotope="F-18", frame_duration_s=300.0, calibration=2.0, device=device,
        resolution=_GROWING_PSF,
    )  # fmt: skip


@register("PET sinogram with an isotropic PSF (TOF)", "pet", sensitivity_rtol=3e-3)
def pet_sinogram_tof_psf(device: Any) -> recon.PetSinogramModel:
    scanner, grid, mu = _pet_scene()
    return recon.PetSinogramModel(
        scanner, grid, mu_map=mu, max_ring_difference=1, isotope="Zr-89", device=device,
        resolution=recon.ImageResolution(11.0),
    )  # fmt: skip


@register("PET sinogram on explicit LORs with a PSF (transaxial ≠ axial)", "pet")
def pet_lor_explicit_psf(device: Any) -> recon.PetLorSinogramModel:
    xstart, xend, grid, mu = _explicit_lors()
    return recon.PetLorSinogramModel(
        xstart, xend, grid, mu_map=mu, isotope="Cu-64", frame_duration_s=120.0, device=device,
        resolution=recon.ImageResolution(10.0, fwhm_axial_mm=15.0),
    )  # fmt: skip


@register("PET sinogram on separable LORs with a radially growing PSF", "pet")
def pet_lor_separable_psf(device: Any) -> recon.PetLorSinogramModel:
    xstart, xend, grid, mu = _explicit_lors()
    parts = (xstart[0, :, :, :2], xend[0, :, :, :2], xstart[:, 0, 0, 2], xend[:, 0, 0, 2])
    return recon.PetLorSinogramModel.separable(
        *parts, grid, mu_map=mu, device=device, resolution=_GROWING_PSF
    )


@register(
    "PET listmode frame with a radially growing PSF (TOF)", "pet",
    sensitivity_is_back_of_ones=False,
)  # fmt: skip
def pet_listmode_frame_psf(device: Any) -> recon.ListmodeFrame:
    scanner, grid, mu = _pet_scene()
    simulator = recon.PetSinogramModel(scanner, grid, mu_map=mu, frame_duration_s=30.0)
    activity = np.full(grid.shape, 0.05, np.float32)
    events = recon.pet.simulate_listmode(simulator, activity, 30.0, np.random.default_rng(7))
    model = recon.PetListmodeModel(
        scanner, grid, mu_map=mu, normalization=_efficiencies(scanner), isotope="F-18",
        device=device, resolution=_GROWING_PSF,
    )  # fmt: skip
    return model.frame(events, 0.0, 30.0)
