"""Run ``python -m recon …`` in a child process that turns Ctrl-C into KeyboardInterrupt.

A shell without job control (a CI script, ``cmd &``) starts background commands with SIGINT
ignored, children inherit that, and Python then installs no KeyboardInterrupt handler, so a test
that sends SIGINT would see the child run on. A user's Ctrl-C at a terminal reaches recon with the
default disposition; this puts the child in that state whatever started pytest.
"""

from __future__ import annotations

import sys

_WITH_CTRL_C = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('recon', run_name='__main__', alter_sys=True)"
)


def recon_command(*args: str) -> list[str]:
    """The argument list of ``python -m recon *args`` with Ctrl-C handled (module docstring)."""
    return [sys.executable, "-c", _WITH_CTRL_C, *args]
