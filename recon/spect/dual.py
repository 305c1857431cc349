"""Simultaneous multi-isotope SPECT (e.g. Tc-99m and In-111): one activity image per isotope,
reconstructed jointly from every photopeak window of the acquisition.

Window ``w`` holds the photons of each isotope ``i`` with lines in it (its sub-model ``M_wi``:
μ and collimator response at the line energy, the isotope's decay and calibration) and the
*down-scatter* of the isotopes whose photopeaks lie above it: photons of a higher-energy line
that lost energy by Compton scattering in the patient (or the collimator and crystal) and land in
the lower window. The expected counts are

``ȳ[w] = Σ_i M_wi x_i + Σ_j f_wj · K_wj x_j + a[w]``,

where ``K_wj`` is isotope ``j``'s activity projected through μ at its own main line and a
broadened response (the collimator at window ``w``'s energy, widened by a Gaussian scatter kernel
of FWHM ``downscatter_fwhm_mm``: scattered photons come from a region around the source), and
``f_wj`` the down-scatter fraction: counts of ``j`` in window ``w`` per count of the same
activity in ``j``'s main photopeak window (without attenuation). This is the model-based approach
of the dual-isotope literature (de Jong et al., IEEE Trans. Nucl. Sci. 49 (2002) 116, for
Tc-99m/I-123; Du and Frey, Phys. Med. Biol. 54 (2009) 5741 for Tc-99m/Tl-201) reduced to one
spatially-invariant kernel per window: ``f`` and the kernel width are measured on the camera with a
phantom filled with the higher-energy isotope alone (no default: the figures depend on windows,
collimator and camera). ``a[w]`` may carry a window-based estimate instead, e.g. the
triple-energy-window estimate of each photopeak, which includes the down-scatter under it when
the scatter windows adjoin the photopeak (Ichihara et al., J. Nucl. Med. 34 (1993) 2216).

Limits: one kernel per window (the real down-scatter distribution varies with depth and with the
attenuating medium); the down-scatter is attenuated as primary photons of the emitting line are;
the images of all isotopes share the grid.

The images are stacked along z (isotope by isotope) into one image on :attr:`MultiIsotopeModel.grid`
so that the model is a :class:`recon.SystemModel`: MLEM and OSEM reconstruct all the isotopes at
once, unchanged. The model says how many images it stacks
(:attr:`MultiIsotopeModel.image_blocks`), so that a prior bound to it (BSREM, OSL-MAP) leaves out
the neighbours across a seam: the last slice of one isotope is not smoothed towards the first
slice of the next. A post-filter is applied per isotope after :meth:`MultiIsotopeModel.split`,
which cuts a reconstruction into one :class:`recon.Image` per isotope (with its units, decay
reference and isotope).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from recon.backend import Backend, resolve_backend
from recon.errors import InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.physics.attenuation import mu_at_energy
from recon.physics.isotopes import get_isotope
from recon.physics.windows import WindowAssignment
from recon.spect.collimator import Collimator
from recon.spect.geometry import SpectGeometry
from recon.spect.model import SpectModel, shared_attenuation_cache_bytes
from recon.spect.multi import window_sensitivities
from recon.system_model import ModelBase, ViewSubsets

__all__ = ["MultiIsotopeModel", "multi_isotope_model"]


class MultiIsotopeModel(ModelBase):
    """Several isotopes' images (stacked along z) seen in several windows (module docstring).

    Parameters
    ----------
    grid : ImageGrid
        The grid of one isotope's image.
    isotopes : sequence of str
        The isotopes, in the order of the image blocks.
    windows : sequence of str
        The windows, in the order of the data's leading axis.
    terms : sequence of (window index, isotope index, SpectModel, scale)
        Each sub-model ``scale · M`` adds isotope ``i``'s contribution to window ``w``.
    additive : array of shape (window, view, v, u), optional
        Additive expected counts per bin.

    Attributes
    ----------
    grid : ImageGrid
        ``(n_isotopes · nz, ny, nx)``: the isotopes' images one above the other.
    isotope_grid : ImageGrid
        The grid of one isotope's image.
    image_blocks : int
        The number of isotopes: the stacked images a prior keeps apart.
    """

    def __init__(
        self,
        grid: ImageGrid,
        isotopes: Sequence[str],
        windows: Sequence[str],
        terms: Sequence[tuple[int, int, SpectModel, float]],
        additive: Any = None,
    ) -> None:
        if not terms:
            raise InputError("a multi-isotope model needs at least one window term")
        self.isotopes = tuple(isotopes)
        self.windows = tuple(windows)
        self.terms = [(int(w), int(i), m, float(s)) for w, i, m, s in terms]
        first = self.terms[0][2]
        for w, i, m, s in self.terms:
            if not (0 <= w < len(self.windows) and 0 <= i < len(self.isotopes)):
                raise InputError(f"term ({w}, {i}) names no window or isotope of the model")
            if m.grid != grid or tuple(m.data_shape) != tuple(first.data_shape):
                raise InputError("every sub-model must be on the isotope grid with the same views")
            if m.units != first.units:
                raise InputError(
                    f"sub-models give images in {m.units} and {first.units}: calibrate every "
                    "isotope's windows or none"
                )
            if not (math.isfinite(s) and s > 0):
                raise InputError(f"term scales must be positive, got {s}")
        for i, name in enumerate(self.isotopes):
            if not any(t[1] == i for t in self.terms):
                raise InputError(f"no window sees {name}: it cannot be reconstructed")
        self.isotope_grid = grid
        nz, ny, nx = grid.shape
        stacked = ImageGrid(
            (len(self.isotopes) * nz, ny, nx), grid.voxel_size_mm, origin=grid.origin
        )
        self.grid = stacked
        self.image_blocks = len(self.isotopes)  # a prior leaves out neighbours across the seams
        self.backend = first.backend
        self.xp = first.xp
        self._sensitivity_cache: dict[Any, Any] = {}
        self._index_cache: dict[Any, Any] = {}
        self.isotope = None
        self.reference_time_s = first.reference_time_s
        self.view_subsets = ViewSubsets(first.geometry.n_views, view_axis=1)
        self._projection_shape = tuple(first.data_shape)
        self.additive = None if additive is None else self.validate_data(additive, "additive")

    # ------------------------------------------------------------------ shapes, units
    @property
    def data_shape(self) -> tuple[int, ...]:
        """``(window, view, v, u)``."""
        return (len(self.windows), *self._projection_shape)

    @property
    def units(self) -> str:
        """The sub-models' image units."""
        return self.terms[0][2].units

    def _block(self, image: Any, i: int) -> Any:
        nz = self.isotope_grid.shape[0]
        return image[i * nz : (i + 1) * nz]

    # ------------------------------------------------------------------ system-model interface
    def subsets(self, n_subsets: int) -> list[Any]:
        """Interleaved view subsets, the same views in every window."""
        return self.view_subsets.make(n_subsets)

    def take(self, data: Any, subset: Any) -> Any:
        """``data[:, views of subset]`` (None: all)."""
        if subset is None:
            return data
        return data[:, self._device_indices(self.view_subsets.views(subset))]

    def forward(self, image: Any, subset: Any = None) -> Any:
        """``Σ_terms scale · M x_i`` into each window, on the views of ``subset``."""
        x = self.validate_image(image)
        views = self.view_subsets.views(subset)
        out = self.xp.zeros((len(self.windows), views.size, *self._projection_shape[1:]),
                            np.float32)  # fmt: skip
        for w, i, m, s in self.terms:
            block = self.xp.ascontiguousarray(self._block(x, i))
            out[w] += m.forward(block, views) * np.float32(s)
        return out

    def back(self, data: Any, subset: Any = None) -> Any:
        """Adjoint of :meth:`forward`."""
        views = self.view_subsets.views(subset)
        y = self.backend.asarray(data)
        expected = (len(self.windows), views.size, *self._projection_shape[1:])
        if tuple(y.shape) != expected:
            raise InputError(
                f"data has shape {tuple(y.shape)}, expected {expected} (window, view, v, u)"
            )
        image = self.xp.zeros(self.grid.shape, np.float32)
        for w, i, m, s in self.terms:
            self._block(image, i)[...] += m.back(y[w], views) * np.float32(s)
        return image

    def sensitivity(self, subset: Any = None) -> Any:
        """``Σ_terms scale · Mᵀ 1`` per isotope block, kept on the device."""
        views = self.view_subsets.views(subset)
        key = views.tobytes()
        if key not in self._sensitivity_cache:
            image = self.xp.zeros(self.grid.shape, np.float32)
            for _, i, m, s in self.terms:
                self._block(image, i)[...] += m.sensitivity(views) * np.float32(s)
            self._sensitivity_cache[key] = image
        return self._sensitivity_cache[key]

    # ------------------------------------------------------------------ images per isotope
    def split(self, image: Image | Any) -> dict[str, Image]:
        """One :class:`recon.Image` per isotope from a reconstruction on :attr:`grid`.

        Each carries its isotope, its units and its decay reference time; ``info`` (algorithm,
        iterations…) is copied from ``image`` when it is an Image.
        """
        data = np.asarray(getattr(image, "data", image), dtype=np.float32)
        if data.shape != self.grid.shape:
            raise InputError(f"image has shape {data.shape}, expected {self.grid.shape}")
        info = dict(getattr(image, "info", {}) or {})
        out = {}
        for i, name in enumerate(self.isotopes):
            out[name] = Image(
                data=np.ascontiguousarray(self._block(data, i)), grid=self.isotope_grid,
                units=self.units, isotope=name, reference_time_s=self.reference_time_s,
                info=dict(info),
            )  # fmt: skip
        return out


