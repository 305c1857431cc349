"""`recon pet` on raw data: scatter estimated by SSS (--scatter sss), normalisation from a file
(--norm), additive terms for listmode (--additive), and `recon pet-norm`."""

from __future__ import annotations

import json

import numpy as np
import pytest

import recon
from recon.cli import main
from recon.io.listmode_file import write_listmode
from recon.pet import simulate_listmode
from recon.simulate.phantoms import uniform_cylinder
from tests import sss_monte_carlo as mc

SPHERE = (20.0, 0.0, 0.0, 18.5, 4.0)  # one 37 mm sphere, 4:1 (as the MC's spheres)


@pytest.fixture(scope="module")
def scatter_study(tmp_path_factory):
    """Non-TOF listmode of an elliptic water cylinder whose scatter is an independent Monte
    Carlo's (tests/sss_monte_carlo.py), plus its μ-map and true activity (counts/s per mm of
    path, the listmode model's uncalibrated units)."""
    scanner = recon.PetScanner.preset("small")
    grid = recon.ImageGrid((8, 48, 48), (8.0, 6.0, 6.0))
    phantom = mc.Phantom(cx=10.0, cy=-5.0, a=70.0, b=55.0, half_z=32.0)
    ring = mc.Ring(scanner.crystal_radius_mm, scanner.crystals_per_ring, scanner.n_rings,
                   scanner.ring_spacing_mm)  # fmt: skip
    photons = mc.simulate(phantom, ring, 1_500_000, np.random.default_rng(7), (425.0, 650.0),
                          0.12, scanner.tof.sigma_mm, spheres=(SPHERE,))  # fmt: skip
    mu = (mc.voxelise(phantom, grid) * float(mc.water_mu(np.array(511.0)))).astype(np.float32)
    activity = mc.voxelise(phantom, grid, spheres=(SPHERE,)).astype(np.float32)
    duration = 100.0
    model = recon.PetSinogramModel(scanner, grid, mu_map=mu, use_tof=False,
                                   frame_duration_s=duration, device="cpu")  # fmt: skip
    layout = model.layout
    plane, view, radial, _, valid = layout.bins_of(photons["crystal_a"], photons["crystal_b"])
    sinos = {}
    for name, chosen in (("trues", ~photons["scattered"]), ("scatter", photons["scattered"])):
        sino = np.zeros(layout.shape)
        keep = valid & chosen
        np.add.at(sino, (plane[keep], view[keep], radial[keep]), photons["weight"][keep])
        sinos[name] = sino
    trues = np.asarray(model.forward(activity), np.float64)
    scale = 1.5e6 / trues.sum()  # 1.5 million trues
    scatter = sinos["scatter"] * (trues.sum() / sinos["trues"].sum()) * scale
    events = simulate_listmode(model, activity * np.float32(scale), duration,
                               np.random.default_rng(8), additive=scatter)  # fmt: skip
    folder = tmp_path_factory.mktemp("scatter")
    path = folder / "scan.npz"
    write_listmode(path, events, scanner)
    np.save(folder / "mu.npy", mu)
    ratio = float(scatter.sum() / (trues.sum() * scale))
    # The listmode model's images are in the sinogram model's units: the truth is the activity.
    return {"path": path, "mu": folder / "mu.npy", "grid": grid, "truth": activity * scale,
            "scatter_to_trues": ratio}  # fmt: skip


def _recovery(study, out):
    image = np.load(out / "frame_000.npy")
    grid = study["grid"]
    z, y, x = grid.meshgrid_mm()
    uniform = (((x - 10.0) / 55.0) ** 2 + ((y + 5.0) / 40.0) ** 2 <= 1) & (np.abs(z) < 20)
    sx, sy, sz, radius, _ = SPHERE
    uniform &= (x - sx) ** 2 + (y - sy) ** 2 + (z - sz) ** 2 > (radius + 12.0) ** 2
    sphere = (x - sx) ** 2 + (y - sy) ** 2 + (z - sz) ** 2 <= 12.0**2
    truth = study["truth"]
    return (float(image[uniform].mean() / truth[uniform].mean()),
            float(image[sphere].mean() / truth[sphere].mean()))  # fmt: skip


