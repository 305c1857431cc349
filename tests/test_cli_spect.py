"""`recon spect` and `recon info` on a synthetic DICOM NM study with a CT and TEW windows."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

import recon
from recon.cli import main
from recon.simulate.phantoms import sphere_mask, uniform_cylinder
from tests.dicom_factory import ct_series, nm_tomo_dataset, save, write_series

PIXEL = 6.0
N_U, N_V, N_VIEWS, STEP = 32, 12, 60, 6.0


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One head, CW from 0°: DICOM frames made from the projector's own projections."""
    folder = tmp_path_factory.mktemp("study")
    grid = recon.ImageGrid((N_V, N_U, N_U), PIXEL)
    activity = uniform_cylinder(grid, radius_mm=60, length_mm=60, value=1.0)
    activity[sphere_mask(grid, (36.0, 0.0, 0.0), 24.0)] = 5.0  # hot lesion at patient left
    mu = 0.0154 * (uniform_cylinder(grid, radius_mm=60, length_mm=72) > 0.5)
    alpha = 0.0 - np.arange(N_VIEWS) * STEP  # CW: decreasing DICOM angle
    geometry = recon.SpectGeometry(
        angles_deg=np.mod(180.0 - alpha, 360.0), radii_mm=250.0, n_u=N_U, n_v=N_V,
        pixel_size_mm=PIXEL, durations_s=np.full(N_VIEWS, 20.0),
    )  # fmt: skip
    model = recon.SpectModel(geometry, grid, mu_map=mu, collimator=recon.Collimator.preset("LEHR"),
                             isotope="Tc-99m", device="cpu")  # fmt: skip
    primary = np.asarray(model.forward(activity)) * 2.0  # stays well inside uint16
    assert primary.max() < 3e4
    rng = np.random.default_rng(0)
    scatter = np.full_like(primary, 0.2 * primary.mean())
    peak = rng.poisson(primary + scatter)
    lower = rng.poisson(scatter * 2 * 6.0 / 28.0)
    upper = np.zeros_like(peak)
    frames = np.stack([peak, lower, upper])[:, None, :, ::-1, :].astype(np.uint16)  # head row first
    frame_of_reference = generate_uid()
    nm = nm_tomo_dataset(
        frames, angular_step_deg=STEP, start_angles_deg=(0.0,), direction="CW",
        pixel_spacing=(PIXEL, PIXEL), frame_duration_ms=20000.0, radial_positions=250.0,
        windows=(("EM", 126.0, 154.0), ("LOW", 120.0, 126.0), ("UP", 154.0, 160.0)),
        frame_of_reference_uid=frame_of_reference,
    )  # fmt: skip
    nm_path = save(nm, folder / "nm.dcm")
    hu = np.full((30, 60, 60), -1000.0)
    z, y, x = np.meshgrid(np.arange(30), np.arange(60), np.arange(60), indexing="ij")
    inside = np.hypot((x - 29.5) * 3.0, (y - 29.5) * 3.0) < 60
    hu[inside] = 0.0
    ct_dir = folder / "ct"
    ct_dir.mkdir()
    slices = ct_series(
        hu, pixel_spacing=(3.0, 3.0), first_position=(-88.5, -88.5, -43.5), slice_spacing=3.0,
        frame_of_reference_uid=frame_of_reference,
    )  # fmt: skip
    write_series(slices, ct_dir)
    return nm_path, ct_dir, grid


