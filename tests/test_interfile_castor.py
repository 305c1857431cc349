"""Interfile exchange with CASToR (castor-project.org).

No CASToR binary is available here, so the tests follow what CASToR 3.1.1's source does
(``src/image/oInterfileIO.cc``: ``IntfReadHeader``, ``IntfRecoverKey``, ``IntfReadData``,
``IntfReadProjectionImage``, ``IntfWriteHeaderMainData``/``IntfWriteHeaderImgData``):

- ``_castor_read`` below re-implements CASToR's reading rules for the keys it uses: a key is the
  text before the first ``:`` or ``=``, lower-cased, without a leading ``!`` and without any blank;
  everything after ``;`` is dropped; the last duplicate wins; ``!END OF INTERFILE`` does not stop
  it; ``number format`` is matched case-sensitively (``float``/``short float`` → float32, unknown
  → unsigned integers); only ``LITTLEENDIAN`` (any case) is little-endian; the data file is next
  to the header when its name has no folder; offsets are ignored (images are centred); projection
  data hold ``total number of images`` projections (default 1); a rescale intercept of 0 and a
  ``{…}`` list in ``matrix size [3]`` are errors.
- ``_castor_image_header`` writes an image header in CASToR's key order and spelling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import recon
from recon.io import FileFormatError, read_interfile, read_interfile_image, write_interfile


class CastorRejects(Exception):
    """What CASToR would report as an error reading the header."""


def _castor_keys(header: Path) -> dict[str, str]:
    keys: dict[str, str] = {}
    for line in header.read_text().splitlines():
        line = line.split(";", 1)[0]
        if not line.strip():
            continue
        if ":=" not in line:
            line = line + ":="
        cut = min(i for i in (line.find(":"), line.find("=")) if i >= 0)
        key = "".join(line[:cut].lower().split()).lstrip("!")
        value = line[line.index(":=") + 2 :].strip().lstrip("!").strip()
        keys[key] = value  # the last occurrence wins
    return keys


def _castor_read(header: Path, projections: bool = False) -> tuple[np.ndarray, tuple]:
    """The array (slowest axis first) and voxel sizes CASToR would read from ``header``."""
    k = _castor_keys(header)
    name = k.get("nameofdatafile", "")
    if not name:
        raise CastorRejects("empty data file name")
    if k.get("datacompression", "none") not in ("none", "") or k.get("dataencode", "none") not in (
        "none",
        "",
    ):
        raise CastorRejects("compressed data")
    for index in range(3, 8):
        if "{" in k.get(f"matrixsize[{index}]", ""):
            raise CastorRejects(f"array value in matrix size [{index}]")
    for key in ("rescaleintercept", "datarescaleintercept"):
        if key in k and float(k[key]) == 0.0:
            raise CastorRejects(f"{key} := 0")
    for key in ("rescaleslope", "datarescaleslope"):
        if key in k and float(k[key]) == 0.0:
            raise CastorRejects(f"{key} := 0")
    fmt = k.get("numberformat", "short float")
    nbytes = int(k.get("numberofbytesperpixel", "0") or 0)
    if fmt in ("short float", "float"):
        kind = "f4"
    elif fmt == "long float":
        kind = "f8"
    elif fmt == "signed integer":
        kind = {1: "i1", 2: "i2", 8: "i8"}.get(nbytes, "i4")
    else:
        kind = {1: "u1", 2: "u2", 8: "u8"}.get(nbytes, "u4")
    endian = "<" if k.get("imagedatabyteorder", "").lower() == "littleendian" else ">"
    folder = header.parent
    path = Path(name) if "/" in name else folder / name
    offset = int(k.get("dataoffsetinbytes", "0"))
    nx, ny = int(k["matrixsize[1]"]), int(k["matrixsize[2]"])
    if projections:
        nz = int(k.get("totalnumberofimages", "1"))
    else:
        nz = int(k.get("matrixsize[3]", "0")) or int(k.get("totalnumberofimages", "1"))
    sizes = tuple(float(k.get(f"scalingfactor(mm/pixel)[{i}]", "-1")) for i in (1, 2, 3))
    data = np.fromfile(path, dtype=endian + kind, count=nx * ny * nz, offset=offset)
    if data.size != nx * ny * nz:
        raise CastorRejects("data file too small")
    slope = float(k.get("datarescaleslope", k.get("rescaleslope", "1")))
    try:
        slope *= float(k.get("quantificationunits", "1"))
    except ValueError:
        pass
    intercept = float(k.get("datarescaleintercept", k.get("rescaleintercept", "0")))
    return (data.astype(np.float64) * slope + intercept).reshape(nz, ny, nx), sizes


def _asymmetric_image(shape=(7, 9, 11), voxel=(3.0, 2.0, 2.5)) -> recon.Image:
    data = np.zeros(shape, np.float32)
    data[1, 2, 3] = 10.0  # one voxel near the first corner of every axis
    data[5, 6, 8] = 3.0
    data += np.arange(data.size, dtype=np.float32).reshape(shape) * 1e-3
    return recon.Image(data=data, grid=recon.ImageGrid(shape, voxel))


def test_castor_reads_our_image_with_its_voxels_and_sizes(tmp_path: Path) -> None:
    image = _asymmetric_image()
    header = write_interfile(tmp_path / "image.hv", image)
    values, sizes = _castor_read(header)
    # STIR dialect: plane 0 of the file is recon's last slice (STIR z runs towards the feet).
    np.testing.assert_allclose(values, np.asarray(image)[::-1], rtol=1e-6)
    assert sizes == (2.5, 2.0, 3.0)


def test_castor_reads_every_projection_we_write(tmp_path: Path) -> None:
    geometry = recon.SpectGeometry.circular(
        n_views=12, arc_deg=360, radius_mm=200, n_u=16, n_v=8, pixel_size_mm=4.0
    )
    counts = np.random.default_rng(3).random(geometry.projection_shape).astype(np.float32)
    header = write_interfile(tmp_path / "proj.hs", counts, geometry)
    values, sizes = _castor_read(header, projections=True)
    assert values.shape == (12, 8, 16)  # without 'total number of images' CASToR reads one
    np.testing.assert_allclose(values, counts[:, ::-1, :], rtol=1e-6)  # rows: head end first
    assert sizes[:2] == (4.0, 4.0)


def _castor_image_header(
    folder: Path,
    name: str,
    values_in_file: np.ndarray,
    voxel_xyz: tuple[float, float, float],
    *,
    slope: float = 1.0,
    units: str = "1",
    fov_offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    frames: int = 1,
) -> Path:
    """An image header in the key order and spelling of CASToR's writer, with the copy of its
    datafile header that it appends after the end marker."""
    nz, ny, nx = values_in_file.shape[-3:]
    (values_in_file.astype("<f4") / np.float32(slope * float(units))).tofile(folder / f"{name}.img")
    lines = [
        "!INTERFILE :=",
        "!imaging modality := PET",
        "!version of keys := CASToRv3.1.1",
        "CASToR version := 3.1.1",
        "!GENERAL DATA :=",
        "!originating system := PET_GE_DMI4R",
        "!data offset in bytes := 0",
        f"!name of data file := {name}.img",
        f"patient name := {name}",
        "!GENERAL IMAGE DATA",
        "!type of data := Dynamic",
        f"!total number of images := {nz * frames}",
        "imagedata byte order := LITTLEENDIAN",
    ]
    if frames > 1:
        lines += [f"number of time frames := {frames}", f"!number of frame groups := {frames}"]
    else:
        lines.append("!number of frame groups :=1")
    lines += [
        "process status := reconstructed",
        "!STATIC STUDY (General) :=",
        "number of dimensions := 3",
        f"!matrix size [1] := {nx}",
        f"!matrix size [2] := {ny}",
        f"!matrix size [3] := {nz}",
        "!number format := short float",
        "!number of bytes per pixel := 4",
        *(f"scaling factor (mm/pixel) [{i}] := {v}" for i, v in enumerate(voxel_xyz, 1)),
        *(f"first pixel offset (mm) [{i}] := {v}" for i, v in enumerate(fov_offset, 1)),
        "data rescale offset := 0",
        f"data rescale slope := {slope}",
        f"quantification units := {units}",
        f"!number of images in this frame group := {nz}",
        "!image duration (sec) := 600",
        "!image start time (sec) := 0",
        "pause between frame groups (sec) := 0",
        "!END OF INTERFILE :=",
        "!COPY OF INPUT HEADER 1",
        "Data filename: study.cdf",
        "Number of events: 1234567",
        "Data mode: list-mode",
        "number of time frames := 7",  # past the end marker: must not be read
        "!END OF COPY OF INPUT HEADER 1",
    ]
    header = folder / f"{name}.hdr"
    header.write_text("\n".join(lines) + "\n")
    return header


def test_round_trip_through_castor(tmp_path: Path) -> None:
    """An image we write, read by CASToR and written back by CASToR, reads as the original:
    same voxels in the same places, centred grid, slope × quantification units applied, and
    CASToR's FOV offset reported instead of moving the grid."""
    image = _asymmetric_image()
    ours = write_interfile(tmp_path / "ours.hv", image)
    as_castor_holds_it, sizes = _castor_read(ours)
    header = _castor_image_header(
        tmp_path, "castor_out", as_castor_holds_it, sizes, slope=2.0, units="1.5",
        fov_offset=(0.0, 12.0, 0.0),
    )  # fmt: skip
    back = read_interfile(header)
    assert isinstance(back, recon.Image)
    np.testing.assert_allclose(np.asarray(back), np.asarray(image), rtol=1e-5)
    assert back.grid.same_as(image.grid)
    assert back.info["castor_fov_offset_mm"] == (0.0, 12.0, 0.0)
    assert back.info["rescale_slope"] == pytest.approx(3.0)


