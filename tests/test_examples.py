"""Every script in examples/ runs headless (smoke test)."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import recon

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def test_examples_folder_is_not_empty():
    assert EXAMPLES, "examples/ has no scripts"


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(script), "--output", str(tmp_path), "--device", "cpu"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert list(tmp_path.iterdir()), "the example wrote nothing"


def test_quickstart_recovers_lesion_contrast(tmp_path, capsys):
    module = runpy.run_path(str(EXAMPLES[0].parent / "spect_quickstart.py"))
    ratios = module["main"](["--output", str(tmp_path), "--device", "cpu"])
    # Partial-volume loss and the post-filter keep recovered contrast below truth, but ordered.
    assert 3.5 < ratios["lesion_left"] < 6.5
    assert 1.8 < ratios["lesion_ant"] < 3.3


@pytest.mark.slow
def test_spect_dicom_ct_is_quantitative_through_the_files(tmp_path, capsys):
    module = runpy.run_path(str(EXAMPLES[0].parent / "spect_dicom_ct.py"))
    recovery = module["main"](["--output", str(tmp_path), "--device", "cpu"])
    # CT attenuation and TEW scatter correction read from the DICOM files restore the background.
    assert recovery["background"] == pytest.approx(1.0, abs=0.1)
    assert 0.5 < recovery["sphere_37mm"] < 1.2
    assert recovery["sphere_37mm"] > recovery["sphere_10mm"]


@pytest.mark.slow
def test_batch_folder_reports_the_planted_file_and_goes_on(tmp_path, capsys):
    module = runpy.run_path(str(EXAMPLES[0].parent / "batch_folder.py"))
    assert module["main"](["--output", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    outcomes = json.loads((tmp_path / "demo" / "batch_summary.json").read_text())
    status = {o["study"]: o["status"] for o in outcomes}
    assert status.pop("corrupt.dcm") == "failed (planted)"
    assert set(status.values()) == {"ok"} and len(status) == 3
    assert "is not a DICOM file" in capsys.readouterr().out
    # The same folder given as a user's input: the corrupt file is now a real failure.
    user = ["--input", str(tmp_path / "demo" / "input"), "--output", str(tmp_path / "user")]
    assert module["main"]([*user, "--device", "cpu"]) == 1


def test_stir_sinogram_example_is_quantitative_through_the_stir_file(tmp_path, capsys):
    module = runpy.run_path(str(EXAMPLES[0].parent / "pet_stir_sinogram.py"))
    result = module["main"](["--output", str(tmp_path), "--device", "cpu"])
    # Through STIR's file layout and conventions and back: Bq/mL in water and in the 37 mm
    # sphere's core (Poisson noise of 3 M counts; the sphere's core has a few hundred voxels).
    assert result["water_ratio"] == pytest.approx(1.0, abs=0.05)
    assert result["sphere_37mm_ratio"] == pytest.approx(1.0, abs=0.15)


@pytest.mark.slow
def test_pet_listmode_frames_agree_within_their_poisson_spread(tmp_path, capsys):
    """The example's claim: every frame shows the same activity, whatever its count rate.

    EM fixes ``Σ_j s_j x_j`` (``s`` the frame's sensitivity) to the frame's prompts ``P`` less
    its randoms estimate, whose total is the frame's delayeds ``D``: with ``g`` the geometric
    sensitivity (``s`` without the frame's time factor) ``Σ_j g_j x_j`` is the expected true rate
    at the reference time, the same in every frame. Its variance is Poisson's ``P + D``, plus at
    most ``n · D · (1 − D/P)`` because the last of the ``n`` subsets scales the trues among its
    own ``P/n`` prompts, a binomial share, by ``n``. The counts are read back from the listmode
    file the example wrote and ``g`` is computed here from its mu-map; any two frames must agree
    within three times their combined spread. (With the delayeds drawn uniformly in time while
    the prompt randoms decayed, as before, the first and last frames differed by 3.5%, over six
    times that spread.)
    """
    from recon.io import read_listmode

    module = runpy.run_path(str(EXAMPLES[0].parent / "pet_listmode_frames.py"))
    frames = module["main"](["--output", str(tmp_path), "--device", "cpu"])
    summary = json.loads((tmp_path / "recon" / "summary.json").read_text())
    grid = recon.ImageGrid(tuple(summary["grid"]["shape"]), tuple(summary["grid"]["voxel_mm"]))
    mu = np.load(tmp_path / "mu_511.npy")
    model = recon.PetListmodeModel(recon.PetScanner.preset("small"), grid, mu_map=mu, device="cpu")
    geometric = model.geometric_sensitivity().astype(np.float64)
    events = read_listmode(tmp_path / "c11.lm.npz").events
    rates, spreads = [], []
    for frame in frames:
        start_ms = frame["start_s"] * 1000.0
        window = events.time_window(start_ms, start_ms + frame["duration_s"] * 1000.0)
        prompts, delayeds = window.prompts().n_events, window.delayeds().n_events
        assert frame["prompts"] == prompts  # the reconstruction used all of the frame's prompts
        image = np.load(tmp_path / "recon" / f"frame_{frame['frame']:03d}.npy")
        rates.append(float((geometric * image).sum()))
        variance = prompts + delayeds + 8 * delayeds * (1.0 - delayeds / prompts)  # 8 subsets
        spreads.append(rates[-1] * np.sqrt(variance) / (prompts - delayeds))
    assert len(frames) == 4
    for f in range(4):
        for g in range(f + 1, 4):
            assert abs(rates[f] - rates[g]) < 3.0 * np.hypot(spreads[f], spreads[g]), (
                rates,
                spreads,
            )
