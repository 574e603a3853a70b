"""Where Geant4's data sets are, checked before Geant4 is imported.

Importing geant4_pybind without ``GEANT4_DATA_DIR`` looks for every data set that no environment variable
names in ``~/.geant4_pybind`` and, if one is missing, asks on the terminal whether to download the official
sets (about 2 GB); without a terminal it fails with a traceback. :func:`geant4_data_problem` finds those
cases, and the data the electromagnetic physics of :mod:`caloforge.fullsim.g4app` reads, without importing
it, so that ``caloforge fullsim`` can say in one line what to set instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

G4_DATASETS: dict[str, str] = {
    "G4LEDATA": "G4EMLOW",
    "G4ENSDFSTATEDATA": "G4ENSDFSTATE",
    "G4LEVELGAMMADATA": "PhotonEvaporation",
    "G4PARTICLEXSDATA": "G4PARTICLEXS",
    "G4NEUTRONHPDATA": "G4NDL",
    "G4RADIOACTIVEDATA": "RadioactiveDecay",
    "G4REALSURFACEDATA": "RealSurface",
    "G4SAIDXSDATA": "G4SAIDDATA",
    "G4ABLADATA": "G4ABLA",
    "G4INCLDATA": "G4INCL",
    "G4PIIDATA": "G4PII",
    "G4CHANNELINGDATA": "G4CHANNELING",
}
"""Geant4's data-set environment variables and the folder names of their official sets (without version)."""

G4_DATA_VARIABLES = tuple(G4_DATASETS)
EM_DATASETS = ("G4LEDATA", "G4ENSDFSTATEDATA")
"""The data sets that G4EmStandardPhysics reads (the low-energy EM tables, the nuclide table)."""

HOW_TO_SET = (
    "source the env.sh of an offline data set (e.g. ../shared/geant4-data/env.sh beside the repository), "
    "set GEANT4_DATA_DIR to a folder of the official Geant4 data sets, or download them once with "
    "`python -c 'import geant4_pybind'` (answer Y: about 2 GB into ~/.geant4_pybind)"
)


def _has_set(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds a data set ``name`` of any version (``G4EMLOW8.8``)."""
    return folder.is_dir() and any(p.name.startswith(name) and p.is_dir() for p in folder.iterdir())


def geant4_data_problem(environ: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """Why Geant4 would not start here, or would ask on the terminal to download data; None if it is fine.

    Args:
        environ: the environment to check (default: this process's).
        home: the home folder, where geant4_pybind keeps downloaded sets (default: this user's).
    """
    env = os.environ if environ is None else environ
    downloaded = (Path.home() if home is None else home) / ".geant4_pybind"
    named = (*G4_DATA_VARIABLES, "GEANT4_DATA_DIR")
    wrong = [f"{v}={env[v]}" for v in named if v in env and not Path(env[v]).is_dir()]
    if wrong:
        return f"Geant4 data: {', '.join(wrong)} is not a folder; {HOW_TO_SET}"
    if "GEANT4_DATA_DIR" in env:  # geant4_pybind leaves it to Geant4, which looks there for unnamed sets
        data_dir = Path(env["GEANT4_DATA_DIR"])
        missing = [v for v in EM_DATASETS if v not in env and not _has_set(data_dir, G4_DATASETS[v])]
        if missing:
            return (f"Geant4 data sets not found: {', '.join(missing)} not set and not in GEANT4_DATA_DIR={data_dir}; "
                    f"{HOW_TO_SET}")
    elif env.get("CI") != "true":  # with CI=true, geant4_pybind downloads the missing sets without asking
        # otherwise it asks on the terminal unless every set is named or downloaded
        unnamed = [v for v, name in G4_DATASETS.items() if v not in env and not _has_set(downloaded, name)]
        if unnamed:
            names = ", ".join(unnamed[:2]) + (f" and {len(unnamed) - 2} more" if len(unnamed) > 2 else "")
            return f"Geant4 data sets not found ({names} not set, GEANT4_DATA_DIR not set); {HOW_TO_SET}"
    return None