def multi_isotope_model(
    geometry: SpectGeometry,
    grid: ImageGrid,
    assignment: WindowAssignment,
    mu_map: Any = None,
    mu_energy_kev: float | None = None,
    collimator: str | Collimator | None = None,
    reference_time_s: float | None = None,
    sensitivity_cps_per_mbq: Mapping[str, float | Sequence[float]] | None = None,
    downscatter: Mapping[tuple[str, str], float] | None = None,
    downscatter_fwhm_mm: float | None = None,
    additive: Any = None,
    device: str | Backend | None = None,
    attenuation_cache_bytes: int | None = None,
) -> MultiIsotopeModel:
    """A :class:`MultiIsotopeModel` from the window assignment of a multi-isotope acquisition.

    Every photopeak window of :attr:`WindowAssignment.peaks` becomes a term of its isotope (μ
    converted to the energy of its lines, collimator at that energy, the isotope's decay and the
    window's calibration); each ``downscatter[(window, isotope)] = f`` adds the down-scatter of
    ``isotope`` into ``window`` (module docstring).

    Parameters
    ----------
    geometry, grid : SpectGeometry, ImageGrid
        Views and the grid of one isotope's image.
    assignment : WindowAssignment
        From :func:`recon.physics.windows.assign_windows` with the study's isotopes.
    mu_map : array of grid.shape, optional
        Attenuation map at ``mu_energy_kev`` (1/mm).
    mu_energy_kev : float, optional
        Its energy; default the first isotope's main line.
    collimator : str or Collimator, optional
        Preset name or collimator (put at each window's energy); None: no response.
    reference_time_s : float, optional
        Activity reference time (s from acquisition start) of every isotope.
    sensitivity_cps_per_mbq : mapping, optional
        ``{isotope: sensitivity}`` per isotope: one value (over its windows, shared by yield) or
        one per photopeak window (:func:`recon.spect.window_sensitivities`). Every isotope or none.
    downscatter : mapping, optional
        ``{(window name, isotope): fraction}``: down-scatter of ``isotope`` into ``window``, per
        count of the same activity in the isotope's own main-line window.
    downscatter_fwhm_mm : float, optional
        FWHM of the scatter kernel (mm); required with ``downscatter``.
    additive : array of shape (window, view, v, u), optional
        Additive expected counts (window-based scatter estimates).
    device : {"auto", "cpu", "gpu"} or Backend, optional
        Where to compute.
    attenuation_cache_bytes : int, optional
        Memory for the attenuation factors of all terms together, shared equally among the
        photopeak windows (a down-scatter term uses its isotope's main-line factors); default
        one model's default budget.

    Returns
    -------
    MultiIsotopeModel
        Windows in the order of :attr:`WindowAssignment.window_names`; ``sensitivity_modes``
        says per isotope how its calibration was read.

    Raises
    ------
    InputError
        Sensitivities for some isotopes only or for an isotope not in the study, a down-scatter
        entry naming an unknown window or isotope or a fraction that is not positive, a missing
        ``downscatter_fwhm_mm``.
    """
    isotopes = list(assignment.isotopes)
    windows = list(assignment.window_names)
    if mu_map is not None and mu_energy_kev is None:
        mu_energy_kev = get_isotope(isotopes[0]).main_photon.energy_kev
    base = Collimator.preset(collimator) if isinstance(collimator, str) else collimator
    sensitivities = dict(sensitivity_cps_per_mbq or {})
    unknown = [k for k in sensitivities if get_isotope(k).name not in isotopes]
    if unknown:
        raise InputError(f"sensitivity given for {unknown[0]}, which is not one of {isotopes}")
    sensitivities = {get_isotope(k).name: v for k, v in sensitivities.items()}
    if sensitivities and set(sensitivities) != set(isotopes):
        raise InputError(
            f"give the sensitivity of every isotope ({', '.join(isotopes)}) or of none"
        )
    backend = resolve_backend(device)
    # One cache per photopeak term; a down-scatter term shares its isotope's main-line term's.
    n_caches = sum(len(assignment.for_isotope(iso)) for iso in isotopes)
    cache_share = shared_attenuation_cache_bytes(attenuation_cache_bytes, backend, n_caches)
    mu_cache: dict[float, Any] = {}

    def mu_at(energy: float) -> Any:
        if mu_map is None:
            return None
        if energy not in mu_cache:
            assert mu_energy_kev is not None
            values = np.asarray(getattr(mu_map, "data", mu_map))
            mu_cache[energy] = mu_at_energy(values, mu_energy_kev, energy)
        return mu_cache[energy]

    terms: list[tuple[int, int, SpectModel, float]] = []
    modes: dict[str, str] = {}
    for i, iso in enumerate(isotopes):
        peaks = assignment.for_isotope(iso)
        values, modes[iso] = window_sensitivities(peaks, sensitivities.get(iso))
        total_yield = sum(p.yield_per_decay for p in peaks)
        for peak, value in zip(peaks, values, strict=True):
            model = SpectModel(
                geometry, grid, mu_map=mu_at(peak.energy_kev),
                collimator=None if base is None else base.at_energy(peak.energy_kev),
                isotope=iso, reference_time_s=reference_time_s, sensitivity_cps_per_mbq=value,
                device=backend, attenuation_cache_bytes=cache_share,
            )  # fmt: skip
            scale = peak.yield_per_decay / total_yield if value is None else 1.0
            terms.append((windows.index(peak.name), i, model, scale))
    for (window, iso_name), fraction in (downscatter or {}).items():
        iso = get_isotope(iso_name).name
        if window not in windows or iso not in isotopes:
            raise InputError(
                f"downscatter ({window!r}, {iso_name!r}): the windows are {windows} and the "
                f"isotopes {isotopes}"
            )
        if not (math.isfinite(float(fraction)) and float(fraction) > 0):
            raise InputError(f"downscatter fraction must be positive, got {fraction!r}")
        if downscatter_fwhm_mm is None or not downscatter_fwhm_mm > 0:
            raise InputError("downscatter needs downscatter_fwhm_mm, the scatter kernel's FWHM")
        i = isotopes.index(iso)
        # The isotope's own main-line window: its calibration and scale carry over.
        main = max(assignment.for_isotope(iso), key=lambda p: p.yield_per_decay)
        own = next(t for t in terms if t[1] == i and windows[t[0]] == main.name)
        energy = next(p for p in assignment.peaks if p.name == window).window.center_kev
        response = None
        if base is not None:
            at = base.at_energy(energy)
            response = replace(
                at, penetration="off",
                intrinsic_fwhm_mm=math.hypot(at.intrinsic_fwhm_mm, float(downscatter_fwhm_mm)),
            )  # fmt: skip
        model = SpectModel(
            geometry, grid, mu_map=mu_at(main.energy_kev), collimator=response, isotope=iso,
            reference_time_s=reference_time_s,
            sensitivity_cps_per_mbq=own[2].sensitivity_cps_per_mbq, device=backend,
            attenuation_from=own[2],  # the same μ (its main line's) and views
        )  # fmt: skip
        terms.append((windows.index(window), i, model, own[3] * float(fraction)))
    result = MultiIsotopeModel(grid, isotopes, windows, terms, additive)
    result.sensitivity_modes = modes  # type: ignore[attr-defined]
    return result
