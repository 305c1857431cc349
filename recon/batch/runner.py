"""Run a checked manifest as a Dask task graph and report every job.

Each job is one Dask task (:func:`recon.batch.job.run_job`) that depends on the tasks of the jobs
it needs. A job whose worker dies is rescheduled by Dask on another worker (the scheduler's
``distributed.scheduler.allowed-failures``, 3 by default); a system error (``OSError``) is
retried ``retries`` times; a job that fails for its input reports its one-line error and the
others go on. ``batch_summary.json`` in the batch output lists every job's outcome.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from recon._files import write_text_atomic
from recon.batch.cluster import (
    WorkerPlan,
    cpu_count,
    dashboard_available,
    gpu_count,
    plan_workers,
    start_cluster,
)
from recon.batch.job import (
    PARTIAL_LOG_SUFFIX,
    JobResult,
    remove_partial_outputs,
    run_job,
    up_to_date,
)
from recon.batch.manifest import Manifest, load_manifest
from recon.batch.options import OPTIONS
from recon.commands.options import apply_table, resolve
from recon.errors import InputError

__all__ = ["BatchResult", "run"]

SUMMARY_NAME = "batch_summary.json"
log = logging.getLogger("recon.progress")


@dataclass(frozen=True)
class BatchResult:
    """The outcome of a batch.

    Attributes
    ----------
    results : dict of str to JobResult
        Every job's result, by name, in the manifest's order.
    summary_path : Path
        ``batch_summary.json``.
    dashboard : str or None
        The Dask dashboard's address (None when there was none).
    """

    results: dict[str, JobResult]
    summary_path: Path
    dashboard: str | None

    @property
    def ok(self) -> bool:
        """True when no job failed or was blocked."""
        return all(r.status in ("done", "skipped") for r in self.results.values())

    def count(self, status: str) -> int:
        """How many jobs ended with ``status``."""
        return sum(r.status == status for r in self.results.values())


class _Bar:
    """Jobs done / failed / running: a bar on a terminal, one log line per job otherwise."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.ended: dict[str, int] = {}

    def update(self, running: int) -> None:
        if not self.enabled:
            return
        finished = sum(self.ended.values())
        filled = int(30 * finished / max(self.total, 1))
        text = ", ".join(f"{n} {s}" for s, n in sorted(self.ended.items()))
        self.stream.write(
            f"\rjobs [{'#' * filled}{'-' * (30 - filled)}] {finished}/{self.total}"
            f" ({text or 'none ended'}; {running} running)"
            f" {time.perf_counter() - self.start:6.1f} s"
        )
        self.stream.flush()

    def ended_job(self, result: JobResult, running: int) -> None:
        self.ended[result.status] = self.ended.get(result.status, 0) + 1
        detail = f": {result.error}" if result.error else ""
        log.info("job %s: %s (%.1f s)%s", result.name, result.status, result.seconds, detail)
        self.update(running)

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _check_output(out: Path) -> None:
    """The batch output: new, empty, or a folder an earlier ``recon batch`` wrote."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder; choose another name")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMMARY_NAME).is_file():
        raise InputError(
            f"output folder {out} is not empty and holds no {SUMMARY_NAME} of an earlier "
            "recon batch; choose a new folder (a batch's own folder is reused: jobs whose "
            "outputs are up to date are skipped)"
        )


def _write_summary(
    out: Path, manifest: Manifest, results: dict[str, JobResult], state: str, extra: dict
) -> Path:
    jobs = [
        results[j.name].to_dict()
        if j.name in results
        else {"name": j.name, "kind": j.kind, "status": "pending", "output": str(j.output)}
        for j in manifest.jobs
    ]
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job["status"]] = counts.get(job["status"], 0) + 1
    summary = {
        "state": state,
        "manifest": str(manifest.path),
        "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        **extra,
        "jobs": jobs,
    }
    return write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")


def _tidy(manifest: Manifest, logs: Path) -> None:
    """Remove staging folders of interrupted attempts; keep an unfinished log as the job's log."""
    for job in manifest.jobs:
        remove_partial_outputs(job.output)
    for partial in logs.glob(f"*{PARTIAL_LOG_SUFFIX}"):
        with contextlib.suppress(OSError):
            os.replace(partial, logs / partial.name.replace(PARTIAL_LOG_SUFFIX, ".log"))


