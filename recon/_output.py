"""All-or-nothing output folders: nothing appears until everything is written, and nothing that
recon did not write is ever replaced or removed.

A command writes its files into a temporary folder beside the destination
(``.NAME.recon-XXXXXX``) and the folder is moved into place only when every file is complete.
On any error, Ctrl-C or SIGTERM the temporary folder is removed, together with any parent
folders created for it, so a failed run leaves nothing behind.

Rules (checked before any work, and again when the results are moved into place):

- The destination may not be an input, contain an input, or lie inside an input folder (a CT
  series folder, say).
- A destination that exists must be a folder. An empty folder is used as it is. A non-empty
  folder is refused unless ``overwrite=True``; then only the files that recon wrote there, as
  listed in its manifest (``recon-manifest.json``, written by every run), are replaced. A file
  this run would write that the manifest does not list belongs to someone else: the run is
  refused. Files of the previous run that this run does not write again are removed only when
  their content is still what recon wrote (the manifest holds their SHA-256); everything else in
  the folder is left alone.
- Files and folders get the permissions of ordinary new files (0666/0777 filtered by the umask).

The manifest also records the SHA-256 of every input (:func:`input_checksums`, keyed by absolute
path) and the run's settings, so that ``recon batch`` can tell an output that is up to date
(same inputs, same settings, every file as written) from one that must be made again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from recon.errors import InputError

__all__ = ["MANIFEST_NAME", "OutputFolder", "input_checksums", "read_manifest"]

#: The file listing what recon wrote in an output folder (relative path -> SHA-256).
MANIFEST_NAME = "recon-manifest.json"
_MANIFEST_FORMAT = "recon-output-manifest"

log = logging.getLogger("recon")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_sha256(folder: Path) -> str:
    """One digest of a folder: every file's relative path and SHA-256, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{_sha256(path)}\n".encode())
    return digest.hexdigest()


