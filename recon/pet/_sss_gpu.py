"""CuPy launcher of the single-scatter kernel in ``kernels/sss.cu`` (the GPU twin of ``_sss_cpu``).

CuPy does not check raw-kernel arguments, so every array is checked and every scalar passed as an
explicit numpy type; ``SssTof`` is passed by value as a one-element structured array of the
struct's layout (:data:`SSS_TOF`, checked against the CUDA source compiled by g++ in the tests).
This module never imports CuPy itself: it uses the backend's array module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recon.backend import Backend, get_kernel
from recon.backend import check_kernel_array as _check

_SOURCE = "sss.cu"
_THREADS = 128  # one thread per detector pair

#: ``struct SssTof`` of kernels/sss.cu (4-byte fields, C alignment).
SSS_TOF = np.dtype(
    [("n_tof", np.int32), ("width", np.float32), ("n_edges", np.int32), ("step", np.float32)],
    align=True,
)


def sss_pairs(
    backend: Backend,
    det_a: Any,
    det_b: Any,
    det_pos: Any,
    det_normal: Any,
    point_pos: Any,
    point_weight: Any,
    att: Any,
    emis: Any,
    cum: Any,
    lut: Any,
    tof: Any,
    out: Any,
) -> None:
    """Launch ``sss_pairs`` (arguments as in :func:`recon.pet._sss_cpu.sss_pairs`; ``tof`` is
    that module's ``SssTof``)."""
    n_pairs = int(det_a.shape[0])
    n_det = int(det_pos.shape[0])
    n_points = int(point_pos.shape[0])
    n_lut = int(lut.shape[0])
    n_tof = int(tof.n_tof)
    _check(backend, "det_a", det_a, np.int32, (n_pairs,))
    _check(backend, "det_b", det_b, np.int32, (n_pairs,))
    _check(backend, "det_pos", det_pos, np.float32, (n_det, 3))
    _check(backend, "det_normal", det_normal, np.float32, (n_det, 3))
    _check(backend, "point_pos", point_pos, np.float32, (n_points, 3))
    _check(backend, "point_weight", point_weight, np.float32, (n_points,))
    _check(backend, "att", att, np.float32, (n_points, n_det))
    _check(backend, "emis", emis, np.float32, (n_points, n_det))
    _check(backend, "cum", cum, np.float32, None)
    if n_tof:
        _check(backend, "cum", cum, np.float32, (n_points, n_det, int(tof.n_edges)))
    _check(backend, "lut", lut, np.float32, (n_lut, 2))
    _check(backend, "out", out, np.float32, (n_pairs, n_tof) if n_tof else (n_pairs,))
    if n_pairs == 0 or n_points == 0:
        return
    tof_struct = np.array(
        [(np.int32(n_tof), np.float32(tof.width), np.int32(tof.n_edges), np.float32(tof.step))],
        SSS_TOF,
    )
    kernel = get_kernel(backend, _SOURCE, "sss_pairs")
    with backend.on_device():
        kernel(
            ((n_pairs + _THREADS - 1) // _THREADS,), (_THREADS,),
            (det_a, det_b, np.int32(n_pairs), det_pos, det_normal, np.int32(n_det), point_pos,
             point_weight, np.int32(n_points), att, emis, cum, lut, np.int32(n_lut), tof_struct,
             out),
        )  # fmt: skip
