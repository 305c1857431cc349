"""Exception types raised by recon.

Every error that a user can cause derives from :class:`ReconError`, so scripts can catch one type,
and the command line prints the message on one line instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "ReconError",
    "InputError",
    "GeometryError",
    "DeviceError",
    "PhysicsError",
    "KernelError",
    "NumericalError",
]


class ReconError(Exception):
    """Base class of every error raised on purpose by recon."""


class InputError(ReconError, ValueError):
    """Data given to recon is malformed: wrong shape, dtype, units, or values (NaN, negative)."""


class GeometryError(ReconError, ValueError):
    """An acquisition or image geometry is inconsistent or cannot be handled."""


class DeviceError(ReconError, RuntimeError):
    """The requested compute device is not available or failed."""


class PhysicsError(ReconError, ValueError):
    """Unknown isotope, impossible energy window, or another physics-table problem."""


class KernelError(ReconError, RuntimeError):
    """A compute kernel was called with arguments that do not match its contract."""


class NumericalError(ReconError, ArithmeticError):
    """A computation produced NaN or infinity (values beyond float32 range for the problem)."""
