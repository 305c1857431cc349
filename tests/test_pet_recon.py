"""PET reconstruction: sinogram OSEM, listmode OSEM, TOF, corrections, decay and dynamic frames."""

from __future__ import annotations

import numpy as np
import pytest

import recon
from recon.pet import simulate_listmode
from recon.physics.decay import decay_correction_factor, mean_activity_fraction
from recon.physics.isotopes import get_isotope
from recon.simulate.phantoms import uniform_cylinder

RATE = 0.002  # activity concentration (uncalibrated counts/s per mm of path) of the phantoms


def _scanner(tof: bool = True) -> recon.PetScanner:
    """A tiny TOF ring, so that each test runs in about a second on two cores.

    Its 25 TOF bins of 16.5 mm cover ±206 mm, the whole LOR plus three timing sigmas.
    """
    return recon.PetScanner(
        n_rings=4, crystals_per_ring=96, radius_mm=120.0, ring_spacing_mm=4.0,
        tof=recon.Tof(fwhm_ps=400.0, n_bins=25, bin_width_ps=110.0) if tof else None,
    )  # fmt: skip


def _phantom(value: float = RATE):
    grid = recon.ImageGrid((4, 36, 36), 4.0)
    activity = uniform_cylinder(grid, radius_mm=50, length_mm=16, value=value)
    mu = (0.0096 * (activity > 0.5 * value)).astype(np.float32)  # water at 511 keV
    return grid, activity, mu


def _central(grid):
    return uniform_cylinder(grid, radius_mm=35, length_mm=16) > 0.999


def _whole(grid):
    return uniform_cylinder(grid, radius_mm=65, length_mm=16) > 0


def test_attenuation_corrected_uniform_cylinder_is_uniform():
    grid, activity, mu = _phantom()
    model = recon.PetSinogramModel(
        _scanner(tof=False), grid, mu_map=mu, frame_duration_s=60.0, device="cpu"
    )
    counts = model.forward(activity)
    image = np.asarray(recon.osem(model, counts, iterations=8, subsets=6, progress=False))
    roi = image[_central(grid)]
    assert roi.mean() == pytest.approx(RATE, rel=0.01)
    assert roi.std() / roi.mean() < 0.02  # coefficient of variation in the central ROI


def test_without_attenuation_correction_the_centre_is_cold():
    grid, activity, mu = _phantom()
    truth = recon.PetSinogramModel(
        _scanner(tof=False), grid, mu_map=mu, frame_duration_s=60.0, device="cpu"
    )
    naive = recon.PetSinogramModel(_scanner(tof=False), grid, frame_duration_s=60.0, device="cpu")
    image = np.asarray(
        recon.osem(naive, truth.forward(activity), iterations=4, subsets=6, progress=False)
    )
    assert image[_central(grid)].mean() < 0.7 * RATE


def _events(model, activity, duration_s, seed=0, **kwargs):
    return simulate_listmode(model, activity, duration_s, np.random.default_rng(seed), **kwargs)


def _scaled_to(model, activity, n_events):
    """The phantom scaled so that ``model`` expects about ``n_events`` prompts."""
    return activity * np.float32(n_events / float(model.forward(activity).sum()))


def test_listmode_and_sinogram_mlem_agree():
    """LM-MLEM of the events equals sinogram MLEM of their histogram: the same EM update."""
    grid, activity, mu = _phantom()
    scanner = _scanner()
    sino_model = recon.PetSinogramModel(
        scanner, grid, mu_map=mu, frame_duration_s=30.0, device="cpu"
    )
    events = _events(sino_model, activity, 30.0)
    assert 2e4 < events.n_events < 5e5
    counts, dropped = recon.pet.histogram(events, sino_model.layout)
    assert dropped == 0
    lm_model = recon.PetListmodeModel(scanner, grid, mu_map=mu, device="cpu")
    lm = recon.lm_osem(
        lm_model, events, iterations=2, subsets=1, frame_duration_s=30.0, progress=False
    )
    sino = recon.mlem(sino_model, counts, iterations=2, progress=False)
    a, b = np.asarray(lm), np.asarray(sino)
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-4


