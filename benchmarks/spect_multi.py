"""In-111 SPECT: one photopeak (171 keV) vs both photopeaks (171 + 245 keV) reconstructed jointly.

Problem: the NEMA-IEC body phantom (six hot spheres, 4:1, cold lung insert) filled with In-111 at
a 7-day count level: 1.0 kBq/mL of background at the scan (what 5.7 kBq/mL at injection leaves
after 7 days: 2^(−7 d / 2.805 d) = 0.177, NNDC half-life 2.8047 d), 60 views of 30 s on a
250 mm orbit, a medium-energy collimator (Siemens ME preset) modelled at each window's energy with
septal penetration, water attenuation at each window's energy (NIST), 40 cps/MBq in each 20 %
photopeak window (no scatter). Each noise realisation (fixed seeds) gives both windows' counts;
the single-peak reconstruction uses the 171 keV window of the same data, the joint one both.
OSEM with the same iterations and subsets for both.

Figures, per reconstruction, averaged over the realisations: background CV (standard deviation
over the background region within one image, divided by its mean: NEMA-style) and each sphere's
recovery (mean in the sphere / true concentration). The CV ratio is compared with the square
root of the count ratio of the two data sets. Prints a table and writes JSON (device, platform,
date) and a PNG to ``--output``.

Usage::

    python benchmarks/spect_multi.py [--realisations 4] [--output benchmarks/results]
    python benchmarks/spect_multi.py --quick     # tiny configuration (smoke test)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

import recon
from recon._files import write_text_atomic
from recon.backend import resolve_backend
from recon.figures import new_figure, save_figure, style_axes
from recon.physics.attenuation import mu_water_per_mm
from recon.physics.scatter import EnergyWindow
from recon.physics.windows import assign_windows
from recon.simulate.phantoms import nema_iec_phantom, sphere_mask

BACKGROUND_KBQ_ML = 1.0
SENSITIVITY_CPS_PER_MBQ = 40.0
CONFIGS = {
    # name: transverse voxels, voxel mm, slices, views, iterations, subsets
    "full": dict(n=48, voxel=6.4, nz=12, views=60, iterations=4, subsets=10),
    "quick": dict(n=40, voxel=7.8, nz=10, views=24, iterations=2, subsets=4),
}


def run(config: dict[str, Any], realisations: int, device: str) -> dict[str, Any]:
    """Both reconstructions of every realisation; the figures of merit."""
    n, voxel, nz = config["n"], config["voxel"], config["nz"]
    grid = recon.ImageGrid((nz, n, n), voxel)
    geometry = recon.SpectGeometry.circular(
        n_views=config["views"], radius_mm=250, n_u=n, n_v=nz, pixel_size_mm=voxel,
        time_per_view_s=30.0,
    )  # fmt: skip
    activity, mu171, spheres = nema_iec_phantom(
        grid, 4.0, BACKGROUND_KBQ_ML * 1000.0, mu_water_per_mm=mu_water_per_mm(171.3)
    )
    windows = {
        "PEAK171": EnergyWindow.centered("PEAK171", 171.3, 20.0),
        "PEAK245": EnergyWindow.centered("PEAK245", 245.4, 20.0),
    }
    peaks = assign_windows(windows, ["In-111"]).peaks
    backend = resolve_backend(device)
    settings = dict(mu_map=mu171, mu_energy_kev=171.3, collimator="ME", isotope="In-111",
                    device=backend)  # fmt: skip
    joint = recon.photopeak_model(
        geometry, grid, peaks, sensitivity_cps_per_mbq=[SENSITIVITY_CPS_PER_MBQ] * 2, **settings
    )
    single = recon.photopeak_model(
        geometry, grid, peaks[:1], sensitivity_cps_per_mbq=[SENSITIVITY_CPS_PER_MBQ], **settings
    )
    mean = backend.to_host(joint.forward(activity)).astype(np.float64)
    sphere_masks = [sphere_mask(grid, s.centre_mm, s.diameter_mm) for s in spheres]
    background = _background_region(grid, activity, spheres)
    results: dict[str, dict[str, list[float]]] = {
        name: {"cv": [], **{s.name: [] for s in spheres}} for name in ("single", "joint")
    }
    start = time.perf_counter()
    for seed in range(realisations):
        counts = np.random.default_rng(seed).poisson(mean).astype(np.float32)
        for name, model, data in (("joint", joint, counts), ("single", single, counts[:1])):
            image = recon.osem(model, data, iterations=config["iterations"],
                               subsets=config["subsets"], progress=False)  # fmt: skip
            values = np.asarray(backend.to_host(image.data))
            region = values[background]
            results[name]["cv"].append(float(region.std() / region.mean()))
            for s, mask in zip(spheres, sphere_masks, strict=True):
                results[name][s.name].append(float(values[mask].mean() / s.activity))
    elapsed = time.perf_counter() - start
    counts_ratio = float(mean.sum() / mean[0].sum())
    summary = {
        name: {key: float(np.mean(v)) for key, v in figures.items()}
        for name, figures in results.items()
    }
    return {
        "device": backend.name,
        "device_name": backend.device_name,
        "counts_mean": {"PEAK171": float(mean[0].sum()), "PEAK245": float(mean[1].sum())},
        "count_ratio_joint_to_single": counts_ratio,
        "expected_cv_ratio_sqrt_counts": math.sqrt(counts_ratio),
        "measured_cv_ratio": summary["single"]["cv"] / summary["joint"]["cv"],
        "penetration_fraction_245kev": joint.models[1].response_weights[-1],
        "spheres_mm": {s.name: s.diameter_mm for s in spheres},
        "mean": summary,
        "per_realisation": results,
        "reconstruction_time_s": elapsed,
    }


def _background_region(grid: recon.ImageGrid, activity: np.ndarray, spheres: list) -> np.ndarray:
    """Background voxels: full background concentration, at least 15 mm from every sphere's
    surface, in the central third of the slices."""
    inside = np.isclose(activity, BACKGROUND_KBQ_ML * 1000.0, rtol=1e-3)
    z, y, x = grid.meshgrid_mm()
    for s in spheres:
        cx, cy, cz = s.centre_mm
        inside &= np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) > s.diameter_mm / 2 + 15
    nz = grid.shape[0]
    inside[: nz // 3] = False
    inside[nz - nz // 3 :] = False
    return inside


def _figure(record: dict[str, Any], path: Path) -> None:
    r = record["runs"][0]
    fig = new_figure(1100, 450, layout="constrained")
    left, right = fig.subplots(1, 2)
    sizes = list(r["spheres_mm"].values())
    for name, marker in (("single", "o"), ("joint", "s")):
        label = "171 keV only" if name == "single" else "171 + 245 keV joint"
        left.plot(sizes, [r["mean"][name][k] for k in r["spheres_mm"]], marker=marker, label=label)
    left.set_xlabel("sphere diameter [mm]")
    left.set_ylabel("recovery (mean / true)")
    left.set_title("Sphere recovery, In-111 NEMA-IEC, 7-day counts")
    left.legend()
    style_axes(left)
    cvs = [r["mean"]["single"]["cv"], r["mean"]["joint"]["cv"]]
    right.bar(["171 keV only", "171 + 245 keV joint"], cvs)
    right.set_ylabel("background CV")
    right.set_title(
        f"CV ratio {r['measured_cv_ratio']:.2f} (sqrt count ratio "
        f"{r['expected_cv_ratio_sqrt_counts']:.2f})"
    )
    style_axes(right)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--realisations", type=int, default=4)
    parser.add_argument("--devices", nargs="+", default=["cpu"], choices=("cpu", "gpu"))
    parser.add_argument("--quick", action="store_true", help="tiny configuration (smoke test)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.realisations < 2:
        parser.error("--realisations must be at least 2")
    name = "quick" if args.quick else "full"
    config = CONFIGS[name]
    realisations = 2 if args.quick else args.realisations
    runs = [run(config, realisations, d) for d in args.devices]

    r = runs[0]
    print(
        f"\nIn-111 NEMA-IEC, {config['n']}x{config['n']}x{config['nz']} voxels of "
        f"{config['voxel']} mm, {config['views']} views, OSEM {config['iterations']} it x "
        f"{config['subsets']} subsets, {realisations} realisations"
    )
    header = f"{'figure':<22}{'171 keV only':>16}{'171+245 joint':>16}"
    print(header)
    print("-" * len(header))
    for key in r["mean"]["single"]:
        print(f"{key:<22}{r['mean']['single'][key]:>16.3f}{r['mean']['joint'][key]:>16.3f}")
    print(
        f"CV ratio single/joint {r['measured_cv_ratio']:.2f}; sqrt of the count ratio "
        f"{r['expected_cv_ratio_sqrt_counts']:.2f}"
    )
    for run_ in runs:
        print(f"{run_['device']}: {run_['device_name']}")

    now = dt.datetime.now(dt.timezone.utc)
    record = {
        "benchmark": "spect-multi",
        "date": now.isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "configuration": name,
        "problem": {
            **config,
            "realisations": realisations,
            "background_kbq_ml": BACKGROUND_KBQ_ML,
            "sphere_to_background": 4.0,
            "sensitivity_cps_per_mbq_per_window": SENSITIVITY_CPS_PER_MBQ,
            "collimator": "ME",
            "time_per_view_s": 30.0,
        },
        "recon_version": recon.__version__,
        "numpy": np.__version__,
        "runs": runs,
    }
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"spect-multi-{'-'.join(args.devices)}-{name}-{now:%Y%m%d-%H%M%S}"
    write_text_atomic(out_dir / f"{stem}.json", json.dumps(record, indent=2))
    _figure(record, out_dir / f"{stem}.png")
    print(f"wrote {out_dir / stem}.json and .png")


if __name__ == "__main__":
    main()
