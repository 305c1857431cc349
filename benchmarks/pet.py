"""PET projector, sensitivity and LM-OSEM benchmark.

Problem: the Discovery-MI-like scanner ``PetScanner.preset("dmi4")`` (36 rings of 544 crystals,
29 TOF bins of 169 ps, 385 ps FWHM), an image of 71×215×215 voxels of 2.78 mm. Listmode events are
simulated from emission points uniform in a water-sized cylinder (radius 150 mm, length 180 mm),
each with an isotropic direction whose line meets two crystal rings; the crystals are the nearest
ones to where the line meets the crystal cylinder, the signed TOF bin comes from the emission
point's position along that LOR blurred by the timing resolution, and the detection times are
sorted uniform over 600 s (seeded RNG, vectorised numpy). The events are drawn on the LORs of the
listmode model only (ring difference up to ``--max-ring-difference``: all on the GPU, 10 on the
CPU by default), so every event stated is processed.

Measured (median of ``--repeats`` runs after one warm-up run; the GPU is synchronised before the
clock stops), per device and per event count:

- TOF listmode forward and back projection of all events (``forward_events``/``back_events`` on
  prepared events), and ``prepare`` itself;
- one full LM-OSEM iteration with 34 subsets, twice: the ``lm_osem`` call (which prepares the
  events, reorders them into subsets and derives the start image: per-reconstruction costs), and
  the same subset loop over already prepared, reordered events (the per-iteration cost); on the
  CPU that loop takes the fused forward-ratio-back pass, and is timed a third time with the
  two-pass path (forward then back projection, as on a GPU) in the same run;

and once per device:

- the geometric sensitivity image (``geometric_sensitivity()`` of a fresh model each run, so never
  cached) over the model's LORs, with the symmetry it used (``symmetry``: the axial mirror where
  it is exact);
- the non-TOF span-1 sinogram case: ``PetSinogramModel(use_tof=False)`` forward and back over all
  views on the GPU, every 34th view (one subset's worth) on the CPU.

On the GPU the forward projections also report the achieved fraction of the device's peak memory
bandwidth under a stated model of the bytes moved. Every operation records how many events or
LORs it states and how many it processed (``n``, ``processed``), and the LORs of the sensitivity
model; the benchmark refuses (exits with a message) rather than drop any silently. Prints a table
and writes JSON.

Usage::

    python benchmarks/pet.py                     # CPU (1.25 M events) and, with CuPy, GPU
    python benchmarks/pet.py --devices gpu --events 1.25e6 10e6 40e6
    python benchmarks/pet.py --tiny              # seconds: small scanner, 32³, 2e4 events
    python benchmarks/pet.py --separable-osem    # only the separable sinogram OSEM case (CPU)

The separable sinogram OSEM case (``--separable-osem``, CPU only) is issue 16's problem: 16 rings
of 336 crystals (radius 270 mm, rings 4 mm apart), a span-1 sinogram with ring differences up to 7
(184 planes × 168 views × 199 radial bins = 6.15 M LORs) given to
``PetLorSinogramModel.separable``, a 128×128×31 image of 2.5×2.5×2 mm, a water cylinder (radius
120 mm, length 60 mm) with its μ-map. It times one OSEM iteration (8 subsets, sensitivity cached),
a forward and a back projection of all views, and the sensitivity of all views, each with the
separable projector (the transaxial walk of a (view, radial) pair shared by all planes) and with
the per-LOR Joseph walk (the same model with its separable projector switched off), the two
alternating run by run so that both see the same load.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import recon
from recon._files import write_text_atomic
from recon.algorithms.em import em_reconstruct
from recon.algorithms.listmode import lm_osem
from recon.backend import Backend, gpu_available, resolve_backend
from recon.pet.sinogram import SinogramLayout
from recon.simulate.phantoms import uniform_cylinder

SUBSETS = 34
SCAN_S = 600.0
# (kind, peak bandwidth) of cards whose numbers are known, for the notes of the JSON. The value
# used is always computed from the device properties; these are only for comparison.
KNOWN_PEAK_GBPS = {
    "H100 SXM5 80GB (HBM3, 2619 MHz x 2 x 5120 bit)": 3352.0,
    "H100 PCIe 80GB (HBM2e, 1593 MHz x 2 x 5120 bit)": 2039.0,
    "H100 NVL 94GB (HBM3)": 3938.0,
    "H200 141GB (HBM3e)": 4800.0,
}


# ---------------------------------------------------------------------------------- problem
def _config(tiny: bool) -> dict[str, Any]:
    if tiny:
        return {
            "scanner": "small",
            "shape": (32, 32, 32),
            "voxel_mm": 4.0,
            "object_radius_mm": 50.0,
            "object_length_mm": 24.0,
        }
    return {
        "scanner": "dmi4",
        "shape": (71, 215, 215),
        "voxel_mm": 2.78,
        "object_radius_mm": 150.0,
        "object_length_mm": 180.0,
    }


def make_events(
    scanner: recon.PetScanner,
    n: int,
    radius_mm: float,
    length_mm: float,
    seed: int = 0,
    batch: int = 4_000_000,
    max_ring_difference: int | None = None,
) -> dict[str, np.ndarray]:
    """``n`` true TOF coincidences from a uniform cylinder (crystal ids, signed TOF bins).

    Emission points are uniform in the cylinder; directions are isotropic, restricted to
    ``|cos θ| ≤ c_max`` with ``c_max`` large enough that no line meeting two crystal rings is left
    out (so this is exact conditioning, not a bias). Each line is intersected with the cylinder of
    crystal positions; the nearest ring and in-ring index give the crystals. The TOF bin is the
    nearest bin to the emission point's signed distance from the LOR midpoint (towards crystal_b)
    plus Gaussian timing noise; the rare events beyond the outermost bin are dropped, and so are
    events whose ring difference exceeds ``max_ring_difference`` (a scanner acquiring only those
    LORs), so that every event lies on a LOR of a model with that ring difference.
    """
    rng = np.random.default_rng(seed)
    tof = scanner.tof
    if tof is None:
        raise ValueError("the benchmark needs a TOF scanner")
    big_r = scanner.crystal_radius_mm
    n_per_ring = scanner.crystals_per_ring
    pitch = scanner.ring_spacing_mm
    ring0_z = float(scanner.ring_z_mm[0])
    pos = scanner.crystal_positions_mm.astype(np.float64)
    reach_z = scanner.axial_fov_mm + length_mm
    c_max = min(1.0, reach_z / math.hypot(reach_z, big_r - radius_mm))
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    got = 0
    while got < n:
        m = int(min(batch, max(200_000, 8 * (n - got))))
        r = radius_mm * np.sqrt(rng.random(m))
        phi = 2.0 * np.pi * rng.random(m)
        px, py = r * np.cos(phi), r * np.sin(phi)
        pz = length_mm * (rng.random(m) - 0.5)
        uz = c_max * (2.0 * rng.random(m) - 1.0)
        sin_t = np.sqrt(1.0 - uz * uz)
        az = 2.0 * np.pi * rng.random(m)
        ux, uy = sin_t * np.cos(az), sin_t * np.sin(az)
        # |(px, py) + s (ux, uy)| = R: the two roots s_a < 0 < s_b.
        qa = ux * ux + uy * uy
        qb = px * ux + py * uy
        root = np.sqrt(qb * qb - qa * (px * px + py * py - big_r * big_r))
        s_a, s_b = (-qb - root) / qa, (-qb + root) / qa
        ids = []
        ok = np.ones(m, dtype=bool)
        for s in (s_a, s_b):
            ring = np.rint((pz + s * uz - ring0_z) / pitch)
            ok &= (ring >= 0) & (ring < scanner.n_rings)
            angle = np.arctan2(py + s * uy, px + s * ux)
            index = np.rint(angle * (n_per_ring / (2.0 * np.pi))).astype(np.int64) % n_per_ring
            ids.append(np.clip(ring, 0, scanner.n_rings - 1).astype(np.int64) * n_per_ring + index)
        ok &= ids[0] % n_per_ring != ids[1] % n_per_ring
        if max_ring_difference is not None:
            ok &= np.abs(ids[0] // n_per_ring - ids[1] // n_per_ring) <= max_ring_difference
        ca, cb = ids[0][ok], ids[1][ok]
        a, b = pos[ca], pos[cb]
        d = b - a
        emission = np.stack([px[ok], py[ok], pz[ok]], axis=1)
        s_mm = np.einsum("ij,ij->i", emission - 0.5 * (a + b), d) / np.linalg.norm(d, axis=1)
        s_mm += rng.normal(0.0, tof.sigma_mm, s_mm.size)
        tof_bin = np.rint(s_mm / tof.bin_width_mm)
        keep = np.abs(tof_bin) <= tof.max_bin
        parts.append((ca[keep], cb[keep], tof_bin[keep].astype(np.int16)))
        got += int(np.count_nonzero(keep))
    return {
        "crystal_a": np.concatenate([p[0] for p in parts])[:n].astype(np.int32),
        "crystal_b": np.concatenate([p[1] for p in parts])[:n].astype(np.int32),
        "tof_bin": np.concatenate([p[2] for p in parts])[:n],
    }


def listmode(pool: dict[str, np.ndarray], n: int, seed: int = 1) -> recon.ListmodeEvents:
    """The first ``n`` events of ``pool`` with detection times sorted uniform over the scan."""
    times_ms = np.sort(np.random.default_rng(seed).uniform(0.0, SCAN_S * 1e3, n))
    return recon.ListmodeEvents(
        crystal_a=pool["crystal_a"][:n],
        crystal_b=pool["crystal_b"][:n],
        tof_bin=pool["tof_bin"][:n],
        time_ms=times_ms,
    )


# ---------------------------------------------------------------------------------- devices
def _peak_bandwidth(backend: Backend) -> dict[str, Any] | None:
    """Peak DRAM bandwidth: memoryClockRate (kHz) × 2 (double data rate) × memoryBusWidth / 8."""
    if not backend.is_gpu:
        return None
    runtime = backend.xp.cuda.runtime
    props = runtime.getDeviceProperties(backend.device_id)
    clock_khz, bus_bits = props.get("memoryClockRate"), props.get("memoryBusWidth")
    if not clock_khz or not bus_bits:  # CUDA 13 dropped these fields from cudaDeviceProp
        try:
            clock_khz = runtime.deviceGetAttribute(36, backend.device_id)  # MemoryClockRate
            bus_bits = runtime.deviceGetAttribute(37, backend.device_id)  # GlobalMemoryBusWidth
        except Exception:
            return None
    if not clock_khz or not bus_bits:
        return None
    peak = float(clock_khz) * 1e3 * 2.0 * float(bus_bits) / 8.0
    return {
        "memory_clock_khz": int(clock_khz),
        "memory_bus_width_bits": int(bus_bits),
        "peak_bytes_per_s": peak,
        "formula": "memoryClockRate[kHz] * 1e3 * 2 * memoryBusWidth / 8",
        "l2_cache_bytes": int(props.get("l2CacheSize", 0) or 0),
    }


def _sync_for(backend: Backend) -> Callable[[], None]:
    if backend.is_gpu:
        return lambda: backend.xp.cuda.runtime.deviceSynchronize()
    return lambda: None


def _free(backend: Backend) -> None:
    if backend.is_gpu:
        backend.xp.cuda.runtime.deviceSynchronize()
        backend.xp.get_default_memory_pool().free_all_blocks()


def _timed(
    fn: Callable[[], Any], sync: Callable[[], None], repeats: int, warm_up: bool = True
) -> list[float]:
    if warm_up:
        fn()  # compiles kernels, fills caches (e.g. sinogram LOR factors)
        sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


# ---------------------------------------------------------------------------------- bytes model
def planes_walked(
    grid: recon.ImageGrid, xs: np.ndarray, xe: np.ndarray, s_lo: Any, s_hi: Any
) -> np.ndarray:
    """Planes the Joseph kernels visit per LOR (vectorised copy of their plane-range logic).

    Principal axis = largest ``|xend − xstart|`` component (ties to x, then y); the segment is
    clipped to where the secondary indices lie in ``[−1, n]`` and to the signed-distance window
    ``[s_lo, s_hi]`` from the midpoint; the planes are those between the clipped ends.
    """
    xs = np.asarray(xs, np.float64)
    d = np.asarray(xe, np.float32) - np.asarray(xs, np.float32)  # float32, as the kernels
    d = d.astype(np.float64)
    length = np.linalg.norm(d, axis=1)
    origin = np.asarray(grid.origin[::-1], np.float64)  # type: ignore[index]
    voxel = np.asarray(grid.voxel_size_mm[::-1], np.float64)
    size = np.asarray(grid.shape[::-1], np.float64)
    principal = np.argmax(np.abs(d), axis=1)
    e = (xs - origin) / voxel
    g = d / voxel
    ok = length > 0
    t_lo = np.zeros(len(xs))
    t_hi = np.ones(len(xs))
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            sec = principal != axis
            ea, ga, na = e[:, axis], g[:, axis], size[axis]
            flat = ga == 0
            ok &= ~(sec & flat) | ((ea > -1) & (ea < na))
            ta, tb = (-1.0 - ea) / ga, (na - ea) / ga
            clip = sec & ~flat
            t_lo = np.where(clip, np.maximum(t_lo, np.minimum(ta, tb)), t_lo)
            t_hi = np.where(clip, np.minimum(t_hi, np.maximum(ta, tb)), t_hi)
        t_lo = np.maximum(t_lo, 0.5 + s_lo / length)
        t_hi = np.minimum(t_hi, 0.5 + s_hi / length)
        ok &= t_lo <= t_hi
        rows = np.arange(len(xs))
        ep, gp, n_p = e[rows, principal], g[rows, principal], size[principal]
        ka, kb = ep + t_lo * gp, ep + t_hi * gp
        k0 = np.clip(np.floor(np.minimum(ka, kb)), 0.0, n_p)
        k1 = np.clip(np.ceil(np.maximum(ka, kb)), -1.0, n_p - 1.0)
    return np.where(ok, np.maximum(k1 - k0 + 1.0, 0.0), 0.0)


def _bandwidth(
    seconds: float, n_lors: int, mean_planes: float, per_lor_bytes: int, image_bytes: int, peak
) -> dict[str, Any] | None:
    if peak is None or mean_planes is None:
        return None
    modelled = n_lors * (per_lor_bytes + 16.0 * mean_planes)
    compulsory = n_lors * per_lor_bytes + image_bytes
    return {
        "bytes_model": (
            f"per LOR: {per_lor_bytes} B of endpoints/TOF bin/output + planes walked × 4 bilinear "
            "reads × 4 B (mean planes walked from the kernels' plane-range rule on a sample of "
            f"LORs: {mean_planes:.1f})"
        ),
        "mean_planes_walked": mean_planes,
        "bytes_modelled": modelled,
        "achieved_bytes_per_s": modelled / seconds,
        "fraction_of_peak": modelled / seconds / peak["peak_bytes_per_s"],
        "bytes_compulsory": compulsory,
        "compulsory_fraction_of_peak": compulsory / seconds / peak["peak_bytes_per_s"],
        "caveat": (
            "image reads are mostly served by the L2 cache (the image is smaller than L2 on "
            "H100/H200), so the modelled bytes are not all DRAM traffic and the fraction can "
            "exceed 1; the compulsory figure counts the endpoints, TOF bins, output and one "
            "image read. The timed call also validates its inputs (isfinite of the endpoints, "
            "TOF-bin range) and multiplies by the LOR factors, which the model does not count."
        ),
    }


# ---------------------------------------------------------------------------------- one device
def _fmt_count(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k"


class _Bench:
    """What the cases of one device share: backend, problem, timing settings and the results."""

    def __init__(self, device: str, cfg: dict[str, Any], repeats: int) -> None:
        self.backend = resolve_backend(device)
        self.xp = self.backend.xp
        self.sync = _sync_for(self.backend)
        self.scanner = recon.PetScanner.preset(cfg["scanner"])
        self.grid = recon.ImageGrid(cfg["shape"], cfg["voxel_mm"])
        self.image_bytes = 4 * int(np.prod(cfg["shape"]))
        self.peak = _peak_bandwidth(self.backend)
        image = uniform_cylinder(
            self.grid, cfg["object_radius_mm"], cfg["object_length_mm"], value=1.0
        )
        self.x = self.backend.asarray(image)
        self.repeats = repeats
        self.ops: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.rng = np.random.default_rng(2)

    def timed(self, fn: Callable[[], Any]) -> list[float]:
        return _timed(fn, self.sync, self.repeats)

    def record(
        self, name: str, times: list[float], n: int, unit: str, processed: int, **extra: Any
    ) -> None:
        """Store one timed operation over ``n`` stated items, of which ``processed`` were
        really processed (refuses to record a mismatch)."""
        check_processed(name, n, processed, unit)
        med = statistics.median(times)
        op = {"operation": name, "times_s": times, "median_s": med, "min_s": min(times)}
        op.update({"n": n, "unit": unit, "processed": processed})
        op["rate_per_s"] = n / med if med > 0 else None
        op.update(extra)
        self.ops.append(op)
        print(f"  [{self.backend.name}] {name}: {med:.4g} s", flush=True)

    def bandwidth(self, times: list[float], n_lors: int, planes: float, per_lor: int) -> Any:
        return _bandwidth(
            statistics.median(times), n_lors, planes, per_lor, self.image_bytes, self.peak
        )


def check_processed(what: str, stated: int, processed: int, unit: str) -> None:
    """Refuse (exit with a message) when an operation processed other than its stated count."""
    if processed != stated:
        raise SystemExit(
            f"refused: {what} processed {processed} of the {stated} {unit} it states "
            f"({stated - processed} would be dropped silently); every {unit[:-1]} must lie in the "
            "model (for listmode: ring difference within the model's max ring difference)"
        )


def prepared_events(model: Any, events: Any, what: str) -> dict[str, Any]:
    """``model.prepare(events)``, refusing when the model would drop any of the prompts."""
    prep = model.prepare(events)
    max_rd = model.layout.max_ring_difference
    check_processed(
        f"{what} (model max ring difference {max_rd})", events.n_events, prep["n"], "events"
    )
    return prep


def _lm_projections(
    b: _Bench, model: Any, events: Any, pool: dict[str, np.ndarray], n: int, label: str
) -> None:
    """Prepare, TOF listmode forward and back of ``n`` events."""
    backend = b.backend
    tof = b.scanner.tof
    prep = prepared_events(model, events, f"prepare events ({label})")
    b.record(
        f"prepare events ({label})", b.timed(lambda: model.prepare(events)), n, "events",
        processed=prep["n"],
    )  # fmt: skip
    # Planes walked per event, on a sample, for the bytes model (3 sigma: LorProjector default).
    reach = 3.0 * tof.sigma_mm + 0.5 * tof.bin_width_mm
    sample = np.sort(b.rng.choice(n, size=min(n, 50_000), replace=False))
    centre = pool["tof_bin"][:n][sample].astype(np.float64) * tof.bin_width_mm
    positions = b.scanner.crystal_positions_mm
    crystal_a = backend.to_host(prep["crystal_a"])[sample]
    crystal_b = backend.to_host(prep["crystal_b"])[sample]
    planes = planes_walked(
        b.grid,
        positions[crystal_a].astype(np.float32),
        positions[crystal_b].astype(np.float32),
        centre - reach,
        centre + reach,
    )
    mean_planes = float(planes.mean())
    fwd = b.timed(lambda: model.forward_events(b.x, prep))
    y = model.forward_events(b.x, prep)
    b.record(
        f"LM TOF forward ({label} events)",
        fwd,
        n,
        "events",
        processed=int(y.size),
        mean_planes_walked=mean_planes,
        bandwidth=b.bandwidth(fwd, n, mean_planes, 32),
    )
    b.record(
        f"LM TOF back ({label} events)", b.timed(lambda: model.back_events(y, prep)), n, "events",
        processed=int(y.size),
    )  # fmt: skip


def _listmode_case(b: _Bench, model: Any, pool: dict[str, np.ndarray], n: int) -> None:
    """Prepare, forward, back and one LM-OSEM iteration (two ways) for ``n`` events."""
    backend = b.backend
    label = _fmt_count(n)
    events = listmode(pool, n)
    _lm_projections(b, model, events, pool, n, label)
    _free(backend)

    # LM-OSEM: the model's sensitivity image is already computed and cached, so neither timing
    # includes it (it is timed on its own).
    result: list[Any] = []

    def call() -> None:
        result[:] = [lm_osem(model, events, iterations=1, subsets=SUBSETS, progress=False)]

    times = b.timed(call)
    # The model keeps the CPU fused pass's partial images between calls; dropped here so that
    # the peak includes them.
    model._ratio_back_scratch = None
    peak = None if backend.is_gpu else _peak_host_bytes(call)
    b.record(
        f"LM-OSEM iteration, {SUBSETS} subsets ({label} events; lm_osem call incl. prepare)",
        times, n, "events", processed=int(result[0].info["n_prompts"]),
        peak_memory_bytes=peak, peak_memory_bytes_per_event=None if peak is None else peak / n,
    )  # fmt: skip
    result.clear()
    _free(backend)
    # The same EM loop as lm_osem, on a frame whose events are prepared and arranged in subset
    # order once (the per-iteration cost).
    duration = max(float(events.time_ms[-1]) / 1e3, 1e-3)
    frame = model.frame(events, 0.0, duration)
    check_processed(
        f"LM-OSEM ({label} events; prepared events, model max ring difference "
        f"{model.layout.max_ring_difference})",
        events.n_events, frame.n_prompts, "events",
    )  # fmt: skip
    order = frame.subsets(SUBSETS)
    counts = frame.counts()
    frame.sensitivity(order[0])  # cached, as in every iteration after the first

    def iteration() -> Any:
        return em_reconstruct(frame, counts, None, order, 1, "LM-OSEM", progress=False)

    fused = "fused forward-ratio-back pass" if not backend.is_gpu else "forward and back"
    b.record(
        f"LM-OSEM iteration, {SUBSETS} subsets ({label} events; prepared events)",
        b.timed(iteration), n, "events", processed=frame.n_prompts, path=fused,
    )  # fmt: skip
    if not backend.is_gpu:
        # The same loop with the two-pass path (what the GPU runs, and the CPU ran before the
        # fused pass), in the same run: the frame declines the fused pass.
        frame.ratio_back = lambda *args: None  # type: ignore[method-assign]
        b.record(
            f"LM-OSEM iteration, {SUBSETS} subsets ({label} events; prepared events, two-pass)",
            b.timed(iteration), n, "events", processed=frame.n_prompts,
            path="forward_events then back_events",
        )  # fmt: skip


def _sinogram_case(b: _Bench, view_step: int | None) -> None:
    """Non-TOF span-1 sinogram forward and back (all views, or every ``view_step``-th)."""
    sino = recon.PetSinogramModel(b.scanner, b.grid, use_tof=False, device=b.backend)
    step = view_step or (1 if b.backend.is_gpu else SUBSETS)
    n_views = sino.layout.n_views
    views = np.arange(0, n_views, step)
    n_lors = sino.layout.n_planes * len(views) * sino.layout.n_radial
    which = "all views" if step == 1 else f"{len(views)} of {n_views} views (every {step}th)"
    if step != 1:
        b.notes.append(f"non-TOF sinogram: {which} only, not the full sinogram")
    label = f"{which}, {_fmt_count(n_lors)} LORs"
    subset = None if step == 1 else views
    fwd = b.timed(lambda: sino.forward(b.x, subset))
    xs, xe = sino.layout.endpoints(views[:: max(1, len(views) // 4)], xp=np)
    xs, xe = xs.reshape(-1, 3), xe.reshape(-1, 3)
    pick = b.rng.choice(len(xs), size=min(50_000, len(xs)), replace=False)
    mean_planes = float(planes_walked(b.grid, xs[pick], xe[pick], -np.inf, np.inf).mean())
    values = sino.forward(b.x, subset)
    b.record(
        f"sinogram non-TOF forward ({label})",
        fwd,
        n_lors,
        "LORs",
        processed=int(values.size),
        mean_planes_walked=mean_planes,
        bandwidth=b.bandwidth(fwd, n_lors, mean_planes, 28),
    )
    # A sinogram of ones: every LOR is walked. (The kernels skip zero values, so back-projecting
    # the forward projection of the cylinder, zero on most LORs, would measure far less work.)
    y = b.xp.ones(values.shape, np.float32)
    del values
    b.record(
        f"sinogram non-TOF back ({label})",
        b.timed(lambda: sino.back(y, subset)),
        n_lors,
        "LORs",
        processed=int(y.size),
        data="a sinogram of ones",
    )


SEPARABLE_SUBSETS = 8


def separable_osem_case(repeats: int) -> dict[str, Any]:
    """Issue 16's separable sinogram problem (module docstring): per-LOR walk vs shared
    transaxial walk, timed alternately; returns the run record."""
    scanner = recon.PetScanner(
        n_rings=16, crystals_per_ring=336, radius_mm=270.0, ring_spacing_mm=4.0, name="issue16"
    )
    layout = SinogramLayout(scanner, max_ring_difference=7, n_radial=199)
    grid = recon.ImageGrid((31, 128, 128), (2.0, 2.5, 2.5))
    phantom = uniform_cylinder(grid, 120.0, 60.0, value=1.0)
    mu = (0.0096 * phantom).astype(np.float32)  # water at 511 keV, 1/mm
    tables = layout.separable_endpoints()
    start = time.perf_counter()
    shared = recon.PetLorSinogramModel.separable(*tables, grid, mu_map=mu, device="cpu")
    setup_s = time.perf_counter() - start  # includes the attenuation factors (timed below too)
    per_lor = recon.PetLorSinogramModel.separable(*tables, grid, mu_map=mu, device="cpu")
    per_lor._separable = None  # the model's per-LOR path: the projector before issue 16
    models = {"per-LOR walk": per_lor, "shared transaxial walk": shared}
    expected = models["shared transaxial walk"].forward(phantom)
    counts = np.random.default_rng(3).poisson(expected * (2e8 / expected.sum())).astype(np.float32)
    counts_scaled = counts * np.float32(expected.sum() / 2e8)  # same image scale as the phantom
    ones = np.ones(layout.shape, np.float32)
    all_views = np.arange(layout.n_views)
    ops = {
        f"OSEM iteration, {SEPARABLE_SUBSETS} subsets (sensitivity cached)": lambda m: (
            em_reconstruct(
                m, counts_scaled, None, m.subsets(SEPARABLE_SUBSETS), 1, "OSEM", progress=False
            )
        ),
        "forward projection, all views": lambda m: m.forward(phantom),
        "back projection of ones, all views": lambda m: m.back(ones),
        "sensitivity, all views": lambda m: m._compute_sensitivity(all_views),
        "attenuation line integrals (model set-up), all views": lambda m: m._project(mu, all_views),
    }
    results = []
    for label, fn in ops.items():
        times: dict[str, list[float]] = {name: [] for name in models}
        for model in models.values():
            fn(model)  # warm-up: compiles, caches the subsets' sensitivities
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                fn(model)
                times[name].append(time.perf_counter() - start)
        before = statistics.median(times["per-LOR walk"])
        after = statistics.median(times["shared transaxial walk"])
        entry = {"operation": label, "n_lors": layout.n_bins, "times_s": times}
        entry.update({"median_s": {"per-LOR walk": before, "shared transaxial walk": after}})
        entry["speed_up"] = before / after
        results.append(entry)
        print(f"  {label}: per-LOR {before:.3f} s, shared {after:.3f} s, {before / after:.2f}x")
    # The two paths compute the same model: report how closely (float32 rounding).
    a = models["per-LOR walk"].forward(phantom)
    b = models["shared transaxial walk"].forward(phantom)
    return {
        "problem": {
            "scanner": "16 rings x 336 crystals, radius 270 mm, ring spacing 4 mm",
            "sinogram": "span 1, max ring difference 7, "
            f"{layout.n_planes} planes x {layout.n_views} views x {layout.n_radial} radial = "
            f"{layout.n_bins} LORs, PetLorSinogramModel.separable",
            "image_voxels_zyx": list(grid.shape),
            "voxel_mm_zyx": list(grid.voxel_size_mm),
            "object": "water cylinder r 120 mm, length 60 mm, with its mu-map",
            "counts": "Poisson, 2e8 expected counts",
        },
        "model_setup_s_shared_walk": setup_s,
        "operations": results,
        "max_relative_difference_forward": float(np.abs(a - b).max() / np.abs(a).max()),
        "threads": _threads(resolve_backend("cpu")),
        "repeats": repeats,
    }


def run_device(
    device: str,
    args: argparse.Namespace,
    cfg: dict[str, Any],
    pool: dict[str, np.ndarray],
    counts: list[int],
    repeats: int,
    max_ring_difference: int,
) -> dict[str, Any]:
    b = _Bench(device, cfg, repeats)
    # One model for every listmode case: its LORs (max_ring_difference) are those the events were
    # drawn on, and its sensitivity image, timed once, is cached for LM-OSEM.
    model = _sensitivity(b, max_ring_difference, args.time_budget)
    for n in counts:
        _listmode_case(b, model, pool, n)
        _free(b.backend)
    _sinogram_case(b, args.sinogram_view_step)
    _free(b.backend)
    return {
        "device": b.backend.name,
        "device_name": b.backend.device_name,
        "cpu_model": _cpu_model(),
        "threads": _threads(b.backend),
        "peak_bandwidth": b.peak,
        "repeats": repeats,
        "max_ring_difference": max_ring_difference,
        "sensitivity_lors": model.layout.n_bins,
        "operations": b.ops,
        "processed": [
            {
                "operation": o["operation"],
                "stated": o["n"],
                "processed": o["processed"],
                "unit": o["unit"],
            }
            for o in b.ops
        ],  # fmt: skip
        "notes": b.notes,
    }


def _cpu_model() -> str | None:
    """The processor's model name from /proc/cpuinfo (Linux), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def max_ring_difference_for(device: str, requested: int | None, scanner: Any) -> int:
    """The ring difference of the listmode model and of the simulated events on ``device``:
    ``requested``, else all on the GPU and at most 10 on the CPU (whose sensitivity image over
    all 36 rings of dmi4 would take minutes per run)."""
    largest = scanner.n_rings - 1
    if requested is None:
        return largest if device == "gpu" else min(10, largest)
    if not 0 <= int(requested) <= largest:
        raise SystemExit(f"--max-ring-difference must be between 0 and {largest}")
    return int(requested)


