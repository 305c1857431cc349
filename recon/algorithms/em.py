"""Expectation-maximisation reconstruction: MLEM and OSEM, and the EM loop LM-OSEM shares.

Written against the system-model contract (:class:`recon.SystemModel`) only: they never look
at the modality or the device. :func:`em_reconstruct` is the one EM loop; :func:`osem`,
:func:`mlem` and :func:`recon.lm_osem` are thin entries to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from recon.algorithms.em_update import (
    MAX_RATIO,
    SMALLEST_NORMAL,
    activity_image,
    check_finite,
    em_apply,
    em_ratio,
    inverse_sensitivity,
    uniform_start,
)
from recon.algorithms.filters import gaussian_filter_fwhm
from recon.errors import InputError
from recon.image import Image
from recon.progress import Progress
from recon.system_model import SystemModel

__all__ = ["IterationState", "em_reconstruct", "mlem", "osem"]


@dataclass(frozen=True)
class IterationState:
    """What a ``callback`` receives after every subset update."""

    iteration: int  # 1-based
    subset: int  # 0-based index in the subset order
    n_iterations: int
    n_subsets: int
    image: Any  # current estimate (device array; do not modify)


def _check_iterations(iterations: int) -> int:
    if int(iterations) != iterations or iterations < 1:
        raise InputError(f"iterations must be a positive integer, got {iterations}")
    return int(iterations)


def osem(
    model: SystemModel,
    counts: Any,
    additive: Any = None,
    iterations: int = 4,
    subsets: int = 8,
    x0: Any = None,
    callback: Callable[[IterationState], Any] | None = None,
    progress: bool | None = None,
    post_filter_fwhm_mm: float | None = None,
) -> Image:
    """Ordered-subsets expectation maximisation (Hudson & Larkin, IEEE TMI 13:601, 1994).

    For each subset ``S``: ``x ← x / (Pᵀ_S m_S) · Pᵀ_S (m_S ⊙ y_S / ȳ_S)`` with
    ``ȳ = m ⊙ (P x) + a``. The update is guarded (:func:`recon.algorithms.em_update.em_update`):
    bins with ``y = 0`` contribute nothing, ``y/ȳ`` is capped at ``1e12`` where the estimate has
    collapsed under a count, voxels at 0 (among them those no subset sees) stay exactly 0, and
    values that would be denormal become 0, so finite non-negative inputs give a finite
    non-negative image. The image is checked for NaN and infinity once per iteration.

    Parameters
    ----------
    model : SystemModel
        E.g. :class:`recon.SpectModel`, :class:`recon.PetSinogramModel`.
    counts : array of the model's data shape
        Measured counts (non-negative, finite).
    additive : array of the data shape, optional
        Expected additive counts ``a`` (scatter, randoms); default: the model's own ``additive``.
    iterations, subsets : int
        Full passes over the data, and the number of ordered subsets per pass.
    x0 : array of the image shape, optional
        Starting image; default a uniform image whose projection has the measured total.
    callback : callable, optional
        Called with an :class:`IterationState` after every subset update.
    progress : bool, optional
        Progress bar on stderr (default: when stderr is a terminal); one INFO log line per
        iteration in any case. Interrupt with Ctrl-C.
    post_filter_fwhm_mm : float, optional
        Gaussian post-filter applied to the result.

    Returns
    -------
    Image
        The estimate in the model's units, with ``info`` recording the algorithm settings.

    Raises
    ------
    NumericalError
        The image holds NaN or infinity after an iteration (data or model factors beyond float32
        range); the message names the iteration.
    """
    iterations = _check_iterations(iterations)
    y = model.validate_data(counts, "counts")
    a = model.additive if additive is None else model.validate_data(additive, "additive")
    order = model.subsets(subsets)
    label = "MLEM" if len(order) == 1 else "OSEM"
    return em_reconstruct(
        model, y, a, order, iterations, label, x0=x0, callback=callback, progress=progress,
        post_filter_fwhm_mm=post_filter_fwhm_mm,
    )  # fmt: skip


def em_reconstruct(
    model: SystemModel,
    y: Any,
    a: Any,
    order: list[Any],
    iterations: int,
    label: str,
    *,
    x0: Any = None,
    callback: Callable[[IterationState], Any] | None = None,
    progress: bool | None = None,
    post_filter_fwhm_mm: float | None = None,
    info: dict[str, Any] | None = None,
) -> Image:
    """The EM loop of MLEM, OSEM and LM-OSEM over validated data and the model's subsets.

    Parameters
    ----------
    model : SystemModel
    y, a : device arrays of the data shape
        Counts (validated) and the additive term (or None).
    order : list
        The model's subsets, in the order they are visited.
    iterations : int
        Passes over the subsets.
    label : str
        The algorithm's name, for progress, messages and ``Image.info``.
    x0, callback, progress, post_filter_fwhm_mm
        As in :func:`osem`.
    info : dict, optional
        More entries for the result's ``info``.
    """
    xp = model.xp
    sens = [model.sensitivity(s) for s in order]
    total_sens = sum(sens)
    # Voxels that no subset sees cannot be estimated: keep them at 0 instead of dividing by 0.
    # Subsets that share one sensitivity image (listmode) share its inverse too.
    distinct = {id(s): s for s in sens}
    largest = max(float(s.max()) for s in distinct.values())
    inverses = {k: inverse_sensitivity(xp, s, largest=largest) for k, s in distinct.items()}
    inv_sens = [inverses[id(s)] for s in sens]

    if x0 is None:
        scale = model.start_value(y, a, total_sens)
        seen = inverse_sensitivity(xp, total_sens, largest=largest) > 0
        x = uniform_start(xp, seen, scale if scale > 0 else 1.0, label)
    else:
        x = activity_image(model, x0, "x0").copy()

    y_sub = [model.take(y, s) for s in order]
    a_sub = [None if a is None else model.take(a, s) for s in order]
    with Progress(iterations * len(order), label, enabled=progress) as bar:
        for it in range(1, iterations + 1):
            for k, subset in enumerate(order):
                x = _subset_update(model, x, subset, y_sub[k], a_sub[k], inv_sens[k])
                bar.step(f"iteration {it}")
                if callback is not None:
                    callback(IterationState(it, k, iterations, len(order), x))
            check_finite(xp, x, label, it, iterations)
            bar.log(f"iteration {it}/{iterations} done")

    if post_filter_fwhm_mm:
        x = gaussian_filter_fwhm(x, post_filter_fwhm_mm, model.grid.voxel_size_mm)
    return model.to_image(
        x, algorithm=label, iterations=iterations, subsets=len(order),
        post_filter_fwhm_mm=post_filter_fwhm_mm, additive=a is not None, **(info or {}),
    )  # fmt: skip


def _subset_update(model: SystemModel, x: Any, subset: Any, y: Any, a: Any, inv_sens: Any) -> Any:
    """One guarded EM update on ``subset``: :func:`recon.algorithms.em_update.em_update` with the
    back-projected ratio from :func:`ratio_back` (the model's fused pass where it has one)."""
    return em_apply(model.xp, x, ratio_back(model, x, subset, y, a), inv_sens)


def ratio_back(model: SystemModel, x: Any, subset: Any, y: Any, a: Any) -> Any:
    """``Pᵀ(m ⊙ em_ratio(ȳ, y))`` on ``subset`` with ``ȳ = m ⊙ P x + a``.

    A model may offer ``ratio_back(image, subset, counts, additive, max_ratio, smallest)``: the
    same back-projected ratio (:func:`recon.algorithms.em_update.em_ratio`'s guard) computed in
    one pass (the listmode frame on the CPU walks each event once for both projections), or None
    where it has no such pass; the forward and back projections are used then.
    """
    fused = getattr(model, "ratio_back", None)
    if fused is not None:
        correction = fused(x, subset, y, a, MAX_RATIO, SMALLEST_NORMAL)
        if correction is not None:
            return correction
    expected = model.forward(x, subset)
    if a is not None:
        expected += a
    return model.back(em_ratio(model.xp, expected, y), subset)


def mlem(
    model: SystemModel,
    counts: Any,
    additive: Any = None,
    iterations: int = 20,
    x0: Any = None,
    callback: Callable[[IterationState], Any] | None = None,
    progress: bool | None = None,
    post_filter_fwhm_mm: float | None = None,
) -> Image:
    """Maximum-likelihood expectation maximisation (Shepp & Vardi, IEEE TMI 1:113, 1982).

    OSEM with a single subset; see :func:`osem` for the parameters.
    """
    return osem(
        model, counts, additive=additive, iterations=iterations, subsets=1, x0=x0,
        callback=callback, progress=progress, post_filter_fwhm_mm=post_filter_fwhm_mm,
    )  # fmt: skip
