"""An independent Monte Carlo of once-scattered PET coincidences, to check single-scatter
simulation (recon/pet/sss.py) against.

Nothing here uses recon's scatter code: its own photon transport in an analytic phantom (a uniform
water elliptic cylinder, |z| <= h), its own Klein–Nishina sampling and cross-sections (the
formula integrated numerically, not recon.physics.compton), its own detector geometry (rays hit
the cylinder of the crystals, which are then found from the scanner's numbers) and its own energy
and timing blurs (sampled, not integrated). Only the sinogram binning of the detected crystal
pairs is recon's (``SinogramLayout.bins_of``): that is the data format, not the model under test.

Physics of the MC world: water is a pure Compton scatterer with μ(E) = n_e σ_KN(E) (at 511 keV
Compton is over 99 % of water's attenuation, so this is the approximation SSS makes too, but here
it is the exact law of the simulated world). Each decay emits two back-to-back 511 keV photons in
an isotropic direction. Two kinds of detected coincidence are scored, with weights instead of
sampled survival (variance reduction, unbiased):

* trues: both photons leave the phantom unscattered (weight ``exp(-μ (L1 + L2))``);
* single scatters: photon ``k`` interacts once (probability ``1 - exp(-μ L_k)``, the depth drawn
  from the truncated exponential), scatters through a Klein–Nishina angle and leaves without a
  second interaction (``exp(-μ(E') L')``), while the other leaves unscattered.

Both photons must hit the crystal cylinder within the axial extent of the rings and their energies,
blurred by a Gaussian of FWHM ``R · 511 · sqrt(E / 511)`` keV, must fall in the window. The TOF
position of a coincidence is half the path difference blurred by the timing resolution.

Reference constants: classical electron radius 2.8179403262e-12 mm (CODATA 2018); water has 10
electrons per molecule of 18.015 g/mol at 1 g/cm³ (Avogadro 6.02214076e23/mol).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

R_E_MM = 2.8179403262e-12
ELECTRONS_PER_MM3 = 10 * 6.02214076e23 / 18.015 / 1000.0  # water at 1 g/cm³: 3.343e20 /mm³
MEC2_KEV = 510.99895
C_MM_PER_PS = 0.299792458


def kn_differential(energy_kev: np.ndarray, cos_t: np.ndarray) -> np.ndarray:
    """Klein–Nishina dσ/dΩ per electron, mm²/sr."""
    ratio = 1.0 / (1.0 + energy_kev / MEC2_KEV * (1.0 - cos_t))
    return 0.5 * R_E_MM**2 * ratio**2 * (ratio + 1.0 / ratio - (1.0 - cos_t**2))


def kn_total(energy_kev: float) -> float:
    """σ_KN by numerical integration over cos θ (Simpson, 4001 points), mm²."""
    cos_t = np.linspace(-1.0, 1.0, 4001)
    f = kn_differential(np.full_like(cos_t, energy_kev), cos_t)
    h = cos_t[1] - cos_t[0]
    simpson = h / 3.0 * (f[0] + f[-1] + 4.0 * f[1:-1:2].sum() + 2.0 * f[2:-1:2].sum())
    return 2.0 * math.pi * simpson


def water_mu(energy_kev: np.ndarray) -> np.ndarray:
    """μ of the MC's water, 1/mm, on a table in energy (interpolated)."""
    table_e = np.linspace(100.0, 520.0, 211)
    table_mu = ELECTRONS_PER_MM3 * np.array([kn_total(e) for e in table_e])
    return np.interp(energy_kev, table_e, table_mu)


