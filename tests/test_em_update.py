"""The guarded EM update: no NaN or infinity from finite non-negative inputs, zeros stay zeros,
no denormal values in the estimate, and a clear error when a non-finite value appears anyway.

The hand-made problems put a denormal expected value under a measured count, where the naive
float32 update computes ``5 / 1e-40 = inf`` and then ``0 · inf = NaN``.
"""

from __future__ import annotations

import numpy as np
import pytest

import recon
from recon.algorithms.em_update import (
    MAX_RATIO,
    SMALLEST_NORMAL,
    check_finite,
    em_ratio,
    em_update,
    inverse_sensitivity,
)
from recon.errors import NumericalError
from recon.pet import simulate_listmode
from recon.simulate.phantoms import uniform_cylinder
from recon.system_model import ViewModel, ViewSubsets

DENORMAL = 1e-40  # below float32's smallest normal (1.18e-38), representable as a denormal

# Hand-made system: 4 bins (rows) × 4 voxels. Voxel 0 is exactly 0, voxel 1 denormal, voxel 2 at
# the smallest normal magnitude, voxel 3 ordinary.
MATRIX = np.array(
    [
        [1.0, 1.0, 0.0, 0.0],  # ȳ = 1e-40 (denormal) under 5 counts: the naive ratio overflows
        [0.0, 0.5, 0.5, 0.0],  # ȳ ≈ 1e-38 under 0 counts: ratio 0
        [0.0, 0.0, 0.0, 2.0],  # an ordinary bin: ȳ = 2 under 3 counts
        [0.0, 0.0, 1e-3, 1.0],  # ȳ ≈ 1 under 1 count; voxel 2's update underflows to a denormal
    ],
    dtype=np.float32,
)
X = np.array([0.0, DENORMAL, 2e-38, 1.0], dtype=np.float32)
COUNTS = np.array([5.0, 0.0, 3.0, 1.0], dtype=np.float32)


def _back(ratio: np.ndarray) -> np.ndarray:
    return MATRIX.T @ ratio


def _exact_em(x, counts, matrix):
    """The EM update in float64 where nothing over- or underflows: x / (Aᵀ1) · Aᵀ(y / Ax)."""
    x, a = x.astype(np.float64), matrix.astype(np.float64)
    expected = a @ x
    ratio = np.divide(counts, expected, out=np.zeros_like(expected), where=expected > 0)
    return x * (a.T @ ratio) / a.sum(axis=0)


def test_hand_made_arrays_have_zeros_and_denormals():
    expected = MATRIX @ X
    assert X[0] == 0 and 0 < X[1] < SMALLEST_NORMAL
    assert 0 < expected[0] < SMALLEST_NORMAL and COUNTS[0] > 0
    with np.errstate(over="ignore", divide="ignore"):
        assert np.isinf(COUNTS[0] / expected[0])  # what the unguarded ratio computes


def test_binned_update_is_finite_keeps_zeros_and_has_no_denormals():
    inv_sens = inverse_sensitivity(np, MATRIX.sum(axis=0))
    new = em_update(np, X, MATRIX @ X, _back, inv_sens, counts=COUNTS)
    assert new.dtype == np.float32
    assert np.all(np.isfinite(new)) and np.all(new >= 0)
    assert np.all((new == 0) | (new >= SMALLEST_NORMAL)), new  # no denormal left
    assert new[0] == 0  # a zero voxel stays 0 whatever its bins hold
    # Voxel 2's exact update (2e-38 · 1e-3 · 1 / 0.501 ≈ 4e-41) would be denormal: exactly 0.
    assert 0 < _exact_em(X, COUNTS, MATRIX)[2] < SMALLEST_NORMAL and new[2] == 0
    # The ordinary voxel follows the exact EM update (the cap plays no part there).
    assert new[3] == pytest.approx(_exact_em(X, COUNTS, MATRIX)[3], rel=1e-6)
    # Voxel 1 sits under the collapsed bin, whose ratio is capped at MAX_RATIO rather than the
    # 5e40 of exact arithmetic: 1e-40 · (1 · MAX_RATIO + 0.5 · 0) / 1.5.
    assert new[1] == pytest.approx(DENORMAL * MAX_RATIO / 1.5, rel=1e-5)


