"""DICOM codes of the radionuclides recon knows: the one table readers and writers use.

Source: DICOM PS3.16, CID 18 "Isotopes in Radiopharmaceuticals" (single-photon and therapy
nuclides) and CID 4020 "PET Radionuclide": each nuclide's SNOMED CT concept id (coding scheme
designator ``SCT``) and code meaning (``^99m^Technetium``), and its legacy SNOMED-RT id (scheme
``SRT``, used in DICOM until 2019 and still written by older systems, e.g. ``C-163A8`` for
Tc-99m) from PS3.16 Annex O, "SNOMED Concept ID to SNOMED ID Mapping". A test checks every row
against the copy of these tables that pydicom ships (``pydicom.sr``).

The element name that ends each code meaning (``Technetium``) is also how
:func:`recon.physics.get_isotope` understands spelled-out names such as ``"Technetium-99m"``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DICOM_RADIONUCLIDE_CODES", "RadionuclideCode", "isotope_for_code"]


@dataclass(frozen=True)
class RadionuclideCode:
    """The DICOM code of one radionuclide (Radionuclide Code Sequence (0054,0300) item).

    Attributes
    ----------
    isotope : str
        recon's canonical name, as in :data:`recon.physics.ISOTOPES` (``"Tc-99m"``).
    sct : str
        SNOMED CT concept id, Code Value with Coding Scheme Designator ``SCT``.
    srt : str
        Legacy SNOMED-RT id, Code Value with Coding Scheme Designator ``SRT``.
    meaning : str
        Code Meaning, ``^<mass number>^<Element>``.
    cids : tuple of int
        The PS3.16 context groups listing it: 18 and/or 4020.
    """

    isotope: str
    sct: str
    srt: str
    meaning: str
    cids: tuple[int, ...]

    @property
    def element(self) -> str:
        """The element's name in lower case, from the code meaning (``"technetium"``)."""
        return self.meaning.rsplit("^", 1)[-1].lower()


def _code(isotope: str, sct: str, srt: str, meaning: str, *cids: int) -> RadionuclideCode:
    return RadionuclideCode(isotope, sct, srt, meaning, cids)


#: recon isotope name -> its DICOM code (PS3.16 CID 18 / CID 4020; SRT ids from Annex O).
DICOM_RADIONUCLIDE_CODES: dict[str, RadionuclideCode] = {
    c.isotope: c
    for c in (
        _code("Tc-99m", "72454006", "C-163A8", "^99m^Technetium", 18),
        _code("In-111", "56609000", "C-145A4", "^111^Indium", 18),
        _code("I-123", "21572004", "C-114A4", "^123^Iodine", 18),
        _code("I-131", "1368003", "C-114B1", "^131^Iodine", 18),
        _code("Lu-177", "447553000", "C-101ED", "^177^Lutetium", 18),
        _code("Ga-67", "2008008", "C-131A2", "^67^Gallium", 18),
        _code("Tl-201", "60057003", "C-138A9", "^201^Thallium", 18),
        _code("F-18", "77004003", "C-111A1", "^18^Fluorine", 18, 4020),
        _code("C-11", "40565003", "C-105A1", "^11^Carbon", 4020),
        _code("N-13", "21576001", "C-107A1", "^13^Nitrogen", 4020),
        _code("O-15", "129504001", "C-B1038", "^15^Oxygen", 4020),
        _code("Ga-68", "35337001", "C-131A3", "^68^Gallium", 4020),
        _code("Cu-64", "3932008", "C-127A2", "^64^Copper", 18, 4020),
        _code("Zr-89", "63360001", "C-168A4", "^89^Zirconium", 4020),
        _code("I-124", "40937006", "C-114A5", "^124^Iodine", 4020),
        _code("Rb-82", "79197006", "C-159A2", "^82^Rubidium", 4020),
        _code("Mn-52", "37225000", "C-149A1", "^52^Manganese", 4020),
    )
}

_BY_VALUE = {
    scheme: {getattr(c, scheme.lower()): c.isotope for c in DICOM_RADIONUCLIDE_CODES.values()}
    for scheme in ("SCT", "SRT")
}


def isotope_for_code(value: object, scheme: object = None) -> str | None:
    """recon's isotope name for a radionuclide Code Value, or None when it is not in the table.

    Parameters
    ----------
    value : str
        Code Value (0008,0100), e.g. ``"72454006"`` (SNOMED CT) or ``"C-163A8"`` (SNOMED-RT).
    scheme : str, optional
        Coding Scheme Designator (0008,0102): ``"SCT"`` or ``"SRT"``. None or another
        designator: the value is looked up in both, which cannot clash (SNOMED CT ids are
        digits, SNOMED-RT ids are not).

    Returns
    -------
    str or None
        The canonical name (``"Tc-99m"``).
    """
    if value is None:
        return None
    code = str(value).strip()
    designator = str(scheme or "").strip().upper()
    schemes = (designator,) if designator in _BY_VALUE else tuple(_BY_VALUE)
    for name in schemes:
        if code in _BY_VALUE[name]:
            return _BY_VALUE[name][code]
    return None
