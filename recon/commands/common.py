"""Helpers shared by the subcommands: frame lists, tables, notes, output folders, common options."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

from recon._files import write_summary
from recon._output import OutputFolder
from recon.commands.options import Option
from recon.errors import InputError

__all__ = [
    "DEVICE",
    "OUTPUT",
    "OVERWRITE",
    "OutputFolder",
    "config_option",
    "existing_file",
    "image_timing",
    "mu_options",
    "note",
    "parse_frames",
    "print_table",
    "write_summary",
]

OUTPUT = Option(
    "output", "path", "output folder: a new or empty folder, never one that holds an input",
    short="-o", in_config=False, required=True, metavar="OUT",
)  # fmt: skip
OVERWRITE = Option(
    "overwrite", "flag",
    "write into a non-empty output folder, replacing only files an earlier recon run wrote there "
    "(listed in its recon-manifest.json); other files are left alone",
    in_config=False,
)  # fmt: skip
DEVICE = Option(
    "device", "str", "where to compute", choices=("auto", "cpu", "gpu"),
    default_text="$RECON_DEVICE, else auto: the GPU when CuPy sees one",
)  # fmt: skip


def mu_options(energy: str, grid_hint: str) -> tuple[Option, Option]:
    """``--mu FILE`` (an attenuation map at ``energy``) and ``--mu-units``."""
    mu = Option(
        "mu", "path",
        f"attenuation map at {energy}: .npy (1/mm, on the reconstruction grid: {grid_hint}), "
        "Interfile .hv (1/cm, as STIR and CASToR write them) or NIfTI; resampled onto the grid",
        metavar="FILE",
    )  # fmt: skip
    units = Option(
        "mu-units", "str", "unit of the --mu file's values", choices=("1/mm", "1/cm"),
        default_text="1/mm for .npy, 1/cm for Interfile; required for NIfTI",
    )  # fmt: skip
    return mu, units


def config_option(section: str) -> Option:
    """``--config FILE``: options from the ``[section]`` table of a TOML file."""
    return Option(
        "config", "path",
        f"TOML file whose [{section}] table supplies options (keys are the long option names; "
        "paths relative to the file; the command line wins)",
        in_config=False, metavar="TOML",
    )  # fmt: skip


def note(message: str) -> None:
    """Tell the user about a choice made for them (a default or a fallback), on stderr."""
    print(f"recon: note: {message}", file=sys.stderr)


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, refused unless it is an existing file."""
    source = Path(path)
    if not source.exists():
        raise InputError(f"{source}: no such file (a {what} was expected)")
    if not source.is_file():
        raise InputError(f"{source}: not a file (a {what} is expected)")
    return source


def image_timing(
    modality: str,
    acquisition: Any,
    reference_time_s: float | None,
    reference: str,
    injection: Any = None,
    injected_activity_bq: float | None = None,
) -> dict[str, Any]:
    """What an output image's values refer to, for ``summary.json`` (read back by ``recon
    quant``, :mod:`recon.quant.file_facts`).

    ``decay_correction`` follows DICOM's terms: ``"ADMIN"`` when the values are decay-corrected
    to the injection (``reference == "injection"``), ``"START"`` when they are the activity at
    ``values_at`` (the acquisition start, or another chosen reference time), ``"NONE"`` when
    no decay correction was applied.
    """

    def iso(value: Any) -> str | None:
        return value.isoformat() if isinstance(value, dt.datetime) else None

    values_at = None
    if isinstance(acquisition, dt.datetime):
        shift = 0.0 if reference_time_s is None or reference == "injection" else reference_time_s
        values_at = acquisition + dt.timedelta(seconds=float(shift))
    if reference_time_s is None:
        decay = "NONE"
    else:
        decay = "ADMIN" if reference == "injection" else "START"
    return {
        "modality": modality,
        "acquisition_datetime": iso(acquisition),
        "values_at": iso(values_at),
        "decay_correction": decay,
        "injection_datetime": iso(injection),
        "injected_activity_bq": injected_activity_bq,
    }


def parse_frames(spec: str | None, duration_s: float) -> list[tuple[float, float]]:
    """Frames from ``"0:60,60:120"`` (start:stop in s) or ``"6x10"`` (6 frames of 10 s).

    ``None`` gives one frame over the whole acquisition. Frames that start at or after
    ``duration_s`` (the end of the data) are refused, naming the data's length.
    """
    if spec is None:
        return [(0.0, duration_s)]
    text = str(spec).strip()
    try:
        if "x" in text and ":" not in text:
            count_text, length_text = text.split("x")
            n, step = int(count_text), float(length_text)
            if not 1 <= n <= 100_000:
                raise ValueError
            frames = [(i * step, step) for i in range(n)]
        else:
            frames = []
            for part in text.split(","):
                start, stop = (float(v) for v in part.split(":"))
                frames.append((start, stop - start))
    except ValueError:
        raise InputError(
            f"--frames {text!r}: use 'start:stop,start:stop' in s, or 'NxSECONDS' (e.g. 6x300)"
        ) from None
    for start, length in frames:
        if not (start >= 0 and length > 0 and start + length < float("inf")):
            raise InputError(f"--frames {text!r}: frames need start >= 0 and stop > start (in s)")
        if start >= duration_s:
            raise InputError(
                f"--frames {text!r}: a frame starts at {start:g} s but the data end at "
                f"{duration_s:g} s; shorten the frame list"
            )
    return frames


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain fixed-width table on stdout."""
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(_fmt(row.get(c)).rjust(w) for c, w in zip(columns, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
