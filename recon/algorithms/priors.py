"""Priors for penalised-likelihood reconstruction: the relative difference and quadratic priors.

A prior is a penalty ``R(x) ≥ 0`` on images, pairwise over the 26-neighbourhood of each voxel::

    R(x) = ½ Σ_j Σ_{k ∈ N(j)} w_jk κ_j κ_k φ(x_j, x_k)

Conventions (kept by every prior here):

- ``w_jk = 1 / d_jk`` with ``d_jk`` the distance in mm between the voxel centres, taken from the
  grid of the model the prior is used with, so anisotropic voxels are weighted by true distance
  (w in 1/mm);
- neighbours outside the grid are left out (no padding, no wrap-around), and so are those across
  the seams of a model that stacks independent images along z (``model.image_blocks``, e.g. one
  per isotope of :class:`recon.MultiIsotopeModel`) once the prior is bound to it
  (:meth:`Prior.for_model`, which :func:`recon.bsrem` calls): each image is then a grid of its own;
- ``κ`` are optional per-voxel weights (``kappa=``, an array of the grid's shape, or a callable
  ``kappa(model)``: :func:`sensitivity_kappa` makes β mean the same across count levels and
  positions, after Fessler & Rogers 1996 and Tsai et al. 2015/2018; :func:`hessian_kappa`, the
  log-likelihood's curvature at an image (Tsai et al. 2020), also weakens the penalty where the
  activity is high); default 1;
- ``R`` carries no data-independent constant and is 0 on constant images; ``β`` multiplies it in
  the objective ``Φ(x) = L(x) − β R(x)`` (:func:`recon.penalised_log_likelihood`).

:class:`RelativeDifferencePrior` (Nuyts et al., IEEE Trans. Nucl. Sci. 49:56-60, 2002) has
``φ(a, b) = (a − b)² / (a + b + γ|a − b| + ε)``: edge-preserving as γ grows, smooth at zero
through ``ε`` (absolute, in image units), and unchanged by a global scaling of ``x`` when ε is
scaled too. :class:`QuadraticPrior` has ``φ(a, b) = (a − b)²``.

Value, gradient and Hessian diagonal run as one kernel family: CUDA (``kernels/prior.cu``) on the
GPU and its numba mirror on the CPU (``_prior_cpu.py``, which visits each neighbour pair once),
on device images; only the value is a host float.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from recon._memory import page_aligned_copy, page_aligned_empty
from recon.algorithms.em_update import activity_image
from recon.backend import Backend, resolve_backend
from recon.errors import InputError, NumericalError
from recon.grid import ImageGrid

__all__ = [
    "Prior",
    "QuadraticPrior",
    "RelativeDifferencePrior",
    "KAPPA_CHOICES",
    "hessian_kappa",
    "kappa_for",
    "neighbour_weights",
    "sensitivity_kappa",
]

_VALUE, _GRADIENT, _HESSIAN = 0, 1, 2
#: Fixed-point steps of the tissue threshold (each moves it to a tenth of the mean above it; a
#: field of view 10x the body's volume, air up to 1 % of the tissue, settles within 3).
_TISSUE_LEVEL_STEPS = 5


def neighbour_weights(grid: ImageGrid) -> np.ndarray:
    """``w`` of the 27 offsets ``(dz, dy, dx) ∈ {−1, 0, 1}³``, index ``(dz+1)·9 + (dy+1)·3 +
    (dx+1)``: ``1 / distance`` in 1/mm (0 for the centre), float32 (a new array)."""
    return _weights_for(tuple(float(v) for v in grid.voxel_size_mm)).copy()


@functools.lru_cache(maxsize=32)
def _weights_for(voxel_size_mm: tuple[float, ...]) -> np.ndarray:
    """The weights of one voxel size, made once (BSREM asks for them on every subset);
    read-only."""
    dz, dy, dx = voxel_size_mm
    weights = np.zeros(27, np.float32)
    for i, (oz, oy, ox) in enumerate(np.ndindex(3, 3, 3)):
        distance = math.sqrt(((oz - 1) * dz) ** 2 + ((oy - 1) * dy) ** 2 + ((ox - 1) * dx) ** 2)
        weights[i] = 0.0 if distance == 0 else 1.0 / distance
    weights.flags.writeable = False
    return weights


def sensitivity_kappa(model: Any) -> Any:
    """Per-voxel prior weights ``κ_j = sqrt(s_j)`` from the model's sensitivity ``s = Pᵀ m``.

    With ``κ_j κ_k ≈ s_j`` the penalty's gradient scales with the sensitivity as the
    likelihood's does (``s_j (y/ȳ − 1)``), so β means the same whatever the calibration units,
    the scan duration (a scan twice as long doubles both) and the position in the field of view
    (Fessler & Rogers, IEEE Trans. Image Process. 5:1346, 1996, for uniform resolution; Tsai et
    al., Phys. Med. Biol. 60:1755, 2015, for the sensitivity-based weights of BSREM with the
    relative difference prior). For the relative difference prior, whose φ is homogeneous of
    degree 1, β is then a pure number (the README gives the ranges the contrast–noise benchmark
    found useful). Voxels the data do not see get 0. These are the weights of ``recon
    spect|pet --algorithm bsrem`` unless ``--kappa hessian`` asks for :func:`hessian_kappa`,
    which also takes the activity and the additive term into account.
    """
    xp = model.xp
    return xp.sqrt(xp.maximum(model.sensitivity(None), 0)).astype(np.float32)


def _tissue_level(xp: Any, values: Any) -> float:
    """The typical activity of an image's tissue: the median of the voxels (of those the data
    see) above a tenth of the mean of the voxels above that threshold (found by a few fixed-point
    steps from a tenth of the overall mean); 0 when nothing is positive. The threshold leaves
    out the empty field of view around the patient (tested up to 10x the body's volume; far
    larger, the threshold settles in the air's own noise), and a median is moved little by hot
    organs (a liver or spleen full of liposomes) that pull a mean up several-fold.
    """
    voxels = values.astype(np.float64)
    threshold = 0.1 * float(voxels.mean()) if voxels.size else 0.0
    if not threshold > 0:
        return 0.0
    for _ in range(_TISSUE_LEVEL_STEPS):
        threshold = 0.1 * float(voxels[voxels >= threshold].mean())
    return float(xp.median(voxels[voxels >= threshold]))


def hessian_kappa(model: Any, counts: Any, additive: Any, x: Any) -> Any:
    """Per-voxel prior weights from the curvature of the log-likelihood at an image ``x``.

    ``κ_j = sqrt(x̄ · [Aᵀ(y ⊙ A1 / ȳ²)]_j)`` with ``A = diag(m) P`` the model, ``ȳ = A x + a``
    and ``x̄`` the typical activity of the tissue in ``x`` (the median of the voxels the data
    see above a tenth of the mean of those above it, :func:`_tissue_level`; per stacked image of
    a model with ``image_blocks``). The bracket is the row sum of the negated Hessian of ``L``
    at ``x`` (Tsai et al., IEEE Trans. Med. Imaging 39:11-22, 2020, the "spatially-variant
    penalty strength"; STIR's ``compute_sqrt_Hessian_row_sum`` computes it without ``x̄``). The
    factor ``x̄`` keeps β a pure number, as with :func:`sensitivity_kappa`: ``κ²`` scales with
    the calibration units and the scan duration as the sensitivity does, and on noise-free data
    of a uniform image without an additive term the two weights are equal. Elsewhere
    ``κ² ≈ s · x̄ / x``: in tissue at the typical level β means what it means with the
    sensitivity weights, and the penalty is weaker where the activity is high, so that for the
    relative difference prior (whose curvature already falls as ``1/x``) hot lesions keep more
    of their contrast than with the sensitivity weights. An additive term (scatter, randoms)
    lowers the curvature, ``κ² ≈ s · x̄ / (x + a/A1)``, and so the penalty with it: the balance
    of prior and data, hence the resolution, stays what β sets, where the sensitivity weights
    smooth more as the background grows. In the contrast–noise benchmark (README) these weights
    put BSREM ahead of post-filtered OSEM for the smallest PET spheres, where the sensitivity
    weights left it behind.

    Parameters
    ----------
    model : SystemModel
        The model the prior will be used with (a listmode frame too: ``counts = frame.counts()``).
    counts, additive : arrays of the data shape
        Measured counts; additive term (None: the model's own).
    x : array of the image shape
        Where the curvature is taken, e.g. the OSEM start of BSREM (finite, ≥ 0, with activity
        in the voxels the data see).

    Returns
    -------
    array of the image shape (float32, on the model's device): 0 where the data see nothing.

    Raises
    ------
    InputError
        Data or image of the wrong shape; an image with a negative or non-finite voxel, or with
        no activity in (one of the stacked images') voxels the data see.
    NumericalError
        The curvature overflows float32 (counts where the model expects almost nothing).
    """
    xp = model.xp
    y = model.validate_data(counts, "counts")
    a = model.additive if additive is None else model.validate_data(additive, "additive")
    image = activity_image(model, x, "x")
    expected = model.forward(image)
    if a is not None:
        expected = expected + a
    # Bins the model expects nothing in (ȳ = 0: no line through the image, no additive term)
    # have no curvature to add.
    positive = expected > 0
    divisor = xp.where(positive, expected, np.float32(1.0))
    with np.errstate(over="ignore"):  # overflow is reported below, as a NumericalError
        weight = xp.where(positive, y * model.forward(xp.ones_like(image)), np.float32(0.0))
        weight = weight / divisor / divisor
        row_sum = model.back(weight.astype(np.float32, copy=False))
    blocks = int(getattr(model, "image_blocks", 1))
    seen = model.sensitivity(None) > 0
    scale = xp.empty(image.shape, dtype=np.float32)
    for b, (values, sees) in enumerate(
        zip(xp.split(image, blocks), xp.split(seen, blocks), strict=True)
    ):
        level = _tissue_level(xp, values[sees])
        if not level > 0:
            where = f" (stacked image {b + 1} of {blocks})" if blocks > 1 else ""
            raise InputError(
                f"hessian_kappa: x has no activity in the voxels the data see{where}; take the "
                "curvature at a reconstruction (e.g. two OSEM iterations) or use "
                "sensitivity_kappa"
            )
        scale[b * values.shape[0] : (b + 1) * values.shape[0]] = level
    with np.errstate(over="ignore", invalid="ignore"):
        kappa = xp.sqrt(xp.maximum(row_sum * scale, 0)).astype(np.float32)
    if not bool(xp.all(xp.isfinite(kappa))):
        raise NumericalError(
            "hessian_kappa: the curvature overflowed float32 (counts in bins the model expects "
            "almost nothing in); check the additive term and the calibration, or use "
            "sensitivity_kappa"
        )
    return kappa


#: The per-voxel weights the commands offer (``--kappa``), the default first.
KAPPA_CHOICES = ("sensitivity", "hessian")


def kappa_for(choice: str, model: Any, counts: Any, additive: Any, start: Any) -> Any:
    """The weights named by ``choice`` (one of :data:`KAPPA_CHOICES`) for a prior of ``model``:
    :func:`sensitivity_kappa` (made by :meth:`Prior.for_model`) or :func:`hessian_kappa` at the
    image ``start`` (made now)."""
    if choice == "sensitivity":
        return sensitivity_kappa
    if choice == "hessian":
        return hessian_kappa(model, counts, additive, start)
    raise InputError(f"kappa must be one of {', '.join(KAPPA_CHOICES)}, got {choice!r}")


class Prior:
    """A pairwise prior ``R(x)`` (module docstring); subclasses set :attr:`kind` and φ.

    Parameters
    ----------
    beta : float
        Strength ``β ≥ 0`` of the penalty in ``Φ = L − β R``.
    kappa : array of the grid's shape, callable, or None
        Per-voxel weights ``κ`` (≥ 0), or ``kappa(model)`` that makes them (e.g.
        :func:`sensitivity_kappa`), evaluated once by :meth:`for_model`. The array is checked
        (finite, ≥ 0) at the first evaluation and kept: assign a new array rather than changing
        this one in place. Voxels with ``κ = 0`` have no prior terms (0 in the gradient).
    """

    kind: int = 0
    #: Whether φ is defined for non-negative images only (``check=`` refuses others).
    non_negative_images: bool = False
    name: str = "prior"
    gamma: float = 0.0
    epsilon: float = 0.0
    #: Independent images stacked along z (set by :meth:`for_model` from ``model.image_blocks``).
    image_blocks: int = 1

    def __init__(self, beta: float, kappa: Any = None) -> None:
        beta = float(beta)
        if not (math.isfinite(beta) and beta >= 0):
            raise InputError(f"beta must be a finite number >= 0, got {beta!r}")
        self.beta = beta
        self.kappa = kappa

    def __repr__(self) -> str:
        extra = "" if self.kind == 0 else f", gamma={self.gamma:g}, epsilon={self.epsilon:g}"
        return f"{type(self).__name__}(beta={self.beta:g}{extra})"

    def for_model(self, model: Any) -> Prior:
        """This prior bound to ``model``: ``κ`` made for it when ``kappa`` is a callable, and the
        model's :attr:`~recon.system_model.ModelBase.image_blocks` (independent images stacked
        along z, whose seams the neighbourhood does not cross). ``self`` when nothing changes."""
        blocks = int(getattr(model, "image_blocks", 1))
        if not callable(self.kappa) and blocks == self.image_blocks:
            return self
        made = self._copy()
        if callable(self.kappa):
            made.kappa = self.kappa(model)
        made.image_blocks = blocks
        return made

    def _copy(self) -> Prior:
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        return copy

    # ------------------------------------------------------------------ evaluation
    def value(
        self, x: Any, grid: ImageGrid, backend: Backend | None = None, *, check: bool = True
    ) -> float:
        """``R(x)`` for an image ``x`` (float32) on ``grid``.

        ``backend``: where ``x`` lives (a model's ``backend``); default the CPU, for numpy arrays.
        ``check``: refuse (InputError) an image outside the prior's domain (for the relative
        difference prior a negative or NaN voxel, where φ's denominator can vanish); one
        reduction over the image, which BSREM, whose images are ≥ 0, skips with ``False``.
        """
        terms = self._terms(x, grid, backend, _VALUE, check)
        return 0.5 * float(terms.sum(dtype=np.float64))

    def gradient(
        self, x: Any, grid: ImageGrid, backend: Backend | None = None, *, check: bool = True
    ) -> Any:
        """``∇R(x)``: an image of the same shape and device as ``x`` (``check`` as for
        :meth:`value`)."""
        return self._terms(x, grid, backend, _GRADIENT, check)

    def hessian_diagonal(
        self, x: Any, grid: ImageGrid, backend: Backend | None = None, *, check: bool = True
    ) -> Any:
        """The diagonal of ``∇²R(x)`` (the curvature of a separable surrogate at ``x``; ≥ 0 for
        images ≥ 0; ``check`` as for :meth:`value`)."""
        return self._terms(x, grid, backend, _HESSIAN, check)

    def _kappa(self, x: Any, xp: Any) -> tuple[Any, bool]:
        if self.kappa is None:
            return xp.zeros((1, 1, 1), np.float32), False
        if callable(self.kappa):
            raise InputError(
                "this prior's kappa is a function of the model: use prior.for_model(model) first "
                "(recon.bsrem does)"
            )
        checked = self.__dict__.get("_checked_kappa")
        if checked is not None and checked[0] is self.kappa and checked[1] is xp:
            kappa = checked[2]  # checked at the first call: BSREM calls once per subset
        else:
            kappa = xp.ascontiguousarray(xp.asarray(self.kappa, dtype=np.float32))
            if xp is np:  # page-aligned, as BSREM's images (recon._memory.page_aligned_empty)
                kappa = page_aligned_copy(kappa)
            if not bool(xp.all(xp.isfinite(kappa))) or float(kappa.min()) < 0:
                raise InputError("kappa must be finite and non-negative")
            self.__dict__["_checked_kappa"] = (self.kappa, xp, kappa)
        if tuple(kappa.shape) != tuple(x.shape):
            raise InputError(f"kappa has shape {tuple(kappa.shape)}, the image {tuple(x.shape)}")
        return kappa, True

    def _terms(
        self, x: Any, grid: ImageGrid, backend: Backend | None, what: int, check: bool
    ) -> Any:
        backend = resolve_backend("cpu") if backend is None else backend
        if not backend.owns(x):
            raise InputError(
                f"the image is not an array of the {backend.name} backend; pass the model's "
                "backend (prior.value(x, model.grid, model.backend))"
            )
        xp = backend.xp
        if tuple(x.shape) != tuple(grid.shape):
            raise InputError(f"image has shape {tuple(x.shape)}, the grid {grid.shape}")
        blocks = int(self.image_blocks)
        if blocks < 1 or grid.shape[0] % blocks:
            raise InputError(
                f"the prior is bound to a model of {blocks} stacked images, but the grid has "
                f"{grid.shape[0]} slices; bind it to this model (prior.for_model(model))"
            )
        image = xp.ascontiguousarray(x, dtype=np.float32)
        if check and self.non_negative_images and not float(image.min()) >= 0:
            raise InputError(
                f"{type(self).__name__} is defined on images >= 0; this one has negative or NaN "
                "voxels (clip them, or use QuadraticPrior for signed images)"
            )
        kappa, has_kappa = self._kappa(image, xp)
        weights = xp.asarray(_weights_for(tuple(float(v) for v in grid.voxel_size_mm)))
        out = page_aligned_empty(image.shape) if xp is np else xp.empty_like(image)
        args = (kappa, has_kappa, weights, np.int32(grid.shape[0] // blocks), np.int32(self.kind),
                np.float32(self.gamma), np.float32(self.epsilon), np.int32(what), out)  # fmt: skip
        if backend.is_gpu:
            from recon.algorithms import _prior_gpu

            _prior_gpu.prior_terms(backend, image, *args)
        else:
            from recon._jit import announce_compilation
            from recon.algorithms import _prior_cpu

            kernel = _prior_cpu.kernel_for(self.kind, what)
            announce_compilation(_prior_cpu, "the priors", [kernel])
            _prior_cpu.prior_terms(image, *args)
        return out


class QuadraticPrior(Prior):
    """The quadratic prior: ``φ(a, b) = (a − b)²`` (module docstring for ``R`` and ``w``).

    Parameters
    ----------
    beta : float
        Strength ``β ≥ 0``.
    kappa : array or callable, optional
        Per-voxel weights (see :class:`Prior`).
    """

    kind = 0
    name = "quadratic"


class RelativeDifferencePrior(Prior):
    """The relative difference prior (Nuyts et al. 2002):
    ``φ(a, b) = (a − b)² / (a + b + γ|a − b| + ε)``.

    Parameters
    ----------
    beta : float
        Strength ``β ≥ 0``.
    gamma : float
        Edge preservation ``γ ≥ 0`` (2 is the usual choice: differences far above the local mean
        are penalised about linearly instead of quadratically).
    epsilon : float
        ``ε > 0`` in image units: keeps φ smooth where the image is near 0 (a small fraction of
        the background level, e.g. 1e-3 of it).
    kappa : array or callable, optional
        Per-voxel weights (see :class:`Prior`).
    """

    kind = 1
    non_negative_images = True
    name = "relative difference"

    def __init__(
        self, beta: float, gamma: float = 2.0, epsilon: float = 1e-3, kappa: Any = None
    ) -> None:
        super().__init__(beta, kappa)
        gamma, epsilon = float(gamma), float(epsilon)
        if not (math.isfinite(gamma) and gamma >= 0):
            raise InputError(f"gamma must be a finite number >= 0, got {gamma!r}")
        if not (math.isfinite(epsilon) and epsilon > 0):
            raise InputError(f"epsilon must be a finite number > 0 (image units), got {epsilon!r}")
        self.gamma, self.epsilon = gamma, epsilon