@contextlib.contextmanager
def _client(
    client: Any, scheduler: str | None, plan: WorkerPlan | None, dashboard_address: str | None
) -> Iterator[Any]:
    """The user's client, one attached to ``scheduler``, or one on a cluster started here."""
    if client is not None:
        yield client
        return
    from distributed import Client

    if scheduler is not None:
        with Client(scheduler) as attached:
            yield attached
        return
    assert plan is not None
    cluster = start_cluster(plan, dashboard_address)
    try:
        with Client(cluster) as own:
            yield own
    finally:
        cluster.close()


def run(
    manifest: str | os.PathLike[str] | Manifest,
    client: Any = None,
    *,
    output: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    gpus: str | None = None,
    scheduler: str | None = None,
    retries: int | None = None,
    kernel_threads: int | None = None,
    dashboard_address: str | None = None,
    stream: TextIO | None = None,
) -> BatchResult:
    """Run every job of a batch manifest on Dask and write ``batch_summary.json``.

    Parameters
    ----------
    manifest : path-like or Manifest
        The TOML manifest (:mod:`recon.batch.manifest`), or one already loaded (then ``output``
        is the one it was loaded with).
    client : distributed.Client, optional
        Run on this client's cluster (a notebook's own). Default: start a ``LocalCluster`` of
        ``workers`` processes with one thread each, closed at the end.
    output : path-like
        The batch output folder (required with a manifest path).
    workers : int, optional
        Worker processes of the local cluster (default: one per CPU core, or one per GPU).
    gpus : str, optional
        ``"all"`` or a number: one worker per GPU (:func:`recon.batch.cluster.plan_workers`);
        with ``client`` or ``scheduler``, every job asks for the worker resource ``GPU=1``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``) to attach to instead.
    retries : int, optional
        Extra attempts of a job that hit a system error (OSError); default 2.
    kernel_threads : int, optional
        numba threads per job (default: cores // workers on a local cluster, else the worker's).
    dashboard_address : str, optional
        Where a local cluster serves its dashboard (default ``:8787``; ``"none"``: none).

    Options left as None are taken from the manifest's ``[batch]`` table, then from the defaults
    of ``recon batch`` (:mod:`recon.batch.options`), and checked like them.
    stream : file, optional
        Where the progress bar goes (default: stderr, when it is a terminal).

    Returns
    -------
    BatchResult
        Per-job results; ``ok`` is False when any job failed or was blocked.

    Raises
    ------
    InputError
        A manifest or output folder that cannot be used (nothing has run).
    KeyboardInterrupt
        After Ctrl-C: the cluster started here is closed and no partial output is left.
    """
    if isinstance(manifest, Manifest):
        loaded = manifest
    else:
        if output is None:
            raise InputError("recon.batch.run needs output= (the batch output folder)")
        loaded = load_manifest(manifest, output)
    out = loaded.output
    given = argparse.Namespace(
        output=str(out), workers=workers, gpus=gpus, scheduler=scheduler, retries=retries,
        kernel_threads=kernel_threads, dashboard_address=dashboard_address,
    )  # fmt: skip
    apply_table(given, OPTIONS, loaded.batch_options, f"{loaded.path}: [batch]", loaded.path.parent)
    resolve(given, OPTIONS, "batch")
    workers, gpus, scheduler = given.workers, given.gpus, given.scheduler
    retries, kernel_threads = given.retries, given.kernel_threads
    dashboard_address = None if given.dashboard_address == "none" else given.dashboard_address
    _check_output(out)
    plan = None
    if client is None and scheduler is None:
        plan = plan_workers(
            workers, gpus, cpu_count=cpu_count(), device_count=gpu_count() if gpus else 0,
            visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        )  # fmt: skip
        if kernel_threads is None:
            kernel_threads = plan.kernel_threads
    resources: dict[str, float] | None = None
    if (plan is not None and plan.gpus) or (gpus not in (None, "none")):
        resources = {"GPU": 1}  # one job per device
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, JobResult] = {}
    extra: dict[str, Any] = {"kernel_threads": kernel_threads}
    _write_summary(out, loaded, results, "running", extra)
    bar = _Bar(len(loaded.jobs), stream)
    if plan is not None:
        # A cluster started here sees the same files: jobs that are up to date (and need only
        # jobs that are) are skipped without starting it.
        for job in loaded.jobs:
            if all(name in results for name in job.after) and up_to_date(job):
                results[job.name] = JobResult(job.name, job.kind, "skipped", str(job.output))
                bar.ended_job(results[job.name], 0)
    try:
        if len(results) == len(loaded.jobs):
            extra["workers"] = 0
        else:
            _run_on_dask(client, scheduler, plan, dashboard_address, loaded, logs,
                         kernel_threads, retries, resources, results, bar, extra)  # fmt: skip
    except BaseException:
        bar.close()
        _tidy(loaded, logs)
        _write_summary(out, loaded, results, "interrupted", extra)
        raise
    bar.close()
    _tidy(loaded, logs)
    ordered = {job.name: results[job.name] for job in loaded.jobs}
    path = _write_summary(out, loaded, ordered, "finished", extra)
    return BatchResult(ordered, path, extra.get("dashboard"))


