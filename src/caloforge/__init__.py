"""caloforge: fast simulation of the BESIII EMC barrel with generative models.

Package map, in the order data flows through the stages; each stage imports only from the stages above
it (``tests/test_layers.py`` checks it; ``docs/architecture.md`` says where a change goes):

* :mod:`caloforge.atomic`     -- the one atomic-write helper (a file appears whole or not at all) and the stop
  signals every writer honours
* :mod:`caloforge.detector`   -- crystal geometry from pybes3, front-surface lookup, transport, conditions,
  particle-gun kinematics (with :mod:`caloforge._compiled`, the compiled loops of ``_kernels.c``)
* :mod:`caloforge.fullsim`    -- the Geant4 reference simulation (geant4_pybind), in worker processes
* :mod:`caloforge.data`       -- the HDF5 sample format: writing, reading, summaries; making the samples
* :mod:`caloforge.showers`    -- the shower maths, once: shapes (numpy; torch twins for training), binned
  comparisons (separation power, chi2)
* :mod:`caloforge.models`     -- generative shower models (the conditional GAN) behind one interface and
  one registry; the shipped defaults in ``models/pretrained/``
* :mod:`caloforge.training`   -- one training loop for every model and plan (energy fit, distillation),
  YAML configurations with the particle as a template, checkpoints, resume, selection
* :mod:`caloforge.export`     -- ONNX export (float32, 8-bit hidden layers), the ONNX Runtime sampler
* :mod:`caloforge.engine`     -- the fast simulation: particles in, EMC barrel hits out; model samples
  in the sample-file format
* :mod:`caloforge.validation` -- BESIII shower observables, comparison metrics, studies, the HTML report
* :mod:`caloforge.release`    -- reproducing (the recipe) and shipping (validation, model card) the defaults
* :mod:`caloforge.cli`        -- the ``caloforge`` command

Units everywhere: cm, GeV (GeV/c), rad, T (``docs/conventions.md``).
"""

__version__ = "0.1.0"
