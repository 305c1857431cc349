"""Tests of recon.quant.planar: conjugate-view activity (MIRD Pamphlet No. 16)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import recon
from recon.errors import GeometryError, InputError
from recon.quant import (
    ConjugateViewRoi,
    background_subtract,
    conjugate_view_activity,
    geometric_mean,
    quantify_conjugate_views,
    self_attenuation_factor,
    transmission_factor,
    transmission_from_counts,
    transmission_from_mu_map,
)

MU = 0.012  # 1/mm, broad-beam tissue at ~170-245 keV (In-111) order of magnitude
C = 85.0  # cps/MBq


@pytest.mark.parametrize("depth_mm", [20.0, 100.0, 180.0])
def test_point_source_activity_is_independent_of_depth(depth_mm):
    a_bq, thickness = 7.4e6, 200.0
    rate = C * a_bq / 1e6
    i_a = rate * math.exp(-MU * depth_mm)
    i_p = rate * math.exp(-MU * (thickness - depth_mm))
    t = transmission_factor(MU, thickness)
    assert t == pytest.approx(math.exp(-MU * thickness))
    assert conjugate_view_activity(i_a, i_p, t, C) == pytest.approx(a_bq, rel=1e-12)


def test_extended_source_needs_the_self_attenuation_factor():
    # A uniform slab source of thickness s at depth d in a body of thickness T: each view sees
    # (C A / (μ s)) · e^{−μ d}(1 − e^{−μ s}) (MIRD 16, derivation of eq. 4).
    a_bq, big_t, s, d = 20e6, 220.0, 80.0, 50.0
    i_a = C * a_bq / 1e6 / (MU * s) * math.exp(-MU * d) * (1 - math.exp(-MU * s))
    i_p = C * a_bq / 1e6 / (MU * s) * math.exp(-MU * (big_t - d - s)) * (1 - math.exp(-MU * s))
    f = self_attenuation_factor(MU, s)
    assert f == pytest.approx((MU * s / 2) / math.sinh(MU * s / 2), rel=1e-14)
    trans = transmission_factor(MU, big_t)
    assert conjugate_view_activity(i_a, i_p, trans, C, self_attenuation=f) == pytest.approx(
        a_bq, rel=1e-12
    )
    # Without f the geometric mean over-estimates by 1/f.
    assert conjugate_view_activity(i_a, i_p, trans, C) == pytest.approx(a_bq / f, rel=1e-12)
    assert self_attenuation_factor(MU, 0.0) == 1.0


def test_background_subtraction_closed_forms():
    assert background_subtract(5000.0, 100, 800.0, 200) == pytest.approx(5000.0 - 400.0)
    buijs = background_subtract(
        5000.0, 100, 800.0, 200, method="buijs", organ_thickness_mm=60.0, patient_thickness_mm=240.0
    )
    assert buijs == pytest.approx(5000.0 - 400.0 * (1 - 60.0 / 240.0))
    assert background_subtract(5000.0, 100, 800.0, 200, method="none") == 5000.0
    with pytest.raises(InputError, match="organ_thickness_mm"):
        background_subtract(5000.0, 100, 800.0, 200, method="buijs")
    with pytest.raises(InputError, match="exceeds"):
        background_subtract(
            1.0, 1, 1.0, 1, method="buijs", organ_thickness_mm=300, patient_thickness_mm=200
        )
    with pytest.raises(InputError, match="method"):
        background_subtract(1.0, 1, 1.0, 1, method="median")


def test_transmission_from_counts_and_mu_map():
    assert transmission_from_counts(3000.0, 12000.0) == 0.25
    with pytest.raises(InputError, match="exceeds 1"):
        transmission_from_counts(2.0, 1.0)
    grid = recon.ImageGrid((6, 50, 8), (4.0, 4.0, 4.0))
    mu = np.zeros(grid.shape, np.float32)
    mu[:, 10:40, :] = MU  # 30 voxels × 4 mm = 120 mm of tissue along y
    mu[:, 10:40, 4:] = 2 * MU
    roi = np.zeros((6, 8), bool)
    roi[1:4, 1:3] = True
    expected = math.exp(-MU * 120.0)
    assert transmission_from_mu_map(recon.Image(mu, grid), roi) == pytest.approx(expected, rel=1e-6)
    roi[1:4, 5] = True  # mixes columns of two thicknesses: the ROI mean of the transmissions
    mixed = (6 * expected + 3 * math.exp(-2 * MU * 120.0)) / 9
    assert transmission_from_mu_map(mu, roi, voxel_size_y_mm=4.0) == pytest.approx(mixed, rel=1e-6)
    with pytest.raises(GeometryError, match="shape"):
        transmission_from_mu_map(mu, np.ones((8, 6), bool), voxel_size_y_mm=4.0)
    with pytest.raises(InputError, match="voxel_size_y_mm"):
        transmission_from_mu_map(mu, roi)


def test_quantify_rois_from_synthetic_counts():
    duration, big_t = 600.0, 200.0
    truth = {"liver": (40e6, 60.0), "tumour": (3e6, 130.0)}
    bkg_rate_per_px = 0.5  # cps per pixel of background tissue, per view
    rois = []
    for name, (a, depth) in truth.items():
        rate = C * a / 1e6
        area, bkg_area = 400.0, 100.0
        ant = (rate * math.exp(-MU * depth) + bkg_rate_per_px * area) * duration
        post = (rate * math.exp(-MU * (big_t - depth)) + bkg_rate_per_px * area) * duration
        bkg = bkg_rate_per_px * bkg_area * duration
        rois.append(
            ConjugateViewRoi(
                name,
                ant,
                post,
                area,
                background_anterior_counts=bkg,
                background_posterior_counts=bkg,
                background_area_px=bkg_area,
                mu_per_mm=MU,
                patient_thickness_mm=big_t,
            )
        )
    results = quantify_conjugate_views(rois, duration, C)
    for name, (a, _) in truth.items():
        assert results[name].activity_bq == pytest.approx(a, rel=1e-12)
        assert results[name].transmission == pytest.approx(math.exp(-MU * big_t))
    gm = results["liver"].geometric_mean_cps
    assert gm == pytest.approx(
        geometric_mean(results["liver"].net_anterior_cps, results["liver"].net_posterior_cps)
    )
    assert results["tumour"].as_dict()["name"] == "tumour"


def test_conjugate_view_errors():
    with pytest.raises(InputError, match="no uptake above background"):
        conjugate_view_activity(0.0, 10.0, 0.1, C)
    with pytest.raises(InputError, match="transmission"):
        conjugate_view_activity(10.0, 10.0, 1.5, C)
    with pytest.raises(InputError, match="sensitivity"):
        conjugate_view_activity(10.0, 10.0, 0.5, 0.0)
    roi = ConjugateViewRoi("x", 100.0, 100.0, 10.0)
    with pytest.raises(InputError, match="transmission"):
        quantify_conjugate_views([roi], 10.0, C)
    with pytest.raises(InputError, match="two ROIs"):
        quantify_conjugate_views(
            [
                ConjugateViewRoi("x", 100.0, 100.0, 10.0, transmission=0.2),
                ConjugateViewRoi("x", 100.0, 100.0, 10.0, transmission=0.2),
            ],
            10.0,
            C,
        )
    cold = ConjugateViewRoi(
        "cold", 10.0, 10.0, 10.0, 50.0, 50.0, background_area_px=10.0, transmission=0.2
    )
    with pytest.raises(InputError, match="'cold'"):
        quantify_conjugate_views([cold], 10.0, C)
