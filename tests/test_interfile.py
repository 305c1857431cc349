"""Interfile 3.3 (STIR/CASToR dialect): real STIR files, round trips, orientation, bad input, fuzz.

The orientation mapping under test (recon.io.interfile.spect._stir_angles_to_design and the row
flip) is DESIGN.md §3a's DICOM mapping: θ_k = 180° − (start + s·k·extent/n), s = −1 for CW; the
first stored row is the head end; bins run along t(θ). The real STIR SPECT file cannot tell the
sign of the rotation (its source distribution is not published with it), so the orientation is
pinned down by writing an asymmetric point source and checking where it lands in the raw file.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

import recon.io.interfile as interfile
from recon import Image, ImageGrid, SpectGeometry, SpectModel
from recon.errors import GeometryError, InputError, ReconError
from recon.io import (
    FileFormatError,
    PetSinogram,
    SpectProjections,
    parse_interfile_header,
    read_interfile,
    read_interfile_image,
    read_interfile_sinogram,
    read_interfile_spect,
    write_interfile,
)
from recon.io.interfile import header as interfile_header
from recon.io.interfile.spect import _design_angles_to_stir, _stir_angles_to_design

STIR_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stir"


def _stir_file(name: str) -> Path:
    path = STIR_DIR / name
    if not path.is_file():
        pytest.skip(
            f"STIR Interfile test data not found at {path} (shared/data/stir next to the repo)"
        )
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _edit(header: Path, *, drop: tuple[str, ...] = (), set_: dict | None = None, add=()) -> Path:
    """Rewrite ``header`` in place: drop keys, change values, add lines before the end."""
    set_ = {interfile_header._normalise_key(k): v for k, v in (set_ or {}).items()}
    drop_keys = {interfile_header._normalise_key(k) for k in drop}
    out = []
    for line in header.read_text().splitlines():
        key = interfile_header._normalise_key(line.split(":=")[0]) if ":=" in line else None
        if key in drop_keys:
            continue
        if key in set_:
            line = f"{line.split(':=')[0]}:= {set_[key]}"
        if key == "end of interfile":
            out.extend(add)
        out.append(line)
    header.write_text("\n".join(out) + "\n")
    return header


# ------------------------------------------------------------------------------- small files
def _spect_geometry(non_circular: bool = False) -> SpectGeometry:
    if not non_circular:
        return SpectGeometry.circular(
            n_views=12, radius_mm=200.0, n_u=9, n_v=5, pixel_size_mm=(4.0, 3.5), time_per_view_s=20
        )
    angles = 90.0 - 30.0 * np.arange(12)  # CCW: decreasing θ
    radii = 180.0 + 20.0 * np.abs(np.sin(np.deg2rad(angles)))
    return SpectGeometry(
        angles_deg=angles,
        radii_mm=radii,
        n_u=9,
        n_v=5,
        pixel_size_mm=3.25,
        durations_s=np.full(12, 2.5),
        cor_offset_mm=1.5,
    )


def _small_spect(
    folder: Path, non_circular: bool = False
) -> tuple[Path, np.ndarray, SpectGeometry]:
    geometry = _spect_geometry(non_circular)
    rng = np.random.default_rng(7)
    counts = rng.poisson(20.0, geometry.projection_shape).astype(np.float32)
    header = write_interfile(folder / "proj.hs", counts, geometry)
    return header, counts, geometry


_SINO_HEADER = """!INTERFILE  :=
!imaging modality := PT
name of data file := sino.s
!GENERAL DATA :=
!type of data := PET
imagedata byte order := LITTLEENDIAN
!PET data type := Emission
!number format := float
!number of bytes per pixel := 4
number of dimensions := 4
matrix axis label [4] := segment
!matrix size [4] := 3
matrix axis label [3] := view
!matrix size [3] := 4
matrix axis label [2] := axial coordinate
!matrix size [2] := {2, 3, 2}
matrix axis label [1] := tangential coordinate
!matrix size [1] := 5
minimum ring difference per segment := {-1, 0, 1}
maximum ring difference per segment := {-1, 0, 1}
Scanner parameters:=
Number of rings := 3
Number of detectors per ring := 8
Inner ring diameter (cm) := 20
Average depth of interaction (cm) := 0
Distance between rings (cm) := 0.4
end scanner parameters:=
!END OF INTERFILE :=
"""


def _small_sinogram(folder: Path) -> Path:
    (folder / "sino.hs").write_text(_SINO_HEADER)
    values = np.arange(7 * 4 * 5, dtype="<f4") - 3.5
    values.tofile(folder / "sino.s")
    return folder / "sino.hs"


def _small_image(folder: Path) -> tuple[Path, Image]:
    grid = ImageGrid(shape=(5, 6, 7), voxel_size=(2.5, 2.0, 3.0), origin=(-10.0, 20.5, -7.25))
    data = np.random.default_rng(3).normal(size=grid.shape).astype(np.float32)
    image = Image(data=data, grid=grid, isotope="F-18")
    return write_interfile(folder / "img.hv", image), image


# ------------------------------------------------------------------------------------ parser
def test_parser_is_tolerant_of_case_marks_spacing_comments_and_lists():
    h = parse_interfile_header(
        "!INTERFILE :=\n"
        "; a comment line\n"
        "!Matrix Size[1]   := 128 ; trailing comment\n"
        "%number   of  Projections := 120\n"
        "radii := {150, 151.5,152}\n"
        "a line without the separator\n"
        "!END OF INTERFILE :=\n"
    )
    assert h.get("matrix size [1]") == "128"
    assert h.get("!MATRIX SIZE [1]") == "128"
    assert h.get("number of projections") == "120"
    assert interfile_header._split_list(h.get("radii"), "radii", "") == ["150", "151.5", "152"]
    assert "end of interfile" in h
    assert h.get("missing", "x") == "x"


def test_parser_rejects_non_interfile_and_binary_text():
    with pytest.raises(FileFormatError, match="INTERFILE"):
        parse_interfile_header("name of data file := x.s\n")
    with pytest.raises(FileFormatError, match="binary"):
        parse_interfile_header("!INTERFILE :=\x00\x01")


def test_duplicate_key_with_different_values_is_contradictory():
    h = parse_interfile_header("!INTERFILE :=\nstart angle := 0\n!start angle := 180\n")
    with pytest.raises(FileFormatError, match="start angle.*2 times"):
        h.get("start angle")


# ----------------------------------------------------------------------------- angle mapping
def test_stir_angles_follow_the_dicom_mapping():
    np.testing.assert_allclose(_stir_angles_to_design(180, "CW", 4, 360), [0, 90, 180, 270])
    np.testing.assert_allclose(_stir_angles_to_design(180, "ccw", 4, 360), [0, -90, -180, -270])
    np.testing.assert_allclose(_stir_angles_to_design(0, "CW", 2, 180), [180, 270])
    # DESIGN.md §3a: θ = (180° − α) with α_k = start + s·k·Δ, s = −1 for CW, +1 for CC(W).
    for start, sense, n, extent in [(37.5, "CW", 7, 210), (300, "CCW", 64, 360), (0, "CCW", 3, 90)]:
        s = -1 if sense == "CW" else 1
        alpha = start + s * np.arange(n) * extent / n
        theta = _stir_angles_to_design(start, sense, n, extent)
        np.testing.assert_allclose(np.mod(theta - (180 - alpha) + 180, 360) - 180, 0, atol=1e-9)
        back = _design_angles_to_stir(theta)
        assert (
            back[1] == sense
            and back[0] == pytest.approx(start)
            and back[2] == pytest.approx(extent)
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, "sideways", 4, 360), "CW or CCW"),
        ((0, "CW", 4, 0), "extent"),
        ((0, "CW", 4, 400), "extent"),
        ((0, "CW", 0, 360), "at least 1"),
        ((float("nan"), "CW", 4, 360), "finite"),
    ],
)
def test_impossible_angle_keys(args, message):
    with pytest.raises(GeometryError, match=message):
        _stir_angles_to_design(*args)


@pytest.mark.parametrize(
    "angles", [[0.0, 10.0, 5.0], [0.0, 0.0, 0.0], [0.0, 10.0, 30.0], [0.0, 200.0, 400.0]]
)
def test_angles_interfile_cannot_describe_are_refused_on_write(tmp_path, angles):
    geometry = SpectGeometry(angles_deg=angles, radii_mm=200.0, n_u=3, n_v=2, pixel_size_mm=4.0)
    with pytest.raises(GeometryError, match="equally spaced|more than one turn"):
        write_interfile(tmp_path / "bad.hs", np.zeros((3, 2, 3), np.float32), geometry)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- real STIR files
def test_read_stir_spect_projections():
    header = _stir_file("spectub_simset_input.hs")
    counts, geometry, meta = read_interfile(header)
    assert counts.shape == (120, 64, 128) and counts.dtype == np.float32
    assert float(counts.sum(dtype=np.float64)) == pytest.approx(2.5157e7, rel=1e-4)
    assert geometry.n_views == 120 and (geometry.n_v, geometry.n_u) == (64, 128)
    assert geometry.pixel_size_mm == (3.32, 3.32)
    np.testing.assert_array_equal(geometry.radii_mm, 150.0)
    # CW from start angle 180: camera anterior first, then clockwise seen from the feet.
    np.testing.assert_allclose(geometry.angles_deg, 3.0 * np.arange(120))
    assert meta["direction_of_rotation"] == "CW" and meta["start_angle_deg"] == 180.0
    assert meta["orbit"] == "circular" and meta["extent_of_rotation_deg"] == 360.0
    # Rows are flipped (first stored row = head end), bins kept.
    raw = np.fromfile(header.with_suffix(".s"), "<f4").reshape(120, 64, 128)
    np.testing.assert_array_equal(counts, raw[:, ::-1, :])


def test_simset_centre_of_mass_is_one_sinusoid_per_turn_about_the_centre_bin():
    """What the real STIR SPECT data can and cannot prove about the mapping.

    The centre of mass along u of a source at p is p·t(θ) = p_x cos θ + p_y sin θ. With the read
    angles it is one sinusoid per turn (it fits better than a half or double turn), its constant
    term is ~0 and opposite views mirror it: the rotation axis projects onto the centre bin
    (cor_offset 0) and the views are equally spaced over 360°. A mirrored mapping (θ → −θ) or
    another start angle spans the same sinusoids, so the sign is not identifiable from this file.
    """
    counts, geometry, _ = read_interfile(_stir_file("spectub_simset_input.hs"))
    per_view = counts.sum(axis=(1, 2), dtype=np.float64)
    u_com = (counts.sum(axis=1, dtype=np.float64) * geometry.u_positions_mm).sum(1) / per_view

    def rms_residual(theta_deg):
        t = np.deg2rad(theta_deg)
        a = np.stack([np.cos(t), np.sin(t), np.ones_like(t)], axis=1)
        coef, *_ = np.linalg.lstsq(a, u_com, rcond=None)
        return float(np.sqrt(np.mean((a @ coef - u_com) ** 2))), coef

    k = np.arange(geometry.n_views)
    rms, coef = rms_residual(geometry.angles_deg)
    assert rms < 0.2  # mm; the centroid wanders ±1 mm (scatter, noise)
    assert abs(coef[2]) < 0.05  # mm: the axis projects onto the centre of the 128 bins
    assert np.max(np.abs(u_com[:60] + u_com[60:])) < 0.6  # mm: opposite views mirror
    for wrong_extent in (180.0, 720.0):
        assert rms_residual(k * wrong_extent / 120)[0] > 2 * rms
    assert rms_residual(-geometry.angles_deg)[0] == pytest.approx(rms)  # sign not identifiable


def test_read_stir_sinogram():
    header = _stir_file("smalllong.hs")
    data, d = read_interfile(header)
    assert isinstance(read_interfile_sinogram(header), PetSinogram)
    # One segment (ring differences −8..8) of a 14-ring scanner: 2·14 − 1 = 27 axial positions.
    assert data.shape == (27, 64, 75) and data.dtype == np.float32
    assert d["segments"] == [
        {
            "segment_number": 0,
            "min_ring_difference": -8,
            "max_ring_difference": 8,
            "n_axial": 27,
            "first_plane": 0,
        }
    ]
    assert d["storage_order"] == "view" and not d["span1"] and d["plane_rings"] is None
    assert d["arc_corrected"] and d["bin_size_mm"] == pytest.approx(3.0)
    assert d["scanner"]["n_rings"] == 14 and d["scanner"]["detectors_per_ring"] == 112
    assert d["scanner"]["inner_ring_diameter_mm"] == pytest.approx(600.0)
    assert d["pet_scanner"].crystal_radius_mm == pytest.approx(307.0)  # radius + DOI
    assert d["layout"] is None
    # Precorrected: slightly negative values occur.
    assert -1.0 < float(data.min()) < 0.0 < 5.0 < float(data.max()) < 10.0
    raw = np.fromfile(header.with_suffix(".s"), "<f4").reshape(64, 27, 75)  # view, axial, tang
    np.testing.assert_array_equal(data, raw.transpose(1, 0, 2))


def test_span1_sinogram_planes_and_ring_pairs(tmp_path):
    data, d = read_interfile(_small_sinogram(tmp_path))
    assert data.shape == (7, 4, 5) and d["span1"]
    assert [s["segment_number"] for s in d["segments"]] == [-1, 0, 1]
    np.testing.assert_array_equal(
        d["plane_rings"], [[1, 0], [2, 1], [0, 0], [1, 1], [2, 2], [0, 1], [1, 2]]
    )
    assert d["pet_scanner"].n_rings == 3 and d["pet_scanner"].crystals_per_ring == 8
    raw = np.arange(7 * 4 * 5, dtype=np.float32) - 3.5
    np.testing.assert_array_equal(data[:2], raw[:40].reshape(4, 2, 5).transpose(1, 0, 2))


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("non_circular", [False, True], ids=["circular", "non-circular"])
def test_spect_round_trip_is_bit_exact(tmp_path, non_circular):
    header, counts, geometry = _small_spect(tmp_path, non_circular)
    text = header.read_text().lower()
    assert ("orbit := non-circular" in text and "radii := {" in text) == non_circular
    assert ("direction of rotation := ccw" in text) == non_circular
    back = read_interfile_spect(header)
    assert isinstance(back, SpectProjections)
    assert back.counts.dtype == np.float32
    np.testing.assert_array_equal(back.counts, counts)
    g = back.geometry
    np.testing.assert_allclose(g.angles_deg, geometry.angles_deg, atol=1e-9)
    np.testing.assert_array_equal(g.radii_mm, geometry.radii_mm)
    assert g.pixel_size_mm == geometry.pixel_size_mm
    np.testing.assert_allclose(g.durations_s, geometry.durations_s)
    assert g.cor_offset_mm == geometry.cor_offset_mm


def test_stir_spect_file_round_trip(tmp_path):
    counts, geometry, meta = read_interfile(_stir_file("spectub_simset_input.hs"))
    header = write_interfile(tmp_path / "copy.hs", counts, geometry, metadata=meta)
    back, g, m = read_interfile(header)
    np.testing.assert_array_equal(back, counts)
    np.testing.assert_allclose(g.angles_deg, geometry.angles_deg, atol=1e-9)
    assert (m["start_angle_deg"], m["direction_of_rotation"]) == (180.0, "CW")
    # The data file is byte for byte STIR's (float32 little-endian, same layout).
    assert _sha(tmp_path / "copy.s") == _sha(_stir_file("spectub_simset_input.s"))


def test_sinogram_round_trip_is_bit_exact(tmp_path):
    source = _stir_file("smalllong.hs")
    sino = read_interfile(source)
    header = write_interfile(tmp_path / "out.hs", sino)
    data, d = read_interfile(header)
    np.testing.assert_array_equal(data, sino.data)
    for key in ("segments", "storage_order", "scanner", "arc_corrected", "bin_size_mm"):
        assert d[key] == sino.description[key]
    assert _sha(tmp_path / "out.s") == _sha(source.with_suffix(".s"))
    # The other storage order STIR reads: axial coordinate before view.
    other = PetSinogram(sino.data, {**sino.description, "storage_order": "sinogram"})
    data2, d2 = read_interfile(write_interfile(tmp_path / "sino_order.hs", other))
    assert d2["storage_order"] == "sinogram"
    np.testing.assert_array_equal(data2, sino.data)


def test_image_round_trip_is_bit_exact(tmp_path):
    header, image = _small_image(tmp_path)
    back = read_interfile(header)
    assert isinstance(back, Image)
    np.testing.assert_array_equal(np.asarray(back), np.asarray(image))
    assert back.grid.same_as(image.grid, tol_mm=1e-9) and back.isotope == "F-18"
    nm = read_interfile_image(write_interfile(tmp_path / "nm.hv", image, modality="nucmed"))
    np.testing.assert_array_equal(np.asarray(nm), np.asarray(image))


def test_image_axes_are_stir_x_y_and_inverted_z(tmp_path):
    grid = ImageGrid(shape=(5, 6, 7), voxel_size=2.0)
    data = np.zeros(grid.shape, np.float32)
    data[4, 1, 6] = 1.0  # most superior slice, anterior, patient left
    write_interfile(tmp_path / "p.hv", Image(data=data, grid=grid))
    raw = np.fromfile(tmp_path / "p.v", "<f4").reshape(5, 6, 7)  # STIR planes, x fastest
    assert raw[0, 1, 6] == 1.0  # STIR plane 0 is the deepest in the gantry: superior (HFS)
    header = interfile_header._read_header(tmp_path / "p.hv")
    # x, y: the first voxel's position (LPS); z: the grid is centred, and STIR's projectors put
    # the middle plane at the origin's z, so the offset of a centred grid is 0 (not −4 mm).
    assert [float(header.get(f"first pixel offset (mm) [{i}]")) for i in (1, 2, 3)] == [
        -6.0,
        -5.0,
        0.0,
    ]


def test_image_without_offsets_has_index_0_on_the_axis(tmp_path):
    """Without offsets STIR's origin is 0: index 0 is on the axis, x/y indices start at −⌊n/2⌋
    (y: 6 voxels, the array centre half a voxel off the axis; x: 7, centred) and the middle
    plane is at the scanner's axial centre."""
    header, image = _small_image(tmp_path)
    _edit(
        header,
        drop=(
            "first pixel offset (mm) [1]",
            "first pixel offset (mm) [2]",
            "first pixel offset (mm) [3]",
        ),
    )
    back = read_interfile_image(header)
    assert back.grid.shape == (5, 6, 7)
    np.testing.assert_allclose(back.grid.origin, (-5.0, -6.0, -9.0))
    np.testing.assert_allclose(back.grid.centre_mm, (0.0, -1.0, 0.0))


