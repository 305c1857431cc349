"""PET listmode events and their histogramming into sinograms."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from recon.errors import InputError
from recon.pet.scanner import PetScanner
from recon.pet.sinogram import SinogramLayout

__all__ = ["ListmodeEvents", "histogram"]

log = logging.getLogger("recon")


def _integer_array(value: Any, name: str, dtype: type[np.integer]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise InputError(f"{name} must be a 1-D array (one value per event), got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise InputError(f"{name} must hold integers, got dtype {arr.dtype}")
    info = np.iinfo(dtype)
    if arr.size and arr.dtype.itemsize >= np.dtype(dtype).itemsize:
        low, high = int(arr.min()), int(arr.max())
        if low < info.min or high > info.max:
            raise InputError(
                f"{name} values [{low}, {high}] do not fit {np.dtype(dtype).name} "
                f"([{info.min}, {info.max}])"
            )
    out = np.ascontiguousarray(arr, dtype=dtype)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False, init=False)
class ListmodeEvents:
    """Coincidence events of a PET acquisition, one entry per event (DESIGN.md §3).

    Array shapes and dtypes are checked (and converted) on construction; :meth:`validate` checks
    the values against a scanner.

    Parameters
    ----------
    crystal_a, crystal_b : int array of shape (n,)
        Crystal ids (``ring * crystals_per_ring + index``), stored as int32.
    tof_bin : int array of shape (n,), optional
        Signed TOF bin, positive towards ``crystal_b``, stored as int16; None (non-TOF data)
        stores zeros.
    time_ms : float array of shape (n,), optional
        Detection time in ms from the start of the scan, stored as float64, non-decreasing; None
        when unknown.
    prompt : bool array of shape (n,), optional
        True for prompt coincidences, False for delayed ones (a randoms estimate); None stores all
        True.

    Raises
    ------
    InputError
        An array is not 1-D, has the wrong kind of values, or the arrays differ in length.
    """

    # The constructor normalises its arguments (None becomes zeros or all True, except time_ms),
    # so the stored fields have exact types.
    crystal_a: np.ndarray
    crystal_b: np.ndarray
    tof_bin: np.ndarray
    time_ms: np.ndarray | None
    prompt: np.ndarray

    def __init__(
        self,
        crystal_a: ArrayLike,
        crystal_b: ArrayLike,
        tof_bin: ArrayLike | None = None,
        time_ms: ArrayLike | None = None,
        prompt: ArrayLike | None = None,
    ) -> None:
        set_ = object.__setattr__
        given = {
            "crystal_a": crystal_a,
            "crystal_b": crystal_b,
            "tof_bin": tof_bin,
            "time_ms": time_ms,
            "prompt": prompt,
        }
        lengths = {}
        for name, value in given.items():
            if value is None:
                continue
            if np.ndim(value) != 1:
                raise InputError(
                    f"{name} must be a 1-D array (one value per event), got shape {np.shape(value)}"
                )
            lengths[name] = np.shape(value)[0]
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k} {v}" for k, v in lengths.items())
            raise InputError(
                f"all listmode arrays must have the same length (one per event): {detail}"
            )
        set_(self, "crystal_a", _integer_array(crystal_a, "crystal_a", np.int32))
        set_(self, "crystal_b", _integer_array(crystal_b, "crystal_b", np.int32))
        n = self.crystal_a.shape[0]
        if tof_bin is None:
            tof = np.zeros(n, dtype=np.int16)
            tof.setflags(write=False)
        else:
            tof = _integer_array(tof_bin, "tof_bin", np.int16)
        set_(self, "tof_bin", tof)
        times = None
        if time_ms is not None:
            times = np.asarray(time_ms)
            if times.ndim != 1 or (times.size and times.dtype.kind not in "iuf"):
                raise InputError(
                    f"time_ms must be a 1-D array of real numbers (ms), got shape {times.shape} "
                    f"and dtype {times.dtype}"
                )
            times = np.ascontiguousarray(times, dtype=np.float64)
            times.setflags(write=False)
        set_(self, "time_ms", times)
        if prompt is None:
            is_prompt = np.ones(n, dtype=bool)
        else:
            is_prompt = np.asarray(prompt)
            if is_prompt.ndim != 1 or (is_prompt.size and is_prompt.dtype != bool):
                raise InputError(
                    f"prompt must be a 1-D boolean array, got shape {is_prompt.shape} "
                    f"and dtype {is_prompt.dtype}"
                )
            is_prompt = np.ascontiguousarray(is_prompt, dtype=bool)
        is_prompt.setflags(write=False)
        set_(self, "prompt", is_prompt)

    # ------------------------------------------------------------------ queries
    @property
    def n_events(self) -> int:
        """Number of events (prompts and delayeds)."""
        return int(self.crystal_a.shape[0])

    def __len__(self) -> int:
        return self.n_events

    def validate(self, scanner: PetScanner) -> ListmodeEvents:
        """Check the events against ``scanner``; return ``self`` so calls can be chained.

        Raises
        ------
        InputError
            No events; a crystal id outside ``[0, n_crystals)``; a TOF bin with
            ``|bin| > tof.max_bin`` (or any non-zero bin on a non-TOF scanner); NaN times; times
            that decrease.
        """
        if self.n_events == 0:
            raise InputError("the listmode is empty: it holds no events")
        self._check_ranges(scanner)
        if self.time_ms is not None:
            times = self.time_ms
            bad = np.flatnonzero(~np.isfinite(times))
            if bad.size:
                raise InputError(
                    f"time_ms contains {bad.size} NaN or infinite values (first at event {bad[0]})"
                )
            back = np.flatnonzero(np.diff(times) < 0)
            if back.size:
                i = int(back[0]) + 1
                raise InputError(
                    f"events are out of time order: time_ms must be non-decreasing, but event {i} "
                    f"at {times[i]} ms follows event {i - 1} at {times[i - 1]} ms "
                    f"({back.size} such steps)"
                )
        return self

    def _check_ranges(self, scanner: PetScanner) -> None:
        n_crystals = scanner.n_crystals
        for name in ("crystal_a", "crystal_b"):
            ids = getattr(self, name)
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= n_crystals):
                raise InputError(
                    f"{name} holds crystal ids outside [0, {n_crystals}) for this scanner "
                    f"(found {int(ids.min())} … {int(ids.max())})"
                )
        if not self.tof_bin.size:
            return
        low, high = int(self.tof_bin.min()), int(self.tof_bin.max())
        if scanner.tof is None:
            if low != 0 or high != 0:
                raise InputError(
                    f"tof_bin holds non-zero TOF bins ({low} … {high}) but the scanner has no TOF"
                )
        elif max(-low, high) > scanner.tof.max_bin:
            m = scanner.tof.max_bin
            raise InputError(
                f"tof_bin holds bins outside [-{m}, {m}] for this scanner's {scanner.tof.n_bins} "
                f"TOF bins (found {low} … {high})"
            )

    # ------------------------------------------------------------------ selections
    def select(self, mask_or_slice: Any) -> ListmodeEvents:
        """The events picked by a boolean mask, an index array or a slice (a new object)."""
        key = mask_or_slice
        if not isinstance(key, slice):
            key = np.asarray(key)
            if key.dtype == bool and key.shape != (self.n_events,):
                raise InputError(
                    f"a boolean selection needs one value per event ({self.n_events}), "
                    f"got shape {key.shape}"
                )
            if key.dtype != bool and key.dtype.kind not in "iu":
                raise InputError(
                    f"select takes a boolean mask, indices or a slice, got {key.dtype}"
                )
        try:
            return ListmodeEvents(
                crystal_a=self.crystal_a[key],
                crystal_b=self.crystal_b[key],
                tof_bin=self.tof_bin[key],
                time_ms=None if self.time_ms is None else self.time_ms[key],
                prompt=self.prompt[key],
            )
        except IndexError as exc:
            raise InputError(f"event selection out of range: {exc}") from None

    def prompts(self) -> ListmodeEvents:
        """The prompt coincidences (``self`` when every event is a prompt: no copy)."""
        if bool(self.prompt.all()):
            return self
        return self.select(self.prompt)

    def delayeds(self) -> ListmodeEvents:
        """The delayed coincidences."""
        return self.select(~self.prompt)

    def time_window(self, start_ms: float, stop_ms: float) -> ListmodeEvents:
        """The events with ``start_ms ≤ time_ms < stop_ms``.

        Raises
        ------
        InputError
            The events carry no times, or ``stop_ms < start_ms``.
        """
        if self.time_ms is None:
            raise InputError("these listmode events carry no time_ms, so no time window applies")
        if not stop_ms >= start_ms:
            raise InputError(f"time window stop ({stop_ms} ms) precedes its start ({start_ms} ms)")
        return self.select((self.time_ms >= start_ms) & (self.time_ms < stop_ms))


def histogram(
    events: ListmodeEvents,
    layout: SinogramLayout,
    tof: bool | None = None,
    delayed: bool = False,
) -> tuple[np.ndarray, int]:
    """Count listmode events into a span-1 sinogram.

    Each event goes to the bin of its crystal pair (:meth:`SinogramLayout.bins_of`); a pair given
    in the reverse of the bin's canonical order has its TOF bin negated, and the tof axis stores
    the signed bins in increasing order (index ``tof_bin + max_bin``).

    Parameters
    ----------
    events : ListmodeEvents
        The events; crystal ids and TOF bins must be valid for ``layout.scanner``.
    layout : SinogramLayout
        The sinogram layout.
    tof : bool, optional
        True: a TOF sinogram (needs a TOF scanner); False: TOF bins are summed. Default: TOF
        when the scanner has TOF.
    delayed : bool, optional
        Histogram the delayed coincidences instead of the prompts.

    Returns
    -------
    sinogram : float32 ndarray of shape ``layout.shape`` (+ ``(n_tof,)`` with TOF)
        Counts per bin.
    n_dropped : int
        Events of the chosen kind whose crystal pair is not in the layout (same in-ring index,
        radial offset or ring difference out of range); they are not counted, and the number is
        also logged at INFO level.

    Raises
    ------
    InputError
        A crystal id or TOF bin is out of range for the scanner, or ``tof=True`` on a non-TOF
        scanner.
    """
    if not isinstance(events, ListmodeEvents):
        raise InputError(f"events must be ListmodeEvents, got {type(events).__name__}")
    scanner = layout.scanner
    use_tof = scanner.tof is not None if tof is None else bool(tof)
    if use_tof and scanner.tof is None:
        raise InputError("a TOF sinogram was asked for (tof=True) but the scanner has no TOF")
    events._check_ranges(scanner)
    chosen = events.delayeds() if delayed else events.prompts()
    plane, view, radial, swapped, valid = layout.bins_of(chosen.crystal_a, chosen.crystal_b)
    n_dropped = int(chosen.n_events - np.count_nonzero(valid))
    flat = (plane[valid].astype(np.int64) * layout.n_views + view[valid]) * layout.n_radial
    flat += radial[valid]
    shape: tuple[int, ...] = layout.shape
    tof_spec = scanner.tof if use_tof else None
    if tof_spec is not None:
        n_tof = tof_spec.n_bins
        tof_bin = chosen.tof_bin[valid].astype(np.int64)
        tof_bin = np.where(swapped[valid], -tof_bin, tof_bin)
        flat = flat * n_tof + tof_bin + tof_spec.max_bin
        shape = (*shape, n_tof)
    sinogram = np.zeros(int(np.prod(shape)), dtype=np.float32)
    if flat.size:
        index, counts = np.unique(flat, return_counts=True)
        sinogram[index] = counts
    if n_dropped:
        log.info("recon: %d listmode events fall outside the sinogram layout", n_dropped)
    return sinogram.reshape(shape), n_dropped
