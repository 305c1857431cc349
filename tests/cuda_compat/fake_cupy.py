"""Run the CuPy launch code without a GPU.

``FakeGpuBackend`` is a GPU-named backend whose arrays are numpy arrays, and ``fake_get_kernel``
returns kernels that run the real ``kernels/*.cu`` sources through the g++ compatibility header
over exactly the grid and block the launcher asked for. Each launch checks its arguments the way
the CUDA ABI will read them: pointers must be C-contiguous arrays of the parameter's element type;
scalars must be ``np.int32`` / ``np.float32`` (CuPy turns a Python ``int`` into a 64-bit integer
and a ``float`` into a double, which a kernel taking ``int``/``float`` would misread); a struct
passed by value must be a one-element numpy array whose dtype has the struct's fields, in order,
at the offsets g++ gives them, and its size (CuPy hands the driver the array's data, of which the
driver copies ``sizeof`` the struct). So the launchers in ``recon/*/_gpu.py`` are executed and
checked in CI, and :func:`compat_kernels` runs a whole model on the CUDA source through them.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from recon.backend import Backend
from tests.cuda_compat.build import BUILD_DIR, KERNELS_DIR, build_harness

_SIGNATURE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{', re.S)
_STRUCT = re.compile(r"\bstruct\s+(\w+)\s*\{(.*?)\};", re.S)
_FIELD = re.compile(
    r"^((?:const\s+)?(?:unsigned\s+)?(?:long\s+long|int|float|double)\s*\*?)\s*(\w+(?:\s*,\s*\w+)*)$"
)
_POINTER_TYPES = {"float": np.float32, "int": np.int32, "double": np.float64}
_SCALAR_TYPES = {"int": (np.int32, ctypes.c_int), "float": (np.float32, ctypes.c_float)}
_FIELD_TYPES = {"int": np.int32, "float": np.float32, "double": np.float64, "long long": np.int64}
_ADDRESS = np.dtype(np.uint64)  # a pointer field holds an address (64-bit CUDA and x86-64)


@dataclass(frozen=True)
class _Param:
    name: str
    base: str  # float, int, double, or the name of a struct passed by value
    pointer: bool


@dataclass(frozen=True)
class _Struct:
    name: str
    fields: tuple[tuple[str, str], ...]  # (name, type), in declaration order


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


def kernel_structs(filename: str) -> dict[str, _Struct]:
    """Structs defined in ``kernels/filename`` whose fields are numbers or pointers (those a kernel
    may take by value), by name."""
    source = re.sub(r"//[^\n]*", "", (KERNELS_DIR / filename).read_text())
    out = {}
    for match in _STRUCT.finditer(source):
        fields = []
        for decl in match.group(2).split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            field = _FIELD.match(decl)
            if field is None:
                break  # not a plain struct of numbers and pointers
            ctype = " ".join(field.group(1).replace("*", " * ").split())
            fields += [(n.strip(), ctype) for n in field.group(2).split(",")]
        else:
            out[match.group(1)] = _Struct(match.group(1), tuple(fields))
    return out


def _harness_source(filename: str, signatures: dict, structs: dict[str, _Struct]) -> str:
    lines = ['#include "recon_cuda_compat.h"', f'#include "{filename}"', "#include <cstddef>"]
    lines.append("#include <cstring>\n")
    for struct in structs.values():
        # sizeof and the offset of every field, for the dtype checks of FakeKernel.
        offsets = "".join(f" out[{i + 1}] = offsetof({struct.name}, {f});"
                          for i, (f, _) in enumerate(struct.fields))  # fmt: skip
        lines.append(
            f'extern "C" void layout_{struct.name}(long long* out) {{ '
            f"out[0] = sizeof({struct.name});{offsets} }}"
        )
    for name, (params, _) in signatures.items():
        decl = ", ".join(
            f"const {'void' if p.base in structs else p.base}* {p.name}"
            if p.pointer or p.base in structs
            else f"{p.base} {p.name}"
            for p in params
        )
        # A struct argument arrives as the address of its bytes, which are copied as the CUDA
        # driver copies a by-value argument.
        copies = "".join(
            f" {p.base} {p.name}_v; std::memcpy(&{p.name}_v, {p.name}, sizeof({p.base}));"
            for p in params
            if p.base in structs and not p.pointer
        )
        call = ", ".join(
            f"const_cast<{p.base}*>({p.name})"
            if p.pointer
            else (f"{p.name}_v" if p.base in structs else p.name)
            for p in params
        )
        lines.append(
            f'extern "C" void launch_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, '
            f"unsigned by, unsigned bz, int barrier, {decl}) {{\n"
            f"   {copies}\n"
            "    recon_launch(dim3(gx, gy, gz), dim3(bx, by, bz), barrier != 0,\n"
            f"                 [&] {{ {name}({call}); }});\n"
            "}"
        )
    return "\n".join(lines) + "\n"


def _check_struct(kernel: str, param: _Param, struct: _Struct, layout: tuple, arg: Any) -> None:
    """Refuse ``arg`` unless it is a one-element numpy array laid out as ``struct``."""
    where = f"{kernel}({param.name})"
    if not isinstance(arg, np.ndarray) or arg.size != 1 or arg.dtype.names is None:
        raise TypeError(f"{where}: pass {struct.name} as a one-element structured numpy array")
    size, *offsets = layout
    names = tuple(f for f, _ in struct.fields)
    if arg.dtype.names != names:
        raise TypeError(f"{where}: dtype fields {arg.dtype.names}, {struct.name} has {names}")
    for (field, ctype), offset in zip(struct.fields, offsets, strict=True):
        dtype, at = arg.dtype.fields[field][:2]
        expected = _ADDRESS if ctype.endswith("*") else np.dtype(_FIELD_TYPES[ctype])
        if dtype != expected or at != offset:
            raise TypeError(
                f"{where}: field {field} is {dtype} at byte {at}; {struct.name} has {ctype} at "
                f"byte {offset}"
            )
    if arg.dtype.itemsize != size:
        raise TypeError(f"{where}: dtype of {arg.dtype.itemsize} bytes, {struct.name} has {size}")


class FakeKernel:
    """Callable like a ``cupy.RawKernel``: ``kernel(grid, block, args)``."""

    def __init__(
        self,
        lib: ctypes.CDLL,
        name: str,
        params: list[_Param],
        uses_barrier: bool,
        structs: dict[str, _Struct],
    ) -> None:
        self.name = name
        self.params = params
        self.uses_barrier = uses_barrier
        self.structs = {p.base: structs[p.base] for p in params if p.base in structs}
        self.layouts = {s: _layout(lib, self.structs[s]) for s in self.structs}
        self.fn = getattr(lib, f"launch_{name}")
        self.fn.restype = None
        self.fn.argtypes = (
            [ctypes.c_uint] * 6
            + [ctypes.c_int]
            + [
                ctypes.c_void_p if p.pointer or p.base in structs else _SCALAR_TYPES[p.base][1]
                for p in params
            ]
        )
        self.launches = 0

    def __call__(self, grid: tuple, block: tuple, args: tuple) -> None:
        if len(args) != len(self.params):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.params)} parameters")
        converted = []
        for param, arg in zip(self.params, args, strict=True):
            if param.base in self.structs and not param.pointer:
                struct = self.structs[param.base]
                _check_struct(self.name, param, struct, self.layouts[param.base], arg)
                converted.append(arg.ctypes.data)
            elif param.pointer:
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


def _layout(lib: ctypes.CDLL, struct: _Struct) -> tuple[int, ...]:
    """``(sizeof, offset of each field)`` of ``struct`` as g++ lays it out."""
    out = (ctypes.c_longlong * (1 + len(struct.fields)))()
    fn = getattr(lib, f"layout_{struct.name}")
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p]
    fn(ctypes.addressof(out))
    return tuple(out)


@cache
def _kernels(filename: str) -> dict[str, FakeKernel]:
    signatures = kernel_signatures(filename)
    structs = kernel_structs(filename)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    harness = BUILD_DIR / f"gen_{Path(filename).stem}_launchers.cpp"
    text = _harness_source(filename, signatures, structs)
    if not harness.exists() or harness.read_text() != text:
        harness.write_text(text)
    lib = build_harness(harness, f"gen_{Path(filename).stem}")
    return {n: FakeKernel(lib, n, p, b, structs) for n, (p, b) in signatures.items()}


def fake_get_kernel(backend: Any, filename: str, name: str, **defines: Any) -> FakeKernel:
    """Stand-in for ``recon.backend.get_kernel``."""
    if defines:
        raise NotImplementedError("compile-time defines are not emulated")
    return _kernels(filename)[name]


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

    def address(self, array: Any) -> int:
        return int(array.ctypes.data)
