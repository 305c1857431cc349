"""Energy windows of a SPECT acquisition assigned to photopeaks and scatter windows per isotope.

A multi-window acquisition (In-111 at 171 and 245 keV, or Tc-99m and In-111 together) records
every window as its own set of projections. :func:`assign_windows` says what each window is:

- a **photopeak window** of an isotope holds at least one of its photopeak lines
  (:attr:`recon.physics.Isotope.photopeak_lines`, yield ≥ 5 %). When two windows hold the same
  line (overlapping windows), the one whose centre is nearest the line keeps it; a window left
  without a line is not used (its counts would be the same photons twice). A window may hold the
  lines of two isotopes (e.g. Tl-201's 167 keV and In-111's 171 keV): it is then a photopeak
  window of both, and a joint model explains its counts with both images;
- a **scatter window** holds no photopeak line of any isotope of the study and adjoins a
  photopeak window (below it or above it, within half the photopeak's width and overlapping it by
  at most a tenth of its width): the triple-energy-window estimate of that photopeak uses it
  (Ogawa et al., IEEE Trans. Med. Imaging 10 (1991) 408; for dual-isotope acquisitions, where
  the scatter under the lower photopeak includes the higher-energy isotope's down-scatter, Ichihara
  et al., J. Nucl. Med. 34 (1993) 2216);
- anything else is **unused** (and said so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from recon.errors import InputError, PhysicsError
from recon.physics.isotopes import Isotope, Photon, get_isotope
from recon.physics.scatter import EnergyWindow

__all__ = ["PhotopeakWindow", "WindowAssignment", "adjacent_windows", "assign_windows"]

# Windows overlapping the photopeak by more than this fraction of its width are not its neighbours.
_ADJACENT_OVERLAP = 0.1
# A scatter window further from the photopeak than this fraction of its width is not adjacent.
_ADJACENT_GAP = 0.5


@dataclass(frozen=True)
class PhotopeakWindow:
    """One photopeak window of one isotope.

    Attributes
    ----------
    name : str
        The window's name (as in the file).
    window : EnergyWindow
        Its limits.
    isotope : str
        Canonical isotope name.
    lines : tuple of Photon
        The isotope's lines inside the window (minor lines included: they add counts too).
    lower_scatter, upper_scatter : str or None
        The scatter windows adjoining it below and above, if any.
    """

    name: str
    window: EnergyWindow
    isotope: str
    lines: tuple[Photon, ...]
    lower_scatter: str | None = None
    upper_scatter: str | None = None

    @property
    def yield_per_decay(self) -> float:
        """Photons per decay of the lines in the window."""
        return float(sum(p.yield_per_decay for p in self.lines))

    @property
    def energy_kev(self) -> float:
        """Yield-weighted mean energy of the lines in the window, keV (the energy at which the
        window's attenuation and collimator response are evaluated)."""
        total = self.yield_per_decay
        return float(sum(p.energy_kev * p.yield_per_decay for p in self.lines) / total)

    def describe(self) -> str:
        """One line: ``In-111 171 keV (yield 0.907) in PEAK1 [154-188 keV], scatter LOW/-``."""
        energies = "+".join(f"{p.energy_kev:.0f}" for p in self.lines)
        scatter = f"{self.lower_scatter or '-'}/{self.upper_scatter or '-'}"
        return (
            f"{self.isotope} {energies} keV (yield {self.yield_per_decay:.3g}) in {self.name} "
            f"[{self.window.lower_kev:g}-{self.window.upper_kev:g} keV], scatter windows "
            f"{scatter}"
        )


@dataclass(frozen=True)
class WindowAssignment:
    """What each energy window of an acquisition is (module docstring).

    Attributes
    ----------
    peaks : tuple of PhotopeakWindow
        Photopeak windows, isotope by isotope (in the order given), each isotope's in energy order.
    scatter : tuple of str
        Windows used as scatter windows by some photopeak.
    unused : dict
        ``{window name: reason}`` for the other windows.
    isotopes : tuple of str
        The isotopes of the study.
    """

    peaks: tuple[PhotopeakWindow, ...]
    scatter: tuple[str, ...]
    unused: dict[str, str] = field(default_factory=dict)
    isotopes: tuple[str, ...] = ()

    def for_isotope(self, isotope: str | Isotope) -> tuple[PhotopeakWindow, ...]:
        """The photopeak windows of ``isotope``."""
        name = get_isotope(isotope).name
        return tuple(p for p in self.peaks if p.isotope == name)

    @property
    def window_names(self) -> tuple[str, ...]:
        """Distinct photopeak window names, in the order of :attr:`peaks`."""
        return tuple(dict.fromkeys(p.name for p in self.peaks))

    def describe(self) -> list[str]:
        """One line per photopeak window, then the unused windows."""
        lines = [p.describe() for p in self.peaks]
        lines += [f"{name}: not used ({reason})" for name, reason in self.unused.items()]
        return lines

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (for ``summary.json``)."""
        return {
            "photopeaks": [
                {
                    "window": p.name,
                    "isotope": p.isotope,
                    "range_kev": [p.window.lower_kev, p.window.upper_kev],
                    "lines_kev": [q.energy_kev for q in p.lines],
                    "yield_per_decay": p.yield_per_decay,
                    "energy_kev": p.energy_kev,
                    "lower_scatter": p.lower_scatter,
                    "upper_scatter": p.upper_scatter,
                }
                for p in self.peaks
            ],
            "scatter_windows": list(self.scatter),
            "unused_windows": dict(self.unused),
        }


def _limits(windows: Mapping[str, Any]) -> dict[str, EnergyWindow | None]:
    """``{name: EnergyWindow or None}`` from ``{name: window}`` or ``{name: (window, counts)}``."""
    out: dict[str, EnergyWindow | None] = {}
    for name, value in windows.items():
        window = value[0] if isinstance(value, tuple) else value
        if window is not None and not isinstance(window, EnergyWindow):
            raise InputError(f"window {name!r} must be an EnergyWindow or None, got {window!r}")
        out[str(name)] = window
    return out


def adjacent_windows(
    windows: Mapping[str, Any], photopeak: str, exclude: Sequence[str] = ()
) -> tuple[str | None, str | None]:
    """Names of the windows adjoining ``photopeak`` below and above: ``(lower, upper)``.

    A lower neighbour ends at most 10 % of the photopeak width inside it and at most half its
    width below it; the nearest one is taken. The upper neighbour likewise. Either is None when
    there is none. Windows named in ``exclude`` (other photopeaks) are never neighbours.

    Parameters
    ----------
    windows : mapping
        ``{name: EnergyWindow or None}`` or ``{name: (EnergyWindow or None, counts)}``.
    photopeak : str
        Name of the photopeak window.
    exclude : sequence of str
        Windows that may not serve as scatter windows.

    Raises
    ------
    InputError
        ``photopeak`` is not one of the windows.
    PhysicsError
        The photopeak window has no energy range.
    """
    limits = _limits(windows)
    if photopeak not in limits:
        raise InputError(f"photopeak window {photopeak!r} is not one of {list(limits)}")
    peak = limits[photopeak]
    if peak is None:
        raise PhysicsError(
            f"photopeak window {photopeak!r} has no energy range, so its neighbours cannot be found"
        )
    overlap = _ADJACENT_OVERLAP * peak.width_kev
    gap = _ADJACENT_GAP * peak.width_kev
    lower: tuple[float, str] | None = None
    upper: tuple[float, str] | None = None
    for name, w in limits.items():
        if name == photopeak or w is None or name in exclude:
            continue
        if peak.lower_kev - gap <= w.upper_kev <= peak.lower_kev + overlap:
            distance = abs(peak.lower_kev - w.upper_kev)
            if lower is None or distance < lower[0]:
                lower = (distance, name)
        elif peak.upper_kev - overlap <= w.lower_kev <= peak.upper_kev + gap:
            distance = abs(w.lower_kev - peak.upper_kev)
            if upper is None or distance < upper[0]:
                upper = (distance, name)
    return (lower[1] if lower else None), (upper[1] if upper else None)


def assign_windows(
    windows: Mapping[str, Any], isotopes: Sequence[str | Isotope]
) -> WindowAssignment:
    """Photopeak and scatter windows of an acquisition of ``isotopes`` (module docstring).

    Parameters
    ----------
    windows : mapping
        ``{name: EnergyWindow or None}`` or ``{name: (EnergyWindow or None, counts)}`` in file
        order (the ``windows`` of :func:`recon.io.read_nm_projections`'s metadata). A window
        without an energy range is assigned only when it is the file's only window: it is then
        taken as the photopeak of the (single) isotope's main line.
    isotopes : sequence of str or Isotope
        The isotopes of the study, each once.

    Returns
    -------
    WindowAssignment

    Raises
    ------
    InputError
        No isotope, an isotope given twice, or an isotope none of whose photopeak lines lies in
        any window (the message lists the windows).
    PhysicsError
        An unknown isotope name.
    """
    isos = [get_isotope(i) for i in isotopes]
    if not isos:
        raise InputError("at least one isotope is needed to assign the energy windows")
    names = [i.name for i in isos]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"isotope {duplicates[0]} is given twice; name each isotope once")
    limits = _limits(windows)
    if not limits:
        raise InputError("the acquisition has no energy windows")

    if len(limits) == 1 and next(iter(limits.values())) is None:
        if len(isos) > 1:
            raise InputError(
                "the file's only energy window has no energy range, so it cannot be shared out "
                f"between {', '.join(names)}"
            )
        name = next(iter(limits))
        main = isos[0].main_photon
        # No range recorded: a window around the main line stands in for it (20 %).
        peak = PhotopeakWindow(name, EnergyWindow.centered(name, main.energy_kev, 20.0),
                               isos[0].name, (main,))  # fmt: skip
        return WindowAssignment((peak,), (), {}, tuple(names))

    # Each photopeak line goes to the window that holds it with the nearest centre.
    owner: dict[tuple[str, float], str] = {}
    for iso in isos:
        for line in iso.photopeak_lines:
            holders = [
                (abs(w.center_kev - line.energy_kev), n)
                for n, w in limits.items()
                if w is not None and w.contains(line.energy_kev)
            ]
            if holders:
                owner[(iso.name, line.energy_kev)] = min(holders)[1]
    peak_names = set(owner.values())
    # Windows holding any photopeak line are never scatter windows.
    line_windows = sorted(
        n for n, w in limits.items()
        if w is not None and any(w.contains(p.energy_kev) for i in isos for p in i.photopeak_lines)
    )  # fmt: skip
    unused: dict[str, str] = {}
    for n, w in limits.items():
        if w is None:
            unused[n] = "no energy range recorded"
            continue
        if n in peak_names:
            continue
        for iso in isos:
            for line in iso.photopeak_lines:
                if w.contains(line.energy_kev):
                    unused[n] = (
                        f"it overlaps {owner[(iso.name, line.energy_kev)]}, which is centred "
                        f"nearer {iso.name}'s {line.energy_kev:g} keV line"
                    )

    peaks: list[PhotopeakWindow] = []
    scatter: list[str] = []
    for iso in isos:
        mine = [n for n in limits if any(owner.get((iso.name, p.energy_kev)) == n
                                         for p in iso.photopeak_lines)]  # fmt: skip
        if not mine:
            described = ", ".join(
                f"{n} [{w.lower_kev:g}-{w.upper_kev:g} keV]" if w else f"{n} [no range]"
                for n, w in limits.items()
            )
            lines = ", ".join(f"{p.energy_kev:g}" for p in iso.photopeak_lines)
            raise InputError(
                f"no energy window holds a photopeak line of {iso.name} ({lines} keV): "
                f"{described}; check the isotope"
            )
        ranged = {n: w for n in mine if (w := limits[n]) is not None}
        for n, window in sorted(ranged.items(), key=lambda item: item[1].center_kev):
            inside = tuple(p for p in iso.photons if window.contains(p.energy_kev))
            lower, upper = adjacent_windows(limits, n, exclude=line_windows)
            for s in (lower, upper):
                if s is not None and s not in scatter:
                    scatter.append(s)
            peaks.append(PhotopeakWindow(n, window, iso.name, inside, lower, upper))
    for n, w in limits.items():
        if w is not None and n not in peak_names and n not in scatter and n not in unused:
            unused[n] = "neither a photopeak of the study's isotopes nor next to one"
    return WindowAssignment(tuple(peaks), tuple(scatter), unused, tuple(names))
