"""SPECT from several energy windows at once: one model per photopeak window, stacked.

A multi-photopeak acquisition (In-111 at 171 and 245 keV, Lu-177 at 113 and 208 keV, Ga-67 at
93, 185 and 300 keV) records each photopeak in its own window. Every window sees the same activity
through its own physics: the attenuation at its energy, the collimator response at its energy
(with septal penetration where it matters) and the yield of the lines it holds. Each window is a
:class:`recon.SpectModel`; :class:`StackedModel` puts them together into one
:class:`recon.SystemModel`, so OSEM, BSREM and OSL-MAP reconstruct one image from all the windows
without knowing there are several.

Data layout: a leading window axis, ``(window, view, v, u)``. Each window's projections stay one
contiguous ``(view, v, u)`` block, exactly what its sub-model and the window's own scatter
estimate (TEW per peak) already are, so nothing is copied or re-ordered to call a sub-model, and
``data[w]`` is window ``w`` as read from the file. Subsets take the same interleaved views of
every window (``data[:, views]``): a subset sees every energy of each of its views.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recon.backend import Backend, resolve_backend
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.physics.attenuation import mu_at_energy
from recon.physics.windows import PhotopeakWindow
from recon.spect.collimator import Collimator
from recon.spect.geometry import SpectGeometry
from recon.spect.model import SpectModel, shared_attenuation_cache_bytes
from recon.system_model import ModelBase, ViewSubsets

__all__ = ["StackedModel", "photopeak_model", "window_sensitivities"]


class StackedModel(ModelBase):
    """Several view models of one image, their data stacked along a leading window axis.

    ``ȳ[w] = s_w · m_w ⊙ (P_w x) + a[w]``: window ``w`` is the sub-model ``models[w]`` scaled by
    ``scales[w]``. The adjoint is the sum of the sub-models' adjoints, and the sensitivity of a
    subset the sum of theirs.

    Parameters
    ----------
    models : sequence of SpectModel
        One model per window, on the same grid and device, with the same views and projection
        shape and the same image units.
    scales : sequence of float, optional
        A factor per window (default 1): e.g. each window's share of the photons per decay when
        the sub-models carry no calibration.
    names : sequence of str, optional
        A name per window (for messages and summaries).
    additive : array of shape (window, view, v, u), optional
        Additive expected counts per bin (each window's scatter estimate).

    Raises
    ------
    InputError
        No model, scales or names of the wrong length, a scale that is not positive.
    GeometryError
        Models on different grids, devices or views.
    """

    def __init__(
        self,
        models: Sequence[SpectModel],
        scales: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        additive: Any = None,
    ) -> None:
        models = list(models)
        if not models:
            raise InputError("a stacked model needs at least one window model")
        first = models[0]
        for k, m in enumerate(models[1:], start=1):
            if m.grid != first.grid:
                raise GeometryError(f"window model {k} is on a different grid from window 0")
            if m.backend is not first.backend and m.backend.name != first.backend.name:
                raise GeometryError(f"window model {k} is on a different device from window 0")
            if tuple(m.data_shape) != tuple(first.data_shape):
                raise GeometryError(
                    f"window model {k} has projections {tuple(m.data_shape)}, window 0 has "
                    f"{tuple(first.data_shape)}: the windows must share the views"
                )
            if m.units != first.units:
                raise InputError(
                    f"window model {k} gives images in {m.units}, window 0 in {first.units}: "
                    "calibrate every window or none"
                )
        n = len(models)
        values = [1.0] * n if scales is None else [float(s) for s in scales]
        if len(values) != n or not all(np.isfinite(s) and s > 0 for s in values):
            raise InputError(f"scales must be {n} positive numbers, got {scales!r}")
        labels = [f"window {k + 1}" for k in range(n)] if names is None else list(names)
        if len(labels) != n:
            raise InputError(f"names must be {n} names, got {names!r}")
        # No image copies of its own: the sub-models hold theirs.
        self.grid = first.grid
        self.backend = first.backend
        self.xp = first.xp
        self._sensitivity_cache: dict[Any, Any] = {}
        self._index_cache: dict[Any, Any] = {}
        self.models = models
        self.scales = tuple(values)
        self.names = tuple(labels)
        self.isotope = first.isotope
        self.reference_time_s = first.reference_time_s
        self.view_subsets = ViewSubsets(first.geometry.n_views, view_axis=1)
        self.additive = None if additive is None else self.validate_data(additive, "additive")

    @property
    def n_windows(self) -> int:
        """Number of stacked windows."""
        return len(self.models)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """``(window, view, v, u)``."""
        return (self.n_windows, *self.models[0].data_shape)

    @property
    def units(self) -> str:
        """The sub-models' image units."""
        return self.models[0].units

    def subsets(self, n_subsets: int) -> list[Any]:
        """Interleaved view subsets, the same views in every window."""
        return self.view_subsets.make(n_subsets)

    def take(self, data: Any, subset: Any) -> Any:
        """``data[:, views of subset]`` (None: all)."""
        if subset is None:
            return data
        return data[:, self._device_indices(self.view_subsets.views(subset))]

    def forward(self, image: Any, subset: Any = None) -> Any:
        """``s_w · m_w ⊙ (P_w x)`` of every window on the views of ``subset``, stacked."""
        x = self.validate_image(image)
        views = self.view_subsets.views(subset)
        parts = [
            m.forward(x, views) * np.float32(s)
            for m, s in zip(self.models, self.scales, strict=True)
        ]
        return self.xp.stack(parts)

    def back(self, data: Any, subset: Any = None) -> Any:
        """Adjoint of :meth:`forward`: ``Σ_w s_w · P_wᵀ (m_w ⊙ y[w])``."""
        views = self.view_subsets.views(subset)
        y = self.backend.asarray(data)
        expected = (self.n_windows, views.size, *self.models[0].data_shape[1:])
        if tuple(y.shape) != expected:
            raise InputError(
                f"data has shape {tuple(y.shape)}, expected {expected} (window, view, v, u)"
            )
        image = None
        for w, (m, s) in enumerate(zip(self.models, self.scales, strict=True)):
            part = m.back(y[w], views) * np.float32(s)
            image = part if image is None else image + part
        return image

    def sensitivity(self, subset: Any = None) -> Any:
        """``Σ_w s_w · P_wᵀ m_w`` over the views of ``subset``, kept on the device."""
        views = self.view_subsets.views(subset)
        key = views.tobytes()
        if key not in self._sensitivity_cache:
            total = None
            for m, s in zip(self.models, self.scales, strict=True):
                part = m.sensitivity(views) * np.float32(s)
                total = part if total is None else total + part
            self._sensitivity_cache[key] = total
        return self._sensitivity_cache[key]


def window_sensitivities(
    peaks: Sequence[PhotopeakWindow], sensitivity_cps_per_mbq: float | Sequence[float] | None
) -> tuple[list[float | None], str]:
    """Each window's planar sensitivity (cps/MBq) from what the user gave, and how it was read.

    - ``None``: no calibration (``[None, …]``, ``"none"``);
    - one value per window: each window's own measured sensitivity, which includes the yield of
      its lines (``"per window"``);
    - one value for several windows: the sensitivity over all the windows together (the counts
      per second per MBq that a calibration source gives summed over the photopeak windows),
      shared out in proportion to each window's photons per decay (``"per decay, shared by
      yield"``). This assumes the camera detects the photons of every window equally well per
      photon; collimator and crystal efficiency change with energy, so per-window values are
      better where they were measured.

    Parameters
    ----------
    peaks : sequence of PhotopeakWindow
        The windows.
    sensitivity_cps_per_mbq : float, sequence of float or None
        What was given.

    Returns
    -------
    values : list of float or None
        One per window.
    mode : str
        ``"none"``, ``"per window"`` or ``"per decay, shared by yield"``.

    Raises
    ------
    InputError
        A count of values that is neither 1 nor the number of windows, or a value that is not
        positive.
    """
    n = len(peaks)
    if sensitivity_cps_per_mbq is None:
        return [None] * n, "none"
    values = [float(v) for v in np.atleast_1d(np.asarray(sensitivity_cps_per_mbq, float))]
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"sensitivities must be positive numbers (cps/MBq), got {values}")
    if len(values) == n:
        return list(values), "per window" if n > 1 else "one window"
    if len(values) == 1:
        yields = np.array([p.yield_per_decay for p in peaks])
        shares = yields / yields.sum()
        return [values[0] * float(f) for f in shares], "per decay, shared by yield"
    raise InputError(
        f"{len(values)} sensitivities for {n} photopeak windows: give one per window "
        f"({', '.join(p.name for p in peaks)}) or one for all of them"
    )


