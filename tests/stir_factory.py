"""STIR's image conventions, written for the tests from STIR's source (no recon reader/writer).

No STIR binary is available here, so this module re-implements what STIR does (UCL/STIR):

- :func:`write_stir_image` writes a header as ``write_basic_interfile_image_header``
  (``src/IO/interfile.cxx``) does and the data as STIR stores a ``VoxelsOnCartesianGrid``: x
  fastest, then y, then planes from z index 0; x/y indices from ``−⌊n/2⌋``, z from 0
  (``create_image_and_header_from``, ``GenerateImage::compute``); ``first pixel offset`` =
  origin + min index × voxel size.
- :func:`read_stir_image` reads such a pair back with a parser of its own (``key := value``).
- :func:`gantry_mm` is where STIR's projectors put voxel ``(k, j, i)``: the PET ray tracer
  (``ProjMatrixByBinUsingRayTracing``: x = origin x + i·dx, y likewise, z = origin z +
  (k − (k_min + k_max)/2)·dz, z = 0 at the scanner's axial centre) or SPECTUB
  (``ProjMatrixByBinSPECTUB::set_up``: x0 = (0.5 − N/2)·voxel for column 0, origin ignored).
- :data:`LPS` maps gantry to patient coordinates per position
  (``DiscretisedDensity::swap_axes_based_on_orientation``).
- :func:`spectub_attenuation_index` is the map column SPECTUB uses for an emission voxel
  (``SPECTUB_Weight3d.cxx``: ``InvertAxis::invert_axis_index`` on the emission index only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Gantry (x, y, z) → LPS sign per patient position (swap_axes_based_on_orientation).
LPS = {"HFS": (1, 1, -1), "HFP": (-1, -1, -1), "FFS": (-1, 1, 1), "FFP": (1, -1, 1)}
_POSITION_KEYS = {
    "HFS": ("head_in", "supine"),
    "HFP": ("head_in", "prone"),
    "FFS": ("feet_in", "supine"),
    "FFP": ("feet_in", "prone"),
}


def write_stir_image(
    folder: Path,
    name: str,
    values: np.ndarray,
    voxel_xyz: tuple[float, float, float],
    *,
    origin_xyz: tuple[float, float, float] | None = (0.0, 0.0, 0.0),
    modality: str | None = "PT",
    position: str | None = "HFS",
    extra: tuple[str, ...] = (),
) -> Path:
    """``values`` indexed ``[k, j − j_min, i − i_min]`` (STIR planes, rows, columns) as STIR
    writes them; ``origin_xyz=None`` leaves the first pixel offsets out."""
    nz, ny, nx = values.shape
    dx, dy, dz = voxel_xyz
    lines = ["!INTERFILE  :="]
    if modality is not None:
        lines.append(f"!imaging modality := {modality}")
    lines += [
        "!version of keys := STIR6.0",
        f"name of data file := {name}.v",
        "!GENERAL DATA :=",
    ]
    if position is not None:
        orientation, rotation = _POSITION_KEYS.get(position, ("head_in", position))
        lines += [f"patient orientation := {orientation}", f"patient rotation := {rotation}"]
    spect = modality == "NM"
    lines += [
        "!GENERAL IMAGE DATA :=",
        f"!type of data := {'Tomographic' if spect else 'PET'}",
        "imagedata byte order := LITTLEENDIAN",
        f"!{'SPECT' if spect else 'PET'} STUDY (General) :=",
        *([] if spect else ["!PET data type := Image"]),
        "process status := Reconstructed",
        "!number format := float",
        "!number of bytes per pixel := 4",
        "number of dimensions := 3",
        "matrix axis label [1] := x",
        f"!matrix size [1] := {nx}",
        f"scaling factor (mm/pixel) [1] := {dx}",
        "matrix axis label [2] := y",
        f"!matrix size [2] := {ny}",
        f"scaling factor (mm/pixel) [2] := {dy}",
        "matrix axis label [3] := z",
        f"!matrix size [3] := {nz}",
        f"scaling factor (mm/pixel) [3] := {dz}",
    ]
    if origin_xyz is not None:
        minimum = (-(nx // 2), -(ny // 2), 0)
        for axis in range(3):
            offset = origin_xyz[axis] + minimum[axis] * voxel_xyz[axis]
            lines.append(f"first pixel offset (mm) [{axis + 1}] := {offset:g}")
    lines += [*extra, "number of time frames := 1", "!END OF INTERFILE :="]
    (folder / f"{name}.hv").write_text("\n".join(lines) + "\n")
    np.ascontiguousarray(values, dtype="<f4").tofile(folder / f"{name}.v")
    return folder / f"{name}.hv"


def read_stir_image(header: Path) -> tuple[dict[str, str], np.ndarray]:
    """Header keys (lower case, no '!') and the values ``[k, j − j_min, i − i_min]``."""
    keys = {}
    for line in header.read_text().splitlines():
        line = line.split(";", 1)[0]
        if ":=" in line:
            key, value = line.split(":=", 1)
            keys[" ".join(key.strip().lstrip("!").lower().split())] = value.strip()
    assert keys["number format"] == "float" and keys["imagedata byte order"] == "LITTLEENDIAN"
    sizes = [int(keys[f"matrix size [{i}]"]) for i in (1, 2, 3)]
    data = np.fromfile(header.parent / keys["name of data file"], "<f4")
    return keys, data.reshape(sizes[2], sizes[1], sizes[0])


def gantry_mm(keys: dict[str, str], k: int, j: int, i: int, projector: str) -> np.ndarray:
    """Gantry (x, y, z) in mm of STIR index (k, j, i) for STIR's ``projector``."""
    n = [int(keys[f"matrix size [{a}]"]) for a in (1, 2, 3)]
    d = [float(keys[f"scaling factor (mm/pixel) [{a}]"]) for a in (1, 2, 3)]
    minimum = (-(n[0] // 2), -(n[1] // 2), 0)
    if "first pixel offset (mm) [3]" in keys:
        origin = [float(keys[f"first pixel offset (mm) [{a}]"]) - minimum[a - 1] * d[a - 1]
                  for a in (1, 2, 3)]  # fmt: skip
    else:
        origin = [0.0, 0.0, 0.0]
    if projector == "pet":
        return np.array([origin[0] + i * d[0], origin[1] + j * d[1],
                         origin[2] + (k - (n[2] - 1) / 2.0) * d[2]])  # fmt: skip
    # SPECTUB: column/row/slice counted from 0, first at (0.5 − N/2)·voxel.
    columns = (i - minimum[0], j - minimum[1], k)
    return np.array([(0.5 - n[a] / 2.0 + columns[a]) * d[a] for a in range(3)])


def stir_index_of_max(keys: dict[str, str], values: np.ndarray) -> tuple[int, int, int]:
    k, row, column = np.unravel_index(int(np.argmax(values)), values.shape)
    nx, ny = int(keys["matrix size [1]"]), int(keys["matrix size [2]"])
    return int(k), int(row) - ny // 2, int(column) - nx // 2


def stir_point(shape: tuple[int, int, int], kji: tuple[int, int, int]) -> np.ndarray:
    """A STIR-layout array with one hot voxel at STIR index (k, j, i)."""
    nz, ny, nx = shape
    values = np.zeros(shape, np.float32)
    values[kji[0], kji[1] + ny // 2, kji[2] + nx // 2] = 1.0
    return values


def spectub_attenuation_index(i: int, n: int) -> int:
    """The attenuation-map x index SPECTUB pairs with emission x index ``i`` (n columns).

    SPECTUB's internal column ``c`` holds the map's column ``c`` (copied as it is) and the
    emission index ``invert(c − ⌊n/2⌋)`` with ``invert(m) = −m − 1`` for even ``n`` and ``−m``
    for odd ``n`` (``InvertAxis::invert_axis_index``).
    """
    column = (-i - 1 if n % 2 == 0 else -i) + n // 2  # invert() is its own inverse
    return column - n // 2


def write_stir_spect_projections(
    folder: Path,
    name: str,
    values: np.ndarray,
    *,
    bin_mm: float,
    row_mm: float,
    radius_mm: float = 150.0,
    start_angle: float = 180.0,
    direction: str = "CW",
) -> Path:
    """SPECT projections ``values[view, row, bin]`` (file order: STIR's view, axial position,
    tangential position) with the keys of STIR's sample header
    (``examples/samples/SPECT_Interfile_header.hs``), over 360°."""
    n_views, n_rows, n_bins = values.shape
    lines = [
        "!INTERFILE  :=",
        "!imaging modality := nucmed",
        f"name of data file := {name}.s",
        "!version of keys := 3.3",
        "!GENERAL DATA :=",
        "!GENERAL IMAGE DATA :=",
        "!type of data := Tomographic",
        "imagedata byte order := LITTLEENDIAN",
        "!SPECT STUDY (General) :=",
        "!number format := float",
        "!number of bytes per pixel := 4",
        f"!number of projections := {n_views}",
        "!extent of rotation := 360",
        "process status := acquired",
        "!SPECT STUDY (acquired data):=",
        f"!direction of rotation := {direction}",
        f"start angle := {start_angle:g}",
        "orbit := Circular",
        f"Radius := {radius_mm:g}",
        f"!matrix size [1] := {n_bins}",
        f"!scaling factor (mm/pixel) [1] := {bin_mm:g}",
        f"!matrix size [2] := {n_rows}",
        f"!scaling factor (mm/pixel) [2] := {row_mm:g}",
        "!END OF INTERFILE :=",
    ]
    (folder / f"{name}.hs").write_text("\n".join(lines) + "\n")
    np.ascontiguousarray(values, dtype="<f4").tofile(folder / f"{name}.s")
    return folder / f"{name}.hs"
