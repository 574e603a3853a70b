"""The interface every shower model shares, and the checkpoint format.

A :class:`ShowerModel` turns condition vectors (N, 6), in the order of
:data:`caloforge.detector.CONDITION_NAMES`, into 11 x 11 hit maps in GeV. It owns

* its typed configuration (a :class:`ModelConfig` dataclass, saved in every checkpoint),
* the condition normalisation (mean and standard deviation per condition, fitted on the training set
  with :meth:`ShowerModel.fit_normalisation` and kept as buffers in the state dict),
* the particle conditioning: ``config.particles`` lists the particle types the model covers. With one
  particle the model is dedicated to it (one model per type: one configuration per type); with several,
  a one-hot vector of the type is appended to the normalised conditions,
* what training needs from it (:meth:`configure_optimizers`, :meth:`training_plan`,
  :meth:`training_step`): :mod:`caloforge.training` runs the same loop for every model.

Checkpoints are single files written with :func:`torch.save` and read back with ``weights_only=True``:
the model name, its configuration as a plain dict, the caloforge version and the state dict.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

import caloforge
from caloforge.atomic import atomic_path
from caloforge.detector.conditions import CONDITION_NAMES, particle
from caloforge.detector.geometry import WINDOW
from caloforge.models.inputs import N_CONDITIONS, condition_array
from caloforge.models.registry import FAMILIES, model_class

CHECKPOINT_FORMAT = "caloforge-model"
CHECKPOINT_VERSION = 1


class ConfigError(ValueError):
    """A configuration with an unknown key, a value of the wrong type or an invalid value."""


class CheckpointError(ValueError):
    """A file that is not a caloforge model checkpoint, or one this version cannot read."""


# --------------------------------------------------------------------------------------------------
# typed dataclass configurations


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints accepted as floats, lists as tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not a valid {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return config_from_dict(tp, value, where=where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


@dataclass(frozen=True)
class RemovedKey:
    """A configuration key that an earlier caloforge had and this one does not: configurations and checkpoints
    that hold it at ``inert``, the value at which it did nothing, still load (the key is dropped); any other
    value is a :class:`ConfigError` that names the release that still has it.

    Attributes:
        inert: the value at which the option did nothing (its default).
        removed_on: the date of its removal (YYYY-MM-DD).
        last_release: the caloforge release (and git commit) that still has it.
    """

    inert: Any
    removed_on: str
    last_release: str

    def check(self, key: str, value: Any) -> None:
        """Raise :class:`ConfigError` (one line, naming ``key``) unless ``value`` is the inert value."""
        if value != self.inert:
            raise ConfigError(
                f"{key}: {value!r}: this option was removed on {self.removed_on} (only its former default "
                f"{self.inert!r} is still accepted); {self.last_release} still has it"
            )


def _drop_removed_keys(cls: type, data: dict, where: str) -> dict:
    """``data`` without the keys of ``cls.removed_keys`` (each checked to hold its inert value)."""
    removed: dict[str, RemovedKey] = getattr(cls, "removed_keys", {})
    for key in removed.keys() & data.keys():
        removed[key].check(f"{where}{key}", data[key])
    return {k: v for k, v in data.items() if k not in removed}


def config_from_dict(cls: type, data: dict, *, where: str = "") -> Any:
    """Build the dataclass ``cls`` from a plain dict; unknown keys and wrong types raise :class:`ConfigError`.

    Missing keys take the dataclass defaults. Keys an earlier version had (``cls.removed_keys``,
    :class:`RemovedKey`) are dropped when they hold the value at which they did nothing, and an error
    otherwise. ``where`` prefixes the key names in error messages (for example ``"model."``).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    data = _drop_removed_keys(cls, data, where)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"unknown configuration key {where}{key!r}{hint}; valid keys of {cls.__name__}: {', '.join(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from None


