"""Training of the shower models: one loop for every model, typed YAML configurations, Geant4 data.

* :mod:`caloforge.training.config`    -- :class:`TrainConfig` (model, data, training sections), YAML I/O
* :mod:`caloforge.training.data`      -- sample files into memory, validation split, batches
* :mod:`caloforge.training.loop`      -- :func:`train`: epochs, schedules, checkpoints, resume, metrics
* :mod:`caloforge.training.selection` -- the checkpoint-selection metric (mean separation power of a few
  shower shapes), private to training

Run ``caloforge train CONFIG -o DIR`` or :func:`train` (``train("configs/gan_gamma.yaml", "runs/gan")``).
"""

from caloforge.training.config import DataConfig, LoopConfig, TrainConfig, load_config, save_config
from caloforge.training.loop import train

__all__ = ["DataConfig", "LoopConfig", "TrainConfig", "load_config", "save_config", "train"]
