"""Smoke tests of the benchmark scripts: they run (tiny problems) and write their JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = pytest.mark.slow


def _run(script: str, *args: str, out: Path) -> dict:
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--devices", "cpu", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = list(out.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text(encoding="utf-8"))


def test_pet_benchmark_tiny(tmp_path: Path) -> None:
    record = _run("pet.py", "--tiny", out=tmp_path / "pet")
    assert record["benchmark"] == "pet"
    ops = record["runs"][0]["operations"]
    names = " | ".join(op["operation"] for op in ops)
    for part in ("LM TOF forward", "LM TOF back", "sensitivity image", "LM-OSEM", "sinogram"):
        assert part in names
    assert all(op["median_s"] > 0 and len(op["times_s"]) >= 1 for op in ops)


def test_spect_benchmark_small(tmp_path: Path) -> None:
    record = _run("spect.py", "--small", "--repeats", "1", out=tmp_path / "spect")
    assert record["benchmark"] == "spect"
    assert record["runs"][0]["median_s"]
