"""`recon spect --isotopes A,B`: a simultaneous multi-isotope acquisition, one image per isotope.

Every photopeak window of every isotope goes into one :class:`recon.MultiIsotopeModel`; each
window's scatter, including the down-scatter of the higher-energy isotope into the lower
photopeak, is the triple-energy-window estimate from the scatter windows adjoining it (Ichihara et
al., J. Nucl. Med. 34 (1993) 2216, showed TEW handling the cross-talk of a simultaneous
Tc-99m/Tl-201 acquisition). The model-based down-scatter term of
:func:`recon.multi_isotope_model` needs a fraction and kernel measured on the camera: it is an API
option, not a command-line default.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import save_npy_atomic
from recon._output import OutputFolder
from recon.commands.algorithm import algorithm_summary, reconstruct
from recon.commands.common import image_timing, note, print_table, write_summary
from recon.commands.spect import (
    _collimator,
    _photopeak_summary,
    _reference_time,
    _scatter_per_peak,
    _sensitivities,
    _settings,
    _write_dicom,
    default_grid,
)
from recon.errors import InputError
from recon.figures import save_reconstruction_figure
from recon.physics.isotopes import Isotope, get_isotope
from recon.physics.windows import assign_windows
from recon.spect import SpectGeometry, multi_isotope_model

__all__ = ["parse_isotopes", "run_isotopes"]


def parse_isotopes(text: str) -> list[Isotope]:
    """``--isotopes`` as isotopes: two or more, each once.

    Raises
    ------
    InputError
        Fewer than two, or one named twice (under any spelling).
    PhysicsError
        An isotope recon does not know.
    """
    names = [part.strip() for part in str(text).split(",") if part.strip()]
    isotopes = [get_isotope(name) for name in names]
    if len(isotopes) < 2:
        raise InputError(
            f"--isotopes {text!r}: name two or more isotopes separated by commas (e.g. "
            "Tc-99m,In-111); for one isotope use --isotope"
        )
    seen = [i.name for i in isotopes]
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        raise InputError(f"--isotopes {text!r}: {twice[0]} is named twice")
    return isotopes


def run_isotopes(
    args: argparse.Namespace,
    source: Path,
    target: OutputFolder,
    geometry: SpectGeometry,
    metadata: dict[str, Any],
) -> int:
    """Reconstruct every isotope of ``--isotopes`` and write ``<isotope>/image.*`` and
    ``<isotope>/dicom/`` per isotope and one ``summary.json``; 0 on success."""
    isotopes = parse_isotopes(args.isotopes)
    windows = metadata.get("windows") or {}
    if not windows or all(w is None for w, _ in windows.values()):
        raise InputError(
            f"--isotopes needs the energy windows of the acquisition; {source.name} records "
            "none (a DICOM NM file lists them)"
        )
    assignment = assign_windows(windows, isotopes)
    note(
        "windows of the study: "
        + "; ".join(assignment.describe())
        + ". The down-scatter of the higher-energy isotope into the lower photopeak windows is "
        "taken from each window's TEW scatter estimate"
    )
    grid = default_grid(geometry)
    main_kev = isotopes[0].main_photon.energy_kev
    mu_energy = float(args.mu_energy) if args.mu_energy is not None else main_kev
    mu: Any = None
    if args.ct:
        from recon.io.ct import read_ct_mu_map

        mu_energy = main_kev
        mu = read_ct_mu_map(
            args.ct, grid, main_kev, frame_of_reference_uid=metadata.get("frame_of_reference_uid")
        )
    elif args.mu:
        from recon.io.mu_map import read_mu_map

        mu = read_mu_map(
            args.mu, grid, units=args.mu_units, stir_placement="spect",
            spectub_mirrored=bool(args.mu_spectub_mirrored),
        )  # fmt: skip
    elif args.mu_energy is not None:
        raise InputError("--mu-energy gives the energy of a --mu map: pass --mu too")
    per_window = _sensitivities(args)
    sensitivity: dict[str, Any] | None = None
    if per_window is not None:
        assert isinstance(per_window, list)
        if len(per_window) != len(assignment.peaks):
            raise InputError(
                f"--window-sensitivities gives {len(per_window)} values for the "
                f"{len(assignment.peaks)} photopeak windows "
                f"({', '.join(f'{p.name} ({p.isotope})' for p in assignment.peaks)})"
            )
        sensitivity = {}
        for peak, value in zip(assignment.peaks, per_window, strict=True):
            sensitivity.setdefault(peak.isotope, []).append(value)
    else:
        note("no --window-sensitivities given: the images are in counts/s per voxel, not Bq/mL")
    # The collimator suits the highest-energy isotope (the default preset is chosen by energy).
    collimator = _collimator(args, max(isotopes, key=lambda i: i.main_photon.energy_kev))
    # One scatter estimate per distinct window (a window of two isotopes' lines has one).
    distinct = {p.name: p for p in reversed(assignment.peaks)}
    ordered = [distinct[n] for n in assignment.window_names]
    scatter, method, used = _scatter_per_peak(args, metadata, ordered, source)
    model = multi_isotope_model(
        geometry, grid, assignment, mu_map=mu, mu_energy_kev=mu_energy, collimator=collimator,
        reference_time_s=_reference_time(args.ref_time, metadata),
        sensitivity_cps_per_mbq=sensitivity, device=args.device,
    )  # fmt: skip
    counts = np.stack([windows[n][1] for n in assignment.window_names])
    # The post-filter is applied per isotope (a filter of the stacked image would mix them).
    stacked = reconstruct(model, counts, scatter, args, post_filter_fwhm_mm=None)
    images = model.split(stacked)
    if args.post_filter:
        from recon.algorithms.filters import gaussian_filter_fwhm

        for name, image in images.items():
            filtered = image.with_data(
                gaussian_filter_fwhm(image.data, args.post_filter, grid.voxel_size_mm)
            )
            filtered.info["post_filter_fwhm_mm"] = args.post_filter
            images[name] = filtered
    scatter_of = dict(zip(assignment.window_names, used, strict=True))
    # The photopeak terms come first, in the order of the assignment's peaks.
    collimators = [term[2].collimator for term in model.terms[: len(assignment.peaks)]]
    summary: dict[str, Any] = {
        "input": str(source),
        "isotopes": [i.name for i in isotopes],
        "units": model.units,
        "reference_time_s": model.reference_time_s,
        "attenuation": mu is not None,
        "mu_energy_kev": mu_energy if mu is not None else None,
        "scatter": method,
        "downscatter": "TEW per photopeak window" if method == "tew" else "not corrected",
        "collimator": getattr(collimator, "name", None),
        "photopeaks": [
            {"isotope": p.isotope, **row}
            for p, row in zip(
                assignment.peaks,
                _photopeak_summary(
                    list(assignment.peaks),
                    collimators,
                    [scatter_of[p.name] for p in assignment.peaks],
                ),  # fmt: skip
                strict=True,
            )
        ],
        "sensitivity_modes": getattr(model, "sensitivity_modes", None),
        "unused_windows": dict(assignment.unused),
        **algorithm_summary(stacked),
        "grid": {"shape": grid.shape, "voxel_mm": grid.voxel_size_mm, "origin_mm": grid.origin},
        "counts": float(np.sum(counts)),
        "images": {
            name: {"folder": _folder(name), "total": float(np.asarray(image.data).sum())}
            for name, image in images.items()
        },
        "timing": image_timing(
            "NM",
            metadata.get("acquisition_datetime"),
            model.reference_time_s,
            "injection" if args.ref_time == "injection" else "time",
            metadata.get("injection_datetime"),
            metadata.get("injected_activity_bq"),
        ),  # fmt: skip
    }
    from recon.io.interfile import write_interfile

    with target.writing({"settings": _settings(args)}) as out:
        for name, image in images.items():
            folder = out / _folder(name)
            folder.mkdir()
            save_npy_atomic(folder / "image.npy", np.asarray(image.data))
            write_interfile(folder / "image.hv", image, modality="NM")
            save_reconstruction_figure(
                image, folder / "image.png", title=f"recon spect: {source.name}, {name}"
            )
            _write_dicom(image, folder / "dicom", source, metadata, args.ref_time)
        write_summary(out, "summary.json", summary)
    hidden = ("grid", "timing", "objective", "relaxation", "photopeaks", "unused_windows",
              "images", "sensitivity_modes")  # fmt: skip
    print_table([{"item": k, "value": v} for k, v in summary.items() if k not in hidden],
                ["item", "value"])  # fmt: skip
    print_table(summary["photopeaks"], list(summary["photopeaks"][0]))
    print_table(
        [{"isotope": k, "units": model.units, **v} for k, v in summary["images"].items()],
        ["isotope", "units", "folder", "total"],
    )
    print(f"wrote one folder per isotope ({', '.join(summary['images'])}) and summary.json "
          f"to {args.output}")  # fmt: skip
    return 0


def _folder(isotope: str) -> str:
    """Output sub-folder of an isotope: its name (``Tc-99m``)."""
    return isotope
