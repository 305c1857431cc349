"""The EM update shared by MLEM, OSEM and listmode OSEM, guarded against NaN and infinity.

One subset update is ``x ← x · Pᵀ(m ⊙ y/ȳ) / s``. Computed naively in float32 it breaks down when
the estimate nears zero: an expected value ``ȳ`` below about 3e-39 (a denormal) makes ``y/ȳ``
overflow to infinity, and the back-projected infinity times a voxel that is exactly 0 is NaN.
:func:`em_update` bounds the ratio by the data instead, never multiplies a zero voxel, and sets
values that would be denormal to exactly 0; :func:`check_finite` is the once-per-iteration check
that stops a reconstruction whose image holds a non-finite value anyway (data or model factors
beyond float32 range).

Every function works on numpy and CuPy arrays alike (``xp`` is the array module) and never reads a
value back to the host, except :func:`check_finite` (one reduction and one read per call).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from recon.errors import InputError, NumericalError

__all__ = [
    "MAX_RATIO",
    "SMALLEST_NORMAL",
    "activity_image",
    "check_finite",
    "em_apply",
    "em_ratio",
    "em_update",
    "inverse_sensitivity",
    "uniform_start",
]

# Largest ratio of measured to expected counts in one data bin. STIR caps the same quotient
# (max_quotient = 1e4 in divide_and_truncate, src/buildblock/recon_array_functions.cxx); sparse TOF
# listmode data legitimately reach 1e4-1e5 (one event in a LOR-TOF bin expecting 1e-4 counts), so
# the cap here sits far above anything a consistent estimate produces and only bites where the
# estimate has collapsed towards zero under a count.
MAX_RATIO = 1e12
# Smallest positive normal float32 (IEEE 754 binary32: 2**-126); below it values are denormal.
SMALLEST_NORMAL = np.float32(np.finfo(np.float32).tiny)
# Voxels whose sensitivity is below this fraction of the largest are not estimated (kept at 0).
_SENSITIVITY_CUTOFF = 1e-12


def em_ratio(xp: Any, expected: Any, counts: Any = None, exposure_s: float = 1.0) -> Any:
    """Measured over expected counts of each data bin, bounded by :data:`MAX_RATIO`.

    Binned data (``counts`` given): ``y / max(ȳ, y / MAX_RATIO, SMALLEST_NORMAL)``, which is
    ``y/ȳ`` wherever the estimate explains the count to within a factor ``MAX_RATIO``, 0 where
    ``y = 0`` (also when ``ȳ = 0``), and never above ``MAX_RATIO``.

    Listmode (``counts`` None: one count per event): ``ȳ`` is an expected rate (counts/s) and
    ``exposure_s`` the time the event was counted over (the frame duration), so the dimensionless
    ratio ``1 / (ȳ · exposure_s)`` is bounded the same way: ``1 / max(ȳ, 1 / (MAX_RATIO ·
    exposure_s))``, in units of 1/ȳ.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    expected : float32 array
        Expected counts ``ȳ`` per bin (binned) or expected rate per event (listmode); finite and
        non-negative.
    counts : float32 array of the same shape, optional
        Measured counts, finite and non-negative.
    exposure_s : float
        Listmode only: the frame duration, s.

    Returns
    -------
    float32 array of ``expected``'s shape
        Finite and non-negative whenever the inputs are.
    """
    if counts is None:
        floor = max(1.0 / (MAX_RATIO * float(exposure_s)), float(SMALLEST_NORMAL))
        # A Python float on the left: numpy scalars there would try to convert a CuPy array.
        return (1.0 / xp.maximum(expected, np.float32(floor))).astype(xp.float32, copy=False)
    floor = xp.maximum(counts * np.float32(1.0 / MAX_RATIO), SMALLEST_NORMAL)
    return (counts / xp.maximum(expected, floor)).astype(xp.float32, copy=False)


def em_update(
    xp: Any,
    x: Any,
    expected: Any,
    back: Callable[[Any], Any],
    inv_sens: Any,
    counts: Any = None,
    exposure_s: float = 1.0,
) -> Any:
    """One guarded EM (sub)iteration: ``x · back(ratio) · inv_sens`` with the ratio of
    :func:`em_ratio`.

    The product is formed as ``(x · Pᵀ(m ⊙ ratio)) · inv_sens``: a voxel's share of the counts it
    explains, which is bounded by the counts, before the division by its sensitivity. Voxels at
    exactly 0 stay 0 whatever the back projection holds (so no ``0 · inf``), and results below
    :data:`SMALLEST_NORMAL` become exactly 0 instead of denormal. A NaN or infinity already in
    ``x`` or produced by ``back`` is kept, for :func:`check_finite` to report.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    x : float32 array of the image shape
        Current estimate, non-negative; not modified.
    expected, counts, exposure_s
        As in :func:`em_ratio`.
    back : callable
        ``back(ratio)`` = ``Pᵀ(m ⊙ ratio)`` over the same data bins or events, an image.
    inv_sens : float32 array of the image shape
        ``1 / s`` where the voxel is estimated, 0 elsewhere (:func:`inverse_sensitivity`).

    Returns
    -------
    float32 array of the image shape
        The updated estimate (a new array).
    """
    ratio = em_ratio(xp, expected, counts, exposure_s)
    return em_apply(xp, x, back(ratio), inv_sens)


def em_apply(xp: Any, x: Any, correction: Any, inv_sens: Any) -> Any:
    """The second half of :func:`em_update`: ``x · correction · inv_sens``, guarded the same way.

    For a model that forms the back-projected ratio ``correction = Pᵀ(m ⊙ ratio)`` itself (a
    fused forward-ratio-back pass); ``x`` is not modified and a new array is returned. On the
    CPU one numba pass computes the same float32 expression (:mod:`recon.algorithms._em_cpu`).
    """
    if xp is np and _same_float32_images(x, correction, inv_sens):
        from recon.algorithms import _em_cpu

        out = np.empty_like(x)
        _em_cpu.em_apply(x, correction, inv_sens, SMALLEST_NORMAL, out)
        return out
    with np.errstate(over="ignore", invalid="ignore"):  # numpy only; check_finite reports
        updated = (x * correction).astype(xp.float32, copy=False)
        updated *= inv_sens
    gone = updated < SMALLEST_NORMAL  # NaN compares False: kept for check_finite
    gone |= x == 0
    xp.copyto(updated, 0.0, where=gone)  # an elementwise kernel on CuPy, no host round trip
    return updated


def _same_float32_images(*arrays: Any) -> bool:
    """True when every array is a C-contiguous float32 numpy array of the first one's shape."""
    shape = arrays[0].shape
    return all(
        isinstance(a, np.ndarray)
        and a.dtype == np.float32
        and a.shape == shape
        and a.flags.c_contiguous
        for a in arrays
    )


