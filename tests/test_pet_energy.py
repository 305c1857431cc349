"""The PET scanner's energy window and energy resolution: presets, validation, descriptions and
files written before recon carried them (they still read, with the default stated)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import recon
from recon.io.listmode_file import read_listmode, write_listmode
from recon.pet.scanner import DEFAULT_ENERGY_RESOLUTION, DEFAULT_ENERGY_WINDOW_KEV


def test_presets_carry_their_published_energy_figures():
    # Hsu et al. 2017 (Discovery MI): 425-650 keV, 9.4 % FWHM; van Sluis et al. 2019 (Vision):
    # 435-585 keV.
    dmi = recon.PetScanner.preset("dmi4")
    assert dmi.energy_window_kev == (425.0, 650.0) and dmi.energy_resolution == 0.094
    assert recon.PetScanner.preset("vision").energy_window_kev == (435.0, 585.0)
    small = recon.PetScanner.preset("small")
    assert small.energy_response() == (425.0, 650.0, 0.12, False)


def test_energy_fields_are_validated():
    base = dict(n_rings=2, crystals_per_ring=16, radius_mm=100.0, ring_spacing_mm=4.0)
    scanner = recon.PetScanner(**base, energy_window_kev=[400, 600], energy_resolution=0.1)
    assert scanner.energy_window_kev == (400.0, 600.0)  # a list becomes a tuple
    for window in ((520.0, 650.0), (425.0, 500.0), (600.0, 400.0), (425.0,), "425-650"):
        with pytest.raises(recon.GeometryError, match="energy_window_kev"):
            recon.PetScanner(**base, energy_window_kev=window)
    for resolution in (0.0, 1.2, float("nan"), "10%", True):
        with pytest.raises(recon.GeometryError, match="energy_resolution"):
            recon.PetScanner(**base, energy_resolution=resolution)


def test_descriptions_without_energy_fields_still_read_with_the_default_stated():
    old = {"n_rings": 2, "crystals_per_ring": 16, "radius_mm": 100.0, "ring_spacing_mm": 4.0}
    scanner = recon.PetScanner.from_dict(old)
    assert scanner.energy_window_kev is None and scanner.energy_resolution is None
    lower, upper, resolution, assumed = scanner.energy_response()
    assert (lower, upper) == DEFAULT_ENERGY_WINDOW_KEV == (425.0, 650.0)
    assert resolution == DEFAULT_ENERGY_RESOLUTION == 0.12 and assumed
    new = recon.PetScanner.from_dict({**old, "energy_window_kev": [430, 650]})
    assert new.energy_window_kev == (430.0, 650.0) and new.energy_response()[3]
    with pytest.raises(recon.GeometryError, match="scanner description: energy_window_kev"):
        recon.PetScanner.from_dict({**old, "energy_window_kev": [600, 650]})


def test_listmode_files_keep_the_energy_fields_and_old_files_still_read(tmp_path):
    scanner = dataclasses.replace(
        recon.PetScanner.preset("small"), energy_window_kev=(430.0, 640.0), energy_resolution=0.1
    )
    events = recon.ListmodeEvents(
        crystal_a=[0, 5], crystal_b=[64, 70], tof_bin=[0, 1], time_ms=[0.0, 1.0]
    )
    loaded = read_listmode(write_listmode(tmp_path / "new.npz", events, scanner))
    assert loaded.scanner.energy_window_kev == (430.0, 640.0)
    assert loaded.scanner.energy_resolution == 0.1
    # A file of format version 1 as written before the energy fields existed (its layout is the
    # module's documented one, built here by hand).
    old_scanner = {
        "n_rings": 8, "crystals_per_ring": 128, "radius_mm": 150.0, "ring_spacing_mm": 8.0,
        "crystal_depth_mm": 0.0, "tof": {"fwhm_ps": 400.0, "n_bins": 19, "bin_width_ps": 167.0},
        "name": "small",
    }  # fmt: skip
    np.savez_compressed(
        tmp_path / "old.npz",
        format=np.array("recon-listmode"), version=np.array(1),
        crystal_a=np.array([0, 5], np.int32), crystal_b=np.array([64, 70], np.int32),
        tof_bin=np.array([0, 1], np.int16), time_ms=np.array([0.0, 1.0]),
        prompt=np.array([True, True]), scanner=np.array(json.dumps(old_scanner)),
        isotope=np.array(""), start=np.array(""),
    )  # fmt: skip
    old = read_listmode(tmp_path / "old.npz")
    assert old.scanner.energy_window_kev is None and old.scanner.energy_resolution is None
    assert old.scanner.energy_response() == (425.0, 650.0, 0.12, True)
