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
