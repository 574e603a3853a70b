"""Shared test set-up: Geant4 data for offline machines, small sample files made once per session."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ENV_SH = Path(__file__).resolve().parents[1].parent / "shared" / "geant4-data" / "env.sh"


def _source_geant4_env() -> None:
    """Take the Geant4 data variables from ../shared/geant4-data/env.sh unless they are set already."""
    if "G4LEDATA" in os.environ or not ENV_SH.exists():
        return
    out = subprocess.run(
        ["bash", "-c", f". '{ENV_SH}' && env -0"], check=True, capture_output=True
    ).stdout.decode()
    for item in out.split("\0"):
        key, _, value = item.partition("=")
        if key.startswith("G4") or key == "GEANT4_DATA_DIR":
            os.environ[key] = value


_source_geant4_env()


@pytest.fixture(scope="session")
def photon_sample(tmp_path_factory) -> Path:
    """60 photons of 1 GeV/c in random barrel directions, made with the real Geant4 application."""
    from caloforge.data.production import make_sample
    from caloforge.fullsim.runner import GunSpec

    path = tmp_path_factory.mktemp("samples") / "gamma_1gev.h5"
    make_sample(path, GunSpec("gamma", momentum_gev=(1.0, 1.0), seed=7), 60, workers=1, progress=False)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: one thread is faster, above all on machines whose cores are busy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
