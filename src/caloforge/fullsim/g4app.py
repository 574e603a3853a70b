"""The Geant4 application: BESIII EMC barrel, TOF, rear material, 1 T field, standard EM physics.

Imported only inside worker processes (see :mod:`caloforge.fullsim.runner`): Geant4 state is global
and a fatal Geant4 error aborts the whole process. Source ``../shared/geant4-data/env.sh`` (or let
geant4_pybind download the official data sets) before the first import; :mod:`caloforge.fullsim.g4data`
checks that without importing this module.

Geometry (all cylinders centred on the beam line, lengths in cm):

* world: G4_Galactic (the drift chamber gas and the beam pipe are not modelled);
* TOF barrel (switchable): two BC408 (polyvinyltoluene) shells 5 cm thick centred at r = 83.85 and
  89.55, |z| < 133;
* entry shell: a vacuum shell 93.0 < r < 93.5 whose sensitive detector records the primary particle
  where it leaves the shell towards the crystals (the MC truth at the EMC entry);
* EMC envelope: a vacuum tube 93.5 < r < 122.8, |z| < 157.35, holding the 5280 CsI(Tl) crystals
  (one G4GenericTrap each from pybes3's vertices, density 4.53 g/cm3, Cs 51.15 %, I 48.85 % by
  mass); the 0.6 mm wrapping gaps between crystals are left empty (vacuum): the 0.26 mm Tyvek,
  25 um Al and 25 um Mylar of the real wrapping are about 0.02 g/cm2 per face and are not modelled;
* rear material behind the crystals as simplified shells from r = 122.8: 3 mm acrylic, 24 mm
  aluminium (8 mm plate + 16 mm preamplifier box), 5 mm steel, |z| < 157.35;
* uniform 1 T field along +z everywhere.

Physics: G4EmStandardPhysics (option 0), production cut 0.7 mm for all particles in all regions.
Energy per crystal is scored by a G4MultiFunctionalDetector with G4PSEnergyDeposit (C++, no Python
per step).

Loopers: a charged particle that leaves the material with little transverse momentum and almost none
along z spirals in the vacuum for kilometres (one such positron held a production event for over ten
minutes). Every volume carries a G4UserLimits with a maximal track length of
:data:`MAX_TRACK_LENGTH_CM` (10 m, seven times the longest path through the barrel), enforced by
G4StepLimiterPhysics (G4UserSpecialCuts); such tracks cannot reach the crystals again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import sys

import numpy as np

import geant4_pybind as g4

from caloforge.detector.geometry import N_BARREL
from caloforge.fullsim.crystals import build_crystal_solids
from caloforge.fullsim.g4data import G4_DATA_VARIABLES

DBL_MAX = sys.float_info.max
ENTRY_SHELL_INNER_CM = 93.0
ENTRY_SHELL_OUTER_CM = 93.5
ENVELOPE_OUTER_CM = 122.8
ENVELOPE_HALF_Z_CM = 157.35
TOF_LAYERS_CM = ((81.35, 86.35), (87.05, 92.05))
TOF_HALF_Z_CM = 133.0
REAR_LAYERS = (("G4_PLEXIGLASS", 0.3), ("G4_Al", 2.4), ("G4_STAINLESS-STEEL", 0.5))
CSI_DENSITY_G_CM3 = 4.53
MAX_TRACK_LENGTH_CM = 1000.0
PHYSICS_LIST = "G4EmStandardPhysics"
TRACK_LIMIT = f"G4StepLimiterPhysics: tracks longer than {MAX_TRACK_LENGTH_CM / 100:g} m are killed (loopers)"
@dataclass(frozen=True)
class SimSettings:
    """Settings of the Geant4 application (stored in every sample file)."""

    tof: bool = True
    production_cut_mm: float = 0.7
    b_field_t: float = 1.0


def geant4_version() -> str:
    """Geant4's version string, e.g. ``geant4-11-04-patch-01``."""
    return g4.G4Version.replace("$Name:", "").replace("$", "").split("[")[0].strip()


def geant4_datasets() -> dict[str, str]:
    """The data-set folders Geant4 reads, by environment variable (as set for this process)."""
    return {v: os.environ[v] for v in G4_DATA_VARIABLES if v in os.environ}


def _build_csi() -> g4.G4Material:
    nist = g4.G4NistManager.Instance()
    csi = g4.G4Material("CsI_BESIII", CSI_DENSITY_G_CM3 * g4.g / g4.cm3, 2)
    csi.AddElement(nist.FindOrBuildElement("Cs"), 0.5115)
    csi.AddElement(nist.FindOrBuildElement("I"), 0.4885)
    return csi


