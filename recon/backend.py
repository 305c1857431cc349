"""Compute-device choice, array module, host/device transfers and CUDA kernel loading.

Every model takes ``device="auto" | "cpu" | "gpu"``; the ``RECON_DEVICE`` environment variable
supplies the default. Nothing here runs at import time: CuPy is imported, and the GPU probed, only
when a model asks for a backend.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from recon.errors import DeviceError, InputError, KernelError

__all__ = [
    "Backend",
    "check_kernel_array",
    "gpu_available",
    "kernel_path",
    "kernel_source",
    "resolve_backend",
]

log = logging.getLogger("recon")

_VALID = ("auto", "cpu", "gpu")
_INSTALL_HINT = (
    "install the CUDA extra matching your driver, e.g. `pip install 'recon[cuda12]'` "
    "(or `recon[cuda13]`), or use device='cpu'"
)


@dataclass(frozen=True)
class Backend:
    """Where arrays live and kernels run.

    Attributes
    ----------
    name : {"cpu", "gpu"}
        The resolved device.
    xp : module
        ``numpy`` on the CPU, ``cupy`` on the GPU.
    device_id : int or None
        CUDA device ordinal on the GPU, None on the CPU.
    """

    name: str
    xp: ModuleType
    device_id: int | None = None

    @property
    def is_gpu(self) -> bool:
        """True for the CuPy (CUDA) backend."""
        return self.name == "gpu"

    @property
    def device_name(self) -> str:
        """The device in words, for reports and benchmark records: the CUDA device's name on the
        GPU, the processor and its core count on the CPU."""
        if self.is_gpu:
            name = self.xp.cuda.runtime.getDeviceProperties(self.device_id)["name"]
            return name.decode() if isinstance(name, bytes) else str(name)
        return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"

    def on_device(self) -> contextlib.AbstractContextManager:
        """Context in which allocations and kernel launches go to this backend's device."""
        if self.is_gpu:
            return self.xp.cuda.Device(self.device_id)
        return contextlib.nullcontext()

    def asarray(self, array: Any, dtype: Any = np.float32) -> Any:
        """``array`` on this device, C-contiguous, of ``dtype`` (copied only when needed)."""
        if self.is_gpu:
            with self.on_device():
                return self.xp.ascontiguousarray(self.xp.asarray(array, dtype=dtype))
        return np.ascontiguousarray(_to_numpy(array), dtype=dtype)

    def to_host(self, array: Any) -> np.ndarray:
        """Return a numpy copy (or view, on the CPU) of ``array``."""
        return _to_numpy(array)

    def owns(self, array: Any) -> bool:
        """True when ``array`` is an array of this backend's module (and device)."""
        if self.is_gpu:
            return isinstance(array, self.xp.ndarray) and array.device.id == self.device_id
        return isinstance(array, np.ndarray)

    def address(self, array: Any) -> int:
        """Address of the first element of ``array`` in its memory (device memory on the GPU).

        For a kernel argument struct that holds pointers (``check_kernel_array`` the array first;
        the caller keeps it alive until the kernel has run).
        """
        if self.is_gpu:
            return int(array.data.ptr)
        return int(array.ctypes.data)


def _to_numpy(array: Any) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    get = getattr(array, "get", None)
    if callable(get) and type(array).__module__.startswith("cupy"):
        return get()
    return np.asarray(array)


@functools.lru_cache(maxsize=1)
def _import_cupy() -> ModuleType | None:
    try:
        import cupy
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return None
    return cupy


def gpu_available() -> bool:
    """True when CuPy imports and reports at least one usable CUDA device."""
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        return bool(cupy.cuda.is_available())
    except Exception:
        return False


