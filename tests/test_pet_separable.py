"""The separable PET projector (one transaxial walk per (view, radial) pair for all planes) equals
the per-LOR Joseph walk, is its own exact adjoint, integrates analytic objects, and the sinogram
models that use it on the CPU give the same projections, back projections and sensitivities as
the per-LOR path.

Tolerances: the per-LOR kernels sum float64 samples from float32 endpoints and round once; the
separable kernels round the segment parameter ``t``, the axial index and every sample to float32
and sum in float32 (in any order). With ``n_s`` samples per LOR, axial indices below 64 and image
values in [0.5, 1.5], a LOR of length L differs by at most about ``1.5·L·(2·64 + 2·n_s)·ε32``
(index rounding ≤ 64 ε32 per interpolation weight, summation ≤ n_s ε32), and the same bound
relative to the largest value holds for back projections of values in [0.5, 1.5].
"""

from __future__ import annotations

import numpy as np
import pytest

import recon
from recon import ImageGrid
from recon.errors import GeometryError, InputError
from recon.pet import PetLorSinogramModel, PetScanner, PetSinogramModel
from recon.pet.projector import LorProjector
from recon.pet.separable import SeparableProjector, axial_mirror
from recon.pet.sinogram import SinogramLayout
from recon.pet.tof import Tof
from recon.simulate.phantoms import uniform_cylinder
from tests.test_pet_projector import _check_chords

EPS32 = float(np.finfo(np.float32).eps)
# Anisotropic voxels and an off-centre origin catch axis mix-ups.
GRID = ImageGrid(shape=(14, 22, 20), voxel_size=(4.0, 3.5, 3.0), origin=(-26.0, -35.0, -28.5))
# 24 rings over 92 mm around a 45 mm radius: large ring differences have |dz| > |dxy| (principal
# axis z, left to the per-LOR walk).
STEEP = PetScanner(n_rings=24, crystals_per_ring=32, radius_mm=45.0, ring_spacing_mm=4.0)


def _bound(length: np.ndarray, n_samples: int) -> np.ndarray:
    """The float32 bound of the module docstring for LORs of the given lengths (mm)."""
    return 1.5 * length * (2 * 64 + 2 * n_samples) * EPS32


def _explicit(xy1, xy2, z1, z2) -> tuple[np.ndarray, np.ndarray]:
    """The ``(plane · pair, 3)`` endpoints of separable tables, plane-major."""
    n_planes, n_pairs = z1.size, xy1.shape[0]
    xs = np.empty((n_planes, n_pairs, 3), np.float32)
    xe = np.empty((n_planes, n_pairs, 3), np.float32)
    xs[..., :2], xs[..., 2] = xy1[None], z1[:, None]
    xe[..., :2], xe[..., 2] = xy2[None], z2[:, None]
    return xs.reshape(-1, 3), xe.reshape(-1, 3)


def _random_tables(seed: int = 0) -> tuple[np.ndarray, ...]:
    """Pairs on a circle around the image (a few miss it), exact |dx| = |dy| ties, degenerate
    pairs (xy_start == xy_end); planes with |dz| from 0 to beyond the transaxial length,
    including |dz| = |dx| = |dy| ties."""
    rng = np.random.default_rng(seed)
    n = 150
    a1, a2 = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
    r = 60.0
    xy1 = np.stack([r * np.cos(a1), r * np.sin(a1)], 1)
    xy2 = np.stack([r * np.cos(a2), r * np.sin(a2)], 1)
    ties = np.array([[-40.0, -40.0, 40.0, 40.0], [-30.0, 30.0, 30.0, -30.0], [20, -50, -20, -10]])
    degenerate = np.array([[5.0, 7.0, 5.0, 7.0], [70.0, 0.0, 70.0, 0.0]])
    extra = np.concatenate([ties, degenerate])
    xy1 = np.concatenate([xy1, extra[:, :2]])
    xy2 = np.concatenate([xy2, extra[:, 2:]])
    z1 = np.concatenate([rng.uniform(-40, 40, 30), [-40.0, 0.0, -3.0]])
    z2 = np.concatenate([rng.uniform(-40, 40, 30), [40.0, 0.0, -3.0]])
    return tuple(a.astype(np.float32) for a in (xy1, xy2, z1, z2))


