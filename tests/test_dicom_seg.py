"""DICOM SEG reading: segments placed on a grid of another geometry by nearest neighbour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pack_bits
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from recon.errors import GeometryError, InputError
from recon.grid import ImageGrid
from recon.io.dicom_seg import SEGMENTATION_STORAGE, read_seg_vois

# SEG frame geometry: 2 mm pixels, 3 mm slices, an origin offset from the grid's so that no grid
# voxel centre falls half-way between two SEG pixels or planes.
ROWS, COLS, PLANES = 48, 48, 32
PIXEL_MM, SLICE_MM = 2.0, 3.0
X0, Y0, Z0 = -47.5, -46.5, -47.0
SPHERE_CENTRE = np.array([5.0, -3.0, 2.0])
SPHERE_R = 20.0
# Box bounds on multiples of 4 mm: half-way between 4 mm grid centres, so sampling offsets of at
# most 1 mm cannot move a voxel across the boundary.
BOX_LO = np.array([-20.0, -32.0, 0.0])
BOX_HI = np.array([12.0, -8.0, 20.0])
GRID = ImageGrid((24, 24, 24), 4.0)  # centres at -46, -42, ..., 46 mm on every axis


def _seg_planes() -> tuple[np.ndarray, np.ndarray]:
    """World (x, y, z) of every SEG pixel centre, shape (planes, rows, cols, 3)."""
    k, r, c = np.meshgrid(np.arange(PLANES), np.arange(ROWS), np.arange(COLS), indexing="ij")
    world = np.stack([X0 + c * PIXEL_MM, Y0 + r * PIXEL_MM, Z0 + k * SLICE_MM], axis=-1)
    z_planes = Z0 + np.arange(PLANES) * SLICE_MM
    return world, z_planes


def _masks() -> tuple[np.ndarray, np.ndarray]:
    world, _ = _seg_planes()
    sphere = np.sum((world - SPHERE_CENTRE) ** 2, axis=-1) <= SPHERE_R**2
    box = np.all((world >= BOX_LO) & (world <= BOX_HI), axis=-1)
    return sphere, box


def make_seg(
    *,
    labels: tuple[str, str] = ("sphere", "box"),
    reverse: bool = False,
    seg_type: str = "BINARY",
) -> Dataset:
    """A valid SEG of two segments, one frame per plane and segment."""
    sphere, box = _masks()
    _, z_planes = _seg_planes()
    frames: list[tuple[int, float, np.ndarray]] = []
    for number, mask in ((1, sphere), (2, box)):
        for k in range(PLANES):
            frames.append((number, float(z_planes[k]), mask[k]))
    if reverse:
        frames = frames[::-1]

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SEGMENTATION_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SEGMENTATION_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SEG"
    ds.FrameOfReferenceUID = generate_uid()
    ds.SegmentationType = seg_type
    ds.Rows, ds.Columns = ROWS, COLS
    ds.NumberOfFrames = len(frames)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelRepresentation = 0

    segments = []
    for number, label in enumerate(labels, start=1):
        item = Dataset()
        item.SegmentNumber = number
        item.SegmentLabel = label
        item.SegmentAlgorithmType = "MANUAL"
        segments.append(item)
    ds.SegmentSequence = Sequence(segments)

    measures = Dataset()
    measures.PixelSpacing = [PIXEL_MM, PIXEL_MM]
    measures.SliceThickness = SLICE_MM
    measures.SpacingBetweenSlices = SLICE_MM
    orientation = Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    per_frame = []
    for number, z, _ in frames:
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [X0, Y0, z]
        item.PlanePositionSequence = Sequence([position])
        ident = Dataset()
        ident.ReferencedSegmentNumber = number
        item.SegmentIdentificationSequence = Sequence([ident])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)

    stack = np.stack([m for _, _, m in frames]).astype(np.uint8)
    if seg_type == "FRACTIONAL":
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.MaximumFractionalValue = 255
        # Inside: 200/255 (above half); outside: 100/255 (below half, but not zero).
        ds.PixelData = np.where(stack > 0, 200, 100).astype(np.uint8).tobytes()
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 1, 0
        ds.PixelData = pack_bits(stack)
    return ds


def _expected_box() -> np.ndarray:
    z, y, x = GRID.meshgrid_mm()
    p = np.stack([x, y, z], axis=-1)
    return np.all((p >= BOX_LO) & (p <= BOX_HI), axis=-1)


def _check(vois: dict) -> None:
    assert list(vois) == ["sphere", "box"]
    sphere = vois["sphere"]
    assert sphere.grid is GRID and sphere.name == "sphere"
    expected = 4.0 / 3.0 * math.pi * SPHERE_R**3 / 64.0  # voxels of 4 mm
    assert abs(sphere.n_voxels - expected) / expected < 0.08
    assert np.all(np.abs(sphere.centroid_mm - SPHERE_CENTRE) < 4.0)
    np.testing.assert_array_equal(vois["box"].mask, _expected_box())


def test_reads_segments_onto_another_grid():
    _check(read_seg_vois(make_seg(), GRID))


def test_frame_order_does_not_matter():
    forward = read_seg_vois(make_seg(), GRID)
    backward = read_seg_vois(make_seg(reverse=True), GRID)
    _check(backward)
    for name in forward:
        np.testing.assert_array_equal(forward[name].mask, backward[name].mask)


def test_reads_from_file(tmp_path):
    path = tmp_path / "seg.dcm"
    make_seg().save_as(path, enforce_file_format=True)
    _check(read_seg_vois(path, GRID))


def test_fractional_thresholded_at_half():
    binary = read_seg_vois(make_seg(), GRID)
    fractional = read_seg_vois(make_seg(seg_type="FRACTIONAL"), GRID)
    for name in binary:
        np.testing.assert_array_equal(binary[name].mask, fractional[name].mask)


def test_duplicate_labels_get_a_suffix():
    vois = read_seg_vois(make_seg(labels=("lesion", "lesion")), GRID)
    assert list(vois) == ["lesion", "lesion_2"]


def test_same_grid_is_taken_voxel_for_voxel():
    # A grid equal to the SEG's frame geometry takes each pixel as it is.
    grid = ImageGrid((PLANES, ROWS, COLS), (SLICE_MM, PIXEL_MM, PIXEL_MM), (Z0, Y0, X0))
    sphere, box = _masks()
    vois = read_seg_vois(make_seg(), grid)
    np.testing.assert_array_equal(vois["sphere"].mask, sphere)
    np.testing.assert_array_equal(vois["box"].mask, box)


def test_rejects_other_sop_class():
    ds = make_seg()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"  # NM Image Storage
    with pytest.raises(InputError, match="not a DICOM SEG"):
        read_seg_vois(ds, GRID)


def test_rejects_unsupported_segmentation_type():
    ds = make_seg()
    ds.SegmentationType = "LABELMAP"
    with pytest.raises(InputError, match="LABELMAP"):
        read_seg_vois(ds, GRID)


def test_rejects_truncated_pixel_data():
    ds = make_seg()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    with pytest.raises(InputError, match="truncated"):
        read_seg_vois(ds, GRID)


def test_missing_plane_position_names_the_tag():
    ds = make_seg()
    del ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence
    with pytest.raises(InputError, match=r"Plane Position Sequence \(0020,9113\)"):
        read_seg_vois(ds, GRID)


def test_missing_pixel_spacing_names_the_tag():
    ds = make_seg()
    del ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
    with pytest.raises(InputError, match=r"Pixel Spacing \(0028,0030\)"):
        read_seg_vois(ds, GRID)


def test_rejects_non_orthonormal_orientation():
    ds = make_seg()
    orientation = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    orientation.ImageOrientationPatient = [1, 0, 0, 0.5, 1, 0]
    with pytest.raises(GeometryError, match="orthonormal"):
        read_seg_vois(ds, GRID)


def test_segment_outside_grid():
    far = ImageGrid((8, 8, 8), 4.0, (500.0, 500.0, 500.0))
    with pytest.raises(GeometryError, match="does not overlap"):
        read_seg_vois(make_seg(), far)


def test_unknown_segment_number():
    ds = make_seg()
    ds.PerFrameFunctionalGroupsSequence[0].SegmentIdentificationSequence[
        0
    ].ReferencedSegmentNumber = 7
    with pytest.raises(InputError, match=r"\[7\]"):
        read_seg_vois(ds, GRID)


def test_malformed_value_is_input_error():
    ds = make_seg()
    ds.Rows = 0
    with pytest.raises(InputError):
        read_seg_vois(ds, GRID)
