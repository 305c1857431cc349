"""The PNG writer produces valid files (checked by an independent decoder) and honest montages."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from recon._png import montage_slices_mip, to_uint8, write_png
from recon.errors import InputError

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> tuple[dict[str, int], np.ndarray, list[bytes]]:
    """Minimal PNG decoder (8-bit grey/RGB, any filter type) that checks every chunk CRC."""
    data = path.read_bytes()
    assert data[:8] == SIGNATURE
    pos, kinds, idat = 8, [], b""
    header: dict[str, int] = {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        kinds.append(kind)
        if kind == b"IHDR":
            w, h, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", body)
            header = {"width": w, "height": h, "depth": depth, "colour": colour}
            header |= {"compression": comp, "filter": filt, "interlace": interlace}
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert pos == len(data), "trailing bytes after the last chunk"
    channels = {0: 1, 2: 3}[header["colour"]]
    stride = header["width"] * channels
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8)
    raw = raw.reshape(header["height"], stride + 1)
    rows = np.zeros((header["height"], stride), dtype=np.int64)
    for r in range(header["height"]):
        ftype, line = raw[r, 0], raw[r, 1:].astype(np.int64)
        prev = rows[r - 1] if r else np.zeros(stride, dtype=np.int64)
        if ftype == 0:
            rows[r] = line
        elif ftype == 2:
            rows[r] = (line + prev) % 256
        else:  # the writer uses filter 0; sub/average/paeth are not needed to check it
            raise AssertionError(f"unexpected filter type {ftype}")
    pixels = rows.astype(np.uint8)
    if channels == 3:
        pixels = pixels.reshape(header["height"], header["width"], 3)
    return header, pixels, kinds


def test_grey_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(37, 53), dtype=np.uint8)
    out = write_png(tmp_path / "grey.png", image)
    header, pixels, kinds = read_png(out)
    expected = {"width": 53, "height": 37, "depth": 8, "colour": 0}
    expected |= {"compression": 0, "filter": 0, "interlace": 0}
    assert header == expected
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    np.testing.assert_array_equal(pixels, image)


def test_rgb_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    header, pixels, _ = read_png(write_png(tmp_path / "rgb.png", image))
    assert (header["width"], header["height"], header["colour"]) == (7, 5, 2)
    np.testing.assert_array_equal(pixels, image)


def test_non_contiguous_and_single_pixel(tmp_path: Path) -> None:
    image = np.arange(64, dtype=np.uint8).reshape(8, 8)[::2, ::-3]
    _, pixels, _ = read_png(write_png(tmp_path / "view.png", image))
    np.testing.assert_array_equal(pixels, image)
    _, pixels, _ = read_png(write_png(str(tmp_path / "one.png"), np.full((1, 1), 200, np.uint8)))
    assert pixels.tolist() == [[200]]


def test_write_is_atomic_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "img.png"
    target.write_bytes(b"old")
    write_png(target, np.zeros((2, 3), dtype=np.uint8))
    assert read_png(target)[1].shape == (2, 3)
    # No temporary file is left behind, and a failed write keeps the previous file intact.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]
    before = target.read_bytes()
    with pytest.raises(InputError):
        write_png(target, np.zeros((2, 3), dtype=np.float32))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]


def test_file_mode_follows_umask(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permissions only")
    umask = os.umask(0o022)
    try:
        out = write_png(tmp_path / "m.png", np.zeros((1, 1), dtype=np.uint8))
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), dtype=np.float64),
        np.zeros((4, 4), dtype=np.uint16),
        np.zeros(4, dtype=np.uint8),
        np.zeros((4, 4, 4), dtype=np.uint8),
        np.zeros((0, 4), dtype=np.uint8),
    ],
    ids=["float", "uint16", "1d", "4-channels", "empty"],
)
def test_write_png_rejects(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(InputError):
        write_png(tmp_path / "bad.png", bad)
    assert list(tmp_path.iterdir()) == []


def test_to_uint8_scaling() -> None:
    a = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan, np.inf, -np.inf])
    out = to_uint8(a, vmin=0.0, vmax=1.0)
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 128, 255, 255, 0, 255, 0]
    # Defaults: the finite range.
    assert to_uint8(np.array([[2.0, 4.0], [3.0, np.nan]])).tolist() == [[0, 255], [128, 0]]
    # A constant image has nothing to show: black, no division by zero.
    assert to_uint8(np.full((2, 2), 7.0)).tolist() == [[0, 0], [0, 0]]
    assert to_uint8(np.array([True, False])).tolist() == [255, 0]
    # Extreme ranges do not overflow.
    assert to_uint8(np.array([-1e308, 0.0, 1e308])).tolist() == [0, 128, 255]
    with pytest.raises(InputError):
        to_uint8(np.array([1 + 1j]))
    with pytest.raises(InputError):
        to_uint8(np.zeros(3), vmax=np.nan)


def test_montage_layout_and_orientation() -> None:
    nz, ny, nx = 10, 12, 8
    vol = np.zeros((nz, ny, nx), dtype=np.float32)
    # A voxel in the central transverse slice, anterior (small y) and on the patient's left (+x).
    vol[nz // 2, 2, nx - 2] = 1.0
    # A superior voxel (largest z index) in the central coronal and sagittal planes.
    vol[nz - 1, ny // 2, nx // 2] = 0.5
    # A voxel off the central coronal plane: only the MIP shows it.
    vol[1, 0, 1] = 0.25
    m = montage_slices_mip(vol)
    assert m.dtype == np.uint8
    height = max(ny, nz)
    assert m.shape == (height, 3 * nx + ny + 6)

    c0, c1, c2, c3 = 0, nx + 2, 2 * nx + 4, 2 * nx + ny + 6
    # 2-px grey separators between the four panels.
    for gap in (nx, 2 * nx + 2, 2 * nx + ny + 4):
        assert (m[:, gap : gap + 2] > 0).all()
        assert (m[:, gap : gap + 2] < 255).all()

    transverse = m[:ny, c0 : c0 + nx]  # ny is the tallest panel: no vertical padding
    assert np.argwhere(transverse == 255).tolist() == [[2, nx - 2]]

    top = (height - nz) // 2  # z panels are centred vertically
    coronal = m[top : top + nz, c1 : c1 + nx]
    sagittal = m[top : top + nz, c2 : c2 + ny]
    mip = m[top : top + nz, c3 : c3 + nx]
    # Superior is up: the voxel at the largest z index appears in the top row.
    assert np.argwhere(coronal == 255).tolist() == [[0, nx // 2]]
    assert np.argwhere(sagittal == 255).tolist() == [[0, ny // 2]]
    # Each panel is scaled to its own maximum, and the MIP sees the off-plane voxel.
    assert mip.max() == 255 and mip[nz - 1 - 1, 1] == round(0.25 / 1.0 * 255)
    assert coronal[nz - 1 - 1, 1] == 0
    assert m[:top].max() <= 64 and m[top + nz :, c1:].max() <= 64  # black padding


def test_montage_handles_empty_and_nan_volumes(tmp_path: Path) -> None:
    vol = np.zeros((4, 4, 4))
    vol[0] = np.nan
    m = montage_slices_mip(vol)
    assert m.shape == (4, 3 * 4 + 4 + 6)
    assert read_png(write_png(tmp_path / "m.png", m))[1].shape == m.shape
    with pytest.raises(InputError):
        montage_slices_mip(np.zeros((4, 4)))
    with pytest.raises(InputError):
        montage_slices_mip(np.zeros((0, 4, 4)))
