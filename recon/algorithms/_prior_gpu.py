"""CuPy launcher of the prior kernel in ``kernels/prior.cu`` (mirror of ``_prior_cpu.py``).

CuPy does not check raw-kernel arguments, so every array is checked and every scalar passed as an
explicit numpy type.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import Backend, get_kernel
from recon.backend import check_kernel_array as _check

_SOURCE = "prior.cu"
_THREADS = 256


def prior_terms(
    backend: Backend,
    x: Any,
    kappa: Any,
    has_kappa: bool,
    weights: Any,
    z_block: int,
    kind: int,
    gamma: float,
    eps: float,
    what: int,
    out: Any,
) -> None:
    """Launch ``prior_terms`` over every voxel of ``x`` (arguments as in ``_prior_cpu``)."""
    shape = tuple(int(n) for n in x.shape)
    _check(backend, "x", x, np.float32, shape)
    _check(backend, "kappa", kappa, np.float32, shape if has_kappa else None)
    _check(backend, "weights", weights, np.float32, (27,))
    _check(backend, "out", out, np.float32, shape)
    nz, ny, nx = shape
    if not (1 <= int(z_block) <= nz and nz % int(z_block) == 0):
        raise ValueError(f"z_block {z_block} does not divide the image's {nz} slices")
    n = nz * ny * nx
    kernel = get_kernel(backend, _SOURCE, "prior_terms")
    kernel(
        ((n + _THREADS - 1) // _THREADS,), (_THREADS,),
        (x, kappa, np.int32(has_kappa), np.int32(nz), np.int32(ny), np.int32(nx), weights,
         np.int32(z_block), np.int32(kind), np.float32(gamma), np.float32(eps), np.int32(what),
         out),
    )  # fmt: skip
