import numpy as np
import pytest
import torch

from caloforge.models import GAN, GANConfig
from caloforge.training.config import LoopConfig
from caloforge.training.distill import DistillPlan, student_of
from caloforge.training.epochs import train_in_memory

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _conditions(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([
        rng.uniform(0.1, 3.0, n), rng.uniform(0.6, 2.5, n), rng.uniform(-3.1, 3.1, n),
        rng.uniform(-2.5, 2.5, n), rng.uniform(-0.05, 0.05, n), rng.uniform(-2.5, 2.5, n),
    ]).astype(np.float32)


@pytest.fixture
def teacher() -> GAN:
    """An untrained seed-size GAN with a quadratic mean shower, its generator weights moved off their
    initial values so that its maps depend on noise and conditions."""
    torch.manual_seed(3)
    model = GAN(GANConfig(particles=("gamma",), output_transform="log", mean_shower_bias=True, mean_shower_degree=2))
    model.fit_normalisation(_conditions(500))
    with torch.no_grad():
        model.generator.mean_shower.table.normal_(0.0, 0.05)
        for p in model.generator.convs.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _distil(teacher: GAN, conditions: np.ndarray, *, steps: int = 200, **settings) -> DistillPlan:
    """A distillation of ``steps`` steps in one epoch, run in memory; returns the plan (student: ``plan.model``)."""
    loop = LoopConfig(plan="distill", teacher="in memory", epochs=1, steps_per_epoch=steps, batch_size=128,
                      learning_rate=5e-3, scheduler="one-cycle", seed=0, device="cpu", progress=False, **settings)
    plan = DistillPlan(teacher, loop, conditions, np.zeros(len(conditions), dtype=np.int64))
    plan.history = train_in_memory(plan)
    return plan


def test_student_keeps_everything_but_the_generator_convolutions(teacher):
    student = student_of(teacher, (8, 8, 8))
    assert student.config.generator_channels == (8, 8, 8)
    assert student.parameter_counts()["generator"] < teacher.parameter_counts()["generator"] / 2
    t, s = teacher.state_dict(), student.state_dict()
    shared = [k for k in t if not k.startswith("generator.") or ".mean_shower." in k]
    assert any(".mean_shower." in k for k in shared) and any(k.startswith("discriminator.") for k in shared)
    for key in shared:
        assert torch.equal(t[key], s[key]), key
    with pytest.raises(ValueError, match="generator_channels"):
        student_of(teacher, (8,))
    mlp = student_of(teacher, (8, 8, 8), hidden=(64,))
    assert mlp.config.generator_hidden == (64,) and hasattr(mlp.generator, "mlp")
    assert torch.equal(mlp.generator.mean_shower.table, teacher.generator.mean_shower.table)


def test_a_fully_connected_student_learns_the_teacher_too(teacher):
    plan = _distil(teacher, _conditions(2000, seed=1), student_hidden=(64, 64))
    assert plan.model.config.generator_hidden == (64, 64)
    assert plan.history[-1]["val_mse"] < 0.5 * plan.mse_start


def test_distillation_reproduces_the_teacher_and_leaves_it_unchanged(teacher):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    plan = _distil(teacher, _conditions(2000, seed=1), student_channels=(8, 8))
    student, row = plan.model, plan.history[-1]
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert row["val_mse"] < 0.5 * plan.mse_start and 0.5 < row["val_reproduced"] <= 1.0
    record = plan.record(plan.history)["distilled"]
    assert record["steps"] == 200 and record["mse"] == row["val_mse"] and record["mse_start"] == plan.mse_start
    # the same noise gives nearly the same map in GeV: closer than a second draw of the teacher (a student with
    # the right distribution but another function of the noise would be as far as that draw)
    cond = _conditions(500, seed=2)
    t_maps = teacher.sample(cond, seed=4)
    s_maps = student.sample(cond, seed=4)
    other = teacher.sample(cond, seed=5)
    assert np.abs(s_maps - t_maps).mean() < 0.8 * np.abs(other - t_maps).mean()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"conditions": np.zeros((5, 6))}, "at least 10"),
        ({"conditions": np.zeros((50, 5))}, r"\(N, 6\)"),
        ({"conditions": np.full((50, 6), np.nan)}, "NaN"),
        ({"steps_per_epoch": 9}, "at least 10 steps"),
        ({"particle_index": np.ones(50, dtype=int)}, "indices"),
    ],
)
def test_bad_distillation_input_is_refused(teacher, kwargs, message):
    args = {"conditions": _conditions(50), "particle_index": np.zeros(50, dtype=int), "steps_per_epoch": 10, **kwargs}
    loop = LoopConfig(plan="distill", teacher="x", epochs=1, steps_per_epoch=args.pop("steps_per_epoch"))
    with pytest.raises(ValueError, match=message):
        DistillPlan(teacher, loop, args["conditions"], args["particle_index"])