# --------------------------------------------------------------------------------- orientation
def _point_phantom():
    grid = ImageGrid(shape=(17, 33, 33), voxel_size=4.0)
    x = np.zeros(grid.shape, np.float32)
    k, j, i = np.round(grid.world_to_index(np.array([40.0, -24.0, 20.0]))).astype(int)
    x[k, j, i] = 1.0  # patient left, anterior, superior
    return grid, x


@pytest.mark.parametrize("non_circular", [False, True], ids=["circular-CW", "body-contour-CCW"])
def test_asymmetric_point_survives_the_round_trip(tmp_path, non_circular):
    grid, x = _point_phantom()
    if non_circular:
        angles = 90.0 - 30.0 * np.arange(12)
        geometry = SpectGeometry(
            angles_deg=angles,
            radii_mm=150 + 30 * np.abs(np.cos(np.deg2rad(angles))),
            n_u=33,
            n_v=17,
            pixel_size_mm=4.0,
        )
    else:
        geometry = SpectGeometry.circular(12, 200.0, n_u=33, n_v=17, pixel_size_mm=4.0)
    y = SpectModel(geometry, grid, device="cpu").project(x)
    counts, g, _ = read_interfile(write_interfile(tmp_path / "pt.hs", y, geometry))
    np.testing.assert_array_equal(counts, y)
    again = SpectModel(g, grid, device="cpu").project(x)
    np.testing.assert_allclose(again, counts, rtol=1e-5, atol=1e-6)


