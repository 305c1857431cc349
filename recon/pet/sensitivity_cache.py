"""On-disk cache of PET sensitivity images, keyed by everything that determines them.

A listmode model's geometric sensitivity ``Gᵀ Pᵀ (attenuation × normalisation)`` covers every
LOR of the scanner (48 M for a DMI-like layout: about a minute on a 2-core CPU), yet it depends
only on the scanner and its sinogram layout, the image grid, the μ-map, the normalisation, the
resolution model, the backend and the code that computes it. :func:`load_or_compute` keys the
image by a SHA-256 of all of those (array bytes included; the source of the modules and kernels
that compute it too, so an upgraded projector never reuses an old image) and keeps it as a
``.npy`` file in the user's cache folder.

Where the cache lives: ``$RECON_CACHE_DIR`` if set (``off`` disables the cache), else
``$XDG_CACHE_HOME/recon``, else ``~/.cache/recon``; images go into its ``sensitivity/``
subfolder and can be deleted at any time. Files are written to a temporary name and renamed,
so concurrent runs never read a half-written image (two runs that miss at the same time both
compute it and the last rename wins; both files are identical). A file that cannot be read or
does not have the expected shape is ignored and recomputed; a cache folder that cannot be
written costs the saving only (a log line says so).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recon._files import save_npy_atomic
from recon._npy import load_npy
from recon.errors import ReconError

__all__ = ["Fingerprint", "cache_folder", "load_or_compute"]

log = logging.getLogger("recon")

#: Environment variable naming the cache folder (``off``, ``none`` or ``0``: no cache).
CACHE_ENV = "RECON_CACHE_DIR"
_OFF = {"off", "none", "0", "false", "no"}

# Bump when the file layout of the cache changes.
_FORMAT = "recon-sensitivity-v1"


def cache_folder() -> Path | None:
    """The folder holding cached sensitivity images, or None when caching is switched off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None:
        if value.strip().lower() in _OFF or not value.strip():
            return None
        return Path(value).expanduser() / "sensitivity"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "recon" / "sensitivity"


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """SHA-256 of the sources that compute a PET sensitivity image (Python and CUDA)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    sources = sorted(package.glob("*.py"))
    kernels = package.parent / "kernels"
    if not kernels.is_dir():
        kernels = package.parent.parent / "kernels"
    sources += sorted(kernels.glob("*.cu")) + sorted(kernels.glob("*.cuh"))
    for path in sources:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Fingerprint:
    """A SHA-256 over named parts: arrays (dtype, shape and bytes), numbers, strings, dataclasses.

    Parameters
    ----------
    kind : str
        What is fingerprinted (e.g. ``"listmode geometric sensitivity"``).
    """

    def __init__(self, kind: str) -> None:
        self._digest = hashlib.sha256()
        self.add("format", _FORMAT)
        self.add("kind", kind)
        self.add("code", _code_digest())

    def add(self, name: str, value: Any) -> Fingerprint:
        """Add ``value`` under ``name``; returns ``self``.

        Arrays (NumPy or CuPy) contribute dtype, shape and bytes (all of them: never a
        ``repr``, which elides the middle of large arrays); dataclasses their type and each
        public field in turn (so a scanner with another energy window, or a normalisation with
        one other crystal efficiency, is another key); dicts, lists and tuples their items;
        None, numbers and strings their ``repr``.
        """
        self._digest.update(f"\0{name}=".encode())
        if isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__"):
            host = value.get() if hasattr(value, "get") else value
            host = np.ascontiguousarray(host)
            self._digest.update(f"{host.dtype.str}{host.shape}".encode())
            self._digest.update(host.tobytes())
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            self._digest.update(type(value).__qualname__.encode())
            for item in dataclasses.fields(value):
                if not item.name.startswith("_"):
                    self.add(f"{name}.{item.name}", getattr(value, item.name))
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                self.add(f"{name}[{key!r}]", value[key])
        elif isinstance(value, (list, tuple)):
            self._digest.update(f"{type(value).__name__}{len(value)}".encode())
            for index, item in enumerate(value):
                self.add(f"{name}[{index}]", item)
        elif value is None or isinstance(value, (bool, int, float, str, np.generic)):
            self._digest.update(f"{type(value).__name__}:{value!r}".encode())
        else:
            raise TypeError(f"cannot fingerprint {type(value).__name__} ({name})")
        return self

    def hexdigest(self) -> str:
        """The key: 64 hexadecimal digits."""
        return self._digest.hexdigest()


def load_or_compute(
    key: str | None, shape: tuple[int, ...], compute: Callable[[], np.ndarray], what: str
) -> tuple[np.ndarray, str]:
    """The cached float32 image of ``key``, or ``compute()`` stored under it.

    Parameters
    ----------
    key : str or None
        :meth:`Fingerprint.hexdigest` of everything the image depends on (None: not cached).
    shape : tuple of int
        The image shape (a cached file of another shape is ignored).
    compute : callable
        Computes the image (a host float32 array of ``shape``) on a miss.
    what : str
        For log lines (e.g. ``"the sensitivity image"``).

    Returns
    -------
    image : ndarray
        Host float32 array of ``shape``.
    source : str
        ``"cache"`` (read from the cache), ``"computed"`` (computed and stored) or
        ``"computed, not cached"`` (the cache is off or could not be written).
    """
    folder = cache_folder()
    path = None if folder is None or key is None else folder / f"{key}.npy"
    if path is not None and path.is_file():
        try:
            image = load_npy(path, what)
            if image.shape == tuple(shape) and image.dtype == np.float32:
                log.info("%s read from the cache (%s)", what, path)
                return image, "cache"
            log.warning("ignoring the cached %s in %s: it has another shape or type", what, path)
        except (OSError, ReconError, ValueError) as error:
            log.warning("ignoring the unreadable cached %s in %s (%s)", what, path, error)
    image = np.ascontiguousarray(compute(), dtype=np.float32)
    if path is None:
        return image, "computed, not cached"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npy_atomic(path, image)
    except OSError as error:
        log.warning("could not cache %s in %s (%s); it will be recomputed next time", what,
                    path.parent, error)  # fmt: skip
        return image, "computed, not cached"
    log.info("%s cached in %s", what, path)
    return image, "computed"
