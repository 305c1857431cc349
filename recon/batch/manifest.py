"""The batch manifest: a TOML list of jobs, every one checked before any of them runs.

Manifest file
-------------

.. code-block:: toml

    [batch]                       # optional: options of `recon batch` (the command line wins)
    workers = 2
    retries = 2

    [spect]                       # optional: options of every spect job (as `recon spect --config`)
    iterations = 4
    sensitivity = 90.0

    [pet]                         # optional: options of every pet job
    calibration = 1.2e-3

    [[jobs]]
    name = "P01-day1"             # unique: letters, digits, '.', '_', '-'; names the log file
    kind = "spect"                # spect | pet | quant
    input = "P01/day1/nm.dcm"     # what `recon spect` takes (relative to this file)
    output = "P01/day1"           # folder inside the batch output (default: the name)
    ct = "P01/day1/ct"            # any option of `recon spect`, checked like its --config

    [[jobs]]
    name = "P01-pet"
    kind = "pet"
    input = "P01/pet.npz"
    frames = "3x20"               # dynamic PET ...
    split-frames = true           # ... as one job per frame: P01-pet-f000, P01-pet-f001, ...

    [[jobs]]
    name = "cohort"
    kind = "quant"
    input = "cohort.toml"         # a cohort file, or a list of study files
    after = ["P01-day1"]          # jobs it needs; default: every spect and pet job

A job's options are checked exactly as its command checks a ``--config`` table (strict types,
ranges, options that exclude each other, unknown keys named with the closest known one, paths
relative to the manifest), and so are the inputs (they must exist), the output folders (unique,
inside the batch output, none inside another, none around or inside an input) and the
dependencies (known jobs, no cycle). One bad job refuses the whole manifest before any work.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recon._files import load_toml
from recon._output import OutputFolder
from recon.commands import pet, quant, spect
from recon.commands.common import parse_frames
from recon.commands.options import Option, apply_table, resolve
from recon.errors import InputError

__all__ = ["KINDS", "Job", "Manifest", "load_manifest"]

#: Job kinds, the command each runs and the name of that command's positional argument.
KINDS: dict[str, tuple[Any, str]] = {
    "spect": (spect, "projections"),
    "pet": (pet, "listmode"),
    "quant": (quant, "study"),
}
_RESERVED = ("name", "kind", "input", "output", "after", "split-frames")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


@dataclass(frozen=True)
class Job:
    """One job of a batch: a command, its checked options and where it writes.

    Attributes
    ----------
    name : str
        Unique name (the log file is ``logs/<name>.log``).
    kind : str
        ``"spect"``, ``"pet"`` or ``"quant"``.
    args : argparse.Namespace
        The command's arguments, resolved and checked (as the command line would give them).
    output : Path
        The job's own output folder (absolute).
    inputs : tuple of Path
        The files the job reads, as given in the manifest (the command may find more).
    after : tuple of str
        Names of the jobs that must finish first.
    settings : dict
        The options the manifest sets (None: the command's default), as recorded in the output
        folder's ``recon-manifest.json``.
    """

    name: str
    kind: str
    args: argparse.Namespace
    output: Path
    inputs: tuple[Path, ...]
    after: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> str:
        """The command line this job is equivalent to (for logs)."""
        module, positional = KINDS[self.kind]
        parts = ["recon", self.kind]
        value = getattr(self.args, positional)
        parts += value if isinstance(value, list) else [value]
        parts += ["-o", str(self.output)]
        if getattr(self.args, "no_plots", False):
            parts.append("--no-plots")
        for option in module.OPTIONS:
            value = getattr(self.args, option.dest, None)
            if not option.in_config or value is None or value is False:
                continue
            if option.kind == "flag":
                parts.append(option.flag_name)
            elif isinstance(value, list):
                parts += [option.flag_name, *map(str, value)]
            else:
                parts += [option.flag_name, str(value)]
        return " ".join(parts)


@dataclass(frozen=True)
class Manifest:
    """A checked batch manifest.

    Attributes
    ----------
    path : Path
        The manifest file.
    output : Path
        The batch output folder (absolute).
    jobs : tuple of Job
        In an order where every job comes after the jobs it depends on.
    batch_options : dict
        The manifest's ``[batch]`` table (options of ``recon batch``), unchecked here.
    """

    path: Path
    output: Path
    jobs: tuple[Job, ...]
    batch_options: dict[str, Any]

    def job(self, name: str) -> Job:
        """The job called ``name``."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)


def load_manifest(path: str | os.PathLike[str], output: str | os.PathLike[str]) -> Manifest:
    """Read and check a batch manifest whose jobs write into ``output``.

    Parameters
    ----------
    path : path-like
        The TOML manifest (schema: this module's docstring).
    output : path-like
        The batch output folder; each job writes into its own folder inside it.

    Returns
    -------
    Manifest

    Raises
    ------
    InputError
        Anything wrong with any job (the message names the file, the job and the key).
    """
    path = Path(path)
    document = load_toml(path)
    unknown = [k for k in document if k not in ("batch", "jobs", *KINDS)]
    if unknown:
        raise InputError(
            f"{path}: unknown table [{unknown[0]}]"
            + _suggest(unknown[0], ["batch", "jobs", *KINDS])
            + "; a manifest has [batch], [spect], [pet], [quant] and [[jobs]]"
        )
    batch_options = document.get("batch", {})
    if not isinstance(batch_options, dict):
        raise InputError(f"{path}: [batch] must be a table of options")
    entries = document.get("jobs")
    if not isinstance(entries, list) or not entries:
        raise InputError(f'{path}: no jobs; add [[jobs]] tables (kind = "spect", input = ...)')
    defaults = {}
    for kind in KINDS:
        table = document.get(kind, {})
        if not isinstance(table, dict):
            raise InputError(f"{path}: [{kind}] must be a table of options")
        defaults[kind] = table
    out = Path(os.path.abspath(output))
    jobs: list[Job] = []
    for index, entry in enumerate(entries):
        jobs += _jobs_of(entry, index, path, out, defaults)
    _check_names_and_outputs(jobs, path, out)
    ordered = _ordered(jobs, path)
    return Manifest(path, out, tuple(ordered), dict(batch_options))


# ------------------------------------------------------------------------------------ one job


def _suggest(word: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"


def _jobs_of(
    entry: Any, index: int, path: Path, out: Path, defaults: dict[str, dict[str, Any]]
) -> list[Job]:
    """The job(s) of one ``[[jobs]]`` table (several for a PET job split into frames)."""
    where = f"{path}: jobs[{index}]"
    if not isinstance(entry, dict):
        raise InputError(f"{where} must be a table (use [[jobs]])")
    table = {str(k).replace("_", "-"): v for k, v in entry.items()}
    name = table.get("name")
    if name is not None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InputError(
                f"{where} name must be a string of letters, digits, '.', '_' or '-' "
                f"(it names the log file), got {name!r}"
            )
        where = f"{path}: job {name!r}"
    kind = table.get("kind")
    if kind is None:
        raise InputError(f'{where} needs a kind: "spect", "pet" or "quant"')
    if not isinstance(kind, str) or kind not in KINDS:
        raise InputError(
            f"{where} kind must be one of {', '.join(KINDS)}, got {kind!r}"
            + (_suggest(kind, list(KINDS)) if isinstance(kind, str) else "")
        )
    if name is None:
        raise InputError(f'{where} needs a name (e.g. name = "P01-{kind}")')
    module, positional = KINDS[kind]
    inputs = _inputs(table.get("input"), kind, where, path.parent)
    output = _output(table.get("output", name), where, out)
    after = table.get("after")
    if after is not None and (
        not isinstance(after, list) or not all(isinstance(a, str) for a in after)
    ):
        raise InputError(f'{where} after must be a list of job names, e.g. ["P01-day1"]')
    split = table.get("split-frames", False)
    if not isinstance(split, bool):
        raise InputError(f"{where} split-frames must be true or false (no quotes), got {split!r}")
    if split and kind != "pet":
        raise InputError(f"{where} split-frames applies to pet jobs only")

    options = {k: v for k, v in table.items() if k not in _RESERVED}
    shared = dict(defaults[kind])
    no_plots = False
    if kind == "quant":  # a switch of recon quant's command line, allowed here
        no_plots = options.pop("no-plots", shared.pop("no-plots", False))
    if not isinstance(no_plots, bool):
        raise InputError(f"{where} no-plots must be true or false (no quotes), got {no_plots!r}")
    args = _arguments(module, positional, inputs, kind)
    apply_table(args, module.OPTIONS, options, where, path.parent, known_extra=_RESERVED)
    apply_table(args, module.OPTIONS, shared, f"{path}: [{kind}]", path.parent)
    try:
        resolve(args, module.OPTIONS, kind)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if kind == "quant":
        args.no_plots = no_plots
    extra = [
        Path(os.path.abspath(getattr(args, o.dest)))
        for o in module.OPTIONS
        if _is_input_path(o, args)
    ]
    for item in extra:
        if not item.exists():
            raise InputError(f"{where}: {item} does not exist (paths are relative to {path.name})")
    all_inputs = tuple(inputs) + tuple(extra)
    depends = tuple(after) if after is not None else None
    if not split:
        return [_job(name, kind, args, output, all_inputs, depends)]
    if args.frames is None:
        raise InputError(f'{where} split-frames needs frames (e.g. frames = "6x10")')
    try:
        frames = parse_frames(args.frames, math.inf)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    jobs = []
    for number, (start, length) in enumerate(frames):
        frame_args = argparse.Namespace(**vars(args))
        frame_args.frames = f"{start:g}:{start + length:g}"
        jobs.append(
            _job(f"{name}-f{number:03d}", kind, frame_args, output / f"frame_{number:03d}",
                 all_inputs, depends)
        )  # fmt: skip
    return jobs


def _job(
    name: str,
    kind: str,
    args: argparse.Namespace,
    output: Path,
    inputs: tuple[Path, ...],
    after: tuple[str, ...] | None,
) -> Job:
    module, _ = KINDS[kind]
    args.output = str(output)
    settings = {o.dest: getattr(args, o.dest, None) for o in module.OPTIONS if o.in_config}
    # The sentinel () marks "every reconstruction job", filled in once all jobs are known.
    depends = after if after is not None else (("*",) if kind == "quant" else ())
    return Job(name, kind, args, output, inputs, depends, _plain(settings))


def _plain(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples become lists), to compare with a manifest."""
    return json.loads(json.dumps(value, default=str))


def _is_input_path(option: Option, args: argparse.Namespace) -> bool:
    return option.kind == "path" and option.in_config and getattr(args, option.dest) is not None


def _arguments(module: Any, positional: str, inputs: list[Path], kind: str) -> argparse.Namespace:
    """The Namespace the command's parser would give before its options are resolved."""
    values: dict[str, Any] = {o.dest: None for o in module.OPTIONS}
    values["overwrite"] = True  # a rerun replaces only what an earlier run of the job wrote
    values[positional] = [str(p) for p in inputs] if kind == "quant" else str(inputs[0])
    return argparse.Namespace(command=kind, verbose=False, debug=False, **values)


def _inputs(value: Any, kind: str, where: str, folder: Path) -> list[Path]:
    items = value if kind == "quant" and isinstance(value, list) else [value]
    if value is None or not items or not all(isinstance(v, str) and v for v in items):
        what = "a file name or a list of study files" if kind == "quant" else "a file name"
        raise InputError(f"{where} input must be {what} (in quotes), got {value!r}")
    paths = []
    for item in items:
        given = Path(item).expanduser()
        full = given if given.is_absolute() else folder / given
        full = Path(os.path.abspath(full))
        if not full.exists():
            raise InputError(f"{where} input {full}: no such file (paths are relative to the "
                             "manifest's folder)")  # fmt: skip
        paths.append(full)
    return paths


def _output(value: Any, where: str, out: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(f"{where} output must be a folder name (in quotes), got {value!r}")
    relative = Path(value)
    if relative.is_absolute() or ".." in relative.parts or relative.parts[0] == "logs":
        raise InputError(
            f"{where} output {value!r} must be a folder inside the batch output (a relative "
            "path without '..', not logs/)"
        )
    return out / relative


# ------------------------------------------------------------------------------- whole manifest


def _check_names_and_outputs(jobs: list[Job], path: Path, out: Path) -> None:
    seen: dict[str, Job] = {}
    for job in jobs:
        if job.name in seen:
            raise InputError(f"{path}: two jobs are named {job.name!r}; give each a unique name")
        seen[job.name] = job
    by_output: dict[Path, Job] = {}
    for job in jobs:
        other = by_output.get(job.output)
        if other is not None:
            raise InputError(
                f"{path}: jobs {other.name!r} and {job.name!r} both write to {job.output}; "
                "give each its own output"
            )
        by_output[job.output] = job
    for job in jobs:
        for other in jobs:
            if other is not job and other.output in job.output.parents:
                raise InputError(
                    f"{path}: job {job.name!r} writes to {job.output}, inside the output of "
                    f"job {other.name!r}; give it a folder of its own"
                )
        try:
            OutputFolder(job.output, inputs=job.inputs, overwrite=True)
        except InputError as exc:
            raise InputError(f"{path}: job {job.name!r}: {exc}") from None
        for other in jobs:
            for item in other.inputs:
                if job.output == item or job.output in item.parents:
                    raise InputError(
                        f"{path}: job {job.name!r} writes to {job.output}, which holds "
                        f"{item}, an input of job {other.name!r}; choose another output"
                    )


def _ordered(jobs: list[Job], path: Path) -> list[Job]:
    """Jobs with their dependencies resolved, each after those it needs; cycles refused."""
    names = [job.name for job in jobs]
    producers = [job.name for job in jobs if job.kind != "quant"]
    resolved: dict[str, Job] = {}
    for job in jobs:
        after = tuple(producers) if job.after == ("*",) else job.after
        for dep in after:
            if dep == job.name:
                raise InputError(f"{path}: job {job.name!r} depends on itself")
            if dep not in names:
                raise InputError(
                    f"{path}: job {job.name!r} depends on unknown job {dep!r}"
                    + _suggest(dep, names)
                )
        resolved[job.name] = Job(
            job.name, job.kind, job.args, job.output, job.inputs, after, job.settings
        )
    order: list[Job] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = trail[trail.index(name) :] + [name]
            raise InputError(f"{path}: the jobs depend on each other in a cycle: "
                             f"{' -> '.join(cycle)}; remove one dependency")  # fmt: skip
        state[name] = "visiting"
        for dep in resolved[name].after:
            visit(dep, [*trail, name])
        state[name] = "done"
        order.append(resolved[name])

    for name in names:
        visit(name, [])
    return order
