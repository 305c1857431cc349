"""Attenuation maps from .npy, Interfile (STIR/CASToR, 1/cm) and NIfTI onto a recon grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.errors import InputError
from recon.io import read_mu_map, write_interfile

GRID = recon.ImageGrid((8, 20, 20), 4.0)  # x, y from -38 to 38 mm, z from -14 to 14 mm


def _water_cylinder_with_bone(grid: recon.ImageGrid, water: float, bone: float) -> np.ndarray:
    """Water inside 30 mm of the axis, and a bone block around (x, y, z) = (16, -8, 6) mm."""
    z, y, x = grid.meshgrid_mm()
    mu = np.where(np.hypot(x, y) < 30.0, water, 0.0)
    block = (np.abs(x - 16) < 6) & (np.abs(y + 8) < 6) & (np.abs(z - 6) < 6)
    return np.where(block, bone, mu).astype(np.float32)


def test_npy_is_taken_on_the_grid_in_per_mm(tmp_path: Path) -> None:
    values = _water_cylinder_with_bone(GRID, 0.0096, 0.017)
    np.save(tmp_path / "mu.npy", values)
    mu = read_mu_map(tmp_path / "mu.npy", GRID)
    assert mu.units == "1/mm" and mu.grid.same_as(GRID)
    np.testing.assert_array_equal(np.asarray(mu), values)
    np.testing.assert_allclose(
        np.asarray(read_mu_map(tmp_path / "mu.npy", GRID, units="1/cm")), values / 10, rtol=1e-6
    )


def test_interfile_map_in_per_cm_is_resampled_onto_the_grid(tmp_path: Path) -> None:
    """A STIR/CASToR-style map (1/cm) on another grid — finer voxels, shifted origin — lands on
    the reconstruction grid in 1/mm with its bone block where it was in the world."""
    fine = recon.ImageGrid((20, 40, 42), 2.0, origin=(-19.0, -39.0, -41.0))  # x off by 1 mm
    values = _water_cylinder_with_bone(fine, 0.096, 0.17)  # 1/cm at 511 keV
    header = write_interfile(tmp_path / "mu.hv", recon.Image(values, fine))
    mu = np.asarray(read_mu_map(header, GRID))
    expected = _water_cylinder_with_bone(GRID, 0.0096, 0.017)
    z, y, x = GRID.meshgrid_mm()
    # Away from edges (where trilinear sampling blends neighbours) the values are exact.
    core = (np.hypot(x, y) < 24) & ~((np.abs(x - 16) < 10) & (np.abs(y + 8) < 10))
    np.testing.assert_allclose(mu[core], expected[core], rtol=1e-5)
    bone_centre = GRID.world_to_index(np.array([16.0, -8.0, 6.0]))
    k, j, i = (int(round(v)) for v in bone_centre)
    assert mu[k, j, i] == pytest.approx(0.017, rel=1e-5)
    assert mu[k, j, GRID.shape[2] - 1 - i] == pytest.approx(0.0096, rel=1e-5)  # mirror: water


def test_nifti_needs_its_unit(tmp_path: Path) -> None:
    pytest.importorskip("nibabel")
    from recon.io import write_nifti

    values = _water_cylinder_with_bone(GRID, 0.0096, 0.017)
    path = write_nifti(recon.Image(values, GRID), tmp_path / "mu.nii.gz")
    with pytest.raises(InputError, match="does not say its unit"):
        read_mu_map(path, GRID)
    np.testing.assert_allclose(np.asarray(read_mu_map(path, GRID, units="1/mm")), values)


@pytest.mark.parametrize(
    ("make", "units", "message"),
    [
        (lambda p: np.save(p, np.zeros((2, 2, 2))), None, "has shape"),
        (lambda p: p.write_bytes(b"not a numpy file"), None, "not a readable .npy"),
        (lambda p: np.save(p, np.full(GRID.shape, 0.15)), None, "--mu-units 1/cm"),
        (lambda p: np.save(p, np.full(GRID.shape, -1000.0)), None, "HU"),
        (lambda p: np.save(p, np.zeros(GRID.shape)), "1/m", "units must be one of"),
    ],
)
def test_bad_maps_are_named(tmp_path: Path, make, units, message) -> None:
    path = tmp_path / "mu.npy"
    make(path)
    with pytest.raises(InputError, match=message):
        read_mu_map(path, GRID, units=units)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "mu.txt").write_text("0.1")
    with pytest.raises(InputError, match="unknown attenuation-map format"):
        read_mu_map(tmp_path / "mu.txt", GRID)
    with pytest.raises(InputError, match="does not exist"):
        read_mu_map(tmp_path / "absent.hv", GRID)


def test_cli_reads_a_stir_mu_map_and_reports_a_bad_one(tmp_path, capsys) -> None:
    from recon.io import layout_to_stir_sinogram, stir_default_grid

    scanner = recon.PetScanner(n_rings=2, crystals_per_ring=64, radius_mm=100.0,
                               ring_spacing_mm=8.0)  # fmt: skip
    layout = recon.SinogramLayout(scanner, n_radial=21)
    counts = np.random.default_rng(1).poisson(5.0, layout.shape).astype(np.float32)
    sino = layout_to_stir_sinogram(counts, layout, frame_duration_s=10.0)
    header = write_interfile(tmp_path / "scan.hs", sino)
    grid = stir_default_grid(sino)
    mu_path = write_interfile(
        tmp_path / "mu.hv", recon.Image(_water_cylinder_with_bone(grid, 0.096, 0.17), grid)
    )
    out = tmp_path / "out"
    args = ["pet", str(header), "-o", str(out), "--iterations", "1", "--subsets", "2"]
    assert main([*args, "--mu", str(mu_path)]) == 0
    capsys.readouterr()
    np.save(tmp_path / "bad.npy", np.zeros((3, 3, 3)))
    assert main([*args, "--overwrite", "--mu", str(tmp_path / "bad.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.npy has shape (3, 3, 3)" in err[0]


# ------------------------------------------------------------------- STIR SPECT maps (SPECTUB)
def _stir_spect_study(folder: Path, n_views: int = 16, n_rows: int = 8, n_bins: int = 16):
    """STIR-layout SPECT projections (zeros: only the geometry is used) and the grid recon
    reconstructs them on (n_rows planes of the row size, centred: recon spect's grid)."""
    from recon.io import read_interfile_spect
    from tests.stir_factory import write_stir_spect_projections

    zeros = np.zeros((n_views, n_rows, n_bins), np.float32)
    header = write_stir_spect_projections(folder, "proj", zeros, bin_mm=4.0, row_mm=4.0)
    _, geometry, _ = read_interfile_spect(header)
    return geometry, recon.ImageGrid((n_rows, n_bins, n_bins), 4.0)


def test_stir_spect_map_planes_meet_their_projection_rows(tmp_path: Path) -> None:
    """SPECTUB pairs image plane k with projection row k (both centred axially): water in STIR
    planes 1-2 of a map written as STIR writes it (origin 0, no modality, no position, as in
    STIR's recon_test_pack) attenuates exactly rows 1-2 of the file's projections."""
    from recon.simulate.phantoms import uniform_cylinder
    from tests.stir_factory import write_stir_image

    geometry, grid = _stir_spect_study(tmp_path)
    n_rows, n_bins = geometry.n_v, geometry.n_u
    centres = (np.arange(n_bins) - n_bins // 2) * 4.0  # STIR x/y index × voxel, origin 0
    disc = np.hypot(*np.meshgrid(centres, centres, indexing="ij")) < 24.0
    stir_mu = np.zeros((n_rows, n_bins, n_bins), np.float32)
    stir_mu[1:3][:, disc] = 0.15  # 1/cm, STIR planes 1 and 2
    path = write_stir_image(tmp_path, "mu", stir_mu, (4.0, 4.0, 4.0), modality=None, position=None)
    mu = read_mu_map(path, grid, stir_placement="spect")
    activity = uniform_cylinder(grid, radius_mm=20.0, length_mm=1000.0, value=1.0)
    attenuated, plain = (
        np.asarray(
            recon.SpectModel(geometry, grid, mu_map=m, collimator=None, device="cpu").forward(
                activity
            )
        )  # fmt: skip
        for m in (mu, None)
    )
    # Rows in file order (recon's v runs along +z, the file's first row is the head end).
    transmitted = attenuated.sum(axis=(0, 2))[::-1] / plain.sum(axis=(0, 2))[::-1]
    water = [1, 2]
    others = [r for r in range(n_rows) if r not in water]
    np.testing.assert_allclose(transmitted[others], 1.0, rtol=1e-6)
    # Through up to 40 mm of water at 0.015/mm: clearly attenuated.
    assert np.all(transmitted[water] < 0.85) and np.all(transmitted[water] > 0.5)


@pytest.mark.parametrize("n_bins", [16, 15], ids=["even", "odd"])
def test_spectub_switch_mirrors_an_asymmetric_map(tmp_path: Path, n_bins: int) -> None:
    """A map made for STIR's SPECT is stored mirrored in x (SPECTUB meets the emission voxel
    of x index i with the map's index invert(i)); spectub_mirrored=True undoes that, the
    default takes the map as its header says."""
    from tests.stir_factory import spectub_attenuation_index, write_stir_image

    n_rows = 4
    grid = recon.ImageGrid((n_rows, n_bins, n_bins), 4.0)  # SPECTUB's grid: centred
    stored = np.zeros((n_rows, n_bins, n_bins), np.float32)
    stored[:, :, n_bins // 2 + 2 :] = 0.1  # 1/cm, STIR x index ≥ 2: the patient's left
    stored[:, :, n_bins // 2 + 4] = 0.2
    path = write_stir_image(tmp_path, "mu", stored, (4.0, 4.0, 4.0), modality="NM")
    as_stated = np.asarray(read_mu_map(path, grid, stir_placement="spect"))
    mirrored = np.asarray(read_mu_map(path, grid, stir_placement="spect", spectub_mirrored=True))
    first = -(n_bins // 2)
    for column in range(n_bins):
        i = first + column  # STIR x index of recon column `column` (same centred grid)
        expected = stored[::-1, :, spectub_attenuation_index(i, n_bins) - first] / 10.0
        np.testing.assert_allclose(mirrored[:, :, column], expected, rtol=1e-6)
        np.testing.assert_allclose(as_stated[:, :, column], stored[::-1, :, column] / 10, rtol=1e-6)
    x = grid.axis_mm(2)
    assert (as_stated.sum(axis=(0, 1)) * x).sum() > 0 > (mirrored.sum(axis=(0, 1)) * x).sum()
    info = read_mu_map(path, grid, spectub_mirrored=True).info
    assert info["x_mirrored_for_spectub"] is True and info["stir_placement"] == "spect"


def test_map_written_by_recon_keeps_its_unit_and_spect_reading_names_the_switch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """recon writes a mu-map's unit as the quantification-units label (1/mm), which is read
    back instead of STIR's 1/cm; reading it for SPECT without the switch warns, naming it."""
    import logging

    values = _water_cylinder_with_bone(GRID, 0.0096, 0.017)
    np.save(tmp_path / "mu.npy", values)
    header = write_interfile(tmp_path / "mu.hv", read_mu_map(tmp_path / "mu.npy", GRID))
    assert "quantification units := 1 1/mm" in header.read_text()
    with caplog.at_level(logging.INFO, logger="recon"):
        back = read_mu_map(header, GRID)
        assert "--mu-spectub-mirrored" not in caplog.text
        np.testing.assert_allclose(np.asarray(back), values, rtol=1e-6)
        assert back.info["file_units"] == "1/mm"
        read_mu_map(header, GRID, stir_placement="spect")
    assert "--mu-spectub-mirrored" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recon"):
        read_mu_map(header, GRID, stir_placement="spect", spectub_mirrored=True)
    assert caplog.text == ""
