"""recon/ type-checks: `mypy recon` with the configuration in pyproject.toml ([tool.mypy]).

CI runs mypy itself (.ci/run); this test shows a developer the same result with the suite. It is
skipped when mypy is not installed (pip install '.[test]'). mypy's cache goes to a temporary
folder, so nothing is left in the checkout and every run checks from scratch.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_recon_type_checks(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install '.[test]')")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache"), "recon"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
