"""PET system models ``ȳ = m ⊙ (P x) + a`` for span-1 sinograms and for listmode events.

Both share the LOR projector (Joseph line integrals, optional TOF) and the same corrections:

- attenuation: ``exp(−∫μ)`` along each LOR from a 511 keV mu-map on the image grid;
- normalisation: a :class:`~recon.pet.normalization.Normalization` (component factors from a
  calibration scan or a PETSIRD file, looked up per crystal pair, so a listmode event gets the
  factor of its sinogram bin), per-crystal efficiencies (the LOR factor is their product) or a
  full per-bin array (sinograms);
- time: frame duration, decay during the frame relative to the reference time (sinograms) or per
  event time (listmode), positron branching ratio, and a calibration factor to Bq/mL;
- resolution (optional): an image-space Gaussian ``G`` (:class:`recon.ImageResolution`), so that
  ``P`` becomes ``P·G``, the back projection ``Gᵀ Pᵀ`` and the sensitivity ``Gᵀ Pᵀ m``.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from recon._memory import check_memory
from recon._validation import as_mu_map
from recon.backend import Backend
from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.image import Image
from recon.pet.listmode import ListmodeEvents
from recon.pet.normalization import Normalization
from recon.pet.projector import LorProjector
from recon.pet.resolution import ImageResolution, add_resolution_info, resolution_operator
from recon.pet.scanner import PetScanner
from recon.pet.sensitivity_cache import Fingerprint, load_or_compute
from recon.pet.separable import AxialMirror, SeparableProjector, axial_mirror
from recon.pet.sinogram import SinogramLayout
from recon.progress import Progress
from recon.system_model import ViewModel, ViewSubsets, checked_backend

if TYPE_CHECKING:
    from recon.pet.listmode_frame import ListmodeFrame

__all__ = ["PetListmodeModel", "PetSinogramModel"]

log = logging.getLogger("recon")


def frame_time_factor(
    start_s: float,
    duration_s: float,
    isotope: str | None,
    reference_time_s: float,
    calibration: float | None,
) -> float:
    """Duration × mean fraction of reference-time activity in the frame × branching × calib.

    Without an isotope there is no decay and no branching ratio; without a calibration the
    factor is in seconds (images in counts/s per unit line integral).
    """
    if not duration_s > 0:
        raise InputError(f"frame duration must be positive, got {duration_s} s")
    factor = float(duration_s)
    if isotope is not None:
        from recon.physics.decay import mean_activity_fraction
        from recon.physics.isotopes import get_isotope

        iso = get_isotope(isotope)
        fraction = mean_activity_fraction(iso.half_life_s, start_s, duration_s, reference_time_s)
        factor *= float(fraction)
        factor *= iso.positron_fraction
    if calibration is not None:
        factor *= calibration
    return factor


class _PetCorrections:
    """What sinogram and listmode models share: projector, mu-map, normalisation, time factors
    and the resolution model.

    ``grid``, ``backend`` and ``xp`` are set before :meth:`_set_up_corrections` is called.
    """

    grid: ImageGrid
    backend: Backend
    xp: Any
    calibration: float | None

    @property
    def units(self) -> str:
        """``"Bq/mL"`` with a calibration, else counts/s (uncalibrated)."""
        return "Bq/mL" if self.calibration is not None else "counts/s (uncalibrated)"

    def _set_up_corrections(
        self,
        scanner: PetScanner,
        mu_map: Any,
        normalization: Any,
        isotope: str | None,
        reference_time_s: float,
        calibration: float | None,
        use_tof: bool | None,
        max_ring_difference: int | None,
        chunk_lors: int,
        resolution: ImageResolution | None,
        n_radial: int | None = None,
    ) -> None:
        if not isinstance(scanner, PetScanner):
            raise GeometryError("scanner must be a PetScanner (e.g. PetScanner.preset('small'))")
        grid = self.grid
        self.scanner = scanner
        if use_tof is None:
            use_tof = scanner.tof is not None
        if use_tof and scanner.tof is None:
            raise GeometryError(f"scanner {scanner.name!r} has no TOF; use use_tof=False")
        self.tof = scanner.tof if use_tof else None
        self.layout = SinogramLayout(
            scanner, max_ring_difference=max_ring_difference, n_radial=n_radial
        )
        # Both models make sinogram-sized arrays (randoms estimates, sensitivity factors).
        check_memory(
            4.0 * self.layout.n_bins,
            f"the sinogram of scanner {scanner.name!r} ({self.layout.n_bins:,} lines of response)",
            "limit max_ring_difference, or check the scanner description",
        )
        self.projector = LorProjector(
            grid, tof=self.tof, device=self.backend, chunk_lors=chunk_lors
        )
        self.nontof_projector = (
            self.projector
            if self.tof is None
            else LorProjector(grid, tof=None, device=self.backend, chunk_lors=chunk_lors)
        )
        self.isotope = isotope
        self.reference_time_s = float(reference_time_s)
        self.calibration = calibration
        if calibration is not None and not calibration > 0:
            raise InputError("calibration must be a positive factor (counts per Bq·s per mL)")
        self._positions = self.backend.asarray(scanner.crystal_positions_mm)
        self._mu = (
            None
            if mu_map is None
            else as_mu_map(mu_map, grid, self.backend, max_per_mm=0.5, water="0.0096/mm at 511 keV")
        )
        self._crystal_eff = None
        self._bin_norm = None
        self._normalization: Normalization | None = None
        if normalization is not None:
            self._set_normalization(normalization)
        self.resolution = resolution
        self._blur = resolution_operator(resolution, grid, self.xp)
        if resolution is not None:
            log.info("PET model with resolution modelling: %s", resolution.describe())

    # ------------------------------------------------------------------ resolution
    def _blurred(self, image: Any) -> Any:
        """``G x`` (``x`` itself without a resolution model)."""
        return image if self._blur is None else self._blur.apply(image)

    def _blurred_adjoint(self, image: Any) -> Any:
        """``Gᵀ y`` (``y`` itself without a resolution model)."""
        return image if self._blur is None else self._blur.adjoint(image)

    # ------------------------------------------------------------------ validation
    def _set_normalization(self, normalization: Any) -> None:
        if isinstance(normalization, Normalization):
            normalization.check_layout(self.layout)
            self._normalization = normalization
            return
        n = np.asarray(self.backend.to_host(normalization), dtype=np.float64)
        if not np.all(np.isfinite(n)) or np.any(n < 0):
            raise InputError("normalization must be finite and non-negative")
        if n.shape == (self.scanner.n_crystals,):
            self._crystal_eff = self.backend.asarray(n)
        elif n.shape == self.layout.shape:
            self._bin_norm = self.backend.asarray(n)
        else:
            raise InputError(
                f"normalization must be per-crystal efficiencies ({self.scanner.n_crystals},) or a "
                f"per-bin array {self.layout.shape}, got shape {n.shape}"
            )

    # ------------------------------------------------------------------ factors
    def _layout_crystals(self, views: np.ndarray) -> tuple[Any, Any]:
        """Crystal ids of every bin of ``views`` on the device, or (None, None) when no
        per-crystal normalisation needs them."""
        if self._crystal_eff is None and self._normalization is None:
            return None, None
        p, v, r = np.meshgrid(
            np.arange(self.layout.shape[0]), views, np.arange(self.layout.shape[2]), indexing="ij"
        )
        ca, cb = self.layout.crystals_of(p, v, r)
        return self.backend.asarray(ca, np.int64), self.backend.asarray(cb, np.int64)

    def _lor_factors(self, crystal_a: Any, crystal_b: Any, xstart: Any, xend: Any) -> Any:
        """Attenuation × crystal-efficiency factor of each LOR (no time factors)."""
        xp = self.xp
        factor = self._efficiency_factors(crystal_a, crystal_b, xstart.shape[:-1])
        if self._mu is not None:
            shape = factor.shape
            line = self.nontof_projector.forward(
                self._mu, xstart.reshape(-1, 3), xend.reshape(-1, 3)
            )
            factor *= xp.exp(-line).reshape(shape).astype(np.float32)
        return factor

    def _efficiency_factors(self, crystal_a: Any, crystal_b: Any, shape: tuple[int, ...]) -> Any:
        """The detection-efficiency (normalisation) factor of each LOR, of ``shape``."""
        factor = self.xp.ones(shape, dtype=np.float32)
        if self._crystal_eff is not None:
            factor *= self._crystal_eff[crystal_a] * self._crystal_eff[crystal_b]
        if self._normalization is not None:
            factor *= self._normalization.lor_factors(crystal_a, crystal_b, xp=self.xp)
        return factor

    def _time_factor(self, start_s: float, duration_s: float) -> float:
        return frame_time_factor(
            start_s, duration_s, self.isotope, self.reference_time_s, self.calibration
        )


class PetSinogramModel(_PetCorrections, ViewModel):
    r"""Span-1 sinogram model ``ȳ = m ⊙ (P x) + a`` with data ``(plane, view, radial[, tof])``.

    Parameters
    ----------
    scanner : PetScanner
    grid : ImageGrid
    mu_map : array of grid.shape, optional
        Linear attenuation at 511 keV in 1/mm.
    normalization : Normalization or array, optional
        A :class:`~recon.pet.normalization.Normalization`, per-crystal efficiencies
        ``(n_crystals,)`` or a per-bin array ``(plane, view, radial)``.
    randoms, scatter : array, optional
        Expected additive counts per bin, non-TOF ``(plane, view, radial)`` (spread evenly over
        the TOF bins, as randoms are uniform in time difference) or TOF-shaped.
    isotope : str, optional
        Enables decay correction within the frame and the positron branching ratio.
    frame_start_s, frame_duration_s : float
        Frame timing (s from scan start).
    reference_time_s : float
        Time activities refer to (default: scan start).
    calibration : float, optional
        Scanner calibration, counts per (Bq/mL · s) per unit line integral; the image is then in
        Bq/mL.
    use_tof : bool, optional
        Default: TOF when the scanner has it.
    max_ring_difference : int, optional
        Largest ring difference in the sinogram (default: all).
    device : {"auto", "cpu", "gpu"}, optional
    chunk_lors : int
        LORs per projector launch.
    resolution : ImageResolution, optional
        Image-space resolution model ``G`` (``P → P·G``), e.g. ``scanner.resolution``; default:
        none.
    n_radial : int, optional
        Radial bins of the sinogram layout (odd; default ``2·(crystals_per_ring // 4) + 1``,
        lines up to ``R·sin(45°)`` from the axis, 0.71 of the crystal radius). Scatter tail
        fitting needs lines that miss the body: raise it (up to ``crystals_per_ring − 1``) for
        a body that fills that extent. The image grid must cover the lines' reach as well.
    """

    def __init__(
        self,
        scanner: PetScanner,
        grid: ImageGrid,
        mu_map: Any = None,
        normalization: Any = None,
        randoms: Any = None,
        scatter: Any = None,
        isotope: str | None = None,
        frame_start_s: float = 0.0,
        frame_duration_s: float = 1.0,
        reference_time_s: float = 0.0,
        calibration: float | None = None,
        use_tof: bool | None = None,
        max_ring_difference: int | None = None,
        device: str | Backend | None = None,
        chunk_lors: int = 2**20,
        resolution: ImageResolution | None = None,
        n_radial: int | None = None,
    ) -> None:
        ViewModel.__init__(self, grid, device, "a PET model")
        self._set_up_corrections(
            scanner, mu_map, normalization, isotope, reference_time_s, calibration, use_tof,
            max_ring_difference, chunk_lors, resolution, n_radial,
        )  # fmt: skip
        self.view_subsets = ViewSubsets(self.layout.shape[1], view_axis=1)
        # OSEM holds the counts, the additive term, the expectation and the ratio.
        check_memory(
            4.0 * 4 * math.prod(self.data_shape),
            f"reconstructing sinograms of shape {self.data_shape}",
            "limit max_ring_difference or reconstruct without TOF",
        )
        self.frame_start_s = float(frame_start_s)
        self.frame_duration_s = float(frame_duration_s)
        self.time_factor = self._time_factor(self.frame_start_s, self.frame_duration_s)
        self._factors: dict[bytes, Any] = {}
        # Non-TOF projections on the CPU walk each (view, radial) pair once for all planes; the
        # sensitivity (non-TOF) too when the model is TOF. TOF projections and the GPU keep the
        # per-LOR kernels (no separable TOF or CUDA kernels yet).
        self._separable = None if self.backend.is_gpu else SeparableProjector(self.nontof_projector)
        self.additive = None
        parts = [p for p in (randoms, scatter) if p is not None]
        if parts:
            self.additive = sum(self.validate_data(self._spread_tof(p), "additive") for p in parts)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """``(plane, view, radial[, tof])``."""
        shape = self.layout.shape
        return (*shape, self.tof.n_bins) if self.tof is not None else shape

    def _spread_tof(self, array: Any) -> Any:
        if self.tof is None or tuple(np.shape(array)) != tuple(self.layout.shape):
            return array
        host = np.asarray(self.backend.to_host(array), dtype=np.float32)
        return np.repeat(host[..., None] / self.tof.n_bins, self.tof.n_bins, axis=-1)

    def _subset_geometry(self, views: np.ndarray) -> tuple[Any, Any, Any]:
        """LOR endpoints of the views (made on the device) and their multiplicative factors."""
        key = views.tobytes()
        device_views = self._device_indices(views)
        xstart, xend = self.layout.endpoints(device_views, xp=self.xp, checked=False)
        if key not in self._factors:
            ca, cb = self._layout_crystals(views)
            factor = self._lor_factors(ca, cb, xstart, xend) * np.float32(self.time_factor)
            if self._bin_norm is not None:
                factor *= self._bin_norm[:, device_views]
            self._factors[key] = factor
        return xstart, xend, self._factors[key]

    def _separable_factor(self, views: np.ndarray) -> Any:
        """The factors of ``views`` (computed and cached by :meth:`_subset_geometry` once)."""
        key = views.tobytes()
        if key not in self._factors:
            self._subset_geometry(views)
        return self._factors[key]

    def _separable_tables(self, views: np.ndarray) -> tuple[Any, Any, Any, Any]:
        xy_a, xy_b, z_a, z_b = self.layout.separable_endpoints(views, xp=np)
        return xy_a.reshape(-1, 2), xy_b.reshape(-1, 2), z_a, z_b

    def forward(self, image: Any, subset: Any = None) -> Any:
        """``m ⊙ (P x)`` for the views of ``subset`` (None: all)."""
        x = self._blurred(self.validate_image(image))
        views = self._views(subset)
        if self._separable is not None and self.tof is None:
            factor = self._separable_factor(views)
            values = self._separable.forward(x, *self._separable_tables(views))
            return values.reshape(factor.shape) * factor
        xstart, xend, factor = self._subset_geometry(views)
        values = self.projector.forward(
            x, xstart.reshape(-1, 3), xend.reshape(-1, 3), checked=False
        )
        shape = factor.shape
        if self.tof is not None:
            return values.reshape(*shape, self.tof.n_bins) * factor[..., None]
        return values.reshape(shape) * factor

    def back(self, data: Any, subset: Any = None) -> Any:
        """``Pᵀ (m ⊙ y)``."""
        views = self._views(subset)
        if self._separable is not None and self.tof is None:
            factor = self._separable_factor(views)
            y = self.backend.asarray(data)
            if tuple(y.shape) != tuple(factor.shape):
                raise InputError(f"data has shape {tuple(y.shape)}, expected {tuple(factor.shape)}")
            weighted = (y * factor).astype(np.float32).reshape(factor.shape[0], -1)
            image = self._separable.back(weighted, *self._separable_tables(views))
            return self._blurred_adjoint(image)
        xstart, xend, factor = self._subset_geometry(views)
        y = self.backend.asarray(data)
        expected = (*factor.shape, self.tof.n_bins) if self.tof is not None else factor.shape
        if tuple(y.shape) != tuple(expected):
            raise InputError(f"data has shape {tuple(y.shape)}, expected {tuple(expected)}")
        weighted = y * (factor[..., None] if self.tof is not None else factor)
        n = int(np.prod(factor.shape))
        flat = weighted.reshape(n, -1) if self.tof is not None else weighted.reshape(n)
        # Trusted path (the endpoints are the layout's; OSEM's ratios are finite): no per-chunk
        # validation, which would wait for the device.
        image = self.projector.back(
            self.xp.ascontiguousarray(flat), xstart.reshape(-1, 3), xend.reshape(-1, 3),
            checked=False,
        )  # fmt: skip
        return self._blurred_adjoint(image)

    def _compute_sensitivity(self, views: np.ndarray) -> Any:
        """``Gᵀ Pᵀ m`` over ``views`` by the non-TOF projector (TOF bins sum to the non-TOF
        LOR)."""
        if self._separable is not None:
            factor = self._separable_factor(views)
            flat = factor.reshape(factor.shape[0], -1)
            xy_a, xy_b, z_a, z_b = self._separable_tables(views)
            mirror = axial_mirror(z_a, z_b, self.grid)
            if mirror is not None and np.array_equal(flat[mirror.half], flat[mirror.partner]):
                # Mirrored planes carry equal factors (no μ-map, or none that breaks the
                # symmetry to the bit): project one of each pair and add it flipped along z.
                half = self._separable.back(flat[mirror.half], xy_a, xy_b, z_a[mirror.half],
                                            z_b[mirror.half])  # fmt: skip
                image = half + half[::-1]
                if mirror.fixed.size:
                    image += self._separable.back(flat[mirror.fixed], xy_a, xy_b,
                                                  z_a[mirror.fixed], z_b[mirror.fixed])  # fmt: skip
                return self._blurred_adjoint(image)
            image = self._separable.back(flat, xy_a, xy_b, z_a, z_b)
            return self._blurred_adjoint(image)
        xstart, xend, factor = self._subset_geometry(views)
        image = self.nontof_projector.back(
            self.xp.ascontiguousarray(factor.reshape(-1)),
            xstart.reshape(-1, 3),
            xend.reshape(-1, 3),
            checked=False,
        )
        return self._blurred_adjoint(image)

    def to_image(self, data: Any, **info: Any) -> Image:
        """Wrap an image array as a :class:`recon.Image`; its ``info`` names the resolution model
        (``resolution_model``) when there is one."""
        return super().to_image(data, **add_resolution_info(info, self.resolution))


class PetListmodeModel(_PetCorrections):
    r"""Listmode model: one expected rate per event, ``ȳ_i = m_i (P x)_i + a_i``.

    ``m_i`` holds the LOR's attenuation and normalisation, the decay from the reference time to
    the event's own time, the branching ratio and the calibration. A reconstruction works on a
    :meth:`frame`: the model restricted to one time window's prompts, which is a
    :class:`recon.SystemModel` like a sinogram model (its data are one count per event), so
    LM-OSEM is OSEM on it. The frame's sensitivity covers all LORs of the sinogram layout (all
    crystal pairs within ``max_ring_difference``): its geometric part (attenuation ×
    normalisation, :meth:`geometric_sensitivity`) is back-projected once per model object, on
    first use, and kept on the device; each frame scales it by its time factor (duration, decay,
    branching ratio, calibration: :meth:`frame_sensitivity`). Prompts on LORs outside the layout
    are left out (:meth:`prepare`). With a resolution model ``G`` the projector is ``P·G``: the
    event projections blur the image first, the back projections blur their result by ``Gᵀ``,
    and the geometric sensitivity is ``Gᵀ Pᵀ m``.

    Parameters
    ----------
    scanner : PetScanner
    grid : ImageGrid
    mu_map : array of grid.shape, optional
        Linear attenuation at 511 keV in 1/mm.
    normalization : Normalization or array of shape (n_crystals,), optional
        A :class:`~recon.pet.normalization.Normalization` (each event gets the factor of its
        sinogram bin) or per-crystal efficiencies.
    isotope : str, optional
        Enables decay correction to each event's time and the positron branching ratio.
    reference_time_s : float
        Time activities refer to (s from scan start).
    calibration : float, optional
        Counts per (Bq/mL · s) per unit line integral; the image is then in Bq/mL.
    use_tof : bool, optional
        Default: TOF when the scanner has it.
    max_ring_difference : int, optional
        Largest ring difference of the layout (default: all).
    device : {"auto", "cpu", "gpu"}, optional
    chunk_lors : int
        LORs per projector launch.
    resolution : ImageResolution, optional
        Image-space resolution model ``G``, e.g. ``scanner.resolution``; default: none.
    n_radial : int, optional
        Radial bins of the sinogram layout (odd; default ``2·(crystals_per_ring // 4) + 1``,
        lines up to ``R·sin(45°)`` from the axis, 0.71 of the crystal radius). Scatter tail
        fitting needs lines that miss the body: raise it (up to ``crystals_per_ring − 1``) for
        a body that fills that extent. The image grid must cover the lines' reach as well.
    """

    def __init__(
        self,
        scanner: PetScanner,
        grid: ImageGrid,
        mu_map: Any = None,
        normalization: Any = None,
        isotope: str | None = None,
        reference_time_s: float = 0.0,
        calibration: float | None = None,
        use_tof: bool | None = None,
        max_ring_difference: int | None = None,
        device: str | Backend | None = None,
        chunk_lors: int = 2**20,
        resolution: ImageResolution | None = None,
        n_radial: int | None = None,
    ) -> None:
        self.grid = grid
        self.backend = checked_backend(grid, device, "a PET listmode model")
        self.xp = self.backend.xp
        self._set_up_corrections(
            scanner, mu_map, normalization, isotope, reference_time_s, calibration, use_tof,
            max_ring_difference, chunk_lors, resolution, n_radial,
        )  # fmt: skip
        if normalization is not None and self._bin_norm is not None:
            raise InputError(
                "listmode normalisation must be per-crystal efficiencies or a "
                "recon.pet.Normalization (which gives every event the factor of its bin)"
            )
        self._geometry_sensitivity = None
        #: The symmetry this model's computation of the geometric sensitivity used: "axial
        #: mirror" (see :meth:`_sensitivity_mirror`), or None (every LOR projected, or the image
        #: not computed by this model: read from the cache or not yet needed).
        self.sensitivity_symmetry: str | None = None
        # The CPU fused pass's partial images (zero between calls) and crystal table.
        self._ratio_back_scratch: np.ndarray | None = None
        self._positions_table: np.ndarray | None = None
        #: Where the geometric sensitivity came from: None (not yet needed), "cache", "computed"
        #: or "computed, not cached".
        self.sensitivity_source: str | None = None

    def geometric_sensitivity(self) -> Any:
        """``Gᵀ Pᵀ (attenuation × normalisation)`` over all LORs, without time factors.

        Computed once per model object, with a progress bar, and kept on disk in the user's
        cache folder keyed by everything it depends on (:mod:`recon.pet.sensitivity_cache`), so
        a second model of the same scanner, grid, μ-map, normalisation and resolution reads it
        back instead of projecting every LOR again.
        """
        if self._geometry_sensitivity is None:
            try:
                key: str | None = self._sensitivity_key()
            except TypeError as error:  # a part it cannot hash: compute, do not cache
                log.info("sensitivity image not cached: %s", error)
                key = None
            image, source = load_or_compute(
                key, self.grid.shape, self._compute_geometric_sensitivity,
                f"the sensitivity image of {self.layout.n_bins:,} LORs",
            )  # fmt: skip
            self.sensitivity_source = source
            self._geometry_sensitivity = self.backend.asarray(image)
        return self._geometry_sensitivity

    def _sensitivity_key(self) -> str:
        """What the geometric sensitivity depends on, as a cache key."""
        key = Fingerprint("PET listmode geometric sensitivity")
        key.add("backend", self.backend.name).add("scanner", self.scanner)
        key.add("max_ring_difference", self.layout.max_ring_difference)
        key.add("n_radial", self.layout.n_radial)
        key.add("grid", self.grid)
        key.add("mu", self._mu).add("crystal_efficiencies", self._crystal_eff)
        key.add("normalization", getattr(self, "_normalization", None))
        return key.add("resolution", self.resolution).hexdigest()

    def _compute_geometric_sensitivity(self) -> np.ndarray:
        layout = self.layout
        image = self.xp.zeros(self.grid.shape, np.float32)
        n_views = layout.shape[1]
        per_view = layout.shape[0] * layout.shape[2]
        step = max(1, self.projector.chunk_lors // max(per_view, 1))
        starts = range(0, n_views, step)
        label = f"sensitivity image ({layout.n_bins:,} LORs, once per scanner and grid)"
        # On the CPU the layout's LORs are separable: each (view, radial) pair's transaxial walk
        # serves every plane, for the attenuation and for the back projection.
        separable = None if self.backend.is_gpu else SeparableProjector(self.nontof_projector)
        mirror = None if separable is None else self._sensitivity_mirror()
        self.sensitivity_symmetry = None if mirror is None else "axial mirror"
        if mirror is not None:
            label += ", axial mirror symmetry"
            log.info("sensitivity image: axial mirror symmetry used (half the planes projected)")
        with Progress(len(starts), label) as bar:
            for start in starts:
                views = np.arange(start, min(start + step, n_views))
                if separable is None:
                    image += self._sensitivity_per_lor(views)
                else:
                    image += self._sensitivity_separable(separable, views, mirror)
                bar.step()
        return np.asarray(self.backend.to_host(self._blurred_adjoint(image)), np.float32)

    def _sensitivity_mirror(self) -> AxialMirror | None:
        """The planes' axial mirror (:func:`recon.pet.separable.axial_mirror`) when the factors
        of mirrored LORs are equal too, so that the sensitivity image is exactly the sum of its
        half over one plane of each mirrored pair and that half flipped along z; None otherwise.

        The attenuation along a LOR and along its mirror image are equal when the μ-map is
        its own z-flip (compared exactly); per-crystal efficiencies and component
        normalisations are not assumed symmetric (the full computation runs).
        """
        if self._crystal_eff is not None or self._normalization is not None:
            return None
        if self._mu is not None:
            mu = np.asarray(self.backend.to_host(self._mu))
            if not np.array_equal(mu, mu[::-1]):
                return None
        _, _, z_a, z_b = self.layout.separable_endpoints(np.arange(1), xp=np)
        return axial_mirror(z_a, z_b, self.grid)

    def _sensitivity_per_lor(self, views: np.ndarray) -> Any:
        """``Pᵀ (attenuation × normalisation)`` over ``views``, LOR by LOR."""
        xstart, xend = self.layout.endpoints(views, xp=self.xp)
        ca, cb = self._layout_crystals(views)
        factor = self._lor_factors(ca, cb, xstart, xend)
        return self.nontof_projector.back(
            self.xp.ascontiguousarray(factor.reshape(-1)), xstart.reshape(-1, 3),
            xend.reshape(-1, 3), checked=False,
        )  # fmt: skip

    def _sensitivity_separable(
        self, separable: SeparableProjector, views: np.ndarray, mirror: AxialMirror | None = None
    ) -> Any:
        """The same as :meth:`_sensitivity_per_lor` with the separable projector; with
        ``mirror`` (:meth:`_sensitivity_mirror`) only one plane of each mirrored pair (and the
        planes that are their own mirror image) is projected, and the half image is added
        flipped along z."""
        layout = self.layout
        xy_a, xy_b, z_a, z_b = layout.separable_endpoints(views, xp=np)
        xy = (xy_a.reshape(-1, 2), xy_b.reshape(-1, 2))
        if mirror is None:
            tables = (*xy, z_a, z_b)
            shape = (layout.shape[0], len(views), layout.shape[2])
            ca, cb = self._layout_crystals(views)
            factor = self._efficiency_factors(ca, cb, shape)
            if self._mu is not None:
                line = separable.forward(self._mu, *tables).reshape(shape)
                factor *= np.exp(-line).astype(np.float32)
            return separable.back(factor.reshape(shape[0], -1), *tables)
        image = None
        for planes, flip in ((mirror.half, True), (mirror.fixed, False)):
            if planes.size == 0:
                continue
            tables = (*xy, z_a[planes], z_b[planes])
            factor = np.ones((planes.size, xy[0].shape[0]), np.float32)  # no efficiencies
            if self._mu is not None:
                factor *= np.exp(-separable.forward(self._mu, *tables)).astype(np.float32)
            part = separable.back(factor, *tables)
            if flip:
                part = part + part[::-1]  # the partner planes: the mirror image
            image = part if image is None else image + part
        return image

    def frame_sensitivity(self, frame_start_s: float, frame_duration_s: float) -> Any:
        """Sensitivity image of a frame over all LORs: the cached geometric sensitivity × the
        frame's time factor (a new image each call; only the geometric part is cached)."""
        return self.geometric_sensitivity() * np.float32(
            self._time_factor(frame_start_s, frame_duration_s)
        )

    def decay_factor(self, frame_start_s: float, frame_duration_s: float) -> float:
        """Activity at the reference time over the mean activity during the frame (1 without an
        isotope): how much a frame's image is raised by decay correction."""
        if self.isotope is None:
            return 1.0
        from recon.physics.decay import decay_correction_factor
        from recon.physics.isotopes import get_isotope

        half_life = get_isotope(self.isotope).half_life_s
        return float(
            decay_correction_factor(
                half_life, frame_start_s, frame_duration_s, self.reference_time_s
            )
        )

    def frame(
        self,
        events: ListmodeEvents,
        frame_start_s: float | None = None,
        frame_duration_s: float | None = None,
        additive_rate: Any = None,
    ) -> ListmodeFrame:
        """This model restricted to the prompts of one frame: a :class:`ListmodeFrame`.

        Parameters
        ----------
        events : ListmodeEvents
            The frame's events (prompts are used; delayeds are ignored).
        frame_start_s, frame_duration_s : float, optional
            The frame (s from scan start); default: from 0 to the last event time.
        additive_rate : array of shape (n_prompts,), optional
            Expected additive rate (randoms + scatter) in counts/s of each prompt's LOR and TOF
            bin, in the order of the prompts (:meth:`additive_rate`).
        """
        from recon.pet.listmode_frame import ListmodeFrame

        return ListmodeFrame(self, events, frame_start_s, frame_duration_s, additive_rate)

    def prepare(self, events: ListmodeEvents) -> dict[str, Any]:
        """Compact device arrays for the prompts of ``events``: crystal pair, TOF bin, factor.

        Each kept prompt costs 14 bytes (two int32 crystal ids, an int16 TOF bin, the float32
        factor ``m_i``: attenuation, normalisation, decay to the event's time, branching ratio,
        calibration); LOR endpoints are looked up per chunk of :attr:`chunk_events` events when
        projecting, and the preparation itself works in such chunks, so memory beyond these
        arrays does not grow with the number of events. Prompts on LORs outside the layout are
        dropped; ``kept`` (host bool array, or None when all were kept) says which of the
        ``n_given`` prompts remain.
        """
        if not isinstance(events, ListmodeEvents):
            raise InputError("events must be a recon.ListmodeEvents")
        events.validate(self.scanner)
        prompts = events.prompts()
        if prompts.n_events == 0:
            raise InputError("the listmode data hold no prompt events")
        b, xp = self.backend, self.xp
        n_given = prompts.n_events
        # Only LORs of the layout are in the sensitivity image: events on other LORs (ring
        # difference or radial offset beyond the layout) would bias the estimate, so drop them.
        inside = np.empty(n_given, dtype=bool)
        for a, e in self._event_chunks(n_given):
            ca = b.asarray(prompts.crystal_a[a:e], np.int64)
            cb = b.asarray(prompts.crystal_b[a:e], np.int64)
            inside[a:e] = b.to_host(self.layout.bins_of(ca, cb, xp=xp)[4])
        keep = None
        n_outside = n_given - int(inside.sum())
        if n_outside:
            log.info("%d of %d prompts lie outside the sinogram layout; ignored",
                     n_outside, n_given)  # fmt: skip
            keep = inside
            prompts = prompts.select(keep)
            if prompts.n_events == 0:
                raise InputError("no prompt lies on a LOR of the model's layout")
        n = prompts.n_events
        crystal_a = b.asarray(prompts.crystal_a, np.int32)
        crystal_b = b.asarray(prompts.crystal_b, np.int32)
        tof_bin = None if self.tof is None else b.asarray(prompts.tof_bin, np.int16)
        factor = xp.empty(n, np.float32)
        iso = None
        if self.isotope is not None:
            from recon.physics.isotopes import get_isotope

            iso = get_isotope(self.isotope)
            if prompts.time_ms is None:
                raise InputError(
                    f"the events carry no times (time_ms), so the decay of {self.isotope} during "
                    "the scan cannot be corrected per event; give the event times, or a model "
                    "without isotope"
                )
        for a, e in self._event_chunks(n):
            ca, cb = crystal_a[a:e].astype(np.int64), crystal_b[a:e].astype(np.int64)
            xstart, xend = self._positions[ca], self._positions[cb]
            chunk = self._lor_factors(ca, cb, xstart, xend)
            if iso is not None and prompts.time_ms is not None:
                time_s = b.asarray(prompts.time_ms[a:e], np.float64) / 1000.0
                decay = xp.exp(-iso.decay_constant_per_s * (time_s - self.reference_time_s))
                chunk = chunk * (decay * iso.positron_fraction).astype(np.float32)
            if self.calibration is not None:
                chunk = chunk * np.float32(self.calibration)
            factor[a:e] = chunk
        return {"crystal_a": crystal_a, "crystal_b": crystal_b, "tof_bin": tof_bin,
                "factor": factor, "n": n, "n_given": n_given, "kept": keep}  # fmt: skip

    @property
    def chunk_events(self) -> int:
        """Events projected per chunk (the projector's ``chunk_lors``): the LOR endpoints and
        other per-event temporaries exist for one chunk at a time."""
        return int(self.projector.chunk_lors)

    def _event_chunks(self, n: int) -> list[tuple[int, int]]:
        step = self.chunk_events
        return [(a, min(n, a + step)) for a in range(0, n, step)]

    def _event_endpoints(self, prepared: dict[str, Any], a: int, e: int) -> tuple[Any, Any]:
        """World endpoints (float32, ``(e − a, 3)``) of prepared events ``a … e``."""
        xp = self.xp
        ca = prepared["crystal_a"][a:e].astype(np.int64)
        cb = prepared["crystal_b"][a:e].astype(np.int64)
        return xp.ascontiguousarray(self._positions[ca]), xp.ascontiguousarray(self._positions[cb])

    def additive_rate(
        self, events: ListmodeEvents, sinogram_counts: Any, frame_duration_s: float
    ) -> Any:
        """Per-prompt additive rate from a sinogram of expected additive counts.

        ``sinogram_counts`` holds expected counts over the frame, either non-TOF (shape
        ``layout.shape``, e.g. randoms from :func:`recon.pet.randoms_from_delayeds`): each prompt
        gets its bin's value per second divided evenly over the TOF bins (right for randoms,
        which are uniform in time difference); or, with TOF, TOF-resolved (shape
        ``layout.tof_shape``, e.g. a TOF scatter estimate): each prompt gets the value of its
        own TOF bin (the sign of the bin flipped for a pair stored in the reverse order).
        Prompts outside the layout get 0. Add the two rates for randoms plus TOF scatter.
        """
        counts = np.asarray(self.backend.to_host(sinogram_counts), dtype=np.float64)
        tof_shape = None if self.tof is None else (*self.layout.shape, self.tof.n_bins)
        if counts.shape != tuple(self.layout.shape) and counts.shape != tof_shape:
            expected = f"{self.layout.shape}" + ("" if tof_shape is None else f" or {tof_shape}")
            raise InputError(f"additive sinogram has shape {counts.shape}, expected {expected}")
        if not frame_duration_s > 0:
            raise InputError("frame_duration_s must be positive")
        prompts = events.prompts()
        plane, view, radial, swapped, valid = self.layout.bins_of(
            prompts.crystal_a, prompts.crystal_b
        )
        safe = [np.where(valid, index, 0) for index in (plane, view, radial)]
        if self.tof is not None and counts.shape == tof_shape:
            signed = np.where(swapped, -prompts.tof_bin, prompts.tof_bin).astype(np.int64)
            tof_index = np.clip(signed + self.tof.max_bin, 0, self.tof.n_bins - 1)
            value = counts[safe[0], safe[1], safe[2], tof_index]
            return self.backend.asarray(np.where(valid, value, 0.0) / frame_duration_s)
        rate = np.where(valid, counts[safe[0], safe[1], safe[2]], 0.0) / frame_duration_s
        if self.tof is not None:
            rate = rate / self.tof.n_bins
        return self.backend.asarray(rate)

    def forward_events(self, image: Any, prepared: dict[str, Any], index: Any = None) -> Any:
        """``m_i (P G x)_i`` for the prepared events (or the subset ``index`` of them)."""
        sel = _select(prepared, index)
        blurred = self._blurred(image)
        out = self.xp.empty(sel["factor"].shape[0], np.float32)
        for a, e in self._event_chunks(out.shape[0]):
            xstart, xend = self._event_endpoints(sel, a, e)
            tof = None if sel["tof_bin"] is None else sel["tof_bin"][a:e]
            out[a:e] = self.projector.forward(blurred, xstart, xend, tof_bin=tof, checked=False)
        return out * sel["factor"]

    def back_events(self, values: Any, prepared: dict[str, Any], index: Any = None) -> Any:
        """``Gᵀ Pᵀ (m ⊙ values)`` over the prepared events (or the subset ``index``)."""
        sel = _select(prepared, index)
        weighted = (values * sel["factor"]).astype(np.float32)
        image = None
        for a, e in self._event_chunks(weighted.shape[0]):
            xstart, xend = self._event_endpoints(sel, a, e)
            tof = None if sel["tof_bin"] is None else sel["tof_bin"][a:e]
            part = self.projector.back(
                self.xp.ascontiguousarray(weighted[a:e]), xstart, xend, tof_bin=tof,
                checked=False,
            )  # fmt: skip
            image = part if image is None else image + part
        if image is None:
            image = self.xp.zeros(self.grid.shape, np.float32)
        return self._blurred_adjoint(image)

    def ratio_back_events(
        self,
        image: Any,
        prepared: dict[str, Any],
        counts: Any,
        additive: Any,
        max_ratio: float,
        smallest: float,
    ) -> Any:
        """``Gᵀ Pᵀ (m ⊙ r)`` with ``r_i = y_i / max(ȳ_i, y_i / max_ratio, smallest)`` and
        ``ȳ_i = m_i (P G x)_i + a_i``, each event walked once (CPU; None on a GPU).

        The same as ``back_events(ratio(forward_events(image) + additive))`` to float32
        rounding (:mod:`recon.pet._cpu_listmode`), in one pass over the events: an EM subset of
        LM-OSEM without the two-pass cost.

        Parameters
        ----------
        image : float32 ndarray of grid.shape
        prepared : dict
            Prepared events (:meth:`prepare`, or a subset of them).
        counts : float32 ndarray of shape (n,)
            ``y_i`` per event.
        additive : float32 ndarray of shape (n,) or None
            ``a_i`` per event.
        max_ratio, smallest : float
            The guard of the ratio (``recon.algorithms.em_update``'s ``MAX_RATIO`` and
            ``SMALLEST_NORMAL``).

        Returns
        -------
        float32 ndarray of grid.shape, or None on a GPU (the caller then projects in two
        passes)
        """
        if self.backend.is_gpu:
            return None
        import numba

        from recon.pet import _cpu_listmode

        blurred = np.ascontiguousarray(self._blurred(image), dtype=np.float32)
        n = int(prepared["factor"].shape[0])
        size = int(np.prod(self.grid.shape))
        n_parts = max(1, min(numba.get_num_threads(), n))
        scratch = self._ratio_back_scratch
        if scratch is None or scratch.shape != (n_parts, size):
            # Kept between subsets, zero between calls (sum_parts zeroes it as it reads it):
            # allocating and zeroing fresh partial images per subset costs as much as a small
            # subset's walk.
            scratch = np.zeros((n_parts, size), np.float32)
        # Dirty until summed: a call interrupted in between leaves none to be reused.
        self._ratio_back_scratch = None
        kernels = self.projector._kernels
        tof_bin = prepared["tof_bin"]
        if self.tof is None:
            tof, table = _cpu_listmode.NON_TOF, _cpu_listmode.NON_TOF_TABLE
            inv_step = np.float32(1.0)
            tof_bin = np.empty(0, np.int16)  # not read
        else:
            tof = kernels._tof(self.projector)
            table, step = self.projector.tof_table
            inv_step = np.float32(step)
        no_additive = np.empty(0, np.float32)
        _cpu_listmode.lm_ratio_back(
            blurred, kernels._grid(self.projector), self._positions_f32, prepared["crystal_a"],
            prepared["crystal_b"], tof_bin, prepared["factor"],
            np.ascontiguousarray(counts, dtype=np.float32),
            no_additive if additive is None else np.ascontiguousarray(additive, np.float32),
            tof, self.tof is not None, table, inv_step, np.float32(1.0 / max_ratio),
            np.float32(smallest), scratch,
        )  # fmt: skip
        correction = np.empty(self.grid.shape, np.float32)
        _cpu_listmode.sum_parts(scratch, correction)
        self._ratio_back_scratch = scratch
        return self._blurred_adjoint(correction)

    @property
    def _positions_f32(self) -> np.ndarray:
        """Crystal positions as the float32 ``(n_crystals, 3)`` table the CPU kernels read."""
        table = self._positions_table
        if table is None:
            table = np.ascontiguousarray(self.backend.to_host(self._positions), np.float32)
            self._positions_table = table
        return table


def _select(prepared: dict[str, Any], index: Any) -> dict[str, Any]:
    """The events ``index`` (a slice: contiguous views when events are in subset order)."""
    if index is None:
        return prepared
    return {k: (v[index] if hasattr(v, "shape") else v) for k, v in prepared.items()}
