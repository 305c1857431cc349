"""The system-model contract every reconstruction algorithm is written against.

A system model describes the expected data ``ȳ = m ⊙ (P x) + a`` of one acquisition (DESIGN.md
§1): a linear projector ``P`` with an exact adjoint, multiplicative factors ``m`` and additive
terms ``a`` per data bin. :class:`SystemModel` is the typed contract (a
:class:`typing.Protocol`): MLEM, OSEM and LM-OSEM (:mod:`recon.algorithms`) use nothing else, so
they never branch on modality or device. :class:`ModelBase` holds what every model shares: the
grid and device checks, the image side (units, :meth:`~ModelBase.to_image`), data validation,
the caches of sensitivity images and device index arrays; :class:`ViewModel` adds subsets of
interleaved views for data made of views (SPECT projections, sinograms).

Subsets are opaque to the algorithms: a model makes them (:meth:`SystemModel.subsets`) and is
handed them back. For sinogram-like data they are arrays of view indices; a listmode frame makes
its own (:class:`recon.pet.ListmodeFrame`).
"""

from __future__ import annotations

import abc
from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from recon._validation import as_grid_array
from recon.backend import Backend, resolve_backend
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image

__all__ = [
    "ListmodeSystem",
    "ModelBase",
    "SystemModel",
    "ViewModel",
    "ViewSubsets",
    "checked_backend",
]


@runtime_checkable
class SystemModel(Protocol):
    """What every reconstruction algorithm may use of a model of ``ȳ = m ⊙ (P x) + a``.

    Attributes
    ----------
    grid : ImageGrid
        The image grid; images are float32 arrays of ``grid.shape`` ``(z, y, x)``.
    backend : Backend
        Where the arrays live; ``xp`` is its array module (numpy or CuPy).
    additive : array of the data shape, or None
        The model's own additive term ``a`` (expected counts per bin).
    """

    grid: ImageGrid
    backend: Backend
    xp: Any
    additive: Any

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``grid.shape``."""
        ...

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of the data (and of ``additive``)."""
        ...

    @property
    def units(self) -> str:
        """Units of the images: ``"Bq/mL"`` when calibrated."""
        ...

    def validate_data(self, data: Any, name: str = "counts") -> Any:
        """``data`` of :attr:`data_shape` as a float32 device array, finite and ≥ 0."""
        ...

    def validate_image(self, image: Any, name: str = "image") -> Any:
        """``image`` (array or :class:`recon.Image`) as a float32 device array on the grid."""
        ...

    def subsets(self, n_subsets: int) -> list[Any]:
        """``n_subsets`` ordered subsets that partition the data."""
        ...

    def take(self, data: Any, subset: Any) -> Any:
        """The part of data-shaped ``data`` that belongs to ``subset`` (None: all)."""
        ...

    def forward(self, image: Any, subset: Any = None) -> Any:
        """``m ⊙ (P x)`` on the bins of ``subset`` (None: all)."""
        ...

    def back(self, data: Any, subset: Any = None) -> Any:
        """``Pᵀ (m ⊙ y)`` from the bins of ``subset``: the exact adjoint of :meth:`forward`."""
        ...

    def sensitivity(self, subset: Any = None) -> Any:
        """``Pᵀ m`` of ``subset``: the image the EM update divides by (kept on the device)."""
        ...

    def start_value(self, counts: Any, additive: Any, sensitivity: Any) -> float:
        """The value of a uniform starting image that explains the counts not explained by
        ``additive``, given the sensitivity over all data."""
        ...

    def expected_total(self, expected: Any, image: Any) -> float:
        """``Σ ȳ`` over all the data, given ``expected = ȳ`` on the data and the image (the
        second term of the log-likelihood)."""
        ...

    def to_image(self, data: Any, **info: Any) -> Image:
        """Wrap an image array of this model as a :class:`recon.Image` (units, isotope, time)."""
        ...


@runtime_checkable
class ListmodeSystem(Protocol):
    """A listmode model: it makes the :class:`SystemModel` of one frame of events."""

    def frame(
        self,
        events: Any,
        frame_start_s: float | None = None,
        frame_duration_s: float | None = None,
        additive_rate: Any = None,
    ) -> Any:
        """The model restricted to the prompts of one time window (one count per prompt); it
        has ``counts()``, ``n_prompts``, ``frame_start_s``, ``frame_duration_s`` and
        ``decay_factor`` besides the :class:`SystemModel` interface."""
        ...


