"""`recon spect|pet --algorithm bsrem|oslmap`: penalised likelihood from the command line and
TOML, with the objective of every iteration in summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon.cli import main
from tests.hostile_corpus import build_sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sandbox(tmp_path_factory.mktemp("sandbox"))


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_spect_bsrem_records_a_rising_objective(sandbox: Path, tmp_path: Path) -> None:
    out = tmp_path / "bsrem"
    args = ["spect", str(sandbox / "nm.dcm"), "--algorithm", "bsrem", "--beta", "0.5",
            "--iterations", "6", "--subsets", "4", "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    summary = _summary(out)
    assert summary["algorithm"] == "BSREM" and summary["beta"] == 0.5
    assert summary["prior"].startswith("RelativeDifferencePrior(beta=0.5, gamma=2")
    assert summary["prior_weights"].startswith("sensitivity")  # the default
    objective = summary["objective"]
    assert len(objective) == 6 and objective[-1] > objective[0]
    assert np.all(np.isfinite(np.load(out / "image.npy")))


def test_options_from_toml_and_a_smoother_image_with_a_larger_beta(
    sandbox: Path, tmp_path: Path
) -> None:
    spread = []
    for beta, prior in ((0.01, "rdp"), (10.0, "rdp"), (1.0, "quadratic")):
        config = tmp_path / f"map{beta}.toml"
        config.write_text(
            f'[spect]\nalgorithm = "bsrem"\nbeta = {beta}\nprior = "{prior}"\niterations = 8\n'
            'subsets = 4\ndevice = "cpu"\nno-psf = true\nscatter = "none"\n'
        )
        out = tmp_path / f"out{beta}"
        assert main(["spect", str(sandbox / "nm.dcm"), "--config", str(config), "-o",
                     str(out)]) == 0  # fmt: skip
        name = "RelativeDifferencePrior" if prior == "rdp" else "QuadraticPrior"
        assert _summary(out)["prior"].startswith(name)
        core = np.load(out / "image.npy")[2:-2, 4:-4, 4:-4]
        spread.append(float(np.std(np.diff(core, axis=2)) / core.mean()))
    assert spread[1] < 0.5 * spread[0]


def test_pet_listmode_and_sinogram_with_map(sandbox: Path, tmp_path: Path) -> None:
    out = tmp_path / "lm"
    args = ["pet", str(sandbox / "scan.npz"), "--algorithm", "oslmap", "--beta", "0.01",
            "--iterations", "3", "--subsets", "2", "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    frame = _summary(out)["frames"][0]
    assert frame["algorithm"] == "OSL-MAP" and len(frame["objective"]) == 3
    out = tmp_path / "sino"
    args = ["pet", str(sandbox / "scan.hs"), "--algorithm", "bsrem", "--beta", "0.1",
            "--iterations", "4", "--subsets", "2", "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    assert _summary(out)["algorithm"] == "BSREM" and len(_summary(out)["objective"]) == 4


def test_oslmap_says_when_beta_is_too_large_for_it(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "osl"
    args = ["spect", str(sandbox / "nm.dcm"), "--algorithm", "oslmap", "--beta", "100",
            "--iterations", "2", "--subsets", "2", "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    floored = _summary(out)["floored_voxels"]
    assert len(floored) == 2 and floored[-1] > 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("recon:")]
    assert any(line.startswith("recon: note: OSL-MAP floored its denominator in") for line in notes)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algorithm", "bsrem"], "needs --beta"),
        (["--beta", "1"], "--beta applies to --algorithm bsrem or oslmap"),
        (["--algorithm", "mlem"], "algorithm"),
        (["--algorithm", "bsrem", "--beta", "-1"], "beta"),
        (["--algorithm", "bsrem", "--beta", "1", "--epsilon", "0"], "epsilon"),
        (["--algorithm", "bsrem", "--beta", "1", "--prior", "tv"], "prior"),
        (["--algorithm", "bsrem", "--beta", "nan"], "beta"),
        (["--algorithm", "bsrem", "--beta", "inf"], "beta"),
        (["--algorithm", "oslmap", "--beta", "100", "--gamma", "-2"], "gamma"),
        (["--algorithm", "BSREM", "--beta", "1"], "algorithm"),
        # a prior's option where it would be ignored: no prior (OSEM), or another prior
        (["--gamma", "4"], "--gamma applies to --algorithm bsrem or oslmap, not to osem"),
        (["--prior", "quadratic"], "--prior applies to --algorithm bsrem or oslmap"),
        (
            ["--algorithm", "bsrem", "--beta", "1", "--prior", "quadratic", "--gamma", "4"],
            "--gamma applies to the relative difference prior",
        ),
        (
            ["--algorithm", "bsrem", "--beta", "1", "--prior", "quadratic", "--epsilon", "1"],
            "--epsilon applies to the relative difference prior",
        ),
    ],
)
def test_bad_map_options_are_refused(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra, message
) -> None:
    out = tmp_path / "out"
    assert main(["spect", str(sandbox / "nm.dcm"), *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not out.exists()


def test_kappa_choice_is_applied_recorded_and_checked(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--kappa sensitivity gives another image than the default (hessian), and says so in the
    summary; --kappa with OSEM and an unknown choice are refused in one line."""
    common = ["spect", str(sandbox / "nm.dcm"), "--algorithm", "bsrem", "--beta", "1",
              "--iterations", "4", "--subsets", "4", "--device", "cpu"]  # fmt: skip
    images = {}
    for choice in ("hessian", "sensitivity"):
        out = tmp_path / choice
        assert main([*common, "--kappa", choice, "-o", str(out)]) == 0
        assert _summary(out)["prior_weights"].startswith(choice)
        images[choice] = np.load(out / "image.npy")
    difference = np.abs(images["hessian"] - images["sensitivity"]).max()
    assert difference > 1e-3 * images["sensitivity"].max()
    capsys.readouterr()
    out = tmp_path / "osem"
    assert main(["spect", str(sandbox / "nm.dcm"), "--kappa", "hessian", "-o", str(out)]) == 2
    assert "--kappa applies to --algorithm bsrem or oslmap" in capsys.readouterr().err
    assert not out.exists()
    assert main([*common, "--kappa", "fisher", "-o", str(out)]) == 2
    assert "fisher" in capsys.readouterr().err and not out.exists()