def test_tof_converges_faster_than_non_tof():
    grid, activity, mu = _phantom()
    hot = uniform_cylinder(
        grid, radius_mm=15, length_mm=16, value=3 * RATE, centre_xyz_mm=(25, 0, 0)
    )
    activity = np.maximum(activity, hot)
    errors = {}
    for use_tof in (False, True):
        model = recon.PetSinogramModel(
            _scanner(), grid, mu_map=mu, frame_duration_s=60.0, use_tof=use_tof, device="cpu"
        )
        history = []

        def record(state, history=history):
            if state.subset == state.n_subsets - 1:
                history.append(np.linalg.norm(state.image - activity) / np.linalg.norm(activity))

        recon.osem(
            model, model.forward(activity), iterations=3, subsets=4, callback=record, progress=False
        )
        errors[use_tof] = history
    assert all(t < n for t, n in zip(errors[True], errors[False], strict=True)), errors


@pytest.mark.parametrize("isotope", ["Rb-82", "C-11"])
def test_short_lived_isotope_recovered_at_reference_time(isotope):
    """A 5-minute acquisition with decay between events; activity at the scan start within 1%."""
    grid, activity, mu = _phantom()
    scanner = _scanner()
    simulator = recon.PetSinogramModel(
        scanner, grid, mu_map=mu, isotope=isotope, frame_duration_s=300.0, device="cpu"
    )
    activity = _scaled_to(simulator, activity, 150_000)  # 0.3% Poisson noise on the total
    events = _events(simulator, activity, 300.0, seed=1)
    half_life = get_isotope(isotope).half_life_s
    times = np.asarray(events.time_ms) / 1000.0
    if isotope == "Rb-82":  # the events really do thin out with time
        assert (times < 75).sum() > 1.6 * ((times >= 75) & (times < 150)).sum()
    model = recon.PetListmodeModel(scanner, grid, mu_map=mu, isotope=isotope, device="cpu")
    image = np.asarray(
        recon.lm_osem(
            model, events, iterations=2, subsets=4, frame_duration_s=300.0, progress=False
        )
    )
    whole = _whole(grid)
    assert image[whole].sum() == pytest.approx(activity[whole].sum(), rel=0.01)

    # Ignoring decay reports the time-averaged activity (a third of it for Rb-82).
    naive = recon.PetListmodeModel(scanner, grid, mu_map=mu, device="cpu")
    biased = np.asarray(
        recon.lm_osem(
            naive, events, iterations=2, subsets=4, frame_duration_s=300.0, progress=False
        )
    )
    fraction = mean_activity_fraction(half_life, 0.0, 300.0, 0.0)
    branching = get_isotope(isotope).positron_fraction
    assert biased[whole].sum() == pytest.approx(
        activity[whole].sum() * fraction * branching, rel=0.01
    )


def test_dynamic_frames_are_each_decay_corrected():
    grid, activity, mu = _phantom()
    scanner = _scanner()
    simulator = recon.PetSinogramModel(
        scanner, grid, mu_map=mu, isotope="C-11", frame_duration_s=1800.0, device="cpu"
    )
    activity = _scaled_to(simulator, activity, 250_000)
    events = _events(simulator, activity, 1800.0, seed=2)
    model = recon.PetListmodeModel(scanner, grid, mu_map=mu, isotope="C-11", device="cpu")
    frames = [(0.0, 300.0), (300.0, 600.0), (900.0, 900.0)]
    results = recon.reconstruct_frames(
        model, events, frames, iterations=2, subsets=2, progress=False
    )
    half_life = get_isotope("C-11").half_life_s
    whole = _whole(grid)
    counts_so_far = 0
    for (start, duration), result in zip(frames, results, strict=True):
        assert (result.start_s, result.duration_s) == (start, duration)
        assert result.decay_factor == pytest.approx(
            decay_correction_factor(half_life, start, duration, 0.0)
        )
        assert np.asarray(result.image)[whole].sum() == pytest.approx(
            activity[whole].sum(), rel=0.02
        )
        counts_so_far += result.n_prompts
    # Later frames see fewer decays per second.
    assert results[0].n_prompts / 300.0 > 1.5 * results[2].n_prompts / 900.0
    assert counts_so_far == events.n_events


