"""DICOM NM TOMO reading: the DESIGN.md §3a mapping, energy windows, metadata and bad files.

The orientation tests do not trust the reader's formula. The angle of each frame is derived from
the physical definition of PS3.3 Start Angle (0° = detector at the patient's back, angles
increasing counter-clockwise seen from the feet, i.e. from the back towards the patient's left),
the projections are simulated with recon's projector at that physical detector position, and the
frames are checked against a closed-form position of the point source in the stored frame before
the file is read back and reconstructed.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest
from pydicom.pixels import get_decoder
from pydicom.tag import Tag
from pydicom.uid import JPEGBaseline8Bit, RLELossless

import recon
from recon.errors import GeometryError, InputError, PhysicsError
from recon.io.dicom_nm import (
    read_nm_projections,
    scatter_estimate,
    select_scatter_windows,
)
from recon.physics import EnergyWindow, dew_scatter, tew_scatter
from tests.dicom_factory import nm_tomo_dataset, save

PIXEL = 5.0
N_U, N_V = 49, 25
GRID = recon.ImageGrid(shape=(21, 41, 41), voxel_size=PIXEL)
SOURCE = np.array([60.0, -30.0, 25.0])  # world (x, y, z) mm: left, anterior, superior


# ---------------------------------------------------------------------------------- helpers
def dicom_angles(starts: tuple[float, ...], step: float, direction: str, n: int) -> np.ndarray:
    """PS3.3 detector angles of every frame, detector by detector (frame order)."""
    sign = {"CC": 1.0, "CW": -1.0}[direction]
    return np.concatenate([s + sign * step * np.arange(n) for s in starts])


def physical_theta(alpha_deg: np.ndarray) -> np.ndarray:
    """recon's θ of a detector at PS3.3 angle α, from the physical positions, not the formula.

    PS3.3: α = 0 puts the detector behind the patient (+y, posterior in LPS) and α = 90° on the
    patient's left (+x), so it sits in direction (sin α, cos α). recon's camera at θ sits in
    direction (sin θ, −cos θ) (DESIGN.md §3); solve for θ.
    """
    a = np.deg2rad(alpha_deg)
    dx, dy = np.sin(a), np.cos(a)
    return np.rad2deg(np.arctan2(dx, -dy)) % 360.0


def frame_position(alpha_deg: float, point: np.ndarray, axial_mm: float = 0.0, cor_mm: float = 0.0):
    """(row, column) where a point appears in a stored NM frame, from first principles.

    Columns: looking at a supine patient from the front (α = 180°) the patient's left (+x) is on
    the viewer's right, i.e. at increasing column; in general the column axis is the detector
    direction (sin α, cos α) turned by +90° about z: (−cos α, sin α). A positive Center of
    Rotation Offset moves the rotation axis to a larger column. Rows: the head end is row 0.
    """
    a = np.deg2rad(alpha_deg)
    u = -np.cos(a) * point[0] + np.sin(a) * point[1]
    col = (N_U - 1) / 2 + (u + cor_mm) / PIXEL
    row = (N_V - 1) / 2 - (point[2] - axial_mm) / PIXEL
    return row, col


def point_image(grid: recon.ImageGrid, point: np.ndarray) -> np.ndarray:
    x = np.zeros(grid.shape, np.float32)
    idx = np.round(grid.world_to_index(point)).astype(int)
    assert np.allclose(grid.index_to_world(idx), point), "the source must sit on a voxel centre"
    x[tuple(idx)] = 1.0
    return x


def simulate_frames(
    alpha: np.ndarray,
    n_det: int,
    point: np.ndarray = SOURCE,
    grid: recon.ImageGrid = GRID,
    cor_dicom_mm: tuple[float, ...] | None = None,
    axial_mm: float = 0.0,
) -> np.ndarray:
    """Stored NM frames (1, detector, view, row, column) of a point source, via the projector.

    Each detector is simulated with recon's projector at θ = physical_theta(α) and with its own
    COR (SpectGeometry.cor_offset_mm = −DICOM offset); rows are flipped to the stored order.
    """
    n_views = alpha.size // n_det
    cors = cor_dicom_mm or (0.0,) * n_det
    x = point_image(grid, point)
    out = []
    for d in range(n_det):
        geometry = recon.SpectGeometry(
            angles_deg=physical_theta(alpha[d * n_views : (d + 1) * n_views]),
            radii_mm=250.0,
            n_u=N_U,
            n_v=N_V,
            pixel_size_mm=PIXEL,
            cor_offset_mm=-cors[d],
            axial_offset_mm=axial_mm,
        )
        y = np.asarray(recon.SpectModel(geometry, grid, device="cpu").forward(x))
        out.append(y)
    y = np.stack(out)
    y = np.round(y / y.max() * 4000.0)
    return y[None, :, :, ::-1, :]


def assert_same_angles(actual: np.ndarray, expected: np.ndarray) -> None:
    diff = np.mod(np.asarray(actual) - np.asarray(expected) + 180.0, 360.0) - 180.0
    assert np.max(np.abs(diff)) < 1e-9, diff


def centroid(frame: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(frame.shape)
    total = frame.sum()
    return float((rows * frame).sum() / total), float((cols * frame).sum() / total)


def hot_spot(counts: np.ndarray, geometry: recon.SpectGeometry, grid=GRID) -> np.ndarray:
    model = recon.SpectModel(geometry, grid, device="cpu")
    img = np.asarray(recon.mlem(model, counts, iterations=8, progress=False))
    return grid.index_to_world(np.array(np.unravel_index(np.argmax(img), img.shape)))


def tomo(frames: np.ndarray, **kwargs) -> object:
    kwargs.setdefault("pixel_spacing", (PIXEL, PIXEL))
    return nm_tomo_dataset(frames, **kwargs)


def simple_dataset(n_views: int = 12, n_det: int = 1, n_win: int = 1, **kwargs):
    """A small valid dataset with distinct frame contents (value = frame index + 1)."""
    frames = np.zeros((n_win, n_det, n_views, 6, 8), np.uint16)
    frames += np.arange(1, n_win * n_det * n_views + 1, dtype=np.uint16).reshape(
        n_win, n_det, n_views, 1, 1
    )
    kwargs.setdefault("angular_step_deg", 360.0 / (n_views * n_det))
    kwargs.setdefault("start_angles_deg", tuple(180.0 * d for d in range(n_det)))
    kwargs.setdefault(
        "windows", tuple((f"W{i}", 100.0 + 60 * i, 150.0 + 60 * i) for i in range(n_win))
    )
    return nm_tomo_dataset(frames, **kwargs), frames


# ---------------------------------------------------------------------------------- orientation
ORBITS = {
    "1 head CW from 0": ((0.0,), 6.0, "CW", 60),
    "1 head CC from 90": ((90.0,), 6.0, "CC", 60),
    "1 head 180 deg CW from 315": ((315.0,), 6.0, "CW", 30),
    "2 heads CW 0/180": ((0.0, 180.0), 6.0, "CW", 30),
    "2 heads CC 270/90": ((270.0, 90.0), 6.0, "CC", 30),
    "2 heads L-mode CW 0/90": ((0.0, 90.0), 6.0, "CW", 15),
}


@pytest.mark.parametrize("name", list(ORBITS))
def test_point_source_lands_at_its_world_position(name: str, tmp_path: Path) -> None:
    starts, step, direction, n = ORBITS[name]
    alpha = dicom_angles(starts, step, direction, n)
    frames = simulate_frames(alpha, len(starts))

    # The stored frames put the source where the PS3.3 definitions say, independently of recon.
    for f, a in enumerate(alpha):
        row, col = centroid(frames[0].reshape(-1, N_V, N_U)[f])
        exp_row, exp_col = frame_position(a, SOURCE)
        assert abs(row - exp_row) < 0.3 and abs(col - exp_col) < 0.3, (a, row, col)

    path = save(
        tomo(frames, angular_step_deg=step, start_angles_deg=starts, direction=direction),
        tmp_path / "nm.dcm",
    )
    counts, geometry, meta = read_nm_projections(path)

    assert counts.dtype == np.float32 and counts.shape == (alpha.size, N_V, N_U)
    assert_same_angles(geometry.angles_deg, physical_theta(alpha))
    np.testing.assert_allclose(meta["dicom_angles_deg"], alpha)
    np.testing.assert_array_equal(counts, frames[0].reshape(-1, N_V, N_U)[:, ::-1, :])
    assert geometry.pixel_size_mm == (PIXEL, PIXEL)
    assert meta["n_detectors"] == len(starts)
    np.testing.assert_array_equal(meta["detector"], np.repeat(np.arange(len(starts)), n))

    found = hot_spot(counts, geometry)
    assert np.all(np.abs(found - SOURCE) <= PIXEL), (found, SOURCE)


@pytest.fixture(scope="module")
def two_head_read(tmp_path_factory: pytest.TempPathFactory):
    starts, step, direction, n = ORBITS["2 heads CW 0/180"]
    alpha = dicom_angles(starts, step, direction, n)
    frames = simulate_frames(alpha, 2)
    path = tmp_path_factory.mktemp("nm") / "nm.dcm"
    save(tomo(frames, angular_step_deg=step, start_angles_deg=starts, direction=direction), path)
    return read_nm_projections(path)


WRONG_MAPPINGS = {
    # name: (how the data/geometry would be read, where the source would then appear)
    "theta = alpha": ("angles", lambda a: a, (-1, 1, 1)),
    "theta = alpha + 180": ("angles", lambda a: a + 180.0, (1, -1, 1)),
    "theta = -alpha": ("angles", lambda a: -a, (-1, -1, 1)),
    "rows unflipped": ("rows", None, (1, 1, -1)),
    "columns flipped": ("columns", None, (-1, -1, 1)),
}


@pytest.mark.parametrize("name", list(WRONG_MAPPINGS))
def test_each_wrong_mapping_moves_the_source(name: str, two_head_read) -> None:
    counts, geometry, meta = two_head_read
    kind, angle_map, mirror = WRONG_MAPPINGS[name]
    wrong_counts, wrong_geometry = counts, geometry
    if kind == "angles":
        wrong_angles = np.mod(angle_map(meta["dicom_angles_deg"]), 360.0)
        # The read geometry is not this alternative ...
        assert np.max(np.abs(np.mod(wrong_angles - geometry.angles_deg + 180, 360) - 180)) > 10
        wrong_geometry = recon.SpectGeometry(
            angles_deg=wrong_angles,
            radii_mm=geometry.radii_mm,
            n_u=N_U,
            n_v=N_V,
            pixel_size_mm=PIXEL,
        )
    elif kind == "rows":
        wrong_counts = np.ascontiguousarray(counts[:, ::-1, :])
    else:
        wrong_counts = np.ascontiguousarray(counts[:, :, ::-1])
    # ... and reading the file that way puts the source at its mirror image, far from the truth.
    found = hot_spot(wrong_counts, wrong_geometry)
    expected = SOURCE * np.asarray(mirror)
    assert np.all(np.abs(found - expected) <= PIXEL), (name, found, expected)
    assert np.linalg.norm(found - SOURCE) > 40.0


def test_read_geometry_differs_from_every_wrong_alternative(two_head_read) -> None:
    counts, geometry, meta = two_head_read
    alpha = meta["dicom_angles_deg"]
    right = physical_theta(alpha)
    assert_same_angles(geometry.angles_deg, right)
    for wrong in (alpha, alpha + 180.0, -alpha):
        diff = np.mod(np.mod(wrong, 360.0) - geometry.angles_deg + 180.0, 360.0) - 180.0
        assert np.max(np.abs(diff)) > 10.0
    # The source is off-centre axially and transaxially: rows and columns are not symmetric.
    assert not np.allclose(counts, counts[:, ::-1, :])
    assert not np.allclose(counts, counts[:, :, ::-1])


# ---------------------------------------------------------------------------------- COR, radius, z
def test_positive_cor_offset_puts_the_axis_at_a_larger_column(tmp_path: Path) -> None:
    alpha = dicom_angles((0.0,), 6.0, "CW", 60)
    cor = 7.5  # mm, 1.5 pixels
    on_axis = np.array([0.0, 0.0, 25.0])
    frames = simulate_frames(alpha, 1, point=on_axis, cor_dicom_mm=(cor,))
    for f in range(alpha.size):
        _, col = centroid(frames[0, 0, f])
        assert col == pytest.approx((N_U - 1) / 2 + cor / PIXEL, abs=0.05)

    frames = simulate_frames(alpha, 1, cor_dicom_mm=(cor,))
    for f, a in enumerate(alpha):
        row, col = centroid(frames[0, 0, f])
        assert (row, col) == pytest.approx(frame_position(a, SOURCE, cor_mm=cor), abs=0.3)
    path = save(
        tomo(frames, angular_step_deg=6.0, start_angles_deg=(0.0,), cor_offsets_mm=(cor,)),
        tmp_path / "nm.dcm",
    )
    counts, geometry, meta = read_nm_projections(path)
    assert geometry.cor_offset_mm == pytest.approx(-cor)
    # The read geometry puts the rotation axis (u = 0) at the larger column the file says.
    axis_column = np.interp(0.0, geometry.u_positions_mm, np.arange(N_U))
    assert axis_column == pytest.approx((N_U - 1) / 2 + cor / PIXEL)
    assert meta["cor_offsets_dicom_mm"] == [cor]
    assert np.all(np.abs(hot_spot(counts, geometry) - SOURCE) <= PIXEL)


def test_detectors_with_different_cor_offsets_are_brought_together(tmp_path: Path, caplog) -> None:
    starts = (0.0, 180.0)
    alpha = dicom_angles(starts, 6.0, "CW", 30)
    cors = (6.0, -4.0)
    frames = simulate_frames(alpha, 2, cor_dicom_mm=cors)
    path = save(
        tomo(frames, angular_step_deg=6.0, start_angles_deg=starts, cor_offsets_mm=cors),
        tmp_path / "nm.dcm",
    )
    with caplog.at_level(logging.WARNING, logger="recon"):
        counts, geometry, meta = read_nm_projections(path)
    assert "Center of Rotation Offset" in caplog.text
    assert geometry.cor_offset_mm == pytest.approx(-np.mean(cors))
    assert meta["cor_offsets_dicom_mm"] == list(cors)
    assert np.all(np.abs(hot_spot(counts, geometry) - SOURCE) <= PIXEL)


def test_body_contour_radial_positions_per_view(tmp_path: Path) -> None:
    starts = (0.0, 180.0)
    alpha = dicom_angles(starts, 12.0, "CC", 15)
    radii = 180.0 + 60.0 * np.abs(np.cos(np.deg2rad(alpha)))
    ds, _ = simple_dataset(
        n_views=15, n_det=2, angular_step_deg=12.0, start_angles_deg=starts, direction="CC",
        radial_positions=[radii[:15], radii[15:]],
    )  # fmt: skip
    _, geometry, _ = read_nm_projections(ds)
    np.testing.assert_allclose(geometry.radii_mm, radii, rtol=1e-6)

    ds, _ = simple_dataset(radial_positions=222.5, radial_in="rotation")
    _, geometry, _ = read_nm_projections(ds)
    np.testing.assert_allclose(geometry.radii_mm, 222.5)


def test_axial_offset_from_detector_image_position(tmp_path: Path) -> None:
    axial = 40.0  # world z of the centre of the rows
    grid = recon.ImageGrid(shape=GRID.shape, voxel_size=PIXEL, origin=(-50.0 + axial, -100, -100))
    source = SOURCE + np.array([0.0, 0.0, axial])
    alpha = dicom_angles((0.0, 180.0), 6.0, "CW", 30)
    frames = simulate_frames(alpha, 2, point=source, grid=grid, axial_mm=axial)
    top_row_z = axial + (N_V - 1) / 2 * PIXEL
    ds = tomo(
        frames, angular_step_deg=6.0, start_angles_deg=(0.0, 180.0),
        detector_image_position=(-120.0, -120.0, top_row_z),
        detector_image_orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
    )  # fmt: skip
    counts, geometry, _ = read_nm_projections(ds)
    assert geometry.axial_offset_mm == pytest.approx(axial)
    assert np.all(np.abs(hot_spot(counts, geometry, grid) - source) <= PIXEL)

    ds.DetectorInformationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 0, 1]
    with pytest.raises(GeometryError, match="Image Orientation"):
        read_nm_projections(ds)


def test_frame_times_and_durations() -> None:
    ds, _ = simple_dataset(n_views=10, n_det=2, frame_duration_ms=15000)
    _, geometry, meta = read_nm_projections(ds)
    # Both heads acquire at the same time, view after view.
    np.testing.assert_allclose(geometry.start_times_s, np.tile(np.arange(10) * 15.0, 2))
    np.testing.assert_allclose(geometry.durations_s, 15.0)
    assert meta["rotation_directions"] == ["CW"]
    assert meta["start_angles_deg"] == [0.0, 180.0]


def test_two_rotations_continue_in_time_and_angle() -> None:
    ds, frames = simple_dataset(n_views=12, angular_step_deg=10.0, start_angles_deg=(20.0,))
    first = ds.RotationInformationSequence[0]
    first.NumberOfFramesInRotation = 6
    second = copy.deepcopy(first)
    second.StartAngle = 20.0 - 60.0  # CW: the second rotation carries on where the first ended
    second.ActualFrameDuration = 30000
    ds.RotationInformationSequence.append(second)
    ds.NumberOfRotations = 2
    ds.RotationVector = [1] * 6 + [2] * 6
    ds.AngularViewVector = list(range(1, 7)) * 2
    del ds.DetectorInformationSequence[0].StartAngle
    counts, geometry, meta = read_nm_projections(ds)
    np.testing.assert_allclose(meta["dicom_angles_deg"], 20.0 - 10.0 * np.arange(12))
    assert_same_angles(geometry.angles_deg, 160.0 + 10.0 * np.arange(12))
    np.testing.assert_allclose(
        geometry.start_times_s, np.r_[20.0 * np.arange(6), 120.0 + 30.0 * np.arange(6)]
    )
    np.testing.assert_allclose(geometry.durations_s, np.r_[[20.0] * 6, [30.0] * 6])
    np.testing.assert_array_equal(meta["rotation"], [0] * 6 + [1] * 6)
    np.testing.assert_array_equal(counts, frames[0, 0][:, ::-1, :])


def test_pixel_spacing_is_axial_then_transaxial_and_a_bare_dataset_is_read() -> None:
    ds, frames = simple_dataset(pixel_spacing=(3.0, 4.5))
    del ds.file_meta  # built in memory, never written: native little-endian pixels assumed
    counts, geometry, _ = read_nm_projections(ds)
    assert geometry.pixel_size_mm == (3.0, 4.5)
    np.testing.assert_allclose(np.diff(geometry.v_positions_mm), 3.0)
    np.testing.assert_allclose(np.diff(geometry.u_positions_mm), 4.5)
    np.testing.assert_array_equal(counts, frames[0, 0][:, ::-1, :])


def test_frames_are_placed_by_the_vectors_not_by_file_order() -> None:
    ds, frames = simple_dataset(n_views=6, n_det=2, n_win=2)
    # Store the frames window-last instead of window-first, with vectors saying so.
    window = np.asarray(ds.EnergyWindowVector)
    # Detector slowest, then view, then energy window fastest.
    order = np.lexsort((window, np.asarray(ds.AngularViewVector), np.asarray(ds.DetectorVector)))
    assert not np.array_equal(order, np.arange(order.size))
    data = frames.reshape(-1, 6, 8)
    ds.PixelData = data[order].astype("<u2").tobytes()
    for kw in ("EnergyWindowVector", "DetectorVector", "RotationVector", "AngularViewVector"):
        setattr(ds, kw, [int(v) for v in np.asarray(getattr(ds, kw))[order]])
    ds.FrameIncrementPointer = [Tag(0x00540020), Tag(0x00540090), Tag(0x00540050),
                                Tag(0x00540010)]  # fmt: skip
    _, _, meta = read_nm_projections(ds, photopeak_window="W0")
    for e, name in enumerate(("W0", "W1")):
        np.testing.assert_array_equal(
            meta["windows"][name][1], frames[e].reshape(-1, 6, 8)[:, ::-1, :]
        )


def test_rle_compressed_frames_are_decoded() -> None:
    ds, frames = simple_dataset()
    ds.compress(RLELossless)
    counts, _, _ = read_nm_projections(ds)
    np.testing.assert_array_equal(counts, frames[0, 0][:, ::-1, :])


# ---------------------------------------------------------------------------------- windows
TC_WINDOWS = (
    ("upper", 154.0, 161.0),
    ("far", 60.0, 80.0),
    ("EM", 126.0, 154.0),
    ("lower", 119.0, 126.0),
)


def test_photopeak_and_tew_windows_are_chosen_automatically() -> None:
    ds, frames = simple_dataset(n_win=4, windows=TC_WINDOWS)
    counts, _, meta = read_nm_projections(ds)
    assert meta["photopeak_window"] == "EM"
    assert meta["isotope"].name == "Tc-99m"
    assert set(meta["windows"]) == {"upper", "far", "EM", "lower"}
    np.testing.assert_array_equal(counts, frames[2, 0][:, ::-1, :])
    windows = meta["windows"]
    assert windows["EM"][0] == EnergyWindow("EM", 126.0, 154.0)
    assert select_scatter_windows(windows, "EM") == ("lower", "upper")

    tew = scatter_estimate(meta, "tew")
    expected = tew_scatter(windows["lower"][1], windows["upper"][1], 7.0, 7.0, 28.0)
    np.testing.assert_allclose(tew, expected, rtol=1e-6)
    assert tew.shape == counts.shape and tew.dtype == np.float32
    dew = scatter_estimate(meta, "dew", k=0.5)
    np.testing.assert_allclose(dew, dew_scatter(windows["lower"][1], k=0.5), rtol=1e-6)


def test_tew_without_an_upper_window_and_without_a_lower_one() -> None:
    ds, _ = simple_dataset(n_win=2, windows=(("EM", 126.0, 154.0), ("lower", 119.0, 126.0)))
    _, _, meta = read_nm_projections(ds)
    lower = meta["windows"]["lower"][1]
    np.testing.assert_allclose(
        scatter_estimate(meta, "tew"), tew_scatter(lower, None, 7.0, None, 28.0), rtol=1e-6
    )
    ds, _ = simple_dataset(n_win=2, windows=(("EM", 126.0, 154.0), ("upper", 154.0, 161.0)))
    _, _, meta = read_nm_projections(ds)
    with pytest.raises(PhysicsError, match="from below"):
        scatter_estimate(meta, "tew")
    with pytest.raises(InputError, match="method"):
        scatter_estimate(meta, "mew")
    with pytest.raises(InputError, match="read_nm_projections"):
        scatter_estimate({}, "tew")


def test_photopeak_of_a_multi_line_isotope_is_its_main_line() -> None:
    windows = (("low", 250.0, 290.0), ("peak364", 328.0, 400.0), ("sc", 291.0, 327.0))
    ds, frames = simple_dataset(
        n_win=3, windows=windows, radionuclide_code_meaning="^131^Iodine", radiopharmaceutical=None
    )
    counts, _, meta = read_nm_projections(ds)
    assert meta["isotope"].name == "I-131"
    assert meta["photopeak_window"] == "peak364"
    np.testing.assert_array_equal(counts, frames[1, 0][:, ::-1, :])
    assert select_scatter_windows(meta["windows"], "peak364") == ("sc", None)


def test_photopeak_choice_by_name_or_index_and_its_errors() -> None:
    ds, frames = simple_dataset(n_win=4, windows=TC_WINDOWS)
    _, _, meta = read_nm_projections(ds, photopeak_window="lower")
    assert meta["photopeak_window"] == "lower"
    counts, _, meta = read_nm_projections(ds, photopeak_window=1)
    assert meta["photopeak_window"] == "far"
    np.testing.assert_array_equal(counts, frames[1, 0][:, ::-1, :])
    with pytest.raises(InputError, match="not one of"):
        read_nm_projections(ds, photopeak_window="nope")
    with pytest.raises(InputError, match="out of range"):
        read_nm_projections(ds, photopeak_window=7)

    ds, _ = simple_dataset(n_win=2, windows=(("a", 60.0, 80.0), ("b", 160.0, 200.0)))
    with pytest.raises(InputError, match="main photon line"):
        read_nm_projections(ds)
    ds, _ = simple_dataset(
        n_win=2, windows=TC_WINDOWS[:2], radionuclide_code_meaning="^133^Xenon",
        radiopharmaceutical="Xe gas",
    )  # fmt: skip
    with pytest.raises(InputError, match="photopeak_window"):
        read_nm_projections(ds)


# ---------------------------------------------------------------------------------- metadata
def test_isotope_activity_and_times() -> None:
    ds, _ = simple_dataset()
    _, _, meta = read_nm_projections(ds)
    assert meta["isotope"].name == "Tc-99m"
    assert meta["radionuclide"] == "^99m^Technetium"
    assert meta["radiopharmaceutical"] == "Tc99m MDP"
    assert meta["injected_activity_bq"] == pytest.approx(740e6)
    assert str(meta["acquisition_datetime"]) == "2024-03-05 11:00:00"
    assert str(meta["injection_datetime"]) == "2024-03-05 08:30:00"
    assert meta["injection_to_acquisition_s"] == pytest.approx(2.5 * 3600)
    assert meta["patient_position"] == "HFS"

    ds, _ = simple_dataset(
        injection_datetime="20240304173015.5", radionuclide_code_meaning=None,
        radiopharmaceutical="Tc99m MAA", acquisition_time="093000.25",
    )  # fmt: skip
    _, _, meta = read_nm_projections(ds)
    assert meta["isotope"].name == "Tc-99m"
    assert meta["injection_to_acquisition_s"] == pytest.approx(16 * 3600 - 15.5 + 0.25)


def test_injection_time_after_the_scan_is_the_day_before() -> None:
    ds, _ = simple_dataset(injection_time="230000", acquisition_time="010000")
    _, _, meta = read_nm_projections(ds)
    assert meta["injection_to_acquisition_s"] == pytest.approx(2 * 3600)


def test_utc_offsets_on_both_times_are_honoured() -> None:
    # Injection 09:30 at UTC+1 is 08:30Z; the scan at 11:00Z starts 2.5 h later (1.5 h if the
    # offsets were dropped). The metadata keep the times as recorded.
    ds, _ = simple_dataset(injection_time=None, injection_datetime="20240305093000+0100")
    for keyword in ("AcquisitionDate", "AcquisitionTime", "SeriesDate", "SeriesTime"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.AcquisitionDateTime = "20240305110000+0000"
    _, _, meta = read_nm_projections(ds)
    assert meta["acquisition_datetime_source"] == "AcquisitionDateTime"
    assert meta["injection_to_acquisition_s"] == pytest.approx(2.5 * 3600)
    assert str(meta["acquisition_datetime"]) == "2024-03-05 11:00:00"
    assert str(meta["injection_datetime"]) == "2024-03-05 09:30:00"


def test_activity_given_in_bq_is_recognised(caplog) -> None:
    ds, _ = simple_dataset(total_dose=7.4e8)
    with caplog.at_level(logging.WARNING, logger="recon"):
        _, _, meta = read_nm_projections(ds)
    assert meta["injected_activity_bq"] == pytest.approx(7.4e8)
    assert "Bq" in caplog.text


def test_unknown_isotope_is_reported_not_fatal(caplog) -> None:
    ds, _ = simple_dataset(radionuclide_code_meaning="^133^Xenon", radiopharmaceutical=None)
    with caplog.at_level(logging.WARNING, logger="recon"):
        _, _, meta = read_nm_projections(ds)
    assert meta["isotope"] is None and meta["radionuclide"] == "^133^Xenon"
    assert "Xenon" in caplog.text


def test_missing_metadata_is_none() -> None:
    ds, _ = simple_dataset(
        radionuclide_code_meaning=None, radiopharmaceutical=None, total_dose=None,
        injection_time=None,
    )  # fmt: skip
    _, _, meta = read_nm_projections(ds)
    assert meta["isotope"] is None
    assert meta["injected_activity_bq"] is None and meta["injection_to_acquisition_s"] is None


# ------------------------------------------------------------------------------ patient position
def test_patient_positions_other_than_hfs_need_an_override(caplog) -> None:
    for position in ("FFS", "HFP", None):
        ds, frames = simple_dataset(patient_position=position)
        with pytest.raises(GeometryError, match="patient_position_override"):
            read_nm_projections(ds)
        with caplog.at_level(logging.WARNING, logger="recon"):
            counts, _, meta = read_nm_projections(ds, patient_position_override="HFS")
        assert "Patient Position" in caplog.text
        assert meta["patient_position"] == position and meta["patient_position_used"] == "HFS"
        np.testing.assert_array_equal(counts, frames[0, 0][:, ::-1, :])
        caplog.clear()
    with pytest.raises(InputError, match="only 'HFS'"):
        read_nm_projections(ds, patient_position_override="FFS")


# ---------------------------------------------------------------------------------- bad input
def test_not_a_file_or_not_dicom(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_nm_projections(tmp_path / "missing.dcm")
    junk = tmp_path / "junk.dcm"
    junk.write_text("not dicom")
    with pytest.raises(InputError, match="is not a DICOM file"):
        read_nm_projections(junk)
    with pytest.raises(InputError, match="pydicom Dataset"):
        read_nm_projections(42)  # type: ignore[arg-type]


def test_wrong_modality_sop_class_or_image_type() -> None:
    ds, _ = simple_dataset()
    ds.Modality = "CT"
    with pytest.raises(InputError, match=r"Modality \(0008,0060\)"):
        read_nm_projections(ds)
    ds, _ = simple_dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    with pytest.raises(InputError, match="SOP Class UID"):
        read_nm_projections(ds)
    ds, _ = simple_dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    with pytest.raises(InputError, match="Image Type"):
        read_nm_projections(ds)


def test_contradictory_frame_counts() -> None:
    ds, _ = simple_dataset(n_views=10, n_det=2)
    ds.NumberOfFrames = 19
    with pytest.raises(InputError, match=r"Number of Frames \(0028,0008\)"):
        read_nm_projections(ds)
    ds, _ = simple_dataset(n_views=10, n_det=2)
    ds.RotationInformationSequence[0].NumberOfFramesInRotation = 20
    with pytest.raises(InputError, match="Number of Frames in Rotation"):
        read_nm_projections(ds)
    ds, _ = simple_dataset(n_views=10, n_det=2)
    ds.NumberOfDetectors = 3
    with pytest.raises(InputError, match="Number of Detectors"):
        read_nm_projections(ds)
    ds, _ = simple_dataset(n_views=10, n_det=2)
    ds.DetectorVector = [1] * 10 + [3] * 10
    with pytest.raises(InputError, match=r"Detector Vector .* 1\.\.2"):
        read_nm_projections(ds)
    ds, _ = simple_dataset(n_views=10)
    view = list(ds.AngularViewVector)
    view[3] = 3
    ds.AngularViewVector = view
    with pytest.raises(InputError, match="each of 1..10 once"):
        read_nm_projections(ds)


def test_frame_increment_pointer_problems() -> None:
    ds, _ = simple_dataset()
    del ds.FrameIncrementPointer
    with pytest.raises(InputError, match="Frame Increment Pointer"):
        read_nm_projections(ds)
    ds, _ = simple_dataset()
    ds.FrameIncrementPointer = [Tag(0x00540090), Tag(0x00540070)]
    with pytest.raises(InputError, match="gated or dynamic"):
        read_nm_projections(ds)
    ds, _ = simple_dataset()
    ds.FrameIncrementPointer = [Tag(0x00540010), Tag(0x00540020)]
    with pytest.raises(InputError, match="Angular View Vector"):
        read_nm_projections(ds)
    ds, _ = simple_dataset(n_det=2)
    ds.FrameIncrementPointer = [Tag(0x00540010), Tag(0x00540090)]
    with pytest.raises(InputError, match="does not include Detector Vector"):
        read_nm_projections(ds)


def test_non_monotonic_or_impossible_angles() -> None:
    ds, _ = simple_dataset(n_views=10)
    view = list(range(1, 11))
    view[4], view[5] = view[5], view[4]
    ds.AngularViewVector = view
    with pytest.raises(GeometryError, match="not monotonic"):
        read_nm_projections(ds)
    ds, _ = simple_dataset(n_views=10, angular_step_deg=40.0)
    with pytest.raises(GeometryError, match="wrap"):
        read_nm_projections(ds)
    for step in (0.0, -6.0):
        ds, _ = simple_dataset(angular_step_deg=step)
        with pytest.raises(GeometryError, match="Angular Step"):
            read_nm_projections(ds)
    ds, _ = simple_dataset(direction="XX")
    with pytest.raises(GeometryError, match="Rotation Direction"):
        read_nm_projections(ds)


def test_ccw_spelling_is_read_as_cc(caplog) -> None:
    ds, _ = simple_dataset(direction="CCW", start_angles_deg=(10.0,), angular_step_deg=30.0)
    with caplog.at_level(logging.WARNING, logger="recon"):
        _, geometry, meta = read_nm_projections(ds)
    assert "CCW" in caplog.text and meta["rotation_directions"] == ["CC"]
    np.testing.assert_allclose(meta["dicom_angles_deg"], 10.0 + 30.0 * np.arange(12))
    np.testing.assert_allclose(geometry.angles_deg, np.mod(170.0 - 30.0 * np.arange(12), 360))


def test_missing_geometry_tags() -> None:
    ds, _ = simple_dataset()
    del ds.PixelSpacing
    with pytest.raises(GeometryError, match="Pixel Spacing"):
        read_nm_projections(ds)
    ds, _ = simple_dataset()
    del ds.RotationInformationSequence[0].ActualFrameDuration
    with pytest.raises(GeometryError, match="Actual Frame Duration"):
        read_nm_projections(ds)
    ds, _ = simple_dataset()
    del ds.RotationInformationSequence[0].StartAngle
    del ds.DetectorInformationSequence[0].StartAngle
    with pytest.raises(GeometryError, match="Start Angle"):
        read_nm_projections(ds)
    ds, _ = simple_dataset()
    del ds.RotationInformationSequence
    with pytest.raises(GeometryError, match="Rotation Information Sequence"):
        read_nm_projections(ds)
    ds, _ = simple_dataset()
    del ds.DetectorInformationSequence[0].RadialPosition
    with pytest.raises(GeometryError, match="Radial Position"):
        read_nm_projections(ds)
    ds, _ = simple_dataset(radial_positions=[[200.0, 210.0, 220.0]])
    with pytest.raises(GeometryError, match="Radial Position.*3 values"):
        read_nm_projections(ds)


def test_two_detectors_need_their_own_start_angles() -> None:
    ds, _ = simple_dataset(n_det=2, start_angle_in="rotation")
    with pytest.raises(GeometryError, match="Start Angle"):
        read_nm_projections(ds)
    # One detector: the rotation's Start Angle (the standard's place) is enough.
    ds, _ = simple_dataset(start_angle_in="rotation", start_angles_deg=(30.0,))
    _, geometry, _ = read_nm_projections(ds)
    assert geometry.angles_deg[0] == pytest.approx(150.0)


def test_truncated_pixel_data() -> None:
    ds, _ = simple_dataset()
    ds.PixelData = ds.PixelData[:-100]
    with pytest.raises(InputError, match=r"Pixel Data \(7FE0,0010\).*truncated"):
        read_nm_projections(ds)
    ds, _ = simple_dataset()
    del ds.PixelData
    with pytest.raises(InputError, match="Pixel Data"):
        read_nm_projections(ds)


def test_compressed_pixel_data_without_a_decoder_names_the_plugins() -> None:
    if get_decoder(JPEGBaseline8Bit).is_available:
        pytest.skip("a JPEG decoder is installed here")
    ds, _ = simple_dataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    with pytest.raises(InputError, match="pylibjpeg") as info:
        read_nm_projections(ds)
    assert "gdcm" in str(info.value)


def test_negative_counts_are_rejected() -> None:
    frames = np.ones((1, 1, 12, 6, 8), np.int16)
    ds = nm_tomo_dataset(frames, angular_step_deg=30.0, dtype="<i2")
    data = np.frombuffer(ds.PixelData, "<i2").copy()
    data[5] = -3
    ds.PixelData = data.tobytes()
    with pytest.raises(InputError, match="negative"):
        read_nm_projections(ds)