def test_raw_file_layout_of_an_asymmetric_point(tmp_path):
    """Where STIR's conventions put a point at (x, y, z) = (+40, −24, +20) mm (left, anterior,
    superior): each wrong mapping (θ = α, θ = α + 180°, θ = −α, rows unflipped, bins flipped)
    moves the peak to another bin or view."""
    grid, x = _point_phantom()
    geometry = SpectGeometry.circular(12, 200.0, n_u=33, n_v=17, pixel_size_mm=4.0)
    write_interfile(
        tmp_path / "pt.hs", SpectModel(geometry, grid, device="cpu").project(x), geometry
    )
    header = interfile_header._read_header(tmp_path / "pt.hs")
    assert header.get("start angle") == "180" and header.get("direction of rotation") == "CW"
    raw = np.fromfile(tmp_path / "pt.s", "<f4").reshape(12, 17, 33)

    def peak(view):
        return np.unravel_index(np.argmax(raw[view]), raw[view].shape)

    # View 0: start angle 180 = camera above the patient; bins along +x: u = +40 -> bin 16 + 10;
    # z = +20 mm is 5 rows above the centre, and the head end is stored first: row 8 − 5.
    assert peak(0) == (3, 26)
    # View 3 (CW, 90° later): camera at the patient's left, bins along +y: u = −24 -> bin 10.
    assert peak(3) == (3, 10)
    # View 6: camera below (posterior), bins along −x.
    assert peak(6) == (3, 6)


