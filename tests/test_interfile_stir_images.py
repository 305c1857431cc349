"""Interfile images and mu-maps in STIR's conventions, read and written, against STIR's rules.

The STIR side is :mod:`tests.stir_factory`: code written from STIR's source, independent of
recon's reader and writer. A point source placed in a STIR-layout file must land at its LPS
position when recon reads it, and a point in an image recon writes must be where that code
(not recon's reader) finds it, for even and odd sizes, STIR's default and a shifted origin, PET
and SPECT images, and every patient position STIR maps.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.errors import GeometryError, InputError
from recon.io import read_interfile_image, read_mu_map, write_interfile
from recon.io.interfile import FileFormatError
from tests.stir_factory import (
    LPS,
    gantry_mm,
    read_stir_image,
    stir_index_of_max,
    stir_point,
    write_stir_image,
)


def _lps_of_max(image: recon.Image) -> np.ndarray:
    index = np.unravel_index(int(np.argmax(np.asarray(image))), image.grid.shape)
    return image.grid.index_to_world(np.array(index, dtype=float))


# ---------------------------------------------------------------------------- STIR -> recon
# (z, y, x) sizes: even and odd on every axis; origins: STIR's default 0 and a shifted one.
SIZES = [(6, 8, 10), (7, 9, 11)]
ORIGINS = [(0.0, 0.0, 0.0), (6.0, -4.5, 12.5)]


@pytest.mark.parametrize("shape", SIZES, ids=["even", "odd"])
@pytest.mark.parametrize("origin", ORIGINS, ids=["origin0", "shifted"])
@pytest.mark.parametrize("modality", ["PT", "NM"])
def test_point_in_a_stir_image_lands_at_its_lps_position(tmp_path, caplog, shape, origin, modality):
    voxel = (2.5, 3.0, 3.27)
    nz, ny, nx = shape
    kji = (1, ny - 1 - ny // 2, -(nx // 2) + 1)  # near the first plane, last row, second column
    header = write_stir_image(tmp_path, "img", stir_point(shape, kji), voxel, origin_xyz=origin,
                               modality=modality)  # fmt: skip
    keys, _ = read_stir_image(header)
    # SPECTUB centres an image STIR made (origin 0); any other origin is taken as stated, the
    # PET projectors' rule (recon logs that SPECTUB would centre it).
    projector = "spect" if modality == "NM" and origin == (0.0, 0.0, 0.0) else "pet"
    expected = gantry_mm(keys, *kji, projector) * LPS["HFS"]
    with caplog.at_level(logging.WARNING, logger="recon"):
        image = read_interfile_image(header)
    np.testing.assert_allclose(_lps_of_max(image), expected, atol=1e-4)
    assert image.info["modality"] == modality
    said = "STIR's SPECT projector ignores it" in caplog.text
    assert said == (modality == "NM" and origin != (0.0, 0.0, 0.0))
    # The slices are centred on the isocentre axially for STIR's default origin, not 75 mm off.
    if origin == (0.0, 0.0, 0.0):
        assert image.grid.centre_mm[0] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("shape", SIZES, ids=["even", "odd"])
@pytest.mark.parametrize("placement", ["pet", "spect"])
def test_point_in_a_stir_mu_map_lands_at_its_lps_position(tmp_path, shape, placement):
    """read_mu_map resamples onto the reconstruction grid: a bone voxel (1/cm) of a STIR map
    written with no modality (as STIR's recon_test_pack does) is found on a grid centred on
    where STIR's PET projectors or SPECTUB put it, and nowhere else."""
    voxel = (4.0, 4.0, 3.27)
    nz, ny, nx = shape
    kji = (nz - 2, -(ny // 2) + 1, nx - 1 - nx // 2)
    values = stir_point(shape, kji) * 0.17
    header = write_stir_image(tmp_path, "mu", values, voxel, modality=None, position=None)
    keys, _ = read_stir_image(header)
    expected = gantry_mm(keys, *kji, placement) * LPS["HFS"]  # (x, y, z)
    size = (5, 7, 7)
    step = np.array(voxel[::-1])  # (z, y, x)
    origin = expected[::-1] - (np.array(size) - 1) / 2.0 * step
    grid = recon.ImageGrid(size, tuple(step), origin=tuple(origin))
    mu = np.asarray(read_mu_map(header, grid, stir_placement=placement))
    assert mu[2, 3, 3] == pytest.approx(0.017, rel=1e-5)
    assert np.count_nonzero(mu > 1e-7) == 1


def test_stir_offsets_without_the_z_one_are_ignored_as_stir_does(tmp_path, caplog):
    shape, voxel = (5, 8, 8), (2.0, 2.0, 4.0)
    header = write_stir_image(tmp_path, "img", stir_point(shape, (0, 2, -3)), voxel,
                               origin_xyz=(10.0, 10.0, 0.0))  # fmt: skip
    text = header.read_text()
    header.write_text(
        "\n".join(ln for ln in text.splitlines() if "first pixel offset (mm) [3]" not in ln)
    )
    keys, _ = read_stir_image(header)
    expected = gantry_mm(keys, 0, 2, -3, "pet") * LPS["HFS"]  # origin 0
    with caplog.at_level(logging.WARNING, logger="recon"):
        image = read_interfile_image(header)
    np.testing.assert_allclose(_lps_of_max(image), expected, atol=1e-4)
    assert "without [3]" in caplog.text
    header.write_text(text.replace("first pixel offset (mm) [1]", "other key"))
    with pytest.raises(FileFormatError, match=r"\[3\]' is given without \[1\] and \[2\]"):
        read_interfile_image(header)


@pytest.mark.parametrize("position", ["HFS", "HFP", "FFS", "FFP"])
def test_patient_position_maps_the_gantry_to_lps_as_stir_does(tmp_path, position):
    shape, voxel = (7, 8, 9), (2.0, 3.0, 4.0)
    kji = (1, 3, -2)
    header = write_stir_image(tmp_path, "img", stir_point(shape, kji), voxel,
                               origin_xyz=(0.0, 0.0, 5.0), position=position)  # fmt: skip
    keys, _ = read_stir_image(header)
    gantry = gantry_mm(keys, *kji, "pet")
    image = read_interfile_image(header)
    np.testing.assert_allclose(_lps_of_max(image), gantry * LPS[position], atol=1e-4)
    assert image.info["patient_position"] == position
    as_hfs = read_interfile_image(header, assume_hfs=True)
    np.testing.assert_allclose(_lps_of_max(as_hfs), gantry * LPS["HFS"], atol=1e-4)


def test_decubitus_images_are_refused_unless_read_as_hfs(tmp_path):
    header = write_stir_image(tmp_path, "img", stir_point((3, 4, 4), (1, 0, 0)), (2.0, 2.0, 2.0),
                               position="left")  # fmt: skip
    with pytest.raises(GeometryError, match="assume_hfs"):
        read_interfile_image(header)
    assert read_interfile_image(header, assume_hfs=True).grid.shape == (3, 4, 4)


# ---------------------------------------------------------------------------- recon -> STIR
def _recon_point_image(grid: recon.ImageGrid, xyz: tuple[float, float, float]) -> recon.Image:
    values = np.zeros(grid.shape, np.float32)
    k, j, i = np.round(grid.world_to_index(np.array(xyz))).astype(int)
    values[k, j, i] = 1.0
    return recon.Image(values, grid, units="Bq/mL")


GRIDS = {
    "even-centred": recon.ImageGrid((6, 8, 10), (3.27, 3.0, 2.5)),
    "odd-centred": recon.ImageGrid((7, 9, 11), (3.27, 3.0, 2.5)),
    "even-shifted": recon.ImageGrid((6, 8, 10), (3.27, 3.0, 2.5), origin=(-40.0, -7.5, 2.5)),
}


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("modality", ["PT", "NM"])
def test_what_recon_writes_stir_places_where_it_was(tmp_path, name, modality):
    grid = GRIDS[name]
    nz, ny, nx = grid.shape
    xyz = tuple(grid.index_to_world(np.array([nz - 2, 1.0, nx - 3])))  # superior, anterior, left
    header = write_interfile(tmp_path / "img.hv", _recon_point_image(grid, xyz), modality=modality)
    keys, values = read_stir_image(header)
    assert (keys["patient orientation"], keys["patient rotation"]) == ("head_in", "supine")
    assert keys["imaging modality"] == ("nucmed" if modality == "NM" else "PT")
    # SPECTUB centres every image: a centred SPECT grid is written as STIR writes its own
    # (origin 0); an off-centre one only STIR's physical coordinates (the PET rule) can place.
    projector = "spect" if modality == "NM" and name != "even-shifted" else "pet"
    position = gantry_mm(keys, *stir_index_of_max(keys, values), projector) * LPS["HFS"]
    np.testing.assert_allclose(position, xyz, atol=1e-4)
    if modality == "NM" and name != "even-shifted":
        nx, ny = int(keys["matrix size [1]"]), int(keys["matrix size [2]"])
        dx, dy = (float(keys[f"scaling factor (mm/pixel) [{a}]"]) for a in (1, 2))
        offsets = [float(keys[f"first pixel offset (mm) [{a}]"]) for a in (1, 2, 3)]
        np.testing.assert_allclose(offsets, [-(nx // 2) * dx, -(ny // 2) * dy, 0.0], atol=1e-9)
    # recon reads back what it wrote at the same place.
    np.testing.assert_allclose(_lps_of_max(read_interfile_image(header)), xyz, atol=1e-4)


def test_pet_image_on_stirs_default_grid_has_stirs_origin(tmp_path):
    """An odd-sized centred grid (as stir_default_grid makes) is written with origin 0, which
    STIR's ray tracer requires (it refuses an x/y origin beyond 0.05 mm)."""
    grid = recon.ImageGrid((5, 9, 9), (3.27, 3.0, 3.0))
    keys, _ = read_stir_image(write_interfile(tmp_path / "img.hv", recon.Image(
        np.ones(grid.shape, np.float32), grid)))  # fmt: skip
    for axis, n in ((1, 9), (2, 9)):
        assert float(keys[f"first pixel offset (mm) [{axis}]"]) == pytest.approx(-(n // 2) * 3.0)
    assert float(keys["first pixel offset (mm) [3]"]) == 0.0


# ---------------------------------------------------------------------------- modality, units
def test_spect_image_keeps_its_modality_and_units(tmp_path, capsys):
    grid = recon.ImageGrid((4, 6, 6), 4.0)
    image = recon.Image(np.ones(grid.shape, np.float32), grid, units="Bq/mL", isotope="Tc-99m")
    header = write_interfile(tmp_path / "image.hv", image, modality="NM")
    keys, _ = read_stir_image(header)
    assert keys["imaging modality"] == "nucmed" and keys["type of data"] == "Tomographic"
    # Louvain-la-Neuve's "scale unit" form; STIR and CASToR read the leading 1 (no rescaling).
    assert keys["quantification units"] == "1 Bq/mL"
    back = read_interfile_image(header)
    assert back.units == "Bq/mL" and back.info["modality"] == "NM"
    np.testing.assert_array_equal(np.asarray(back), np.asarray(image))
    # A copy of an image read back keeps its modality without being told.
    again = read_stir_image(write_interfile(tmp_path / "copy.hv", back))[0]
    assert again["imaging modality"] == "nucmed"
    assert main(["info", str(header)]) == 0
    printed = capsys.readouterr().out
    assert "NM" in printed and "Bq/mL" in printed and "uncalibrated" not in printed


@pytest.mark.parametrize(
    ("keys", "factor"),
    [
        (("quantification units := 2.5",), 2.5),
        (
            ("image scaling factor[1] := 2.5", "quantification units := 2.5"),
            2.5,
        ),  # STIR writes both
        (("quantification units := 1 kBq/ml",), 1.0),
    ],
)
def test_quantification_units_scale_as_in_stir(tmp_path, keys, factor):
    values = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    header = write_stir_image(tmp_path, "img", values, (2.0, 2.0, 2.0), extra=keys)
    image = read_interfile_image(header)
    np.testing.assert_allclose(np.asarray(image)[::-1], values * factor)  # z reversed (HFS)
    if "kBq" in keys[-1]:
        assert image.units == "kBq/ml"


def test_contradictory_quantification_units_are_refused(tmp_path):
    keys = ("image scaling factor[1] := 2", "quantification units := 3")
    header = write_stir_image(
        tmp_path, "img", np.ones((2, 4, 4), np.float32), (2.0, 2.0, 2.0), extra=keys
    )
    with pytest.raises(FileFormatError, match="contradicts the scaling factor"):
        read_interfile_image(header)


def test_spect_grid_half_a_voxel_off_centre_is_announced(tmp_path, caplog):
    """SPECTUB centres every image, so a SPECT grid with voxel n/2 on the axis (STIR's PET
    layout) cannot be told from a centred one once written: the writer says so."""
    grid = recon.ImageGrid((4, 8, 8), 3.0, origin=(-4.5, -10.5, -12.0))  # x: voxel 4 on the axis
    image = recon.Image(np.ones(grid.shape, np.float32), grid)
    with caplog.at_level(logging.WARNING, logger="recon"):
        write_interfile(tmp_path / "img.hv", image, modality="NM")
    assert "x grid puts voxel 4 on the axis" in caplog.text and "y grid" not in caplog.text
    with pytest.raises(InputError, match="modality must be"):
        write_interfile(tmp_path / "ct.hv", image, modality="CT")
