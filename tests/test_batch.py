"""`recon batch` on a real Dask LocalCluster (2 worker processes, one thread each).

A small simulated trial (:mod:`recon.simulate.trial`: four SPECT/CT scans of two patients, a
dynamic PET scan split into two frame jobs, a cohort quant step after the SPECT jobs) runs once
on the cluster; the tests then check that

- every result equals, bit for bit, the same job run serially through ``recon.cli.main`` with
  the same number of kernel threads (the PET back-projection sums per-thread partial images, so
  the thread count is part of the computation);
- a rerun does no work, and after one output file is deleted only its job runs again;
- a job with a bad input fails with its one-line error while the others finish (and the step
  that needs it is reported as blocked);
- a worker process killed while it runs a job (``kill -9``, after the job's log says it started
  on that process) has its job redone elsewhere: the batch completes with every output complete
  and no partial folder; Ctrl-C on ``recon batch`` stops its cluster and leaves no partial
  folder; no process is left behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib

import recon.batch
from recon._output import MANIFEST_NAME
from recon.batch.cluster import WorkerPlan
from recon.cli import main
from recon.simulate.trial import SimulatedTrial, write_simulated_trial
from tests.interruptible import recon_command

distributed = pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")  # a dependency of distributed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        env=WorkerPlan(2, 1).env(0), silence_logs=logging.ERROR,
    )  # fmt: skip
    with cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> SimulatedTrial:
    root = tmp_path_factory.mktemp("trial")
    return write_simulated_trial(root / "in", root / "out", seed=3)


@pytest.fixture(scope="module")
def first_run(trial: SimulatedTrial, client: Any) -> recon.batch.BatchResult:
    return recon.batch.run(trial.manifest, client, output=trial.output, kernel_threads=1)


def _tree(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``folder`` with its modification time and content."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _partial_leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".recon-" in p.name or p.name.endswith(".partial")]


def _complete(output: Path) -> bool:
    """The folder's manifest lists files that are all there with the content it records."""
    import hashlib

    manifest = json.loads((output / MANIFEST_NAME).read_text())
    return all(
        hashlib.sha256((output / name).read_bytes()).hexdigest() == digest
        for name, digest in manifest["files"].items()
    )


def test_a_trial_on_two_workers_equals_the_same_jobs_run_serially(
    trial: SimulatedTrial, first_run: recon.batch.BatchResult, tmp_path: Path
) -> None:
    import numba

    results = first_run.results
    assert len(results) == 7 and first_run.ok
    assert {r.status for r in results.values()} == {"done"}
    assert len({r.worker for r in results.values()}) == 2  # both workers took jobs
    summary = json.loads(first_run.summary_path.read_text())
    assert summary["state"] == "finished" and summary["counts"] == {"done": 7}
    for name in results:
        log = (trial.output / "logs" / f"{name}.log").read_text()
        assert log.startswith(f"$ recon {results[name].kind} ") and "# done in" in log

    settings = tomllib.loads(trial.manifest.read_text())
    spect, pet = settings["spect"], settings["pet"]
    common = ["--iterations", "2", "--subsets", "4", "--device", "cpu"]
    serial = {
        name: ["spect", str(trial.folder / name / "nm.dcm"),
               "--ct", str(trial.folder / name / "ct"),
               "--sensitivity", str(spect["sensitivity"]), *common]
        for name in trial.spect_jobs
    }  # fmt: skip
    for k, frames in enumerate(("0:20", "20:40")):
        serial[f"P01-pet-f00{k}"] = [
            "pet", str(trial.folder / "P01-pet.npz"), "--frames", frames,
            "--calibration", repr(pet["calibration"]), *common,
        ]  # fmt: skip
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # the workers' kernel threads
    try:
        for name, argv in serial.items():
            assert main([*argv, "-o", str(tmp_path / name)]) == 0
    finally:
        numba.set_num_threads(threads)
    assert main(["quant", str(trial.folder / "cohort.toml"), "--no-plots",
                 "-o", str(tmp_path / "cohort")]) == 0  # fmt: skip

    for name in trial.spect_jobs:
        ours, theirs = (np.load(f / name / "image.npy") for f in (trial.output, tmp_path))
        assert ours.dtype == theirs.dtype == np.float32 and ours.tobytes() == theirs.tobytes()
        assert ours.max() > 0
    for k in range(trial.pet_frames):
        ours = np.load(trial.output / "P01-pet" / f"frame_00{k}" / "frame_000.npy")
        theirs = np.load(tmp_path / f"P01-pet-f00{k}" / "frame_000.npy")
        assert ours.tobytes() == theirs.tobytes() and ours.max() > 0
    for table in ("cohort_lesions.csv", "cohort_strata.csv"):
        assert (trial.output / "cohort" / table).read_bytes() == (
            tmp_path / "cohort" / table
        ).read_bytes()


