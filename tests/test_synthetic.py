"""recon.simulate.dicom_study: simulated SPECT/CT studies written as DICOM, read back by recon's
readers."""

from __future__ import annotations

import math

import numpy as np
import pydicom
import pytest

import recon
from recon.errors import InputError
from recon.io import read_ct_mu_map, read_nm_projections, scatter_estimate
from recon.physics.attenuation import mu_to_hu
from recon.simulate.dicom_study import write_simulated_spect_study
from recon.simulate.phantoms import sphere_mask, uniform_cylinder

TC99M_KEV = 140.511
MU_WATER = 0.0154
GRID = recon.ImageGrid((12, 32, 32), 6.0)
# An off-centre lesion at patient left, anterior and superior: every wrong angle or row
# convention moves it to a mirror position.
LESION = (36.0, -24.0, 12.0)


def _phantom() -> tuple[np.ndarray, np.ndarray]:
    activity = uniform_cylinder(GRID, radius_mm=70, length_mm=60, value=20000.0)
    activity[sphere_mask(GRID, LESION, 24.0)] = 200000.0
    mu = MU_WATER * (uniform_cylinder(GRID, radius_mm=70, length_mm=72) > 0.5)
    mu[sphere_mask(GRID, (-30.0, 20.0, 0.0), 30.0)] = 0.3 * MU_WATER  # lung-like insert
    return activity, mu.astype(np.float32)


def _model(geometry: recon.SpectGeometry, mu: np.ndarray) -> recon.SpectModel:
    return recon.SpectModel(
        geometry, GRID, mu_map=mu, collimator=recon.Collimator.preset("LEHR"), isotope="Tc-99m",
        sensitivity_cps_per_mbq=90.0, device="cpu",
    )  # fmt: skip


@pytest.mark.parametrize("n_heads", [1, 2])
def test_noiseless_study_reads_back_as_the_projections_of_the_phantom(tmp_path, n_heads):
    activity, mu = _phantom()
    nm_path, ct_dir = write_simulated_spect_study(
        tmp_path, activity, mu, GRID, n_views=24, n_heads=n_heads, time_per_view_s=30.0,
        scatter_fraction=0.0, mu_water_per_mm=MU_WATER, noise=False, device="cpu",
    )  # fmt: skip
    counts, geometry, metadata = read_nm_projections(nm_path)
    assert counts.shape == (24, 12, 32)
    assert metadata["isotope"].name == "Tc-99m"
    assert metadata["rotation_directions"] == ["CW"] * 1
    assert list(metadata["windows"]) == ["PEAK", "SC_LOW", "SC_UP"]
    assert metadata["photopeak_window"] == "PEAK"
    # The reader's geometry (DICOM angles, flipped rows, frame times) reproduces the counts.
    expected = np.asarray(_model(geometry, mu).forward(activity))
    assert expected.max() > 200  # rounding to integers stays below 0.25 %
    np.testing.assert_allclose(counts, expected, atol=0.5 + 1e-3)
    # Sanity of the test: the mirror images of the phantom do not fit.
    for mirrored in (activity[:, :, ::-1], activity[:, ::-1, :], activity[::-1]):
        assert np.abs(counts - np.asarray(_model(geometry, mu).forward(mirrored))).max() > 20

    # CT: same Frame of Reference and Study, μ back on the grid.
    nm = pydicom.dcmread(nm_path, stop_before_pixels=True)
    ct = pydicom.dcmread(sorted(ct_dir.iterdir())[0], stop_before_pixels=True)
    assert ct.FrameOfReferenceUID == nm.FrameOfReferenceUID == metadata["frame_of_reference_uid"]
    assert ct.StudyInstanceUID == nm.StudyInstanceUID and ct.Modality == "CT"
    mu_ct = read_ct_mu_map(
        ct_dir, GRID, TC99M_KEV, frame_of_reference_uid=metadata["frame_of_reference_uid"]
    )
    np.testing.assert_allclose(np.asarray(mu_ct), mu, atol=2e-4)

    # Injection one hour before, with the phantom's activity decayed back to then.
    total_bq = activity.sum(dtype=np.float64) * 6.0**3 / 1000.0
    decay = math.exp(math.log(2) * 3600.0 / metadata["isotope"].half_life_s)
    assert metadata["injected_activity_bq"] == pytest.approx(total_bq * decay, rel=1e-4)
    assert metadata["injection_to_acquisition_s"] == pytest.approx(3600.0)


def test_tew_windows_estimate_the_simulated_scatter(tmp_path):
    activity, mu = _phantom()
    common = dict(n_views=24, mu_water_per_mm=MU_WATER, noise=False, device="cpu")
    nm_path, _ = write_simulated_spect_study(
        tmp_path / "s", activity, mu, GRID, scatter_fraction=0.3, **common
    )
    counts, geometry, metadata = read_nm_projections(nm_path)
    primary = np.asarray(_model(geometry, mu).forward(activity))
    scatter = scatter_estimate(metadata, "tew")
    assert scatter.sum() == pytest.approx(0.3 * primary.sum(), rel=0.01)
    assert (counts - scatter).sum() == pytest.approx(primary.sum(), rel=0.01)


def test_noisy_study_is_poisson_around_the_expectation(tmp_path):
    activity, mu = _phantom()
    nm_path, _ = write_simulated_spect_study(
        tmp_path, activity, mu, GRID, n_views=24, scatter_fraction=0.0, seed=3, device="cpu"
    )
    counts, geometry, _ = read_nm_projections(nm_path)
    expected = np.asarray(_model(geometry, mu).forward(activity))
    assert np.all(counts == np.round(counts))
    assert counts.sum() == pytest.approx(expected.sum(), rel=5 / math.sqrt(expected.sum()))
    residual = (counts - expected)[expected > 50] / np.sqrt(expected[expected > 50])
    assert residual.std() == pytest.approx(1.0, abs=0.1)


def test_mu_to_hu_gives_the_textbook_numbers():
    w = MU_WATER
    hu = mu_to_hu(np.array([0.0, 0.3 * w, w]), TC99M_KEV, mu_water_per_mm=w)
    np.testing.assert_allclose(hu, [-1000.0, -700.0, 0.0], atol=1e-3)
    bone = recon.physics.hu_to_mu(1200.0, TC99M_KEV, 120.0)
    assert mu_to_hu(np.array([bone]), TC99M_KEV)[0] == pytest.approx(1200.0, abs=0.5)


def test_refuses_to_overwrite_and_to_overflow(tmp_path):
    activity, mu = _phantom()
    kwargs = dict(n_views=12, device="cpu")
    write_simulated_spect_study(tmp_path, activity, mu, GRID, **kwargs)
    with pytest.raises(InputError, match="already holds a study"):
        write_simulated_spect_study(tmp_path, activity, mu, GRID, **kwargs)
    nm_path, ct_dir = write_simulated_spect_study(
        tmp_path, activity, mu, GRID, overwrite=True, **kwargs
    )
    assert len(list(ct_dir.iterdir())) == GRID.shape[0] and nm_path.exists()
    assert not [p for p in tmp_path.rglob("*.tmp")]
    with pytest.raises(InputError, match="16-bit"):
        write_simulated_spect_study(tmp_path / "hot", activity * 1e4, mu, GRID, **kwargs)
    with pytest.raises(InputError, match="shape"):
        write_simulated_spect_study(tmp_path / "bad", activity[1:], mu, GRID, **kwargs)
