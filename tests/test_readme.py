"""The README's commands are the ones that exist: every `recon ...` line in its shell blocks
parses with the real command line (options, choices, value types), and CI runs the README's test
command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from recon.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _shell_lines() -> list[str]:
    """Commands of the README's ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            text = line.split("#", 1)[0].strip()
            if text:
                commands.append(text)
    return commands


RECON_LINES = [c for c in _shell_lines() if c.startswith("recon ") or "&& recon " in c]


def test_the_readme_shows_recon_commands() -> None:
    assert len(RECON_LINES) >= 10
    assert {shlex.split(c.split("&& ")[-1])[1] for c in RECON_LINES} >= {
        "demo", "info", "spect", "pet", "quant"
    }  # fmt: skip


@pytest.mark.parametrize("command", RECON_LINES)
def test_every_readme_command_parses(command: str) -> None:
    argv = shlex.split(command.split("&& ")[-1])[1:]
    if "--help" in argv:
        argv.remove("--help")
        if argv[-1].endswith(".dcm"):
            argv += ["-o", "OUT"]
    _parser().parse_args(argv)  # raises (a ReconError) on an unknown option or a bad value


def test_ci_runs_the_readme_test_command() -> None:
    assert "pip install '.[test]' && python -m pytest" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install '.[test]'" in ci and "python -m pytest" in ci
