"""PETSIRD detection efficiencies read as a recon Normalization.

The expected factor of every crystal pair comes from the ``petsird`` package's own
``helpers.get_detection_efficiency`` (its definition of the efficiency model), applied to the
detection bins of the pair in PETSIRD's order; recon's factor comes from reading the file. The
scanner and writer are those of ``tests/test_petsird.py`` (16 modules of 8 x 8 crystals, two
energy bins).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

petsird = pytest.importorskip("petsird")
helpers = pytest.importorskip("petsird.helpers")

from recon.io import read_normalization, write_normalization  # noqa: E402
from recon.io.petsird import read_petsird  # noqa: E402
from tests.test_petsird import N_AX, N_ENERGY, N_MODULES, N_TRANS, _bin, _header, _write  # noqa: E402

N_ELEMENTS = N_TRANS * N_AX


def _efficiencies(seed: int = 0, energy_dependent: bool = False) -> object:
    """Per-bin efficiencies and one module-pair table per circular module distance (SGID)."""
    rng = np.random.default_rng(seed)
    per_element = rng.uniform(0.7, 1.3, N_MODULES * N_ELEMENTS)
    per_bin = np.repeat(per_element, N_ENERGY)
    if energy_dependent:
        per_bin[1::N_ENERGY] *= 1.1
    distance = np.abs(np.subtract.outer(np.arange(N_MODULES), np.arange(N_MODULES)))
    sgid = np.minimum(distance, N_MODULES - distance)  # 0 (same module) .. 8
    sgid[(sgid > 0) & (sgid < 2)] = -1  # neighbouring modules are not in coincidence
    vectors = []
    for group in range(N_MODULES // 2 + 1):
        values = rng.uniform(0.8, 1.2, (N_ELEMENTS, N_ELEMENTS))
        expanded = np.repeat(np.repeat(values, N_ENERGY, axis=0), N_ENERGY, axis=1)
        vectors.append(
            petsird.ModulePairEfficiencies(values=expanded.astype(np.float32), sgid=group)
        )
    return petsird.DetectionEfficiencies(
        method_description="simulated",
        calibration_factor=2.5,
        detection_bin_efficiencies=[per_bin.astype(np.float32)],
        module_pair_sgidlut=[[sgid.astype(np.int32)]],
        module_pair_efficiencies_vectors=[[vectors]],
    )


def _file(tmp_path, efficiencies):
    header = _header()
    header.scanner.detection_efficiencies = efficiencies
    return _write(tmp_path / "eff.petsird", header=header), header


def test_petsird_efficiencies_match_the_petsird_definition(tmp_path):
    path, header = _file(tmp_path, _efficiencies())
    _, scanner, metadata = read_petsird(path)
    norm = metadata["normalization"]
    assert metadata["normalization_problem"] is None
    assert norm.info["petsird_calibration_factor"] == pytest.approx(2.5)
    rng = np.random.default_rng(1)
    a = rng.integers(0, scanner.n_crystals, 400)
    b = rng.integers(0, scanner.n_crystals, 400)
    # 40 pairs inside module 0 (transaxial index 0..7 of any ring): the module with itself.
    a[:40] = rng.integers(0, 8, 40) * 128 + rng.integers(0, N_TRANS, 40)
    b[:40] = rng.integers(0, 8, 40) * 128 + rng.integers(0, N_TRANS, 40)
    expected = []
    for crystal_a, crystal_b in zip(a, b, strict=True):
        energy = int(rng.integers(0, N_ENERGY))  # efficiencies do not depend on it
        bins = sorted([_bin(crystal_a, energy), _bin(crystal_b, 1 - energy)], reverse=True)
        expected.append(
            helpers.get_detection_efficiency(
                header.scanner, [0, 0], bins[0], bins[1], with_calibration_factor=False
            )
        )
    expected = np.array(expected)
    assert np.count_nonzero(expected == 0) > 10  # pairs of neighbouring modules
    np.testing.assert_allclose(norm.lor_factors(a, b), expected, rtol=1e-6)
    np.testing.assert_allclose(norm.lor_factors(b, a), expected, rtol=1e-6)
    # The file keeps the module-pair tables.
    back = read_normalization(write_normalization(tmp_path / "n.npz", norm), scanner=scanner)
    np.testing.assert_array_equal(back.lor_factors(a, b), norm.lor_factors(a, b))


def test_energy_dependent_efficiencies_are_reported_not_applied(tmp_path, caplog):
    path, _ = _file(tmp_path, _efficiencies(energy_dependent=True))
    with caplog.at_level(logging.WARNING, logger="recon"):
        events, _, metadata = read_petsird(path)
    assert events.n_events > 0
    assert metadata["normalization"] is None
    assert "energy bins" in metadata["normalization_problem"]
    assert "not used" in caplog.text


def test_file_without_efficiencies_has_no_normalization(tmp_path):
    _, _, metadata = read_petsird(_write(tmp_path / "plain.petsird"))
    assert metadata["normalization"] is None and metadata["normalization_problem"] is None
