"""`recon quant`: quantify a serial SPECT/PET study described in a TOML file.

The study file's schema and the analysis are documented in :mod:`recon.quant.study`.
"""

from __future__ import annotations

import argparse
import sys

from recon.commands.common import OUTPUT, OVERWRITE, OutputFolder, print_table
from recon.commands.options import Option, add_options, resolve
from recon.quant.study import _summary_rows, analyse_study, load_study, write_report

__all__ = ["OPTIONS", "add_parser", "run"]

OPTIONS = (
    OUTPUT,
    OVERWRITE,
    Option("no-plots", "flag", "write no PNG plots", in_config=False),
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "quant",
        help="quantify a serial study (TACs, half-lives, TIA, %%ID, ratios) from a TOML file",
        description="Quantify a serial SPECT/PET study described in a TOML file; the file's "
        "schema is documented in `python -m pydoc recon.quant.study`.",
    )
    p.add_argument("study", help="study description (.toml)")
    add_options(p, OPTIONS)


def run(args: argparse.Namespace) -> int:
    resolve(args, OPTIONS, "quant")
    study = load_study(args.study)
    target = OutputFolder(
        args.output, inputs=[args.study, *study.input_paths], overwrite=args.overwrite,
        command="recon quant",
    )  # fmt: skip
    result = analyse_study(study)
    with target.writing() as out:
        files = write_report(result, out, plots=not args.no_plots)
    rows = _summary_rows(result)
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
