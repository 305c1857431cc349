"""`recon demo --pet`: a simulated F-18 TOF listmode study of the body phantom, end to end.

Simulation on the "small" test scanner: the NEMA-IEC-like phantom (6 hot spheres 10-37 mm at 4:1,
lung insert, water body, 511 keV attenuation) is projected with the TOF sinogram model; TOF
scatter (single-scatter simulation of the true activity, scaled to 25 % of the trues for the
multiple scatter it leaves out) and randoms (from uniform singles) are added; Poisson prompts
become listmode events with decay-distributed times, and delayed coincidences are simulated
alongside. Reconstruction, as from raw data: listmode OSEM with attenuation, TOF, decay, randoms
(fan-sum estimate from the delayeds) and scatter *estimated* from the data (reconstruct → SSS →
tail fit, two rounds: :func:`recon.estimate_scatter`), calibrated to Bq/mL.

The same models simulate and reconstruct (an "inverse crime"); the demo shows the workflow and
the quantitative behaviour, not a validation (the tests compare SSS with an independent Monte
Carlo).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from recon._files import save_npy_atomic, write_text_atomic
from recon._output import OutputFolder
from recon.algorithms.additive import estimate_scatter
from recon.algorithms.listmode import lm_osem
from recon.errors import InputError
from recon.figures import save_reconstruction_figure
from recon.grid import ImageGrid
from recon.pet import (
    PetListmodeModel,
    PetScanner,
    PetSinogramModel,
    SinogramLayout,
    randoms_from_delayeds,
    randoms_from_singles,
    simulate_listmode,
)
from recon.pet.scatter import ScatterEstimation
from recon.pet.sss import ScatterDetectors, SingleScatterSimulation
from recon.simulate.demo_spect import DemoResult
from recon.simulate.phantoms import nema_iec_phantom, sphere_mask

__all__ = ["run_pet_demo"]

_MU_WATER_511_PER_MM = 0.0096  # NIST XCOM water, 0.0969 cm²/g at 511 keV
_DURATION_S = 120.0
_TRUES = 1.5e6  # expected true coincidences in the acquisition
_SCATTER_FRACTION = 0.25  # scatter / trues
_RANDOMS_FRACTION = 0.2  # randoms / trues


_TAIL_RADIAL_BINS = 91  # of the small scanner's 128 crystals per ring: out to 0.9 of its radius


def _simulated_scatter(
    scanner: PetScanner,
    grid: ImageGrid,
    mu: np.ndarray,
    activity: np.ndarray,
    layout: SinogramLayout,
    device: str | None,
) -> np.ndarray:
    """TOF single scatter of the true activity on the simulator's sinogram (shape only)."""
    lower, upper, resolution, _ = scanner.energy_response()
    simulation = SingleScatterSimulation(
        grid, mu, ScatterDetectors.from_scanner(scanner), energy_window_kev=(lower, upper),
        energy_resolution=resolution, tof=scanner.tof, device=device,
    )  # fmt: skip
    coarse = simulation.simulate(activity)
    xstart, xend = layout.endpoints(np.arange(layout.n_views), xp=np)
    host = simulation.backend.to_host(coarse.at(xstart, xend))
    return np.clip(np.asarray(host, np.float64), 0.0, None)


