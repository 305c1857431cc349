"""`recon quant` reads what recon's own outputs say about themselves: the isotope, the units and
the times of an image that `recon spect` wrote come from the summary.json beside it (the output
folder's manifest vouches for both), and an Interfile header's unit is taken as stated."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.io import write_interfile
from tests.hostile_corpus import build_sandbox

# nm_tomo_dataset's defaults (recon.simulate.dicom_study): injection 08:30, acquisition 11:00 on
# 2024-03-05, Radionuclide Total Dose 740 MBq of Tc-99m.
INJECTION = datetime(2024, 3, 5, 8, 30)
ACQUISITION = datetime(2024, 3, 5, 11, 0)


@pytest.fixture(scope="module")
def spect_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_sandbox(tmp_path_factory.mktemp("sandbox"))
    out = root / "recon_out"
    args = ["spect", str(root / "nm.dcm"), "--sensitivity", "90", "--iterations", "1",
            "--subsets", "2", "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    return out


def _study(folder: Path, image: Path, extra_study: str = "", extra_tp: str = "") -> Path:
    path = folder / "study.toml"
    path.write_text(
        f'[study]\n{extra_study}\n[[timepoints]]\nimage = "{image}"\n{extra_tp}\n'
        '[[vois]]\nname = "centre"\nsphere = { centre_mm = [0, 0, 0], diameter_mm = 20 }\n',
        encoding="utf-8",
    )
    return path


def test_the_summary_says_what_the_values_refer_to(spect_output: Path) -> None:
    timing = json.loads((spect_output / "summary.json").read_text())["timing"]
    assert timing == {
        "modality": "NM", "acquisition_datetime": ACQUISITION.isoformat(),
        "values_at": ACQUISITION.isoformat(), "decay_correction": "START",
        "injection_datetime": INJECTION.isoformat(), "injected_activity_bq": 740e6,
    }  # fmt: skip


def test_quant_takes_isotope_units_and_times_from_recons_summary(
    spect_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _study(tmp_path, spect_output / "image.hv")
    assert main(["quant", str(study), "-o", str(tmp_path / "report"), "--no-plots"]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    text = json.dumps(summary)
    assert "recon summary.json" in text  # the sources say where each fact came from
    tacs = json.loads((tmp_path / "report" / "tacs.json").read_text())
    hours = [row["time_h"] for row in tacs]
    assert hours and all(h == pytest.approx(2.5) for h in hours)  # 11:00 minus 08:30


def test_a_disagreeing_study_file_is_refused_naming_both(
    spect_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = _study(tmp_path, spect_output / "image.hv", extra_tp="hours_after_injection = 5")
    assert main(["quant", str(study), "-o", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "hours_after_injection = 5 disagrees with the recon summary.json" in err
    assert "2.5 h after the injection" in err and not (tmp_path / "report").exists()


def test_an_uncalibrated_recon_image_is_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "sandbox").mkdir()
    root = build_sandbox(tmp_path / "sandbox")
    out = root / "raw"
    args = ["spect", str(root / "nm.dcm"), "--iterations", "1", "--subsets", "2",
            "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    study = _study(tmp_path, out / "image.hv")
    assert main(["quant", str(study), "-o", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert "counts/s" in err and "calibration_factor" in err
    study = _study(tmp_path, out / "image.hv", extra_tp="calibration_factor = 2.0")
    assert main(["quant", str(study), "-o", str(tmp_path / "report2"), "--no-plots"]) == 0


def test_interfile_units_are_taken_as_stated(tmp_path: Path, capsys) -> None:
    grid = recon.ImageGrid((8, 16, 16), 5.0)
    image = recon.Image(np.ones(grid.shape, np.float32), grid, units="counts/s (uncalibrated)",
                        isotope="In-111")  # fmt: skip
    header = write_interfile(tmp_path / "raw.hv", image)
    study = _study(
        tmp_path,
        header,
        "injection_time = 2026-03-01T09:00:00",
        "hours_after_injection = 4",
    )
    assert main(["quant", str(study), "-o", str(tmp_path / "report")]) == 2
    assert "counts/s (uncalibrated)" in capsys.readouterr().err
