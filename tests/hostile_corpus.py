"""A sandbox of valid inputs and hostile variants of them, for the command-line corpus tests.

:func:`build_sandbox` writes small but valid files of every kind the commands read (DICOM NM with
and without scatter windows, a CT series, a mu-map, recon listmode, a STIR sinogram with companion
files, an Interfile image, a quantification study) and, under ``bad/``, the mistakes and attacks
users make with them: truncated, empty and random files, pickles, headers declaring petabytes,
wrong types in TOML and JSON, impossible scanners. Every hostile file is derived from a fixed seed,
so the corpus is the same on every run.

:data:`CASES` lists the command lines run against the sandbox, each with the fragment its one-line
error must contain; ``{s}`` stands for the sandbox folder and ``{o}`` for a fresh output folder
name inside it.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

import recon
from recon.io import layout_to_stir_sinogram, write_interfile
from recon.io.listmode_file import write_listmode
from recon.simulate.dicom_study import ct_series, nm_tomo_dataset, save, write_series

__all__ = ["CASES", "build_sandbox"]

SEED = 20261206
N_VIEWS, N_ROWS, N_COLS, PIXEL = 12, 8, 16, 8.0


def _nm(path: Path, windows: int, rng: np.random.Generator, frame_of_reference: str) -> None:
    frames = rng.poisson(40.0, (windows, 1, N_VIEWS, N_ROWS, N_COLS)).astype(np.uint16)
    limits = (("EM", 126.0, 154.0), ("LOW", 120.0, 126.0), ("UP", 154.0, 160.0))[:windows]
    ds = nm_tomo_dataset(
        frames, angular_step_deg=360.0 / N_VIEWS, pixel_spacing=(PIXEL, PIXEL),
        windows=limits, frame_of_reference_uid=frame_of_reference,
    )  # fmt: skip
    save(ds, path)


def _ct(folder: Path, frame_of_reference: str) -> None:
    folder.mkdir()
    hu = np.full((6, 24, 24), -1000.0)
    hu[:, 4:20, 4:20] = 0.0
    slices = ct_series(
        hu, pixel_spacing=(6.0, 6.0), first_position=(-69.0, -69.0, -30.0), slice_spacing=12.0,
        frame_of_reference_uid=frame_of_reference,
    )  # fmt: skip
    write_series(slices, folder)


def _listmode(path: Path, rng: np.random.Generator) -> recon.PetScanner:
    scanner = recon.PetScanner.preset("small")
    n = 2000
    a = rng.integers(0, scanner.crystals_per_ring, n)
    b = (a + scanner.crystals_per_ring // 2 + rng.integers(-10, 11, n)) % scanner.crystals_per_ring
    ring_a = rng.integers(0, scanner.n_rings, n)
    ring_b = rng.integers(0, scanner.n_rings, n)
    events = recon.ListmodeEvents(
        crystal_a=ring_a * scanner.crystals_per_ring + a,
        crystal_b=ring_b * scanner.crystals_per_ring + b,
        tof_bin=rng.integers(-3, 4, n),
        time_ms=np.sort(rng.uniform(0.0, 60_000.0, n)),
        prompt=rng.random(n) < 0.9,
    )
    write_listmode(path, events, scanner, isotope="F-18")
    return scanner


def _sinograms(folder: Path, rng: np.random.Generator) -> None:
    scanner = recon.PetScanner(n_rings=2, crystals_per_ring=64, radius_mm=100.0,
                               ring_spacing_mm=8.0)  # fmt: skip
    layout = recon.SinogramLayout(scanner, n_radial=21)
    counts = rng.poisson(5.0, layout.shape).astype(np.float32)
    write_interfile(
        folder / "scan.hs", layout_to_stir_sinogram(counts, layout, frame_duration_s=10.0)
    )
    write_interfile(folder / "mult.hs", layout_to_stir_sinogram(np.ones(layout.shape), layout))
    write_interfile(folder / "add.hs", layout_to_stir_sinogram(np.full(layout.shape, 0.1), layout))
    write_interfile(folder / "neg.hs", layout_to_stir_sinogram(np.full(layout.shape, -1.0), layout))
    small = recon.SinogramLayout(scanner, n_radial=11)
    write_interfile(folder / "other.hs", layout_to_stir_sinogram(np.ones(small.shape), small))


def _quant(folder: Path) -> None:
    grid = recon.ImageGrid((8, 16, 16), 5.0)
    for name, value in (("tp0.npy", 1000.0), ("tp1.npy", 500.0)):
        np.save(folder / name, np.full(grid.shape, value, np.float32))
    (folder / "study.toml").write_text(
        '[study]\nisotope = "In-111"\ninjection_time = 2026-03-01T09:00:00\n'
        "injected_activity_bq = 185e6\n\n"
        '[[timepoints]]\nimage = "tp0.npy"\nvoxel_mm = 5\nhours_after_injection = 1\n\n'
        '[[timepoints]]\nimage = "tp1.npy"\nvoxel_mm = 5\nhours_after_injection = 24\n\n'
        '[[vois]]\nname = "lesion"\nsphere = { centre_mm = [0, 0, 0], diameter_mm = 10 }\n',
        encoding="utf-8",
    )


def _npy_header_only(path: Path, shape: tuple[int, ...], descr: str = "<f4") -> None:
    with path.open("wb") as handle:
        header = {"descr": descr, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 64)


def _npz(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _listmode_variants(bad: Path, good: Path, rng: np.random.Generator) -> None:
    with zipfile.ZipFile(good) as archive:
        members = {n[:-4]: archive.read(n) for n in archive.namelist()}
    data = good.read_bytes()
    for k, fraction in enumerate(rng.uniform(0.05, 0.95, 4)):
        (bad / f"lm_trunc{k}.npz").write_bytes(data[: int(len(data) * fraction)])

    def variant(name: str, **changes: bytes | None) -> None:
        chosen = dict(members)
        for key, value in changes.items():
            if value is None:
                chosen.pop(key)
            else:
                chosen[key] = value
        _npz(bad / f"{name}.npz", chosen)

    n = np.load(good)["crystal_a"].size
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<i4", "fortran_order": False, "shape": (10**13,)}
    )
    variant("lm_pickle", crystal_a=_npy_bytes(np.array([{"a": 1}] * n, dtype=object)))
    variant("lm_huge", crystal_a=header.getvalue() + b"\0" * 64)
    variant("lm_scanner_int", scanner=_npy_bytes(np.array(5)))
    variant("lm_scanner_list", scanner=_npy_bytes(np.array('["small"]')))
    variant("lm_scanner_text", scanner=_npy_bytes(np.array("not json")))
    variant("lm_version_text", version=_npy_bytes(np.array("one")))
    variant("lm_version_2", version=_npy_bytes(np.array(2)))
    variant("lm_format", format=_npy_bytes(np.array("other-format")))
    variant("lm_missing", crystal_a=None)
    variant("lm_float_ids", crystal_a=_npy_bytes(np.zeros(n, np.float64)))
    variant("lm_short", crystal_b=_npy_bytes(np.zeros(n - 1, np.int32)))
    variant("lm_ids_range", crystal_a=_npy_bytes(np.full(n, 10**6, np.int32)))
    variant("lm_time_order", time_ms=_npy_bytes(np.linspace(1000.0, 0.0, n)))
    millions = {
        "n_rings": 4000, "crystals_per_ring": 1_000_000, "radius_mm": 400.0,
        "ring_spacing_mm": 4.0, "crystal_depth_mm": 0.0, "tof": None, "name": "x",
    }  # fmt: skip
    variant("lm_million_crystals", scanner=_npy_bytes(np.array(json.dumps(millions))))
    wrong = dict(millions, n_rings="eight", crystals_per_ring=64)
    variant("lm_scanner_types", scanner=_npy_bytes(np.array(json.dumps(wrong))))


def build_sandbox(root: Path) -> Path:
    """Write the valid inputs and the hostile variants under ``root``; returns ``root``."""
    rng = np.random.default_rng(SEED)
    frame_of_reference = "1.2.826.0.1.3680043.8.498.20261206"
    _nm(root / "nm.dcm", 3, rng, frame_of_reference)
    _nm(root / "nm1.dcm", 1, rng, frame_of_reference)
    _ct(root / "ct", frame_of_reference)
    np.save(root / "mu.npy", np.full((N_ROWS, N_COLS, N_COLS), 0.015, np.float32))
    _listmode(root / "scan.npz", rng)
    _sinograms(root, rng)
    grid = recon.ImageGrid((4, 8, 8), 4.0)
    write_interfile(root / "image.hv", recon.Image(np.ones(grid.shape, np.float32), grid))
    _quant(root)
    (root / "full").mkdir()
    (root / "full" / "notes.txt").write_text("a user's file\n")
    (root / "mine").mkdir()
    (root / "mine" / "image.npy").write_bytes(b"a user's file named like an output\n")

    bad = root / "bad"
    bad.mkdir()
    nm = (root / "nm.dcm").read_bytes()
    for k, fraction in enumerate(rng.uniform(0.02, 0.98, 4)):
        (bad / f"nm_trunc{k}.dcm").write_bytes(nm[: int(len(nm) * fraction)])
    for k in range(2):
        (bad / f"garbage{k}.dcm").write_bytes(rng.bytes(4096))
    (bad / "empty.dcm").write_bytes(b"")
    (bad / "empty.npz").write_bytes(b"")
    (bad / "empty.hs").write_bytes(b"")
    (bad / "empty.toml").write_bytes(b"")
    (bad / "garbage.npz").write_bytes(rng.bytes(2048))
    (bad / "garbage.hs").write_bytes(rng.bytes(2048))
    (bad / "garbage.hv").write_bytes(rng.bytes(2048))
    (bad / "garbage.npy").write_bytes(rng.bytes(2048))
    (bad / "garbage.json").write_bytes(rng.bytes(512))
    (bad / "nodicom").mkdir()
    (bad / "nodicom" / "readme.txt").write_text("no DICOM here\n")
    _listmode_variants(bad, root / "scan.npz", rng)

    # Interfile: the data file missing, truncated, or a header declaring a huge matrix.
    header = (root / "scan.hs").read_text()
    data_name = next(
        line.split(":=")[1].strip() for line in header.splitlines() if "name of data file" in line
    )
    (bad / "nodata.hs").write_text(header.replace(data_name, "missing.s"))
    raw = (root / data_name).read_bytes()
    (bad / "short.s").write_bytes(raw[: len(raw) // 3])
    (bad / "short.hs").write_text(header.replace(data_name, "short.s"))
    huge = header.replace("matrix size [1] := 21", "matrix size [1] := 2100000000")
    (bad / "huge.s").write_bytes(raw)
    (bad / "huge.hs").write_text(huge.replace(data_name, "huge.s"))
    image_header = (root / "image.hv").read_text()
    image_data = next(
        line.split(":=")[1].strip()
        for line in image_header.splitlines()
        if "name of data file" in line
    )
    (bad / "image_short.v").write_bytes((root / image_data).read_bytes()[:100])
    (bad / "image_short.hv").write_text(image_header.replace(image_data, "image_short.v"))

    # mu-maps (the default grid of nm.dcm is 8 x 16 x 16).
    shape = (N_ROWS, N_COLS, N_COLS)
    np.save(bad / "mu_shape.npy", np.zeros((3, 3, 3), np.float32))
    np.save(bad / "mu_complex.npy", np.zeros(shape, np.complex64))
    np.save(bad / "mu_bool.npy", np.zeros(shape, bool))
    np.save(bad / "mu_object.npy", np.empty(shape, object), allow_pickle=True)
    np.save(bad / "mu_nan.npy", np.full(shape, np.nan, np.float32))
    np.save(bad / "mu_negative.npy", np.full(shape, -0.01, np.float32))
    np.save(bad / "mu_per_cm.npy", np.full(shape, 0.15 * 10, np.float32))
    _npy_header_only(bad / "mu_huge.npy", (10**5, 10**5, 10**5))
    _npy_header_only(bad / "mu_declared.npy", shape)  # right shape, data missing
    (bad / "mu.txt").write_text("0.015\n")
    mu = (root / "mu.npy").read_bytes()
    (bad / "mu_trunc.npy").write_bytes(mu[: len(mu) // 2])

    # Scanner descriptions for --scanner.
    def scanner_file(name: str, fields: object) -> None:
        (bad / name).write_text(json.dumps(fields))

    small = {"n_rings": 8, "crystals_per_ring": 128, "radius_mm": 150.0, "ring_spacing_mm": 8.0}
    scanner_file("scanner_list.json", [1, 2, 3])
    scanner_file("scanner_types.json", dict(small, n_rings="eight"))
    scanner_file("scanner_unknown.json", dict(small, colour="blue"))
    scanner_file("scanner_missing.json", {"n_rings": 8})
    scanner_file("scanner_odd.json", dict(small, crystals_per_ring=127))
    scanner_file("scanner_millions.json", dict(small, n_rings=5000, crystals_per_ring=1_000_000))
    scanner_file("scanner_tof.json", dict(small, tof={"fwhm_ps": "fast"}))
    scanner_file("scanner_negative.json", dict(small, radius_mm=-1.0))
    (bad / "scanner_big.json").write_text(" " * 100_000 + "{}")

    # TOML files for --config and recon quant.
    tomls = {
        "iterations_text": '[spect]\niterations = "four"\n',
        "iterations_bool": "[spect]\niterations = true\n",
        "iterations_float": "[spect]\niterations = 1.5\n",
        "iterations_zero": "[spect]\niterations = 0\n",
        "subsets_negative": "[spect]\nsubsets = -2\n",
        "mu_list": "[spect]\nmu = [1, 2]\n",
        "nopsf_text": '[spect]\nno-psf = "false"\n',
        "unknown_key": "[spect]\niteratons = 3\n",
        "output_key": '[spect]\noutput = "somewhere"\n',
        "not_table": "spect = 5\n",
        "no_table": "[pet]\niterations = 2\n",
        "syntax": "[spect\niterations = 2\n",
        "sensitivity_text": '[spect]\nsensitivity = "90"\n',
        "postfilter_negative": "[spect]\npost-filter = -1.0\n",
        "device_tpu": '[spect]\ndevice = "tpu"\n',
        "scatter_yes": '[spect]\nscatter = "yes"\n',
        "ct_number": "[spect]\nct = 5\n",
        "reftime_datetime": "[spect]\nref-time = 2024-01-01T00:00:00\n",
        "mu_missing": '[spect]\nmu = "no_such_mu.npy"\n',
        "shape_text": '[pet]\nshape = "big"\n',
        "shape_zero": "[pet]\nshape = [0, 1, 1]\n",
        "shape_two": "[pet]\nshape = [1, 2]\n",
        "voxel_negative": "[pet]\nvoxel-mm = [1.0, -1.0, 1.0]\n",
        "frames_number": "[pet]\nframes = 6\n",
        "calibration_zero": "[pet]\ncalibration = 0.0\n",
        "notoml_binary": None,
    }
    for name, text in tomls.items():
        path = bad / f"{name}.toml"
        if text is None:
            path.write_bytes(rng.bytes(300))
        else:
            path.write_text(text, encoding="utf-8")
    study = (root / "study.toml").read_text()
    for name, (old, new) in {
        "study_isotope": ('isotope = "In-111"', 'isotope = "Unobtainium-1"'),
        "study_activity_text": ("injected_activity_bq = 185e6", 'injected_activity_bq = "lots"'),
        "study_unknown": ("[study]", "[study]\ncolour = 1"),
        "study_image_missing": ('image = "tp1.npy"', 'image = "tp9.npy"'),
        "study_vois_number": ('[[vois]]\nname = "lesion"', "vois = 5\n[[vois2]]\nname = 'x'"),
        "study_voxel_text": ("voxel_mm = 5", 'voxel_mm = "five"'),
        "study_hours_negative": ("hours_after_injection = 24", "hours_after_injection = -24"),
        "study_sphere_outside": ("centre_mm = [0, 0, 0]", "centre_mm = [900, 0, 0]"),
    }.items():
        text = study.replace(old, new, 1).replace('"tp', '"../tp')
        (bad / f"{name}.toml").write_text(text, encoding="utf-8")
    _batch_manifests(bad)
    return root


def _job(name: str, kind: str = "spect", source: str = "../nm.dcm", extra: str = "") -> str:
    return f'[[jobs]]\nname = "{name}"\nkind = "{kind}"\ninput = "{source}"\n{extra}\n'


def _batch_manifests(bad: Path) -> None:
    """``recon batch`` manifests (in ``bad/``, so inputs are ``../nm.dcm`` and so on)."""
    spect = _job("a")
    manifests = {
        "batch_ok": spect,
        "batch_no_jobs": "[batch]\nworkers = 2\n",
        "batch_jobs_not_tables": "jobs = [1, 2]\n",
        "batch_table_unknown": "[spectt]\niterations = 2\n" + spect,
        "batch_kind_unknown": _job("a", kind="spectt"),
        "batch_kind_missing": '[[jobs]]\nname = "a"\ninput = "../nm.dcm"\n',
        "batch_name_missing": '[[jobs]]\nkind = "spect"\ninput = "../nm.dcm"\n',
        "batch_name_path": _job("../a"),
        "batch_name_duplicate": _job("a", extra='output = "x"') + _job("a", extra='output = "y"'),
        "batch_input_missing": _job("a", source="../no_such.dcm"),
        "batch_input_number": '[[jobs]]\nname = "a"\nkind = "spect"\ninput = 5\n',
        "batch_option_text": _job("a", extra='iterations = "four"'),
        "batch_option_bool": _job("a", extra="iterations = true"),
        "batch_option_range": _job("a", extra="subsets = 0"),
        "batch_option_unknown": _job("a", extra="iteratons = 4"),
        "batch_option_exclusive": _job("a", extra='ct = "../ct"\nmu = "../mu.npy"'),
        "batch_option_path_missing": _job("a", extra='mu = "../no_such_mu.npy"'),
        "batch_defaults_text": "[spect]\nsubsets = \"eight\"\n" + spect,
        "batch_defaults_not_table": "spect = 5\n" + spect,
        "batch_output_twice": _job("a", extra='output = "same"')
        + _job("b", extra='output = "same"'),
        "batch_output_nested": _job("a", extra='output = "p"') + _job("b", extra='output = "p/q"'),
        "batch_output_escapes": _job("a", extra='output = "../../elsewhere"'),
        "batch_output_absolute": _job("a", extra='output = "/tmp/elsewhere"'),
        "batch_output_logs": _job("a", extra='output = "logs"'),
        "batch_output_is_input": _job("a", extra='ct = "../ct"\noutput = "ct"'),
        "batch_after_unknown": spect + _job("b", extra='after = ["aa"]'),
        "batch_after_self": _job("a", extra='after = ["a"]'),
        "batch_after_text": _job("a", extra='after = "b"'),
        "batch_cycle": _job("a", extra='after = ["c"]') + _job("b", extra='after = ["a"]')
        + _job("c", extra='after = ["b"]'),
        "batch_split_spect": _job("a", extra="split-frames = true"),
        "batch_split_no_frames": _job("p", kind="pet", source="../scan.npz",
                                      extra="split-frames = true"),
        "batch_split_text": _job("p", kind="pet", source="../scan.npz",
                                 extra='frames = "2x5"\nsplit-frames = "yes"'),
        "batch_frames_bad": _job("p", kind="pet", source="../scan.npz",
                                 extra='frames = "lots"\nsplit-frames = true'),
        "batch_quant_plots_text": _job("q", kind="quant", source="../study.toml",
                                       extra='no-plots = "yes"'),
        "batch_quant_input_list": '[[jobs]]\nname = "q"\nkind = "quant"\ninput = [1]\n',
        "batch_batch_unknown": "[batch]\nwrkers = 2\n" + spect,
        "batch_batch_workers_text": '[batch]\nworkers = "two"\n' + spect,
    }  # fmt: skip
    for name, text in manifests.items():
        (bad / f"{name}.toml").write_text(text, encoding="utf-8")


def _case(name: str, argv: str, fragment: str, status: int = 2) -> tuple[str, str, str, int]:
    return (name, argv, fragment, status)


# (id, command line, a fragment the error must contain (case-insensitive), exit status)
CASES: list[tuple[str, str, str, int]] = [
    # ---------------------------------------------------------------- recon info
    _case("info-missing", "info {s}/no_such.dcm", "no such file"),
    _case("info-empty-dcm", "info {s}/bad/empty.dcm", "empty.dcm"),
    *[_case(f"info-garbage{k}", f"info {{s}}/bad/garbage{k}.dcm", "garbage") for k in range(2)],
    *[_case(f"info-nm-trunc{k}", f"info {{s}}/bad/nm_trunc{k}.dcm", "nm_trunc") for k in range(4)],
    _case("info-stir-data-file", "info {s}/scan.s", "data file"),
    _case("info-image-data-file", "info {s}/image.v", "data file"),
    _case("info-nodata", "info {s}/bad/nodata.hs", "missing.s"),
    _case("info-short-data", "info {s}/bad/short.hs", "short"),
    _case("info-huge-declared", "info {s}/bad/huge.hs", "huge"),
    _case("info-empty-hs", "info {s}/bad/empty.hs", "empty.hs"),
    _case("info-garbage-hs", "info {s}/bad/garbage.hs", "garbage.hs"),
    _case("info-garbage-hv", "info {s}/bad/garbage.hv", "garbage.hv"),
    _case("info-image-short", "info {s}/bad/image_short.hv", "image_short"),
    _case("info-empty-npz", "info {s}/bad/empty.npz", "listmode"),
    _case("info-garbage-npz", "info {s}/bad/garbage.npz", "listmode"),
    _case("info-nodicom-folder", "info {s}/bad/nodicom", "nodicom"),
    *[
        _case(f"info-{name}", f"info {{s}}/bad/{name}.npz", fragment)
        for name, fragment in (
            ("lm_trunc0", "lm_trunc0"),
            ("lm_trunc1", "lm_trunc1"),
            ("lm_trunc2", "lm_trunc2"),
            ("lm_trunc3", "lm_trunc3"),
            ("lm_pickle", "pickle"),
            ("lm_huge", "crystal_a"),
            ("lm_scanner_int", "scanner"),
            ("lm_scanner_list", "scanner"),
            ("lm_scanner_text", "scanner"),
            ("lm_version_text", "version"),
            ("lm_version_2", "version"),
            ("lm_format", "format"),
            ("lm_missing", "crystal_a"),
            ("lm_float_ids", "crystal_a"),
            ("lm_short", "length"),
            ("lm_ids_range", "crystal"),
            ("lm_time_order", "time"),
            ("lm_million_crystals", "crystal"),
            ("lm_scanner_types", "n_rings"),
        )
    ],  # fmt: skip
    # ---------------------------------------------------------------- recon spect: inputs
    _case("spect-missing", "spect {s}/no_such.dcm -o {o}", "no such file"),
    _case("spect-folder-input", "spect {s}/ct -o {o}", "not a file"),
    _case("spect-empty", "spect {s}/bad/empty.dcm -o {o}", "empty.dcm"),
    *[
        _case(f"spect-garbage{k}", f"spect {{s}}/bad/garbage{k}.dcm -o {{o}}", "garbage")
        for k in range(2)
    ],  # fmt: skip
    *[
        _case(f"spect-trunc{k}", f"spect {{s}}/bad/nm_trunc{k}.dcm -o {{o}}", "nm_trunc")
        for k in range(4)
    ],  # fmt: skip
    _case("spect-ct-missing", "spect {s}/nm.dcm --ct {s}/no_ct -o {o}", "no_ct"),
    _case("spect-ct-empty", "spect {s}/nm.dcm --ct {s}/bad/nodicom -o {o}", "ct"),
    _case("spect-ct-and-mu", "spect {s}/nm.dcm --ct {s}/ct --mu {s}/mu.npy -o {o}", "together"),
    *[
        _case(f"spect-{name}", f"spect {{s}}/nm.dcm --mu {{s}}/bad/{name} -o {{o}}", fragment)
        for name, fragment in (
            ("mu_shape.npy", "shape"),
            ("mu_complex.npy", "complex"),
            ("mu_bool.npy", "bool"),
            ("mu_object.npy", "pickle"),
            ("mu_nan.npy", "nan"),
            ("mu_negative.npy", "negative"),
            ("mu_per_cm.npy", "1/cm"),
            ("mu_huge.npy", "shape"),
            ("mu_declared.npy", "truncated"),
            ("mu.txt", "format"),
            ("mu_trunc.npy", "mu_trunc"),
            ("garbage.npy", "garbage"),
            ("no_such_mu.npy", "no_such_mu"),
        )
    ],  # fmt: skip
    _case("spect-mu-folder", "spect {s}/nm.dcm --mu {s}/ct -o {o}", "ct"),
    # ---------------------------------------------------------------- recon spect: options
    *[
        _case(f"spect-opt-{k}", f"spect {{s}}/nm.dcm -o {{o}} {option}", fragment)
        for k, (option, fragment) in enumerate(
            (
                ("--iterations 0", "iterations"),
                ("--iterations -1", "iterations"),
                ("--iterations four", "iterations"),
                ("--iterations 1.5", "iterations"),
                ("--iterations 99999999", "iterations"),
                ("--subsets 0", "subsets"),
                ("--subsets 1000", "subsets"),
                ("--post-filter -1", "post-filter"),
                ("--post-filter nan", "post-filter"),
                ("--sensitivity 0", "sensitivity"),
                ("--sensitivity -5", "sensitivity"),
                ("--sensitivity inf", "sensitivity"),
                ("--collimator BOGUS", "collimator"),
                ("--isotope Unobtainium", "isotope"),
                ("--ref-time yesterday", "ref-time"),
                ("--mu-units 1/m", "mu-units"),
                ("--device tpu", "device"),
                ("--scatter maybe", "scatter"),
                ("--unknown-option", "unrecognized"),
                ("--iterations", "iterations"),
                ("--photopeaks BOGUS", "not a photopeak window"),
                ("--photopeaks LOW", "not a photopeak window"),
                ("--photopeaks EM,EM", "named twice"),
                ("--photopeaks ,", "not a photopeak window"),
                ("--mu-energy 5", "mu-energy"),
                ("--mu-energy 2000", "mu-energy"),
                ("--mu-energy nan", "mu-energy"),
                ("--mu-energy 140", "pass --mu too"),
                ("--window-sensitivities 90,80", "window-sensitivities"),
                ("--window-sensitivities 90,-1", "window-sensitivities"),
                ("--window-sensitivities abc", "window-sensitivities"),
                ("--sensitivity 90 --window-sensitivities 90", "window-sensitivities"),
                ("--isotopes Tc-99m,In-111", "no energy window holds a photopeak line of In-111"),
                ("--isotopes Tc-99m,Tc99m", "named twice"),
                ("--isotopes Tc-99m,Unobtainium", "Unobtainium"),
                ("--isotopes Tc-99m", "two or more"),
                ("--isotopes Tc-99m,In-111 --isotope Tc-99m", "isotope"),
                ("--isotopes Tc-99m,In-111 --photopeaks all", "photopeaks"),
                ("--isotopes Tc-99m,In-111 --algorithm bsrem", "needs --beta"),
            )
        )
    ],  # fmt: skip
    _case("spect-tew-one-window", "spect {s}/nm1.dcm --scatter tew -o {o}", "scatter window"),
    _case("spect-no-output", "spect {s}/nm.dcm", "-o"),
    *[
        _case(
            f"spect-config-{name}",
            f"spect {{s}}/nm.dcm -o {{o}} --config {{s}}/bad/{name}.toml",
            fragment,
        )
        for name, fragment in (
            ("iterations_text", "iterations"),
            ("iterations_bool", "iterations"),
            ("iterations_float", "iterations"),
            ("iterations_zero", "iterations"),
            ("subsets_negative", "subsets"),
            ("mu_list", "mu"),
            ("nopsf_text", "no-psf"),
            ("unknown_key", "iteratons"),
            ("output_key", "output"),
            ("not_table", "table"),
            ("no_table", "[spect]"),
            ("syntax", "toml"),
            ("sensitivity_text", "sensitivity"),
            ("postfilter_negative", "post-filter"),
            ("device_tpu", "device"),
            ("scatter_yes", "scatter"),
            ("ct_number", "ct"),
            ("reftime_datetime", "ref-time"),
            ("mu_missing", "no_such_mu"),
            ("notoml_binary", "toml"),
            ("empty", "[spect]"),
            ("no_such_file", "not found"),
        )
    ],  # fmt: skip
    # ---------------------------------------------------------------- output folders
    _case("out-is-input", "spect {s}/nm.dcm -o {s}/nm.dcm", "input"),
    _case("out-contains-input", "spect {s}/nm.dcm -o {s}", "contains the input"),
    _case("out-is-ct-folder", "spect {s}/nm.dcm --ct {s}/ct -o {s}/ct", "input"),
    _case("out-inside-ct-folder", "spect {s}/nm.dcm --ct {s}/ct -o {s}/ct/out", "inside"),
    _case("out-not-empty", "spect {s}/nm.dcm -o {s}/full", "not empty"),
    _case("out-foreign-file", "spect {s}/nm.dcm -o {s}/mine --overwrite", "not written by"),
    _case("out-is-a-file", "spect {s}/nm.dcm -o {s}/image.hv", "not a folder"),
    _case("out-parent-is-a-file", "spect {s}/nm.dcm -o {s}/mu.npy/out", "not a folder"),
    _case("out-pet-contains-input", "pet {s}/scan.npz -o {s}", "contains the input"),
    _case("out-quant-is-input", "quant {s}/study.toml -o {s}/tp0.npy", "input"),
    # ---------------------------------------------------------------- recon pet
    _case("pet-missing", "pet {s}/no_such.npz -o {o}", "no such file"),
    *[
        _case(f"pet-{name}", f"pet {{s}}/bad/{name}.npz -o {{o}}", fragment)
        for name, fragment in (
            ("empty", "listmode"),
            ("garbage", "listmode"),
            ("lm_trunc0", "lm_trunc0"),
            ("lm_trunc2", "lm_trunc2"),
            ("lm_pickle", "pickle"),
            ("lm_huge", "crystal_a"),
            ("lm_scanner_int", "scanner"),
            ("lm_version_text", "version"),
            ("lm_million_crystals", "crystal"),
            ("lm_scanner_types", "n_rings"),
        )
    ],  # fmt: skip
    *[
        _case(f"pet-opt-{k}", f"pet {{s}}/scan.npz -o {{o}} {option}", fragment)
        for k, (option, fragment) in enumerate(
            (
                ("--shape 100000 100000 100000", "shape"),
                ("--shape 4096 4096 4096", "memory"),
                ("--shape 0 8 8", "shape"),
                ("--shape 8 8", "shape"),
                ("--voxel-mm 0 4 4", "voxel"),
                ("--voxel-mm 4 -4 4", "voxel"),
                ("--frames 6x300", "data end"),
                ("--frames abc", "frames"),
                ("--frames 10:5", "frames"),
                ("--frames -5:10", "frames"),
                ("--frames 0:10,100:200", "data end"),
                ("--calibration -1", "calibration"),
                ("--iterations 0", "iterations"),
                ("--subsets 0", "subsets"),
                ("--isotope Xx-1", "isotope"),
                ("--scanner nonesuch", "scanner"),
                ("--scanner {s}/no_such.json", "no such file"),
                ("--multiplicative {s}/mult.hs", "sinograms"),
                ("--mu {s}/bad/mu_shape.npy", "shape"),
            )
        )
    ],  # fmt: skip
    *[
        _case(
            f"pet-scanner-{name}",
            f"pet {{s}}/scan.npz -o {{o}} --scanner {{s}}/bad/{name}.json",
            fragment,
        )
        for name, fragment in (
            ("garbage", "json"),
            ("scanner_list", "object"),
            ("scanner_types", "n_rings"),
            ("scanner_unknown", "colour"),
            ("scanner_missing", "missing scanner fields"),
            ("scanner_odd", "even"),
            ("scanner_millions", "crystal"),
            ("scanner_tof", "tof"),
            ("scanner_negative", "radius"),
            ("scanner_big", "bytes"),
        )
    ],  # fmt: skip
    *[
        _case(
            f"pet-config-{name}",
            f"pet {{s}}/scan.npz -o {{o}} --config {{s}}/bad/{name}.toml",
            fragment,
        )
        for name, fragment in (
            ("shape_text", "shape"),
            ("shape_zero", "shape"),
            ("shape_two", "shape"),
            ("voxel_negative", "voxel-mm"),
            ("frames_number", "frames"),
            ("calibration_zero", "calibration"),
            ("iterations_text", "[pet]"),
        )
    ],  # fmt: skip
    _case("pet-sino-frames", "pet {s}/scan.hs -o {o} --frames 2x5", "listmode"),
    _case("pet-sino-mult-shape", "pet {s}/scan.hs -o {o} --multiplicative {s}/other.hs", "shape"),
    _case("pet-sino-add-negative", "pet {s}/scan.hs -o {o} --additive {s}/neg.hs", "negative"),
    _case("pet-sino-short", "pet {s}/bad/short.hs -o {o}", "short"),
    _case("pet-sino-huge", "pet {s}/bad/huge.hs -o {o}", "huge"),
    _case("pet-sino-nodata", "pet {s}/bad/nodata.hs -o {o}", "missing.s"),
    _case("pet-sino-subsets", "pet {s}/scan.hs -o {o} --subsets 1000", "subsets"),
    _case("pet-sino-mu-shape", "pet {s}/scan.hs -o {o} --mu {s}/bad/mu_shape.npy", "shape"),
    _case("pet-sino-psf-scanner", "pet {s}/scan.hs -o {o} --psf scanner", "scanner description"),
    _case("pet-psf-huge", "pet {s}/scan.npz -o {o} --psf-mm 1e9", "psf-mm"),
    _case("pet-psf-both", "pet {s}/scan.npz -o {o} --psf-mm 5 --psf scanner", "not both"),
    _case("pet-psf-name", "pet {s}/scan.npz -o {o} --psf gaussian", "psf"),
    _case("pet-map-no-beta", "pet {s}/scan.npz -o {o} --algorithm bsrem", "needs --beta"),
    _case("pet-map-beta-nan", "pet {s}/scan.hs -o {o} --algorithm bsrem --beta nan", "beta"),
    _case("pet-scatter-no-mu", "pet {s}/scan.npz -o {o} --scatter sss", "--mu"),
    _case("pet-scatter-name", "pet {s}/scan.npz -o {o} --scatter tew", "scatter"),
    _case("pet-scatter-rounds-0", "pet {s}/scan.npz -o {o} --scatter-rounds 0", "scatter-rounds"),
    _case(
        "pet-radial-even", "pet {s}/scan.npz -o {o} --radial-bins 10", "--radial-bins must be odd"
    ),
    _case("pet-sino-norm", "pet {s}/scan.hs -o {o} --norm {s}/mu.npy", "listmode"),
    _case("pet-norm-not-norm", "pet {s}/scan.npz -o {o} --norm {s}/mu.npy", "mu.npy"),
    _case("pet-additive-shape", "pet {s}/scan.npz -o {o} --additive {s}/mu.npy", "--additive"),
    _case("pet-norm-no-radius", "pet-norm {s}/scan.npz -o {o}", "--radius-mm"),
    _case("pet-norm-radius-text", "pet-norm {s}/scan.npz -o {o} --radius-mm big", "radius"),
    _case("pet-norm-sinogram", "pet-norm {s}/scan.hs -o {o} --radius-mm 50", ".npz"),
    _case("pet-norm-mu-huge", "pet-norm {s}/scan.npz -o {o} --radius-mm 50 --mu 5", "mu"),
    _case("spect-map-beta-osem", "spect {s}/nm.dcm -o {o} --beta 1", "applies to --algorithm"),
    _case(
        "spect-map-epsilon",
        "spect {s}/nm.dcm -o {o} --algorithm bsrem --beta 1 --epsilon -1",
        "epsilon",
    ),
    _case(
        "spect-map-prior", "spect {s}/nm.dcm -o {o} --algorithm oslmap --beta 1 --prior tv", "prior"
    ),
    # ---------------------------------------------------------------- recon quant
    _case("quant-missing", "quant {s}/no_such.toml -o {o}", "not found"),
    _case("quant-empty", "quant {s}/bad/empty.toml -o {o}", "empty.toml"),
    _case("quant-syntax", "quant {s}/bad/syntax.toml -o {o}", "toml"),
    _case("quant-binary", "quant {s}/bad/notoml_binary.toml -o {o}", "toml"),
    *[
        _case(f"quant-{name}", f"quant {{s}}/bad/{name}.toml -o {{o}}", fragment)
        for name, fragment in (
            ("study_isotope", "isotope"),
            ("study_activity_text", "injected_activity_bq"),
            ("study_unknown", "colour"),
            ("study_image_missing", "tp9"),
            ("study_vois_number", "vois"),
            ("study_voxel_text", "voxel_mm"),
            ("study_hours_negative", "hours_after_injection"),
            ("study_sphere_outside", "lesion"),
        )
    ],  # fmt: skip
    _case("quant-not-empty", "quant {s}/study.toml -o {s}/full", "not empty"),
    # ---------------------------------------------------------------- recon batch
    _case("batch-missing", "batch {s}/no_such.toml -o {o}", "not found"),
    _case("batch-syntax", "batch {s}/bad/syntax.toml -o {o}", "toml"),
    _case("batch-not-empty", "batch {s}/bad/batch_ok.toml -o {s}/full", "not empty"),
    _case("batch-workers-zero", "batch {s}/bad/batch_ok.toml -o {o} --workers 0", "workers"),
    _case(
        "batch-scheduler-and-workers",
        "batch {s}/bad/batch_ok.toml -o {o} --workers 2 --scheduler tcp://x:1",
        "together",
    ),
    *[
        _case(f"batch-{name}", f"batch {{s}}/bad/batch_{name}.toml -o {{o}}", fragment)
        for name, fragment in (
            ("no_jobs", "no jobs"),
            ("jobs_not_tables", "must be a table"),
            ("table_unknown", "did you mean 'spect'"),
            ("kind_unknown", "did you mean 'spect'"),
            ("kind_missing", "needs a kind"),
            ("name_missing", "needs a name"),
            ("name_path", "name must be"),
            ("name_duplicate", "two jobs are named 'a'"),
            ("input_missing", "no_such.dcm"),
            ("input_number", "input must be"),
            ("option_text", "iterations"),
            ("option_bool", "iterations"),
            ("option_range", "subsets"),
            ("option_unknown", "did you mean 'iterations'"),
            ("option_exclusive", "job 'a': --ct and --mu cannot be used together"),
            ("option_path_missing", "no_such_mu.npy"),
            ("defaults_text", "subsets"),
            ("defaults_not_table", "[spect] must be a table"),
            ("output_twice", "both write"),
            ("output_nested", "inside the output of job 'a'"),
            ("output_escapes", "inside the batch output"),
            ("output_absolute", "inside the batch output"),
            ("output_logs", "logs"),
            ("after_unknown", "did you mean 'a'"),
            ("after_self", "depends on itself"),
            ("after_text", "after must be a list"),
            ("cycle", "cycle"),
            ("split_spect", "pet jobs only"),
            ("split_no_frames", "needs frames"),
            ("split_text", "split-frames must be true or false"),
            ("frames_bad", "job 'p': --frames 'lots'"),
            ("quant_plots_text", "no-plots"),
            ("quant_input_list", "input must be"),
            ("batch_unknown", "did you mean 'workers'"),
            ("batch_workers_text", "workers"),
        )
    ],  # fmt: skip
    # A job's output would be an input folder (the CT series) of the same job.
    _case("batch-output-is-input", "batch {s}/bad/batch_output_is_input.toml -o {s}", "ct"),
]
