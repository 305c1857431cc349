"""Fuzz the DICOM readers: mutated NM and CT datasets raise only recon's own exceptions."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from pydicom.tag import Tag

import recon
from recon.errors import ReconError
from recon.io.ct import read_ct_mu_map
from recon.io.dicom_nm import read_nm_projections
from tests.dicom_factory import ct_series, nm_tomo_dataset

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_FRAMES = np.arange(2 * 1 * 8 * 4 * 6, dtype=np.uint16).reshape(2, 1, 8, 4, 6)
_NM = nm_tomo_dataset(
    _FRAMES, angular_step_deg=45.0, windows=(("EM", 126.0, 154.0), ("SC", 110.0, 126.0))
)
_NM_TAGS = [elem.tag for elem in _NM.iterall() if elem.tag != Tag(0x7FE0, 0x0010)]
_CT = ct_series(np.zeros((4, 8, 8)), pixel_spacing=(4.0, 4.0), first_position=(-14, -14, -6),
                slice_spacing=4.0)  # fmt: skip
_CT_TAGS = [elem.tag for elem in _CT[0].iterall() if elem.tag != Tag(0x7FE0, 0x0010)]
_GRID = recon.ImageGrid((4, 8, 8), 4.0)

_GARBAGE = st.one_of(
    st.none(), st.just(""), st.just("abc"), st.just("-1"), st.just("1e308"), st.just("0"),
    st.integers(-(2**31), 2**31 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.integers(-5, 5), max_size=3),
)  # fmt: skip


def _elements(ds):
    """Every (dataset, tag) pair, nested sequence items included."""
    out = []

    def walk(d):
        for elem in d:
            out.append((d, elem.tag))
            if elem.VR == "SQ":
                for item in elem.value:
                    walk(item)

    walk(ds)
    return out


def _mutate(ds, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values we plant
        return _mutate_quietly(ds, data)


def _mutate_quietly(ds, data):
    ds = copy.deepcopy(ds)
    for _ in range(data.draw(st.integers(1, 4))):
        pairs = [p for p in _elements(ds) if p[1] != Tag(0x7FE0, 0x0010)]
        owner, tag = data.draw(st.sampled_from(pairs))
        action = data.draw(st.sampled_from(["delete", "garbage", "truncate_pixels"]))
        if action == "delete":
            del owner[tag]
        elif action == "garbage":
            try:
                owner[tag].value = data.draw(_GARBAGE)
            except (ValueError, TypeError, OverflowError, AttributeError):
                del owner[tag]  # pydicom refuses the value for this VR: drop the element instead
        elif "PixelData" in ds:
            ds.PixelData = ds.PixelData[: data.draw(st.integers(0, len(ds.PixelData)))]
    return ds


# pydicom warns (UserWarning) when it meets the invalid values planted here; that is pydicom
# telling the user, not a failure of recon. Anything else must be a ReconError.
@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_nm_datasets_raise_only_recon_errors(data):
    ds = _mutate(_NM, data)
    try:
        read_nm_projections(ds)
    except ReconError:
        pass


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_ct_series_raise_only_recon_errors(data, tmp_path_factory):
    series = [copy.deepcopy(s) for s in _CT]
    index = data.draw(st.integers(0, len(series) - 1))
    series[index] = _mutate(series[index], data)
    try:
        read_ct_mu_map(series, _GRID, 140.5)
    except ReconError:
        pass
