"""The reconstruction figure: size, labels, windowing, orientation and aspect; the house style.

Expectations come from the conventions, not from the code: LPS world coordinates (+x patient
left, +y posterior, +z superior) displayed radiologically (patient's right on the viewer's left,
anterior up in transverse slices, superior up in coronal and sagittal ones, anterior on the left
of sagittal ones), percentiles computed here with numpy, sizes read from the PNG bytes.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from recon import GeometryError, Image, ImageGrid, InputError
from recon.figures import (
    HOUSE_STYLE,
    hottest_region,
    new_figure,
    reconstruction_figure,
    save_figure,
    save_reconstruction_figure,
    style_axes,
    sum_frames,
)

ROOT = Path(__file__).resolve().parents[1]
PANELS = ("transverse", "coronal", "sagittal", "mip")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk (PNG spec §11.2.2), CRC checked."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    body = data[16:29]
    (crc,) = struct.unpack(">I", data[29:33])
    assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
    width, height = struct.unpack(">II", body[:8])
    return width, height


def make_image(
    shape: tuple[int, int, int] = (24, 36, 44),
    voxel: float | tuple[float, float, float] = (3.0, 2.5, 2.0),
    data: np.ndarray | None = None,
    **fields: object,
) -> Image:
    grid = ImageGrid(shape, voxel)
    if data is None:
        data = np.random.default_rng(0).gamma(4.0, 1.0, size=shape).astype(np.float32)
    return Image(data.astype(np.float32), grid, **fields)  # type: ignore[arg-type]


def ball(
    grid: ImageGrid, centre_xyz_mm: tuple[float, float, float], radius_mm: float
) -> np.ndarray:
    z, y, x = grid.meshgrid_mm()
    cx, cy, cz = centre_xyz_mm
    return (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= radius_mm**2


def axes_by_label(fig: object) -> dict[str, object]:
    return {ax.get_label(): ax for ax in fig.axes}  # type: ignore[attr-defined]


def header_text(fig: object) -> str:
    return " ".join(t.get_text() for t in fig.texts if t.get_gid() == "header")  # type: ignore[attr-defined]


def rendered(fig: object) -> np.ndarray:
    fig.canvas.draw()  # type: ignore[attr-defined]
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)  # type: ignore[attr-defined]


def panel_pixels(fig: object, rgb: np.ndarray, ax: object) -> np.ndarray:
    """The rendered pixels inside ``ax`` (row 0 at the top of the screen)."""
    box = ax.get_window_extent()  # type: ignore[attr-defined]  # display pixels, y up
    height = rgb.shape[0]
    top, bottom = int(round(height - box.y1)), int(round(height - box.y0))
    return rgb[top + 1 : bottom - 1, int(round(box.x0)) + 1 : int(round(box.x1)) - 1]


# --------------------------------------------------------------------------------------------
# size
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "voxel"),
    [
        ((16, 64, 64), (4.0, 4.4, 4.4)),  # the PET demo grid
        ((128, 128, 128), 3.0),
        ((64, 128, 128), 3.32),  # STIR's SPECT example grid (once a 518x128 px strip)
        ((27, 75, 75), (3.27, 3.0, 3.0)),  # STIR's smalllong PET grid
        ((4, 4, 4), 2.0),  # tiny
        ((300, 48, 48), (2.0, 4.0, 4.0)),  # tall: a whole-body-like axial extent
        ((1, 64, 64), 2.0),  # a single slice
    ],
    ids=["16x64x64", "128^3", "stir-spect", "stir-pet", "tiny", "tall", "one-slice"],
)
def test_png_is_readable_size(tmp_path: Path, shape, voxel) -> None:
    image = make_image(shape, voxel)
    fig = reconstruction_figure(image)
    out = save_figure(fig, tmp_path / "f.png")
    width, height = png_size(out)
    assert width >= 800
    expected = fig.get_size_inches() * fig.dpi
    assert abs(width - expected[0]) <= 1 and abs(height - expected[1]) <= 1
    assert height <= HOUSE_STYLE.max_height_px + 100  # at most a few wrapped title lines more
    from PIL import Image as PILImage  # an independent decoder (Pillow comes with matplotlib)

    with PILImage.open(out) as decoded:
        decoded.verify()
        assert decoded.size == (width, height)
    # Readable: every voxel of every panel covers at least 2 x 2 pixels.
    axes = axes_by_label(fig)
    nz, ny, nx = shape
    grid_per_panel = {
        "transverse": (nx, ny), "coronal": (nx, nz), "sagittal": (ny, nz), "mip": (nx, nz)
    }  # fmt: skip
    for name, (cols, rows) in grid_per_panel.items():
        box = axes[name].get_window_extent()
        assert box.width / cols >= 2.0 and box.height / rows >= 2.0, (name, box)


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------


def test_panels_letters_colour_bar_and_title() -> None:
    info = {"algorithm": "OSEM", "iterations": 3, "subsets": 8, "post_filter_fwhm_mm": 5.0}
    image = make_image(units="Bq/mL", isotope="F-18", reference_time_s=0.0, info=info)
    fig = reconstruction_figure(image, title="patient 7, day 2")
    axes = axes_by_label(fig)
    assert set(axes) == {*PANELS, "colour bar"}

    letters = {
        "transverse": {"left": "R", "right": "L", "top": "A", "bottom": "P"},
        "coronal": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
        "sagittal": {"left": "A", "right": "P", "top": "S", "bottom": "I"},
        "mip": {"left": "R", "right": "L", "top": "S", "bottom": "I"},
    }
    for name, expected in letters.items():
        ax = axes[name]
        found = {}
        for text in ax.texts:
            if text.get_gid() != "orientation":
                continue
            x, y = text.get_position()  # axes fraction
            assert text.get_transform() == ax.transAxes
            side = "left" if x < 0.2 else "right" if x > 0.8 else "top" if y > 0.8 else "bottom"
            found[side] = text.get_text()
        assert found == expected, name
        assert len(ax.images) == 1

    titles = {name: axes[name].get_title() for name in PANELS}
    assert titles["transverse"].startswith("transverse, z = ")
    assert titles["coronal"].startswith("coronal, y = ")
    assert titles["sagittal"].startswith("sagittal, x = ")
    assert "MIP" in titles["mip"]
    for name in ("transverse", "coronal", "sagittal"):
        assert titles[name].endswith(" mm")

    bar = axes["colour bar"]
    assert bar.get_ylabel() in ("Bq/mL", "kBq/mL")
    # One colour scale for all panels: they share the colour bar's normalisation.
    colour_bar = axes["mip"].images[0].colorbar
    assert colour_bar is not None and colour_bar.ax is bar
    assert all(axes[name].images[0].norm is colour_bar.norm for name in PANELS)

    head = header_text(fig)
    assert "patient 7, day 2" in head
    for part in ("F-18", "Bq/mL", "decay-corrected to acquisition start", "OSEM"):
        assert part in head, part
    assert "3 iterations \u00d7 8 subsets" in head
    assert "post-filter 5 mm FWHM" in head
    assert "99.9th percentile" in head and "maximum" in head


def test_title_says_what_is_unknown() -> None:
    image = make_image()  # default units, no isotope, no decay reference, no info
    fig = reconstruction_figure(image)
    head = header_text(fig)
    assert "isotope unknown" in head
    assert "no decay correction" in head
    assert "algorithm not recorded" in head
    assert "counts/s (uncalibrated)" in head
    assert axes_by_label(fig)["colour bar"].get_ylabel() == "counts/s (uncalibrated)"


@pytest.mark.parametrize(
    ("reference", "info", "expected"),
    [
        (-5400.0, {}, "decay-corrected to acquisition start \u2212 90.0 min"),
        (30.0, {}, "decay-corrected to acquisition start + 30 s"),
        (0.0, {"frame_start_s": 60.0, "frame_duration_s": 60.0}, "frame 60\u2013120 s"),
        (0.0, {"algorithm": "MLEM", "iterations": 40}, "MLEM 40 iterations"),
    ],
)
def test_title_reference_time_and_frame(reference, info, expected) -> None:
    image = make_image(isotope="Lu-177", reference_time_s=reference, info=info)
    assert expected in header_text(reconstruction_figure(image))


def test_slice_positions_in_titles_are_world_mm() -> None:
    grid = ImageGrid((20, 30, 40), (4.0, 3.0, 2.0), origin=(-30.0, 10.0, -50.0))
    data = np.zeros(grid.shape, np.float32)
    data[ball(grid, (-20.0, 40.0, 14.0), 8.0)] = 5.0
    fig = reconstruction_figure(Image(data, grid))
    axes = axes_by_label(fig)
    k, j, i = hottest_region(data, grid.voxel_size_mm)
    z, y, x = (grid.axis_mm(a)[n] for a, n in zip(range(3), (k, j, i), strict=True))
    assert (x, y, z) == pytest.approx((-20.0, 40.0, 14.0), abs=2.0)

    def position(title: str) -> float:
        return float(title.split("=")[1].replace("mm", "").replace("\u2212", "-"))

    assert position(axes["transverse"].get_title()) == pytest.approx(z, abs=0.05)
    assert position(axes["coronal"].get_title()) == pytest.approx(y, abs=0.05)
    assert position(axes["sagittal"].get_title()) == pytest.approx(x, abs=0.05)


# --------------------------------------------------------------------------------------------
# windowing
# --------------------------------------------------------------------------------------------


def parse_maximum(head: str) -> tuple[float, str]:
    match = re.search(r"maximum (\S+) (\S+)", head)
    assert match, head
    return float(match.group(1).replace("\u2212", "-")), match.group(2)


def test_window_is_the_percentile_and_the_printed_maximum_is_true() -> None:
    rng = np.random.default_rng(3)
    data = rng.gamma(2.0, 6000.0, size=(24, 36, 44)).astype(np.float32)  # Bq/mL-like values
    data[rng.random(data.shape) < 0.05] *= -0.1  # some negative voxels (not in the window)
    data[5, 6, 7] = np.nan
    data[5, 6, 8] = 2.5e6  # a hot voxel far above the window
    image = make_image(data=data, units="Bq/mL", isotope="F-18", reference_time_s=0.0)
    fig = reconstruction_figure(image)
    finite = data[np.isfinite(data)]
    expected_top = np.percentile(finite[finite > 0].astype(np.float64), 99.9)
    for name in PANELS:
        clim = axes_by_label(fig)[name].images[0].get_clim()
        assert clim[0] == 0.0
        assert clim[1] == pytest.approx(expected_top, rel=1e-6)
    image_artist = axes_by_label(fig)["mip"].images[0]
    assert image_artist.colorbar.extend == "both"  # values above and below the window
    value, units = parse_maximum(header_text(fig))
    assert units == "kBq/mL"
    assert value * 1e3 == pytest.approx(2.5e6, rel=5e-4)  # printed to 4 significant digits
    assert "1 non-finite voxel (drawn" in header_text(fig)
    assert axes_by_label(fig)["colour bar"].get_ylabel() == "kBq/mL"


def test_percentile_option_and_uncalibrated_units() -> None:
    data = np.random.default_rng(4).random((10, 20, 30)).astype(np.float32) * 0.5
    image = make_image((10, 20, 30), 2.0, data=data)
    fig = reconstruction_figure(image, percentile=95)
    clim = axes_by_label(fig)["mip"].images[0].get_clim()
    assert clim[1] == pytest.approx(np.percentile(data[data > 0].astype(np.float64), 95))
    value, units = parse_maximum(header_text(fig))
    assert units == "counts/s"
    assert value == pytest.approx(float(data.max()), rel=5e-4)
    assert "95th percentile" in header_text(fig)


def test_image_without_positive_voxels() -> None:
    image = make_image((9, 11, 13), 2.0, data=np.zeros((9, 11, 13)))
    fig = reconstruction_figure(image)
    assert "no positive voxels" in header_text(fig)
    # Nothing to choose: the slices go through the middle of the grid.
    axes = axes_by_label(fig)
    assert axes["transverse"].get_title() == "transverse, z = +0.0 mm"
    assert axes["coronal"].get_title() == "coronal, y = +0.0 mm"
    assert axes["sagittal"].get_title() == "sagittal, x = +0.0 mm"
    assert axes_by_label(fig)["mip"].images[0].colorbar.extend == "neither"


# --------------------------------------------------------------------------------------------
# orientation and aspect
# --------------------------------------------------------------------------------------------


def test_hot_spot_lands_on_the_radiological_side_of_each_panel() -> None:
    # A hot ball at the patient's left (+x), anterior (-y) and superior (+z) of the centre,
    # in a warm cylinder, on a grid with a different size along each axis.
    grid = ImageGrid((24, 36, 44), (3.0, 2.5, 2.0))
    z, y, x = grid.meshgrid_mm()
    data = np.where(np.hypot(x, y) < 38.0, 1.0, 0.0).astype(np.float32)
    centre = (25.0, -22.0, 18.0)  # x, y, z in mm
    data[ball(grid, centre, 7.0)] = 10.0
    fig = reconstruction_figure(Image(data, grid, units="Bq/mL"))
    rgb = rendered(fig)
    top_colour = np.asarray(matplotlib.colormaps[HOUSE_STYLE.colour_map](1.0)[:3]) * 255
    axes = axes_by_label(fig)
    # (horizontal, vertical) on screen: +1 = viewer's right / up, -1 = viewer's left / down.
    expected = {
        "transverse": (+1, +1),  # patient left -> right; anterior -> up
        "coronal": (+1, +1),  # patient left -> right; superior -> up
        "sagittal": (-1, +1),  # anterior -> left; superior -> up
        "mip": (+1, +1),
    }
    for name, (horizontal, vertical) in expected.items():
        pixels = panel_pixels(fig, rgb, axes[name])
        hot = np.all(np.abs(pixels - top_colour) < 12, axis=-1)
        assert hot.sum() > 20, name
        rows, cols = np.nonzero(hot)
        dx = cols.mean() / (hot.shape[1] - 1) - 0.5
        dy = 0.5 - rows.mean() / (hot.shape[0] - 1)  # screen rows grow downwards
        assert np.sign(dx) == horizontal and abs(dx) > 0.1, (name, dx)
        assert np.sign(dy) == vertical and abs(dy) > 0.1, (name, dy)

    # The same from the image artists: the data's hot pixel, mapped through extent and origin.
    def world_of_hot_pixel(ax: object) -> tuple[float, float]:
        artist = ax.images[0]  # type: ignore[attr-defined]
        array = np.asarray(artist.get_array())
        rows, cols = np.nonzero(array >= 10.0)
        left, right, bottom, top = artist.get_extent()
        n_rows, n_cols = array.shape
        u = left + (cols.mean() + 0.5) / n_cols * (right - left)
        # origin "upper": row 0 at the top of the extent; "lower": at the bottom.
        if artist.origin == "upper":
            v = top + (rows.mean() + 0.5) / n_rows * (bottom - top)
        else:
            v = bottom + (rows.mean() + 0.5) / n_rows * (top - bottom)
        return u, v

    cx, cy, cz = centre
    assert world_of_hot_pixel(axes["transverse"]) == pytest.approx((cx, cy), abs=2.5)
    assert world_of_hot_pixel(axes["coronal"]) == pytest.approx((cx, cz), abs=3.0)
    assert world_of_hot_pixel(axes["sagittal"]) == pytest.approx((cy, cz), abs=3.0)
    assert world_of_hot_pixel(axes["mip"]) == pytest.approx((cx, cz), abs=3.0)
    # ... and the axes run the radiological way: x and y to the right, z and -y up.
    assert not axes["transverse"].xaxis_inverted()
    assert axes["transverse"].yaxis_inverted()  # posterior (+y) at the bottom
    for name in ("coronal", "sagittal", "mip"):
        assert not axes[name].xaxis_inverted() and not axes[name].yaxis_inverted()


def test_anisotropic_voxels_keep_true_proportions() -> None:
    grid = ImageGrid((10, 40, 60), (6.0, 2.0, 1.5), origin=(-20.0, 5.0, 0.0))
    fig = reconstruction_figure(Image(np.ones(grid.shape, np.float32), grid))
    fig.canvas.draw()
    axes = axes_by_label(fig)
    size_mm = {"transverse": (90.0, 80.0), "coronal": (90.0, 60.0), "sagittal": (80.0, 60.0)}
    size_mm["mip"] = size_mm["coronal"]
    for name, (width_mm, height_mm) in size_mm.items():
        box = axes[name].get_window_extent()
        assert box.height / box.width == pytest.approx(height_mm / width_mm, rel=0.01), name
    # Extents are voxel edges in world mm.
    x_edges = (0.0 - 0.75, 0.0 + 59 * 1.5 + 0.75)
    y_edges = (5.0 - 1.0, 5.0 + 39 * 2.0 + 1.0)
    z_edges = (-20.0 - 3.0, -20.0 + 9 * 6.0 + 3.0)
    assert axes["transverse"].images[0].get_extent() == pytest.approx(
        [*x_edges, y_edges[1], y_edges[0]]
    )
    assert axes["coronal"].images[0].get_extent() == pytest.approx([*x_edges, *z_edges])
    assert axes["sagittal"].images[0].get_extent() == pytest.approx([*y_edges, *z_edges])
    # Equal mm scale in every panel: pixels per mm are the same horizontally and vertically.
    scales = []
    for name, (width_mm, height_mm) in size_mm.items():
        box = axes[name].get_window_extent()
        scales += [box.width / width_mm, box.height / height_mm]
    assert max(scales) == pytest.approx(min(scales), rel=0.01)


def test_single_hot_voxel_does_not_choose_the_slices() -> None:
    grid = ImageGrid((20, 30, 30), 2.0)
    data = np.zeros(grid.shape, np.float32)
    data[ball(grid, (10.0, -8.0, 6.0), 6.0)] = 4.0  # a 12 mm lesion
    data[2, 3, 4] = 80.0  # one noisy voxel, 20x hotter
    k, j, i = hottest_region(data, grid.voxel_size_mm)
    assert grid.index_to_world(np.array([k, j, i])) == pytest.approx([10.0, -8.0, 6.0], abs=2.1)
    fig = reconstruction_figure(Image(data, grid))
    assert parse_maximum(header_text(fig))[0] == pytest.approx(80.0)


def test_hottest_region_of_a_uniform_image_is_the_centre() -> None:
    assert hottest_region(np.ones((9, 11, 13)), (2.0, 2.0, 2.0)) == (4, 5, 6)
    with pytest.raises(InputError):
        hottest_region(np.ones((4, 4)), (1.0, 1.0, 1.0))


# --------------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------------


def test_sum_of_frames_is_labelled() -> None:
    grid = ImageGrid((8, 12, 12), 3.0)
    frames = []
    for n, (start, duration) in enumerate([(0.0, 60.0), (60.0, 60.0), (120.0, 180.0)]):
        info = {"algorithm": "LM-OSEM", "iterations": 2, "subsets": 4, "n_prompts": 100 + n}
        info |= {"frame_start_s": start, "frame_duration_s": duration}
        data = np.full(grid.shape, n + 1.0, np.float32)
        frames.append(Image(data, grid, units="Bq/mL", isotope="C-11", info=info))
    total = sum_frames(frames)
    np.testing.assert_allclose(np.asarray(total), 6.0)
    assert total.info["summed_frames"] == 3
    fig = reconstruction_figure(total)
    head = header_text(fig)
    assert "sum of 3 frames, 0\u2013300 s" in head
    assert axes_by_label(fig)["colour bar"].get_ylabel() == "Bq/mL, sum of 3 frames"
    assert "LM-OSEM 2 iterations \u00d7 4 subsets" in head


def test_sum_of_frames_refuses_mismatches() -> None:
    grid = ImageGrid((4, 6, 6), 2.0)
    a = Image(np.ones(grid.shape, np.float32), grid, units="Bq/mL")
    with pytest.raises(InputError, match="at least one"):
        sum_frames([])
    with pytest.raises(GeometryError, match="grid"):
        sum_frames([a, Image(np.ones((4, 6, 7), np.float32), ImageGrid((4, 6, 7), 2.0))])
    with pytest.raises(InputError, match="units"):
        sum_frames([a, a.with_data(np.ones(grid.shape, np.float32), units="counts")])
    with pytest.raises(InputError, match="recon.Image"):
        sum_frames([a, np.ones(grid.shape)])  # type: ignore[list-item]


# --------------------------------------------------------------------------------------------
# bad input, saving, house style
# --------------------------------------------------------------------------------------------


def test_bad_input_is_refused() -> None:
    image = make_image((4, 5, 6), 2.0)
    with pytest.raises(InputError, match="recon.Image"):
        reconstruction_figure(np.ones((4, 5, 6)))  # type: ignore[arg-type]
    for bad in (0, -1, 100.5, float("nan"), "99", True):
        with pytest.raises(InputError, match="percentile"):
            reconstruction_figure(image, percentile=bad)  # type: ignore[arg-type]
    complex_image = Image(np.ones((4, 5, 6), np.complex64), image.grid)
    with pytest.raises(InputError, match="real"):
        reconstruction_figure(complex_image)


def test_save_is_atomic_with_ordinary_permissions(tmp_path: Path) -> None:
    image = make_image((8, 10, 12), 2.0)
    target = tmp_path / "image.png"
    target.write_bytes(b"old")
    old_umask = os.umask(0o022)
    try:
        save_reconstruction_figure(image, target)
    finally:
        os.umask(old_umask)
    assert png_size(target)[0] >= 800
    if os.name == "posix":
        assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.png"]  # no temporary files

    with pytest.raises(InputError, match="does not exist"):
        save_reconstruction_figure(image, tmp_path / "missing" / "x.png")
    with pytest.raises(InputError, match="folder"):
        save_reconstruction_figure(image, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.png"]


def test_failed_render_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "f.png"
    target.write_bytes(b"previous")
    fig = new_figure(800, 600)

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        save_figure(fig, target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_house_style_figure(tmp_path: Path) -> None:
    fig = new_figure(300, 400)  # narrower than the house minimum: widened
    assert fig.get_size_inches()[0] * fig.dpi == pytest.approx(HOUSE_STYLE.min_width_px)
    assert fig.dpi == HOUSE_STYLE.dpi
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 3, 2], label="tumour")
    ax.set_xlabel("time after injection (h)")
    ax.set_title("curves")
    ax.legend()
    style_axes(ax)
    assert ax.xaxis.label.get_fontsize() == HOUSE_STYLE.font_size
    assert ax.title.get_fontsize() == HOUSE_STYLE.font_size
    assert ax.xaxis.get_ticklabels()[0].get_fontsize() == HOUSE_STYLE.small_size
    width, height = png_size(save_figure(fig, tmp_path / "curves.png"))
    assert (width, height) == (800, 400)
    with pytest.raises(InputError):
        new_figure(0, 100)


_ISOLATION = """
import json, sys
import recon
import recon.figures
state = {"after_import": sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib")}
import matplotlib
before = dict(matplotlib.rcParams)
import numpy as np
image = recon.Image(np.ones((6, 8, 10), np.float32), recon.ImageGrid((6, 8, 10), 2.0))
recon.figures.save_reconstruction_figure(image, sys.argv[1])
state["pyplot"] = "matplotlib.pyplot" in sys.modules
state["rc_changed"] = sorted(k for k, v in matplotlib.rcParams.items() if before.get(k) != v)
print(json.dumps(state))
"""


def test_no_pyplot_no_rcparams_change_and_lazy_import(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MPL"))}
    env["MPLBACKEND"] = "Agg"  # whatever the backend setting, pyplot must not be touched
    proc = subprocess.run(
        [sys.executable, "-c", _ISOLATION, str(tmp_path / "x.png")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    state = json.loads(proc.stdout)
    assert state["after_import"] == [], "importing recon.figures imported matplotlib"
    assert state["pyplot"] is False
    assert state["rc_changed"] == []
    assert png_size(tmp_path / "x.png")[0] >= 800
