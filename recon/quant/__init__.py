"""Quantification for drug-delivery imaging: calibration, SUV and %ID, VOI statistics,
time-activity curves and residence times, uptake ratios and heterogeneity, conjugate views, and
reports.

Modules (each one job):

- :mod:`recon.quant.calibration`: sensitivity, Bq/mL images, injected activity, SUV, %ID;
- :mod:`recon.quant.voi`: volumes of interest and their statistics, sphere recovery coefficients;
- :mod:`recon.quant.timeseries`: time points, registration, TACs, exponential fits, TIA;
- :mod:`recon.quant.kinetics`: kinetic models, AICc model selection, standard errors;
- :mod:`recon.quant.clearance`: one VOI's fit, half-lives and TIA with uncertainties;
- :mod:`recon.quant.ratios`: lesion-to-reference ratios, spread, stratification of patients;
- :mod:`recon.quant.planar`: conjugate-view (MIRD 16) activity from planar ROIs;
- :mod:`recon.quant.report`: CSV/JSON tables and optional PNG plots;
- :mod:`recon.quant.study`, :mod:`~recon.quant.analysis`, :mod:`~recon.quant.study_report`: the
  TOML study that `recon quant` runs, and :mod:`recon.quant.cohort` for several patients.
"""

from __future__ import annotations

from recon.quant.analysis import StudyResult, analyse_study
from recon.quant.calibration import (
    LBM_FORMULAS,
    Injection,
    injected_activity_at,
    lean_body_mass_kg,
    percent_id,
    percent_id_per_ml,
    sensitivity_from_calibration,
    suv_bw,
    suv_lbm,
    to_bq_per_ml,
)
from recon.quant.clearance import FitSettings, VoiKinetics, clearance_kinetics
from recon.quant.cohort import (
    Cohort,
    CohortResult,
    analyse_cohort,
    load_cohort,
    write_cohort_report,
)
from recon.quant.kinetics import ModelFit, ModelSelection, fit_model, select_model
from recon.quant.planar import (
    ConjugateViewResult,
    ConjugateViewRoi,
    background_subtract,
    conjugate_view_activity,
    geometric_mean,
    quantify_conjugate_views,
    self_attenuation_factor,
    transmission_factor,
    transmission_from_counts,
    transmission_from_mu_map,
)
from recon.quant.ratios import (
    BloodSample,
    PatientStratum,
    Spread,
    between_lesion_spread,
    between_patient_spread,
    blood_concentration_at,
    lesion_to_background,
    lesion_to_blood,
    lesion_to_liver,
    lesion_to_spleen,
    lowest_uptake_lesion,
    spread,
    stratify,
    uptake_ratio,
)
from recon.quant.report import (
    plot_tacs,
    read_csv,
    read_json,
    table_rows,
    tac_rows,
    write_csv,
    write_json,
    write_table,
)
from recon.quant.study import Study, load_study
from recon.quant.study_report import write_report
from recon.quant.timeseries import (
    DECAY_MODES,
    ExponentialFit,
    TimeActivityCurve,
    TimeIntegratedActivity,
    TimePoint,
    biological_half_life,
    effective_half_life,
    fit_exponential,
    resample_image,
    resample_voi,
    residence_time_s,
    time_activity_curve,
    time_integrated_activity,
)
from recon.quant.voi import (
    PEAK_SPHERE_ML,
    Voi,
    VoiStats,
    iso_contour,
    rc_corrected_mean,
    recovery_coefficient,
    voi_stats,
)

__all__ = [
    "Cohort",
    "CohortResult",
    "analyse_cohort",
    "load_cohort",
    "write_cohort_report",
    "FitSettings",
    "ModelFit",
    "ModelSelection",
    "Study",
    "StudyResult",
    "VoiKinetics",
    "analyse_study",
    "clearance_kinetics",
    "fit_model",
    "load_study",
    "select_model",
    "write_report",
    "DECAY_MODES",
    "LBM_FORMULAS",
    "PEAK_SPHERE_ML",
    "BloodSample",
    "ConjugateViewResult",
    "ConjugateViewRoi",
    "ExponentialFit",
    "Injection",
    "PatientStratum",
    "Spread",
    "TimeActivityCurve",
    "TimeIntegratedActivity",
    "TimePoint",
    "Voi",
    "VoiStats",
    "background_subtract",
    "between_lesion_spread",
    "between_patient_spread",
    "biological_half_life",
    "blood_concentration_at",
    "conjugate_view_activity",
    "effective_half_life",
    "fit_exponential",
    "geometric_mean",
    "injected_activity_at",
    "iso_contour",
    "lean_body_mass_kg",
    "lesion_to_background",
    "lesion_to_blood",
    "lesion_to_liver",
    "lesion_to_spleen",
    "lowest_uptake_lesion",
    "percent_id",
    "percent_id_per_ml",
    "plot_tacs",
    "quantify_conjugate_views",
    "rc_corrected_mean",
    "read_csv",
    "read_json",
    "recovery_coefficient",
    "resample_image",
    "resample_voi",
    "residence_time_s",
    "self_attenuation_factor",
    "sensitivity_from_calibration",
    "spread",
    "stratify",
    "suv_bw",
    "suv_lbm",
    "table_rows",
    "tac_rows",
    "time_activity_curve",
    "time_integrated_activity",
    "to_bq_per_ml",
    "transmission_factor",
    "transmission_from_counts",
    "transmission_from_mu_map",
    "uptake_ratio",
    "voi_stats",
    "write_csv",
    "write_json",
    "write_table",
]
