"""STIR sinogram bins → LORs in recon's world frame, and reconstruction of STIR sinograms.

The expected numbers are worked out by hand from STIR's documented conventions (see
recon/io/stir_geometry.py for the functions of UCL/STIR they come from); the sinograms of the
point-source tests are generated here from STIR's line definition x cos φ + y sin φ = s, not by
the module under test.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.errors import GeometryError, InputError
from recon.io import PetSinogram, read_interfile_image, read_interfile_sinogram
from recon.io.stir_geometry import (
    stir_default_grid,
    stir_lor_endpoints,
    stir_lor_tables,
    stir_sinogram_to_layout,
)

STIR_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "stir"


def stir_sinogram_model(sino, grid=None, lors="detectors"):
    """The model `recon pet` builds for a STIR sinogram: its separable LORs on a grid."""
    grid = stir_default_grid(sino) if grid is None else grid
    return recon.PetLorSinogramModel.separable(*stir_lor_tables(sino, lors), grid, device="cpu")


def _write_stir(
    folder: Path,
    data: np.ndarray | None,
    *,
    n_rings: int,
    n_det: int,
    n_views: int,
    n_tang: int,
    segments: list[tuple[int, int, int]],
    arc_bin_mm: float | None = None,
    inner_diameter_cm: float = 30.0,
    doi_cm: float = 0.0,
    ring_cm: float = 0.8,
    view_offset_deg: float = 0.0,
    name: str = "sino",
) -> Path:
    """A STIR-style projection-data header (viewgram order) and its float32 data file.

    ``segments`` are (min ring difference, max ring difference, axial positions) in file order;
    ``data`` is (plane, view, tangential), segment after segment.
    """
    n_axial = [s[2] for s in segments]
    if data is None:
        data = np.zeros((sum(n_axial), n_views, n_tang), np.float32)
    blocks, first = [], 0
    for n in n_axial:
        blocks.append(np.asarray(data[first : first + n], "<f4").transpose(1, 0, 2).ravel())
        first += n
    np.concatenate(blocks).tofile(folder / f"{name}.s")
    lines = [
        "!INTERFILE  :=",
        f"name of data file := {name}.s",
        "!GENERAL DATA :=",
        "!GENERAL IMAGE DATA :=",
        "!type of data := PET",
        "imagedata byte order := LITTLEENDIAN",
        "!PET STUDY (General) :=",
        "!PET data type := Emission",
        "applied corrections := {arc correction}" if arc_bin_mm else "applied corrections := {}",
        "!number format := float",
        "!number of bytes per pixel := 4",
        "number of dimensions := 4",
        "matrix axis label [4] := segment",
        f"!matrix size [4] := {len(segments)}",
        "matrix axis label [3] := view",
        f"!matrix size [3] := {n_views}",
        "matrix axis label [2] := axial coordinate",
        "!matrix size [2] := {" + ",".join(str(n) for n in n_axial) + "}",
        "matrix axis label [1] := tangential coordinate",
        f"!matrix size [1] := {n_tang}",
        "minimum ring difference per segment := {" + ",".join(str(s[0]) for s in segments) + "}",
        "maximum ring difference per segment := {" + ",".join(str(s[1]) for s in segments) + "}",
        "Scanner parameters:=",
        f"Number of rings := {n_rings}",
        f"Number of detectors per ring := {n_det}",
        f"Inner ring diameter (cm) := {inner_diameter_cm}",
        f"Average depth of interaction (cm) := {doi_cm}",
        f"Distance between rings (cm) := {ring_cm}",
        f"Default bin size (cm) := {(arc_bin_mm or 4.0) / 10}",
        f"View offset (degrees) := {view_offset_deg}",
        "end scanner parameters:=",
    ]
    if arc_bin_mm:
        lines.append(f"effective central bin size (cm) := {arc_bin_mm / 10}")
    lines.append("!END OF INTERFILE :=")
    header = folder / f"{name}.hs"
    header.write_text("\n".join(lines) + "\n")
    return header


def _span1_segments(n_rings: int, max_rd: int) -> list[tuple[int, int, int]]:
    """Span-1 segments in STIR's standard order 0, +1, −1, +2, −2 …"""
    out = [(0, 0, n_rings)]
    for rd in range(1, max_rd + 1):
        out += [(rd, rd, n_rings - rd), (-rd, -rd, n_rings - rd)]
    return out


