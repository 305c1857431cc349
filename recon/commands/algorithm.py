"""The reconstruction algorithm the commands run: OSEM, BSREM or OSL-MAP, from their options.

Shared by ``recon spect`` and ``recon pet``: the options (``--algorithm``, ``--beta``,
``--gamma``, ``--epsilon``, ``--prior``), their checks, and one function that reconstructs a
system model's data with the chosen algorithm and says what it did (for ``summary.json``).

BSREM and OSL-MAP start from two OSEM iterations with the same subsets and weight the prior per
voxel (``--kappa``): by default from the model's sensitivity
(:func:`recon.algorithms.priors.sensitivity_kappa`: β means about the same at every count level,
and every activity level is smoothed alike, so lesions of different uptake keep comparable
recovery), or from the log-likelihood's curvature at that start
(:func:`recon.algorithms.priors.hessian_kappa`: the penalty is weaker where the activity is high,
which kept more of small hot spheres' contrast at the same noise in the contrast-noise benchmark,
at the price of a recovery that depends on the uptake). ε (the relative difference prior's
smoothness at zero) is 10⁻³ of the mean of the start over the voxels the data see (of the
faintest image when the model stacks several, one per isotope), unless ``--epsilon`` says.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from recon.algorithms import osem
from recon.algorithms.map import bsrem, osl_map
from recon.algorithms.priors import (
    KAPPA_CHOICES,
    Prior,
    QuadraticPrior,
    RelativeDifferencePrior,
    kappa_for,
)
from recon.commands.common import note
from recon.commands.options import Option
from recon.errors import InputError
from recon.image import Image

__all__ = ["ALGORITHM_OPTIONS", "algorithm_summary", "check_algorithm", "reconstruct"]

#: Iterations when --iterations is not given, per algorithm (MAP converges slowly from OSEM).
_DEFAULT_ITERATIONS = {"bsrem": 30, "oslmap": 10}
_START_ITERATIONS = 2
_EPSILON_FRACTION = 1e-3
_RDP = "rdp"  # the prior when --prior is not given
_GAMMA = 2.0  # the relative difference prior's γ when --gamma is not given
#: What each --kappa choice is, for summary.json.
_KAPPA_TEXT = {
    "hessian": "hessian: sqrt(tissue level x row sum of the log-likelihood's Hessian, both of "
    "the OSEM start) (recon.algorithms.priors.hessian_kappa)",
    "sensitivity": "sensitivity: sqrt(sensitivity) (recon.algorithms.priors.sensitivity_kappa)",
}

ALGORITHM_OPTIONS = (
    Option("algorithm", "str",
           "osem (maximum likelihood, stopped early), bsrem (penalised likelihood that converges: "
           "relative difference prior by default) or oslmap (one-step-late MAP; may not "
           "converge)", choices=("osem", "bsrem", "oslmap"), default="osem"),
    Option("prior", "str", "the penalty of bsrem/oslmap", choices=("rdp", "quadratic"),
           default_text=_RDP),
    Option("beta", "float",
           "penalty strength β of bsrem/oslmap (required with them; larger is smoother)",
           minimum=0.0),
    Option("gamma", "float", "edge preservation γ of the relative difference prior",
           minimum=0.0, default_text=f"{_GAMMA:g}"),
    Option("epsilon", "float",
           "ε of the relative difference prior, in image units", minimum=0.0, above=True,
           default_text="1e-3 x the mean of the OSEM start over the voxels the data see"),
    Option("kappa", "str",
           "per-voxel weights of the prior of bsrem/oslmap: sensitivity (sqrt of the "
           "sensitivity: every activity smoothed alike) or hessian (the log-likelihood's "
           "curvature at the OSEM start: weaker where the activity is high, more contrast for "
           "small hot lesions, recovery that depends on the uptake)", choices=KAPPA_CHOICES,
           default_text="sensitivity"),
)  # fmt: skip


def check_algorithm(args: argparse.Namespace, osem_iterations: int) -> None:
    """Refuse option combinations that do not go together (an option of the prior given where
    no prior, or another prior, runs: it would be ignored); fill the defaults that depend on the
    algorithm (iterations, prior, γ)."""
    if args.algorithm == "osem":
        for name in ("beta", "prior", "gamma", "epsilon", "kappa"):
            if getattr(args, name) is not None:
                raise InputError(f"--{name} applies to --algorithm bsrem or oslmap, not to osem")
    elif args.prior == "quadratic":
        for name in ("gamma", "epsilon"):
            if getattr(args, name) is not None:
                raise InputError(
                    f"--{name} applies to the relative difference prior (--prior rdp), not to "
                    "--prior quadratic"
                )
    if args.algorithm != "osem" and args.beta is None:
        raise InputError(
            f"--algorithm {args.algorithm} needs --beta, the penalty strength (with the default "
            "weights: try 0.01-0.03 for SPECT, 0.1-0.3 for PET, and compare noise and contrast; "
            "larger is smoother and biases VOI means more, see the README)"
        )
    if args.iterations is None:
        args.iterations = _DEFAULT_ITERATIONS.get(args.algorithm, osem_iterations)
    if args.algorithm != "osem":
        args.prior = args.prior or _RDP
        args.gamma = _GAMMA if args.gamma is None else args.gamma


def _prior(
    args: argparse.Namespace, start: Image, model: Any, counts: Any, additive: Any
) -> tuple[Prior, str]:
    """The prior of ``args`` for ``model``, and what its weights are (for summary.json)."""
    choice = getattr(args, "kappa", None) or KAPPA_CHOICES[0]
    kappa = kappa_for(choice, model, counts, additive, start.data)
    if args.prior == "quadratic":
        return QuadraticPrior(args.beta, kappa=kappa), _KAPPA_TEXT[choice]
    epsilon = args.epsilon
    if epsilon is None:
        values = np.asarray(start)
        seen = np.asarray(model.backend.to_host(model.sensitivity(None))) > 0
        # One mean per stacked image (per isotope of a multi-isotope model), the smallest
        # positive one taken, so that ε stays small against the faintest image too.
        blocks = int(getattr(model, "image_blocks", 1))
        means = [
            float(v[s].mean())
            for v, s in zip(np.split(values, blocks), np.split(seen, blocks), strict=True)
            if s.any() and float(v[s].mean()) > 0
        ]
        mean = min(means) if means else float(values.mean())
        epsilon = max(_EPSILON_FRACTION * mean, 1e-30)
    prior = RelativeDifferencePrior(args.beta, gamma=args.gamma, epsilon=epsilon, kappa=kappa)
    return prior, _KAPPA_TEXT[choice]


def reconstruct(
    model: Any,
    counts: Any,
    additive: Any,
    args: argparse.Namespace,
    post_filter_fwhm_mm: float | None = None,
    info: dict[str, Any] | None = None,
) -> Image:
    """``counts`` of ``model`` reconstructed with ``args.algorithm`` (module docstring)."""
    if args.algorithm == "osem":
        image = osem(
            model, counts, additive=additive, iterations=args.iterations, subsets=args.subsets,
            post_filter_fwhm_mm=post_filter_fwhm_mm,
        )  # fmt: skip
    else:
        start = osem(
            model, counts, additive=additive, iterations=_START_ITERATIONS, subsets=args.subsets,
            progress=False,
        )  # fmt: skip
        prior, weights = _prior(args, start, model, counts, additive)
        run = bsrem if args.algorithm == "bsrem" else osl_map
        image = run(
            model, counts, additive=additive, prior=prior, iterations=args.iterations,
            subsets=args.subsets, x0=start,
        )  # fmt: skip
        image.info["prior_weights"] = weights
        if post_filter_fwhm_mm:
            from recon.algorithms.filters import gaussian_filter_fwhm

            voxel = model.grid.voxel_size_mm
            image = image.with_data(gaussian_filter_fwhm(image.data, post_filter_fwhm_mm, voxel))
            image.info["post_filter_fwhm_mm"] = post_filter_fwhm_mm
    if info:
        image.info.update(info)
    return image


def algorithm_summary(image: Image) -> dict[str, Any]:
    """What ran, for ``summary.json``: algorithm, iterations, subsets, and for MAP the prior and
    the objective after each iteration."""
    info = image.info
    summary: dict[str, Any] = {
        "algorithm": info.get("algorithm"), "iterations": info.get("iterations"),
        "subsets": info.get("subsets"),
    }  # fmt: skip
    record = info.get("map")
    if record is not None:
        summary["prior"] = info.get("prior")
        summary["prior_weights"] = info.get("prior_weights")
        summary["beta"] = record.beta
        summary["relaxation"] = {"alpha0": record.relaxation, "tau": record.relaxation_decay}
        summary["objective"] = list(record.objective)
        if record.algorithm == "OSL-MAP":
            summary["floored_voxels"] = list(record.floored_voxels)
            if record.floored_voxels and record.floored_voxels[-1]:
                note(
                    f"OSL-MAP floored its denominator in {record.floored_voxels[-1]} voxels in "
                    "the last iteration: beta is too large for one-step-late; use a smaller "
                    "--beta or --algorithm bsrem"
                )
        summary["start"] = f"{_START_ITERATIONS} OSEM iterations"
    return summary