def _layout_tables(layout: SinogramLayout) -> tuple[np.ndarray, ...]:
    xy1, xy2, z1, z2 = layout.separable_endpoints()
    return xy1.reshape(-1, 2), xy2.reshape(-1, 2), z1, z2


CASES = {
    "random": _random_tables,
    "steep-scanner": lambda: _layout_tables(SinogramLayout(STEEP)),
}


# ------------------------------------------------------------------------------- the tables
def test_layout_tables_are_its_endpoints():
    layout = SinogramLayout(STEEP, max_ring_difference=9)
    views = np.array([0, 5, 10])
    xs, xe = layout.endpoints(views)
    xy1, xy2, z1, z2 = layout.separable_endpoints(views)
    assert xy1.shape == (3, layout.n_radial, 2) and z1.shape == (layout.n_planes,)
    for end, xy, z in ((xs, xy1, z1), (xe, xy2, z2)):
        np.testing.assert_array_equal(end[..., :2], np.broadcast_to(xy[None], end[..., :2].shape))
        np.testing.assert_array_equal(end[..., 2], np.broadcast_to(z[:, None, None], end.shape[:3]))
    # A slice and all views give the same tables as explicit indices.
    np.testing.assert_array_equal(layout.separable_endpoints(slice(0, 12, 5))[0], xy1[:3])
    np.testing.assert_array_equal(layout.separable_endpoints()[1][views], xy2)


# ------------------------------------------------------------------ equal to the per-LOR walk
@pytest.mark.parametrize("case", list(CASES))
def test_forward_and_back_equal_the_per_lor_walk(case):
    xy1, xy2, z1, z2 = CASES[case]()
    per_lor = LorProjector(GRID, device="cpu")
    separable = SeparableProjector(per_lor)
    steep = separable._steep(xy1, xy2, z1, z2)
    assert steep is not None and steep[0].size > 100  # the per-LOR fallback is exercised
    xs, xe = _explicit(xy1, xy2, z1, z2)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.5, 1.5, GRID.shape).astype(np.float32)
    n_samples = max(GRID.shape) + 1
    ref = per_lor.forward(x, xs, xe).reshape(z1.size, -1)
    got = separable.forward(x, xy1, xy2, z1, z2)
    assert got.shape == ref.shape and got.dtype == np.float32
    length = np.linalg.norm(xe - xs, axis=1).reshape(ref.shape)
    assert np.all(np.abs(got - ref) <= _bound(length, n_samples))
    assert ref.max() > 50.0 and np.count_nonzero(ref) > ref.size // 4  # a real test

    y = rng.uniform(0.5, 1.5, ref.shape).astype(np.float32)
    y[rng.random(y.shape) < 0.3] = 0.0  # zero values are skipped: the result must not change
    ref_b = per_lor.back(y.reshape(-1), xs, xe)
    got_b = separable.back(y, xy1, xy2, z1, z2)
    assert got_b.shape == GRID.shape and got_b.dtype == np.float32
    assert np.abs(got_b - ref_b).max() <= _bound(np.float64(1.0), n_samples) * ref_b.max()


def test_degenerate_and_missing_pairs_give_zero():
    xy1 = np.array([[5.0, 7.0], [-200.0, 100.0], [-200.0, -200.0]], np.float32)
    xy2 = np.array([[5.0, 7.0], [200.0, 100.0], [200.0, -201.0]], np.float32)  # one point; 2 miss
    z = np.array([0.0, 10.0], np.float32)
    separable = SeparableProjector(LorProjector(GRID, device="cpu"))
    ones = np.ones(GRID.shape, np.float32)
    np.testing.assert_array_equal(separable.forward(ones, xy1, xy2, z, z), 0.0)
    np.testing.assert_array_equal(separable.back(np.ones((2, 3), np.float32), xy1, xy2, z, z), 0.0)