class BarrelConstruction(g4.G4VUserDetectorConstruction):
    """World, TOF, entry shell, EMC barrel crystals and rear material, with the field."""

    def __init__(self, settings: SimSettings) -> None:
        super().__init__()
        self.settings = settings
        self._keep: list = []  # Geant4 objects that must outlive Construct()
        self.crystal_volumes: list = []
        self.entry_volume = None
        self.limits = g4.G4UserLimits(DBL_MAX, MAX_TRACK_LENGTH_CM * g4.cm)

    def _place(self, solid, material, name: str, mother, pos=None, rot=None, copy_no: int = 0):
        lv = g4.G4LogicalVolume(solid, material, name)
        lv.SetUserLimits(self.limits)
        if rot is None:
            pv = g4.G4PVPlacement(None, pos or g4.G4ThreeVector(), lv, name, mother, False, copy_no)
        else:
            pv = g4.G4PVPlacement(g4.G4Transform3D(rot, pos), lv, name, mother, False, copy_no)
        self._keep += [solid, lv, pv]
        return lv, pv

    def Construct(self):  # noqa: N802 (Geant4 name)
        nist = g4.G4NistManager.Instance()
        vacuum = nist.FindOrBuildMaterial("G4_Galactic")
        cm = g4.cm

        world_s = g4.G4Box("World", 300 * cm, 300 * cm, 300 * cm)
        world_lv = g4.G4LogicalVolume(world_s, vacuum, "World")
        world_lv.SetUserLimits(self.limits)
        world_pv = g4.G4PVPlacement(None, g4.G4ThreeVector(), world_lv, "World", None, False, 0)
        self._keep += [world_s, world_lv, world_pv]

        if self.settings.tof:
            bc408 = nist.FindOrBuildMaterial("G4_PLASTIC_SC_VINYLTOLUENE")
            for i, (r0, r1) in enumerate(TOF_LAYERS_CM):
                s = g4.G4Tubs(f"TOF{i}", r0 * cm, r1 * cm, TOF_HALF_Z_CM * cm, 0, 2 * np.pi)
                self._place(s, bc408, f"TOF{i}", world_lv)

        entry_s = g4.G4Tubs(
            "EmcEntry", ENTRY_SHELL_INNER_CM * cm, ENTRY_SHELL_OUTER_CM * cm, ENVELOPE_HALF_Z_CM * cm, 0, 2 * np.pi
        )
        self.entry_volume, _ = self._place(entry_s, vacuum, "EmcEntry", world_lv)

        env_s = g4.G4Tubs(
            "EmcEnvelope", ENTRY_SHELL_OUTER_CM * cm, ENVELOPE_OUTER_CM * cm, ENVELOPE_HALF_Z_CM * cm, 0, 2 * np.pi
        )
        env_lv, _ = self._place(env_s, vacuum, "EmcEnvelope", world_lv)

        csi = _build_csi()
        self._keep.append(csi)
        solids = build_crystal_solids()
        for copy_no in range(N_BARREL):
            verts = g4.G4TwoVectorVector()
            for x, y in solids.vertices_local_cm[copy_no]:
                verts.append(g4.G4TwoVector(x * cm, y * cm))
            solid = g4.G4GenericTrap(f"Crystal{copy_no}", solids.half_length_cm[copy_no] * cm, verts)
            r = solids.rotation[copy_no]
            rot = g4.G4RotationMatrix()
            rot.rotateAxes(
                g4.G4ThreeVector(*r[:, 0]), g4.G4ThreeVector(*r[:, 1]), g4.G4ThreeVector(*r[:, 2])
            )
            pos = g4.G4ThreeVector(*(solids.translation_cm[copy_no] * cm))
            lv, _ = self._place(solid, csi, "Crystal", env_lv, pos=pos, rot=rot, copy_no=copy_no)
            self._keep.append(rot)
            self.crystal_volumes.append(lv)

        r = ENVELOPE_OUTER_CM
        for name, thickness in REAR_LAYERS:
            s = g4.G4Tubs(f"Rear_{name}", r * cm, (r + thickness) * cm, ENVELOPE_HALF_Z_CM * cm, 0, 2 * np.pi)
            self._place(s, nist.FindOrBuildMaterial(name), f"Rear_{name}", world_lv)
            r += thickness
        return world_pv

    def ConstructSDandField(self):  # noqa: N802
        sdm = g4.G4SDManager.GetSDMpointer()
        mfd = g4.G4MultiFunctionalDetector("crystals")
        edep = g4.G4PSEnergyDeposit("edep")
        mfd.RegisterPrimitive(edep)
        sdm.AddNewDetector(mfd)
        for lv in self.crystal_volumes:
            self.SetSensitiveDetector(lv, mfd)
        entry = EntrySD("entry")
        sdm.AddNewDetector(entry)
        self.SetSensitiveDetector(self.entry_volume, entry)

        field = g4.G4UniformMagField(g4.G4ThreeVector(0, 0, self.settings.b_field_t * g4.tesla))
        manager = g4.G4TransportationManager.GetTransportationManager().GetFieldManager()
        manager.SetDetectorField(field)
        manager.CreateChordFinder(field)
        self._keep += [mfd, edep, entry, field, manager]
        self.entry_sd = entry


