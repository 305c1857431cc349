"""Digital phantoms: volumes, concentrations and attenuation match the physical objects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.simulate.phantoms import (
    LUNG_DENSITY_RATIO,
    MU_WATER_PER_MM_140KEV,
    NEMA_SPHERE_DIAMETERS_MM,
    SphereSpec,
    nema_iec_phantom,
    point_source,
    sphere_mask,
    uniform_cylinder,
)

# 2 mm voxels, large enough for the full-size body (it needs ~157 mm radius transverse).
GRID_2MM = ImageGrid(shape=(96, 160, 160), voxel_size=2.0)


@pytest.fixture(scope="module")
def nema_2mm() -> tuple[np.ndarray, np.ndarray, list[SphereSpec]]:
    return nema_iec_phantom(GRID_2MM)


def _value_at(grid: ImageGrid, image: np.ndarray, xyz: tuple[float, float, float]) -> float:
    idx = np.rint(grid.world_to_index(np.asarray(xyz))).astype(int)
    return float(image[tuple(idx)])


def _box_around(grid: ImageGrid, sphere: SphereSpec, margin_mm: float) -> tuple[slice, ...]:
    c = grid.world_to_index(np.asarray(sphere.centre_mm))
    half = (sphere.diameter_mm / 2 + margin_mm) / np.asarray(grid.voxel_size_mm)
    return tuple(
        slice(int(math.floor(ci - h)), int(math.ceil(ci + h)) + 1)
        for ci, h in zip(c, half, strict=True)
    )


def test_nema_outputs(nema_2mm: tuple[np.ndarray, np.ndarray, list[SphereSpec]]) -> None:
    activity, mu, spheres = nema_2mm
    assert activity.shape == mu.shape == GRID_2MM.shape
    assert activity.dtype == mu.dtype == np.float32
    assert [s.diameter_mm for s in spheres] == list(NEMA_SPHERE_DIAMETERS_MM)
    assert len({s.name for s in spheres}) == 6
    for s in spheres:
        x, y, z = s.centre_mm
        assert z == 0.0
        assert math.hypot(x, y) == pytest.approx(57.2)
        assert s.activity == pytest.approx(4.0)
    # Neighbouring spheres are 60° apart on the ring.
    angles = sorted(math.degrees(math.atan2(s.centre_mm[1], s.centre_mm[0])) % 360 for s in spheres)
    np.testing.assert_allclose(np.diff(angles), 60.0, atol=1e-9)
    assert activity.min() >= 0.0


def test_nema_sphere_volumes_within_3_percent(
    nema_2mm: tuple[np.ndarray, np.ndarray, list[SphereSpec]],
) -> None:
    activity, _, spheres = nema_2mm
    voxel_ml = GRID_2MM.voxel_volume_ml
    for s in spheres:
        # Around a sphere there is only background water (1) and sphere (4): the excess over
        # background, divided by 4 - 1, is the sphere's volume.
        box = _box_around(GRID_2MM, s, margin_mm=6.0)
        volume_ml = float((activity[box].astype(np.float64) - 1.0).sum()) / 3.0 * voxel_ml
        exact = 4 / 3 * math.pi * (s.diameter_mm / 2) ** 3 / 1000
        assert s.volume_ml == pytest.approx(exact)
        assert volume_ml == pytest.approx(exact, rel=0.03), s.name


def test_nema_concentration_ratio_and_lung(
    nema_2mm: tuple[np.ndarray, np.ndarray, list[SphereSpec]],
) -> None:
    activity, mu, spheres = nema_2mm
    for s in spheres:
        inner = sphere_mask(GRID_2MM, s.centre_mm, s.diameter_mm - 2 * 2 * math.sqrt(3))
        assert inner.any()
        np.testing.assert_allclose(activity[inner], 4.0, rtol=1e-6)
    # Background anterior of the spheres, and above them.
    assert _value_at(GRID_2MM, activity, (1.0, -91.0, 1.0)) == pytest.approx(1.0)
    assert _value_at(GRID_2MM, activity, (-57.0, 1.0, 41.0)) == pytest.approx(1.0)
    # Lung insert: no activity anywhere inside, 0.3 g/cm³ attenuation.
    lung_core = uniform_cylinder(GRID_2MM, 25.0 - 2.0 * math.sqrt(2), 170.0) > 0.999
    assert lung_core.sum() > 1000
    assert activity[lung_core].max() == 0.0
    np.testing.assert_allclose(
        mu[lung_core], LUNG_DENSITY_RATIO * MU_WATER_PER_MM_140KEV, rtol=1e-6
    )


def test_nema_mu_values_and_outline(
    nema_2mm: tuple[np.ndarray, np.ndarray, list[SphereSpec]],
) -> None:
    _, mu, spheres = nema_2mm
    water = MU_WATER_PER_MM_140KEV
    assert water == pytest.approx(0.1537 / 10)  # cm²/g × 1 g/cm³, in 1/mm
    assert mu.max() == pytest.approx(water)
    # Spheres are water: same mu as the background.
    for s in spheres:
        assert _value_at(GRID_2MM, mu, s.centre_mm) == pytest.approx(water)
    # LPS: the half-cylinder is anterior (−y), 112 mm from the lung axis; the posterior wall is
    # 112 mm away too; the body is 294 mm wide (at the level of the half-cylinder's axis, 35 mm
    # posterior of the lung axis) and 180 mm long; the posterior corners are rounded.
    # Points are voxel centres (odd mm on this grid); each voxel lies wholly inside or outside.
    inside = [(1, -109, 1), (1, 109, 1), (145, 35, 1), (-145, 35, 1), (139, 1, 1), (1, -61, 87)]
    inside += [(1, 61, -87), (119, 89, 1)]
    outside = [(1, -115, 1), (1, 115, 1), (151, 35, 1), (145, 1, 1), (1, -61, 93), (141, 101, 1)]
    for p in inside:
        assert _value_at(GRID_2MM, mu, p) == pytest.approx(water), p
    for p in outside:
        assert _value_at(GRID_2MM, mu, p) == 0.0, p
    # Mirror symmetry in x (the outline is symmetric; only the spheres break it).
    np.testing.assert_array_equal(mu[:, :, ::-1], mu)
    # Total attenuating volume: the cross-section (half disc + rectangle + two quarter discs)
    # times 180 mm, with the lung at 0.3× water; supersampling keeps it within 0.2 %.
    area = math.pi * 147**2 / 2 + 140 * 77 + math.pi * 77**2 / 2
    lung = math.pi * 25**2
    expected_ml = (area - (1 - LUNG_DENSITY_RATIO) * lung) * 180 / 1000
    got_ml = float(mu.astype(np.float64).sum()) / water * GRID_2MM.voxel_volume_ml
    assert got_ml == pytest.approx(expected_ml, rel=2e-3)


def test_nema_total_activity(nema_2mm: tuple[np.ndarray, np.ndarray, list[SphereSpec]]) -> None:
    activity, _, spheres = nema_2mm
    area = math.pi * 147**2 / 2 + 140 * 77 + math.pi * 77**2 / 2 - math.pi * 25**2
    spheres_ml = sum(s.volume_ml for s in spheres)
    expected = (area * 180 / 1000 - spheres_ml) * 1.0 + spheres_ml * 4.0
    got = float(activity.astype(np.float64).sum()) * GRID_2MM.voxel_volume_ml
    assert got == pytest.approx(expected, rel=2e-3)


def test_nema_scaling_parameters() -> None:
    grid = ImageGrid(shape=(48, 80, 80), voxel_size=4.0)
    act1, mu1, _ = nema_iec_phantom(grid, sphere_to_background=8.0, background=2.5)
    act0, mu0, spheres0 = nema_iec_phantom(grid, sphere_to_background=0.0, background=2.5)
    assert all(s.activity == 0.0 for s in spheres0)
    np.testing.assert_array_equal(mu0, mu1)  # activity does not change attenuation
    assert _value_at(grid, act1, (0, -90, 0)) == pytest.approx(2.5)
    s37 = next(s for s in spheres0 if s.diameter_mm == 37)
    assert _value_at(grid, act1, s37.centre_mm) == pytest.approx(20.0)
    assert _value_at(grid, act0, s37.centre_mm) == 0.0
    _, mu_i123, _ = nema_iec_phantom(grid, mu_water_per_mm=0.0147)
    assert mu_i123.max() == pytest.approx(0.0147)


def test_nema_fits_a_small_grid() -> None:
    # 256 mm transverse and 128 mm axial: smaller than the 294 × 224 × 180 mm body.
    grid = ImageGrid(shape=(32, 64, 64), voxel_size=4.0)
    activity, mu, spheres = nema_iec_phantom(grid)
    assert np.isfinite(activity).all() and np.isfinite(mu).all()
    # The outermost voxels stay empty: the body was shrunk and shortened to fit.
    for image in (activity, mu):
        assert image[[0, -1]].max() == 0.0
        assert image[:, [0, -1]].max() == 0.0
        assert image[:, :, [0, -1]].max() == 0.0
    # ... and it stays within the cylinder inscribed in the transverse field of view.
    z, y, x = grid.meshgrid_mm()
    assert activity[np.hypot(x, y) > 128.0 - 4.0 + 2 * math.sqrt(2)].max() == 0.0
    # The spheres keep their true size: still 4/3 π r³ within a few % at 4 mm voxels.
    for s in spheres[3:]:
        box = _box_around(grid, s, margin_mm=8.0)
        volume_ml = float((activity[box].astype(np.float64) - 1.0).sum()) / 3.0
        volume_ml *= grid.voxel_volume_ml
        assert volume_ml == pytest.approx(s.volume_ml, rel=0.05), s.name
    # Anisotropic voxels and a grid that does not start at the isocentre also work.
    shifted = ImageGrid(shape=(40, 70, 90), voxel_size=(3.0, 3.5, 3.5), origin=(-50, -120, -150))
    act, _, _ = nema_iec_phantom(shifted)
    assert act.max() == pytest.approx(4.0)


def test_nema_rejects_bad_input() -> None:
    grid = ImageGrid(shape=(32, 64, 64), voxel_size=4.0)
    for kwargs in (
        dict(sphere_to_background=-1.0),
        dict(sphere_to_background=float("nan")),
        dict(background=0.0),
        dict(background=float("inf")),
        dict(supersample=0),
        dict(supersample=2.5),
        dict(mu_water_per_mm=-0.01),
    ):
        with pytest.raises(InputError):
            nema_iec_phantom(grid, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match="too small"):
        nema_iec_phantom(ImageGrid(shape=(32, 40, 40), voxel_size=4.0))  # 160 mm across
    with pytest.raises(GeometryError, match="too small"):
        nema_iec_phantom(ImageGrid(shape=(8, 64, 64), voxel_size=4.0))  # 32 mm long
    with pytest.raises(GeometryError, match="too small"):
        # The isocentre is outside this grid.
        nema_iec_phantom(ImageGrid(shape=(32, 64, 64), voxel_size=4.0, origin=(10, 300, 300)))
    with pytest.raises(GeometryError):
        nema_iec_phantom((32, 64, 64))  # type: ignore[arg-type]


def test_uniform_cylinder_volume_and_partial_voxels() -> None:
    grid = ImageGrid(shape=(20, 40, 40), voxel_size=(2.5, 2.0, 2.0))
    cyl = uniform_cylinder(grid, radius_mm=17.3, length_mm=31.0, value=3.0)
    assert cyl.dtype == np.float32 and cyl.max() == pytest.approx(3.0)
    expected = 3.0 * math.pi * 17.3**2 * 31.0
    got = float(cyl.astype(np.float64).sum()) * 2.5 * 2.0 * 2.0
    assert got == pytest.approx(expected, rel=5e-3)
    # The axial fraction is exact: 31 mm over 2.5 mm slabs ends 0.3 slab into the last ones.
    profile = cyl[:, 20, 20] / 3.0
    np.testing.assert_allclose(sorted(set(np.round(profile, 6))), [0.0, 0.2, 1.0], atol=1e-6)
    # An off-centre cylinder lands where asked.
    off = uniform_cylinder(grid, 5.0, 10.0, centre_xyz_mm=(10.0, -12.0, 5.0), supersample=6)
    z, y, x = grid.meshgrid_mm()
    w = off.astype(np.float64)
    centroid = [float((w * c).sum() / w.sum()) for c in (x, y, z)]
    np.testing.assert_allclose(centroid, [10.0, -12.0, 5.0], atol=0.05)
    with pytest.raises(GeometryError):
        uniform_cylinder(grid, 0.0, 10.0)
    with pytest.raises(GeometryError):
        uniform_cylinder(grid, 5.0, float("nan"))
    with pytest.raises(InputError):
        uniform_cylinder(grid, 5.0, 10.0, value=float("nan"))


def test_point_source_trilinear() -> None:
    grid = ImageGrid(shape=(9, 10, 11), voxel_size=(2.0, 3.0, 4.0))
    on_centre = point_source(grid, (4.0, -4.5, 2.0), value=5.0)
    assert np.count_nonzero(on_centre) == 1 and on_centre.sum() == pytest.approx(5.0)
    k = np.argwhere(on_centre)[0]
    np.testing.assert_allclose(grid.index_to_world(k), [4.0, -4.5, 2.0])

    p = (1.3, -2.2, 0.7)
    img = point_source(grid, p, value=2.0)
    assert img.dtype == np.float32
    assert np.count_nonzero(img) == 8
    assert float(img.sum()) == pytest.approx(2.0, rel=1e-6)
    z, y, x = grid.meshgrid_mm()
    w = img.astype(np.float64)
    np.testing.assert_allclose([(w * c).sum() / w.sum() for c in (x, y, z)], p, atol=1e-5)
    # The last voxel centre is allowed; beyond it is not.
    corner = grid.index_to_world(np.array([8, 9, 10]))
    assert point_source(grid, corner)[8, 9, 10] == pytest.approx(1.0)
    with pytest.raises(GeometryError):
        point_source(grid, corner + np.array([0.1, 0.0, 0.0]))
    with pytest.raises(GeometryError):
        point_source(grid, (0.0, 0.0))  # type: ignore[arg-type]
    with pytest.raises(InputError):
        point_source(grid, (0.0, 0.0, 0.0), value=float("inf"))


def test_sphere_mask() -> None:
    grid = ImageGrid(shape=(40, 40, 40), voxel_size=1.0)
    mask = sphere_mask(grid, (3.0, -2.0, 1.0), 20.0)
    assert mask.dtype == np.bool_
    assert mask.sum() == pytest.approx(4 / 3 * math.pi * 10**3, rel=0.02)
    assert mask[tuple(np.rint(grid.world_to_index(np.array([3.0, -2.0, 1.0]))).astype(int))]
    assert not mask[tuple(np.rint(grid.world_to_index(np.array([3.0, -2.0, 12.0]))).astype(int))]
    with pytest.raises(GeometryError):
        sphere_mask(grid, (0, 0, 0), -1.0)
