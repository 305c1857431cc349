"""What the commands tell the user: orbits, default grids, fallbacks, clipped bins, missing CT
slices, progress without a terminal, numba compilation, and --help with its defaults."""

from __future__ import annotations

import json
import logging
import types
from pathlib import Path

import numba
import numpy as np
import pytest

import recon
from recon.cli import main
from recon.commands.info import describe_orbit
from tests.hostile_corpus import N_COLS, N_ROWS, N_VIEWS, PIXEL, build_sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sandbox(tmp_path_factory.mktemp("sandbox"))


def test_orbits_are_described_across_the_360_degree_wrap() -> None:
    clockwise = np.mod(np.arange(60) * 6.0 + 180.0, 360.0)  # wraps past 360 half-way
    text = describe_orbit(clockwise)
    assert "start 180.00" in text and "step 6.000 clockwise" in text and "over 360.0" in text
    counter = np.mod(10.0 - np.arange(30) * 3.0, 360.0)
    assert "step 3.000 counter-clockwise" in describe_orbit(counter)
    assert "over 90.0" in describe_orbit(counter)
    two_heads = np.concatenate([np.arange(0, 180, 6.0), np.arange(180, 360, 6.0) + 3.0])
    assert "steps vary" in describe_orbit(two_heads)


def test_info_shows_the_orbit_and_the_grid_a_mu_map_must_match(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(sandbox / "nm.dcm")]) == 0
    printed = capsys.readouterr().out
    assert f"step {360 / N_VIEWS:.3f} clockwise" in printed
    grid_line = next(line for line in printed.splitlines() if "recon spect grid" in line)
    shape = (N_ROWS, N_COLS, N_COLS)
    assert f"{shape[0]} x {shape[1]} x {shape[2]} voxels of {PIXEL:g} x {PIXEL:g}" in grid_line
    # The grid it names is the one `recon spect` uses: a .npy mu-map of that shape is accepted.
    np.save(tmp_path / "mu.npy", np.full(shape, 0.015, np.float32))
    args = ["spect", str(sandbox / "nm.dcm"), "--mu", str(tmp_path / "mu.npy"), "--iterations",
            "1", "--subsets", "2", "--device", "cpu", "-o", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["attenuation"] is True


def test_info_names_the_pet_grid(sandbox: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(sandbox / "scan.npz")]) == 0
    assert "recon pet grid (z, y, x)" in capsys.readouterr().out


