"""Training in two processes on the CPU (caloforge.training.distributed, gloo): the same optimisation as one process
with the same total batch, only process 0 writes, resume; one launch of ``caloforge train`` under ``torchrun``."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import yaml
from test_training import _events

from caloforge.data.io import open_sample_writer
from caloforge.models import build_model, load_model
from caloforge.models.base import Batch
from caloforge.training import TrainConfig, train
from caloforge.training.distributed import Distributed

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BIN = Path(sys.executable).parent
FLOW = {"name": "flow", "particles": ["gamma"], "transforms": 2, "hidden": [32], "bins": 4}
GAN = {"name": "gan", "particles": ["gamma"], "regressor_epochs": 1, "loss": "wgan-gp", "n_critic": 2}
FLOW_LOSS_TOLERANCE = 0.03
"""Relative difference allowed between the epochs' mean training losses of the flow in one and in two processes:
the runs draw different dequantisation noise, which alone moves these means by 0.3-1 % (standard deviation of
single-process runs that differ only in that noise: 0.07, 0.025, 0.02 on losses of 8.7, 5.6, 3.7 nats)."""


@pytest.fixture(scope="module")
def toy_gamma(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("toy") / "train_gamma.h5"
    with open_sample_writer(path) as w:
        w.append(_events(200, 22, seed=22))
    return path


def _flow_config(sample: Path, epochs: int) -> dict:
    return {
        "model": FLOW,
        "data": {"train_files": [str(sample)], "val_fraction": 0.2, "max_val_events": 40},
        "training": {"epochs": epochs, "batch_size": 16, "seed": 3, "device": "cpu", "progress": False,
                     "sample_batch_size": 64},
    }


def _energy_config(sample: Path, gan: Path) -> dict:
    return {
        "model": {"name": "gan", "particles": ["gamma"]},
        "data": {"train_files": [str(sample)], "val_files": [str(sample)]},
        "training": {"plan": "energy", "init_from": str(gan), "epochs": 3, "batch_size": 27, "learning_rate": 2e-3,
                     "scheduler": "cosine", "seed": 0, "device": "cpu", "progress": False},
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shards_are_disjoint_and_make_up_the_batch():
    batch = Batch(torch.arange(7.0)[:, None, None].expand(7, 11, 11), torch.arange(42.0).view(7, 6), torch.arange(7))
    parts = [Distributed(rank=r, world_size=3, device=torch.device("cpu")).shard(batch) for r in range(3)]
    assert [len(p) for p, _ in parts] == [2, 2, 3] and sum(s for _, s in parts) == pytest.approx(1)
    assert torch.equal(torch.cat([p.particle for p, _ in parts]), batch.particle)
    assert all(p.neighbour_maps_gev is None for p, _ in parts)
    second = Distributed(rank=1, world_size=2, device=torch.device("cpu"))
    (z, x), share = second.shard((torch.zeros(4, 3), torch.ones(4)))
    assert z.shape == (2, 3) and x.shape == (2,) and share == 0.5


def _worker(rank: int, world: int, port: int, jobs: list[tuple[dict, str]]) -> None:
    """One of the processes: averaged gradients checked against the whole batch's, then the training ``jobs``
    (configurations and run folders, ``{rank}`` replaced) in turn."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        me = Distributed(rank=rank, world_size=world, device=torch.device("cpu"))
        torch.manual_seed(0)
        net, x = torch.nn.Linear(3, 2), torch.randn(10, 3)
        net(x).square().mean().backward()
        whole = [p.grad.clone() for p in net.parameters()]
        net.zero_grad(set_to_none=True)
        part, share = me.shard(x)
        loss = net(part).square().mean()
        loss.backward()
        total = me.average_gradients(torch.optim.SGD(net.parameters(), lr=0.1), loss, share)
        assert abs(total - float(net(x).square().mean().detach())) < 1e-5
        assert all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(net.parameters(), whole))
        for config, folder in jobs:
            train(TrainConfig.from_dict(config), folder.format(rank=rank), progress=False)
    finally:
        dist.destroy_process_group()


