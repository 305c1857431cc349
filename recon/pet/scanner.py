"""Geometry of a cylindrical PET scanner: rings of crystals, crystal ids and positions."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, SupportsFloat, SupportsIndex, SupportsInt

import numpy as np

from recon.errors import GeometryError
from recon.pet.resolution import ImageResolution
from recon.pet.tof import Tof

__all__ = ["DEFAULT_ENERGY_RESOLUTION", "DEFAULT_ENERGY_WINDOW_KEV", "PetScanner"]

#: Energy window assumed (and reported) for a scanner description without one, keV: a common
#: window of LSO/LYSO scanners (e.g. the Discovery MI's, below).
DEFAULT_ENERGY_WINDOW_KEV = (425.0, 650.0)
#: Energy resolution (FWHM at 511 keV, as a fraction) assumed for a scanner without one: 12 %,
#: between current SiPM scanners (about 9-10 %) and PMT-based LSO scanners (about 12-13 %).
DEFAULT_ENERGY_RESOLUTION = 0.12
# The annihilation energy the window must contain (NNDC: 510.999 keV); scanner.py sits below
# recon.physics.isotopes in no layer, so the value is repeated rather than imported.
_ANNIHILATION_KEV = 510.999


# Named scanners. Each entry cites where its numbers come from; "approx." marks a value that is
# not printed in the cited paper and was chosen (or taken from another public description) so that
# the derived figures (axial FOV, detector diameter) match the paper.
#
# "small": an invented 8-ring test scanner, small enough for a 2-core laptop demo (a full span-1
#   TOF sinogram is 64 planes x 64 views x 65 radial x 19 TOF bins, about 5 million bins).
#   Rings of 8 mm give a 64 mm axial FOV, enough for the body phantom's sphere plane. 19 TOF bins
#   of 167 ps (25 mm each, ±238 mm) reach past the 150 mm ring radius plus three timing sigmas
#   (76 mm), so no true coincidence from inside the ring falls outside the TOF window.
#   Energy window 425-650 keV and 12 % energy resolution: made-up values, typical of LYSO.
#
# "dmi4": GE Discovery MI, 4-ring configuration. Hsu DFC, Ilan E, Peterson WT, Uribe J,
#   Lubberink M, Levin CS. Studies of a next-generation silicon-photomultiplier-based
#   time-of-flight PET/CT system. J Nucl Med 2017;58:1511-1518.
#   From the paper: LBS (LYSO) crystals 3.95 x 5.3 x 25 mm (so crystal_depth_mm = 25), 20 cm
#   axial FOV, 70 cm patient bore, coincidence timing resolution of about 385 ps (the 3-ring
#   system of the same design measured 375.6 ps: Vandendriessche D et al., EJNMMI Phys 2019;6:8).
#   Approx. (STIR's Scanner table for "GE Discovery MI 4 rings", which also cites Hsu et al.):
#   36 crystal rings (4 detector rings of 9 crystals), 544 crystals per ring, ring spacing
#   5.52296 mm (36 x 5.523 = 198.8 mm, the 20 cm FOV), effective LOR radius 380.5 mm.
#   We place crystals at half their depth, so radius_mm = 380.5 - 25/2 = 368.0 mm.
#   Approx. (our choice, not GE's TOF sinogram binning): 29 TOF bins of 169 ps (25.3 mm), which
#   span 4.90 ns of time difference (the 4.9 ns coincidence window reported for the Discovery MI)
#   and 735 mm along the LOR, more than the 70 cm transaxial FOV.
#   Energy: the 425-650 keV window of the paper's measurements and its energy resolution of 9.4 %
#   FWHM at 511 keV (STIR's Scanner table records 9.44 % from the same paper).
#
# "vision": Siemens Biograph Vision (600). van Sluis J, de Jong J, Schaar J, et al. Performance
#   characteristics of the digital Biograph Vision PET/CT system. J Nucl Med 2019;60:1031-1036.
#   From the paper: LSO crystals 3.2 x 3.2 x 20 mm (crystal_depth_mm = 20), 80 crystal rings,
#   760 crystals per ring, 26.3 cm axial FOV, 78 cm bore, time-of-flight resolution 210 ps.
#   Approx.: ring spacing 263 mm / 80 = 3.2875 mm (crystal pitch from the FOV);
#   radius_mm = 410 mm (detector front face, about 82 cm detector diameter, as in STIR's
#   "Siemens Vision 600" description; not in the paper); 33 TOF bins of 142.8 ps (21.4 mm), which
#   span 4.71 ns (the 4.7 ns coincidence window) and 706 mm, more than the 70 cm transaxial FOV.
#   Energy: the 435-585 keV window of the paper. Approx.: energy resolution 9 % FWHM at 511 keV
#   (the order reported for the Vision's LSO/SiPM detectors; recon's figure, not the paper's).
#
# Spatial resolution ("resolution": the default image-space PSF, recon.ImageResolution). NEMA NU 2
# FWHM in mm of an FBP reconstruction of an F-18 point source, used as the kernel to first order
# (recon/pet/resolution.py says what that includes and leaves out); radial and tangential figures
# are combined in quadrature into one transaxial FWHM, and the figures at 1 cm and 10 cm from the
# axis make it grow with the radius. The axial FWHM is the 1 cm figure (its growth is not modelled).
# Set ImageResolution explicitly for another isotope or a measured kernel.
#   "small": invented, of the order its 7.4 mm crystal pitch and 8 mm rings would give: 5.0 mm
#     transaxial, 5.5 mm axial, constant (its crystals have no depth, so no parallax).
#   "dmi4": Hsu et al. 2017 (above), table of NEMA NU 2 measurements (FBP): radial / tangential /
#     axial 4.10 / 4.19 / 4.48 mm at 1 cm and 5.47 / 4.49 / 6.01 mm at 10 cm. (The growth law
#     through the 1 cm and 10 cm figures gives 7.0 mm at 20 cm, where the paper's 7.53 / 4.90 mm
#     combine to 6.35 mm: the model blurs the outer field of view somewhat too much.)
#   "vision": van Sluis et al. 2019's figures were not at hand when this was written; the values are
#     those of the Biograph Vision Quadra, built from the same detectors (3.2 x 3.2 x 20 mm LSO):
#     Prenosil GA, Sari H, Fuerstner M, et al. Performance characteristics of the Biograph Vision
#     Quadra PET/CT system with a long axial field of view using the NEMA NU 2-2018 standard.
#     J Nucl Med 2022;63:476-484: radial / tangential / axial 3.3 / 3.4 / 3.8 mm. The abstract gives
#     one set of figures, without its radial offset; they are taken as near-axis values, constant.
_PRESETS: dict[str, dict[str, Any]] = {
    "small": {
        "n_rings": 8,
        "crystals_per_ring": 128,
        "radius_mm": 150.0,
        "ring_spacing_mm": 8.0,
        "crystal_depth_mm": 0.0,
        "tof": (400.0, 19, 167.0),
        "energy": ((425.0, 650.0), 0.12),
        "resolution": {"transaxial_1cm": (5.0, 5.0), "axial_1cm": 5.5},
    },
    "dmi4": {
        "n_rings": 36,
        "crystals_per_ring": 544,
        "radius_mm": 368.0,
        "ring_spacing_mm": 5.52296,
        "crystal_depth_mm": 25.0,
        "tof": (385.0, 29, 169.0),
        "energy": ((425.0, 650.0), 0.094),
        "resolution": {
            "transaxial_1cm": (4.10, 4.19),
            "axial_1cm": 4.48,
            "transaxial_10cm": (5.47, 4.49),
        },
    },
    "vision": {
        "n_rings": 80,
        "crystals_per_ring": 760,
        "radius_mm": 410.0,
        "ring_spacing_mm": 3.2875,
        "crystal_depth_mm": 20.0,
        "tof": (210.0, 33, 142.8),
        "energy": ((435.0, 585.0), 0.09),
        "resolution": {"transaxial_1cm": (3.3, 3.4), "axial_1cm": 3.8},
    },
}


def _preset_resolution(figures: dict[str, Any]) -> ImageResolution:
    """The kernel of a preset's NEMA figures: (radial, tangential) pairs in quadrature."""

    def transaxial(key: str) -> float | None:
        if key not in figures:
            return None
        radial, tangential = figures[key]
        return math.sqrt((radial**2 + tangential**2) / 2.0)

    near = transaxial("transaxial_1cm")
    assert near is not None
    return ImageResolution.from_nema(near, figures["axial_1cm"], transaxial("transaxial_10cm"))