def run_pet_demo(
    output_dir: str | Path = "recon_demo_output",
    iterations: int = 3,
    subsets: int = 8,
    device: str | None = None,
    seed: int = 20261125,
    progress: bool | None = None,
    print_fn: object = print,
    overwrite: bool = False,
) -> DemoResult:
    """Simulate and reconstruct the PET demo; writes ``pet_demo.npy``/``.png``/``.json``."""
    if int(iterations) < 1 or int(subsets) < 1:
        raise InputError(f"iterations and subsets must be >= 1, got {iterations}, {subsets}")
    target = OutputFolder(output_dir, overwrite=overwrite, command="recon demo")
    say = print_fn if callable(print_fn) else (lambda *_: None)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)

    scanner = PetScanner.preset("small")
    grid = ImageGrid(shape=(16, 64, 64), voxel_size=(4.0, 4.4, 4.4))
    background = 5000.0  # Bq/mL
    activity, mu, spheres = nema_iec_phantom(
        grid, sphere_to_background=4.0, background=background, mu_water_per_mm=_MU_WATER_511_PER_MM
    )
    simulator = PetSinogramModel(
        scanner, grid, mu_map=mu, isotope="F-18", device=device, frame_duration_s=_DURATION_S
    )
    # Calibration chosen so that the acquisition holds _TRUES true coincidences.
    calibration = _TRUES / float(simulator.forward(activity).sum())
    simulator = PetSinogramModel(
        scanner,
        grid,
        mu_map=mu,
        isotope="F-18",
        device=device,
        frame_duration_s=_DURATION_S,
        calibration=calibration,
        n_radial=_TAIL_RADIAL_BINS,  # events on lines outside the body too (the scatter tails)
    )
    say(
        f"recon demo --pet: F-18 TOF listmode of a NEMA-IEC-like phantom on the "
        f"{scanner.n_rings}-ring '{scanner.name}' scanner, grid {grid.shape}, "
        f"device {simulator.backend.name}"
    )
    layout = simulator.layout
    trues_tof = np.asarray(simulator.backend.to_host(simulator.forward(activity)), np.float64)
    trues = trues_tof.sum(axis=-1)
    scatter_tof = _simulated_scatter(scanner, grid, mu, activity, layout, device)
    scatter_tof *= _SCATTER_FRACTION * trues.sum() / scatter_tof.sum()
    singles = np.ones(scanner.n_crystals)
    randoms = randoms_from_singles(singles, 4.0, _DURATION_S, layout).astype(np.float64)
    randoms *= _RANDOMS_FRACTION * trues.sum() / randoms.sum()
    n_tof = trues_tof.shape[-1]  # the "small" scanner has TOF: the last axis holds its bins
    additive_tof = scatter_tof + np.repeat((randoms / n_tof)[..., None], n_tof, axis=-1)
    events = simulate_listmode(
        simulator, activity, _DURATION_S, rng, additive=additive_tof, delayed=randoms
    )
    n_prompts = events.prompts().n_events
    say(
        f"simulated {n_prompts / 1e6:.2f} M prompts and "
        f"{events.delayeds().n_events / 1e6:.2f} M delayeds"
    )

    # The reconstruction's layout reaches 0.9 of the ring radius, so that the scatter tail fit
    # has lines outside the body.
    model = PetListmodeModel(
        scanner, grid, mu_map=mu, isotope="F-18", device=device, calibration=calibration,
        n_radial=_TAIL_RADIAL_BINS,
    )  # fmt: skip
    randoms_estimate = randoms_from_delayeds(events, model.layout)
    estimator = ScatterEstimation(
        model, events, randoms=randoms_estimate, frame_start_s=0.0, frame_duration_s=_DURATION_S
    )
    scatter = estimate_scatter(
        estimator, rounds=2, iterations=1, subsets=subsets, first_iterations=2, progress=progress
    )
    report = scatter.reports[-1]
    say(f"scatter estimated from the data: {report.summary()}")
    additive_rate = scatter.additive
    image = lm_osem(
        model, events, iterations=iterations, subsets=subsets, additive_rate=additive_rate,
        frame_duration_s=_DURATION_S, progress=progress,
    )  # fmt: skip
    values = np.asarray(image)

    recovery = {
        s.name: float(values[sphere_mask(grid, s.centre_mm, s.diameter_mm)].mean() / s.activity)
        for s in spheres
    }
    z, y, x = grid.meshgrid_mm()
    far = np.ones(grid.shape, bool)
    for s in spheres:
        cx, cy, cz = s.centre_mm
        far &= np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) > s.diameter_mm / 2 + 15
    voi = far & (np.hypot(x, y) > 45) & (activity >= 0.999 * background) & (np.abs(z) < 20)
    background_ratio = float(values[voi].mean() / background)

    seconds = time.perf_counter() - start
    summary = {
        "units": image.units, "isotope": image.isotope, "iterations": iterations,
        "subsets": subsets, "device": model.backend.name, "recovery_coefficients": recovery,
        "background_ratio": background_ratio, "prompts": n_prompts, "seconds": seconds,
        "scatter": {
            "simulated_fraction": float(scatter_tof.sum() / trues.sum()),
            "estimated_fraction": report.scatter_fraction, "tail_fit": report.fit.summary(),
            "notes": list(report.notes),
        },
    }  # fmt: skip
    with target.writing() as folder:
        save_npy_atomic(folder / "pet_demo.npy", values)
        title = "recon demo: simulated F-18 TOF listmode PET, NEMA-IEC-like phantom"
        save_reconstruction_figure(image, folder / "pet_demo.png", title=title)
        write_text_atomic(folder / "pet_demo.json", json.dumps(summary, indent=2))
    out = Path(output_dir)
    say("")
    say(f"{'sphere':>12} {'diameter':>9} {'recovery':>9}")
    for s in spheres:
        say(f"{s.name:>12} {s.diameter_mm:>6.0f} mm {recovery[s.name]:>9.2f}")
    say(f"{'background':>12} {'':>9} {background_ratio:>9.2f}")
    say(f"\nwrote {out / 'pet_demo.npy'} (Bq/mL), {out / 'pet_demo.png'}, {out / 'pet_demo.json'}")
    say(f"done in {seconds:.1f} s")
    return DemoResult(out, recovery, background_ratio, seconds, float(n_prompts))
