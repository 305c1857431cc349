"""Helpers shared by the subcommands: configuration files, frame lists, output folders."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from recon._files import load_toml, write_summary
from recon.errors import InputError

__all__ = ["apply_config", "output_folder", "parse_frames", "print_table", "write_summary"]


def apply_config(args: argparse.Namespace, section: str) -> argparse.Namespace:
    """Fill options left unset on the command line from ``[section]`` of ``--config FILE``.

    Keys use the long option names with dashes or underscores (``iterations``, ``ref-time``).
    Unknown keys are an error, so a typo does not pass silently.
    """
    if getattr(args, "config", None) is None:
        return args
    table = load_toml(Path(args.config)).get(section, {})
    if not isinstance(table, dict):
        raise InputError(f"{args.config}: [{section}] must be a table")
    for key, value in table.items():
        dest = key.replace("-", "_")
        if not hasattr(args, dest) or dest in ("command", "config"):
            raise InputError(f"{args.config}: unknown option {key!r} in [{section}]")
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    return args


def parse_frames(spec: str | None, duration_s: float) -> list[tuple[float, float]]:
    """Frames from ``"0:60,60:120"`` (start:stop in s) or ``"6x10"`` (6 frames of 10 s).

    ``None`` gives one frame over the whole acquisition.
    """
    if spec is None:
        return [(0.0, duration_s)]
    spec = str(spec).strip()
    try:
        if "x" in spec and ":" not in spec:
            count, length = spec.split("x")
            n, step = int(count), float(length)
            frames = [(i * step, step) for i in range(n)]
        else:
            frames = []
            for part in spec.split(","):
                start, stop = (float(v) for v in part.split(":"))
                frames.append((start, stop - start))
    except ValueError:
        raise InputError(
            f"frames {spec!r}: use 'start:stop,start:stop' in s, or 'NxSECONDS'"
        ) from None
    for start, length in frames:
        if start < 0 or length <= 0:
            raise InputError(f"frames {spec!r}: frames need start >= 0 and stop > start")
    return frames


def output_folder(path: str | Path, inputs: list[Path]) -> Path:
    """Create the output folder; refuse one that is (or contains) an input file."""
    out = Path(path)
    for item in inputs:
        resolved = item.resolve()
        if resolved == out.resolve():
            raise InputError(f"output {out} is an input; choose another output folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


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
