"""Contrast recovery against noise: BSREM with the relative difference prior versus OSEM with a
Gaussian post-filter, on the NEMA-IEC body phantom at late-scan counts (issue 12, item 5).

What is compared
----------------
For each modality, ``R`` noise realisations of one simulated acquisition (fixed seeds) are
reconstructed by both methods, so every point of both curves comes from the same data:

- **OSEM + post-filter**: ``recon.osem`` with the subsets below, the image kept after every
  iteration ``1 … N``, each filtered by a 3-D Gaussian of every FWHM of the grid (0 = unfiltered);
- **BSREM**: ``recon.bsrem`` with ``RelativeDifferencePrior(beta, gamma=2, epsilon, kappa)`` for
  every β of the grid, from the library's defaults (those of ``recon spect|pet --algorithm
  bsrem``): the start is 2 OSEM iterations with the same subsets, the per-voxel weights are
  κ = sqrt(sensitivity) (so β is unit-free and means the same at every count level; every
  activity is smoothed alike), or with ``--kappa hessian`` the log-likelihood's curvature at
  that start (``hessian_kappa``: the penalty weaker where the activity is high), ε is 10⁻³ × the
  start's mean over the voxels the data see, and the relaxation is the
  default α_n = 1/(1 + n/10). It runs a fixed number of iterations; the JSON reports how far from
  convergence each β is (relative change of the image over the last iteration and the largest
  change of any sphere's recovery over the last 5 iterations).

Metrics (one definition for every method)
-----------------------------------------
- **Contrast recovery** of sphere ``j`` (NEMA NU 2 hot-sphere contrast): ``CRC = (C_j/C_B − 1) /
  (a_j/a_B − 1)``, with ``C_j`` the mean over the voxels whose centres lie inside the true sphere
  (``sphere_mask``), ``C_B`` the mean of the background region and ``a_j/a_B = 4`` the true
  ratio; averaged over the realisations (its standard error is reported too).
- **Recovery between the spheres** and the **sphere's excess** over it: the same CRC formula
  applied to VOIs of the sphere's size placed on the ring of sphere centres midway to the
  neighbouring spheres (±30° about the ring's centre; kept only where wholly in the uniform
  background, so none beside the two largest spheres). Nothing is hot there: what such a VOI
  recovers is the spill of the neighbouring spheres and the regional level the method leaves,
  and ``sphere_excess = CRC(sphere) − CRC(between)`` is what the sphere itself adds. The check
  below is run on both, because at low resolution and strong regularisation the CRC of a small
  sphere can come entirely from its neighbours (heavily regularised images of the sphere ring
  show one raised plateau: the VOIs between the spheres then read as high as the spheres).
- **Background region**: uniform-background voxels (full water voxels, not lung, not sphere) whose
  centres lie at least 15 mm from any voxel that is not (the phantom's edge, the lung insert, the
  spheres; 15 mm is NEMA NU 2's margin from the phantom edge for background ROIs), within 20 mm
  of the sphere plane (NEMA's ±1 and ±2 cm slices).
- **Noise**: the ensemble coefficient of variation of the background, ``CV = sqrt(mean_j
  var_r(x_rj)) / mean_rj(x_rj)`` over background voxels ``j`` and realisations ``r`` (variance
  with ``R − 1`` degrees of freedom). Several realisations are used instead of NEMA's ROI
  variability on one image because the ensemble variance is noise alone (a single image's
  spatial spread also counts any residual non-uniformity, i.e. bias), and it is measured at the
  voxel scale a reader sees, where NEMA's 37 mm ROI means hide fine-grained noise.

The "done when" check (issue 12): for each of the three smallest spheres, the **best OSEM point**
is the OSEM + filter point (over iterations × FWHM) with the largest CRC/CV (the most recovery per
unit of noise; the points of largest CRC alone are the noisiest, those of smallest CV the most
blurred; only points with a positive recovery compete). BSREM is **at least as good**
(``bsrem_at_least_as_good``) when either

- some β gives a point with CRC ≥ and CV ≤ the best OSEM point's (``dominating_betas``), or
- the BSREM curve (points ordered by CV, linear between neighbouring β) has, at that point's CV, a
  CRC no lower than the point's (``curve_at_best_osem``; where the whole BSREM curve is quieter
  than the point, its noisiest point counts; where it is noisier, this part fails).

Reported with it: the margin of the curve over the point with its standard error over the
realisations (paired: same data), and how many OSEM points inside BSREM's CV range lie on or below
the BSREM curve (the whole OSEM frontier, not only its best point). The check is made twice, on
the CRC (``dominance``) and on the sphere's excess over the VOIs between spheres
(``dominance_sphere_excess``); ``done_when_check`` needs both for the three smallest spheres, and
``best_osem.at_grid_edge`` says when the best OSEM point lies on the edge of the OSEM grid
(``--osem-grid wide`` tests whether a wider one changes the verdict).

Picking the best of 70-140 noisy OSEM points on the realisations that then judge it favours OSEM
(the winner's curse: the pick is partly the luckiest noise). With 4 or more realisations each
check also carries ``cross_fitted``: the best OSEM configuration (iterations, FWHM) picked on the
even realisations is judged against BSREM's curve on the odd ones and vice versa, and the two
margins are averaged (standard error from the two folds' paired ones). It is reported beside
the check; ``done_when_check`` keeps the stricter in-sample pick that the issue's wording asks
for.

Simulated acquisitions (full configuration)
-------------------------------------------
Both use the NEMA-IEC phantom of ``recon.simulate.phantoms`` (spheres 10-37 mm at 4:1 in a water
background, lung insert; the body is shortened to the grid's axial extent). The count levels are
those of late scans in drug-delivery studies (issue 12: at 3-7 days an In-111 or Zr-89 scan holds
under a million counts): In-111 (T½ 2.8047 d, NNDC) has 17.7 % of its activity left at 7 days;
Zr-89 (T½ 78.41 h, NNDC) 27.9 % at 6 days, of which only 22.74 % of decays emit a positron.

- **SPECT, In-111**: 64×64×24 voxels of 4.8 mm; 60 views over 360° on a 260 mm circular orbit (two
  heads, 30 stops each; ``--orbit contour``: a body-contour orbit instead, the collimator 25 mm from
  the phantom's outline at every view, 137-178 mm from the axis, as clinical cameras follow the
  patient: ``recon.simulate.orbits.body_contour_radii``), 64×24 pixels of 4.8 mm; medium-energy
  collimator (``"ME"``, depth-dependent response modelled); attenuation by water at the
  yield-weighted mean μ of the 171 and 245 keV lines (NIST XCOM through
  ``recon.physics.attenuation``); scatter in the photopeak windows as a smooth additive term (the
  attenuated primary blurred by a 30 mm Gaussian, 40 % of the primary: In-111 adds down-scatter of
  its 245 keV line into the 171 keV window to the usual ~30 %), known to the reconstruction (as a
  perfect TEW estimate would be); 500 000 expected photopeak counts in all (primary + scatter). 10
  subsets of 6 views.
- **PET, Zr-89**: the 8-ring "small" test scanner (TOF 400 ps; the full TOF sinogram is 5 million
  bins, listmode keeps this CPU benchmark affordable) and 16×64×64 voxels of 4×4.4×4.4 mm;
  attenuation by water at 511 keV; the activity seen through a 5 mm FWHM Gaussian (an assumed
  system resolution: detector plus Zr-89 positron range) that both methods model
  (``recon.ImageResolution(5.0)`` in the listmode model: clinical penalised likelihood, e.g.
  Q.Clear, always runs with resolution modelling, and OSEM gets the same model); ``--no-psf``
  leaves the blur unmodelled instead, so that both methods meet a mismatch between data and
  model and are timed on the bare projector (the verdict differs: the README gives both); scatter
  (a radially blurred copy of the trues, 35 % of them) and randoms (uniform singles, 15 % of the
  trues) as additive terms known to the reconstruction; 300 000 expected prompts in a 10 minute
  frame, simulated as TOF listmode events and reconstructed as listmode (OSEM and BSREM on the
  same frame). 8 subsets of events.

The methods' grids: OSEM kept after iterations 1-16 (SPECT) or 1-8 (PET), each post-filtered
with FWHM 0, 3, 6, … 24 mm (SPECT) or 0, 2, … 14 mm (PET) (the JSON flags ``at_grid_edge`` when
the best OSEM point lies on the grid's edge, as it often does: the largest CRC/CV tends towards
the widest filter; ``--osem-grid wide`` extends the grid); BSREM with
β = 0.001 … 10 (thirteen values, denser where the curve crosses OSEM's, 30 iterations each) for
SPECT and β = 0.05 … 3 (eleven values, denser over 0.1-0.5 where the curves cross, 20
iterations each: a listmode iteration over 300 000 events costs several times more on this CPU)
for PET; γ = 2 unless ``--gamma`` says otherwise.
Noise realisations: 16 each (about 3 and 10 minutes on a quiet 2-core CPU). The noise axis would
need only a few, as its variance is averaged over the background voxels (``voxels_in_masks`` in the
JSON; its relative standard error is about 1/sqrt(2 N), N the number of independent noise samples
among them: one per correlation volume of the smoothed noise, a few hundred here, so a few per
cent), but a small sphere's recovery varies a lot between realisations at these counts (4
realisations put the 17 mm SPECT sphere's CRC 0.1 higher than 16 do): its standard error is
reported (``crc_se``, and the paired ``margin_se_paired`` of the check), and ``--realisations``
raises the count when the CPU allows.
``--quick`` shrinks everything (coarser grids, fewer counts, 3 iterations) to a smoke test that
says nothing about the methods.

Counts are set by scaling the expected data to the stated total; the images' units are
irrelevant to CRC and CV. The same projector simulates and reconstructs (except the PET blur):
both methods share that advantage.

Timing
------
Time per iteration, BSREM against OSEM, on the same model and data (realisation 0), measured in
the runs themselves: the interval between the ends of consecutive iterations (so BSREM's includes
its prior gradient per subset, the Hessian diagonal of the preconditioner at the start of each
iteration and, when on, the objective evaluation; the first iteration, which carries the set-up,
is left out). Runs of OSEM, BSREM without and BSREM with the objective are interleaved, in an
order rotated from round to round, and repeated (12 rounds for SPECT, 6 for PET); the medians are
reported, with the load average of the machine (other processes share its cores).
``--timing-only`` runs just this part, on one realisation, and writes
``contrast-noise-timing-*.json`` (``--timing-repeats`` sets the rounds).

Usage::

    python benchmarks/contrast_noise.py                       # both modalities, full
    python benchmarks/contrast_noise.py --modality spect --realisations 6
    python benchmarks/contrast_noise.py --modality spect --timing-only --timing-repeats 40
    python benchmarks/contrast_noise.py --quick               # seconds: tiny problems
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

import recon
from recon._files import write_text_atomic
from recon.algorithms.filters import gaussian_filter_fwhm
from recon.algorithms.priors import RelativeDifferencePrior, kappa_for
from recon.backend import resolve_backend
from recon.physics.attenuation import hu_to_mu
from recon.physics.isotopes import get_isotope
from recon.simulate.orbits import body_contour_radii
from recon.simulate.phantoms import nema_iec_phantom, sphere_mask

SPHERE_TO_BACKGROUND = 4.0
BACKGROUND_MARGIN_MM = 15.0  # NEMA NU 2: background ROIs at least 15 mm from the phantom edge
BACKGROUND_HALF_LENGTH_MM = 20.0  # NEMA NU 2: the sphere plane and ±1, ±2 cm
CHECKED_SPHERES = 3  # the "done when" check: the three smallest spheres
RING_OFFSET_DEG = 30.0  # the IEC phantom's spheres lie 60° apart on a ring: midway between two
START_ITERATIONS = 2  # BSREM's start, as recon spect|pet --algorithm bsrem
EPSILON_FRACTION = 1e-3  # ε = this × the start's mean over the seen voxels, as the CLI
GAMMA = 2.0
CONVERGENCE_WINDOW = 5  # iterations over which the recovery's drift is reported
TIMING_TARGET = 1.3
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# ---------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """One modality's acquisition and the grids of both methods."""

    modality: str
    isotope: str
    shape: tuple[int, int, int]
    voxel_mm: tuple[float, float, float]
    counts: float  # expected photopeak counts (SPECT) or prompts (PET) in the acquisition
    subsets: int
    osem_iterations: int  # OSEM is kept after every iteration 1 … this
    fwhm_mm: tuple[float, ...]  # post-filters of OSEM (0: none)
    betas: tuple[float, ...]
    bsrem_iterations: int
    realisations: int
    seed: int
    timing_iterations: int = 4
    timing_repeats: int = 3
    gamma: float = GAMMA  # the relative difference prior's edge preservation
    kappa: str = "sensitivity"  # the prior's weights: sensitivity_kappa or hessian_kappa
    extra: dict[str, Any] = field(default_factory=dict)