# ------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "key",
    [
        "number of projections",
        "matrix size [1]",
        "matrix size [2]",
        "scaling factor (mm/pixel) [1]",
        "scaling factor (mm/pixel) [2]",
        "extent of rotation",
        "direction of rotation",
        "name of data file",
        "radius",
        "number format",
    ],
)
def test_missing_required_key_is_named(tmp_path, key):
    header, _, _ = _small_spect(tmp_path)
    _edit(header, drop=(key,))
    with pytest.raises(FileFormatError) as err:
        read_interfile(header)
    assert key in str(err.value) and "missing" in str(err.value)


@pytest.mark.parametrize(
    ("changes", "add", "error", "message"),
    [
        ({"number format": "complex float"}, (), FileFormatError, "number format"),
        (
            {"number format": "short float", "number of bytes per pixel": 8},
            (),
            FileFormatError,
            "contradicts",
        ),
        ({"imagedata byte order": "MIDDLEENDIAN"}, (), FileFormatError, "byte order"),
        ({"matrix size [1]": 10}, (), FileFormatError, "bytes.*check the matrix sizes"),
        ({"matrix size [1]": 10**15}, (), FileFormatError, "bytes"),
        ({"data offset in bytes": 8}, (), FileFormatError, "bytes"),
        ({"matrix size [2]": -5}, (), FileFormatError, "at least 1"),
        ({"matrix size [2]": "five"}, (), FileFormatError, "must be a number"),
        ({"matrix size [2]": 2.5}, (), FileFormatError, "integer"),
        ({"start angle": "nan"}, (), FileFormatError, "finite"),
        ({"radius": "{150, 160}"}, (), FileFormatError, "one radius"),
        ({"radius": -3}, (), FileFormatError, "positive"),
        ({"orbit": "non-circular"}, (), FileFormatError, "one radius per view"),
        ({"orbit": "elliptic"}, (), FileFormatError, "orbit"),
        ({}, ("radii := {1, 2, 3}",), FileFormatError, "both 'radius' and 'radii'"),
        ({}, ("angular step := 7",), FileFormatError, "angular step.*contradicts"),
        ({}, ("number of projections := 13",), FileFormatError, "2 times"),
        ({}, ("first projection angle in data set := 10",), FileFormatError, "contradicts"),
        ({"total number of images": 24}, (), FileFormatError, "contradicts"),
        ({"time per projection (sec)": 3}, (), FileFormatError, "contradicts"),
        ({"extent of rotation": 0}, (), GeometryError, "extent"),
        ({"extent of rotation": 720}, (), GeometryError, "repeats view angles"),
        ({"direction of rotation": "sideways"}, (), GeometryError, "CW or CCW"),
        ({"process status": "reconstructed"}, (), FileFormatError, "process status"),
        ({"patient orientation": "feet_in"}, (), GeometryError, "assume_hfs"),
        ({"number of dimensions": 3}, (), FileFormatError, "number of dimensions"),
        ({"matrix axis label [1]": "axial coordinate"}, (), FileFormatError, "bin coordinate"),
    ],
)
def test_bad_spect_header(tmp_path, changes, add, error, message):
    header, _, _ = _small_spect(tmp_path)
    _edit(header, set_=changes, add=add)
    with pytest.raises(error, match=message):
        read_interfile(header)


