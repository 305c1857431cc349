"""Whole trials on a Dask cluster: ``recon batch MANIFEST.toml -o OUT``.

A manifest (:mod:`recon.batch.manifest`) lists reconstruction jobs (``recon spect``,
``recon pet``, dynamic PET frames as separate jobs) and cohort quantification jobs
(``recon quant``) that depend on them. :func:`run` checks every job before any runs, then runs
them as a Dask task graph on a local cluster, on one worker per GPU, on an existing scheduler or
on the caller's own ``distributed.Client``; each job writes atomically into its own folder, is
skipped when that folder is up to date, and has its own log file.

Example
-------
>>> from distributed import Client                                  # doctest: +SKIP
>>> import recon.batch
>>> with Client(n_workers=2, threads_per_worker=1) as client:       # doctest: +SKIP
...     result = recon.batch.run("trial.toml", client, output="trial-out")
>>> {name: r.status for name, r in result.results.items()}          # doctest: +SKIP
"""

from __future__ import annotations

from recon.batch.job import JobResult
from recon.batch.manifest import Job, Manifest, load_manifest
from recon.batch.runner import BatchResult, run

__all__ = ["BatchResult", "Job", "JobResult", "Manifest", "load_manifest", "run"]