def test_a_rerun_does_no_work_and_redoes_only_a_damaged_job(
    trial: SimulatedTrial, first_run: recon.batch.BatchResult, client: Any
) -> None:
    assert first_run.ok
    before = _tree(trial.output)
    again = recon.batch.run(trial.manifest, client, output=trial.output, kernel_threads=1)
    assert {r.status for r in again.results.values()} == {"skipped"}
    after = _tree(trial.output)
    jobs_files = {k: v for k, v in after.items() if not k.startswith(("logs/", "batch_summary"))}
    assert jobs_files == {k: v for k, v in before.items() if k in jobs_files}
    assert set(after) == set(before)

    damaged = trial.output / "P02-1h" / "image.npy"
    image = damaged.read_bytes()
    damaged.unlink()
    third = recon.batch.run(trial.manifest, client, output=trial.output, kernel_threads=1)
    status = {name: r.status for name, r in third.results.items()}
    assert status.pop("P02-1h") == "done"
    # The cohort step reads the rebuilt image, which is the same: it stays up to date.
    assert set(status.values()) == {"skipped"}
    assert damaged.read_bytes() == image
    now = _tree(trial.output)
    for name, (mtime, _) in before.items():
        if name.startswith(("P01-", "P02-48h", "cohort")):
            assert now[name][0] == mtime, f"{name} was rewritten"


def test_a_bad_input_fails_its_job_and_the_others_finish(
    trial: SimulatedTrial, client: Any, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes())
    manifest = tmp_path / "m.toml"
    good = trial.folder / "P01-1h" / "nm.dcm"
    manifest.write_text(
        '[spect]\niterations = 2\nsubsets = 4\ndevice = "cpu"\n\n'
        f'[[jobs]]\nname = "good"\nkind = "spect"\ninput = "{good}"\n\n'
        '[[jobs]]\nname = "bad"\nkind = "spect"\ninput = "corrupt.dcm"\n\n'
        f'[[jobs]]\nname = "cohort"\nkind = "quant"\ninput = "{trial.folder / "cohort.toml"}"\n'
    )  # fmt: skip
    out = tmp_path / "out"
    result = recon.batch.run(manifest, client, output=out, kernel_threads=1)
    status = {name: r.status for name, r in result.results.items()}
    assert status == {"good": "done", "bad": "failed", "cohort": "blocked"}
    error = result.results["bad"].error
    assert error is not None and "corrupt.dcm" in error and "\n" not in error
    assert "Traceback" not in error and "internal error" not in error
    assert "bad" in (result.results["cohort"].error or "")
    assert not result.ok and _complete(out / "good")
    assert not (out / "bad").exists() and not (out / "cohort").exists()
    assert error in (out / "logs" / "bad.log").read_text()
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["counts"] == {"done": 1, "failed": 1, "blocked": 1}


def _device_of_worker() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