#: ``--osem-grid wide``: many more iterations and far wider filters, to see whether the best OSEM
#: point (largest CRC/CV) keeps moving to the grid's edge and whether BSREM still matches it there.
WIDE_OSEM_GRID = {
    "spect": dict(osem_iterations=40, fwhm_mm=(0, 6, 12, 18, 24, 36, 48, 60)),
    "pet": dict(osem_iterations=16, fwhm_mm=(0, 2, 4, 6, 8, 10, 14, 20, 30)),
}


def settings(modality: str, quick: bool) -> Settings:
    """The full or quick configuration of ``modality`` (module docstring)."""
    if modality == "spect":
        full = Settings(
            modality="spect", isotope="In-111", shape=(24, 64, 64), voxel_mm=(4.8, 4.8, 4.8),
            counts=5e5, subsets=10, osem_iterations=16,
            fwhm_mm=(0, 3, 6, 9, 12, 15, 18, 21, 24),
            betas=(0.001, 0.003, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.3, 1.0, 3.0, 10.0),
            bsrem_iterations=30, realisations=16,
            seed=20261207, timing_iterations=3, timing_repeats=12,
            extra={"views": 60, "heads": 2, "radius_mm": 260.0, "orbit": "circular",
                   "clearance_mm": 25.0, "collimator": "ME",
                   "time_per_view_s": 60.0, "scatter_to_primary": 0.4,
                   "scatter_blur_sigma_mm": 30.0},
        )  # fmt: skip
        if not quick:
            return full
        return replace(
            full, shape=(12, 48, 48), voxel_mm=(6.4, 6.4, 6.4), counts=1e5, subsets=5,
            osem_iterations=3, fwhm_mm=(0, 8), betas=(0.3, 3.0), bsrem_iterations=3,
            realisations=2, timing_iterations=2, timing_repeats=1,
            extra={**full.extra, "views": 30},
        )  # fmt: skip
    if modality == "pet":
        full = Settings(
            modality="pet", isotope="Zr-89", shape=(16, 64, 64), voxel_mm=(4.0, 4.4, 4.4),
            counts=3e5, subsets=8, osem_iterations=8, fwhm_mm=(0, 2, 4, 6, 8, 10, 12, 14),
            betas=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0, 3.0),
            bsrem_iterations=20,
            realisations=16,
            seed=20261208, timing_iterations=3, timing_repeats=6,
            extra={"scanner": "small", "frame_s": 600.0, "resolution_fwhm_mm": 5.0,
                   "scatter_to_trues": 0.35, "randoms_to_trues": 0.15,
                   "scatter_blur_sigma_bins": 10.0, "psf": True},
        )  # fmt: skip
        if not quick:
            return full
        return replace(
            full, shape=(16, 32, 32), voxel_mm=(4.0, 8.8, 8.8), counts=2e4, subsets=4,
            osem_iterations=3, fwhm_mm=(0, 8), betas=(0.3, 3.0), bsrem_iterations=3,
            realisations=2, timing_iterations=2, timing_repeats=1,
        )  # fmt: skip
    raise SystemExit(f"unknown modality {modality!r}: spect or pet")


