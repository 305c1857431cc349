"""The report of one study: tables (CSV, JSON), ``summary.json`` and PNG plots (house style).

What each table holds is described in :mod:`recon.quant.study`; every file is written atomically.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import write_summary
from recon.figures import HOUSE_STYLE, new_figure, save_figure, style_axes
from recon.quant.analysis import StudyResult
from recon.quant.kinetics import ModelFit
from recon.quant.report import plot_tacs, write_csv, write_json
from recon.quant.study import Study

__all__ = ["summary_rows", "write_report"]

log = logging.getLogger("recon")

_SECONDS_PER_HOUR = 3600.0
_MAX_MIP_PANELS = 6


class _FitFrom:
    """A fitted curve drawn only from its first fitted time on (NaN before)."""

    def __init__(self, fit: ModelFit, start_s: float) -> None:
        self.fit, self.start_s = fit, start_s

    def __call__(self, t_s: Any) -> Any:
        t = np.asarray(t_s, dtype=np.float64)
        return np.where(t >= self.start_s, self.fit(t), np.nan)


def _plot_mip(study: Study, path: Path) -> Path:
    """Coronal (top) and transverse (bottom) maximum-intensity projections of each time point
    (at most :data:`_MAX_MIP_PANELS`), with the outlines of the VOIs carried to it."""
    tps = list(study.timepoints)
    if len(tps) > _MAX_MIP_PANELS:
        keep = np.unique(np.linspace(0, len(tps) - 1, _MAX_MIP_PANELS).round().astype(int))
        tps = [tps[i] for i in keep]
    fig = new_figure(290 * len(tps) + 80, 640, layout="constrained")
    axes = fig.subplots(2, len(tps), squeeze=False)
    colours = [f"C{n % 10}" for n in range(len(study.vois))]
    for col, tp in enumerate(tps):
        grid = tp.image.grid
        data = np.asarray(tp.image, dtype=np.float64)
        z, y, x = (grid.axis_mm(a) for a in range(3))
        dz, dy, dx = grid.voxel_size_mm
        masks = [v.on(tp).mask for v in study.vois]
        # Padding with zeros closes every outline, also for a VOI that fills the projection.
        xp = np.concatenate(([x[0] - dx], x, [x[-1] + dx]))
        for row, (axis, v, dv) in enumerate(((1, z, dz), (0, y, dy))):
            ax = axes[row, col]
            extent = (x[0] - dx / 2, x[-1] + dx / 2, v[0] - dv / 2, v[-1] + dv / 2)
            ax.imshow(
                data.max(axis=axis), origin="lower", extent=extent,
                cmap=HOUSE_STYLE.colour_map,
            )  # fmt: skip
            if axis == 0:
                ax.invert_yaxis()  # anterior up
            vp = np.concatenate(([v[0] - dv], v, [v[-1] + dv]))
            for voi, mask, colour in zip(study.vois, masks, colours, strict=True):
                outline = np.pad(mask.any(axis=axis), 1)
                ax.contour(xp, vp, outline.astype(float), levels=[0.5], colors=[colour])
                if col == 0:
                    rows, cols = np.nonzero(outline)
                    # Just above the outline on screen (the transverse y axis is inverted).
                    top = vp[rows].max() + dv / 2 if axis == 1 else vp[rows].min() - dv / 2
                    ax.text(
                        xp[cols].mean(), top, voi.name, color=colour, ha="center",
                        va="bottom", fontsize=HOUSE_STYLE.small_size,
                    )  # fmt: skip
            if row == 0:
                ax.set_title(tp.label)
            else:
                ax.set_xlabel("x (mm), patient left →")
            if col == 0:
                label = "coronal: z (mm), superior ↑" if axis == 1 else "transverse: y (mm)"
                ax.set_ylabel(label)
            style_axes(ax)
    fig.suptitle(
        f"{study.name}: maximum-intensity projections with the VOIs",
        fontsize=HOUSE_STYLE.title_size,
    )
    return save_figure(fig, path)


def _plot_uptake(result: StudyResult, path: Path) -> Path:
    """Grouped bars: uptake of each lesion (or each VOI when there is none) per time point."""
    study = result.study
    vois = study.lesions or list(study.vois)
    a0 = study.injected_activity_bq
    quantity = study.settings.quantity
    fig = new_figure(120 * len(vois) + 200, 560, layout="constrained")
    ax = fig.add_subplot()
    n_tp = len(study.timepoints)
    width = 0.8 / n_tp
    positions = np.arange(len(vois))
    for n, tp in enumerate(study.timepoints):
        values = np.array([result.value(v.name, tp.label, decay_corrected=True) for v in vois])
        if a0 is not None:
            values = 100.0 * values / a0
        ax.bar(positions + (n - (n_tp - 1) / 2) * width, values, width, label=tp.label)
    ax.set_xticks(positions, [v.name for v in vois])
    unit = "%ID/mL" if a0 is not None else "Bq/mL"
    ax.set_ylabel(f"{quantity} {unit}, decay-corrected to injection")
    ax.set_title(f"{study.name}: uptake per lesion")
    ax.legend(title="time point")
    style_axes(ax)
    return save_figure(fig, path)


def write_report(
    result: StudyResult, out: str | os.PathLike[str], *, plots: bool = True
) -> list[Path]:
    """Write the tables (CSV and JSON), ``summary.json`` and the plots into ``out``.

    Parameters
    ----------
    result : StudyResult
        From :func:`recon.quant.analysis.analyse_study`.
    out : path-like
        An existing folder.
    plots : bool, keyword-only
        Write the PNG plots.

    Returns
    -------
    list of Path
        The files written.
    """
    folder = Path(out)
    study = result.study
    files: list[Path] = []
    for name, rows in result.tables().items():
        files.append(write_csv(folder / f"{name}.csv", rows))
        files.append(write_json(folder / f"{name}.json", rows))
    if plots and study.settings.plots:
        curves = list(result.tacs.values())
        fits = {
            k.voi: _FitFrom(k.fit, (k.fit_from_h or 0.0) * _SECONDS_PER_HOUR)
            for k in result.kinetics.values()
            if k.fit is not None
        }
        title = f"{study.name}: {study.settings.quantity} in each VOI, activity at scan time"
        files.append(plot_tacs(curves, folder / "tacs.png", log_y=True, title=title, fits=fits))
        files.append(_plot_mip(study, folder / "mip.png"))
        files.append(_plot_uptake(result, folder / "uptake.png"))
    summary = {
        "study": study.name,
        "isotope": study.isotope,
        "injected_activity_bq": study.injected_activity_bq,
        "injection_time": study.injection_time,
        "weight_kg": study.weight_kg,
        "height_cm": study.height_cm,
        "sex": study.sex,
        "lbm_formula": study.lbm_formula if study.has_lbm else None,
        "sources": study.sources,
        "reference_timepoint": study.reference,
        "analysis": {
            "quantity": study.settings.quantity, "fit_model": study.settings.fit.model,
            "fit_from": study.settings.fit.fit_from, "tail": study.settings.fit.tail,
            "by_role": dict(study.settings.by_role), "percent_id": study.settings.percent_id,
            "fitting_rule": "weighted least squares, constant coefficient of variation; model "
            "by AICc (K = parameters + 1) unless fixed; degenerate fits fall back to the "
            "simpler model (recon.quant.kinetics)",
        },
        "timepoints": [
            {
                "label": tp.label, "time_h": tp.time_h, "mode": tp.mode, "image": tp.source,
                "sources": tp.sources,
            }
            for tp in study.timepoints
        ],
        "vois": [
            {
                "name": v.name, "role": v.role, "volume_ml": v.voi.volume_ml,
                "fit": v.fit.describe(), **v.definition,
            }
            for v in study.vois
        ],
        "kinetics": [k.as_dict() for k in result.kinetics.values()],
        "files": [p.name for p in files] + ["summary.json"],
    }  # fmt: skip
    files.append(write_summary(folder, "summary.json", summary))
    return files


def summary_rows(result: StudyResult) -> list[dict[str, Any]]:
    """One row per VOI for the printed summary."""
    study = result.study
    blood = next((v.name for v in study.references if v.role == "blood"), None)
    last = study.timepoints[-1].label
    last_ratio = {r["lesion"]: r for r in result.ratios if r["timepoint"] == last}
    rows = []
    for voi in study.vois:
        tac, kin = result.tacs[voi.name], result.kinetics[voi.name]
        i = int(np.argmax(tac.values))
        row = {
            "voi": voi.name,
            "role": voi.role,
            "volume_ml": voi.voi.volume_ml,
            "highest_bq_ml": float(tac.values[i]),
            "at_h": float(tac.times_h[i]),
            "model": kin.model,
            "t_eff_h": kin.t_eff_h,
            "t_eff_se_h": kin.t_eff_se_h,
            "t_biol_h": kin.t_biol_h,
            "tia_mbq_h": None if kin.tia_bq_h is None else kin.tia_bq_h / 1e6,
            "residence_h": kin.residence_time_h,
        }
        if blood is not None and voi.name in last_ratio:
            row[f"to_blood@{last}"] = last_ratio[voi.name].get(f"to_{blood}")
        rows.append(row)
    return rows