def test_scatter_sss_recovers_the_activity_of_a_monte_carlo_study(scatter_study, tmp_path):
    """With --scatter sss the large uniform region is within 5 % and the 37 mm sphere within
    10 % of the truth; without it the uniform region is biased high by about the scatter."""
    common = ["--mu", str(scatter_study["mu"]), "--no-tof", "--shape", "8", "48", "48",
              "--voxel-mm", "8", "6", "6", "--iterations", "4", "--subsets", "8",
              "--device", "cpu"]  # fmt: skip
    corrected, plain = tmp_path / "sss", tmp_path / "none"
    path = str(scatter_study["path"])
    assert main(["pet", path, "-o", str(corrected), "--scatter", "sss", *common]) == 0
    assert main(["pet", path, "-o", str(plain), "--radial-bins", "95", *common]) == 0
    uniform, sphere = _recovery(scatter_study, corrected)
    assert uniform == pytest.approx(1.0, abs=0.05)
    assert sphere == pytest.approx(1.0, abs=0.10)
    biased, _ = _recovery(scatter_study, plain)
    ratio = scatter_study["scatter_to_trues"]
    assert 0.5 * ratio < biased - 1.0 < 2.0 * ratio
    summary = json.loads((corrected / "summary.json").read_text())
    report = summary["scatter"]["frames"][0]
    assert summary["scatter"]["rounds_reconstructed_with"].startswith("LM-OSEM, 2 iterations")
    assert 0.5 * ratio < report["scatter_fraction"] < 1.5 * ratio
    assert summary["frames"][0]["scatter_fraction"] == report["scatter_fraction"]
    scatter = np.load(corrected / "scatter_000.npy")
    assert scatter.ndim == 3 and scatter.min() >= 0 and scatter.sum() > 0


def test_scatter_sss_needs_a_mu_map(scatter_study, tmp_path, capsys):
    assert main(["pet", str(scatter_study["path"]), "-o", str(tmp_path / "o"),
                 "--scatter", "sss"]) == 2  # fmt: skip
    assert "--mu" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------ normalisation
def _efficiencies(scanner: recon.PetScanner, seed: int) -> np.ndarray:
    """Crystal efficiencies with a ring pattern (±15 %) and 8 % crystal-to-crystal spread."""
    rng = np.random.default_rng(seed)
    ring = 1.0 + 0.15 * np.sin(np.arange(scanner.n_rings) * 1.3)
    crystal = rng.normal(1.0, 0.08, (scanner.n_rings, scanner.crystals_per_ring)).clip(0.6, 1.4)
    return (ring[:, None] * crystal).reshape(-1)


def _events_from_sinogram(layout: recon.SinogramLayout, counts: np.ndarray, seed: int):
    """One event per count of a non-TOF sinogram, on its bin's crystal pair, in time order."""
    plane, view, radial = np.nonzero(counts)
    repeats = counts[plane, view, radial].astype(np.int64)
    a, b = layout.crystals_of(plane, view, radial)
    a, b = np.repeat(a, repeats), np.repeat(b, repeats)
    order = np.random.default_rng(seed).permutation(a.size)
    return recon.ListmodeEvents(
        crystal_a=a[order].astype(np.int32), crystal_b=b[order].astype(np.int32),
        tof_bin=np.zeros(a.size, np.int16), time_ms=np.linspace(0.0, 60_000.0, a.size),
    )  # fmt: skip


@pytest.fixture(scope="module")
def normalisation_study(tmp_path_factory):
    """A 100 mm water cylinder calibration scan (2.5 M trues) and a patient-like scan of a
    uniform cylinder, both through the same crystal efficiencies."""
    scanner = recon.PetScanner.preset("small")
    efficiency = _efficiencies(scanner, seed=5)
    folder = tmp_path_factory.mktemp("norm")
    layout = recon.SinogramLayout(scanner)
    expected = recon.pet.cylinder_sinogram(layout, 100.0)
    pair = efficiency[np.stack(layout.crystals_of(*np.indices(layout.shape)))].prod(axis=0)
    mean = expected * pair * (2.5e6 / float((expected * pair).sum()))
    counts = np.random.default_rng(6).poisson(mean)
    write_listmode(folder / "calibration.npz", _events_from_sinogram(layout, counts, 6), scanner)

    grid = recon.ImageGrid((15, 40, 40), (4.0, 6.0, 6.0))
    activity = uniform_cylinder(grid, radius_mm=70.0, length_mm=200.0, value=1.0)
    model = recon.PetSinogramModel(scanner, grid, normalization=efficiency, use_tof=False,
                                   frame_duration_s=60.0, device="cpu")  # fmt: skip
    activity *= 1.5e6 / float(model.forward(activity).sum())
    events = simulate_listmode(model, activity, 60.0, np.random.default_rng(9))
    write_listmode(folder / "scan.npz", events, scanner)
    return {"folder": folder, "efficiency": efficiency, "scanner": scanner, "grid": grid}


def test_pet_norm_recovers_the_crystal_efficiencies(normalisation_study, tmp_path, capsys):
    out = tmp_path / "norm"
    calibration = normalisation_study["folder"] / "calibration.npz"
    assert main(["pet-norm", str(calibration), "-o", str(out), "--radius-mm", "100"]) == 0
    assert {p.name for p in out.iterdir()} >= {"normalization.npz", "efficiencies.png",
                                                 "summary.json"}  # fmt: skip
    estimate = recon.io.read_normalization(out / "normalization.npz")
    truth = normalisation_study["efficiency"].reshape(estimate.crystal_efficiency.shape)
    # Efficiencies are known up to the gauge of one scale per ring (the ring-pair factors carry
    # the rest): compare within each ring, relative to its mean.
    found = estimate.crystal_efficiency / estimate.crystal_efficiency.mean(axis=1, keepdims=True)
    true = truth / truth.mean(axis=1, keepdims=True)
    error = found / true - 1.0
    summary = json.loads((out / "summary.json").read_text())
    precision = summary["efficiency_relative_error"]  # the Poisson precision it states
    assert 0.005 < precision < 0.03
    assert np.sqrt(np.mean(error**2)) < 1.5 * precision
    assert "normalization.npz" in capsys.readouterr().out