def photopeak_model(
    geometry: SpectGeometry,
    grid: ImageGrid,
    peaks: Sequence[PhotopeakWindow],
    mu_map: Any = None,
    mu_energy_kev: float | None = None,
    collimator: str | Collimator | None = None,
    isotope: str | None = None,
    reference_time_s: float | None = None,
    sensitivity_cps_per_mbq: float | Sequence[float] | None = None,
    additive: Any = None,
    device: str | Backend | None = None,
    attenuation_cache_bytes: int | None = None,
) -> StackedModel:
    """One image from the photopeak windows ``peaks``: a :class:`StackedModel` of one
    :class:`SpectModel` per window, each with its own physics.

    Window ``w`` gets the μ-map converted from ``mu_energy_kev`` to the window's energy
    (:func:`recon.physics.attenuation.mu_at_energy`), the collimator at the window's energy
    (:meth:`Collimator.at_energy`: septal attenuation, intrinsic resolution, penetration) and its
    yield per decay: with a calibration its sensitivity (:func:`window_sensitivities`), without one
    the scale ``y_w / Σ y`` (the image is then in counts/s summed over the windows, per voxel).
    The window's energy is the yield-weighted mean of the lines it holds
    (:attr:`PhotopeakWindow.energy_kev`).

    Parameters
    ----------
    geometry : SpectGeometry
        The views (shared by the windows).
    grid : ImageGrid
        Reconstruction grid.
    peaks : sequence of PhotopeakWindow
        The photopeak windows (:func:`recon.physics.windows.assign_windows`).
    mu_map : ndarray of grid.shape or Image, optional
        Attenuation map at ``mu_energy_kev`` in 1/mm.
    mu_energy_kev : float, optional
        Energy of ``mu_map``; default the isotope's main line (the first window's energy when no
        isotope is given).
    collimator : str or Collimator, optional
        Preset name or collimator; None: no response model.
    isotope : str, optional
        For decay; default the windows' isotope.
    reference_time_s : float, optional
        Activity reference time (s from acquisition start).
    sensitivity_cps_per_mbq : float or sequence of float, optional
        See :func:`window_sensitivities`.
    additive : array of shape (window, view, v, u), optional
        Scatter estimate of every window.
    device : {"auto", "cpu", "gpu"} or Backend, optional
        Where to compute.
    attenuation_cache_bytes : int, optional
        Memory for the attenuation factors of all windows together, shared equally (see
        :class:`SpectModel`); default one model's default budget.

    Returns
    -------
    StackedModel
        With ``names`` the window names; ``sensitivity_mode`` says how the calibration was read.

    Raises
    ------
    InputError
        No window, windows of several isotopes (use a dual-isotope model), sensitivities that do
        not match the windows.
    """
    peaks = list(peaks)
    if not peaks:
        raise InputError("no photopeak window to reconstruct from")
    isotopes = {p.isotope for p in peaks}
    if len(isotopes) > 1:
        raise InputError(
            f"photopeak windows of several isotopes ({', '.join(sorted(isotopes))}) make one "
            "image each: use recon.spect.dual_isotope_model"
        )
    iso = isotope or peaks[0].isotope
    if mu_map is not None and mu_energy_kev is None:
        from recon.physics.isotopes import get_isotope

        mu_energy_kev = get_isotope(iso).main_photon.energy_kev
    sensitivities, mode = window_sensitivities(peaks, sensitivity_cps_per_mbq)
    total_yield = sum(p.yield_per_decay for p in peaks)
    backend = resolve_backend(device)
    cache_share = shared_attenuation_cache_bytes(attenuation_cache_bytes, backend, len(peaks))
    models = []
    for peak, sensitivity in zip(peaks, sensitivities, strict=True):
        models.append(
            _window_model(
                geometry,
                grid,
                peak.energy_kev,
                mu_map,
                mu_energy_kev,
                collimator,
                iso,
                reference_time_s,
                sensitivity,
                backend,
                cache_share,
            )  # fmt: skip
        )
    scales = [p.yield_per_decay / total_yield for p in peaks] if sensitivities[0] is None else None
    model = StackedModel(models, scales, [p.name for p in peaks], additive)
    model.sensitivity_mode = mode  # type: ignore[attr-defined]
    return model


def _window_model(
    geometry: SpectGeometry,
    grid: ImageGrid,
    energy_kev: float,
    mu_map: Any,
    mu_energy_kev: float | None,
    collimator: str | Collimator | None,
    isotope: str | None,
    reference_time_s: float | None,
    sensitivity: float | None,
    device: Any,
    attenuation_cache_bytes: int,
) -> SpectModel:
    """The :class:`SpectModel` of one window at ``energy_kev``."""
    mu = None
    if mu_map is not None:
        assert mu_energy_kev is not None
        values = getattr(mu_map, "data", mu_map)
        mu = mu_at_energy(np.asarray(values), mu_energy_kev, energy_kev)
    response = None
    if collimator is not None:
        base = Collimator.preset(collimator) if isinstance(collimator, str) else collimator
        response = base.at_energy(energy_kev)
    return SpectModel(
        geometry, grid, mu_map=mu, collimator=response, isotope=isotope,
        reference_time_s=reference_time_s, sensitivity_cps_per_mbq=sensitivity, device=device,
        attenuation_cache_bytes=attenuation_cache_bytes,
    )  # fmt: skip
