"""PET listmode in from PETSIRD files (ETSI PET raw data standard), through the ``petsird`` package.

PETSIRD (https://github.com/ETSInitiative/PETSIRD) stores a header (scanner geometry, TOF and
energy binning, exam information) and a stream of time blocks. :func:`read_petsird` reads the
binary (``yardl``) or NDJSON encoding with the optional package ``petsird``
(``pip install 'recon[petsird]'``) and maps it onto recon's conventions (DESIGN.md §3).

What is read, and how it maps (checked against the ``petsird`` 0.12 sources):

* **Geometry.** Each detecting element is a box (``BoxShape``, 8 corners) placed by its element
  transform inside a module, and each module by its module transform (``RigidTransformation``:
  ``x' = matrix · [x, 1]``); the crystal position is the centre of the box's corners after both
  transforms (module ∘ element), which is recon's "point at half the crystal depth". Without a
  ``scanner``, a cylindrical :class:`~recon.pet.scanner.PetScanner` is fitted: rings are the
  distinct z values, crystals per ring the distinct angles, the ring spacing the z step, the
  crystal depth the radial extent of the boxes. Every element is then mapped to the crystal at the
  nearest (ring, angle) of recon's table, and the mapping must be one-to-one with every position
  within ``tolerance_mm``; otherwise the geometry is not a simple cylinder in recon's convention
  (crystal 0 on +x, rings centred on z = 0) and :class:`~recon.errors.GeometryError` says so.
  PETSIRD gantry coordinates are used as recon world coordinates unchanged (for a head-first
  supine patient, the DICOM equipment frame — x to the right facing the gantry, y down, z into
  the gantry — is LPS); ``gantry_alignment`` is recorded but not applied.
* **Detection bins.** A ``DetectionBin`` packs ``energy + (element + module · n_elements) ·
  n_energy`` (``petsird.helpers.make_detection_bin``); the energy index is dropped: events of
  every energy window are kept, and the edges are in the metadata.
* **Energy window and resolution.** Since every energy bin is kept, the scanner's energy window
  (``PetScanner.energy_window_kev``) is the span of ``event_energy_bin_edges`` (lowest first edge
  to highest last edge over the module types), and its ``energy_resolution`` the
  ``energy_resolution_at_511`` (FWHM at 511 keV as a fraction of 511 keV; the mean, with a
  warning, when module types differ). A given ``scanner`` keeps its own values; only those it
  leaves as None are taken from the file. Values that cannot be a PET window or resolution are
  left out (None) with a warning.
* **TOF.** ``tof_bin_edges`` are in mm along the LOR: the stored value is ``(t1 − t2)·c/2`` for
  the two detections in the event's order, i.e. the signed distance of the annihilation from the
  LOR midpoint towards the *second* detection bin. That is recon's convention with
  ``crystal_a, crystal_b = detection_bins``, so ``tof_bin = tof_idx − (n − 1)/2`` and
  ``bin_width_ps = width_mm · 2/c``. Only equal-width bins, an odd count and symmetric edges
  map onto recon's bins. One bin (a non-TOF file, where the edges are the coincidence window)
  gives ``tof=None``. ``tof_resolution`` (CTR FWHM "in mm") is read on the same scale as the
  edges: ``fwhm_ps = fwhm_mm · 2/c``.
* **Events and times.** Prompts and delayeds of every ``EventTimeBlock`` are read, block by block
  (the stream is never held in memory whole). PETSIRD stores no per-event time for coincidences,
  only the time block (``TimeInterval``, ms from the start of the acquisition): each event gets
  the *start* of its block as ``time_ms``, so times are as coarse as the blocks (often 1 ms).
  Singles, triples and quadruples, dead-time, singles-histogram, external-signal and
  motion blocks are not used (they are counted in the metadata; bed or gantry motion is also
  logged as a warning, since recon assumes a static scanner).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import logging
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import GeometryError, InputError, ReconError
from recon.io.petsird_efficiencies import efficiency_metadata
from recon.pet.listmode import ListmodeEvents
from recon.pet.scanner import PetScanner
from recon.pet.tof import SPEED_OF_LIGHT_MM_PER_PS, Tof

__all__ = ["read_petsird"]

log = logging.getLogger("recon")

_INSTALL_HINT = "pip install 'recon[petsird]'"
# Relative tolerance on TOF bin widths (edges are float32) and on matching a given scanner's TOF.
_TOF_RTOL = 1e-3
_TOF_MATCH_RTOL = 5e-3
# SNOMED CT codes PETSIRD takes from DICOM CID 19/20/21 for a head-first supine patient.
_SCT_SUPINE = "40199007"
_SCT_HEADFIRST = "102540008"


def _petsird() -> Any:
    try:
        import petsird
    except ImportError:
        raise InputError(
            f"PETSIRD files need the optional package petsird: {_INSTALL_HINT}"
        ) from None
    return petsird


# ---------------------------------------------------------------------------------- geometry
def _matrix(transform: Any, what: str) -> np.ndarray:
    mat = np.asarray(getattr(transform, "matrix", None), dtype=np.float64)
    if mat.shape != (3, 4) or not np.all(np.isfinite(mat)):
        raise InputError(f"{what}: a rigid transformation must be a finite 3x4 matrix")
    return mat


def _module_type_geometry(rep_module: Any, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Corners of every detecting element of module type ``t``, world mm.

    Returns ``corners`` (n_modules · n_elements, 8, 3), ordered module-major (the order of
    ``module_index · n_elements + element_index``), and the ``(n_modules, n_elements)`` shape.
    """
    elements = rep_module.object.detecting_elements
    shape = elements.object.shape
    box = np.array([np.asarray(c.c, dtype=np.float64) for c in shape.corners])
    if box.shape != (8, 3) or not np.all(np.isfinite(box)):
        raise InputError(f"module type {t}: a detecting element's BoxShape needs 8 finite corners")
    el = np.array([_matrix(m, f"module type {t} element") for m in elements.transforms])
    mod = np.array([_matrix(m, f"module type {t} module") for m in rep_module.transforms])
    if el.size == 0 or mod.size == 0:
        raise InputError(f"module type {t} has no detecting elements or no module placements")
    # element frame -> module frame -> gantry frame; x' = R x + t at each step.
    in_module = np.einsum("eij,cj->eci", el[:, :, :3], box) + el[:, None, :, 3]
    world = np.einsum("mij,ecj->meci", mod[:, :, :3], in_module) + mod[:, None, None, :, 3]
    return world.reshape(-1, 8, 3), np.array([len(mod), len(el)])