def _run_on_dask(
    client: Any,
    scheduler: str | None,
    plan: WorkerPlan | None,
    dashboard_address: str | None,
    manifest: Manifest,
    logs: Path,
    kernel_threads: int | None,
    retries: int,
    resources: dict[str, float] | None,
    results: dict[str, JobResult],
    bar: _Bar,
    extra: dict[str, Any],
) -> None:
    with _client(client, scheduler, plan, dashboard_address) as dask_client:
        dashboard = _dashboard(dask_client, plan is not None)
        extra["workers"] = len(dask_client.scheduler_info().get("workers", {}))
        extra["dashboard"] = dashboard
        left = len(manifest.jobs) - len(results)
        where = dashboard or _no_dashboard()
        print(f"recon batch: {left} jobs to run on {extra['workers']} workers; dashboard: {where}",
              file=bar.stream, flush=True)  # fmt: skip
        _execute(dask_client, manifest, logs, kernel_threads, retries, resources, results, bar)


def _no_dashboard() -> str:
    if dashboard_available():
        return "none"
    return "unavailable (install bokeh for Dask's dashboard)"


def _dashboard(client: Any, started_here: bool) -> str | None:
    if started_here and not dashboard_available():
        return None
    try:
        link = client.dashboard_link
    except Exception:  # the scheduler serves no dashboard: Dask raises various errors
        return None
    return str(link) if link else None


def _execute(
    client: Any,
    manifest: Manifest,
    logs: Path,
    kernel_threads: int | None,
    retries: int,
    resources: dict[str, float] | None,
    results: dict[str, JobResult],
    bar: _Bar,
) -> None:
    from distributed import wait

    run_id = uuid.uuid4().hex[:8]
    futures: dict[str, Any] = {}
    for job in manifest.jobs:
        if job.name in results:  # skipped before the cluster started
            continue
        needed = [futures[name] if name in futures else results[name] for name in job.after]
        futures[job.name] = client.submit(
            run_job, job, str(logs), kernel_threads, *needed,
            key=f"recon-batch-{job.name}-{run_id}", pure=False, retries=retries,
            resources=resources,
        )  # fmt: skip
    names = {future.key: name for name, future in futures.items()}
    order = {job.name: index for index, job in enumerate(manifest.jobs)}
    pending = set(futures.values())
    try:
        while pending:
            try:
                finished = wait(pending, timeout=0.5, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                finished = set()
            pending -= finished
            # In manifest order, so a job's needs are judged before the job itself.
            finished_in_order = sorted(finished, key=lambda f: order[names[f.key]])
            for future in finished_in_order:
                name = names[future.key]
                results[name] = _result_of(future, manifest, name, results)
            running = _running(client, pending)
            for future in finished_in_order:
                bar.ended_job(results[names[future.key]], running)
            if not finished:
                bar.update(running)
    except BaseException:
        client.cancel(list(pending))
        raise


def _running(client: Any, pending: set[Any]) -> int:
    keys = {future.key for future in pending}
    try:
        processing = client.processing()
    except Exception:  # the scheduler went away: the next wait says so
        return 0
    return sum(1 for tasks in processing.values() for key in tasks if key in keys)


def _result_of(
    future: Any, manifest: Manifest, name: str, results: dict[str, JobResult]
) -> JobResult:
    """A finished task's JobResult, or a failure made from its exception."""
    job = manifest.job(name)
    if future.status == "finished":
        result = future.result()
        assert isinstance(result, JobResult)
        return result
    failed_needs = [n for n in job.after if results.get(n, None) is not None
                    and results[n].status in ("failed", "blocked")]  # fmt: skip
    if failed_needs:
        return JobResult(job.name, job.kind, "blocked", str(job.output),
                         error=f"not run: needs {', '.join(failed_needs)}")  # fmt: skip
    exc = future.exception()
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return JobResult(job.name, job.kind, "failed", str(job.output), error=text)
