"""One job on a worker: skip it when its output is up to date, else run its command, logging.

Runs where the worker is; reads the inputs from the paths the manifest gives (a shared
filesystem on a cluster), never through the scheduler. The output folder is written atomically
by the command itself (:class:`recon._output.OutputFolder`); a staging folder left by an attempt
whose worker died is removed before the next attempt.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from recon._output import input_checksums, read_manifest
from recon.batch.manifest import KINDS, Job
from recon.errors import ReconError

__all__ = ["JobResult", "remove_partial_outputs", "run_job", "up_to_date"]

#: A log being written; renamed to ``<name>.log`` when the attempt ends.
PARTIAL_LOG_SUFFIX = ".log.partial"


@dataclass(frozen=True)
class JobResult:
    """What became of one job.

    Attributes
    ----------
    name, kind : str
        The job.
    status : {"done", "skipped", "failed", "blocked"}
        ``skipped``: its output was up to date; ``blocked``: a job it needs failed.
    output : str
        Its output folder.
    seconds : float
        Wall time of the attempt that ended it (s).
    error : str or None
        One line saying why it failed or was blocked.
    worker : str or None
        ``host:pid`` of the process that ran it.
    """

    name: str
    kind: str
    status: str
    output: str
    seconds: float = 0.0
    error: str | None = None
    worker: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dictionary."""
        return asdict(self)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def up_to_date(job: Job) -> bool:
    """True when ``job``'s output folder holds a complete result of the same inputs and settings.

    Its ``recon-manifest.json`` must name the job's command, the settings the batch manifest sets
    (options it leaves to the command's default are not compared), every input with its current
    SHA-256, and every file it lists must still hold the content written.
    """
    manifest = read_manifest(job.output)
    if manifest is None or manifest.get("command") != f"recon {job.kind}":
        return False
    recorded = manifest.get("settings") or {}
    if not isinstance(recorded, dict) or not set(job.settings) <= set(recorded) | {"no_plots"}:
        return False
    if any(v is not None and recorded.get(k) != v for k, v in job.settings.items()):
        return False
    inputs = manifest.get("inputs")
    if not isinstance(inputs, dict) or not all(str(p) in inputs for p in job.inputs):
        return False
    if input_checksums(inputs) != inputs:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for name, digest in files.items():
        path = job.output / name
        if not path.is_file() or _sha256(path) != digest:
            return False
    return True


def remove_partial_outputs(output: Path) -> list[Path]:
    """Remove staging folders that an interrupted attempt left beside or inside ``output``.

    Only recon's own staging names (``.NAME.recon-XXXXXXXX``) are touched; returns what was
    removed.
    """
    removed = []
    for place in (output.parent, output):
        if not place.is_dir():
            continue
        for staging in place.glob(f".{output.name}.recon-*"):
            if staging.is_dir() and not staging.is_symlink():
                shutil.rmtree(staging, ignore_errors=True)
                removed.append(staging)
    return removed


def _set_kernel_threads(threads: int | None) -> None:
    """Limit numba's threads for this job (at most what the process was started with)."""
    if threads is None:
        return
    import numba

    most = int(getattr(numba.config, "NUMBA_NUM_THREADS", threads))
    numba.set_num_threads(max(1, min(int(threads), most)))


@contextlib.contextmanager
def _captured(log: TextIO) -> Iterator[None]:
    """Send the command's printed output and recon's log records to ``log``."""
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("recon")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_job(job: Job, logs: str, kernel_threads: int | None, *needed: JobResult) -> JobResult:
    """Run ``job`` unless its output is up to date or a job it needs did not succeed.

    Parameters
    ----------
    job : Job
        The job (from :func:`recon.batch.manifest.load_manifest`).
    logs : str
        Folder of the per-job log files (``<name>.log``).
    kernel_threads : int or None
        numba threads for the job's kernels (None: the process's default).
    *needed : JobResult
        Results of the jobs it depends on (Dask passes them once they exist).

    Returns
    -------
    JobResult
        ``failed`` with its one-line error for a problem with the job's input (ReconError) or an
        internal error, so that the other jobs go on.

    Raises
    ------
    OSError
        A system error (disk full, network filesystem gone): Dask retries the job.
    """
    worker = f"{socket.gethostname()}:{os.getpid()}"
    start = time.perf_counter()
    base: dict[str, Any] = dict(name=job.name, kind=job.kind, output=str(job.output), worker=worker)
    failed = [r.name for r in needed if r.status in ("failed", "blocked")]
    if failed:
        return JobResult(status="blocked", error=f"not run: needs {', '.join(failed)}", **base)
    remove_partial_outputs(job.output)
    if up_to_date(job):
        return JobResult(status="skipped", **base)
    module, _ = KINDS[job.kind]
    folder = Path(logs)
    partial = folder / f"{job.name}{PARTIAL_LOG_SUFFIX}"
    status, error = "done", None
    with partial.open("w", encoding="utf-8") as log:
        log.write(f"$ {job.command}\n# worker {worker}\n")
        log.flush()  # the job has started: its log says so, and where
        _set_kernel_threads(kernel_threads)
        try:
            with _captured(log):
                module.run(argparse.Namespace(**vars(job.args)))
        except ReconError as exc:
            status, error = "failed", _one_line(str(exc))
        except OSError:
            log.write("# system error: the job will be retried if retries are left\n")
            raise
        except Exception as exc:  # one job's internal failure must not stop the others
            status, error = "failed", _one_line(f"internal error: {type(exc).__name__}: {exc}")
        seconds = time.perf_counter() - start
        log.write(f"# {status} in {seconds:.1f} s" + (f": {error}" if error else "") + "\n")
    os.replace(partial, folder / f"{job.name}.log")
    return JobResult(status=status, seconds=seconds, error=error, **base)