def test_listmode_update_is_finite_keeps_zeros_and_has_no_denormals():
    """Listmode: one count per event, ratio 1/ȳ bounded by MAX_RATIO over the frame duration."""
    duration = 60.0
    rows = MATRIX[[0, 2, 3]]  # one event in each bin that holds counts
    inv_sens = inverse_sensitivity(np, MATRIX.sum(axis=0) * np.float32(duration))
    new = em_update(np, X, rows @ X, lambda r: rows.T @ r, inv_sens, exposure_s=duration)
    assert np.all(np.isfinite(new)) and np.all(new >= 0)
    assert np.all((new == 0) | (new >= SMALLEST_NORMAL))
    assert new[0] == 0 and new[2] == 0
    exact_3 = X[3] * (2.0 / 2.0 + 1.0 / (1e-3 * 2e-38 + 1.0)) / (3.0 * duration)
    assert new[3] == pytest.approx(exact_3, rel=1e-6)
    assert new[1] == pytest.approx(DENORMAL * MAX_RATIO * duration / (1.5 * duration), rel=1e-5)


@pytest.mark.parametrize(
    "expected, counts, ratio",
    [
        (0.0, 0.0, 0.0),  # 0/0 → 0
        (0.0, 7.0, MAX_RATIO),  # a count where nothing is expected
        (DENORMAL, 1.0, MAX_RATIO),  # a count under a collapsed estimate
        (1e-45, 3e38, MAX_RATIO),  # the extremes of float32
        (2.0, 3.0, 1.5),  # an ordinary bin
    ],
)
def test_binned_ratio_is_bounded(expected, counts, ratio):
    got = em_ratio(np, np.array([expected], np.float32), np.array([counts], np.float32))
    assert got.dtype == np.float32 and np.isfinite(got[0])
    assert got[0] == pytest.approx(ratio, rel=1e-6)


def test_binned_ratio_of_denormal_data_is_finite_and_at_most_exact():
    got = em_ratio(np, np.array([DENORMAL], np.float32), np.array([DENORMAL], np.float32))
    assert np.isfinite(got[0]) and 0 < got[0] <= 1.0


def test_listmode_ratio_is_bounded_for_zero_and_denormal_rates():
    ratio = em_ratio(np, np.array([0.0, DENORMAL, 4.0], np.float32), exposure_s=10.0)
    assert np.all(np.isfinite(ratio))
    assert ratio[:2] == pytest.approx([MAX_RATIO * 10.0] * 2, rel=1e-6)
    assert ratio[2] == pytest.approx(0.25)


def test_inverse_sensitivity_is_finite_for_zero_and_denormal_sensitivity():
    sens = np.array([0.0, DENORMAL, 1e-20, 1.0], np.float32)
    inv = inverse_sensitivity(np, sens, numerator=34.0)
    assert np.all(np.isfinite(inv))
    assert list(inv[:3]) == [0.0, 0.0, 0.0]  # below 1e-12 of the largest: not estimated
    assert inv[3] == pytest.approx(34.0)


def test_check_finite_names_the_iteration():
    check_finite(np, X, "OSEM", 1, 4)  # finite: nothing happens
    bad = X.copy()
    bad[1], bad[2] = np.nan, np.inf
    with pytest.raises(NumericalError, match=r"1 NaN and 1 infinite .* iteration 3 of 4"):
        check_finite(np, bad, "OSEM", 3, 4)


# -------------------------------------------------------------------- through osem and lm_osem
class _MatrixModel(ViewModel):
    """A system model whose projector is a hand-made matrix (bins × voxels): ``ȳ = A x``.

    Binned data for :func:`recon.osem`; :meth:`frame` makes the listmode counterpart, whose
    events name rows of ``A`` through their ``crystal_a``, for :func:`recon.lm_osem`.
    """

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = np.asarray(matrix, np.float32)
        super().__init__(recon.ImageGrid((1, 1, self.matrix.shape[1]), 1.0), "cpu", "a test")
        self.view_subsets = ViewSubsets(self.matrix.shape[0], view_axis=0)

    @property
    def data_shape(self):
        return (self.matrix.shape[0],)

    @property
    def units(self):
        return "counts/s (uncalibrated)"

    def _image(self, flat):
        return np.asarray(flat, np.float32).reshape(self.image_shape)

    def forward(self, x, subset=None):
        return self.matrix[self._views(subset)] @ np.asarray(x).ravel()

    def back(self, y, subset=None):
        return self._image(self.matrix[self._views(subset)].T @ y)

    def frame(self, events, start_s, duration_s, additive_rate):
        return _MatrixFrame(self, events, duration_s)


