"""STIR cylindrical projection data (``.hs/.s`` sinograms) mapped onto recon's world frame.

:func:`recon.io.read_interfile_sinogram` returns STIR's bins as an array ``(plane, view,
tangential)``; this module says which line of response each bin holds, in recon's world
coordinates (DESIGN.md §3: LPS mm, isocentre at the scanner centre), so the data can be
reconstructed by :class:`recon.PetLorSinogramModel` (any span, arc-corrected or not), or moved
into a :class:`recon.SinogramLayout` (span 1, not arc-corrected).

STIR's conventions, from its source (UCL/STIR; the file and function are named so each rule can be
re-checked):

Frame
    STIR's gantry frame has x to the right and y downwards as seen from the bed, z from deep in
    the gantry out along the bed, with z = 0 at the scanner's axial centre. For a head-first supine
    patient this is (LPS x, LPS y, −LPS z) (``DiscretisedDensity.inl``,
    ``swap_axes_based_on_orientation``: HFS negates z only). So a STIR point (x, y, z) is recon's
    (x, y, −z).
Cylinder
    Crystals sit on the effective ring radius ``R`` = inner ring radius + average depth of
    interaction (``Scanner::get_effective_ring_radius``). A point at cylinder angle ψ is
    ``(R sin ψ, −R cos ψ)`` (``LORCoordinates.inl``): ψ = 0 at the top (anterior for HFS),
    90° at +x (the patient's left). Detector ``d`` of a ring sits at ψ = 2π·d/N
    (``find_cartesian_coordinates_given_scanner_coordinates``) plus the scanner's "View offset
    (degrees)" (its intrinsic azimuthal tilt, added to every angle).
Views and tangential positions
    φ(v) = v·π/n_views + view offset, plus (2π/N)·(m − 1)/2 for a view-mashing factor
    m = N/(2·n_views) > 1 (``ProjDataInfoCylindrical`` constructor: mashed view v sums detector
    views m·v … m·v + m − 1; for mashed data that are not arc-corrected each bin is then
    represented by STIR's line at the mean angle). Tangential index ``t`` runs from ``−(n_t // 2)``
    (``ProjDataInfo::set_num_tangential_poss``); s = t·bin size for arc-corrected data
    (``ProjDataInfoCylindricalArcCorr::get_s``) and s = R·sin(t·π/N) otherwise
    (``ProjDataInfoCylindricalNoArcCorr::get_s``). The LOR is the line x cos φ + y sin φ = s,
    from ψ1 = φ + asin(s/R) to ψ2 = φ − asin(s/R) + π (``ProjDataInfoCylindrical::get_LOR``,
    ``LORInCylinderCoordinates``).
Detector pairs (not arc-corrected)
    det1 = (v + ⌊t/2⌋) mod N and det2 = (v − ⌈t/2⌉ + N/2) mod N
    (``ProjDataInfoCylindricalNoArcCorr::initialise_uncompressed_view_tangpos_to_det1det2``).
    For odd t this chord is half a view (π/N) away from φ(v): STIR's sinogram coordinates ignore
    the interleaving. ``lors="detectors"`` (default) uses the chord between the two detectors,
    which is where the coincidences were measured; ``lors="stir"`` uses STIR's (φ, s) line, which
    is what STIR's default ray-tracing projector models.
Axial
    A segment with ring differences ``lo..hi`` has axial sampling d (span 1) or d/2 (several
    ring differences), d the ring spacing; axial position ``a`` of ``n_a`` is at
    m = (a − (n_a − 1)/2)·sampling, and its LOR runs from z = m − Δ·d/2 (det1's side) to
    z = m + Δ·d/2, Δ = (lo + hi)/2, the segment's mean ring difference ``ring2 − ring1``
    (``ProjDataInfoCylindrical::get_m``, ``initialise_ring_diff_arrays``, ``get_LOR``). Span-1
    ring pairs: ring1 = a + max(0, −Δ), ring2 = ring1 + Δ, ring ``r`` at
    z = (r − (n_rings − 1)/2)·d.

Images
    STIR's PET projectors place an image by its origin (the position of index 0): x and y
    indices run from −⌊n/2⌋, so index 0 is on the scanner axis when the origin is 0 (for an
    even size the array centre is then half a voxel off the axis), and the middle plane sits at
    the origin's z relative to the scanner's axial centre, whatever ``first pixel offset (mm)
    [3]`` says (``ProjMatrixByBinUsingRayTracing``: gantry z = origin z + (k − (k_min +
    k_max)/2)·Δz; it refuses an x/y origin other than 0; ``ParallelprojHelper`` shifts z the
    same way). :func:`recon.io.read_interfile_image` reads STIR images that way (and SPECT
    images as SPECTUB centres them), so a STIR reconstruction of a sinogram and recon's lie in
    the same place; :func:`stir_default_grid` is the grid STIR's own reconstruction would have,
    odd-sized transaxially and centred, which recon also writes with origin 0. The rules and
    their sources are listed in :mod:`recon.io.interfile.image`.

Not covered: TOF projection data, non-cylindrical (block) geometries, and STIR builds with
``STIR_LEGACY_IGNORE_VIEW_OFFSET``. The sign of vendor view offsets has changed in STIR's history
(UCL/STIR PR #1514 flipped the ECAT ones); check a phantom when the offset is not 0.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.io.interfile import PetSinogram
from recon.pet.scanner import PetScanner
from recon.pet.sinogram import SinogramLayout

__all__ = [
    "layout_to_stir_sinogram",
    "stir_default_grid",
    "stir_geometry_summary",
    "stir_lor_endpoints",
    "stir_lor_tables",
    "stir_sinogram_to_layout",
]

_LOR_MODELS = ("detectors", "stir")
log = logging.getLogger("recon")


class _StirGeometry:
    """The numbers of a STIR cylindrical sinogram description that fix its LORs."""

    def __init__(self, description: dict[str, Any]) -> None:
        scanner = description.get("scanner") or {}
        needed = {
            "n_rings": "Number of rings",
            "detectors_per_ring": "Number of detectors per ring",
            "inner_ring_diameter_mm": "Inner ring diameter (cm)",
            "ring_spacing_mm": "Distance between rings (cm)",
        }
        missing = [key for name, key in needed.items() if scanner.get(name) is None]
        if missing:
            where = description.get("header_path") or "the sinogram header"
            raise InputError(
                f"{where} lacks the scanner parameters {', '.join(repr(k) for k in missing)}; "
                "add them in STIR's 'Scanner parameters' block"
            )
        self.n_rings = int(scanner["n_rings"])
        self.n_detectors = int(scanner["detectors_per_ring"])
        self.ring_spacing = float(scanner["ring_spacing_mm"])
        doi = float(scanner.get("average_depth_of_interaction_mm") or 0.0)
        if not doi >= 0:
            raise GeometryError(f"the average depth of interaction must be >= 0, got {doi} mm")
        self.radius = float(scanner["inner_ring_diameter_mm"]) / 2.0 + doi
        self.view_offset = math.radians(float(scanner.get("view_offset_deg") or 0.0))
        self.n_views = int(description["n_views"])
        self.n_tang = int(description["n_tangential"])
        self.arc_corrected = bool(description.get("arc_corrected"))
        self.segments = list(description["segments"])
        bin_size = description.get("bin_size_mm") or scanner.get("default_bin_size_mm")
        self.bin_size = None if bin_size is None else float(bin_size)
        if self.n_detectors < 2 or self.n_detectors % 2:
            raise GeometryError(
                f"detectors per ring must be even and at least 2, got {self.n_detectors}"
            )
        if self.arc_corrected:
            if not self.bin_size or self.bin_size <= 0:
                raise InputError(
                    "arc-corrected data need their bin size: add 'effective central bin size "
                    "(cm)' or the scanner's 'Default bin size (cm)'"
                )
        elif self.n_tang > self.n_detectors - 1:
            raise GeometryError(
                f"{self.n_tang} tangential positions for a {self.n_detectors}-detector ring: at "
                f"most {self.n_detectors - 1} (beyond that a bin's two detectors coincide)"
            )
        elif self.n_views < 1 or self.n_detectors % (2 * self.n_views):
            raise GeometryError(
                f"{self.n_views} views of a {self.n_detectors}-detector ring: data that are not "
                f"arc-corrected have {self.n_detectors // 2} views divided by a whole view-mashing "
                "factor"
            )
        # View mashing (ProjDataInfoCylindrical's constructor): when 2·views divides N, view v
        # sums the m = N/(2·views) detector views m·v … m·v + m − 1, whose mean angle is
        # (2π/N)·(m − 1)/2 past v·π/views. Otherwise (e.g. arc-corrected data resampled to
        # other views) STIR adds nothing.
        self.mashing = 1
        if self.n_views >= 1 and self.n_detectors % (2 * self.n_views) == 0:
            self.mashing = self.n_detectors // (2 * self.n_views)
        self.phi_offset = self.view_offset + (
            2 * math.pi / self.n_detectors * (self.mashing - 1) / 2.0
        )

    @property
    def tangential_indices(self) -> np.ndarray:
        first = -(self.n_tang // 2)
        return np.arange(first, first + self.n_tang)

    def plane_axial(self) -> tuple[np.ndarray, np.ndarray]:
        """STIR axial coordinate m (mm, STIR z) and mean ring difference of every plane."""
        m, delta = [], []
        for seg in self.segments:
            lo, hi, n_a = (int(seg[k]) for k in ("min_ring_difference", "max_ring_difference",
                                                 "n_axial"))  # fmt: skip
            sampling = self.ring_spacing if lo == hi else self.ring_spacing / 2.0
            a = np.arange(n_a)
            m.append((a - (n_a - 1) / 2.0) * sampling)
            delta.append(np.full(n_a, (lo + hi) / 2.0))
        return np.concatenate(m), np.concatenate(delta)


def _check_lors(lors: str) -> str:
    if lors not in _LOR_MODELS:
        raise InputError(f"lors must be one of {_LOR_MODELS}, got {lors!r}")
    return lors


def _description(sino: PetSinogram | dict[str, Any]) -> dict[str, Any]:
    if isinstance(sino, PetSinogram):
        return sino.description
    if isinstance(sino, dict):
        return sino
    raise InputError(
        "expected a PetSinogram from recon.io.read_interfile_sinogram (or its description), got "
        f"{type(sino).__name__}"
    )


def stir_lor_tables(
    sino: PetSinogram | dict[str, Any], lors: str = "detectors"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The LORs of a STIR sinogram as separable tables, in recon's world frame (LPS mm).

    The LORs of a cylindrical scanner's sinogram separate into transaxial ends per (view,
    tangential) position and axial ends per plane: ``xy_start, xy_end`` of shape ``(view,
    tangential, 2)`` and ``z_start, z_end`` of shape ``(plane,)``, the arguments of
    :meth:`recon.PetLorSinogramModel.separable`::

        tables = recon.io.stir_lor_tables(sino)
        model = recon.PetLorSinogramModel.separable(*tables, recon.io.stir_default_grid(sino))

    ``lors`` as for :func:`stir_lor_endpoints`.
    """
    g = _StirGeometry(_description(sino))
    lors = _check_lors(lors)
    t = g.tangential_indices
    v = np.arange(g.n_views)
    R = g.radius
    if g.mashing > 1 and lors == "detectors" and not g.arc_corrected:
        log.info(
            "view-mashing factor %d: each bin sums %d detector pairs; using their mean line "
            "(STIR's own sinogram model)", g.mashing, g.mashing,
        )  # fmt: skip
        lors = "stir"
    if g.arc_corrected or lors == "stir":
        phi = v[:, None] * (math.pi / g.n_views) + g.phi_offset
        if g.arc_corrected:
            s = t * g.bin_size
        else:
            s = R * np.sin(t * math.pi / g.n_detectors)
        if np.any(np.abs(s) >= R):
            raise GeometryError(
                f"tangential positions reach {np.abs(s).max():.1f} mm, beyond the ring radius "
                f"{R:.1f} mm: check the bin size and the scanner block"
            )
        beta = np.arcsin(s / R)[None, :]
        psi1 = np.broadcast_to(phi + beta, (g.n_views, g.n_tang))
        psi2 = np.broadcast_to(phi - beta + math.pi, (g.n_views, g.n_tang))
    else:
        n = g.n_detectors
        det1 = (v[:, None] + np.floor_divide(t, 2)[None, :]) % n
        det2 = (v[:, None] - np.floor_divide(t + 1, 2)[None, :] + n // 2) % n
        psi1 = det1 * (2 * math.pi / n) + g.view_offset
        psi2 = det2 * (2 * math.pi / n) + g.view_offset
    xy1 = np.stack([R * np.sin(psi1), -R * np.cos(psi1)], axis=-1)
    xy2 = np.stack([R * np.sin(psi2), -R * np.cos(psi2)], axis=-1)
    m, delta = g.plane_axial()
    half = delta * g.ring_spacing / 2.0
    # STIR z runs towards the feet (HFS): recon z = −STIR z.
    return xy1, xy2, -(m - half), -(m + half)


def stir_lor_endpoints(
    sino: PetSinogram | dict[str, Any], lors: str = "detectors"
) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of the two ends of every bin's LOR of a STIR sinogram.

    Parameters
    ----------
    sino : PetSinogram or its description
        From :func:`recon.io.read_interfile_sinogram`; the header must hold STIR's scanner block.
    lors : {"detectors", "stir"}
        For data that are not arc-corrected: the chord between the bin's two detectors
        (default), or STIR's (φ, s) line that ignores the half-view interleaving of odd
        tangential positions. Arc-corrected and view-mashed data always use STIR's line.

    Returns
    -------
    xstart, xend : float32 arrays of shape (plane, view, tangential, 3)
        recon world (x, y, z) in mm (LPS for a head-first supine patient, isocentre at the
        scanner centre) of the det1 and det2 ends on the effective ring radius, planes in the
        order of the array :func:`~recon.io.read_interfile_sinogram` returns.

    Raises
    ------
    InputError, GeometryError
        Scanner parameters missing, a bin beyond the ring (arc-corrected |s| ≥ R) or views that
        do not match the detectors.
    """
    xy1, xy2, z1, z2 = stir_lor_tables(sino, lors)
    shape = (z1.size, *xy1.shape[:2], 3)
    ends = []
    for xy, z in ((xy1, z1), (xy2, z2)):
        pts = np.empty(shape, dtype=np.float32)
        pts[..., :2] = xy[None]
        pts[..., 2] = z[:, None, None]
        ends.append(pts)
    return ends[0], ends[1]


def stir_geometry_summary(sino: PetSinogram | dict[str, Any]) -> dict[str, Any]:
    """What fixes the LORs of a STIR sinogram: effective ring radius (mm), detectors per ring,
    view-mashing factor, angle of view 0 (degrees, view offset plus the mashing offset) and
    whether the bins are arc-corrected.

    Raises
    ------
    InputError, GeometryError
        As :func:`stir_lor_endpoints`.
    """
    g = _StirGeometry(_description(sino))
    return {
        "effective_radius_mm": g.radius,
        "detectors_per_ring": g.n_detectors,
        "view_mashing": g.mashing,
        "view0_angle_deg": math.degrees(g.phi_offset),
        "arc_corrected": g.arc_corrected,
    }


def stir_default_grid(sino: PetSinogram | dict[str, Any]) -> ImageGrid:
    """The image STIR would reconstruct by default, centred on the scanner.

    As STIR's ``VoxelsOnCartesianGrid(ProjDataInfo, …)`` constructor with default sizes
    (``construct_from_projdata_info``, ``find_sampling_and_z_size``): transaxial voxels of the
    scanner's default bin size (else the data's bin size), ``2·⌈r/voxel⌉ + 1`` of them (always
    odd, so the grid is centred on the axis) where ``r`` is the largest ``|s|`` of the first
    and last tangential positions (computed in float32 as STIR does); axially half the ring
    spacing, one plane per segment-0 sinogram (``2·n_rings − 1`` for span 1).
    """
    d = _description(sino)
    g = _StirGeometry(d)
    scanner = d.get("scanner") or {}
    voxel = scanner.get("default_bin_size_mm") or g.bin_size
    if not voxel or voxel <= 0:
        raise InputError("the header gives no bin size ('Default bin size (cm)'); pass a grid")
    t = np.array([-(g.n_tang // 2), g.n_tang - 1 - g.n_tang // 2], dtype=np.float32)
    if g.arc_corrected:
        s = t * np.float32(g.bin_size)
    else:
        s = np.float32(g.radius) * np.sin(t * np.float32(math.pi / g.n_detectors))
    radius = np.float32(np.abs(s).max())
    n_xy = 2 * int(math.ceil(np.float32(radius / np.float32(voxel)))) + 1
    zero = next(s for s in g.segments if s["min_ring_difference"] + s["max_ring_difference"] == 0)
    n_axial = int(zero["n_axial"])
    span1 = zero["min_ring_difference"] == zero["max_ring_difference"]
    n_z = 2 * n_axial - 1 if span1 else n_axial
    return ImageGrid((n_z, n_xy, n_xy), (g.ring_spacing / 2.0, float(voxel), float(voxel)))


def _layout_bins(
    description: dict[str, Any], scanner: PetScanner | None
) -> tuple[SinogramLayout, tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """recon layout bin ``(plane, view, radial)`` of every STIR bin; which STIR bins have one."""
    g = _StirGeometry(description)
    if g.arc_corrected:
        raise GeometryError(
            "arc-corrected bins are not crystal pairs; reconstruct them with "
            "recon.PetLorSinogramModel on recon.io.stir_lor_tables instead"
        )
    if g.mashing > 1:
        raise GeometryError(
            f"with view mashing (factor {g.mashing}) a bin sums several crystal pairs; use "
            "recon.PetLorSinogramModel on recon.io.stir_lor_tables instead"
        )
    if not description.get("span1"):
        raise GeometryError(
            "segments that hold several ring differences (span > 1) are not crystal pairs; use "
            "recon.PetLorSinogramModel on recon.io.stir_lor_tables instead"
        )
    n = g.n_detectors
    shift = g.view_offset * n / (2 * math.pi)
    if n % 4 or abs(shift - round(shift)) > 1e-6:
        raise GeometryError(
            f"STIR detector angles (N = {n}, view offset {math.degrees(g.view_offset)}°) do not "
            "fall on recon crystal angles (N divisible by 4 and an offset of whole detectors "
            "needed); use recon.PetLorSinogramModel on recon.io.stir_lor_tables instead"
        )
    scanner = description.get("pet_scanner") if scanner is None else scanner
    if not isinstance(scanner, PetScanner):
        raise InputError("no PetScanner given and the header describes none")
    if (scanner.n_rings, scanner.crystals_per_ring) != (g.n_rings, n):
        raise GeometryError(
            f"scanner {scanner.name!r} has {scanner.n_rings} rings of "
            f"{scanner.crystals_per_ring} crystals; the file has {g.n_rings} of {n}"
        )
    t = g.tangential_indices
    v = np.arange(g.n_views)
    det1 = (v[:, None] + np.floor_divide(t, 2)[None, :]) % n
    det2 = (v[:, None] - np.floor_divide(t + 1, 2)[None, :] + n // 2) % n
    # recon crystal index i sits at 2π·i/N from +x; STIR detector d at ψ = 2π·d/N + offset from
    # −y (towards +x), i.e. at ψ − π/2 from +x: i = d − N/4 + offset·N/2π.
    offset = n // 4 - int(round(shift))
    index1 = (det1 - offset) % n
    index2 = (det2 - offset) % n
    rings = np.asarray(description["plane_rings"], dtype=np.int64)
    ring1 = g.n_rings - 1 - rings[:, 0]  # STIR ring 0 is the deep end: recon's last ring
    ring2 = g.n_rings - 1 - rings[:, 1]
    crystal_a = ring1[:, None, None] * n + index1[None]
    crystal_b = ring2[:, None, None] * n + index2[None]
    max_rd = int(np.abs(rings[:, 1] - rings[:, 0]).max())
    n_radial = min(2 * int(np.abs(t).max()) + 1, n - 1)
    layout = SinogramLayout(scanner, max_ring_difference=max_rd, n_radial=n_radial)
    plane, view, radial, _, valid = layout.bins_of(crystal_a, crystal_b)
    return layout, (plane, view, radial), valid


def stir_sinogram_to_layout(
    sino: PetSinogram, scanner: PetScanner | None = None
) -> tuple[np.ndarray, SinogramLayout]:
    """Move a span-1 STIR sinogram that is not arc-corrected into a :class:`SinogramLayout`.

    Each bin's detector pair (see the module docstring) becomes recon crystal ids: STIR detector
    ``d`` at ψ = 2π·d/N + offset is recon crystal index ``(d − N/4 + offset·N/2π) mod N`` (recon
    measures angles from +x; STIR's ψ from −y), and STIR ring ``r`` is recon ring
    ``n_rings − 1 − r`` (STIR z runs towards the feet).

    Parameters
    ----------
    sino : PetSinogram
        Span 1, not arc-corrected.
    scanner : PetScanner, optional
        Default: the scanner the header describes (``sino.description["pet_scanner"]``).

    Returns
    -------
    data : float32 ndarray of ``layout.shape``
        The sinogram in recon's layout (bins STIR does not store are 0).
    layout : SinogramLayout
        All ring differences the file holds, and enough radial bins for its tangential range.

    Raises
    ------
    InputError, GeometryError
        Arc-corrected or span > 1 data, a detector count not divisible by 4, a view offset that
        is not a whole number of detectors, or a scanner that does not match the header.
    """
    if not isinstance(sino, PetSinogram):
        raise InputError("expected a PetSinogram from recon.io.read_interfile_sinogram")
    layout, (plane, view, radial), valid = _layout_bins(sino.description, scanner)
    values = np.asarray(sino.data, dtype=np.float32)
    if values.shape != plane.shape:
        raise InputError(f"sinogram data have shape {values.shape}, expected {plane.shape}")
    out = np.zeros(layout.shape, dtype=np.float32)
    out[plane[valid], view[valid], radial[valid]] = values[valid]
    return out, layout


def layout_to_stir_sinogram(
    data: Any,
    layout: SinogramLayout,
    frame_start_s: float | None = None,
    frame_duration_s: float | None = None,
) -> PetSinogram:
    """A recon span-1 sinogram as STIR projection data, ready for :func:`write_interfile`.

    The inverse of :func:`stir_sinogram_to_layout`: STIR segments 0, +1, −1, … up to the
    layout's ring difference, ``N/2`` views (no mashing, view offset 0), ``n_radial`` tangential
    positions, not arc-corrected, with a STIR scanner block (``Scanner type := Unknown``; the
    crystal radius as inner ring radius and no depth of interaction).

    Parameters
    ----------
    data : array of ``layout.shape``
        Non-TOF sinogram (sum a TOF sinogram over its last axis first).
    layout : SinogramLayout
    frame_start_s, frame_duration_s : float, optional
        The frame's start (s from scan start) and duration, written as STIR's ``image relative
        start time (sec)[1]`` and ``image duration (sec)[1]``.

    Returns
    -------
    PetSinogram
        STIR-ordered data ``(plane, view, tangential)`` and its description.
    """
    if not isinstance(layout, SinogramLayout):
        raise InputError("layout must be a recon.SinogramLayout")
    values = np.asarray(data, dtype=np.float32)
    if values.shape != tuple(layout.shape):
        raise InputError(
            f"sinogram has shape {values.shape}, expected the layout's {tuple(layout.shape)} "
            "(sum the TOF axis first)"
        )
    scanner = layout.scanner
    n, n_rings = scanner.crystals_per_ring, scanner.n_rings
    radius = scanner.crystal_radius_mm
    segments, plane_rings, first = [], [], 0
    for delta in [
        0,
        *[sign * m for m in range(1, layout.max_ring_difference + 1) for sign in (1, -1)],
    ]:
        n_axial = n_rings - abs(delta)
        segments.append({
            "segment_number": delta, "min_ring_difference": delta,
            "max_ring_difference": delta, "n_axial": n_axial, "first_plane": first,
        })  # fmt: skip
        for axial in range(n_axial):
            ring1 = axial + max(0, -delta)
            plane_rings.append((ring1, ring1 + delta))
        first += n_axial
    bin_mm = math.pi * radius / n  # half the crystal pitch: STIR's default arc-corrected bin
    scanner_block = {
        "n_rings": n_rings, "detectors_per_ring": n, "inner_ring_diameter_mm": 2 * radius,
        "average_depth_of_interaction_mm": 0.0, "ring_spacing_mm": scanner.ring_spacing_mm,
        "default_bin_size_mm": bin_mm, "view_offset_deg": 0.0, "type": "Unknown",
    }  # fmt: skip
    scanner_keys = [
        ("Scanner type", "Unknown"),
        ("Number of rings", str(n_rings)),
        ("Number of detectors per ring", str(n)),
        ("Inner ring diameter (cm)", f"{2 * radius / 10:.6g}"),
        ("Average depth of interaction (cm)", "0"),
        ("Distance between rings (cm)", f"{scanner.ring_spacing_mm / 10:.6g}"),
        ("Default bin size (cm)", f"{bin_mm / 10:.6g}"),
        ("View offset (degrees)", "0"),
        ("Maximum number of non-arc-corrected bins", str(layout.n_radial)),
        ("Default number of arc-corrected bins", str(layout.n_radial)),
    ]
    description: dict[str, Any] = {
        "kind": "pet_sinogram", "axes": ("plane", "view", "tangential"),
        "storage_order": "view", "segments": segments, "n_views": n // 2,
        "n_tangential": int(layout.n_radial), "span1": True,
        "plane_rings": np.asarray(plane_rings, dtype=np.int32), "arc_corrected": False,
        "applied_corrections": [], "bin_size_mm": None, "pet_data_type": "Emission",
        "frame_start_s": frame_start_s, "frame_duration_s": frame_duration_s,
        "originating_system": "recon", "scanner": scanner_block, "scanner_keys": scanner_keys,
        "pet_scanner": scanner, "layout": None,
    }  # fmt: skip
    _, (plane, view, radial), valid = _layout_bins(description, scanner)
    out = np.zeros(plane.shape, dtype=np.float32)
    out[valid] = values[plane[valid], view[valid], radial[valid]]
    return PetSinogram(out, description)