def checked_backend(
    grid: ImageGrid, device: str | Backend | None, what: str, image_copies: int = 4
) -> Backend:
    """The backend of ``device`` for a model on ``grid``, after checking that ``grid`` is an
    :class:`ImageGrid` and that ``image_copies`` of its images fit in memory."""
    if not isinstance(grid, ImageGrid):
        raise GeometryError("grid must be an ImageGrid")
    grid.check_memory(copies=image_copies, what=what)
    return resolve_backend(device)


class ViewSubsets:
    """Ordered subsets of interleaved views: subset ``s`` holds views ``s, s+n, s+2n, …``.

    Parameters
    ----------
    n_views : int
        Views of the data.
    view_axis : int
        Axis of the views in data-shaped arrays.
    """

    def __init__(self, n_views: int, view_axis: int) -> None:
        self.n_views = int(n_views)
        self.view_axis = int(view_axis)

    def make(self, n_subsets: int) -> list[np.ndarray]:
        """The subsets as arrays of view indices (int64)."""
        if (
            isinstance(n_subsets, bool)
            or int(n_subsets) != n_subsets
            or not 1 <= int(n_subsets) <= self.n_views
        ):
            raise InputError(
                f"subsets must be between 1 and the number of views ({self.n_views}), "
                f"got {n_subsets}"
            )
        n = int(n_subsets)
        return [np.arange(s, self.n_views, n, dtype=np.int64) for s in range(n)]

    def views(self, subset: Any) -> np.ndarray:
        """The view indices of ``subset`` (None: all), checked."""
        if subset is None:
            return np.arange(self.n_views, dtype=np.int64)
        views = np.asarray(subset).reshape(-1)
        if views.dtype.kind not in "iu":
            raise InputError(f"a subset is an array of view indices, got dtype {views.dtype}")
        if views.size == 0 or views.min() < 0 or views.max() >= self.n_views:
            raise InputError(f"view indices must be within [0, {self.n_views})")
        return views.astype(np.int64)


