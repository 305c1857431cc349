"""Conjugate-view (anterior/posterior) quantification of planar scintigraphy.

Most clinical studies of radiolabelled liposomes used whole-body planar imaging over days. The
activity in an organ or lesion follows from the geometric mean of its anterior and posterior
count rates (Siegel et al., MIRD Pamphlet No. 16, J Nucl Med 1999;40:37S, eq. 4):

    A = sqrt(I_A · I_P / e^(−μ_e T)) · f / C

- ``I_A``, ``I_P``: background-subtracted count rates in the ROI (cps);
- ``e^(−μ_e T)``: transmission through the patient's thickness ``T`` at the ROI, measured with a
  flood source (transmitted / blank) or computed from an attenuation map or a thickness;
- ``f = (μ_j t_j / 2) / sinh(μ_j t_j / 2)``: correction for attenuation inside a source region of
  thickness ``t_j`` (1 for a thin source);
- ``C``: system sensitivity in cps/MBq (e.g. :func:`recon.quant.sensitivity_from_calibration` of
  a source in air).

The geometric mean makes the result independent of the source depth. The posterior image must be
mirrored left-right before ROIs are drawn on it (or the ROI mirrored), which is the caller's job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recon.errors import GeometryError, InputError
from recon.image import Image
from recon.quant._common import finite, non_negative, positive

__all__ = [
    "ConjugateViewResult",
    "ConjugateViewRoi",
    "background_subtract",
    "conjugate_view_activity",
    "geometric_mean",
    "quantify_conjugate_views",
    "self_attenuation_factor",
    "transmission_factor",
    "transmission_from_counts",
    "transmission_from_mu_map",
]

_BQ_PER_MBQ = 1e6
_BACKGROUND_METHODS = ("none", "area", "buijs")


def geometric_mean(anterior: float, posterior: float) -> float:
    """``sqrt(I_A · I_P)`` of two non-negative count rates (or counts)."""
    a = non_negative(anterior, "anterior", "counts")
    p = non_negative(posterior, "posterior", "counts")
    return math.sqrt(a * p)


def transmission_factor(mu_per_mm: float, thickness_mm: float) -> float:
    """``e^(−μ T)`` for an effective attenuation coefficient μ (1/mm) and thickness T (mm)."""
    mu = non_negative(mu_per_mm, "mu_per_mm", "1/mm")
    t = non_negative(thickness_mm, "thickness_mm", "mm")
    return math.exp(-mu * t)


def transmission_from_counts(transmitted_counts: float, blank_counts: float) -> float:
    """Measured transmission ``I_trans / I_blank`` through the patient (same duration and ROI).

    MIRD Pamphlet No. 16, eq. 5: a flood source imaged through the patient and without (blank).
    """
    blank = positive(blank_counts, "blank_counts", "counts")
    trans = positive(transmitted_counts, "transmitted_counts", "counts")
    factor = trans / blank
    if factor > 1:
        raise InputError(
            f"transmission {factor:.4g} exceeds 1: more counts through the patient than without"
        )
    return factor


def transmission_from_mu_map(
    mu_map: Image | np.ndarray,
    roi_mask_zx: Any,
    voxel_size_y_mm: float | None = None,
) -> float:
    """Mean anterior-posterior transmission over a planar ROI, from a 3-D attenuation map.

    The map is summed along y (the anterior-posterior axis of LPS, array axis 1): each (z, x)
    pixel gets ``exp(−Σ_y μ · Δy)``, and the ROI mean of that is returned.

    Parameters
    ----------
    mu_map : Image or ndarray of shape (z, y, x)
        Linear attenuation coefficients at the photon energy, in 1/mm.
    roi_mask_zx : ndarray of shape (z, x), bool
        The ROI on the (z, x) pixels of the map (resample the planar ROI onto them first).
    voxel_size_y_mm : float, optional
        Voxel size along y in mm; taken from the grid for an Image.

    Returns
    -------
    float
        Transmission ``e^(−μ T)`` in (0, 1].
    """
    if isinstance(mu_map, Image):
        mu = np.asarray(mu_map, dtype=np.float64)
        dy = mu_map.grid.voxel_size_mm[1]
    else:
        mu = np.asarray(mu_map, dtype=np.float64)
        if voxel_size_y_mm is None:
            raise InputError("voxel_size_y_mm is needed with a plain array mu map")
        dy = positive(voxel_size_y_mm, "voxel_size_y_mm", "mm")
    if mu.ndim != 3:
        raise InputError(f"mu_map must be 3-D (z, y, x), got shape {mu.shape}")
    if not np.all(np.isfinite(mu)) or np.any(mu < 0):
        raise InputError("mu_map must hold finite, non-negative values (1/mm)")
    roi = np.asarray(roi_mask_zx)
    if roi.shape != (mu.shape[0], mu.shape[2]):
        raise GeometryError(
            f"roi_mask_zx shape {roi.shape} does not match the map's (z, x) shape "
            f"{(mu.shape[0], mu.shape[2])}"
        )
    roi = roi.astype(bool)
    if not roi.any():
        raise GeometryError("roi_mask_zx is empty")
    line = mu.sum(axis=1) * dy
    return float(np.exp(-line[roi]).mean())


def self_attenuation_factor(mu_source_per_mm: float, source_thickness_mm: float) -> float:
    """Source-region self-attenuation correction ``f = (μ t / 2) / sinh(μ t / 2)``.

    MIRD Pamphlet No. 16, eq. 4: for a uniform source of thickness ``t`` and attenuation ``μ``,
    the product of the conjugate count rates is ``(C A)² e^(−μT) (sinh(μt/2) / (μt/2))²``, so the
    geometric mean over-estimates by ``1/f``. ``f → 1`` for a thin source.
    """
    mu = non_negative(mu_source_per_mm, "mu_source_per_mm", "1/mm")
    t = non_negative(source_thickness_mm, "source_thickness_mm", "mm")
    x = mu * t / 2.0
    return 1.0 if x == 0 else x / math.sinh(x)


def background_subtract(
    roi_counts: float,
    roi_area_px: float,
    background_counts: float,
    background_area_px: float,
    *,
    method: str = "area",
    organ_thickness_mm: float | None = None,
    patient_thickness_mm: float | None = None,
) -> float:
    """ROI counts less the background expected under it.

    - ``"area"``: ``I − I_bkg · (N_roi / N_bkg)``, the background ROI's counts scaled to the ROI's
      number of pixels.
    - ``"buijs"``: ``I − I_bkg · (N_roi / N_bkg) · (1 − t / T)``: the organ of thickness ``t``
      displaces that part of the background tissue of the patient thickness ``T`` (Buijs et al.,
      Absolute organ activity estimated by five different methods of background correction,
      J Nucl Med 1998;39:2167).
    - ``"none"``: ``I``.

    Parameters
    ----------
    roi_counts, background_counts : float
        Counts (or rates) in the ROI and in the background ROI.
    roi_area_px, background_area_px : float
        Their sizes in pixels (> 0).
    method : {"area", "buijs", "none"}, keyword-only
        Which correction.
    organ_thickness_mm, patient_thickness_mm : float, keyword-only
        For ``"buijs"``: organ and patient thickness at the ROI, in mm, ``0 ≤ t ≤ T``.

    Returns
    -------
    float
        Net counts (may be ≤ 0 for a ROI with no uptake above background).
    """
    counts = non_negative(roi_counts, "roi_counts", "counts")
    if method == "none":
        return counts
    if method not in _BACKGROUND_METHODS:
        raise InputError(f"method must be one of {_BACKGROUND_METHODS}, got {method!r}")
    n_roi = positive(roi_area_px, "roi_area_px", "pixels")
    n_bkg = positive(background_area_px, "background_area_px", "pixels")
    bkg = non_negative(background_counts, "background_counts", "counts") * n_roi / n_bkg
    if method == "buijs":
        if organ_thickness_mm is None or patient_thickness_mm is None:
            raise InputError(
                "the Buijs correction needs organ_thickness_mm and patient_thickness_mm"
            )
        t = non_negative(organ_thickness_mm, "organ_thickness_mm", "mm")
        big_t = positive(patient_thickness_mm, "patient_thickness_mm", "mm")
        if t > big_t:
            raise InputError(f"organ thickness {t} mm exceeds patient thickness {big_t} mm")
        bkg *= 1.0 - t / big_t
    return counts - bkg


def conjugate_view_activity(
    anterior_cps: float,
    posterior_cps: float,
    transmission: float,
    sensitivity_cps_per_mbq: float,
    *,
    self_attenuation: float = 1.0,
) -> float:
    """Activity from conjugate views: ``A = sqrt(I_A I_P / e^(−μT)) · f / C`` (MIRD 16, eq. 4).

    Parameters
    ----------
    anterior_cps, posterior_cps : float
        Net (background-subtracted) count rates in the ROI, cps (> 0).
    transmission : float
        ``e^(−μ_e T)`` in (0, 1] (:func:`transmission_factor`, :func:`transmission_from_counts`,
        :func:`transmission_from_mu_map`).
    sensitivity_cps_per_mbq : float
        System calibration ``C`` in cps/MBq.
    self_attenuation : float, keyword-only
        ``f`` in (0, 1] (:func:`self_attenuation_factor`); 1 for a thin source.

    Returns
    -------
    float
        Activity in Bq.

    Raises
    ------
    InputError
        Non-positive net count rates (no uptake above background), or factors out of range.
    """
    ia = finite(anterior_cps, "anterior_cps")
    ip = finite(posterior_cps, "posterior_cps")
    if not (ia > 0 and ip > 0):
        raise InputError(
            f"net count rates must be positive (anterior {ia:.6g}, posterior {ip:.6g} cps); the "
            "ROI shows no uptake above background"
        )
    trans = positive(transmission, "transmission")
    if trans > 1:
        raise InputError(f"transmission must be in (0, 1], got {trans}")
    f = positive(self_attenuation, "self_attenuation")
    if f > 1:
        raise InputError(f"self_attenuation must be in (0, 1], got {f}")
    c = positive(sensitivity_cps_per_mbq, "sensitivity_cps_per_mbq", "cps/MBq")
    return math.sqrt(ia * ip / trans) * f / c * _BQ_PER_MBQ


@dataclass(frozen=True)
class ConjugateViewRoi:
    """Counts of one ROI on the anterior and (mirrored) posterior images.

    Attributes
    ----------
    name : str
        ROI name.
    anterior_counts, posterior_counts : float
        Total counts in the ROI.
    area_px : float
        ROI size in pixels.
    background_anterior_counts, background_posterior_counts : float
        Counts in the background ROI on each view (0: no background).
    background_area_px : float, optional
        Background ROI size in pixels (needed when background counts are given).
    transmission : float, optional
        Measured ``e^(−μT)`` at the ROI; else computed from ``mu_per_mm`` and
        ``patient_thickness_mm``.
    mu_per_mm : float, optional
        Effective (broad-beam) attenuation coefficient of tissue, 1/mm.
    patient_thickness_mm : float, optional
        Patient thickness at the ROI, mm.
    organ_thickness_mm : float, optional
        Source-region thickness, mm (Buijs background; self-attenuation with ``source_mu``).
    source_mu_per_mm : float, optional
        Attenuation coefficient inside the source for ``f``; None: ``f = 1``.
    """

    name: str
    anterior_counts: float
    posterior_counts: float
    area_px: float
    background_anterior_counts: float = 0.0
    background_posterior_counts: float = 0.0
    background_area_px: float | None = None
    transmission: float | None = None
    mu_per_mm: float | None = None
    patient_thickness_mm: float | None = None
    organ_thickness_mm: float | None = None
    source_mu_per_mm: float | None = None


@dataclass(frozen=True)
class ConjugateViewResult:
    """Activity of one ROI and the intermediate quantities (rates in cps)."""

    name: str
    net_anterior_cps: float
    net_posterior_cps: float
    geometric_mean_cps: float
    transmission: float
    self_attenuation: float
    activity_bq: float

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict (one row of the conjugate-view table)."""
        return asdict(self)


