"""Progress display for long loops: a one-line bar on a terminal, a log line per step otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

__all__ = ["Progress"]

log = logging.getLogger("recon.progress")


class Progress:
    """Show progress of ``total`` steps.

    Parameters
    ----------
    total : int
        Number of steps.
    label : str
        What is running (e.g. ``"OSEM"``).
    enabled : bool or None
        ``True`` draws a bar on ``stream``; ``False`` draws nothing; ``None`` draws it when
        ``stream`` is a terminal. Each completed *outer* step (e.g. an iteration) is also logged at
        INFO level on the ``recon`` logger, so scripts that configure logging see one line per step.
    stream : file, optional
        Where the bar goes (default ``sys.stderr``).
    """

    def __init__(
        self, total: int, label: str, enabled: bool | None = None, stream: TextIO | None = None
    ) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = bool(isatty()) if enabled is None else bool(enabled)
        self.done = 0
        self.start = time.perf_counter()

    def step(self, message: str = "") -> None:
        """Mark one step done; ``message`` describes where the loop is."""
        self.done += 1
        if self.enabled:
            width = 30
            filled = int(width * self.done / self.total)
            elapsed = time.perf_counter() - self.start
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(
                f"\r{self.label} [{bar}] {self.done}/{self.total} {message} {elapsed:6.1f} s"
            )
            self.stream.flush()

    def log(self, message: str) -> None:
        """Log a milestone (e.g. an iteration finished) at INFO level."""
        log.info("%s: %s (%.1f s)", self.label, message, time.perf_counter() - self.start)

    def close(self) -> None:
        """End the bar's line."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