# --------------------------------------------------------------------------- worked examples
def test_worked_examples_for_a_112_detector_ring(tmp_path: Path) -> None:
    """N = 112, 56 views: the bins' detectors and lines, worked out from STIR's formulas."""
    header = _write_stir(
        tmp_path, None, n_rings=2, n_det=112, n_views=56, n_tang=56,
        segments=[(0, 0, 2), (1, 1, 1), (-1, -1, 1)], inner_diameter_cm=60.0, doi_cm=0.7,
        ring_cm=0.654,
    )  # fmt: skip
    sino = read_interfile_sinogram(header)
    R = 307.0
    xs, xe = stir_lor_endpoints(sino)
    t0 = 28  # stored index of tangential position 0 (positions run from -28)
    # View 0, t = 0: det1 = 0 at the top of the ring (anterior, recon −y), det2 = 56 at the bottom.
    np.testing.assert_allclose(xs[0, 0, t0, :2], [0.0, -R], atol=1e-3)
    np.testing.assert_allclose(xe[0, 0, t0, :2], [0.0, R], atol=1e-3)
    # View 0, t = +1: det1 = 0, det2 = 55 at ψ = 2π·55/112 (the patient's left side, +x).
    psi = 2 * math.pi * 55 / 112
    np.testing.assert_allclose(xs[0, 0, t0 + 1, :2], [0.0, -R], atol=1e-3)
    np.testing.assert_allclose(xe[0, 0, t0 + 1, :2], [R * math.sin(psi), -R * math.cos(psi)],
                               atol=1e-3)  # fmt: skip
    # STIR's own (φ, s) line for that bin: the vertical line x = R sin(π/112) = +0.02805 R.
    ys, ye = stir_lor_endpoints(sino, lors="stir")
    np.testing.assert_allclose(ys[0, 0, t0 + 1, :2], [0.02805 * R, -0.99961 * R], atol=0.02)
    np.testing.assert_allclose(ye[0, 0, t0 + 1, 0], 0.02805 * R, atol=0.02)
    # Even tangential positions: the chord and STIR's line coincide.
    np.testing.assert_allclose(xs[:, :, t0::2], ys[:, :, t0::2], atol=1e-3)
    # View 16, t = 0: det1 = 16 at ψ = 51.43° → (+0.78183 R, −0.62349 R).
    np.testing.assert_allclose(xs[0, 16, t0, :2], [0.78183 * R, -0.62349 * R], atol=0.01)
    # Axial: STIR ring 0 is the deep end (+z in recon, the head of an HFS patient).
    z_ring = [6.54 / 2, -6.54 / 2]  # recon z of STIR rings 0 and 1
    np.testing.assert_allclose(xs[0, 0, t0, 2], z_ring[0], atol=1e-4)
    np.testing.assert_allclose(xs[1, 0, t0, 2], z_ring[1], atol=1e-4)
    # Segment +1 (ring2 − ring1 = +1): det1 on ring 0, det2 on ring 1.
    np.testing.assert_allclose([xs[2, 0, t0, 2], xe[2, 0, t0, 2]], z_ring, atol=1e-4)
    np.testing.assert_allclose([xs[3, 0, t0, 2], xe[3, 0, t0, 2]], z_ring[::-1], atol=1e-4)


def test_view_offset_rotates_every_lor(tmp_path: Path) -> None:
    kwargs = dict(n_rings=1, n_det=64, n_views=32, n_tang=21, segments=[(0, 0, 1)])
    plain = read_interfile_sinogram(_write_stir(tmp_path, None, name="a", **kwargs))
    tilted = read_interfile_sinogram(
        _write_stir(tmp_path, None, name="b", view_offset_deg=10.0, **kwargs)
    )
    for lors in ("detectors", "stir"):
        a, _ = stir_lor_endpoints(plain, lors=lors)
        b, _ = stir_lor_endpoints(tilted, lors=lors)
        # ψ → ψ + 10°: (R sin ψ, −R cos ψ) turns from −y towards +x.
        c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
        rotated = np.stack([c * a[..., 0] - s * a[..., 1], s * a[..., 0] + c * a[..., 1]], -1)
        np.testing.assert_allclose(b[..., :2], rotated, atol=1e-3)


