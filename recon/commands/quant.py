"""`recon quant`: quantify a serial SPECT/PET study, or a cohort of them, from TOML files.

The study file's schema and the analysis are documented in :mod:`recon.quant.study`, the cohort
file's in :mod:`recon.quant.cohort`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recon.commands.common import OUTPUT, OVERWRITE, OutputFolder, print_table
from recon.commands.options import Option, add_options, resolve
from recon.quant import cohort as cohorts
from recon.quant.analysis import analyse_study
from recon.quant.study import load_study
from recon.quant.study_report import summary_rows, write_report

__all__ = ["OPTIONS", "add_parser", "run"]

OPTIONS = (
    OUTPUT,
    OVERWRITE,
    Option("no-plots", "flag", "write no PNG plots", in_config=False),
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``recon quant`` subcommand and its options to ``commands``.

    Parameters
    ----------
    commands : argparse._SubParsersAction
        The subcommands of the ``recon`` parser (:func:`recon.cli.main`).
    """
    p = commands.add_parser(
        "quant",
        help="quantify a serial study or a cohort (TACs, half-lives, TIA, %%ID, ratios, "
        "lowest-uptake lesions, strata) from TOML files",
        description="Quantify a serial SPECT/PET study described in a TOML file, or a cohort: "
        "one cohort file or several study files (one per patient). Schemas: `python -m pydoc "
        "recon.quant.study` and `python -m pydoc recon.quant.cohort`.",
    )
    p.add_argument("study", nargs="+", help="study file, cohort file, or several study files")
    add_options(p, OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Run ``recon quant``: quantify a serial study or a cohort described in TOML files.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (the options of :func:`add_parser`).

    Returns
    -------
    int
        The exit status, 0 (the tables and reports are in ``args.output``).

    Raises
    ------
    ReconError
        An option, an input file or the output folder is unusable; :func:`recon.cli.main` prints
        the message and exits with status 2.
    """
    resolve(args, OPTIONS, "quant")
    if len(args.study) > 1 or cohorts.is_cohort_file(args.study[0]):
        return _run_cohort(args)
    study = load_study(args.study[0])
    target = OutputFolder(
        args.output, inputs=[Path(args.study[0]), *study.input_paths], overwrite=args.overwrite,
        command="recon quant",
    )  # fmt: skip
    result = analyse_study(study)
    with target.writing() as out:
        files = write_report(result, out, plots=not args.no_plots)
    rows = summary_rows(result)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    print(
        f"{study.name}: {len(study.timepoints)} time point"
        f"{'s' if len(study.timepoints) > 1 else ''} "
        f"({', '.join(tp.label for tp in study.timepoints)}), {study.isotope}, "
        f"{study.settings.quantity} in Bq/mL at scan time"
    )
    print_table(rows, columns)
    print(f"wrote {len(files)} files to {args.output}")
    sys.stdout.flush()
    return 0


def _run_cohort(args: argparse.Namespace) -> int:
    cohort = cohorts.load_cohort(args.study)
    target = OutputFolder(
        args.output, inputs=[*map(Path, args.study), *cohort.input_paths],
        overwrite=args.overwrite, command="recon quant",
    )  # fmt: skip
    result = cohorts.analyse_cohort(cohort)
    with target.writing() as out:
        files = cohorts.write_cohort_report(result, out, plots=not args.no_plots)
    rows = cohorts.summary_rows(result)
    print(
        f"{cohort.name}: {len(cohort.studies)} patients, {len(result.lesions)} lesions; "
        f"{result.metric} at {cohorts.describe_time(result.uptake_at)}"
    )
    print_table(rows, list(dict.fromkeys(k for row in rows for k in row)))
    print(f"wrote {len(files)} files to {args.output}")
    sys.stdout.flush()
    return 0