def test_castor_dynamic_outputs_name_the_way_to_read_them(tmp_path: Path) -> None:
    values = np.ones((2, 3, 4, 5), np.float32)
    merged = _castor_image_header(tmp_path, "dyn", values, (2.0, 2.0, 2.0), frames=2)
    with pytest.raises(FileFormatError, match="one header per frame"):
        read_interfile_image(merged)
    meta = tmp_path / "dyn.mhd"
    meta.write_text(
        "!INTERFILE :=\n!total number of data sets:=2\n"
        "%data set [1]:={0,dyn_fr1.hdr,UNKNOWN}\n%data set [2]:={0,dyn_fr2.hdr,UNKNOWN}\n"
    )
    with pytest.raises(FileFormatError, match="metaheader listing 2 data set.*dyn_fr1.hdr"):
        read_interfile(meta)


def test_castor_rules_reject_what_the_emulation_should(tmp_path: Path) -> None:
    """The emulation above is strict where CASToR is (so the passing tests mean something)."""
    image = _asymmetric_image()
    header = write_interfile(tmp_path / "image.hv", image)
    text = header.read_text()
    header.write_text(text.replace("!END OF INTERFILE", "data rescale intercept := 0\n!END"))
    with pytest.raises(CastorRejects, match="intercept"):
        _castor_read(header)
    header.write_text(text.replace("LITTLEENDIAN", "LITTLE_ENDIAN"))
    values, _ = _castor_read(header)  # read as big-endian: garbage, not the image
    assert not np.allclose(values, np.asarray(image)[::-1])


def test_castor_written_spect_projections_are_refused(tmp_path: Path) -> None:
    """CASToR's projection angles follow its own frame (iScannerSPECTConv), not STIR's keys'
    meaning: reading them as STIR would mirror or rotate the reconstruction."""
    geometry = recon.SpectGeometry.circular(
        n_views=12, arc_deg=360, radius_mm=200, n_u=16, n_v=8, pixel_size_mm=4.0
    )
    counts = np.ones(geometry.projection_shape, np.float32)
    header = write_interfile(tmp_path / "proj.hs", counts, geometry)
    text = header.read_text().replace("!version of keys := 3.3", "!version of keys := CASToRv3.1.1")
    header.write_text(text)
    with pytest.raises(FileFormatError, match="written by CASToR"):
        read_interfile(header)
