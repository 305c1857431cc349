"""SPECT projector and OSEM benchmark.

Problem: 128³ voxels of 4.42 mm, 120 views of 128×128 pixels on a 250 mm circular orbit,
attenuation (water cylinder) and LEHR collimator response (``--collimator``/``--energy`` for
another, e.g. ``ME`` at 245.4 keV with its septal-penetration tail). Measures forward projection,
back projection (all views) and one full OSEM iteration (8 subsets), as the median of repeated runs
after a warm-up run, on the CPU and, when CuPy sees a GPU, on the GPU. It also times OSEM and BSREM
with the relative difference prior per iteration in steady state (the interval between the ends of
consecutive iterations of one run, so without either's set-up; runs interleaved, objective
evaluation off; β = 1, γ = 2, ε = 10⁻³ × the start's mean, κ = √sensitivity, as ``recon spect
--algorithm bsrem``) and reports their ratio: issue 12's target is BSREM ≤ 1.3 × OSEM. Each
operation also records the views it states and the views it processed (the OSEM iteration: the
views its subsets cover), and the benchmark refuses to run rather than leave any out. Prints a
table and writes JSON.

Usage::

    python benchmarks/spect.py [--repeats 5] [--devices cpu gpu] [--output benchmarks/results]
    python benchmarks/spect.py --small     # 64³ version for a quick look
    python benchmarks/spect.py --collimator ME --energy 245.4   # In-111's 245 keV line
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import recon
from recon._files import write_text_atomic
from recon.algorithms import bsrem, osem
from recon.algorithms.priors import RelativeDifferencePrior, sensitivity_kappa
from recon.backend import gpu_available, resolve_backend
from recon.simulate.phantoms import uniform_cylinder


def _timed(fn: Callable[[], Any], sync: Callable[[], None], repeats: int) -> list[float]:
    """Wall times of ``repeats`` runs after a warm-up; the process CPU time of each run (all
    threads: on a shared machine, the work done rather than the share of the CPU obtained) is
    appended to ``_CPU_TIMES``."""
    fn()  # warm-up: compiles kernels, fills caches
    sync()
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    _CPU_TIMES.append(cpu)
    return times


_CPU_TIMES: list[list[float]] = []

#: Steady-state timing: iterations per run (the first is not counted) and interleaved runs.
STEADY_ITERATIONS = 3
STEADY_RUNS = 3
BSREM_BETA = 1.0
BSREM_TARGET = 1.3  # issue 12: a BSREM iteration at most 1.3 × an OSEM iteration


def _iteration_intervals(
    run: Callable[[Callable[[Any], None]], Any], sync: Callable[[], None]
) -> list[float]:
    """Intervals between the ends of consecutive iterations of ``run(callback)``."""
    ends: list[float] = []

    def stamp(state: Any) -> None:
        if state.subset == state.n_subsets - 1:
            sync()
            ends.append(time.perf_counter())

    run(stamp)
    return np.diff(ends).tolist()


def steady_state(model: Any, counts: Any, x: Any, subsets: int, sync: Callable[[], None]) -> dict:
    """OSEM and BSREM seconds per iteration in steady state, interleaved runs (module docstring)."""
    seen = model.backend.to_host(model.sensitivity(None)) > 0
    epsilon = 1e-3 * float(np.asarray(model.backend.to_host(x))[seen].mean())
    prior = RelativeDifferencePrior(BSREM_BETA, gamma=2.0, epsilon=epsilon, kappa=sensitivity_kappa)
    common = dict(iterations=STEADY_ITERATIONS + 1, subsets=subsets, x0=x, progress=False)
    runs: dict[str, Callable[[Callable[[Any], None]], Any]] = {
        "osem": lambda cb: osem(model, counts, callback=cb, **common),
        "bsrem": lambda cb: bsrem(
            model, counts, prior=prior, objective=False, callback=cb, **common
        ),
    }
    for run in runs.values():  # warm-up: compiles kernels
        run(lambda state: None)
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(STEADY_RUNS):
        for name, run in runs.items():
            samples[name] += _iteration_intervals(run, sync)
    median = {k: statistics.median(v) for k, v in samples.items()}
    ratio = median["bsrem"] / median["osem"]
    return {
        "seconds_per_iteration": median,
        "samples_s": samples,
        "ratio_bsrem_to_osem": ratio,
        "target_ratio": BSREM_TARGET,
        "meets_target": ratio <= BSREM_TARGET,
        "prior": repr(prior),
    }


def collimator_for(name: str, energy_kev: float | None) -> recon.Collimator:
    """The preset ``name`` at ``energy_kev`` (its own energy when None): e.g. ``ME`` at 245.4 keV,
    In-111's upper line, whose septal-penetration tail the model adds as a second, wide
    response component."""
    collimator = recon.Collimator.preset(name)
    return collimator if energy_kev is None else collimator.at_energy(energy_kev)


def run(
    device: str, n: int, repeats: int, subsets: int, collimator: recon.Collimator
) -> dict[str, Any]:
    grid = recon.ImageGrid((n, n, n), 4.42 * 128 / n)
    geometry = recon.SpectGeometry.circular(
        n_views=120, radius_mm=250, n_u=n, n_v=n, pixel_size_mm=4.42 * 128 / n
    )
    activity = uniform_cylinder(grid, radius_mm=200, length_mm=400, value=1.0)
    mu = 0.0154 * (activity > 0)
    backend = resolve_backend(device)
    sync = (lambda: backend.xp.cuda.Stream.null.synchronize()) if backend.is_gpu else (lambda: None)
    start = time.perf_counter()
    model = recon.SpectModel(geometry, grid, mu_map=mu, collimator=collimator, device=backend)
    sync()
    setup = time.perf_counter() - start
    x = backend.asarray(activity)
    y = model.forward(x)
    counts = backend.asarray(
        np.random.default_rng(0).poisson(backend.to_host(y)).astype(np.float32)
    )
    n_views = geometry.n_views
    osem_name = f"OSEM iteration ({subsets} subsets)"
    processed = {
        f"forward ({n_views} views)": int(y.shape[0]),
        f"back ({n_views} views)": int(y.shape[0]),
        osem_name: sum(len(views) for views in model.subsets(subsets)),
    }
    for name, done in processed.items():
        check_processed(name, n_views, done)
    results = {
        f"forward ({n_views} views)": _timed(lambda: model.forward(x), sync, repeats),
        f"back ({n_views} views)": _timed(lambda: model.back(y), sync, repeats),
        osem_name: _timed(
            lambda: osem(model, counts, iterations=1, subsets=subsets, x0=x, progress=False),
            sync,
            repeats,
        ),
    }
    cpu_times = dict(zip(results, _CPU_TIMES[-len(results) :], strict=True))
    steady = steady_state(model, counts, x, subsets, sync)
    return {
        "device": backend.name,
        "device_name": backend.device_name,
        "model_setup_s (incl. attenuation cache)": setup,
        "attenuation_cached": model._att_cache is not None,
        "attenuation_cached_views": int(model.attenuation_cached_views),
        "times_s": results,
        "median_s": {k: statistics.median(v) for k, v in results.items()},
        "cpu_times_s": cpu_times,
        "median_cpu_s": {k: statistics.median(v) for k, v in cpu_times.items()},
        "per_iteration_steady_state": steady,
        "processed": {
            k: {"stated": n_views, "processed": v, "unit": "views"} for k, v in processed.items()
        },
    }


def check_processed(what: str, stated: int, processed: int) -> None:
    """Refuse (exit with a message) when an operation would process other than its views."""
    if processed != stated:
        raise SystemExit(
            f"refused: {what} would process {processed} of the {stated} views it states"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--subsets", type=int, default=8)
    parser.add_argument("--devices", nargs="+", default=None, choices=("cpu", "gpu"))
    parser.add_argument("--small", action="store_true", help="64³ instead of 128³")
    parser.add_argument("--collimator", default="LEHR", help="collimator preset (default LEHR)")
    parser.add_argument("--energy", type=float, default=None,
                        help="photon energy in keV (default: the preset's own)")  # fmt: skip
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    devices = args.devices or (["cpu", "gpu"] if gpu_available() else ["cpu"])
    n = 64 if args.small else 128
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    collimator = collimator_for(args.collimator, args.energy)
    response = f"{args.collimator}" + (f" at {args.energy:g} keV" if args.energy else "")
    runs = [run(d, n, args.repeats, args.subsets, collimator) for d in devices]

    print(f"\nSPECT benchmark: {n}³ voxels, 120 views of {n}x{n}, attenuation + {response} "
          f"response")  # fmt: skip
    header = f"{'operation':<28}" + "".join(f"{r['device'] + ' median [s]':>20}" for r in runs)
    print(header)
    print("-" * len(header))
    for key in runs[0]["median_s"]:
        print(f"{key:<28}" + "".join(f"{r['median_s'][key]:>20.4f}" for r in runs))
    for key in runs[0]["median_cpu_s"]:
        print(f"{key + ' CPU s':<28}" + "".join(f"{r['median_cpu_s'][key]:>20.4f}" for r in runs))
    if len(runs) == 2:
        for key in runs[0]["median_s"]:
            print(
                f"GPU speed-up, {key}: {runs[0]['median_s'][key] / runs[1]['median_s'][key]:.1f}x"
            )
    for r in runs:
        st = r["per_iteration_steady_state"]
        per = st["seconds_per_iteration"]
        print(f"{r['device']}: OSEM {per['osem']:.4f} s, BSREM {per['bsrem']:.4f} s per iteration "
              f"in steady state: ratio {st['ratio_bsrem_to_osem']:.2f} "
              f"(target <= {st['target_ratio']})")  # fmt: skip
    for r in runs:
        print(f"{r['device']}: {r['device_name']}")

    now = dt.datetime.now(dt.timezone.utc)
    record = {
        "benchmark": "spect",
        "date": now.isoformat(timespec="seconds"),
        "problem": {
            "voxels": [n, n, n],
            "voxel_mm": 4.42 * 128 / n,
            "views": 120,
            "subsets": args.subsets,
            "collimator": args.collimator,
            "energy_kev": args.energy,
            "response_components": len(collimator.components(100.0)),
        },
        "recon_version": recon.__version__,
        "numpy": np.__version__,
        "load_average_at_start": load,
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "runs": runs,
    }
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = (
        ""
        if args.collimator == "LEHR" and args.energy is None
        else (f"-{args.collimator.lower()}" + (f"-{args.energy:g}kev" if args.energy else ""))
    )
    name = f"spect-{'-'.join(devices)}-{n}{tag}-{now:%Y%m%d-%H%M%S}.json"
    write_text_atomic(out_dir / name, json.dumps(record, indent=2))
    print(f"wrote {out_dir / name}")


if __name__ == "__main__":
    main()
