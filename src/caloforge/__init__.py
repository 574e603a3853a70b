"""caloforge: fast simulation of the BESIII EMC barrel with generative models.

Package map (data flows one way, each stage imports only from the stages above it):

* :mod:`caloforge.detector`  -- crystal geometry from pybes3, front-surface lookup, transport, conditions
* :mod:`caloforge.fullsim`   -- the Geant4 reference simulation (geant4_pybind), in worker processes
* :mod:`caloforge.data`      -- the HDF5 sample format: writing, reading, summaries
* :mod:`caloforge.models`    -- generative shower models (conditional GAN, WGAN-GP) behind one interface
* :mod:`caloforge.training`  -- one training loop for every model, checkpoints, selection
* :mod:`caloforge.engine`    -- the fast simulation: particles in, EMC barrel hits out
* :mod:`caloforge.validation` -- BESIII shower observables, comparison metrics, the report
* :mod:`caloforge.cli`       -- the ``caloforge`` command

Units everywhere: cm, GeV (GeV/c), rad, T.
"""

__version__ = "0.1.0"
