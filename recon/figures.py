"""Figures: the project's house style and the reconstruction figure.

Every PNG that recon writes is drawn with matplotlib's object-oriented API on an Agg canvas
(never pyplot, never a change to ``matplotlib.rcParams``) and saved by :func:`save_figure`, so
all figures share one look (:data:`HOUSE_STYLE`: resolution, font sizes, colour map) and one
atomic write. matplotlib is imported inside the functions, so ``import recon`` stays free of it.

Using the house style for a new plot::

    from recon.figures import HOUSE_STYLE, new_figure, save_figure, style_axes

    fig = new_figure(960, 600)                  # pixels; at least HOUSE_STYLE.min_width_px wide
    ax = fig.add_subplot()
    ax.plot(t_h, values, "o")
    ax.set_xlabel("time after injection (h)")
    style_axes(ax)                              # house font sizes, after titles and labels
    save_figure(fig, out / "tacs.png")          # temporary file, then rename

The reconstruction figure (:func:`reconstruction_figure`, :func:`save_reconstruction_figure`)
shows transverse, coronal and sagittal slices through the hottest region of an image and a
coronal maximum-intensity projection, in the radiological convention, with orientation letters,
true voxel proportions, a colour bar in the image's units and a title that says what the image
is (isotope, units, decay reference, algorithm).
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from recon._files import write_atomically
from recon.errors import GeometryError, InputError
from recon.image import Image

if TYPE_CHECKING:  # matplotlib is imported lazily at run time
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "HOUSE_STYLE",
    "FigureStyle",
    "hottest_region",
    "new_figure",
    "reconstruction_figure",
    "save_figure",
    "save_reconstruction_figure",
    "style_axes",
    "sum_frames",
]


@dataclass(frozen=True)
class FigureStyle:
    """The look shared by every figure recon writes.

    Attributes
    ----------
    dpi : float
        Pixels per inch; figure sizes are given in pixels and converted with it.
    font_size : float
        Axis labels, panel titles, legends, colour-bar label (points).
    title_size : float
        Figure titles (points).
    small_size : float
        Tick labels and annotations (points).
    colour_map : str
        matplotlib colour map of images. ``"inferno"`` is perceptually uniform and readable in
        grey and by colour-blind viewers, and dark at zero like the usual nuclear-medicine maps.
    bad_colour : str
        Colour of voxels that are not finite (NaN, inf), distinct from every colour-map colour.
    min_width_px : int
        Narrowest figure (pixels) :func:`new_figure` makes, so that text stays readable.
    max_width_px, max_height_px : int
        Largest size the reconstruction figure grows to (pixels).
    max_px_per_voxel : float
        The reconstruction figure enlarges voxels up to this many pixels (beyond, a small image
        only gets blockier), unless it must to reach ``min_width_px``.
    """

    dpi: float = 100.0
    font_size: float = 10.0
    title_size: float = 12.0
    small_size: float = 8.0
    colour_map: str = "inferno"
    bad_colour: str = "#40c0ff"
    min_width_px: int = 800
    max_width_px: int = 1600
    max_height_px: int = 1200
    max_px_per_voxel: float = 6.0

    def points_to_px(self, points: float) -> float:
        """Height in pixels of text of ``points`` size at this style's resolution."""
        return points * self.dpi / 72.0


#: The style every recon figure uses.
HOUSE_STYLE = FigureStyle()


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401  (imported lazily: `import recon` stays light)
    except ImportError:
        raise InputError(
            "figures need matplotlib, a dependency of recon: pip install matplotlib"
        ) from None


