"""What `recon quant` computes for one study: VOI statistics, curves, kinetics, %ID, SUV,
ratios and the heterogeneity of the lesions (the rules are in :mod:`recon.quant.study`,
:mod:`recon.quant.clearance` and :mod:`recon.quant.kinetics`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.physics.isotopes import get_isotope
from recon.quant.calibration import percent_id, percent_id_per_ml, suv_bw, suv_lbm
from recon.quant.clearance import VoiKinetics, clearance_kinetics
from recon.quant.ratios import lesion_to_background, lesion_to_blood, spread, uptake_ratio
from recon.quant.report import tac_rows
from recon.quant.study import Study
from recon.quant.timeseries import TimeActivityCurve
from recon.quant.voi import VoiStats, voi_stats

__all__ = ["StudyResult", "analyse_study"]


@dataclass(frozen=True, eq=False)
class StudyResult:
    """Everything :func:`analyse_study` computed; :meth:`tables` gives the report's rows.

    ``stats`` holds each VOI's statistics at each time point, by ``(voi, label)``, as the image
    gives them, with the factor that brings them to activity at scan time.
    """

    study: Study
    tacs: dict[str, TimeActivityCurve]
    total_tacs: dict[str, TimeActivityCurve]
    kinetics: dict[str, VoiKinetics]
    voi_stats: list[dict[str, Any]]
    ratios: list[dict[str, Any]]
    percent_id: list[dict[str, Any]]
    heterogeneity: list[dict[str, Any]]
    stats: dict[tuple[str, str], tuple[VoiStats, float]]

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """Non-empty tables by file stem."""
        curves = [*self.tacs.values()]
        curves += [tac.in_mode("decay_corrected_to_injection") for tac in self.tacs.values()]
        curves += [*self.total_tacs.values()]
        tables = {
            "voi_stats": self.voi_stats,
            "tacs": tac_rows(curves),
            "kinetics": [k.as_dict() for k in self.kinetics.values()],
            "ratios": self.ratios,
            "percent_id": self.percent_id,
            "heterogeneity": self.heterogeneity,
        }
        return {name: rows for name, rows in tables.items() if rows}

    def value(self, voi: str, label: str, *, decay_corrected: bool = False) -> float:
        """The ``quantity`` of ``voi`` at time point ``label`` (Bq/mL)."""
        tac = self.tacs[voi]
        if decay_corrected:
            tac = tac.in_mode("decay_corrected_to_injection")
        labels = [tp.label for tp in self.study.timepoints]
        return float(tac.values[labels.index(label)])

    def ratio(self, lesion: str, label: str, reference: str) -> float | None:
        """Lesion-to-``reference`` VOI ratio at time point ``label`` (None: reference ≤ 0)."""
        for row in self.ratios:
            if row["lesion"] == lesion and row["timepoint"] == label:
                return row.get(f"to_{reference}")
        raise KeyError((lesion, label))


def analyse_study(study: Study) -> StudyResult:
    """TACs, fits, TIA, residence times, SUV, %ID, ratios and heterogeneity of a study.

    Parameters
    ----------
    study : Study
        From :func:`recon.quant.study.load_study`.

    Returns
    -------
    StudyResult
    """
    quantity = study.settings.quantity
    iso = study.isotope
    lam = get_isotope(iso).decay_constant_per_s
    a0 = study.injected
    times = np.array([tp.time_after_injection_s for tp in study.timepoints])
    stats_by: dict[tuple[str, str], tuple[VoiStats, float]] = {}
    tacs: dict[str, TimeActivityCurve] = {}
    totals: dict[str, TimeActivityCurve] = {}
    stats_rows: list[dict[str, Any]] = []
    pid_rows: list[dict[str, Any]] = []
    for voi in study.vois:
        values, total_values, volumes = [], [], []
        for tp in study.timepoints:
            stats = voi_stats(tp.image, voi.on(tp))
            t = tp.time_after_injection_s
            # Statistics of an image decay-corrected to injection, brought to scan time.
            to_scan = math.exp(-lam * t)
            scale = to_scan if tp.mode == "decay_corrected_to_injection" else 1.0
            stats_by[(voi.name, tp.label)] = (stats, scale)
            values.append(float(getattr(stats, quantity)) * scale)
            total_values.append(stats.total * scale)
            volumes.append(stats.volume_ml)
            stats_rows.append(_stats_row(study, voi.name, voi.role, tp, stats, scale, to_scan))
            if study.settings.percent_id:
                pid_rows.append(
                    {
                        "timepoint": tp.label,
                        "time_h": tp.time_h,
                        "voi": voi.name,
                        "role": voi.role,
                        "percent_id": percent_id(
                            stats.total * scale, a0, time_after_injection_s=t, isotope=iso
                        ),
                        f"percent_id_per_ml_{quantity}": percent_id_per_ml(
                            values[-1], a0, time_after_injection_s=t, isotope=iso
                        ),
                    }
                )
        tacs[voi.name] = TimeActivityCurve(
            voi=voi.name, values=np.array(values), quantity=quantity, units="Bq/mL",
            volumes_ml=np.array(volumes), times_s=times, mode="activity_at_scan_time",
            isotope=iso,
        )  # fmt: skip
        totals[voi.name] = TimeActivityCurve(
            voi=voi.name, values=np.array(total_values), quantity="total", units="Bq",
            volumes_ml=np.array(volumes), times_s=times, mode="activity_at_scan_time",
            isotope=iso,
        )  # fmt: skip

    kinetics = {
        v.name: clearance_kinetics(
            tacs[v.name], totals[v.name], settings=v.fit, injected_bq=study.injected_activity_bq,
            role=v.role,
        )
        for v in study.vois
    }  # fmt: skip
    return StudyResult(
        study=study,
        tacs=tacs,
        total_tacs=totals,
        kinetics=kinetics,
        voi_stats=stats_rows,
        ratios=_ratios(study, stats_by),
        percent_id=pid_rows,
        heterogeneity=_heterogeneity(study, tacs, kinetics),
        stats=stats_by,
    )


def _stats_row(
    study: Study, name: str, role: str, tp: Any, stats: VoiStats, scale: float, to_scan: float
) -> dict[str, Any]:
    iso, a0, t = study.isotope, study.injected, tp.time_after_injection_s
    row: dict[str, Any] = {
        "timepoint": tp.label,
        "time_h": tp.time_h,
        "voi": name,
        "role": role,
        "units": "Bq/mL",
        "n_voxels": stats.n_voxels,
        "volume_ml": stats.volume_ml,
        "mean": stats.mean * scale,
        "sd": stats.sd * scale,
        "min": stats.min * scale,
        "max": stats.max * scale,
        "peak": stats.peak * scale,
        "total_bq": stats.total * scale,
        "mean_dc": stats.mean * scale / to_scan,
        "total_bq_dc": stats.total * scale / to_scan,
    }
    if study.weight_kg is not None and a0 is not None:
        for key in ("mean", "max"):
            row[f"suv_bw_{key}"] = suv_bw(
                row[key], a0, study.weight_kg, time_after_injection_s=t, isotope=iso
            )
    if study.has_lbm:
        assert study.weight_kg and study.height_cm and study.sex
        for key in ("mean", "max"):
            row[f"suv_lbm_{key}"] = suv_lbm(
                row[key], a0, study.weight_kg, study.height_cm, study.sex,
                formula=study.lbm_formula, time_after_injection_s=t, isotope=iso,
            )  # fmt: skip
    return row


def _ratios(
    study: Study, stats_by: dict[tuple[str, str], tuple[VoiStats, float]]
) -> list[dict[str, Any]]:
    quantity = study.settings.quantity
    rows = []
    for tp in study.timepoints:
        for lesion in study.lesions:
            lesion_stats, _ = stats_by[(lesion.name, tp.label)]
            row: dict[str, Any] = {
                "timepoint": tp.label, "time_h": tp.time_h, "lesion": lesion.name,
            }  # fmt: skip
            # Both values come from the same image, so the ratio is the same in either decay mode.
            for ref in study.references:
                ref_stats, _ = stats_by[(ref.name, tp.label)]
                if ref_stats.mean <= 0:
                    row[f"to_{ref.name}"] = None
                    continue
                if ref.role == "blood":
                    value = lesion_to_blood(lesion_stats, ref_stats, statistic=quantity)
                elif ref.role == "background":
                    value = lesion_to_background(lesion_stats, ref_stats, statistic=quantity)
                else:
                    value = uptake_ratio(lesion_stats, ref_stats, statistic=quantity)
                row[f"to_{ref.name}"] = value
            rows.append(row)
    return rows if study.references else []


def _heterogeneity(
    study: Study, tacs: dict[str, TimeActivityCurve], kinetics: dict[str, VoiKinetics]
) -> list[dict[str, Any]]:
    """Spread over the lesions of uptake at each time point, of TIA and of T_eff, naming the
    lesions with the lowest and highest value."""
    lesions = study.lesions
    if len(lesions) < 2:
        return []
    quantity = study.settings.quantity
    names = [v.name for v in lesions]
    metrics: list[tuple[str, list[float], list[str]]] = []
    for n, tp in enumerate(study.timepoints):
        values = [
            float(tacs[v.name].in_mode("decay_corrected_to_injection").values[n]) for v in lesions
        ]
        metrics.append((f"{quantity}_dc_bq_ml@{tp.label}", values, names))
    metrics.append(("tia_bq_h_per_ml", [kinetics[v].tia_bq_h_per_ml for v in names], names))
    t_eff = {v: float(t) for v in names if (t := kinetics[v].t_eff_h) is not None}
    if len(t_eff) >= 2:
        metrics.append(("t_eff_h", list(t_eff.values()), list(t_eff)))
    rows = []
    for metric, values, which in metrics:
        summary = spread(values).as_dict()
        rows.append(
            {
                "metric": metric,
                **summary,
                "min_voi": which[int(np.argmin(values))],
                "max_voi": which[int(np.argmax(values))],
                "lesions": ";".join(which),
            }
        )
    return rows
