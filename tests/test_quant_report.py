"""Tests of recon.quant.report: CSV/JSON tables written atomically and read back; plots."""

from __future__ import annotations

import math

import numpy as np
import pytest

import recon
from recon.errors import InputError
from recon.quant import (
    TimePoint,
    Voi,
    between_lesion_spread,
    plot_tacs,
    read_csv,
    read_json,
    stratify,
    table_rows,
    time_activity_curve,
    voi_stats,
    write_csv,
    write_json,
    write_table,
)


@pytest.fixture
def stats():
    grid = recon.ImageGrid((12, 12, 12), 4.0)
    data = np.full(grid.shape, 100.0, np.float32)
    data[4:8, 4:8, 4:8] = 900.0
    img = recon.Image(data, grid, units="Bq/mL", isotope="Zr-89")
    return [
        voi_stats(img, Voi.sphere(grid, (0, 0, 0), 12.0, name="tumour")),
        voi_stats(img, Voi.sphere(grid, (12, 12, 12), 8.0, name="muscle")),
    ]


@pytest.fixture
def tacs():
    grid = recon.ImageGrid((8, 8, 8), 4.0)
    out = []
    for name, scale in (("tumour", 2.0), ("liver", 5.0)):
        points = [
            TimePoint(
                recon.Image(
                    np.full(grid.shape, scale * (10 - h / 24), np.float32),
                    grid,
                    units="Bq/mL",
                    isotope="Zr-89",
                ),
                h * 3600.0,
            )
            for h in (1.0, 24.0, 72.0)
        ]
        voi = Voi.sphere(grid, (0, 0, 0), 8.0, name=name)
        out.append(time_activity_curve(points, voi, mode="activity_at_scan_time"))
    return out


def test_voi_stats_csv_round_trip(stats, tmp_path):
    path = write_csv(tmp_path / "stats.csv", stats)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    rows = read_csv(path)
    assert [r["voi"] for r in rows] == ["tumour", "muscle"]
    for row, st in zip(rows, stats, strict=True):
        assert row["mean"] == pytest.approx(st.mean, rel=1e-12)
        assert row["peak"] == pytest.approx(st.peak, rel=1e-12)
        assert row["n_voxels"] == st.n_voxels
        assert row["total_units"] == "Bq"


def test_voi_stats_json_round_trip(stats, tmp_path):
    path = write_table(tmp_path / "stats.json", stats)
    rows = read_json(path)
    assert rows[0]["voi"] == "tumour"
    assert rows[0]["volume_ml"] == pytest.approx(stats[0].volume_ml)
    assert rows[1]["peak_x_mm"] == pytest.approx(stats[1].peak_xyz_mm[0])


def test_tacs_in_long_format(tacs, tmp_path):
    path = write_table(tmp_path / "tacs.csv", tacs)
    rows = read_csv(path)
    assert len(rows) == 6
    assert {r["voi"] for r in rows} == {"tumour", "liver"}
    first = rows[0]
    assert first["time_h"] == pytest.approx(1.0)
    assert first["value"] == pytest.approx(2.0 * (10 - 1 / 24), rel=1e-6)
    assert first["mode"] == "activity_at_scan_time" and first["isotope"] == "Zr-89"
    whole = write_json(tmp_path / "tacs.json", {"curves": tacs})
    back = read_json(whole)
    assert back["curves"][1]["voi"] == "liver"
    assert back["curves"][1]["times_s"] == [3600.0, 86400.0, 259200.0]


def test_spreads_and_strata_tables(tmp_path):
    cohort = [
        {"patient": "A", "lesion": 1, "ratio": 0.0},
        {"patient": "A", "lesion": 2, "ratio": 3.0},
        {"patient": "B", "lesion": 1, "ratio": 4.0},
    ]
    spreads = between_lesion_spread(cohort, "ratio")
    rows = table_rows(spreads)
    assert rows[0]["key"] == "A" and rows[0]["fold"] == math.inf
    path = write_json(tmp_path / "spread.json", rows)
    assert read_json(path)[0]["fold"] is None  # JSON has no infinity
    csv_path = write_csv(tmp_path / "spread.csv", spreads)
    back = read_csv(csv_path)
    assert back[0]["fold"] is None and back[1]["fold"] == 1.0
    strata = write_csv(tmp_path / "strata.csv", stratify(cohort, "ratio"))
    assert [r["group"] for r in read_csv(strata)] == ["low", "high"]


def test_report_errors(stats, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_csv(tmp_path / "missing" / "stats.csv", stats)
    with pytest.raises(InputError, match="no rows"):
        write_csv(tmp_path / "empty.csv", [])
    with pytest.raises(InputError, match="format"):
        write_table(tmp_path / "stats.xlsx", stats)
    with pytest.raises(InputError, match="table row"):
        write_csv(tmp_path / "bad.csv", [object()])


def test_plot_tacs_writes_a_png(tacs, tmp_path):
    from recon.quant import fit_exponential

    fit = fit_exponential(tacs[0].times_s, tacs[0].values, 1)
    path = plot_tacs(tacs, tmp_path / "tacs.png", log_y=True, title="Zr-89", fits={"tumour": fit})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
