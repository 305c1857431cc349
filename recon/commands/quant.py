"""`recon quant`: quantify a serial SPECT/PET study described in a TOML file.

The study file's schema and the analysis are documented in :mod:`recon.quant.study`.
"""

from __future__ import annotations

import argparse
import sys

from recon.commands.common import output_folder, print_table
from recon.quant.analysis import analyse_study
from recon.quant.study import load_study
from recon.quant.study_report import summary_rows, write_report

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "quant",
        help="quantify a serial study (TACs, half-lives, TIA, %%ID, ratios) from a TOML file",
        description="Quantify a serial SPECT/PET study described in a TOML file; the file's "
        "schema is documented in `python -m pydoc recon.quant.study`.",
    )
    p.add_argument("study", help="study description (.toml)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")


def run(args: argparse.Namespace) -> int:
    study = load_study(args.study)
    result = analyse_study(study)
    out = output_folder(args.output, list(study.input_paths))
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
    print(f"wrote {len(files)} files to {out}")
    sys.stdout.flush()
    return 0