def _depth_and_height(corners: np.ndarray, centres: np.ndarray) -> tuple[float, float]:
    """Median radial extent (crystal depth) and axial extent of the element boxes, mm."""
    r = np.hypot(centres[:, 0], centres[:, 1])
    if np.any(r <= 0):
        raise GeometryError("a PETSIRD detecting element sits on the scanner axis: not a ring")
    u = centres[:, :2] / r[:, None]
    radial = np.einsum("nci,ni->nc", corners[:, :, :2], u)
    depth = float(np.median(np.ptp(radial, axis=1)))
    height = float(np.median(np.ptp(corners[:, :, 2], axis=1)))
    return depth, height


def _cluster_rings(z: np.ndarray, floor_mm: float) -> np.ndarray:
    """Centres of the distinct z values (rings), ascending."""
    zs = np.sort(z)
    gaps = np.diff(zs)
    if gaps.size == 0 or gaps.max() <= floor_mm:
        return np.array([zs.mean()])
    breaks = np.flatnonzero(gaps > max(0.3 * gaps.max(), floor_mm)) + 1
    return np.array([part.mean() for part in np.split(zs, breaks)])


def _alignment(pos: np.ndarray, n_per_ring: int) -> tuple[np.ndarray, float]:
    """Shift (centre of the crystals) and rotation (radians, |·| ≤ half a pitch) of a ring."""
    shift = np.array(
        [pos[:, 0].mean(), pos[:, 1].mean(), 0.5 * (pos[:, 2].min() + pos[:, 2].max())]
    )
    phi = np.arctan2(pos[:, 1] - shift[1], pos[:, 0] - shift[0])
    rotation = float(np.angle(np.mean(np.exp(1j * n_per_ring * phi)))) / n_per_ring
    return shift, rotation


def _apply_alignment(pos: np.ndarray, shift: np.ndarray, rotation: float) -> np.ndarray:
    p = pos - shift
    c, s = math.cos(rotation), math.sin(rotation)
    out = p.copy()
    out[:, 0] = c * p[:, 0] + s * p[:, 1]
    out[:, 1] = -s * p[:, 0] + c * p[:, 1]
    return out


def _default_tolerance(scanner: PetScanner) -> float:
    pitch = 2.0 * math.pi * scanner.crystal_radius_mm / scanner.crystals_per_ring
    if scanner.n_rings > 1:
        pitch = min(pitch, scanner.ring_spacing_mm)
    return 0.25 * pitch