def test_randoms_and_scatter_as_additive_terms():
    """Prompts with randoms and scatter: modelling them removes the bias they cause."""
    grid, activity, mu = _phantom(value=10 * RATE)
    scanner = _scanner(tof=False)
    model = recon.PetSinogramModel(scanner, grid, mu_map=mu, frame_duration_s=60.0, device="cpu")
    layout = model.layout
    singles = np.full(scanner.n_crystals, 3.0e3)
    randoms = recon.pet.randoms_from_singles(singles, 4.0, 60.0, layout)
    scatter = 0.3 * float(model.forward(activity).mean()) * np.ones(layout.shape, np.float32)
    events = _events(model, activity, 60.0, seed=3, additive=randoms + scatter, delayed=randoms)
    prompts, _ = recon.pet.histogram(events, layout)
    estimate = recon.pet.randoms_from_delayeds(events, layout)
    assert estimate.sum() == pytest.approx(events.delayeds().n_events)
    corrected = recon.PetSinogramModel(
        scanner,
        grid,
        mu_map=mu,
        randoms=estimate,
        scatter=scatter,
        frame_duration_s=60.0,
        device="cpu",
    )
    good = np.asarray(recon.osem(corrected, prompts, iterations=4, subsets=6, progress=False))
    bad = np.asarray(recon.osem(model, prompts, iterations=4, subsets=6, progress=False))
    roi = _central(grid)
    assert good[roi].mean() == pytest.approx(10 * RATE, rel=0.05)
    assert bad[roi].mean() > 1.1 * 10 * RATE


def test_normalisation_per_crystal_is_corrected():
    grid, activity, mu = _phantom()
    scanner = _scanner(tof=False)
    efficiency = np.random.default_rng(4).uniform(0.7, 1.3, scanner.n_crystals)
    model = recon.PetSinogramModel(
        scanner, grid, mu_map=mu, normalization=efficiency, frame_duration_s=60.0, device="cpu"
    )
    image = np.asarray(
        recon.osem(model, model.forward(activity), iterations=8, subsets=6, progress=False)
    )
    roi = image[_central(grid)]
    assert roi.mean() == pytest.approx(RATE, rel=0.01)
    assert roi.std() / roi.mean() < 0.02


# ---------------------------------------------------------------------------- bad input
def _lm_model():
    grid, activity, mu = _phantom()
    return recon.PetListmodeModel(_scanner(), grid, mu_map=mu, device="cpu")


def _ev(a, b, tof=None, t=None):
    n = len(a)
    return recon.ListmodeEvents(
        crystal_a=np.asarray(a, np.int32), crystal_b=np.asarray(b, np.int32),
        tof_bin=None if tof is None else np.asarray(tof, np.int16),
        time_ms=np.arange(n, dtype=float) if t is None else np.asarray(t, float),
    )  # fmt: skip


def test_bad_listmode_input_gives_clear_errors():
    model = _lm_model()
    with pytest.raises(recon.InputError, match="crystal"):
        recon.lm_osem(model, _ev([0, 5000], [50, 60]), progress=False)
    with pytest.raises(recon.InputError, match="TOF"):
        recon.lm_osem(model, _ev([0, 1], [50, 60], tof=[0, 40]), progress=False)
    with pytest.raises(recon.InputError, match="empty|no events"):
        recon.lm_osem(model, _ev([], []), progress=False)
    with pytest.raises(recon.InputError, match="order"):
        recon.lm_osem(model, _ev([0, 1], [50, 60], t=[5.0, 1.0]), progress=False)
    with pytest.raises(recon.InputError, match="outside the frame"):
        recon.lm_osem(
            model, _ev([0, 1], [50, 60]), frame_start_s=10.0, frame_duration_s=1.0, progress=False
        )