def test_span3_segment_uses_the_mean_ring_difference(tmp_path: Path) -> None:
    """Span 3: segment 0 holds ring differences −1..1 at half the ring spacing; segment +1
    holds 2..4 and its LORs use the mean difference 3."""
    header = _write_stir(
        tmp_path, None, n_rings=8, n_det=64, n_views=32, n_tang=21, arc_bin_mm=4.0,
        segments=[(-1, 1, 15), (2, 4, 9)],
    )  # fmt: skip
    xs, xe = stir_lor_endpoints(read_interfile_sinogram(header))
    d = 8.0
    m0 = (np.arange(15) - 7) * d / 2
    np.testing.assert_allclose(xs[:15, 0, 10, 2], -m0, atol=1e-4)
    np.testing.assert_allclose(xe[:15, 0, 10, 2], -m0, atol=1e-4)
    m1 = (np.arange(9) - 4) * d / 2
    np.testing.assert_allclose(xs[15:, 0, 10, 2], -(m1 - 1.5 * d), atol=1e-4)
    np.testing.assert_allclose(xe[15:, 0, 10, 2], -(m1 + 1.5 * d), atol=1e-4)


# --------------------------------------------------------------------------- point sources
def _point_sinogram(
    point_lps: tuple[float, float, float],
    *,
    n_views: int,
    s_mm: np.ndarray,
    m_mm: np.ndarray,
    view_offset_deg: float = 0.0,
    sigma_mm: float = 3.0,
) -> np.ndarray:
    """Segment-0 sinogram of a small Gaussian blob, from STIR's line x cos φ + y sin φ = s."""
    x, y, z = point_lps
    z_stir = -z  # STIR z runs towards the feet of an HFS patient
    phi = np.arange(n_views) * math.pi / n_views + math.radians(view_offset_deg)
    s_point = x * np.cos(phi) + y * np.sin(phi)
    transaxial = np.exp(-0.5 * ((s_mm[None, :] - s_point[:, None]) / sigma_mm) ** 2)
    axial = np.exp(-0.5 * ((m_mm - z_stir) / sigma_mm) ** 2)
    return (1000.0 * axial[:, None, None] * transaxial[None]).astype(np.float32)


def _peak_world(image: recon.Image) -> np.ndarray:
    values = np.asarray(image)
    index = np.unravel_index(np.argmax(values), values.shape)
    return np.asarray(image.grid.index_to_world(np.asarray(index, float)), float)


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        # Arc-corrected, 20 bins of 4 mm: |s| of tangential position −10 is 40 mm → 2·10 + 1.
        (dict(n_tang=20, arc_bin_mm=4.0, segments=[(0, 0, 4)]), (7, 21, 21)),
        # 21 bins: 21 voxels; a span-3 segment 0 has its own 7 axial positions.
        (dict(n_tang=21, arc_bin_mm=4.0, segments=[(-1, 1, 7)]), (7, 21, 21)),
        # Not arc-corrected: s = R sin(tπ/N) = 150 sin(10π/64) = 70.7 mm, ⌈70.7/4⌉ = 18 → 37.
        (dict(n_tang=20, segments=[(0, 0, 4)]), (7, 37, 37)),
    ],
    ids=["arc-even", "arc-odd-span3", "not-arc"],
)
def test_default_grid_is_stirs_default_image(tmp_path: Path, kwargs: dict, shape: tuple) -> None:
    """STIR's default image (VoxelsOnCartesianGrid::construct_from_projdata_info): voxels of
    the default bin size, 2·⌈max |s| / voxel⌉ + 1 of them (odd: centred, origin 0), and
    2·n_rings − 1 planes of half the ring spacing for span 1."""
    header = _write_stir(tmp_path, None, n_rings=4, n_det=64, n_views=32, **kwargs)
    grid = stir_default_grid(read_interfile_sinogram(header))
    assert grid.shape == shape
    np.testing.assert_allclose(grid.voxel_size_mm, (4.0, 4.0, 4.0))
    np.testing.assert_allclose(grid.centre_mm, (0.0, 0.0, 0.0), atol=1e-9)