def _threads(backend: Backend) -> int | None:
    if backend.is_gpu:
        return None
    import numba

    return int(numba.get_num_threads())


def _peak_host_bytes(call: Callable[[], Any]) -> int:
    """Peak NumPy heap (bytes, traced by :mod:`tracemalloc`) allocated while ``call`` runs, beyond
    what was allocated before it: the working memory of one LM-OSEM call (images, prepared
    events, per-chunk temporaries), not the events given to it."""
    tracemalloc.start()
    try:
        call()
        return int(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


@contextlib.contextmanager
def _cache_in(folder: str) -> Iterator[None]:
    """Point recon's on-disk sensitivity cache at ``folder`` (``"off"``: none) for the
    duration."""
    before = os.environ.get("RECON_CACHE_DIR")
    os.environ["RECON_CACHE_DIR"] = folder
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("RECON_CACHE_DIR", None)
        else:
            os.environ["RECON_CACHE_DIR"] = before


def _sensitivity(b: _Bench, mrd: int, budget: float) -> Any:
    """Time ``geometric_sensitivity()`` on fresh models; return a model whose image is cached.

    On the CPU, refuses when one run is estimated to exceed ``budget`` seconds (rather than
    falling back to a smaller model that would drop events).
    """
    backend, scanner = b.backend, b.scanner
    n_lors = SinogramLayout(scanner, max_ring_difference=mrd).n_bins

    def fresh(m: int) -> Any:
        return recon.PetListmodeModel(scanner, b.grid, device=backend, max_ring_difference=m)

    # Warm-up (kernel compilation) and cost estimate: the same computation for ring difference 0
    # (never read from a cache an earlier run left).
    warm = fresh(0)
    start = time.perf_counter()
    with _cache_in("off"):
        warm.geometric_sensitivity()
    b.sync()
    warm_s = time.perf_counter() - start
    estimate = warm_s * n_lors / warm.layout.n_bins
    what = f"max ring difference {mrd} of {scanner.n_rings - 1}"
    if not backend.is_gpu and estimate > budget:
        raise SystemExit(
            f"refused: the sensitivity image ({what}, {n_lors} LORs) is estimated at "
            f"{estimate:.0f} s, over --time-budget {budget:g} s, and LM-OSEM needs it; raise "
            "--time-budget or lower --max-ring-difference (the events follow it)"
        )
    runs = b.repeats
    if not backend.is_gpu and estimate * b.repeats > budget:
        runs = max(1, int(budget // estimate))
        b.notes.append(
            f"sensitivity image: {runs} run(s) instead of {b.repeats} (estimated {estimate:.0f} s "
            f"each, --time-budget {budget:.0f} s)"
        )
    if mrd < scanner.n_rings - 1:
        b.notes.append(
            f"listmode model and events over {what} ({n_lors} LORs): the events are drawn on "
            "those LORs only, so none is dropped"
        )
    times, cached_times = [], []
    model = warm
    # The first model of a set-up computes the image and writes it to the on-disk cache; a
    # second model reads it back. Both are timed, in a private cache folder emptied before each
    # computing run (so no run reads an image an earlier run or session left).
    with tempfile.TemporaryDirectory() as folder, _cache_in(folder):
        for _ in range(runs):
            for old in Path(folder).rglob("*.npy"):
                old.unlink()
            model = fresh(mrd)
            start = time.perf_counter()
            model.geometric_sensitivity()
            b.sync()
            times.append(time.perf_counter() - start)
            assert model.sensitivity_source == "computed", model.sensitivity_source
        for _ in range(b.repeats):
            reader = fresh(mrd)
            start = time.perf_counter()
            reader.geometric_sensitivity()
            b.sync()
            cached_times.append(time.perf_counter() - start)
            assert reader.sensitivity_source == "cache", reader.sensitivity_source
    b.record(
        f"sensitivity image from the disk cache ({_fmt_count(n_lors)} LORs)",
        cached_times,
        n_lors,
        "LORs",
        processed=model.layout.n_bins,
    )
    b.record(
        f"sensitivity image ({what}, {_fmt_count(n_lors)} LORs)",
        times,
        n_lors,
        "LORs",
        processed=model.layout.n_bins,
        warm_up="one geometric_sensitivity() for ring difference 0 on a fresh model",
        warm_up_s=warm_s,
        estimate_s=estimate,
        symmetry=model.sensitivity_symmetry,
    )
    return model


# ---------------------------------------------------------------------------------- report
def _targets(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []

    def find(run: dict[str, Any], prefix: str) -> dict[str, Any] | None:
        return next((o for o in run["operations"] if o["operation"].startswith(prefix)), None)

    for run in runs:
        if run["device"] == "gpu":
            checks = [
                (f"LM-OSEM iteration, {SUBSETS} subsets (40M events; prepared", 0.5),
                ("sensitivity image (max ring difference 35 of 35", 1.0),
            ]
        else:
            # Issue 16's CPU targets (this 2-core machine): ≤ 1.5 s per LM-OSEM iteration of
            # 1.25 M TOF events, ≤ 15 s for the sensitivity image at ring difference ≤ 10.
            checks = [
                (f"LM-OSEM iteration, {SUBSETS} subsets (1.25M events; prepared events)", 1.5),
                ("sensitivity image (max ring difference 10 of 35", 15.0),
            ]
        for prefix, limit in checks:
            op = find(run, prefix)
            shown = prefix if prefix.endswith(")") else f"{prefix}…)"
            entry = {"device": run["device"], "target": f"{shown} ≤ {limit} s"}
            if op is None:
                entry["result"] = "not measured"
            else:
                entry["median_s"] = op["median_s"]
                entry["result"] = "met" if op["median_s"] <= limit else "missed"
                call = find(run, prefix.split("; prepared")[0] + "; lm_osem call")
                if call is not None:
                    entry["lm_osem_call_median_s"] = call["median_s"]
            out.append(entry)
    return out


def _print_table(runs: list[dict[str, Any]], title: str) -> None:
    names: list[str] = []
    for r in runs:
        for op in r["operations"]:
            if op["operation"] not in names:
                names.append(op["operation"])
    width = max(len(n) for n in names) + 2
    print(f"\n{title}")
    header = f"{'operation':<{width}}" + "".join(
        f"{r['device'] + ' median [s]':>18}{'min [s]':>10}{r['device'] + ' per s':>14}"
        f"{'BW frac':>9}"
        for r in runs
    )
    print(header)
    print("-" * len(header))
    for name in names:
        line = f"{name:<{width}}"
        for r in runs:
            op = next((o for o in r["operations"] if o["operation"] == name), None)
            if op is None:
                line += f"{'-':>18}{'-':>10}{'-':>14}{'-':>9}"
                continue
            bw = op.get("bandwidth")
            frac = "n/a" if bw is None else f"{bw['fraction_of_peak']:.2f}"
            if "bandwidth" not in op:
                frac = ""
            line += f"{op['median_s']:>18.4f}{op['min_s']:>10.4f}{op['rate_per_s']:>14.3g}{frac:>9}"
        print(line)
    for r in runs:
        peak = r["peak_bandwidth"]
        extra = "" if peak is None else f", peak {peak['peak_bytes_per_s'] / 1e9:.0f} GB/s"
        threads = "" if r["threads"] is None else f", {r['threads']} numba threads"
        print(f"{r['device']}: {r['device_name']}{threads}{extra}; {r['repeats']} repeats")
        for note in r["notes"]:
            print(f"  note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs after the warm-up (CPU 3, GPU 5)"
    )
    parser.add_argument("--devices", nargs="+", default=None, choices=("cpu", "gpu"))
    parser.add_argument(
        "--events",
        nargs="+",
        type=float,
        default=None,
        help="event counts (default: 1.25e6 on the CPU; 1.25e6 10e6 40e6 on the GPU)",
    )
    parser.add_argument(
        "--max-ring-difference",
        type=int,
        default=None,
        help=(
            "of the listmode model and of the simulated events, which are drawn on its LORs only "
            "(default: all on the GPU, 10 on the CPU)"
        ),
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=300.0,
        help=(
            "seconds the CPU may spend on the timed sensitivity runs (fewer runs; refused when "
            "one run is estimated to take longer)"
        ),
    )
    parser.add_argument(
        "--sinogram-view-step",
        type=int,
        default=None,
        help="take every n-th view in the sinogram case (default: 1 on the GPU, 34 on the CPU)",
    )
    parser.add_argument(
        "--separable-osem",
        action="store_true",
        help="run only the separable sinogram OSEM case (issue 16's problem, CPU)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="small scanner, 32³, 2e4 events")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--note", default=None, help="what to record about the machine and the run (free text)"
    )
    args = parser.parse_args()
    if args.separable_osem:
        _main_separable(args)
        return
    devices = args.devices or (["cpu", "gpu"] if gpu_available() else ["cpu"])
    cfg = _config(args.tiny)
    if args.tiny:
        args.events = args.events or [2e4]
        args.repeats = args.repeats or 1
        args.sinogram_view_step = args.sinogram_view_step or 1
    counts_by_device = {
        d: sorted(
            {
                int(round(e))
                for e in (args.events or ([1.25e6, 10e6, 40e6] if d == "gpu" else [1.25e6]))
            }
        )
        for d in devices
    }
    scanner = recon.PetScanner.preset(cfg["scanner"])
    ring_difference = {
        d: max_ring_difference_for(d, args.max_ring_difference, scanner) for d in devices
    }
    load_before = os.getloadavg()
    # One pool of events per ring difference, drawn on the LORs of that device's model.
    pools: dict[int, dict[str, np.ndarray]] = {}
    gen_s: dict[int, float] = {}
    for mrd in sorted(set(ring_difference.values())):
        n_max = max(max(counts_by_device[d]) for d in devices if ring_difference[d] == mrd)
        start = time.perf_counter()
        pools[mrd] = make_events(
            scanner, n_max, cfg["object_radius_mm"], cfg["object_length_mm"], seed=args.seed,
            max_ring_difference=mrd,
        )  # fmt: skip
        gen_s[mrd] = time.perf_counter() - start
        print(f"generated {n_max} events (ring difference <= {mrd}) in {gen_s[mrd]:.1f} s")
    runs = []
    for d in devices:
        repeats = args.repeats or (5 if d == "gpu" else 3)
        mrd = ring_difference[d]
        runs.append(run_device(d, args, cfg, pools[mrd], counts_by_device[d], repeats, mrd))
    load_after = os.getloadavg()

    shape = cfg["shape"]
    title = (
        f"PET benchmark: scanner {cfg['scanner']}, image {shape[2]}x{shape[1]}x{shape[0]} of "
        f"{cfg['voxel_mm']} mm, TOF listmode, {SUBSETS} subsets (BW frac: forward projection's "
        "modelled bytes / time / peak DRAM bandwidth; per s: events or LORs per second at the "
        "median)"
    )
    _print_table(runs, title)
    targets = [] if args.tiny else _targets(runs)
    for t in targets:
        got = f"{t['median_s']:.3f} s" if "median_s" in t else ""
        print(f"target [{t['device']}] {t['target']}: {t['result']} {got}")

    now = dt.datetime.now(dt.timezone.utc)
    try:
        import numba

        numba_version = numba.__version__
    except ImportError:  # pragma: no cover - numba is a dependency
        numba_version = None
    record = {
        "benchmark": "pet",
        "date": now.isoformat(timespec="seconds"),
        "problem": {
            "scanner": cfg["scanner"],
            "crystal_rings": scanner.n_rings,
            "crystals_per_ring": scanner.crystals_per_ring,
            "tof": {
                "fwhm_ps": scanner.tof.fwhm_ps,  # type: ignore[union-attr]
                "n_bins": scanner.tof.n_bins,  # type: ignore[union-attr]
                "bin_width_ps": scanner.tof.bin_width_ps,  # type: ignore[union-attr]
            },
            "image_voxels_zyx": list(shape),
            "voxel_mm": cfg["voxel_mm"],
            "events": counts_by_device,
            "max_ring_difference": ring_difference,
            "subsets": SUBSETS,
            "events_model": (
                f"emission points uniform in a cylinder of radius {cfg['object_radius_mm']} mm and "
                f"length {cfg['object_length_mm']} mm, isotropic directions, nearest crystals, "
                f"TOF bin from the position along the LOR + Gaussian timing blur, ring difference "
                f"at most the device's max_ring_difference (the listmode model's LORs), times "
                f"sorted uniform over {SCAN_S:g} s; seed {args.seed}"
            ),
            "event_generation_s": {str(k): v for k, v in gen_s.items()},
            "forward_image": "the emission cylinder, value 1",
        },
        "method": (
            "median of the timed runs after one warm-up run (GPU synchronised before stopping "
            "the clock). 'lm_osem call' includes prepare, subset reordering and start image; "
            "'prepared events' is the same subset loop over events prepared and reordered "
            "beforehand. The sensitivity image is timed on a fresh model each run (not cached); "
            "LM-OSEM timings use a cached one. Every operation records the items it states "
            "('n') and those it processed ('processed'); the benchmark refuses to run rather "
            "than drop any."
        ),
        "note": args.note,
        "load_average_before_after": [list(load_before), list(load_after)],
        "recon_version": recon.__version__,
        "numpy": np.__version__,
        "numba": numba_version,
        "known_peak_bandwidth_GBps": KNOWN_PEAK_GBPS,
        "targets": targets,
        "runs": runs,
    }
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = "-tiny" if args.tiny else ""
    name = f"pet-{'-'.join(devices)}{tag}-{now:%Y%m%d-%H%M%S}.json"
    write_text_atomic(out_dir / name, json.dumps(record, indent=2))
    print(f"wrote {out_dir / name}")


def _main_separable(args: argparse.Namespace) -> None:
    """``--separable-osem``: the separable sinogram case alone, with the load, to JSON."""
    load_before = os.getloadavg()
    uptime_before = _uptime()
    run = separable_osem_case(args.repeats or 3)
    now = dt.datetime.now(dt.timezone.utc)
    record = {
        "benchmark": "pet separable sinogram OSEM (issue 16 item 2)",
        "date": now.isoformat(timespec="seconds"),
        "machine": {"cpu_model": _cpu_model(), "cores": os.cpu_count(), "node": platform.node()},
        "method": (
            "median of the timed runs after one warm-up run per path; the per-LOR and the shared "
            "transaxial walk alternate run by run (same load); speed_up = per-LOR median / "
            "shared median"
        ),
        "note": args.note,
        "load_average_before_after": [list(load_before), list(os.getloadavg())],
        "uptime_before_after": [uptime_before, _uptime()],
        "recon_version": recon.__version__,
        "numpy": np.__version__,
        "run": run,
    }
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"pet-separable-cpu-{now:%Y%m%d-%H%M%S}.json"
    write_text_atomic(out_dir / name, json.dumps(record, indent=2))
    print(f"wrote {out_dir / name}")


def _uptime() -> str:
    """The ``uptime`` line (load on this shared machine), or the load averages."""
    try:
        import subprocess

        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


if __name__ == "__main__":
    main()