def test_non_hfs_can_be_read_as_hfs_on_request(tmp_path):
    header, counts, _ = _small_spect(tmp_path)
    _edit(header, set_={"patient rotation": "prone"})
    back = read_interfile(header, assume_hfs=True)
    np.testing.assert_array_equal(back.counts, counts)
    assert back.metadata["patient_position"] == "head_in/prone"


def test_data_file_must_stay_in_the_headers_folder(tmp_path):
    inner = tmp_path / "inner"
    inner.mkdir()
    header, _, _ = _small_spect(inner)
    shutil.copy(inner / "proj.s", tmp_path / "proj.s")
    for name in ("../proj.s", str(tmp_path / "proj.s")):
        _edit(header, set_={"name of data file": name})
        with pytest.raises(FileFormatError, match="outside the header's folder"):
            read_interfile(header)
    (inner / "link.s").symlink_to(tmp_path / "proj.s")
    _edit(header, set_={"name of data file": "link.s"})
    with pytest.raises(FileFormatError, match="outside"):
        read_interfile(header)
    _edit(header, set_={"name of data file": str(inner / "proj.s")})  # absolute but inside: fine
    read_interfile(header)
    _edit(header, set_={"name of data file": "missing.s"})
    with pytest.raises(FileFormatError, match="does not exist"):
        read_interfile(header)


