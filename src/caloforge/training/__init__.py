"""Training of the shower models: one loop for every model and plan, typed YAML configurations, Geant4 data.

* :mod:`caloforge.training.config`     -- :class:`TrainConfig` (model, data, training sections), YAML I/O
* :mod:`caloforge.training.data`       -- sample files into memory, validation split, batches
* :mod:`caloforge.training.loop`       -- :func:`train`: run folders, checkpoints, resume, metrics
* :mod:`caloforge.training.epochs`     -- the epochs of a plan: steps, schedules, moving average, validation
* :mod:`caloforge.training.plan`       -- what a plan is and what the plans share (data, starting checkpoints,
  validation on held-out events)
* :mod:`caloforge.training.plans`      -- what the loop trains (``training.plan``); the ``model`` plan
* :mod:`caloforge.training.energy_fit` -- the ``energy`` plan: a GAN's deposited-energy model
* :mod:`caloforge.training.distill`    -- the ``distill`` plan: a smaller generator that gives a GAN's maps
* :mod:`caloforge.training.distill_shape` -- the ``distill`` plan of a two-stage teacher: its one-pass student
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