class _MatrixFrame(_MatrixModel):
    """The frame of :class:`_MatrixModel`: one count per event, ``m_i`` the frame duration and
    the sensitivity that of every row over the frame (as :class:`recon.ListmodeFrame`)."""

    def __init__(self, parent, events, duration_s):
        rows = np.asarray(events.crystal_a, np.int64)
        super().__init__(parent.matrix[rows] * np.float32(duration_s))
        self.full_sensitivity = self._image(parent.matrix.sum(axis=0) * np.float32(duration_s))
        self.n_prompts, self.additive = rows.size, None
        self.frame_start_s, self.frame_duration_s, self.decay_factor = 0.0, duration_s, 1.0

    def counts(self):
        return np.ones(self.n_prompts, np.float32)

    def sensitivity(self, subset=None):
        return self.full_sensitivity


def test_osem_on_hand_made_arrays_stays_finite():
    """One MLEM iteration from a start image holding 0 and a denormal, with a count under the
    denormal expected value: the unguarded update gives NaN and inf here."""
    model = _MatrixModel(MATRIX)
    image = np.asarray(recon.mlem(model, COUNTS, iterations=1, x0=model._image(X), progress=False))
    assert np.all(np.isfinite(image)) and np.all(image >= 0)
    assert np.all((image == 0) | (image >= SMALLEST_NORMAL))
    assert image.ravel()[3] == pytest.approx(_exact_em(X, COUNTS, MATRIX)[3], rel=1e-6)


def test_lm_osem_on_hand_made_arrays_stays_finite():
    model = _MatrixModel(MATRIX)
    events = recon.ListmodeEvents(
        crystal_a=np.array([0, 2, 3], np.int32),
        crystal_b=np.array([1, 1, 1], np.int32),
        time_ms=np.zeros(3),
    )
    image = np.asarray(
        recon.lm_osem(
            model,
            events,
            iterations=1,
            subsets=1,
            frame_duration_s=60.0,
            x0=model._image(X),
            progress=False,
        )  # fmt: skip
    )
    assert np.all(np.isfinite(image)) and np.all(image >= 0)
    assert np.all((image == 0) | (image >= SMALLEST_NORMAL))


def test_a_non_finite_value_stops_the_reconstruction_naming_the_iteration():
    model = _MatrixModel(MATRIX[2:])
    counts = COUNTS[2:]

    def poison(state):
        if state.iteration == 2:
            state.image[0, 0, 3] = np.nan  # as an overflow in a model factor would

    with pytest.raises(NumericalError, match="MLEM: .*1 NaN.* after iteration 2 of 3"):
        recon.mlem(model, counts, iterations=3, callback=poison, progress=False)


def test_a_start_image_beyond_float32_is_refused():
    """Counts and sensitivity 1e40 apart: the uniform start would be infinite in float32."""
    model = _MatrixModel(MATRIX * np.float32(1e-30))
    with pytest.raises(NumericalError, match="starting image would be 1.*e\\+40"):
        recon.mlem(model, COUNTS * np.float32(1e10), iterations=1, progress=False)


def test_non_finite_listmode_additive_rate_is_refused():
    scanner = recon.PetScanner(n_rings=2, crystals_per_ring=32, radius_mm=80.0,
                               ring_spacing_mm=4.0)  # fmt: skip
    model = recon.PetListmodeModel(scanner, recon.ImageGrid((2, 8, 8), 8.0), device="cpu")
    events = recon.ListmodeEvents(
        crystal_a=np.array([0, 2, 3], np.int32), crystal_b=np.array([16, 18, 19], np.int32),
        time_ms=np.zeros(3),
    )  # fmt: skip
    for rate in ([1.0, np.nan, 1.0], [1.0, np.inf, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0]):
        with pytest.raises(recon.InputError, match="additive_rate must be 3 finite non-negative"):
            recon.lm_osem(
                model, events, subsets=1, frame_duration_s=1.0,
                additive_rate=np.array(rate, np.float32), progress=False,
            )  # fmt: skip