@pytest.mark.parametrize("arc", [True, False])
def test_point_source_lands_where_stir_puts_it(tmp_path: Path, arc: bool) -> None:
    """An off-centre source in all three axes, sinogram from STIR's conventions, reconstructed
    by recon: the peak is at the source's LPS position (a mirrored or rotated mapping would put
    it 24 mm or more away)."""
    n_rings, n_det, n_views, n_tang = 8, 128, 64, 61
    ring_mm, R = 8.0, 150.0
    point = (40.0, -25.0, 12.0)
    t = np.arange(n_tang) - n_tang // 2
    s_mm = t * 4.0 if arc else R * np.sin(t * math.pi / n_det)
    m_mm = (np.arange(2 * n_rings - 1) - (n_rings - 1)) * ring_mm / 2
    data = _point_sinogram(point, n_views=n_views, s_mm=s_mm, m_mm=m_mm, view_offset_deg=5.0)
    header = _write_stir(
        tmp_path, data, n_rings=n_rings, n_det=n_det, n_views=n_views, n_tang=n_tang,
        segments=[(-(n_rings - 1), n_rings - 1, 2 * n_rings - 1)],
        arc_bin_mm=4.0 if arc else None, view_offset_deg=5.0,
    )  # fmt: skip
    sino = read_interfile_sinogram(header)
    grid = recon.ImageGrid((15, 60, 60), (4.0, 4.0, 4.0))
    model = stir_sinogram_model(sino, grid, lors="stir")
    image = recon.osem(model, sino.data, iterations=3, subsets=4, progress=False)
    peak = _peak_world(image)
    np.testing.assert_allclose(peak, point, atol=4.0)


# --------------------------------------------------------------------------- recon layout
def test_detector_pairs_map_onto_the_sinogram_layout(tmp_path: Path) -> None:
    """Two independent routes give the same projections: recon's SinogramLayout via crystal
    ids (bins_of) and explicit chords from STIR's detector formula."""
    n_rings, n_det, n_tang = 4, 64, 31
    segments = _span1_segments(n_rings, 2)
    header = _write_stir(
        tmp_path, None, n_rings=n_rings, n_det=n_det, n_views=n_det // 2, n_tang=n_tang,
        segments=segments, view_offset_deg=360.0 / n_det * 3,  # three whole detectors
    )  # fmt: skip
    sino = read_interfile_sinogram(header)
    grid = recon.ImageGrid((7, 40, 40), (4.0, 4.0, 4.0))
    rng = np.random.default_rng(7)
    x = rng.random(grid.shape).astype(np.float32)
    stir_model = stir_sinogram_model(sino, grid)
    stir_projection = np.asarray(stir_model.forward(x))
    mapped, layout = stir_sinogram_to_layout(PetSinogram(stir_projection, sino.description))
    assert layout.n_radial == n_tang if n_tang % 2 else n_tang + 1
    layout_model = recon.PetSinogramModel(
        sino.description["pet_scanner"], grid, use_tof=False,
        max_ring_difference=layout.max_ring_difference, device="cpu",
    )  # fmt: skip
    assert layout_model.layout.shape[0] == layout.shape[0]
    reference = np.asarray(
        recon.PetLorSinogramModel(*layout.endpoints(), grid, device="cpu").forward(x)
    )
    # Every STIR bin lands on its own layout bin, and with 31 tangential positions of a
    # 64-crystal ring the file fills the whole layout: a bijection.
    numbered = np.arange(1, stir_projection.size + 1, dtype=np.float32).reshape(
        stir_projection.shape
    )
    where, _ = stir_sinogram_to_layout(PetSinogram(numbered, sino.description))
    assert np.all(where > 0) and np.unique(where).size == where.size == numbered.size
    np.testing.assert_allclose(mapped, reference, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("change", "function", "message"),
    [
        ({"arc_bin_mm": 4.0}, stir_sinogram_to_layout, "arc-corrected"),
        ({"view_offset_deg": 1.0}, stir_sinogram_to_layout, "whole detectors"),
        ({"n_views": 16}, stir_sinogram_to_layout, "view mashing"),
        ({"n_views": 20}, stir_lor_endpoints, "whole view-mashing factor"),
    ],
    ids=["arc-corrected", "tilted", "mashed", "odd views"],
)
def test_layout_mapping_refuses_what_is_not_a_crystal_pair(
    tmp_path: Path, change: dict, function, message: str
) -> None:
    kwargs = dict(n_rings=2, n_det=64, n_views=32, n_tang=21, segments=[(0, 0, 2)])
    kwargs.update(change)
    sino = read_interfile_sinogram(_write_stir(tmp_path, None, **kwargs))
    with pytest.raises(GeometryError, match=message):
        function(sino)


