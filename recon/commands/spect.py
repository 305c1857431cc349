"""`recon spect`: reconstruct a SPECT acquisition (DICOM NM or Interfile projections)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import save_npy_atomic
from recon._png import montage_slices_mip, write_png
from recon.algorithms import osem
from recon.commands.common import output_folder, print_table, write_summary
from recon.errors import InputError
from recon.grid import ImageGrid
from recon.physics.isotopes import Isotope, get_isotope
from recon.spect import Collimator, SpectGeometry, SpectModel

__all__ = ["add_parser", "read_projections", "run"]

log = logging.getLogger("recon")


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("spect", help="reconstruct SPECT projections (DICOM NM or Interfile)")
    p.add_argument("projections", help="DICOM NM file or Interfile header (.hs)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    mu = p.add_mutually_exclusive_group()
    mu.add_argument("--ct", help="folder of the CT series for attenuation correction")
    mu.add_argument(
        "--mu",
        help="attenuation map at the photon energy: .npy (1/mm, on the reconstruction grid), "
        "Interfile .hv (1/cm, as STIR and CASToR write them) or NIfTI; resampled onto the grid",
    )
    p.add_argument("--mu-units", choices=("1/mm", "1/cm"), help="unit of the --mu file's values")
    p.add_argument(
        "--mu-spectub-mirrored",
        action="store_true",
        default=None,
        help="the --mu map was made for STIR's SPECT projector (SPECTUB), which mirrors the "
        "emission left-right against the map: mirror the map back (default: as its header says)",
    )
    p.add_argument("--scatter", choices=("tew", "dew", "none"))
    p.add_argument("--no-psf", action="store_true", default=None, help="no collimator response")
    p.add_argument("--collimator", help="collimator preset (LEHR, LEGP, ME, HE); default by energy")
    p.add_argument("--isotope", help="isotope, if the file does not name one")
    p.add_argument("--sensitivity", type=float, help="planar sensitivity (cps/MBq): Bq/mL images")
    p.add_argument("--iterations", type=int)
    p.add_argument("--subsets", type=int)
    p.add_argument("--post-filter", type=float, help="Gaussian post-filter FWHM in mm")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"))
    p.add_argument(
        "--ref-time", help="activity reference: 'start' (default), 'injection' or an ISO-8601 time"
    )
    p.add_argument("--config", help="TOML file whose [spect] table supplies defaults")


def read_projections(path: Path) -> tuple[np.ndarray, SpectGeometry, dict[str, Any]]:
    """Counts, geometry and metadata from a DICOM NM file or an Interfile header."""
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.suffix.lower() in (".hs", ".h33", ".hdr"):
        from recon.io.interfile import read_interfile_spect

        counts, geometry, metadata = read_interfile_spect(path)
        return counts, geometry, dict(metadata)
    from recon.io.dicom_nm import read_nm_projections

    return read_nm_projections(path)


def _isotope(name: str | None, metadata: dict[str, Any]) -> Isotope | None:
    if name:
        return get_isotope(name)
    found = metadata.get("isotope")
    if isinstance(found, Isotope):
        return found
    return get_isotope(found) if isinstance(found, str) and found else None


def _collimator(args: argparse.Namespace, isotope: Isotope | None) -> Collimator | None:
    if args.no_psf:
        return None
    if args.collimator:
        return Collimator.preset(args.collimator)
    energy = isotope.main_photon.energy_kev if isotope else 140.5
    name = "LEHR" if energy < 200 else ("ME" if energy < 300 else "HE")
    log.info("collimator not given: using %s for %.0f keV", name, energy)
    return Collimator.preset(name)


def _reference_time(spec: str | None, metadata: dict[str, Any]) -> float:
    """Reference time in s from acquisition start."""
    if spec in (None, "start"):
        return 0.0
    if spec == "injection":
        delay = metadata.get("injection_to_acquisition_s")
        if delay is None:
            raise InputError("--ref-time injection needs the injection time in the file")
        return -float(delay)
    start = metadata.get("acquisition_datetime")
    if not isinstance(start, dt.datetime):
        raise InputError("--ref-time with a date-time needs the acquisition date/time in the file")
    try:
        when = dt.datetime.fromisoformat(spec)
    except ValueError:
        raise InputError(f"--ref-time {spec!r}: use start, injection or ISO-8601") from None
    if (when.tzinfo is None) != (start.tzinfo is None):
        when = when.replace(tzinfo=start.tzinfo)
    return (when - start).total_seconds()


def _grid(geometry: SpectGeometry) -> ImageGrid:
    """Cubic-ish grid matching the projection sampling, centred on the rotation axis."""
    pv, pu = geometry.pixel_size_mm  # type: ignore[misc]
    nz = geometry.n_v
    origin_z = geometry.axial_offset_mm - (nz - 1) / 2.0 * pv
    n = geometry.n_u
    origin_xy = -(n - 1) / 2.0 * pu
    return ImageGrid((nz, n, n), (pv, pu, pu), origin=(origin_z, origin_xy, origin_xy))


def _write_dicom(image: Any, folder: Path, source: Path, metadata: dict, ref: str | None) -> None:
    """NM reconstructed-TOMO series next to the other outputs, sharing the input's study."""
    from recon.io.dicom_write import write_dicom

    if folder.exists():
        import shutil

        shutil.rmtree(folder)  # a previous run's series; the writer refuses non-empty folders
    dataset = None
    if metadata.get("study_instance_uid"):
        import pydicom

        dataset = pydicom.dcmread(source, stop_before_pixels=True)
    injection = None
    if (
        metadata.get("injection_datetime")
        and metadata.get("injected_activity_bq")
        and image.isotope
    ):
        injection = {
            "radionuclide": image.isotope,
            "activity_bq": metadata["injected_activity_bq"],
            "datetime": metadata["injection_datetime"],
        }
    if image.reference_time_s is None:
        decay = "NONE"
    else:
        decay = "ADMIN" if ref == "injection" else "START"
    write_dicom(
        image, folder, modality="NM", patient=dataset,
        frame_of_reference_uid=metadata.get("frame_of_reference_uid"),
        decay_correction=decay, acquisition_datetime=metadata.get("acquisition_datetime"),
        injection=injection, input_paths=[source],
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    source = Path(args.projections)
    counts, geometry, metadata = read_projections(source)
    isotope = _isotope(args.isotope, metadata)
    grid = _grid(geometry)
    inputs = [source]
    mu = None
    if args.ct:
        from recon.io.ct import read_ct_mu_map

        energy = isotope.main_photon.energy_kev if isotope else 140.5
        mu = read_ct_mu_map(
            args.ct, grid, energy, frame_of_reference_uid=metadata.get("frame_of_reference_uid")
        )
        inputs.append(Path(args.ct))
    elif args.mu:
        from recon.io.mu_map import read_mu_map

        mu = read_mu_map(args.mu, grid, units=args.mu_units, stir_placement="spect",
                         spectub_mirrored=bool(args.mu_spectub_mirrored))  # fmt: skip
        inputs.append(Path(args.mu))
    scatter = None
    method = args.scatter or ("tew" if metadata.get("windows") else "none")
    if method != "none":
        if not metadata.get("windows"):
            raise InputError(f"--scatter {method} needs energy-window data, which {source} lacks")
        from recon.io.dicom_nm import scatter_estimate

        scatter = scatter_estimate(metadata, method=method, smooth_sigma_px=2.0)
    out = output_folder(args.output, inputs)
    model = SpectModel(
        geometry, grid, mu_map=mu, collimator=_collimator(args, isotope),
        isotope=isotope.name if isotope else None,
        reference_time_s=_reference_time(args.ref_time, metadata),
        sensitivity_cps_per_mbq=args.sensitivity, device=args.device,
    )  # fmt: skip
    image = osem(
        model, counts, additive=scatter, iterations=args.iterations or 4,
        subsets=args.subsets or 8, post_filter_fwhm_mm=args.post_filter,
    )  # fmt: skip
    values = np.asarray(image)
    save_npy_atomic(out / "image.npy", values)
    from recon.io.interfile import write_interfile

    write_interfile(out / "image.hv", image, modality="NM")
    write_png(out / "image.png", montage_slices_mip(values))
    _write_dicom(image, out / "dicom", source, metadata, args.ref_time)
    summary = {
        "input": str(source), "isotope": image.isotope, "units": image.units,
        "reference_time_s": image.reference_time_s, "attenuation": mu is not None,
        "scatter": method, "collimator": getattr(model.collimator, "name", None),
        "iterations": image.info["iterations"], "subsets": image.info["subsets"],
        "grid": {"shape": grid.shape, "voxel_mm": grid.voxel_size_mm, "origin_mm": grid.origin},
        "counts": float(np.sum(counts)), "image_total": float(values.sum()),
    }  # fmt: skip
    write_summary(out, "summary.json", summary)
    rows = [{"item": k, "value": v} for k, v in summary.items() if k not in ("grid",)]
    print_table(rows, ["item", "value"])
    print(f"wrote image.npy, image.hv/.v, image.png, dicom/ and summary.json to {out}")
    return 0
