"""Simulate and quantify In-111 PEGylated-liposome SPECT over 7 days in a small cohort.

Radiolabelled PEGylated liposomes circulate for days, collect in liver and spleen, and reach
tumours slowly: In-111 liposome scintigraphy showed tumours from 1-2 days on, still visible at a
week, with about eight-fold differences in uptake between tumours (Harrington et al., Clin Cancer
Res 2001;7:243). Lee et al. (Clin Cancer Res 2017;23:4190) proposed stratifying patients by their
*lowest*-uptake lesion. This script builds such a study and checks that the reconstruction and
quantification recover it:

1. each patient (``--patients``, default 3) has a blood pool (heart), liver, spleen, soft-tissue
   background and three lesions of 34-40 mm whose uptake differs up to eight-fold and whose
   kinetics differ; concentrations follow compartment curves (below) times physical decay;
2. at 1 h, 24 h, 48 h, 72 h and 7 d, dual-head SPECT projections through the ME collimator with
   attenuation and Poisson noise are simulated with :class:`recon.SpectModel` (counts fall with
   decay) and reconstructed with :func:`recon.osem` into Bq/mL;
3. each patient's images are written as Interfile with a ``study.toml`` and quantified exactly as
   ``recon quant P01/study.toml -o P01/report`` does (TACs, effective half-lives, TIA, %ID,
   lesion-to-blood ratios); lesion VOIs are concentric spheres of 2/3 the lesion diameter, which
   keeps partial-volume losses small;
4. the lesions of all patients are pooled: between-lesion and between-patient spread (CV, fold
   range) and stratification by the lowest-uptake lesion (:mod:`recon.quant.ratios`), with the
   same tables computed from the simulated truth;
5. every recovered figure is compared with the truth and the errors are printed and written.

Concentrations (Bq/mL, decay-corrected to injection; t in h; multiplied by exp(-λ_phys t) for the
activity at scan time):

- blood: ``C_b(t) = A0/V_b · (0.15 e^(−ln2 t/8) + 0.85 e^(−ln2 t/T_slow))``, T_slow 55-75 h;
- lesion: ``0.05 C_b(t) + A (e^(−ln2 t/T_out) − e^(−ln2 t/T_in))`` (vascular fraction plus
  extravasated liposomes, peaking at 1-2 days);
- liver and spleen: ``f C_b(t) + L (1 − e^(−ln2 t/T_up)) e^(−ln2 t/300)``;
- soft tissue: ``0.04 C_b(t) + 600 (1 − e^(−ln2 t/24))``.

Stated tolerances (:data:`TOLERANCES`, checked by tests/test_liposome_example.py; the script
prints how close it came): lesion mean within 15 % of truth at 24-72 h, within 20 % at 1 h (when
a lesion holds little more than its blood volume and sits near a bright blood pool) and within
25 % at 7 days (under a million counts per scan, a few hundred Bq/mL in the lowest-uptake lesions);
lesion effective half-life within 20 % of the same fit made to the true values; lesion TIA within
15 % of the same method applied to the true values, and within 25 % of the analytic integral
(sampling the curve at five times adds up to about 10 %).

Usage::

    python examples/liposome_timecourse.py [--output DIR] [--device auto|cpu|gpu]
                                           [--patients N] [--seed S]

Runs headless in about 15 s on a 2-core CPU (3 patients). Writes into ``--output``: per patient
``P01/tp001h.hv`` … (images), ``P01/study.toml`` and ``P01/report/`` (the recon quant tables and
plots); for the cohort ``truth_comparison``, ``kinetics_truth``, ``cohort_lesions``,
``heterogeneity`` and ``stratification`` as CSV and JSON, and ``summary.json``.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import recon
from recon.io import write_interfile
from recon.physics.isotopes import get_isotope
from recon.quant import (
    TimeActivityCurve,
    between_lesion_spread,
    between_patient_spread,
    spread,
    stratify,
    write_csv,
    write_json,
)
from recon.quant.study import (
    VoiKinetics,
    analyse_study,
    clearance_kinetics,
    load_study,
    write_report,
)

ISOTOPE = get_isotope("In-111")
LAMBDA_PER_H = math.log(2) / (ISOTOPE.half_life_s / 3600.0)
INJECTED_BQ = 185e6  # 5 mCi, the order of In-111 liposome imaging activities
BLOOD_VOLUME_ML = 5000.0
SCAN_HOURS = (1.0, 24.0, 48.0, 72.0, 168.0)
# Seconds per view: late scans are longer, as in clinical protocols; counts still fall with decay.
SECONDS_PER_VIEW = (30.0, 30.0, 35.0, 40.0, 80.0)
STRATIFY_LABEL = "72h"  # uptake used for heterogeneity and stratification
#: Largest |error| in percent accepted for the lesions (see the module docstring): the lesion
#: mean at each scan, the effective half-life and the TIA.
TOLERANCES: dict[str, Any] = {
    "lesion_mean": {"1h": 20.0, "24h": 15.0, "48h": 15.0, "72h": 15.0, "168h": 25.0},
    "t_eff": 20.0, "tia_same_method": 15.0, "tia_analytic": 25.0,
}  # fmt: skip

# Geometry: 48 × 48 × 24 voxels of 6 mm; an elliptical body 260 mm wide and 190 mm deep.
GRID = recon.ImageGrid(shape=(24, 48, 48), voxel_size=6.0)
BODY_SEMI_AXES_MM = (130.0, 95.0)
N_VIEWS = 60
# Water at 171 keV: 0.144 cm²/g, NIST XCOM (total with coherent scattering), log-log interpolated
# between 150 keV (0.1505) and 200 keV (0.1370). One coefficient serves both photopeaks here.
MU_WATER_PER_MM = 0.0144
# Planar sensitivity: the ME collimator's geometric efficiency × In-111 photons per decay × an
# assumed 50 % of the collimated photons recorded in the two photopeak windows.
COLLIMATOR = recon.Collimator.preset("ME")
SENSITIVITY_CPS_PER_MBQ = (
    COLLIMATOR.geometric_efficiency() * sum(p.yield_per_decay for p in ISOTOPE.photons) * 0.5 * 1e6
)

# Organs (world x, y, z centre and semi-axes in mm; LPS: +x patient left, +y posterior).
HEART = ((35.0, -40.0, 30.0), (35.0, 35.0, 35.0))
LIVER = ((-80.0, 15.0, -30.0), (40.0, 50.0, 35.0))
SPLEEN = ((90.0, 45.0, -30.0), (25.0, 25.0, 28.0))
# Lesion sites, each ≥ 20 mm from the organs, the body surface and the other sites.
SITES = (
    (-70.0, -45.0, 35.0), (60.0, -20.0, -40.0), (5.0, 55.0, 20.0), (12.0, 10.0, -35.0),
    (100.0, 5.0, 35.0), (-50.0, 55.0, 40.0), (-10.0, -55.0, -30.0),
)  # fmt: skip
# Reference VOIs: name, role, centre (mm), diameter (mm).
REFERENCE_VOIS = (
    ("blood", "blood", HEART[0], 46.0),
    ("liver", "organ", LIVER[0], 50.0),
    ("spleen", "organ", SPLEEN[0], 36.0),
    ("background", "background", (-27.0, 5.0, 42.0), 30.0),
)


class Curve:
    """``Σ a_i exp(−k_i t)``: a concentration decay-corrected to injection (t in h)."""

    def __init__(self, terms: list[tuple[float, float]]) -> None:
        self.terms = terms

    def __add__(self, other: Curve) -> Curve:
        return Curve(self.terms + other.terms)

    def __rmul__(self, factor: float) -> Curve:
        return Curve([(factor * a, k) for a, k in self.terms])

    def at_scan(self, t_h: float) -> float:
        """Activity concentration at scan time (Bq/mL)."""
        return sum(a * math.exp(-(k + LAMBDA_PER_H) * t_h) for a, k in self.terms)

    def tia_bq_h_per_ml(self) -> float:
        """``∫₀^∞`` of the activity at scan time, in Bq·h/mL."""
        return sum(a / (k + LAMBDA_PER_H) for a, k in self.terms)


def _rate(half_life_h: float) -> float:
    return math.log(2) / half_life_h


def uptake_curve(peak: float, t_in_h: float, t_out_h: float) -> Curve:
    """``A (e^(−t/τ_out) − e^(−t/τ_in))`` scaled so that its maximum is ``peak``."""
    k_in, k_out = _rate(t_in_h), _rate(t_out_h)
    t_max = math.log(k_in / k_out) / (k_in - k_out)
    a = peak / (math.exp(-k_out * t_max) - math.exp(-k_in * t_max))
    return Curve([(a, k_out), (-a, k_in)])


def retention_curve(level: float, t_up_h: float, t_ret_h: float = 300.0) -> Curve:
    """``L (1 − e^(−t ln2/T_up)) e^(−t ln2/T_ret)``: phagocytic uptake, slowly released."""
    return Curve([(level, _rate(t_ret_h)), (-level, _rate(t_up_h) + _rate(t_ret_h))])


@dataclass(frozen=True)
class Lesion:
    name: str
    site: int
    diameter_mm: float
    peak_bq_ml: float  # peak of the extravasated component, decay-corrected
    t_in_h: float
    t_out_h: float


@dataclass(frozen=True)
class Patient:
    name: str
    blood_slow_h: float
    liver_bq_ml: float
    lesions: tuple[Lesion, ...]

    def curves(self) -> dict[str, Curve]:
        """Truth by VOI name."""
        c0 = INJECTED_BQ / BLOOD_VOLUME_ML
        blood = Curve([(0.15 * c0, _rate(8.0)), (0.85 * c0, _rate(self.blood_slow_h))])
        out = {
            "blood": blood,
            "liver": 0.25 * blood + retention_curve(self.liver_bq_ml, 20.0),
            "spleen": 0.3 * blood + retention_curve(2.5 * self.liver_bq_ml, 12.0),
            "background": 0.04 * blood + retention_curve(600.0, 24.0, 1e9),
        }
        for lesion in self.lesions:
            uptake = uptake_curve(lesion.peak_bq_ml, lesion.t_in_h, lesion.t_out_h)
            out[lesion.name] = 0.05 * blood + uptake
        return out


# Extravasated uptake peaks at 3 to 32 kBq/mL, so that uptake at 72 h differs eight-fold between
# lesions; the kinetics differ too.
COHORT = (
    Patient("P01", 65.0, 22e3, (
        Lesion("L1", 0, 40.0, 32e3, 10.0, 120.0),
        Lesion("L2", 1, 34.0, 18e3, 14.0, 90.0),
        Lesion("L3", 2, 37.0, 11e3, 8.0, 160.0),
    )),
    Patient("P02", 55.0, 28e3, (
        Lesion("L1", 3, 40.0, 3.0e3, 18.0, 150.0),
        Lesion("L2", 4, 34.0, 9e3, 12.0, 140.0),
        Lesion("L3", 5, 37.0, 6e3, 20.0, 200.0),
    )),
    Patient("P03", 75.0, 18e3, (
        Lesion("L1", 6, 40.0, 15e3, 10.0, 100.0),
        Lesion("L2", 1, 34.0, 5e3, 16.0, 110.0),
        Lesion("L3", 4, 37.0, 24e3, 9.0, 180.0),
    )),
)  # fmt: skip


def cohort(n: int, seed: int) -> list[Patient]:
    """The three patients above, then random ones (uptake log-uniform over the same range)."""
    patients = list(COHORT[:n])
    rng = np.random.default_rng(seed)
    for i in range(len(patients), n):
        sites = rng.choice(len(SITES), size=3, replace=False)
        lesions = tuple(
            Lesion(
                f"L{j + 1}", int(site), float(rng.choice((34.0, 37.0, 40.0))),
                float(np.exp(rng.uniform(np.log(3e3), np.log(32e3)))),
                float(rng.uniform(8.0, 20.0)), float(rng.uniform(70.0, 200.0)),
            )
            for j, site in enumerate(sites)
        )  # fmt: skip
        patients.append(
            Patient(f"P{i + 1:02d}", float(rng.uniform(55, 75)), float(rng.uniform(18e3, 28e3)),
                    lesions)
        )  # fmt: skip
    return patients


# ------------------------------------------------------------------------------------ phantom
def ellipsoid_fraction(centre: tuple[float, ...], semi_axes: tuple[float, ...]) -> np.ndarray:
    """Fraction of each voxel inside an ellipsoid (4 × 4 × 4 sub-samples per voxel)."""
    n = 4
    z, y, x = GRID.meshgrid_mm()
    sub = (np.arange(n) + 0.5) / n - 0.5
    out = np.zeros(GRID.shape)
    for dz in sub * GRID.voxel_size_mm[0]:
        for dy in sub * GRID.voxel_size_mm[1]:
            for dx in sub * GRID.voxel_size_mm[2]:
                r2 = sum(
                    ((c + d - c0) / s) ** 2
                    for c, d, c0, s in zip((x, y, z), (dx, dy, dz), centre, semi_axes, strict=True)
                )
                out += r2 <= 1.0
    return out / n**3


def body_fraction() -> np.ndarray:
    a, b = BODY_SEMI_AXES_MM
    return ellipsoid_fraction((0.0, 0.0, 0.0), (a, b, 1e6))


def activity_at(patient: Patient, t_h: float, masks: dict[str, np.ndarray]) -> np.ndarray:
    """Activity concentration at scan time (Bq/mL): each region replaces what lies under it."""
    curves = patient.curves()
    activity = masks["body"] * curves["background"].at_scan(t_h)
    for name in ("blood", "liver", "spleen", *(lesion.name for lesion in patient.lesions)):
        f = masks[name]
        activity = activity * (1.0 - f) + f * curves[name].at_scan(t_h)
    return activity.astype(np.float32)


def region_masks(patient: Patient, body: np.ndarray) -> dict[str, np.ndarray]:
    masks = {
        "body": body,
        "blood": ellipsoid_fraction(*HEART),
        "liver": ellipsoid_fraction(*LIVER),
        "spleen": ellipsoid_fraction(*SPLEEN),
    }
    for lesion in patient.lesions:
        radius = lesion.diameter_mm / 2
        masks[lesion.name] = ellipsoid_fraction(SITES[lesion.site], (radius, radius, radius))
    return masks


# ------------------------------------------------------------------------------ acquisition
def geometry(seconds_per_view: float) -> recon.SpectGeometry:
    """Dual-head body-contour orbit (25 mm clearance), 60 views over 360°."""
    angles = np.arange(N_VIEWS) * 360.0 / N_VIEWS
    theta = np.deg2rad(angles)
    a, b = BODY_SEMI_AXES_MM
    radii = 1.0 / np.sqrt((np.sin(theta) / a) ** 2 + (np.cos(theta) / b) ** 2) + 25.0
    stops = N_VIEWS // 2  # the two heads acquire opposite views at once
    return recon.SpectGeometry(
        angles_deg=angles, radii_mm=radii, n_u=GRID.shape[2], n_v=GRID.shape[0],
        pixel_size_mm=GRID.voxel_size_mm[0],
        start_times_s=(np.arange(N_VIEWS) % stops) * seconds_per_view,
        durations_s=np.full(N_VIEWS, seconds_per_view),
    )  # fmt: skip


# ---------------------------------------------------------------------------- study files
def _voi_line(name: str, role: str, centre: tuple[float, ...], diameter: float) -> str:
    xyz = ", ".join(f"{c:g}" for c in centre)
    return (
        f'[[vois]]\nname = "{name}"\nrole = "{role}"\n'
        f"sphere = {{ centre_mm = [{xyz}], diameter_mm = {diameter:.4g} }}\n"
    )


def write_study(patient: Patient, folder: Path, images: list[str]) -> Path:
    """The study TOML of one patient; lesion VOIs are 2/3 of the lesion diameter."""
    injection = "2026-03-02T09:00:00"
    lines = [
        f"# In-111 PEGylated liposomes, simulated patient {patient.name}; quantify with:",
        f"#   recon quant {folder.name}/study.toml -o {folder.name}/report",
        "[study]",
        f'name = "{patient.name}"',
        f'isotope = "{ISOTOPE.name}"',
        f"injection_time = {injection}",
        f"injected_activity_bq = {INJECTED_BQ:.6g}",
        "weight_kg = 70",
        "",
        "[analysis]",
        'quantity = "mean"',
        'fit_from = "peak"',
        "",
    ]
    start = np.datetime64(injection)
    for image, hours in zip(images, SCAN_HOURS, strict=True):
        when = start + np.timedelta64(int(round(hours * 3600)), "s")
        lines += [
            "[[timepoints]]",
            f'image = "{image}"',
            f"time = {when}",
            'mode = "activity_at_scan_time"',
            f'label = "{hours:g}h"',
            "",
        ]
    text = "\n".join(lines) + "\n"
    for lesion in patient.lesions:
        text += _voi_line(lesion.name, "lesion", SITES[lesion.site], lesion.diameter_mm * 2 / 3)
    for name, role, centre, diameter in REFERENCE_VOIS:
        text += _voi_line(name, role, centre, diameter)
    path = folder / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------------- truth
def truth_kinetics(name: str, curve: Curve, fit_from_h: float | None) -> VoiKinetics:
    """The fit and TIA that recon quant made, repeated on the true values at the scan times and
    over the same fitting window (where a curve peaks between scans, noise picks the window)."""
    tac = TimeActivityCurve(
        voi=name, times_s=np.array(SCAN_HOURS) * 3600.0,
        values=np.array([curve.at_scan(h) for h in SCAN_HOURS]), mode="activity_at_scan_time",
        quantity="mean", units="Bq/mL", isotope=ISOTOPE.name,
    )  # fmt: skip
    return clearance_kinetics(tac, fit_from="peak" if fit_from_h is None else fit_from_h)


def _pct(recovered: float, true: float) -> float:
    return 100.0 * (recovered - true) / true


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="liposome_output", help="output folder")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--patients", type=int, default=3, help="number of patients (≥ 1)")
    parser.add_argument("--seed", type=int, default=2026, help="noise and extra-patient seed")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--subsets", type=int, default=6)
    parser.add_argument("--post-filter", type=float, default=8.0, help="FWHM in mm")
    args = parser.parse_args(argv)
    if args.patients < 1:
        parser.error("--patients must be at least 1")
    started = time.perf_counter()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    patients = cohort(args.patients, args.seed)
    body = body_fraction()
    mu = (MU_WATER_PER_MM * body).astype(np.float32)
    models = [
        recon.SpectModel(
            geometry(seconds), GRID, mu_map=mu, collimator=COLLIMATOR, isotope=ISOTOPE.name,
            sensitivity_cps_per_mbq=SENSITIVITY_CPS_PER_MBQ, device=args.device,
        )
        for seconds in SECONDS_PER_VIEW
    ]  # fmt: skip
    print(
        f"{len(patients)} patients × {len(SCAN_HOURS)} scans: {GRID.shape} voxels of "
        f"{GRID.voxel_size_mm[0]:g} mm, {N_VIEWS} views, ME collimator, "
        f"{SENSITIVITY_CPS_PER_MBQ:.0f} cps/MBq, OSEM {args.iterations} × {args.subsets} + "
        f"{args.post_filter:g} mm filter, device {models[0].backend.name}"
    )

    comparison: list[dict[str, Any]] = []
    kinetics: list[dict[str, Any]] = []
    lesion_rows: list[dict[str, Any]] = []
    for patient in patients:
        folder = out / patient.name
        folder.mkdir(exist_ok=True)
        masks = region_masks(patient, body)
        images, counts_total = [], []
        for hours, model in zip(SCAN_HOURS, models, strict=True):
            expected = model.backend.to_host(model.forward(activity_at(patient, hours, masks)))
            counts = rng.poisson(expected).astype(np.float32)
            image = recon.osem(
                model, counts, iterations=args.iterations, subsets=args.subsets,
                post_filter_fwhm_mm=args.post_filter,
            )  # fmt: skip
            name = f"tp{int(hours):03d}h.hv"
            write_interfile(folder / name, image, modality="nucmed")
            images.append(name)
            counts_total.append(float(counts.sum()))
        study = load_study(write_study(patient, folder, images))
        result = analyse_study(study)
        (folder / "report").mkdir(exist_ok=True)
        write_report(result, folder / "report")
        counts_text = ", ".join(f"{c / 1e6:.2f}" for c in counts_total)
        print(f"{patient.name}: counts per scan (M) {counts_text}; report in {folder / 'report'}")

        truth = patient.curves()
        diameters = {lesion.name: lesion.diameter_mm for lesion in patient.lesions}
        for voi in study.vois:
            curve = truth[voi.name]
            for tp in study.timepoints:
                true = curve.at_scan(tp.time_h)
                recovered = result.value(voi.name, tp.label)
                comparison.append({
                    "patient": patient.name, "voi": voi.name, "role": voi.role,
                    "diameter_mm": diameters.get(voi.name), "timepoint": tp.label,
                    "true_bq_ml": true, "recovered_bq_ml": recovered,
                    "error_percent": _pct(recovered, true),
                })  # fmt: skip
            kin = result.kinetics[voi.name]
            true_kin = truth_kinetics(voi.name, curve, kin.fit_from_h)
            t_eff, t_eff_true = kin.t_eff_h, true_kin.t_eff_h
            kinetics.append({
                "patient": patient.name, "voi": voi.name, "role": voi.role,
                "t_eff_h": t_eff, "t_eff_true_h": t_eff_true,
                "t_eff_error_percent": None if t_eff is None or t_eff_true is None
                else _pct(t_eff, t_eff_true),
                "tia_bq_h_per_ml": kin.tia_bq_h_per_ml,
                "tia_true_bq_h_per_ml": curve.tia_bq_h_per_ml(),
                "tia_error_percent": _pct(kin.tia_bq_h_per_ml, curve.tia_bq_h_per_ml()),
                "tia_same_method_true_bq_h_per_ml": true_kin.tia_bq_h_per_ml,
            })  # fmt: skip
        ratios = {(r["timepoint"], r["lesion"]): r for r in result.ratios}
        h_strat = float(STRATIFY_LABEL.rstrip("h"))
        for lesion in patient.lesions:
            curve = truth[lesion.name]
            dc = math.exp(LAMBDA_PER_H * h_strat)
            lesion_rows.append({
                "patient": patient.name, "lesion": lesion.name,
                "diameter_mm": lesion.diameter_mm,
                "pid_per_ml": 100 * result.value(lesion.name, STRATIFY_LABEL, decay_corrected=True)
                / INJECTED_BQ,
                "pid_per_ml_true": 100 * curve.at_scan(h_strat) * dc / INJECTED_BQ,
                "to_blood": ratios[(STRATIFY_LABEL, lesion.name)]["to_blood"],
                "to_blood_true": curve.at_scan(h_strat) / truth["blood"].at_scan(h_strat),
                "tia_bq_h_per_ml": result.kinetics[lesion.name].tia_bq_h_per_ml,
                "tia_true_bq_h_per_ml": curve.tia_bq_h_per_ml(),
            })  # fmt: skip

    # ------------------------------------------------------------------ cohort heterogeneity
    metric, true_metric = "pid_per_ml", "pid_per_ml_true"
    heterogeneity = []
    for column, source in ((metric, "recovered"), (true_metric, "truth")):
        all_lesions = spread(row[column] for row in lesion_rows)
        heterogeneity.append({"scope": "all lesions", "source": source, **all_lesions.as_dict()})
        for by in ("mean", "lowest"):
            between = between_patient_spread(lesion_rows, column, by=by)
            heterogeneity.append(
                {"scope": f"between patients ({by} lesion)", "source": source, **between.as_dict()}
            )
        for patient_name, within in between_lesion_spread(lesion_rows, column).items():
            heterogeneity.append(
                {"scope": f"within {patient_name}", "source": source, **within.as_dict()}
            )
    strata = stratify(lesion_rows, metric, "median", by="lowest")
    strata_true = {s.patient: s for s in stratify(lesion_rows, true_metric, "median", by="lowest")}
    stratification = [
        {
            **s.as_dict(), "value_true": strata_true[s.patient].value,
            "lesion_true": strata_true[s.patient].lesion,
            "group_true": strata_true[s.patient].group,
        }
        for s in strata
    ]  # fmt: skip

    for stem, rows in (
        ("truth_comparison", comparison), ("kinetics_truth", kinetics),
        ("cohort_lesions", lesion_rows), ("heterogeneity", heterogeneity),
        ("stratification", stratification),
    ):  # fmt: skip
        write_csv(out / f"{stem}.csv", rows)
        write_json(out / f"{stem}.json", rows)

    # ------------------------------------------------------------------------------ report
    lesion_errors = [r for r in comparison if r["role"] == "lesion"]
    print("\nLesion mean (VOI: sphere of 2/3 the diameter) vs truth, % error, all lesions:")
    print("  time    mean  max|err|  tolerance")
    per_time = {}
    for hours in SCAN_HOURS:
        label = f"{hours:g}h"
        errors = [r["error_percent"] for r in lesion_errors if r["timepoint"] == label]
        per_time[label] = max(abs(e) for e in errors)
        limit = TOLERANCES["lesion_mean"][label]
        print(f"  {label:>5}  {np.mean(errors):+6.1f}  {per_time[label]:8.1f}  {limit:9.0f}")
    print("Reference VOIs vs truth, max |% error| over the time points:")
    for name, *_ in REFERENCE_VOIS:
        errors = [abs(r["error_percent"]) for r in comparison if r["voi"] == name]
        print(f"  {name:<10}  {max(errors):5.1f}")
    lesion_kin = [r for r in kinetics if r["role"] == "lesion"]
    t_eff_error = max(abs(r["t_eff_error_percent"]) for r in lesion_kin)
    tia_error = max(abs(r["tia_error_percent"]) for r in lesion_kin)
    tia_imaging = max(
        abs(_pct(r["tia_bq_h_per_ml"], r["tia_same_method_true_bq_h_per_ml"])) for r in lesion_kin
    )
    tia_sampling = max(
        abs(_pct(r["tia_same_method_true_bq_h_per_ml"], r["tia_true_bq_h_per_ml"]))
        for r in lesion_kin
    )
    print(
        "Lesion kinetics, max |% error| (tolerance):\n"
        f"  effective half-life vs the same fit to the true values  {t_eff_error:5.1f}  "
        f"({TOLERANCES['t_eff']:.0f})\n"
        f"  TIA vs the same method on the true values               {tia_imaging:5.1f}  "
        f"({TOLERANCES['tia_same_method']:.0f})\n"
        f"  TIA vs the analytic integral                            {tia_error:5.1f}  "
        f"({TOLERANCES['tia_analytic']:.0f}; sampling alone: {tia_sampling:.1f})"
    )
    by_source = {(h["scope"], h["source"]): h for h in heterogeneity}
    fold = by_source[("all lesions", "recovered")]["fold"]
    fold_true = by_source[("all lesions", "truth")]["fold"]
    print(
        f"Uptake at {STRATIFY_LABEL} (%ID/mL, decay-corrected): fold range over all lesions "
        f"{fold:.1f} (true {fold_true:.1f}); CV between patients (mean lesion) "
        f"{by_source[('between patients (mean lesion)', 'recovered')]['cv']:.2f} (true "
        f"{by_source[('between patients (mean lesion)', 'truth')]['cv']:.2f})"
    )
    print("Stratification by the lowest-uptake lesion (median split):")
    print("  patient  lesion  %ID/mL    group  (truth: lesion, %ID/mL, group)")
    for row in stratification:
        print(
            f"  {row['patient']:<7}  {row['lesion']:<6}  {row['value']:.5f}  {row['group']:>5}"
            f"  ({row['lesion_true']}, {row['value_true']:.5f}, {row['group_true']})"
        )
    elapsed = time.perf_counter() - started
    summary = {
        "patients": [p.name for p in patients],
        "max_lesion_error_percent_by_timepoint": per_time,
        "max_lesion_t_eff_error_percent": t_eff_error,
        "max_lesion_tia_error_percent": tia_error,
        "max_lesion_tia_imaging_error_percent": tia_imaging,
        "tolerances_percent": TOLERANCES,
        "fold_range": fold,
        "fold_range_true": fold_true,
        "strata": {r["patient"]: r["group"] for r in stratification},
        "strata_true": {r["patient"]: r["group_true"] for r in stratification},
        "elapsed_s": elapsed,
    }
    write_json(out / "summary.json", summary)
    print(f"done in {elapsed:.0f} s; wrote {out}")
    return {
        **summary,
        "comparison": comparison,
        "kinetics": kinetics,
        "lesions": lesion_rows,
        "heterogeneity": heterogeneity,
        "stratification": stratification,
    }


if __name__ == "__main__":
    main()