# ---------------------------------------------------------------------------------- studies
@dataclass
class Study:
    """A simulated acquisition: the phantom, its masks, and noisy data for any seed.

    ``draw(seed)`` returns ``(model, counts, additive)``: the system model the methods
    reconstruct with (for listmode, the frame of that realisation's events), the counts and the
    additive term (None: the model's own).
    """

    grid: recon.ImageGrid
    spheres: list[Any]
    sphere_masks: list[np.ndarray]
    between_masks: list[np.ndarray]  # per sphere: same-size VOIs on the ring with no sphere
    background: np.ndarray
    draw: Callable[[int], tuple[Any, Any, Any]]
    description: dict[str, Any]


def _water_mu_per_mm(isotope: str) -> float:
    """Water's μ at the isotope's imaged lines, weighted by their yields (NIST XCOM tables of
    ``recon.physics.attenuation``); 511 keV for positron emitters."""
    iso = get_isotope(isotope)
    if iso.positron_fraction > 0:
        return float(hu_to_mu(0.0, 511.0))
    lines = [p for p in iso.photons if p.yield_per_decay > 0.5]
    return sum(p.yield_per_decay * float(hu_to_mu(0.0, p.energy_kev)) for p in lines) / sum(
        p.yield_per_decay for p in lines
    )


def _background_region(grid: recon.ImageGrid, activity: np.ndarray, level: float) -> np.ndarray:
    """Uniform-background voxels at least BACKGROUND_MARGIN_MM from any other voxel and within
    BACKGROUND_HALF_LENGTH_MM of the sphere plane (module docstring)."""
    uniform = np.abs(activity - level) <= 1e-6 * level
    distance = ndimage.distance_transform_edt(uniform, sampling=grid.voxel_size_mm)
    z = grid.axis_mm(0)[:, None, None]
    return (distance >= BACKGROUND_MARGIN_MM) & (np.abs(z) <= BACKGROUND_HALF_LENGTH_MM)


def _phantom(s: Settings) -> tuple[recon.ImageGrid, np.ndarray, np.ndarray, list[Any]]:
    grid = recon.ImageGrid(s.shape, s.voxel_mm)
    activity, mu, spheres = nema_iec_phantom(
        grid, SPHERE_TO_BACKGROUND, 1.0, mu_water_per_mm=_water_mu_per_mm(s.isotope)
    )
    return grid, activity, mu, spheres


def _between_masks(grid: Any, activity: np.ndarray, spheres: list[Any]) -> list[np.ndarray]:
    """Per sphere, VOIs of its size on the ring of sphere centres, turned ±RING_OFFSET_DEG about
    the ring's centre (midway to its neighbours, where there is no sphere); each kept only where
    it lies wholly in the uniform background (none fits beside the largest spheres: their
    recovery there is reported as None)."""
    centres = np.array([sp.centre_mm for sp in spheres])
    cx, cy = centres[:, 0].mean(), centres[:, 1].mean()
    uniform = np.abs(activity - 1.0) <= 1e-6
    masks = []
    for sp in spheres:
        x, y, z = sp.centre_mm
        radius, angle = math.hypot(x - cx, y - cy), math.atan2(y - cy, x - cx)
        union = np.zeros(grid.shape, bool)
        for offset in (RING_OFFSET_DEG, -RING_OFFSET_DEG):
            t = angle + math.radians(offset)
            centre = (cx + radius * math.cos(t), cy + radius * math.sin(t), z)
            voi = sphere_mask(grid, centre, sp.diameter_mm)
            if voi.any() and uniform[voi].all():
                union |= voi
        masks.append(union)
    return masks


def _study(s: Settings, grid: Any, activity: np.ndarray, spheres: list[Any], draw: Any,
           description: dict[str, Any]) -> Study:  # fmt: skip
    masks = [sphere_mask(grid, sp.centre_mm, sp.diameter_mm) for sp in spheres]
    between = _between_masks(grid, activity, spheres)
    background = _background_region(grid, activity, 1.0)
    checked = sorted(range(len(spheres)), key=lambda j: spheres[j].diameter_mm)[:CHECKED_SPHERES]
    if not background.any() or not all(m.any() for m in masks):
        raise SystemExit("refused: the grid leaves a sphere or the background region empty")
    if not all(between[j].any() for j in checked):
        raise SystemExit("refused: no room for a VOI between a checked sphere and its neighbours")
    description["voxels_in_masks"] = {
        "background": int(background.sum()),
        **{sp.name: int(m.sum()) for sp, m in zip(spheres, masks, strict=True)},
        **{f"between_{sp.name}": int(m.sum()) for sp, m in zip(spheres, between, strict=True)},
    }
    return Study(grid, spheres, masks, between, background, draw, description)


def spect_study(s: Settings, device: str) -> Study:
    """In-111 SPECT of the phantom (module docstring)."""
    grid, activity, mu, spheres = _phantom(s)
    e = s.extra
    geometry = recon.SpectGeometry.circular(
        n_views=e["views"], radius_mm=e["radius_mm"], n_u=s.shape[2], n_v=s.shape[0],
        pixel_size_mm=s.voxel_mm[2], time_per_view_s=e["time_per_view_s"], n_heads=e["heads"],
    )  # fmt: skip
    if e["orbit"] == "contour":  # same views and times, the radius following the body
        radii = body_contour_radii(mu > 0, grid, geometry.angles_deg, e["clearance_mm"])
        geometry = recon.SpectGeometry(
            geometry.angles_deg, radii, geometry.n_u, geometry.n_v, geometry.pixel_size_mm,
            geometry.start_times_s, geometry.durations_s,
        )  # fmt: skip
    model = recon.SpectModel(
        geometry, grid, mu_map=mu, collimator=recon.Collimator.preset(e["collimator"]),
        isotope=s.isotope, device=device,
    )  # fmt: skip
    primary = np.asarray(model.backend.to_host(model.forward(activity)), np.float64)
    sigma_px = e["scatter_blur_sigma_mm"] / s.voxel_mm[2]
    blurred = ndimage.gaussian_filter(primary, (0.0, sigma_px, sigma_px), mode="constant")
    scatter = e["scatter_to_primary"] * blurred * primary.sum() / blurred.sum()
    scale = s.counts / (primary.sum() + scatter.sum())
    expected = (primary + scatter) * scale
    additive = (scatter * scale).astype(np.float32)

    def draw(seed: int) -> tuple[Any, Any, Any]:
        counts = np.random.default_rng(seed).poisson(expected).astype(np.float32)
        return model, counts, additive

    description = {
        "phantom": "NEMA-IEC body (recon.simulate.phantoms.nema_iec_phantom), spheres 4:1",
        "isotope": s.isotope, "grid": list(s.shape), "voxel_mm": list(s.voxel_mm),
        "views": e["views"], "heads": e["heads"], "orbit": e["orbit"],
        "orbit_radius_mm": (
            e["radius_mm"] if e["orbit"] == "circular"
            else {"clearance_mm": e["clearance_mm"], "min": float(geometry.radii_mm.min()),
                  "max": float(geometry.radii_mm.max())}
        ),
        "collimator": e["collimator"], "mu_water_per_mm": _water_mu_per_mm(s.isotope),
        "scatter_to_primary": e["scatter_to_primary"],
        "scatter_blur_sigma_mm": e["scatter_blur_sigma_mm"],
        "expected_counts": float(expected.sum()),
        "expected_scatter_fraction": float(additive.sum() / expected.sum()),
        "additive": "the expected scatter, known to the reconstruction",
    }  # fmt: skip
    return _study(s, grid, activity, spheres, draw, description)