def test_unknown_lor_model_is_refused(tmp_path: Path) -> None:
    sino = read_interfile_sinogram(_write_stir(
        tmp_path, None, n_rings=2, n_det=64, n_views=32, n_tang=21, segments=[(0, 0, 2)],
    ))  # fmt: skip
    with pytest.raises(InputError, match="lors"):
        stir_lor_endpoints(sino, lors="parallel")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"doi_cm": -20.0}, "depth of interaction"),
        ({"n_tang": 40}, "tangential positions"),
        ({"arc_bin_mm": 200.0}, "beyond the ring radius"),
    ],
)
def test_impossible_geometries_are_refused(tmp_path: Path, change: dict, message: str) -> None:
    kwargs = dict(n_rings=2, n_det=32, n_views=16, n_tang=11, segments=[(0, 0, 2)])
    kwargs.update(change)
    with pytest.raises(GeometryError, match=message):
        stir_lor_endpoints(read_interfile_sinogram(_write_stir(tmp_path, None, **kwargs)))


def test_header_without_scanner_block_is_refused(tmp_path: Path) -> None:
    header = _write_stir(tmp_path, None, n_rings=2, n_det=64, n_views=32, n_tang=21,
                         segments=[(0, 0, 2)])  # fmt: skip
    text = header.read_text().replace("Number of rings := 2\n", "")
    header.write_text(text)
    with pytest.raises(InputError, match="lacks the scanner parameters .Number of rings."):
        stir_lor_endpoints(read_interfile_sinogram(header))


# --------------------------------------------------------------------------- STIR's own data
def _smalllong() -> Path:
    path = STIR_DIR / "smalllong.hs"
    if not path.is_file():
        pytest.skip(f"STIR test data not found at {path} (shared/data/stir next to the repo)")
    return path


def test_real_stir_sinogram_reconstructs_consistently() -> None:
    """STIR's smalllong (arc-corrected, span 17 with one segment): the reconstruction explains
    the data (reprojection within 5% in L2) and has the default STIR image shape."""
    sino = read_interfile_sinogram(_smalllong())
    grid = stir_default_grid(sino)
    assert grid.shape == (27, 75, 75)
    np.testing.assert_allclose(grid.voxel_size_mm, (3.27, 3.0, 3.0))
    model = stir_sinogram_model(sino)
    counts = np.clip(sino.data, 0, None)
    image = recon.osem(model, counts, iterations=3, subsets=8, progress=False)
    fit = np.asarray(model.forward(image))
    assert np.linalg.norm(fit - counts) / np.linalg.norm(counts) < 0.05
    # A mirror or a rotation of the image explains the data equally well, so the orientation
    # is proven by the worked examples and the point sources above, not here.


