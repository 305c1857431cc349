"""PET: ring-scanner geometry, sinogram and listmode data, the LOR projector and system models."""

from recon.pet.listmode import ListmodeEvents, histogram
from recon.pet.listmode_frame import EventSubset, ListmodeFrame
from recon.pet.lor_model import PetLorSinogramModel
from recon.pet.model import PetListmodeModel, PetSinogramModel
from recon.pet.norm_estimation import cylinder_sinogram, estimate_normalization
from recon.pet.normalization import ModulePairFactors, Normalization
from recon.pet.projector import LorProjector
from recon.pet.randoms import randoms_from_delayeds, randoms_from_singles
from recon.pet.resolution import ImageResolution
from recon.pet.scanner import PetScanner
from recon.pet.scatter import ScatterEstimation, ScatterRound
from recon.pet.simulate import simulate_listmode
from recon.pet.sinogram import SinogramLayout
from recon.pet.tails import TailFit
from recon.pet.tof import Tof

__all__ = [
    "EventSubset",
    "ImageResolution",
    "ListmodeEvents",
    "ListmodeFrame",
    "LorProjector",
    "ModulePairFactors",
    "Normalization",
    "PetListmodeModel",
    "PetLorSinogramModel",
    "PetScanner",
    "PetSinogramModel",
    "ScatterEstimation",
    "ScatterRound",
    "SinogramLayout",
    "TailFit",
    "Tof",
    "cylinder_sinogram",
    "estimate_normalization",
    "histogram",
    "randoms_from_delayeds",
    "randoms_from_singles",
    "simulate_listmode",
]
