"""One frame of listmode data as a system model: LM-OSEM is OSEM on it.

:class:`ListmodeFrame` restricts a :class:`recon.PetListmodeModel` to the prompts of one time
window. Its data are one count per prompt, so the expected data of event ``i`` are
``ȳ_i = m_i (P x)_i + a_i`` with ``m_i`` the event's factor (attenuation, normalisation, decay to
the event's time, branching ratio, calibration) times the frame duration, and ``a_i`` its
additive rate times the frame duration: expected counts in the event's (infinitesimal) bin over
the frame. With these, the EM update ``x ← x / s_S · Pᵀ_S (m_S ⊙ y_S / ȳ_S)`` of
:func:`recon.osem` is the listmode EM update (Parra & Barrett 1998; Reader et al. 2002), the
sensitivity ``s`` being that of every LOR of the layout over the frame, ``1/n`` of it per subset.

Subsets interleave the events (event ``i`` goes to subset ``i mod n``); the events are stored
reordered so that each subset is one contiguous block, which keeps an iteration free of gathers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from recon.errors import InputError
from recon.image import Image
from recon.pet.listmode import ListmodeEvents
from recon.pet.resolution import add_resolution_info
from recon.system_model import ModelBase

if TYPE_CHECKING:
    from recon.pet.model import PetListmodeModel

__all__ = ["EventSubset", "ListmodeFrame"]

_EVENT_ARRAYS = ("crystal_a", "crystal_b", "tof_bin", "factor")


class EventSubset(NamedTuple):
    """Subset ``number`` of ``n_subsets`` interleaved event subsets (events
    ``number::n_subsets``).

    (Not ``index`` and ``count``: those would hide the tuple methods of the same names.)
    """

    number: int
    n_subsets: int


class ListmodeFrame(ModelBase):
    """A :class:`recon.PetListmodeModel` restricted to one frame's prompts (a SystemModel).

    Made by :meth:`recon.PetListmodeModel.frame`; see the module docstring for the model.

    Attributes
    ----------
    model : PetListmodeModel
        The listmode model (scanner, corrections, projector).
    frame_start_s, frame_duration_s : float
        The frame, s from scan start.
    n_prompts : int
        Prompts in the frame on LORs of the layout (the data size).
    n_given : int
        Prompts given (some may lie outside the layout).
    decay_factor : float
        Activity at the reference time over the mean activity during the frame.
    additive : float32 device array of shape (n_prompts,) or None
        Expected additive counts ``a_i`` over the frame, in the order of the prompts.
    """

    def __init__(
        self,
        model: PetListmodeModel,
        events: ListmodeEvents,
        frame_start_s: float | None,
        frame_duration_s: float | None,
        additive_rate: Any,
    ) -> None:
        super().__init__(model.grid, model.backend, "a listmode frame", image_copies=2)
        self.model = model
        self.isotope = model.isotope
        self.reference_time_s = model.reference_time_s
        if not isinstance(events, ListmodeEvents):
            raise InputError("events must be a recon.ListmodeEvents")
        start, duration = _frame_window(events, frame_start_s, frame_duration_s)
        self.frame_start_s, self.frame_duration_s = start, duration
        prepared = model.prepare(events)
        self.n_prompts = int(prepared["n"])
        self.n_given = int(prepared["n_given"])
        # Expected counts over the frame: the event's rate factor times the frame duration.
        prepared["factor"] = (prepared["factor"] * np.float32(duration)).astype(np.float32)
        self._events = {key: prepared[key] for key in _EVENT_ARRAYS}
        self._order: np.ndarray | None = None  # stored order of the events (None: as given)
        self._order_device: Any = None  # the same on the device, made when first needed
        self._n_subsets = 1
        self.additive = self._additive(additive_rate, prepared.get("kept"), duration)
        self.decay_factor = model.decay_factor(start, duration)

    # ------------------------------------------------------------------ model
    @property
    def units(self) -> str:
        """The listmode model's image units."""
        return self.model.units

    @property
    def data_shape(self) -> tuple[int]:
        """One value per prompt: ``(n_prompts,)``."""
        return (self.n_prompts,)

    def to_image(self, data: Any, **info: Any) -> Image:
        """Wrap an image array as a :class:`recon.Image`; its ``info`` names the listmode model's
        resolution model (``resolution_model``) when it has one."""
        return super().to_image(data, **add_resolution_info(info, self.model.resolution))

    def counts(self) -> Any:
        """The frame's data: one count per prompt (float32 on the device)."""
        return self.xp.ones(self.n_prompts, dtype=np.float32)

    def _additive(self, additive_rate: Any, kept: Any, duration: float) -> Any:
        if additive_rate is None:
            return None
        rate = self.backend.asarray(additive_rate)
        xp = self.xp
        if (
            tuple(rate.shape) != (self.n_given,)
            or not bool(xp.all(xp.isfinite(rate)))
            or (rate.size and float(rate.min()) < 0)
        ):
            raise InputError(
                f"additive_rate must be {self.n_given} finite non-negative values (counts/s), "
                "one per prompt"
            )
        if kept is not None:
            rate = rate[self.backend.asarray(np.flatnonzero(kept), np.int64)]
        return (rate * np.float32(duration)).astype(np.float32)

    # ------------------------------------------------------------------ subsets
    def subsets(self, n_subsets: int) -> list[EventSubset]:
        """``n_subsets`` interleaved subsets of the prompts (prompt ``i`` in subset ``i mod n``)."""
        if (
            isinstance(n_subsets, bool)
            or int(n_subsets) != n_subsets
            or not 1 <= int(n_subsets) <= self.n_prompts
        ):
            raise InputError(
                f"subsets must be between 1 and the number of prompts ({self.n_prompts}), got "
                f"{n_subsets}"
            )
        self._arrange(int(n_subsets))
        return [EventSubset(k, int(n_subsets)) for k in range(int(n_subsets))]

    def _arrange(self, n_subsets: int) -> None:
        """Store the events so that each of ``n_subsets`` subsets is one contiguous block."""
        if n_subsets == self._n_subsets and (self._order is not None or n_subsets == 1):
            return
        index = _index_dtype(self.n_prompts)
        order = _interleaved(self.n_prompts, n_subsets).astype(index)
        current = np.arange(self.n_prompts, dtype=index) if self._order is None else self._order
        # Stored position j holds event current[j]; the new layout needs event order[j].
        where = np.empty_like(current)
        where[current] = np.arange(current.size, dtype=index)
        move = self.backend.asarray(where[order], index)
        del where, current
        # One array at a time, so the reordering needs one event array of scratch, not a copy
        # of them all.
        for key, value in list(self._events.items()):
            if value is not None:
                self._events[key] = self.xp.ascontiguousarray(value[move])
                del value
        del move
        self._order, self._n_subsets = order, n_subsets
        # The given-order index of every stored event, on the device (4 bytes per event): a
        # subset's indices are a slice of it, so no iteration uploads or caches index arrays.
        self._order_device = self.backend.asarray(order, index)

    def _block(self, subset: EventSubset) -> slice:
        number, n_subsets = subset
        if not (isinstance(number, int | np.integer) and 0 <= number < n_subsets):
            raise InputError(f"not a subset of this frame: {subset!r}")
        self._arrange(int(n_subsets))
        sizes = [len(range(k, self.n_prompts, n_subsets)) for k in range(n_subsets)]
        first = sum(sizes[:number])
        return slice(first, first + sizes[number])

    def _original_indices(self, subset: EventSubset | None) -> Any:
        """Device indices, in the given order of the prompts, of the events of ``subset``."""
        if self._order_device is None:  # events as given: the identity
            index = _index_dtype(self.n_prompts)
            self._order_device = self.backend.asarray(np.arange(self.n_prompts), index)
        return self._order_device if subset is None else self._order_device[self._block(subset)]

    def take(self, data: Any, subset: Any) -> Any:
        """The values of ``subset``'s prompts from per-prompt ``data`` (None: all)."""
        if subset is None:
            return data
        return data[self._original_indices(subset)]

    def _selected(self, subset: EventSubset | None) -> dict[str, Any]:
        if subset is None:
            return self._events
        block = self._block(subset)
        return {k: (None if v is None else v[block]) for k, v in self._events.items()}

    # ------------------------------------------------------------------ projections
    def forward(self, image: Any, subset: Any = None) -> Any:
        """``m_i (P x)_i``: expected counts of the prompts of ``subset`` (None: all, in the
        given order)."""
        x = self.validate_image(image)
        values = self.model.forward_events(x, self._selected(subset))
        if subset is None and self._order is not None:
            out = self.xp.empty_like(values)
            out[self._original_indices(None)] = values
            return out
        return values

    def back(self, data: Any, subset: Any = None) -> Any:
        """``Pᵀ (m ⊙ y)`` from per-prompt values ``y`` of ``subset`` (None: all, given order)."""
        y = self.backend.asarray(data)
        block = None if subset is None else self._block(subset)
        n = self.n_prompts if block is None else block.stop - block.start
        if tuple(y.shape) != (n,):
            raise InputError(f"data has shape {tuple(y.shape)}, expected ({n},)")
        if subset is None and self._order is not None:
            y = y[self._original_indices(None)]
        return self.model.back_events(y, self._selected(subset))

    def ratio_back(
        self,
        image: Any,
        subset: Any,
        counts: Any,
        additive: Any,
        max_ratio: float,
        smallest: float,
    ) -> Any:
        """``Pᵀ(m ⊙ y/ȳ)`` over the prompts of ``subset``, the ratio guarded as
        ``recon.algorithms.em_update.em_ratio`` (``y / max(ȳ, y / max_ratio, smallest)``), each
        event walked once (CPU; None on a GPU: the EM loop then calls :meth:`forward` and
        :meth:`back`).

        ``counts`` and ``additive`` are the subset's values (:meth:`take`), in its order.
        """
        x = self.validate_image(image)
        if subset is None and self._order is not None:  # given order -> stored order
            stored = self._original_indices(None)
            counts = counts[stored]
            additive = None if additive is None else additive[stored]
        return self.model.ratio_back_events(
            x, self._selected(subset), counts, additive, max_ratio, smallest
        )

    def sensitivity(self, subset: Any = None) -> Any:
        """The frame's sensitivity over every LOR of the layout, ``1/n`` of it for a subset of
        ``n`` (the same image for every subset: the events of each sample all LORs)."""
        if "frame" not in self._sensitivity_cache:
            self._sensitivity_cache["frame"] = self.model.frame_sensitivity(
                self.frame_start_s, self.frame_duration_s
            )
        full = self._sensitivity_cache["frame"]
        if subset is None:
            return full
        count = int(subset[1])
        if count not in self._sensitivity_cache:
            self._sensitivity_cache[count] = (full / np.float32(count)).astype(np.float32)
        return self._sensitivity_cache[count]

    def expected_total(self, expected: Any, image: Any) -> float:
        """Expected prompts over all LORs in the frame, ``Σ_j s_j x_j``, without the frame's
        additive counts (a constant the per-prompt rates do not give)."""
        total = self.sensitivity(None) * self.validate_image(image)
        return float(total.sum(dtype=np.float64))

    def start_value(self, counts: Any, additive: Any, sensitivity: Any) -> float:
        """Prompts over the frame's total sensitivity. The per-prompt additive values do not sum
        to the frame's additive counts, so they are not subtracted."""
        return float(counts.sum()) / max(float(sensitivity.sum()), 1e-30)