# -------------------------------------------------------------------- PET in the denormal regime
def _collapsing_study():
    """Events of a hot cylinder beside a region of 1/100 its activity, on a ring with 150 ps TOF.

    With many subsets, the faint region's estimate is pulled towards zero by the hot events' TOF
    tails between its own few events; by the subset that holds one of them, the expected value
    under that event has fallen to a denormal, where the unguarded update gave NaN (52 voxels in
    listmode, 108 with sinograms, for this seed).
    """
    scanner = recon.PetScanner(
        n_rings=4, crystals_per_ring=96, radius_mm=120.0, ring_spacing_mm=4.0,
        tof=recon.Tof(fwhm_ps=150.0, n_bins=81, bin_width_ps=60.0),
    )  # fmt: skip
    grid = recon.ImageGrid((4, 36, 36), 4.0)
    hot = uniform_cylinder(grid, radius_mm=30, length_mm=16, centre_xyz_mm=(-25, 0, 0))
    faint = uniform_cylinder(grid, radius_mm=15, length_mm=16, centre_xyz_mm=(40, 0, 0))
    activity = (hot + 0.01 * faint).astype(np.float32)
    sinogram = recon.PetSinogramModel(scanner, grid, frame_duration_s=60.0, device="cpu")
    activity *= np.float32(2e4 / float(sinogram.forward(activity).sum()))  # 2e4 expected counts
    events = simulate_listmode(sinogram, activity, 60.0, np.random.default_rng(0))
    return scanner, grid, sinogram, events


def _assert_clean(image):
    assert np.all(np.isfinite(image)), (np.isnan(image).sum(), np.isinf(image).sum())
    assert image.min() >= 0
    assert np.all((image == 0) | (image >= SMALLEST_NORMAL))  # no denormal voxel


def test_listmode_reconstruction_driven_towards_denormals_stays_finite():
    scanner, grid, _, events = _collapsing_study()
    model = recon.PetListmodeModel(scanner, grid, device="cpu")
    smallest = []
    project = model.forward_events

    def forward_events(x, prepared, index=None):  # record the expectations under the events
        expected = project(x, prepared, index)
        smallest.append(float(expected[expected > 0].min()))
        return expected

    model.forward_events = forward_events
    # The two-pass path (the one a GPU takes), so that the expectations can be recorded: the CPU
    # normally forms the ratio inside its fused pass (ratio_back_events), checked below.
    model.ratio_back_events = lambda *args: None
    image = recon.lm_osem(
        model, events, iterations=4, subsets=32, frame_duration_s=60.0, progress=False
    )
    # Some events' expected counts over the 60 s frame collapsed towards denormals (1e-38).
    assert min(smallest) < 1e-28
    _assert_clean(np.asarray(image))
    # The fused CPU pass, on the same collapsing study, guards its ratio the same way.
    fused = recon.PetListmodeModel(scanner, grid, device="cpu")
    _assert_clean(
        np.asarray(
            recon.lm_osem(
                fused, events, iterations=4, subsets=32, frame_duration_s=60.0, progress=False
            )
        )
    )


def test_sinogram_reconstruction_driven_towards_denormals_stays_finite_and_conserves_counts():
    """OSEM on the same events histogrammed; the last subset update also keeps EM's count
    identity ``Σ_j s_j x_j = Σ_b y_b · min(1, MAX_RATIO · ȳ_b / y_b)`` (``s`` the subset's
    sensitivity, ``ȳ`` the expectation before the update: exactly ``Σ y`` where no ratio is
    capped)."""
    _, _, model, events = _collapsing_study()
    counts, dropped = recon.pet.histogram(events, model.layout)
    assert dropped == 0
    images = []
    smallest = []
    project = model.forward

    def forward(x, subset=None):
        expected = project(x, subset)
        under_counts = expected[model.take(counts, subset) > 0]
        smallest.append(float(under_counts[under_counts > 0].min()))
        return expected

    model.forward = forward
    image = recon.osem(
        model, counts, iterations=4, subsets=16, progress=False,
        callback=lambda state: images.append(state.image),
    )  # fmt: skip
    assert min(smallest) < 1e-30
    _assert_clean(np.asarray(image))

    last = model.subsets(16)[-1]
    y = model.take(counts, last).astype(np.float64)
    expected = project(images[-2], last).astype(np.float64)
    explained = np.where(y > 0, np.minimum(y, MAX_RATIO * expected), 0.0)
    sens = model.sensitivity(last).astype(np.float64)
    assert (sens * images[-1]).sum() == pytest.approx(explained.sum(), rel=1e-4)
