"""Output folders are all-or-nothing, never replace what recon did not write, and a run that is
interrupted (Ctrl-C, SIGTERM) or fails leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from recon._output import MANIFEST_NAME, OutputFolder
from recon.errors import InputError
from tests.interruptible import recon_command


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _run(target: OutputFolder, files: dict[str, str]) -> None:
    with target.writing() as folder:
        _write(folder, files)


def test_a_new_folder_appears_only_complete(tmp_path: Path) -> None:
    target = OutputFolder(tmp_path / "a" / "b" / "out")
    with target.writing() as folder:
        _write(folder, {"x.txt": "1", "sub/y.txt": "2"})
        assert not (tmp_path / "a" / "b" / "out").exists(), "visible before the end"
        assert folder.parent == tmp_path / "a" / "b" and folder.name.startswith(".out.recon-")
    out = tmp_path / "a" / "b" / "out"
    assert (out / "x.txt").read_text() == "1" and (out / "sub" / "y.txt").read_text() == "2"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"x.txt", "sub/y.txt"}
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["out"]


def test_a_failure_leaves_nothing_not_even_parents(tmp_path: Path) -> None:
    target = OutputFolder(tmp_path / "new" / "deeper" / "out")
    with pytest.raises(RuntimeError), target.writing() as folder:
        _write(folder, {"x.txt": "1"})
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_writing_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()  # an empty folder the user made: it stays, empty
    target = OutputFolder(tmp_path / "out")
    with pytest.raises(KeyboardInterrupt), target.writing() as folder:
        _write(folder, {"x.txt": "1"})
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and not any((tmp_path / "out").iterdir())


def test_non_empty_folder_needs_overwrite(tmp_path: Path) -> None:
    _write(tmp_path / "out", {"notes.txt": "mine"})
    with pytest.raises(InputError, match="not empty.*--overwrite"):
        OutputFolder(tmp_path / "out")


def test_overwrite_replaces_only_recons_own_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(OutputFolder(out), {"image.npy": "old", "frame_001.npy": "old", "dicom/a.dcm": "old"})
    _write(out, {"notes.txt": "the user's"})  # planted foreign file
    _run(OutputFolder(out, overwrite=True), {"image.npy": "new", "dicom/b.dcm": "new"})
    assert (out / "notes.txt").read_text() == "the user's"
    assert (out / "image.npy").read_text() == "new" and (out / "dicom" / "b.dcm").exists()
    # Files of the earlier run that this run did not write again are removed...
    assert not (out / "frame_001.npy").exists() and not (out / "dicom" / "a.dcm").exists()
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"image.npy", "dicom/b.dcm"}


def test_overwrite_keeps_an_earlier_output_the_user_changed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run(OutputFolder(out), {"a.txt": "recon", "b.txt": "recon"})
    (out / "b.txt").write_text("edited by the user")
    _run(OutputFolder(out, overwrite=True), {"a.txt": "again"})
    assert (out / "b.txt").read_text() == "edited by the user"


def test_overwrite_refuses_a_foreign_file_of_the_same_name(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, {"image.npy": "the user's own"})
    with pytest.raises(InputError, match="not written by recon"):
        OutputFolder(out, overwrite=True, expected=["image.npy"])
    # Found only at the end (names not known in advance): refused before anything is moved.
    target = OutputFolder(out, overwrite=True)
    with pytest.raises(InputError, match="not written by recon"):
        _run(target, {"other.txt": "x", "image.npy": "recon's"})
    assert sorted(p.name for p in out.iterdir()) == ["image.npy"]
    assert (out / "image.npy").read_text() == "the user's own"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_subfolder_that_is_a_file_is_refused_before_anything_moves(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, {"dicom": "a file where recon's dicom/ folder goes"})
    with pytest.raises(InputError, match="in the way"):
        _run(OutputFolder(out, overwrite=True), {"image.npy": "x", "dicom/a.dcm": "y"})
    assert sorted(p.name for p in out.iterdir()) == ["dicom"]


def test_inputs_are_protected(tmp_path: Path) -> None:
    data = tmp_path / "study"
    _write(data, {"nm.dcm": "input", "ct/1.dcm": "ct"})
    with pytest.raises(InputError, match="is the input"):
        OutputFolder(data / "nm.dcm", inputs=[data / "nm.dcm"])
    with pytest.raises(InputError, match="contains the input"):
        OutputFolder(data, inputs=[data / "nm.dcm"])
    with pytest.raises(InputError, match="contains the input"):
        OutputFolder(tmp_path, inputs=[data / "ct"], overwrite=True)
    with pytest.raises(InputError, match="inside the input folder"):
        OutputFolder(data / "ct" / "out", inputs=[data / "ct"])
    os.symlink(data, tmp_path / "link")
    with pytest.raises(InputError, match="contains the input"):
        OutputFolder(tmp_path / "link", inputs=[data / "nm.dcm"], overwrite=True)
    OutputFolder(data / "out", inputs=[data / "nm.dcm", data / "ct"])  # beside them: fine


def test_a_manifest_that_is_not_ours_is_not_trusted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, {MANIFEST_NAME: json.dumps({"files": {"../../etc/passwd": "x"}})})
    with pytest.raises(InputError, match="not a recon output manifest"):
        OutputFolder(out, overwrite=True)


def test_outputs_get_the_umask_permissions(tmp_path: Path) -> None:
    from recon._files import save_npy_atomic, write_summary

    old = os.umask(0o022)
    try:
        target = OutputFolder(tmp_path / "out")
        with target.writing() as folder:
            save_npy_atomic(folder / "image.npy", [1.0, 2.0])
            write_summary(folder, "summary.json", {"a": 1})
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for name in ("image.npy", "summary.json", MANIFEST_NAME):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_a_reconstruction_leaves_nothing(
    tmp_path: Path, signum: int, status: int
) -> None:
    out = tmp_path / "demo"
    process = subprocess.Popen(
        recon_command("demo", "-o", str(out), "--iterations", "1000", "--device", "cpu"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    deadline = time.monotonic() + 240
    seen = ""
    try:
        while "iteration 1/" not in seen:  # per-iteration progress lines (stderr is a pipe)
            line = process.stderr.readline()
            assert line or process.poll() is None, f"the demo ended early: {seen}"
            seen += line
            assert time.monotonic() < deadline, "no progress line within 4 minutes"
        process.send_signal(signum)
        _, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, seen + rest
    assert "nothing was written" in rest and "Traceback" not in rest
    assert list(tmp_path.iterdir()) == [], "something was left behind"
