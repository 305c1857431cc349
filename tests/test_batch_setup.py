"""`recon batch` set-up without a cluster: the manifest's checks, the worker plan (CPU threads,
one worker per GPU pinned by CUDA_VISIBLE_DEVICES, from a fake device count), the clean-up of
interrupted attempts and the progress bar."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from recon.batch.cluster import WorkerPlan, plan_workers, worker_specs
from recon.batch.job import JobResult, remove_partial_outputs
from recon.batch.manifest import load_manifest
from recon.batch.runner import _Bar, _no_dashboard
from recon.errors import DeviceError, InputError


def test_cpu_workers_share_the_cores_without_oversubscribing() -> None:
    plan = plan_workers(None, None, cpu_count=8, device_count=0)
    assert (plan.n_workers, plan.kernel_threads, plan.gpus) == (8, 1, ())
    plan = plan_workers(2, None, cpu_count=8, device_count=2)
    assert (plan.n_workers, plan.kernel_threads) == (2, 4)
    env = plan.env(1)
    assert env["NUMBA_NUM_THREADS"] == "4" and env["OMP_NUM_THREADS"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in env and plan.resources == {}
    # More workers than cores: each keeps one kernel thread.
    assert plan_workers(5, "none", cpu_count=2, device_count=0).kernel_threads == 1


def test_one_worker_per_gpu_each_pinned_to_its_device() -> None:
    plan = plan_workers(None, "all", cpu_count=16, device_count=4)
    assert plan.gpus == ("0", "1", "2", "3") and plan.kernel_threads == 4
    assert [plan.env(i)["CUDA_VISIBLE_DEVICES"] for i in range(4)] == ["0", "1", "2", "3"]
    assert plan.resources == {"GPU": 1}
    # A job scheduler's allocation (CUDA_VISIBLE_DEVICES) is what the workers get.
    plan = plan_workers(None, "all", cpu_count=16, device_count=8, visible_devices="5, 7")
    assert plan.gpus == ("5", "7")
    assert plan_workers(None, "2", cpu_count=4, device_count=3).gpus == ("0", "1")


def test_gpu_worker_specs_carry_each_workers_device_and_resource() -> None:
    pytest.importorskip("distributed")
    specs = worker_specs(WorkerPlan(2, 3, ("4", "6")))
    options = [spec["options"] for spec in specs.values()]
    assert [o["env"]["CUDA_VISIBLE_DEVICES"] for o in options] == ["4", "6"]
    assert all(o["nthreads"] == 1 and o["resources"] == {"GPU": 1} for o in options)
    assert all(o["env"]["NUMBA_NUM_THREADS"] == "3" for o in options)


@pytest.mark.parametrize(
    ("workers", "gpus", "devices", "error", "fragment"),
    [
        (None, "all", 0, DeviceError, "no GPU"),
        (None, "3", 2, InputError, "2 GPU"),
        (None, "two", 2, InputError, "'all', 'none' or a number"),
        (3, "all", 2, InputError, "one worker per GPU"),
        (0, None, 0, InputError, "--workers"),
    ],
)
def test_impossible_worker_plans_are_refused(
    workers: int | None, gpus: str | None, devices: int, error: type, fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        plan_workers(workers, gpus, cpu_count=4, device_count=devices)


def test_only_recon_staging_folders_of_the_job_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "P01"
    out.mkdir()
    (out / "image.npy").write_bytes(b"kept")
    beside = tmp_path / ".P01.recon-0a1b2c3d"
    inside = out / ".P01.recon-deadbeef"
    other_job = tmp_path / ".P02.recon-0a1b2c3d"
    users = tmp_path / ".P01.mine"
    for folder in (beside, inside, other_job, users):
        folder.mkdir()
        (folder / "half.npy").write_bytes(b"x")
    assert sorted(remove_partial_outputs(out)) == sorted([beside, inside])
    assert not beside.exists() and not inside.exists()
    assert other_job.exists() and users.exists() and (out / "image.npy").exists()


def test_the_bar_counts_jobs_by_outcome_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = _Bar(3, stream)
    bar.ended_job(JobResult("a", "spect", "done", "out/a", seconds=1.0), running=2)
    bar.ended_job(JobResult("b", "spect", "failed", "out/b", error="bad"), running=1)
    bar.close()
    last = stream.getvalue().rstrip("\n").split("\r")[-1]
    assert "2/3" in last and "1 done" in last and "1 failed" in last and "1 running" in last


def test_a_missing_dashboard_is_said_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recon.batch.runner.dashboard_available", lambda: False)
    assert "unavailable" in _no_dashboard() and "bokeh" in _no_dashboard()


def _inputs(folder: Path) -> None:
    (folder / "a.dcm").write_bytes(b"not read while checking")
    (folder / "b.npz").write_bytes(b"not read while checking")
    (folder / "cohort.toml").write_text("[cohort]\n")


def test_a_manifest_is_checked_and_ordered_before_anything_runs(tmp_path: Path) -> None:
    _inputs(tmp_path)
    (tmp_path / "m.toml").write_text(
        '[spect]\niterations = 3\n\n[pet]\ncalibration = 2.0\n\n'
        '[[jobs]]\nname = "cohort"\nkind = "quant"\ninput = "cohort.toml"\n\n'
        '[[jobs]]\nname = "a"\nkind = "spect"\ninput = "a.dcm"\niterations = 5\n'
        'post_filter = 8.0\n\n'
        '[[jobs]]\nname = "dyn"\nkind = "pet"\ninput = "b.npz"\nframes = "0:10,10:30"\n'
        "split-frames = true\n"
    )  # fmt: skip
    manifest = load_manifest(tmp_path / "m.toml", tmp_path / "out")
    names = [job.name for job in manifest.jobs]
    assert names[-1] == "cohort" and set(names) == {"a", "dyn-f000", "dyn-f001", "cohort"}
    cohort = manifest.job("cohort")
    assert set(cohort.after) == {"a", "dyn-f000", "dyn-f001"}  # default: every recon job
    a = manifest.job("a")
    # The job's own value wins over the [spect] table; "_" and "-" are the same key.
    assert a.args.iterations == 5 and a.args.post_filter == 8.0 and a.args.subsets == 8
    assert a.args.projections == str(tmp_path / "a.dcm") and a.output == tmp_path / "out" / "a"
    frames = [manifest.job(f"dyn-f00{i}") for i in range(2)]
    assert [f.args.frames for f in frames] == ["0:10", "10:30"]
    assert [f.output.name for f in frames] == ["frame_000", "frame_001"]
    assert all(f.args.calibration == 2.0 for f in frames)
    assert a.settings["iterations"] == 5 and a.settings["device"] is None


def test_the_python_api_reads_and_checks_the_batch_table(tmp_path: Path) -> None:
    import recon.batch

    _inputs(tmp_path)
    job = '[[jobs]]\nname = "a"\nkind = "spect"\ninput = "a.dcm"\n'
    (tmp_path / "m.toml").write_text("[batch]\nworkers = 0\n\n" + job)
    with pytest.raises(InputError, match=r"\[batch\] workers must be >= 1"):
        recon.batch.run(tmp_path / "m.toml", output=tmp_path / "out")
    (tmp_path / "m.toml").write_text('[batch]\nworkers = 2\nscheduler = "tcp://x:1"\n\n' + job)
    with pytest.raises(InputError, match="cannot be used together"):
        recon.batch.run(tmp_path / "m.toml", output=tmp_path / "out")
    assert not (tmp_path / "out").exists()
