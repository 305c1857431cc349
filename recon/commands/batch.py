"""`recon batch`: run a manifest of reconstruction and quantification jobs on Dask."""

from __future__ import annotations

import argparse

from recon.batch import load_manifest
from recon.batch import run as run_batch
from recon.batch.options import OPTIONS
from recon.commands.common import OUTPUT, print_table
from recon.commands.options import add_options

__all__ = ["OPTIONS", "add_parser", "run"]

assert OUTPUT.dest == OPTIONS[0].dest  # the same -o OUT as every other command


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``recon batch`` subcommand and its options to ``commands``.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``recon`` parser (:func:`recon.cli.main`).
    """
    p = commands.add_parser(
        "batch", help="run a manifest of spect/pet/quant jobs on a Dask cluster",
        description="Run the jobs of a TOML manifest (recon spect, recon pet, dynamic PET "
        "frames as separate jobs, a cohort recon quant after them) as a Dask task graph: a "
        "local cluster of one-thread worker processes, one worker per GPU (--gpus), or an "
        "existing scheduler (--scheduler). Every job is checked before any runs, writes "
        "atomically into its own folder under OUT, is skipped on a rerun when that folder is "
        "up to date, and logs to OUT/logs/NAME.log; OUT/batch_summary.json lists the outcomes. "
        "Manifest schema: `python -m pydoc recon.batch.manifest`. Exit status 1 when any job "
        "failed.",
    )  # fmt: skip
    p.add_argument("manifest", help="the batch manifest (TOML)")
    add_options(p, OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Run ``recon batch``: every job of a manifest, on Dask.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (the options of :func:`add_parser`).

    Returns
    -------
    int
        0 when every job succeeded or was up to date, 1 when any failed or was blocked.

    Raises
    ------
    ReconError
        The manifest, one of its jobs or the output folder is unusable (nothing has run);
        :func:`recon.cli.main` prints the message and exits with status 2.
    """
    manifest = load_manifest(args.manifest, args.output)
    result = run_batch(
        manifest, output=args.output, workers=args.workers, gpus=args.gpus,
        scheduler=args.scheduler, retries=args.retries, kernel_threads=args.kernel_threads,
        dashboard_address=args.dashboard_address,
    )  # fmt: skip
    rows = [
        {"job": r.name, "kind": r.kind, "status": r.status, "seconds": round(r.seconds, 1),
         "error": r.error or ""}
        for r in result.results.values()
    ]  # fmt: skip
    print_table(rows, ["job", "kind", "status", "seconds", "error"])
    counts = ", ".join(
        f"{result.count(s)} {s}"
        for s in ("done", "skipped", "failed", "blocked")
        if result.count(s)
    )
    print(f"{counts}; logs in {args.output}/logs, summary in {result.summary_path}")
    return 0 if result.ok else 1
