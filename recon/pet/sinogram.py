"""Span-1 sinogram layout of a PET scanner: the bijection between crystal pairs and sinogram bins.

Sinograms are arrays ``(plane, view, radial)``, with a trailing ``tof`` axis when TOF is used
(DESIGN.md §3). With ``N = crystals_per_ring``:

Canonical pair order
    Two crystals with in-ring indices ``i`` and ``j`` (``i ≠ j``) are joined by a chord. Going
    counter-clockwise (increasing φ) from ``i`` to ``j`` takes ``d = (j − i) mod N`` steps, and the
    chord is perpendicular to ``n(ψ) = (cos ψ, sin ψ)`` at signed distance
    ``t = R·cos(π d/N)`` from the axis, with ``ψ = π(2i + d)/N`` (``R`` = crystal radius). The
    reversed order (j, i) describes the same line with ``ψ + π`` and ``−t``. Of the two orders, the
    *canonical* one ``(a, b)`` has ``S = (2a + d) mod 2N < N``, i.e. ``ψ ∈ [0, π)``. A pair
    given in the other order is ``swapped``: the sinogram bin stores it as (a, b), so a signed TOF
    bin (positive towards the second crystal) changes sign::

        tof_bin_in_sinogram = −tof_bin   if swapped

View and radial index
    ``view = S // 2`` (``N/2`` views; a view holds the two adjacent angles ``S = 2·view`` for even
    ``d`` and ``S = 2·view + 1`` for odd ``d``, interleaved along the radial axis, as in the usual
    non-arc-corrected sinogram). The radial offset ``k = N/2 − d`` gives
    ``t = R·sin(π k/N)``, increasing with ``k``; ``radial = k + (n_radial − 1)/2`` with an odd
    ``n_radial``, so radial bin ``(n_radial − 1)/2`` passes through the axis. Inverting:
    ``d = N/2 − k``, ``S = 2·view + (d mod 2)``, ``a = ((S − d)/2) mod N``, ``b = (a + d) mod N``.

Planes
    Every ordered ring pair ``(ring_a, ring_b)`` of the canonical crystals with
    ``|ring_b − ring_a| ≤ max_ring_difference`` is one plane. Planes are grouped by ring difference
    ``δ = ring_b − ring_a`` in the order ``0, +1, −1, +2, −2, …`` (Michelogram segments) and, inside
    a group, by increasing ``ring_a`` (increasing z). :attr:`SinogramLayout.plane_rings` is the
    table, :attr:`SinogramLayout.plane_of_rings` its inverse.

Pairs of the same in-ring index (``d = 0``: lines parallel to the axis, including a crystal with
itself), radial offsets beyond ``n_radial`` and ring differences beyond ``max_ring_difference`` are
not in the layout (``valid`` is False in :meth:`SinogramLayout.bins_of`).

The index functions take numpy or CuPy arrays (the array module is inferred from the inputs or
given as ``xp``); CuPy is never imported here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from recon._memory import check_memory
from recon.errors import GeometryError, InputError
from recon.pet.scanner import PetScanner

__all__ = ["SinogramLayout", "array_module"]


def array_module(*arrays: Any) -> ModuleType:
    """``cupy`` when any argument is a CuPy array, else ``numpy`` (CuPy is not imported here)."""
    for arr in arrays:
        if type(arr).__module__.split(".")[0] == "cupy":
            return sys.modules["cupy"]
    return np


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False, init=False)
class SinogramLayout:
    """Span-1 sinogram ``(plane, view, radial[, tof])`` of a :class:`PetScanner`.

    See the module docstring for the plane order, the view/radial formulae and the canonical
    crystal order.

    Parameters
    ----------
    scanner : PetScanner
        The scanner.
    max_ring_difference : int, optional
        Largest ``|ring_b − ring_a|`` kept; default ``n_rings − 1`` (all ring pairs).
    n_radial : int, optional
        Number of radial bins (odd, at most ``crystals_per_ring − 1``). The default
        ``2·⌊N/4⌋ + 1`` (about N/2) covers radial offsets up to ``R·sin(π⌊N/4⌋/N) ≈ 0.71 R``; pass
        a larger odd number for a transaxial FOV closer to the detector.

    Attributes
    ----------
    plane_rings : int32 ndarray of shape (n_planes, 2)
        ``(ring_a, ring_b)`` of each plane, in plane order.
    plane_of_rings : int32 ndarray of shape (n_rings, n_rings)
        Plane of an ordered ring pair, −1 where the ring difference is out of range.

    Raises
    ------
    GeometryError
        ``max_ring_difference`` or ``n_radial`` is not an integer in range, or ``n_radial`` is
        even.
    """

    # The constructor fills in the defaults, so the stored fields have exact types.
    scanner: PetScanner
    max_ring_difference: int
    n_radial: int
    plane_rings: np.ndarray = field(repr=False)
    plane_of_rings: np.ndarray = field(repr=False)
    _device_tables: dict = field(repr=False)

    def __init__(
        self,
        scanner: PetScanner,
        max_ring_difference: int | None = None,
        n_radial: int | None = None,
    ) -> None:
        if not isinstance(scanner, PetScanner):
            raise GeometryError(f"scanner must be a PetScanner, got {type(scanner).__name__}")
        set_ = object.__setattr__
        set_(self, "scanner", scanner)
        set_(self, "_device_tables", {})
        n_rings = scanner.n_rings
        n = scanner.crystals_per_ring
        mrd = n_rings - 1 if max_ring_difference is None else max_ring_difference
        if not _is_int(mrd) or not 0 <= mrd <= n_rings - 1:
            raise GeometryError(
                f"max_ring_difference must be an integer in [0, {n_rings - 1}], got {mrd!r}"
            )
        set_(self, "max_ring_difference", int(mrd))
        n_radial = 2 * (n // 4) + 1 if n_radial is None else n_radial
        if not _is_int(n_radial) or not 1 <= n_radial <= n - 1 or n_radial % 2 == 0:
            raise GeometryError(
                f"n_radial must be an odd integer in [1, {n - 1}] (odd so that the radial bins "
                f"are centred on the axis), got {n_radial!r}"
            )
        set_(self, "n_radial", int(n_radial))

        check_memory(
            4.0 * 3 * n_rings * n_rings,
            f"the ring-pair tables of a scanner with {n_rings} rings",
            "check the scanner description",
        )
        rows = []
        for delta in [0, *[s * m for m in range(1, int(mrd) + 1) for s in (1, -1)]]:
            ring_a = np.arange(max(0, -delta), min(n_rings, n_rings - delta))
            rows.append(np.stack([ring_a, ring_a + delta], axis=1))
        plane_rings = np.concatenate(rows).astype(np.int32)
        plane_rings.setflags(write=False)
        set_(self, "plane_rings", plane_rings)
        lookup = np.full((n_rings, n_rings), -1, dtype=np.int32)
        lookup[plane_rings[:, 0], plane_rings[:, 1]] = np.arange(len(plane_rings), dtype=np.int32)
        lookup.setflags(write=False)
        set_(self, "plane_of_rings", lookup)

    # ------------------------------------------------------------------ sizes
    @property
    def n_planes(self) -> int:
        """Number of planes: ordered ring pairs with ``|ring_b − ring_a| ≤ max_ring_difference``."""
        return int(self.plane_rings.shape[0])

    @property
    def n_views(self) -> int:
        """Number of views, ``crystals_per_ring // 2``."""
        return self.scanner.crystals_per_ring // 2

    @property
    def shape(self) -> tuple[int, int, int]:
        """Non-TOF sinogram shape ``(plane, view, radial)``."""
        return (self.n_planes, self.n_views, int(self.n_radial))

    @property
    def n_bins(self) -> int:
        """Number of non-TOF sinogram bins (LORs), ``n_planes * n_views * n_radial``."""
        p, v, r = self.shape
        return p * v * r

    @property
    def n_tof(self) -> int:
        """TOF bins of the scanner (1 for a non-TOF scanner)."""
        return 1 if self.scanner.tof is None else self.scanner.tof.n_bins

    @property
    def tof_shape(self) -> tuple[int, int, int, int]:
        """TOF sinogram shape ``(plane, view, radial, tof)``; the tof axis runs from −max_bin up."""
        return (*self.shape, self.n_tof)

    @property
    def plane_ring_difference(self) -> np.ndarray:
        """``ring_b − ring_a`` of each plane, shape (n_planes,)."""
        return self.plane_rings[:, 1] - self.plane_rings[:, 0]

    @property
    def radial_offsets_mm(self) -> np.ndarray:
        """Signed distance ``t = R·sin(π k/N)`` of each radial bin's LORs from the axis, mm."""
        n = self.scanner.crystals_per_ring
        k = np.arange(self.n_radial) - (self.n_radial - 1) // 2
        return self.scanner.crystal_radius_mm * np.sin(np.pi * k / n)

    # ------------------------------------------------------------------ index maps
    def _transaxial_pairs(self, view: Any, radial: Any) -> tuple[Any, Any]:
        """Canonical in-ring indices (a, b) for broadcastable int64 view and radial arrays."""
        n = self.scanner.crystals_per_ring
        k = radial - (self.n_radial - 1) // 2
        d = n // 2 - k
        s = 2 * view + d % 2
        a = ((s - d) // 2) % n
        b = (a + d) % n
        return a, b

    def crystals_of(
        self, plane: Any, view: Any, radial: Any, xp: ModuleType | None = None
    ) -> tuple[Any, Any]:
        """Canonical crystal pair of sinogram bins.

        Parameters
        ----------
        plane, view, radial : int or integer arrays (broadcastable)
            Sinogram bin indices.
        xp : module, optional
            Array module (numpy or cupy); inferred from the inputs by default.

        Returns
        -------
        crystal_a, crystal_b : int32 arrays of the broadcast shape
            Crystal ids in the canonical order (TOF bins are positive towards ``crystal_b``).

        Raises
        ------
        InputError
            An index is out of range.
        """
        xp = array_module(plane, view, radial) if xp is None else xp
        plane = xp.asarray(plane).astype(xp.int64)
        view = xp.asarray(view).astype(xp.int64)
        radial = xp.asarray(radial).astype(xp.int64)
        for name, values, size in (
            ("plane", plane, self.n_planes),
            ("view", view, self.n_views),
            ("radial", radial, self.n_radial),
        ):
            if values.size and bool(xp.any((values < 0) | (values >= size))):
                raise InputError(f"{name} indices must lie in [0, {size})")
        a, b = self._transaxial_pairs(view, radial)
        rings = xp.asarray(self.plane_rings, dtype=xp.int64)
        n = self.scanner.crystals_per_ring
        crystal_a = rings[plane, 0] * n + a
        crystal_b = rings[plane, 1] * n + b
        return crystal_a.astype(xp.int32), crystal_b.astype(xp.int32)

    def bins_of(
        self, crystal_a: Any, crystal_b: Any, xp: ModuleType | None = None
    ) -> tuple[Any, Any, Any, Any, Any]:
        """Sinogram bin of crystal pairs given in either order.

        Parameters
        ----------
        crystal_a, crystal_b : int or integer arrays (broadcastable)
            Crystal ids of each pair.
        xp : module, optional
            Array module (numpy or cupy); inferred from the inputs by default.

        Returns
        -------
        plane, view, radial : int32 arrays
            The bin, or −1 where ``valid`` is False.
        swapped : bool array
            True where ``(crystal_a, crystal_b)`` is the reverse of the bin's canonical order, so
            ``tof_bin_in_sinogram = −tof_bin``.
        valid : bool array
            False for pairs not in the layout: ids outside ``[0, n_crystals)``, two crystals of the
            same in-ring index, a radial offset beyond ``n_radial`` or a ring difference beyond
            ``max_ring_difference``.
        """
        xp = array_module(crystal_a, crystal_b) if xp is None else xp
        ca = xp.asarray(crystal_a).astype(xp.int64)
        cb = xp.asarray(crystal_b).astype(xp.int64)
        ca, cb = xp.broadcast_arrays(ca, cb)
        n = self.scanner.crystals_per_ring
        n_crystals = self.scanner.n_crystals
        in_range = (ca >= 0) & (ca < n_crystals) & (cb >= 0) & (cb < n_crystals)
        ca = xp.where(in_range, ca, 0)
        cb = xp.where(in_range, cb, 0)
        ring_a, ia = ca // n, ca % n
        ring_b, ib = cb // n, cb % n
        d = (ib - ia) % n
        s = (2 * ia + d) % (2 * n)
        swapped = s >= n
        d = xp.where(swapped, n - d, d)
        s = xp.where(swapped, s - n, s)
        ring_first = xp.where(swapped, ring_b, ring_a)
        ring_second = xp.where(swapped, ring_a, ring_b)
        view = s // 2
        radial = n // 2 - d + (self.n_radial - 1) // 2
        lookup = xp.asarray(self.plane_of_rings)
        plane = lookup[ring_first, ring_second]
        valid = in_range & (d % n != 0) & (radial >= 0) & (radial < self.n_radial) & (plane >= 0)
        invalid = ~valid
        plane = xp.where(invalid, -1, plane).astype(xp.int32)
        view = xp.where(invalid, -1, view).astype(xp.int32)
        radial = xp.where(invalid, -1, radial).astype(xp.int32)
        return plane, view, radial, swapped & valid, valid

    def _tables(self, xp: ModuleType) -> tuple[Any, Any, Any]:
        """Crystal positions, ring z and plane rings on ``xp``'s device, copied there once."""
        key = xp.__name__
        if xp is not np:
            key += f":{xp.cuda.runtime.getDevice()}"
        if key not in self._device_tables:
            self._device_tables[key] = (
                xp.asarray(self.scanner.transaxial_positions_mm),
                xp.asarray(self.scanner.ring_z_mm),
                xp.asarray(self.plane_rings, dtype=xp.int64),
            )
        return self._device_tables[key]

    def endpoints(
        self, views: Any = None, xp: ModuleType | None = None, *, checked: bool = True
    ) -> tuple[Any, Any]:
        """World coordinates of the two crystals of every LOR, in the canonical order.

        Generated on ``xp``'s device from the scanner's small crystal-position tables, so a whole
        scanner's LOR table is never stored on the host.

        Parameters
        ----------
        views : int array, sequence or slice, optional
            The views to generate (e.g. one subset); all views by default.
        xp : module, optional
            ``numpy`` or ``cupy``; inferred from ``views`` by default (numpy for None or a slice).
        checked : bool
            Check that the views are in range (a wait for the device when they live there);
            models that made the views themselves pass False.

        Returns
        -------
        xstart, xend : float32 arrays of shape (n_planes, n_views_selected, n_radial, 3)
            World (x, y, z) in mm of ``crystal_a`` and ``crystal_b`` of each bin.
        """
        xp = array_module(views) if xp is None else xp
        if views is None:
            view_idx = xp.arange(self.n_views, dtype=xp.int64)
        elif isinstance(views, slice):
            view_idx = xp.arange(self.n_views, dtype=xp.int64)[views]
        else:
            view_idx = xp.asarray(views).astype(xp.int64, copy=False).reshape(-1)
            if (
                checked
                and view_idx.size
                and bool(xp.any((view_idx < 0) | (view_idx >= self.n_views)))
            ):
                raise InputError(f"views must lie in [0, {self.n_views})")
        radial = xp.arange(self.n_radial, dtype=xp.int64)
        a, b = self._transaxial_pairs(view_idx[:, None], radial[None, :])
        xy, ring_z, rings = self._tables(xp)
        shape = (self.n_planes, int(view_idx.shape[0]), int(self.n_radial), 3)
        out = []
        for end, idx in ((0, a), (1, b)):
            pts = xp.empty(shape, dtype=xp.float32)
            pts[..., :2] = xy[idx][None]
            pts[..., 2] = ring_z[rings[:, end]][:, None, None]
            out.append(pts)
        return out[0], out[1]

    def separable_endpoints(
        self, views: Any = None, xp: ModuleType | None = None
    ) -> tuple[Any, Any, Any, Any]:
        """The LOR ends of :meth:`endpoints` as separable tables: transaxial per (view, radial),
        axial per plane.

        Bin ``[p, v, r]`` of ``endpoints(views)`` runs from ``(xy_a[v, r], z_a[p])`` to
        ``(xy_b[v, r], z_b[p])``, the same float32 values.

        Parameters
        ----------
        views : int array, sequence or slice, optional
            The views (all by default); not range-checked (see :meth:`endpoints`).
        xp : module, optional
            ``numpy`` or ``cupy``; inferred from ``views`` by default.

        Returns
        -------
        xy_a, xy_b : float32 arrays of shape (n_views_selected, n_radial, 2)
            World (x, y) in mm of ``crystal_a`` and ``crystal_b``.
        z_a, z_b : float32 arrays of shape (n_planes,)
            World z in mm of the rings of ``crystal_a`` and ``crystal_b``.
        """
        xp = array_module(views) if xp is None else xp
        all_views = xp.arange(self.n_views, dtype=xp.int64)
        if views is None:
            view_idx = all_views
        elif isinstance(views, slice):
            view_idx = all_views[views]
        else:
            view_idx = xp.asarray(views).astype(xp.int64, copy=False).reshape(-1)
        radial = xp.arange(self.n_radial, dtype=xp.int64)
        a, b = self._transaxial_pairs(view_idx[:, None], radial[None, :])
        xy, ring_z, rings = self._tables(xp)
        z_a, z_b = (ring_z[rings[:, end]].astype(xp.float32) for end in (0, 1))
        return xy[a].astype(xp.float32), xy[b].astype(xp.float32), z_a, z_b
