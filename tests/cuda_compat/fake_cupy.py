"""Run the CuPy launch code without a GPU.

``FakeGpuBackend`` is a GPU-named backend whose arrays are numpy arrays, and ``fake_get_kernel``
returns kernels that run the real ``kernels/*.cu`` sources through the g++ compatibility header
over exactly the grid and block the launcher asked for. Each launch checks its arguments the way
the CUDA ABI will read them: pointers must be C-contiguous arrays of the parameter's element type
and scalars must be ``np.int32`` / ``np.float32`` (CuPy turns a Python ``int`` into a 64-bit
integer and a ``float`` into a double, which a kernel taking ``int``/``float`` would misread).
So the launchers in ``recon/*/_gpu.py`` are executed and checked in CI.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recon.backend import Backend
from tests.cuda_compat.build import BUILD_DIR, KERNELS_DIR, build_harness

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{', re.S)
_POINTER_TYPES = {"float": np.float32, "int": np.int32, "double": np.float64}
_SCALAR_TYPES = {"int": (np.int32, ctypes.c_int), "float": (np.float32, ctypes.c_float)}


@dataclass(frozen=True)
class _Param:
    name: str
    base: str  # float, int, double
    pointer: bool


def _parse_params(text: str) -> list[_Param]:
    params = []
    for raw in text.split(","):
        words = raw.replace("*", " * ").replace("__restrict__", " ").split()
        words = [w for w in words if w not in ("const", "unsigned")]
        pointer = "*" in words
        words = [w for w in words if w != "*"]
        params.append(_Param(name=words[-1], base=words[0], pointer=pointer))
    return params


def kernel_signatures(filename: str) -> dict[str, tuple[list[_Param], bool]]:
    """Parameters of every ``extern "C" __global__`` kernel in ``kernels/filename``, and whether
    its body uses ``__syncthreads()`` (crudely: up to the next kernel)."""
    source = (KERNELS_DIR / filename).read_text()
    matches = list(_SIGNATURE.finditer(source))
    out = {}
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(source)
        body = source[match.end() : end]
        # Barriers may hide in device helpers called from the kernel: look for helpers' names too.
        uses_barrier = "__syncthreads" in body or any(
            helper in body for helper in _helpers_with_barrier(source)
        )
        out[match.group(1)] = (_parse_params(match.group(2)), uses_barrier)
    return out


def _helpers_with_barrier(source: str) -> list[str]:
    names = []
    for match in re.finditer(r"__device__[^(]*?\b(\w+)\s*\(", source):
        start = match.end()
        end = source.find("\n}", start)
        if "__syncthreads" in source[start:end]:
            names.append(match.group(1))
    return names


def _harness_source(filename: str, signatures: dict) -> str:
    lines = ['#include "recon_cuda_compat.h"', f'#include "{filename}"', ""]
    for name, (params, _) in signatures.items():
        decl = ", ".join(
            f"{'const ' if p.pointer else ''}{p.base}{'*' if p.pointer else ''} {p.name}"
            for p in params
        )
        call = ", ".join(
            f"const_cast<{p.base}*>({p.name})" if p.pointer else p.name for p in params
        )
        lines.append(
            f'extern "C" void launch_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, '
            f"unsigned by, unsigned bz, int barrier, {decl}) {{\n"
            "    recon_launch(dim3(gx, gy, gz), dim3(bx, by, bz), barrier != 0,\n"
            f"                 [&] {{ {name}({call}); }});\n"
            "}"
        )
    return "\n".join(lines) + "\n"


class FakeKernel:
    """Callable like a ``cupy.RawKernel``: ``kernel(grid, block, args)``."""

    def __init__(
        self, lib: ctypes.CDLL, name: str, params: list[_Param], uses_barrier: bool
    ) -> None:
        self.name = name
        self.params = params
        self.uses_barrier = uses_barrier
        self.fn = getattr(lib, f"launch_{name}")
        self.fn.restype = None
        self.fn.argtypes = (
            [ctypes.c_uint] * 6
            + [ctypes.c_int]
            + [ctypes.c_void_p if p.pointer else _SCALAR_TYPES[p.base][1] for p in params]
        )
        self.launches = 0

    def __call__(self, grid: tuple, block: tuple, args: tuple) -> None:
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.params)} parameters")
        converted = []
        for param, arg in zip(self.params, args, strict=True):
            if param.pointer:
                expected = np.dtype(_POINTER_TYPES[param.base])
                if not isinstance(arg, np.ndarray) or arg.dtype != expected:
                    raise TypeError(
                        f"{self.name}({param.name}): needs a {expected} array, got {arg!r:.60}"
                    )
                if not arg.flags.c_contiguous:
                    raise TypeError(f"{self.name}({param.name}): array is not C-contiguous")
                converted.append(arg.ctypes.data)
            else:
                scalar_type = _SCALAR_TYPES[param.base][0]
                if type(arg) is not scalar_type:
                    raise TypeError(
                        f"{self.name}({param.name}): pass {scalar_type.__name__}, not "
                        f"{type(arg).__name__} (CuPy would widen it)"
                    )
                converted.append(arg)
        g = (tuple(grid) + (1, 1))[:3]
        b = (tuple(block) + (1, 1))[:3]
        self.fn(*g, *b, int(self.uses_barrier), *converted)
        self.launches += 1


_LIBS: dict[str, dict[str, FakeKernel]] = {}


def fake_get_kernel(backend: Any, filename: str, name: str, **defines: Any) -> FakeKernel:
    """Stand-in for ``recon.backend.get_kernel``."""
    if defines:
        raise NotImplementedError("compile-time defines are not emulated")
    if filename not in _LIBS:
        signatures = kernel_signatures(filename)
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        harness = BUILD_DIR / f"gen_{Path(filename).stem}_launchers.cpp"
        text = _harness_source(filename, signatures)
        if not harness.exists() or harness.read_text() != text:
            harness.write_text(text)
        lib = build_harness(harness, f"gen_{Path(filename).stem}")
        _LIBS[filename] = {n: FakeKernel(lib, n, p, b) for n, (p, b) in signatures.items()}
    return _LIBS[filename][name]


class FakeGpuBackend(Backend):
    """A backend named "gpu" whose device arrays are numpy arrays."""

    def __init__(self) -> None:
        super().__init__("gpu", np, 0)

    def asarray(self, array: Any, dtype: Any = np.float32) -> Any:
        return np.ascontiguousarray(np.asarray(array), dtype=dtype)

    def to_host(self, array: Any) -> np.ndarray:
        return np.asarray(array)

    def on_device(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def owns(self, array: Any) -> bool:
        return isinstance(array, np.ndarray)
