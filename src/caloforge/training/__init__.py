"""Training of the shower models: one loop for every model and plan, typed YAML configurations, Geant4 data.

* :mod:`caloforge.training.config`     -- :class:`TrainConfig` (model, data, training sections), YAML I/O
* :mod:`caloforge.training.data`       -- sample files into memory, validation split, batches
* :mod:`caloforge.training.loop`       -- :func:`train`: epochs, schedules, checkpoints, resume, metrics
* :mod:`caloforge.training.plans`      -- what the loop trains (``training.plan``); the ``model`` plan
* :mod:`caloforge.training.energy_fit` -- the ``energy`` plan: a GAN's deposited-energy model
* :mod:`caloforge.training.distill`    -- the ``distill`` plan: a smaller generator that gives a GAN's maps
* :mod:`caloforge.training.selection`  -- the checkpoint-selection metric (mean separation power of a few
  shower shapes, and the crystal occupancy), private to training
* :mod:`caloforge.training.distributed` -- training in several processes (torchrun): shares of each batch,
  averaged gradients

Run ``caloforge train CONFIG [--particle P] -o DIR`` or :func:`train`
(``train(load_config("configs/nbmmd.yaml", "gamma"), "runs/x")``).
"""

from caloforge.training.config import DataConfig, LoopConfig, TrainConfig, load_config, save_config
from caloforge.training.loop import train

__all__ = ["DataConfig", "LoopConfig", "TrainConfig", "load_config", "save_config", "train"]
