"""Single-scatter simulation (SSS) of PET: the expected once-scattered coincidences of an activity
image in an attenuating body, for any set of lines of response, with or without TOF.

The method is Watson's (C. C. Watson, D. Newport, M. E. Casey, "A single scatter simulation
technique for scatter correction in 3D PET", in *Three-Dimensional Image Reconstruction in
Radiology and Nuclear Medicine*, Kluwer 1996, 255-268; C. C. Watson, "New, faster, image-based
scatter correction for 3D PET", IEEE Trans. Nucl. Sci. 47 (2000) 1587-1594; for TOF, C. C. Watson,
"Extension of single scatter simulation to scatter correction of time-of-flight PET", IEEE Trans.
Nucl. Sci. 54 (2007) 1679-1686):

1. **Scatter points.** The image grid is cut into cells of about ``point_spacing_mm``; one point
   is drawn uniformly in every cell (a fixed seed, so the estimate is reproducible) and kept where
   the 511 keV μ-map (nearest voxel) exceeds ``mu_threshold_per_mm``. Each kept point stands for its
   cell: weight ``V_cell · μ(S)``, so ``weight / σ_KN`` is the number of electrons it holds (all of
   μ is taken as Compton scattering, as Watson does: at 511 keV it is over 99 % of water's).
2. **Coarse detectors.** A ring of virtual detectors (:class:`ScatterDetectors`) on the cylinder of
   the LOR ends: ``n_phi`` angles and a few axial positions. For every point and detector the 511
   keV attenuation and the emission line integrals from the point to the detector are computed by
   the LOR projector (:class:`recon.LorProjector`); for TOF, the emission profile along the path,
   blurred by the timing resolution and accumulated (the TOF projector with fine bins). The
   attenuation tables are computed once; the emission tables for every new activity image.
3. **Detector pairs.** For every pair of coarse detectors, the sum over scatter points of Watson's
   integrand, by one kernel (``kernels/sss.cu`` on the GPU, ``_sss_cpu`` on the CPU); the formula
   is in the CUDA source. The Klein–Nishina cross-section, the attenuation at the scattered energy
   (water-like tissue, NIST XCOM) and the energy window's acceptance (Gaussian energy response)
   enter through a table over the scattering angle (:mod:`recon.physics.compton`).
4. **Interpolation.** The result (:class:`CoarseScatter`) is interpolated multilinearly in the
   (angle, z) of the two ends of any LOR: sinogram bins, explicit LOR endpoints of other software's
   sinograms, listmode events.

Units: the estimate of a LOR is the scatter divided by the geometric and 511 keV detection
efficiency of the unscattered LOR (Watson's normalisation; STIR's too), i.e. in the units of a
line integral of the activity image (image units × mm), as the projector's trues. Multiplied by
the same factors as the trues (frame time, decay, calibration, normalisation; not attenuation) it
gives expected scattered counts. TOF estimates hold the same total split over the TOF bins (bins
in increasing order, positive towards the second end, as the projector's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon._validation import as_grid_array, as_mu_map
from recon.backend import Backend, resolve_backend
from recon.errors import GeometryError, InputError, PhysicsError
from recon.grid import ImageGrid
from recon.pet.projector import LorProjector
from recon.pet.scanner import PetScanner
from recon.pet.tof import SPEED_OF_LIGHT_MM_PER_PS, Tof
from recon.physics.compton import (
    attenuation_scale_water,
    klein_nishina,
    klein_nishina_total,
    scattered_energy_kev,
    window_efficiency,
)
from recon.physics.isotopes import ANNIHILATION_KEV

__all__ = ["CoarseScatter", "ScatterDetectors", "SingleScatterSimulation"]

_N_LUT = 1025  # table steps in cos θ: 0.002, far below the width of the window's edge in cos θ
_DEFAULT_MEMORY = 2**26  # bytes of per-point tables held at once


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InputError(f"{name} must be a positive number, got {value!r}")
    out = float(value)
    if not (math.isfinite(out) and out > 0):
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return out


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an integer of at least {minimum}, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------- detectors
@dataclass(frozen=True)
class ScatterDetectors:
    """The coarse ring of virtual detectors single scatter is computed on.

    Detector ``d = i_phi · n_z + i_z`` sits at angle ``φ = 2π i_phi / n_phi`` (from +x towards +y,
    as crystal 0 of a :class:`recon.PetScanner`) and axial position ``z_mm[i_z]``, on the cylinder
    of radius ``radius_mm``; its face looks at the axis (normal ``−(cos φ, sin φ, 0)``).

    Parameters
    ----------
    radius_mm : float
        Radius of the cylinder the LOR ends lie on (a scanner's crystal radius), mm.
    n_phi : int
        Detectors around the ring (at least 8).
    z_mm : sequence of float
        Increasing axial positions of the detector rings, mm (one or more).

    Raises
    ------
    GeometryError
        A radius that is not positive, fewer than 8 angles, or z positions not increasing.
    """

    radius_mm: float
    n_phi: int
    z_mm: tuple[float, ...]

    def __post_init__(self) -> None:
        radius = float(self.radius_mm)
        if not (math.isfinite(radius) and radius > 0):
            raise GeometryError(f"radius_mm must be positive, got {self.radius_mm!r}")
        if isinstance(self.n_phi, bool) or int(self.n_phi) != self.n_phi or self.n_phi < 8:
            raise GeometryError(f"n_phi must be an integer of at least 8, got {self.n_phi!r}")
        z = tuple(float(v) for v in np.atleast_1d(np.asarray(self.z_mm, dtype=np.float64)))
        if not z or not all(math.isfinite(v) for v in z) or np.any(np.diff(z) <= 0):
            raise GeometryError(f"z_mm must be increasing finite positions, got {self.z_mm!r}")
        object.__setattr__(self, "radius_mm", radius)
        object.__setattr__(self, "n_phi", int(self.n_phi))
        object.__setattr__(self, "z_mm", z)

    @classmethod
    def covering(
        cls, radius_mm: float, z_min_mm: float, z_max_mm: float, n_phi: int = 64,
        axial_spacing_mm: float = 25.0,
    ) -> ScatterDetectors:  # fmt: skip
        """Detector rings from ``z_min_mm`` to ``z_max_mm`` at most ``axial_spacing_mm`` apart
        (one ring when they are equal)."""
        spacing = _positive(axial_spacing_mm, "axial_spacing_mm")
        extent = float(z_max_mm) - float(z_min_mm)
        if not (math.isfinite(extent) and extent >= 0):
            raise GeometryError(f"z range [{z_min_mm}, {z_max_mm}] mm is not a range")
        n_z = 1 if extent == 0 else max(2, math.ceil(extent / spacing) + 1)
        return cls(radius_mm, n_phi, tuple(np.linspace(z_min_mm, z_max_mm, n_z)))

    @classmethod
    def from_scanner(
        cls, scanner: PetScanner, n_phi: int = 64, axial_spacing_mm: float = 25.0
    ) -> ScatterDetectors:
        """The coarse ring of a scanner: its crystal radius, rings from its first to its last.

        The defaults: 64 angles (5.6° apart) and rings at most 25 mm apart. Watson (2000) found
        coarser rings enough for the smooth scatter distribution inside the body; the angles are
        finer here because the estimate is interpolated in the angles of the two LOR ends, and
        for lines far from the axis (the tails that scale the estimate) 32 angles overestimated
        scatter by 10-30 % against the Monte Carlo of tests/test_pet_sss.py; 64 agree within
        5 %.
        """
        if not isinstance(scanner, PetScanner):
            raise GeometryError(f"scanner must be a PetScanner, got {type(scanner).__name__}")
        z = scanner.ring_z_mm
        return cls.covering(
            scanner.crystal_radius_mm, float(z[0]), float(z[-1]), n_phi, axial_spacing_mm
        )

    @classmethod
    def from_endpoints(
        cls, xstart: Any, xend: Any, n_phi: int = 64, axial_spacing_mm: float = 25.0
    ) -> ScatterDetectors:
        """The coarse ring of LORs given by their ends (e.g. STIR sinograms): the median radius
        of the ends and their axial range."""
        ends = np.concatenate(
            [
                np.asarray(xstart, np.float64).reshape(-1, 3),
                np.asarray(xend, np.float64).reshape(-1, 3),
            ]
        )
        if ends.size == 0 or not np.all(np.isfinite(ends)):
            raise GeometryError("LOR endpoints must be finite and not empty")
        radius = float(np.median(np.hypot(ends[:, 0], ends[:, 1])))
        return cls.covering(
            radius, float(ends[:, 2].min()), float(ends[:, 2].max()), n_phi, axial_spacing_mm
        )

    @property
    def n_z(self) -> int:
        """Number of detector rings."""
        return len(self.z_mm)

    @property
    def n_det(self) -> int:
        """Number of detectors, ``n_phi · n_z``."""
        return self.n_phi * self.n_z

    def positions(self) -> np.ndarray:
        """World (x, y, z) of every detector, float32 (n_det, 3), mm."""
        phi = 2.0 * np.pi * np.arange(self.n_phi) / self.n_phi
        out = np.empty((self.n_phi, self.n_z, 3), np.float64)
        out[..., 0] = (self.radius_mm * np.cos(phi))[:, None]
        out[..., 1] = (self.radius_mm * np.sin(phi))[:, None]
        out[..., 2] = np.asarray(self.z_mm)[None, :]
        return out.reshape(-1, 3).astype(np.float32)

    def normals(self) -> np.ndarray:
        """Unit normal of every detector face, pointing at the axis, float32 (n_det, 3)."""
        phi = 2.0 * np.pi * np.arange(self.n_phi) / self.n_phi
        out = np.zeros((self.n_phi, self.n_z, 3), np.float64)
        out[..., 0] = -np.cos(phi)[:, None]
        out[..., 1] = -np.sin(phi)[:, None]
        return out.reshape(-1, 3).astype(np.float32)

    def corners(self, points: Any, xp: Any) -> tuple[list[Any], list[Any]]:
        """The coarse detectors around world points and their interpolation weights.

        Returns two lists of four arrays (of the points' shape less the last axis): detector
        indices and bilinear weights in (angle, z); angles wrap around, z is clamped to the rings.
        """
        x, y, z = points[..., 0], points[..., 1], points[..., 2]
        turn = xp.arctan2(y, x) / (2.0 * np.pi)
        f = (turn - xp.floor(turn)) * self.n_phi
        i0 = xp.floor(f).astype(xp.int64)
        w_phi = f - i0
        i0 = i0 % self.n_phi
        i1 = (i0 + 1) % self.n_phi
        if self.n_z == 1:
            j0 = xp.zeros_like(i0)
            j1 = j0
            w_z = xp.zeros_like(w_phi)
        else:
            z_mm = xp.asarray(np.asarray(self.z_mm, np.float64))
            g = xp.interp(z, z_mm, xp.arange(self.n_z, dtype=np.float64))  # clamps at the ends
            j0 = xp.minimum(xp.floor(g).astype(xp.int64), self.n_z - 2)
            w_z = g - j0
            j1 = j0 + 1
        nz = self.n_z
        index = [i0 * nz + j0, i0 * nz + j1, i1 * nz + j0, i1 * nz + j1]
        weight = [(1 - w_phi) * (1 - w_z), (1 - w_phi) * w_z, w_phi * (1 - w_z), w_phi * w_z]
        return index, weight


# ---------------------------------------------------------------------------------- result
class CoarseScatter:
    """Single scatter between every ordered pair of coarse detectors, interpolated to any LOR.

    Attributes
    ----------
    detectors : ScatterDetectors
        The coarse ring.
    table : float32 device array (n_det, n_det) or (n_det, n_det, n_tof)
        Estimate for the line from detector ``a`` to detector ``b`` (TOF bins positive towards
        ``b``, in increasing order), in image units × mm.
    tof : Tof or None
        The TOF binning of ``table``.
    """

    def __init__(self, detectors: ScatterDetectors, table: Any, tof: Tof | None, xp: Any) -> None:
        self.detectors = detectors
        self.table = table
        self.tof = tof
        self.xp = xp

    def nontof(self) -> CoarseScatter:
        """The same estimate summed over the TOF bins (itself when non-TOF)."""
        if self.tof is None:
            return self
        return CoarseScatter(self.detectors, self.table.sum(axis=-1), None, self.xp)

    def at(self, xstart: Any, xend: Any, tof_bin: Any = None) -> Any:
        """The estimate on LORs given by their ends.

        Parameters
        ----------
        xstart, xend : arrays of shape (..., 3)
            World (x, y, z) of the two ends of each LOR, mm (on any cylinder about the axis: only
            their angles and z are used).
        tof_bin : integer array of the LORs' shape, optional
            Signed TOF bin of each LOR (listmode): one value per LOR. Without it a TOF estimate
            gives all bins, shape ``(..., n_tof)``.

        Returns
        -------
        float32 device array
            Shape ``(...)`` (non-TOF, or with ``tof_bin``) or ``(..., n_tof)``.
        """
        xp = self.xp
        p1 = xp.asarray(xstart, dtype=np.float64)
        p2 = xp.asarray(xend, dtype=np.float64)
        if p1.shape != p2.shape or p1.shape[-1:] != (3,):
            raise InputError(f"xstart and xend must both have shape (..., 3), got {p1.shape}")
        lead = p1.shape[:-1]
        n_det = self.detectors.n_det
        ia, wa = self.detectors.corners(p1.reshape(-1, 3), xp)
        ib, wb = self.detectors.corners(p2.reshape(-1, 3), xp)
        if self.tof is None or tof_bin is None:
            flat = self.table.reshape(n_det * n_det, -1)
            out = xp.zeros((p1.reshape(-1, 3).shape[0], flat.shape[1]), np.float64)
            for a, w1 in zip(ia, wa, strict=True):
                for b, w2 in zip(ib, wb, strict=True):
                    out += (w1 * w2)[:, None] * flat[a * n_det + b]
            shape = lead if self.tof is None else (*lead, self.tof.n_bins)
            return out.reshape(shape).astype(np.float32)
        bins = xp.asarray(tof_bin).reshape(-1).astype(xp.int64) + self.tof.max_bin
        if bins.shape[0] != p1.reshape(-1, 3).shape[0]:
            raise InputError("tof_bin must hold one bin per LOR")
        if bins.size and (int(bins.min()) < 0 or int(bins.max()) >= self.tof.n_bins):
            raise InputError(f"tof_bin must lie within ±{self.tof.max_bin}")
        flat = self.table.reshape(-1)
        n_tof = self.tof.n_bins
        out = xp.zeros(bins.shape[0], np.float64)
        for a, w1 in zip(ia, wa, strict=True):
            for b, w2 in zip(ib, wb, strict=True):
                out += w1 * w2 * flat[(a * n_det + b) * n_tof + bins]
        return out.reshape(lead).astype(np.float32)


# ---------------------------------------------------------------------------------- simulation
class SingleScatterSimulation:
    """Watson's single-scatter simulation on a coarse ring of detectors (see the module notes).

    Parameters
    ----------
    grid : ImageGrid
        The grid of the μ-map and of the activity images.
    mu_map : array of grid.shape
        Linear attenuation coefficients at 511 keV, 1/mm.
    detectors : ScatterDetectors
        The coarse ring (e.g. ``ScatterDetectors.from_scanner(scanner)``).
    energy_window_kev : (float, float)
        The scanner's energy window, keV.
    energy_resolution : float
        FWHM of the 511 keV photopeak as a fraction of 511 keV.
    tof : Tof, optional
        TOF binning and timing resolution of the estimate; None for non-TOF.
    point_spacing_mm : float
        Size of the cells in which one scatter point each is drawn (default 20 mm; Watson 2000
        used a few cm; smaller is slower and closer to the exact integral).
    mu_threshold_per_mm : float
        Points where μ is at most this are dropped (default 0.001/mm, a tenth of water; lung is
        kept).
    seed : int
        Seed of the scatter points.
    tof_step_mm : float, optional
        Spacing of the accumulated TOF emission profiles (default: a third of the smaller of the
        timing sigma and the bin width).
    device : {"auto", "cpu", "gpu"} or Backend, optional
        Where to compute.
    memory_bytes : int
        Largest size of the per-point tables held at once (points are processed in chunks).

    Attributes
    ----------
    points : float32 ndarray (n_points, 3)
        The scatter points, world mm.
    weights : float32 ndarray (n_points,)
        ``V_cell · μ`` of each point, mm².

    Raises
    ------
    InputError
        Bad settings, a μ-map of the wrong shape or with implausible values, or a μ-map without
        any point above the threshold.
    PhysicsError
        An energy window that does not accept 511 keV photons.
    """

    def __init__(
        self,
        grid: ImageGrid,
        mu_map: Any,
        detectors: ScatterDetectors,
        *,
        energy_window_kev: tuple[float, float],
        energy_resolution: float,
        tof: Tof | None = None,
        point_spacing_mm: float = 20.0,
        mu_threshold_per_mm: float = 0.001,
        seed: int = 0,
        tof_step_mm: float | None = None,
        device: str | Backend | None = None,
        memory_bytes: int = _DEFAULT_MEMORY,
    ) -> None:
        if not isinstance(grid, ImageGrid):
            raise GeometryError(f"grid must be an ImageGrid, got {type(grid).__name__}")
        if not isinstance(detectors, ScatterDetectors):
            raise GeometryError("detectors must be a ScatterDetectors")
        if tof is not None and not isinstance(tof, Tof):
            raise GeometryError(f"tof must be a recon Tof or None, got {type(tof).__name__}")
        self.grid = grid
        self.detectors = detectors
        self.tof = tof
        self.backend = resolve_backend(device)
        self.xp = self.backend.xp
        self.point_spacing_mm = _positive(point_spacing_mm, "point_spacing_mm")
        threshold = float(mu_threshold_per_mm)
        if not (math.isfinite(threshold) and threshold >= 0):
            raise InputError(f"mu_threshold_per_mm must be >= 0, got {mu_threshold_per_mm!r}")
        self.mu_threshold_per_mm = threshold
        self.memory_bytes = _count(memory_bytes, "memory_bytes", 1)
        lower, upper = (float(v) for v in energy_window_kev)
        self.energy_window_kev = (lower, upper)
        self.energy_resolution = float(energy_resolution)
        self._lut = self._scatter_table()
        mu = as_mu_map(mu_map, grid, self.backend, max_per_mm=0.5, water="0.0096/mm at 511 keV")
        self._mu = mu
        self.points, self.weights = self._scatter_points(
            np.asarray(self.backend.to_host(mu)), _count(seed, "seed", 0)
        )
        if len(self.points) == 0:
            raise InputError(
                f"the mu-map has no voxel above {threshold:g}/mm: nothing to scatter in (is it a "
                "511 keV mu-map in 1/mm?)"
            )
        self._projector = LorProjector(grid, tof=None, device=self.backend)
        self._fine_tof: Tof | None = None
        if tof is not None:
            self._fine_tof = self._profile_binning(tof, tof_step_mm)
            self._tof_projector = LorProjector(grid, tof=self._fine_tof, device=self.backend)
        self._att: list[Any] | None = None
        first, second = np.triu_indices(detectors.n_det, k=1)  # every pair once, a < b
        self._pairs = np.stack([first, second], axis=1).astype(np.int32)

    # ------------------------------------------------------------------ set-up
    def _scatter_table(self) -> np.ndarray:
        """``(dσ/dΩ / σ_KN · ε(E')/ε(511), μ(E')/μ(511))`` at cos θ = −1 … 1 (float32, (n, 2))."""
        lower, upper = self.energy_window_kev
        res = self.energy_resolution
        peak = window_efficiency(ANNIHILATION_KEV, lower, upper, res)
        if not peak > 1e-6:
            raise PhysicsError(
                f"the energy window {lower:g}-{upper:g} keV accepts no 511 keV photons; check the "
                "scanner's energy window"
            )
        cos_theta = np.linspace(-1.0, 1.0, _N_LUT)
        energy = scattered_energy_kev(ANNIHILATION_KEV, cos_theta)
        factor = (
            klein_nishina(ANNIHILATION_KEV, cos_theta)
            / klein_nishina_total(ANNIHILATION_KEV)
            * window_efficiency(energy, lower, upper, res)
            / peak
        )
        ratio = attenuation_scale_water(energy)
        return np.stack([factor, ratio], axis=1).astype(np.float32)

    def _scatter_points(self, mu: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """One point drawn in every cell of the grid, kept where μ exceeds the threshold."""
        grid = self.grid
        voxel = np.asarray(grid.voxel_size_mm, np.float64)  # (z, y, x)
        shape = np.asarray(grid.shape)
        low = np.asarray(grid.origin, np.float64) - voxel / 2.0
        extent = voxel * shape
        n_cells = np.maximum(1, np.ceil(extent / self.point_spacing_mm)).astype(int)
        cell = extent / n_cells
        index = np.stack(
            np.meshgrid(*(np.arange(n) for n in n_cells), indexing="ij"), axis=-1
        ).reshape(-1, 3)
        rng = np.random.default_rng(seed)
        zyx = low + (index + rng.random(index.shape)) * cell
        voxel_index = np.clip(np.floor((zyx - low) / voxel).astype(int), 0, shape - 1)
        mu_at = mu[voxel_index[:, 0], voxel_index[:, 1], voxel_index[:, 2]].astype(np.float64)
        keep = mu_at > self.mu_threshold_per_mm
        points = zyx[keep][:, ::-1].astype(np.float32)  # (x, y, z)
        weights = (float(np.prod(cell)) * mu_at[keep]).astype(np.float32)
        return np.ascontiguousarray(points), weights

    def _profile_binning(self, tof: Tof, step_mm: float | None) -> Tof:
        """Fine TOF bins that cover every point-to-detector path (accumulated emission)."""
        step = min(tof.sigma_mm, tof.bin_width_mm) / 3.0 if step_mm is None else step_mm
        step = _positive(step, "tof_step_mm")
        ends = self.detectors.positions().astype(np.float64)
        reach = float(np.max(np.linalg.norm(ends[None, :, :] - self.points[:, None, :], axis=-1)))
        half = reach / 2.0 + 3.0 * tof.sigma_mm + 2.0 * step
        n_bins = 2 * math.ceil(half / step) + 1
        return Tof(
            fwhm_ps=tof.fwhm_ps, n_bins=n_bins, bin_width_ps=step * 2.0 / SPEED_OF_LIGHT_MM_PER_PS
        )

    @property
    def n_points(self) -> int:
        """Number of scatter points."""
        return int(len(self.points))

    def _chunks(self) -> list[slice]:
        n_edges = 1 if self._fine_tof is None else self._fine_tof.n_bins + 1
        per_point = 4 * self.detectors.n_det * (2 + n_edges + 6)
        size = max(1, self.memory_bytes // per_point)
        return [slice(a, min(a + size, self.n_points)) for a in range(0, self.n_points, size)]

    def _ends(self, chunk: slice) -> tuple[Any, Any]:
        """LORs from every point of ``chunk`` to every detector, each ``(n · n_det, 3)``."""
        xp = self.xp
        points = xp.asarray(self.points[chunk])
        dets = xp.asarray(self.detectors.positions())
        n, m = int(points.shape[0]), self.detectors.n_det
        xs = xp.ascontiguousarray(xp.repeat(points, m, axis=0))
        xe = xp.ascontiguousarray(xp.tile(dets, (n, 1)))
        return xs, xe

    def _attenuation(self) -> list[Any]:
        if self._att is None:
            tables = []
            for chunk in self._chunks():
                xs, xe = self._ends(chunk)
                line = self._projector.forward(self._mu, xs, xe, checked=False)
                tables.append(line.reshape(-1, self.detectors.n_det))
            self._att = tables
        return self._att

    # ------------------------------------------------------------------ simulation
    def simulate(self, activity: Any) -> CoarseScatter:
        """Single scatter of ``activity`` between every pair of coarse detectors.

        Parameters
        ----------
        activity : array of grid.shape or Image on the grid
            Activity image (any units; the estimate is in those units × mm), non-negative.

        Returns
        -------
        CoarseScatter
            The coarse estimate; ``.at(xstart, xend[, tof_bin])`` interpolates it to LORs.
        """
        xp = self.xp
        lam = as_grid_array(activity, self.grid, self.backend, name="activity")
        if not bool(xp.all(xp.isfinite(lam))) or float(lam.min()) < 0:
            raise InputError("the activity image must be finite and non-negative")
        det = self.detectors
        n_det = det.n_det
        n_tof = 0 if self.tof is None else self.tof.n_bins
        pairs = xp.asarray(self._pairs)
        det_a = xp.ascontiguousarray(pairs[:, 0])
        det_b = xp.ascontiguousarray(pairs[:, 1])
        det_pos = xp.asarray(det.positions())
        det_normal = xp.asarray(det.normals())
        lut = xp.asarray(self._lut)
        out = xp.zeros((len(self._pairs), n_tof) if n_tof else (len(self._pairs),), np.float32)
        kernel_tof = _sss_tof(self.tof, self._fine_tof)
        for chunk, att in zip(self._chunks(), self._attenuation(), strict=True):
            xs, xe = self._ends(chunk)
            emis = self._projector.forward(lam, xs, xe, checked=False).reshape(-1, n_det)
            if self._fine_tof is None:
                cum = xp.zeros((1, 1, 1), np.float32)
            else:
                fine = self._tof_projector.forward(lam, xs, xe, checked=False)
                cum = xp.zeros((fine.shape[0], fine.shape[1] + 1), np.float32)
                cum[:, 1:] = xp.cumsum(fine, axis=1)
                cum = cum.reshape(-1, n_det, fine.shape[1] + 1)
            _run_kernel(
                self.backend, det_a, det_b, det_pos, det_normal,
                xp.asarray(self.points[chunk]), xp.asarray(self.weights[chunk]),
                xp.ascontiguousarray(att), xp.ascontiguousarray(emis),
                xp.ascontiguousarray(cum), lut, kernel_tof, out,
            )  # fmt: skip
        table = xp.zeros((n_det, n_det, n_tof) if n_tof else (n_det, n_det), np.float32)
        table[det_a, det_b] = out
        # The reversed pair is the same line with its TOF axis reversed.
        table[det_b, det_a] = out[:, ::-1] if n_tof else out
        return CoarseScatter(det, table, self.tof, xp)


def _sss_tof(tof: Tof | None, fine: Tof | None) -> Any:
    from recon.pet._sss_cpu import MAX_TOF, SssTof

    if tof is None or fine is None:
        return SssTof(0, 1.0, 1, 1.0)
    if tof.n_bins > MAX_TOF:
        raise InputError(
            f"single-scatter simulation handles at most {MAX_TOF} TOF bins, the scanner has "
            f"{tof.n_bins}"
        )
    return SssTof(tof.n_bins, float(tof.bin_width_mm), fine.n_bins + 1, float(fine.bin_width_mm))


def _run_kernel(backend: Backend, *args: Any) -> None:
    """The pair kernel on the backend's device (CuPy launcher or numba)."""
    if backend.is_gpu:
        from recon.pet import _sss_gpu

        _sss_gpu.sss_pairs(backend, *args)
    else:
        from recon.pet import _sss_cpu

        _sss_cpu.sss_pairs(*args)