def pet_study(s: Settings, device: str) -> Study:
    """Zr-89 TOF listmode PET of the phantom (module docstring)."""
    grid, activity, mu, spheres = _phantom(s)
    e = s.extra
    scanner = recon.PetScanner.preset(e["scanner"])
    frame_s = e["frame_s"]
    sigma = [e["resolution_fwhm_mm"] / FWHM_PER_SIGMA / v for v in s.voxel_mm]
    seen = ndimage.gaussian_filter(activity, sigma, mode="constant").astype(np.float32)

    def sinogram_model(calibration: float) -> recon.PetSinogramModel:
        return recon.PetSinogramModel(
            scanner, grid, mu_map=mu, isotope=s.isotope, frame_duration_s=frame_s,
            calibration=calibration, device=device,
        )  # fmt: skip

    unit = sinogram_model(1.0)
    trues_tof = np.asarray(unit.backend.to_host(unit.forward(seen)), np.float64)
    trues = trues_tof.sum(axis=-1)
    blurred = ndimage.gaussian_filter(
        trues, (0.0, 0.0, e["scatter_blur_sigma_bins"]), mode="constant"
    )
    scatter = e["scatter_to_trues"] * blurred * trues.sum() / blurred.sum()
    randoms = recon.pet.randoms_from_singles(
        np.ones(scanner.n_crystals), 4.0, frame_s, unit.layout
    ).astype(np.float64)
    randoms *= e["randoms_to_trues"] * trues.sum() / randoms.sum()
    scale = s.counts / (trues.sum() + scatter.sum() + randoms.sum())
    calibration = scale  # counts per unit of the phantom's activity, s and line integral
    simulator = sinogram_model(calibration)
    additive_sinogram = (scatter + randoms) * scale
    n_tof = trues_tof.shape[-1]
    additive_tof = np.repeat((additive_sinogram / n_tof)[..., None], n_tof, axis=-1)
    psf = recon.ImageResolution(e["resolution_fwhm_mm"]) if e.get("psf") else None
    model = recon.PetListmodeModel(
        scanner, grid, mu_map=mu, isotope=s.isotope, calibration=calibration, device=device,
        resolution=psf,
    )  # fmt: skip

    def draw(seed: int) -> tuple[Any, Any, Any]:
        events = recon.pet.simulate_listmode(
            simulator, seen, frame_s, np.random.default_rng(seed), additive=additive_tof
        )
        rate = model.additive_rate(events, additive_sinogram, frame_s)
        frame = model.frame(events, 0.0, frame_s, rate)
        return frame, frame.counts(), None

    description = {
        "phantom": "NEMA-IEC body (recon.simulate.phantoms.nema_iec_phantom), spheres 4:1",
        "isotope": s.isotope, "scanner": e["scanner"], "tof_fwhm_ps": scanner.tof.fwhm_ps,
        "grid": list(s.shape), "voxel_mm": list(s.voxel_mm), "frame_s": frame_s,
        "data": "TOF listmode events (recon.pet.simulate_listmode), reconstructed as listmode",
        "mu_water_per_mm": _water_mu_per_mm(s.isotope),
        "data_resolution_fwhm_mm": e["resolution_fwhm_mm"],
        "resolution_model": repr(psf) if psf is not None else "none (the blur is unmodelled)",
        "scatter_to_trues": e["scatter_to_trues"], "randoms_to_trues": e["randoms_to_trues"],
        "expected_prompts": float(s.counts),
        "additive": "the expected scatter + randoms, known to the reconstruction",
    }  # fmt: skip
    return _study(s, grid, activity, spheres, draw, description)


# ---------------------------------------------------------------------------------- measuring
@dataclass
class Samples:
    """What one reconstruction point measured in each realisation."""

    sphere_means: list[np.ndarray] = field(default_factory=list)  # (n_spheres,) per realisation
    between_means: list[np.ndarray] = field(default_factory=list)  # (n_spheres,) per realisation
    background: list[np.ndarray] = field(default_factory=list)  # background voxels

    def add(self, study: Study, image: np.ndarray) -> None:
        self.sphere_means.append(np.array([image[m].mean() for m in study.sphere_masks]))
        self.between_means.append(
            np.array([image[m].mean() if m.any() else np.nan for m in study.between_masks])
        )
        self.background.append(image[study.background].astype(np.float64))

    def subset(self, rows: Sequence[int]) -> Samples:
        """The samples of the realisations ``rows`` only."""
        return Samples(
            [self.sphere_means[r] for r in rows],
            [self.between_means[r] for r in rows],
            [self.background[r] for r in rows],
        )


def recovery(sphere_means: np.ndarray, background_mean: np.ndarray) -> np.ndarray:
    """NEMA NU 2 hot-sphere contrast recovery ``(C_j/C_B − 1)/(a_j/a_B − 1)``; the last axis of
    ``sphere_means`` runs over the spheres."""
    return (sphere_means / background_mean[..., None] - 1.0) / (SPHERE_TO_BACKGROUND - 1.0)


