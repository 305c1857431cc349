"""Simulation: phantoms, simulated acquisitions written as real files, and the demos.

This package sits above the modalities and io (DESIGN.md §2): it builds system models to
simulate data and writes them through :mod:`recon.io`; nothing below it imports it.

- :mod:`recon.simulate.phantoms`: NEMA-IEC-like body phantom, cylinders, spheres, point sources;
- :mod:`recon.simulate.orbits`: body-contour SPECT orbits (a radius per view from the outline);
- :mod:`recon.simulate.dicom_study`: DICOM NM TOMO and CT datasets, and a whole simulated
  SPECT/CT study written as files;
- :mod:`recon.simulate.demo_spect`, :mod:`recon.simulate.demo_pet`: ``recon demo``;
- :mod:`recon.simulate.trial`: a small trial (SPECT/CT, dynamic PET, a cohort) with its
  ``recon batch`` manifest.
"""