def test_hessian_weights_that_cannot_be_taken_fail_in_one_line(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """Where the curvature overflows (counts where the model expects almost nothing), --kappa
    hessian is the run's one-line error and no output folder is left."""
    from recon.errors import NumericalError

    def overflowing(*args):
        raise NumericalError("hessian_kappa: the curvature overflowed float32")

    monkeypatch.setattr("recon.algorithms.priors.hessian_kappa", overflowing)
    out = tmp_path / "named"
    capsys.readouterr()
    args = ["spect", str(sandbox / "nm.dcm"), "--algorithm", "bsrem", "--beta", "1",
            "--kappa", "hessian", "--iterations", "2", "--subsets", "2", "--device", "cpu",
            "-o", str(out)]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("recon: error:")]
    assert errors == ["recon: error: hessian_kappa: the curvature overflowed float32"]
    assert "Traceback" not in err and not out.exists()


def test_a_prior_option_in_toml_without_a_prior_is_refused(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TOML file that sets γ for OSEM (the prior's option would be silently ignored) is
    refused in one line, as on the command line, and no output folder is made."""
    config = tmp_path / "osem.toml"
    config.write_text('[spect]\nalgorithm = "osem"\ngamma = 2.0\n')
    out = tmp_path / "out"
    assert main(["spect", str(sandbox / "nm.dcm"), "--config", str(config), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gamma applies to --algorithm bsrem or oslmap" in err[0]
    assert not out.exists()