def _by_name(names: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    """``{name: value}``, None where a value is NaN (no VOI between spheres: strict JSON)."""
    return {n: None if np.isnan(v) else float(v) for n, v in zip(names, values, strict=True)}


def summarise(samples: Samples, names: Sequence[str]) -> dict[str, Any]:
    """Ensemble CRC (mean, standard error) per sphere, per-realisation CRCs and the noise."""
    spheres = np.array(samples.sphere_means)  # (R, n_spheres)
    background = np.array(samples.background)  # (R, n_voxels)
    per_realisation = recovery(spheres, background.mean(axis=1))
    between = recovery(np.array(samples.between_means), background.mean(axis=1))
    excess = per_realisation - between
    r = len(spheres)
    cv = math.sqrt(float(background.var(axis=0, ddof=1).mean())) / float(background.mean())
    spatial = float(np.mean(background.std(axis=1, ddof=1) / background.mean(axis=1)))
    return {
        "cv": cv,
        "spatial_cv_single_image": spatial,
        "crc": dict(zip(names, per_realisation.mean(axis=0).tolist(), strict=True)),
        "crc_se": dict(
            zip(names, (per_realisation.std(axis=0, ddof=1) / math.sqrt(r)).tolist(), strict=True)
        ),
        "crc_per_realisation": {n: per_realisation[:, j].tolist() for j, n in enumerate(names)},
        "crc_between_spheres": _by_name(names, between.mean(axis=0)),
        "sphere_excess": _by_name(names, excess.mean(axis=0)),
        "sphere_excess_se": _by_name(names, excess.std(axis=0, ddof=1) / math.sqrt(r)),
        "sphere_excess_per_realisation": {
            n: None if np.isnan(excess[:, j]).any() else excess[:, j].tolist()
            for j, n in enumerate(names)
        },
    }


def _host_copy(model: Any, array: Any) -> np.ndarray:
    return np.array(model.backend.to_host(array), dtype=np.float32, copy=True)


def osem_images(model: Any, counts: Any, additive: Any, s: Settings) -> list[np.ndarray]:
    """OSEM images after each iteration 1 … ``s.osem_iterations`` (host copies)."""
    kept: list[np.ndarray] = []

    def keep(state: Any) -> None:
        if state.subset == state.n_subsets - 1:
            kept.append(_host_copy(model, state.image))

    recon.osem(model, counts, additive=additive, iterations=s.osem_iterations,
               subsets=s.subsets, callback=keep, progress=False)  # fmt: skip
    return kept


def epsilon_for(model: Any, start: np.ndarray) -> float:
    """ε of the relative difference prior: 10⁻³ × the start's mean over the seen voxels (the
    default of ``recon spect|pet --algorithm bsrem``)."""
    seen = np.asarray(model.backend.to_host(model.sensitivity(None))) > 0
    return max(EPSILON_FRACTION * float(start[seen].mean()), 1e-30)


def prior_weights(model: Any, counts: Any, additive: Any, start: np.ndarray, s: Settings) -> Any:
    """κ of the prior (``s.kappa``): made once per realisation, shared by every β."""
    return kappa_for(s.kappa, model, counts, additive, start)


def bsrem_prior(model: Any, start: np.ndarray, kappa: Any, beta: float, s: Settings) -> Any:
    """The relative difference prior of BSREM at ``beta`` (module docstring)."""
    return RelativeDifferencePrior(
        beta, gamma=s.gamma, epsilon=epsilon_for(model, start), kappa=kappa
    )


def bsrem_run(
    model: Any, counts: Any, additive: Any, start: np.ndarray, kappa: Any, beta: float,
    s: Settings,
) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
    """BSREM's image after ``s.bsrem_iterations``, the image CONVERGENCE_WINDOW iterations
    earlier, and the relative change of the image over the last iteration."""
    last = s.bsrem_iterations
    wanted = {last - 1, max(last - CONVERGENCE_WINDOW, 1)}
    kept: dict[int, np.ndarray] = {}

    def keep(state: Any) -> None:
        if state.subset == state.n_subsets - 1 and state.iteration in wanted:
            kept[state.iteration] = _host_copy(model, state.image)

    prior = bsrem_prior(model, start, kappa, beta, s)
    image = recon.bsrem(model, counts, additive=additive, prior=prior, iterations=last,
                        subsets=s.subsets, x0=start, objective=False, callback=keep,
                        progress=False)  # fmt: skip
    final = _host_copy(model, image.data)
    previous = kept.get(last - 1, start)
    change = float(np.linalg.norm(final - previous) / max(np.linalg.norm(final), 1e-30))
    return final, kept.get(max(last - CONVERGENCE_WINDOW, 1), start), change


# ---------------------------------------------------------------------------------- timing
def _per_iteration(run: Callable[[Callable[[Any], None]], Any]) -> list[float]:
    """Durations of iterations 2 … n of ``run(callback)``: between the ends of iterations."""
    ends: list[float] = []

    def stamp(state: Any) -> None:
        if state.subset == state.n_subsets - 1:
            ends.append(time.perf_counter())

    run(stamp)
    return np.diff(ends).tolist()


def time_iterations(
    model: Any, counts: Any, additive: Any, start: np.ndarray, kappa: Any, beta: float,
    s: Settings,
) -> dict[str, Any]:  # fmt: skip
    """Median time per iteration of OSEM and BSREM (objective off and on), interleaved runs."""
    prior = bsrem_prior(model, start, kappa, beta, s)
    n = s.timing_iterations + 1  # the first iteration is not counted
    common = dict(additive=additive, iterations=n, subsets=s.subsets, x0=start, progress=False)
    runs: dict[str, Callable[[Callable[[Any], None]], Any]] = {
        "osem": lambda cb: recon.osem(model, counts, callback=cb, **common),
        "bsrem": lambda cb: recon.bsrem(
            model, counts, prior=prior, objective=False, callback=cb, **common
        ),
        "bsrem_with_objective": lambda cb: recon.bsrem(
            model, counts, prior=prior, objective=True, callback=cb, **common
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    order: list[list[str]] = []
    load = [os.getloadavg()[0]]
    for round_ in range(s.timing_repeats):
        # Each round runs every method once, the order rotated so that none always runs first
        # (after the same neighbour): on a noisy machine the speed drifts within seconds.
        k = round_ % len(names)
        order.append(names[k:] + names[:k])
        for name in order[-1]:
            times[name] += _per_iteration(runs[name])
    load.append(os.getloadavg()[0])
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "beta": beta,
        "iterations_per_run": s.timing_iterations,
        "repeats": s.timing_repeats,
        "order": "every method once per repeat, the order rotated from repeat to repeat",
        "run_order": order,
        "seconds_per_iteration": median,
        "samples_s": times,
        "ratio_bsrem_to_osem": median["bsrem"] / median["osem"],
        "ratio_bsrem_with_objective_to_osem": median["bsrem_with_objective"] / median["osem"],
        "target_ratio": TIMING_TARGET,
        "meets_target": median["bsrem"] / median["osem"] <= TIMING_TARGET,
        "includes": (
            "the interval between the ends of consecutive iterations: all subset updates "
            "(forward and back projection; BSREM: the prior gradient per subset and the Hessian "
            "diagonal once per iteration) and the per-iteration finiteness check; "
            "'bsrem_with_objective' adds the evaluation of the objective after every "
            "iteration (recon.bsrem's default objective=True)"
        ),
        "load_average_1min": load,
    }


# ---------------------------------------------------------------------------------- the check
def _curve_at(cv: np.ndarray, crc: np.ndarray, target_cv: float) -> tuple[float, Any] | None:
    """The curve's CRC at ``target_cv`` (points ordered by CV, linear between neighbours) and
    the interpolation (index pair, weight); None outside the curve's CV range."""
    order = np.argsort(cv)
    cv, crc = cv[order], crc[order]
    if not cv[0] <= target_cv <= cv[-1]:
        return None
    k = int(np.searchsorted(cv, target_cv))
    if k == 0:
        return float(crc[0]), (int(order[0]), int(order[0]), 0.0)
    w = (target_cv - cv[k - 1]) / (cv[k] - cv[k - 1])
    return float(crc[k - 1] + w * (crc[k] - crc[k - 1])), (int(order[k - 1]), int(order[k]), w)


def dominance(
    osem: list[dict[str, Any]], bsrem: list[dict[str, Any]], name: str, measure: str = "crc"
) -> dict:
    """Is BSREM at least as good as the best OSEM point for sphere ``name``, with ``measure``
    (``"crc"`` or ``"sphere_excess"``) as the recovery? (module docstring)"""
    o_cv = np.array([p["cv"] for p in osem])
    o_crc = np.array([p[measure][name] for p in osem])
    # Largest recovery per unit of noise among the points that recover at all (a ratio of two
    # negatives would reward the least bad); with none, the largest recovery.
    positive = o_crc > 0
    best = (
        int(np.argmax(np.where(positive, o_crc / o_cv, -np.inf)))
        if positive.any()
        else int(np.argmax(o_crc))
    )
    edge_iterations = max(p["iterations"] for p in osem)
    edge_fwhm = max(p["fwhm_mm"] for p in osem)
    best_cv, best_crc = float(o_cv[best]), float(o_crc[best])
    b_cv = np.array([p["cv"] for p in bsrem])
    b_crc = np.array([p[measure][name] for p in bsrem])
    b_per = np.array([p[f"{measure}_per_realisation"][name] for p in bsrem])  # (n_beta, R)
    o_per = np.array(osem[best][f"{measure}_per_realisation"][name])
    at = _curve_at(b_cv, b_crc, best_cv)
    margin_se = None
    if at is not None:
        curve_crc, (i, j, w) = at
        passes = curve_crc >= best_crc
        paired = (1 - w) * b_per[i] + w * b_per[j] - o_per
        margin_se = float(paired.std(ddof=1) / math.sqrt(len(paired)))
        how = "interpolated at the best OSEM point's CV"
    elif best_cv > b_cv.max():  # every BSREM point is quieter: the noisiest must recover more
        noisiest = int(np.argmax(b_cv))
        curve_crc = float(b_crc[noisiest])
        passes = curve_crc >= best_crc
        how = "the BSREM curve is quieter than the best OSEM point: its noisiest point"
    else:
        curve_crc, passes = None, False
        how = "the BSREM curve does not reach the best OSEM point's CV (extend β upwards)"
    dominating = [p["beta"] for p in bsrem if p["cv"] <= best_cv and p[measure][name] >= best_crc]
    in_range = [(c, r) for c, r in zip(o_cv, o_crc, strict=True)
                if b_cv.min() <= c <= b_cv.max()]  # fmt: skip
    below = sum(1 for c, r in in_range if r <= _curve_at(b_cv, b_crc, c)[0])  # type: ignore[index]
    return {
        "measure": measure,
        "best_osem": {
            "iterations": osem[best]["iterations"],
            "fwhm_mm": osem[best]["fwhm_mm"],
            "cv": best_cv,
            "crc": best_crc,
            "crc_se": osem[best][f"{measure}_se"][name],
            "crc_over_cv": best_crc / best_cv,
            # On the grid's edge a wider grid (more iterations, wider filters) could do better.
            "at_grid_edge": osem[best]["iterations"] == edge_iterations
            or osem[best]["fwhm_mm"] == edge_fwhm,
        },
        "bsrem_crc_at_best_osem_cv": curve_crc,
        "margin": None if curve_crc is None else curve_crc - best_crc,
        "margin_se_paired": margin_se,
        "how": how,
        "curve_at_best_osem": bool(passes),
        "dominating_betas": dominating,
        "bsrem_at_least_as_good": bool(passes) or bool(dominating),
        "osem_points_in_bsrem_cv_range": len(in_range),
        "osem_points_on_or_below_bsrem_curve": below,
    }


def _margin_at(
    osem_point: dict[str, Any], bsrem: list[dict[str, Any]], name: str, measure: str
) -> tuple[float | None, float | None]:
    """BSREM's curve minus one OSEM point at its CV (as :func:`dominance` does), with the
    paired standard error where the curve spans that CV."""
    cv, crc = osem_point["cv"], osem_point[measure][name]
    b_cv = np.array([p["cv"] for p in bsrem])
    b_crc = np.array([p[measure][name] for p in bsrem])
    at = _curve_at(b_cv, b_crc, cv)
    if at is None:
        if cv > b_cv.max():  # every BSREM point is quieter: its noisiest point counts
            return float(b_crc[int(np.argmax(b_cv))]) - crc, None
        return None, None
    curve, (i, j, w) = at
    b_per = np.array([p[f"{measure}_per_realisation"][name] for p in bsrem])
    paired = (
        (1 - w) * b_per[i] + w * b_per[j] - np.array(osem_point[f"{measure}_per_realisation"][name])
    )
    return curve - crc, float(paired.std(ddof=1) / math.sqrt(len(paired)))


def cross_fitted(
    halves: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]], name: str, measure: str
) -> dict[str, Any]:
    """The check without picking and judging the best OSEM point on the same data.

    :func:`dominance` picks the best of many noisy OSEM points on the realisations that then
    judge it, which favours OSEM (the winner's curse). Here the best OSEM configuration
    (iterations, FWHM) is picked on one half of the realisations (``halves[k]``: OSEM and
    BSREM points summarised over that half) and judged on the other, both ways; the margin is
    the mean of the two, its standard error from the two folds' paired ones."""
    folds = []
    for pick, judge in ((0, 1), (1, 0)):
        chosen = dominance(halves[pick][0], halves[pick][1], name, measure)["best_osem"]
        judged = next(
            p for p in halves[judge][0]
            if p["iterations"] == chosen["iterations"] and p["fwhm_mm"] == chosen["fwhm_mm"]
        )  # fmt: skip
        margin, se = _margin_at(judged, halves[judge][1], name, measure)
        folds.append({
            "picked_on": ("even", "odd")[pick] + " realisations",
            "iterations": chosen["iterations"], "fwhm_mm": chosen["fwhm_mm"],
            "cv": judged["cv"], "crc": judged[measure][name], "margin": margin,
            "margin_se_paired": se,
        })  # fmt: skip
    margins = [f["margin"] for f in folds]
    ses = [f["margin_se_paired"] for f in folds]
    return {
        "folds": folds,
        "margin": None if None in margins else float(np.mean(margins)),  # type: ignore[arg-type]
        "margin_se": None if None in ses else 0.5 * math.hypot(*ses),  # type: ignore[arg-type]
    }