def input_checksums(inputs: Iterable[str | os.PathLike[str]]) -> dict[str, str | None]:
    """SHA-256 of each input file (or of a folder's files), keyed by absolute path.

    A folder's digest covers every file below it with its relative path; an input that does not
    exist gets ``None``.
    """
    sums: dict[str, str | None] = {}
    for item in inputs:
        path = Path(os.path.abspath(item))
        if path.is_file():
            sums[str(path)] = _sha256(path)
        elif path.is_dir():
            sums[str(path)] = _folder_sha256(path)
        else:
            sums[str(path)] = None
    return sums


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The recon manifest of an output folder, or None when it has none (or an unreadable one)."""
    path = Path(folder) / MANIFEST_NAME
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(content, dict) or content.get("format") != _MANIFEST_FORMAT:
        return None
    return content


def _is_within(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies inside it (both resolved)."""
    return path == folder or folder in path.parents


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while files are being moved into place (POSIX only)."""
    held = {signal.SIGINT, signal.SIGTERM}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class OutputFolder:
    """An output folder that is written all at once, or not at all.

    Parameters
    ----------
    path : path-like
        The destination folder.
    inputs : iterable of path-like
        Files and folders the run reads; the destination may not be, contain or lie inside one.
    overwrite : bool
        Allow a non-empty destination; only files listed in its manifest are replaced.
    expected : iterable of str, optional
        Names (relative paths) the run will write, when known in advance, so that a clash with
        someone else's file is refused before any work rather than at the end.
    command : str
        What is writing (recorded in the manifest).

    Examples
    --------
    >>> target = OutputFolder("out", inputs=["scan.dcm"])      # checks, creates nothing
    >>> image = reconstruct(...)                                # doctest: +SKIP
    >>> with target.writing() as folder:                        # doctest: +SKIP
    ...     save(folder / "image.npy", image)                   # moved into out/ at the end

    Raises
    ------
    InputError
        The destination is refused (the message names the reason and the fix).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        inputs: Iterable[str | os.PathLike[str]] = (),
        overwrite: bool = False,
        expected: Iterable[str] = (),
        command: str = "recon",
    ) -> None:
        self.path = Path(path)
        self.inputs = [Path(p) for p in inputs if p is not None]
        self.overwrite = bool(overwrite)
        self.expected = tuple(expected)
        self.command = command
        self.check()

    def add_inputs(self, inputs: Iterable[str | os.PathLike[str] | None]) -> None:
        """Add inputs found while reading (an Interfile data file, say) and check again."""
        self.inputs += [Path(p) for p in inputs if p is not None]
        self.check()

    # ------------------------------------------------------------------------------- checks

    @property
    def _target(self) -> Path:
        return Path(os.path.abspath(self.path))

    def check(self) -> None:
        """Refuse a destination this run may not write (see the module docstring)."""
        target = self._target
        shown = self.path
        real = target.resolve()
        for item in self.inputs:
            source = item.resolve()
            if source == real:
                raise InputError(
                    f"output {shown} is the input {item}; choose another output folder"
                )
            if _is_within(source, real):
                raise InputError(
                    f"output folder {shown} contains the input {item}; choose a new folder that "
                    "holds no input (e.g. beside the inputs, not around them)"
                )
            if source.is_dir() and _is_within(real, source):
                raise InputError(
                    f"output folder {shown} is inside the input folder {item}; choose a folder "
                    "outside it (inputs are never modified)"
                )
        if target.exists() or target.is_symlink():
            if not target.is_dir():
                raise InputError(f"output {shown} exists and is not a folder; choose another name")
            if any(target.iterdir()):
                if not self.overwrite:
                    raise InputError(
                        f"output folder {shown} exists and is not empty; choose a new folder or "
                        "pass --overwrite (it replaces only the files recon wrote there)"
                    )
                owned = self._owned(target)
                self._check_clashes(target, owned, self.expected)
        else:
            for parent in target.parents:
                if parent.exists():
                    if not parent.is_dir():
                        raise InputError(
                            f"cannot create output folder {shown}: {parent} is not a folder"
                        )
                    break

    def _owned(self, target: Path) -> dict[str, str]:
        """Files recon wrote in ``target`` (relative path -> SHA-256), from its manifest."""
        manifest = target / MANIFEST_NAME
        if not manifest.is_file():
            return {}
        try:
            content = json.loads(manifest.read_text(encoding="utf-8"))
            files = content["files"] if content.get("format") == _MANIFEST_FORMAT else None
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            files = None
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise InputError(
                f"{manifest} is not a recon output manifest; recon cannot tell which files there "
                "are its own, so choose a new output folder"
            )
        return {k: v for k, v in files.items() if self._safe_relative(k)}

    @staticmethod
    def _safe_relative(name: str) -> bool:
        """A manifest entry must name a file inside the folder (no absolute paths, no ``..``)."""
        parts = Path(name).parts
        return bool(parts) and not Path(name).is_absolute() and ".." not in parts

    def _check_clashes(self, target: Path, owned: dict[str, str], names: Iterable[str]) -> None:
        for name in names:
            dest = target / name
            for parent in list(reversed(Path(name).parents))[1:]:
                folder = target / parent
                if (folder.exists() or folder.is_symlink()) and (
                    folder.is_symlink() or not folder.is_dir()
                ):
                    raise InputError(
                        f"{folder} is in the way of recon's output {name}; move it away or "
                        "choose a new output folder"
                    )
            if dest.is_symlink() or (dest.exists() and (dest.is_dir() or name not in owned)):
                raise InputError(
                    f"{dest} was not written by recon (its manifest does not list it); move it "
                    "away or choose a new output folder"
                )

    # ------------------------------------------------------------------------------- writing

    @contextlib.contextmanager
    def writing(self, record: dict[str, Any] | None = None) -> Iterator[Path]:
        """Yield a temporary folder to write into; move its files into place on success.

        ``record`` (settings, inputs) is stored in the manifest beside the list of files.
        On any exception (including KeyboardInterrupt) the temporary folder, and parent folders
        created for it, are removed and the exception propagates.
        """
        self.check()
        target = self._target
        created = self._make_parents(target)
        staging: Path | None = None
        try:
            staging = self._make_staging(target)
            yield staging
            self._commit(staging, target, record or {})
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise

    def _make_parents(self, target: Path) -> list[Path]:
        """Create missing parent folders; return them deepest first (for removal on failure)."""
        missing = [p for p in target.parents if not p.exists()]
        mode = 0o777 & ~_umask()
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=mode)
            except OSError as exc:
                for made in missing[missing.index(folder) + 1 :]:
                    with contextlib.suppress(OSError):
                        made.rmdir()
                raise InputError(f"cannot create output folder {self.path}: {exc}") from None
        return missing

    def _make_staging(self, target: Path) -> Path:
        mode = 0o777 & ~_umask()
        places = [target.parent] + ([target] if target.is_dir() else [])
        error: OSError | None = None
        for place in places:
            staging = place / f".{target.name}.recon-{secrets.token_hex(4)}"
            try:
                staging.mkdir(mode=mode)
                return staging
            except OSError as exc:
                error = exc
        raise InputError(f"cannot write output folder {self.path}: {error}")

    def _commit(self, staging: Path, target: Path, record: dict[str, Any]) -> None:
        written = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        files = {name: _sha256(staging / name) for name in written}
        manifest = {
            "format": _MANIFEST_FORMAT,
            "version": 1,
            "command": self.command,
            "written": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "files": files,
            "inputs": input_checksums(self.inputs),
            **record,
        }
        (staging / MANIFEST_NAME).write_text(
            json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8"
        )
        with _signals_deferred():
            if not (target.exists() or target.is_symlink()):
                try:
                    os.rename(staging, target)
                    return
                except OSError:
                    pass  # created meanwhile: merge below
            self._merge(staging, target, files)

    def _merge(self, staging: Path, target: Path, files: dict[str, str]) -> None:
        """Move the new files into an existing folder, replacing only recon's own files."""
        if target.is_symlink() or not target.is_dir():
            raise InputError(f"output {self.path} exists and is not a folder; choose another name")
        non_empty = any(p.name != staging.name for p in target.iterdir())
        if non_empty and not self.overwrite:
            raise InputError(
                f"output folder {self.path} is not empty (it was filled while recon ran); "
                "choose a new folder or pass --overwrite"
            )
        owned = self._owned(target) if non_empty else {}
        self._check_clashes(target, owned, files)
        mode = 0o777 & ~_umask()
        for name in [*files, MANIFEST_NAME]:
            dest = target / name
            for parent in reversed(Path(name).parents):
                folder = target / parent
                if not folder.is_dir():
                    folder.mkdir(mode=mode)
            os.replace(staging / name, dest)
        for name, digest in owned.items():
            if name in files:
                continue
            stale = target / name
            if not stale.is_file() or stale.is_symlink():
                continue
            if _sha256(stale) == digest:
                stale.unlink()
                self._remove_empty_parents(stale.parent, target)
            else:
                log.warning(
                    "recon: kept %s: an earlier run wrote it but it has changed since", stale
                )
        shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _remove_empty_parents(folder: Path, top: Path) -> None:
        while folder != top and _is_within(folder, top):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent
