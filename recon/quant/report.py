"""Tables and plots of quantification results: CSV, JSON and PNG (matplotlib, house style).

Every file is written atomically (a temporary file in the destination folder, then a rename), so
an interrupted run never leaves a half-written table. Rows are flat dicts: VOI statistics, TAC
points (long format: one row per VOI and time), spreads, strata, conjugate-view results, or any
mapping.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import write_text_atomic
from recon.errors import InputError
from recon.quant.timeseries import TimeActivityCurve

__all__ = [
    "plot_tacs",
    "read_csv",
    "read_json",
    "table_rows",
    "tac_rows",
    "write_csv",
    "write_json",
    "write_table",
]


def tac_rows(tacs: TimeActivityCurve | Iterable[TimeActivityCurve]) -> list[dict[str, Any]]:
    """Long-format rows of time-activity curves: one per VOI and time point."""
    if isinstance(tacs, TimeActivityCurve):
        tacs = [tacs]
    rows = []
    for tac in tacs:
        if not isinstance(tac, TimeActivityCurve):
            raise InputError(f"expected TimeActivityCurve objects, got {type(tac).__name__}")
        volumes = tac.volumes_ml if tac.volumes_ml.size == tac.times_s.size else None
        for n, (t, v) in enumerate(zip(tac.times_s, tac.values, strict=True)):
            rows.append(
                {
                    "voi": tac.voi,
                    "time_s": float(t),
                    "time_h": float(t) / 3600.0,
                    "value": float(v),
                    "units": tac.units,
                    "quantity": tac.quantity,
                    "mode": tac.mode,
                    "isotope": tac.isotope,
                    "volume_ml": None if volumes is None else float(volumes[n]),
                }
            )
    return rows


def _row(item: Any) -> dict[str, Any]:
    if isinstance(item, Mapping):
        return dict(item)
    as_dict = getattr(item, "as_dict", None)
    if callable(as_dict):
        return dict(as_dict())
    if is_dataclass(item) and not isinstance(item, type):
        return asdict(item)
    raise InputError(f"cannot make a table row of {type(item).__name__}; pass dicts")


def table_rows(items: Any) -> list[dict[str, Any]]:
    """Flat rows from VoiStats, TACs, Spread, PatientStratum, ConjugateViewResult or mappings.

    A mapping of names to such objects (e.g. the output of
    :func:`~recon.quant.ratios.between_lesion_spread`) gets a ``"key"`` column.
    """
    if isinstance(items, TimeActivityCurve):
        return tac_rows(items)
    if (
        isinstance(items, Mapping)
        and items
        and all(not isinstance(v, (str, int, float, type(None))) for v in items.values())
    ):
        return [{"key": k, **_row(v)} for k, v in items.items()]
    if isinstance(items, Mapping):
        return [dict(items)]
    rows: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, TimeActivityCurve):
            rows.extend(tac_rows(item))
        else:
            rows.append(_row(item))
    return rows


def _scalar(value: Any) -> Any:
    """A value as a JSON/CSV scalar: numpy to Python, non-finite floats to None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    value = _scalar(value)
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    raise InputError(f"cannot write {type(value).__name__} to JSON")


def write_csv(
    path: str | os.PathLike[str], rows: Any, columns: Sequence[str] | None = None
) -> Path:
    """Write rows (see :func:`table_rows`) as CSV with a header line.

    Columns are ``columns`` or the union of the rows' keys in first-seen order; a missing value
    or a non-finite number is written as an empty cell.
    """
    table = table_rows(rows)
    if not table:
        raise InputError("no rows to write")
    if columns is None:
        seen: dict[str, None] = {}
        for row in table:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), extrasaction="raise", lineterminator="\n"
    )
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if _scalar(v) is None else _scalar(v)) for k, v in row.items()})
    return write_text_atomic(path, buffer.getvalue())


def _parse(cell: str) -> Any:
    if cell == "":
        return None
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            pass
    if cell in ("True", "False"):
        return cell == "True"
    return cell


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a CSV written by :func:`write_csv`: numbers parsed, empty cells as None."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int = 2) -> Path:
    """Write ``data`` (dataclasses, mappings, sequences, numpy values) as JSON.

    Non-finite numbers become ``null`` (JSON has no NaN or infinity).
    """
    text = json.dumps(_jsonable(data), indent=indent, allow_nan=False, ensure_ascii=False)
    return write_text_atomic(path, text + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_table(path: str | os.PathLike[str], items: Any) -> Path:
    """Write rows (see :func:`table_rows`) as CSV or JSON, chosen by the suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return write_csv(path, items)
    if suffix == ".json":
        return write_json(path, table_rows(items))
    raise InputError(f"unknown table format {suffix!r}; use .csv or .json")


def plot_tacs(
    tacs: TimeActivityCurve | Iterable[TimeActivityCurve],
    path: str | os.PathLike[str],
    *,
    log_y: bool = False,
    title: str | None = None,
    fits: Mapping[str, Any] | None = None,
) -> Path:
    """Plot time-activity curves (time in hours) to a PNG file, in the house style.

    Parameters
    ----------
    tacs : TimeActivityCurve or iterable of them
        Curves with the same units and mode.
    path : path-like
        Output ``.png``.
    log_y : bool, keyword-only
        Logarithmic value axis (exponentials become straight lines).
    title : str, keyword-only
        Plot title.
    fits : mapping of VOI name to a fitted curve, keyword-only
        Fitted curves (callables of time in s) to draw over the points.

    Raises
    ------
    InputError
        No curves, or curves in different units or modes.
    """
    from recon.figures import new_figure, save_figure, style_axes

    curves = [tacs] if isinstance(tacs, TimeActivityCurve) else list(tacs)
    if not curves:
        raise InputError("no curves to plot")
    if len({(c.units, c.mode) for c in curves}) > 1:
        raise InputError("curves to plot together must share units and decay mode")
    fig = new_figure(900, 560, layout="constrained")
    ax = fig.add_subplot()
    for c in curves:
        (line,) = ax.plot(c.times_h, c.values, "o", label=c.voi)
        fit = None if fits is None else fits.get(c.voi)
        if fit is not None:
            t = np.linspace(0.0, float(c.times_s.max()) * 1.1, 200)
            ax.plot(t / 3600.0, fit(t), "-", color=line.get_color())
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("time after injection (h)")
    ax.set_ylabel(f"{curves[0].quantity} ({curves[0].units}), {curves[0].mode.replace('_', ' ')}")
    if title:
        ax.set_title(title)
    ax.legend()
    style_axes(ax)
    return save_figure(fig, path)