# ---------------------------------------------------------------------------------- one modality
def run_modality(s: Settings, device: str) -> dict[str, Any]:
    """Simulate, reconstruct every realisation by both methods, measure, check and time."""
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    study = spect_study(s, device) if s.modality == "spect" else pet_study(s, device)
    names = [sp.name for sp in study.spheres]
    osem_samples = {(i, f): Samples() for i in range(1, s.osem_iterations + 1) for f in s.fwhm_mm}
    bsrem_samples = {b: Samples() for b in s.betas}
    earlier = {b: Samples() for b in s.betas}
    changes: dict[float, list[float]] = {b: [] for b in s.betas}
    counts_drawn: list[float] = []
    timing = None
    for r in range(s.realisations):
        seed = s.seed + r
        model, counts, additive = study.draw(seed)
        counts_drawn.append(float(np.asarray(model.backend.to_host(counts)).sum()))
        print(f"[{s.modality}] realisation {r + 1}/{s.realisations} (seed {seed}): "
              f"{counts_drawn[-1]:.0f} counts", flush=True)  # fmt: skip
        images = osem_images(model, counts, additive, s)
        for i, image in enumerate(images, start=1):
            for f in s.fwhm_mm:
                filtered = gaussian_filter_fwhm(image, float(f), study.grid.voxel_size_mm)
                osem_samples[(i, f)].add(study, filtered)
        start = images[START_ITERATIONS - 1]
        kappa = prior_weights(model, counts, additive, start, s)
        for beta in s.betas:
            final, before, change = bsrem_run(model, counts, additive, start, kappa, beta, s)
            bsrem_samples[beta].add(study, final)
            earlier[beta].add(study, before)
            changes[beta].append(change)
            print(f"  BSREM beta={beta:g}: relative change over the last iteration "
                  f"{change:.2e}", flush=True)  # fmt: skip
        if r == 0:
            timing = time_iterations(
                model, counts, additive, start, kappa, float(np.median(s.betas)), s
            )
            print(f"  time per iteration: OSEM {timing['seconds_per_iteration']['osem']:.3f} s, "
                  f"BSREM {timing['seconds_per_iteration']['bsrem']:.3f} s "
                  f"(ratio {timing['ratio_bsrem_to_osem']:.2f})", flush=True)  # fmt: skip

    osem_points = [
        {"iterations": i, "fwhm_mm": float(f), **summarise(smp, names)}
        for (i, f), smp in osem_samples.items()
    ]
    bsrem_points = []
    for beta in s.betas:
        point = {"beta": beta, **summarise(bsrem_samples[beta], names)}
        before = summarise(earlier[beta], names)
        point["convergence"] = {
            "iterations": s.bsrem_iterations,
            "relative_change_last_iteration_max": max(changes[beta]),
            f"crc_change_over_last_{CONVERGENCE_WINDOW}_iterations_max": max(
                abs(point["crc"][n] - before["crc"][n]) for n in names
            ),
            f"cv_relative_change_over_last_{CONVERGENCE_WINDOW}_iterations": abs(
                point["cv"] / before["cv"] - 1.0
            ),
        }
        bsrem_points.append(point)
    by_size = sorted(study.spheres, key=lambda sp: sp.diameter_mm)
    checked = [sp.name for sp in by_size[:CHECKED_SPHERES]]
    checks = {n: dominance(osem_points, bsrem_points, n) for n in checked}
    excess_checks = {n: dominance(osem_points, bsrem_points, n, "sphere_excess") for n in checked}
    if s.realisations >= 4:  # two halves of at least two realisations (an ensemble variance)
        rows = [list(range(0, s.realisations, 2)), list(range(1, s.realisations, 2))]
        halves = [
            (
                [{"iterations": i, "fwhm_mm": float(f), **summarise(smp.subset(h), names)}
                 for (i, f), smp in osem_samples.items()],
                [{"beta": b, **summarise(bsrem_samples[b].subset(h), names)} for b in s.betas],
            )
            for h in rows
        ]  # fmt: skip
        for measure, found in (("crc", checks), ("sphere_excess", excess_checks)):
            for n in checked:
                found[n]["cross_fitted"] = cross_fitted(halves, n, measure)
    on_crc = all(c["bsrem_at_least_as_good"] for c in checks.values())
    on_excess = all(c["bsrem_at_least_as_good"] for c in excess_checks.values())
    return {
        "modality": s.modality,
        "settings": {k: v for k, v in asdict(s).items() if k != "extra"},
        "acquisition": study.description,
        "counts_per_realisation": counts_drawn,
        "spheres": [
            {"name": sp.name, "diameter_mm": sp.diameter_mm, "centre_mm": list(sp.centre_mm)}
            for sp in study.spheres
        ],
        "osem": osem_points,
        "bsrem": bsrem_points,
        "dominance": checks,
        "bsrem_at_least_as_good_for_smallest_three": on_crc,
        "dominance_sphere_excess": excess_checks,
        "bsrem_at_least_as_good_for_smallest_three_sphere_excess": on_excess,
        "done_when_check": on_crc and on_excess,
        "timing": timing,
        "wall_s": time.perf_counter() - started,
        "load_average_1min": [load_start, os.getloadavg()[0]],
    }


