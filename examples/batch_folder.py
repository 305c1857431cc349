"""Reconstruct every study in a folder, one output sub-folder each, carrying on past bad files.

Each entry of the input folder (sorted by name, one level deep) is one study:

- a sub-folder with one DICOM NM file at its top (``*.dcm``): SPECT, reconstructed with
  ``recon spect``; a ``ct/`` sub-folder next to the NM file is used for attenuation correction;
- a DICOM NM file (``*.dcm``) or an Interfile header (``*.hs``): SPECT without attenuation;
- a recon listmode file (``*.npz``): PET, reconstructed with ``recon pet`` as one frame;
- anything else is listed as skipped (``recon.toml`` and hidden files are not listed).

A ``recon.toml`` in the input folder supplies settings (its ``[spect]`` and ``[pet]`` tables:
sensitivity, calibration, iterations, ...). The studies become the jobs of a ``recon batch``
manifest, ``DIR/batch.toml``, run by :func:`recon.batch.run` on a local Dask cluster (one worker
process per CPU core, or ``--workers``): every job is checked before any runs, each writes
atomically into its own folder, and its printed output goes to ``DIR/results/logs/<study>.log``.
A study that fails is reported with its one-line error and the batch goes on; run the script
again on the same ``DIR`` and the studies whose results are up to date are skipped.

Without ``--input`` the script first makes a demonstration folder, ``DIR/input``, holding three
small simulated studies (a Tc-99m SPECT/CT and an In-111 SPECT/CT written as DICOM by
:func:`recon.simulate.dicom_study.write_simulated_spect_study`, and an F-18 TOF listmode file)
and one deliberately corrupt file, ``corrupt.dcm``, planted to show how a bad file is reported.

Exit status: with ``--input``, 0 only if every study succeeded, 1 if any failed. In the
demonstration the planted file is expected to fail (it is reported as ``failed (planted)``), so
the status is 0 only if every other study succeeded and the planted one did fail.

Usage::

    python examples/batch_folder.py [--input DIR_IN] [--output DIR] [--device auto|cpu|gpu]
                                    [--workers N]

Headless; the demonstration takes about a minute on a 2-core laptop CPU. Writes
``DIR/results/<study>/`` (what ``recon spect``/``recon pet`` write), ``DIR/results/logs/``,
``DIR/results/batch_summary.json`` (recon batch's) and ``DIR/batch_summary.json`` (this script's
table). Default ``DIR``: ``batch_folder_output`` in the current folder. The same from the command
line: ``recon batch DIR/batch.toml -o DIR/results``.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import recon
import recon.batch
from recon._files import load_toml, write_text_atomic
from recon.commands.pet import OPTIONS as PET_OPTIONS
from recon.commands.spect import OPTIONS as SPECT_OPTIONS
from recon.io import write_listmode
from recon.pet import PetScanner, PetSinogramModel, randoms_from_singles, simulate_listmode
from recon.physics import hu_to_mu
from recon.physics.isotopes import get_isotope
from recon.simulate.dicom_study import write_simulated_spect_study
from recon.simulate.phantoms import sphere_mask, uniform_cylinder

PLANTED = "corrupt.dcm"
spect_options = {o.name: o.kind for o in SPECT_OPTIONS}
pet_options = {o.name: o.kind for o in PET_OPTIONS}


@dataclass
class Outcome:
    study: str
    kind: str
    status: str  # "ok", "FAILED", "failed (planted)", "UNEXPECTED OK", "skipped"
    seconds: float
    detail: str


# ------------------------------------------------------------------------- demonstration input
def make_demo_folder(folder: Path, device: str, seed: int = 7) -> set[str]:
    """Write three small simulated studies and a corrupt file; return the planted names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    grid = recon.ImageGrid((16, 32, 32), 8.0)
    body = uniform_cylinder(grid, radius_mm=90, length_mm=100) > 0.5
    for name, isotope, lesion in (
        ("tc99m_spect_ct", "Tc-99m", (40.0, -20.0, 0.0)),
        ("in111_spect_ct", "In-111", (-30.0, 30.0, 16.0)),
    ):
        activity = 10000.0 * body.astype(np.float32)  # Bq/mL
        activity[sphere_mask(grid, lesion, 40.0)] = 60000.0
        energy = get_isotope(isotope).main_photon.energy_kev
        mu = hu_to_mu(0.0, energy) * body.astype(np.float32)  # water at the photopeak
        write_simulated_spect_study(
            folder / name, activity, mu, grid, isotope=isotope, n_views=32, n_heads=2,
            time_per_view_s=30.0, seed=int(rng.integers(1 << 31)), device=device, overwrite=True,
        )  # fmt: skip

    # F-18 TOF listmode, one minute, no attenuation (the batch has no μ-map for it).
    scanner = PetScanner.preset("small")
    pet_grid = recon.ImageGrid((16, 32, 32), (4.0, 8.0, 8.0))
    activity = 5000.0 * uniform_cylinder(pet_grid, radius_mm=80, length_mm=50)
    activity[sphere_mask(pet_grid, (30.0, 30.0, 0.0), 30.0)] = 20000.0
    duration, trues = 60.0, 2.0e5
    settings = dict(isotope="F-18", frame_duration_s=duration, device=device)
    # Calibration (counts per Bq/mL·s·mm) that gives `trues` true coincidences; recon.toml passes
    # it to the reconstruction, whose image is then in Bq/mL.
    calibration = trues / float(
        PetSinogramModel(scanner, pet_grid, **settings).forward(activity).sum()
    )
    model = PetSinogramModel(scanner, pet_grid, calibration=calibration, **settings)
    singles = np.ones(scanner.n_crystals)
    randoms = np.asarray(randoms_from_singles(singles, 4.0, duration, model.layout), np.float64)
    randoms *= 0.2 * trues / randoms.sum()
    n_tof = scanner.tof.n_bins  # type: ignore[union-attr]
    additive = np.repeat((randoms / n_tof)[..., None], n_tof, axis=-1)
    events = simulate_listmode(model, activity, duration, rng, additive=additive, delayed=randoms)
    write_listmode(folder / "f18_pet.npz", events, scanner, isotope="F-18")

    # A file that claims to be DICOM but holds random bytes.
    (folder / PLANTED).write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    write_text_atomic(
        folder / "recon.toml",
        "# Settings for every study of this folder (recon --config).\n"
        "[spect]\nsensitivity = 90.0  # cps/MBq, as simulated: images in Bq/mL\n"
        "iterations = 4\nsubsets = 8\n\n"
        f"[pet]\ncalibration = {calibration!r}\niterations = 2\nsubsets = 4\n",
    )
    return {PLANTED}


