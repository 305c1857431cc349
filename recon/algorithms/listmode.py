"""Listmode OSEM and dynamic (multi-frame) listmode reconstruction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recon.algorithms.em import IterationState, _check_iterations
from recon.algorithms.em_update import (
    check_finite,
    em_update,
    inverse_sensitivity,
    uniform_start,
)
from recon.algorithms.filters import gaussian_filter_fwhm
from recon.errors import InputError
from recon.image import Image
from recon.progress import Progress

__all__ = ["FrameResult", "lm_osem", "reconstruct_frames"]


def _subset_order(n_events: int, n_subsets: int) -> tuple[np.ndarray, list[slice]]:
    """Interleaved event subsets (event i goes to subset i mod n) as a permutation that makes
    each subset one contiguous block, and the blocks' slices."""
    order = np.concatenate([np.arange(k, n_events, n_subsets) for k in range(n_subsets)])
    sizes = [len(range(k, n_events, n_subsets)) for k in range(n_subsets)]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return order, [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def lm_osem(
    model: Any,
    events: Any,
    iterations: int = 2,
    subsets: int = 34,
    additive_rate: Any = None,
    frame_start_s: float | None = None,
    frame_duration_s: float | None = None,
    x0: Any = None,
    callback: Callable[[IterationState], Any] | None = None,
    progress: bool | None = None,
    post_filter_fwhm_mm: float | None = None,
) -> Image:
    """Listmode OSEM (Reader et al., Phys Med Biol 47:2773, 2002).

    For each subset ``S`` of events: ``x ← x / (s/n) · Pᵀ_S (m_S / ȳ_S)`` with
    ``ȳ_i = m_i (P x)_i + a_i`` and the frame's sensitivity image ``s`` over all LORs. The update
    is guarded as in :func:`recon.osem` (:func:`recon.algorithms.em_update.em_update`): an event's
    ``1/ȳ_i`` is capped at ``1e12`` over the frame duration (a count ``1e12`` times the estimate's
    expectation in its LOR and TOF bin), zero voxels stay 0 and would-be denormal values become 0;
    the image is checked for NaN and infinity once per iteration.

    Parameters
    ----------
    model : PetListmodeModel
    events : ListmodeEvents
        Events of the frame (prompts are used; delayeds are ignored here).
    iterations, subsets : int
        Passes over the events and the number of interleaved event subsets.
    additive_rate : array of shape (n_prompts,), optional
        Expected additive rate (randoms + scatter) in counts/s of each prompt's LOR and TOF bin,
        in the order of the prompts; finite and non-negative.
    frame_start_s, frame_duration_s : float, optional
        The frame (s from scan start); default: from 0 to the last event time.
    x0, callback, progress, post_filter_fwhm_mm
        As in :func:`recon.osem`.

    Raises
    ------
    NumericalError
        The image holds NaN or infinity after an iteration; the message names the iteration.
    """
    iterations = _check_iterations(iterations)
    xp = model.xp
    prepared = model.prepare(events)
    times = np.asarray(events.time_ms, dtype=np.float64) / 1000.0
    start = 0.0 if frame_start_s is None else float(frame_start_s)
    duration = (
        (max(times.max(), 1e-3) - start) if frame_duration_s is None else float(frame_duration_s)
    )
    if times.size and (times.min() < start - 1e-9 or times.max() > start + duration + 1e-9):
        raise InputError(
            f"events span {times.min():.3f}-{times.max():.3f} s, outside the frame "
            f"[{start}, {start + duration}] s; select the frame's events first"
        )
    prepared, blocks, additive = subset_events(model, prepared, subsets, additive_rate)
    n = prepared["n"]
    sens = model.sensitivity(start, duration)
    inv_sens = inverse_sensitivity(xp, sens, numerator=len(blocks))
    if x0 is None:
        # Uniform start whose expected number of events equals the number of prompts.
        seen = inverse_sensitivity(xp, sens) > 0
        x = uniform_start(xp, seen, n / max(float(sens.sum()), 1e-30), "LM-OSEM")
    else:
        x = model.validate_image(x0).copy()
        if not bool(xp.all(xp.isfinite(x))) or float(x.min()) < 0:
            raise InputError("x0 must be finite and non-negative")

    with Progress(iterations * len(blocks), "LM-OSEM", enabled=progress) as bar:
        for it in range(1, iterations + 1):
            for k, block in enumerate(blocks):
                x = lm_subset_update(model, x, prepared, block, additive, inv_sens, duration)
                bar.step(f"iteration {it}")
                if callback is not None:
                    callback(IterationState(it, k, iterations, len(blocks), x))
            check_finite(xp, x, "LM-OSEM", it, iterations)
            bar.log(f"iteration {it}/{iterations} done")

    if post_filter_fwhm_mm:
        x = gaussian_filter_fwhm(x, post_filter_fwhm_mm, model.grid.voxel_size_mm)
    return model.to_image(
        x, algorithm="LM-OSEM", iterations=iterations, subsets=len(blocks), n_prompts=n,
        frame_start_s=start, frame_duration_s=duration, post_filter_fwhm_mm=post_filter_fwhm_mm,
    )  # fmt: skip


def subset_events(
    model: Any, prepared: dict[str, Any], subsets: int, additive_rate: Any = None
) -> tuple[dict[str, Any], list[slice], Any]:
    """Put prepared events (``model.prepare(events)``) in subset order.

    Returns the prepared events reordered so that each of the ``subsets`` interleaved subsets is
    one contiguous block (``n`` the prompts kept, ``n_given`` those given), the blocks' slices,
    and the additive rate of the kept prompts in the same order (or None).
    """
    prepared = dict(prepared)
    n = prepared["n"]
    if not 1 <= int(subsets) <= n:
        raise InputError(
            f"subsets must be between 1 and the number of prompts ({n}), got {subsets}"
        )
    kept = prepared.pop("kept", None)
    n_given = prepared.get("n_given", n)
    order, blocks = _subset_order(n, int(subsets))
    order_dev = model.backend.asarray(order, np.int64)
    prepared = {k: (v[order_dev] if hasattr(v, "shape") else v) for k, v in prepared.items()}
    additive = None
    if additive_rate is not None:
        additive = model.backend.asarray(additive_rate)
        xp = model.xp
        if (
            tuple(additive.shape) != (n_given,)
            or not bool(xp.all(xp.isfinite(additive)))
            or float(additive.min()) < 0
        ):
            raise InputError(
                f"additive_rate must be {n_given} finite non-negative values (counts/s), one per "
                "prompt"
            )
        if kept is not None:
            additive = additive[model.backend.asarray(np.flatnonzero(kept), np.int64)]
        additive = additive[order_dev]
    return prepared, blocks, additive


def lm_subset_update(
    model: Any,
    x: Any,
    prepared: dict[str, Any],
    block: slice,
    additive: Any,
    inv_sens: Any,
    frame_duration_s: float,
) -> Any:
    """One LM-OSEM subset update over the events ``block`` of ``prepared`` (the new image)."""
    expected = model.forward_events(x, prepared, block)
    if additive is not None:
        expected = expected + additive[block]
    return em_update(
        model.xp, x, expected, lambda r: model.back_events(r, prepared, block), inv_sens,
        exposure_s=frame_duration_s,
    )  # fmt: skip


@dataclass(frozen=True)
class FrameResult:
    """One frame of a dynamic study."""

    image: Image
    start_s: float
    duration_s: float
    n_prompts: int
    decay_factor: float  # activity at reference time / mean activity during the frame


def reconstruct_frames(
    model: Any,
    events: Any,
    frames: Sequence[tuple[float, float]],
    iterations: int = 2,
    subsets: int = 10,
    progress: bool | None = None,
    **kwargs: Any,
) -> list[FrameResult]:
    """Reconstruct each ``(start_s, duration_s)`` frame of one listmode acquisition.

    Every frame is decay-corrected to the model's reference time, so a constant amount of tracer
    gives the same image in every frame; each result reports its frame timing and decay factor.
    """
    from recon.physics.decay import decay_correction_factor
    from recon.physics.isotopes import get_isotope

    if not frames:
        raise InputError("frames must list at least one (start_s, duration_s) pair")
    results = []
    times = np.asarray(events.time_ms, dtype=np.float64)
    for start_s, duration_s in frames:
        if not duration_s > 0:
            raise InputError(f"frame durations must be positive, got {duration_s} s")
        lo = int(np.searchsorted(times, start_s * 1000.0, side="left"))
        hi = int(np.searchsorted(times, (start_s + duration_s) * 1000.0, side="left"))
        frame_events = events.select(slice(lo, hi))
        image = lm_osem(
            model, frame_events, iterations=iterations, subsets=subsets, frame_start_s=start_s,
            frame_duration_s=duration_s, progress=progress, **kwargs,
        )  # fmt: skip
        factor = 1.0
        if model.isotope is not None:
            half_life = get_isotope(model.isotope).half_life_s
            factor = float(
                decay_correction_factor(half_life, start_s, duration_s, model.reference_time_s)
            )
        results.append(
            FrameResult(image, float(start_s), float(duration_s), image.info["n_prompts"], factor)
        )
    return results