def test_mu_map_on_another_grid_is_rejected():
    grid, activity, mu = _phantom()
    with pytest.raises(recon.GeometryError, match="mu-map"):
        recon.PetSinogramModel(_scanner(), grid, mu_map=mu[:, :-1], device="cpu")
    other = recon.Image(mu, recon.ImageGrid(grid.shape, 5.0))
    with pytest.raises(recon.GeometryError, match="another grid"):
        recon.PetListmodeModel(_scanner(), grid, mu_map=other, device="cpu")
    with pytest.raises(recon.InputError, match="1/cm"):
        recon.PetListmodeModel(_scanner(), grid, mu_map=mu * 100, device="cpu")


def test_sinogram_data_of_wrong_shape_is_rejected():
    grid, activity, mu = _phantom()
    model = recon.PetSinogramModel(_scanner(), grid, device="cpu")
    with pytest.raises(recon.InputError, match="shape"):
        recon.osem(model, np.ones(model.layout.shape, np.float32), progress=False)
    with pytest.raises(recon.InputError, match="normalization"):
        recon.PetSinogramModel(_scanner(), grid, normalization=np.ones(7), device="cpu")


def test_events_outside_the_layout_are_left_out():
    """The sensitivity image covers only the layout's LORs, so events on other LORs are dropped
    (keeping them would bias the image), and per-event additive rates follow the kept events."""
    grid, activity, mu = _phantom()
    scanner = _scanner()
    model = recon.PetListmodeModel(scanner, grid, max_ring_difference=1, device="cpu")
    n = scanner.crystals_per_ring
    events = _ev([0, 0, 3 * n + 5], [48, n + 40, 60], tof=[0, 1, 2])  # ring differences 0, 1, 3
    prepared = model.prepare(events)
    assert prepared["n"] == 2 and prepared["n_given"] == 3
    assert list(prepared["kept"]) == [True, True, False]
    image = recon.lm_osem(model, events, subsets=1, additive_rate=np.ones(3), progress=False)
    assert image.info["n_prompts"] == 2


# ---------------------------------------------------------------------------- time laws
def _truncated_exponential_mean_and_sd(k: float, duration: float) -> tuple[float, float]:
    """Mean and standard deviation of a time with density ∝ exp(−k t) on [0, duration]."""
    q = np.exp(-k * duration)
    mean = 1.0 / k - duration * q / (1.0 - q)
    second = 2.0 / k**2 - duration * (duration + 2.0 / k) * q / (1.0 - q)
    return mean, float(np.sqrt(second - mean**2))


@pytest.mark.parametrize("law, power", [("decay", 1), ("decay_squared", 2)])
def test_additive_prompts_and_delayeds_follow_the_same_time_law(law, power):
    """With no activity every prompt is an additive one: prompts and delayeds both have the mean
    time of a rate ∝ A(t)^power, to within the standard error of their own counts."""
    grid, _, mu = _phantom()
    scanner = _scanner(tof=False)
    duration = 1800.0
    model = recon.PetSinogramModel(
        scanner, grid, isotope="C-11", frame_duration_s=duration, device="cpu"
    )
    randoms = np.full(model.layout.shape, 20_000 / np.prod(model.layout.shape))
    events = _events(
        model, np.zeros(grid.shape, np.float32), duration, seed=5, additive=randoms,
        delayed=randoms, additive_time_law=law,
    )  # fmt: skip
    k = power * get_isotope("C-11").decay_constant_per_s
    mean, sd = _truncated_exponential_mean_and_sd(k, duration)
    for kind in (events.prompts(), events.delayeds()):
        times = np.asarray(kind.time_ms) / 1000.0
        assert 18_000 < times.size < 22_000
        assert abs(times.mean() - mean) < 4.0 * sd / np.sqrt(times.size)
    # The other law's mean is far outside that spread: the test tells the laws apart.
    other, _ = _truncated_exponential_mean_and_sd((3 - power) * k / power, duration)
    assert abs(other - mean) > 20.0 * sd / np.sqrt(20_000)


