"""Component-based PET normalisation: the detection efficiency of every line of response.

The normalisation factor of the LOR between crystals ``a`` and ``b`` is a product of components
(Casey, Gadagkar & Newport 1995; Badawi & Marsden 1999; the model of STIR's
``find_ML_normfactors3D``, ``src/buildblock/ML_norm.cxx``)::

    n(a, b) = ε_a · ε_b · g_T[k, a mod B] · g_A[ring_a, ring_b] · m(a, b)

with the pair in the canonical order of :class:`~recon.pet.sinogram.SinogramLayout` (``a`` the
first crystal of the sinogram bin, ``k`` the bin's radial offset ``N/2 − d``):

- ``ε`` (``crystal_efficiency``, ``(n_rings, crystals_per_ring)``): the intrinsic efficiency of
  each crystal;
- ``g_T`` (``transaxial``, ``(n_radial, B)``): transaxial geometric factors, one per radial bin and
  position of the first crystal within its block of ``B = crystals_per_block`` crystals. Because
  ``b = a + d``, the position of the second crystal follows from the first and ``k``, so this one
  table holds both the radial (solid-angle, depth-of-interaction) profile and the crystal
  interference pattern of the blocks. It is not assumed to be mirror-symmetric. ``B = 1``
  leaves a purely radial profile;
- ``g_A`` (``axial``, ``(n_rings, n_rings)``): one factor per ordered ring pair (sinogram plane),
  zero beyond ``max_ring_difference``;
- ``m`` (``module_pairs``, optional): a per-module-pair table as PETSIRD stores its
  "module-pair efficiencies" (:class:`ModulePairFactors`).

Any component may be absent (a factor of 1). The split between components is not unique: a
crystal pattern ``f(ring)·q(index mod B)`` can move into ``g_A`` and ``g_T``. Estimated
normalisations fix it so that the mean efficiency of every ring and of every in-block position
is 1, and ``g_T`` and ``g_A`` have mean 1; products (:meth:`Normalization.lor_factors`) do not
depend on that choice.

The factors are relative: the overall sensitivity of the scanner is recon's separate
``calibration`` factor (an estimate records the ratio of the calibration data to its model as
``info["global_scale"]``). Normalisation is the same for every TOF bin of a LOR.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.pet.scanner import PetScanner
from recon.pet.sinogram import SinogramLayout, array_module

__all__ = ["ModulePairFactors", "Normalization", "check_same_scanner"]

# Relative tolerance on the scanner's lengths when a normalisation is used with a scanner object
# other than the one it was made for (e.g. a scanner fitted to a PETSIRD file against a preset).
_LENGTH_RTOL = 1e-3


def check_same_scanner(made_for: PetScanner, used_with: PetScanner, what: str) -> None:
    """Raise :class:`~recon.errors.InputError` unless two scanners have the same crystals.

    Crystal counts must be equal and radius, ring spacing and crystal depth equal within 0.1 %;
    the name and the TOF description are not compared (normalisation does not depend on them).

    Parameters
    ----------
    made_for : PetScanner
        The scanner the normalisation was made for.
    used_with : PetScanner
        The scanner of the model or file it is used with.
    what : str
        Names the normalisation in the message (e.g. a file name).
    """
    if not isinstance(used_with, PetScanner):
        raise InputError(f"{what}: expected a PetScanner, got {type(used_with).__name__}")
    mismatches = []
    for name in ("n_rings", "crystals_per_ring"):
        if getattr(made_for, name) != getattr(used_with, name):
            mismatches.append(f"{name} {getattr(made_for, name)} vs {getattr(used_with, name)}")
    for name in ("radius_mm", "ring_spacing_mm", "crystal_depth_mm"):
        a, b = float(getattr(made_for, name)), float(getattr(used_with, name))
        if not math.isclose(a, b, rel_tol=_LENGTH_RTOL, abs_tol=1e-6):
            mismatches.append(f"{name} {a:g} vs {b:g}")
    if mismatches:
        raise InputError(
            f"{what} was made for scanner {made_for.name!r} but is used with scanner "
            f"{used_with.name!r}, which has other crystals ({'; '.join(mismatches)}); estimate "
            "a normalisation for this scanner (recon.pet.estimate_normalization)"
        )


def _finite_array(value: Any, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an array of numbers") from None
    if shape is not None and array.shape != shape:
        raise InputError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} holds NaN or infinite values")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class ModulePairFactors:
    """Geometric factors per pair of detector modules, as PETSIRD stores them.

    The factor of crystals ``a`` and ``b`` is
    ``group_values[g, crystal_element[a], crystal_element[b]]`` with
    ``g = pair_group[crystal_module[a], crystal_module[b]]``, and 0 where ``g < 0`` (modules not
    in coincidence) or a crystal belongs to no module (``crystal_module == −1``). Both orders of a
    pair are stored, so the table needs no canonical order.

    Parameters
    ----------
    crystal_module : int array of shape (n_crystals,)
        Module of each crystal id, −1 for none.
    crystal_element : int array of shape (n_crystals,)
        Index of each crystal within its module.
    pair_group : int array of shape (n_modules, n_modules)
        Group (PETSIRD: symmetry group) of each ordered module pair, −1 when not in coincidence.
    group_values : float array of shape (n_groups, n_elements, n_elements)
        Factor of each element pair of each group; finite and non-negative.
    """

    crystal_module: np.ndarray
    crystal_element: np.ndarray
    pair_group: np.ndarray
    group_values: np.ndarray

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        module = np.array(self.crystal_module, dtype=np.int32)
        element = np.array(self.crystal_element, dtype=np.int32)
        group = np.array(self.pair_group, dtype=np.int32)
        values = _finite_array(self.group_values, "module-pair group_values")
        if module.ndim != 1 or element.shape != module.shape:
            raise InputError("crystal_module and crystal_element must be 1-D arrays of one length")
        if group.ndim != 2 or group.shape[0] != group.shape[1]:
            raise InputError("pair_group must be a square (n_modules, n_modules) array")
        if values.ndim != 3 or values.shape[1] != values.shape[2] or values.shape[0] == 0:
            raise InputError("group_values must have shape (n_groups, n_elements, n_elements)")
        if np.any(values < 0):
            raise InputError("module-pair group_values must be non-negative")
        if np.any(module < -1) or np.any(module >= group.shape[0]):
            raise InputError(f"crystal_module must lie in [-1, {group.shape[0]})")
        if np.any((module >= 0) & ((element < 0) | (element >= values.shape[1]))):
            raise InputError(f"crystal_element must lie in [0, {values.shape[1]})")
        if np.any(group < -1) or np.any(group >= values.shape[0]):
            raise InputError(f"pair_group must lie in [-1, {values.shape[0]})")
        for name, array in (("crystal_module", module), ("crystal_element", element),
                            ("pair_group", group)):  # fmt: skip
            array.setflags(write=False)
            set_(self, name, array)
        set_(self, "group_values", values)

    def _factors(self, crystal_a: Any, crystal_b: Any, xp: ModuleType, tables: tuple) -> Any:
        """Factor of each pair (int64 crystal-id arrays on ``xp``), from device ``tables``."""
        module, element, group, values = tables
        ma, mb = module[crystal_a], module[crystal_b]
        inside = (ma >= 0) & (mb >= 0)
        g = group[xp.maximum(ma, 0), xp.maximum(mb, 0)]
        ok = inside & (g >= 0)
        value = values[xp.maximum(g, 0), element[crystal_a], element[crystal_b]]
        return xp.where(ok, value, np.float32(0.0)).astype(np.float32)


@dataclass(frozen=True, eq=False, init=False)
class Normalization:
    """Normalisation factors of a PET scanner's LORs, as components (module docstring).

    Models take it as ``normalization=``: :class:`~recon.pet.model.PetSinogramModel` and
    :class:`~recon.pet.model.PetListmodeModel` multiply each LOR by :meth:`lor_factors`, so a
    listmode event gets exactly the factor of its sinogram bin. For sinograms on explicit LORs
    (:class:`~recon.pet.lor_model.PetLorSinogramModel`), use :meth:`bin_factors` in the data's
    own bin order (e.g. through :func:`recon.io.layout_to_stir_sinogram` for span-1 STIR data).

    Parameters
    ----------
    scanner : PetScanner
        The scanner the factors are for.
    crystal_efficiency : array of shape (n_rings, crystals_per_ring) or (n_crystals,), optional
        Crystal efficiencies; finite and non-negative (0 for a dead crystal). Default: all 1.
    transaxial : array of shape (n_radial, crystals_per_block), optional
        Transaxial geometric factors by radial bin (of a layout with ``n_radial`` bins) and
        in-block position of the bin's first crystal; finite and positive.
    axial : array of shape (n_rings, n_rings), optional
        Factor of each ordered ring pair ``(ring of the first crystal, ring of the second)``;
        finite, positive up to ``max_ring_difference`` and 0 beyond it.
    max_ring_difference : int, optional
        Largest ring difference the factors cover (default: all). Models with a larger one are
        refused.
    module_pairs : ModulePairFactors, optional
        Per-module-pair factors (PETSIRD).
    info : dict, optional
        Provenance: how the factors were made (method, counts, iterations, fallbacks taken).
        Saved with the factors; JSON-serialisable values only.

    Raises
    ------
    InputError
        A component has the wrong shape, holds NaN, infinities or values out of range, or
        ``crystals_per_block`` does not divide ``crystals_per_ring``.
    """

    # The constructor fills in the defaults, so the stored fields have exact types.
    scanner: PetScanner
    crystal_efficiency: np.ndarray
    transaxial: np.ndarray | None
    axial: np.ndarray | None
    max_ring_difference: int
    module_pairs: ModulePairFactors | None
    info: dict[str, Any]
    _device: dict[str, Any] = field(repr=False)

    def __init__(
        self,
        scanner: PetScanner,
        crystal_efficiency: Any = None,
        transaxial: Any = None,
        axial: Any = None,
        max_ring_difference: int | None = None,
        module_pairs: ModulePairFactors | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(scanner, PetScanner):
            raise InputError(f"scanner must be a PetScanner, got {type(scanner).__name__}")
        set_ = object.__setattr__
        set_(self, "scanner", scanner)
        set_(self, "_device", {})
        set_(self, "info", {} if info is None else info)
        set_(self, "transaxial", None)
        set_(self, "axial", None)
        set_(self, "module_pairs", module_pairs)
        n_rings, n = scanner.n_rings, scanner.crystals_per_ring
        if crystal_efficiency is None:
            eff = np.ones((n_rings, n), dtype=np.float32)
        else:
            eff = _finite_array(crystal_efficiency, "crystal_efficiency").copy()
            if eff.shape == (scanner.n_crystals,):
                eff = eff.reshape(n_rings, n)
            if eff.shape != (n_rings, n):
                raise InputError(
                    f"crystal_efficiency must have shape ({n_rings}, {n}) (rings, crystals per "
                    f"ring) or ({scanner.n_crystals},), got {eff.shape}"
                )
            if np.any(eff < 0) or not np.any(eff > 0):
                raise InputError(
                    "crystal_efficiency must be non-negative (0 only for dead crystals) with at "
                    "least one positive value"
                )
        eff.setflags(write=False)
        set_(self, "crystal_efficiency", eff)

        mrd = n_rings - 1 if max_ring_difference is None else max_ring_difference
        if isinstance(mrd, bool) or not isinstance(mrd, int | np.integer) or not 0 <= mrd < n_rings:
            raise InputError(f"max_ring_difference must be an integer in [0, {n_rings - 1}]")
        set_(self, "max_ring_difference", int(mrd))

        if transaxial is not None:
            gt = _finite_array(transaxial, "transaxial")
            if gt.ndim != 2 or gt.shape[0] % 2 == 0 or not 1 <= gt.shape[0] <= n - 1:
                raise InputError(
                    "transaxial must have shape (n_radial, crystals_per_block) with an odd "
                    f"n_radial in [1, {n - 1}], got {gt.shape}"
                )
            if gt.shape[1] < 1 or n % gt.shape[1]:
                raise InputError(
                    f"crystals_per_block ({gt.shape[1]}, the second axis of transaxial) must "
                    f"divide crystals_per_ring ({n})"
                )
            if not np.all(gt > 0):
                raise InputError("transaxial factors must be positive")
            set_(self, "transaxial", gt)
        if axial is not None:
            ga = _finite_array(axial, "axial", (n_rings, n_rings))
            delta = np.abs(np.subtract.outer(np.arange(n_rings), np.arange(n_rings)))
            if not np.all(ga[delta <= mrd] > 0) or np.any(ga[delta > mrd] != 0):
                raise InputError(
                    f"axial factors must be positive for ring differences up to {mrd} (the "
                    "max_ring_difference) and 0 beyond"
                )
            set_(self, "axial", ga)
        if self.module_pairs is not None:
            if not isinstance(self.module_pairs, ModulePairFactors):
                raise InputError("module_pairs must be a ModulePairFactors")
            if self.module_pairs.crystal_module.shape != (scanner.n_crystals,):
                raise InputError(
                    f"module_pairs describe {self.module_pairs.crystal_module.size} crystals, "
                    f"the scanner has {scanner.n_crystals}"
                )
        if not isinstance(self.info, dict):
            raise InputError("info must be a dict")

    # ------------------------------------------------------------------ description
    @property
    def crystals_per_block(self) -> int:
        """Transaxial block size ``B`` of the geometric factors (1 without them)."""
        return 1 if self.transaxial is None else int(self.transaxial.shape[1])

    @property
    def n_radial(self) -> int | None:
        """Radial bins the transaxial factors cover (None: any)."""
        return None if self.transaxial is None else int(self.transaxial.shape[0])

    @functools.cached_property
    def layout(self) -> SinogramLayout:
        """The widest sinogram layout the factors cover."""
        n_radial = self.n_radial
        if n_radial is None:
            n = self.scanner.crystals_per_ring
            n_radial = n - 1
        return SinogramLayout(self.scanner, self.max_ring_difference, n_radial)

    def check_layout(self, layout: SinogramLayout, what: str = "the model") -> None:
        """Raise :class:`~recon.errors.InputError` unless ``layout`` lies within the factors.

        Parameters
        ----------
        layout : SinogramLayout
            A model's layout: same crystals, ring differences and radial bins within the range
            the factors cover.
        what : str
            Names the user of the layout in the message.
        """
        check_same_scanner(self.scanner, layout.scanner, "the normalisation")
        if layout.max_ring_difference > self.max_ring_difference:
            raise InputError(
                f"the normalisation covers ring differences up to {self.max_ring_difference}, "
                f"{what} uses up to {layout.max_ring_difference}; pass max_ring_difference="
                f"{self.max_ring_difference} to the model"
            )
        if self.n_radial is not None and layout.n_radial > self.n_radial:
            raise InputError(
                f"the normalisation covers {self.n_radial} radial bins, {what} uses "
                f"{layout.n_radial}; estimate it with n_radial={layout.n_radial}"
            )

    # ------------------------------------------------------------------ factors
    def _tables(self, xp: ModuleType) -> dict[str, Any]:
        key = xp.__name__
        if xp is not np:
            key += f":{xp.cuda.runtime.getDevice()}"
        if key not in self._device:
            tables: dict[str, Any] = {"eff": xp.asarray(self.crystal_efficiency.reshape(-1))}
            if self.transaxial is not None:
                tables["transaxial"] = xp.asarray(self.transaxial)
            if self.axial is not None:
                tables["axial"] = xp.asarray(self.axial)
            if self.module_pairs is not None:
                mp = self.module_pairs
                tables["module_pairs"] = tuple(
                    xp.asarray(a)
                    for a in (mp.crystal_module, mp.crystal_element, mp.pair_group,
                              mp.group_values)
                )  # fmt: skip
            self._device[key] = tables
        return self._device[key]

    def lor_factors(self, crystal_a: Any, crystal_b: Any, xp: ModuleType | None = None) -> Any:
        """Normalisation factor of each crystal pair (in either order).

        Parameters
        ----------
        crystal_a, crystal_b : integer arrays (broadcastable), numpy or CuPy
            Crystal ids.
        xp : module, optional
            Array module; inferred from the inputs by default.

        Returns
        -------
        float32 array of the broadcast shape
            The product of the components; 0 for pairs outside :attr:`layout` when transaxial
            or axial factors are present (models check their layout with
            :meth:`check_layout`, so none of their LORs is outside).
        """
        xp = array_module(crystal_a, crystal_b) if xp is None else xp
        ca = xp.asarray(crystal_a).astype(xp.int64)
        cb = xp.asarray(crystal_b).astype(xp.int64)
        ca, cb = xp.broadcast_arrays(ca, cb)
        n_crystals = self.scanner.n_crystals
        if ca.size and bool(xp.any((ca < 0) | (ca >= n_crystals) | (cb < 0) | (cb >= n_crystals))):
            raise InputError(f"crystal ids must lie in [0, {n_crystals})")
        tables = self._tables(xp)
        factor = (tables["eff"][ca] * tables["eff"][cb]).astype(np.float32)
        if self.transaxial is not None or self.axial is not None:
            _, _, radial, swapped, valid = self.layout.bins_of(ca, cb, xp=xp)
            first = xp.where(swapped, cb, ca)
            second = xp.where(swapped, ca, cb)
            n = self.scanner.crystals_per_ring
            if self.transaxial is not None:
                position = (first % n) % self.crystals_per_block
                factor = factor * tables["transaxial"][xp.maximum(radial, 0), position]
            if self.axial is not None:
                factor = factor * tables["axial"][first // n, second // n]
            factor = xp.where(valid, factor, np.float32(0.0))
        if self.module_pairs is not None:
            factor = factor * self.module_pairs._factors(ca, cb, xp, tables["module_pairs"])
        return factor.astype(np.float32)

    def bin_factors(self, layout: SinogramLayout | None = None) -> np.ndarray:
        """Factors of every bin of a sinogram layout, ``(plane, view, radial)`` float32.

        Parameters
        ----------
        layout : SinogramLayout, optional
            Default: :attr:`layout`. Checked with :meth:`check_layout`.
        """
        layout = self.layout if layout is None else layout
        self.check_layout(layout, "the layout")
        planes, views, radial = layout.shape
        out = np.empty(layout.shape, dtype=np.float32)
        r = np.arange(radial)
        for p in range(planes):
            ca, cb = layout.crystals_of(p, np.arange(views)[:, None], r[None, :])
            out[p] = self.lor_factors(ca, cb, xp=np)
        return out
