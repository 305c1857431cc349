"""Say when numba is about to compile the CPU kernels, which takes 15-60 s on the first run."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from types import ModuleType

__all__ = ["announce_compilation"]

progress_log = logging.getLogger("recon.progress")
_announced: set[tuple[str, tuple[int, ...]]] = set()
_said: set[str] = set()  # modules whose compilation was announced


def _needs_compiling(dispatcher: object) -> bool:
    """True when a numba dispatcher has no compiled code in memory nor in its on-disk cache."""
    if getattr(dispatcher, "signatures", None):
        return False
    # numba's cache keeps an index file per function (numba.core.caching); without it the first
    # call compiles. The attribute names are numba internals, hence the cautious lookup.
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    index = getattr(cache_file, "_index_path", None)
    return not (isinstance(index, str) and os.path.exists(index))


def announce_compilation(module: ModuleType, what: str, kernels: Sequence[object] = ()) -> None:
    """Log one line (logger ``recon.progress``) before ``module``'s kernels are first compiled.

    Called when a model first uses the CPU kernels of ``module``; says nothing when numba has
    them already (in memory or in its cache), and says it at most once per process and module.
    ``kernels``: the dispatchers about to run, when the caller knows them (each set is looked
    at once); otherwise the module's cached entry points are, and the line is said only when
    none of them is compiled yet (a fresh cache): a module has kernels that a given use never
    calls (the quadratic prior's for a user of the relative difference prior), which stay
    uncompiled and would otherwise announce a compilation on every run.
    """
    key = (module.__name__, tuple(id(k) for k in kernels))
    if key in _announced or module.__name__ in _said:
        return
    _announced.add(key)
    from numba.core.registry import CPUDispatcher

    if kernels:
        if any(_needs_compiling(kernel) for kernel in kernels):
            _say(module, what)
        return
    found = [obj for obj in vars(module).values() if isinstance(obj, CPUDispatcher)]
    # The entry points are the cached kernels; inlined helpers are compiled into them.
    cached = [k for k in found if getattr(getattr(k, "_cache", None), "_cache_file", None)]
    if all(_needs_compiling(kernel) for kernel in cached or found):
        _say(module, what)


def _say(module: ModuleType, what: str) -> None:
    _said.add(module.__name__)
    progress_log.info(
        "compiling the CPU kernels for %s (numba; once, then cached: up to a minute)", what
    )