def test_spect_command_end_to_end(study, tmp_path, capsys):
    nm_path, ct_dir, grid = study
    out = tmp_path / "out"
    assert main(["spect", str(nm_path), "--ct", str(ct_dir), "--iterations", "3", "-o", str(out),
                 "--device", "cpu"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attenuation"] is True and summary["scatter"] == "tew"
    assert summary["isotope"] == "Tc-99m" and summary["collimator"] == "LEHR"
    image = np.load(out / "image.npy")

    # The lesion was put at patient left (+x): the reconstruction must have it there.
    def mean_at(x, y):
        return image[sphere_mask(grid, (x, y, 0.0), 24.0)].mean()

    lesion = mean_at(36.0, 0.0)
    for mirror in ((-36.0, 0.0), (0.0, 36.0), (0.0, -36.0)):
        assert lesion > 2.0 * mean_at(*mirror), mirror
        # Background: activity 1 simulated at twice the count rate, so 2 after CT-based
        # attenuation and TEW scatter correction.
        assert mean_at(*mirror) == pytest.approx(2.0, rel=0.1)
    series = sorted((out / "dicom").iterdir())
    ds = pydicom.dcmread(series[0])
    assert (
        ds.Modality == "NM"
        and ds.FrameOfReferenceUID == pydicom.dcmread(nm_path).FrameOfReferenceUID
    )
    assert (out / "image.hv").exists() and (out / "image.png").exists()
    captured = capsys.readouterr()
    assert "tew" in captured.out
    assert "no scatter window above" not in captured.err  # UP adjoins EM: a two-sided TEW
    # The Interfile copy is a SPECT image in the summary's units, and recon info says so.
    header = (out / "image.hv").read_text()
    assert "!imaging modality := nucmed" in header and "!type of data := Tomographic" in header
    assert f"quantification units := 1 {summary['units']}" in header
    interfile_image = recon.io.read_interfile_image(out / "image.hv")
    assert interfile_image.units == summary["units"] and interfile_image.info["modality"] == "NM"
    assert interfile_image.grid.same_as(grid)
    np.testing.assert_array_equal(np.asarray(interfile_image), image)
    assert main(["info", str(out / "image.hv")]) == 0
    printed = capsys.readouterr().out
    assert "NM" in printed and summary["units"] in printed


def test_spect_with_a_stir_style_mu_map(study, tmp_path, capsys):
    """--mu with an Interfile map in 1/cm on its own (finer, shifted) grid, as STIR and CASToR
    write them: resampled onto the reconstruction grid, it corrects attenuation like the CT."""
    nm_path, _, grid = study
    fine = recon.ImageGrid((40, 70, 70), 2.0, origin=(-39.0, -69.0, -69.0))
    mu_cm = 0.154 * (uniform_cylinder(fine, radius_mm=60, length_mm=72) > 0.5)
    mu_path = recon.io.write_interfile(tmp_path / "mu.hv", recon.Image(mu_cm, fine))
    out = tmp_path / "out"
    args = ["spect", str(nm_path), "--mu", str(mu_path), "--iterations", "3", "-o", str(out),
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "summary.json").read_text())["attenuation"] is True
    image = np.load(out / "image.npy")
    background = image[sphere_mask(grid, (-36.0, 0.0, 0.0), 24.0)].mean()
    assert background == pytest.approx(2.0, rel=0.1)  # as with the CT (test above)
    assert main([*args[:-4], "--mu-units", "1/mm", "-o", str(tmp_path / "x")]) == 2
    assert "--mu-units 1/cm" in capsys.readouterr().err


def test_stir_spect_mu_map_and_the_spectub_switch(tmp_path, capsys):
    """A mu-map made for STIR's SPECT is stored mirrored in x (SPECTUB applies the map to the
    mirrored emission; STIR's recon_test_pack mirrors its SPECT map for it). Water only on the
    patient's left: with --mu-spectub-mirrored the uniform source comes back uniform; without,
    attenuation is corrected on the wrong side and left and right differ several-fold."""
    from recon.io import write_interfile
    from tests.stir_factory import write_stir_image

    n_rows, n_bins, pixel = 4, 24, 6.0
    geometry = recon.SpectGeometry.circular(32, 200.0, n_u=n_bins, n_v=n_rows, pixel_size_mm=pixel)
    grid = recon.ImageGrid((n_rows, n_bins, n_bins), pixel)  # recon spect's grid for it
    activity = uniform_cylinder(grid, radius_mm=50, length_mm=1000, value=1.0)
    z, y, x = grid.meshgrid_mm()
    mu = np.where((np.hypot(x, y) < 60) & (x > 0), 0.0154, 0.0).astype(np.float32)
    model = recon.SpectModel(geometry, grid, mu_map=mu, collimator=None, device="cpu")
    counts = (np.asarray(model.forward(activity)) * 100).astype(np.float32)
    projections = write_interfile(tmp_path / "proj.hs", counts, geometry)
    # STIR layout: plane 0 is recon's last slice; columns reversed, as made for SPECTUB.
    stir_map = write_stir_image(tmp_path, "mu", (mu * 10)[::-1, :, ::-1], (pixel,) * 3,
                                modality="NM")  # fmt: skip
    base = ["spect", str(projections), "--mu", str(stir_map), "--no-psf", "--iterations", "6",
            "--subsets", "4", "--device", "cpu"]  # fmt: skip

    def left_over_right(out):
        image = np.load(out / "image.npy")
        left = image[sphere_mask(grid, (25.0, 0.0, 0.0), 15.0)].mean()
        return left / image[sphere_mask(grid, (-25.0, 0.0, 0.0), 15.0)].mean()

    assert main([*base, "--mu-spectub-mirrored", "-o", str(tmp_path / "mirrored")]) == 0
    assert left_over_right(tmp_path / "mirrored") == pytest.approx(1.0, abs=0.02)
    assert main([*base, "-o", str(tmp_path / "as_stated")]) == 0
    assert left_over_right(tmp_path / "as_stated") < 0.5


def test_info_describes_the_acquisition(study, capsys):
    nm_path, _, _ = study
    assert main(["info", str(nm_path)]) == 0
    printed = capsys.readouterr().out
    assert "SPECT projections" in printed and "(60, 12, 32)" in printed
    assert "window LOW" in printed and "Tc-99m" in printed


def test_spect_refuses_to_write_over_its_input(study, capsys):
    nm_path, _, _ = study
    assert main(["spect", str(nm_path), "-o", str(nm_path), "--device", "cpu"]) == 2
    assert "is the input" in capsys.readouterr().err


def test_spect_with_missing_file_is_one_line(tmp_path, capsys):
    assert main(["spect", str(tmp_path / "none.dcm"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


@pytest.mark.slow
@pytest.mark.parametrize("n_heads", [1, 2], ids=["single-head", "dual-head"])
def test_dicom_in_to_dicom_out_recovers_sphere_activity(tmp_path, n_heads):
    """Synthetic NM+CT written as the standard describes -> `recon spect` -> DICOM NM result whose
    sphere and background concentrations match the truth within the engine-test tolerances (10%
    over a 30 mm VOI in the 37 mm sphere, see tests/test_em.py, and in the background)."""
    from recon.simulate.dicom_study import write_simulated_spect_study
    from recon.simulate.phantoms import nema_iec_phantom

    # The engine test's study (tests/test_em.py): NEMA-IEC-like phantom, 4 mm voxels, 96 views.
    grid = recon.ImageGrid((24, 80, 80), 4.0)
    background = 5000.0
    activity, mu, spheres = nema_iec_phantom(grid, sphere_to_background=4.0, background=background)
    big = max(spheres, key=lambda s: s.diameter_mm)
    centre = big.centre_mm
    nm_path, ct_dir = write_simulated_spect_study(
        tmp_path / "study", activity, mu, grid, n_views=96, n_heads=n_heads, seed=1,
        sensitivity_cps_per_mbq=90.0, time_per_view_s=20.0 * n_heads,
    )  # fmt: skip
    out = tmp_path / "out"
    args = ["--ct", str(ct_dir), "--sensitivity", "90", "--iterations", "8", "--subsets", "8"]
    assert main(["spect", str(nm_path), *args, "-o", str(out), "--device", "cpu"]) == 0
    files = sorted((out / "dicom").iterdir())
    ds = pydicom.dcmread(files[0])
    assert ds.Units == "BQML" if "Units" in ds else True
    volume = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(
        getattr(ds, "RescaleIntercept", 0.0)
    )
    assert volume.shape == grid.shape
    sphere = volume[sphere_mask(grid, centre, 30.0)].mean()
    assert sphere == pytest.approx(4 * background, rel=0.10)
    z, y, x = grid.meshgrid_mm()
    body = activity >= 0.999 * background
    far = body & (np.hypot(x - centre[0], y - centre[1]) > 40) & (np.hypot(x, y) > 50)
    assert volume[far & (np.abs(z) < 20)].mean() == pytest.approx(background, rel=0.10)