@pytest.mark.parametrize("case", list(CASES))
def test_adjoint(case):
    """<P x, y> = <x, Pᵀ y> to float32 accumulation (relative 1e-5: ~10^5 float32 terms summed
    with random signs in float64 here, each rounded once in the kernels)."""
    xy1, xy2, z1, z2 = CASES[case]()
    separable = SeparableProjector(LorProjector(GRID, device="cpu"))
    rng = np.random.default_rng(2)
    x = rng.normal(size=GRID.shape).astype(np.float32)
    y = rng.normal(size=(z1.size, xy1.shape[0])).astype(np.float32)
    lhs = float(np.vdot(separable.forward(x, xy1, xy2, z1, z2).astype(np.float64), y))
    rhs = float(np.vdot(x.astype(np.float64), separable.back(y, xy1, xy2, z1, z2)))
    scale = float(np.vdot(np.abs(separable.forward(np.abs(x), xy1, xy2, z1, z2)), np.abs(y)))
    assert abs(lhs - rhs) <= 1e-5 * scale


# ------------------------------------------------------------------------- analytic integrals
@pytest.mark.parametrize(("voxel", "size"), [(2.0, 32), (1.0, 64)], ids=["2mm", "1mm"])
def test_cylinder_chords(voxel, size):
    """A uniform cylinder (radius r = 24 mm along z) seen by a scanner's span-1 sinogram: a LOR at
    radial offset d from the axis, with transaxial length T and axial rise dz, crosses the curved
    wall inside the cylinder's length and has the chord 2 √(r² − d²) · √(T² + dz²) / T. Error
    limits as for the per-LOR projector (``_check_chords``)."""
    grid = ImageGrid(shape=(size,) * 3, voxel_size=voxel)
    r, length = 24.0, 50.0
    image = uniform_cylinder(grid, r, length, supersample=8)
    # Rings at |z| ≤ 15 mm: every point of a LOR, the wall crossings included, lies within
    # |z| ≤ 15 mm, inside the cylinder's ±25 mm with 3 mm to spare (as in the per-LOR test).
    scanner = PetScanner(n_rings=16, crystals_per_ring=96, radius_mm=60.0, ring_spacing_mm=2.0)
    layout = SinogramLayout(scanner, max_ring_difference=4)
    xy1, xy2, z1, z2 = _layout_tables(layout)
    u = (xy2 - xy1).astype(np.float64)
    d = np.abs(u[:, 0] * xy1[:, 1] - u[:, 1] * xy1[:, 0]) / np.linalg.norm(u, axis=1)
    keep = d <= 0.8 * r
    xy1, xy2 = xy1[keep], xy2[keep]
    transaxial = np.linalg.norm(xy2 - xy1, axis=1).astype(np.float64)
    dz = (z2 - z1).astype(np.float64)
    assert max(np.abs(z1).max(), np.abs(z2).max()) <= length / 2 - 3.0
    got = SeparableProjector(LorProjector(grid, device="cpu")).forward(image, xy1, xy2, z1, z2)
    chord = (
        2.0 * np.sqrt(r**2 - d[keep] ** 2)[None, :]
        * np.sqrt(transaxial[None, :] ** 2 + dz[:, None] ** 2) / transaxial[None, :]
    )  # fmt: skip
    _check_chords(got.ravel(), chord.ravel(), voxel)


# ------------------------------------------------------------------------------------ models
@pytest.fixture(scope="module")
def steep_models() -> tuple[PetSinogramModel, PetSinogramModel]:
    """The span-1 model of the steep scanner with μ-map and crystal efficiencies, twice: the
    separable path (default on the CPU) and the per-LOR path."""
    rng = np.random.default_rng(4)
    mu = np.full(GRID.shape, 0.0096, np.float32)
    efficiencies = rng.uniform(0.7, 1.3, STEEP.n_crystals)
    kwargs = dict(mu_map=mu, normalization=efficiencies, isotope="F-18", device="cpu")
    separable = PetSinogramModel(STEEP, GRID, **kwargs)
    per_lor = PetSinogramModel(STEEP, GRID, **kwargs)
    per_lor._separable = None
    assert separable._separable is not None
    return separable, per_lor