def _frame_window(
    events: ListmodeEvents, start_s: float | None, duration_s: float | None
) -> tuple[float, float]:
    """The frame, defaulting to 0 … last event; events outside it are refused."""
    times = np.asarray(events.time_ms, dtype=np.float64) / 1000.0
    start = 0.0 if start_s is None else float(start_s)
    if duration_s is None:
        duration = (max(float(times.max()), 1e-3) if times.size else 1e-3) - start
    else:
        duration = float(duration_s)
    if not duration > 0:
        raise InputError(f"frame durations must be positive, got {duration} s")
    if times.size and (times.min() < start - 1e-9 or times.max() > start + duration + 1e-9):
        raise InputError(
            f"events span {times.min():.3f}-{times.max():.3f} s, outside the frame "
            f"[{start}, {start + duration}] s; select the frame's events first"
        )
    return start, duration


def _index_dtype(n_events: int) -> type[np.integer]:
    """int32 event indices where they fit (half the memory of int64)."""
    return np.int32 if n_events < 2**31 else np.int64


def _interleaved(n_events: int, n_subsets: int) -> np.ndarray:
    """Event order in which subset ``k`` (events ``k::n``) is the ``k``-th contiguous block."""
    return np.concatenate([np.arange(k, n_events, n_subsets) for k in range(n_subsets)])
