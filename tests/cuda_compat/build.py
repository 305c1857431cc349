"""Build CPU test harnesses for the CUDA kernels in ``kernels/*.cu`` with g++.

A harness is a small .cpp file that includes ``recon_cuda_compat.h``, then a kernel
source (``#include "spect.cu"``), and exports ``extern "C"`` functions that launch
the kernels with ``recon_launch``. :func:`build_harness` compiles it into a shared
library and loads it with ctypes, so tests can run the GPU code on a CPU-only CI.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
KERNELS_DIR = ROOT / "kernels"
COMPAT_DIR = Path(__file__).resolve().parent
HEADER = COMPAT_DIR / "recon_cuda_compat.h"
BUILD_DIR = COMPAT_DIR / "_build"  # git-ignored

GXX = "g++"
CXXFLAGS = ("-std=c++20", "-O2", "-shared", "-fPIC", "-pthread")

# Libraries loaded in this process, by output path: a harness is compiled and
# dlopen'ed once per test session.
_loaded: dict[Path, ctypes.CDLL] = {}


def gxx_available() -> bool:
    """True if g++ is on PATH (the compat layer needs it; tests skip otherwise)."""
    return shutil.which(GXX) is not None


def _source_hash(harness: Path) -> str:
    """Hash everything the harness may include, so editing a kernel forces a rebuild."""
    sources = [harness, HEADER]
    # Kernel sources in kernels/ and next to the header (e.g. example_kernels.cu).
    for folder in (KERNELS_DIR, COMPAT_DIR):
        if folder.is_dir():
            sources += sorted(p for p in folder.iterdir() if p.suffix in (".cu", ".cuh", ".h"))
    digest = hashlib.sha256(" ".join(CXXFLAGS).encode())
    for path in dict.fromkeys(sources):  # drop duplicates, keep order
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_harness(cpp_source: Path | str, name: str) -> ctypes.CDLL:
    """Compile ``cpp_source`` (if not already cached) and load it with ctypes.

    ``cpp_source`` is a path; a relative one is taken from the repository root.
    The library goes to ``tests/cuda_compat/_build/<name>-<hash>.so``. Include paths
    are this folder (the compat header) and ``kernels/``. The caller sets
    ``argtypes``/``restype`` on the functions it uses. Raises ``RuntimeError``
    with the compiler output if compilation fails.
    """
    harness = Path(cpp_source)
    if not harness.is_absolute():
        harness = ROOT / harness
    harness = harness.resolve()
    if not harness.is_file():
        raise FileNotFoundError(f"harness source not found: {harness}")

    out = BUILD_DIR / f"{name}-{_source_hash(harness)}.so"
    if out in _loaded:
        return _loaded[out]
    if not out.exists():
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        # Compile to a unique temporary name, then rename atomically: parallel
        # test runs (pytest-xdist, two checkouts) never see a half-written .so.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}-", suffix=".so", dir=BUILD_DIR)
        os.close(fd)
        cmd = [GXX, *CXXFLAGS, f"-I{COMPAT_DIR}", f"-I{KERNELS_DIR}", "-o", tmp, str(harness)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"g++ failed ({proc.returncode}) building {harness.name}:\n"
                    f"{' '.join(cmd)}\n{proc.stderr}"
                )
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(out))
    _loaded[out] = lib
    return lib


_CTYPES = {
    np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.float64): ctypes.c_double,
    np.dtype(np.int32): ctypes.c_int32,
}


def as_ptr(array: np.ndarray) -> ctypes._Pointer:
    """Pointer to the data of a C-contiguous float32/float64/int32 array.

    Refuses anything else rather than copy: a silent copy would make output arrays
    look untouched. The returned pointer keeps a reference to ``array``.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(array).__name__}")
    ctype = _CTYPES.get(array.dtype)
    if ctype is None:
        raise TypeError(f"unsupported dtype {array.dtype}; use float32, float64 or int32")
    if not array.flags.c_contiguous:
        raise ValueError("array must be C-contiguous (use np.ascontiguousarray)")
    return array.ctypes.data_as(ctypes.POINTER(ctype))
