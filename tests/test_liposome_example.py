"""examples/liposome_timecourse.py runs through `recon quant COHORT.toml` and recovers the
simulated truth within its stated tolerances, with a spread for every figure it compares."""

from __future__ import annotations

import argparse
import runpy
from pathlib import Path

import numpy as np
import pytest

import recon
from recon.algorithms.filters import gaussian_filter_fwhm
from recon.cli import main
from recon.quant import read_csv

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "liposome_timecourse.py"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("liposome")
    module = runpy.run_path(str(SCRIPT))
    result = module["main"](["--output", str(out), "--device", "cpu", "--patients", "2"])
    return module, result, out


@pytest.mark.slow
def test_lesion_concentrations_within_tolerance_at_every_time_point(example):
    module, result, _ = example
    tolerances = module["TOLERANCES"]
    lesions = [r for r in result["comparison"] if r["role"] == "lesion"]
    assert len(lesions) == 2 * 3 * 5  # patients × lesions × scans
    assert min(r["diameter_mm"] for r in lesions) >= 30.0
    for row in lesions:
        assert abs(row["error_percent"]) <= tolerances["lesion_mean"][row["timepoint"]], row
    # Blood pool, liver and spleen are large: they come out much closer.
    for row in result["comparison"]:
        if row["voi"] in ("blood", "liver", "spleen"):
            assert abs(row["error_percent"]) <= 10.0, row


@pytest.mark.slow
def test_background_is_a_large_voi_within_tolerance(example):
    module, result, out = example
    rows = [r for r in result["comparison"] if r["voi"] == "background"]
    assert len(rows) == 2 * 5
    for row in rows:
        assert abs(row["error_percent"]) <= module["TOLERANCES"]["background"], row
        assert row["se_percent"] > 0 and row["pooled_se_percent"] > 0
    stats = read_csv(out / "cohort" / "P01" / "voi_stats.csv")
    volume = next(r["volume_ml"] for r in stats if r["voi"] == "background")
    assert volume > 80.0  # four 36 mm spheres, not one 13 mL sphere


@pytest.mark.slow
def test_every_compared_figure_has_a_spread(example):
    _, result, _ = example
    for row in result["comparison"]:
        assert row["se_percent"] is not None and row["spread_method"], row
    for row in result["kinetics"]:
        if row["t_eff_h"] is not None:
            assert row["t_eff_se_h"] > 0, row
        assert row["tia_se_bq_h_per_ml"] > 0, row
    for row in result["heterogeneity"]:
        assert row["bootstrap_sd"] > 0, row
    for row in result["stratification"]:
        assert row["se"] > 0 and 0.0 <= row["same_group_in_bootstrap"] <= 1.0


@pytest.mark.slow
def test_effective_half_lives_and_tia_within_tolerance(example):
    module, result, _ = example
    tolerances = module["TOLERANCES"]
    for row in (r for r in result["kinetics"] if r["role"] == "lesion"):
        assert abs(row["t_eff_error_percent"]) <= tolerances["t_eff"], row
        imaging = 100 * (row["tia_bq_h_per_ml"] / row["tia_same_method_true_bq_h_per_ml"] - 1)
        assert abs(imaging) <= tolerances["tia_same_method"], row
        assert abs(row["tia_error_percent"]) <= tolerances["tia_analytic"], row
    blood = [r for r in result["kinetics"] if r["voi"] == "blood"]
    for row in blood:
        assert abs(row["t_eff_error_percent"]) <= 10.0, row


@pytest.mark.slow
def test_cohort_command_recovers_the_spread_and_stratification(example):
    _, result, out = example
    assert result["fold_range_true"] >= 7.5  # the simulated eight-fold spread
    assert result["fold_range"] == pytest.approx(result["fold_range_true"], rel=0.2)
    # P02's lowest-uptake lesion is the cohort's lowest: below the median, in truth and measured.
    assert result["strata_true"] == {"P01": "high", "P02": "low"}
    assert result["strata"] == result["strata_true"]
    report = out / "cohort"
    lowest = {r["patient"]: r for r in read_csv(report / "cohort_lowest.csv")}
    assert lowest["P02"]["lowest_lesion"] == "L1"
    rows = {r["patient"]: r for r in read_csv(out / "stratification_truth.csv")}
    assert rows["P02"]["lesion"] == rows["P02"]["lesion_true"] == "L1"
    scopes = {r["scope"] for r in read_csv(report / "cohort_spread.csv")}
    assert {"all lesions", "between patients (lowest lesion)", "within P01"} <= scopes
    for name in ("cohort_uptake.png", "cohort_summary.json", "P01/kinetics.csv", "P02/mip.png"):
        assert (report / name).exists(), name