def _fit_scanner(
    pos: np.ndarray,
    corners: np.ndarray,
    tof: Tof | None,
    name: str,
    floor_mm: float,
    align: bool,
) -> tuple[PetScanner, np.ndarray, dict[str, Any] | None]:
    """A cylindrical scanner through the element centres (aligned first when ``align``)."""
    rings = _cluster_rings(pos[:, 2], floor_mm)
    n_rings = len(rings)
    n = len(pos)
    if n % n_rings:
        raise GeometryError(
            f"the PETSIRD geometry has {n} detecting elements in {n_rings} distinct z positions, "
            "not the same number in every ring: it is not a simple cylinder; read it with a "
            "`scanner=` that describes it"
        )
    n_per_ring = n // n_rings
    if n_per_ring % 2:
        raise GeometryError(
            f"the PETSIRD geometry has an odd number of crystals per ring ({n_per_ring}); recon's "
            "PetScanner needs an even number: read it with a `scanner=` that describes it"
        )
    alignment = None
    if align:
        shift, rotation = _alignment(pos, n_per_ring)
        pos = _apply_alignment(pos, shift, rotation)
        rings = rings - shift[2]
        alignment = {"shift_mm": shift, "rotation_deg": math.degrees(rotation)}
    depth, height = _depth_and_height(corners, pos)
    crystal_radius = float(np.mean(np.hypot(pos[:, 0], pos[:, 1])))
    spacing = float((rings[-1] - rings[0]) / (n_rings - 1)) if n_rings > 1 else height
    if not spacing > 0:
        raise GeometryError("cannot tell the ring spacing of the PETSIRD geometry")
    radius = crystal_radius - depth / 2.0
    scanner = PetScanner(
        n_rings=n_rings,
        crystals_per_ring=n_per_ring,
        radius_mm=radius,
        ring_spacing_mm=spacing,
        crystal_depth_mm=depth,
        tof=tof,
        name=name,
    )
    return scanner, pos, alignment


def _map_to_scanner(
    pos: np.ndarray, owners: list[tuple[int, int, int]], scanner: PetScanner, tol: float, hint: str
) -> tuple[np.ndarray, float]:
    """Crystal id of each element centre: the nearest (ring, angle) of ``scanner``'s table."""
    n_per_ring = scanner.crystals_per_ring
    ring = np.rint(pos[:, 2] / scanner.ring_spacing_mm + (scanner.n_rings - 1) / 2.0)
    ring = ring.astype(np.int64)
    index = np.rint(np.arctan2(pos[:, 1], pos[:, 0]) * n_per_ring / (2.0 * math.pi))
    index = index.astype(np.int64) % n_per_ring
    outside = np.flatnonzero((ring < 0) | (ring >= scanner.n_rings))
    if outside.size:
        i = int(outside[0])
        raise GeometryError(
            f"{_owner(owners, i)} at z = {pos[i, 2]:.2f} mm lies outside the rings of the "
            f"{scanner.n_rings}-ring scanner ({outside.size} elements do); {hint}"
        )
    ids = ring * n_per_ring + index
    table = scanner.crystal_positions_mm.astype(np.float64)
    err = np.linalg.norm(pos - table[ids], axis=1)
    worst = int(np.argmax(err))
    if err[worst] > tol:
        p = pos[worst]
        raise GeometryError(
            f"{_owner(owners, worst)} at ({p[0]:.2f}, {p[1]:.2f}, {p[2]:.2f}) mm is "
            f"{err[worst]:.2f} mm from the nearest crystal of the scanner (crystal "
            f"{int(ids[worst])}, tolerance {tol:.2f} mm; {int(np.sum(err > tol))} elements are "
            f"further than that): {hint}"
        )
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if np.any(counts > 1):
        dup = int(uniq[np.argmax(counts > 1)])
        others = np.flatnonzero(ids == dup)
        raise GeometryError(
            f"{_owner(owners, int(others[0]))} and {_owner(owners, int(others[1]))} both map to "
            f"crystal {dup}: the mapping is not one-to-one; {hint}"
        )
    return ids, float(err.max()) if err.size else 0.0


def _owner(owners: list[tuple[int, int, int]], i: int) -> str:
    """'module type t, module m, element e' for flat element ``i`` over all module types."""
    for t, start, n_elements in reversed(owners):
        if i >= start:
            local = i - start
            return (
                f"PETSIRD detecting element (module type {t}, module {local // n_elements}, "
                f"element {local % n_elements})"
            )
    return f"PETSIRD detecting element {i}"  # pragma: no cover


# ---------------------------------------------------------------------------------- TOF
def _pair_item(matrix: Any, t1: int, t2: int, what: str) -> Any:
    try:
        return matrix[t1][t2]
    except (IndexError, KeyError, TypeError):
        raise InputError(
            f"the PETSIRD header has no {what} for module types ({t1}, {t2})"
        ) from None


