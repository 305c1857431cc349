"""Prior kernel benchmark: value, gradient and Hessian diagonal of the relative difference prior.

BSREM evaluates the prior's gradient once per subset, so on small problems it is a large part of
a BSREM iteration (issue 12's target: BSREM ≤ 1.3 × OSEM per iteration). This times the three
quantities with per-voxel weights κ, on images the size of the contrast-noise benchmark's
(16×64×64, 24×64×64), a 128-voxel-row case and a clinical 128³ grid, each with κ > 0
everywhere (SPECT's inscribed field of view) and with κ = 0 outside a cylinder (a PET scanner's
field of view). On the CPU both loop layouts of the numba kernel run (``rows``: per voxel, the
CUDA kernel's order; ``pairs``: each neighbour pair once, the library's default;
``recon/algorithms/_prior_cpu.py``) and their results are checked equal to float32 rounding; on a
GPU the CUDA kernel runs.
Each figure is the median of ``--repeats`` runs after a warm-up, the layouts interleaved so that
a change of machine speed hits both alike. Prints a table and writes JSON.

Usage::

    python benchmarks/prior_kernels.py [--repeats 15] [--devices cpu gpu] [--quick]
                                       [--output benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import recon
from recon._files import write_text_atomic
from recon._memory import page_aligned_copy
from recon.algorithms import _prior_cpu
from recon.algorithms.priors import RelativeDifferencePrior
from recon.backend import gpu_available, resolve_backend

SHAPES = ((16, 64, 64), (24, 64, 64), (24, 128, 128), (128, 128, 128))
QUICK_SHAPES = ((8, 24, 24),)
QUANTITIES = ("gradient", "value", "hessian_diagonal")
VOXEL_MM = (4.0, 4.4, 4.4)
#: The layouts add the same float32 terms in different orders: they agree to this fraction of the
#: largest term sum (tests/test_priors.py checks the same bound).
LAYOUT_TOLERANCE = 2e-6


def _case(shape: tuple[int, int, int], field_of_view: str, seed: int) -> tuple[np.ndarray, ...]:
    """A positive image and κ (uniform in [0.5, 1.5], or 0 outside the inscribed cylinder)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    kappa = rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if field_of_view == "cylinder":
        _, ny, nx = shape
        y, xx = np.mgrid[0:ny, 0:nx]
        kappa[:, np.hypot(y - (ny - 1) / 2, xx - (nx - 1) / 2) > min(ny, nx) / 2] = 0.0
    return page_aligned_copy(x), page_aligned_copy(kappa)