# Crystal ids are int32 (DESIGN.md §3).
_MAX_CRYSTALS = 2**31 - 1


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, SupportsInt):
        raise GeometryError(f"{name} must be a positive integer, got {value!r}")
    try:
        as_int = int(value)
    except (TypeError, ValueError, OverflowError):
        raise GeometryError(f"{name} must be a positive integer, got {value!r}") from None
    if as_int != value or as_int < 1:
        raise GeometryError(f"{name} must be a positive integer, got {value!r}")
    return as_int


def _finite_float(value: object, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool | str) or not isinstance(value, SupportsFloat | SupportsIndex):
        raise GeometryError(f"{name} must be a number in mm, got {value!r}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"{name} must be a number in mm, got {value!r}") from None
    if not math.isfinite(as_float) or as_float < 0 or (as_float == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise GeometryError(f"{name} must be a finite {kind} length in mm, got {value!r}")
    return as_float


def _energy_window(value: object) -> tuple[float, float] | None:
    if value is None:
        return None
    message = f"energy_window_kev must be (lower, upper) in keV or None, got {value!r}"
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise GeometryError(message)
    if any(isinstance(v, bool | str) or not isinstance(v, SupportsFloat) for v in value):
        raise GeometryError(message)
    lower, upper = float(value[0]), float(value[1])
    if not (math.isfinite(lower) and math.isfinite(upper)) or not (
        0 <= lower < _ANNIHILATION_KEV < upper
    ):
        raise GeometryError(
            f"energy_window_kev {value!r} must satisfy 0 <= lower < 511 < upper (keV): a PET "
            "energy window contains the annihilation photopeak"
        )
    return (lower, upper)


def _energy_resolution(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool | str) or not isinstance(value, SupportsFloat | SupportsIndex):
        raise GeometryError(f"energy_resolution must be a fraction or None, got {value!r}")
    resolution = float(value)
    if not (math.isfinite(resolution) and 0 < resolution < 1):
        raise GeometryError(
            f"energy_resolution must be the FWHM at 511 keV as a fraction in (0, 1) (0.1 for "
            f"10 %), got {value!r}"
        )
    return resolution


@dataclass(frozen=True)
class PetScanner:
    """A cylindrical PET scanner of ``n_rings`` rings of ``crystals_per_ring`` crystals.

    Conventions (DESIGN.md §3): crystal id = ``ring * crystals_per_ring + index``. Crystal
    ``index`` sits at angle ``φ = 2π·index/crystals_per_ring`` in the (x, y) plane, measured from
    +x towards +y, at radius ``radius_mm + crystal_depth_mm/2``: each crystal is represented by
    the point at half its depth, a simple stand-in for the mean depth of interaction of 511 keV
    photons. Ring ``r`` sits at ``z = (r − (n_rings − 1)/2)·ring_spacing_mm``, so the scanner is
    centred on the isocentre.

    Parameters
    ----------
    n_rings : int
        Number of crystal rings (axial).
    crystals_per_ring : int
        Crystals in one ring (even, so that every crystal has an opposite one).
    radius_mm : float
        Radius of the detector front faces, mm.
    ring_spacing_mm : float
        Axial distance between neighbouring rings (crystal pitch), mm.
    crystal_depth_mm : float, optional
        Radial crystal length, mm (0 puts the crystals on the front face).
    tof : Tof or None, optional
        Timing resolution and TOF binning; None for a non-TOF scanner.
    name : str, optional
        A label.
    energy_window_kev : (float, float) or None, optional
        Lower and upper limits of the coincidence energy window, keV (the window must contain
        511 keV). None when unknown (scanner descriptions written before recon carried it):
        single-scatter simulation then assumes :data:`DEFAULT_ENERGY_WINDOW_KEV`, 425-650 keV,
        and says so in its report.
    energy_resolution : float or None, optional
        Energy resolution, FWHM of the 511 keV photopeak as a fraction of 511 keV (0.1 = 10 %).
        None when unknown: :data:`DEFAULT_ENERGY_RESOLUTION`, 12 %, is assumed and reported.
    resolution : ImageResolution or None, optional
        The scanner's spatial resolution as an image-space PSF, for models' ``resolution=``
        (presets carry their published NEMA figures); None: not known. Models use no resolution
        model unless given one.

    Raises
    ------
    GeometryError
        A size is not positive (or ``crystal_depth_mm`` negative), ``crystals_per_ring`` is odd,
        or the energy window or resolution is impossible.
    """

    n_rings: int
    crystals_per_ring: int
    radius_mm: float
    ring_spacing_mm: float
    crystal_depth_mm: float = 0.0
    tof: Tof | None = None
    name: str = "custom"
    energy_window_kev: tuple[float, float] | None = None
    energy_resolution: float | None = None
    resolution: ImageResolution | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "n_rings", _positive_int(self.n_rings, "n_rings"))
        n = _positive_int(self.crystals_per_ring, "crystals_per_ring")
        if n % 2:
            raise GeometryError(
                f"crystals_per_ring must be even (every crystal needs an opposite one), got {n}"
            )
        set_(self, "crystals_per_ring", n)
        if self.n_rings * n > _MAX_CRYSTALS:
            raise GeometryError(
                f"{self.n_rings} rings of {n} crystals is more than the {_MAX_CRYSTALS} crystal "
                "ids recon can hold (int32); check the scanner description"
            )
        set_(self, "radius_mm", _finite_float(self.radius_mm, "radius_mm"))
        set_(self, "ring_spacing_mm", _finite_float(self.ring_spacing_mm, "ring_spacing_mm"))
        depth = _finite_float(self.crystal_depth_mm, "crystal_depth_mm", allow_zero=True)
        set_(self, "crystal_depth_mm", depth)
        if self.tof is not None and not isinstance(self.tof, Tof):
            raise GeometryError(f"tof must be a recon Tof or None, got {type(self.tof).__name__}")
        if not isinstance(self.name, str):
            raise GeometryError(f"name must be text, got {self.name!r}")
        set_(self, "energy_window_kev", _energy_window(self.energy_window_kev))
        set_(self, "energy_resolution", _energy_resolution(self.energy_resolution))
        if self.resolution is not None and not isinstance(self.resolution, ImageResolution):
            raise GeometryError(
                "resolution must be a recon ImageResolution or None, got "
                f"{type(self.resolution).__name__}"
            )

    def energy_response(self) -> tuple[float, float, float, bool]:
        """``(lower_kev, upper_kev, resolution, assumed)``: the scanner's energy window and
        resolution, or the stated defaults where it has none (``assumed`` is then True)."""
        window = self.energy_window_kev
        resolution = self.energy_resolution
        assumed = window is None or resolution is None
        lower, upper = DEFAULT_ENERGY_WINDOW_KEV if window is None else window
        res = DEFAULT_ENERGY_RESOLUTION if resolution is None else resolution
        return float(lower), float(upper), float(res), assumed

    # ------------------------------------------------------------------ construction
    @staticmethod
    def preset_names() -> tuple[str, ...]:
        """The names :meth:`preset` knows."""
        return tuple(_PRESETS)

    @classmethod
    def from_dict(cls, fields: Any, where: str = "scanner description") -> PetScanner:
        """A scanner from a mapping of its fields (``tof`` as a mapping of :class:`Tof` fields,
        ``resolution`` of :class:`ImageResolution` fields), as stored in JSON by recon's listmode
        files and ``recon pet --scanner FILE.json``.

        ``energy_window_kev`` (a two-number list) and ``energy_resolution`` are optional:
        descriptions written before recon carried them read as None, and single-scatter
        simulation then assumes :data:`DEFAULT_ENERGY_WINDOW_KEV` and
        :data:`DEFAULT_ENERGY_RESOLUTION` (425-650 keV, 12 %) and reports that it did.

        Raises
        ------
        GeometryError
            Not a mapping, unknown or missing fields, or values of the wrong type or range; the
            message starts with ``where``.
        """
        if not isinstance(fields, dict):
            raise GeometryError(
                f"{where}: a scanner is a JSON object of fields, got {fields!r:.60}"
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(map(str, fields)) - known)
        if unknown:
            raise GeometryError(
                f"{where}: unknown scanner fields {unknown}; known: {sorted(known)}"
            )
        required = ("n_rings", "crystals_per_ring", "radius_mm", "ring_spacing_mm")
        missing = [name for name in required if name not in fields]
        if missing:
            raise GeometryError(f"{where}: missing scanner fields {', '.join(missing)}")
        fields = dict(fields)
        tof = fields.pop("tof", None)
        resolution = fields.pop("resolution", None)
        try:
            if resolution is not None:
                known_psf = set(ImageResolution.__dataclass_fields__)
                if not isinstance(resolution, dict) or not set(resolution) <= known_psf:
                    raise GeometryError(
                        "resolution must be null or an object with fields among "
                        f"{sorted(known_psf)}"
                    )
                fields["resolution"] = ImageResolution(**resolution)
            if tof is not None:
                if not isinstance(tof, dict) or set(tof) != {"fwhm_ps", "n_bins", "bin_width_ps"}:
                    raise GeometryError(
                        "tof must be null or an object with fwhm_ps, n_bins and bin_width_ps"
                    )
                tof = Tof(**tof)
            return cls(**fields, tof=tof)
        except TypeError as exc:  # a required field is missing
            raise GeometryError(f"{where}: {exc}") from None
        except GeometryError as exc:
            raise GeometryError(f"{where}: {exc}") from None

    @classmethod
    def preset(cls, name: str) -> PetScanner:
        """A named scanner: ``"small"`` (a test scanner), ``"dmi4"`` or ``"vision"``.

        ``"dmi4"`` resembles a 4-ring GE Discovery MI (Hsu et al., J Nucl Med 2017;58:1511) and
        ``"vision"`` a Siemens Biograph Vision (van Sluis et al., J Nucl Med 2019;60:1031); the
        module source says which numbers are published and which are approximations. Each carries
        its published spatial resolution as :attr:`resolution` (NEMA NU 2 figures turned into an
        image-space PSF, :meth:`ImageResolution.from_nema`); pass ``resolution=scanner.resolution``
        to a model to use it.

        Raises
        ------
        GeometryError
            ``name`` is not a known preset.
        """
        key = str(name).strip().lower()
        if key not in _PRESETS:
            known = ", ".join(sorted(_PRESETS))
            raise GeometryError(f"unknown PET scanner preset {name!r}; known presets: {known}")
        p = _PRESETS[key]
        fwhm_ps, n_bins, bin_width_ps = p["tof"]
        window, energy_resolution = p["energy"]
        return cls(
            n_rings=p["n_rings"],
            crystals_per_ring=p["crystals_per_ring"],
            radius_mm=p["radius_mm"],
            ring_spacing_mm=p["ring_spacing_mm"],
            crystal_depth_mm=p["crystal_depth_mm"],
            tof=Tof(fwhm_ps=fwhm_ps, n_bins=n_bins, bin_width_ps=bin_width_ps),
            name=key,
            energy_window_kev=window,
            energy_resolution=energy_resolution,
            resolution=_preset_resolution(p["resolution"]),
        )

    # ------------------------------------------------------------------ derived values
    @property
    def n_crystals(self) -> int:
        """Total number of crystals, ``n_rings * crystals_per_ring``."""
        return self.n_rings * self.crystals_per_ring

    @property
    def crystal_radius_mm(self) -> float:
        """Radius at which crystals are placed, ``radius_mm + crystal_depth_mm/2`` (mm)."""
        return self.radius_mm + self.crystal_depth_mm / 2.0

    @property
    def axial_fov_mm(self) -> float:
        """Axial extent of the crystal rings, ``n_rings * ring_spacing_mm`` (mm)."""
        return self.n_rings * self.ring_spacing_mm

    @functools.cached_property
    def crystal_angles_rad(self) -> np.ndarray:
        """Angle φ of each in-ring index, ``2π·index/crystals_per_ring``, radians."""
        angles = 2.0 * np.pi * np.arange(self.crystals_per_ring) / self.crystals_per_ring
        angles.setflags(write=False)
        return angles

    @functools.cached_property
    def transaxial_positions_mm(self) -> np.ndarray:
        """(x, y) in mm of each in-ring index, float32 array of shape (crystals_per_ring, 2)."""
        phi = self.crystal_angles_rad
        r = self.crystal_radius_mm
        xy = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1).astype(np.float32)
        xy.setflags(write=False)
        return xy

    @functools.cached_property
    def ring_z_mm(self) -> np.ndarray:
        """World z in mm of each ring, float32 array of shape (n_rings,)."""
        z = (np.arange(self.n_rings) - (self.n_rings - 1) / 2.0) * self.ring_spacing_mm
        z = z.astype(np.float32)
        z.setflags(write=False)
        return z

    @functools.cached_property
    def crystal_positions_mm(self) -> np.ndarray:
        """World (x, y, z) in mm of every crystal, float32 (n_crystals, 3), by crystal id."""
        n = self.crystals_per_ring
        pos = np.empty((self.n_crystals, 3), dtype=np.float32)
        pos[:, :2] = np.tile(self.transaxial_positions_mm, (self.n_rings, 1))
        pos[:, 2] = np.repeat(self.ring_z_mm, n)
        pos.setflags(write=False)
        return pos

    def ring_of(self, crystal: Any) -> Any:
        """Ring of a crystal id (or of each id in an integer array of any array module)."""
        return crystal // self.crystals_per_ring

    def index_of(self, crystal: Any) -> Any:
        """In-ring index of a crystal id (or of each id in an integer array)."""
        return crystal % self.crystals_per_ring

    def crystal_id(self, ring: Any, index: Any) -> Any:
        """Crystal id ``ring * crystals_per_ring + index`` (scalars or integer arrays)."""
        return ring * self.crystals_per_ring + index
