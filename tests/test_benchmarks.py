"""The benchmark scripts run (tiny problems), write their JSON, and process what they state:
every operation's processed count equals its stated count, or the benchmark refuses to run."""

from __future__ import annotations

import json
import runpy
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import recon
from recon.simulate.orbits import body_contour_radii

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = pytest.mark.slow


def _run(script: str, *args: str, out: Path, check: bool = True) -> subprocess.CompletedProcess:
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--devices", "cpu", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _record(out: Path) -> dict:
    files = list(out.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text(encoding="utf-8"))


def _layout_lors(n_rings: int, crystals_per_ring: int, max_ring_difference: int) -> int:
    """LORs of a span-1 layout counted from its definition: one plane per ordered ring pair with
    |ring difference| ≤ max, crystals/2 views, 2·(crystals // 4) + 1 radial bins."""
    planes = sum(
        1 for a in range(n_rings) for b in range(n_rings) if abs(a - b) <= max_ring_difference
    )
    return planes * (crystals_per_ring // 2) * (2 * (crystals_per_ring // 4) + 1)


def test_pet_benchmark_tiny_processes_every_stated_event_and_lor(tmp_path: Path) -> None:
    _run("pet.py", "--tiny", out=tmp_path / "pet")
    record = _record(tmp_path / "pet")
    assert record["benchmark"] == "pet"
    run = record["runs"][0]
    ops = run["operations"]
    names = " | ".join(op["operation"] for op in ops)
    for part in ("LM TOF forward", "LM TOF back", "sensitivity image", "LM-OSEM", "sinogram"):
        assert part in names
    assert "prepared events" in names  # the case that used to fail with an IndexError
    assert "sensitivity image from the disk cache" in names  # a second model reads it back
    (call,) = [op for op in ops if "lm_osem call" in op["operation"]]
    assert 0 < call["peak_memory_bytes"] < 2e9  # measured (tracemalloc), and bounded
    assert all(op["median_s"] > 0 and len(op["times_s"]) >= 1 for op in ops)

    scanner = recon.PetScanner.preset("small")
    assert run["max_ring_difference"] == scanner.n_rings - 1  # the tiny scanner: all of them
    lors = _layout_lors(scanner.n_rings, scanner.crystals_per_ring, run["max_ring_difference"])
    assert run["sensitivity_lors"] == lors
    for op in ops:
        assert op["processed"] == op["n"], op["operation"]
        if op["unit"] == "events":
            assert op["n"] == 20_000  # the tiny configuration's stated events
        elif op["operation"].startswith(("sensitivity", "sinogram")):
            assert op["n"] == lors  # every view of the sinogram: the whole layout
    assert [p["processed"] for p in run["processed"]] == [p["stated"] for p in run["processed"]]


def test_pet_benchmark_refuses_a_sensitivity_it_cannot_afford(tmp_path: Path) -> None:
    """The CPU budget used to fall back to a ring-difference-0 model that dropped most events."""
    proc = _run("pet.py", "--tiny", "--time-budget", "1e-9", out=tmp_path / "pet", check=False)
    assert proc.returncode != 0
    assert "refused: the sensitivity image" in proc.stderr
    assert not list((tmp_path / "pet").glob("*.json"))


def test_pet_benchmark_refuses_events_its_model_would_drop() -> None:
    bench = runpy.run_path(str(BENCHMARKS / "pet.py"), run_name="benchmark")
    scanner = recon.PetScanner.preset("small")
    pool = bench["make_events"](scanner, 2000, 50.0, 24.0, seed=3)  # all ring differences
    events = bench["listmode"](pool, 2000)
    rings = (
        pool["crystal_a"] // scanner.crystals_per_ring
        - pool["crystal_b"] // scanner.crystals_per_ring
    )
    outside = int(np.count_nonzero(np.abs(rings) > 1))
    assert outside > 0
    grid = recon.ImageGrid((8, 16, 16), 4.0)
    narrow = recon.PetListmodeModel(scanner, grid, max_ring_difference=1, device="cpu")
    with pytest.raises(SystemExit, match=f"processed {2000 - outside} of the 2000 events"):
        bench["prepared_events"](narrow, events, "prepare")
    # Drawn for that model instead, every event lies on one of its LORs.
    pool = bench["make_events"](scanner, 2000, 50.0, 24.0, seed=3, max_ring_difference=1)
    prepared = bench["prepared_events"](narrow, bench["listmode"](pool, 2000), "prepare")
    assert prepared["n"] == 2000


def test_spect_benchmark_small_processes_every_view(tmp_path: Path) -> None:
    _run("spect.py", "--small", "--repeats", "1", out=tmp_path / "spect")
    record = _record(tmp_path / "spect")
    assert record["benchmark"] == "spect"
    run = record["runs"][0]
    assert run["median_s"]
    assert set(run["processed"]) == set(run["median_s"])
    for counts in run["processed"].values():
        assert counts == {"stated": 120, "processed": 120, "unit": "views"}
    assert set(run["median_cpu_s"]) == set(run["median_s"])
    assert run["attenuation_cached_views"] == 120
    steady = run["per_iteration_steady_state"]
    per = steady["seconds_per_iteration"]
    assert set(per) == {"osem", "bsrem"} and all(t > 0 for t in per.values())
    # Three iterations after the first, in each of three interleaved runs of each method.
    assert all(len(v) == 9 for v in steady["samples_s"].values())
    assert steady["ratio_bsrem_to_osem"] == pytest.approx(per["bsrem"] / per["osem"])
    assert steady["meets_target"] == (steady["ratio_bsrem_to_osem"] <= 1.3)


def test_spect_multi_benchmark_quick_compares_one_and_two_photopeaks(tmp_path: Path) -> None:
    _run("spect_multi.py", "--quick", out=tmp_path / "multi")
    record = _record(tmp_path / "multi")
    assert record["benchmark"] == "spect-multi" and record["configuration"] == "quick"
    assert record["date"] and record["platform"]
    run = record["runs"][0]
    assert run["device"] == "cpu" and run["device_name"]
    # Both windows hold counts, the 245 keV one a little more (higher yield, less attenuation).
    assert run["counts_mean"]["PEAK245"] > run["counts_mean"]["PEAK171"] > 0
    assert run["count_ratio_joint_to_single"] > 2.0
    for name in ("single", "joint"):
        figures = run["mean"][name]
        assert len(run["per_realisation"][name]["cv"]) == record["problem"]["realisations"]
        assert 0 < figures["cv"] < 1
        assert set(run["spheres_mm"]) <= set(figures)
    assert run["measured_cv_ratio"] > 1.0  # the joint image is the less noisy
    (png,) = (tmp_path / "multi").glob("*.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_contrast_noise_benchmark_quick_writes_curves_ratio_and_check(tmp_path: Path) -> None:
    """The quick configuration of the BSREM vs OSEM benchmark (issue 12 item 5) writes, per
    modality, both methods' curves, the timing ratio and the check of the three smallest spheres,
    and the check agrees with the points it was made from."""
    out = tmp_path / "contrast"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "contrast_noise.py"), "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=900,  # about 30 s on an idle 2-core CPU; generous for a shared one
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for modality in ("spect", "pet"):
        (json_file,) = out.glob(f"contrast-noise-{modality}-cpu-quick-*.json")
        assert json_file.with_suffix(".png").stat().st_size > 10_000
        record = json.loads(json_file.read_text(encoding="utf-8"))
        s = record["settings"]
        names = [sp["name"] for sp in record["spheres"]]
        assert len(names) == 6
        assert len(record["osem"]) == s["osem_iterations"] * len(s["fwhm_mm"])
        assert [p["beta"] for p in record["bsrem"]] == list(s["betas"])
        for point in record["osem"] + record["bsrem"]:
            assert set(point["crc"]) == set(names)
            assert point["cv"] > 0
            assert all(len(v) == s["realisations"] for v in point["crc_per_realisation"].values())
        for point in record["bsrem"]:
            assert point["convergence"]["relative_change_last_iteration_max"] >= 0
        # The noise axis behaves as a noise axis: a post-filter lowers it, a larger beta too.
        by_fwhm = {p["fwhm_mm"]: p["cv"] for p in record["osem"] if p["iterations"] == 1}
        assert by_fwhm[max(by_fwhm)] < by_fwhm[0.0]
        cvs = [p["cv"] for p in record["bsrem"]]
        assert cvs == sorted(cvs, reverse=True)
        if modality == "pet":  # both methods model the data's blur unless --no-psf
            assert record["acquisition"]["resolution_model"].startswith("ImageResolution(")

        t = record["timing"]
        assert t["ratio_bsrem_to_osem"] == pytest.approx(
            t["seconds_per_iteration"]["bsrem"] / t["seconds_per_iteration"]["osem"]
        )
        assert t["target_ratio"] == 1.3

        checks = record["dominance"]
        assert list(checks) == names[:3]
        for name, check in checks.items():
            ratios = [p["crc"][name] / p["cv"] for p in record["osem"]]
            assert check["best_osem"]["crc_over_cv"] == pytest.approx(max(ratios))
            best = check["best_osem"]
            dominating = [
                p["beta"]
                for p in record["bsrem"]
                if p["cv"] <= best["cv"] and p["crc"][name] >= best["crc"]
            ]
            assert check["dominating_betas"] == dominating
            assert check["bsrem_at_least_as_good"] == (
                check["curve_at_best_osem"] or bool(dominating)
            )
        assert record["bsrem_at_least_as_good_for_smallest_three"] == all(
            c["bsrem_at_least_as_good"] for c in checks.values()
        )


def test_contrast_noise_timing_only_times_each_method_in_rotated_rounds(tmp_path: Path) -> None:
    """``--timing-only`` writes only the timing: every method timed once per round (the order
    rotated), each run's iterations after the first counted, and the ratios from the medians."""
    out = tmp_path / "timing"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "contrast_noise.py"), "--quick", "--modality", "spect",
         "--timing-only", "--timing-repeats", "3", "--output", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (json_file,) = out.glob("contrast-noise-timing-spect-cpu-quick-*.json")
    assert not list(out.glob("*.png"))
    record = json.loads(json_file.read_text(encoding="utf-8"))
    assert record["benchmark"] == "contrast_noise_timing" and "osem" not in record
    t = record["timing"]
    assert t["repeats"] == 3
    names = list(t["samples_s"])
    assert t["run_order"] == [names[k:] + names[:k] for k in range(3)]  # each first once
    for name, samples in t["samples_s"].items():
        assert len(samples) == 3 * t["iterations_per_run"] and min(samples) > 0
        assert t["seconds_per_iteration"][name] == pytest.approx(statistics.median(samples))
    assert t["ratio_bsrem_to_osem"] == pytest.approx(
        t["seconds_per_iteration"]["bsrem"] / t["seconds_per_iteration"]["osem"]
    )
    assert "ratio" in proc.stdout
    bad = subprocess.run(
        [sys.executable, str(BENCHMARKS / "contrast_noise.py"), "--quick", "--timing-only",
         "--timing-repeats", "0", "--output", str(tmp_path / "bad")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--timing-repeats" in bad.stderr


def test_contrast_noise_contour_orbit_follows_the_phantom() -> None:
    """``--orbit contour``: the SPECT study's camera stands the clearance off the phantom's
    outline at every view (radii varying with the view, none cutting the body), with the views
    and times of the circular orbit, and the record says so."""
    bench = runpy.run_path(str(BENCHMARKS / "contrast_noise.py"), run_name="benchmark")
    s = bench["settings"]("spect", True)
    circular = bench["spect_study"](s, "cpu")
    contour = bench["spect_study"](replace(s, extra={**s.extra, "orbit": "contour"}), "cpu")
    ring = circular.draw(0)[0].geometry
    body = contour.draw(0)[0].geometry
    assert np.array_equal(body.angles_deg, ring.angles_deg)
    assert np.array_equal(body.start_times_s, ring.start_times_s)
    assert np.all(ring.radii_mm == s.extra["radius_mm"])
    assert np.all(body.radii_mm < ring.radii_mm) and np.ptp(body.radii_mm) > 20.0
    _, _, mu, _ = bench["_phantom"](s)
    expected = body_contour_radii(mu > 0, contour.grid, body.angles_deg, s.extra["clearance_mm"])
    assert np.array_equal(body.radii_mm, expected)
    assert contour.description["orbit"] == "contour"
    assert contour.description["orbit_radius_mm"]["min"] == pytest.approx(body.radii_mm.min())


def _point(cv: float, crc: float, **key: float) -> dict:
    """One curve point of the contrast-noise benchmark for one sphere "s" (two realisations)."""
    return {**key, "cv": cv, "crc": {"s": crc}, "crc_se": {"s": 0.0},
            "crc_per_realisation": {"s": [crc, crc]}}  # fmt: skip


def test_contrast_noise_cross_fitted_check_judges_each_pick_on_the_other_half() -> None:
    """The best OSEM configuration picked on one half of the realisations is judged on the
    other: on half 0 configuration A (1 it) is best, on half 1 B (2 it); each is then measured
    against BSREM's curve (0.20 at CV 0.10 on both halves) with the other half's values."""
    bench = runpy.run_path(str(BENCHMARKS / "contrast_noise.py"), run_name="benchmark")
    bsrem = [_point(0.05, 0.10, beta=1.0), _point(0.20, 0.40, beta=0.1)]
    half0 = [_point(0.10, 0.30, iterations=1, fwhm_mm=0.0),
             _point(0.10, 0.20, iterations=2, fwhm_mm=0.0)]  # fmt: skip
    half1 = [_point(0.10, 0.15, iterations=1, fwhm_mm=0.0),
             _point(0.10, 0.25, iterations=2, fwhm_mm=0.0)]  # fmt: skip
    result = bench["cross_fitted"]([(half0, bsrem), (half1, bsrem)], "s", "crc")
    first, second = result["folds"]
    assert (first["iterations"], second["iterations"]) == (1, 2)
    assert first["crc"] == 0.15 and first["margin"] == pytest.approx(0.05)
    assert second["crc"] == 0.20 and second["margin"] == pytest.approx(0.0)
    assert result["margin"] == pytest.approx(0.025)
    assert result["margin_se"] == pytest.approx(0.0)


def test_scaling_benchmark_quick_writes_its_cases_fits_and_figure(tmp_path: Path) -> None:
    _run("scaling.py", "--quick", out=tmp_path / "scaling")
    record = _record(tmp_path / "scaling")
    assert record["benchmark"] == "scaling" and record["quick"] is True
    series = {case["series"] for case in record["cases"]}
    assert series == {
        "SPECT fwd+back", "PET sinogram fwd+back", "PET sensitivity image", "LM-OSEM iteration"
    }  # fmt: skip
    for case in record["cases"]:
        assert case["median_s"] > 0 and case["peak_memory_bytes"] > 0, case["case"]
        assert case["seconds_per_unit"] == pytest.approx(case["median_s"] / case["work"])
    assert set(record["fitted_exponents"]) == series
    assert all(isinstance(p, float) for p in record["fitted_exponents"].values())
    (png,) = (tmp_path / "scaling").glob("*.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_scaling_benchmark_runs_one_modality(tmp_path: Path) -> None:
    _run("scaling.py", "--quick", "--only", "spect", out=tmp_path / "scaling")
    record = _record(tmp_path / "scaling")
    assert record["only"] == "spect"
    assert {case["series"] for case in record["cases"]} == {"SPECT fwd+back"}
    for case in record["cases"]:  # every view's attenuation cached at these tiny sizes
        assert case["attenuation_cached_views"] == int(case["case"].split(", ")[1].split()[0])


def test_scatter_benchmark_quick_reports_the_sss_share(tmp_path: Path) -> None:
    _run("scatter.py", "--quick", "--repeats", "1", out=tmp_path / "scatter")
    record = _record(tmp_path / "scatter")
    assert record["benchmark"] == "scatter" and record["quick"] is True
    (run,) = record["runs"]
    assert set(run["median_s"]) >= {"SSS simulate (non-TOF)", "SSS simulate (TOF)"}
    assert all(value > 0 for value in run["median_s"].values())
    assert 0.0 < run["sss_share"] < 1.0
    assert run["sss_round_s"] < run["scatter_sss_reconstruction_s"]


def test_prior_kernel_benchmark_quick_times_both_layouts_and_checks_them_equal(
    tmp_path: Path,
) -> None:
    """benchmarks/prior_kernels.py times value, gradient and Hessian of the RDP in both CPU loop
    layouts (it refuses to report layouts that disagree) and says which one the library uses."""
    _run("prior_kernels.py", "--quick", "--repeats", "1", out=tmp_path / "prior")
    record = _record(tmp_path / "prior")
    assert record["benchmark"] == "prior_kernels"
    cases = record["runs"]["cpu"]["cases"]
    assert {(c["field_of_view"], c["quantity"]) for c in cases} == {
        (fov, q) for fov in ("full", "cylinder") for q in ("gradient", "value", "hessian_diagonal")
    }
    for case in cases:
        assert case["rows_ms"] > 0 and case["pairs_ms"] > 0
        assert case["library_picks"] == "pairs"