def test_cli_reconstructs_a_stir_sinogram(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    assert main(["pet", str(_smalllong()), "-o", str(out), "--iterations", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arc_corrected"] is True
    assert summary["negative_bins_set_to_0"] > 0
    assert summary["relative_residual"] < 0.06
    image = read_interfile_image(out / "image.hv")
    np.testing.assert_allclose(np.asarray(image), np.load(out / "image.npy"), rtol=1e-6)
    assert main(["pet", str(_smalllong()), "-o", str(out), "--frames", "2x10"]) == 2
    assert "applies to listmode" in capsys.readouterr().err


def test_recon_sinogram_to_stir_file_and_back(tmp_path: Path) -> None:
    """A recon span-1 sinogram written as STIR projection data reads back bin for bin, and the
    file's LORs (by STIR's conventions) are the layout's LORs."""
    from recon.io import layout_to_stir_sinogram, write_interfile

    scanner = recon.PetScanner(n_rings=4, crystals_per_ring=64, radius_mm=150.0,
                               ring_spacing_mm=8.0, crystal_depth_mm=10.0)  # fmt: skip
    layout = recon.SinogramLayout(scanner, max_ring_difference=2, n_radial=31)
    data = np.random.default_rng(5).random(layout.shape).astype(np.float32)
    stir = layout_to_stir_sinogram(data, layout, frame_start_s=60.0, frame_duration_s=300.0)
    header = write_interfile(tmp_path / "recon.hs", stir)
    sino = read_interfile_sinogram(header)
    assert (sino.description["frame_start_s"], sino.description["frame_duration_s"]) == (60, 300)
    text = header.read_text()
    assert "image duration (sec)[1] := 300" in text
    header.write_text(text.replace("number of time frames := 1", "number of time frames := 2"))
    with pytest.raises(InputError, match="2 time frames"):
        read_interfile_sinogram(header)
    header.write_text(text)
    assert [s["min_ring_difference"] for s in sino.description["segments"]] == [0, 1, -1, 2, -2]
    back, back_layout = stir_sinogram_to_layout(sino)
    assert back_layout.shape == layout.shape
    np.testing.assert_array_equal(back, data)
    # Bin for bin, the file's chords are the layout's (up to the order of the two ends).
    xs, xe = stir_lor_endpoints(sino)
    numbered = np.arange(1, xs[..., 0].size + 1, dtype=np.float32).reshape(xs.shape[:3])
    where, _ = stir_sinogram_to_layout(PetSinogram(numbered, sino.description))
    order = np.argsort(where.ravel())  # layout bins in order of their STIR bin
    ls, le = (e.reshape(-1, 3)[order] for e in layout.endpoints())
    fs, fe = xs.reshape(-1, 3), xe.reshape(-1, 3)
    same = np.minimum(np.abs(fs - ls).max(1) + np.abs(fe - le).max(1),
                      np.abs(fs - le).max(1) + np.abs(fe - ls).max(1))  # fmt: skip
    assert same.max() < 1e-3
    with pytest.raises(InputError, match="TOF"):
        layout_to_stir_sinogram(data[..., None], layout)


def test_info_describes_a_stir_sinogram(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(_smalllong())]) == 0
    text = capsys.readouterr().out
    assert "-8..8 (27)" in text and "14 x 112" in text and "view mashing" in text
    assert "explicit LORs only (arc-corrected bins are not crystal pairs)" in text
    header = _write_stir(tmp_path, None, n_rings=2, n_det=64, n_views=32, n_tang=21,
                         segments=[(0, 0, 2), (1, 1, 1), (-1, -1, 1)])  # fmt: skip
    assert main(["info", str(header)]) == 0
    assert "crystal pairs (recon SinogramLayout)" in capsys.readouterr().out


def test_fuzzed_scanner_blocks_give_lors_on_the_ring_or_a_recon_error(tmp_path: Path) -> None:
    """Mutated sizes and scanner parameters: only recon's errors come out, and every LOR that
    comes out ends on the effective ring radius, inside the scanner's axial extent."""
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")
    from recon.errors import ReconError

    header = _write_stir(tmp_path, None, n_rings=3, n_det=32, n_views=16, n_tang=11,
                         segments=_span1_segments(3, 1), doi_cm=0.5)  # fmt: skip
    lines = header.read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if ":=" in line and not line.startswith("!INTER")]
    value = st.one_of(
        st.integers(-3, 300).map(str),
        st.floats(-100, 1000, allow_nan=False).map(lambda f: f"{f:.3f}"),
        st.sampled_from(["{arc correction}", "nan", "inf", "{1,2}", "", "-0"]),
    )

    @hypothesis.settings(max_examples=150, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
    @hypothesis.given(data=st.data())
    def run(data):
        mutated = list(lines)
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.sampled_from(keys))
            mutated[i] = mutated[i].split(":=")[0] + ":= " + data.draw(value)
        target = tmp_path / "fuzz.hs"
        target.write_text("\n".join(mutated) + "\n")
        try:
            sino = read_interfile_sinogram(target)
            xs, xe = stir_lor_endpoints(sino)
            try:
                stir_sinogram_to_layout(sino)
            except ReconError:
                pass
        except ReconError:
            return
        scanner = sino.description["scanner"]
        radius = scanner["inner_ring_diameter_mm"] / 2 + (
            scanner["average_depth_of_interaction_mm"] or 0.0
        )
        half_length = (scanner["n_rings"] - 1) / 2 * scanner["ring_spacing_mm"]
        for end in (xs, xe):
            assert np.all(np.isfinite(end))
            np.testing.assert_allclose(np.hypot(end[..., 0], end[..., 1]), radius, rtol=1e-4)
            assert np.all(np.abs(end[..., 2]) <= half_length * (1 + 1e-5) + 1e-3)

    run()


def test_cli_models_multiplicative_and_additive_sinograms(tmp_path: Path) -> None:
    """Efficiencies × attenuation and randoms + scatter given as sinogram files of the data's
    shape (the model m·(P x) + a): the reconstruction recovers the activity concentration, and
    leaving the additive term out biases it upwards."""
    from recon.io import layout_to_stir_sinogram, write_interfile

    scanner = recon.PetScanner(n_rings=4, crystals_per_ring=96, radius_mm=120.0,
                               ring_spacing_mm=8.0)  # fmt: skip
    layout = recon.SinogramLayout(scanner, n_radial=47)
    sino0 = layout_to_stir_sinogram(np.zeros(layout.shape, np.float32), layout)
    grid = stir_default_grid(sino0)
    z, y, x = grid.meshgrid_mm()
    activity = np.where(np.hypot(x, y) < 50.0, 1000.0, 0.0).astype(np.float32)  # Bq/mL
    mu = np.where(np.hypot(x, y) < 50.0, 0.0096, 0.0).astype(np.float32)
    xs, xe = layout.endpoints()
    projector = recon.LorProjector(grid, device="cpu")
    line = projector.forward(mu, xs.reshape(-1, 3), xe.reshape(-1, 3)).reshape(layout.shape)
    rng = np.random.default_rng(3)
    efficiency = rng.uniform(0.7, 1.0, layout.shape).astype(np.float32)
    multiplicative = efficiency * np.exp(-line).astype(np.float32)
    trues = multiplicative * projector.forward(
        activity, xs.reshape(-1, 3), xe.reshape(-1, 3)
    ).reshape(layout.shape)
    duration, calibration = 60.0, 2e-4  # counts per Bq/mL·s·mm
    scale = duration * calibration
    additive = np.full(layout.shape, 0.3 * (trues * scale).mean(), np.float32)
    counts = rng.poisson(trues * scale + additive).astype(np.float32)
    files = {}
    for name, values in (("data", counts), ("mult", multiplicative), ("add", additive)):
        stir = layout_to_stir_sinogram(values, layout, frame_start_s=0.0, frame_duration_s=duration)
        files[name] = write_interfile(tmp_path / f"{name}.hs", stir)
    base = [
        "pet", str(files["data"]), "--calibration", repr(calibration),
        "--multiplicative", str(files["mult"]), "--iterations", "3", "--subsets", "4",
    ]  # fmt: skip
    inner = np.hypot(x, y) < 35.0
    assert main([*base, "--additive", str(files["add"]), "-o", str(tmp_path / "full")]) == 0
    full = np.load(tmp_path / "full" / "image.npy")[inner].mean()
    assert full == pytest.approx(1000.0, rel=0.05)
    assert main([*base, "-o", str(tmp_path / "no_additive")]) == 0
    biased = np.load(tmp_path / "no_additive" / "image.npy")[inner].mean()
    assert biased > 1.05 * full  # measured: about 1.10
    fewer = recon.SinogramLayout(scanner, max_ring_difference=2, n_radial=47)
    wrong = layout_to_stir_sinogram(np.ones(fewer.shape, np.float32), fewer)
    write_interfile(tmp_path / "wrong.hs", wrong)
    assert main([*base, "--additive", str(tmp_path / "wrong.hs"), "-o", str(tmp_path / "x")]) == 2


def test_info_on_a_sinogram_without_scanner_block(tmp_path: Path, capsys) -> None:
    header = _write_stir(tmp_path, None, n_rings=2, n_det=64, n_views=32, n_tang=21,
                         segments=[(0, 0, 2)])  # fmt: skip
    header.write_text(header.read_text().replace("Number of detectors per ring := 64\n", ""))
    assert main(["info", str(header)]) == 0
    assert "nothing: " in capsys.readouterr().out
    assert main(["pet", str(header), "-o", str(tmp_path / "out")]) == 2
    assert "'Number of detectors per ring'" in capsys.readouterr().err


@pytest.mark.parametrize("arc", [True, False])
def test_mashed_views_are_the_sum_of_detector_views(tmp_path: Path, arc: bool) -> None:
    """View mashing by 4 (STIR: mashed view v sums detector views 4v … 4v + 3): a sinogram made by
    summing groups of STIR views of a point source reconstructs at the source; the mean-angle
    offset (2π/N)·3/2 = 4.2° moves it by 6 mm at 80 mm from the axis, so leaving it out fails."""
    n_rings, n_det, n_tang, m = 4, 128, 61, 4
    ring_mm, R = 8.0, 150.0
    point = (80.0, 0.0, 0.0)
    t = np.arange(n_tang) - n_tang // 2
    s_mm = t * 4.0 if arc else R * np.sin(t * math.pi / n_det)
    m_mm = (np.arange(2 * n_rings - 1) - (n_rings - 1)) * ring_mm / 2
    fine = _point_sinogram(point, n_views=n_det // 2, s_mm=s_mm, m_mm=m_mm)
    mashed = fine.reshape(fine.shape[0], n_det // 2 // m, m, n_tang).sum(axis=2)
    header = _write_stir(
        tmp_path, mashed, n_rings=n_rings, n_det=n_det, n_views=n_det // 2 // m, n_tang=n_tang,
        segments=[(-(n_rings - 1), n_rings - 1, 2 * n_rings - 1)],
        arc_bin_mm=4.0 if arc else None,
    )  # fmt: skip
    sino = read_interfile_sinogram(header)
    grid = recon.ImageGrid((7, 60, 60), (4.0, 3.0, 3.0))
    model = stir_sinogram_model(sino, grid)
    image = np.asarray(recon.osem(model, sino.data, iterations=4, subsets=4, progress=False))
    z, y, x = grid.meshgrid_mm()
    near = (np.hypot(x - point[0], y - point[1]) < 12.0) & (np.abs(z) < 6)
    weights = np.where(near, image, 0.0)
    centroid = [float((weights * c).sum() / weights.sum()) for c in (x, y)]
    np.testing.assert_allclose(centroid, point[:2], atol=1.5)


def test_geometry_summary_of_a_mashed_sinogram(tmp_path: Path) -> None:
    from recon.io.stir_geometry import stir_geometry_summary

    header = _write_stir(tmp_path, None, n_rings=2, n_det=64, n_views=8, n_tang=21,
                         segments=[(0, 0, 2)], doi_cm=0.5, view_offset_deg=2.0)  # fmt: skip
    summary = stir_geometry_summary(read_interfile_sinogram(header))
    assert summary["view_mashing"] == 4 and summary["effective_radius_mm"] == 155.0
    assert summary["view0_angle_deg"] == pytest.approx(2.0 + 360.0 / 64 * 3 / 2)
