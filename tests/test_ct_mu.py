"""CT to attenuation map: HU → μ conversion and resampling of CT series onto an image grid."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import recon
from recon.errors import GeometryError, InputError, PhysicsError
from recon.io.ct import read_ct_mu_map, read_ct_series
from recon.physics.attenuation import effective_ct_energy_kev, hu_to_mu
from tests.dicom_factory import ct_series, nm_tomo_dataset, save, write_series

TC99M_KEV = 140.511


# ---------------------------------------------------------------------------------- HU -> mu
@pytest.mark.parametrize(
    ("energy", "water_cm2_g"),
    [(80.0, 0.1837), (100.0, 0.1707), (150.0, 0.1505), (200.0, 0.1370), (300.0, 0.1186)],
)
def test_water_is_water_and_air_is_nothing(energy: float, water_cm2_g: float) -> None:
    # NIST SRD 126, water: μ/ρ in cm²/g, ρ = 1 g/cm³; recon works in 1/mm.
    assert hu_to_mu(0.0, energy) == pytest.approx(water_cm2_g / 10, rel=1e-4)
    assert hu_to_mu(-1000.0, energy) == pytest.approx(0.0, abs=1e-9)
    assert hu_to_mu(-1500.0, energy) == 0.0
    assert hu_to_mu(-500.0, energy) == pytest.approx(water_cm2_g / 20, rel=1e-4)


def test_tc99m_water_value() -> None:
    # Log-log between the NIST 100 and 150 keV points: 0.0154 /mm (DESIGN: 0.015 /mm at 140 keV).
    assert hu_to_mu(0.0, TC99M_KEV) == pytest.approx(0.01536, abs=1e-4)


def test_bone_branch_is_monotonic_and_flatter_than_water_above_the_ct_energy() -> None:
    hu = np.linspace(-1000, 3000, 401)
    for energy in (TC99M_KEV, 171.3, 245.4, 364.5, 511.0):
        mu = hu_to_mu(hu, energy, kvp=120)
        assert mu.dtype == np.float32 and mu.shape == hu.shape
        assert np.all(np.diff(mu) > 0)
        water_slope = hu_to_mu(0.0, energy) / 1000
        bone_slope = (hu_to_mu(2000.0, energy) - hu_to_mu(1000.0, energy)) / 1000
        # Bone attenuates relatively less at emission energies than in the CT beam.
        assert 0 < bone_slope < water_slope


def test_at_the_effective_ct_energy_the_two_branches_are_one_line() -> None:
    # By definition of HU at the CT beam energy, μ = μ_water·(1 + HU/1000) for bone mixtures too.
    for kvp in (80, 120, 140):
        e_ct = effective_ct_energy_kev(kvp)
        hu = np.array([-800.0, 0.0, 500.0, 1500.0])
        np.testing.assert_allclose(
            hu_to_mu(hu, e_ct, kvp), hu_to_mu(0.0, e_ct) * (1 + hu / 1000), rtol=1e-5
        )


def test_kvp_dependence() -> None:
    energies = [effective_ct_energy_kev(k) for k in (80, 100, 120, 140)]
    assert np.all(np.diff(energies) > 0) and 50 < energies[0] < energies[-1] < 90
    bone = [hu_to_mu(1000.0, TC99M_KEV, kvp=k) for k in (80, 100, 120, 140)]
    # A harder beam gives bone a lower CT number, so the same HU means more bone.
    assert np.all(np.diff(bone) > 0)
    assert bone[-1] / bone[0] > 1.1
    for hu in (-1000.0, -300.0, 0.0):
        values = [hu_to_mu(hu, TC99M_KEV, kvp=k) for k in (80, 120, 140)]
        assert np.ptp(values) < 1e-9


@pytest.mark.parametrize(
    ("kvp", "a", "b", "knee"),
    [(80, 3.64e-5, 6.26e-2, 1050), (120, 5.10e-5, 4.71e-2, 1047), (140, 5.64e-5, 4.08e-2, 1030)],
)
def test_511_kev_is_carney(kvp: int, a: float, b: float, knee: float) -> None:
    hu = np.array([-1000.0, -200.0, 0.0, 40.0, 100.0, 1000.0, 2000.0])
    expected_cm = np.where(hu + 1000 <= knee, 9.6e-5 * (hu + 1000), a * (hu + 1000) + b)
    np.testing.assert_allclose(hu_to_mu(hu, 511.0, kvp), expected_cm / 10, rtol=1e-5, atol=1e-9)
    # The water/bone model 2 keV away agrees: its effective CT energy was calibrated on Carney.
    model = hu_to_mu(hu, 509.0, kvp)
    slope_model = (model[-1] - model[-2]) / 1000
    assert slope_model == pytest.approx(a / 10, rel=0.01)
    np.testing.assert_allclose(model, expected_cm / 10, rtol=0.02, atol=2e-4)


def test_conversion_errors(caplog) -> None:
    with pytest.raises(PhysicsError, match="energy_kev"):
        hu_to_mu(0.0, 20.0)
    with pytest.raises(PhysicsError, match="kvp"):
        hu_to_mu(0.0, 140.0, kvp=-1)
    with pytest.raises(InputError, match="NaN"):
        hu_to_mu(np.array([0.0, np.nan]), 140.0)
    with caplog.at_level(logging.WARNING, logger="recon"):
        clamped = hu_to_mu(1000.0, 140.0, kvp=150)
    assert "150" in caplog.text
    assert clamped == hu_to_mu(1000.0, 140.0, kvp=140)


# ---------------------------------------------------------------------------------- phantom CT
CYL_CENTRE = np.array([10.0, -5.0])
CYL_RADIUS = 80.0
BONE_CENTRE = np.array([50.0, -20.0, 30.0])
BONE_HALF = 12.0
LUNG_CENTRE = np.array([-40.0, 10.0, -10.0])
LUNG_RADIUS = 15.0
GRID = recon.ImageGrid(shape=(22, 60, 60), voxel_size=4.0)


def phantom_hu(p: np.ndarray) -> np.ndarray:
    """A water cylinder along z with a bone cube and a lung ball: HU at world points (..., 3)."""
    r = np.linalg.norm(p[..., :2] - CYL_CENTRE, axis=-1)
    hu = np.where(r <= CYL_RADIUS, 0.0, -1000.0)
    hu = np.where(np.all(np.abs(p - BONE_CENTRE) <= BONE_HALF, axis=-1), 1000.0, hu)
    return np.where(np.linalg.norm(p - LUNG_CENTRE, axis=-1) <= LUNG_RADIUS, -700.0, hu)


def phantom_ct(
    *,
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    first_position=(-129.3, -131.1, -60.2),
    pixel_spacing=(2.0, 2.1),
    slice_spacing=2.5,
    shape=(50, 128, 126),
    **kwargs,
):
    """CT slices of the phantom sampled at the pixel centres the given geometry defines."""
    row = np.asarray(orientation[:3])
    col = np.asarray(orientation[3:])
    normal = np.cross(row, col)
    k, r, c = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    points = (
        np.asarray(first_position)
        + (k * slice_spacing)[..., None] * normal
        + (r * pixel_spacing[0])[..., None] * col
        + (c * pixel_spacing[1])[..., None] * row
    )
    return ct_series(
        phantom_hu(points),
        pixel_spacing=pixel_spacing,
        first_position=first_position,
        slice_spacing=slice_spacing,
        orientation=orientation,
        **kwargs,
    )


def region_masks(grid: recon.ImageGrid, margin: float = 4.0):
    """Voxels surely inside water, bone, lung, and surely outside the cylinder."""
    z, y, x = grid.meshgrid_mm()
    p = np.stack([x, y, z], axis=-1)
    r = np.linalg.norm(p[..., :2] - CYL_CENTRE, axis=-1)
    box = np.max(np.abs(p - BONE_CENTRE), axis=-1)
    ball = np.linalg.norm(p - LUNG_CENTRE, axis=-1)
    water = (r < CYL_RADIUS - margin) & (box > BONE_HALF + margin) & (ball > LUNG_RADIUS + margin)
    return {
        "water": water,
        "bone": box < BONE_HALF - margin,
        "lung": ball < LUNG_RADIUS - margin,
        "air": r > CYL_RADIUS + margin,
    }


def check_phantom_map(mu: np.ndarray, grid: recon.ImageGrid = GRID, kvp: float = 120.0) -> None:
    masks = region_masks(grid)
    for name, hu in (("water", 0.0), ("bone", 1000.0), ("lung", -700.0), ("air", -1000.0)):
        assert masks[name].sum() > 0, name
        np.testing.assert_allclose(
            mu[masks[name]], hu_to_mu(hu, TC99M_KEV, kvp), rtol=1e-5, atol=1e-7, err_msg=name
        )


@pytest.fixture(scope="module")
def reference_map(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    folder = tmp_path_factory.mktemp("ct")
    write_series(phantom_ct(), folder)
    image = read_ct_mu_map(folder, GRID, TC99M_KEV)
    return np.asarray(image)


def test_water_cylinder_ct_gives_water_inside(tmp_path: Path) -> None:
    folder = tmp_path / "ct"
    write_series(phantom_ct(frame_of_reference_uid="1.2.3.4"), folder)
    image = read_ct_mu_map(folder, GRID, TC99M_KEV, frame_of_reference_uid="1.2.3.4")
    assert isinstance(image, recon.Image) and image.units == "1/mm"
    assert image.grid == GRID and image.data.dtype == np.float32
    assert image.info["kvp"] == 120.0 and image.info["energy_kev"] == TC99M_KEV
    mu = np.asarray(image)
    check_phantom_map(mu)
    # The cylinder's cross-section has the right area, and the bone sits where it should.
    water = hu_to_mu(0.0, TC99M_KEV)
    mid = mu[1]  # z = −38 mm: no bone, no lung
    area = (mid > water / 2).sum() * GRID.voxel_size_mm[1] * GRID.voxel_size_mm[2]
    assert area == pytest.approx(np.pi * CYL_RADIUS**2, rel=0.03)
    bone = mu > 1.2 * water
    centre = GRID.index_to_world(np.argwhere(bone).mean(axis=0))
    np.testing.assert_allclose(centre, BONE_CENTRE, atol=1.0)


def test_reversed_and_shuffled_slices_give_the_same_map(reference_map, tmp_path: Path) -> None:
    # Slices stored from the top down (Image Position moving against the normal).
    top = (-129.3, -131.1, -60.2 + 49 * 2.5)
    datasets = phantom_ct(first_position=top, slice_spacing=-2.5)
    np.random.default_rng(1).shuffle(datasets)
    mu = np.asarray(read_ct_mu_map(datasets, GRID, TC99M_KEV))
    np.testing.assert_allclose(mu, reference_map, atol=1e-6)
    series = read_ct_series(datasets)
    assert np.all(np.diff(series.slice_positions_mm) > 0)


def test_flipped_in_plane_orientation(reference_map) -> None:
    # Rows running to the patient's right and columns to anterior: same object, same map.
    datasets = phantom_ct(
        orientation=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
        first_position=(-129.3 + 125 * 2.1, -131.1 + 127 * 2.0, -60.2),
    )
    mu = np.asarray(read_ct_mu_map(datasets, GRID, TC99M_KEV))
    np.testing.assert_allclose(mu, reference_map, atol=1e-6)


def test_coronal_slices_with_other_spacing() -> None:
    # Slices along y (normal = row × column = +y), different in-plane spacing.
    datasets = phantom_ct(
        orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        first_position=(-128.0, -132.0, 60.0),
        pixel_spacing=(3.0, 2.5),
        slice_spacing=3.2,
        shape=(84, 42, 104),
    )
    check_phantom_map(np.asarray(read_ct_mu_map(datasets, GRID, TC99M_KEV)))


def _rotation(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    if axis == "x":
        return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    "rotation",
    [_rotation("z", 30.0), _rotation("z", 30.0) @ _rotation("x", 20.0)],
    ids=["axial-rotated-30", "double-oblique"],
)
def test_oblique_orientation(rotation: np.ndarray) -> None:
    # Rows and columns at oblique angles (the second also tilts the slice normal by 20°): the
    # stack is sampled in world coordinates, so the map is the same object on the same grid.
    row, col = rotation[:, 0], rotation[:, 1]
    normal = np.cross(row, col)
    shape, pixel_spacing, slice_spacing = (70, 128, 126), (2.0, 2.1), 2.5
    centre = np.array([CYL_CENTRE[0], CYL_CENTRE[1], 0.0])
    first = (
        centre
        - (shape[0] - 1) / 2 * slice_spacing * normal
        - (shape[1] - 1) / 2 * pixel_spacing[0] * col
        - (shape[2] - 1) / 2 * pixel_spacing[1] * row
    )
    datasets = phantom_ct(
        orientation=(*row, *col), first_position=tuple(first), pixel_spacing=pixel_spacing,
        slice_spacing=slice_spacing, shape=shape,
    )  # fmt: skip
    check_phantom_map(np.asarray(read_ct_mu_map(datasets, GRID, TC99M_KEV)))


def test_uneven_slice_spacing_and_a_grid_beyond_the_ct() -> None:
    datasets = phantom_ct()
    del datasets[5]  # a gap at z = −47.7 mm: spacing 2.5 mm except one 5 mm step
    grid = recon.ImageGrid(shape=(40, 60, 60), voxel_size=4.0, origin=(-70.0, -118.0, -118.0))
    mu = np.asarray(read_ct_mu_map(datasets, grid, TC99M_KEV))
    z = grid.axis_mm(0)
    inside_ct = (z > -60.2) & (z < -60.2 + 49 * 2.5)
    assert np.all(mu[~inside_ct] == 0.0)  # beyond the CT: air
    sub = recon.ImageGrid(shape=(int(inside_ct.sum()), 60, 60), voxel_size=4.0,
                          origin=(z[inside_ct][0], -118.0, -118.0))  # fmt: skip
    check_phantom_map(mu[inside_ct], sub)


def test_kvp_from_the_file_or_given(tmp_path: Path) -> None:
    datasets = phantom_ct(kvp=80.0)
    bone = region_masks(GRID)["bone"]
    mu80 = np.asarray(read_ct_mu_map(datasets, GRID, TC99M_KEV))
    assert np.allclose(mu80[bone], hu_to_mu(1000.0, TC99M_KEV, 80))
    datasets = phantom_ct(kvp=None)
    with pytest.raises(InputError, match=r"KVP \(0018,0060\)"):
        read_ct_mu_map(datasets, GRID, TC99M_KEV)
    mu140 = np.asarray(read_ct_mu_map(datasets, GRID, TC99M_KEV, kvp=140))
    assert np.all(mu140[bone] > mu80[bone])


def test_frame_of_reference_mismatch() -> None:
    datasets = phantom_ct(frame_of_reference_uid="1.2.3.4")
    with pytest.raises(GeometryError, match="Frame of Reference"):
        read_ct_mu_map(datasets, GRID, TC99M_KEV, frame_of_reference_uid="1.2.3.5")


def test_frame_of_reference_of_an_nm_file_is_checked(tmp_path: Path) -> None:
    from recon.io.dicom_nm import read_nm_projections

    frames = np.ones((1, 1, 12, 6, 8), np.uint16)
    nm = nm_tomo_dataset(frames, angular_step_deg=30.0, frame_of_reference_uid="1.2.3.9")
    _, _, meta = read_nm_projections(save(nm, tmp_path / "nm.dcm"))
    nm_frame = meta["frame_of_reference_uid"]
    same = phantom_ct(frame_of_reference_uid="1.2.3.9")
    read_ct_mu_map(same, GRID, TC99M_KEV, frame_of_reference_uid=nm_frame)
    with pytest.raises(GeometryError, match="Frame of Reference"):
        read_ct_mu_map(phantom_ct(), GRID, TC99M_KEV, frame_of_reference_uid=nm_frame)


def test_bad_series(tmp_path: Path) -> None:
    small = dict(shape=(4, 8, 8), first_position=(0.0, 0.0, 0.0), slice_spacing=2.0)
    # Two series in one folder.
    folder = tmp_path / "two"
    folder.mkdir()
    for prefix in "ab":
        for i, ds in enumerate(phantom_ct(**small)):
            save(ds, folder / f"{prefix}{i}.dcm")
    with pytest.raises(InputError, match="series"):
        read_ct_series(folder)
    # Non-DICOM files in a folder are ignored; a folder without CT is an error.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="no CT"):
        read_ct_series(empty)
    with pytest.raises(InputError, match="does not exist"):
        read_ct_series(tmp_path / "missing")
    # Duplicated slice.
    datasets = phantom_ct(**small)
    with pytest.raises(InputError, match="same position"):
        read_ct_series([*datasets, datasets[1]])
    # Gantry tilt: positions move off the normal.
    datasets = phantom_ct(**small)
    for k, ds in enumerate(datasets):
        ds.ImagePositionPatient = [0.0, 1.5 * k, 2.0 * k]
    with pytest.raises(GeometryError, match="tilt"):
        read_ct_series(datasets)
    # An NM object among the slices.
    nm = nm_tomo_dataset(np.ones((1, 1, 4, 6, 8), np.uint16), angular_step_deg=90.0)
    with pytest.raises(InputError, match="not 'CT'"):
        read_ct_series([*phantom_ct(**small), nm])
    # Missing orientation, a single slice, a wrong grid.
    datasets = phantom_ct(**small)
    del datasets[0].ImageOrientationPatient
    with pytest.raises(GeometryError, match="ImageOrientationPatient"):
        read_ct_series(datasets)
    with pytest.raises(InputError, match="two slices"):
        read_ct_series(phantom_ct(**small)[:1])
    with pytest.raises(GeometryError, match="ImageGrid"):
        read_ct_mu_map(phantom_ct(**small), (4, 4, 4), TC99M_KEV)  # type: ignore[arg-type]