def _file_tof(info: Any, n_types: int) -> tuple[int, float, float | None, np.ndarray]:
    """(n_bins, bin width mm, CTR FWHM mm or None, edges) shared by every module-type pair."""
    edges = None
    fwhm = None
    for t1 in range(n_types):
        for t2 in range(t1 + 1):
            e = np.asarray(_pair_item(info.tof_bin_edges, t1, t2, "tof_bin_edges").edges)
            e = e.astype(np.float64).ravel()
            if e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
                raise InputError(
                    f"tof_bin_edges for module types ({t1}, {t2}) must be at least 2 finite, "
                    f"increasing edges, got {e.tolist()}"
                )
            if edges is None:
                edges = e
            elif e.shape != edges.shape or not np.allclose(e, edges, rtol=_TOF_RTOL, atol=1e-3):
                raise GeometryError(
                    "the PETSIRD file bins TOF differently for different module-type pairs; "
                    "recon's scanner has one TOF binning"
                )
            res = None
            try:
                res = float(info.tof_resolution[t1][t2])
            except (IndexError, KeyError, TypeError, ValueError):
                pass
            if res is not None and math.isfinite(res) and res > 0:
                if fwhm is not None and not math.isclose(res, fwhm, rel_tol=1e-3):
                    raise GeometryError(
                        "the PETSIRD file gives different TOF resolutions for different "
                        "module-type pairs; read it with a `scanner=` whose Tof you choose"
                    )
                fwhm = res
    assert edges is not None
    n_bins = edges.size - 1
    width = float(edges[-1] - edges[0]) / n_bins
    return n_bins, width, fwhm, edges


def _tof_from_file(n_bins: int, width: float, fwhm: float | None, edges: np.ndarray) -> Tof | None:
    """recon's Tof for the file's TOF bins (None for one bin, i.e. non-TOF data)."""
    if n_bins == 1:
        return None
    widths = np.diff(edges)
    scale = max(abs(float(edges[0])), abs(float(edges[-1])))
    atol = _TOF_RTOL * width + 1e-6 * scale
    if np.max(np.abs(widths - width)) > atol:
        raise GeometryError(
            f"the PETSIRD TOF bins have unequal widths ({widths.min():.3f} … {widths.max():.3f} "
            "mm); recon's TOF bins are all the same width"
        )
    if n_bins % 2 == 0:
        raise GeometryError(
            f"the PETSIRD file has an even number of TOF bins ({n_bins}); recon's signed TOF bins "
            "need an odd number, with bin 0 centred on the LOR midpoint (DESIGN.md §3)"
        )
    centre = 0.5 * float(edges[0] + edges[-1])
    if abs(centre) > atol:
        raise GeometryError(
            f"the PETSIRD TOF bins are not centred on the LOR midpoint (edges {edges[0]:.3f} … "
            f"{edges[-1]:.3f} mm); recon's bin 0 is centred there (DESIGN.md §3)"
        )
    if fwhm is None:
        raise GeometryError(
            "the PETSIRD file gives no TOF resolution (tof_resolution); read it with a "
            "`scanner=` whose Tof gives the timing resolution"
        )
    to_ps = 2.0 / SPEED_OF_LIGHT_MM_PER_PS
    return Tof(fwhm_ps=fwhm * to_ps, n_bins=n_bins, bin_width_ps=width * to_ps)


def _check_given_tof(scanner: PetScanner, n_bins: int, width: float) -> None:
    width_ps = width * 2.0 / SPEED_OF_LIGHT_MM_PER_PS
    if n_bins == 1:
        if scanner.tof is not None:
            raise GeometryError(
                "the PETSIRD file is non-TOF (one TOF bin) but the given scanner has TOF; pass "
                "dataclasses.replace(scanner, tof=None)"
            )
        return
    if scanner.tof is None:
        raise GeometryError(
            f"the PETSIRD file has {n_bins} TOF bins of {width_ps:.1f} ps but the given scanner "
            "has no TOF; pass a scanner with a matching Tof"
        )
    if scanner.tof.n_bins != n_bins or not math.isclose(
        scanner.tof.bin_width_ps, width_ps, rel_tol=_TOF_MATCH_RTOL
    ):
        raise GeometryError(
            f"the PETSIRD file has {n_bins} TOF bins of {width_ps:.2f} ps but the given scanner "
            f"has {scanner.tof.n_bins} of {scanner.tof.bin_width_ps:.2f} ps"
        )


# ---------------------------------------------------------------------------------- header
def _energy_bins(info: Any, n_types: int) -> tuple[list[int], list[np.ndarray]]:
    n_energy, edges = [], []
    for t in range(n_types):
        try:
            e = np.asarray(info.event_energy_bin_edges[t].edges, dtype=np.float64).ravel()
        except (IndexError, TypeError, AttributeError):
            raise InputError(
                f"the PETSIRD header has no event_energy_bin_edges for module type {t} (needed "
                "to decode detection bins)"
            ) from None
        if e.size < 2:
            raise InputError(
                f"event_energy_bin_edges for module type {t} must hold at least 2 edges"
            )
        n_energy.append(e.size - 1)
        edges.append(e)
    return n_energy, edges