def test_sinogram_model_equals_the_per_lor_path(steep_models):
    separable, per_lor = steep_models
    rng = np.random.default_rng(5)
    x = rng.uniform(0.5, 1.5, GRID.shape).astype(np.float32)
    n_samples = max(GRID.shape) + 1
    subset = separable.subsets(4)[1]
    for s in (None, subset):
        ref = per_lor.forward(x, s)
        got = separable.forward(x, s)
        # The bound of the line integral times the LOR's factor, and the product's rounding.
        xs, xe, factor = per_lor._subset_geometry(per_lor._views(s))
        bound = factor * _bound(np.linalg.norm(xe - xs, axis=-1), n_samples)
        assert np.all(np.abs(got - ref) <= bound + 2 * EPS32 * np.abs(ref))
    y = rng.uniform(0.5, 1.5, separable.data_shape).astype(np.float32)
    ref_b, got_b = per_lor.back(y), separable.back(y)
    assert np.abs(got_b - ref_b).max() <= _bound(np.float64(1.0), n_samples) * ref_b.max()
    ref_s, got_s = per_lor.sensitivity(subset), separable.sensitivity(subset)
    assert np.abs(got_s - ref_s).max() <= _bound(np.float64(1.0), n_samples) * ref_s.max()


def test_tof_sinogram_model_uses_the_separable_sensitivity():
    """TOF projections keep the per-LOR TOF kernels; the (non-TOF) sensitivity is separable."""
    scanner = PetScanner(
        n_rings=6, crystals_per_ring=48, radius_mm=70.0, ring_spacing_mm=4.0,
        tof=Tof(fwhm_ps=400.0, n_bins=9, bin_width_ps=150.0),
    )  # fmt: skip
    separable = PetSinogramModel(scanner, GRID, device="cpu")
    per_lor = PetSinogramModel(scanner, GRID, device="cpu")
    per_lor._separable = None
    assert isinstance(separable._separable, SeparableProjector)
    subset = separable.subsets(3)[0]
    ref, got = per_lor.sensitivity(subset), separable.sensitivity(subset)
    assert np.abs(got - ref).max() <= _bound(np.float64(1.0), max(GRID.shape) + 1) * ref.max()
    x = np.random.default_rng(6).uniform(0.5, 1.5, GRID.shape).astype(np.float32)
    np.testing.assert_array_equal(separable.forward(x, subset), per_lor.forward(x, subset))


def test_separable_lor_model_with_normalisation_equals_the_explicit_one():
    layout = SinogramLayout(STEEP, max_ring_difference=12)
    xs, xe = layout.endpoints()
    xy1, xy2, z1, z2 = layout.separable_endpoints()
    rng = np.random.default_rng(7)
    norm = rng.uniform(0.5, 1.5, layout.shape).astype(np.float32)
    mu = np.full(GRID.shape, 0.0096, np.float32)
    kwargs = dict(mu_map=mu, normalization=norm, device="cpu")
    explicit = PetLorSinogramModel(xs, xe, GRID, **kwargs)
    separable = PetLorSinogramModel.separable(xy1, xy2, z1, z2, GRID, chunk_lors=4000, **kwargs)
    assert separable._separable is not None and explicit._separable is None
    # Attenuation factors exp(−∫μ): ∫μ ≤ 0.0096 × 160 mm, so float32 bounds carry over.
    np.testing.assert_allclose(separable.multiplicative, explicit.multiplicative, rtol=1e-5)
    x = rng.uniform(0.5, 1.5, GRID.shape).astype(np.float32)
    n_samples = max(GRID.shape) + 1
    ref, got = explicit.forward(x), separable.forward(x)
    bound = explicit.multiplicative * _bound(np.linalg.norm(xe - xs, axis=-1), n_samples)
    assert np.all(np.abs(got - ref) <= bound + 2 * EPS32 * np.abs(ref))
    y = rng.uniform(0.5, 1.5, layout.shape).astype(np.float32)
    ref_b, got_b = explicit.back(y), separable.back(y)
    assert np.abs(got_b - ref_b).max() <= _bound(np.float64(1.0), n_samples) * ref_b.max()
    subset = explicit.subsets(4)[3]
    ref_s, got_s = explicit.sensitivity(subset), separable.sensitivity(subset)
    assert np.abs(got_s - ref_s).max() <= _bound(np.float64(1.0), n_samples) * ref_s.max()


