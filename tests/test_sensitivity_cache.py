"""The on-disk cache of PET listmode sensitivity images (recon.pet.sensitivity_cache)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import recon
from recon.pet.sensitivity_cache import Fingerprint, cache_folder, load_or_compute
from recon.simulate.phantoms import uniform_cylinder


def _scanner(**changes: object) -> recon.PetScanner:
    fields = dict(n_rings=3, crystals_per_ring=64, radius_mm=100.0, ring_spacing_mm=4.0)
    fields.update(changes)
    return recon.PetScanner(**fields)  # type: ignore[arg-type]


def _grid() -> recon.ImageGrid:
    return recon.ImageGrid((3, 24, 24), 4.0)


def _mu(grid: recon.ImageGrid) -> np.ndarray:
    return (0.0096 * uniform_cylinder(grid, radius_mm=35, length_mm=12)).astype(np.float32)


def _count_back_projections(model: recon.PetListmodeModel) -> list[int]:
    calls: list[int] = []
    back = model.nontof_projector.back

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return back(*args, **kwargs)

    model.nontof_projector.back = counted  # type: ignore[method-assign]
    return calls


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECON_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "sensitivity"


def test_a_second_model_of_the_same_set_up_reads_the_cached_image(cache: Path) -> None:
    grid = _grid()
    first = recon.PetListmodeModel(_scanner(), grid, mu_map=_mu(grid), device="cpu")
    computed = np.asarray(first.geometric_sensitivity())
    assert first.sensitivity_source == "computed"
    assert len(list(cache.glob("*.npy"))) == 1

    second = recon.PetListmodeModel(_scanner(), grid, mu_map=_mu(grid), device="cpu")
    calls = _count_back_projections(second)
    cached = np.asarray(second.geometric_sensitivity())
    assert calls == [] and second.sensitivity_source == "cache"
    np.testing.assert_array_equal(cached, computed)
    # ... and it is the image a model without any cache computes.
    os.environ["RECON_CACHE_DIR"] = "off"
    fresh = recon.PetListmodeModel(_scanner(), grid, mu_map=_mu(grid), device="cpu")
    np.testing.assert_array_equal(np.asarray(fresh.geometric_sensitivity()), computed)
    assert fresh.sensitivity_source == "computed, not cached"


@pytest.mark.parametrize(
    "change",
    ["mu", "scanner", "ring_difference", "grid_origin", "efficiencies", "resolution"],
)
def test_anything_the_image_depends_on_gives_another_key(cache: Path, change: str) -> None:
    grid = _grid()
    base = recon.PetListmodeModel(_scanner(), grid, mu_map=_mu(grid), device="cpu")
    base.geometric_sensitivity()
    kwargs: dict[str, object] = dict(mu_map=_mu(grid), device="cpu")
    scanner = _scanner()
    if change == "mu":
        mu = _mu(grid)
        mu[1, 12, 12] *= 1.01  # one voxel, one percent
        kwargs["mu_map"] = mu
    elif change == "scanner":
        scanner = _scanner(radius_mm=101.0)
    elif change == "ring_difference":
        kwargs["max_ring_difference"] = 1
    elif change == "grid_origin":
        grid = recon.ImageGrid((3, 24, 24), 4.0, origin=(-4.0, -40.0, -46.0))  # off centre
        kwargs["mu_map"] = _mu(grid)
    elif change == "efficiencies":
        eff = np.ones(scanner.n_crystals)
        eff[5] = 0.9
        kwargs["normalization"] = eff
    else:
        kwargs["resolution"] = recon.ImageResolution(6.0)
    other = recon.PetListmodeModel(scanner, grid, **kwargs)  # type: ignore[arg-type]
    calls = _count_back_projections(other)
    other.geometric_sensitivity()
    assert calls and other.sensitivity_source == "computed"
    assert len(list(cache.glob("*.npy"))) == 2


def test_a_damaged_cache_file_is_recomputed_not_trusted(cache: Path) -> None:
    grid = _grid()
    model = recon.PetListmodeModel(_scanner(), grid, device="cpu")
    expected = np.asarray(model.geometric_sensitivity())
    (path,) = cache.glob("*.npy")
    path.write_bytes(path.read_bytes()[:100])  # truncated
    again = recon.PetListmodeModel(_scanner(), grid, device="cpu")
    np.testing.assert_array_equal(np.asarray(again.geometric_sensitivity()), expected)
    assert again.sensitivity_source == "computed"
    assert path.stat().st_size > 100  # rewritten whole


def test_an_unwritable_cache_only_costs_the_saving(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("RECON_CACHE_DIR", str(blocker))
    image, source = load_or_compute("0" * 64, (2, 2), lambda: np.ones((2, 2)), "a test image")
    assert source == "computed, not cached" and image.dtype == np.float32
    assert blocker.read_text().startswith("a file")


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECON_CACHE_DIR", "off")
    assert cache_folder() is None
    monkeypatch.delenv("RECON_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere")
    assert cache_folder() == Path("/somewhere/recon/sensitivity")


def test_fingerprint_sees_array_bytes_shape_and_type() -> None:
    def key(value: object) -> str:
        return Fingerprint("t").add("x", value).hexdigest()

    a = np.arange(6, dtype=np.float32)
    assert key(a) == key(a.copy())
    assert key(a) != key(a.reshape(2, 3))
    assert key(a) != key(a.astype(np.float64))
    assert key(None) != key(a)
    big = np.zeros(10_000, np.float32)
    changed = big.copy()
    changed[5_000] = 1.0  # in the part a repr would elide
    assert key(big) != key(changed)
    assert key({"a": big}) != key({"a": changed})
    assert key(recon.ImageResolution(4.0)) != key(recon.ImageResolution(4.5))
    assert key(1) != key(1.0) and key((1, 2)) != key([1, 2])
    with pytest.raises(TypeError):
        key(object())