@pytest.mark.slow
def test_written_study_can_be_requantified_from_the_command_line(example, tmp_path, capsys):
    _, _, out = example
    assert main(["quant", str(out / "P01" / "study.toml"), "-o", str(tmp_path), "--no-plots"]) == 0
    assert "L1" in capsys.readouterr().out
    again = {r["voi"]: r for r in read_csv(tmp_path / "kinetics.csv")}
    first = {r["voi"]: r for r in read_csv(out / "cohort" / "P01" / "kinetics.csv")}
    assert again["L1"]["t_eff_h"] == pytest.approx(first["L1"]["t_eff_h"], rel=1e-9)


@pytest.mark.slow
def test_bsrem_option_keeps_the_lesions_within_tolerance(tmp_path):
    """--algorithm bsrem: every scan reconstructed by BSREM with the relative difference prior,
    the lesion means within the same stated tolerances, and the summary says how."""
    module = runpy.run_path(str(SCRIPT))
    result = module["main"]([
        "--output", str(tmp_path), "--device", "cpu", "--patients", "2", "--no-plots",
        "--algorithm", "bsrem", "--beta", "0.03",
    ])  # fmt: skip
    assert result["reconstruction"] == {
        "algorithm": "bsrem", "iterations": 30, "subsets": 6, "post_filter_fwhm_mm": 0.0,
        "prior": "relative difference", "beta": 0.03, "gamma": 2.0, "kappa": "sensitivity_kappa",
    }  # fmt: skip
    tolerances = module["TOLERANCES"]
    lesions = [r for r in result["comparison"] if r["role"] == "lesion"]
    assert len(lesions) == 2 * 3 * 5
    for row in lesions:
        assert abs(row["error_percent"]) <= tolerances["lesion_mean"][row["timepoint"]], row


@pytest.mark.slow
def test_noise_free_converged_osem_recovers_the_organs(tmp_path):
    """With ``--noise-free`` and OSEM run towards convergence (100 iterations, no filter) the
    chain from projections to the report (calibration, decay, VOIs, ``recon quant``) leaves the
    large VOIs within 2 % of the truth and the background within 0.5 % (8 patients: at most
    1.3 % and 0.1 %): what the noisy runs add is noise and the method's resolution, not a bias
    of the chain."""
    module = runpy.run_path(str(SCRIPT))
    result = module["main"]([
        "--output", str(tmp_path), "--device", "cpu", "--patients", "2", "--noise-free",
        "--iterations", "100", "--post-filter", "0", "--no-plots",
    ])  # fmt: skip
    assert result["noise_free"] and result["reconstruction"]["post_filter_fwhm_mm"] == 0
    rows = [r for r in result["comparison"] if r["voi"] in ("blood", "liver", "spleen")]
    assert len(rows) == 2 * 3 * 5
    for row in rows:
        assert abs(row["error_percent"]) <= 2.0, row
    for row in (r for r in result["comparison"] if r["voi"] == "background"):
        assert abs(row["error_percent"]) <= 0.5, row


def test_post_filter_applies_to_bsrem_too() -> None:
    """``--post-filter F`` with ``--algorithm bsrem`` is BSREM's image filtered by the same
    Gaussian as OSEM's post-filter (recon.algorithms.filters.gaussian_filter_fwhm)."""
    module = runpy.run_path(str(SCRIPT))
    grid = recon.ImageGrid((4, 12, 12), 6.0)
    geometry = recon.SpectGeometry.circular(n_views=8, radius_mm=80, n_u=12, n_v=4,
                                            pixel_size_mm=6.0)  # fmt: skip
    model = recon.SpectModel(geometry, grid, device="cpu")
    truth = np.zeros(grid.shape, np.float32)
    truth[:, 3:9, 3:9] = 50.0
    counts = np.random.default_rng(4).poisson(np.asarray(model.forward(truth))).astype(np.float32)
    args = argparse.Namespace(algorithm="bsrem", iterations=3, subsets=2, beta=0.03,
                              kappa="sensitivity", post_filter=0.0)  # fmt: skip
    plain = np.asarray(module["reconstruct"](model, counts, args).data)
    args.post_filter = 8.0
    filtered = np.asarray(module["reconstruct"](model, counts, args).data)
    np.testing.assert_allclose(filtered, gaussian_filter_fwhm(plain, 8.0, grid.voxel_size_mm),
                               rtol=1e-6, atol=1e-6 * float(plain.max()))  # fmt: skip
    assert not np.allclose(filtered, plain)


@pytest.mark.parametrize("fwhm", ["-1", "nan"])
def test_a_negative_or_nan_post_filter_is_refused_before_any_work(tmp_path, capsys, fwhm) -> None:
    module = runpy.run_path(str(SCRIPT))
    with pytest.raises(SystemExit) as stop:
        module["main"](["--output", str(tmp_path / "out"), "--post-filter", fwhm])
    assert stop.value.code == 2 and "--post-filter must be" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
