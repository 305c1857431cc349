"""recon's compact listmode file: round trip and bad files."""

from __future__ import annotations

import numpy as np
import pytest

import recon
from recon.io.listmode_file import read_listmode, write_listmode


def _events(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    scanner = recon.PetScanner.preset("small")
    a = rng.integers(0, scanner.n_crystals, n)
    b = (a + 64) % scanner.n_crystals
    return scanner, recon.ListmodeEvents(
        crystal_a=a.astype(np.int32), crystal_b=b.astype(np.int32),
        tof_bin=rng.integers(-9, 10, n).astype(np.int16),
        time_ms=np.sort(rng.random(n) * 6e4), prompt=rng.random(n) < 0.9,
    )  # fmt: skip


def test_round_trip_is_exact(tmp_path):
    scanner, events = _events()
    path = write_listmode(
        tmp_path / "scan.npz", events, scanner, isotope="F-18", start="2026-11-25T09:00:00"
    )
    loaded = read_listmode(path)
    assert loaded.scanner == scanner and loaded.isotope == "F-18"
    assert loaded.start == "2026-11-25T09:00:00"
    for key in ("crystal_a", "crystal_b", "tof_bin", "time_ms", "prompt"):
        np.testing.assert_array_equal(getattr(loaded.events, key), getattr(events, key))
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(recon.InputError, match="no such listmode file"):
        read_listmode(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(recon.InputError, match="not a recon listmode file"):
        read_listmode(junk)
    other = tmp_path / "other.npz"
    np.savez(other, crystal_a=np.zeros(2, np.int32))
    with pytest.raises(recon.InputError, match="missing entries"):
        read_listmode(other)


def test_invalid_events_are_not_written(tmp_path):
    scanner, events = _events()
    bad = recon.ListmodeEvents(crystal_a=[0, 5000], crystal_b=[1, 2], time_ms=[0.0, 1.0])
    with pytest.raises(recon.InputError, match="crystal"):
        write_listmode(tmp_path / "bad.npz", bad, scanner)
    assert not (tmp_path / "bad.npz").exists()
