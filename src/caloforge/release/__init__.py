"""Release of the shipped default models: validate trained checkpoints against Geant4, measure the targets,
and write the models with ``validation.json`` and ``MODEL_CARD.md`` (``caloforge ship``).

The top stage of the package: it may import every other stage (models, training, export, validation); only
the command line imports it.

* :mod:`caloforge.release.targets` -- the targets a shipped model is held to, and their check;
* :mod:`caloforge.release.studies` -- the energy response and E5x5 spreads per momentum slice, the spread of
  one repeated track, the sampling speed, the 8-bit against the float32 export under the same noise;
* :mod:`caloforge.release.provenance` -- what a record says about the training run, sample, energy fit and
  distillation a model came from;
* :mod:`caloforge.release.card` -- the model card rendered from ``validation.json``;
* :mod:`caloforge.release.ship` -- the ship modes: trained checkpoints (:func:`~caloforge.release.ship.ship`),
  distilled students, ONNX re-export, response study, 8-bit exports;
* :mod:`caloforge.release.recipe` -- the whole recipe of the shipped models (``caloforge recipe``), which ends
  in :func:`~caloforge.release.ship.ship`.
"""
