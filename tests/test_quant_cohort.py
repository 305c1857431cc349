"""`recon quant` on a synthetic cohort with known lesion uptakes: the lowest-uptake lesion, the
stratification and the spreads match the truth; refusals write nothing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.quant import read_csv

GRID = recon.ImageGrid((8, 16, 16), 5.0)  # x, y from -37.5 to 37.5 mm, z from -17.5 to 17.5
T_HALF_H = 78.41  # Zr-89, NuDat 3 (NNDC), written out independently of recon's table
LAM_H = math.log(2) / T_HALF_H
SLOTS = {"L1": (-20.0, -20.0, 0.0), "L2": (20.0, -20.0, 0.0), "L3": (0.0, 20.0, 0.0)}
BLOOD, BACKGROUND = (-22.5, 17.5, 0.0), (22.5, 17.5, 0.0)
BLOOD_DC, BACKGROUND_DC = 4000.0, 500.0
# Lesion uptake decay-corrected to injection (Bq/mL), constant in time (no biological
# clearance), the injected activity and the scan times of each patient.
COHORT = {
    "P01": ({"L1": 8000.0, "L2": 3000.0, "L3": 12000.0}, 185e6, (24.0, 72.0)),
    "P02": ({"L1": 1500.0, "L2": 9000.0}, 150e6, (24.0, 72.0)),
    "P03": ({"L1": 6000.0, "L2": 5000.0, "L3": 7000.0}, 200e6, (24.0, 70.0)),
    "P04": ({"L1": 2500.0, "L2": 20000.0}, 120e6, (24.0, 74.0)),
}


def phantom(lesions: dict[str, float], hours: float) -> np.ndarray:
    """Uniform spheres (15 mm) in a uniform background, activity at scan time."""
    z, y, x = GRID.meshgrid_mm()
    image = np.full(GRID.shape, BACKGROUND_DC)
    for centre, value in [*((SLOTS[k], v) for k, v in lesions.items()), (BLOOD, BLOOD_DC)]:
        inside = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= 7.5**2
        image[inside] = value
    return (image * math.exp(-LAM_H * hours)).astype(np.float32)


def write_patient(folder, name, lesions, injected, hours, *, own_labels=True) -> str:
    """A patient's images and study file; labels "1d_P01", "3d_P01" (or "1d", "3d")."""
    folder.mkdir()
    suffix = f"_{name}" if own_labels else ""
    text = (
        f'[study]\nname = "{name}"\nisotope = "Zr-89"\ninjected_activity_bq = {injected:g}\n'
        "weight_kg = 70\n\n"
    )
    for h in hours:
        np.save(folder / f"tp{h:g}.npy", phantom(lesions, h))
        text += (
            f'[[timepoints]]\nimage = "tp{h:g}.npy"\nvoxel_mm = 5\nhours_after_injection = {h:g}'
            f'\nlabel = "{"3d" if h > 24 else "1d"}{suffix}"\n\n'
        )
    for lesion in lesions:
        centre = ", ".join(f"{c:g}" for c in SLOTS[lesion])
        text += f'[[vois]]\nname = "{lesion}"\nsphere = {{ centre_mm = [{centre}], '
        text += "diameter_mm = 10 }\n\n"
    for voi, centre in (("blood", BLOOD), ("background", BACKGROUND)):
        where = ", ".join(f"{c:g}" for c in centre)
        text += (
            f'[[vois]]\nname = "{voi}"\nsphere = {{ centre_mm = [{where}], diameter_mm = 10 }}\n\n'
        )
    path = folder / "study.toml"
    path.write_text(text, encoding="utf-8")
    return f"{name}/study.toml"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    studies = [
        write_patient(root / name, name, lesions, injected, hours)
        for name, (lesions, injected, hours) in COHORT.items()
    ]
    listed = ", ".join(f'"{s}"' for s in studies)
    (root / "cohort.toml").write_text(
        f'[cohort]\nname = "pilot"\nstudies = [{listed}]\nuptake_at = 72\ntolerance_h = 3\n',
        encoding="utf-8",
    )
    return root


