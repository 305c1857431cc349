"""PETSIRD detection efficiencies as a recon :class:`~recon.pet.Normalization`.

PETSIRD (0.12, ``ScannerInformation.detection_efficiencies``) models the efficiency of a
coincidence between detection bins ``b1`` and ``b2`` (ordered as PETSIRD orders coincidences:
the higher module type first, then the higher detection bin) as (``petsird.helpers
.get_detection_efficiency``)::

    calibration_factor · dbe[type1][b1] · dbe[type2][b2] · mpe[type1][type2][SGID].values[i1][i2]

with ``SGID = module_pair_sgidlut[type1][type2][module1][module2]`` (−1: modules not in
coincidence) and ``i = element · n_energy + energy`` inside the module. A component that is
absent or empty counts as 1.

recon merges the energy windows of a crystal (:func:`recon.io.read_petsird` drops the energy
index), so efficiencies must not depend on it: files whose values differ between energy bins
of one element are refused. The detection-bin efficiencies become the crystal efficiencies; the
module-pair tables become :class:`~recon.pet.normalization.ModulePairFactors`, stored for both
orders of every module pair (the transposed table for the reverse order), so any crystal pair
finds its factor. ``calibration_factor`` (PETSIRD's absolute efficiency) is recorded in
``info["petsird_calibration_factor"]`` but not applied: recon's calibration is a separate
model factor. Crystals of a given scanner that no PETSIRD element maps to get efficiency 0
and are listed in ``info["dead_crystals"]``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.pet.normalization import ModulePairFactors, Normalization
from recon.pet.scanner import PetScanner

__all__ = ["efficiency_metadata", "normalization_from_petsird"]

log = logging.getLogger("recon")

_ENERGY_RTOL = 1e-6


def _present(value: Any) -> bool:
    return value is not None and len(value) > 0


def normalization_from_petsird(
    info: Any,
    scanner: PetScanner,
    crystal_of_element: list[np.ndarray],
    n_energy: list[int],
    n_modules: list[int],
) -> Normalization | None:
    """The detection efficiencies of a PETSIRD header as a Normalization (module docstring).

    Parameters
    ----------
    info : petsird.ScannerInformation
        The header's scanner information.
    scanner : PetScanner
        The scanner the elements were mapped onto.
    crystal_of_element : list of int arrays
        Per module type, the crystal id of element ``module · n_elements + element``.
    n_energy : list of int
        Per module type, the number of energy bins.
    n_modules : list of int
        Per module type, the number of modules.

    Returns
    -------
    Normalization or None
        None when the file has no detection efficiencies (both components absent).

    Raises
    ------
    InputError
        Efficiencies that depend on the energy bin, tables of the wrong size, SGIDs out of
        range, or negative or non-finite values.
    """
    eff_info = getattr(info, "detection_efficiencies", None)
    if eff_info is None:
        return None
    per_bin = list(eff_info.detection_bin_efficiencies or [])
    luts = list(eff_info.module_pair_sgidlut or [])
    vectors = list(eff_info.module_pair_efficiencies_vectors or [])
    has_bins = any(_present(v) for v in per_bin)
    has_pairs = any(_present(row) for row in luts) and any(_present(row) for row in vectors)
    if not has_bins and not has_pairs:
        return None
    mapped = np.concatenate(crystal_of_element)
    efficiency = np.ones(scanner.n_crystals, dtype=np.float32)
    unmapped = np.setdiff1d(np.arange(scanner.n_crystals), mapped)
    efficiency[unmapped] = 0.0
    if has_bins:
        for t, crystals in enumerate(crystal_of_element):
            if t >= len(per_bin) or not _present(per_bin[t]):
                continue
            values = _energy_free(
                np.asarray(per_bin[t], dtype=np.float64), len(crystals), n_energy[t],
                f"detection_bin_efficiencies of module type {t}",
            )  # fmt: skip
            efficiency[crystals] = values
    module_pairs = None
    if has_pairs:
        module_pairs = _module_pairs(luts, vectors, crystal_of_element, n_energy, n_modules,
                                     scanner)  # fmt: skip
    record = {
        "method": "petsird",
        "source": "PETSIRD detection_efficiencies: "
        + str(getattr(eff_info, "method_description", "") or "(no method description)"),
        "petsird_calibration_factor": float(getattr(eff_info, "calibration_factor", 0.0) or 0.0),
        "dead_crystals": [int(i) for i in np.flatnonzero(efficiency == 0)],
    }
    return Normalization(
        scanner, crystal_efficiency=efficiency, module_pairs=module_pairs, info=record
    )


def efficiency_metadata(
    info: Any,
    scanner: PetScanner,
    crystal_of_element: list[np.ndarray],
    n_energy: list[int],
    n_modules: list[int],
) -> dict[str, Any]:
    """``normalization`` and ``normalization_problem`` for :func:`recon.io.read_petsird`.

    Efficiencies recon cannot apply do not stop the events from being read: the problem is
    logged as a warning and returned as ``normalization_problem``, with ``normalization`` None.
    Parameters as for :func:`normalization_from_petsird`.
    """
    try:
        norm = normalization_from_petsird(info, scanner, crystal_of_element, n_energy, n_modules)
    except InputError as exc:
        log.warning("recon: the PETSIRD detection efficiencies are not used: %s", exc)
        return {"normalization": None, "normalization_problem": str(exc)}
    return {"normalization": norm, "normalization_problem": None}


def _energy_free(values: np.ndarray, n_elements: int, n_energy: int, what: str) -> np.ndarray:
    """One value per element from a per-detection-bin vector; refuse energy dependence."""
    if values.shape != (n_elements * n_energy,):
        raise InputError(
            f"the PETSIRD {what} hold {values.size} values, expected {n_elements * n_energy} "
            f"({n_elements} elements × {n_energy} energy bins)"
        )
    _check_values(values, what)
    table = values.reshape(n_elements, n_energy)
    if not np.allclose(table, table[:, :1], rtol=_ENERGY_RTOL, atol=0.0):
        raise InputError(
            f"the PETSIRD {what} differ between energy bins of one element; recon merges a "
            "crystal's energy windows and cannot apply energy-dependent efficiencies"
        )
    return table[:, 0]


def _check_values(values: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InputError(f"the PETSIRD {what} must be finite and non-negative")


def _module_pairs(
    luts: list[Any],
    vectors: list[Any],
    crystal_of_element: list[np.ndarray],
    n_energy: list[int],
    n_modules: list[int],
    scanner: PetScanner,
) -> ModulePairFactors:
    """Module-pair tables for both orders of every pair, over all module types."""
    n_types = len(crystal_of_element)
    n_elements = [len(c) // m for c, m in zip(crystal_of_element, n_modules, strict=True)]
    width = max(n_elements)
    module_offset = np.concatenate([[0], np.cumsum(n_modules)]).astype(np.int64)
    crystal_module = np.full(scanner.n_crystals, -1, dtype=np.int32)
    crystal_element = np.zeros(scanner.n_crystals, dtype=np.int32)
    for t, crystals in enumerate(crystal_of_element):
        flat = np.arange(len(crystals))
        crystal_module[crystals] = module_offset[t] + flat // n_elements[t]
        crystal_element[crystals] = flat % n_elements[t]
    total = int(module_offset[-1])
    pair_group = np.full((total, total), -1, dtype=np.int32)
    groups: list[np.ndarray] = []
    for t1 in range(n_types):
        for t2 in range(t1 + 1):
            where = f"module_pair_sgidlut[{t1}][{t2}]"
            try:
                lut_rows = luts[t1][t2]
                vector = vectors[t1][t2]
            except (IndexError, TypeError):
                raise InputError(
                    f"the PETSIRD module-pair efficiencies have no table for module types "
                    f"({t1}, {t2})"
                ) from None
            first = len(groups)
            for sgid, item in enumerate(vector):
                if int(item.sgid) != sgid:
                    raise InputError(
                        f"the PETSIRD module_pair_efficiencies_vectors[{t1}][{t2}] entry {sgid} "
                        f"has sgid {item.sgid}; entries must be in SGID order"
                    )
                values = np.asarray(item.values, dtype=np.float64)
                shape = (n_elements[t1] * n_energy[t1], n_elements[t2] * n_energy[t2])
                if values.shape != shape:
                    raise InputError(
                        f"the PETSIRD module-pair efficiencies of types ({t1}, {t2}), SGID "
                        f"{sgid}, have shape {values.shape}, expected {shape}"
                    )
                _check_values(values, f"module-pair efficiencies of SGID {sgid}")
                table = values.reshape(n_elements[t1], n_energy[t1], n_elements[t2], n_energy[t2])
                if not np.allclose(table, table[:, :1, :, :1], rtol=_ENERGY_RTOL, atol=0.0):
                    raise InputError(
                        f"the PETSIRD module-pair efficiencies of SGID {sgid} differ between "
                        "energy bins; recon merges a crystal's energy windows and cannot apply "
                        "energy-dependent efficiencies"
                    )
                square = np.zeros((width, width))
                square[: n_elements[t1], : n_elements[t2]] = table[:, 0, :, 0]
                groups.append(square)  # group first + 2·sgid: PETSIRD order
                groups.append(square.T)  # first + 2·sgid + 1: the reverse order
            n_groups = len(vector)
            if len(lut_rows) != n_modules[t1]:
                raise InputError(
                    f"the PETSIRD {where} has {len(lut_rows)} rows, expected {n_modules[t1]}"
                )
            for m1 in range(len(lut_rows)):
                row = np.asarray(lut_rows[m1], dtype=np.int64).reshape(-1)
                if np.any(row >= n_groups) or np.any(row < -1):
                    raise InputError(f"the PETSIRD {where} holds SGIDs outside [-1, {n_groups})")
                # Same module type: the table is lower-triangular (PETSIRD puts the higher
                # module first), so only m2 <= m1 is read.
                stop = m1 + 1 if t1 == t2 else n_modules[t2]
                if len(row) < stop:
                    raise InputError(f"the PETSIRD {where} row {m1} is too short")
                g1 = int(module_offset[t1]) + m1
                for m2, sgid in enumerate(row[:stop]):
                    if sgid < 0:
                        continue
                    g2 = int(module_offset[t2]) + m2
                    group = first + 2 * int(sgid)
                    if g1 != g2:
                        pair_group[g1, g2] = group
                        pair_group[g2, g1] = group + 1
                    else:
                        # A module with itself: PETSIRD stores the higher element first, so
                        # the lower triangle holds the values; mirror it for the other order.
                        lower = np.tril(groups[group])
                        groups.append(lower + np.tril(lower, -1).T)
                        pair_group[g1, g1] = len(groups) - 1
    if not groups:
        raise InputError("the PETSIRD module-pair efficiencies hold no tables")
    return ModulePairFactors(crystal_module, crystal_element, pair_group, np.stack(groups))