# ------------------------------------------------------------------------------------ the batch
def find_studies(folder: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(name, kind, manifest job keys) for every entry of ``folder``; kind "?" is not a study."""
    studies: list[tuple[str, str, dict[str, str]]] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == "recon.toml":
            continue
        if entry.is_dir():
            nm_files = sorted(entry.glob("*.dcm"))
            if len(nm_files) != 1:
                studies.append((entry.name, "?", {}))
                continue
            job = {"kind": "spect", "input": str(nm_files[0])}
            if (entry / "ct").is_dir():
                job["ct"] = str(entry / "ct")
            studies.append((entry.name, "SPECT/CT" if "ct" in job else "SPECT", job))
        elif entry.suffix.lower() in (".dcm", ".hs"):
            studies.append((entry.name, "SPECT", {"kind": "spect", "input": str(entry)}))
        elif entry.suffix.lower() == ".npz":
            studies.append((entry.name, "PET", {"kind": "pet", "input": str(entry)}))
        else:
            studies.append((entry.name, "?", {}))
    return studies


def _toml(value: object) -> str:
    """A TOML value (strings, numbers, booleans: what recon.toml tables hold)."""
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def write_manifest(input_dir: Path, studies: list, path: Path, device: str) -> dict[str, str]:
    """A ``recon batch`` manifest of ``studies``; returns job name -> study name.

    The ``[spect]`` and ``[pet]`` tables of the folder's ``recon.toml`` become the manifest's
    (their paths made absolute, since the manifest is elsewhere).
    """
    settings = load_toml(input_dir / "recon.toml") if (input_dir / "recon.toml").is_file() else {}
    lines = ["# Written by examples/batch_folder.py\n"]
    for kind, options in (("spect", spect_options), ("pet", pet_options)):
        table = dict(settings.get(kind, {}))
        table.setdefault("device", device)
        lines.append(f"[{kind}]")
        for key, value in table.items():
            if options.get(key.replace("_", "-")) == "path":
                value = str(input_dir / value)
            lines.append(f"{key} = {_toml(value)}")
        lines.append("")
    names = {}
    for study, _, job in studies:
        if not job:
            continue
        name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(study).stem)
        names[name] = study
        lines.append(f"[[jobs]]\nname = {_toml(name)}")
        lines += [f"{key} = {_toml(value)}" for key, value in job.items()]
        lines.append("")
    write_text_atomic(path, "\n".join(lines))
    return names


def _image_summary(folder: Path) -> str:
    summary = json.loads((folder / "summary.json").read_text())
    image = folder / ("image.npy" if (folder / "image.npy").exists() else "frame_000.npy")
    values = np.load(image)
    return f"{summary.get('isotope')}, max {values.max():.4g} {summary.get('units')}"


def run_batch(
    input_dir: Path,
    output: Path,
    device: str,
    planted: set[str] = frozenset(),
    workers: int | None = None,
) -> list[Outcome]:
    """Reconstruct every study of ``input_dir`` into ``output/results/<study>`` with
    ``recon.batch`` (a local Dask cluster); logs in ``output/results/logs``."""
    studies = find_studies(input_dir)
    kinds = {study: kind for study, kind, _ in studies}
    output.mkdir(parents=True, exist_ok=True)
    names = write_manifest(input_dir, studies, output / "batch.toml", device)
    outcomes = [
        Outcome(study, kind, "skipped", 0.0, "not a study recon knows")
        for study, kind, job in studies
        if not job
    ]
    if names:
        result = recon.batch.run(
            output / "batch.toml", output=output / "results", workers=workers,
            dashboard_address="none",
        )  # fmt: skip
        for name, job in result.results.items():
            study = names[name]
            ok = job.status in ("done", "skipped")
            if ok:
                state = "UNEXPECTED OK" if study in planted else "ok"
                detail = _image_summary(Path(job.output))
            else:
                state = "failed (planted)" if study in planted else "FAILED"
                detail = job.error or job.status
            outcomes.append(Outcome(study, kinds[study], state, job.seconds, detail))
    return sorted(outcomes, key=lambda o: o.study)


def print_summary(outcomes: list[Outcome]) -> None:
    width = max(len("study"), *(len(o.study) for o in outcomes))
    print(f"\n{'study':<{width}}  {'kind':<8}  {'status':<16}  {'time':>6}  detail")
    for o in outcomes:
        print(f"{o.study:<{width}}  {o.kind:<8}  {o.status:<16}  {o.seconds:>5.1f}s  {o.detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", help="folder of studies (default: make a demonstration one)")
    parser.add_argument("--output", default="batch_folder_output", help="output folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--workers", type=int, default=None, help="Dask worker processes")
    args = parser.parse_args(argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.input is None:
        input_dir = output / "input"
        planted = make_demo_folder(input_dir, args.device)
        print(f"made a demonstration folder {input_dir} with a planted corrupt file, {PLANTED}")
    else:
        input_dir, planted = Path(args.input), set()
        if not input_dir.is_dir():
            parser.error(f"--input {input_dir}: no such folder")

    outcomes = run_batch(input_dir, output, args.device, planted, workers=args.workers)
    print_summary(outcomes)
    write_text_atomic(
        output / "batch_summary.json", json.dumps([asdict(o) for o in outcomes], indent=2)
    )
    unexpected = [o for o in outcomes if o.status in ("FAILED", "UNEXPECTED OK")]
    if planted and not unexpected:
        print("\nthe planted file failed as it should; every other study succeeded")
    print(f"{len(unexpected)} unexpected outcome(s); summary in {output / 'batch_summary.json'}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    raise SystemExit(main())