def run_timing(s: Settings, device: str) -> dict[str, Any]:
    """Only the timing of :func:`run_modality`, on its first realisation (``--timing-only``)."""
    started = time.perf_counter()
    study = spect_study(s, device) if s.modality == "spect" else pet_study(s, device)
    model, counts, additive = study.draw(s.seed)
    start = osem_images(model, counts, additive, replace(s, osem_iterations=START_ITERATIONS))[-1]
    kappa = prior_weights(model, counts, additive, start, s)
    print(f"[{s.modality}] timing {s.timing_repeats} rounds of {s.timing_iterations + 1} "
          "iterations of OSEM, BSREM and BSREM with the objective", flush=True)  # fmt: skip
    timing = time_iterations(model, counts, additive, start, kappa, float(np.median(s.betas)), s)
    return {
        "modality": s.modality,
        "settings": {k: v for k, v in asdict(s).items() if k != "extra"},
        "acquisition": study.description,
        "timing": timing,
        "wall_s": time.perf_counter() - started,
    }


def print_timing(result: dict[str, Any]) -> None:
    t = result["timing"]
    per = t["seconds_per_iteration"]
    print(f"time per iteration ({result['modality']}, median of {len(t['samples_s']['osem'])} "
          f"iterations each): OSEM {1e3 * per['osem']:.1f} ms, BSREM {1e3 * per['bsrem']:.1f} "
          f"ms (ratio {t['ratio_bsrem_to_osem']:.2f}, target <= {TIMING_TARGET}), with the "
          f"objective {1e3 * per['bsrem_with_objective']:.1f} ms "
          f"(ratio {t['ratio_bsrem_with_objective_to_osem']:.2f})")  # fmt: skip