# ---------------------------------------------------------------------------------- bad input
def test_bad_input_is_named():
    with pytest.raises(GeometryError, match="non-TOF CPU"):
        SeparableProjector(LorProjector(GRID, tof=Tof(400.0, 9, 150.0), device="cpu"))
    with pytest.raises(GeometryError, match="LorProjector"):
        SeparableProjector(GRID)  # type: ignore[arg-type]
    separable = SeparableProjector(LorProjector(GRID, device="cpu"))
    xy = np.zeros((4, 2), np.float32)
    z = np.zeros(3, np.float32)
    ones = np.ones(GRID.shape, np.float32)
    with pytest.raises(InputError, match=r"\(n_pairs, 2\)"):
        separable.forward(ones, xy[:, :1], xy[:, :1], z, z)
    with pytest.raises(InputError, match=r"\(n_planes,\)"):
        separable.forward(ones, xy, xy, z, z[:2])
    with pytest.raises(InputError, match="image has shape"):
        separable.forward(ones[1:], xy, xy, z, z)
    with pytest.raises(InputError, match=r"expected \(3, 4\)"):
        separable.back(np.ones((4, 3), np.float32), xy, xy, z, z)


def test_listmode_sensitivity_separable_equals_per_lor():
    """The listmode model's geometric sensitivity through the separable projector (CPU) equals
    the per-LOR computation, with attenuation and crystal efficiencies."""
    scanner = recon.PetScanner(n_rings=4, crystals_per_ring=64, radius_mm=100.0,
                               ring_spacing_mm=4.0)  # fmt: skip
    grid = recon.ImageGrid((7, 28, 28), (2.0, 5.0, 5.0))
    z, y, x = grid.meshgrid_mm()
    mu = np.where(x**2 + (y / 0.8) ** 2 < 50.0**2, 0.0096, 0.0).astype(np.float32)
    eff = np.random.default_rng(3).uniform(0.8, 1.2, scanner.n_crystals)
    model = recon.PetListmodeModel(scanner, grid, mu_map=mu, normalization=eff, device="cpu")
    views = np.arange(model.layout.n_views)
    separable = model._sensitivity_separable(SeparableProjector(model.nontof_projector), views)
    per_lor = model._sensitivity_per_lor(views)
    np.testing.assert_allclose(separable, per_lor, rtol=2e-5, atol=2e-6 * float(per_lor.max()))


# ------------------------------------------------------------------------ axial mirror symmetry
def _mirror_case(n_rings: int, mu: str | None) -> recon.PetListmodeModel:
    """A scanner whose rings are symmetric about z = 0 and a grid centred on the isocentre; μ
    none, symmetric (an ellipse centred axially) or not (the same ellipse shifted along z)."""
    scanner = recon.PetScanner(n_rings=n_rings, crystals_per_ring=64, radius_mm=100.0,
                               ring_spacing_mm=4.0)  # fmt: skip
    grid = recon.ImageGrid((9, 28, 28), (2.0, 5.0, 5.0))
    z, y, x = grid.meshgrid_mm()
    inside = x**2 + (y / 0.8) ** 2 < 50.0**2
    mu_map = None
    if mu == "symmetric":
        mu_map = np.where(inside & (np.abs(z) < 7.0), 0.0096, 0.0).astype(np.float32)
    elif mu == "shifted":
        mu_map = np.where(inside & (np.abs(z - 2.0) < 7.0), 0.0096, 0.0).astype(np.float32)
    return recon.PetListmodeModel(scanner, grid, mu_map=mu_map, device="cpu")