def new_figure(
    width_px: float, height_px: float, *, style: FigureStyle = HOUSE_STYLE, **kwargs: Any
) -> Figure:
    """A blank :class:`matplotlib.figure.Figure` of the house style, on its own Agg canvas.

    No pyplot figure manager is involved: the figure is not registered anywhere, needs no
    display and is freed like any object.

    Parameters
    ----------
    width_px, height_px : float
        Size in pixels; the width is raised to ``style.min_width_px`` if smaller.
    style : FigureStyle, keyword-only
        Defaults to :data:`HOUSE_STYLE`.
    **kwargs
        Passed to ``Figure`` (e.g. ``layout="constrained"``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not (width_px > 0 and height_px > 0 and math.isfinite(width_px * height_px)):
        raise InputError(f"figure size must be positive pixels, got {width_px} x {height_px}")
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width_px = max(float(width_px), float(style.min_width_px))
    kwargs.setdefault("facecolor", "white")
    fig = Figure(figsize=(width_px / style.dpi, height_px / style.dpi), dpi=style.dpi, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def style_axes(ax: Axes, *, style: FigureStyle = HOUSE_STYLE) -> None:
    """Apply the house font sizes to ``ax``: title and axis labels, tick labels, legend.

    Call it after setting titles and labels (``set_title`` and ``set_xlabel`` reset the size
    to matplotlib's defaults).
    """
    ax.title.set_fontsize(style.font_size)
    ax.xaxis.label.set_fontsize(style.font_size)
    ax.yaxis.label.set_fontsize(style.font_size)
    ax.tick_params(labelsize=style.small_size)
    legend = ax.get_legend()
    if legend is not None:
        for text in legend.get_texts():
            text.set_fontsize(style.small_size)


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Render ``fig`` as PNG and write it to ``path`` atomically.

    The PNG is rendered in memory, written to a temporary file in the destination folder and
    renamed into place, so readers never see a half-written file and an existing file is either
    kept or fully replaced. The file gets the permissions of any new file (0666 less the umask,
    usually 0644). The size in pixels is the figure's (no tight cropping, whatever the user's
    matplotlib settings).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        E.g. from :func:`new_figure` or :func:`reconstruction_figure`.
    path : str or os.PathLike
        Destination file; its folder must exist.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    InputError
        The folder does not exist, or ``path`` is a folder.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError(f"output folder {target.parent} does not exist; create it first")
    if target.is_dir():
        raise InputError(f"{target} is a folder; give a file name for the figure")
    buffer = io.BytesIO()
    fig.savefig(
        buffer, format="png", dpi=fig.dpi, facecolor=fig.get_facecolor(), bbox_inches=None,
        metadata={"Software": "recon (matplotlib)"},
    )  # fmt: skip
    data = buffer.getvalue()
    return write_atomically(target, lambda handle: handle.write(data))


# --------------------------------------------------------------------------------------------
# where to cut
# --------------------------------------------------------------------------------------------

#: Side of the region whose mean locates the hottest region: 1 cm, i.e. a 1 mL cube, the size
#: of the "peak" region of PERCIST (Wahl et al., J Nucl Med 2009;50:122S), large enough that a
#: single noisy voxel does not win.
_HOT_REGION_MM = 10.0
_HOT_REGION_MIN_VOXELS = 3


def _box_sum(data: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Sum over ``n`` (odd) neighbours along ``axis``, counting voxels outside the grid as 0."""
    half = n // 2
    pad = [(0, 0)] * data.ndim
    pad[axis] = (half + 1, half)
    cumulative = np.cumsum(np.pad(data, pad), axis=axis)
    size = data.shape[axis]
    upper = [slice(None)] * data.ndim
    lower = [slice(None)] * data.ndim
    upper[axis] = slice(n, n + size)
    lower[axis] = slice(0, size)
    return cumulative[tuple(upper)] - cumulative[tuple(lower)]


def hottest_region(
    values: np.ndarray,
    voxel_size_mm: Sequence[float],
    *,
    size_mm: float = _HOT_REGION_MM,
    min_voxels: int = _HOT_REGION_MIN_VOXELS,
) -> tuple[int, int, int]:
    """Centre voxel of the hottest region: the largest mean over a box of about ``size_mm``.

    The box has an odd number of voxels along each axis, the nearest to ``size_mm`` and at
    least ``min_voxels``; voxels outside the grid count as zero and non-finite voxels as zero.
    Among boxes of equal mean (a uniform image) the one nearest the grid centre wins.

    Parameters
    ----------
    values : ndarray of shape (z, y, x)
        Image values.
    voxel_size_mm : sequence of 3 float
        Voxel size ``(z, y, x)`` in mm.
    size_mm : float, keyword-only
        Side of the box in mm (default 10 mm: a 1 mL cube).
    min_voxels : int, keyword-only
        Fewest voxels along each side of the box (default 3).

    Returns
    -------
    tuple of 3 int
        Index ``(z, y, x)`` of the centre of the hottest box.
    """
    array = np.asarray(values)
    if array.ndim != 3 or array.size == 0:
        raise InputError(f"hottest_region needs a non-empty (z, y, x) array, got {array.shape}")
    data = np.where(np.isfinite(array), array, 0.0).astype(np.float64, copy=False)
    for axis, voxel in enumerate(voxel_size_mm):
        n = max(int(min_voxels), round(size_mm / float(voxel)))
        data = _box_sum(data, axis, n + 1 - n % 2)
    best = data.max()
    candidates = np.argwhere(data >= best - 1e-9 * abs(best))
    centre = (np.asarray(array.shape) - 1) / 2.0
    nearest = candidates[np.argmin(((candidates - centre) ** 2).sum(axis=1))]
    return int(nearest[0]), int(nearest[1]), int(nearest[2])


# --------------------------------------------------------------------------------------------
# words and numbers
# --------------------------------------------------------------------------------------------


def _number(value: float) -> str:
    """A value with 4 significant digits, without exponents between 0.001 and 1e6."""
    if not math.isfinite(value):
        return str(value)
    magnitude = abs(value)
    if 1000.0 <= magnitude < 1e6:
        text = f"{value:.0f}"
    elif 1e-3 <= magnitude < 1000.0 or magnitude == 0.0:
        text = f"{value:.4g}"
    else:
        text = f"{value:.3e}"
    return text.replace("-", "\u2212")


def _mm(value: float) -> str:
    return f"{value:+.1f}".replace("-", "\u2212") + " mm"


def _duration(seconds: float) -> str:
    magnitude = abs(seconds)
    if magnitude < 120.0:
        return f"{magnitude:g} s"
    if magnitude < 2 * 3600.0:
        return f"{magnitude / 60.0:.1f} min"
    if magnitude < 3 * 86400.0:
        return f"{magnitude / 3600.0:.2f} h"
    return f"{magnitude / 86400.0:.2f} d"


def _reference_text(reference_time_s: float | None) -> str:
    if reference_time_s is None:
        return "no decay correction"
    if reference_time_s == 0:
        return "decay-corrected to acquisition start"
    sign = "+" if reference_time_s > 0 else "\u2212"
    return f"decay-corrected to acquisition start {sign} {_duration(reference_time_s)}"


def _real(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number (``info`` is free-form)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    return None


def _algorithm_text(info: dict[str, Any]) -> str:
    algorithm = info.get("algorithm")
    if not algorithm:
        return "algorithm not recorded"
    text = str(algorithm)
    iterations, subsets = info.get("iterations"), info.get("subsets")
    if iterations is not None and subsets is not None:
        text += f" {iterations} iterations \u00d7 {subsets} subsets"
    elif iterations is not None:
        text += f" {iterations} iterations"
    fwhm = _real(info.get("post_filter_fwhm_mm"))
    if fwhm:
        text += f", Gaussian post-filter {fwhm:g} mm FWHM"
    return text


def _frame_text(info: dict[str, Any]) -> str | None:
    start, duration = _real(info.get("frame_start_s")), _real(info.get("frame_duration_s"))
    summed = info.get("summed_frames")
    if summed:
        end = _real(info.get("frame_end_s"))
        span = f", {start:g}\u2013{end:g} s" if start is not None and end is not None else ""
        return f"sum of {summed} frames{span}"
    if start is not None and duration:
        return f"frame {start:g}\u2013{start + duration:g} s"
    return None


def _display_units(units: str, vmax: float) -> tuple[float, str]:
    """Factor and unit for labels: Bq-based units get an SI prefix above 10 000."""
    if units.startswith("Bq"):
        if vmax >= 1e7:
            return 1e-6, "M" + units
        if vmax >= 1e4:
            return 1e-3, "k" + units
    return 1.0, units


# --------------------------------------------------------------------------------------------
# the reconstruction figure
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Panel:
    name: str  # the axes' label, for tests and scripts
    title: str
    data: np.ndarray  # 2-D, row 0 first
    extent: tuple[float, float, float, float]  # left, right, bottom, top in mm
    origin: Literal["upper", "lower"]  # "upper": row 0 at the top
    letters: tuple[str, str, str, str]  # left, right, top, bottom
    width_mm: float
    height_mm: float


def _panels(values: np.ndarray, image: Image, centre: tuple[int, int, int]) -> list[_Panel]:
    grid = image.grid
    k, j, i = centre
    z, y, x = (grid.axis_mm(axis) for axis in range(3))
    dz, dy, dx = grid.voxel_size_mm
    # Voxel edges: what the panel spans in mm, so the aspect follows the voxel sizes.
    x_lo, x_hi = x[0] - dx / 2, x[-1] + dx / 2
    y_lo, y_hi = y[0] - dy / 2, y[-1] + dy / 2
    z_lo, z_hi = z[0] - dz / 2, z[-1] + dz / 2
    finite = np.isfinite(values)
    # NaN would win every maximum: as -inf it loses, and an all-NaN ray stays NaN (drawn as bad).
    mip = np.where(finite, values, -np.inf).max(axis=1)
    mip = np.where(np.isneginf(mip) & ~finite.any(axis=1), np.nan, mip)
    width_x, width_y, height_z = x_hi - x_lo, y_hi - y_lo, z_hi - z_lo
    # Radiological convention: the patient's right (-x in LPS) on the viewer's left; anterior
    # (-y) up in the transverse plane; superior (+z) up in coronal and sagittal planes, with
    # anterior on the left of the sagittal plane.
    return [
        _Panel(
            "transverse", f"transverse, z = {_mm(z[k])}", values[k],
            (x_lo, x_hi, y_hi, y_lo), "upper", ("R", "L", "A", "P"), width_x, width_y,
        ),
        _Panel(
            "coronal", f"coronal, y = {_mm(y[j])}", values[:, j, :],
            (x_lo, x_hi, z_lo, z_hi), "lower", ("R", "L", "S", "I"), width_x, height_z,
        ),
        _Panel(
            "sagittal", f"sagittal, x = {_mm(x[i])}", values[:, :, i],
            (y_lo, y_hi, z_lo, z_hi), "lower", ("A", "P", "S", "I"), width_y, height_z,
        ),
        _Panel(
            "mip", "coronal MIP (maximum along y)", mip,
            (x_lo, x_hi, z_lo, z_hi), "lower", ("R", "L", "S", "I"), width_x, height_z,
        ),
    ]  # fmt: skip


@dataclass(frozen=True)
class _Layout:
    """Panel rectangles and figure size, all in pixels (y measured down from the top)."""

    width_px: int
    height_px: int
    boxes: list[tuple[float, float, float, float]]  # left, top, width, height per panel
    colour_bar: tuple[float, float, float, float]
    header_left_px: float


# Fixed margins of the reconstruction figure in pixels (at 100 dpi, 8 pt text is 11 px high).
_TICKS_LEFT = 46.0  # y tick labels
_TICKS_BELOW = 20.0  # x tick labels
_GAP = 14.0  # between a panel's tick labels and its neighbour
_BAR_GAP, _BAR_WIDTH, _BAR_LABELS = 22.0, 18.0, 90.0  # colour bar and its labels
_EDGE = 12.0  # figure border

#: Candidate arrangements of the panels (transverse 0, coronal 1, sagittal 2, MIP 3), as
#: columns of panels stacked top to bottom: two by two (near-cubic volumes), the transverse
#: slice beside the three others (flat volumes: few slices), and one row (tall volumes).
_ARRANGEMENTS: tuple[tuple[tuple[int, ...], ...], ...] = (
    ((0, 2), (1, 3)),
    ((0,), (1, 2, 3)),
    ((0,), (1,), (2,), (3,)),
)


def _layout(
    panels: list[_Panel], header_px: float, min_voxel_mm: float, style: FigureStyle
) -> _Layout:
    """Arrange the panels the way that draws them largest within the style's maximum size.

    The scale (pixels per mm) is the same for every panel. Voxels are enlarged up to
    ``style.max_px_per_voxel`` pixels, or further when the figure would otherwise be narrower
    than ``style.min_width_px``; among arrangements of equal scale the smallest figure wins.
    """
    title_px = style.points_to_px(style.font_size) * 1.6
    per_panel_h = title_px + _TICKS_BELOW
    bar_w = _BAR_GAP - _GAP + _BAR_WIDTH + _BAR_LABELS + _EDGE
    best: tuple[float, float, tuple[tuple[int, ...], ...], float, float] | None = None
    for columns in _ARRANGEMENTS:
        widths_mm = [max(panels[p].width_mm for p in column) for column in columns]
        fixed_w = len(columns) * (_TICKS_LEFT + _GAP) + bar_w

        def height_at(scale: float, columns: tuple[tuple[int, ...], ...] = columns) -> float:
            stacks = [sum(per_panel_h + panels[p].height_mm * scale for p in c) for c in columns]
            return header_px + max(stacks) + _EDGE

        # Height is linear in the scale: find where it reaches the maximum height.
        h0, h1 = height_at(0.0), height_at(1.0)
        fit = min(
            (style.max_width_px - fixed_w) / sum(widths_mm),
            (style.max_height_px - h0) / max(h1 - h0, 1e-9),
        )
        scale = min(fit, style.max_px_per_voxel / min_voxel_mm)
        scale = max(scale, min((style.min_width_px - fixed_w) / sum(widths_mm), fit), 1e-3)
        area = (fixed_w + scale * sum(widths_mm)) * height_at(scale)
        if best is None or scale > best[0] * 1.01 or (scale > best[0] / 1.01 and area < best[1]):
            best = (scale, area, columns, fixed_w, height_at(scale))
    assert best is not None
    scale, _, columns, fixed_w, height = best
    widths_mm = [max(panels[p].width_mm for p in column) for column in columns]
    content_w = fixed_w + scale * sum(widths_mm)
    width = max(content_w, float(style.min_width_px))
    left = (width - content_w) / 2.0  # centre the content when the figure is wider
    boxes: list[tuple[float, float, float, float]] = [(0.0, 0.0, 0.0, 0.0)] * len(panels)
    bottom = header_px
    for column, width_mm in zip(columns, widths_mm, strict=True):
        top = header_px
        for p in column:
            boxes[p] = (
                left + _TICKS_LEFT, top + title_px,
                panels[p].width_mm * scale, panels[p].height_mm * scale,
            )  # fmt: skip
            top += per_panel_h + panels[p].height_mm * scale
        bottom = max(bottom, top - _TICKS_BELOW)
        left += _TICKS_LEFT + width_mm * scale + _GAP
    bar = (left - _GAP + _BAR_GAP, header_px + title_px, _BAR_WIDTH, bottom - header_px - title_px)
    header_left = (width - content_w) / 2.0 + _TICKS_LEFT
    return _Layout(int(round(width)), int(round(height)), boxes, bar, header_left)


def _window(values: np.ndarray, percentile: float) -> dict[str, Any]:
    finite = np.isfinite(values)
    n_finite = int(finite.sum())
    positive = values[finite & (values > 0)]
    true_max = float(values[finite].max()) if n_finite else math.nan
    true_min = float(values[finite].min()) if n_finite else math.nan
    if positive.size:
        vmax = float(np.percentile(positive.astype(np.float64), percentile))
    else:
        vmax = 1.0  # nothing positive to show: any scale draws the image black
    return {
        "vmin": 0.0, "vmax": vmax, "max": true_max, "min": true_min,
        "n_positive": int(positive.size), "n_nonfinite": int(values.size - n_finite),
    }  # fmt: skip


def _ordinal(value: float) -> str:
    text = f"{value:g}"
    if text.endswith(("11", "12", "13")) or "." in text:
        return text + "th"
    return text + {"1": "st", "2": "nd", "3": "rd"}.get(text[-1], "th")


def _header_lines(
    image: Image,
    window: dict[str, Any],
    percentile: float,
    where_mm: np.ndarray,
    title: str | None,
) -> list[tuple[str, bool]]:
    """The title lines, each with whether it is the bold headline."""
    factor, units = _display_units(image.units, window["vmax"])
    parts = [
        image.isotope or "isotope unknown",
        image.units,
        _reference_text(image.reference_time_s),
    ]
    parts.append(_algorithm_text(image.info))
    frame = _frame_text(image.info)
    if frame:
        parts.append(frame)
    lines = [(title, True)] if title else []
    lines.append((" \u00b7 ".join(parts), not title))
    if window["n_positive"]:
        shown = (
            f"colour window 0\u2013{_number(window['vmax'] * factor)} "
            f"({_ordinal(percentile)} percentile of positive voxels)"
        )
    else:
        shown = "no positive voxels: colour window 0\u20131"
    lines.append((f"{shown} \u00b7 maximum {_number(window['max'] * factor)} {units}", False))
    x, y, z = where_mm
    where = (
        f"slices through the hottest 1 cm\u00b3 region at x = {_mm(x)}, y = {_mm(y)}, z = {_mm(z)}"
    )
    if window["n_nonfinite"]:
        n = window["n_nonfinite"]
        where += f" \u00b7 {n} non-finite voxel{'s' if n > 1 else ''} (drawn in light blue)"
    lines.append((where, False))
    return lines


def _wrap(
    lines: list[tuple[str, bool]], width_px: float, style: FigureStyle
) -> list[tuple[str, bool]]:
    out = []
    for text, bold in lines:
        size = style.title_size if bold else style.font_size
        # DejaVu Sans averages about 0.6 em per character (bold a little more).
        chars = max(20, int(width_px / (style.points_to_px(size) * (0.66 if bold else 0.6))))
        out += [(part, bold) for part in textwrap.wrap(text, chars)]
    return out


def _line_px(bold: bool, style: FigureStyle) -> float:
    return style.points_to_px(style.title_size if bold else style.font_size) * 1.45


def reconstruction_figure(
    image: Image,
    *,
    title: str | None = None,
    percentile: float = 99.9,
    style: FigureStyle = HOUSE_STYLE,
) -> Figure:
    """Orthogonal slices through the hottest region and a MIP of ``image``, ready to save.

    Four panels: transverse, coronal and sagittal slices through the centre of the hottest
    1 cm³ region (:func:`hottest_region`, so one noisy voxel does not choose them) and a
    coronal maximum-intensity projection (maximum along y). The display is radiological: the
    patient's right on the viewer's left, anterior up in the transverse slice, superior up in
    the coronal and sagittal slices (anterior on the left of the sagittal slice); each panel
    carries orientation letters (R/L, A/P, S/I), its slice position in mm and axes in world mm,
    and is drawn with the true proportions of the voxels. All panels share one colour window,
    from 0 to the ``percentile`` of the positive voxels, shown by a colour bar in the image's
    units; the true maximum is printed in the title with the isotope, units, decay reference,
    algorithm (iterations × subsets) and frame. The figure is at least ``style.min_width_px``
    wide and, unless that minimum forces it, at most ``style.max_width_px`` ×
    ``style.max_height_px``; the arrangement of the panels (2 × 2, the transverse slice beside
    the other three, or one row) is the one that draws them largest.

    Parameters
    ----------
    image : Image
        Volume ``(z, y, x)`` on its grid (LPS world frame), with ``units``, ``isotope``,
        ``reference_time_s`` and ``info`` (``algorithm``, ``iterations``, ``subsets``,
        ``post_filter_fwhm_mm``, ``frame_start_s``, ``frame_duration_s``; ``summed_frames``
        from :func:`sum_frames`).
    title : str, keyword-only
        A headline above the description (e.g. the study's name).
    percentile : float, keyword-only
        Top of the colour window, as a percentile (0, 100] of the positive voxels.
    style : FigureStyle, keyword-only
        Defaults to :data:`HOUSE_STYLE`.

    Returns
    -------
    matplotlib.figure.Figure
        On an Agg canvas; its axes are labelled ``"transverse"``, ``"coronal"``, ``"sagittal"``,
        ``"mip"`` and ``"colour bar"``. Save it with :func:`save_figure`.

    Raises
    ------
    InputError
        ``image`` is not a :class:`recon.Image` with real values, or ``percentile`` is outside
        (0, 100].
    """
    if not isinstance(image, Image):
        raise InputError(f"reconstruction_figure needs a recon.Image, got {type(image).__name__}")
    number = isinstance(percentile, (int, float)) and not isinstance(percentile, bool)
    if not (number and 0.0 < percentile <= 100.0):
        raise InputError(f"percentile must be in (0, 100], got {percentile!r}")
    values = np.asarray(image)
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_) or np.iscomplexobj(
        values
    ):
        raise InputError(f"the image must hold real numbers, got dtype {values.dtype}")
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float32)
    _require_matplotlib()
    import matplotlib
    from matplotlib import patheffects
    from matplotlib.colors import Normalize
    from matplotlib.ticker import FuncFormatter

    window = _window(values, percentile)
    if window["n_nonfinite"]:
        # +-inf would be drawn as the ends of the colour map; NaN is drawn in the "bad" colour.
        values = np.where(np.isfinite(values), values, np.nan)
    centre = hottest_region(values, image.grid.voxel_size_mm)
    where_mm = image.grid.index_to_world(np.asarray(centre, dtype=np.float64))
    panels = _panels(values, image, centre)
    lines = _header_lines(image, window, percentile, where_mm, title)

    # The header's height depends on how its lines wrap, which depends on the width: lay out
    # with the lines unwrapped, wrap them to that width, then lay out again.
    min_voxel = min(image.grid.voxel_size_mm)
    layout = _layout(panels, 12.0 + sum(_line_px(b, style) for _, b in lines), min_voxel, style)
    lines = _wrap(lines, layout.width_px - layout.header_left_px - _EDGE, style)
    header_px = 12.0 + sum(_line_px(b, style) for _, b in lines)
    layout = _layout(panels, header_px, min_voxel, style)

    fig = new_figure(layout.width_px, layout.height_px, style=style)
    width, height = layout.width_px, layout.height_px

    def rect(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        left, top, w, h = box
        return left / width, 1.0 - (top + h) / height, w / width, h / height

    y_px = 8.0
    for text, bold in lines:
        fig.text(
            layout.header_left_px / width, 1.0 - y_px / height, text, ha="left", va="top",
            fontsize=style.title_size if bold else style.font_size,
            fontweight="bold" if bold else "normal", parse_math=False, gid="header",
        )  # fmt: skip
        y_px += _line_px(bold, style)

    cmap = matplotlib.colormaps[style.colour_map].with_extremes(bad=style.bad_colour)
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    letter_places = (
        (0.02, 0.5, "left", "center"), (0.98, 0.5, "right", "center"),
        (0.5, 0.98, "center", "top"), (0.5, 0.02, "center", "bottom"),
    )  # fmt: skip
    norm = Normalize(vmin=window["vmin"], vmax=window["vmax"])  # one scale for every panel
    artist = None
    for panel, box in zip(panels, layout.boxes, strict=True):
        ax = fig.add_axes(rect(box), label=panel.name)
        artist = ax.imshow(
            panel.data, cmap=cmap, norm=norm,
            extent=panel.extent, origin=panel.origin, aspect="equal",
            interpolation="antialiased",
        )  # fmt: skip
        ax.set_facecolor("black")
        ax.set_title(panel.title, fontsize=style.font_size, parse_math=False, pad=4)
        ax.tick_params(labelsize=style.small_size, length=3, pad=2)
        # A panel only a few voxels thin (a single-slice image) has no room for ticks and
        # letters across it; its orientation is still given by the letters along it.
        too_thin = 4.0 * style.points_to_px(style.font_size)
        wide, tall = box[2] >= too_thin, box[3] >= too_thin
        if not tall:
            ax.set_yticks([])
        if not wide:
            ax.set_xticks([])
        places = zip(panel.letters, letter_places, (wide, wide, tall, tall), strict=True)
        for letter, (lx, ly, ha, va), room in places:
            if not room:  # left/right letters need the width, top/bottom ones the height
                continue
            ax.text(
                lx, ly, letter, transform=ax.transAxes, ha=ha, va=va, color="white",
                fontsize=style.font_size, fontweight="bold", path_effects=outline,
                gid="orientation",
            )  # fmt: skip
    assert artist is not None
    cax = fig.add_axes(rect(layout.colour_bar), label="colour bar")
    over = window["max"] > window["vmax"]
    under = window["min"] < window["vmin"]
    extend = {(True, True): "both", (True, False): "max", (False, True): "min"}.get(
        (bool(over), bool(under)), "neither"
    )
    bar = fig.colorbar(artist, cax=cax, extend=extend)
    factor, units = _display_units(image.units, window["vmax"])
    summed = image.info.get("summed_frames")
    # A sum of frames is not a concentration: the label says what the numbers are.
    label = f"{units}, sum of {summed} frames" if summed else units
    bar.set_label(label, fontsize=style.font_size, parse_math=False)
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _number(v * factor)))
    bar.ax.tick_params(labelsize=style.small_size)
    return fig