def test_non_finite_data_and_wrong_files(tmp_path):
    header, counts, _ = _small_spect(tmp_path)
    bad = counts.copy()
    bad[0, 0, 0] = np.nan
    bad.astype("<f4")[:, ::-1, :].tofile(tmp_path / "proj.s")
    with pytest.raises(FileFormatError, match="NaN"):
        read_interfile(header)
    with pytest.raises(FileFormatError, match="does not exist"):
        read_interfile(tmp_path / "nothing.hs")
    with pytest.raises(FileFormatError, match="binary|INTERFILE"):
        read_interfile(tmp_path / "proj.s")
    with pytest.raises(FileFormatError, match="does not hold an image"):
        read_interfile_image(header)
    sino = _small_sinogram(tmp_path)
    with pytest.raises(FileFormatError, match="does not hold SPECT"):
        read_interfile_spect(sino)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"matrix size [2]": "{2, 3}"}, "one value per segment"),
        ({"minimum ring difference per segment": "{-1, 0, 2}"}, "minimum ring difference"),
        ({"maximum ring difference per segment": "{-1, 1, 1}"}, "distinct"),
        ({"matrix size [2]": "{2, 2, 2}"}, "cannot have 2 axial positions"),
        ({"matrix axis label [2]": "bin"}, "axial coordinate"),
        ({"number of dimensions": 5}, "non-TOF"),
        ({"matrix size [1]": 500}, "bytes"),
    ],
)
def test_bad_sinogram_header(tmp_path, changes, message):
    header = _edit(_small_sinogram(tmp_path), set_=changes)
    with pytest.raises(FileFormatError, match=message):
        read_interfile(header)


