"""Radionuclide data: half-lives, photon energies and yields, positron branching ratios."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from recon.errors import InputError, PhysicsError
from recon.physics.radionuclide_codes import DICOM_RADIONUCLIDE_CODES

__all__ = [
    "ANNIHILATION_KEV",
    "ISOTOPES",
    "PHOTOPEAK_MIN_YIELD",
    "Isotope",
    "Photon",
    "get_isotope",
]

#: Energy of each annihilation photon, m_e·c² in keV (CODATA 2018: 510.998 950 keV).
ANNIHILATION_KEV = 510.999

#: Smallest yield per decay of a line that an acquisition window is set on (a photopeak): the
#: lines of a few per cent and more that clinical protocols image (Lu-177 113 keV at 6.2 %, Tl-201
#: 167 keV at 10 %, I-131 637 keV at 7.2 %), not the minor lines (Tl-201 135 keV at 2.6 %).
PHOTOPEAK_MIN_YIELD = 0.05

_MINUTE = 60.0
_HOUR = 3600.0
_DAY = 86400.0


@dataclass(frozen=True)
class Photon:
    """One photon line of a radionuclide.

    Parameters
    ----------
    energy_kev : float
        Photon energy in keV.
    yield_per_decay : float
        Mean number of photons of this line emitted per decay (absolute intensity). It exceeds 1
        only for the 511 keV annihilation line, whose yield is 2 × the positron branching ratio.
    """

    energy_kev: float
    yield_per_decay: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.energy_kev) and self.energy_kev > 0):
            raise PhysicsError(
                f"photon energy must be a positive number of keV, got {self.energy_kev}"
            )
        # Two annihilation photons per positron is the most a single line can have per decay.
        if not (math.isfinite(self.yield_per_decay) and 0 <= self.yield_per_decay <= 2):
            raise PhysicsError(
                f"photon yield per decay must lie in [0, 2], got {self.yield_per_decay}"
            )


@dataclass(frozen=True)
class Isotope:
    """A radionuclide as far as imaging needs it.

    Parameters
    ----------
    name : str
        Canonical name, e.g. ``"Tc-99m"``.
    half_life_s : float
        Half-life in seconds.
    photons : tuple of Photon
        Photon lines useful for imaging (for positron emitters: the 511 keV annihilation line first,
        then the main gamma lines).
    positron_fraction : float
        Positron (β+) branching ratio, positrons per decay, in [0, 1].
    """

    name: str
    half_life_s: float
    photons: tuple[Photon, ...]
    positron_fraction: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.half_life_s) and self.half_life_s > 0):
            raise PhysicsError(
                f"{self.name}: half-life must be a positive number of seconds, "
                f"got {self.half_life_s}"
            )
        if not (math.isfinite(self.positron_fraction) and 0 <= self.positron_fraction <= 1):
            raise PhysicsError(
                f"{self.name}: positron fraction must lie in [0, 1], got {self.positron_fraction}"
            )
        if not self.photons:
            raise PhysicsError(f"{self.name}: an imaging isotope needs at least one photon line")
        # A tuple keeps the dataclass hashable and immutable even if a list was passed.
        object.__setattr__(self, "photons", tuple(self.photons))

    @property
    def decay_constant_per_s(self) -> float:
        """Decay constant λ = ln 2 / T½ in 1/s."""
        return math.log(2.0) / self.half_life_s

    @property
    def half_life_h(self) -> float:
        """Half-life in hours."""
        return self.half_life_s / _HOUR

    @property
    def main_photon(self) -> Photon:
        """The photon line with the highest yield per decay.

        For most positron emitters this is the 511 keV annihilation line; for Zr-89, I-124 and
        Mn-52 a gamma line is more abundant than the annihilation photons (Zr-89's 909 keV
        gamma follows the 15.7 s Y-89m isomer, so it is not prompt in coincidence terms).
        """
        return max(self.photons, key=lambda p: p.yield_per_decay)

    @property
    def photopeak_lines(self) -> tuple[Photon, ...]:
        """The lines an energy window may be set on: yield ≥ :data:`PHOTOPEAK_MIN_YIELD`, in the
        order of the table (increasing energy for single-photon emitters).

        In-111: 171 and 245 keV; Lu-177: 113 and 208 keV; Ga-67: 93, 185 and 300 keV; Tl-201: the
        69 and 71 keV Hg K x-rays and 167 keV; I-131: 284, 364 and 637 keV; Tc-99m: 140 keV.
        """
        return tuple(p for p in self.photons if p.yield_per_decay >= PHOTOPEAK_MIN_YIELD)

    @property
    def is_positron_emitter(self) -> bool:
        """True when the isotope decays by β+ emission in some branch."""
        return self.positron_fraction > 0


def _pet(name: str, half_life_s: float, beta_plus: float, *gammas: tuple[float, float]) -> Isotope:
    # The annihilation line carries two photons per positron.
    photons = (Photon(ANNIHILATION_KEV, 2.0 * beta_plus), *(Photon(e, y) for e, y in gammas))
    return Isotope(name, half_life_s, photons, beta_plus)


def _spect(name: str, half_life_s: float, *lines: tuple[float, float]) -> Isotope:
    return Isotope(name, half_life_s, tuple(Photon(e, y) for e, y in lines), 0.0)


# Half-lives, photon energies (keV) and absolute yields per decay, and positron branching ratios:
# NNDC NuDat 3 (https://www.nndc.bnl.gov/nudat3/), i.e. the ENSDF evaluations, except where a line
# says [DDEP] (LNHB/DDEP "Table de Radionucléides", http://www.lnhb.fr/nuclear-data/). Only the
# lines that matter for imaging are listed: the main gammas/x-rays of single-photon emitters, and
# for β+ emitters the 511 keV annihilation line plus the main gamma lines (which add background
# and can dominate the photon count). Values are written to the precision their source was known
# to. Re-checked on 2026-11-25 against the ENSDF evaluations (NuDat 3 and an ENSDF-derived table):
# half-lives, β+ fractions and the main lines agree within the evaluations' uncertainties (Lu-177
# and the I-123 yield were updated then). Not re-checked: the Tl-201 Hg K x-ray yields and the
# minor (few-per-cent) lines; compare those against NuDat before relying on them.
ISOTOPES: dict[str, Isotope] = {
    iso.name: iso
    for iso in (
        # ---- single-photon emitters -------------------------------------------------------
        # [DDEP] half-life 6.0067 h and the 140.511 keV yield 0.885.
        _spect("Tc-99m", 6.0067 * _HOUR, (140.511, 0.885)),
        _spect("In-111", 2.8047 * _DAY, (171.28, 0.9066), (245.35, 0.9409)),
        _spect("I-123", 13.2235 * _HOUR, (158.97, 0.836)),
        _spect(
            "I-131",
            8.0252 * _DAY,
            (80.185, 0.0262),
            (284.305, 0.0612),
            (364.490, 0.815),
            (636.989, 0.0716),
            (722.911, 0.0177),
        ),
        _spect("Lu-177", 6.6443 * _DAY, (112.95, 0.0623), (208.37, 0.1041)),
        _spect(
            "Ga-67",
            3.2617 * _DAY,
            (93.310, 0.3881),
            (184.576, 0.2141),
            (300.217, 0.1664),
            (393.527, 0.0456),
        ),
        # Tl-201 is imaged with its mercury K x-rays (69-83 keV); Kα yields to two figures.
        _spect(
            "Tl-201",
            3.0421 * _DAY,
            (68.89, 0.27),
            (70.82, 0.46),
            (135.34, 0.026),
            (167.43, 0.100),
        ),
        # ---- positron emitters: 511 keV line (yield 2·β+) and the main gamma lines ----------
        _pet("F-18", 109.77 * _MINUTE, 0.9673),
        _pet("C-11", 20.364 * _MINUTE, 0.9976),
        _pet("N-13", 9.965 * _MINUTE, 0.9980),
        _pet("O-15", 122.24, 0.9990),
        _pet("Ga-68", 67.71 * _MINUTE, 0.8891, (1077.34, 0.0322)),
        _pet("Cu-64", 12.701 * _HOUR, 0.1752, (1345.77, 0.00475)),
        _pet("Zr-89", 78.41 * _HOUR, 0.2274, (909.15, 0.9904)),
        _pet("I-124", 4.1760 * _DAY, 0.2256, (602.73, 0.629), (722.78, 0.104), (1690.96, 0.111)),
        _pet("Rb-82", 1.2575 * _MINUTE, 0.9545, (776.52, 0.1508)),
        _pet("Mn-52", 5.591 * _DAY, 0.2942, (744.23, 0.900), (935.54, 0.945), (1434.09, 1.000)),
    )
}

# Element names, so that "Technetium-99m" or "fluorine18" are understood as well as symbols: the
# names that end the DICOM code meanings (one table, recon.physics.radionuclide_codes).
_ELEMENT_NAMES = {
    code.isotope.split("-")[0].lower(): code.element for code in DICOM_RADIONUCLIDE_CODES.values()
}

_CANONICAL = re.compile(r"^([A-Z][a-z]?)-(\d+)(m?)$")
# Separators people (and DICOM code meanings such as "^99m^Technetium") put inside names.
_SEPARATORS = re.compile(r"[\s\-_^]+")


def _normalise(name: str) -> str:
    return _SEPARATORS.sub("", name).lower()


def _build_aliases() -> dict[str, str]:
    # Enumerate every accepted spelling of every known isotope instead of parsing free text:
    # parsing is ambiguous ("52mn" could be Mn-52 or a metastable "N-52m"), a lookup is not.
    aliases: dict[str, str] = {}
    for canonical in ISOTOPES:
        match = _CANONICAL.match(canonical)
        if match is None:  # pragma: no cover - guards the table above
            raise PhysicsError(f"isotope table name {canonical!r} is not of the form 'Tc-99m'")
        symbol, mass, meta = match.group(1).lower(), match.group(2), match.group(3)
        for element in (symbol, _ELEMENT_NAMES[symbol]):
            # Tc99m, 99mTc, and the older British 99Tcm.
            for spelling in (element + mass + meta, mass + meta + element, mass + element + meta):
                previous = aliases.setdefault(spelling, canonical)
                if previous != canonical:  # pragma: no cover - guards the table above
                    raise PhysicsError(
                        f"spelling {spelling!r} is ambiguous: {previous}, {canonical}"
                    )
    return aliases


_ALIASES = _build_aliases()


def get_isotope(name: str | Isotope) -> Isotope:
    """Look up an isotope by name.

    Parameters
    ----------
    name : str or Isotope
        Any common spelling, case-insensitive: ``"Tc-99m"``, ``"tc99m"``, ``"99mTc"``,
        ``"Tc99m"``, ``"99Tcm"``, ``"F-18"``, ``"18F"``, ``"Technetium-99m"``. An :class:`Isotope`
        is returned unchanged, so functions can accept either.

    Returns
    -------
    Isotope

    Raises
    ------
    PhysicsError
        The name is not in :data:`ISOTOPES`; the message lists the known names.
    InputError
        ``name`` is neither a string nor an Isotope.
    """
    if isinstance(name, Isotope):
        return name
    if not isinstance(name, str):
        raise InputError(
            f"isotope name must be a string such as 'Tc-99m', got {type(name).__name__}"
        )
    canonical = _ALIASES.get(_normalise(name))
    if canonical is None:
        known = ", ".join(ISOTOPES)
        raise PhysicsError(
            f"unknown isotope {name!r}; known isotopes: {known} "
            "(spellings such as 'Tc-99m', 'tc99m' and '99mTc' are accepted)"
        )
    return ISOTOPES[canonical]