# ---------------------------------------------------------------------------------- report
def _title(result: dict[str, Any]) -> str:
    a, s = result["acquisition"], result["settings"]
    if result["modality"] == "spect":
        counts = f"{a['expected_counts'] / 1e3:.0f} k photopeak counts, {a['collimator']}"
        what = f"{a['isotope']} SPECT"
    else:
        psf = "PSF modelled" if a["resolution_model"].startswith("ImageResolution") else "no PSF"
        counts = f"{a['expected_prompts'] / 1e3:.0f} k prompts, TOF listmode, {psf}"
        what = f"{a['isotope']} PET"
    weights = "κ = √s" if s.get("kappa", "sensitivity") == "sensitivity" else "κ = hessian_kappa"
    return (f"{what}, NEMA-IEC phantom 4:1, {counts}; BSREM prior weights {weights}; "
            f"{s['realisations']} noise realisations. Contrast recovery vs background "
            "noise")  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> None:
    """One panel per sphere: OSEM curves (one per filter FWHM, over iterations) and BSREM (over
    β), BSREM's recovery of the same-size VOIs between spheres (no sphere there: what spill and
    regularisation alone give) dashed, the best OSEM point of the checked spheres starred."""
    from matplotlib import colormaps

    from recon.figures import HOUSE_STYLE, new_figure, save_figure, style_axes

    spheres = result["spheres"]
    osem, bsrem, s = result["osem"], result["bsrem"], result["settings"]
    fig = new_figure(1500, 960, layout="constrained")
    axes = fig.subplots(2, 3, squeeze=False).ravel()
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(s["fwhm_mm"])))
    for ax, sphere in zip(axes, spheres, strict=False):
        name = sphere["name"]
        for colour, f in zip(colours, s["fwhm_mm"], strict=True):
            pts = [p for p in osem if p["fwhm_mm"] == float(f)]
            ax.plot([100 * p["cv"] for p in pts], [100 * p["crc"][name] for p in pts], "-o",
                    color=colour, ms=3, lw=1,
                    label=f"OSEM it. 1-{s['osem_iterations']}, FWHM {f:g} mm")  # fmt: skip
        ax.plot([100 * p["cv"] for p in bsrem], [100 * p["crc"][name] for p in bsrem], "-s",
                color="crimson", ms=5, lw=2, label="BSREM (RDP), β as marked")  # fmt: skip
        between = [p["crc_between_spheres"][name] for p in bsrem]
        if None not in between:
            ax.plot([100 * p["cv"] for p in bsrem], [100 * v for v in between], "--",
                    color="crimson", lw=1,
                    label="BSREM, same-size VOI between spheres (no sphere)")  # fmt: skip
        for p in bsrem:
            ax.annotate(f"{p['beta']:g}", (100 * p["cv"], 100 * p["crc"][name]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points", color="crimson")  # fmt: skip
        check = result["dominance"].get(name)
        title = f"{sphere['diameter_mm']:.0f} mm sphere"
        if check is not None:
            b = check["best_osem"]
            ax.plot(100 * b["cv"], 100 * b["crc"], "*", color="black", ms=13, zorder=5,
                    label="best OSEM point (max CRC/CV)")  # fmt: skip
            excess = result["dominance_sphere_excess"][name]["bsrem_at_least_as_good"]
            on_crc = "yes" if check["bsrem_at_least_as_good"] else "no"
            title += (f"\nBSREM ≥ best OSEM: CRC {on_crc}, above between-VOIs "
                      f"{'yes' if excess else 'no'}")  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("background noise: ensemble CV (%)")
        ax.set_ylabel("contrast recovery CRC (%)")
        ax.grid(True, alpha=0.3)
        style_axes(ax)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4,
               fontsize=HOUSE_STYLE.small_size)  # fmt: skip
    fig.suptitle(_title(result), fontsize=HOUSE_STYLE.title_size)
    save_figure(fig, path)


def _print_checks(checks: dict[str, Any], label: str) -> None:
    for n, c in checks.items():
        b = c["best_osem"]
        margin = "n/a" if c["margin"] is None else f"{100 * c['margin']:+.1f}"
        se = "" if c["margin_se_paired"] is None else f" ± {100 * c['margin_se_paired']:.1f}"
        print(f"{n} ({label}): best OSEM {b['iterations']} it + {b['fwhm_mm']:g} mm: CV "
              f"{100 * b['cv']:.1f} %, {label} {100 * b['crc']:.1f} %; BSREM curve there: margin "
              f"{margin}{se} points -> {'at or above' if c['curve_at_best_osem'] else 'below'}; "
              f"dominating betas: {c['dominating_betas'] or 'none'} -> "
              f"{'PASS' if c['bsrem_at_least_as_good'] else 'FAIL'}"
              + (" (the best OSEM point is on the edge of the OSEM grid)"
                 if b["at_grid_edge"] else ""))  # fmt: skip
        cross = c.get("cross_fitted")
        if cross is not None:
            folds = ", ".join(f"{f['iterations']} it + {f['fwhm_mm']:g} mm" for f in cross["folds"])
            value = "n/a" if cross["margin"] is None else f"{100 * cross['margin']:+.1f}"
            se = "" if cross["margin_se"] is None else f" ± {100 * cross['margin_se']:.1f}"
            print(f"    cross-fitted (best OSEM point picked on one half of the realisations, "
                  f"judged on the other; picked: {folds}): margin {value}{se} points")  # fmt: skip


def print_report(result: dict[str, Any]) -> None:
    names = list(result["dominance"])
    print(f"\n{_title(result)}")
    header = f"{'method':<24}{'CV %':>8}" + "".join(
        f"{'CRC ' + n[7:] + ' %':>14}{'(between)':>11}" for n in names
    )
    print(header)
    print("-" * len(header))
    for p in result["bsrem"]:
        label = f"BSREM beta={p['beta']:g}"
        print(
            f"{label:<24}{100 * p['cv']:>8.1f}"
            + "".join(
                f"{100 * p['crc'][n]:>14.1f}{100 * p['crc_between_spheres'][n]:>11.1f}"
                for n in names
            )
        )  # fmt: skip (the checked spheres all have between-VOIs)
    _print_checks(result["dominance"], "CRC")
    _print_checks(result["dominance_sphere_excess"], "CRC above the VOIs between spheres")
    on_crc = result["bsrem_at_least_as_good_for_smallest_three"]
    on_excess = result["bsrem_at_least_as_good_for_smallest_three_sphere_excess"]
    print(f"done-when check (the three smallest spheres): CRC {'PASS' if on_crc else 'FAIL'}, "
          f"CRC above the VOIs between spheres {'PASS' if on_excess else 'FAIL'} -> "
          f"{'PASS' if result['done_when_check'] else 'FAIL'}")  # fmt: skip
    print_timing(result)
    worst = max(p["convergence"]["relative_change_last_iteration_max"] for p in result["bsrem"])
    print(f"BSREM convergence: largest relative change over the last iteration {worst:.2e}")
    print(f"wall time {result['wall_s']:.0f} s")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modality", choices=("spect", "pet", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="tiny problems, for a smoke test")
    parser.add_argument("--realisations", type=int, default=None,
                        help="noise realisations (default: the configuration's)")  # fmt: skip
    parser.add_argument("--osem-grid", choices=("normal", "wide"), default="normal",
                        help="wide: OSEM to 40 (SPECT) / 16 (PET) iterations and FWHM to 60 / 30 "
                        "mm, to test the check's robustness")  # fmt: skip
    parser.add_argument("--gamma", type=float, default=GAMMA,
                        help=f"the prior's edge preservation γ (default {GAMMA:g})")  # fmt: skip
    parser.add_argument("--kappa", choices=("sensitivity", "hessian"), default="sensitivity",
                        help="the prior's per-voxel weights (default: sensitivity, as the "
                        "commands)")  # fmt: skip
    parser.add_argument("--orbit", choices=("circular", "contour"), default="circular",
                        help="SPECT: the camera's orbit (default: circular, 260 mm; contour: "
                        "25 mm from the phantom's outline)")  # fmt: skip
    parser.add_argument("--no-psf", action="store_true",
                        help="PET: leave the data's 5 mm blur unmodelled (default: both methods "
                        "model it with recon.ImageResolution)")  # fmt: skip
    parser.add_argument("--timing-only", action="store_true",
                        help="only time an iteration of each method (one realisation, "
                        "--timing-repeats rounds), no curves")  # fmt: skip
    parser.add_argument("--timing-repeats", type=int, default=None,
                        help="rounds of the timing, each method once per round (default: the "
                        "configuration's)")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    if args.realisations is not None and args.realisations < 2:
        parser.error("--realisations must be at least 2 (the noise is an ensemble variance)")
    if not (math.isfinite(args.gamma) and args.gamma >= 0):
        parser.error(f"--gamma must be a finite number >= 0, got {args.gamma}")
    if args.timing_repeats is not None and args.timing_repeats < 1:
        parser.error("--timing-repeats must be at least 1")
    backend = resolve_backend(args.device)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    modalities = ("spect", "pet") if args.modality == "both" else (args.modality,)
    for modality in modalities:
        s = settings(modality, args.quick)
        if args.realisations is not None:
            s = replace(s, realisations=args.realisations)
        if args.gamma != GAMMA:
            s = replace(s, gamma=args.gamma)
        s = replace(s, kappa=args.kappa)
        if args.osem_grid == "wide" and not args.quick:
            s = replace(s, **WIDE_OSEM_GRID[modality])
        if modality == "spect":
            s = replace(s, extra={**s.extra, "orbit": args.orbit})
        if args.no_psf and modality == "pet":
            s = replace(s, extra={**s.extra, "psf": False})
        if args.timing_repeats is not None:
            s = replace(s, timing_repeats=args.timing_repeats)
        if args.timing_only:
            _write_timing(s, backend, out_dir, args.quick)
            continue
        result = run_modality(s, backend.name)
        now = dt.datetime.now(dt.timezone.utc)
        record = {
            **_provenance("contrast_noise", args.quick, backend, now),
            "definitions": {
                "crc": "(C_sphere/C_background - 1)/(4 - 1), C_sphere the mean over the voxels "
                "whose centres lie in the true sphere, averaged over realisations",
                "cv": "sqrt(mean over background voxels of the variance over realisations "
                "(ddof=1)) / mean background",
                "background": f"uniform background voxels >= {BACKGROUND_MARGIN_MM} mm from any "
                f"other voxel, |z| <= {BACKGROUND_HALF_LENGTH_MM} mm",
                "between_spheres": "CRC of VOIs of the sphere's size on the sphere ring, "
                "30 degrees from it (no sphere there); sphere_excess = CRC - that",
                "best_osem": "the OSEM + filter point with the largest CRC/CV among those "
                "with CRC > 0",
                "done_when_check": "the check below holds for the three smallest spheres on "
                "the CRC and on sphere_excess",
                "cross_fitted": "the best OSEM configuration picked on the even realisations "
                "and judged against BSREM's curve on the odd ones, and vice versa; margin = mean "
                "of the two (reported, not part of done_when_check)",
                "check": "bsrem_at_least_as_good: some beta has CRC >= and CV <= the best OSEM "
                "point, or BSREM's curve (linear between neighbouring beta, ordered by CV) at "
                "that point's CV has a CRC >= that point's",
                "bsrem": f"RelativeDifferencePrior(beta, gamma={s.gamma:g}, epsilon=1e-3 x "
                f"mean start, kappa={s.kappa}_kappa(start)), start = 2 OSEM iterations, "
                "default relaxation, "
                "objective=False",
            },
            **result,
        }
        stem = f"contrast-noise-{modality}-{backend.name}{'-quick' if args.quick else ''}"
        stem += f"-gamma{s.gamma:g}" if s.gamma != GAMMA else ""
        stem += f"-kappa-{s.kappa}" if s.kappa != "sensitivity" else ""
        stem += "-wide-osem-grid" if args.osem_grid == "wide" and not args.quick else ""
        stem += "-contour-orbit" if modality == "spect" and s.extra["orbit"] == "contour" else ""
        stem += "-no-psf" if modality == "pet" and not s.extra.get("psf") else ""
        stem += f"-{now:%Y%m%d-%H%M%S}"
        write_text_atomic(out_dir / f"{stem}.json", json.dumps(record, indent=2))
        plot(record, out_dir / f"{stem}.png")
        print_report(record)
        print(f"wrote {out_dir / stem}.json and .png")


def _provenance(benchmark: str, quick: bool, backend: Any, now: dt.datetime) -> dict[str, Any]:
    """The head of a result record: what ran, when, on what."""
    return {
        "benchmark": benchmark,
        "configuration": "quick" if quick else "full",
        "date": now.isoformat(timespec="seconds"),
        "device": backend.name,
        "device_name": backend.device_name,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "recon_version": recon.__version__,
        "numpy": np.__version__,
    }


def _write_timing(s: Settings, backend: Any, out_dir: Path, quick: bool) -> None:
    """``--timing-only``: time, print, write ``contrast-noise-timing-*.json``."""
    result = run_timing(s, backend.name)
    now = dt.datetime.now(dt.timezone.utc)
    record = {**_provenance("contrast_noise_timing", quick, backend, now), **result}
    stem = f"contrast-noise-timing-{s.modality}-{backend.name}{'-quick' if quick else ''}"
    stem += f"-kappa-{s.kappa}" if s.kappa != "sensitivity" else ""
    stem += f"-{now:%Y%m%d-%H%M%S}"
    write_text_atomic(out_dir / f"{stem}.json", json.dumps(record, indent=2))
    print_timing(record)
    print(f"wrote {out_dir / stem}.json")


if __name__ == "__main__":
    main()
