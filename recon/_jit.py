"""Say when numba is about to compile the CPU kernels, which takes 15-60 s on the first run."""

from __future__ import annotations

import logging
import os
from types import ModuleType

__all__ = ["announce_compilation"]

progress_log = logging.getLogger("recon.progress")
_announced: set[str] = set()


def _needs_compiling(dispatcher: object) -> bool:
    """True when a numba dispatcher has no compiled code in memory nor in its on-disk cache."""
    if getattr(dispatcher, "signatures", None):
        return False
    # numba's cache keeps an index file per function (numba.core.caching); without it the first
    # call compiles. The attribute names are numba internals, hence the cautious lookup.
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    index = getattr(cache_file, "_index_path", None)
    return not (isinstance(index, str) and os.path.exists(index))


def announce_compilation(module: ModuleType, what: str) -> None:
    """Log one line (logger ``recon.progress``) before ``module``'s kernels are first compiled.

    Called when a model first uses the CPU kernels of ``module``; says nothing when numba has
    them already (in memory or in its cache), and says it at most once per process and module.
    """
    if module.__name__ in _announced:
        return
    _announced.add(module.__name__)
    from numba.core.registry import CPUDispatcher

    kernels = [obj for obj in vars(module).values() if isinstance(obj, CPUDispatcher)]
    # The entry points are the cached kernels; inlined helpers are compiled into them.
    cached = [k for k in kernels if getattr(getattr(k, "_cache", None), "_cache_file", None)]
    if any(_needs_compiling(kernel) for kernel in cached or kernels):
        progress_log.info(
            "compiling the CPU kernels for %s (numba; once, then cached: up to a minute)", what
        )