def test_workers_pinned_one_per_gpu_see_their_own_device_only() -> None:
    """Without dask-cuda, GPU workers are processes started with CUDA_VISIBLE_DEVICES set to one
    device each and the resource GPU=1 (checked here on CPUs: the pinning is environment)."""
    from recon.batch.cluster import _pinned_gpu_cluster

    with _pinned_gpu_cluster(WorkerPlan(2, 1, ("3", "5")), None) as cluster:
        with distributed.Client(cluster) as dask_client:
            dask_client.wait_for_workers(2)
            seen = dask_client.run(_device_of_worker)
            info = dask_client.scheduler_info()["workers"]
            futures = [dask_client.submit(_device_of_worker, pure=False, resources={"GPU": 1},
                                          key=f"gpu-{i}") for i in range(4)]  # fmt: skip
            devices = dask_client.gather(futures)
    assert sorted(seen.values()) == ["3", "5"]
    assert all(w["resources"] == {"GPU": 1} for w in info.values())
    assert set(devices) <= {"3", "5"}


def _two_job_manifest(trial: SimulatedTrial, folder: Path) -> Path:
    folder.mkdir()
    text = '[spect]\niterations = 6\nsubsets = 4\ndevice = "cpu"\n'
    for name in trial.spect_jobs[:2]:
        text += (f'\n[[jobs]]\nname = "{name}"\nkind = "spect"\n'
                 f'input = "{trial.folder / name / "nm.dcm"}"\n')  # fmt: skip
    (folder / "m.toml").write_text(text)
    return folder / "m.toml"


def _start_cli(manifest: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        recon_command("batch", str(manifest), "-o", str(out), "--workers", "2",
                      "--kernel-threads", "1"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RECON_DEVICE": "cpu"},
    )  # fmt: skip


def _started_worker(log: Path, process: subprocess.Popen[str], family: set[int]) -> int:
    """Wait until ``log`` (a job's log being written) names its worker process; its pid."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with contextlib.suppress(psutil.Error):
            family.update(c.pid for c in psutil.Process(process.pid).children(recursive=True))
        if log.exists():
            for line in log.read_text().splitlines():
                if line.startswith("# worker "):
                    return int(line.rsplit(":", 1)[1])
        time.sleep(0.05)
    raise AssertionError(f"{log.name} never appeared")


def _assert_gone(pids: set[int]) -> None:
    deadline = time.monotonic() + 20
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE}  # fmt: skip
        time.sleep(0.1)
    assert not alive, f"processes left behind: {alive}"


def test_a_killed_worker_has_its_job_redone_and_leaves_no_partial_folder(
    trial: SimulatedTrial, tmp_path: Path
) -> None:
    manifest = _two_job_manifest(trial, tmp_path / "in")
    out = tmp_path / "out"
    process = _start_cli(manifest, out)
    family: set[int] = set()
    try:
        victim = _started_worker(
            out / "logs" / f"{trial.spect_jobs[0]}.log.partial", process, family
        )
        assert victim in family
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["counts"] == {"done": 2}
    for name in trial.spect_jobs[:2]:
        assert _complete(out / name)
        worker = next(j["worker"] for j in summary["jobs"] if j["name"] == name)
        assert name != trial.spect_jobs[0] or int(worker.rsplit(":", 1)[1]) != victim
    assert _partial_leftovers(out) == []
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["batch_summary.json", "logs", *trial.spect_jobs[:2]]
    )
    _assert_gone(family)


def test_ctrl_c_stops_the_cluster_and_leaves_no_partial_folder(
    trial: SimulatedTrial, tmp_path: Path
) -> None:
    manifest = _two_job_manifest(trial, tmp_path / "in")
    out = tmp_path / "out"
    process = _start_cli(manifest, out)
    family: set[int] = set()
    try:
        _started_worker(out / "logs" / f"{trial.spect_jobs[0]}.log.partial", process, family)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("recon: interrupted")
    assert _partial_leftovers(out) == []
    for name in trial.spect_jobs[:2]:
        assert not (out / name).exists() or _complete(out / name)
    assert json.loads((out / "batch_summary.json").read_text())["state"] == "interrupted"
    _assert_gone(family)
