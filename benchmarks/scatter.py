"""Single-scatter simulation (SSS) time, and its share of a whole PET reconstruction.

Problem: the DMI-like preset (``dmi4``, TOF) with a water elliptic cylinder (μ at 511 keV) and a
uniform activity in it, on a 2.78 mm grid (``--quick``: the ``small`` preset on a coarse grid).
Times, as medians of repeated runs after a warm-up:

- ``simulate``: SSS over the coarse detector ring (non-TOF and TOF);
- ``interpolate``: the coarse estimate interpolated to every LOR of the span-1 sinogram;
- one LM-OSEM iteration (8 subsets) of ``--events`` TOF events, sensitivity image excluded;

and reports the SSS share of a ``recon pet --scatter sss`` reconstruction with the default three
rounds (each round: one SSS + interpolation, plus the reconstructions between them). Prints a
table and writes JSON to ``--output`` (default ``benchmarks/results``). CPU only here; on a GPU
pass ``--devices gpu``.

Usage::

    python benchmarks/scatter.py [--repeats 3] [--events 1e6] [--quick] [--devices cpu]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import recon
from recon._files import write_text_atomic
from recon.backend import resolve_backend
from recon.pet.sss import ScatterDetectors, SingleScatterSimulation

os.environ["RECON_CACHE_DIR"] = "off"


def _timed(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> list[float]:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def _events(scanner: recon.PetScanner, layout: recon.SinogramLayout, n: int, seed: int):
    """``n`` TOF prompts on random LORs of ``layout``."""
    rng = np.random.default_rng(seed)
    plane = rng.integers(0, layout.n_planes, n)
    view = rng.integers(0, layout.n_views, n)
    radial = rng.integers(layout.n_radial // 4, 3 * layout.n_radial // 4, n)
    a, b = layout.crystals_of(plane, view, radial)
    max_bin = scanner.tof.max_bin if scanner.tof else 0
    return recon.ListmodeEvents(
        crystal_a=np.asarray(a, np.int32), crystal_b=np.asarray(b, np.int32),
        tof_bin=rng.integers(-max_bin // 2, max_bin // 2 + 1, n).astype(np.int16),
        time_ms=np.linspace(0.0, 60_000.0, n),
    )  # fmt: skip


def run_device(
    device: str,
    scanner: recon.PetScanner,
    grid: recon.ImageGrid,
    mu: np.ndarray,
    activity: np.ndarray,
    n_events: int,
    repeats: int,
    max_ring_difference: int | None,
) -> dict[str, Any]:
    """Time SSS and an LM-OSEM iteration on one device; print and return the figures."""
    from recon.algorithms.em import em_reconstruct

    backend = resolve_backend(device)

    def sync() -> None:
        if backend.is_gpu:
            backend.xp.cuda.Stream.null.synchronize()

    model = recon.PetListmodeModel(
        scanner, grid, mu_map=mu, max_ring_difference=max_ring_difference, device=backend
    )
    layout = model.layout
    # The LOR ends a few views at a time (the full layout's would not fit in memory).
    step = max(1, 2**22 // (layout.n_planes * layout.n_radial))
    chunks = [np.arange(a, min(a + step, layout.n_views)) for a in range(0, layout.n_views, step)]

    def interpolate(estimate: Any) -> None:
        flat = estimate.nontof()
        for views in chunks:
            flat.at(*layout.endpoints(views, xp=backend.xp))

    rows: dict[str, Any] = {}
    interpolate_tof = ""
    for tof in (None, scanner.tof):
        lower, upper, resolution, _ = scanner.energy_response()
        simulation = SingleScatterSimulation(
            grid, mu, ScatterDetectors.from_scanner(scanner), energy_window_kev=(lower, upper),
            energy_resolution=resolution, tof=tof, device=backend,
        )  # fmt: skip
        label = "TOF" if tof is not None else "non-TOF"
        coarse = [simulation.simulate(activity)]
        rows[f"SSS simulate ({label})"] = _timed(
            lambda s=simulation: s.simulate(activity), repeats, sync
        )
        name = f"SSS interpolate to {layout.n_bins:,} LORs ({label} estimate, non-TOF sum)"
        rows[name] = _timed(lambda c=coarse[0]: interpolate(c), repeats, sync)
        if tof is not None:
            interpolate_tof = name
    events = _events(scanner, layout, n_events, seed=1)
    model.geometric_sensitivity()
    frame = model.frame(events, 0.0, 60.0)
    order = frame.subsets(8)
    counts = frame.counts()
    iteration_name = f"LM-OSEM iteration, 8 subsets ({n_events:,} TOF events)"
    rows[iteration_name] = _timed(
        lambda: em_reconstruct(frame, counts, None, order, 1, "LM-OSEM", progress=False),
        repeats, sync,
    )  # fmt: skip
    medians = {name: statistics.median(times) for name, times in rows.items()}
    sss_round = medians["SSS simulate (TOF)"] + medians[interpolate_tof or iteration_name]
    iteration = medians[iteration_name]
    # recon pet --scatter sss, 3 rounds: 2 iterations first, then SSS + 2 iterations per round,
    # then the final reconstruction (3 iterations by default).
    total = 3 * sss_round + (2 + 3 * 2 + 3) * iteration
    share = 3 * sss_round / total
    print(f"[{backend.name}] scanner {scanner.name}, grid {grid.shape}, {layout.n_bins:,} LORs")
    for name, value in medians.items():
        print(f"  {name:<70} {value:9.3f} s")
    print(f"  SSS share of recon pet --scatter sss (3 rounds, {n_events:,} events): {share:.1%}")
    where = f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    return {
        "device": backend.name, "device_name": "gpu" if backend.is_gpu else where,
        "times_s": rows, "median_s": medians, "sss_round_s": sss_round,
        "scatter_sss_reconstruction_s": total, "sss_share": share,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events", type=float, default=None, help="LM-OSEM events (1e6)")
    parser.add_argument("--quick", action="store_true", help="small scanner, coarse grid")
    parser.add_argument("--devices", nargs="+", default=["cpu"], choices=("cpu", "gpu"))
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.output.mkdir(parents=True, exist_ok=True)
    if args.quick:
        scanner = recon.PetScanner.preset("small")
        grid = recon.ImageGrid((8, 32, 32), (8.0, 8.0, 8.0))
        n_events = int(args.events or 20_000)
    else:
        scanner = recon.PetScanner.preset("dmi4")
        grid = recon.ImageGrid((71, 215, 215), 2.78)
        n_events = int(args.events or 1e6)
    # Ring differences up to 10, as benchmarks/pet.py on the CPU (all for the small scanner).
    mrd = None if args.quick else 10
    z, y, x = grid.meshgrid_mm()
    body = ((x / (0.45 * grid.shape[2] * grid.voxel_size[2])) ** 2
            + (y / (0.35 * grid.shape[1] * grid.voxel_size[1])) ** 2) <= 1  # fmt: skip
    mu = np.where(body, 0.0096, 0.0).astype(np.float32)
    activity = body.astype(np.float32)
    runs = [
        run_device(device, scanner, grid, mu, activity, n_events, args.repeats, mrd)
        for device in args.devices
    ]
    stamp = dt.datetime.now(dt.timezone.utc)
    record = {
        "benchmark": "scatter", "date_utc": stamp.isoformat(timespec="seconds"),
        "scanner": scanner.name, "grid": list(grid.shape), "voxel_mm": list(grid.voxel_size),
        "events": n_events, "repeats": args.repeats, "quick": args.quick,
        "max_ring_difference": mrd,
        "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "runs": runs,
    }  # fmt: skip
    name = f"scatter-{'-'.join(args.devices)}{'-quick' if args.quick else ''}-{stamp:%Y%m%d-%H%M%S}"
    write_text_atomic(args.output / f"{name}.json", json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.output / name}.json")


if __name__ == "__main__":
    main()
