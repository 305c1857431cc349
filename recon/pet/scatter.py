"""Scatter estimation for a PET model: single-scatter simulation scaled to the data's tails.

:class:`ScatterEstimation` binds single-scatter simulation (:mod:`recon.pet.sss`) to one model
and its data (a sinogram of :class:`recon.PetSinogramModel` or :class:`recon.PetLorSinogramModel`,
or the events of a :class:`recon.PetListmodeModel` frame). Called with an activity image it
returns the model's additive term, randoms plus scaled scatter, in the form the model's
reconstruction takes (a data-shaped array of expected counts, or the per-prompt additive rate of
listmode data), and keeps a report of the round (:class:`ScatterRound`). The reconstruct → SSS →
scale loop is :func:`recon.estimate_scatter`, which drives it.

Scaling. The simulated scatter of a line is multiplied by that line's multiplicative factor less
its attenuation (time factor with duration, decay, branching ratio and calibration, and
normalisation): the expected scattered counts if the model were exact. It is then scaled to
``prompts − randoms`` in the tails (:mod:`recon.pet.tails`) per sinogram plane, per segment
(ring difference) or globally, to absorb what single scatter leaves out (multiple scatter,
activity outside the field of view). TOF data get the TOF-resolved estimate, the tails being fitted
on the TOF-summed sinogram.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recon.errors import GeometryError, InputError
from recon.pet.listmode import ListmodeEvents, histogram
from recon.pet.lor_model import PetLorSinogramModel
from recon.pet.model import PetListmodeModel, PetSinogramModel
from recon.pet.projector import LorProjector
from recon.pet.scanner import PetScanner
from recon.pet.sss import ScatterDetectors, SingleScatterSimulation
from recon.pet.tails import TailFit, fit_tail_scale, plane_windows, tail_mask

__all__ = ["ScatterEstimation", "ScatterRound"]

log = logging.getLogger("recon")

_FITS = ("plane", "segment", "global")
_CHUNK_LORS = 2**20  # sinogram lines whose ends are held at once


@dataclass
class ScatterRound:
    """What one scatter estimate found.

    Attributes
    ----------
    fit : TailFit
        The tail fit (scales per plane and the fallbacks taken).
    scatter_counts : float
        Expected scattered counts of the estimate over the frame (all bins; listmode: over the
        layout's sinogram).
    net_counts : float
        ``prompts − randoms`` over the frame.
    notes : list of str
        Assumptions and fallbacks, for the user.
    """

    fit: TailFit
    scatter_counts: float
    net_counts: float
    notes: list[str] = field(default_factory=list)

    @property
    def scatter_fraction(self) -> float:
        """Estimated scatter over ``prompts − randoms`` (NaN without net counts)."""
        return self.scatter_counts / self.net_counts if self.net_counts > 0 else float("nan")

    def summary(self) -> str:
        """One line for progress output."""
        return f"scatter fraction {self.scatter_fraction:.1%}; {self.fit.summary()}"


class ScatterEstimation:
    """Single-scatter estimation of a PET model's additive term, scaled to the data's tails.

    Parameters
    ----------
    model : PetSinogramModel, PetLorSinogramModel or PetListmodeModel
        The model; it must have a μ-map (``mu_map=``), on a grid that covers the body.
    data : array of the model's data shape, or ListmodeEvents
        Measured prompts: a sinogram (TOF or not, as the model), or the frame's events.
    randoms : array, optional
        Expected randoms counts over the frame: ``(plane, view, radial)`` (spread evenly over TOF
        bins) or, for sinogram models, the data shape. Default: no randoms.
    frame_start_s, frame_duration_s : float, optional
        Listmode only: the frame (default, as :meth:`PetListmodeModel.frame`: 0 to the last
        event).
    fit : {"plane", "segment", "global"}
        Tail-fit groups: every sinogram plane, every ring difference (segment; planes with the
        same axial difference of their ends for explicit LORs), or one scale.
    pool_planes : int
        With ``fit="plane"``: each plane's scale is fitted on the tails of the planes of its
        segment within this many axial positions (default 1: three planes; 0: its own tails
        only), which keeps the scale's noise down at low counts
        (:func:`recon.pet.tails.fit_tail_scale`).
    tail_threshold : float
        Lines with ``∫μ`` below this are outside the body (default 0.003).
    tail_margin_bins : int
        Radial safety margin of the tail mask, bins (default 2).
    min_tail_bins, min_tail_counts : int, float
        Least tail bins and tail prompts a group needs for its own fit (fallbacks: the global
        fit, then ``default_scale``).
    default_scale : float
        Scale when no fit is possible (default 1: the absolute single-scatter estimate).
    energy_window_kev, energy_resolution : optional
        Override the scanner's (explicit-LOR models have no scanner: the defaults of
        :class:`recon.PetScanner` are used and reported unless given).
    n_phi, axial_spacing_mm : int, float
        Coarse detectors of the simulation (:class:`recon.pet.sss.ScatterDetectors`).
    point_spacing_mm, mu_threshold_per_mm, seed : float, float, int
        Scatter-point sampling (:class:`recon.pet.sss.SingleScatterSimulation`).

    Attributes
    ----------
    kind : str
        ``"sinogram"`` or ``"listmode"``.
    rounds : list of ScatterRound
        The report of every estimate made so far.
    tails : bool ndarray (plane, view, radial)
        The tail mask.

    Raises
    ------
    InputError
        A model without a μ-map, data or randoms of the wrong shape, bad settings.
    GeometryError
        An unsupported model.
    """

    def __init__(
        self,
        model: Any,
        data: Any,
        randoms: Any = None,
        *,
        frame_start_s: float | None = None,
        frame_duration_s: float | None = None,
        fit: str = "plane",
        pool_planes: int = 1,
        tail_threshold: float = 0.003,
        tail_margin_bins: int = 2,
        min_tail_bins: int = 50,
        min_tail_counts: float = 100.0,
        default_scale: float = 1.0,
        energy_window_kev: tuple[float, float] | None = None,
        energy_resolution: float | None = None,
        n_phi: int = 64,
        axial_spacing_mm: float = 25.0,
        point_spacing_mm: float = 20.0,
        mu_threshold_per_mm: float = 0.001,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, PetSinogramModel | PetLorSinogramModel | PetListmodeModel):
            raise GeometryError(
                "scatter estimation needs a PetSinogramModel, PetLorSinogramModel or "
                f"PetListmodeModel, got {type(model).__name__}"
            )
        if fit not in _FITS:
            raise InputError(f"fit must be one of {_FITS}, got {fit!r}")
        self.model: Any = model
        self.data = data
        self.fit = fit
        self.rounds: list[ScatterRound] = []
        #: The scaled scatter sinogram of the latest estimate (expected counts per bin over the
        #: frame; non-TOF for listmode), None before the first.
        self.last_scatter: Any = None
        self._fit_options: dict[str, Any] = dict(
            min_tail_bins=min_tail_bins,
            min_tail_counts=min_tail_counts,
            default_scale=default_scale,
        )
        self._pool_planes = pool_planes if fit == "plane" else 0
        self.kind = "listmode" if isinstance(model, PetListmodeModel) else "sinogram"
        self.backend = model.backend
        self.xp = model.xp
        mu = self._mu_map()
        scanner: PetScanner | None = getattr(model, "scanner", None)
        self._notes: list[str] = []
        window, resolution = self._energy(scanner, energy_window_kev, energy_resolution)
        # Lines of the data (sinogram models) or of the layout (listmode tails), made a few
        # views at a time: the ends of a whole scanner's sinogram would not fit in memory.
        self._shape = self._base_shape()
        xs0, xe0 = self._view_ends(np.arange(1))  # every plane and radial bin of view 0
        self._view0 = (self.backend.to_host(xs0), self.backend.to_host(xe0))
        if scanner is not None:
            detectors = ScatterDetectors.from_scanner(scanner, n_phi, axial_spacing_mm)
        else:
            detectors = ScatterDetectors.from_endpoints(*self._view0, n_phi, axial_spacing_mm)
        self.simulation = SingleScatterSimulation(
            model.grid, mu, detectors, energy_window_kev=window, energy_resolution=resolution,
            tof=getattr(model, "tof", None), point_spacing_mm=point_spacing_mm,
            mu_threshold_per_mm=mu_threshold_per_mm, seed=seed, device=self.backend,
        )  # fmt: skip
        projector = LorProjector(model.grid, tof=None, device=self.backend)
        lines = self._per_view(
            lambda xs, xe: projector.forward(mu, xs.reshape(-1, 3), xe.reshape(-1, 3)).reshape(
                xs.shape[:-1]
            )
        )
        self._lines = lines
        self.tails = tail_mask(self.backend.to_host(lines), tail_threshold, tail_margin_bins)
        self._segments = self._plane_segments()
        self._groups: np.ndarray | None = self._plane_groups()
        if self._pool_planes:  # checked here, before the first (costly) estimate
            z_mid = 0.5 * (self._view0[0][:, 0, 0, 2] + self._view0[1][:, 0, 0, 2])
            self._fit_options.update(
                pool_planes=self._pool_planes, plane_segments=self._segments,
                plane_z_mm=np.asarray(z_mid, np.float64),
            )  # fmt: skip
            self._groups = None
            plane_windows(self._shape[0], self._pool_planes, self._segments, z_mid)
        if self.kind == "listmode":
            self._set_up_listmode(data, randoms, frame_start_s, frame_duration_s)
        else:
            self._set_up_sinogram(data, randoms)

    # ------------------------------------------------------------------ set-up
    def _mu_map(self) -> Any:
        model = self.model
        mu = getattr(model, "_mu", None)
        if mu is None:
            raise InputError(
                "scatter estimation needs the model's mu-map: build the model with mu_map="
            )
        return mu

    def _energy(
        self,
        scanner: PetScanner | None,
        window: tuple[float, float] | None,
        resolution: float | None,
    ) -> tuple[tuple[float, float], float]:
        from recon.pet.scanner import (
            DEFAULT_ENERGY_RESOLUTION,
            DEFAULT_ENERGY_WINDOW_KEV,
            _energy_resolution,
            _energy_window,
        )

        try:
            given_window = _energy_window(window)
            given_resolution = _energy_resolution(resolution)
        except GeometryError as exc:
            raise InputError(str(exc)) from None
        if given_window is None and scanner is not None:
            given_window = scanner.energy_window_kev
        if given_resolution is None and scanner is not None:
            given_resolution = scanner.energy_resolution
        assumed = given_window is None or given_resolution is None
        lower, upper = DEFAULT_ENERGY_WINDOW_KEV if given_window is None else given_window
        res = DEFAULT_ENERGY_RESOLUTION if given_resolution is None else given_resolution
        if assumed:
            note = (
                f"energy window or resolution unknown: assumed {lower:g}-{upper:g} keV and "
                f"{res:.0%} FWHM at 511 keV (set them on the PetScanner)"
            )
            log.warning("recon: scatter estimation: %s", note)
            self._notes.append(note)
        return (lower, upper), res

    def _base_shape(self) -> tuple[int, int, int]:
        model = self.model
        if isinstance(model, PetLorSinogramModel):
            return tuple(model.data_shape)  # type: ignore[return-value]
        return tuple(model.layout.shape)

    def _view_ends(self, views: np.ndarray) -> tuple[Any, Any]:
        """Ends of the sinogram's lines of ``views``, each ``(plane, len(views), radial, 3)``."""
        model = self.model
        xp = self.xp
        n_planes, _, n_radial = self._shape
        if isinstance(model, PetLorSinogramModel):
            xs, xe = model._lors.endpoints(self.backend.asarray(views, np.int64), xp)
            shape = (n_planes, len(views), n_radial, 3)
            return xs.reshape(shape), xe.reshape(shape)
        return model.layout.endpoints(self.backend.asarray(views, np.int64), xp=xp)

    def _per_view(self, function: Any) -> Any:
        """``function(xstart, xend)`` over chunks of views, joined along the view axis."""
        n_planes, n_views, n_radial = self._shape
        step = max(1, _CHUNK_LORS // max(n_planes * n_radial, 1))
        parts = [
            function(*self._view_ends(np.arange(first, min(first + step, n_views))))
            for first in range(0, n_views, step)
        ]
        return parts[0] if len(parts) == 1 else self.xp.concatenate(parts, axis=1)

    def _plane_groups(self) -> np.ndarray:
        n_planes = self._shape[0]
        if self.fit == "global":
            return np.zeros(n_planes, np.int64)
        if self.fit == "plane":
            return np.arange(n_planes)
        return self._segments

    def _plane_segments(self) -> np.ndarray:
        """The segment of every plane: its ring difference, or for explicit LORs the axial
        difference of its ends (to 0.1 mm)."""
        model = self.model
        if isinstance(model, PetLorSinogramModel):
            xs0, xe0 = self._view0
            dz = xe0[:, 0, 0, 2] - xs0[:, 0, 0, 2]
            return np.unique(np.round(np.asarray(dz, np.float64), 1), return_inverse=True)[1]
        return np.asarray(model.layout.plane_ring_difference, np.int64)

    def _norm_factor(self) -> Any:
        """Multiplicative factor of every sinogram bin less attenuation, over the frame."""
        model = self.model
        xp = self.xp
        if isinstance(model, PetLorSinogramModel):
            factor = model.multiplicative
        elif isinstance(model, PetSinogramModel):
            factor = model._subset_geometry(np.arange(model.layout.shape[1]))[2]
        else:
            ca, cb = model._layout_crystals(np.arange(model.layout.shape[1]))
            factor = xp.full(model.layout.shape, np.float32(self._time_factor), np.float32)
            if ca is not None:
                factor = factor * (model._crystal_eff[ca] * model._crystal_eff[cb])
            return factor.astype(np.float32)
        if getattr(model, "_mu", None) is None:
            return factor
        return (factor * xp.exp(self._lines)).astype(np.float32)

    def _set_up_sinogram(self, data: Any, randoms: Any) -> None:
        model = self.model
        y = model.validate_data(data, "counts")
        self._counts = y
        base_shape = self._shape
        self._prompts = np.asarray(self.backend.to_host(y), np.float64)
        if self._prompts.ndim == 4:
            self._prompts = self._prompts.sum(axis=-1)
        self._randoms_sino = None
        self._randoms_data = None
        if randoms is not None:
            r = np.asarray(self.backend.to_host(randoms), np.float64)
            if r.shape == base_shape:
                self._randoms_sino = r
                spread = model._spread_tof(r) if isinstance(model, PetSinogramModel) else r
                self._randoms_data = model.validate_data(spread, "randoms")
            elif r.shape == tuple(model.data_shape):
                self._randoms_sino = r.sum(axis=-1) if r.ndim == 4 else r
                self._randoms_data = model.validate_data(r, "randoms")
            else:
                raise InputError(
                    f"randoms have shape {r.shape}, expected {base_shape} or {model.data_shape}"
                )
        self._norm = self._norm_factor()

    def _set_up_listmode(
        self, events: Any, randoms: Any, start_s: float | None, duration_s: float | None
    ) -> None:
        from recon.pet.listmode_frame import _frame_window

        model = self.model
        if not isinstance(events, ListmodeEvents):
            raise InputError("listmode scatter estimation needs the frame's ListmodeEvents")
        events.validate(model.scanner)
        self.frame_start_s, self.frame_duration_s = _frame_window(events, start_s, duration_s)
        self._time_factor = model._time_factor(self.frame_start_s, self.frame_duration_s)
        layout = model.layout
        prompts = events.prompts()
        self._prompts = np.asarray(histogram(prompts, layout, tof=False)[0], np.float64)
        self._randoms_sino = None
        self._randoms_rate = None
        if randoms is not None:
            r = np.asarray(self.backend.to_host(randoms), np.float64)
            if r.shape != tuple(layout.shape):
                raise InputError(
                    f"listmode randoms must be a sinogram of shape {layout.shape}, got {r.shape}"
                )
            self._randoms_sino = r
            self._randoms_rate = model.additive_rate(events, r, self.frame_duration_s)
        ca = np.asarray(prompts.crystal_a, np.int64)
        cb = np.asarray(prompts.crystal_b, np.int64)
        plane, _, _, _, valid = layout.bins_of(ca, cb)
        self._event_plane = np.where(valid, plane, 0)
        self._event_valid = valid
        positions = model.scanner.crystal_positions_mm
        self._event_xs = self.backend.asarray(positions[ca])
        self._event_xe = self.backend.asarray(positions[cb])
        self._event_tof = None if model.tof is None else np.asarray(prompts.tof_bin, np.int64)
        eff = np.ones(len(ca), np.float64)
        if model._crystal_eff is not None:
            crystal_eff = np.asarray(self.backend.to_host(model._crystal_eff), np.float64)
            eff = crystal_eff[ca] * crystal_eff[cb]
        self._event_eff = eff
        self._events = events
        self._norm = self._norm_factor()

    # ------------------------------------------------------------------ estimates
    def initial_additive(self) -> Any:
        """The additive term before any scatter estimate: the randoms (None without them), in
        the model's form (data-shaped counts, or the per-prompt rate of listmode data)."""
        if self.kind == "listmode":
            return self._randoms_rate
        return self._randoms_data

    def scatter_sinogram(self, image: Any) -> tuple[Any, TailFit]:
        """Scaled single scatter of ``image`` in expected counts on the sinogram bins.

        Parameters
        ----------
        image : array of grid.shape or Image
            Activity estimate in the model's units.

        Returns
        -------
        scatter : device array (plane, view, radial[, tof])
            Expected scattered counts over the frame (TOF-resolved for TOF sinogram models).
        fit : TailFit
            The tail fit.
        """
        coarse = self._simulate(image)
        if self.kind == "listmode":
            coarse = coarse.nontof()
        shape = self._per_view(coarse.at)
        norm = self._norm if shape.ndim == 3 else self._norm[..., None]
        shape = shape * norm
        fit = self._fit(shape)
        scales = self.backend.asarray(fit.scales.astype(np.float32))
        index = (slice(None),) + (None,) * (shape.ndim - 1)
        return (shape * scales[index]).astype(np.float32), fit

    def __call__(self, image: Any) -> Any:
        """The additive term (randoms + scaled scatter) for the activity estimate ``image``.

        Parameters
        ----------
        image : array of grid.shape or Image
            Activity estimate in the model's units.

        Returns
        -------
        device array
            Sinogram models: expected additive counts of the data shape. Listmode: the additive
            rate in counts/s of every prompt (``additive_rate`` of :func:`recon.lm_osem`).
        """
        if self.kind == "listmode":
            return self._listmode_additive(image)
        scatter, fit = self.scatter_sinogram(image)
        self.last_scatter = scatter
        total = float(scatter.sum())
        self._report(fit, total)
        if self._randoms_data is None:
            return scatter
        return (scatter + self._randoms_data).astype(np.float32)

    def _simulate(self, image: Any) -> Any:
        from recon.image import Image

        array = image.data if isinstance(image, Image) else image
        return self.simulation.simulate(array)

    def _fit(self, shape: Any) -> TailFit:
        host = np.asarray(self.backend.to_host(shape), np.float64)
        if host.ndim == 4:
            host = host.sum(axis=-1)
        return fit_tail_scale(
            self._prompts, host, self._randoms_sino, self.tails, self._groups, **self._fit_options
        )

    def _report(self, fit: TailFit, scatter_total: float) -> None:
        net = float(self._prompts.sum())
        if self._randoms_sino is not None:
            net -= float(self._randoms_sino.sum())
        result = ScatterRound(fit, scatter_total, net, [*self._notes, *fit.notes])
        for note in fit.notes:
            log.warning("recon: scatter estimation: %s", note)
        self.rounds.append(result)

    def _listmode_additive(self, image: Any) -> Any:
        xp = self.xp
        coarse = self._simulate(image)
        sino = self._per_view(coarse.nontof().at) * self._norm
        fit = self._fit(sino)
        self.last_scatter = (sino * xp.asarray(fit.scales[:, None, None])).astype(np.float32)
        self._report(fit, float((sino * xp.asarray(fit.scales[:, None, None])).sum()))
        tof_bin = None if self._event_tof is None else xp.asarray(self._event_tof)
        per_event = coarse.at(self._event_xs, self._event_xe, tof_bin)
        factor = (
            fit.scales[self._event_plane]
            * self._event_eff
            * self._event_valid
            * (self._time_factor / self.frame_duration_s)
        )
        rate = per_event * xp.asarray(factor.astype(np.float32))
        if self._randoms_rate is not None:
            rate = rate + self._randoms_rate
        return rate.astype(np.float32)
