"""NIfTI export and VOI masks: RAS affine from our LPS grid; masks read or resampled onto a grid."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.io.nifti import grid_affine_ras, read_voi_mask, write_nifti

BRIGHT = (3, 1, 5)  # (z, y, x)


@pytest.fixture
def grid() -> ImageGrid:
    return ImageGrid((5, 6, 7), (3.0, 2.5, 2.0), origin=(-10.5, 20.25, -30.0))


def _image(grid: ImageGrid) -> Image:
    data = np.random.default_rng(1).uniform(0.0, 1.0, grid.shape).astype(np.float32)
    data[BRIGHT] = 50.0
    return Image(data, grid, units="Bq/mL", isotope="Tc-99m", reference_time_s=0.0)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_affine_maps_the_bright_voxel_to_its_ras_position(tmp_path, grid, suffix):
    nib = pytest.importorskip("nibabel")
    image = _image(grid)
    path = write_nifti(image, tmp_path / f"image{suffix}")
    nifti = nib.load(path)
    data = np.asarray(nifti.dataobj)
    assert data.shape == grid.shape[::-1]  # NIfTI's first axis is x
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, np.asarray(image).transpose(2, 1, 0))
    assert int(nifti.header["sform_code"]) == 1 and int(nifti.header["qform_code"]) == 1
    np.testing.assert_allclose(nifti.header.get_sform(), nifti.header.get_qform(), atol=1e-5)
    assert nifti.header.get_xyzt_units()[0] == "mm"

    ijk = np.unravel_index(np.argmax(data), data.shape)
    assert ijk == BRIGHT[::-1]
    ras = (nifti.affine @ [*ijk, 1.0])[:3]
    x, y, z = grid.index_to_world(np.array(BRIGHT))  # LPS
    np.testing.assert_allclose(ras, [-x, -y, z], atol=1e-5)
    np.testing.assert_allclose(nifti.affine, grid_affine_ras(grid), atol=1e-5)


def test_mask_on_the_same_grid_reads_back_unchanged(tmp_path, grid):
    pytest.importorskip("nibabel")
    mask = np.zeros(grid.shape, dtype=np.float32)
    mask[1:4, 2:5, 3:6] = 1.0
    mask[BRIGHT] = 1.0
    path = write_nifti(Image(mask, grid), tmp_path / "voi.nii.gz")
    got = read_voi_mask(path, grid)
    assert got.dtype == bool and got.shape == grid.shape
    np.testing.assert_array_equal(got, mask > 0)


def test_mask_in_another_orientation_and_resolution_is_resampled(tmp_path, grid):
    nib = pytest.importorskip("nibabel")
    # The same single-voxel VOI drawn on a grid twice as fine, stored with LPS-ordered axes
    # (positive x and y steps in RAS) and z reversed: only the affine says where voxels are.
    fine = ImageGrid(
        (10, 12, 14), tuple(v / 2 for v in grid.voxel_size_mm),
        origin=tuple(o - v / 4 for o, v in zip(grid.origin, grid.voxel_size_mm, strict=True)),
    )  # fmt: skip
    inside = np.zeros(fine.shape, dtype=bool)
    k, j, i = BRIGHT
    inside[2 * k : 2 * k + 2, 2 * j : 2 * j + 2, 2 * i : 2 * i + 2] = True
    ras = grid_affine_ras(fine)
    flip = np.diag([-1.0, -1.0, -1.0, 1.0])
    flip[:3, 3] = [fine.shape[2] - 1, fine.shape[1] - 1, fine.shape[0] - 1]
    affine = ras @ flip  # array index (i', j', k') = (nx-1-i, ny-1-j, nz-1-k)
    data = inside.transpose(2, 1, 0)[::-1, ::-1, ::-1].astype(np.uint8)
    nifti = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    nifti.set_sform(affine, code=2)
    nifti.set_qform(affine, code=2)
    path = tmp_path / "voi.nii"
    nib.save(nifti, path)

    got = read_voi_mask(path, grid)
    expected = np.zeros(grid.shape, dtype=bool)
    expected[BRIGHT] = True
    np.testing.assert_array_equal(got, expected)
    # And back onto the fine grid from a coarse mask.
    coarse = write_nifti(Image(expected.astype(np.float32), grid), tmp_path / "coarse.nii")
    np.testing.assert_array_equal(read_voi_mask(coarse, fine), inside)


def test_label_selects_one_region(tmp_path, grid):
    pytest.importorskip("nibabel")
    labels = np.zeros(grid.shape, dtype=np.float32)
    labels[0, 0, 0] = 1
    labels[BRIGHT] = 2
    path = write_nifti(Image(labels, grid), tmp_path / "labels.nii")
    assert np.argwhere(read_voi_mask(path, grid, label=2)).tolist() == [list(BRIGHT)]
    assert read_voi_mask(path, grid).sum() == 2


def test_masks_that_cannot_be_placed_are_refused(tmp_path, grid):
    nib = pytest.importorskip("nibabel")
    far = ImageGrid(grid.shape, grid.voxel_size_mm, origin=(500.0, 500.0, 500.0))
    mask = np.ones(grid.shape, dtype=np.float32)
    path = write_nifti(Image(mask, far), tmp_path / "far.nii")
    with pytest.raises(GeometryError, match="overlap"):
        read_voi_mask(path, grid)

    unoriented = nib.Nifti1Image(np.ones((7, 6, 5), dtype=np.uint8), np.eye(4))
    unoriented.set_sform(np.eye(4), code=0)
    unoriented.set_qform(np.eye(4), code=0)
    nib.save(unoriented, tmp_path / "unoriented.nii")
    with pytest.raises(GeometryError, match="orientation"):
        read_voi_mask(tmp_path / "unoriented.nii", grid)

    nib.save(nib.Nifti1Image(np.ones((7, 6), dtype=np.uint8), np.eye(4)), tmp_path / "flat.nii")
    with pytest.raises(InputError, match="3-D"):
        read_voi_mask(tmp_path / "flat.nii", grid)
    with pytest.raises(InputError, match="does not exist"):
        read_voi_mask(tmp_path / "missing.nii", grid)
    with pytest.raises(InputError, match=".nii"):
        write_nifti(Image(mask, grid), tmp_path / "image.img")


def test_missing_nibabel_gives_an_install_hint(tmp_path, grid, monkeypatch):
    monkeypatch.setitem(sys.modules, "nibabel", None)  # makes `import nibabel` fail
    with pytest.raises(InputError, match="pip install nibabel"):
        write_nifti(_image(grid), tmp_path / "image.nii")
    with pytest.raises(InputError, match="pip install nibabel"):
        read_voi_mask(tmp_path / "image.nii", grid)
