"""Digital phantoms on an :class:`~recon.grid.ImageGrid`: NEMA-IEC body, cylinders, points.

Every phantom is voxelised with supersampling: a voxel's value is the fraction of its volume
inside the object (from ``n`` sub-samples per axis, or exactly where the geometry allows), so
partial-volume fractions, total activities and sphere volumes come out right at coarse voxels.
World coordinates follow the package convention: DICOM LPS (+x patient left, +y posterior,
+z superior), in mm, isocentre at world (0, 0, 0).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid

__all__ = [
    "SphereSpec",
    "nema_iec_phantom",
    "uniform_cylinder",
    "point_source",
    "sphere_mask",
    "MU_WATER_PER_MM_140KEV",
    "LUNG_DENSITY_RATIO",
    "NEMA_SPHERE_DIAMETERS_MM",
]

log = logging.getLogger("recon")

# Linear attenuation coefficient of water at 140.5 keV (Tc-99m), in 1/mm. NIST XCOM / NIST SRD
# 126 (Hubbell & Seltzer), Table 4, liquid water, total attenuation with coherent scattering:
# mu/rho = 0.1707 cm²/g at 100 keV and 0.1505 cm²/g at 150 keV; log-log interpolation gives
# 0.1538 cm²/g at 140 keV and 0.1537 cm²/g at 140.5 keV. Times rho = 1.00 g/cm³: 0.1537 /cm.
MU_WATER_PER_MM_140KEV = 0.01537

# The NEMA lung insert holds low-atomic-number material of mean density 0.30 ± 0.10 g/cm³
# (NEMA NU 2, image-quality test). Polystyrene beads and water have nearly the same mass attenuation
# coefficient at 140 keV (Compton-dominated, similar electrons per gram), so mu scales with density.
LUNG_DENSITY_RATIO = 0.3

# Inner diameters of the six fillable spheres of the IEC 61675-1 / NEMA NU 2 body phantom.
NEMA_SPHERE_DIAMETERS_MM = (10.0, 13.0, 17.0, 22.0, 28.0, 37.0)

# Interior dimensions of the NEMA-IEC body phantom (NEMA NU 2 image-quality phantom; also the GATE
# model opengate.contrib.phantoms.nemaiec, whose outer shell is these plus a 3 mm wall):
# the anterior half is a half-cylinder of radius 147 mm; the posterior part is 77 mm deep and
# 294 mm wide with posterior corners rounded to a radius of 77 mm (centres at x = ±70 mm). The
# lung insert's axis, 35 mm anterior of the half-cylinder's axis, is the centre of the
# 294 mm × 224 mm bounding box; the sphere centres lie on a 114.4 mm diameter ring around it.
_ARC_RADIUS_MM = 147.0
_POSTERIOR_DEPTH_MM = 77.0
_CORNER_CENTRE_X_MM = 70.0
_LUNG_TO_ARC_AXIS_MM = 35.0
_BODY_LENGTH_MM = 180.0
_RING_RADIUS_MM = 57.2
_LUNG_DIAMETER_MM = 50.0
# Angles of the sphere centres on the ring, smallest to largest sphere, measured in the
# transverse plane from +x towards anterior (−y), 60° apart as in the GATE model: the 10 and 13 mm
# spheres sit anterior, the 28 and 37 mm ones posterior/lateral.
_SPHERE_ANGLES_DEG = (120.0, 60.0, 0.0, 300.0, 240.0, 180.0)
# Farthest point of the outline from the lung axis (a posterior rounded corner) and the largest
# circle about the lung axis that the outline contains (touching the anterior and posterior walls);
# used to fit the outline into the grid and to keep the spheres inside a shrunken outline.
_OUTLINE_MAX_RADIUS_MM = math.hypot(_CORNER_CENTRE_X_MM, _LUNG_TO_ARC_AXIS_MM) + _POSTERIOR_DEPTH_MM
_OUTLINE_INSCRIBED_RADIUS_MM = _POSTERIOR_DEPTH_MM + _LUNG_TO_ARC_AXIS_MM
# Water kept between the spheres and a shrunken outline, so the spheres stay surrounded by
# background (as in the real phantom, where the gap is over 30 mm).
_MIN_WATER_GAP_MM = 5.0


@dataclass(frozen=True)
class SphereSpec:
    """One fillable sphere of a phantom.

    Attributes
    ----------
    name : str
        E.g. ``"sphere_37mm"``.
    centre_mm : tuple of float
        World position ``(x, y, z)`` of the centre in mm (LPS).
    diameter_mm : float
        Inner diameter in mm.
    activity : float
        Activity concentration inside the sphere, in the units of the phantom's background
        (e.g. kBq/mL).
    """

    name: str
    centre_mm: tuple[float, float, float]
    diameter_mm: float
    activity: float

    @property
    def volume_ml(self) -> float:
        """Volume ``4/3·π·r³`` in mL."""
        return 4.0 / 3.0 * math.pi * (self.diameter_mm / 2.0) ** 3 / 1000.0


# --------------------------------------------------------------------------------------------
# validation and sampling helpers
# --------------------------------------------------------------------------------------------


def _check_grid(grid: object) -> ImageGrid:
    if not isinstance(grid, ImageGrid):
        raise GeometryError(f"grid must be an ImageGrid, got {type(grid).__name__}")
    return grid


def _positive(value: float, name: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise GeometryError(f"{name} must be a positive finite number of mm, got {value!r}")
    return v


def _check_supersample(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise InputError(f"supersample must be a positive integer, got {n!r}")
    return int(n)


def _xyz(point: Sequence[float], name: str) -> tuple[float, float, float]:
    p = tuple(float(v) for v in np.asarray(point, dtype=np.float64).ravel())
    if len(p) != 3 or not all(math.isfinite(v) for v in p):
        raise GeometryError(
            f"{name} must be 3 finite world coordinates (x, y, z) in mm, got {point!r}"
        )
    return p


def _sub_offsets(n: int) -> np.ndarray:
    # Midpoints of n equal sub-intervals of a voxel, in units of the voxel size.
    return (np.arange(n) + 0.5) / n - 0.5


def _axial_fraction(grid: ImageGrid, z_lo: float, z_hi: float) -> np.ndarray:
    """Exact fraction of each z slab of the grid lying in [z_lo, z_hi] mm."""
    dz = grid.voxel_size_mm[0]
    z = grid.axis_mm(0)
    overlap = np.minimum(z + dz / 2, z_hi) - np.maximum(z - dz / 2, z_lo)
    return np.clip(overlap / dz, 0.0, 1.0)


def _area_fraction(
    grid: ImageGrid, inside: Callable[[np.ndarray, np.ndarray], np.ndarray], n: int
) -> np.ndarray:
    """Fraction of each (y, x) pixel of a transverse slice inside a 2-D region, n×n sub-samples."""
    dy, dx = grid.voxel_size_mm[1:]
    y = grid.axis_mm(1)[:, None]
    x = grid.axis_mm(2)[None, :]
    acc = np.zeros((grid.shape[1], grid.shape[2]), dtype=np.float64)
    # One full-slice evaluation per sub-sample offset keeps memory at one slice, whatever n.
    for oy in _sub_offsets(n):
        for ox in _sub_offsets(n):
            acc += inside(y + oy * dy, x + ox * dx)
    return acc / (n * n)


def _prism(grid: ImageGrid, area: np.ndarray, length_mm: float, z_centre: float) -> np.ndarray:
    # A prism along z separates exactly: fraction = transverse area fraction × axial overlap.
    fz = _axial_fraction(grid, z_centre - length_mm / 2, z_centre + length_mm / 2)
    return fz[:, None, None] * area[None, :, :]


def _sphere_fraction(
    grid: ImageGrid, centre_xyz: tuple[float, float, float], radius: float, n: int
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Volume fraction of each voxel inside a sphere, on the sphere's bounding box only.

    Returns the index box (a tuple of slices, clipped to the grid) and the fractions in it.
    """
    cz_idx = grid.world_to_index(np.asarray(centre_xyz))  # (z, y, x) fractional indices
    box = []
    for axis in range(3):
        half = radius / grid.voxel_size_mm[axis] + 1.0
        lo = max(int(math.floor(cz_idx[axis] - half)), 0)
        hi = min(int(math.ceil(cz_idx[axis] + half)) + 1, grid.shape[axis])
        box.append(slice(lo, max(lo, hi)))
    slices = (box[0], box[1], box[2])
    dz, dy, dx = grid.voxel_size_mm
    cx, cy, cz = centre_xyz
    z = grid.axis_mm(0)[slices[0]][:, None, None] - cz
    y = grid.axis_mm(1)[slices[1]][None, :, None] - cy
    x = grid.axis_mm(2)[slices[2]][None, None, :] - cx
    acc = np.zeros((z.shape[0], y.shape[1], x.shape[2]), dtype=np.float64)
    r2 = radius * radius
    offsets = _sub_offsets(n)
    for oz in offsets:
        dz2 = (z + oz * dz) ** 2
        for oy in offsets:
            dzy2 = dz2 + (y + oy * dy) ** 2
            for ox in offsets:
                acc += dzy2 + (x + ox * dx) ** 2 <= r2
    return slices, acc / n**3


