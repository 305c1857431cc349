"""The `recon` command line.

Exit status: 0 on success; 2 for anything the user can fix (a bad option, file or value: one line
on stderr names the problem and the fix); 1 for an internal failure or an operating-system error
(disk full, permission denied); 130 after Ctrl-C and 143 after SIGTERM. No traceback is printed
unless ``--debug`` is given. A run that fails or is interrupted leaves no output behind.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from recon.commands import batch, demo, info, pet, pet_norm, quant, spect
from recon.errors import ReconError

__all__ = ["main"]

_COMMANDS = {
    "demo": demo, "spect": spect, "pet": pet, "pet-norm": pet_norm, "info": info, "quant": quant,
    "batch": batch,
}  # fmt: skip


class UsageError(ReconError):
    """A command line that argparse could not parse."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing the usage and exiting, so that every error is
    one line and goes through the same exit path."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="recon",
        description="Quantitative SPECT/PET reconstruction.",
        epilog="Exit status: 0 success, 2 bad input (one line on stderr), 1 internal or system "
        "error, 130 interrupted. Progress goes to stderr.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log more detail (choices and defaults taken)"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of an error"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMANDS.values():
        module.add_parser(commands)
    return parser


class _Formatter(logging.Formatter):
    """``recon: warning: …`` for warnings and errors, the bare message for progress lines."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = message.removeprefix("recon: ")
            return f"recon: {record.levelname.lower()}: {text}"
        return message


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Send recon's warnings, and progress lines when stderr is not a terminal, to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger("recon")
    progress = logging.getLogger("recon.progress")
    saved = (root.level, progress.level)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # A terminal shows a progress bar instead of the per-iteration lines.
    isatty = getattr(sys.stderr, "isatty", lambda: False)
    progress.setLevel(logging.INFO if (verbose or not isatty()) else logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.level, progress.level = saved


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so that temporary outputs are removed."""

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(message: str, status: int) -> int:
    print(message.replace("\n", " "), file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 only on success)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        with _sigterm_raises():
            try:
                args = _parser().parse_args(argv)
            except SystemExit as exc:  # --help, --version
                return int(exc.code or 0)
            with _logging(args.verbose):
                return int(_COMMANDS[args.command].run(args) or 0)
    except ReconError as exc:
        if debug:
            traceback.print_exc()
        return _fail(f"recon: error: {exc}", 2)
    except Terminated:
        return _fail("recon: terminated; nothing was written", 143)
    except KeyboardInterrupt:
        if getattr(sys.stderr, "isatty", lambda: False)():
            print(file=sys.stderr)  # end the progress bar's line
        return _fail("recon: interrupted; nothing was written", 130)
    except MemoryError:
        if debug:
            traceback.print_exc()
        return _fail(
            "recon: error: out of memory; use a smaller grid (--shape/--voxel-mm) or fewer subsets",
            1,
        )
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return _fail(f"recon: error: {exc.strerror or exc}{where}", 1)
    except Exception as exc:  # an internal failure: one line, the traceback on --debug
        if debug:
            traceback.print_exc()
        return _fail(
            f"recon: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
            "traceback, and please report it)",
            1,
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
