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

A template serves several particles (:func:`resolve_template`): a top-level ``particles:`` list,
``${PARTICLE}`` where the particle's name goes and a ``per_particle:`` block of the settings that differ;
``load_config(path, particle="gamma")`` (``caloforge train CONFIG --particle gamma``) resolves it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from caloforge.detector.conditions import PARTICLES
from caloforge.models import ConfigError, ModelConfig, config_from_dict, config_to_dict, model_config_from_dict

SCHEDULERS: tuple[str, ...] = ("none", "cosine", "exponential", "step", "one-cycle")
PLANS: tuple[str, ...] = ("model", "energy", "distill")
"""What ``training.plan`` may name (:mod:`caloforge.training.plans`)."""

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
    """What the training loop does, for every model and plan (:mod:`caloforge.training.plans`).

    Attributes:
        plan: what the loop trains: ``model``, the model of the ``model:`` section; ``energy``, the
            deposited-energy model of the trained GAN ``init_from`` (:mod:`caloforge.training.energy_fit`);
            ``distill``, a smaller or fully connected generator that gives the GAN ``teacher``'s maps for the
            same noise (:mod:`caloforge.training.distill`), or with ``model: {name: student}`` a one-pass
            student of a two-stage ``teacher``, a flow or the diffusion model
            (:mod:`caloforge.training.distill_shape`). With ``energy`` and ``distill`` the model comes
            from the checkpoint: the ``model:`` section gives only its ``name`` and ``particles``.
        epochs: total number of epochs (raise it and resume to train longer).
        batch_size: events per batch (``model``: the last incomplete batch of an epoch is dropped;
            ``energy``: kept; ``distill``: (noise, condition) pairs per step).
        seed: seeds weight initialisation, shuffling, the validation split and the validation samples.
        device: ``auto`` (GPU when present), ``cpu`` or ``cuda``.
        scheduler: learning-rate schedule of every optimizer: per epoch ``none``, ``cosine`` (to 0 at
            ``epochs``), ``exponential`` (times ``scheduler_gamma`` per epoch), ``step`` (times
            ``scheduler_gamma`` every ``scheduler_step_epochs``), which only advance in epochs that use
            their optimizer; or per step ``one-cycle`` (plans ``energy`` and ``distill``: rising to
            ``learning_rate`` over the first 5 % of all steps, 30 % below 50 steps, then falling as a cosine;
            Smith and Topin, arXiv:1708.07120; a one-cycle run is resumed only with the same ``epochs``).
        scheduler_gamma, scheduler_step_epochs: parameters of the ``exponential`` and ``step`` schedules.
        selection_bins: histogram bins of the separation powers of the selection metric.
        sample_batch_size: conditions per network call when generating validation maps.
        progress: show tqdm progress bars.
        init_from: a model checkpoint (``best.pt`` of an earlier run, ``${CALOFORGE_CACHE}`` and ``~``
            expanded) whose weights and condition normalisation start the run instead of the fits to
            the training maps: fine-tuning with other losses or rates. Same model type, particles
            and architecture; null: start afresh. Plan ``energy``: the GAN whose energy model is fitted
            (required).
        learning_rate: plans ``energy`` (Adam's rate) and ``distill`` (the peak of ``one-cycle``); null:
            :data:`PLAN_LEARNING_RATE`. The ``model`` plan takes its rates from the ``model:`` section.
        teacher: plan ``distill``: the trained GAN or two-stage (flow) checkpoint to distil (required).
        student_channels: plan ``distill``: the student generator's channels (4x4 convolution, then each
            3x3 one; :attr:`caloforge.models.GANConfig.generator_channels`).
        student_hidden: plan ``distill``: hidden widths of a fully connected student generator instead
            (:attr:`caloforge.models.GANConfig.generator_hidden`; empty: convolutional); of a two-stage
            teacher, the widths of the student's network (:class:`caloforge.models.student.StudentModel`).
        steps_per_epoch: plan ``distill``: optimiser steps per epoch; null: the training conditions
            divided by ``batch_size``.
        pair_pool: plan ``distill`` of a two-stage teacher: (noise, condition) pairs the teacher samples once,
            before the first step, from which every step draws its batch at random; for a teacher whose sampling
            costs far more than the student's step (the diffusion model). Null: fresh pairs at every step.
        ema_decay: an exponential moving average of the weights, updated after every batch with this decay (its
            horizon about ``1 / (1 - ema_decay)`` batches; diffusers' ``EMAModel``, whose decay starts at 0 and
            grows as ``(1 + n) / (10 + n)`` after ``n`` batches up to ``ema_decay``): the averaged weights are
            validated and written to ``best.pt``, training goes on with the raw ones. Null: no average.
    """

    plan: Literal["model", "energy", "distill"] = "model"
    epochs: int = 20
    batch_size: int = 256
    seed: int = 1
    device: str = "auto"
    scheduler: Literal["none", "cosine", "exponential", "step", "one-cycle"] = "none"
    scheduler_gamma: float = 0.95
    scheduler_step_epochs: int = 10
    selection_bins: int = 50
    sample_batch_size: int = 8192
    progress: bool = True
    init_from: str | None = None
    learning_rate: float | None = None
    teacher: str | None = None
    student_channels: tuple[int, ...] = (8, 8, 8)
    student_hidden: tuple[int, ...] = ()
    steps_per_epoch: int | None = None
    pair_pool: int | None = None
    ema_decay: float | None = None

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "scheduler_step_epochs", "selection_bins", "sample_batch_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"training.{key}: must be positive, got {getattr(self, key)}")
        if not 0 < self.scheduler_gamma <= 1:
            raise ConfigError(f"training.scheduler_gamma: must be in (0, 1], got {self.scheduler_gamma}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"training.learning_rate: must be positive, got {self.learning_rate}")
        for key in ("steps_per_epoch", "pair_pool"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise ConfigError(f"training.{key}: must be positive, got {getattr(self, key)}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"training.ema_decay: must be in (0, 1), got {self.ema_decay}")
        only = {"learning_rate": ("energy", "distill"), "teacher": ("distill",), "steps_per_epoch": ("distill",),
                "pair_pool": ("distill",)}
        for key, plans in only.items():
            if getattr(self, key) is not None and self.plan not in plans:
                raise ConfigError(f"training.{key}: only for training.plan {' or '.join(plans)}, "
                                  f"not {self.plan!r}: leave it out")
        if self.scheduler == "one-cycle" and self.plan == "model":
            raise ConfigError("training.scheduler: one-cycle is for training.plan energy or distill")
        if self.plan == "distill" and self.init_from is not None:
            raise ConfigError("training.init_from: the distill plan starts from training.teacher; leave init_from out")

    @property
    def plan_learning_rate(self) -> float:
        """``learning_rate``, or :data:`PLAN_LEARNING_RATE` when it is null."""
        return PLAN_LEARNING_RATE if self.learning_rate is None else self.learning_rate


PLAN_LEARNING_RATE = 2e-3
"""Learning rate of the ``energy`` and ``distill`` plans when ``training.learning_rate`` is null."""


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


PARTICLE_PLACEHOLDER = "${PARTICLE}"
"""Stands for the particle in a template configuration (``--particle``): ``train_${PARTICLE}.h5``."""

TEMPLATE_KEYS: tuple[str, ...] = ("particles", "per_particle")
"""Top-level keys of a template configuration, beside the sections of :class:`TrainConfig`."""


def is_template(data: Any) -> bool:
    """Whether a parsed configuration is a particle template (it has a top-level ``particles:`` list)."""
    return isinstance(data, dict) and "particles" in data


def resolve_template(data: dict[str, Any], particle: str | None) -> dict[str, Any]:
    """The configuration of one particle from a parsed template; a plain configuration comes back as it is.

    A template lists the particles it serves (``particles: [gamma, e-, e+]``), writes ``${PARTICLE}`` where
    the particle's name goes (``model.particles``, sample and run paths) and may hold, under ``per_particle:``,
    the settings of one particle that differ from the sections below (merged over them, key by key)::

        particles: [gamma, e-, e+]
        per_particle:
          e-: {training: {scheduler: exponential, scheduler_gamma: 0.9}}
        model: {name: gan, particles: ["${PARTICLE}"], ...}
        data: {train_files: ["${CALOFORGE_CACHE}/samples/train_${PARTICLE}.h5"]}

    Raises:
        ConfigError: a template without ``particle`` or with one it does not list, ``particle`` for a
            plain configuration, ``${PARTICLE}`` outside a template, malformed ``particles``/``per_particle``.
    """
    if not is_template(data):
        if particle is not None:
            raise ConfigError(f"a particle ({particle}) was given, but this configuration is not a template "
                              "(it has no top-level 'particles:' list): leave the particle out")
        if PARTICLE_PLACEHOLDER in yaml.safe_dump(data):
            raise ConfigError(f"{PARTICLE_PLACEHOLDER} is used, but there is no top-level 'particles:' list of the "
                              "particles it stands for")
        return data
    choices = data["particles"]
    if not isinstance(choices, list) or not choices or not all(c in PARTICLES for c in choices):
        raise ConfigError(f"particles: a list of particle names from {', '.join(PARTICLES)}, got {choices!r}")
    if particle is None:
        raise ConfigError(f"a template for the particles {', '.join(choices)}: give one of them (--particle)")
    if particle not in choices:
        raise ConfigError(f"particle {particle!r}: this template is for {', '.join(choices)}")
    overrides = data.get("per_particle") or {}
    if not isinstance(overrides, dict) or any(k not in choices for k in overrides):
        raise ConfigError(f"per_particle: a mapping from particles of {', '.join(choices)} to settings, "
                          f"got {overrides!r}")
    merged = _merge({k: v for k, v in data.items() if k not in TEMPLATE_KEYS}, overrides.get(particle) or {})
    return _substitute(merged, PARTICLE_PLACEHOLDER, particle)


def _merge(base: Any, override: Any) -> Any:
    """``override`` over ``base``: mappings merged key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in override.items()}}
    return override


def _substitute(value: Any, placeholder: str, text: str) -> Any:
    """``value`` with ``placeholder`` replaced by ``text`` in every string, keys included."""
    if isinstance(value, str):
        return value.replace(placeholder, text)
    if isinstance(value, dict):
        return {_substitute(k, placeholder, text): _substitute(v, placeholder, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, placeholder, text) for v in value]
    return value


def read_config_dict(path: str | os.PathLike, particle: str | None = None) -> dict[str, Any]:
    """A YAML configuration file as plain dicts, a template resolved for ``particle`` (:func:`resolve_template`).

    Raises:
        ConfigError: missing file, invalid YAML, a template problem; the message starts with the path.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    try:
        return resolve_template(data or {}, particle)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def load_config(path: str | os.PathLike, particle: str | None = None) -> TrainConfig:
    """Read a training configuration from a YAML file; a template (:func:`resolve_template`) needs ``particle``.

    Raises:
        ConfigError: missing file, invalid YAML, unknown keys, wrong types or values, a template without a
            particle (the message names the choices).
    """
    data = read_config_dict(path, particle)
    try:
        return TrainConfig.from_dict(data)
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