def _grid_half_extents(grid: ImageGrid) -> tuple[float, float, float]:
    """Distance (z, y, x) in mm from the isocentre to the nearest grid face, less one voxel.

    The one-voxel margin keeps objects off the outermost voxels, which projectors and
    interpolation treat as the edge of the world.
    """
    out = []
    for axis in range(3):
        v = grid.voxel_size_mm[axis]
        coords = grid.axis_mm(axis)
        lo, hi = coords[0] - v / 2, coords[-1] + v / 2
        out.append(min(-lo, hi) - v)
    return out[0], out[1], out[2]


# --------------------------------------------------------------------------------------------
# phantoms
# --------------------------------------------------------------------------------------------


def _nema_outline(scale: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Inside test of the NEMA-IEC body cross-section, scaled about the lung axis (0, 0)."""
    arc_r = _ARC_RADIUS_MM * scale
    arc_y = _LUNG_TO_ARC_AXIS_MM * scale  # the half-cylinder's axis is posterior (+y) of the lung
    depth = _POSTERIOR_DEPTH_MM * scale
    corner_x = _CORNER_CENTRE_X_MM * scale

    def inside(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        dy = y - arc_y
        anterior = (dy <= 0) & (x * x + dy * dy <= arc_r * arc_r)
        lateral = np.maximum(np.abs(x) - corner_x, 0.0)
        posterior = (dy > 0) & (dy <= depth) & (lateral * lateral + dy * dy <= depth * depth)
        return anterior | posterior

    return inside


def nema_iec_phantom(
    grid: ImageGrid,
    sphere_to_background: float = 4.0,
    background: float = 1.0,
    *,
    mu_water_per_mm: float = MU_WATER_PER_MM_140KEV,
    supersample: int = 4,
) -> tuple[np.ndarray, np.ndarray, list[SphereSpec]]:
    """Activity and attenuation maps of a NEMA-IEC-like body phantom on ``grid``.

    The phantom (interior dimensions of the IEC 61675-1 / NEMA NU 2 body phantom, plastic walls
    not modelled):

    - a water-filled body 180 mm long, centred on the isocentre, whose cross-section is a
      half-cylinder of radius 147 mm (anterior, −y) joined to a 77 mm deep posterior part with
      rounded corners: 294 mm wide, 224 mm deep;
    - a cold lung insert of diameter 50 mm along z through the whole body, on the isocentre
      (0, 0), with zero activity and the attenuation of 0.3 g/cm³ water-equivalent material;
    - six hot spheres of inner diameter 10, 13, 17, 22, 28 and 37 mm whose centres lie on a
      ring of radius 57.2 mm around the lung insert, in the transverse plane z = 0.

    The real phantom has its sphere plane 70 mm from the lid; here it is at the centre of the
    body so that the central slice of the grid cuts every sphere.

    The phantom fits itself to the grid: when the grid's transverse field of view is too small,
    the body outline is shrunk about the isocentre so that it lies inside the cylinder inscribed
    in the grid (less one voxel) - the SPECT projector sees only that cylinder from every view -
    and the body is shortened to the axial extent (less one voxel). The spheres and the lung
    insert keep their true sizes and positions.

    Parameters
    ----------
    grid : ImageGrid
        Target grid; it must contain the isocentre.
    sphere_to_background : float
        Ratio of sphere to background activity concentration (default 4). 0 gives cold spheres.
    background : float
        Background activity concentration, in the units wanted for the image (e.g. kBq/mL).
    mu_water_per_mm : float, keyword-only
        Linear attenuation coefficient of water in 1/mm; default: 0.01537 /mm at 140.5 keV.
    supersample : int, keyword-only
        Sub-samples per voxel and axis used for partial-volume fractions.

    Returns
    -------
    activity : ndarray of shape grid.shape, float32
        Activity concentration per voxel, volume-weighted within partially filled voxels.
    mu_map : ndarray of shape grid.shape, float32
        Linear attenuation coefficients in 1/mm (0 outside the body).
    spheres : list of SphereSpec
        The six spheres, smallest first, with their world centres and concentrations.

    Raises
    ------
    GeometryError
        ``grid`` is not an ImageGrid, or is too small to hold the spheres with a water margin
        around them (it needs a transverse radius of about 112 mm and an axial half-length of
        about 24 mm, plus one voxel, about the isocentre).
    InputError
        ``background`` is not positive, ``sphere_to_background`` is negative, either is not
        finite, or ``supersample`` is not a positive integer.
    """
    grid = _check_grid(grid)
    ratio = float(sphere_to_background)
    bg = float(background)
    if not (math.isfinite(ratio) and ratio >= 0):
        raise InputError(
            f"sphere_to_background must be finite and >= 0, got {sphere_to_background!r}"
        )
    if not (math.isfinite(bg) and bg > 0):
        raise InputError(f"background must be finite and > 0, got {background!r}")
    mu_water = float(mu_water_per_mm)
    if not (math.isfinite(mu_water) and mu_water >= 0):
        raise InputError(f"mu_water_per_mm must be finite and >= 0, got {mu_water_per_mm!r}")
    n = _check_supersample(supersample)

    half_z, half_y, half_x = _grid_half_extents(grid)
    transverse = min(half_y, half_x)
    biggest = max(NEMA_SPHERE_DIAMETERS_MM) / 2
    # Smallest outline that still keeps a water gap around the spheres.
    min_scale = (_RING_RADIUS_MM + biggest + _MIN_WATER_GAP_MM) / _OUTLINE_INSCRIBED_RADIUS_MM
    scale = min(1.0, transverse / _OUTLINE_MAX_RADIUS_MM)
    length = min(_BODY_LENGTH_MM, 2 * half_z)
    if scale < min_scale or length < 2 * (biggest + _MIN_WATER_GAP_MM):
        need_r = min_scale * _OUTLINE_MAX_RADIUS_MM
        need_z = biggest + _MIN_WATER_GAP_MM
        raise GeometryError(
            "grid too small for the NEMA-IEC phantom: it needs at least "
            f"{need_r:.0f} mm transverse and {need_z:.0f} mm axial clearance from the isocentre "
            f"(plus one voxel), got {max(transverse, 0):.0f} mm and {max(half_z, 0):.0f} mm"
        )
    if scale < 1.0 or length < _BODY_LENGTH_MM:
        log.info(
            "nema_iec_phantom: body outline scaled by %.3f and cut to %.0f mm to fit the grid",
            scale,
            length,
        )

    body_area = _area_fraction(grid, _nema_outline(scale), n)
    lung_r = _LUNG_DIAMETER_MM / 2
    lung_area = _area_fraction(grid, lambda y, x: x * x + y * y <= lung_r * lung_r, n)
    # The lung disc lies inside the outline, so on the same sub-samples lung <= body everywhere;
    # body and lung share the axial extent, so each voxel's fractions are fz·area (exact in z).
    fz = _axial_fraction(grid, -length / 2, length / 2).astype(np.float32)[:, None, None]
    water_area = (body_area - lung_area).astype(np.float32)
    activity = (bg * fz) * water_area[None]
    # Spheres are water too, so they leave mu unchanged; the lung replaces water by 0.3× water.
    mu_area = (mu_water * (body_area - (1.0 - LUNG_DENSITY_RATIO) * lung_area)).astype(np.float32)
    mu_map = fz * mu_area[None]

    hot = bg * ratio
    spheres: list[SphereSpec] = []
    for diameter, angle in zip(NEMA_SPHERE_DIAMETERS_MM, _SPHERE_ANGLES_DEG, strict=True):
        a = math.radians(angle)
        # Angles run towards anterior, which is −y in LPS; rounding drops 1e-15 residues of cos/sin.
        centre = (
            round(_RING_RADIUS_MM * math.cos(a), 9) + 0.0,
            round(-_RING_RADIUS_MM * math.sin(a), 9) + 0.0,
            0.0,
        )
        box, frac = _sphere_fraction(grid, centre, diameter / 2, n)
        # Sphere voxels lie in water (not lung), so swapping background for sphere activity is
        # adding (hot − background) × the sphere's volume fraction.
        activity[box] += ((hot - bg) * frac).astype(np.float32)
        spheres.append(SphereSpec(f"sphere_{diameter:.0f}mm", centre, diameter, hot))
    # Sub-sampling differences between the 3-D spheres and the 2-D outline must not go negative.
    np.maximum(activity, 0.0, out=activity)
    return activity, mu_map, spheres


def uniform_cylinder(
    grid: ImageGrid,
    radius_mm: float,
    length_mm: float,
    value: float = 1.0,
    *,
    centre_xyz_mm: Sequence[float] = (0.0, 0.0, 0.0),
    supersample: int = 4,
) -> np.ndarray:
    """A uniform cylinder along z, voxelised with partial-volume fractions.

    Parameters
    ----------
    grid : ImageGrid
        Target grid.
    radius_mm, length_mm : float
        Cylinder radius and length in mm.
    value : float
        Value inside the cylinder (e.g. activity concentration or mu in 1/mm).
    centre_xyz_mm : sequence of 3 float, keyword-only
        World position ``(x, y, z)`` of the cylinder centre; default the isocentre.
    supersample : int, keyword-only
        Transverse sub-samples per voxel and axis; the axial fraction is exact.

    Returns
    -------
    ndarray of shape grid.shape, float32
        ``value`` times the fraction of each voxel inside the cylinder; the part of the cylinder
        outside the grid is cut off.

    Raises
    ------
    GeometryError
        Non-positive or non-finite sizes, a malformed centre, or ``grid`` not an ImageGrid.
    InputError
        ``value`` is not finite, or ``supersample`` is not a positive integer.
    """
    grid = _check_grid(grid)
    r = _positive(radius_mm, "radius_mm")
    length = _positive(length_mm, "length_mm")
    cx, cy, cz = _xyz(centre_xyz_mm, "centre_xyz_mm")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"value must be finite, got {value!r}")
    n = _check_supersample(supersample)
    area = _area_fraction(grid, lambda y, x: (x - cx) ** 2 + (y - cy) ** 2 <= r * r, n)
    return (v * _prism(grid, area, length, cz)).astype(np.float32)


def point_source(grid: ImageGrid, xyz_mm: Sequence[float], value: float = 1.0) -> np.ndarray:
    """A point source, split trilinearly over the 8 voxels around it.

    The split keeps both the total (``value``) and the centroid (``xyz_mm``) exact; a point on a
    voxel centre falls in that single voxel.

    Parameters
    ----------
    grid : ImageGrid
        Target grid.
    xyz_mm : sequence of 3 float
        World position ``(x, y, z)`` in mm. It must lie between the first and last voxel
        centres along every axis.
    value : float
        Total value (e.g. activity) of the source.

    Returns
    -------
    ndarray of shape grid.shape, float32

    Raises
    ------
    GeometryError
        The point lies outside the grid's voxel-centre range, or ``grid`` is not an ImageGrid.
    InputError
        ``value`` is not finite.
    """
    grid = _check_grid(grid)
    point = _xyz(xyz_mm, "xyz_mm")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"value must be finite, got {value!r}")
    idx = grid.world_to_index(np.asarray(point))
    shape = np.asarray(grid.shape)
    tol = 1e-9
    if np.any(idx < -tol) or np.any(idx > shape - 1 + tol):
        raise GeometryError(
            f"point {point} mm lies outside the voxel centres of the grid (index {idx.tolist()})"
        )
    idx = np.clip(idx, 0, shape - 1)
    out = np.zeros(grid.shape, dtype=np.float64)
    base = np.minimum(np.floor(idx).astype(int), np.maximum(shape - 2, 0))
    frac = idx - base
    for corner in np.ndindex(2, 2, 2):
        k = base + np.asarray(corner)
        w = np.prod(np.where(np.asarray(corner) == 1, frac, 1.0 - frac))
        if w == 0.0 or np.any(k >= shape):
            continue  # a zero weight may point past a 1-voxel axis
        out[tuple(k)] += w * v
    return out.astype(np.float32)


def sphere_mask(grid: ImageGrid, centre_xyz_mm: Sequence[float], diameter_mm: float) -> np.ndarray:
    """Voxels whose centre lies inside a sphere (e.g. a VOI for a phantom sphere).

    Parameters
    ----------
    grid : ImageGrid
        Target grid.
    centre_xyz_mm : sequence of 3 float
        World position ``(x, y, z)`` of the sphere centre in mm.
    diameter_mm : float
        Sphere diameter in mm.

    Returns
    -------
    ndarray of shape grid.shape, bool

    Raises
    ------
    GeometryError
        Non-positive diameter, a malformed centre, or ``grid`` not an ImageGrid.
    """
    grid = _check_grid(grid)
    cx, cy, cz = _xyz(centre_xyz_mm, "centre_xyz_mm")
    r = _positive(diameter_mm, "diameter_mm") / 2
    z = grid.axis_mm(0)[:, None, None] - cz
    y = grid.axis_mm(1)[None, :, None] - cy
    x = grid.axis_mm(2)[None, None, :] - cx
    return (z * z + y * y + x * x) <= r * r