def resolve_backend(device: str | Backend | None = None) -> Backend:
    """Turn a device request into a :class:`Backend`.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"} or Backend, optional
        ``None`` reads ``RECON_DEVICE`` (default ``"auto"``). ``"auto"`` picks the GPU when CuPy
        imports and ``cupy.cuda.is_available()``, else the CPU (logged once at INFO level).

    Raises
    ------
    DeviceError
        ``"gpu"`` was asked for and no usable GPU is present.
    InputError
        ``device`` is not one of the accepted names.
    """
    if isinstance(device, Backend):
        return device
    if device is None:
        device = os.environ.get("RECON_DEVICE", "auto") or "auto"
    request = str(device).strip().lower()
    if request not in _VALID:
        raise InputError(f"device must be one of {_VALID}, got {device!r}")
    if request == "cpu":
        return _cpu_backend()
    cupy = _import_cupy() if gpu_available() else None
    if cupy is not None:
        return Backend("gpu", cupy, int(cupy.cuda.runtime.getDevice()))
    if request == "gpu":
        reason = "CuPy is not installed" if _import_cupy() is None else "CuPy sees no CUDA device"
        raise DeviceError(f"device='gpu' was requested but {reason}; {_INSTALL_HINT}")
    _log_cpu_fallback()
    return _cpu_backend()


@functools.lru_cache(maxsize=1)
def _cpu_backend() -> Backend:
    return Backend("cpu", np, None)


@functools.lru_cache(maxsize=1)
def _log_cpu_fallback() -> None:
    log.info("recon: no usable GPU (CuPy missing or no CUDA device); computing on the CPU")


# --------------------------------------------------------------------------------------------
# CUDA sources and kernels
# --------------------------------------------------------------------------------------------


def kernel_path(filename: str) -> Path:
    """Path of a shipped CUDA source, e.g. ``kernel_path("spect.cu")``.

    Installed wheels carry the sources as ``recon/kernels/*.cu``; a source checkout (or an
    editable install) has them in the top-level ``kernels/`` folder.
    """
    packaged = resources.files("recon") / "kernels" / filename
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "kernels" / filename
    if checkout.is_file():
        return checkout
    raise KernelError(
        f"CUDA source {filename!r} not found in the installed package or the source tree; "
        "reinstall recon"
    )


def kernel_source(filename: str) -> str:
    """Text of a shipped CUDA source file."""
    return kernel_path(filename).read_text(encoding="utf-8")


@functools.cache
def _compiled_module(device_id: int, filename: str, defines: tuple[tuple[str, str], ...]) -> Any:
    cupy = _import_cupy()
    if cupy is None:  # pragma: no cover - guarded by resolve_backend
        raise DeviceError(f"CuPy is needed to compile {filename}; {_INSTALL_HINT}")
    preamble = "".join(f"#define {k} {v}\n" for k, v in defines)
    source = preamble + kernel_source(filename)
    with cupy.cuda.Device(device_id):
        module = cupy.RawModule(code=source, options=("-std=c++17",))
        module.compile()
    return module


def get_kernel(backend: Backend, filename: str, name: str, **defines: int | float) -> Any:
    """CUDA kernel ``name`` of ``kernels/filename``, compiled once per process and device.

    Compile-time constants are passed as ``#define`` lines in front of the source.
    """
    if not backend.is_gpu:
        raise KernelError("CUDA kernels exist only on the GPU backend")
    key = tuple(sorted((k, repr(v)) for k, v in defines.items()))
    module = _compiled_module(int(backend.device_id), filename, key)  # type: ignore[arg-type]
    return module.get_function(name)


def check_kernel_array(
    backend: Backend, name: str, array: Any, dtype: Any, shape: tuple[int, ...] | None = None
) -> None:
    """Raise KernelError unless ``array`` is C-contiguous ``dtype`` on the backend's device.

    CuPy passes raw pointers to kernels without looking at dtype, strides or device, so every
    launcher calls this for each array argument.
    """
    if not backend.owns(array):
        raise KernelError(f"{name} must be a CuPy array on GPU {backend.device_id}")
    if array.dtype != dtype:
        raise KernelError(f"{name} must be {np.dtype(dtype).name}, got {array.dtype}")
    if not array.flags.c_contiguous:
        raise KernelError(f"{name} must be C-contiguous")
    if shape is not None and tuple(array.shape) != tuple(shape):
        raise KernelError(f"{name} has shape {tuple(array.shape)}, expected {tuple(shape)}")