@pytest.mark.parametrize("n_rings", [4, 5])
def test_axial_mirror_pairs_every_plane_with_its_mirror_image(n_rings):
    layout = SinogramLayout(
        PetScanner(n_rings=n_rings, crystals_per_ring=32, radius_mm=45.0, ring_spacing_mm=4.0)
    )
    _, _, z_a, z_b = layout.separable_endpoints(np.arange(1), xp=np)
    mirror = axial_mirror(z_a, z_b, ImageGrid((6, 8, 8), 3.0))
    assert mirror is not None
    np.testing.assert_array_equal(z_a[mirror.partner], -z_a[mirror.half])
    np.testing.assert_array_equal(z_b[mirror.partner], -z_b[mirror.half])
    # Every plane once: a half, its partner, or its own mirror (only the direct plane of the
    # middle ring, which an even number of rings does not have).
    everything = np.concatenate([mirror.half, mirror.partner, mirror.fixed])
    np.testing.assert_array_equal(np.sort(everything), np.arange(z_a.size))
    assert mirror.fixed.size == n_rings % 2
    # No mirror for a grid off-centre along z, nor for planes one of which lost its partner.
    assert axial_mirror(z_a, z_b, ImageGrid((6, 8, 8), 3.0, origin=(-7.0, -10.5, -10.5))) is None
    assert axial_mirror(z_a[1:], z_b[1:], ImageGrid((6, 8, 8), 3.0)) is None


@pytest.mark.parametrize("n_rings", [4, 5])
@pytest.mark.parametrize("mu", [None, "symmetric"])
def test_listmode_sensitivity_with_the_axial_mirror_equals_every_lor_projected(n_rings, mu):
    """Where the mirror is exact (centred grid, symmetric rings, μ its own z-flip, no crystal
    efficiencies) the model projects half the planes; the image equals the per-LOR back
    projection of every LOR (tolerance of the test above)."""
    model = _mirror_case(n_rings, mu)
    image = model._compute_geometric_sensitivity()
    assert model.sensitivity_symmetry == "axial mirror"
    per_lor = model._sensitivity_per_lor(np.arange(model.layout.n_views))
    np.testing.assert_allclose(image, per_lor, rtol=2e-5, atol=2e-6 * float(per_lor.max()))


@pytest.mark.parametrize("case", ["shifted mu", "efficiencies", "off-centre grid"])
def test_listmode_sensitivity_without_an_exact_mirror_projects_every_lor(case):
    model = _mirror_case(4, "shifted" if case == "shifted mu" else None)
    if case == "efficiencies":
        eff = np.random.default_rng(4).uniform(0.8, 1.2, model.scanner.n_crystals)
        model = recon.PetListmodeModel(model.scanner, model.grid, normalization=eff, device="cpu")
    elif case == "off-centre grid":
        grid = recon.ImageGrid((9, 28, 28), (2.0, 5.0, 5.0), origin=(-7.0, -67.5, -67.5))
        model = recon.PetListmodeModel(model.scanner, grid, device="cpu")
    assert model._sensitivity_mirror() is None
    image = model._compute_geometric_sensitivity()
    assert model.sensitivity_symmetry is None
    per_lor = model._sensitivity_per_lor(np.arange(model.layout.n_views))
    np.testing.assert_allclose(image, per_lor, rtol=2e-5, atol=2e-6 * float(per_lor.max()))


@pytest.mark.parametrize("mu", [None, "symmetric", "shifted"])
def test_sinogram_sensitivity_uses_the_mirror_only_with_equal_factors_on_mirrored_planes(mu):
    """The model compares the factors of mirrored planes bit for bit. Without a μ-map they are
    equal: half the planes are back projected (and the middle ring's direct plane), and the
    sensitivity equals the per-LOR one. A μ-map off-centre along z breaks the symmetry: every
    plane is back projected. A symmetric μ-map may give equal attenuation factors or differ in
    their last bits; the image is right either way."""
    lm = _mirror_case(5, mu)
    kwargs = dict(mu_map=lm._mu, device="cpu")
    model = PetSinogramModel(lm.scanner, lm.grid, **kwargs)
    per_lor = PetSinogramModel(lm.scanner, lm.grid, **kwargs)
    per_lor._separable = None
    planes = []
    back = model._separable.back

    def counted(values, xy_a, xy_b, z_a, z_b):
        planes.append(z_a.size)
        return back(values, xy_a, xy_b, z_a, z_b)

    model._separable.back = counted
    subset = model.subsets(3)[2]
    got, ref = model.sensitivity(subset), per_lor.sensitivity(subset)
    n_planes = model.layout.shape[0]
    full, mirrored = [n_planes], [(n_planes - 1) // 2, 1]
    expected = {None: [mirrored], "shifted": [full], "symmetric": [full, mirrored]}[mu]
    assert planes in expected
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-6 * float(ref.max()))