def config_to_dict(config: Any) -> dict:
    """A dataclass configuration as plain dicts, lists and scalars (safe for YAML and ``weights_only``)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(config)


@dataclass
class ModelConfig:
    """What every model configuration has.

    Attributes:
        name: the model family (the key of :data:`caloforge.models.registry.FAMILIES`).
        particles: the particle types the model covers (Geant4 names). One entry: a dedicated model;
            several: one model with a one-hot particle input.
    """

    removed_keys: ClassVar[dict[str, RemovedKey]] = {}
    """Keys of earlier versions that configurations and checkpoints may still hold (:class:`RemovedKey`)."""

    name: str = ""
    particles: list[str] = field(default_factory=lambda: ["gamma"])

    def __post_init__(self) -> None:
        if not self.particles:
            raise ConfigError("model.particles: give at least one particle type")
        for name in self.particles:
            try:
                particle(name)
            except ValueError as err:
                raise ConfigError(f"model.particles: {err}") from None
        if len(set(self.particles)) != len(self.particles):
            raise ConfigError(f"model.particles: duplicate entries in {self.particles}")


# --------------------------------------------------------------------------------------------------
# devices


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when a GPU is present, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` as given."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is available (use 'auto' or 'cpu')")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda'") from None


# --------------------------------------------------------------------------------------------------
# the training interface


@dataclass
class Batch:
    """A batch of Geant4 events on the model's device.

    Attributes:
        maps_gev: (B, 11, 11) deposited energies, GeV.
        conditions: (B, 6) raw conditions (:data:`CONDITION_NAMES` order and units).
        particle: (B,) index of the particle type in ``config.particles``.
        neighbour_maps_gev: (B, 11, 11) maps of each event's nearest neighbour in condition space (another
            Geant4 event of the same type; :func:`caloforge.training.data.nearest_neighbours`), GeV, or
            None. Only models that ask for them (:attr:`ShowerModel.uses_neighbours`) get them.
        neighbour_conditions: (B, 6) raw conditions of those neighbours, or None.
    """

    maps_gev: torch.Tensor
    conditions: torch.Tensor
    particle: torch.Tensor
    neighbour_maps_gev: torch.Tensor | None = None
    neighbour_conditions: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.maps_gev.shape[0])


@dataclass(frozen=True)
class TrainingStep:
    """One optimizer step a model asks the training loop for.

    Attributes:
        name: the step, passed to :meth:`ShowerModel.training_step`; also the key of its optimizer in
            :meth:`ShowerModel.configure_optimizers`.
        every: run it on every ``every``-th batch (for example the generator of a WGAN-GP after
            ``n_critic`` critic steps).
    """

    name: str
    every: int = 1


# --------------------------------------------------------------------------------------------------
# the model interface


class ShowerModel(nn.Module, ABC):
    """Base class of the generative shower models (maps in GeV from conditions).

    Subclasses set ``name`` and ``config_class``, build their networks from ``config`` and implement
    :meth:`_sample_batch` and the training methods; a family is known by its entry in
    :data:`caloforge.models.registry.FAMILIES`.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.particles: tuple[str, ...] = tuple(config.particles)
        self.register_buffer("cond_mean", torch.zeros(N_CONDITIONS))  # (6,)
        self.register_buffer("cond_std", torch.ones(N_CONDITIONS))  # (6,)
        self.register_buffer("normalisation_fitted", torch.tensor(False))

    # ---- conditions -------------------------------------------------------------------------------

    @property
    def n_particle_inputs(self) -> int:
        """Length of the one-hot particle vector (0 for a model dedicated to one particle)."""
        return len(self.particles) if len(self.particles) > 1 else 0

    @property
    def n_condition_inputs(self) -> int:
        """Width of the condition input of the networks: 6 normalised conditions (+ one-hot type)."""
        return N_CONDITIONS + self.n_particle_inputs

    def fit_normalisation(self, conditions: np.ndarray) -> None:
        """Fit the condition normalisation (per-condition mean and standard deviation) on training conditions (N, 6)."""
        c = np.asarray(conditions, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != N_CONDITIONS or len(c) == 0:
            raise ValueError(f"conditions must be a non-empty (N, {N_CONDITIONS}) array, got shape {c.shape}")
        std = np.maximum(c.std(axis=0), 1e-6)
        self.cond_mean.copy_(torch.as_tensor(c.mean(axis=0), dtype=torch.float32))
        self.cond_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        self.normalisation_fitted.fill_(True)

    def for_inference(self) -> ShowerModel:
        """The model in the form to export or deploy (the same function, possibly faster); the default
        is the model itself."""
        return self

    def fit_maps(
        self, maps_gev: np.ndarray, conditions: np.ndarray, particle_index: np.ndarray | None = None
    ) -> None:
        """Fit whatever the model starts from the training maps (N, 11, 11) in GeV, their conditions (N, 6)
        and the indices of their particle types in ``particles`` (N,; None: all of the first), once before
        training, after :meth:`fit_normalisation`; the default does nothing."""

    def calibrate(
        self,
        maps_gev: np.ndarray,
        conditions: np.ndarray,
        particle_index: np.ndarray | None = None,
        *,
        seed: int = 0,
        batch_size: int = 8192,
    ) -> None:
        """Fit what the model sets from its own samples against Geant4's after training (for example the
        flow's per-cell thresholds), on training maps (N, 11, 11) in GeV with their conditions (N, 6) and
        particle indices (N,; None: all of the first); the training loop calls it after every epoch, before
        the validation. The default does nothing."""

    def normalisation(self) -> dict[str, dict[str, float]]:
        """The condition normalisation as ``{name: {"mean": ..., "std": ...}}`` (units of each condition)."""
        return {
            n: {"mean": float(m), "std": float(s)}
            for n, m, s in zip(CONDITION_NAMES, self.cond_mean.tolist(), self.cond_std.tolist())
        }

    def condition_input(self, conditions: torch.Tensor, particle_index: torch.Tensor) -> torch.Tensor:
        """Network input (B, 6 [+ n_particles]) from raw conditions (B, 6) and particle indices (B,)."""
        x = (conditions - self.cond_mean) / self.cond_std  # (B, 6)
        if self.n_particle_inputs:
            onehot = nn.functional.one_hot(particle_index.long(), self.n_particle_inputs).to(x.dtype)
            x = torch.cat([x, onehot], dim=1)  # (B, 6 + n_particles)
        return x

    def particle_index(self, particle_: str | int | None) -> int:
        """Index in ``config.particles`` of a particle given by name or PDG id (None: the only one)."""
        if particle_ is None:
            if len(self.particles) > 1:
                raise ValueError(f"this model covers {', '.join(self.particles)}: pass particle=...")
            return 0
        name = particle(particle_).name
        if name not in self.particles:
            raise ValueError(f"this model covers {', '.join(self.particles)}, not {name}")
        return self.particles.index(name)

    # ---- sampling ---------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        for t in self.parameters():
            return t.device
        return self.cond_mean.device

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters of the whole model (all its networks)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @abstractmethod
    def _sample_batch(
        self, conditions: torch.Tensor, particle_index: torch.Tensor, rng: np.random.Generator
    ) -> torch.Tensor:
        """Maps (B, 11, 11) in GeV for raw conditions (B, 6) on the model's device; randomness from ``rng``."""

    def sample(
        self,
        conditions: np.ndarray,
        n: int | None = None,
        *,
        particle: str | int | None = None,
        seed: int | None = None,
        batch_size: int = 8192,
    ) -> np.ndarray:
        """Generate hit maps.

        Args:
            conditions: (N, 6) conditions in the order and units of :data:`CONDITION_NAMES`, or one
                vector (6,) to repeat ``n`` times (repeated simulation of one track).
            n: number of maps for a single condition vector (default 1); with (N, 6) it must be None or N.
            particle: particle type (name or PDG id); may be left out for a single-particle model.
            seed: the same seed gives the same maps; the noise is drawn with NumPy, so that it is also
                the same on any device and for any ``batch_size`` (the maps then agree to float rounding).
                None: fresh randomness.
            batch_size: conditions per network call.

        Returns:
            (N, 11, 11) float32 maps of deposited energy in GeV, non-negative; rows theta_index,
            columns phi_index, centre crystal at [5, 5].
        """
        c = condition_array(conditions, n, batch_size)
        index = np.full(len(c), self.particle_index(particle), dtype=np.int64)
        rng = np.random.default_rng(seed)
        out = np.empty((len(c), WINDOW, WINDOW), dtype=np.float32)
        for start, cb, pb in self.inference_batches(c, index, batch_size):
            maps = self._sample_batch(cb, pb, rng)  # (B, 11, 11) GeV
            out[start : start + len(cb)] = maps.clamp_min(0).float().cpu().numpy()
        return out

    def inference_batches(
        self, conditions: np.ndarray, particle_index: np.ndarray, batch_size: int
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(first row, conditions (B, 6), particle indices (B,)) on the model's device, ``batch_size`` rows at a
        time, of conditions (N, 6) and indices (N,), with the model in evaluation and inference mode meanwhile."""
        device = self.device
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(conditions), batch_size):
                    cb = torch.as_tensor(np.ascontiguousarray(conditions[start : start + batch_size]), device=device)
                    pb = torch.as_tensor(particle_index[start : start + batch_size], dtype=torch.long, device=device)
                    yield start, cb, pb
        finally:
            self.train(was_training)

    def for_particle(self, particle_: str | int) -> ParticleSampler:
        """A sampler bound to one particle type, with the ``sample(conditions, seed=...)`` the engine calls."""
        return ParticleSampler(self, self.particles[self.particle_index(particle_)])

    def samplers(self) -> dict[int, ParticleSampler]:
        """PDG id -> sampler for every particle the model covers (the ``models`` of the fast simulation)."""
        from caloforge.detector.conditions import PARTICLES

        return {PARTICLES[name].pdg: self.for_particle(name) for name in self.particles}

    # ---- training interface -----------------------------------------------------------------------

    @abstractmethod
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name (one per :class:`TrainingStep` name)."""

    @abstractmethod
    def training_plan(self, epoch: int) -> list[TrainingStep]:
        """The steps to run on each batch of ``epoch`` (0-based), in order."""

    @abstractmethod
    def training_step(self, step: str, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise for ``step`` on ``batch`` (the loop does backward and the optimizer step),
        and numbers to log."""

    def validation_step(self, batch: Batch) -> dict[str, float]:
        """Numbers to log on held-out events (means over ``batch``; called without gradients)."""
        return {}

    @property
    def n_pretrain_epochs(self) -> int:
        """Leading epochs that do not train the generative part (no checkpoint selection on them)."""
        return 0

    @property
    def faster_in_onnx_runtime(self) -> bool:
        """Whether the model samples faster from its ONNX export in ONNX Runtime than in PyTorch on a CPU (what
        the engine's ``--backend auto`` runs a checkpoint on): True unless a family measured otherwise."""
        return True

    @property
    def selection_metric(self) -> str:
        """The held-out number (a key of :func:`caloforge.training.selection.selection_metric`) whose lowest
        value chooses ``best.pt``: the mean separation power of the selection shapes, ``sp_mean``."""
        return "sp_mean"

    @property
    def uses_neighbours(self) -> bool:
        """Whether training batches must carry each event's nearest neighbour in condition space
        (:attr:`Batch.neighbour_maps_gev`)."""
        return False

    # ---- checkpoints ------------------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict: format, caloforge version, model name, configuration, state dict."""
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "caloforge_version": caloforge.__version__,
            "model": self.name,
            "config": config_to_dict(self.config),
            "normalisation": self.normalisation(),
            "n_parameters": self.n_parameters,
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }

    def round_weights_to_half(self) -> None:
        """Round the floating-point parameters (not the buffers) to the nearest 16-bit float, in place: the
        model then computes what it will compute after ``save(..., half_weights=True)`` and loading."""
        with torch.no_grad():
            for p in self.parameters():
                if p.is_floating_point():
                    p.copy_(p.half())

    def save(self, path: str | os.PathLike, *, half_weights: bool = False, **extra: Any) -> Path:
        """Write the model to one file (atomically); ``extra`` entries are stored beside it. With ``half_weights``
        the floating-point parameters are stored in 16 bits (half the file; loading casts them back to the
        model's precision: round them first with :meth:`round_weights_to_half` to save exactly the model in
        memory). Returns the path."""
        path = Path(path)
        ckpt = self.checkpoint()
        if half_weights:
            names = {name for name, p in self.named_parameters() if p.is_floating_point()}
            ckpt["state_dict"] = {k: v.half() if k in names else v for k, v in ckpt["state_dict"].items()}
        ckpt.update(extra)
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)
        return path

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], *, device: str | torch.device = "auto") -> ShowerModel:
        """Rebuild a model from a checkpoint dict (see :meth:`checkpoint`).

        Raises:
            CheckpointError: not a caloforge checkpoint, another format version, an unknown model family, or a
                configuration this version cannot build (for example an option removed since, switched on).
        """
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError("not a caloforge model checkpoint")
        if ckpt.get("format_version") != CHECKPOINT_VERSION:
            raise CheckpointError(
                f"checkpoint format version {ckpt.get('format_version')}, this caloforge reads {CHECKPOINT_VERSION}"
            )
        if ckpt.get("model") not in FAMILIES:
            raise CheckpointError(f"unknown model {ckpt.get('model')!r}; known: {', '.join(sorted(FAMILIES))}")
        model_cls = model_class(ckpt["model"])
        if cls is not ShowerModel and not issubclass(model_cls, cls):
            raise CheckpointError(f"the checkpoint holds a {model_cls.__name__}, not a {cls.__name__}")
        try:
            config = config_from_dict(model_cls.config_class, ckpt["config"], where="model.")
        except ConfigError as err:
            raise CheckpointError(str(err)) from None
        model = model_cls(config)
        try:
            model.load_state_dict(ckpt["state_dict"])
        except (RuntimeError, KeyError) as err:  # weights of another architecture or version of the family
            first = str(err).strip().splitlines()
            detail = first[1].strip() if len(first) > 1 else first[0] if first else type(err).__name__
            raise CheckpointError(
                f"the {ckpt['model']} weights do not fit this caloforge's {model_cls.__name__} ({detail}); "
                f"the checkpoint was written by caloforge {ckpt.get('caloforge_version', '?')}"
            ) from None
        return model.to(resolve_device(device))

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device = "auto") -> ShowerModel:
        """Read a model written by :meth:`save` (or a training checkpoint ``best.pt`` / ``last.pt``).

        Raises:
            CheckpointError: missing file, not a caloforge checkpoint, unknown model or format version.
        """
        path = Path(path)
        if not path.exists():
            raise CheckpointError(f"{path}: no such file")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 (torch raises many kinds on a bad file)
            raise CheckpointError(f"{path}: not a readable checkpoint ({err.__class__.__name__})") from None
        try:
            return cls.from_checkpoint(ckpt, device=device)
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None


@dataclass(frozen=True)
class ParticleSampler:
    """A model bound to one of its particle types (what :class:`caloforge.engine.FastSimulation` takes)."""

    model: ShowerModel
    particle: str

    def sample(self, conditions: np.ndarray, *, seed: int | None = None, batch_size: int = 8192) -> np.ndarray:
        """Maps (N, 11, 11) in GeV for conditions (N, 6); see :meth:`ShowerModel.sample`."""
        return self.model.sample(conditions, particle=self.particle, seed=seed, batch_size=batch_size)

