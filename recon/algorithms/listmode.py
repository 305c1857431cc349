"""Listmode OSEM and dynamic (multi-frame) listmode reconstruction.

A listmode model makes a *frame* (``model.frame(events, start, duration, additive_rate)``): the
model restricted to one time window, whose data are one count per prompt. It satisfies the
system-model contract, so LM-OSEM is the EM loop of :func:`recon.osem` on it
(:func:`recon.algorithms.em.em_reconstruct`); the frame knows its own time factors and decay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from recon.algorithms.em import IterationState, _check_iterations, em_reconstruct
from recon.errors import InputError
from recon.image import Image
from recon.system_model import ListmodeSystem

__all__ = ["FrameResult", "lm_osem", "reconstruct_frames"]


def lm_osem(
    model: ListmodeSystem,
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
    ``ȳ_i = m_i (P x)_i + a_i`` and the frame's sensitivity image ``s`` over all LORs. It is OSEM
    on the frame (``model.frame(...)``, one count per prompt), with the same guarded update
    (:func:`recon.algorithms.em_update.em_update`): an event's ``1/ȳ_i`` is capped at ``1e12``
    over the frame duration (a count ``1e12`` times the estimate's expectation in its LOR and TOF
    bin), zero voxels stay 0 and would-be denormal values become 0; the image is checked for NaN
    and infinity once per iteration.

    Parameters
    ----------
    model : PetListmodeModel
        A listmode model: anything with ``frame(events, start, duration, additive_rate)``.
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
    frame = model.frame(events, frame_start_s, frame_duration_s, additive_rate)
    return em_reconstruct(
        frame, frame.counts(), frame.additive, frame.subsets(subsets), iterations, "LM-OSEM",
        x0=x0, callback=callback, progress=progress, post_filter_fwhm_mm=post_filter_fwhm_mm,
        info={
            "n_prompts": frame.n_prompts, "frame_start_s": frame.frame_start_s,
            "frame_duration_s": frame.frame_duration_s, "decay_factor": frame.decay_factor,
        },
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
    model: ListmodeSystem,
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
    ``kwargs`` go to :func:`lm_osem`.
    """
    if not frames:
        raise InputError("frames must list at least one (start_s, duration_s) pair")
    results = []
    for start_s, duration_s in frames:
        if not duration_s > 0:
            raise InputError(f"frame durations must be positive, got {duration_s} s")
        frame_events = events.time_window(start_s * 1000.0, (start_s + duration_s) * 1000.0)
        image = lm_osem(
            model, frame_events, iterations=iterations, subsets=subsets, frame_start_s=start_s,
            frame_duration_s=duration_s, progress=progress, **kwargs,
        )  # fmt: skip
        results.append(
            FrameResult(
                image,
                float(start_s),
                float(duration_s),
                image.info["n_prompts"],
                image.info["decay_factor"],
            )  # fmt: skip
        )
    return results
