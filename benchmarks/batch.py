"""`recon batch` benchmark: throughput of one manifest on 1 and 2 workers (and one per GPU).

Problem: the simulated trial of :mod:`recon.simulate.trial` (per patient two In-111 SPECT/CT
scans, 16×32×32 voxels of 8 mm, 32 views; one dynamic F-18 TOF PET scan split into two frame
jobs; a cohort quant step after the SPECT jobs). For each worker count a local cluster is started
(timed on its own), the manifest runs into a fresh output folder, and the benchmark records:

- throughput: jobs per minute over the batch's wall time, cluster start excluded;
- scheduling overhead per job: worker time not spent inside a job's own run,
  ``(wall × workers − Σ job seconds) / jobs`` (Dask's scheduling and transfers, plus workers
  idle while the cohort step waits for its inputs);
- a rerun with every output up to date, per job (the Dask round trip plus the up-to-date check:
  checksums of inputs and outputs).

Every run must end with every job done (the rerun: skipped), or the benchmark refuses to report.
The machine's load average before and after is recorded: on a shared machine the figures carry
the other users' load.
The kernels get CPU cores // workers numba threads each, as ``recon batch`` gives them. Prints a
table and writes JSON.

Usage::

    python benchmarks/batch.py [--patients 2] [--workers 1 2] [--output benchmarks/results]
    python benchmarks/batch.py --patients 1 --no-pet --workers 1     # a quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import recon
import recon.batch
from recon._files import write_text_atomic
from recon.batch.cluster import cpu_count, gpu_count, plan_workers, start_cluster
from recon.simulate.trial import write_simulated_trial


def _machine() -> str:
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def run_config(manifest: Path, out: Path, workers: int | None, gpus: str | None) -> dict:
    """One worker configuration: cluster start, a full run, an up-to-date rerun."""
    from distributed import Client

    plan = plan_workers(workers, gpus, cpu_count=cpu_count(), device_count=gpu_count())
    start = time.perf_counter()
    cluster = start_cluster(plan, dashboard_address=None)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(plan.n_workers)
            cluster_start = time.perf_counter() - start
            start = time.perf_counter()
            first = recon.batch.run(manifest, client, output=out,
                                    kernel_threads=plan.kernel_threads)  # fmt: skip
            wall = time.perf_counter() - start
            start = time.perf_counter()
            again = recon.batch.run(manifest, client, output=out,
                                    kernel_threads=plan.kernel_threads)  # fmt: skip
            rerun = time.perf_counter() - start
    finally:
        cluster.close()
    n = len(first.results)
    statuses = {r.status for r in first.results.values()}
    if statuses != {"done"} or {r.status for r in again.results.values()} != {"skipped"}:
        raise SystemExit(f"refused: the run ended {statuses}, not every job done")
    job_seconds = sum(r.seconds for r in first.results.values())
    return {
        "workers": plan.n_workers,
        "gpus": list(plan.gpus),
        "kernel_threads_per_worker": plan.kernel_threads,
        "jobs": n,
        "cluster_start_s": cluster_start,
        "wall_s": wall,
        "jobs_per_minute": 60.0 * n / wall,
        "sum_job_s": job_seconds,
        "overhead_per_job_s": (wall * plan.n_workers - job_seconds) / n,
        "up_to_date_rerun_per_job_s": rerun / n,
        "job_s": {name: r.seconds for name, r in first.results.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=2)
    parser.add_argument("--no-pet", action="store_true", help="leave out the dynamic PET scan")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="recon-batch-bench-"))
    try:
        configs: list[tuple[int | None, str | None]] = [(w, None) for w in args.workers]
        if gpu_count() > 0:
            configs.append((None, "all"))
        runs = []
        for workers, gpus in configs:
            # The cohort's study files name the images in the trial's output: give each run
            # a trial written for its own output folder.
            out = folder / f"out-{workers or 'gpu'}"
            trial = write_simulated_trial(
                folder / f"in-{workers or 'gpu'}", out, n_patients=args.patients,
                pet=not args.no_pet,
            )  # fmt: skip
            runs.append(run_config(trial.manifest, out, workers, gpus))
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    n = runs[0]["jobs"]
    pet = "" if args.no_pet else ", 2 PET frames"
    print(f"\nrecon batch benchmark: {n} jobs ({args.patients} patient(s) x 2 SPECT/CT{pet}, "
          f"1 cohort quant) on {_machine()}")  # fmt: skip
    header = (f"{'workers':>8}{'threads':>9}{'start [s]':>11}{'wall [s]':>10}{'jobs/min':>10}"
              f"{'overhead/job [s]':>18}{'rerun/job [s]':>15}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in runs:
        label = f"{r['workers']}{' GPU' if r['gpus'] else ''}"
        print(f"{label:>8}{r['kernel_threads_per_worker']:>9}{r['cluster_start_s']:>11.1f}"
              f"{r['wall_s']:>10.1f}{r['jobs_per_minute']:>10.1f}{r['overhead_per_job_s']:>18.2f}"
              f"{r['up_to_date_rerun_per_job_s']:>15.2f}")  # fmt: skip
    now = dt.datetime.now(dt.timezone.utc)
    record: dict[str, Any] = {
        "benchmark": "batch",
        "date": now.isoformat(timespec="seconds"),
        "machine": _machine(),
        "problem": {"patients": args.patients, "pet": not args.no_pet, "jobs": n},
        # The machine may be shared: its 1-minute load average before and after the runs.
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "recon_version": recon.__version__,
        "numpy": np.__version__,
        "runs": runs,
    }
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"batch-cpu-{os.cpu_count()}core-{now:%Y%m%d-%H%M%S}.json"
    write_text_atomic(out_dir / name, json.dumps(record, indent=2))
    print(f"load average (1 min) before / after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f}"
          f" on {os.cpu_count()} cores")  # fmt: skip
    print(f"wrote {out_dir / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