def test_unknown_time_law_and_misshapen_randoms_are_refused():
    grid, activity, mu = _phantom()
    model = recon.PetSinogramModel(_scanner(), grid, frame_duration_s=1.0, device="cpu")
    with pytest.raises(recon.InputError, match="additive_time_law"):
        _events(model, activity, 1.0, additive_time_law="linear")
    with pytest.raises(recon.InputError, match="additive has shape"):
        _events(model, activity, 1.0, additive=np.ones(model.layout.shape))  # not TOF-shaped
    with pytest.raises(recon.InputError, match="delayed"):
        _events(model, activity, 1.0, delayed=-np.ones(model.layout.shape))


def test_dynamic_frames_with_decay_and_randoms_agree_within_their_poisson_spread():
    """C-11 over 30 minutes (the activity falls to 36%) with randoms at 20% of the trues, each
    frame corrected with randoms from its own delayeds, as ``recon pet --frames`` does.

    Each frame's ``Σ_j g_j x_j`` (``g`` the geometric sensitivity: the expected true rate at the
    reference time) is what EM fixes to the frame's prompts ``P`` minus its randoms estimate,
    whose total is the frame's delayeds ``D``: Poisson variance ``P + D``, plus at most
    ``n · D · (1 − D/P)`` as the last of the ``n`` subsets scales the trues among its own ``P/n``
    prompts, a binomial share, by ``n``. Any two frames must agree within three times their
    combined spread. (With the delayeds drawn uniformly in time while the prompt randoms
    decayed, as before, the first frame came out 4% above the last: 4 times that spread.)
    """
    grid, activity, mu = _phantom()
    scanner = _scanner()
    duration = 1800.0
    simulator = recon.PetSinogramModel(
        scanner, grid, mu_map=mu, isotope="C-11", frame_duration_s=duration, device="cpu"
    )
    activity = _scaled_to(simulator, activity, 150_000)
    layout = simulator.layout
    randoms = recon.pet.randoms_from_singles(np.ones(scanner.n_crystals), 4.0, duration, layout)
    randoms = randoms * (0.2 * 150_000 / randoms.sum())
    n_tof = scanner.tof.n_bins
    additive = np.repeat(randoms[..., None] / n_tof, n_tof, axis=-1)
    events = _events(
        simulator, activity, duration, seed=6, additive=additive, delayed=randoms,
        additive_time_law="decay_squared",
    )  # fmt: skip
    model = recon.PetListmodeModel(scanner, grid, mu_map=mu, isotope="C-11", device="cpu")
    geometric = model.geometric_sensitivity().astype(np.float64)
    truth = float((geometric * activity).sum())
    values, spreads = [], []
    for start, length in [(0.0, 300.0), (300.0, 600.0), (900.0, 900.0)]:
        frame = events.time_window(start * 1000.0, (start + length) * 1000.0)
        prompts, delayeds = frame.prompts().n_events, frame.delayeds().n_events
        estimate = recon.pet.randoms_from_delayeds(frame, layout)
        rate = model.additive_rate(frame, estimate, length)
        image = recon.lm_osem(
            model, frame, iterations=3, subsets=4, additive_rate=rate, frame_start_s=start,
            frame_duration_s=length, progress=False,
        )  # fmt: skip
        values.append(float((geometric * np.asarray(image)).sum()) / truth)
        variance = prompts + delayeds + 4 * delayeds * (1.0 - delayeds / prompts)  # 4 subsets
        spreads.append(np.sqrt(variance) / (prompts - delayeds))
    for f in range(3):
        for g in range(f + 1, 3):
            combined = np.hypot(spreads[f], spreads[g])
            assert abs(values[f] - values[g]) < 3.0 * combined, (values, spreads)


