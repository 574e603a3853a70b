"""The fast simulation engine: particles (files or a gun) -> EMC barrel hits (ROOT or HDF5)."""

from caloforge.engine.fastsim import (
    MISSED,
    NOT_COVERED,
    OUTSIDE_MOMENTUM,
    OUTSIDE_VERTEX,
    SIMULATED,
    STATUS_NAMES,
    FastSimulation,
    ShowerSampler,
    SimulationResult,
)
from caloforge.engine.output import write_result
from caloforge.engine.particles import (
    ParticleInputError,
    Particles,
    PhysicsRange,
    make_particles,
    particle_gun,
    read_particles,
)

__all__ = [
    "MISSED",
    "NOT_COVERED",
    "OUTSIDE_MOMENTUM",
    "OUTSIDE_VERTEX",
    "SIMULATED",
    "STATUS_NAMES",
    "FastSimulation",
    "ParticleInputError",
    "Particles",
    "PhysicsRange",
    "ShowerSampler",
    "SimulationResult",
    "make_particles",
    "particle_gun",
    "read_particles",
    "write_result",
]
