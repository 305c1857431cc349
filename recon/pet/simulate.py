"""Simulated PET listmode acquisitions (for the demo, tests and benchmarks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.errors import InputError
from recon.pet.listmode import ListmodeEvents

__all__ = ["simulate_listmode"]


def _event_times_s(
    n: int, duration_s: float, half_life_s: float | None, rng: np.random.Generator
) -> np.ndarray:
    """Times of ``n`` decays in [0, duration): uniform, or following the decay curve."""
    u = rng.random(n)
    if half_life_s is None:
        return u * duration_s
    lam = np.log(2.0) / half_life_s
    # Inverse CDF of the exponential truncated to the acquisition.
    return -np.log1p(-u * -np.expm1(-lam * duration_s)) / lam


def _expand_bins(counts: np.ndarray, layout: Any, tof_axis: bool) -> tuple[np.ndarray, ...]:
    flat = counts.reshape(-1).astype(np.int64)
    idx = np.repeat(np.arange(flat.size), flat)
    if tof_axis:
        n_tof = counts.shape[-1]
        bin_idx, tof_idx = np.divmod(idx, n_tof)
    else:
        bin_idx, tof_idx = idx, np.zeros_like(idx)
    plane, view, radial = np.unravel_index(bin_idx, layout.shape)
    a, b = layout.crystals_of(plane, view, radial)
    return np.asarray(a), np.asarray(b), tof_idx


def simulate_listmode(
    model: Any,
    activity: Any,
    duration_s: float,
    rng: np.random.Generator,
    additive: Any = None,
    delayed: Any = None,
) -> ListmodeEvents:
    """Poisson listmode events of ``activity`` seen by a sinogram ``model``.

    Expected prompts per (LOR, TOF bin) are ``model.forward(activity) + additive`` (the model's
    frame must match ``duration_s``); each count becomes an event with a random crystal order (the
    TOF bin flips with it) and a time drawn from the decay curve of the model's isotope (uniform
    without one). ``delayed`` (non-TOF sinogram of expected delayed coincidences) adds delayed
    events. Events are returned in time order.
    """
    if not duration_s > 0:
        raise InputError("duration_s must be positive")
    expected = np.asarray(model.backend.to_host(model.forward(activity)), np.float64)
    if additive is not None:
        expected = expected + np.asarray(model.backend.to_host(additive), np.float64)
    prompts = rng.poisson(expected)
    a, b, tof_idx = _expand_bins(prompts, model.layout, model.tof is not None)
    tof_bin = tof_idx - (model.tof.max_bin if model.tof is not None else 0)
    is_prompt = np.ones(a.size, bool)
    if delayed is not None:
        da, db, _ = _expand_bins(rng.poisson(np.asarray(delayed, np.float64)), model.layout, False)
        a, b = np.concatenate([a, da]), np.concatenate([b, db])
        tof_bin = np.concatenate([tof_bin, np.zeros(da.size, tof_bin.dtype)])
        is_prompt = np.concatenate([is_prompt, np.zeros(da.size, bool)])
    swap = rng.random(a.size) < 0.5
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    tof_bin = np.where(swap, -tof_bin, tof_bin)
    half_life = None
    if model.isotope is not None:
        from recon.physics.isotopes import get_isotope

        half_life = get_isotope(model.isotope).half_life_s
    start = float(getattr(model, "frame_start_s", 0.0))
    times = start + _event_times_s(a.size, duration_s, half_life, rng)
    times[~is_prompt] = start + rng.random(int((~is_prompt).sum())) * duration_s  # uniform
    order = np.argsort(times, kind="stable")
    return ListmodeEvents(
        crystal_a=a[order].astype(np.int32),
        crystal_b=b[order].astype(np.int32),
        tof_bin=tof_bin[order].astype(np.int16),
        time_ms=times[order] * 1000.0,
        prompt=is_prompt[order],
    )