def test_two_processes_train_as_one(tmp_path, toy_gamma):
    gan = build_model({"name": "gan", "particles": ["gamma"]})
    gan.save(tmp_path / "gan.pt")
    energy = _energy_config(toy_gamma, tmp_path / "gan.pt")
    flow = str(tmp_path / "flow")
    jobs = [(energy, str(tmp_path / "energy{rank}")),  # a folder per process: process 1 must leave its own empty
            (_flow_config(toy_gamma, 1), flow), (_flow_config(toy_gamma, 2), flow),  # resumed after epoch 1
            (_flow_config(toy_gamma, 2), str(tmp_path / "straight")),
            ({**_flow_config(toy_gamma, 2), "model": GAN}, str(tmp_path / "gan"))]
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), jobs), nprocs=2)

    written = sorted(p.name for p in (tmp_path / "energy0").iterdir())
    assert written == ["best.pt", "config.yaml", "last.pt", "metrics.csv"]
    assert not (tmp_path / "energy1").exists()
    # the energy fit has no random numbers: two processes (shares of 13 and 14 events) give one process's numbers
    # to float rounding, which Adam amplifies from epoch to epoch (measured: 1e-6 after one, 1e-5 after three)
    train(TrainConfig.from_dict(energy), tmp_path / "one")
    one, two = _rows(tmp_path / "one" / "metrics.csv"), _rows(tmp_path / "energy0" / "metrics.csv")
    assert list(one[0]) == list(two[0])
    for key in ("train_energy_nll", "val_nll", "lr_energy"):
        assert [float(r[key]) for r in two] == pytest.approx([float(r[key]) for r in one], rel=1e-4)
    a = load_model(tmp_path / "one" / "best.pt", device="cpu").state_dict()
    b = load_model(tmp_path / "energy0" / "best.pt", device="cpu").state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-4, atol=1e-5) for k in a)
    # a run of two processes resumed after epoch 1 ends as one that was not interrupted
    resumed = torch.load(tmp_path / "flow" / "last.pt", weights_only=True)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    assert resumed["training_state"]["epoch"] == 2 and resumed["training_state"]["global_step"] == 2 * (160 // 16)
    assert all(torch.equal(resumed["state_dict"][k], v) for k, v in straight["state_dict"].items())
    # a WGAN-GP (three optimizers, a critic step per batch, a generator step every second one, a gradient penalty)
    rows = _rows(tmp_path / "gan" / "metrics.csv")
    assert [r["phase"] for r in rows] == ["pretrain", "train"]
    logged = [float(rows[1][k]) for k in ("train_generator_loss", "train_discriminator_gp", "val_sp_mean")]
    assert np.isfinite(logged).all()
    sampler = load_model(tmp_path / "gan" / "best.pt", device="cpu")
    assert sampler.sample(np.array([1.0, 0, 0.05, 0, 0, 10]), n=2, seed=0).shape == (2, 11, 11)


@pytest.mark.skipif(shutil.which("torchrun", path=str(BIN)) is None, reason="no torchrun beside the Python")
def test_caloforge_train_under_torchrun_follows_the_loss_curve_of_one_process(tmp_path, toy_gamma):
    config = tmp_path / "flow.yaml"
    config.write_text(yaml.safe_dump(_flow_config(toy_gamma, 3)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "--no-python",
         "caloforge", "train", str(config), "-o", str(tmp_path / "two"), "-q"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    train(TrainConfig.from_dict(_flow_config(toy_gamma, 3)), tmp_path / "one")
    one, two = _rows(tmp_path / "one" / "metrics.csv"), _rows(tmp_path / "two" / "metrics.csv")
    assert list(one[0]) == list(two[0]) and [r["epoch"] for r in two] == ["1", "2", "3"]
    loss_one = np.array([float(r["train_flow_loss"]) for r in one])
    loss_two = np.array([float(r["train_flow_loss"]) for r in two])
    assert np.all(np.diff(loss_two) < 0)
    assert loss_two == pytest.approx(loss_one, rel=FLOW_LOSS_TOLERANCE)
    model = load_model(tmp_path / "two" / "best.pt", device="cpu")
    assert model.sample(np.array([1.0, 0, 0.05, 0, 0, 10]), n=2, seed=1).shape == (2, 11, 11)
