"""Simulated PET listmode acquisitions (for the demo, tests and benchmarks)."""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.errors import InputError
from recon.pet.listmode import ListmodeEvents

__all__ = ["ADDITIVE_TIME_LAWS", "simulate_listmode"]

# How the rate of the additive prompts and of the delayeds follows the activity A(t):
# the power of A(t) it is proportional to.
ADDITIVE_TIME_LAWS = {
    # like the trues: scatter, which is part of the emission
    "decay": 1,
    # random coincidences: 2τ·S_a·S_b with singles rates S ∝ A(t) (Hoffman et al., J Comput
    # Assist Tomogr 5:391, 1981; see recon.pet.randoms_from_singles), so they fall twice as fast
    "decay_squared": 2,
}


def _event_times_s(
    n: int, duration_s: float, decay_constant_per_s: float | None, rng: np.random.Generator
) -> np.ndarray:
    """Times of ``n`` events in [0, duration) with rate ∝ exp(−k t) (uniform when k is None)."""
    u = rng.random(n)
    if decay_constant_per_s is None:
        return u * duration_s
    k = decay_constant_per_s
    # Inverse CDF of the exponential truncated to the acquisition.
    return -np.log1p(-u * -np.expm1(-k * duration_s)) / k


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


def _expected(model: Any, values: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Expected counts as float64 host array of ``shape``, finite and non-negative."""
    host = np.asarray(model.backend.to_host(values), np.float64)
    if host.shape != tuple(shape):
        raise InputError(f"{name} has shape {host.shape}, expected {tuple(shape)}")
    if not np.all(np.isfinite(host)) or np.any(host < 0):
        raise InputError(f"{name} must hold finite non-negative expected counts")
    return host


def simulate_listmode(
    model: Any,
    activity: Any,
    duration_s: float,
    rng: np.random.Generator,
    additive: Any = None,
    delayed: Any = None,
    additive_time_law: str = "decay",
) -> ListmodeEvents:
    """Poisson listmode events of ``activity`` seen by a sinogram ``model``.

    Expected prompts per (LOR, TOF bin) are ``model.forward(activity)`` (trues; the model's frame
    must match ``duration_s``) plus ``additive``; each count becomes an event with a random crystal
    order (the TOF bin flips with it). ``delayed`` (non-TOF sinogram of expected delayed
    coincidences) adds delayed events.

    Event times follow the model's isotope (uniform without one): the trues decay as the activity
    ``A(t)``, and the additive prompts and the delayeds both follow ``additive_time_law``, the same
    law for both, so that the delayeds of any frame estimate that frame's prompt randoms.

    Parameters
    ----------
    model : PetSinogramModel
        Its ``frame_start_s`` is the time of the first possible event.
    activity : array of the model's image shape
    duration_s : float
        Acquisition length, s.
    rng : numpy.random.Generator
    additive : array of the model's data shape, optional
        Expected additive prompts (randoms, scatter) over the acquisition.
    delayed : array of shape ``model.layout.shape``, optional
        Expected delayed coincidences over the acquisition.
    additive_time_law : {"decay", "decay_squared"}
        Rate of the additive prompts and delayeds ∝ ``A(t)`` (``"decay"``, as scatter) or
        ``A(t)²`` (``"decay_squared"``, as random coincidences, whose rate is the product of two
        singles rates).

    Returns
    -------
    ListmodeEvents
        In time order; ``prompt`` is False for the delayed events.

    Raises
    ------
    InputError
        ``duration_s`` is not positive, the time law is unknown, or ``additive`` or ``delayed``
        has the wrong shape or negative or non-finite values.
    """
    if not duration_s > 0:
        raise InputError("duration_s must be positive")
    if additive_time_law not in ADDITIVE_TIME_LAWS:
        raise InputError(
            f"additive_time_law must be one of {sorted(ADDITIVE_TIME_LAWS)}, "
            f"got {additive_time_law!r}"
        )
    tof_axis = model.tof is not None
    groups = []  # (crystal_a, crystal_b, signed TOF bin, prompt, follows the additive law)

    def add(counts: np.ndarray, tof: bool, prompt: bool, additive_law: bool) -> None:
        a, b, tof_idx = _expand_bins(counts, model.layout, tof)
        signed = tof_idx - model.tof.max_bin if tof else tof_idx
        groups.append((a, b, signed, np.full(a.size, prompt), np.full(a.size, additive_law)))

    add(rng.poisson(np.asarray(model.backend.to_host(model.forward(activity)), np.float64)),
        tof_axis, prompt=True, additive_law=False)  # fmt: skip
    if additive is not None:
        shape = (*model.layout.shape, model.tof.n_bins) if tof_axis else model.layout.shape
        add(rng.poisson(_expected(model, additive, shape, "additive")),
            tof_axis, prompt=True, additive_law=True)  # fmt: skip
    if delayed is not None:
        add(rng.poisson(_expected(model, delayed, model.layout.shape, "delayed")),
            False, prompt=False, additive_law=True)  # fmt: skip
    columns = zip(*groups, strict=True)
    a, b, tof_bin, is_prompt, additive_law = (np.concatenate(column) for column in columns)

    swap = rng.random(a.size) < 0.5
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    tof_bin = np.where(swap, -tof_bin, tof_bin)

    decay_constant = None
    if model.isotope is not None:
        from recon.physics.isotopes import get_isotope

        decay_constant = get_isotope(model.isotope).decay_constant_per_s
    power = ADDITIVE_TIME_LAWS[additive_time_law]
    start = float(getattr(model, "frame_start_s", 0.0))
    times = np.empty(a.size)
    times[~additive_law] = _event_times_s(
        int((~additive_law).sum()), duration_s, decay_constant, rng
    )
    times[additive_law] = _event_times_s(
        int(additive_law.sum()),
        duration_s,
        None if decay_constant is None else power * decay_constant,
        rng,
    )
    times += start
    order = np.argsort(times, kind="stable")
    return ListmodeEvents(
        crystal_a=a[order].astype(np.int32),
        crystal_b=b[order].astype(np.int32),
        tof_bin=tof_bin[order].astype(np.int16),
        time_ms=times[order] * 1000.0,
        prompt=is_prompt[order],
    )
