"""Training configurations: particle templates and the committed recipe configurations."""

from pathlib import Path

import pytest
import yaml

from caloforge.models import ConfigError
from caloforge.training.config import (
    TrainConfig,
    load_config,
    read_config_dict,
    resolve_sample_path,
    resolve_template,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))

PLAIN = {
    "model": {"name": "gan", "particles": ["gamma"]},
    "data": {"train_files": ["train_gamma.h5"]},
    "training": {"epochs": 3},
}
TEMPLATE = {
    "particles": ["gamma", "e-"],
    "per_particle": {"e-": {"model": {"lr_generator": 2.5e-4}, "training": {"scheduler": "exponential"}}},
    "model": {"name": "gan", "particles": ["${PARTICLE}"], "lr_generator": 5.0e-4},
    "data": {"train_files": ["${CALOFORGE_CACHE}/samples/train_${PARTICLE}.h5"]},
    "training": {"epochs": 3, "init_from": "${CALOFORGE_CACHE}/runs/nbmmd_${PARTICLE}/best.pt"},
}


def _write(tmp_path: Path, data: dict, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_plain_configuration_loads_unchanged_and_refuses_a_particle(tmp_path):
    path = _write(tmp_path, PLAIN)
    assert load_config(path).to_dict() == TrainConfig.from_dict(PLAIN).to_dict()
    with pytest.raises(ConfigError, match="not a template"):
        load_config(path, "gamma")


def test_template_resolves_placeholders_and_per_particle_settings(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    gamma, electron = load_config(path, "gamma"), load_config(path, "e-")
    assert list(gamma.model.particles) == ["gamma"]
    assert gamma.data.train_files == ["${CALOFORGE_CACHE}/samples/train_gamma.h5"]
    assert gamma.training.init_from == "${CALOFORGE_CACHE}/runs/nbmmd_gamma/best.pt"
    assert (gamma.model.lr_generator, gamma.training.scheduler) == (5.0e-4, "none")
    assert (electron.model.lr_generator, electron.training.scheduler) == (2.5e-4, "exponential")
    assert electron.training.epochs == 3  # settings not overridden stay
    assert electron.data.train_files == ["${CALOFORGE_CACHE}/samples/train_e-.h5"]
    # the same as a plain file written out for the particle
    plain = _write(tmp_path, read_config_dict(path, "e-"), "e-.yaml")
    assert load_config(plain).to_dict() == electron.to_dict()


def test_template_errors_are_one_clear_line(tmp_path):
    path = _write(tmp_path, TEMPLATE)
    with pytest.raises(ConfigError, match=r"c\.yaml: a template for the particles gamma, e-: give one of them"):
        load_config(path)
    with pytest.raises(ConfigError, match="this template is for gamma, e-"):
        load_config(path, "e+")
    bad_override = {**TEMPLATE, "per_particle": {"e+": {"training": {"epochs": 2}}}}
    with pytest.raises(ConfigError, match="per_particle"):
        load_config(_write(tmp_path, bad_override), "gamma")
    with pytest.raises(ConfigError, match="particles: a list"):
        load_config(_write(tmp_path, {**TEMPLATE, "particles": ["mu-"]}), "gamma")
    placeholder_only = {k: v for k, v in TEMPLATE.items() if k not in ("particles", "per_particle")}
    with pytest.raises(ConfigError, match="no top-level 'particles:'"):
        load_config(_write(tmp_path, placeholder_only))
    with pytest.raises(ConfigError, match="unknown configuration section"):  # a typo'd template key
        load_config(_write(tmp_path, {**TEMPLATE, "per_particles": {}}), "gamma")


def test_resolve_template_merges_key_by_key():
    data = resolve_template(TEMPLATE, "e-")
    assert "particles" not in data and "per_particle" not in data
    assert data["training"] == {"epochs": 3, "init_from": "${CALOFORGE_CACHE}/runs/nbmmd_e-/best.pt",
                                "scheduler": "exponential"}
    assert TEMPLATE["model"]["particles"] == ["${PARTICLE}"]  # the template itself is left as it was


def _committed(path: Path) -> list[tuple[str | None, TrainConfig]]:
    particles = yaml.safe_load(path.read_text()).get("particles") or (None,)
    return [(p, load_config(path, p)) for p in particles]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_committed_configs_load_and_have_no_absolute_paths(path, monkeypatch, tmp_path):
    monkeypatch.setenv("CALOFORGE_CACHE", str(tmp_path))
    for particle, cfg in _committed(path):
        assert not any(Path(f).is_absolute() for f in cfg.data.train_files + cfg.data.val_files)
        name = particle or cfg.model.particles[0]
        assert list(cfg.model.particles) == [name]
        assert resolve_sample_path(cfg.data.train_files[0]) == tmp_path / "samples" / f"train_{name}.h5"


def test_recipe_templates_keep_the_per_particle_settings_of_the_shipped_runs():
    """The settings that differ between the particles, as the shipped runs had them (the templates were checked
    against the per-particle files they replaced; docs/experiments/recipes.md)."""
    epochs = {s: {p: load_config(REPO / "configs" / f"{s}.yaml", p).training.epochs for p in ("gamma", "e-", "e+")}
              for s in ("nbmmd", "energy", "moments")}
    assert epochs == {"nbmmd": {"gamma": 4, "e-": 6, "e+": 5}, "energy": {"gamma": 9, "e-": 9, "e+": 9},
                      "moments": {"gamma": 5, "e-": 5, "e+": 5}}
    for stage, rates in (("nbmmd", (5e-4, 2e-4)), ("energy", (5e-4, 2e-4)), ("moments", (2.5e-4, 1e-4))):
        for p in ("gamma", "e-", "e+"):
            cfg = load_config(REPO / "configs" / f"{stage}.yaml", p)
            want = (2.5e-4, 1e-4) if p == "e-" else rates
            assert (cfg.model.lr_generator, cfg.model.lr_discriminator) == want, (stage, p)
            schedule = ("exponential", 0.9) if p == "e-" else ("none", 0.95)
            assert (cfg.training.scheduler, cfg.training.scheduler_gamma) == schedule, (stage, p)
    assert load_config(REPO / "configs" / "moments.yaml", "e+").training.init_from == (
        "${CALOFORGE_CACHE}/runs/energy_e+/best.pt")