def save_reconstruction_figure(image: Image, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Build :func:`reconstruction_figure` of ``image`` and write it to ``path`` as PNG.

    Parameters
    ----------
    image : Image
        The volume to show.
    path : str or os.PathLike
        Destination ``.png``; its folder must exist. Written atomically (:func:`save_figure`).
    **kwargs
        ``title``, ``percentile``, ``style``: see :func:`reconstruction_figure`.

    Returns
    -------
    Path
        The path written.
    """
    return save_figure(reconstruction_figure(image, **kwargs), path)


def sum_frames(images: Sequence[Image]) -> Image:
    """The voxel-wise sum of the frames of a dynamic study, labelled as such.

    Parameters
    ----------
    images : sequence of Image
        Frames on the same grid, in the same units, with the same isotope and decay reference.

    Returns
    -------
    Image
        float32 sum; ``info`` keeps the algorithm settings the frames share and records
        ``summed_frames`` (their number) and the span ``frame_start_s`` to ``frame_end_s`` when
        every frame has its timing, so :func:`reconstruction_figure` titles it "sum of N frames".

    Raises
    ------
    InputError
        No frames, or frames that differ in units, isotope or decay reference.
    GeometryError
        Frames on different grids.
    """
    frames = list(images)
    if not frames:
        raise InputError("sum_frames needs at least one frame")
    for n, frame in enumerate(frames):
        if not isinstance(frame, Image):
            raise InputError(f"frame {n} is a {type(frame).__name__}, not a recon.Image")
    first = frames[0]
    for n, frame in enumerate(frames[1:], start=1):
        if not frame.grid.same_as(first.grid):
            raise GeometryError(f"frame {n} is on another grid than frame 0; cannot sum them")
        same = (frame.units, frame.isotope, frame.reference_time_s)
        if same != (first.units, first.isotope, first.reference_time_s):
            raise InputError(
                f"frame {n} differs from frame 0 in units, isotope or decay reference; "
                "cannot sum them"
            )
    total = np.zeros(first.grid.shape, dtype=np.float64)
    for frame in frames:
        total += np.asarray(frame, dtype=np.float64)
    info = {
        key: first.info[key]
        for key in ("algorithm", "iterations", "subsets", "post_filter_fwhm_mm")
        if key in first.info and all(f.info.get(key) == first.info[key] for f in frames)
    }
    info["summed_frames"] = len(frames)
    timing = [(f.info.get("frame_start_s"), f.info.get("frame_duration_s")) for f in frames]
    known = [(start, duration) for start, duration in timing if start is not None and duration]
    if len(known) == len(frames):
        info["frame_start_s"] = float(min(start for start, _ in known))
        info["frame_end_s"] = float(max(start + duration for start, duration in known))
    return Image(
        total.astype(np.float32), first.grid, units=first.units, isotope=first.isotope,
        reference_time_s=first.reference_time_s, info=info,
    )  # fmt: skip
