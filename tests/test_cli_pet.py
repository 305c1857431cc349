"""`recon pet` on a simulated listmode file: frames, TOML configuration, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.commands.common import parse_frames
from recon.io.listmode_file import write_listmode
from recon.pet import simulate_listmode
from recon.simulate.phantoms import uniform_cylinder


@pytest.fixture(scope="module")
def listmode_file(tmp_path_factory):
    scanner = recon.PetScanner.preset("small")
    grid = recon.ImageGrid((15, 64, 64), (4.0, 3.7, 3.7))
    activity = uniform_cylinder(grid, radius_mm=80, length_mm=50, value=1.0)
    model = recon.PetSinogramModel(
        scanner, grid, isotope="C-11", frame_duration_s=600.0, device="cpu"
    )
    activity *= 1e5 / float(model.forward(activity).sum())
    delayed = np.full(model.layout.shape, 0.05, np.float32)
    events = simulate_listmode(model, activity, 600.0, np.random.default_rng(0), delayed=delayed)
    path = tmp_path_factory.mktemp("lm") / "scan.npz"
    write_listmode(path, events, scanner, isotope="C-11")
    return path


def test_dynamic_frames_are_decay_corrected(listmode_file, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--frames", "3x200", "--iterations", "2", "--device", "cpu"]
    assert main(["pet", str(listmode_file), "-o", str(out), *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    frames = summary["frames"]
    assert [f["start_s"] for f in frames] == [0.0, 200.0, 400.0]
    # Fewer decays in later frames, but the same decay-corrected activity.
    assert frames[0]["prompts"] > frames[2]["prompts"]
    means = [float(np.load(out / f"frame_{i:03d}.npy").mean()) for i in range(3)]
    assert max(means) / min(means) < 1.05
    assert frames[2]["decay_factor"] > frames[0]["decay_factor"] > 1.0
    assert "decay_factor" in capsys.readouterr().out
    # No μ-map and a grid centred on the scanner: the axial mirror is exact, and said.
    assert summary["sensitivity_image"].startswith("computed")
    assert summary["sensitivity_symmetry"] == "axial mirror"


def test_listmode_frames_are_written_with_their_geometry(listmode_file, tmp_path, capsys):
    """Each frame as Interfile on its grid and all frames as one dynamic DICOM PET series, with
    the same values as frame_NNN.npy and the frame timing of the summary."""
    out = tmp_path / "out"
    args = ["--frames", "2x300", "--iterations", "1", "--subsets", "2", "--device", "cpu"]
    assert main(["pet", str(listmode_file), "-o", str(out), *args]) == 0
    assert "records no acquisition start" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    shape, voxel = tuple(summary["grid"]["shape"]), tuple(summary["grid"]["voxel_mm"])
    dynamic = recon.io.read_dicom_image(out / "dicom")
    assert len(dynamic) == 2
    for index, frame in enumerate(dynamic):
        values = np.load(out / f"frame_{index:03d}.npy")
        interfile = recon.io.read_interfile(out / f"frame_{index:03d}.hv")
        for image in (interfile, frame):
            assert image.grid.shape == shape == values.shape
            np.testing.assert_allclose(image.grid.voxel_size_mm, voxel, rtol=1e-5)
            np.testing.assert_allclose(image.grid.origin, recon.ImageGrid(shape, voxel).origin,
                                       atol=1e-3)  # fmt: skip
        np.testing.assert_array_equal(np.asarray(interfile), values)
        # DICOM stores 16-bit integers with a per-slice scale: equal to 1/32767 of each slice's max.
        np.testing.assert_allclose(np.asarray(frame), values, atol=values.max() / 3e4)
        assert frame.info["frame_start_s"] == summary["frames"][index]["start_s"]
        assert frame.info["frame_duration_s"] == summary["frames"][index]["duration_s"]
        assert frame.reference_time_s == 0.0


def test_options_from_toml(listmode_file, tmp_path):
    config = tmp_path / "pet.toml"
    config.write_text('[pet]\nframes = "0:300"\niterations = 1\nsubsets = 4\ndevice = "cpu"\n')
    out = tmp_path / "out"
    assert main(["pet", str(listmode_file), "-o", str(out), "--config", str(config)]) == 0
    assert len(json.loads((out / "summary.json").read_text())["frames"]) == 1
    config.write_text("[pet]\niteraciones = 2\n")
    assert main(["pet", str(listmode_file), "-o", str(out), "--config", str(config)]) == 2


def test_frame_specifications():
    assert parse_frames(None, 600.0) == [(0.0, 600.0)]
    assert parse_frames("2x30", 600.0) == [(0.0, 30.0), (30.0, 30.0)]
    assert parse_frames("0:60,60:180", 600.0) == [(0.0, 60.0), (60.0, 120.0)]
    with pytest.raises(recon.InputError, match="start:stop"):
        parse_frames("ten minutes", 600.0)
    with pytest.raises(recon.InputError, match="stop > start"):
        parse_frames("60:30", 600.0)


def test_bad_input_is_one_line(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"garbage")
    result = subprocess.run(
        [sys.executable, "-m", "recon", "pet", str(junk), "-o", str(tmp_path / "o")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not a recon listmode file" in result.stderr
    assert "Traceback" not in result.stderr


def test_petsird_input(tmp_path, capsys):
    pytest.importorskip("petsird")
    from tests.test_petsird import _write

    path = _write(tmp_path / "scan.petsird")
    out = tmp_path / "out"
    args = ["--iterations", "1", "--subsets", "1", "--device", "cpu"]
    assert main(["pet", str(path), "-o", str(out), *args]) == 0  # scanner fitted to the file
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"][0]["prompts"] > 0
    # The file's crystals are 20 mm deep, so the "small" preset (no depth) does not match them.
    other = tmp_path / "out2"
    assert main(["pet", str(path), "-o", str(other), "--scanner", "small", *args]) == 2
    assert "does not match the given scanner" in capsys.readouterr().err


def test_resolution_model_options(listmode_file, tmp_path, capsys):
    """--psf-mm puts a Gaussian inside the projector (a different, sharper image with the same
    total), --psf scanner the preset's published resolution; conflicting or impossible requests
    are refused in one line."""
    common = ["--iterations", "2", "--subsets", "2", "--device", "cpu"]
    images = {}
    for name, extra in (("none", []), ("mm", ["--psf-mm", "6"]), ("scanner", ["--psf", "scanner"])):
        out = tmp_path / name
        assert main(["pet", str(listmode_file), "-o", str(out), *common, *extra]) == 0
        summary = json.loads((out / "summary.json").read_text())
        images[name] = (np.load(out / "frame_000.npy"), summary["resolution_model"])
    assert images["none"][1] is None
    assert images["mm"][1].startswith("Gaussian PSF, FWHM 6 mm transaxial")
    expected = recon.PetScanner.preset("small").resolution.describe()
    assert images["scanner"][1] == expected
    plain, blurred = images["none"][0], images["mm"][0]
    assert abs(blurred.sum() / plain.sum() - 1) < 0.03
    assert not np.allclose(plain, blurred, rtol=1e-3)
    capsys.readouterr()
    bad = (["--psf-mm", "6", "--psf", "scanner"], "not both"), (["--psf-mm", "0"], "psf-mm")
    for extra, message in bad:
        out = tmp_path / "bad"
        assert main(["pet", str(listmode_file), "-o", str(out), *common, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and not out.exists()


def test_radial_bins_are_checked_at_the_option(listmode_file, tmp_path, capsys):
    """An even or too large --radial-bins is refused in one line that names the option (not the
    layout's parameter), and nothing is written."""
    crystals = recon.PetScanner.preset("small").crystals_per_ring
    common = ["--iterations", "1", "--subsets", "1", "--device", "cpu"]
    for value in ("10", str(crystals + 1)):
        out = tmp_path / f"bad{value}"
        assert (
            main(["pet", str(listmode_file), "-o", str(out), *common, "--radial-bins", value]) == 2
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--radial-bins must be odd" in err[0] and not out.exists()
        assert "n_radial" not in err[0]
