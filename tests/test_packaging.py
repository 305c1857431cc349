"""Packaging contracts: a silent, side-effect-free import; kernels ship in the wheel and compile."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = sorted((ROOT / "kernels").glob("*.cu"))
# Without kernels, parametrising over an empty list would quietly skip; a sentinel makes it fail.
KERNEL_PARAMS = [pytest.param(p, id=p.name) for p in KERNELS] or [
    pytest.param(None, id="no-kernels")
]


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    # Run from the repository root so the checkout (not some other install) is imported, and
    # without PYTHON* variables (PYTHONWARNINGS would change the filters under test).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


_DUMP_STATE = (
    "import json, warnings\n"
    "print(json.dumps({'filters': [repr(f) for f in warnings.filters], 'modules': new,"
    " 'cupy': [m for m in sys.modules if m == 'cupy' or m.startswith('cupy.')],"
    " 'matplotlib': [m for m in sys.modules if m.split('.')[0] == 'matplotlib']}))\n"
)
# Imports recon and lists every module that the import loaded, in load order.
_WITH_RECON = (
    "import sys\nbefore = set(sys.modules)\nimport recon\n"
    "new = [m for m in sys.modules if m not in before]\n" + _DUMP_STATE
)
# Imports the same modules in the same order, except recon's own: numpy and scipy add warning
# filters of their own at import, and only a difference beyond theirs is recon's doing.
_WITHOUT_RECON = (
    "import importlib, json, sys\nnew = []\n"
    "for name in json.loads(sys.argv[1]):\n"
    "    if name.split('.')[0] != 'recon':\n"
    "        try:\n"
    "            importlib.import_module(name)\n"
    "        except Exception:\n"
    "            pass  # modules registered under names that cannot be imported directly\n"
    + _DUMP_STATE
)


def test_import_is_silent_and_side_effect_free() -> None:
    bare = _python("import recon")
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout == "", f"`import recon` printed to stdout: {bare.stdout!r}"
    assert bare.stderr == "", f"`import recon` printed to stderr: {bare.stderr!r}"

    with_recon = _python(_WITH_RECON)
    assert with_recon.returncode == 0, with_recon.stderr
    after = json.loads(with_recon.stdout)
    assert after["cupy"] == [], f"`import recon` imported CuPy: {after['cupy']}"
    # matplotlib is a dependency, but only figures need it: recon.figures imports it lazily.
    assert after["matplotlib"] == [], f"`import recon` imported matplotlib: {after['matplotlib']}"
    without = _python(_WITHOUT_RECON, json.dumps(after["modules"]))
    assert without.returncode == 0, without.stderr
    reference = json.loads(without.stdout)
    assert after["filters"] == reference["filters"], "`import recon` changed warnings.filters"


def test_matplotlib_is_a_core_dependency() -> None:
    # Every reconstruction writes a figure, so matplotlib may not hide in an extra.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [
        dep.split(">")[0].split("=")[0].split(";")[0].strip() for dep in project["dependencies"]
    ]
    assert "matplotlib" in names
    assert project["optional-dependencies"].get("plots", []) == []


def _missing_build_tools() -> str | None:
    for module in ("build", "hatchling"):
        if importlib.util.find_spec(module) is None:
            # --no-isolation builds with what is installed, so the backend must be here too.
            return f"`{module}` is not importable (pip install {module})"
    return None


@pytest.mark.slow
def test_wheel_ships_kernels_and_py_typed(tmp_path: Path) -> None:
    missing = _missing_build_tools()
    if missing:
        pytest.skip(f"cannot build the wheel: {missing}")
    assert KERNELS, "kernels/ holds no .cu files"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"wheel build failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(tmp_path.glob("*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
    missing_kernels = [p.name for p in KERNELS if f"recon/kernels/{p.name}" not in names]
    assert not missing_kernels, f"kernels missing from the wheel: {missing_kernels}"
    assert "recon/py.typed" in names
    assert "recon/__init__.py" in names


def test_kernels_folder_is_not_empty() -> None:
    assert KERNELS, f"no CUDA sources (*.cu) in {ROOT / 'kernels'}"


@pytest.mark.parametrize("source", KERNEL_PARAMS)
def test_kernel_compiles_with_nvcc(source: Path | None, tmp_path: Path) -> None:
    if source is None:
        pytest.fail(f"no CUDA sources (*.cu) in {ROOT / 'kernels'} to compile")
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH; kernels are compiled by CuPy (NVRTC) at run time only")
    proc = subprocess.run(
        [nvcc, "-std=c++17", "-arch=sm_90", "-ptx", "-o", os.devnull, str(source)],
        cwd=tmp_path,  # nvcc may leave intermediate files in the working directory
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"nvcc failed on {source.name}:\n{proc.stdout}\n{proc.stderr}"