# ----------------------------------------------------------------------------------- writing
def test_writer_refuses_to_overwrite_its_input(tmp_path):
    header, _, _ = _small_spect(tmp_path)
    before = {p.name: _sha(p) for p in tmp_path.iterdir()}
    projections = read_interfile(header)
    with pytest.raises(InputError, match="read from"):
        write_interfile(header, projections)
    with pytest.raises(InputError, match="read from"):
        write_interfile(tmp_path / "other.hs", projections, data_name="proj.s")
    image_header, image = _small_image(tmp_path)
    with pytest.raises(InputError, match="read from"):
        write_interfile(image_header, read_interfile(image_header))
    sino = read_interfile(_small_sinogram(tmp_path))
    with pytest.raises(InputError, match="read from"):
        write_interfile(tmp_path / "sino.hs", sino)
    assert {p.name: _sha(p) for p in tmp_path.iterdir() if p.name in before} == before
    write_interfile(tmp_path / "copy.hs", projections)  # elsewhere is fine


@pytest.mark.parametrize("name", ["../x.s", "sub/x.s", "..", "", "a\\b.s"])
def test_writer_refuses_a_data_file_outside_the_folder(tmp_path, name):
    geometry = _spect_geometry()
    with pytest.raises(InputError, match="plain file name"):
        write_interfile(
            tmp_path / "p.hs", np.zeros(geometry.projection_shape), geometry, data_name=name
        )