def quantify_conjugate_views(
    rois: Iterable[ConjugateViewRoi],
    duration_s: float,
    sensitivity_cps_per_mbq: float,
    *,
    background: str = "area",
) -> dict[str, ConjugateViewResult]:
    """Activity of each ROI from anterior/posterior counts (MIRD Pamphlet No. 16).

    Counts are background-subtracted per view (:func:`background_subtract`), divided by the
    acquisition ``duration_s`` and combined with :func:`conjugate_view_activity`. Decay during
    the acquisition is not corrected (negligible for scans much shorter than the half-life).

    Parameters
    ----------
    rois : iterable of ConjugateViewRoi
        ROIs with distinct names.
    duration_s : float
        Acquisition duration per view, s (> 0).
    sensitivity_cps_per_mbq : float
        System calibration ``C``.
    background : {"area", "buijs", "none"}, keyword-only
        Background method (used only for ROIs with background counts).

    Returns
    -------
    dict of str to ConjugateViewResult
        By ROI name.
    """
    duration = positive(duration_s, "duration_s", "s")
    out: dict[str, ConjugateViewResult] = {}
    for roi in rois:
        if not isinstance(roi, ConjugateViewRoi):
            raise InputError(f"rois must be ConjugateViewRoi objects, got {type(roi).__name__}")
        if roi.name in out:
            raise InputError(f"two ROIs are named {roi.name!r}")
        has_bkg = roi.background_anterior_counts or roi.background_posterior_counts
        method = background if has_bkg else "none"
        if has_bkg and roi.background_area_px is None:
            raise InputError(f"ROI {roi.name!r}: background counts need background_area_px")
        nets = []
        for counts, bkg in (
            (roi.anterior_counts, roi.background_anterior_counts),
            (roi.posterior_counts, roi.background_posterior_counts),
        ):
            nets.append(
                background_subtract(
                    counts,
                    roi.area_px,
                    bkg,
                    roi.background_area_px if roi.background_area_px is not None else 1.0,
                    method=method,
                    organ_thickness_mm=roi.organ_thickness_mm,
                    patient_thickness_mm=roi.patient_thickness_mm,
                )
                / duration
            )
        if roi.transmission is not None:
            trans = positive(roi.transmission, f"ROI {roi.name!r} transmission")
        elif roi.mu_per_mm is not None and roi.patient_thickness_mm is not None:
            trans = transmission_factor(roi.mu_per_mm, roi.patient_thickness_mm)
        else:
            raise InputError(
                f"ROI {roi.name!r}: give transmission, or mu_per_mm and patient_thickness_mm"
            )
        f = 1.0
        if roi.source_mu_per_mm is not None:
            if roi.organ_thickness_mm is None:
                raise InputError(f"ROI {roi.name!r}: source_mu_per_mm needs organ_thickness_mm")
            f = self_attenuation_factor(roi.source_mu_per_mm, roi.organ_thickness_mm)
        try:
            activity = conjugate_view_activity(
                nets[0], nets[1], trans, sensitivity_cps_per_mbq, self_attenuation=f
            )
        except InputError as exc:
            raise InputError(f"ROI {roi.name!r}: {exc}") from None
        out[roi.name] = ConjugateViewResult(
            name=roi.name,
            net_anterior_cps=nets[0],
            net_posterior_cps=nets[1],
            geometric_mean_cps=math.sqrt(nets[0] * nets[1]),
            transmission=trans,
            self_attenuation=f,
            activity_bq=activity,
        )
    return out