def truth_rows() -> list[tuple[str, str, float]]:
    """(patient, lesion, %ID/mL) of the truth."""
    return [
        (p, lesion, 100.0 * value / injected)
        for p, (lesions, injected, _) in COHORT.items()
        for lesion, value in lesions.items()
    ]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["quant", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def report(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    assert main(["quant", str(cohort / "cohort.toml"), "-o", str(out)]) == 0
    return out


def test_lowest_uptake_lesion_and_strata_match_the_truth(report):
    truth = truth_rows()
    lowest = {r["patient"]: r for r in read_csv(report / "cohort_lowest.csv")}
    for patient in COHORT:
        own = [(lesion, v) for p, lesion, v in truth if p == patient]
        low = min(own, key=lambda item: item[1])
        high = max(own, key=lambda item: item[1])
        row = lowest[patient]
        assert row["lowest_lesion"] == low[0] and row["highest_lesion"] == high[0]
        assert row["lowest_value"] == pytest.approx(low[1], rel=1e-5)
        assert row["fold"] == pytest.approx(high[1] / low[1], rel=1e-5)
    # Median split of the patients' lowest lesions; at or above the median is "high".
    lows = {p: min(v for q, _, v in truth if q == p) for p in COHORT}
    median = float(np.median(list(lows.values())))
    strata = {r["patient"]: r for r in read_csv(report / "cohort_strata.csv")}
    for patient, value in lows.items():
        assert strata[patient]["group"] == ("high" if value >= median else "low")
        assert strata[patient]["value"] == pytest.approx(value, rel=1e-5)
        assert strata[patient]["threshold"] == pytest.approx(median, rel=1e-5)
    assert {s["group"] for s in strata.values()} == {"low", "high"}


def test_spreads_match_the_truth(report):
    truth = truth_rows()
    rows = {r["scope"]: r for r in read_csv(report / "cohort_spread.csv")}

    def check(scope, values, names):
        row = rows[scope]
        v = np.array(values)
        assert row["n"] == v.size
        assert row["mean"] == pytest.approx(v.mean(), rel=1e-5)
        assert row["cv"] == pytest.approx(v.std(ddof=1) / v.mean(), rel=1e-5)
        assert row["fold"] == pytest.approx(v.max() / v.min(), rel=1e-5)
        assert row["min_at"] == names[int(np.argmin(v))]
        assert row["max_at"] == names[int(np.argmax(v))]

    check("all lesions", [v for *_, v in truth], [f"{p}/{lesion}" for p, lesion, _ in truth])
    patients = list(COHORT)
    per_patient = [[v for p, _, v in truth if p == q] for q in patients]
    check("between patients (mean lesion)", [np.mean(v) for v in per_patient], patients)
    check("between patients (lowest lesion)", [min(v) for v in per_patient], patients)
    for patient, values in zip(patients, per_patient, strict=True):
        check(f"within {patient}", values, list(COHORT[patient][0]))


def test_lesion_table_names_the_scan_used_and_every_metric(report):
    lesions = read_csv(report / "cohort_lesions.csv")
    assert len(lesions) == sum(len(v[0]) for v in COHORT.values())
    by_patient = {r["patient"]: r["timepoint"] for r in lesions}
    # uptake_at = 72 h within 3 h: each patient's scan nearest to it.
    assert by_patient == {p: f"3d_{p}" for p in COHORT}
    for row in lesions:
        lesions_truth, injected, hours = COHORT[row["patient"]]
        value = lesions_truth[row["lesion"]]
        assert row["metric"] == "percent_id_per_ml"
        assert row["bq_ml"] == pytest.approx(value * math.exp(-LAM_H * hours[1]), rel=1e-5)
        assert row["bq_ml_dc"] == pytest.approx(value, rel=1e-5)
        assert row["to_blood"] == pytest.approx(value / BLOOD_DC, rel=1e-5)
        assert row["to_background"] == pytest.approx(value / BACKGROUND_DC, rel=1e-5)
        # SUVbw = C / (A decayed to the scan / weight in g).
        assert row["suv_bw"] == pytest.approx(value * 70e3 / injected, rel=1e-5)
        assert row["lowest_in_patient"] == (row["rank_in_patient"] == 1)
    summary = json.loads((report / "cohort_summary.json").read_text())
    assert summary["lowest"] == {"P01": "L2", "P02": "L1", "P03": "L2", "P04": "L1"}
    assert summary["metric"] == "percent_id_per_ml" and summary["uptake_at"] == 72
    for patient in COHORT:
        assert (report / patient / "kinetics.csv").exists()
    assert (report / "cohort_uptake.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_several_study_files_make_a_cohort_with_defaults(tmp_path, capsys):
    # Shared labels: the last one every study has is the default uptake time point.
    studies = [
        tmp_path / write_patient(tmp_path / p, p, *COHORT[p], own_labels=False)
        for p in ("P01", "P02")
    ]
    code, out, err = run(capsys, *studies, "-o", tmp_path / "two", "--no-plots")
    assert code == 0, err
    assert "P02" in out and "L1" in out
    rows = read_csv(tmp_path / "two" / "cohort_lesions.csv")
    assert {r["timepoint"] for r in rows} == {"3d"}
    assert not list((tmp_path / "two").glob("*.png"))


REFUSALS = {
    "metric a study cannot give": ("uptake_at = 72", 'uptake_at = 72\nmetric = "suv_lbm"',
                                   "height_cm and sex of every study"),
    "no scan near the time": ("tolerance_h = 3", "tolerance_h = 1", "no scan within"),
    "label missing": ("uptake_at = 72", 'uptake_at = "3d"', "not a time point of P01"),
    "wrong type": ("tolerance_h = 3", 'tolerance_h = "3"', "[cohort] tolerance_h must be a number"),
    "unknown key": ("tolerance_h = 3", "tolerance = 3", "unknown key(s) 'tolerance'"),
    "duplicate patient": ('"P02/study.toml"', '"P01/study.toml"', "same patient 'P01'"),
    "bad labels": ("tolerance_h = 3", 'tolerance_h = 3\nlabels = ["a", "a"]', "labels"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS), ids=list(REFUSALS))
def test_refusals_are_one_line_and_write_nothing(cohort, tmp_path, capsys, case):
    old, new, expected = REFUSALS[case]
    text = (cohort / "cohort.toml").read_text()
    assert old in text
    bad = cohort / f"bad_{case.replace(' ', '_')}.toml"
    bad.write_text(text.replace(old, new, 1), encoding="utf-8")
    out = tmp_path / "never"
    code, _, err = run(capsys, bad, "-o", out)
    assert code == 2, err
    assert err.startswith("recon: error: ") and err.count("\n") == 1, err
    assert expected in err and bad.name in err
    assert not out.exists()


def test_a_cohort_file_among_study_files_is_refused(cohort, tmp_path, capsys):
    code, _, err = run(capsys, cohort / "cohort.toml", cohort / "P01" / "study.toml", "-o",
                       tmp_path / "never")  # fmt: skip
    assert code == 2 and "is a cohort file" in err
    assert not (tmp_path / "never").exists()
