"""Estimating an image-dependent additive term (scatter) by alternating with reconstruction.

The scatter of an emission study depends on the activity, which is what is being reconstructed;
the usual answer (Watson 2000; STIR's ScatterEstimation) alternates: reconstruct with the
additive term known so far, estimate scatter from that image, reconstruct again. This module is
the loop, free of any modality: the estimator (e.g. :class:`recon.pet.ScatterEstimation`) knows
the model, its data and how to turn an image into an additive term; this loop reconstructs with
:func:`recon.osem` (data-shaped additive counts) or :func:`recon.lm_osem` (a listmode model: the
per-prompt additive rate), each round starting from the previous round's image.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from recon.algorithms.em import osem
from recon.algorithms.listmode import lm_osem
from recon.errors import InputError
from recon.image import Image

__all__ = ["AdditiveEstimator", "ScatterEstimate", "estimate_scatter"]

log = logging.getLogger("recon")


class AdditiveEstimator(Protocol):
    """What :func:`estimate_scatter` needs of an estimator (e.g. ``recon.pet.ScatterEstimation``).

    Attributes
    ----------
    model : object
        The system model (a listmode model when ``kind`` is ``"listmode"``).
    data : object
        Its data: counts of the model's data shape, or the listmode events.
    kind : str
        ``"sinogram"`` or ``"listmode"``.
    rounds : list
        One report per estimate, each with a ``summary()`` line.
    """

    model: Any
    data: Any
    kind: str
    rounds: list[Any]

    def initial_additive(self) -> Any:
        """The additive term before any estimate (e.g. randoms; None for none)."""

    def __call__(self, image: Any) -> Any:
        """The additive term for the activity estimate ``image``."""


@dataclass
class ScatterEstimate:
    """The result of :func:`estimate_scatter`.

    Attributes
    ----------
    images : list of Image
        ``images[0]`` is reconstructed with the initial additive term (randoms only), and
        ``images[k]`` with the k-th scatter estimate; ``images[-1]`` is the final image.
    additives : list of device arrays
        The additive term each image was reconstructed with (``additives[0]`` may be None).
    reports : list
        The estimator's report of each estimate (e.g. :class:`recon.pet.ScatterRound`: scatter
        fraction, tail-fit scales, fallbacks taken).
    """

    images: list[Image]
    additives: list[Any]
    reports: list[Any] = field(default_factory=list)

    @property
    def image(self) -> Image:
        """The final image (reconstructed with the final additive term)."""
        return self.images[-1]

    @property
    def additive(self) -> Any:
        """The final additive term (randoms + scatter, in the model's form)."""
        return self.additives[-1]


def estimate_scatter(
    estimator: AdditiveEstimator,
    rounds: int = 3,
    iterations: int = 2,
    subsets: int = 8,
    *,
    first_iterations: int | None = None,
    progress: bool | None = None,
) -> ScatterEstimate:
    """Alternate reconstruction and scatter estimation (reconstruct → estimate → reconstruct).

    Parameters
    ----------
    estimator : AdditiveEstimator
        E.g. ``recon.pet.ScatterEstimation(model, counts, randoms)``.
    rounds : int
        Scatter estimates (3-5 are usual: the estimate depends on the image only through its
        smooth scatter distribution, which settles quickly).
    iterations, subsets : int
        OSEM (or LM-OSEM) passes and subsets of each reconstruction after the first; each
        starts from the previous image.
    first_iterations : int, optional
        Passes of the first reconstruction (default: ``iterations``).
    progress : bool, optional
        Print one line per round on stderr (default: when stderr is a terminal); the same
        lines are logged at INFO level on the ``recon`` logger in any case.

    Returns
    -------
    ScatterEstimate
        Every round's image and additive term, and the estimator's reports.

    Raises
    ------
    InputError
        ``rounds`` not a positive integer, or an estimator of unknown kind.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InputError(f"rounds must be a positive integer, got {rounds!r}")
    kind = getattr(estimator, "kind", None)
    if kind not in ("sinogram", "listmode"):
        raise InputError(f"the estimator's kind must be 'sinogram' or 'listmode', got {kind!r}")
    show = sys.stderr.isatty() if progress is None else bool(progress)

    def say(message: str) -> None:
        log.info("scatter estimation: %s", message)
        if show:
            print(f"scatter estimation: {message}", file=sys.stderr)

    def reconstruct(additive: Any, x0: Any, passes: int) -> Image:
        if kind == "listmode":
            return lm_osem(
                estimator.model, estimator.data, iterations=passes, subsets=subsets,
                additive_rate=additive, frame_start_s=getattr(estimator, "frame_start_s", None),
                frame_duration_s=getattr(estimator, "frame_duration_s", None), x0=x0,
                progress=False,
            )  # fmt: skip
        return osem(
            estimator.model, estimator.data, additive=additive, iterations=passes,
            subsets=subsets, x0=x0, progress=False,
        )  # fmt: skip

    additive = estimator.initial_additive()
    image = reconstruct(
        additive, None, iterations if first_iterations is None else first_iterations
    )
    images, additives = [image], [additive]
    say(f"round 0/{rounds}: reconstructed without scatter correction")
    for k in range(1, rounds + 1):
        additive = estimator(image)
        report = estimator.rounds[-1] if estimator.rounds else None
        image = reconstruct(additive, image.data, iterations)
        images.append(image)
        additives.append(additive)
        line = report.summary() if hasattr(report, "summary") else "estimated"
        say(f"round {k}/{rounds}: {line}")
    reports = list(estimator.rounds[-rounds:])
    return ScatterEstimate(images, additives, reports)