class ModelBase(abc.ABC):
    """The set-up every system model shares (see the module docstring).

    Subclasses call ``super().__init__`` with the grid and device, set :attr:`isotope`,
    :attr:`reference_time_s` and :attr:`additive`, and implement :attr:`data_shape`,
    :attr:`units`, :meth:`forward`, :meth:`back` and the subsets (:meth:`subsets`, :meth:`take`,
    :meth:`sensitivity`; :class:`ViewModel` implements those for data made of views).

    Parameters
    ----------
    grid : ImageGrid
        The image grid.
    device : {"auto", "cpu", "gpu"}, Backend or None
        Where to compute.
    what : str
        The model's kind, for messages ("a SPECT model").
    image_copies : int
        Images the model itself keeps (for the memory check before anything is allocated).
    """

    isotope: str | None = None
    reference_time_s: float = 0.0
    additive: Any = None
    #: Independent images stacked along z in one image of :attr:`grid` (e.g. one per isotope of
    #: :class:`recon.MultiIsotopeModel`): a prior bound to the model (:meth:`recon.algorithms.
    #: priors.Prior.for_model`) leaves out the neighbours across the seams. 1 for one image.
    image_blocks: int = 1

    def __init__(
        self, grid: ImageGrid, device: str | Backend | None, what: str, image_copies: int = 4
    ) -> None:
        self.grid = grid
        self.backend = checked_backend(grid, device, what, image_copies)
        self.xp = self.backend.xp
        self._sensitivity_cache: dict[Hashable, Any] = {}
        self._index_cache: dict[Hashable, Any] = {}

    # ------------------------------------------------------------------ the model proper
    @property
    @abc.abstractmethod
    def data_shape(self) -> tuple[int, ...]:
        """Shape of the data (and of ``additive``)."""

    @property
    @abc.abstractmethod
    def units(self) -> str:
        """Units of the images: ``"Bq/mL"`` when calibrated."""

    @abc.abstractmethod
    def forward(self, image: Any, subset: Any = None) -> Any:
        """``m ⊙ (P x)`` on the bins of ``subset`` (None: all)."""

    @abc.abstractmethod
    def back(self, data: Any, subset: Any = None) -> Any:
        """``Pᵀ (m ⊙ y)`` from the bins of ``subset``: the exact adjoint of :meth:`forward`."""

    @abc.abstractmethod
    def subsets(self, n_subsets: int) -> list[Any]:
        """``n_subsets`` ordered subsets that partition the data."""

    @abc.abstractmethod
    def take(self, data: Any, subset: Any) -> Any:
        """The part of data-shaped ``data`` that belongs to ``subset`` (None: all)."""

    @abc.abstractmethod
    def sensitivity(self, subset: Any = None) -> Any:
        """``Pᵀ m`` of ``subset``, kept on the device."""

    # ------------------------------------------------------------------ image side
    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``grid.shape``."""
        return self.grid.shape

    def validate_image(self, image: Any, name: str = "image") -> Any:
        """``image`` as a float32 device array on the model grid (or a ReconError naming
        ``name``)."""
        return as_grid_array(image, self.grid, self.backend, name=name)

    def to_image(self, data: Any, **info: Any) -> Image:
        """Wrap an image array of this model as a :class:`recon.Image`."""
        return Image(
            data=data,
            grid=self.grid,
            units=self.units,
            isotope=self.isotope,
            reference_time_s=self.reference_time_s if self.isotope else None,
            info=info,
        )

    # ------------------------------------------------------------------ data side
    def validate_data(self, data: Any, name: str = "counts") -> Any:
        """``data`` of :attr:`data_shape` as a float32 device array, finite and non-negative.

        Raises
        ------
        InputError
            Wrong shape, NaN or infinite values, negative values.
        """
        expected = tuple(self.data_shape)
        found = tuple(getattr(data, "shape", np.shape(data)))
        if found != expected:
            raise InputError(f"{name} has shape {found} but the model expects {expected}")
        arr = self.backend.asarray(data)
        xp = self.xp
        if not bool(xp.all(xp.isfinite(arr))):
            raise InputError(f"{name} contains NaN or infinite values")
        if arr.size and float(arr.min()) < 0:
            raise InputError(
                f"{name} contains negative values; data must be non-negative (clip pre-corrected "
                "data at 0 first)"
            )
        return arr

    def expected_total(self, expected: Any, image: Any) -> float:
        """``Σ ȳ``: for binned data the sum of the expectations of every bin."""
        return float(expected.sum(dtype=np.float64))

    def start_value(self, counts: Any, additive: Any, sensitivity: Any) -> float:
        """``(Σ y − Σ a) / Σ s``: the uniform image whose expected counts match the data."""
        expected = float(counts.sum()) - (0.0 if additive is None else float(additive.sum()))
        return max(expected, 0.0) / max(float(sensitivity.sum()), 1e-30)

    def _device_indices(self, indices: np.ndarray, dtype: Any = np.int64) -> Any:
        """Host ``indices`` as a device array of ``dtype``, uploaded once per distinct list
        (so an iteration makes no host-to-device transfer)."""
        key = (np.dtype(dtype).str, np.ascontiguousarray(indices, np.int64).tobytes())
        if key not in self._index_cache:
            self._index_cache[key] = self.backend.asarray(indices, dtype)
        return self._index_cache[key]


class ViewModel(ModelBase):
    """A model whose data are views along one axis, in subsets of interleaved views.

    Subclasses set ``self.view_subsets`` (a :class:`ViewSubsets`) in their constructor.
    """

    view_subsets: ViewSubsets

    def subsets(self, n_subsets: int) -> list[Any]:
        """Interleaved view subsets: subset ``s`` holds views ``s, s+n, s+2n, …``."""
        return self.view_subsets.make(n_subsets)

    def _views(self, subset: Any) -> np.ndarray:
        """Host view indices of ``subset`` (None: all)."""
        return self.view_subsets.views(subset)

    def take(self, data: Any, subset: Any) -> Any:
        """The part of data-shaped ``data`` that belongs to ``subset`` (None: all)."""
        if subset is None:
            return data
        axis = self.view_subsets.view_axis
        return data[(slice(None),) * axis + (self._device_indices(self._views(subset)),)]

    def sensitivity(self, subset: Any = None) -> Any:
        """``Pᵀ m`` of ``subset`` (None: all), computed once and kept on the device."""
        views = self._views(subset)
        key = views.tobytes()
        if key not in self._sensitivity_cache:
            self._sensitivity_cache[key] = self._compute_sensitivity(views)
        return self._sensitivity_cache[key]

    def _compute_sensitivity(self, views: np.ndarray) -> Any:
        """``back(ones)`` over ``views``; models with a cheaper route override it."""
        shape = list(self.data_shape)
        shape[self.view_subsets.view_axis] = views.size
        return self.back(self.xp.ones(tuple(shape), np.float32), views)
