"""Training configuration: a typed dataclass read from YAML; unknown keys are rejected.

A configuration file has three sections::

    model:     # the model family and its options (caloforge.models.<family>.<Family>Config)
      name: gan
      particles: [gamma]
      ...
    data:      # DataConfig: Geant4 sample files
      train_files: ["${CALOFORGE_CACHE}/samples/train_gamma.h5"]
    training:  # LoopConfig: epochs, batches, seed, device, schedule, validation
      epochs: 30

Sample paths may use environment variables (``${CALOFORGE_CACHE}`` defaults to ``~/.cache/caloforge``)
and ``~``; relative paths are taken relative to ``$CALOFORGE_CACHE/samples``. Committed configurations
hold no absolute paths.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from caloforge.models import ConfigError, ModelConfig, config_from_dict, config_to_dict, model_config_from_dict

SCHEDULERS: tuple[str, ...] = ("none", "cosine", "exponential", "step")

RESUMABLE_CHANGES: frozenset[str] = frozenset(
    {"training.epochs", "training.progress", "training.device", "training.sample_batch_size"}
)
"""Settings that may differ when a run is resumed (more epochs, another device); all others must match."""


def cache_dir() -> Path:
    """``$CALOFORGE_CACHE`` or ``~/.cache/caloforge``: where samples and large files live."""
    return Path(os.environ.get("CALOFORGE_CACHE", Path.home() / ".cache" / "caloforge")).expanduser()


def expand_path(path: str | os.PathLike) -> Path:
    """Expand ``${CALOFORGE_CACHE}`` (default ``~/.cache/caloforge``), other variables and ``~``."""
    text = str(path)
    if "CALOFORGE_CACHE" not in os.environ:
        text = text.replace("${CALOFORGE_CACHE}", str(cache_dir())).replace("$CALOFORGE_CACHE", str(cache_dir()))
    return Path(os.path.expandvars(text)).expanduser()


def resolve_sample_path(path: str | os.PathLike) -> Path:
    """:func:`expand_path`, with relative paths resolved against ``$CALOFORGE_CACHE/samples``."""
    p = expand_path(path)
    return p if p.is_absolute() else cache_dir() / "samples" / p


@dataclass
class DataConfig:
    """Where the Geant4 events come from.

    Attributes:
        train_files: sample files (:mod:`caloforge.data.io`), one particle type each; events of types
            the model does not cover are skipped.
        val_files: held-out files for checkpoint selection; empty: hold out ``val_fraction`` of the
            training events instead (a fixed random split for a given ``training.seed``).
        val_fraction: share of the training events held out when ``val_files`` is empty.
        max_events: read at most this many events per training file (None: all).
        max_val_events: validation events used for the selection metric (per particle type).
    """

    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    val_fraction: float = 0.05
    max_events: int | None = None
    max_val_events: int = 20_000

    def __post_init__(self) -> None:
        if not self.train_files:
            raise ConfigError("data.train_files: give at least one training sample file")
        if not 0 < self.val_fraction < 1 and not self.val_files:
            raise ConfigError("data.val_fraction: must be in (0, 1) when no data.val_files are given")
        if self.max_events is not None and self.max_events <= 0:
            raise ConfigError("data.max_events: must be positive (or null for all events)")
        if self.max_val_events <= 0:
            raise ConfigError("data.max_val_events: must be positive")


@dataclass
class LoopConfig:
    """What the training loop does, for every model.

    Attributes:
        epochs: total number of epochs (raise it and resume to train longer).
        batch_size: events per batch (the last incomplete batch of an epoch is dropped).
        seed: seeds weight initialisation, shuffling, the validation split and the validation samples.
        device: ``auto`` (GPU when present), ``cpu`` or ``cuda``.
        scheduler: per-epoch learning-rate schedule of every optimizer: ``none``, ``cosine`` (to 0 at
            ``epochs``), ``exponential`` (times ``scheduler_gamma`` per epoch), ``step`` (times
            ``scheduler_gamma`` every ``scheduler_step_epochs``). A schedule only advances in epochs
            that use its optimizer.
        scheduler_gamma, scheduler_step_epochs: parameters of the ``exponential`` and ``step`` schedules.
        selection_bins: histogram bins of the separation powers of the selection metric.
        sample_batch_size: conditions per network call when generating validation maps.
        progress: show tqdm progress bars.
        init_from: a model checkpoint (``best.pt`` of an earlier run, ``${CALOFORGE_CACHE}`` and ``~``
            expanded) whose weights and condition normalisation start the run instead of the fits to
            the training maps: fine-tuning with other losses or rates. Same model type, particles
            and architecture; null: start afresh.
    """

    epochs: int = 20
    batch_size: int = 256
    seed: int = 1
    device: str = "auto"
    scheduler: Literal["none", "cosine", "exponential", "step"] = "none"
    scheduler_gamma: float = 0.95
    scheduler_step_epochs: int = 10
    selection_bins: int = 50
    sample_batch_size: int = 8192
    progress: bool = True
    init_from: str | None = None

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "scheduler_step_epochs", "selection_bins", "sample_batch_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"training.{key}: must be positive, got {getattr(self, key)}")
        if not 0 < self.scheduler_gamma <= 1:
            raise ConfigError(f"training.scheduler_gamma: must be in (0, 1], got {self.scheduler_gamma}")


@dataclass
class TrainConfig:
    """A whole training run: model, data and loop."""

    model: ModelConfig
    data: DataConfig
    training: LoopConfig = field(default_factory=LoopConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from plain dicts (a parsed YAML file); unknown keys raise :class:`ConfigError`."""
        if not isinstance(data, dict):
            raise ConfigError(f"a training configuration is a mapping with model, data, training; got {data!r}")
        sections = ("model", "data", "training")
        unknown = [k for k in data if k not in sections]
        if unknown:
            raise ConfigError(f"unknown configuration section {unknown[0]!r}; valid sections: {', '.join(sections)}")
        for key in ("model", "data"):
            if key not in data:
                raise ConfigError(f"the configuration has no {key!r} section")
        return cls(
            model=model_config_from_dict(data["model"], where="model."),
            data=config_from_dict(DataConfig, data["data"], where="data."),
            training=config_from_dict(LoopConfig, data.get("training") or {}, where="training."),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and scalars (for YAML and checkpoints)."""
        return config_to_dict(self)

    def replace(self, **sections: Any) -> TrainConfig:
        """A copy with sections replaced, e.g. ``cfg.replace(training=dataclasses.replace(cfg.training, epochs=3))``."""
        return dataclasses.replace(self, **sections)


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a training configuration from a YAML file.

    Raises:
        ConfigError: missing file, invalid YAML, unknown keys, wrong types or values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    try:
        return TrainConfig.from_dict(data or {})
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def save_config(config: TrainConfig, path: str | os.PathLike) -> None:
    """Write a configuration as YAML (readable back with :func:`load_config`)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configuration dicts."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, prefix=f"{name}.")
        elif a != b:
            out.append(name)
    return out
