"""Penalised-likelihood (MAP) reconstruction: BSREM and OSL-MAP, and the objective they maximise.

The objective, for any :class:`recon.SystemModel` and prior ``R`` (:mod:`recon.algorithms.priors`)::

    Φ(x) = Σ_i [y_i log ȳ_i(x) − ȳ_i(x)] − β R(x),     ȳ = m ⊙ P x + a

without data-independent constants (no ``log y!``). For a listmode frame the sum runs over the
events (``y_i = 1``) and ``Σ ȳ`` over all LORs is ``Σ_j s_j x_j`` (the frame's sensitivity),
leaving out the frame's total additive counts, a constant.

BSREM (De Pierro & Yamagishi, IEEE TMI 20:280, 2001; Ahn & Fessler, IEEE TMI 22:613, 2003) is
relaxed ordered-subsets gradient ascent with the EM preconditioner. With ``M`` subsets and
``Φ_m = L_m − (β/M) R`` the subset objectives, for each subset ``m`` of iteration ``n``::

    x ← [x + α_n · (x + δ) / s_m · ∇Φ_m(x)]_0^U,    ∇L_m = P_mᵀ(m_m ⊙ y_m/ȳ_m) − s_m,
    α_n = α_0 / (1 + n/τ)

``s_m`` the subset's sensitivity, ``[·]_0^U`` the projection onto ``[0, U]``. With ``α = 1``,
``β = 0`` and ``δ = 0`` it is exactly OSEM; the decreasing relaxation makes it converge to the
maximiser of ``Φ`` (OSEM alone cycles between the subsets' maximisers). ``δ`` (a small fraction
of the mean starting value) lets a voxel that reached 0 come back. Start from a few OSEM
iterations (``x0=``) to save iterations.

OSL-MAP (Green, IEEE TMI 9:84, 1990), the classic one-step-late update
``x ← x / (s_m + (β/M) ∇R(x)) · P_mᵀ(m_m ⊙ y_m/ȳ_m)``, is simpler but is not guaranteed to
converge, nor to keep ``Φ`` increasing, and breaks down when ``β ∇R`` outweighs ``s``: the
denominator is floored at 1 % of ``s`` here, and large β can still make it oscillate. BSREM is the
one to use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon._memory import page_aligned_empty
from recon.algorithms.em import IterationState, _check_iterations, ratio_back
from recon.algorithms.em_update import (
    SMALLEST_NORMAL,
    _same_float32_images,
    activity_image,
    check_finite,
    inverse_sensitivity,
    uniform_start,
)
from recon.algorithms.priors import Prior
from recon.errors import InputError
from recon.image import Image
from recon.progress import Progress
from recon.system_model import ListmodeSystem, SystemModel

__all__ = ["MapSettings", "bsrem", "lm_bsrem", "log_likelihood", "osl_map",
           "penalised_log_likelihood"]  # fmt: skip

#: Default relaxation: α_n = 1 / (1 + n / 10).
DEFAULT_RELAXATION = 1.0
DEFAULT_RELAXATION_DECAY = 10.0
# δ of the preconditioner, as a fraction of the mean starting value over the voxels seen.
_PRECONDITIONER_OFFSET = 1e-3
# OSL-MAP's denominator floor, as a fraction of the sensitivity.
_OSL_FLOOR = 0.01


def log_likelihood(model: SystemModel, y: Any, a: Any, x: Any) -> float:
    """``Σ_i [y_i log ȳ_i − ȳ_i]`` at ``x`` (device arrays, validated), without constants.

    Bins with ``y = 0`` contribute ``−ȳ`` only; ``log ȳ`` is floored at the smallest normal
    float32, so a count under a zero expectation costs about ``−87 y`` instead of ``−∞``.
    """
    xp = model.xp
    expected = model.forward(x)
    if a is not None:
        expected = expected + a
    logs = xp.log(xp.maximum(expected, SMALLEST_NORMAL))
    data_term = float((y * logs).sum(dtype=np.float64))
    return data_term - model.expected_total(expected, x)


def penalised_log_likelihood(
    model: SystemModel, counts: Any, additive: Any, prior: Prior | None, x: Any
) -> float:
    """The objective ``Φ(x) = Σ_i [y_i log ȳ_i − ȳ_i] − β R(x)`` (module docstring).

    Parameters
    ----------
    model : SystemModel
        E.g. :class:`recon.SpectModel`, or a listmode frame (``counts = frame.counts()``).
    counts, additive : arrays of the data shape
        Measured counts; additive term (None: the model's own).
    prior : Prior or None
        The penalty ``β R``; None for the plain log-likelihood.
    x : array of the image shape
        The image (finite and non-negative: Φ is defined there).

    Raises
    ------
    InputError
        Data or image of the wrong shape, an image with a negative or non-finite voxel.
    """
    y = model.validate_data(counts, "counts")
    a = model.additive if additive is None else model.validate_data(additive, "additive")
    image = activity_image(model, x, "x")
    value = log_likelihood(model, y, a, image)
    if prior is not None and prior.beta > 0:
        value -= prior.beta * prior.for_model(model).value(image, model.grid, model.backend)
    return value


@dataclass
class MapSettings:
    """The settings of a MAP reconstruction and what it recorded (``Image.info["map"]``)."""

    algorithm: str
    prior: str
    beta: float
    relaxation: float
    relaxation_decay: float
    objective: list[float] = field(default_factory=list)  # Φ after each iteration
    #: OSL-MAP only: per iteration, the voxels with ``x > 0`` whose denominator ``s + β∇R`` fell
    #: below the floor (1 % of ``s``) in some subset and was raised to it: the update there is not
    #: Green's.
    floored_voxels: list[int] = field(default_factory=list)


def _relaxation(relaxation: float, decay: float) -> tuple[float, float]:
    relaxation, decay = float(relaxation), float(decay)
    if not 0 < relaxation <= 1:
        raise InputError(f"relaxation must be in (0, 1], got {relaxation}")
    if not decay > 0:
        raise InputError(f"relaxation_decay must be positive (iterations), got {decay}")
    return relaxation, decay


def bsrem(
    model: SystemModel,
    counts: Any,
    additive: Any = None,
    prior: Prior | None = None,
    iterations: int = 30,
    subsets: int = 8,
    x0: Any = None,
    relaxation: float = DEFAULT_RELAXATION,
    relaxation_decay: float = DEFAULT_RELAXATION_DECAY,
    upper_bound: float | None = None,
    objective: bool = True,
    callback: Callable[[IterationState], Any] | None = None,
    progress: bool | None = None,
) -> Image:
    """BSREM: penalised-likelihood reconstruction that converges (module docstring).

    Parameters
    ----------
    model : SystemModel
        Any model of the contract (SPECT, PET sinograms, a listmode frame).
    counts : array of the model's data shape
        Measured counts (non-negative, finite).
    additive : array of the data shape, optional
        Expected additive counts ``a``; default the model's own.
    prior : Prior
        The penalty, e.g. ``recon.RelativeDifferencePrior(beta=..., gamma=2, epsilon=...)``;
        ``beta = 0`` (or None) gives maximum likelihood.
    iterations, subsets : int
        Passes over the data and ordered subsets per pass.
    x0 : array of the image shape, optional
        Start (e.g. a few OSEM iterations); default a uniform image explaining the counts.
    relaxation, relaxation_decay : float
        ``α_0 ∈ (0, 1]`` and ``τ`` of ``α_n = α_0 / (1 + n/τ)`` (``n`` the 0-based iteration).
        The defaults (1, 10) converge within about 100 iterations on small problems.
    upper_bound : float, optional
        ``U``; default 1e3 × the largest starting value (high enough never to be reached).
    objective : bool
        Evaluate ``Φ`` after every iteration (one more forward projection per iteration): it is
        logged with the progress and kept in ``info["map"].objective``.
    callback, progress
        As in :func:`recon.osem`.

    Returns
    -------
    Image
        The estimate; ``info["map"]`` holds a :class:`MapSettings` with the objective values.
    """
    return _map_reconstruct(
        "BSREM", model, counts, additive, prior, iterations, subsets, x0, relaxation,
        relaxation_decay, upper_bound, objective, callback, progress,
    )  # fmt: skip


def _bsrem_step(
    xp: Any, x: Any, back: Any, sens: Any, gradient: Any, grad_scale: np.float32,
    curvature: Any, inv_sens: Any, seen: Any, alpha: np.float32, delta: np.float32,
    upper: np.float32,
) -> Any:  # fmt: skip
    """One preconditioned BSREM step on a subset (a new array; ``x`` is not modified).

    ``step = Pᵀ(y/ȳ) − s_m − (β/M)∇R`` (``back``, ``sens``, ``gradient · grad_scale``), taken
    with the preconditioner ``(x + δ) / s_m`` or, with the prior's ``curvature`` (already
    times β/M), ``(x + δ) / (s_m + (x + δ)·curvature)`` where the subset sees the voxel; then 0
    outside ``seen`` and clipped to ``[0, upper]``. On the CPU one numba pass computes the same
    float32 expression (:mod:`recon.algorithms._map_cpu`), bit for bit.
    """
    images = [x, back, sens, inv_sens]
    images += [a for a in (gradient, curvature) if a is not None]
    if xp is np and _same_float32_images(*images) and seen.shape == x.shape:
        from recon.algorithms import _map_cpu

        out = page_aligned_empty(x.shape)  # as the prior's κ and output (its docstring)
        placeholder = np.zeros(1, np.float32)
        _map_cpu.bsrem_step(
            x, back, sens, placeholder if gradient is None else gradient, grad_scale,
            gradient is not None, placeholder if curvature is None else curvature,
            curvature is not None, inv_sens, np.ascontiguousarray(seen), alpha, delta, upper,
            out,
        )  # fmt: skip
        return out
    step = back - sens
    if gradient is not None:
        step -= gradient * grad_scale
    shifted = x + delta
    if curvature is None:
        x = x + alpha * shifted * inv_sens * step
    else:
        seen_k = inv_sens > 0  # voxels this subset sees
        scale = xp.where(seen_k, sens + shifted * curvature, np.float32(1.0))
        x = x + xp.where(seen_k, alpha * shifted * step / scale, np.float32(0.0))
    x = xp.clip(xp.where(seen, x, np.float32(0.0)), np.float32(0.0), upper)
    return x.astype(np.float32, copy=False)


def osl_map(
    model: SystemModel,
    counts: Any,
    additive: Any = None,
    prior: Prior | None = None,
    iterations: int = 10,
    subsets: int = 8,
    x0: Any = None,
    objective: bool = True,
    callback: Callable[[IterationState], Any] | None = None,
    progress: bool | None = None,
) -> Image:
    """OSL-MAP (Green 1990): the one-step-late EM update with a prior (module docstring: it is
    not guaranteed to converge; prefer :func:`bsrem`). Parameters as for :func:`bsrem`."""
    return _map_reconstruct(
        "OSL-MAP", model, counts, additive, prior, iterations, subsets, x0, 1.0, 1.0, None,
        objective, callback, progress,
    )  # fmt: skip


def lm_bsrem(
    model: ListmodeSystem,
    events: Any,
    prior: Prior | None = None,
    additive_rate: Any = None,
    frame_start_s: float | None = None,
    frame_duration_s: float | None = None,
    **kwargs: Any,
) -> Image:
    """BSREM on one frame of listmode events (the objective on the events): ``kwargs`` as for
    :func:`bsrem`, the frame as for :func:`recon.lm_osem`."""
    frame = model.frame(events, frame_start_s, frame_duration_s, additive_rate)
    image = bsrem(frame, frame.counts(), frame.additive, prior, **kwargs)
    image.info.update(
        n_prompts=frame.n_prompts, frame_start_s=frame.frame_start_s,
        frame_duration_s=frame.frame_duration_s, decay_factor=frame.decay_factor,
    )  # fmt: skip
    return image


def _map_reconstruct(
    label: str,
    model: SystemModel,
    counts: Any,
    additive: Any,
    prior: Prior | None,
    iterations: int,
    subsets: int,
    x0: Any,
    relaxation: float,
    relaxation_decay: float,
    upper_bound: float | None,
    want_objective: bool,
    callback: Callable[[IterationState], Any] | None,
    progress: bool | None,
) -> Image:
    iterations = _check_iterations(iterations)
    relaxation, relaxation_decay = _relaxation(relaxation, relaxation_decay)
    if prior is not None and not isinstance(prior, Prior):
        raise InputError(f"prior must be a recon prior (or None), got {type(prior).__name__}")
    xp = model.xp
    y = model.validate_data(counts, "counts")
    a = model.additive if additive is None else model.validate_data(additive, "additive")
    order = model.subsets(subsets)
    n_subsets = len(order)
    bound = None if prior is None or prior.beta == 0 else prior.for_model(model)
    beta = 0.0 if bound is None else bound.beta

    sens = [model.sensitivity(s) for s in order]
    total_sens = sum(sens)
    distinct = {id(s): s for s in sens}
    largest = max(float(s.max()) for s in distinct.values())
    inverses = {k: inverse_sensitivity(xp, s, largest=largest) for k, s in distinct.items()}
    inv_sens = [inverses[id(s)] for s in sens]
    seen = inverse_sensitivity(xp, total_sens, largest=largest) > 0

    if x0 is None:
        x = uniform_start(xp, seen, model.start_value(y, a, total_sens) or 1.0, label)
    else:
        x = activity_image(model, x0, "x0")
        x = xp.where(seen, x, np.float32(0.0)).astype(np.float32)
    start_mean = float(x[seen].mean()) if bool(seen.any()) else 1.0
    delta = np.float32(_PRECONDITIONER_OFFSET * start_mean)
    top = float(x.max()) if upper_bound is None else float(upper_bound)
    upper = np.float32(1e3 * max(top, start_mean) if upper_bound is None else top)
    if not upper > 0:
        raise InputError(f"upper_bound must be positive, got {upper_bound}")

    y_sub = [model.take(y, s) for s in order]
    a_sub = [None if a is None else model.take(a, s) for s in order]
    record = MapSettings(
        label, "none" if bound is None else bound.name, beta, relaxation, relaxation_decay
    )
    with Progress(iterations * n_subsets, label, enabled=progress) as bar:
        for it in range(1, iterations + 1):
            floored = None if label == "BSREM" else xp.zeros(x.shape, dtype=bool)
            alpha = np.float32(relaxation / (1.0 + (it - 1) / relaxation_decay))
            # The prior's curvature at the start of the iteration joins the preconditioner
            # (x + δ) / (s_m + (β/M)(x + δ) H): EM's own where β R is weak, the prior's where it
            # dominates, so a strong prior does not slow convergence down.
            curvature = (
                None
                if bound is None or label != "BSREM"
                else bound.hessian_diagonal(x, model.grid, model.backend, check=False)
                * np.float32(beta / n_subsets)
            )
            for k, subset in enumerate(order):
                back = ratio_back(model, x, subset, y_sub[k], a_sub[k])
                gradient = (
                    None
                    if bound is None
                    else bound.gradient(x, model.grid, model.backend, check=False)
                )
                grad_scale = np.float32(beta / n_subsets)
                if label == "BSREM":
                    x = _bsrem_step(
                        xp, x, back, sens[k], gradient, grad_scale, curvature, inv_sens[k],
                        seen, alpha, delta, upper,
                    )  # fmt: skip
                else:  # OSL-MAP
                    prior_grad = None if gradient is None else gradient * grad_scale
                    denominator = sens[k] if prior_grad is None else sens[k] + prior_grad
                    floor = np.float32(_OSL_FLOOR) * sens[k]
                    floored |= (denominator < floor) & (x > 0)  # x = 0 stays 0 anyway
                    denominator = xp.maximum(denominator, floor)
                    x = x * back / xp.where(denominator > 0, denominator, np.float32(1.0))
                    x = xp.clip(xp.where(seen, x, np.float32(0.0)), np.float32(0.0), upper)
                    x = x.astype(np.float32, copy=False)
                bar.step(f"iteration {it}")
                if callback is not None:
                    callback(IterationState(it, k, iterations, n_subsets, x))
            check_finite(xp, x, label, it, iterations)
            if floored is not None:
                n_floored = int(xp.count_nonzero(floored & seen))
                record.floored_voxels.append(n_floored)
                if n_floored:
                    bar.log(
                        f"iteration {it}/{iterations}: denominator floored in {n_floored} "
                        "voxels (beta too large for one-step-late; BSREM converges)"
                    )
            if want_objective:
                value = log_likelihood(model, y, a, x)
                if bound is not None:
                    value -= beta * bound.value(x, model.grid, model.backend, check=False)
                record.objective.append(value)
                bar.log(f"iteration {it}/{iterations} done, objective {value:.10g}")
            else:
                bar.log(f"iteration {it}/{iterations} done")
    return model.to_image(
        x, algorithm=label, iterations=iterations, subsets=n_subsets,
        prior=repr(bound) if bound is not None else None, map=record,
        additive=a is not None,
    )  # fmt: skip