def test_scatter_falls_back_to_none_with_a_note(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["spect", str(sandbox / "nm1.dcm"), "--iterations", "1", "--subsets", "2",
            "--device", "cpu", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "recon: note:" in err and "no scatter window" in err and "--scatter none" in err
    assert json.loads((out / "summary.json").read_text())["scatter"] == "none"


def test_progress_is_one_line_per_iteration_without_a_terminal(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["spect", str(sandbox / "nm.dcm"), "--iterations", "3", "--subsets", "4",
            "--device", "cpu", "-o", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().err.splitlines()
    progress = [line for line in lines if line.startswith("OSEM: iteration")]
    assert [line.split(" done")[0] for line in progress] == [
        "OSEM: iteration 1/3", "OSEM: iteration 2/3", "OSEM: iteration 3/3"
    ]  # fmt: skip


def test_negative_sinogram_bins_are_reported(
    sandbox: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recon.io import layout_to_stir_sinogram, write_interfile

    scanner = recon.PetScanner(n_rings=2, crystals_per_ring=64, radius_mm=100.0,
                               ring_spacing_mm=8.0)  # fmt: skip
    layout = recon.SinogramLayout(scanner, n_radial=21)
    counts = np.random.default_rng(3).normal(2.0, 2.0, layout.shape).astype(np.float32)
    n_negative = int((counts < 0).sum())
    header = write_interfile(tmp_path / "pre.hs", layout_to_stir_sinogram(counts, layout))
    out = tmp_path / "out"
    args = ["pet", str(header), "--iterations", "1", "--subsets", "2", "--device", "cpu",
            "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"{n_negative} of {counts.size} bins ({n_negative / counts.size:.1%})" in err
    assert json.loads((out / "summary.json").read_text())["negative_bins_set_to_0"] == n_negative


def test_a_missing_ct_slice_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from recon.io.ct import read_ct_series
    from recon.simulate.dicom_study import ct_series, write_series

    slices = ct_series(np.zeros((8, 16, 16)), pixel_spacing=(4.0, 4.0),
                       first_position=(-30.0, -30.0, -14.0), slice_spacing=4.0)  # fmt: skip
    write_series(slices, tmp_path / "full")
    with caplog.at_level(logging.WARNING, logger="recon"):
        read_ct_series(tmp_path / "full")
    assert not caplog.records
    write_series(slices[:3] + slices[4:], tmp_path / "gap")
    with caplog.at_level(logging.WARNING, logger="recon"):
        read_ct_series(tmp_path / "gap")
    assert len(caplog.records) == 1
    assert "gap of 8.00 mm" in caplog.text and "about 1 slice(s) missing" in caplog.text


def test_help_lists_every_option_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spect", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    expected = ("--iterations ITERATIONS iterations (default: 4 with osem, 30 with bsrem",
                "(default: 8)",
                "default: tew when", "--overwrite", "default: start")  # fmt: skip
    for fragment in expected:
        assert fragment in text, fragment
    for name in recon.Collimator.preset_names():
        assert name in text
    assert main(["pet", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 3 with osem" in text and "--shape Z Y X" in text and "recon info FILE" in text


def test_config_paths_are_relative_to_the_config_file(
    sandbox: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "settings"
    folder.mkdir()
    np.save(folder / "mu.npy", np.full((N_ROWS, N_COLS, N_COLS), 0.015, np.float32))
    (folder / "recon.toml").write_text(
        '[spect]\nmu = "mu.npy"\niterations = 1\nsubsets = 2\ndevice = "cpu"\n'
    )
    monkeypatch.chdir(tmp_path)  # not the config's folder
    args = ["spect", str(sandbox / "nm.dcm"), "--config", "settings/recon.toml", "-o", "out"]
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["attenuation"] is True


def test_the_first_numba_compilation_is_announced_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from recon._jit import announce_compilation

    def add(a, b):
        return a + b

    module = types.ModuleType("recon_test_kernels")
    module.add = numba.njit(cache=False)(add)  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="recon.progress"):
        announce_compilation(module, "tests")
        announce_compilation(module, "tests")
    assert [r.getMessage() for r in caplog.records].count(
        "compiling the CPU kernels for tests (numba; once, then cached: up to a minute)"
    ) == 1
    caplog.clear()
    compiled = types.ModuleType("recon_test_compiled")
    compiled.add = numba.njit(cache=False)(add)  # type: ignore[attr-defined]
    compiled.add(1, 2)
    with caplog.at_level(logging.INFO, logger="recon.progress"):
        announce_compilation(compiled, "tests")
    assert not caplog.records


def test_compilation_is_not_announced_for_kernels_a_run_never_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A module whose used kernels are compiled says nothing although others (never called by
    this use) are not: the notice used to appear on every run. Named kernels are judged by
    themselves, and a module says it once however many of its kernels compile."""
    from recon._jit import announce_compilation

    def add(a, b):
        return a + b

    used = types.ModuleType("recon_test_partly_compiled")
    used.add = numba.njit(cache=False)(add)  # type: ignore[attr-defined]
    used.unused = numba.njit(cache=False)(add)  # type: ignore[attr-defined]
    used.add(1, 2)
    fresh = types.ModuleType("recon_test_named_kernels")
    fresh.first = numba.njit(cache=False)(add)  # type: ignore[attr-defined]
    fresh.second = numba.njit(cache=False)(add)  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="recon.progress"):
        announce_compilation(used, "tests")
        assert not caplog.records
        announce_compilation(used, "tests", [used.add])  # type: ignore[attr-defined]
        assert not caplog.records
        announce_compilation(fresh, "tests", [fresh.first])  # type: ignore[attr-defined]
        announce_compilation(fresh, "tests", [fresh.second])  # type: ignore[attr-defined]
    assert len(caplog.records) == 1