def inverse_sensitivity(
    xp: Any, sens: Any, numerator: float = 1.0, largest: float | None = None
) -> Any:
    """``numerator / sens`` where the voxel is seen, 0 where it is not, always finite.

    A voxel counts as seen when its sensitivity exceeds ``1e-12 · largest`` (default: the largest
    value of ``sens``) and is large enough for the quotient to stay finite in float32.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    sens : array of the image shape
        Sensitivity image ``Pᵀ m`` (of a subset, or of all data).
    numerator : float
        E.g. the number of subsets when ``sens`` covers all the data (listmode).
    largest : float, optional
        The sensitivity the cut-off is relative to (e.g. the largest over all subsets).

    Returns
    -------
    float32 array of the image shape
    """
    largest = float(sens.max()) if largest is None else float(largest)
    cutoff = max(_SENSITIVITY_CUTOFF * largest, float(numerator) * float(SMALLEST_NORMAL) * 2.0)
    safe = xp.maximum(sens, np.float32(cutoff))
    inv = xp.where(sens > cutoff, float(numerator) / safe, np.float32(0.0))
    return inv.astype(xp.float32, copy=False)


def activity_image(model: Any, x: Any, name: str) -> Any:
    """``x`` as the model's image (``model.validate_image``), refused with InputError unless
    every voxel is finite and non-negative (a start image, or where an objective is evaluated)."""
    image = model.validate_image(x, name)
    xp = model.xp
    if not bool(xp.all(xp.isfinite(image))) or float(image.min()) < 0:
        raise InputError(f"{name} must be finite and non-negative (an activity image)")
    return image


def uniform_start(xp: Any, seen: Any, value: float, algorithm: str) -> Any:
    """Starting image: ``value`` on the ``seen`` voxels, 0 elsewhere (float32).

    Raises
    ------
    NumericalError
        ``value`` does not fit float32 (measured counts and sensitivity far out of proportion).
    """
    if not float(value) < float(np.finfo(np.float32).max):
        raise NumericalError(
            f"{algorithm}: the uniform starting image would be {value:.3g}, beyond float32; the "
            "counts and the model's sensitivity are far out of proportion (check the calibration "
            "and the frame duration)"
        )
    return xp.where(seen, np.float32(value), np.float32(0.0)).astype(xp.float32, copy=False)


def check_finite(xp: Any, x: Any, algorithm: str, iteration: int, n_iterations: int) -> None:
    """Raise :class:`recon.errors.NumericalError` if the estimate holds a NaN or an infinity.

    One reduction on the device and one value read back; call it once per iteration, not per
    subset. ``iteration`` 0 means the starting image.
    """
    if bool(xp.all(xp.isfinite(x))):
        return
    n_nan = int(xp.isnan(x).sum())
    n_inf = int(xp.isinf(x).sum())
    when = (
        "in the starting image"
        if iteration == 0
        else f"after iteration {iteration} of {n_iterations} (the check runs once per iteration)"
    )
    raise NumericalError(
        f"{algorithm}: the image holds {n_nan} NaN and {n_inf} infinite voxel values {when}; "
        "the data, the additive term or the model's factors (calibration, normalisation, frame "
        "duration) are beyond float32 range for this problem: rescale them (e.g. express the "
        "calibration in counts per Bq/mL·s)"
    )