def test_reading_never_modifies_the_input(tmp_path):
    for name in ("spectub_simset_input", "smalllong"):
        hs, s = _stir_file(f"{name}.hs"), _stir_file(f"{name}.s")
        before = (_sha(hs), _sha(s))
        write_interfile(tmp_path / f"{name}.hs", read_interfile(hs))
        assert (_sha(hs), _sha(s)) == before


def test_existing_output_is_never_half_overwritten(tmp_path, monkeypatch):
    header, counts, geometry = _small_spect(tmp_path)
    before = {p.name: _sha(p) for p in tmp_path.iterdir()}

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(interfile.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_interfile(header, counts + 1, geometry)
    assert {p.name: _sha(p) for p in tmp_path.iterdir()} == before  # no temporaries left
    monkeypatch.undo()
    write_interfile(header, counts + 1, geometry)
    np.testing.assert_array_equal(read_interfile(header).counts, counts + 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((3, 5, 9)), "shape"),
        (np.full((12, 5, 9), np.nan), "NaN"),
        (np.full((12, 5, 9), 1e300), "beyond float32"),
        ("counts", "must be real"),
    ],
)
def test_writer_validates_the_data(tmp_path, data, message):
    with pytest.raises(InputError, match=message):
        write_interfile(tmp_path / "p.hs", data, _spect_geometry())


def test_writer_rejects_unknown_objects_and_missing_folders(tmp_path):
    with pytest.raises(InputError, match="write_interfile needs"):
        write_interfile(tmp_path / "p.hs", np.zeros((2, 2)))
    _, image = _small_image(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        write_interfile(tmp_path / "no" / "p.hv", image)


# -------------------------------------------------------------------------------------- fuzz
_GARBAGE = [
    "",
    "{",
    "}",
    "{1,,2}",
    "{1, 2",
    "abc",
    "1e999",
    "-1e999",
    "nan",
    "-0",
    "0",
    "-7",
    "2.5",
    "..",
    "../x.s",
    "/etc/passwd",
    "CW",
    "CCW",
    "non-circular",
    "circular",
    "PET",
    "Tomographic",
    "view",
    "segment",
    "axial coordinate",
    "LITTLEENDIAN",
    "BIGENDIAN",
    "signed integer",
    "unsigned integer",
    "long float",
    "{ 2, 3, 2}",
    "{-1, 0, 1}",
    "x" * 300,
]


def test_fuzzed_headers_raise_only_recon_errors(tmp_path_factory):
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    folder = tmp_path_factory.mktemp("fuzz")
    seeds = {
        "spect": _small_spect(folder, non_circular=True)[0],
        "sino": _small_sinogram(folder),
        "image": _small_image(folder)[0],
    }
    texts = {k: p.read_text().splitlines() for k, p in seeds.items()}
    value = st.one_of(
        st.sampled_from(_GARBAGE),
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(0, 18).map(lambda e: str(10**e)),
        st.text(max_size=20),
    )

    @hypothesis.settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(data=st.data())
    def run(data):
        kind = data.draw(st.sampled_from(sorted(texts)))
        lines = list(texts[kind])
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(lines) - 1))
            action = data.draw(st.sampled_from(["delete", "swap", "garbage", "duplicate"]))
            key = lines[i].split(":=")[0] if ":=" in lines[i] else lines[i]
            if action == "delete" and len(lines) > 1:
                del lines[i]
            elif action == "swap":
                j = data.draw(st.integers(0, len(lines) - 1))
                vi = lines[i].split(":=", 1)[1] if ":=" in lines[i] else ""
                vj = lines[j].split(":=", 1)[1] if ":=" in lines[j] else ""
                lines[i] = f"{key}:={vj}"
                lines[j] = f"{lines[j].split(':=')[0]}:={vi}"
            elif action == "garbage":
                lines[i] = f"{key}:= {data.draw(value)}"
            else:
                lines.insert(i, f"{key}:= {data.draw(value)}")
        header = folder / "fuzz.hs"
        header.write_text("\n".join(lines) + "\n", errors="replace")
        try:
            read_interfile(header)
        except ReconError:
            pass

    run()
