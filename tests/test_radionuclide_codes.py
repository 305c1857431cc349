"""One radionuclide code table (recon.physics.radionuclide_codes), checked against DICOM PS3.16.

pydicom ships PS3.16's context groups and its SNOMED CT to SNOMED-RT mapping (``pydicom.sr``):
every row of recon's table is compared with them, and the readers and writers are shown to use
the table (a code value alone names the nuclide; the writer writes the table's code).
"""

from __future__ import annotations

import logging

import pytest
from pydicom.dataset import Dataset

from recon.io._dicom import radionuclide_names
from recon.physics import ISOTOPES, get_isotope
from recon.physics.radionuclide_codes import DICOM_RADIONUCLIDE_CODES, isotope_for_code


def test_every_isotope_has_one_code_and_every_code_an_isotope():
    assert set(DICOM_RADIONUCLIDE_CODES) == set(ISOTOPES)
    for name, code in DICOM_RADIONUCLIDE_CODES.items():
        assert code.isotope == name == get_isotope(code.meaning).name


def test_codes_match_dicom_ps3_16_as_shipped_by_pydicom():
    concepts = pytest.importorskip("pydicom.sr._concepts_dict").concepts["SCT"]
    cid_concepts = pytest.importorskip("pydicom.sr._cid_dict").cid_concepts
    srt_of_sct = pytest.importorskip("pydicom.sr._snomed_dict").mapping["SCT"]
    by_code = {c: (m, cids) for entry in concepts.values() for c, (m, cids) in entry.items()}
    for name, code in DICOM_RADIONUCLIDE_CODES.items():
        meaning, cids = by_code[code.sct]
        assert meaning == code.meaning, name
        assert srt_of_sct[code.sct] == code.srt, name
        listed = {cid for cid in (18, 4020) if cid in cids}
        assert listed == set(code.cids), name
        keywords = {k for k, entry in concepts.items() if code.sct in entry}  # may be several
        for cid in code.cids:
            assert keywords & set(cid_concepts[cid]["SCT"]), (name, cid)


@pytest.mark.parametrize(
    ("value", "scheme", "expected"),
    [
        ("72454006", "SCT", "Tc-99m"),
        ("C-163A8", "SRT", "Tc-99m"),
        ("C-111A1", None, "F-18"),
        ("77004003", "", "F-18"),
        (" 37225000 ", "SCT", "Mn-52"),
        ("C-163A8", "SCT", None),  # an SRT id is not a SNOMED CT id
        ("72454006", "SRT", None),
        ("12345", "SCT", None),
        (None, "SCT", None),
    ],
)
def test_isotope_for_code(value, scheme, expected):
    assert isotope_for_code(value, scheme) == expected


def test_readers_name_a_nuclide_from_its_code(caplog):
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "C-114B1", "SRT"
    assert radionuclide_names(code) == ["I-131"]  # the value alone names it
    code.CodeMeaning = "^131^Iodine"
    assert radionuclide_names(code) == ["^131^Iodine", "I-131"]
    unknown = Dataset()
    unknown.CodeValue, unknown.CodingSchemeDesignator = "0000", "SCT"
    assert radionuclide_names(unknown) == []
    # An item that contradicts itself: said, and the meaning wins.
    code.CodeMeaning = "^133^Xenon"
    with caplog.at_level(logging.WARNING, logger="recon"):
        assert radionuclide_names(code) == ["^133^Xenon"]
    assert "C-114B1 is I-131" in caplog.text and "Xenon" in caplog.text
