"""Every command, fed the mistakes and attacks of :mod:`tests.hostile_corpus`, refuses cleanly.

For each case: the exit status is 2; stderr is exactly one line, starting ``recon: error:`` and
naming the problem; no traceback; no output folder or file is left behind; every file in the
sandbox (the inputs and the files around them) keeps its bytes and permissions; and the run's
peak Python/NumPy memory stays bounded (headers that declare petabytes are refused before any
allocation). A few cases also run as real processes (``python -m recon``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from recon.cli import main
from tests.hostile_corpus import CASES, build_sandbox

# No refusal may allocate more than this (the largest valid input here is a few hundred kB).
PEAK_MEMORY_BYTES = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sandbox(tmp_path_factory.mktemp("sandbox"))


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under ``root`` with its content hash (files) and mode."""
    state = {}
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        state[str(path.relative_to(root))] = (digest, mode)
    return state


def _argv(template: str, sandbox: Path, output: Path) -> list[str]:
    return template.format(s=sandbox, o=output).split()


def test_the_corpus_is_large_and_covers_every_command() -> None:
    assert len(CASES) >= 100
    assert len({name for name, *_ in CASES}) == len(CASES), "case ids must be unique"
    commands = {argv.split()[0] for _, argv, *_ in CASES}
    assert commands == {"info", "spect", "pet", "pet-norm", "quant", "batch"}


@pytest.mark.parametrize(("argv", "fragment", "status"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_hostile_input_is_refused_cleanly(
    sandbox: Path, capsys: pytest.CaptureFixture[str], argv: str, fragment: str, status: int
) -> None:
    output = sandbox / "new_output"
    before = _snapshot(sandbox)
    capsys.readouterr()
    tracemalloc.start()
    try:
        code = main(_argv(argv, sandbox, output))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == status, err
    assert len(lines) == 1, f"stderr should be one line:\n{err}"
    assert lines[0].startswith("recon: error:"), lines[0]
    assert "Traceback" not in err and "internal error" not in err
    assert fragment.lower() in lines[0].lower(), f"{fragment!r} not named in: {lines[0]}"
    assert _snapshot(sandbox) == before, "the sandbox changed (inputs or files beside them)"
    assert not output.exists()
    assert peak < PEAK_MEMORY_BYTES, f"peak memory {peak / 1e6:.0f} MB"


@pytest.mark.parametrize(
    "name", ["spect-opt-0", "info-lm_pickle", "pet-opt-0", "spect-config-iterations_bool",
             "out-contains-input", "quant-study_activity_text", "batch-cycle"],
)  # fmt: skip
def test_real_processes_exit_the_same_way(sandbox: Path, name: str) -> None:
    _, argv, fragment, status = next(c for c in CASES if c[0] == name)
    output = sandbox / "new_output"
    before = _snapshot(sandbox)
    result = subprocess.run(
        [sys.executable, "-m", "recon", *_argv(argv, sandbox, output)],
        capture_output=True, text=True, check=False, cwd=sandbox,
        env={**os.environ, "RECON_DEVICE": "cpu"},
    )  # fmt: skip
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recon: error:"), result.stderr
    assert fragment.lower() in lines[0].lower()
    assert _snapshot(sandbox) == before and not output.exists()


def test_debug_shows_the_traceback(sandbox: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "recon", "--debug", "info", str(sandbox / "bad" / "lm_pickle.npz")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "recon: error:" in result.stderr
