"""A small simulated trial written as files, with its ``recon batch`` manifest.

For the batch tests, benchmark and example: every patient has two In-111 SPECT/CT scans (1 h
and 48 h after injection, DICOM NM and CT written by
:func:`recon.simulate.dicom_study.write_simulated_spect_study`), one patient also an F-18 TOF
PET listmode scan reconstructed as dynamic frames (one job per frame), and a cohort quant step
that reads every SPECT image. Everything is small (a 16 × 32 × 32 grid of 8 mm voxels, 32
views) so that a job takes about a second on a laptop CPU; data are drawn from fixed seeds.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon._files import write_text_atomic
from recon.grid import ImageGrid
from recon.io import write_listmode
from recon.pet import PetScanner, PetSinogramModel, randoms_from_singles, simulate_listmode
from recon.physics import hu_to_mu
from recon.physics.isotopes import get_isotope
from recon.simulate.dicom_study import write_simulated_spect_study
from recon.simulate.phantoms import sphere_mask, uniform_cylinder

__all__ = ["SimulatedTrial", "write_simulated_trial"]

_INJECTION = dt.datetime(2024, 3, 4, 9, 0, 0)
_SCANS_H = (1.0, 48.0)
_SENSITIVITY = 90.0  # cps/MBq, as simulated: the SPECT images come out in Bq/mL


@dataclass(frozen=True)
class SimulatedTrial:
    """Where a simulated trial's files are.

    Attributes
    ----------
    folder : Path
        The trial's input folder.
    manifest : Path
        Its ``recon batch`` manifest.
    output : Path
        The batch output folder its study files point at.
    spect_jobs, pet_jobs : tuple of str
        Job names (the PET one is split into ``NAME-f000`` ... by frame).
    pet_frames : int
        Frames of the dynamic PET job.
    """

    folder: Path
    manifest: Path
    output: Path
    spect_jobs: tuple[str, ...]
    pet_jobs: tuple[str, ...]
    pet_frames: int


def write_simulated_trial(
    folder: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    n_patients: int = 2,
    pet: bool = True,
    seed: int = 0,
    iterations: int = 2,
) -> SimulatedTrial:
    """Simulate a trial and write its inputs and ``batch.toml`` into ``folder``.

    Parameters
    ----------
    folder : path-like
        New folder for the inputs (the DICOM studies, the listmode file, study and cohort files,
        ``batch.toml``).
    output : path-like
        Where the batch will write (the cohort's study files name the images there).
    n_patients : int
        Patients, each with two SPECT scans.
    pet : bool
        Add the dynamic PET scan (two 20 s frames, one job each).
    seed : int
        Seed of the Poisson noise.
    iterations : int
        OSEM iterations of every reconstruction.

    Returns
    -------
    SimulatedTrial
    """
    root = Path(folder)
    out = Path(os.path.abspath(output))
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    grid = ImageGrid((16, 32, 32), 8.0)
    body = uniform_cylinder(grid, radius_mm=90, length_mm=100) > 0.5
    isotope = get_isotope("In-111")
    mu = hu_to_mu(0.0, isotope.main_photon.energy_kev) * body.astype(np.float32)
    lam_per_h = np.log(2.0) / (isotope.half_life_s / 3600.0)
    jobs, spect_jobs, studies = [], [], []
    for p in range(n_patients):
        patient = f"P{p + 1:02d}"
        lesion = (40.0 - 20.0 * p, -20.0 + 10.0 * p, 0.0)
        timepoints = []
        for hours in _SCANS_H:
            # Lesion uptake and body washout differ between patients; physical decay on top.
            washout = np.exp(-(0.01 + 0.005 * p) * hours)
            activity = 10000.0 * washout * body.astype(np.float32)  # Bq/mL at scan time
            activity[sphere_mask(grid, lesion, 40.0)] = 60000.0 * (1.0 + 0.5 * p)
            activity *= np.float32(np.exp(-lam_per_h * hours))
            scan = f"{patient}-{hours:g}h"
            when = _INJECTION + dt.timedelta(hours=hours)
            write_simulated_spect_study(
                root / scan, activity, mu, grid, isotope="In-111", n_views=32, n_heads=2,
                time_per_view_s=30.0, acquisition_datetime=when,
                # The study file states the injection (the DICOM files would each state the
                # activity this phantom implies, which differs with the washout).
                injection_before_s=None, seed=int(rng.integers(1 << 31)),
                device="cpu", overwrite=True,
            )  # fmt: skip
            jobs.append(
                f'[[jobs]]\nname = "{scan}"\nkind = "spect"\ninput = "{scan}/nm.dcm"\n'
                f'ct = "{scan}/ct"\n'
            )
            spect_jobs.append(scan)
            timepoints.append(
                f'[[timepoints]]\nimage = "{out / scan / "image.hv"}"\n'
                f"hours_after_injection = {hours:g}\n"
            )
        study = root / f"{patient}.toml"
        write_text_atomic(
            study,
            f'[study]\nname = "{patient}"\nisotope = "In-111"\n'
            f"injection_time = {_INJECTION.isoformat()}\ninjected_activity_bq = 185e6\n\n"
            + "\n".join(timepoints)
            + f'\n[[vois]]\nname = "lesion"\nsphere = {{ centre_mm = [{lesion[0]:g}, '
            f"{lesion[1]:g}, {lesion[2]:g}], diameter_mm = 24 }}\n\n"
            '[[vois]]\nname = "background"\nsphere = { centre_mm = [-40, 40, 0], '
            "diameter_mm = 24 }\n",
        )
        studies.append(study.name)
    pet_jobs: tuple[str, ...] = ()
    pet_config = ""
    if pet:
        calibration = _write_listmode(root / "P01-pet.npz", rng)
        jobs.append(
            '[[jobs]]\nname = "P01-pet"\nkind = "pet"\ninput = "P01-pet.npz"\n'
            'frames = "2x20"\nsplit-frames = true\n'
        )
        pet_jobs = ("P01-pet",)
        pet_config = (
            f"[pet]\ncalibration = {calibration!r}\niterations = {iterations}\nsubsets = 4\n"
            'device = "cpu"\n\n'
        )
    cohort = root / "cohort.toml"
    names = ", ".join(f'"{s}"' for s in studies)
    write_text_atomic(cohort, f'[cohort]\nname = "simulated trial"\nstudies = [{names}]\n')
    jobs.append(f'[[jobs]]\nname = "cohort"\nkind = "quant"\ninput = "cohort.toml"\n'
                f'after = [{", ".join(f"{chr(34)}{j}{chr(34)}" for j in spect_jobs)}]\n'
                "no-plots = true\n")  # fmt: skip
    manifest = root / "batch.toml"
    write_text_atomic(
        manifest,
        "# A simulated trial: recon batch batch.toml -o OUT\n\n"
        f"[spect]\nsensitivity = {_SENSITIVITY}\niterations = {iterations}\nsubsets = 4\n"
        'device = "cpu"\n\n' + pet_config + "\n".join(jobs),
    )
    return SimulatedTrial(root, manifest, out, tuple(spect_jobs), pet_jobs, 2 if pet else 0)


def _write_listmode(path: Path, rng: np.random.Generator) -> float:
    """F-18 TOF listmode, 40 s, no attenuation; returns the calibration giving Bq/mL images."""
    scanner = PetScanner.preset("small")
    grid = ImageGrid((16, 32, 32), (4.0, 8.0, 8.0))
    activity = 5000.0 * uniform_cylinder(grid, radius_mm=80, length_mm=50)
    activity[sphere_mask(grid, (30.0, 30.0, 0.0), 30.0)] = 20000.0
    duration, trues = 40.0, 1.0e5
    settings = dict(isotope="F-18", frame_duration_s=duration, device="cpu")
    # Calibration (counts per Bq/mL·s·mm) that gives `trues` true coincidences.
    unit = PetSinogramModel(scanner, grid, **settings).forward(activity)  # type: ignore[arg-type]
    calibration = trues / float(np.sum(unit))
    model = PetSinogramModel(scanner, grid, calibration=calibration, **settings)  # type: ignore[arg-type]
    randoms = np.asarray(
        randoms_from_singles(np.ones(scanner.n_crystals), 4.0, duration, model.layout), np.float64
    )
    randoms *= 0.2 * trues / randoms.sum()
    n_tof = scanner.tof.n_bins  # type: ignore[union-attr]
    additive = np.repeat((randoms / n_tof)[..., None], n_tof, axis=-1)
    events = simulate_listmode(model, activity, duration, rng, additive=additive, delayed=randoms)
    write_listmode(path, events, scanner, isotope="F-18")
    return calibration
