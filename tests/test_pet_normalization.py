"""PET normalisation: the component model, its estimation from a calibration scan, its file.

The true normalisation of every test is drawn at random (fixed seeds): lognormal crystal
efficiencies of 15 % spread, a transaxial block pattern of 8 crystals times a radial profile,
and ring-pair factors with an alternating ring pattern (plane efficiencies). Calibration scans
are simulated from it, with and without Poisson noise, and the estimate is compared with the
truth.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import recon
from recon.errors import GeometryError, InputError
from recon.io import read_normalization, write_normalization
from recon.pet import (
    Normalization,
    PetListmodeModel,
    PetScanner,
    PetSinogramModel,
    SinogramLayout,
    cylinder_sinogram,
    estimate_normalization,
)
from recon.simulate.phantoms import uniform_cylinder

BLOCK = 8  # transaxial crystals per block of the simulated scanners
MU_WATER = 0.0096  # 1/mm at 511 keV (NIST XCOM, as recon.pet.norm_estimation cites)


def _gauged(efficiency: np.ndarray) -> np.ndarray:
    """Efficiencies rescaled to mean 1 per ring and per in-block position.

    The split between crystal efficiencies and geometric factors is not unique (a ring or
    in-block pattern of the efficiencies can move into the ring-pair or transaxial factors), so
    the truth is put in the gauge the estimate reports before the two are compared.
    """
    eff = efficiency.copy()
    n_rings = eff.shape[0]
    for _ in range(100):
        eff /= eff.mean(axis=1, keepdims=True)
        by_position = eff.reshape(n_rings, -1, BLOCK)
        eff = (by_position / by_position.mean(axis=(0, 1))).reshape(n_rings, -1)
    return eff


def _true_normalization(scanner: PetScanner, layout: SinogramLayout, seed: int) -> Normalization:
    rng = np.random.default_rng(seed)
    efficiency = _gauged(rng.lognormal(0.0, 0.15, (scanner.n_rings, scanner.crystals_per_ring)))
    k = np.arange(layout.n_radial) - (layout.n_radial - 1) // 2
    position = np.arange(BLOCK)
    block = 1.0 + 0.15 * np.cos(2 * np.pi * (position + 0.5) / BLOCK)
    radial = 1.0 - 0.25 * (k / k.max()) ** 2
    ring = 1.0 + 0.1 * (-1.0) ** np.arange(scanner.n_rings)
    axial = np.outer(ring, ring) * (1 + 0.03 * rng.standard_normal((scanner.n_rings,) * 2))
    return Normalization(
        scanner, efficiency, transaxial=radial[:, None] * block[None, :], axial=axial
    )


def _small_ring() -> PetScanner:
    """A non-TOF ring of 8 x 96 crystals (12 blocks of 8): a reconstruction takes seconds."""
    return PetScanner(n_rings=8, crystals_per_ring=96, radius_mm=120.0, ring_spacing_mm=4.0)


# ---------------------------------------------------------------------------------- the source
def test_cylinder_sinogram_matches_chords_computed_by_hand():
    scanner = _small_ring()
    layout = SinogramLayout(scanner)
    radius, mu = 61.0, MU_WATER  # not 60 mm: a LOR of this ring is tangent to that
    sino = cylinder_sinogram(layout, radius, mu_per_mm=mu)
    # Direct planes: a LOR at distance t from the axis crosses a chord 2·sqrt(r² − t²).
    t = np.abs(layout.radial_offsets_mm)
    chord = 2.0 * np.sqrt(np.clip(radius**2 - t**2, 0.0, None))
    for view in (0, 7, 30):
        # (the layout's endpoints are float32: relative precision ~1e-7)
        np.testing.assert_allclose(sino[0, view], chord * np.exp(-mu * chord), rtol=1e-5, atol=1e-3)
    # An oblique plane lengthens the chord by the LOR's slope: 1/cos of its polar angle, with
    # the endpoints taken on the crystal ring.
    plane = int(np.flatnonzero(layout.plane_ring_difference == 7)[0])
    ring_a, ring_b = layout.plane_rings[plane]
    dz = (ring_b - ring_a) * scanner.ring_spacing_mm
    half = np.sqrt(scanner.crystal_radius_mm**2 - t**2)  # half the transaxial LOR length
    slope = np.sqrt(1.0 + (dz / (2 * half)) ** 2)
    np.testing.assert_allclose(
        sino[plane, 3], chord * slope * np.exp(-mu * chord * slope), rtol=1e-5, atol=1e-3
    )
    # A short cylinder: direct planes outside it see nothing.
    short = cylinder_sinogram(layout, radius, length_mm=4.0, mu_per_mm=0.0)
    inside = layout.plane_rings[:, 0] == layout.plane_rings[:, 1]
    z = scanner.ring_z_mm[layout.plane_rings[:, 0]]
    assert np.all(short[inside & (np.abs(z) > 2.0)] == 0)


def test_cylinder_sinogram_agrees_with_the_projector():
    """The closed form against Joseph line integrals through a voxelised attenuating cylinder."""
    scanner = _small_ring()
    grid = recon.ImageGrid((8, 64, 64), (4.0, 2.5, 2.5))  # z: one slice per ring
    activity = uniform_cylinder(grid, radius_mm=60.0, length_mm=200.0)
    model = PetSinogramModel(
        scanner, grid, mu_map=(MU_WATER * activity).astype(np.float32), device="cpu"
    )
    projected = np.asarray(model.forward(activity), dtype=np.float64)
    closed = cylinder_sinogram(model.layout, 60.0, mu_per_mm=MU_WATER)
    # Every plane (the grid covers the scanner's axial extent and the cylinder fills it), on
    # LORs whose chord is long enough (> 30 mm) that the voxelised edge is a small part of it.
    long = closed > 30.0 * np.exp(-MU_WATER * 30.0)
    ratio = projected[long] / closed[long]
    assert np.median(ratio) == pytest.approx(1.0, abs=0.002)
    assert np.percentile(np.abs(ratio - 1.0), 95) < 0.015


def test_bad_cylinders_are_refused():
    layout = SinogramLayout(_small_ring())
    with pytest.raises(GeometryError, match="radius_mm"):
        cylinder_sinogram(layout, -5.0)
    with pytest.raises(GeometryError, match="mu_per_mm"):
        cylinder_sinogram(layout, 50.0, mu_per_mm=float("nan"))
    with pytest.raises(GeometryError, match="no line of response"):
        cylinder_sinogram(layout, 10.0, centre_mm=(0.0, 0.0, 500.0), length_mm=10.0)


# ---------------------------------------------------------------------------------- estimation
def _calibration(seed: int = 3):
    """The small preset (8 x 128 crystals, 16 blocks), a 100 mm water cylinder, the truth."""
    scanner = PetScanner.preset("small")
    layout = SinogramLayout(scanner, n_radial=65)
    truth = _true_normalization(scanner, layout, seed)
    expected = cylinder_sinogram(layout, 100.0, mu_per_mm=MU_WATER)
    return layout, truth, expected, expected * truth.bin_factors(layout)


def test_noiseless_calibration_recovers_every_component():
    layout, truth, expected, data = _calibration()
    estimate = estimate_normalization(data, expected, layout, crystals_per_block=BLOCK)
    assert estimate.info["method"] == "ml" and estimate.info["converged"]
    np.testing.assert_allclose(estimate.crystal_efficiency, truth.crystal_efficiency, rtol=5e-4)
    # Geometric factors are relative (mean 1 over the measured ones): compare shapes. Radial
    # bins outside the 100 mm cylinder are not measured and are extrapolated.
    measured = np.setdiff1d(np.arange(layout.n_radial), estimate.info["extrapolated_radial_bins"])
    assert 0 < len(estimate.info["extrapolated_radial_bins"]) < 10
    ratio = estimate.transaxial[measured] / truth.transaxial[measured]
    np.testing.assert_allclose(ratio / ratio.mean(), 1.0, rtol=5e-4)
    ratio = estimate.axial / truth.axial
    np.testing.assert_allclose(ratio / ratio.mean(), 1.0, rtol=5e-4)
    # The data over the normalised model is the one global scale.
    lors = expected > 0
    fitted = estimate.bin_factors(layout)[lors] * expected[lors] * estimate.info["global_scale"]
    np.testing.assert_allclose(fitted, data[lors], rtol=1e-3)


def test_poisson_calibration_recovers_efficiencies_within_two_percent():
    """About 48 million true counts (200 per LOR through the cylinder, ~47 000 per crystal fan,
    so 0.46 % Poisson precision per efficiency): every crystal within 2 %."""
    layout, truth, expected, data = _calibration()
    scale = 200.0 / data[expected > 0].mean()
    counts = np.random.default_rng(11).poisson(data * scale).astype(np.float64)
    assert 4.5e7 < counts.sum() < 5.2e7
    estimate = estimate_normalization(counts, expected, layout, crystals_per_block=BLOCK)
    error = estimate.crystal_efficiency / truth.crystal_efficiency - 1.0
    assert np.abs(error).max() < 0.02
    precision = estimate.info["efficiency_relative_error"]
    assert 0.003 < precision < 0.006
    assert np.std(error) < 1.5 * precision  # the spread is the Poisson one, no bias on top
    # Fan sums alone are biased by the block pattern: the reason ML is the default.
    fansum = estimate_normalization(
        counts, expected, layout, crystals_per_block=BLOCK, method="fansum"
    )
    fansum_error = fansum.crystal_efficiency / truth.crystal_efficiency - 1.0
    assert np.abs(fansum_error).max() > 2 * np.abs(error).max()


def test_rotating_rod_calibration_through_the_projector():
    """A 10 mm rod at 70 mm from the axis, scanned at 12 angles: the expected sinogram is the
    unnormalised model's forward projection of the rod positions; LORs that miss the rod carry
    no information and the radial bins beyond it are extrapolated, as recorded."""
    scanner = _small_ring()
    layout = SinogramLayout(scanner)
    truth = _true_normalization(scanner, layout, seed=8)
    grid = recon.ImageGrid((8, 40, 40), 4.0)
    angles = np.arange(12) * 2 * np.pi / 12
    rod = sum(
        uniform_cylinder(
            grid, radius_mm=5.0, length_mm=100.0,
            centre_xyz_mm=(70.0 * np.cos(a), 70.0 * np.sin(a), 0.0),
        )
        for a in angles
    )  # fmt: skip
    expected = np.asarray(PetSinogramModel(scanner, grid, device="cpu").forward(rod), np.float64)
    truth_model = PetSinogramModel(scanner, grid, normalization=truth, device="cpu")
    data = np.asarray(truth_model.forward(rod), dtype=np.float64)
    estimate = estimate_normalization(
        data, expected, layout, crystals_per_block=BLOCK, source="rotating rod"
    )
    np.testing.assert_allclose(estimate.crystal_efficiency, truth.crystal_efficiency, rtol=2e-3)
    outside = np.abs(layout.radial_offsets_mm) > 80.0  # beyond the rod's reach
    assert set(np.flatnonzero(outside)) <= set(estimate.info["extrapolated_radial_bins"])
    lors = expected > 0
    ratio = estimate.bin_factors(layout)[lors] / truth.bin_factors(layout)[lors]
    np.testing.assert_allclose(ratio / ratio.mean(), 1.0, rtol=2e-3)


def test_dead_crystal_is_reported_and_kept_at_zero(tmp_path):
    layout, truth, expected, data = _calibration()
    dead = 3 * 128 + 17
    ca, cb = layout.crystals_of(
        np.arange(layout.n_planes)[:, None, None], np.arange(layout.n_views)[None, :, None],
        np.arange(layout.n_radial)[None, None, :],
    )  # fmt: skip
    data = np.where((ca == dead) | (cb == dead), 0.0, data)
    estimate = estimate_normalization(data, expected, layout, crystals_per_block=BLOCK)
    assert estimate.info["dead_crystals"] == [dead]
    assert estimate.crystal_efficiency.reshape(-1)[dead] == 0
    live = np.ones(estimate.crystal_efficiency.size, bool)
    live[dead] = False
    ratio = (
        estimate.crystal_efficiency.reshape(-1)[live] / truth.crystal_efficiency.reshape(-1)[live]
    )
    np.testing.assert_allclose(ratio / ratio.mean(), 1.0, rtol=2e-3)
    back = read_normalization(write_normalization(tmp_path / "n.npz", estimate))
    assert back.info["dead_crystals"] == [dead]


def test_estimation_refuses_bad_input():
    layout, _, expected, data = _calibration()
    with pytest.raises(InputError, match="shape"):
        estimate_normalization(data[:-1], expected, layout)
    with pytest.raises(InputError, match="NaN"):
        estimate_normalization(np.where(data > 1, np.nan, data), expected, layout)
    with pytest.raises(InputError, match="crystals_per_block"):
        estimate_normalization(data, expected, layout, crystals_per_block=7)
    with pytest.raises(InputError, match="method"):
        estimate_normalization(data, expected, layout, method="magic")
    with pytest.raises(InputError, match="no counts"):
        estimate_normalization(np.zeros_like(data), expected, layout)
    # A 4 mm slab at the first ring, seen through ring differences up to 1 only: the crystals
    # of the other rings have no LOR through it.
    near = SinogramLayout(layout.scanner, max_ring_difference=1)
    z0 = float(layout.scanner.ring_z_mm[0])
    slab = cylinder_sinogram(near, 100.0, length_mm=4.0, centre_mm=(0.0, 0.0, z0))
    with pytest.raises(InputError, match="no line of response through the calibration"):
        estimate_normalization(np.ones(near.shape), slab, near)


# ---------------------------------------------------------------------------------- ring artefacts
def _profiles(image: np.ndarray, grid: recon.ImageGrid) -> tuple[np.ndarray, np.ndarray]:
    """Relative deviations from the mean of the axial profile (slice means within r < 48 mm)
    and of the radial profile (means over 8 mm annuli out to 48 mm)."""
    _, y, x = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    centre = (np.array(grid.shape) - 1) / 2.0
    r = np.hypot((y - centre[1]) * grid.voxel_size[1], (x - centre[2]) * grid.voxel_size[2])
    inside = r[0] < 48.0
    axial = np.array([plane[inside].mean() for plane in image])
    edges = np.arange(0.0, 49.0, 8.0)
    radial = np.array(
        [image[(r >= a) & (r < b)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]
    )
    return axial / axial.mean() - 1.0, radial / radial.mean() - 1.0


def test_normalised_reconstruction_has_no_ring_artefact():
    """Estimate from a noisy calibration scan of a 76 mm water cylinder (simulated through the
    projector with the true normalisation, ~14 million counts), then reconstruct a 60 mm uniform
    cylinder: flat within 3 % with the estimate, not flat without normalisation."""
    scanner = _small_ring()
    layout = SinogramLayout(scanner)
    truth = _true_normalization(scanner, layout, seed=7)
    grid = recon.ImageGrid((8, 40, 40), 4.0)
    rng = np.random.default_rng(5)

    phantom = uniform_cylinder(grid, radius_mm=76.0, length_mm=100.0)
    mu = (MU_WATER * phantom).astype(np.float32)
    scan = PetSinogramModel(scanner, grid, mu_map=mu, normalization=truth, device="cpu")
    mean = np.asarray(scan.forward(phantom), dtype=np.float64)
    counts = rng.poisson(mean * (100.0 / mean[mean > 0].mean())).astype(np.float64)
    expected = cylinder_sinogram(layout, 76.0, mu_per_mm=MU_WATER)
    estimate = estimate_normalization(counts, expected, layout, crystals_per_block=BLOCK)

    activity = uniform_cylinder(grid, radius_mm=60.0, length_mm=100.0)
    mu = (MU_WATER * activity).astype(np.float32)
    data = PetSinogramModel(scanner, grid, mu_map=mu, normalization=truth, device="cpu").forward(
        activity
    )
    for normalization, flat in ((estimate, True), (None, False)):
        model = PetSinogramModel(
            scanner, grid, mu_map=mu, normalization=normalization, device="cpu"
        )
        image = np.asarray(recon.osem(model, data, iterations=6, subsets=6, progress=False))
        axial, radial = _profiles(image, grid)
        if flat:
            assert np.abs(axial).max() < 0.03 and np.abs(radial).max() < 0.03
        else:  # the unnormalised reconstruction shows the ring pattern (the test can fail)
            assert np.abs(axial).max() > 0.06 and np.abs(radial).max() > 0.03


# ---------------------------------------------------------------------------------- models
def test_listmode_events_get_the_factor_of_their_sinogram_bin():
    scanner = _small_ring()
    layout = SinogramLayout(scanner)
    norm = _true_normalization(scanner, layout, seed=2)
    bins = norm.bin_factors(layout)
    rng = np.random.default_rng(9)
    plane = rng.integers(0, layout.n_planes, 500)
    view = rng.integers(0, layout.n_views, 500)
    radial = rng.integers(0, layout.n_radial, 500)
    ca, cb = layout.crystals_of(plane, view, radial)
    swap = rng.random(500) < 0.5  # events come in either crystal order
    ca, cb = np.where(swap, cb, ca), np.where(swap, ca, cb)
    # By hand from the components: the bin's canonical first crystal sets the block position.
    first = np.where(swap, cb, ca)
    second = np.where(swap, ca, cb)
    eff = norm.crystal_efficiency.reshape(-1)
    by_hand = (
        eff[ca] * eff[cb]
        * norm.transaxial[radial, (first % 96) % BLOCK]
        * norm.axial[first // 96, second // 96]
    )  # fmt: skip
    np.testing.assert_allclose(norm.lor_factors(ca, cb), by_hand, rtol=1e-5)
    np.testing.assert_allclose(norm.lor_factors(ca, cb), bins[plane, view, radial], rtol=1e-6)

    # The models: per-event m_i (P x)_i equals the sinogram's m (P x) of the event's bin.
    grid = recon.ImageGrid((8, 24, 24), 6.0)
    image = uniform_cylinder(grid, radius_mm=50.0, length_mm=100.0)
    sino = PetSinogramModel(scanner, grid, normalization=norm, device="cpu")
    listmode = PetListmodeModel(scanner, grid, normalization=norm, device="cpu")
    events = recon.ListmodeEvents(
        crystal_a=ca.astype(np.int32), crystal_b=cb.astype(np.int32),
        time_ms=np.zeros(500),
    )  # fmt: skip
    per_event = np.asarray(listmode.forward_events(image, listmode.prepare(events)))
    per_bin = np.asarray(sino.forward(image))[plane, view, radial]
    np.testing.assert_allclose(per_event, per_bin, rtol=2e-4, atol=1e-6 * per_bin.max())
    assert np.all(per_bin[np.abs(layout.radial_offsets_mm[radial]) < 40] > 0)


def test_models_refuse_a_normalization_they_exceed():
    scanner = _small_ring()
    narrow = Normalization(scanner, transaxial=np.ones((31, BLOCK)), max_ring_difference=3)
    grid = recon.ImageGrid((4, 16, 16), 6.0)
    with pytest.raises(InputError, match="max_ring_difference=3"):
        PetSinogramModel(scanner, grid, normalization=narrow, device="cpu")
    with pytest.raises(InputError, match="n_radial=49"):
        PetSinogramModel(scanner, grid, normalization=narrow, max_ring_difference=3, device="cpu")
    other = PetScanner(n_rings=8, crystals_per_ring=96, radius_mm=130.0, ring_spacing_mm=4.0)
    with pytest.raises(InputError, match="radius_mm"):
        PetListmodeModel(other, grid, normalization=Normalization(scanner), device="cpu")


def test_bad_components_are_refused():
    scanner = _small_ring()
    with pytest.raises(InputError, match="crystal_efficiency must have shape"):
        Normalization(scanner, np.ones(10))
    with pytest.raises(InputError, match="NaN"):
        Normalization(scanner, np.full(scanner.n_crystals, np.nan))
    with pytest.raises(InputError, match="divide"):
        Normalization(scanner, transaxial=np.ones((49, 7)))
    with pytest.raises(InputError, match="positive"):
        Normalization(scanner, transaxial=np.zeros((49, 8)))
    axial = np.ones((8, 8))
    with pytest.raises(InputError, match="0 beyond"):
        Normalization(scanner, axial=axial, max_ring_difference=2)


# ---------------------------------------------------------------------------------- the file
def _estimate_for_file():
    scanner = _small_ring()
    layout = SinogramLayout(scanner, max_ring_difference=5)
    truth = _true_normalization(scanner, SinogramLayout(scanner), seed=4)
    axial = np.where(np.abs(np.subtract.outer(np.arange(8), np.arange(8))) <= 5, truth.axial, 0.0)
    truth = Normalization(
        scanner, truth.crystal_efficiency, truth.transaxial, axial, max_ring_difference=5
    )
    expected = cylinder_sinogram(layout, 80.0)
    return estimate_normalization(
        expected * truth.bin_factors(layout), expected, layout, crystals_per_block=BLOCK,
        source="simulated 80 mm cylinder",
    )  # fmt: skip


def test_file_round_trip_and_its_content_read_independently(tmp_path):
    norm = _estimate_for_file()
    path = write_normalization(tmp_path / "norm.npz", norm)
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically, nothing left behind

    # Read with plain numpy, as another program would, against the documented members.
    with np.load(path, allow_pickle=False) as raw:
        assert str(raw["format"]) == "recon-pet-normalization" and int(raw["version"]) == 1
        scanner = json.loads(str(raw["scanner"]))
        assert (scanner["n_rings"], scanner["crystals_per_ring"]) == (8, 96)
        assert scanner["radius_mm"] == 120.0
        assert int(raw["max_ring_difference"]) == 5
        info = json.loads(str(raw["info"]))
        assert info["method"] == "ml" and info["source"] == "simulated 80 mm cylinder"
        eff, gt, ga = raw["crystal_efficiency"], raw["transaxial"], raw["axial"]
        assert eff.dtype == np.float32 and eff.shape == (8, 96)
        assert gt.shape == (49, BLOCK) and ga.shape == (8, 8)
        assert ga[0, 6] == 0 and ga[0, 5] > 0
    # A LOR by hand from the raw members: crystals 5 (ring 0) and 96·3 + 60 (ring 3); the
    # bin's canonical first crystal (from the layout) sets the in-block position and the row
    # of the ring-pair table.
    layout = SinogramLayout(norm.scanner, max_ring_difference=5)
    a, b = 5, 3 * 96 + 60
    plane, view, radial, swapped, valid = layout.bins_of(np.array([a]), np.array([b]))
    assert valid[0]
    first, second = (b, a) if swapped[0] else (a, b)
    by_hand = eff.ravel()[a] * eff.ravel()[b] * gt[radial[0], (first % 96) % BLOCK]
    by_hand *= ga[first // 96, second // 96]
    back = read_normalization(path, scanner=norm.scanner)
    assert back.lor_factors(np.array([a]), np.array([b]))[0] == pytest.approx(by_hand, rel=1e-6)
    np.testing.assert_array_equal(back.bin_factors(layout), norm.bin_factors(layout))
    assert back.info == json.loads(json.dumps(norm.info))


def _rewrite(path, target, **changes):
    with np.load(path, allow_pickle=False) as raw:
        members = {key: raw[key] for key in raw.files}
    for key, value in changes.items():
        if value is None:
            del members[key]
        else:
            members[key] = value
    np.savez(target, **members)
    return target


def test_bad_files_are_refused(tmp_path):
    norm = _estimate_for_file()
    good = write_normalization(tmp_path / "norm.npz", norm)
    other = PetScanner(n_rings=8, crystals_per_ring=96, radius_mm=140.0, ring_spacing_mm=4.0)
    with pytest.raises(InputError, match=r"made for scanner .*radius_mm 120 vs 140"):
        read_normalization(good, scanner=other)
    with pytest.raises(InputError, match="crystals_per_ring 96 vs 128"):
        read_normalization(good, scanner=PetScanner.preset("small"))
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated.npz"):
        read_normalization(truncated)
    cases = {
        "nan": ({"crystal_efficiency": np.full((8, 96), np.nan, np.float32)}, "NaN"),
        "shape": ({"crystal_efficiency": np.ones((8, 95), np.float32)}, "shape"),
        "transaxial": ({"transaxial": np.ones((49, 7), np.float32)}, "divide"),
        "axial": ({"axial": np.ones((8, 8), np.float32)}, "0 beyond"),
        "negative": ({"transaxial": -np.ones((49, 8), np.float32)}, "positive"),
        "version": ({"version": np.array(2)}, "version 2"),
        "format": ({"format": np.array("something-else")}, "format"),
        "missing": ({"crystal_efficiency": None}, "missing members"),
        "zero": ({"crystal_efficiency": np.zeros((8, 96), np.float32)}, "dead crystals"),
        "scanner": ({"scanner": np.array("{}")}, "scanner"),
        "info": ({"info": np.array("[1, 2]")}, "JSON object"),
    }
    for name, (changes, message) in cases.items():
        bad = _rewrite(good, tmp_path / f"{name}.npz", **changes)
        with pytest.raises(InputError, match=message) as caught:
            read_normalization(bad)
        assert f"{name}.npz" in str(caught.value)
    with pytest.raises(InputError, match="no such normalisation file"):
        read_normalization(tmp_path / "absent.npz")
    text = tmp_path / "text.npz"
    text.write_text("not an archive")
    with pytest.raises(InputError, match="not a recon normalisation file"):
        read_normalization(text)
    assert zipfile.is_zipfile(good)  # the good file is untouched by the failures
    with pytest.raises(InputError, match="JSON"):
        write_normalization(tmp_path / "x.npz", Normalization(other, info={"a": object()}))
