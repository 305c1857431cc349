"""Where the jobs run: a local Dask cluster sized to this machine, one worker per GPU, or an
existing scheduler.

CPU workers are processes with one Dask thread each, because the reconstruction kernels
parallelise inside (numba): with ``n`` workers on ``c`` cores each worker's kernels get
``max(1, c // n)`` numba threads (``NUMBA_NUM_THREADS``), and BLAS/OpenMP one thread
(``OMP_NUM_THREADS`` etc.), so the machine is never oversubscribed. GPU workers are one per
device: dask-cuda's ``LocalCUDACluster`` when it is installed, otherwise workers started with
``CUDA_VISIBLE_DEVICES`` set to one device each; every worker offers the resource ``GPU=1`` and
every job asks for it, so no two jobs share a device.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from recon.errors import DeviceError, InputError

__all__ = ["WorkerPlan", "dashboard_available", "gpu_count", "plan_workers", "start_cluster"]


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers to start and how each is set up.

    Attributes
    ----------
    n_workers : int
        Worker processes.
    kernel_threads : int
        numba threads per worker.
    gpus : tuple of str
        ``CUDA_VISIBLE_DEVICES`` of each worker (one device each); empty for CPU workers.
    """

    n_workers: int
    kernel_threads: int
    gpus: tuple[str, ...] = ()

    @property
    def resources(self) -> dict[str, float]:
        """Dask resources each worker offers (``GPU=1`` for GPU workers)."""
        return {"GPU": 1} if self.gpus else {}

    def env(self, worker: int) -> dict[str, str]:
        """Environment variables of worker number ``worker`` (set before it imports numba)."""
        env = {
            "NUMBA_NUM_THREADS": str(self.kernel_threads),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[worker]
        return env


def gpu_count() -> int:
    """CUDA devices CuPy sees (0 without CuPy or a driver)."""
    if importlib.util.find_spec("cupy") is None:
        return 0
    try:
        import cupy

        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device: CuPy raises its own runtime errors
        return 0


def plan_workers(
    workers: int | None,
    gpus: str | None,
    *,
    cpu_count: int,
    device_count: int,
    visible_devices: str | None = None,
) -> WorkerPlan:
    """Decide the workers: ``workers`` CPU processes, or one worker per GPU.

    Parameters
    ----------
    workers : int or None
        Worker processes (None: one per CPU core, or one per GPU).
    gpus : str or None
        None or ``"none"``: CPU workers; ``"all"``: one worker per visible GPU; a number ``k``:
        one worker on each of the first ``k`` GPUs.
    cpu_count : int
        CPU cores of this machine.
    device_count : int
        GPUs the driver reports (:func:`gpu_count`).
    visible_devices : str or None
        ``$CUDA_VISIBLE_DEVICES`` of this process: when set, its entries are the devices used
        (so a job scheduler's allocation is respected).

    Returns
    -------
    WorkerPlan

    Raises
    ------
    InputError
        A value that cannot be used (more GPUs than there are, workers that don't match).
    DeviceError
        GPU workers asked for on a machine without a GPU.
    """
    cores = max(1, int(cpu_count))
    if gpus is None or gpus == "none":
        n = cores if workers is None else int(workers)
        if n < 1:
            raise InputError(f"--workers must be >= 1, got {n}")
        return WorkerPlan(n, max(1, cores // n))
    if visible_devices is not None and visible_devices.strip():
        ids = [d.strip() for d in visible_devices.split(",") if d.strip()]
    else:
        ids = [str(i) for i in range(max(0, int(device_count)))]
    if not ids:
        raise DeviceError("--gpus: no GPU is visible here (CuPy sees none); leave out --gpus")
    if gpus != "all":
        try:
            wanted = int(gpus)
        except ValueError:
            raise InputError(f"--gpus takes 'all', 'none' or a number, got {gpus!r}") from None
        if not 1 <= wanted <= len(ids):
            raise InputError(f"--gpus {wanted}: this machine has {len(ids)} GPU(s) visible")
        ids = ids[:wanted]
    if workers is not None and int(workers) != len(ids):
        raise InputError(
            f"--workers {workers} with --gpus: GPU runs use one worker per GPU ({len(ids)}); "
            "leave out --workers"
        )
    return WorkerPlan(len(ids), max(1, cores // len(ids)), tuple(ids))


def dashboard_available() -> bool:
    """Whether Dask's dashboard can be served (it needs bokeh)."""
    return importlib.util.find_spec("bokeh") is not None


def start_cluster(plan: WorkerPlan, dashboard_address: str | None = ":8787") -> Any:
    """Start a local Dask cluster for ``plan``; the caller closes it.

    Parameters
    ----------
    plan : WorkerPlan
        The workers (:func:`plan_workers`).
    dashboard_address : str or None
        Where to serve the dashboard (None: no dashboard, also when bokeh is missing).

    Returns
    -------
    distributed.deploy.Cluster
    """
    import logging

    from distributed import LocalCluster

    address = dashboard_address if dashboard_available() else None
    common: dict[str, Any] = dict(
        threads_per_worker=1, processes=True, dashboard_address=address,
        silence_logs=logging.ERROR,
    )  # fmt: skip
    if not plan.gpus:
        return LocalCluster(n_workers=plan.n_workers, env=plan.env(0), **common)
    if importlib.util.find_spec("dask_cuda") is not None:
        from dask_cuda import LocalCUDACluster

        env = {k: v for k, v in plan.env(0).items() if k != "CUDA_VISIBLE_DEVICES"}
        # LocalCUDACluster starts processes itself (one per device, one thread each).
        return LocalCUDACluster(
            CUDA_VISIBLE_DEVICES=",".join(plan.gpus), threads_per_worker=1,
            dashboard_address=address, silence_logs=logging.ERROR, resources=plan.resources,
            env=env,
        )  # fmt: skip
    return _pinned_gpu_cluster(plan, address)


def worker_specs(plan: WorkerPlan) -> dict[str, dict[str, Any]]:
    """Dask ``SpecCluster`` worker specifications: one Nanny per worker with its own env."""
    from distributed import Nanny

    return {
        f"gpu-{device}": {
            "cls": Nanny,
            "options": {"nthreads": 1, "env": plan.env(i), "resources": plan.resources},
        }
        for i, device in enumerate(plan.gpus)
    }


def _pinned_gpu_cluster(plan: WorkerPlan, dashboard_address: str | None) -> Any:
    import logging

    from distributed import Scheduler, SpecCluster

    # Without a dashboard the scheduler's HTTP server still listens: on a free port, not 8787.
    options = {"dashboard": dashboard_address is not None,
               "dashboard_address": dashboard_address or ":0"}  # fmt: skip
    scheduler = {"cls": Scheduler, "options": options}
    return SpecCluster(workers=worker_specs(plan), scheduler=scheduler, silence_logs=logging.ERROR)


def cpu_count() -> int:
    """CPU cores this process may use (its affinity where the system says)."""
    affinity: Sequence[int] | None = None
    if hasattr(os, "sched_getaffinity"):
        affinity = list(os.sched_getaffinity(0))
    return len(affinity) if affinity else (os.cpu_count() or 1)
