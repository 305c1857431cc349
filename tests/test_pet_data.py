"""PET data: scanner geometry, sinogram indexing, listmode events, histogramming, randoms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recon.errors import GeometryError, InputError
from recon.pet.listmode import ListmodeEvents, histogram
from recon.pet.randoms import randoms_from_delayeds, randoms_from_singles
from recon.pet.scanner import PetScanner
from recon.pet.sinogram import SinogramLayout
from recon.pet.tof import SPEED_OF_LIGHT_MM_PER_PS, Tof


def _tiny(n_rings: int = 3, crystals_per_ring: int = 8, tof: Tof | None = None) -> PetScanner:
    return PetScanner(
        n_rings=n_rings,
        crystals_per_ring=crystals_per_ring,
        radius_mm=100.0,
        ring_spacing_mm=4.0,
        tof=tof,
    )


def _all_bins(layout: SinogramLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(g.ravel() for g in np.indices(layout.shape))  # type: ignore[return-value]


# ------------------------------------------------------------------------------------ scanner


def test_dmi4_preset_matches_cited_figures():
    # Hsu et al., J Nucl Med 2017;58:1511: 25 mm deep crystals, 20 cm axial FOV, ~385 ps TOF.
    # STIR's description: 36 rings x 544 crystals, 5.52296 mm rings, 380.5 mm effective radius.
    s = PetScanner.preset("dmi4")
    assert (s.n_rings, s.crystals_per_ring, s.name) == (36, 544, "dmi4")
    assert s.crystal_depth_mm == 25.0
    assert s.crystal_radius_mm == pytest.approx(380.5)
    assert s.ring_spacing_mm == pytest.approx(5.52296)
    assert s.axial_fov_mm == pytest.approx(200.0, abs=2.0)
    assert s.tof is not None and s.tof.fwhm_ps == 385.0
    # TOF bins span the 4.9 ns coincidence window and the 70 cm transaxial FOV.
    assert s.tof.n_bins * s.tof.bin_width_ps == pytest.approx(4900.0, abs=5.0)
    assert s.tof.n_bins * s.tof.bin_width_mm >= 700.0


def test_vision_preset_matches_cited_figures():
    # van Sluis et al., J Nucl Med 2019;60:1031: 80 rings of 3.2 x 3.2 x 20 mm LSO, 760 crystals
    # per ring, 26.3 cm axial FOV, 210 ps TOF, 4.7 ns coincidence window; 78 cm bore.
    s = PetScanner.preset("vision")
    assert (s.n_rings, s.crystals_per_ring, s.name) == (80, 760, "vision")
    assert s.crystal_depth_mm == 20.0
    assert s.axial_fov_mm == pytest.approx(263.0)
    assert s.radius_mm == pytest.approx(410.0)
    assert s.radius_mm > 390.0  # detectors outside the 78 cm bore
    assert s.tof is not None and s.tof.fwhm_ps == 210.0
    assert s.tof.n_bins * s.tof.bin_width_ps == pytest.approx(4700.0, abs=15.0)
    assert s.tof.n_bins * s.tof.bin_width_mm >= 700.0


def test_small_preset_is_small_and_tof_covers_its_fov():
    s = PetScanner.preset("small")
    assert s.n_crystals <= 2048
    assert s.tof is not None and s.tof.n_bins % 2 == 1
    layout = SinogramLayout(s)
    assert layout.n_bins * s.tof.n_bins < 6_000_000
    # The TOF window reaches past the ring radius plus three timing sigmas on both sides.
    assert s.tof.n_bins * s.tof.bin_width_mm >= 2 * (s.radius_mm + 3 * s.tof.sigma_mm)


def test_unknown_preset_lists_names():
    with pytest.raises(GeometryError, match="known presets: dmi4, small, vision"):
        PetScanner.preset("biograph-one")
    assert PetScanner.preset(" DMI4 ").name == "dmi4"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"crystals_per_ring": 7}, "even"),
        ({"crystals_per_ring": 0}, "positive integer"),
        ({"n_rings": 0}, "positive integer"),
        ({"n_rings": 2.5}, "positive integer"),
        ({"radius_mm": -1.0}, "radius_mm"),
        ({"radius_mm": float("nan")}, "radius_mm"),
        ({"ring_spacing_mm": 0.0}, "ring_spacing_mm"),
        ({"crystal_depth_mm": -2.0}, "crystal_depth_mm"),
        ({"tof": 400.0}, "Tof"),
    ],
)
def test_scanner_validates_itself(kwargs, match):
    args = {"n_rings": 2, "crystals_per_ring": 8, "radius_mm": 100.0, "ring_spacing_mm": 4.0}
    args.update(kwargs)
    with pytest.raises(GeometryError, match=match):
        PetScanner(**args)


def test_crystal_positions_layout():
    s = PetScanner(
        n_rings=4, crystals_per_ring=16, radius_mm=300.0, ring_spacing_mm=5.0, crystal_depth_mm=20.0
    )
    pos = s.crystal_positions_mm
    assert pos.shape == (64, 3) and pos.dtype == np.float32
    assert not pos.flags.writeable
    ids = np.arange(s.n_crystals)
    ring, index = s.ring_of(ids), s.index_of(ids)
    np.testing.assert_array_equal(s.crystal_id(ring, index), ids)
    assert s.ring_of(37) == 2 and s.index_of(37) == 5
    # Rings centred on the isocentre: z = (ring - 1.5) * 5 mm.
    np.testing.assert_allclose(pos[:, 2], (ring - 1.5) * 5.0)
    # Radius at half the crystal depth; angle 2π·index/16 from +x towards +y.
    np.testing.assert_allclose(np.hypot(pos[:, 0], pos[:, 1]), 310.0, rtol=1e-6)
    phi = np.arctan2(pos[:, 1], pos[:, 0]) % (2 * np.pi)
    np.testing.assert_allclose(phi, 2 * np.pi * index / 16, atol=1e-6)
    np.testing.assert_allclose(pos[0], [310.0, 0.0, -7.5], atol=1e-4)
    np.testing.assert_allclose(pos[16 + 4], [0.0, 310.0, -2.5], atol=1e-4)


# ------------------------------------------------------------------------------------ sinogram


def test_plane_order_is_documented_table():
    layout = SinogramLayout(_tiny(n_rings=3))
    expected = [[0, 0], [1, 1], [2, 2], [0, 1], [1, 2], [1, 0], [2, 1], [0, 2], [2, 0]]
    assert layout.plane_rings.tolist() == expected
    for p, (ra, rb) in enumerate(expected):
        assert layout.plane_of_rings[ra, rb] == p
    limited = SinogramLayout(_tiny(n_rings=5), max_ring_difference=1)
    assert limited.n_planes == 5 + 2 * 4
    assert limited.plane_of_rings[0, 2] == -1
    np.testing.assert_array_equal(limited.plane_ring_difference, [0] * 5 + [1] * 4 + [-1] * 4)


def test_layout_shapes_and_validation():
    small = PetScanner.preset("small")
    layout = SinogramLayout(small)
    assert layout.shape == (64, 64, 65)
    assert layout.n_bins == 64 * 64 * 65
    assert layout.tof_shape == (64, 64, 65, 19)
    vision = SinogramLayout(PetScanner.preset("vision"), max_ring_difference=10, n_radial=521)
    assert vision.shape == (80 + 2 * sum(80 - d for d in range(1, 11)), 380, 521)
    with pytest.raises(GeometryError, match="odd"):
        SinogramLayout(small, n_radial=64)
    with pytest.raises(GeometryError, match="n_radial"):
        SinogramLayout(small, n_radial=129)
    with pytest.raises(GeometryError, match="max_ring_difference"):
        SinogramLayout(small, max_ring_difference=8)


@pytest.mark.parametrize(("max_rd", "n_radial"), [(None, None), (None, 7), (1, 3)])
def test_round_trip_over_every_bin(max_rd, n_radial):
    layout = SinogramLayout(_tiny(), max_ring_difference=max_rd, n_radial=n_radial)
    plane, view, radial = _all_bins(layout)
    a, b = layout.crystals_of(plane, view, radial)
    assert a.dtype == np.int32 and b.dtype == np.int32
    p2, v2, r2, swapped, valid = layout.bins_of(a, b)
    assert valid.all() and not swapped.any()
    np.testing.assert_array_equal(p2, plane)
    np.testing.assert_array_equal(v2, view)
    np.testing.assert_array_equal(r2, radial)
    # Reversed pairs land in the same bins, flagged as swapped.
    p3, v3, r3, swapped, valid = layout.bins_of(b, a)
    assert valid.all() and swapped.all()
    np.testing.assert_array_equal(np.stack([p3, v3, r3]), np.stack([plane, view, radial]))


@pytest.mark.parametrize(("max_rd", "n_radial"), [(None, 7), (None, None), (1, 3)])
def test_every_unordered_pair_has_one_bin_or_none(max_rd, n_radial):
    layout = SinogramLayout(_tiny(), max_ring_difference=max_rd, n_radial=n_radial)
    n = layout.scanner.n_crystals
    a, b = np.triu_indices(n, k=1)
    plane, view, radial, swapped, valid = layout.bins_of(a, b)
    flat = np.ravel_multi_index((plane[valid], view[valid], radial[valid]), layout.shape)
    # Injective on valid pairs, and onto: every bin has exactly one unordered crystal pair.
    assert np.unique(flat).size == flat.size == layout.n_bins
    # Invalid pairs carry -1 and are never swapped.
    assert (plane[~valid] == -1).all() and (view[~valid] == -1).all()
    assert (radial[~valid] == -1).all() and not swapped[~valid].any()
    # The canonical order is one of the two orders of each pair.
    ca, cb = layout.crystals_of(plane[valid], view[valid], radial[valid])
    given = np.stack([a[valid], b[valid]])
    expected = np.where(swapped[valid], np.stack([cb, ca]), np.stack([ca, cb]))
    np.testing.assert_array_equal(given, expected)
    if n_radial == 7 and max_rd is None:
        # Only pairs sharing an in-ring index (lines parallel to the axis) are left out.
        same_index = (a % 8) == (b % 8)
        np.testing.assert_array_equal(valid, ~same_index)


def test_pairs_outside_the_layout_are_invalid():
    layout = SinogramLayout(_tiny(n_rings=4), max_ring_difference=1, n_radial=3)
    cases = {
        "same crystal": (5, 5),
        "same in-ring index": (1, 8 + 1),
        "ring difference 2": (0, 16 + 4),
        "radial offset 2 > 1": (0, 2),
        "negative id": (-1, 4),
        "id past the last crystal": (0, 32),
    }
    a, b = (np.array(x) for x in zip(*cases.values(), strict=True))
    plane, view, radial, swapped, valid = layout.bins_of(a, b)
    assert not valid.any() and not swapped.any()
    assert (plane == -1).all() and (view == -1).all() and (radial == -1).all()
    # The scalar interface: opposite crystals of ring 0 through the axis, radial centre bin.
    p, v, r, sw, ok = layout.bins_of(0, 4)
    assert (int(p), int(v), int(r), bool(sw), bool(ok)) == (0, 2, 1, False, True)
    assert bool(layout.bins_of(4, 0)[3])
    with pytest.raises(InputError, match="radial"):
        layout.crystals_of(0, 0, 3)


def test_view_radial_formula_by_hand():
    # N = 8: pair (1, 4): d = 3, S = 2·1 + 3 = 5 < 8 so canonical; view 2, k = 4 − 3 = 1.
    layout = SinogramLayout(_tiny(n_rings=1), n_radial=7)
    p, v, r, sw, ok = layout.bins_of(1, 4)
    assert (int(p), int(v), int(r), bool(sw), bool(ok)) == (0, 2, 3 + 1, False, True)
    # Pair (6, 1): d = 3, S = 12 + 3 = 15 ≥ 8: swapped; canonical (1, 6): d = 5, S = 7, view 3,
    # k = 4 − 5 = −1.
    p, v, r, sw, ok = layout.bins_of(6, 1)
    assert (int(p), int(v), int(r), bool(sw), bool(ok)) == (0, 3, 3 - 1, True, True)
    a, b = layout.crystals_of(0, 3, 2)
    assert (int(a), int(b)) == (1, 6)


def test_endpoints_match_crystal_positions():
    scanner = PetScanner(
        n_rings=3, crystals_per_ring=12, radius_mm=200.0, ring_spacing_mm=6.0, crystal_depth_mm=10
    )
    layout = SinogramLayout(scanner, n_radial=9)
    xstart, xend = layout.endpoints()
    assert xstart.shape == xend.shape == (*layout.shape, 3)
    assert xstart.dtype == np.float32
    plane, view, radial = np.indices(layout.shape)
    a, b = layout.crystals_of(plane, view, radial)
    np.testing.assert_array_equal(xstart, scanner.crystal_positions_mm[a])
    np.testing.assert_array_equal(xend, scanner.crystal_positions_mm[b])
    # A subset of views gives the same rows.
    sub_start, sub_end = layout.endpoints(views=[5, 1])
    np.testing.assert_array_equal(sub_start, xstart[:, [5, 1]])
    np.testing.assert_array_equal(sub_end, xend[:, [5, 1]])
    np.testing.assert_array_equal(layout.endpoints(views=slice(0, 6, 2))[0], xstart[:, 0:6:2])
    # Documented geometry: the LOR is perpendicular to n(ψ), ψ = π(2·view + d mod 2)/N, at
    # signed distance t = R·sin(πk/N) = radial_offsets_mm[radial].
    n = 12
    k = radial - 4
    d = n // 2 - k
    psi = np.pi * (2 * view + d % 2) / n
    normal = np.stack([np.cos(psi), np.sin(psi)], axis=-1)
    mid = 0.5 * (xstart[..., :2] + xend[..., :2]).astype(np.float64)
    direction = (xend[..., :2] - xstart[..., :2]).astype(np.float64)
    np.testing.assert_allclose(np.sum(direction * normal, axis=-1), 0.0, atol=1e-3)
    t = np.sum(mid * normal, axis=-1)
    np.testing.assert_allclose(t, np.broadcast_to(layout.radial_offsets_mm, t.shape), atol=1e-3)
    assert np.all(psi < np.pi)


def test_index_maps_and_endpoints_on_backend(backend, to_numpy):
    xp = backend.xp
    layout = SinogramLayout(PetScanner.preset("small"), max_ring_difference=3)
    ref_start, ref_end = layout.endpoints(views=np.arange(0, 64, 8))
    start, end = layout.endpoints(views=xp.arange(0, 64, 8), xp=xp)
    np.testing.assert_array_equal(to_numpy(start), ref_start)
    np.testing.assert_array_equal(to_numpy(end), ref_end)
    rng = np.random.default_rng(3)
    a = rng.integers(0, layout.scanner.n_crystals, 5000)
    b = rng.integers(0, layout.scanner.n_crystals, 5000)
    ref = layout.bins_of(a, b)
    got = layout.bins_of(xp.asarray(a), xp.asarray(b))
    for r, g in zip(ref, got, strict=True):
        np.testing.assert_array_equal(to_numpy(g), r)
    ok = ref[4]
    ca, cb = layout.crystals_of(*(xp.asarray(x[ok]) for x in ref[:3]))
    np.testing.assert_array_equal(to_numpy(ca), np.where(ref[3][ok], b[ok], a[ok]))
    np.testing.assert_array_equal(to_numpy(cb), np.where(ref[3][ok], a[ok], b[ok]))


# ------------------------------------------------------------------------------------ listmode


def _events(**kwargs) -> ListmodeEvents:
    base = {
        "crystal_a": [0, 5, 9],
        "crystal_b": [64, 70, 200],
        "tof_bin": [0, 3, -2],
        "time_ms": [0.0, 1.5, 1.5],
    }
    base.update(kwargs)
    return ListmodeEvents(**base)


def test_listmode_defaults_and_dtypes():
    ev = ListmodeEvents(crystal_a=[1, 2], crystal_b=[3, 4])
    assert ev.n_events == len(ev) == 2
    assert ev.crystal_a.dtype == np.int32 and ev.crystal_b.dtype == np.int32
    assert ev.tof_bin.dtype == np.int16 and not ev.tof_bin.any()
    assert ev.prompt.dtype == bool and ev.prompt.all()
    assert ev.time_ms is None
    full = _events()
    assert full.time_ms.dtype == np.float64
    assert full.validate(PetScanner.preset("small")) is full


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"crystal_a": [0, 5, 1024]}, r"crystal_a holds crystal ids outside \[0, 1024\)"),
        ({"crystal_b": [-1, 70, 200]}, r"crystal_b holds crystal ids outside \[0, 1024\)"),
        ({"tof_bin": [0, 10, 0]}, r"tof_bin holds bins outside \[-9, 9\]"),
        ({"tof_bin": [0, -10, 0]}, r"tof_bin holds bins outside \[-9, 9\]"),
        ({"time_ms": [0.0, 2.0, 1.0]}, r"out of time order.*event 2 at 1.0 ms"),
        ({"time_ms": [0.0, float("nan"), 1.0]}, "NaN"),
        (
            {"crystal_a": [], "crystal_b": [], "tof_bin": [], "time_ms": []},
            "listmode is empty",
        ),
    ],
)
def test_listmode_validate_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        _events(**kwargs).validate(PetScanner.preset("small"))


def test_listmode_tof_bins_on_non_tof_scanner():
    scanner = _tiny()
    with pytest.raises(InputError, match="scanner has no TOF"):
        ListmodeEvents(crystal_a=[0, 1], crystal_b=[4, 5], tof_bin=[0, 1]).validate(scanner)
    ListmodeEvents(crystal_a=[0, 1], crystal_b=[4, 5], tof_bin=[0, 0]).validate(scanner)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"crystal_b": [64, 70]}, r"same length.*crystal_a 3, crystal_b 2"),
        ({"tof_bin": [0, 1, 2, 3]}, "same length"),
        ({"prompt": [True, False]}, "same length"),
        ({"crystal_a": [0.0, 5.0, 9.0]}, "crystal_a must hold integers"),
        ({"tof_bin": [0, 40000, 0]}, "do not fit int16"),
        ({"crystal_a": [[0, 5, 9]]}, "1-D"),
        ({"prompt": [1, 0, 1]}, "boolean"),
    ],
)
def test_listmode_construction_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        _events(**kwargs)


def test_listmode_selections():
    ev = ListmodeEvents(
        crystal_a=[0, 1, 2, 3, 4],
        crystal_b=[64, 65, 66, 67, 68],
        tof_bin=[1, 2, 3, 4, 5],
        time_ms=[0.0, 10.0, 20.0, 30.0, 40.0],
        prompt=[True, False, True, False, True],
    )
    assert ev.prompts().crystal_a.tolist() == [0, 2, 4]
    assert ev.delayeds().tof_bin.tolist() == [2, 4]
    assert not ev.delayeds().prompt.any()
    window = ev.time_window(10.0, 30.0)
    assert window.time_ms.tolist() == [10.0, 20.0]
    assert window.prompt.tolist() == [False, True]
    assert ev.select(slice(1, 3)).crystal_b.tolist() == [65, 66]
    assert ev.select([4, 0]).crystal_a.tolist() == [4, 0]
    with pytest.raises(InputError, match="one value per event"):
        ev.select([True, False])
    with pytest.raises(InputError, match="out of range"):
        ev.select([7])
    with pytest.raises(InputError, match="no time_ms"):
        ListmodeEvents(crystal_a=[0], crystal_b=[64]).time_window(0, 1)
    with pytest.raises(InputError, match="precedes"):
        ev.time_window(5.0, 1.0)


def test_histogram_known_events_by_hand():
    # "small": 8 rings x 128 crystals, 65 radial bins (centre 32), TOF bins -9..9.
    scanner = PetScanner.preset("small")
    layout = SinogramLayout(scanner, max_ring_difference=1)
    # Plane order: δ=0 rings 0..7 -> planes 0..7; δ=+1 (0,1)..(6,7) -> 8..14; δ=-1 (1,0).. -> 15..
    events = ListmodeEvents(
        # ring 0 index 0 with ring 0 index 64: d = 64, S = 64 < 128: canonical; view 32, k = 0.
        crystal_a=[0, 64, 0, 1, 128, 0, 0, 0, 0],
        crystal_b=[64, 0, 64, 128 + 64, 64, 128, 3 * 128 + 64, 64, 64],
        tof_bin=[3, 3, 3, -5, 2, 0, 0, 1, 0],
        prompt=[True, True, True, True, True, True, True, False, False],
    )
    sino, dropped = histogram(events, layout)
    assert sino.shape == layout.tof_shape and sino.dtype == np.float32
    expected = np.zeros(layout.tof_shape, dtype=np.float32)
    expected[0, 32, 32, 3 + 9] += 2  # (0, 64) twice, canonical order, TOF +3 kept
    expected[0, 32, 32, -3 + 9] += 1  # (64, 0): swapped, TOF +3 stored as -3
    # (1, ring1 idx 64): d = 63, S = 65: canonical, view 32, k = 1 -> radial 33, plane (0,1) = 8.
    expected[8, 32, 33, -5 + 9] += 1
    # (ring1 idx 0, ring0 idx 64): canonical, plane (1,0) = 15, view 32, radial 32.
    expected[15, 32, 32, 2 + 9] += 1
    np.testing.assert_array_equal(sino, expected)
    assert dropped == 2  # (0, 128): same in-ring index; (0, ring 3): ring difference 3 > 1

    flat, dropped = histogram(events, layout, tof=False)
    assert flat.shape == layout.shape and dropped == 2
    np.testing.assert_array_equal(flat, expected.sum(axis=-1))

    delayed, dropped = histogram(events, layout, delayed=True)
    assert dropped == 0
    assert delayed.sum() == 2 and delayed[0, 32, 32, 1 + 9] == 1 and delayed[0, 32, 32, 9] == 1


def test_histogram_round_trip_through_crystals_of():
    scanner = PetScanner.preset("small")
    layout = SinogramLayout(scanner)
    rng = np.random.default_rng(11)
    truth = rng.poisson(0.3, size=layout.tof_shape).astype(np.float32)
    idx = np.repeat(np.arange(truth.size), truth.ravel().astype(np.int64))
    p, v, r, t = np.unravel_index(idx, layout.tof_shape)
    a, b = layout.crystals_of(p, v, r)
    tof_bin = t - scanner.tof.max_bin
    flip = rng.random(idx.size) < 0.5  # give half the events in the reverse order
    events = ListmodeEvents(
        crystal_a=np.where(flip, b, a),
        crystal_b=np.where(flip, a, b),
        tof_bin=np.where(flip, -tof_bin, tof_bin),
    )
    sino, dropped = histogram(events, layout)
    assert dropped == 0
    np.testing.assert_array_equal(sino, truth)


def test_histogram_errors():
    layout = SinogramLayout(_tiny())
    with pytest.raises(InputError, match="no TOF"):
        histogram(ListmodeEvents(crystal_a=[0], crystal_b=[4]), layout, tof=True)
    with pytest.raises(InputError, match="crystal_b holds crystal ids"):
        histogram(ListmodeEvents(crystal_a=[0], crystal_b=[99]), layout)
    empty, dropped = histogram(ListmodeEvents(crystal_a=[], crystal_b=[]), layout)
    assert empty.shape == layout.shape and not empty.any() and dropped == 0


# ------------------------------------------------------------------------------------ randoms


def test_randoms_from_singles_closed_form():
    scanner = PetScanner.preset("small")
    layout = SinogramLayout(scanner, max_ring_difference=2)
    singles = np.full(scanner.n_crystals, 1.0e4)
    # 2τ = 4 ns, S = 1e4 cps on every crystal, T = 10 s: 4e-9 · 1e8 · 10 = 4 counts per LOR.
    uniform = randoms_from_singles(singles, 4.0, 10.0, layout)
    assert uniform.shape == layout.shape and uniform.dtype == np.float32
    np.testing.assert_allclose(uniform, 4.0, rtol=1e-6)

    rng = np.random.default_rng(5)
    singles = rng.uniform(1e3, 5e4, scanner.n_crystals)
    est = randoms_from_singles(singles, 4.7, 60.0, layout)
    a, b = layout.crystals_of(*np.indices(layout.shape))
    np.testing.assert_allclose(est, 4.7e-9 * singles[a] * singles[b] * 60.0, rtol=1e-6)

    with pytest.raises(InputError, match="one rate per crystal"):
        randoms_from_singles(singles[:-1], 4.7, 60.0, layout)
    with pytest.raises(InputError, match="non-negative"):
        randoms_from_singles(-singles, 4.7, 60.0, layout)
    with pytest.raises(InputError, match="coincidence_window_ns"):
        randoms_from_singles(singles, 0.0, 60.0, layout)


def _factorised_randoms(layout: SinogramLayout, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    singles = rng.uniform(2e4, 8e4, layout.scanner.n_crystals)
    return randoms_from_singles(singles, 4.0, 1.0, layout).astype(np.float64)


@pytest.mark.parametrize(("max_rd", "n_radial"), [(None, None), (2, 33), (0, 127)])
def test_randoms_from_delayeds_recovers_noiseless_pattern(max_rd, n_radial):
    layout = SinogramLayout(
        PetScanner.preset("small"), max_ring_difference=max_rd, n_radial=n_radial
    )
    truth = _factorised_randoms(layout)
    est = randoms_from_delayeds(truth, layout)
    assert est.shape == layout.shape and est.dtype == np.float32
    np.testing.assert_allclose(est, truth, rtol=1e-4)
    assert float(est.sum(dtype=np.float64)) == pytest.approx(truth.sum(), rel=1e-6)


def test_randoms_from_delayeds_reduces_noise_and_conserves_counts():
    scanner = PetScanner.preset("small")
    layout = SinogramLayout(scanner)
    truth = _factorised_randoms(layout)
    truth *= 0.5 / truth.mean()  # half a count per LOR: typical of delayeds
    rng = np.random.default_rng(8)
    delayed = rng.poisson(truth).astype(np.float32)
    est = randoms_from_delayeds(delayed, layout)
    assert float(est.sum(dtype=np.float64)) == pytest.approx(float(delayed.sum()), rel=1e-6)
    mse_raw = np.mean((delayed - truth) ** 2)
    mse_est = np.mean((est - truth) ** 2)
    assert mse_est < 0.05 * mse_raw
    assert np.var(est - truth) < np.var(delayed - truth)

    # The same estimate from a TOF sinogram (summed over TOF) and from delayed listmode events.
    n_tof = layout.n_tof
    tof_sino = np.zeros(layout.tof_shape, dtype=np.float32)
    tof_sino[..., n_tof // 2] = delayed
    np.testing.assert_allclose(randoms_from_delayeds(tof_sino, layout), est, rtol=1e-6)
    idx = np.repeat(np.arange(delayed.size), delayed.ravel().astype(np.int64))
    a, b = layout.crystals_of(*np.unravel_index(idx, layout.shape))
    events = ListmodeEvents(
        crystal_a=np.concatenate([b, [0]]),  # reversed order, plus one prompt to be ignored
        crystal_b=np.concatenate([a, [64]]),
        prompt=np.concatenate([np.zeros(idx.size, dtype=bool), [True]]),
    )
    np.testing.assert_allclose(randoms_from_delayeds(events, layout), est, rtol=1e-6)


def test_randoms_from_delayeds_edge_cases():
    layout = SinogramLayout(_tiny())
    zeros = randoms_from_delayeds(np.zeros(layout.shape), layout)
    assert zeros.shape == layout.shape and not zeros.any()
    with pytest.raises(InputError, match="shape"):
        randoms_from_delayeds(np.ones((2, 2, 2)), layout)
    with pytest.raises(InputError, match="non-negative"):
        randoms_from_delayeds(-np.ones(layout.shape), layout)


def test_tof_bin_width_in_mm_uses_half_the_speed_of_light():
    # Guards the preset coverage checks above: 167 ps of time difference is 25.03 mm along a LOR.
    tof = PetScanner.preset("small").tof
    assert tof.bin_width_mm == pytest.approx(167.0 * SPEED_OF_LIGHT_MM_PER_PS / 2)
    assert math.isclose(tof.bin_width_mm, 25.03266, rel_tol=1e-6)
