"""How the cost of recon's operators grows with the problem: SPECT and PET scaling benchmark.

Cases (each the median of repeated runs after a warm-up, with the peak host memory of one run
traced by :mod:`tracemalloc`, i.e. NumPy's heap: images, projections, caches, temporaries):

- SPECT forward + back projection (attenuation, LEHR response) on n³ voxels with V views:
  n = 64, 128, 160 at 120 views, and V = 60, 120, 240 at 128³. The cost per voxel·view and a
  power law ``t ∝ (voxels·views)^p`` fitted by least squares in log–log say whether the projector
  stays linear in the work (p = 1) or falls off a cliff (e.g. when the attenuation cache no longer
  holds).
- PET non-TOF sinogram forward + back vs the number of planes (max ring difference 0 … all of a
  16-ring scanner), LM-OSEM (one iteration, 4 subsets) vs the number of TOF events, and the
  listmode sensitivity image vs the number of LORs (computed: the disk cache is off).

Prints a table, writes JSON and a PNG of the curves (log–log, seconds against work) to
``--output`` (default ``benchmarks/results``). ``--quick`` runs tiny sizes (for the test suite).
CPU only: the GPU figures come from ``benchmarks/spect.py`` and ``benchmarks/pet.py``.

Usage::

    python benchmarks/scaling.py [--repeats 3] [--output benchmarks/results] [--quick]
                                 [--only spect|pet]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import recon
from recon._files import write_text_atomic
from recon.figures import new_figure, save_figure, style_axes
from recon.simulate.phantoms import uniform_cylinder

os.environ["RECON_CACHE_DIR"] = "off"  # every sensitivity image is computed, never read back


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], int]:
    """Warm-up, then ``repeats`` timed runs; also the peak traced heap (bytes) of one run."""
    fn()
    tracemalloc.start()
    try:
        fn()
        peak = int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times, peak


def _fit_exponent(work: list[float], seconds: list[float]) -> float | None:
    """``p`` of ``t ∝ work^p`` (least squares in log–log); None with fewer than two sizes."""
    if len(set(work)) < 2:
        return None
    slope, _ = np.polyfit(np.log(work), np.log(seconds), 1)
    return float(slope)


def _case(
    kind: str, label: str, work: float, unit: str, times: list[float], peak: int, **extra: Any
) -> dict[str, Any]:
    median = statistics.median(times)
    row = {
        "series": kind,
        "case": label,
        "work": work,
        "unit": unit,
        "times_s": times,
        "median_s": median,
        "seconds_per_unit": median / work,
        "peak_memory_bytes": peak,
    }
    row.update(extra)
    print(
        f"  {kind:<22} {label:<34} {median:9.3f} s  {median / work * 1e9:9.3f} ns/{unit}  "
        f"peak {peak / 2**20:8.1f} MiB",
        flush=True,
    )
    return row


# ------------------------------------------------------------------------------------ SPECT
def spect_case(n: int, n_views: int, repeats: int) -> dict[str, Any]:
    """Forward + back projection of an attenuated LEHR SPECT model, n³ voxels, n_views views."""
    pixel = 4.42 * 128 / n
    grid = recon.ImageGrid((n, n, n), pixel)
    geometry = recon.SpectGeometry.circular(
        n_views=n_views, radius_mm=250, n_u=n, n_v=n, pixel_size_mm=pixel
    )
    activity = uniform_cylinder(grid, radius_mm=200, length_mm=400, value=1.0)
    mu = (0.0154 * (activity > 0)).astype(np.float32)
    model = recon.SpectModel(
        geometry, grid, mu_map=mu, collimator=recon.Collimator.preset("LEHR"), device="cpu"
    )
    projections = model.forward(activity)

    def forward_and_back() -> None:
        model.back(model.forward(activity))

    times, peak = _timed(forward_and_back, repeats)
    work = float(n**3 * n_views)
    return _case(
        "SPECT fwd+back",
        f"{n}³, {n_views} views",
        work,
        "voxel·view",
        times,
        peak,
        attenuation_cached=model._att_cache is not None,
        attenuation_cached_views=int(model.attenuation_cached_views),
        processed_views=int(projections.shape[0]),
    )


# -------------------------------------------------------------------------------------- PET
def _pet_scanner(quick: bool) -> recon.PetScanner:
    if quick:
        return recon.PetScanner(
            n_rings=4,
            crystals_per_ring=64,
            radius_mm=120.0,
            ring_spacing_mm=4.0,
            tof=recon.Tof(fwhm_ps=400.0, n_bins=13, bin_width_ps=110.0),
        )
    return recon.PetScanner(
        n_rings=16,
        crystals_per_ring=336,
        radius_mm=380.0,
        ring_spacing_mm=4.0,
        tof=recon.Tof(fwhm_ps=400.0, n_bins=29, bin_width_ps=170.0),
    )


def _pet_grid(scanner: recon.PetScanner, quick: bool) -> recon.ImageGrid:
    nxy = 32 if quick else 128
    fov = 0.6 * 2 * scanner.radius_mm
    return recon.ImageGrid(
        (2 * scanner.n_rings - 1, nxy, nxy), (scanner.ring_spacing_mm / 2, fov / nxy, fov / nxy)
    )


def pet_sinogram_case(
    scanner: recon.PetScanner, grid: recon.ImageGrid, mrd: int, repeats: int
) -> dict[str, Any]:
    """Non-TOF span-1 sinogram forward + back with ring differences up to ``mrd``."""
    model = recon.PetSinogramModel(
        scanner, grid, use_tof=False, max_ring_difference=mrd, device="cpu"
    )
    x = uniform_cylinder(grid, radius_mm=0.4 * scanner.radius_mm, length_mm=1e4, value=1.0)

    def forward_and_back() -> None:
        model.back(model.forward(x))

    times, peak = _timed(forward_and_back, repeats)
    layout = model.layout
    return _case(
        "PET sinogram fwd+back",
        f"{layout.n_planes} planes (mrd {mrd})",
        float(layout.n_bins),
        "LOR",
        times,
        peak,
        planes=layout.n_planes,
    )


def _events(scanner: recon.PetScanner, n: int, mrd: int, seed: int) -> recon.ListmodeEvents:
    """``n`` TOF prompts on random LORs of the layout (ring difference ≤ ``mrd``, transaxial
    offsets within the layout's radial range), in time order over one second."""
    rng = np.random.default_rng(seed)
    per_ring = scanner.crystals_per_ring
    ring_a = rng.integers(0, scanner.n_rings, n)
    ring_b = np.clip(ring_a + rng.integers(-mrd, mrd + 1, n), 0, scanner.n_rings - 1)
    index_a = rng.integers(0, per_ring, n)
    index_b = index_a + per_ring // 2 + rng.integers(-per_ring // 8, per_ring // 8 + 1, n)
    index_b %= per_ring
    tof = scanner.tof
    max_bin = 0 if tof is None else tof.max_bin
    return recon.ListmodeEvents(
        crystal_a=(ring_a * per_ring + index_a).astype(np.int32),
        crystal_b=(ring_b * per_ring + index_b).astype(np.int32),
        tof_bin=rng.integers(-max_bin // 2, max_bin // 2 + 1, n).astype(np.int16),
        time_ms=np.sort(rng.random(n) * 1000.0),
    )


def pet_listmode_case(
    model: recon.PetListmodeModel, scanner: recon.PetScanner, n: int, repeats: int
) -> dict[str, Any]:
    """One LM-OSEM iteration (4 subsets, prepare included) of ``n`` TOF events."""
    events = _events(scanner, n, model.layout.max_ring_difference, seed=n)
    result: list[Any] = []

    def iteration() -> None:
        result[:] = [recon.lm_osem(model, events, iterations=1, subsets=4, progress=False)]

    times, peak = _timed(iteration, repeats)
    processed = int(result[0].info["n_prompts"])
    if processed != n:
        raise SystemExit(f"refused: LM-OSEM processed {processed} of {n} events")
    return _case(
        "LM-OSEM iteration",
        f"{n:,} TOF events",
        float(n),
        "event",
        times,
        peak,
        processed=processed,
    )


def pet_sensitivity_case(
    scanner: recon.PetScanner, grid: recon.ImageGrid, mrd: int, repeats: int
) -> dict[str, Any]:
    """The listmode sensitivity image over every LOR of the layout (a fresh model each run)."""

    def compute() -> None:
        recon.PetListmodeModel(
            scanner, grid, max_ring_difference=mrd, device="cpu"
        ).geometric_sensitivity()

    times, peak = _timed(compute, repeats)
    n_lors = recon.SinogramLayout(scanner, max_ring_difference=mrd).n_bins
    return _case(
        "PET sensitivity image", f"{n_lors:,} LORs (mrd {mrd})", float(n_lors), "LOR", times, peak
    )


# ------------------------------------------------------------------------------------ output
def _figure(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    series = sorted({row["series"] for row in rows})
    fig = new_figure(1400, 420 * ((len(series) + 1) // 2), layout="constrained")
    axes = fig.subplots((len(series) + 1) // 2, 2, squeeze=False).ravel()
    for ax, name in zip(axes, series, strict=False):
        chosen = sorted((r for r in rows if r["series"] == name), key=lambda r: r["work"])
        work = [r["work"] for r in chosen]
        seconds = [r["median_s"] for r in chosen]
        ax.loglog(work, seconds, "o-", color="tab:blue", label="measured (median)")
        # The linear law through the smallest case: points above it cost more per unit.
        ax.loglog(
            work,
            [seconds[0] * w / work[0] for w in work],
            "--",
            color="0.5",
            label="linear in the work",
        )
        for row in chosen:
            ax.annotate(
                row["case"],
                (row["work"], row["median_s"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(4, -10),
            )
        exponent = _fit_exponent(work, seconds)
        suffix = "" if exponent is None else f" (fitted exponent {exponent:.2f})"
        ax.set_title(name + suffix)
        ax.set_xlabel(f"work ({chosen[0]['unit']}s)")
        ax.set_ylabel("time (s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left")
        style_axes(ax)
    for ax in axes[len(series) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (3)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds, for tests)")
    parser.add_argument(
        "--devices",
        nargs="+",
        default=["cpu"],
        choices=("cpu",),
        help="cpu only (accepted for a uniform benchmark command line)",
    )
    parser.add_argument(
        "--only", choices=("spect", "pet"), default=None, help="run one modality's cases only"
    )
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    args.output.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows: list[dict[str, Any]] = []

    if args.only != "pet":
        print("SPECT")
        if args.quick:
            spect_sizes = [(16, 12), (24, 12), (16, 24)]
        else:
            spect_sizes = [(64, 120), (128, 120), (160, 120), (128, 60), (128, 240)]
        for n, views in spect_sizes:
            rows.append(spect_case(n, views, repeats))

    if args.only != "spect":
        print("PET")
        scanner = _pet_scanner(args.quick)
        grid = _pet_grid(scanner, args.quick)
        ring_differences = [0, 1, 3] if args.quick else [0, 3, 7, 15]
        for mrd in ring_differences:
            rows.append(pet_sinogram_case(scanner, grid, mrd, repeats))
        for mrd in ring_differences[:3]:
            rows.append(pet_sensitivity_case(scanner, grid, mrd, repeats))
        listmode = recon.PetListmodeModel(
            scanner, grid, max_ring_difference=ring_differences[-1], device="cpu"
        )
        listmode.geometric_sensitivity()  # computed once: the LM-OSEM figures are per iteration
        event_counts = [2_000, 8_000] if args.quick else [250_000, 1_000_000, 4_000_000]
        for n in event_counts:
            rows.append(pet_listmode_case(listmode, scanner, n, repeats))

    exponents = {
        name: _fit_exponent(
            [r["work"] for r in rows if r["series"] == name],
            [r["median_s"] for r in rows if r["series"] == name],
        )
        for name in sorted({r["series"] for r in rows})
    }
    print("fitted exponents (t ∝ work^p):")
    for name, p in exponents.items():
        print(f"  {name:<22} p = {p:.3f}" if p is not None else f"  {name:<22} (one size)")
    stamp = dt.datetime.now(dt.timezone.utc)
    record = {
        "benchmark": "scaling",
        "date_utc": stamp.isoformat(timespec="seconds"),
        "device": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)",
        "load_average_at_start": load,
        "quick": args.quick,
        "only": args.only,
        "repeats": repeats,
        "recon_version": recon.__version__,
        "cases": rows,
        "fitted_exponents": exponents,
    }
    only = f"-{args.only}" if args.only else ""
    name = f"scaling-cpu{only}{'-quick' if args.quick else ''}-{stamp:%Y%m%d-%H%M%S}"
    write_text_atomic(args.output / f"{name}.json", json.dumps(record, indent=2) + "\n")
    _figure(
        rows,
        args.output / f"{name}.png",
        f"recon scaling on {record['device']}, {stamp:%Y-%m-%d} (medians of {repeats})",
    )
    print(f"wrote {args.output / name}.json and .png")


if __name__ == "__main__":
    main()
