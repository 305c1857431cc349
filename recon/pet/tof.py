"""Time-of-flight description of a PET scanner."""

from __future__ import annotations

import math
from dataclasses import dataclass

from recon.errors import GeometryError

__all__ = ["SPEED_OF_LIGHT_MM_PER_PS", "Tof"]

#: Speed of light in vacuum, mm/ps (CODATA 2018, exact by definition of the metre).
SPEED_OF_LIGHT_MM_PER_PS = 0.299792458
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# Signed TOF bins are stored as int16 (DESIGN.md §3).
_MAX_BINS = 2 * 32767 + 1


@dataclass(frozen=True)
class Tof:
    """Timing resolution and TOF binning.

    A coincidence-time difference ``Δt`` places the annihilation ``c·Δt/2`` from the LOR midpoint,
    so timing figures in ps become distances along the LOR in mm through ``c/2``.

    TOF bins are signed (DESIGN.md §3): bin 0 is centred on the LOR midpoint, positive bins lie
    towards the second endpoint (crystal_b), and bins run from ``−(n_bins−1)/2`` to
    ``(n_bins−1)/2``; ``n_bins`` is odd. Sinogram TOF axes store them in increasing order.

    Parameters
    ----------
    fwhm_ps : float
        Coincidence timing resolution (FWHM) in ps.
    n_bins : int
        Number of TOF bins (odd).
    bin_width_ps : float
        Width of one TOF bin in ps (of coincidence-time difference).
    """

    fwhm_ps: float
    n_bins: int
    bin_width_ps: float

    def __post_init__(self) -> None:
        for name in ("fwhm_ps", "bin_width_ps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise GeometryError(f"TOF {name} must be a number in ps, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise GeometryError(f"TOF {name} must be positive, got {value}")
        n_bins = self.n_bins
        if (
            isinstance(n_bins, bool)
            or not isinstance(n_bins, int | float)
            or not math.isfinite(n_bins)
            or int(n_bins) != n_bins
            or not 1 <= n_bins <= _MAX_BINS
            or n_bins % 2 == 0
        ):
            raise GeometryError(
                f"TOF n_bins must be a positive odd integer up to {_MAX_BINS}, got {n_bins!r}"
            )
        object.__setattr__(self, "n_bins", int(n_bins))

    @property
    def sigma_mm(self) -> float:
        """Standard deviation of the position along the LOR, mm."""
        return self.fwhm_ps * SPEED_OF_LIGHT_MM_PER_PS / 2.0 / _FWHM_PER_SIGMA

    @property
    def fwhm_mm(self) -> float:
        """Timing resolution as a distance along the LOR (FWHM), mm."""
        return self.fwhm_ps * SPEED_OF_LIGHT_MM_PER_PS / 2.0

    @property
    def bin_width_mm(self) -> float:
        """Width of one TOF bin along the LOR, mm."""
        return self.bin_width_ps * SPEED_OF_LIGHT_MM_PER_PS / 2.0

    @property
    def max_bin(self) -> int:
        """Largest signed bin index, ``(n_bins − 1) / 2``."""
        return (self.n_bins - 1) // 2

    def bin_centre_mm(self, tof_bin: int) -> float:
        """Signed distance from the LOR midpoint (towards crystal_b) of the centre of a bin, mm."""
        return float(tof_bin) * self.bin_width_mm
