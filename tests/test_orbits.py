"""Body-contour orbits (recon.simulate.orbits): radii that clear the body by the clearance, in
the projector's own convention of where the camera face is at each view."""

from __future__ import annotations

import math

import numpy as np
import pytest

import recon
from recon.errors import GeometryError
from recon.simulate.orbits import body_contour_radii

GRID = recon.ImageGrid((4, 48, 48), 3.0)


def _coordinates() -> tuple[np.ndarray, np.ndarray]:
    _, y, x = np.meshgrid(*[GRID.axis_mm(a) for a in range(3)], indexing="ij")
    return y, x


def test_a_centred_cylinder_gets_a_circle_just_outside_it() -> None:
    y, x = _coordinates()
    body = np.hypot(x, y) <= 45.0  # voxel centres inside the circle
    radii = body_contour_radii(body, GRID, np.arange(0.0, 360.0, 7.5), clearance_mm=20.0)
    half_diagonal = 0.5 * math.hypot(3.0, 3.0)
    # The centres' extent along any direction is at most 45 mm and at least 45 mm less a voxel
    # diagonal (the disc holds a centre within one diagonal of each point of its edge).
    assert np.all(radii >= 45.0 - 2.0 * half_diagonal + half_diagonal + 20.0 - 1e-9)
    assert np.all(radii <= 45.0 + half_diagonal + 20.0 + 1e-9)


def test_each_radius_is_the_bodys_extent_towards_the_camera_plus_the_clearance() -> None:
    """A box off the axis towards +x: the camera at θ = 90° (face towards +x, patient left)
    stands off the box's far side, at 270° just beyond the axis; no voxel corner crosses the
    face at any view."""
    y, x = _coordinates()
    body = (np.abs(x - 30.0) <= 30.0) & (np.abs(y) <= 40.0)
    angles = np.arange(0.0, 360.0, 15.0)
    radii = body_contour_radii(body, GRID, angles, clearance_mm=20.0)
    half_diagonal = 0.5 * math.hypot(3.0, 3.0)
    by_angle = dict(zip(angles.tolist(), radii.tolist(), strict=True))
    assert by_angle[90.0] == pytest.approx(58.5 + half_diagonal + 20.0)  # last x centre 58.5
    assert by_angle[270.0] == pytest.approx(-1.5 + half_diagonal + 20.0)  # first x centre 1.5
    assert by_angle[0.0] == pytest.approx(37.5 + half_diagonal + 20.0)  # d(0) = (0, −1): −y
    corners = [(x[body] + sx, y[body] + sy) for sx in (-1.5, 1.5) for sy in (-1.5, 1.5)]
    for theta, radius in by_angle.items():
        s, c = math.sin(math.radians(theta)), math.cos(math.radians(theta))
        farthest = max(float((s * cx - c * cy).max()) for cx, cy in corners)
        assert farthest <= radius - 20.0 + 1e-9


def test_the_projector_sees_the_orbit_where_the_radii_put_it() -> None:
    """Independent of the docstring's convention: a point at the box's +x edge, projected with
    these radii, is sharper at 90° (face 20 mm beyond it) than at 270° (face across the box),
    and the two widths differ as the collimator's response at those two distances does
    (squared FWHMs subtracted, so the voxel, pixel and interpolation widths cancel)."""
    y, x = _coordinates()
    body = (np.abs(x - 30.0) <= 30.0) & (np.abs(y) <= 40.0)
    angles = np.array([90.0, 270.0])
    radii = body_contour_radii(body, GRID, angles, clearance_mm=20.0)
    geometry = recon.SpectGeometry(angles, radii, n_u=96, n_v=4, pixel_size_mm=(3.0, 1.5))
    collimator = recon.Collimator.preset("LEHR")
    model = recon.SpectModel(geometry, GRID, collimator=collimator, device="cpu")
    point = np.zeros(GRID.shape, np.float32)
    ix = int(np.argmin(np.abs(GRID.axis_mm(2) - 58.5)))
    iy = int(np.argmin(np.abs(GRID.axis_mm(1) - 1.5)))
    point[1:3, iy, ix] = 1.0
    projections = np.asarray(model.forward(point))
    u = geometry.u_positions_mm
    squared_fwhm = []
    for view in range(2):
        profile = projections[view].sum(axis=0)
        mean = float((profile * u).sum() / profile.sum())
        variance = float((profile * (u - mean) ** 2).sum() / profile.sum())
        squared_fwhm.append((2.0 * math.sqrt(2.0 * math.log(2.0))) ** 2 * variance)
    near = radii[0] - 58.5  # the face at +x, the point at x = 58.5
    far = radii[1] + 58.5  # the face at −x
    expected = float(collimator.fwhm_mm(far)) ** 2 - float(collimator.fwhm_mm(near)) ** 2
    measured = squared_fwhm[1] - squared_fwhm[0]
    assert near == pytest.approx(0.5 * math.hypot(3.0, 3.0) + 20.0)
    assert measured == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize(
    ("body", "clearance", "message"),
    [
        (np.zeros((4, 48, 48), bool), 20.0, "empty"),
        (np.ones((4, 48, 47), bool), 20.0, "shape"),
        (np.ones((4, 48, 48), np.float32), 20.0, "boolean"),
        (np.ones((4, 48, 48), bool), -1.0, "clearance_mm"),
        (np.ones((4, 48, 48), bool), float("nan"), "clearance_mm"),
    ],
)
def test_bad_bodies_and_clearances_are_refused(body, clearance, message) -> None:
    with pytest.raises(GeometryError, match=message):
        body_contour_radii(body, GRID, [0.0, 90.0], clearance_mm=clearance)


@pytest.mark.parametrize("angles", [[], [[0.0, 90.0]], [0.0, float("nan")]])
def test_bad_angles_are_refused(angles) -> None:
    with pytest.raises(GeometryError, match="angles_deg"):
        body_contour_radii(np.ones(GRID.shape, bool), GRID, angles)


def test_a_body_wholly_behind_the_axis_needs_a_clearance() -> None:
    y, x = _coordinates()
    body = x > 30.0
    with pytest.raises(GeometryError, match="not positive"):
        body_contour_radii(body, GRID, [270.0], clearance_mm=0.0)
    assert body_contour_radii(body, GRID, [270.0], clearance_mm=0.0 + 40.0)[0] > 0