def _median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def _agree(a: Any, b: Any) -> bool:
    """Whether two layouts' results agree to float32 rounding (same terms, another order)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool(np.all(np.abs(a - b) <= LAYOUT_TOLERANCE * max(float(np.abs(a).max()), 1e-30)))


def cpu_layouts(shape: tuple[int, int, int], field_of_view: str, repeats: int) -> list[dict]:
    """Median time of each quantity in each CPU layout (interleaved), results checked equal."""
    x, kappa = _case(shape, field_of_view, seed=1)
    grid = recon.ImageGrid(shape, VOXEL_MM)
    prior = RelativeDifferencePrior(1.0, gamma=2.0, epsilon=1e-3, kappa=kappa)
    rows = []
    default = _prior_cpu.DEFAULT_LAYOUT
    try:
        for quantity in QUANTITIES:
            method = getattr(prior, quantity)
            times: dict[str, list[float]] = {"rows": [], "pairs": []}
            results: dict[str, Any] = {}
            for repeat in range(repeats + 1):  # the first round is the warm-up
                for layout in times:
                    _prior_cpu.DEFAULT_LAYOUT = layout
                    start = time.perf_counter()
                    results[layout] = method(x, grid, check=False)
                    if repeat:
                        times[layout].append(time.perf_counter() - start)
            if not _agree(results["rows"], results["pairs"]):
                raise SystemExit(f"refused: the layouts disagree on {quantity} for {shape}")
            rows.append({
                "shape": list(shape), "field_of_view": field_of_view, "quantity": quantity,
                "rows_ms": _median_ms(times["rows"]), "pairs_ms": _median_ms(times["pairs"]),
                "speed_up_pairs": statistics.median(times["rows"]) / statistics.median(
                    times["pairs"]),
                "library_picks": default,
            })  # fmt: skip
    finally:
        _prior_cpu.DEFAULT_LAYOUT = default
    return rows


def gpu_kernel(shape: tuple[int, int, int], field_of_view: str, repeats: int) -> list[dict]:
    """Median time of each quantity on the GPU (synchronised), and its largest relative
    difference from the CPU's."""
    backend = resolve_backend("gpu")
    xp = backend.xp
    x, kappa = _case(shape, field_of_view, seed=1)
    grid = recon.ImageGrid(shape, VOXEL_MM)
    cpu_prior = RelativeDifferencePrior(1.0, gamma=2.0, epsilon=1e-3, kappa=kappa)
    prior = RelativeDifferencePrior(1.0, gamma=2.0, epsilon=1e-3, kappa=xp.asarray(kappa))
    x_gpu = xp.asarray(x)
    rows = []
    for quantity in QUANTITIES:
        method = getattr(prior, quantity)
        times = []
        for repeat in range(repeats + 1):
            xp.cuda.Stream.null.synchronize()
            start = time.perf_counter()
            result = method(x_gpu, grid, backend, check=False)
            xp.cuda.Stream.null.synchronize()
            if repeat:
                times.append(time.perf_counter() - start)
        on_cpu = np.asarray(getattr(cpu_prior, quantity)(x, grid, check=False))
        on_gpu = np.asarray(backend.to_host(result) if quantity != "value" else result)
        scale = float(np.abs(on_cpu).max()) or 1.0
        rows.append({
            "shape": list(shape), "field_of_view": field_of_view, "quantity": quantity,
            "gpu_ms": _median_ms(times),
            "max_abs_difference_to_cpu_relative": float(np.abs(on_gpu - on_cpu).max()) / scale,
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--devices", nargs="+", default=None, choices=("cpu", "gpu"))
    parser.add_argument("--quick", action="store_true", help="one tiny image, a smoke test")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    devices = args.devices or (["cpu", "gpu"] if gpu_available() else ["cpu"])
    if "gpu" in devices and not gpu_available():
        parser.error("--devices gpu: no usable CUDA device (install recon[cuda12] on a GPU host)")
    shapes = QUICK_SHAPES if args.quick else SHAPES
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    runs: dict[str, Any] = {}
    for device in devices:
        bench = cpu_layouts if device == "cpu" else gpu_kernel
        rows = [r for shape in shapes for fov in ("full", "cylinder")
                for r in bench(shape, fov, args.repeats)]  # fmt: skip
        runs[device] = {"device_name": resolve_backend(device).device_name, "cases": rows}

    if "cpu" in runs:
        print(f"\nCPU ({runs['cpu']['device_name']}): relative difference prior with κ, median "
              f"of {args.repeats} runs [ms]")  # fmt: skip
        print(f"{'image':<14}{'field of view':<15}{'quantity':<18}{'rows':>9}{'pairs':>9}"
              f"{'pairs faster':>14}{'library':>9}")  # fmt: skip
        for r in runs["cpu"]["cases"]:
            image = "×".join(map(str, r["shape"]))
            print(f"{image:<14}{r['field_of_view']:<15}{r['quantity']:<18}{r['rows_ms']:>9.3f}"
                  f"{r['pairs_ms']:>9.3f}{r['speed_up_pairs']:>13.2f}x"
                  f"{r['library_picks']:>9}")  # fmt: skip
    if "gpu" in runs:
        print(f"\nGPU ({runs['gpu']['device_name']}), median of {args.repeats} runs [ms]")
        for r in runs["gpu"]["cases"]:
            image = "×".join(map(str, r["shape"]))
            print(f"{image:<14}{r['field_of_view']:<15}{r['quantity']:<18}{r['gpu_ms']:>9.3f}"
                  f"  (max |GPU − CPU| / max |CPU| "
                  f"{r['max_abs_difference_to_cpu_relative']:.1e})")  # fmt: skip

    now = dt.datetime.now(dt.timezone.utc)
    record = {
        "benchmark": "prior_kernels",
        "date": now.isoformat(timespec="seconds"),
        "prior": "relative difference, gamma 2, epsilon 1e-3, kappa per voxel",
        "voxel_mm": list(VOXEL_MM),
        "repeats": args.repeats,
        "cpu_default_layout": _prior_cpu.DEFAULT_LAYOUT,
        "layouts_agree_within": f"{LAYOUT_TOLERANCE:g} x the largest |value| (float32 rounding)",
        "recon_version": recon.__version__,
        "numpy": np.__version__,
        "load_average_at_start": load,
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "runs": runs,
    }
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = "-quick" if args.quick else ""
    name = f"prior-kernels-{'-'.join(devices)}{tag}-{now:%Y%m%d-%H%M%S}.json"
    write_text_atomic(out_dir / name, json.dumps(record, indent=2))
    print(f"wrote {out_dir / name}")


if __name__ == "__main__":
    main()
