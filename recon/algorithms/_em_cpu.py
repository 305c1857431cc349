"""Numba kernel of the guarded EM update on the CPU: :func:`recon.algorithms.em_update.em_apply`
in one pass over the image.

numpy forms ``x · correction · inv_sens`` and its guards in five passes and three temporaries;
for listmode subsets of a few ten thousand events these image passes cost as much as the
events themselves. The arithmetic is that of numpy's float32 expression, in the same order, so
the result is the same to the bit.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(parallel=True, fastmath=False, cache=True, nogil=True, error_model="numpy")
def em_apply(x, correction, inv_sens, smallest, out):
    """``out = x · correction · inv_sens`` (float32, rounded after each product), 0 where that is
    below ``smallest`` or ``x`` is 0; NaN stays NaN. All arrays float32 of one shape."""
    xf = x.reshape(-1)
    cf = correction.reshape(-1)
    sf = inv_sens.reshape(-1)
    of = out.reshape(-1)
    zero = np.float32(0.0)
    for j in nb.prange(xf.size):
        xj = xf[j]
        u = (xj * cf[j]) * sf[j]
        if u < smallest or xj == zero:
            u = zero
        of[j] = u