class EntrySD(g4.G4VSensitiveDetector):
    """Records the primary particle where it leaves the entry shell outwards (at most a few steps)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.reset()

    def reset(self) -> None:
        self.position_cm: tuple[float, float, float] | None = None
        self.momentum_gev: tuple[float, float, float] | None = None

    def ProcessHits(self, step, history) -> bool:  # noqa: N802
        if self.position_cm is not None or step.GetTrack().GetTrackID() != 1:
            return False
        post = step.GetPostStepPoint()
        if post.GetStepStatus() != g4.fGeomBoundary:
            return False
        pos = post.GetPosition()
        if pos.x**2 + pos.y**2 < (ENTRY_SHELL_OUTER_CM * g4.cm - 1e-3) ** 2:
            return False  # left through the inner surface or an end cap
        mom = post.GetMomentum()
        self.position_cm = (pos.x / g4.cm, pos.y / g4.cm, pos.z / g4.cm)
        self.momentum_gev = (mom.x / g4.GeV, mom.y / g4.GeV, mom.z / g4.GeV)
        return True


class EmPhysics(g4.G4VModularPhysicsList):
    """G4EmStandardPhysics with one production cut."""

    def __init__(self, cut_mm: float) -> None:
        super().__init__()
        self.SetVerboseLevel(0)
        self.SetDefaultCutValue(cut_mm * g4.mm)
        self.RegisterPhysics(g4.G4EmStandardPhysics())
        self.RegisterPhysics(g4.G4StepLimiterPhysics())  # applies the G4UserLimits (looper track length)


@dataclass
class EventResult:
    """What one event leaves behind."""

    crystal_edep_gev: np.ndarray  # (5280,) energy per crystal, copy number order
    entry_position_cm: tuple[float, float, float] | None
    entry_momentum_gev: tuple[float, float, float] | None


class Gun(g4.G4VUserPrimaryGeneratorAction):
    """Fires the next queued particle from the origin, reseeding Geant4 per event first."""

    def __init__(self) -> None:
        super().__init__()
        self.gun = g4.G4ParticleGun(1)
        self.gun.SetParticlePosition(g4.G4ThreeVector(0, 0, 0))
        self.queue: list[tuple[str, np.ndarray, int]] = []
        self.index = 0
        self._table = g4.G4ParticleTable.GetParticleTable()

    def GeneratePrimaries(self, event) -> None:  # noqa: N802
        name, momentum_gev, seed = self.queue[self.index]
        self.index += 1
        g4.HepRandom.setTheSeed(int(seed))
        p = float(np.linalg.norm(momentum_gev))
        definition = self._table.FindParticle(name)
        mass = definition.GetPDGMass()
        self.gun.SetParticleDefinition(definition)
        self.gun.SetParticleMomentumDirection(g4.G4ThreeVector(*(momentum_gev / p)))
        self.gun.SetParticleEnergy(float(np.hypot(p * g4.GeV, mass)) - mass)  # kinetic
        self.gun.GeneratePrimaryVertex(event)


class Collector(g4.G4UserEventAction):
    """Reads the crystal energies and the entry truth at the end of each event."""

    def __init__(self, construction: BarrelConstruction) -> None:
        super().__init__()
        self.construction = construction
        self.results: list[EventResult] = []
        self._hc_id = -1

    def BeginOfEventAction(self, event) -> None:  # noqa: N802
        self.construction.entry_sd.reset()

    def EndOfEventAction(self, event) -> None:  # noqa: N802
        if self._hc_id < 0:
            self._hc_id = g4.G4SDManager.GetSDMpointer().GetCollectionID("crystals/edep")
        edep = np.zeros(N_BARREL)
        hits = event.GetHCofThisEvent().GetHC(self._hc_id)
        for copy_no, e in hits:
            edep[copy_no] = e / g4.GeV
        sd = self.construction.entry_sd
        self.results.append(EventResult(edep, sd.position_cm, sd.momentum_gev))


class Geant4Barrel:
    """One Geant4 run manager with the barrel; call :meth:`simulate` repeatedly (one per process)."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.run_manager = g4.G4RunManagerFactory.CreateRunManager(g4.G4RunManagerType.Serial)
        g4.HepRandom.setTheEngine(g4.MixMaxRng())
        self.construction = BarrelConstruction(settings)
        self.run_manager.SetUserInitialization(self.construction)
        self.physics = EmPhysics(settings.production_cut_mm)
        self.run_manager.SetUserInitialization(self.physics)
        self.gun = Gun()
        self.collector = Collector(self.construction)
        self.run_manager.SetUserAction(self.gun)
        self.run_manager.SetUserAction(self.collector)
        ui = g4.G4UImanager.GetUIpointer()
        for cmd in ("/control/verbose 0", "/run/verbose 0", "/event/verbose 0", "/tracking/verbose 0"):
            ui.ApplyCommand(cmd)
        self.run_manager.Initialize()

    def simulate(self, particles: list[tuple[str, np.ndarray, int]]) -> list[EventResult]:
        """Simulate one event per (Geant4 particle name, momentum GeV/c (3,), seed), from the origin."""
        self.gun.queue, self.gun.index = particles, 0
        self.collector.results = []
        self.run_manager.BeamOn(len(particles))
        return self.collector.results
