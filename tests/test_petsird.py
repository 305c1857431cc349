"""PETSIRD listmode in: geometry fit, crystal mapping, TOF bins, time blocks, errors.

The files are written with the ``petsird`` package's own writers, for a ring scanner built to
match ``PetScanner.preset("small")`` (8 rings x 128 crystals, 19 TOF bins of 167 ps) out of 16
modules of 8 x 8 crystals, with crystals given a 20 mm depth.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import math
import sys

import numpy as np
import pytest

import recon
from recon.errors import GeometryError, InputError
from recon.pet.tof import SPEED_OF_LIGHT_MM_PER_PS

petsird = pytest.importorskip("petsird")

from recon.io.petsird import read_petsird  # noqa: E402

N_MODULES = 16  # around the ring
N_TRANS = 8  # crystals across a module
N_AX = 8  # crystals along the axis (= rings)
N_PER_RING = N_MODULES * N_TRANS  # 128
DEPTH = 20.0
RADIUS = 150.0
SPACING = 8.0
N_ENERGY = 2
TOF_WIDTH_MM = 167.0 * SPEED_OF_LIGHT_MM_PER_PS / 2.0
TOF_EDGES = ((np.arange(20) - 9.5) * TOF_WIDTH_MM).astype(np.float32)
FWHM_MM = 400.0 * SPEED_OF_LIGHT_MM_PER_PS / 2.0


def _expected_scanner(**changes):
    return dataclasses.replace(
        recon.PetScanner.preset("small"), crystal_depth_mm=DEPTH, name="TEST_RING", **changes
    )


def _transform(angle=0.0, translation=(0.0, 0.0, 0.0)):
    c, s = math.cos(angle), math.sin(angle)
    mat = np.array(
        [[c, -s, 0.0, translation[0]], [s, c, 0.0, translation[1]], [0.0, 0.0, 1.0, translation[2]]]
    )
    return petsird.RigidTransformation(matrix=mat.astype(np.float32))


def _box(x0, x1, half_y, half_z):
    corners = [(x, y, z) for x in (x0, x1) for y in (-half_y, half_y) for z in (-half_z, half_z)]
    return petsird.BoxShape(
        corners=[petsird.Coordinate(c=np.array(c, dtype=np.float32)) for c in corners]
    )


def _element(j, k):
    """PETSIRD element index of the crystal at transaxial j, axial k inside a module."""
    return j * N_AX + k  # transaxial-major: not the order of recon's crystal ids


def _header(rotation=0.0, flat=False, tof_edges=TOF_EDGES, fwhm_mm=FWHM_MM, n_energy=N_ENERGY):
    pitch = 2 * math.pi / N_PER_RING
    transforms = []
    for j in range(N_TRANS):
        for k in range(N_AX):
            z = (k - (N_AX - 1) / 2) * SPACING
            if flat:  # crystals side by side on the flat face of the module (a polygon ring)
                y = (j - (N_TRANS - 1) / 2) * 2 * math.pi * (RADIUS + DEPTH / 2) / N_PER_RING
                transforms.append(_transform(0.0, (0.0, y, z)))
            else:  # crystals on an arc: crystal j of module m at angle (8m + j) * pitch
                transforms.append(_transform(j * pitch + rotation, (0.0, 0.0, z)))
    assert [_element(j, k) for j in range(N_TRANS) for k in range(N_AX)] == list(range(64))
    crystal = petsird.BoxSolidVolume(shape=_box(RADIUS, RADIUS + DEPTH, 3.5, 3.9))
    module = petsird.DetectorModule(
        detecting_elements=petsird.ReplicatedBoxSolidVolume(object=crystal, transforms=transforms)
    )
    offset = (N_TRANS - 1) / 2 * pitch if flat else 0.0
    modules = petsird.ReplicatedDetectorModule(
        object=module,
        transforms=[_transform(m * N_TRANS * pitch + offset) for m in range(N_MODULES)],
    )
    info = petsird.ScannerInformation(
        model_name="TEST_RING",
        scanner_geometry=petsird.ScannerGeometry(replicated_modules=[modules]),
        tof_bin_edges=[[petsird.BinEdges(edges=np.asarray(tof_edges, dtype=np.float32))]],
        tof_resolution=[[fwhm_mm]] if fwhm_mm is not None else [],
        event_energy_bin_edges=[
            petsird.BinEdges(edges=np.linspace(430, 650, n_energy + 1, dtype=np.float32))
        ],
        energy_resolution_at_511=[0.11],
        prompt_event_policy=petsird.CoincidencePolicy.REJECT_HIGHER_MULTIPLES,
        delayed_event_policy=petsird.CoincidencePolicy.REJECT_HIGHER_MULTIPLES,
    )
    exam = petsird.ExamInformation(
        start_of_acquisition=petsird.DateTime.from_components(2026, 11, 25, 9, 0, 0)
    )
    return petsird.Header(scanner=info, exam=exam)


def _bin(crystal, energy=0):
    """PETSIRD detection bin of recon crystal id ``crystal`` (aligned geometry)."""
    ring, index = divmod(int(crystal), N_PER_RING)
    module, j = divmod(index, N_TRANS)
    return energy + (_element(j, ring) + module * N_TRANS * N_AX) * N_ENERGY


def _event(a, b, tof_bin, energy=(0, 0), half=9):
    return petsird.CoincidenceEvent(
        detection_bins=[_bin(a, energy[0]), _bin(b, energy[1])], tof_idx=tof_bin + half
    )


# (crystal_a, crystal_b, signed tof bin) per block; written in this order.
PROMPTS = {
    0: [(5, 70, 3), (70, 5, -3), (1023, 0, 9), (200, 900, -9), (128, 64, 0)],
    5: [(300, 429, 1), (17, 146, -2)],
    15: [(640, 0, 4)],
}
DELAYEDS = {0: [(10, 700, -5)], 5: [(999, 3, 2), (3, 999, -2)]}


def _blocks(prompts=PROMPTS, delayeds=DELAYEDS, half=9):
    for start in (0, 5, 10, 15):
        if start == 10:  # an empty event block and a dead-time block
            yield petsird.TimeBlock.DeadTimeTimeBlock(
                petsird.DeadTimeTimeBlock(time_interval=petsird.TimeInterval(start=5, stop=15))
            )
        p = [_event(a, b, t, energy=(i % 2, (i + 1) % 2), half=half) for i, (a, b, t) in
             enumerate(prompts.get(start, []))]  # fmt: skip
        d = [_event(a, b, t, half=half) for a, b, t in delayeds.get(start, [])]
        yield petsird.TimeBlock.EventTimeBlock(
            petsird.EventTimeBlock(
                time_interval=petsird.TimeInterval(start=start, stop=start + 5),
                prompt_events=[[p]],
                delayed_events=[[d]],
            )
        )


def _write(path, header=None, blocks=None, ndjson=False):
    header = _header() if header is None else header
    writer_type = petsird.NDJsonPETSIRDWriter if ndjson else petsird.BinaryPETSIRDWriter
    with writer_type(str(path)) as writer:
        writer.write_header(header)
        writer.write_time_blocks(_blocks() if blocks is None else blocks)
    return path


def _expected_events():
    rows = []
    for start in (0, 5, 15):
        rows += [(a, b, t, start, True) for a, b, t in PROMPTS.get(start, [])]
        rows += [(a, b, t, start, False) for a, b, t in DELAYEDS.get(start, [])]
    return [np.array(col) for col in zip(*rows, strict=True)]


def _assert_events(events, expected=None):
    a, b, t, time, prompt = _expected_events() if expected is None else expected
    np.testing.assert_array_equal(events.crystal_a, a)
    np.testing.assert_array_equal(events.crystal_b, b)
    np.testing.assert_array_equal(events.tof_bin, t)
    np.testing.assert_array_equal(events.time_ms, time)
    np.testing.assert_array_equal(events.prompt, prompt)


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("ndjson", [False, True], ids=["binary", "ndjson"])
def test_scanner_events_tof_and_times_are_mapped(tmp_path, ndjson):
    path = _write(tmp_path / ("scan.ndjson" if ndjson else "scan.bin"), ndjson=ndjson)
    events, scanner, meta = read_petsird(path)

    expected = _expected_scanner()
    assert scanner.n_rings == 8 and scanner.crystals_per_ring == 128
    assert scanner.name == "TEST_RING"
    for field in ("radius_mm", "ring_spacing_mm", "crystal_depth_mm"):
        assert getattr(scanner, field) == pytest.approx(getattr(expected, field), abs=1e-3)
    assert scanner.tof.n_bins == 19
    assert scanner.tof.bin_width_ps == pytest.approx(167.0, rel=1e-5)
    assert scanner.tof.fwhm_ps == pytest.approx(400.0, rel=1e-5)
    np.testing.assert_allclose(
        scanner.crystal_positions_mm, expected.crystal_positions_mm, atol=2e-3
    )

    _assert_events(events)
    assert events.time_ms.dtype == np.float64 and np.all(np.diff(events.time_ms) >= 0)
    assert meta["n_prompts"] == 8 and meta["n_delayeds"] == 3
    assert meta["n_event_blocks"] == 4
    np.testing.assert_array_equal(
        meta["event_block_intervals_ms"], [[0, 5], [5, 10], [10, 15], [15, 20]]
    )
    assert meta["acquisition_ms"] == (0.0, 20.0)
    assert meta["other_time_blocks"] == {"DeadTimeTimeBlock": 1}
    assert meta["scanner_fitted"] and meta["alignment"] is None
    assert meta["format"] == "PETSIRD" and meta["petsird_version"] == importlib.metadata.version(
        "petsird"
    )
    assert meta["max_position_error_mm"] < 1e-3
    assert meta["start_of_acquisition"] == "2026-11-25T09:00:00"
    assert len(meta["energy_bin_edges_kev"]) == 1 and meta["energy_bin_edges_kev"][0].size == 3
    # every (module, element) maps to the crystal at its position
    crystal_of_element = meta["crystal_of_element"][0]
    assert sorted(crystal_of_element) == list(range(1024))
    for m, j, k in [(0, 0, 0), (3, 5, 7), (15, 7, 2)]:
        flat = m * N_TRANS * N_AX + _element(j, k)
        assert crystal_of_element[flat] == k * N_PER_RING + m * N_TRANS + j


def test_tof_sign_follows_the_petsird_definition(tmp_path):
    """PETSIRD stores (t1 − t2)·c/2 for the event's (first, second) detections; recon's bin
    centre, measured towards crystal_b from the midpoint, must land on the annihilation point."""
    scanner = _expected_scanner()
    pos = scanner.crystal_positions_mm.astype(np.float64)
    rng = np.random.default_rng(3)
    cases = []
    for _ in range(40):
        a, b = rng.choice(scanner.n_crystals, 2, replace=False)
        if np.linalg.norm(pos[a, :2] - pos[b, :2]) < 200:  # keep LORs through the centre
            continue
        frac = rng.uniform(0.2, 0.8)
        point = pos[a] + frac * (pos[b] - pos[a])
        c_dt_half = (np.linalg.norm(point - pos[a]) - np.linalg.norm(point - pos[b])) / 2
        tof_idx = int(np.searchsorted(TOF_EDGES, c_dt_half)) - 1
        cases.append((a, b, tof_idx, point))
    assert len(cases) > 10
    events_in = [
        petsird.CoincidenceEvent(detection_bins=[_bin(a), _bin(b)], tof_idx=i)
        for a, b, i, _ in cases
    ]
    block = petsird.TimeBlock.EventTimeBlock(
        petsird.EventTimeBlock(
            time_interval=petsird.TimeInterval(start=0, stop=1), prompt_events=[[events_in]]
        )
    )
    events, got, _ = read_petsird(_write(tmp_path / "tof.bin", blocks=[block]))
    width = got.tof.bin_width_mm
    for n, (a, b, _, point) in enumerate(cases):
        assert (events.crystal_a[n], events.crystal_b[n]) == (a, b)
        u = (pos[b] - pos[a]) / np.linalg.norm(pos[b] - pos[a])
        centre = (pos[a] + pos[b]) / 2 + got.tof.bin_centre_mm(events.tof_bin[n]) * u
        assert np.linalg.norm(centre - point) <= width / 2 + 1e-6


def test_given_scanner_is_used_and_checked(tmp_path):
    path = _write(tmp_path / "scan.bin")
    mine = dataclasses.replace(_expected_scanner(), name="mine")
    events, scanner, meta = read_petsird(path, scanner=mine)
    assert scanner is mine and not meta["scanner_fitted"]
    _assert_events(events)
    # the preset puts its crystals on the front face (depth 0): 10 mm inside these crystals
    with pytest.raises(GeometryError, match="does not match the given scanner"):
        read_petsird(path, scanner=recon.PetScanner.preset("small"))
    # a scanner with gaps (more rings than the file fills) still maps one-to-one
    wider = dataclasses.replace(mine, n_rings=10)
    events, _, meta = read_petsird(path, scanner=wider)
    np.testing.assert_array_equal(events.crystal_a, _expected_events()[0] + N_PER_RING)
    wrong_tof = dataclasses.replace(mine, tof=recon.Tof(fwhm_ps=400, n_bins=19, bin_width_ps=150))
    with pytest.raises(GeometryError, match="19 TOF bins of 167.00 ps"):
        read_petsird(path, scanner=wrong_tof)
    with pytest.raises(GeometryError, match="has no TOF"):
        read_petsird(path, scanner=dataclasses.replace(mine, tof=None))


def test_non_tof_file_gives_a_non_tof_scanner(tmp_path):
    header = _header(tof_edges=[-400.0, 400.0], fwhm_mm=None)
    zero = {k: [(a, b, 0) for a, b, _ in v] for k, v in PROMPTS.items()}
    path = _write(tmp_path / "nontof.bin", header=header, blocks=_blocks(zero, {}, half=0))
    events, scanner, meta = read_petsird(path)
    assert scanner.tof is None and np.all(events.tof_bin == 0)
    assert np.all(events.prompt) and meta["n_delayeds"] == 0
    np.testing.assert_allclose(meta["tof_bin_edges_mm"], [-400, 400])
    with pytest.raises(GeometryError, match="non-TOF"):
        read_petsird(path, scanner=_expected_scanner())


def test_time_window_reads_only_the_blocks_it_needs(tmp_path):
    path = _write(tmp_path / "scan.bin")
    events, _, meta = read_petsird(path, time_window_ms=(5, 15))
    a, b, t, time, prompt = _expected_events()
    keep = (time >= 5) & (time < 15)
    _assert_events(events, [a[keep], b[keep], t[keep], time[keep], prompt[keep]])
    assert meta["n_event_blocks"] == 2
    with pytest.raises(InputError, match="no coincidence events in the time window"):
        read_petsird(path, time_window_ms=(10, 15))


def test_rotated_ring_needs_align(tmp_path):
    offset = 0.3 * 2 * math.pi / N_PER_RING  # 2.4 mm at the crystals, more than a quarter pitch
    path = _write(tmp_path / "rot.bin", header=_header(rotation=offset))
    with pytest.raises(GeometryError, match="not a simple cylinder.*align=True"):
        read_petsird(path)
    events, scanner, meta = read_petsird(path, align=True)
    assert meta["alignment"]["rotation_deg"] == pytest.approx(math.degrees(offset), abs=1e-4)
    np.testing.assert_allclose(meta["alignment"]["shift_mm"], 0, atol=1e-3)
    assert scanner.crystals_per_ring == 128 and scanner.n_rings == 8
    _assert_events(events)  # a rotation by less than half a pitch keeps each crystal's index


def test_polygon_ring_fits_within_the_default_tolerance_only(tmp_path):
    """Flat module faces (a 16-sided polygon) are within a quarter pitch of the fitted circle."""
    path = _write(tmp_path / "flat.bin", header=_header(flat=True))
    events, scanner, meta = read_petsird(path)
    assert 0.5 < meta["max_position_error_mm"] < meta["tolerance_mm"]
    assert scanner.crystals_per_ring == 128 and scanner.n_rings == 8
    _assert_events(events)
    with pytest.raises(GeometryError, match="tolerance 0.50 mm.*not a simple cylinder"):
        read_petsird(path, tolerance_mm=0.5)


# ------------------------------------------------------------------------------ errors
def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "petsird", None)
    with pytest.raises(InputError, match=r"pip install 'recon\[petsird\]'"):
        read_petsird(tmp_path / "scan.bin")


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match="no such PETSIRD file"):
        read_petsird(tmp_path / "missing.bin")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not petsird at all")
    with pytest.raises(InputError, match="junk.bin.*not a PETSIRD file"):
        read_petsird(junk)
    good = _write(tmp_path / "scan.bin").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(good[: len(good) - 40])
    with pytest.raises(InputError, match="cut.bin"):
        read_petsird(cut)
    bad_json = tmp_path / "bad.ndjson"
    bad_json.write_text('{"not": "yardl"}\n')
    with pytest.raises(InputError, match="bad.ndjson"):
        read_petsird(bad_json)


@pytest.mark.parametrize(
    ("edges", "fwhm", "message"),
    [
        ((np.arange(19) - 9) * TOF_WIDTH_MM, FWHM_MM, "even number of TOF bins"),
        (np.r_[TOF_EDGES[:-1], TOF_EDGES[-1] + 5], FWHM_MM, "unequal widths"),
        (TOF_EDGES + 10, FWHM_MM, "not centred on the LOR midpoint"),
        (TOF_EDGES, None, "no TOF resolution"),
    ],
)
def test_tof_bins_recon_cannot_represent(tmp_path, edges, fwhm, message):
    path = _write(tmp_path / "tof.bin", header=_header(tof_edges=edges, fwhm_mm=fwhm))
    with pytest.raises(GeometryError, match=message):
        read_petsird(path)
    if fwhm is None:  # a given scanner supplies the timing resolution
        events, scanner, _ = read_petsird(path, scanner=_expected_scanner())
        _assert_events(events)


def test_bad_events_are_reported(tmp_path):
    too_big = petsird.CoincidenceEvent(detection_bins=[1024 * N_ENERGY, 0], tof_idx=0)
    bad_tof = petsird.CoincidenceEvent(detection_bins=[1, 0], tof_idx=19)
    for name, event, message in [
        ("bin", too_big, "detection bin 2048 is out of range"),
        ("tof", bad_tof, "tof_idx 19 is out of range"),
    ]:
        block = petsird.TimeBlock.EventTimeBlock(
            petsird.EventTimeBlock(
                time_interval=petsird.TimeInterval(start=3, stop=4), prompt_events=[[[event]]]
            )
        )
        path = _write(tmp_path / f"{name}.bin", blocks=[block])
        with pytest.raises(InputError, match=rf"{name}.bin: time block 0 \(3-4 ms\).*{message}"):
            read_petsird(path)
    backwards = list(_blocks())[::-1]
    with pytest.raises(InputError, match="must be in time order"):
        read_petsird(_write(tmp_path / "backwards.bin", blocks=backwards))
    empty = _write(tmp_path / "empty.bin", blocks=[])
    with pytest.raises(InputError, match="holds no coincidence events"):
        read_petsird(empty)


def test_bad_arguments(tmp_path):
    path = _write(tmp_path / "scan.bin")
    with pytest.raises(InputError, match="tolerance_mm"):
        read_petsird(path, tolerance_mm=-1)
    with pytest.raises(InputError, match="precedes its start"):
        read_petsird(path, time_window_ms=(10, 5))
    with pytest.raises(InputError, match="PetScanner"):
        read_petsird(path, scanner="small")


def test_motion_blocks_are_logged(tmp_path, caplog):
    bed = petsird.TimeBlock.BedMovementTimeBlock(
        petsird.BedMovementTimeBlock(
            time_interval=petsird.TimeInterval(start=7, stop=8), transform=_transform()
        )
    )
    blocks = list(_blocks())
    path = _write(tmp_path / "bed.bin", blocks=blocks[:2] + [bed] + blocks[2:])
    with caplog.at_level(logging.WARNING, logger="recon"):
        events, _, meta = read_petsird(path)
    assert meta["other_time_blocks"]["BedMovementTimeBlock"] == 1
    assert "static scanner and bed" in caplog.text
    _assert_events(events)


def test_two_module_types_map_onto_one_ring(tmp_path):
    """Even and odd modules as two PETSIRD module types: events of every type pair are read."""
    header = _header()
    info = header.scanner
    rep = info.scanner_geometry.replicated_modules[0]
    types = [
        petsird.ReplicatedDetectorModule(object=rep.object, transforms=rep.transforms[parity::2])
        for parity in (0, 1)
    ]
    info.scanner_geometry = petsird.ScannerGeometry(replicated_modules=types)
    edges = info.tof_bin_edges[0][0]
    info.tof_bin_edges = [[edges], [edges, edges]]
    info.tof_resolution = [[FWHM_MM], [FWHM_MM, FWHM_MM]]
    info.event_energy_bin_edges = info.event_energy_bin_edges * 2
    info.energy_resolution_at_511 = info.energy_resolution_at_511 * 2

    def typed_bin(crystal):
        ring, index = divmod(crystal, N_PER_RING)
        module, j = divmod(index, N_TRANS)
        local = _element(j, ring) + (module // 2) * N_TRANS * N_AX
        return module % 2, local * N_ENERGY

    wanted = [(8, 20, 4), (20, 8, -4), (16, 1000, 0), (900, 3, -7), (27, 11, 2)]
    lists = [[[]], [[], []]]
    expected = {(1, 0): [], (1, 1): [], (0, 0): []}
    for a, b, t in wanted:  # the first detection's module type must be the larger one
        (ta, ba), (tb, bb) = typed_bin(a), typed_bin(b)
        if ta < tb:
            (ta, ba), (tb, bb), (a, b, t) = (tb, bb), (ta, ba), (b, a, -t)
        lists[ta][tb].append(petsird.CoincidenceEvent(detection_bins=[ba, bb], tof_idx=t + 9))
        expected[(ta, tb)].append((a, b, t))
    block = petsird.TimeBlock.EventTimeBlock(
        petsird.EventTimeBlock(
            time_interval=petsird.TimeInterval(start=0, stop=1), prompt_events=lists
        )
    )
    events, scanner, meta = read_petsird(_write(tmp_path / "two.bin", header, [block]))
    assert scanner.crystals_per_ring == 128 and scanner.n_rings == 8
    rows = expected[(0, 0)] + expected[(1, 0)] + expected[(1, 1)]  # file order
    np.testing.assert_array_equal(events.crystal_a, [r[0] for r in rows])
    np.testing.assert_array_equal(events.crystal_b, [r[1] for r in rows])
    np.testing.assert_array_equal(events.tof_bin, [r[2] for r in rows])
    assert [len(c) for c in meta["crystal_of_element"]] == [512, 512]


def test_energy_window_and_resolution_come_from_the_file(tmp_path):
    """The span of the energy bins (430-650 keV in the header) and energy_resolution_at_511
    (0.11) fill the scanner's energy fields where the scanner has none."""
    path = _write(tmp_path / "scan.bin")
    _, scanner, meta = read_petsird(path)
    assert scanner.energy_window_kev == pytest.approx((430.0, 650.0))
    assert scanner.energy_resolution == pytest.approx(0.11)
    assert meta["energy_window_kev"] == pytest.approx((430.0, 650.0))
    assert meta["energy_resolution_at_511"] == pytest.approx(0.11)
    # A given scanner keeps its own values; only the unknown ones are filled in.
    own = _expected_scanner(energy_window_kev=(425.0, 650.0), energy_resolution=None)
    _, filled, _ = read_petsird(path, scanner=own)
    assert filled.energy_window_kev == (425.0, 650.0)
    assert filled.energy_resolution == pytest.approx(0.11)
