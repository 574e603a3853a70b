"""The Geant4 reference simulation of the EMC barrel.

* :mod:`caloforge.fullsim.crystals` -- planar G4GenericTrap solids from pybes3's vertices (numpy only)
* :mod:`caloforge.fullsim.g4app`    -- the Geant4 application (imported only in worker processes)
* :mod:`caloforge.fullsim.g4data`   -- where Geant4's data sets are, checked before Geant4 is imported
* :mod:`caloforge.fullsim.runner`   -- kinematics, seeds, worker processes, event records
"""