def test_norm_removes_the_ring_artefact(normalisation_study, tmp_path):
    """A uniform cylinder reconstructed with --norm from recon pet-norm: axial and radial
    profiles flat within 3 %; without it, the rings' efficiency pattern shows."""
    folder = normalisation_study["folder"]
    norm = tmp_path / "norm"
    assert main(["pet-norm", str(folder / "calibration.npz"), "-o", str(norm),
                 "--radius-mm", "100"]) == 0  # fmt: skip
    grid = normalisation_study["grid"]
    common = ["--shape", "15", "40", "40", "--voxel-mm", "4", "6", "6", "--iterations", "3",
              "--subsets", "4", "--no-tof", "--device", "cpu"]  # fmt: skip
    with_norm, without = tmp_path / "with", tmp_path / "without"
    scan = str(folder / "scan.npz")
    assert main(["pet", scan, "-o", str(with_norm), "--norm",
                 str(norm / "normalization.npz"), *common]) == 0  # fmt: skip
    assert main(["pet", scan, "-o", str(without), *common]) == 0
    z, y, x = grid.meshgrid_mm()
    radius = np.hypot(x, y)
    inside = (radius < 55.0) & (np.abs(z) < 22.0)

    def profiles(out):
        image = np.load(out / "frame_000.npy")
        mean = image[inside].mean()
        axial = [image[inside & (z == zk)].mean() / mean for zk in np.unique(z[inside])]
        rings = [(0, 15), (15, 30), (30, 45), (45, 55)]
        radial = [image[inside & (radius >= a) & (radius < b)].mean() / mean for a, b in rings]
        return np.asarray(axial), np.asarray(radial)

    axial, radial = profiles(with_norm)
    assert np.max(np.abs(axial - 1.0)) < 0.03 and np.max(np.abs(radial - 1.0)) < 0.03
    axial_plain, _ = profiles(without)
    assert np.max(np.abs(axial_plain - 1.0)) > 2 * np.max(np.abs(axial - 1.0))
    summary = json.loads((with_norm / "summary.json").read_text())
    assert summary["normalization"].endswith("normalization.npz")


def test_norm_and_additive_are_checked(normalisation_study, tmp_path, capsys):
    folder = normalisation_study["folder"]
    scan = str(folder / "scan.npz")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((3, 4)))
    assert main(["pet", scan, "-o", str(tmp_path / "a"), "--additive", str(bad)]) == 2
    assert "--additive" in capsys.readouterr().err
    assert main(["pet", scan, "-o", str(tmp_path / "b"), "--norm", str(bad)]) == 2
    capsys.readouterr()
    assert main(["pet-norm", str(folder / "calibration.npz"), "-o", str(tmp_path / "c")]) == 2
    assert "--radius-mm" in capsys.readouterr().err
    for name in ("a", "b", "c"):
        assert not (tmp_path / name).exists()


def test_listmode_additive_per_prompt_and_per_bin_agree(normalisation_study, tmp_path):
    """--additive as counts/s per layout bin and the same rates given per prompt give the same
    image; a constant additive rate lowers the image."""
    folder = normalisation_study["folder"]
    scanner = normalisation_study["scanner"]
    layout = recon.SinogramLayout(scanner)
    per_bin = np.full(layout.shape, 2e-4)
    events = recon.io.read_listmode(folder / "scan.npz").events
    per_prompt = np.full(int(np.count_nonzero(events.prompt)), 2e-4)
    (folder_in := tmp_path / "in").mkdir()
    np.save(folder_in / "bin.npy", per_bin)
    np.save(folder_in / "prompt.npy", per_prompt)
    common = ["--iterations", "1", "--subsets", "2", "--no-tof", "--device", "cpu",
              "--shape", "15", "40", "40", "--voxel-mm", "4", "6", "6"]  # fmt: skip
    scan = str(folder / "scan.npz")
    outs = {}
    for name in ("bin", "prompt", "none"):
        out = tmp_path / name
        extra = [] if name == "none" else ["--additive", str(folder_in / f"{name}.npy")]
        assert main(["pet", scan, "-o", str(out), *extra, *common]) == 0
        outs[name] = np.load(out / "frame_000.npy")
    np.testing.assert_allclose(
        outs["bin"], outs["prompt"], rtol=1e-4, atol=1e-6 * outs["bin"].max()
    )
    assert outs["bin"].sum() < outs["none"].sum()