@dataclass(frozen=True)
class Phantom:
    """Uniform water elliptic cylinder: centre (cx, cy), semi-axes (a, b) mm, |z| <= half_z."""

    cx: float
    cy: float
    a: float
    b: float
    half_z: float

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        return ((x - self.cx) / self.a) ** 2 + ((y - self.cy) / self.b) ** 2 <= 1.0 + 0 * z

    def exit_distance(self, p: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Distance from points inside along unit directions to the surface."""
        px, py = (p[:, 0] - self.cx) / self.a, (p[:, 1] - self.cy) / self.b
        dx, dy = d[:, 0] / self.a, d[:, 1] / self.b
        qa = dx * dx + dy * dy
        qb = 2.0 * (px * dx + py * dy)
        qc = np.minimum(px * px + py * py - 1.0, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            side = np.where(qa > 1e-18, (-qb + np.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa), np.inf)
            top = np.where(
                d[:, 2] > 0,
                (self.half_z - p[:, 2]) / d[:, 2],
                np.where(d[:, 2] < 0, (-self.half_z - p[:, 2]) / d[:, 2], np.inf),
            )
        return np.maximum(np.minimum(side, top), 0.0)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((0, 3))
        while len(out) < n:
            m = 2 * (n - len(out)) + 16
            pts = np.stack(
                [
                    self.cx + self.a * rng.uniform(-1, 1, m),
                    self.cy + self.b * rng.uniform(-1, 1, m),
                    rng.uniform(-self.half_z, self.half_z, m),
                ],
                axis=1,
            )
            pts = pts[self.inside(pts[:, 0], pts[:, 1], pts[:, 2])]
            out = np.concatenate([out, pts])
        return out[:n]


def _isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    cos_t = rng.uniform(-1, 1, n)
    phi = rng.uniform(0, 2 * np.pi, n)
    sin_t = np.sqrt(1 - cos_t**2)
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


def _sample_kn_cos(energy_kev: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """cos θ drawn from Klein–Nishina by rejection (the density is largest forward, cos θ = 1)."""
    out = np.empty(0)
    peak = kn_differential(np.array(energy_kev), np.array(1.0))
    while len(out) < n:
        m = 2 * (n - len(out)) + 16
        c = rng.uniform(-1, 1, m)
        keep = rng.uniform(0, peak, m) < kn_differential(np.full(m, energy_kev), c)
        out = np.concatenate([out, c[keep]])
    return out[:n]


def _deflect(d: np.ndarray, cos_t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Directions at angle θ from ``d`` with a uniform azimuth."""
    helper = np.where(np.abs(d[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(d, u)
    psi = rng.uniform(0, 2 * np.pi, len(d))
    sin_t = np.sqrt(np.clip(1 - cos_t**2, 0, None))
    return (
        cos_t[:, None] * d + (sin_t * np.cos(psi))[:, None] * u + (sin_t * np.sin(psi))[:, None] * v
    )


@dataclass(frozen=True)
class Ring:
    """The scanner as the MC sees it: crystal centres on a cylinder."""

    radius_mm: float
    crystals_per_ring: int
    n_rings: int
    ring_spacing_mm: float

    def hit(self, q: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Crystal id hit by rays from ``q`` (inside the ring) along ``d``, distance, and whether
        the hit lies within the rings."""
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = 2 * (q[:, 0] * d[:, 0] + q[:, 1] * d[:, 1])
        c = q[:, 0] ** 2 + q[:, 1] ** 2 - self.radius_mm**2
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 1e-18, (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a), np.inf)
        point = q + np.where(np.isfinite(t), t, 0)[:, None] * d
        half = self.n_rings * self.ring_spacing_mm / 2.0
        ok = np.isfinite(t) & (np.abs(point[:, 2]) < half)
        n = self.crystals_per_ring
        phi = np.arctan2(point[:, 1], point[:, 0])
        index = np.round(phi / (2 * np.pi / n)).astype(np.int64) % n
        ring = np.clip(np.floor((point[:, 2] + half) / self.ring_spacing_mm), 0, self.n_rings - 1)
        return ring.astype(np.int64) * n + index, t, ok


def _in_window(energy_kev, window, resolution, rng):
    sigma = resolution * 511.0 * np.sqrt(energy_kev / 511.0) / (2 * math.sqrt(2 * math.log(2)))
    measured = energy_kev + sigma * rng.standard_normal(np.shape(energy_kev))
    return (measured >= window[0]) & (measured <= window[1])


def simulate(
    phantom: Phantom,
    ring: Ring,
    n_decays: int,
    rng: np.random.Generator,
    window: tuple[float, float],
    resolution: float,
    tof_sigma_mm: float,
    batch: int = 500_000,
    spheres: tuple[tuple[float, float, float, float, float], ...] = (),
) -> dict[str, np.ndarray]:
    """Detected trues and single scatters of ``n_decays`` decays.

    The activity is uniform (1) in the phantom, with ``spheres`` ``(x, y, z, radius, value)``
    holding ``value`` instead (decays are drawn uniformly and weighted by the activity).

    Returns arrays over detected events: ``crystal_a``, ``crystal_b`` (the crystals hit by photon
    1 and 2), ``weight``, ``scattered`` (bool) and ``tof_mm`` (position from the LOR midpoint
    towards crystal_b, timing blur included).
    """
    mu511 = float(water_mu(np.array(511.0)))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("a", "b", "w", "s", "x")}

    def score(p1, d1, p2, d2, path1, path2, weight, scattered, keep):
        h1, t1, ok1 = ring.hit(p1, d1)
        h2, t2, ok2 = ring.hit(p2, d2)
        good = keep & ok1 & ok2 & (weight > 0)
        dist1, dist2 = path1 + t1, path2 + t2
        x = (dist1 - dist2) / 2.0 + tof_sigma_mm * rng.standard_normal(len(p1))
        for key, value in (("a", h1), ("b", h2), ("w", weight), ("x", x)):
            parts[key].append(value[good])
        parts["s"].append(np.full(int(good.sum()), scattered))

    done = 0
    while done < n_decays:
        n = min(batch, n_decays - done)
        done += n
        origin = phantom.sample(n, rng)
        source = np.ones(n)
        for x, y, z, radius, value in spheres:
            inside = np.sum((origin - [x, y, z]) ** 2, axis=1) <= radius**2
            source[inside] = value
        u = _isotropic(n, rng)
        dirs = (u, -u)
        lengths = [phantom.exit_distance(origin, d) for d in dirs]
        zeros = np.zeros(n)
        # Trues.
        weight = source * np.exp(-mu511 * (lengths[0] + lengths[1]))
        keep = _in_window(np.full(n, 511.0), window, resolution, rng) & _in_window(
            np.full(n, 511.0), window, resolution, rng
        )
        score(origin, u, origin, -u, zeros, zeros, weight, False, keep)
        # Photon k scatters once, the other does not.
        for k in (0, 1):
            other = 1 - k
            p_int = 1.0 - np.exp(-mu511 * lengths[k])
            depth = -np.log1p(-rng.uniform(0, 1, n) * p_int) / mu511
            site = origin + depth[:, None] * dirs[k]
            cos_t = _sample_kn_cos(511.0, n, rng)
            energy = 511.0 / (2.0 - cos_t)
            new_dir = _deflect(dirs[k], cos_t, rng)
            escape = phantom.exit_distance(site, new_dir)
            weight = source * p_int * np.exp(-mu511 * lengths[other])
            weight *= np.exp(-water_mu(energy) * escape)
            keep = _in_window(energy, window, resolution, rng) & _in_window(
                np.full(n, 511.0), window, resolution, rng
            )
            if k == 0:
                score(site, new_dir, origin, dirs[1], depth, zeros, weight, True, keep)
            else:
                score(origin, dirs[0], site, new_dir, zeros, depth, weight, True, keep)
    return {
        "crystal_a": np.concatenate(parts["a"]),
        "crystal_b": np.concatenate(parts["b"]),
        "weight": np.concatenate(parts["w"]),
        "scattered": np.concatenate(parts["s"]),
        "tof_mm": np.concatenate(parts["x"]),
    }


def voxelise(phantom: Phantom, grid, supersample: int = 4, spheres=()) -> np.ndarray:
    """Mean activity (1 in the phantom, ``value`` in the spheres) of each voxel, supersampled in
    x, y and z; ``grid.shape``. Without spheres: the fraction of each voxel in the phantom."""
    z, y, x = grid.meshgrid_mm()
    dz, dy, dx = grid.voxel_size_mm
    out = np.zeros(grid.shape)
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    for oz in offsets:
        for oy in offsets:
            for ox in offsets:
                px, py, pz = x + ox * dx, y + oy * dy, z + oz * dz
                value = (phantom.inside(px, py, pz) & (np.abs(pz) <= phantom.half_z)) * 1.0
                for sx, sy, sz, radius, v in spheres:
                    ball = (px - sx) ** 2 + (py - sy) ** 2 + (pz - sz) ** 2 <= radius**2
                    value = np.where(ball & (value > 0), v, value)
                out += value
    return out / supersample**3