def test_listmode_sensitivity_is_back_projected_once_per_model_and_scaled_per_frame():
    """As the PetListmodeModel docstring says: one geometric back projection per model object,
    each frame's image that times its own time factor (duration × mean decay × branching)."""
    grid, _, mu = _phantom()
    model = recon.PetListmodeModel(_scanner(), grid, mu_map=mu, isotope="C-11", device="cpu")
    calls = []
    back = model.nontof_projector.back

    def counted(*args, **kwargs):
        calls.append(1)
        return back(*args, **kwargs)

    model.nontof_projector.back = counted
    early, late = model.frame_sensitivity(0.0, 60.0), model.frame_sensitivity(1200.0, 300.0)
    n_calls = len(calls)
    assert n_calls >= 1
    model.frame_sensitivity(600.0, 60.0)
    assert len(calls) == n_calls  # nothing back-projected again for a third frame
    iso = get_isotope("C-11")
    factor = 300.0 * mean_activity_fraction(iso.half_life_s, 1200.0, 300.0, 0.0)
    factor /= 60.0 * mean_activity_fraction(iso.half_life_s, 0.0, 60.0, 0.0)
    assert late.sum() / early.sum() == pytest.approx(factor, rel=1e-5)


# ---------------------------------------------------------------------------- bounded memory
def test_events_are_stored_compactly_and_projected_in_chunks_with_the_same_result():
    """Prepared events hold 14 bytes each (crystal ids, TOF bin, factor); endpoints exist only
    per chunk. Chunking (here 1000 events: many chunks, a ragged last one) changes nothing: the
    forward and back projections and an LM-OSEM image equal those of one chunk."""
    grid, activity, mu = _phantom()
    scanner = _scanner()
    simulator = recon.PetSinogramModel(scanner, grid, mu_map=mu, device="cpu")
    events = _events(simulator, _scaled_to(simulator, activity, 7_500), 1.0, seed=4)
    common = dict(mu_map=mu, isotope="F-18", device="cpu")
    whole = recon.PetListmodeModel(scanner, grid, **common)
    chunked = recon.PetListmodeModel(scanner, grid, chunk_lors=1000, **common)
    prep_whole, prep_chunked = whole.prepare(events), chunked.prepare(events)
    n = prep_whole["n"]
    assert n > 5 * chunked.chunk_events
    arrays = [prep_whole[k] for k in ("crystal_a", "crystal_b", "tof_bin", "factor")]
    assert sum(a.nbytes for a in arrays) == 14 * n
    assert "xstart" not in prep_whole and "xend" not in prep_whole
    np.testing.assert_array_equal(prep_chunked["factor"], prep_whole["factor"])
    x = np.random.default_rng(1).random(grid.shape, dtype=np.float32)
    np.testing.assert_array_equal(
        chunked.forward_events(x, prep_chunked), whole.forward_events(x, prep_whole)
    )
    values = np.random.default_rng(2).random(n, dtype=np.float32)
    np.testing.assert_allclose(
        chunked.back_events(values, prep_chunked), whole.back_events(values, prep_whole),
        rtol=1e-5, atol=1e-6 * float(whole.back_events(values, prep_whole).max()),
    )  # fmt: skip
    a = recon.lm_osem(whole, events, iterations=1, subsets=3, progress=False)
    b = recon.lm_osem(chunked, events, iterations=1, subsets=3, progress=False)
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-4 * a.data.max())


def test_decay_per_event_needs_event_times():
    model = recon.PetListmodeModel(_scanner(), _phantom()[0], isotope="F-18", device="cpu")
    events = recon.ListmodeEvents(
        crystal_a=np.array([0, 1], np.int32), crystal_b=np.array([48, 49], np.int32)
    )
    with pytest.raises(recon.InputError, match="no times"):
        model.prepare(events)