def _energy_response(
    info: Any, edges: list[np.ndarray]
) -> tuple[tuple[float, float] | None, float | None]:
    """The energy window spanned by the file's energy bins and its energy resolution at 511 keV
    (None for what the file does not give or gives as an impossible value)."""
    window: tuple[float, float] | None = (
        float(min(e[0] for e in edges)),
        float(max(e[-1] for e in edges)),
    )
    lower, upper = window  # type: ignore[misc]
    if not (np.isfinite(lower) and np.isfinite(upper) and 0 <= lower < 510.999 < upper):
        log.warning(
            "recon: the PETSIRD energy bins span %g-%g keV, not a window around 511 keV; the "
            "scanner's energy window is left unknown",
            lower,
            upper,
        )
        window = None
    values = np.asarray(list(info.energy_resolution_at_511 or []), dtype=np.float64).ravel()
    resolution: float | None = None
    if values.size and np.all(np.isfinite(values)) and np.all((values > 0) & (values < 1)):
        resolution = float(values.mean())
        if not np.allclose(values, resolution, rtol=1e-3):
            log.warning(
                "recon: the PETSIRD module types have different energy resolutions %s; using "
                "their mean, %.4f",
                values.tolist(),
                resolution,
            )
    elif values.size:
        log.warning(
            "recon: the PETSIRD energy_resolution_at_511 %s is not a fraction in (0, 1); the "
            "scanner's energy resolution is left unknown",
            values.tolist(),
        )
    return window, resolution


def _code(seq: Any) -> dict[str, str] | None:
    if seq is None:
        return None
    out = {
        "code_value": str(getattr(seq, "code_value", "") or ""),
        "coding_scheme_designator": str(getattr(seq, "coding_scheme_designator", "") or ""),
        "code_meaning": str(getattr(seq, "code_meaning", "") or ""),
    }
    return out if any(out.values()) else None


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(np.datetime_as_string(value.numpy_value, unit="s"))
    except (AttributeError, TypeError, ValueError):
        return None


def _exam_metadata(exam: Any) -> dict[str, Any]:
    if exam is None:
        return {
            "start_of_acquisition": None,
            "patient_orientation": None,
            "radiopharmaceuticals": [],
        }
    orient = exam.patient_orientation
    orientation = {
        "orientation": _code(orient.patient_orientation_code_sequence),
        "modifier": _code(orient.patient_orientation_modifier_code_sequence),
        "gantry_relationship": _code(orient.patient_gantry_relationship_code_sequence),
    }
    modifier, relation = orientation["modifier"], orientation["gantry_relationship"]
    if (modifier and modifier["code_value"] not in ("", _SCT_SUPINE)) or (
        relation and relation["code_value"] not in ("", _SCT_HEADFIRST)
    ):
        log.warning(
            "recon: the PETSIRD exam is not head-first supine (%s, %s); PETSIRD gantry "
            "coordinates are read as recon world coordinates, which are LPS only for "
            "head-first supine: check the orientation of the result",
            modifier and modifier["code_meaning"],
            relation and relation["code_meaning"],
        )
    pharma = []
    for item in exam.radiopharmaceuticals or []:
        pharma.append(
            {
                "radiopharmaceutical": _code(item.radiopharmaceutical_code_sequence),
                "radionuclide": _code(item.radionuclide_code_sequence),
                "total_dose_mbq": float(item.radionuclide_total_dose),
                "start": _iso(item.radiopharmaceutical_start_date_time),
            }
        )
    return {
        "start_of_acquisition": _iso(exam.start_of_acquisition),
        "patient_orientation": orientation if any(orientation.values()) else None,
        "radiopharmaceuticals": pharma,
    }


