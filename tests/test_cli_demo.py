"""The `recon` command: the demo end to end, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from recon.cli import main


@pytest.mark.slow
def test_demo_writes_image_png_and_recovery(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--device", "cpu", "--iterations", "4"]) == 0
    printed = capsys.readouterr().out
    assert "sphere_37mm" in printed and "recovery" in printed
    image = np.load(out / "spect_demo.npy")
    assert image.shape == (40, 72, 72) and image.dtype == np.float32
    assert (out / "spect_demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "spect_demo.json").read_text())
    assert summary["units"] == "Bq/mL"
    recovery = summary["recovery_coefficients"]
    # Partial-volume effects: recovery grows with sphere size; the largest sphere is near truth.
    assert 0.6 < recovery["sphere_37mm"] < 1.1
    assert recovery["sphere_37mm"] > recovery["sphere_10mm"]
    assert summary["background_ratio"] == pytest.approx(1.0, abs=0.1)
    assert not list(out.glob("*.tmp")), "temporary files left behind"


def test_cli_error_is_one_line_and_nonzero(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "recon", "demo", "-o", str(tmp_path), "--iterations", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recon: error:") and "iterations" in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_gpu_request_without_gpu_fails_cleanly(tmp_path, monkeypatch):
    import recon.backend

    if recon.backend.gpu_available():
        pytest.skip("a GPU is available here, so device=gpu does not fail")
    result = subprocess.run(
        [sys.executable, "-m", "recon", "demo", "-o", str(tmp_path), "--device", "gpu"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cuda12" in result.stderr


@pytest.mark.slow
def test_pet_demo_writes_image_and_recovery(tmp_path, capsys):
    out = tmp_path / "pet"
    assert main(["demo", "--pet", "-o", str(out), "--device", "cpu", "--iterations", "2"]) == 0
    assert "sphere_37mm" in capsys.readouterr().out
    image = np.load(out / "pet_demo.npy")
    assert image.shape == (16, 64, 64)
    summary = json.loads((out / "pet_demo.json").read_text())
    assert summary["units"] == "Bq/mL" and summary["isotope"] == "F-18"
    recovery = summary["recovery_coefficients"]
    assert 0.7 < recovery["sphere_37mm"] < 1.1
    assert recovery["sphere_37mm"] > recovery["sphere_10mm"]
    assert summary["background_ratio"] == pytest.approx(1.0, abs=0.1)
    # Scatter is estimated from the data (SSS + tail fit), not handed over from the simulation:
    # the estimated fraction of the prompts (less randoms) matches the simulated scatter/trues.
    scatter = summary["scatter"]
    simulated = scatter["simulated_fraction"] / (1.0 + scatter["simulated_fraction"])
    assert scatter["estimated_fraction"] == pytest.approx(simulated, rel=0.15)
    assert not scatter["notes"]  # tails found: no fallback taken