# ---------------------------------------------------------------------------------- events
def _coincidences(
    lists: Any, luts: list[np.ndarray], n_bins: list[int], n_tof: int, where: str
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Crystal pairs and TOF indices of one block's prompts or delayeds (arrays per pair)."""
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    if lists is None:
        return out
    for t1, row in enumerate(lists):
        for t2, events in enumerate(row):
            n = len(events)
            if n == 0:
                continue
            if t1 >= len(luts) or t2 > t1:
                raise InputError(
                    f"{where}: events listed for module types ({t1}, {t2}), but the scanner has "
                    f"{len(luts)} module type(s) (lists must be lower-triangular)"
                )
            flat = np.fromiter(
                (v for e in events for v in (e.detection_bins[0], e.detection_bins[1], e.tof_idx)),
                dtype=np.int64,
                count=3 * n,
            ).reshape(n, 3)
            for k, t in ((0, t1), (1, t2)):
                bad = np.flatnonzero((flat[:, k] < 0) | (flat[:, k] >= n_bins[t]))
                if bad.size:
                    raise InputError(
                        f"{where}: detection bin {int(flat[bad[0], k])} is out of range for "
                        f"module type {t} ({n_bins[t]} detection bins)"
                    )
            bad = np.flatnonzero((flat[:, 2] < 0) | (flat[:, 2] >= n_tof))
            if bad.size:
                raise InputError(
                    f"{where}: tof_idx {int(flat[bad[0], 2])} is out of range ({n_tof} TOF bins)"
                )
            a = luts[t1][flat[:, 0]]
            b = luts[t2][flat[:, 1]]
            out.append((a, b, flat[:, 2]))
    return out


def _open_reader(petsird: Any, path: Path, handle: Any) -> Any:
    """A PETSIRD reader on ``handle`` (a binary file object recon owns and closes)."""
    head = handle.read(64)
    handle.seek(0)
    if head.startswith(b"yardl"):
        return petsird.BinaryPETSIRDReader(handle, skip_completed_check=True)
    if head.lstrip().startswith(b"{"):
        text = io.TextIOWrapper(handle, encoding="utf-8")
        return petsird.NDJsonPETSIRDReader(text, skip_completed_check=True)
    raise InputError(
        f"{path}: not a PETSIRD file (neither the yardl binary nor the NDJSON encoding; "
        "PETSIRD HDF5 files are not readable from Python)"
    )


def read_petsird(
    path: str | os.PathLike[str],
    scanner: PetScanner | None = None,
    *,
    tolerance_mm: float | None = None,
    align: bool = False,
    time_window_ms: tuple[float, float] | None = None,
) -> tuple[ListmodeEvents, PetScanner, dict[str, Any]]:
    """Read PETSIRD listmode data as recon listmode events and a cylindrical scanner.

    The module docstring gives the mapping conventions. Each time block is decoded in turn, so
    memory holds the header, one block and the growing event arrays.

    Parameters
    ----------
    path : str or os.PathLike
        A PETSIRD file, binary (yardl) or NDJSON encoding.
    scanner : PetScanner, optional
        The scanner to map crystals onto: each PETSIRD element goes to the crystal of
        ``scanner`` nearest in (ring, angle), which must be within ``tolerance_mm`` and
        one-to-one (not every crystal needs a PETSIRD element, so gaps are allowed). Its TOF must
        match the file's bins; its ``tof.fwhm_ps`` is used. Default: fit a scanner to the
        PETSIRD geometry, which must then be a simple cylinder.
    tolerance_mm : float, optional
        Largest allowed distance between a PETSIRD element centre and its recon crystal, mm.
        Default: a quarter of the smaller crystal pitch (transaxial or axial), which allows for
        flat block faces.
    align : bool, optional
        Accept a geometry that is rotated about the axis (crystal 0 not on +x) or shifted: the
        crystal positions are first moved by ``w = R(−rotation) · (p − shift)``, which
        ``metadata["alignment"]`` records (``shift_mm``, ``rotation_deg``). Images are then in
        that moved frame. Default False: such files raise GeometryError.
    time_window_ms : (float, float), optional
        Read only the event blocks that start in ``[start, stop)`` ms; reading stops at the first
        block starting at or after ``stop``.

    Returns
    -------
    events : ListmodeEvents
        Prompts and delayeds (``prompt`` False) of all event blocks in file order, validated
        against the scanner; ``time_ms`` is the start of each event's time block.
    scanner : PetScanner
        The given or fitted scanner, with the file's energy window and resolution where it had
        none.
    metadata : dict
        ``format``, ``petsird_version``, ``model_name``, ``scanner_fitted``, ``n_prompts``,
        ``n_delayeds``, ``n_event_blocks``, ``event_block_intervals_ms`` ((n_blocks, 2) start and
        stop), ``acquisition_ms`` (first start, last stop), ``tof_bin_edges_mm``,
        ``tof_resolution_mm``, ``energy_bin_edges_kev`` (per module type; events of every
        energy bin are kept), ``energy_window_kev`` and ``energy_resolution_at_511`` (as read
        from the file, None where it gives none), ``crystal_of_element`` (per module type, the
        crystal id of element ``module · n_elements + element``), ``max_position_error_mm``,
        ``tolerance_mm``, ``alignment``, ``gantry_alignment``, ``other_time_blocks`` (counts by
        kind), ``ignored_events`` (singles, triples, quadruples), ``start_of_acquisition`` (ISO,
        UTC), ``patient_orientation``, ``radiopharmaceuticals``, ``normalization`` (the file's
        detection efficiencies as a :class:`~recon.pet.Normalization`, None when absent or
        unusable: :mod:`recon.io.petsird_efficiencies`), ``normalization_problem`` (why they
        are unusable, else None).

    Raises
    ------
    InputError
        petsird is not installed; the file is missing, not PETSIRD, truncated or inconsistent
        (detection bin or TOF index out of range, time blocks out of order); it holds no events.
    GeometryError
        The geometry is not a simple cylinder in recon's convention (pass ``scanner=``, or
        ``align=True`` for a rotated or shifted ring), or the TOF bins cannot be recon's.
    """
    petsird = _petsird()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such PETSIRD file")
    if tolerance_mm is not None and not (math.isfinite(tolerance_mm) and tolerance_mm > 0):
        raise InputError(f"tolerance_mm must be a positive number of mm, got {tolerance_mm!r}")
    window = None
    if time_window_ms is not None:
        start_ms, stop_ms = (float(v) for v in time_window_ms)
        if not stop_ms >= start_ms:
            raise InputError(f"time_window_ms stop ({stop_ms}) precedes its start ({start_ms})")
        window = (start_ms, stop_ms)
    if scanner is not None and not isinstance(scanner, PetScanner):
        raise InputError(f"scanner must be a recon PetScanner, got {type(scanner).__name__}")
    errors = (
        OSError,
        RuntimeError,
        ValueError,
        EOFError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        UnicodeDecodeError,
        struct.error,
    )
    with open(path, "rb") as handle:
        try:
            reader = _open_reader(petsird, path, handle)
        except ReconError:
            raise
        except errors as exc:
            raise InputError(f"{path}: not a readable PETSIRD file: {_why(exc)}") from None
        try:
            return _read(petsird, reader, path, scanner, tolerance_mm, align, window)
        except ReconError:
            raise
        except errors as exc:
            raise InputError(f"{path}: cannot read the PETSIRD data: {_why(exc)}") from None
        finally:
            try:
                reader.close()
            except Exception:  # closing must not hide the real outcome
                pass


def _petsird_version() -> str | None:
    try:
        return importlib.metadata.version("petsird")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - imported from a path
        return None


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "schema" in text.lower():
        text += (
            " (the file was written with another PETSIRD version than the installed petsird "
            f"{_petsird_version() or '?'})"
        )
    return text


def _read(
    petsird: Any,
    reader: Any,
    path: Path,
    given: PetScanner | None,
    tolerance_mm: float | None,
    align: bool,
    window: tuple[float, float] | None,
) -> tuple[ListmodeEvents, PetScanner, dict[str, Any]]:
    header = reader.read_header()
    info = header.scanner
    rep_modules = list(info.scanner_geometry.replicated_modules)
    n_types = len(rep_modules)
    if n_types == 0:
        raise InputError(f"{path}: the PETSIRD scanner geometry has no detector modules")

    # ------------------------------------------------ TOF
    n_tof, tof_width, tof_fwhm, tof_edges = _file_tof(info, n_types)
    if given is None:
        tof = _tof_from_file(n_tof, tof_width, tof_fwhm, tof_edges)
    else:
        _check_given_tof(given, n_tof, tof_width)
        tof = given.tof

    # ------------------------------------------------ geometry
    n_energy, energy_edges = _energy_bins(info, n_types)
    corners_list, owners, shapes = [], [], []
    start = 0
    for t, rep in enumerate(rep_modules):
        corners, shape = _module_type_geometry(rep, t)
        corners_list.append(corners)
        owners.append((t, start, int(shape[1])))
        shapes.append(shape)
        start += len(corners)
    corners = np.concatenate(corners_list)
    pos = corners.mean(axis=1)
    floor = tolerance_mm if tolerance_mm is not None else 0.05
    alignment = None
    if given is None:
        name = str(info.model_name or "petsird")
        scanner, pos, alignment = _fit_scanner(pos, corners, tof, name, floor, align)
        hint = (
            "the PETSIRD geometry is not a simple cylinder in recon's convention (equally spaced "
            "rings centred on z = 0, crystal 0 on +x); read it with a `scanner=` that describes "
            "it" + ("" if align else ", or with align=True if the ring is only rotated or shifted")
        )
    else:
        scanner = given
        if align:
            shift, rotation = _alignment(pos, scanner.crystals_per_ring)
            pos = _apply_alignment(pos, shift, rotation)
            alignment = {"shift_mm": shift, "rotation_deg": math.degrees(rotation)}
        hint = "the PETSIRD geometry does not match the given scanner" + (
            "" if align else " (align=True accepts a rotated or shifted ring)"
        )
    energy_window, energy_resolution = _energy_response(info, energy_edges)
    filled = {
        name: value
        for name, value in (
            ("energy_window_kev", energy_window),
            ("energy_resolution", energy_resolution),
        )
        if getattr(scanner, name) is None and value is not None
    }
    if filled:
        scanner = dataclasses.replace(scanner, **filled)
    tol = tolerance_mm if tolerance_mm is not None else _default_tolerance(scanner)
    ids, max_err = _map_to_scanner(pos, owners, scanner, tol, hint)
    crystal_of_element, luts, n_bins = [], [], []
    for (t, begin, _), shape in zip(owners, shapes, strict=True):
        count = int(shape[0] * shape[1])
        elem = ids[begin : begin + count].astype(np.int32)
        crystal_of_element.append(elem)
        luts.append(np.repeat(elem, n_energy[t]))  # detection bin -> crystal id
        n_bins.append(count * n_energy[t])

    gantry = info.gantry_alignment
    gantry_matrix = None
    if gantry is not None:
        gantry_matrix = np.asarray(gantry.matrix, dtype=np.float64)
        if not np.allclose(gantry_matrix, np.eye(3, 4), atol=1e-6):
            log.warning(
                "recon: the PETSIRD gantry_alignment is not the identity; it is not applied "
                "(events stay in PETSIRD gantry coordinates)"
            )

    # ------------------------------------------------ time blocks
    chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, float, bool]] = []
    intervals: list[tuple[float, float]] = []
    other: dict[str, int] = {}
    ignored = {"singles": 0, "triples": 0, "quadruples": 0}
    previous_start = -math.inf
    for i, block in enumerate(reader.read_time_blocks()):
        if not isinstance(block, petsird.TimeBlock.EventTimeBlock):
            tag = str(getattr(block, "tag", type(block).__name__))
            other[tag] = other.get(tag, 0) + 1
            continue
        etb = block.value
        t0 = float(etb.time_interval.start)
        t1 = float(etb.time_interval.stop)
        where = f"{path}: time block {i} ({t0:g}-{t1:g} ms)"
        if t1 < t0:
            raise InputError(f"{where}: the time interval ends before it starts")
        if t0 < previous_start:
            raise InputError(
                f"{where} starts before the previous event block ({previous_start:g} ms): "
                "PETSIRD event blocks must be in time order"
            )
        previous_start = t0
        if window is not None:
            if t0 >= window[1]:
                break
            if t0 < window[0]:
                continue
        intervals.append((t0, t1))
        for prompt, lists in ((True, etb.prompt_events), (False, etb.delayed_events)):
            for a, b, tof_idx in _coincidences(lists, luts, n_bins, n_tof, where):
                chunks.append((a, b, tof_idx, t0, prompt))
        ignored["singles"] += sum(len(x) for x in (etb.single_events or []))
        ignored["triples"] += _count_nested(etb.triple_events)
        ignored["quadruples"] += _count_nested(etb.quadruple_events)
    for tag in ("BedMovementTimeBlock", "GantryMovementTimeBlock"):
        if other.get(tag):
            log.warning(
                "recon: the PETSIRD file has %d %s(s); recon assumes a static scanner and bed, so "
                "the motion is not applied",
                other[tag],
                tag,
            )

    n_events = sum(len(c[0]) for c in chunks)
    if n_events == 0:
        span = "" if window is None else f" in the time window {window[0]:g}-{window[1]:g} ms"
        raise InputError(f"{path}: the PETSIRD file holds no coincidence events{span}")
    half = (n_tof - 1) // 2
    events = ListmodeEvents(
        crystal_a=np.concatenate([c[0] for c in chunks]),
        crystal_b=np.concatenate([c[1] for c in chunks]),
        tof_bin=(np.concatenate([c[2] for c in chunks]) - half).astype(np.int16),
        time_ms=np.concatenate([np.full(len(c[0]), c[3]) for c in chunks]),
        prompt=np.concatenate([np.full(len(c[0]), c[4]) for c in chunks]),
    )
    events.validate(scanner)
    n_prompts = int(np.count_nonzero(events.prompt))
    block_ms = np.array(intervals, dtype=np.float64).reshape(-1, 2)
    metadata: dict[str, Any] = {
        "format": "PETSIRD",
        "petsird_version": _petsird_version(),
        "model_name": str(info.model_name or ""),
        "scanner_fitted": given is None,
        "n_prompts": n_prompts,
        "n_delayeds": n_events - n_prompts,
        "n_event_blocks": len(intervals),
        "event_block_intervals_ms": block_ms,
        "acquisition_ms": (float(block_ms[0, 0]), float(block_ms[:, 1].max())),
        "tof_bin_edges_mm": tof_edges,
        "tof_resolution_mm": tof_fwhm,
        "energy_bin_edges_kev": energy_edges,
        "energy_window_kev": energy_window,
        "energy_resolution_at_511": energy_resolution,
        "crystal_of_element": crystal_of_element,
        "max_position_error_mm": max_err,
        "tolerance_mm": tol,
        "alignment": alignment,
        "gantry_alignment": gantry_matrix,
        "other_time_blocks": other,
        "ignored_events": ignored,
    }
    metadata.update(_exam_metadata(header.exam))
    n_modules = [int(shape[0]) for shape in shapes]
    metadata.update(efficiency_metadata(info, scanner, crystal_of_element, n_energy, n_modules))
    return events, scanner, metadata


def _count_nested(value: Any) -> int:
    """Number of events in nested lists of event lists (triples, quadruples)."""
    if value is None:
        return 0
    total = 0
    for item in value:
        if isinstance(item, list) and item and isinstance(item[0], list):
            total += _count_nested(item)
        elif isinstance(item, list):
            total += len(item)
    return total
