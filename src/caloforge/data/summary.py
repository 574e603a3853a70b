"""A human-readable summary of a sample file (``caloforge info``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from caloforge.data.io import iter_batches, read_attrs
from caloforge.detector.conditions import CONDITION_NAMES, PARTICLES_BY_PDG


def summarize(path: str | os.PathLike, batch_size: int = 50_000) -> str:
    """Provenance and a few physics numbers of a sample file, as printable text."""
    attrs = read_attrs(path)
    n = attrs["n_events"]
    lines = [
        f"file        {path}  ({Path(path).stat().st_size / 1e6:.1f} MB)",
        f"schema      {attrs['schema']} v{attrs['schema_version']}, caloforge {attrs.get('caloforge_version', '?')}",
        f"events      {n}",
        f"particle    {attrs.get('particle', '?')}",
        f"gun         {attrs.get('gun', {})}",
        f"attempts    {attrs.get('attempt_counts', {})}, next attempt {attrs.get('next_attempt', '?')}",
        f"Geant4      {attrs.get('geant4_version', '?')}, {attrs.get('physics_list', '?')}, "
        f"cut {attrs.get('production_cut_mm', '?')} mm, TOF {'on' if attrs.get('tof') else 'off'}, "
        f"B = {attrs.get('b_field_t', '?')} T",
        f"loopers     {attrs.get('track_limit', 'no track-length limit')}"
        + (f", from attempt {attrs['track_limit_from_attempt']}" if attrs.get("track_limit_from_attempt") else ""),
        f"data sets   {', '.join(f'{k}={v}' for k, v in attrs.get('geant4_datasets', {}).items())}",
        f"            ({attrs.get('geant4_data_note', '')})",
        f"created     {attrs.get('created_utc', '?')}, updated {attrs.get('updated_utc', '?')}",
    ]
    if n == 0:
        return "\n".join(lines + ["(no events)"])

    cond_min = np.full(len(CONDITION_NAMES), np.inf)
    cond_max = np.full(len(CONDITION_NAMES), -np.inf)
    sums = {"edep": 0.0, "p": 0.0, "window": 0.0, "not_reached": 0}
    contain = []
    pdgs: set[int] = set()
    for batch in iter_batches(path, batch_size):
        cond_min = np.minimum(cond_min, batch.conditions.min(axis=0))
        cond_max = np.maximum(cond_max, batch.conditions.max(axis=0))
        window = batch.maps_gev.sum(axis=(1, 2))
        sums["edep"] += float(batch.edep_barrel_gev.sum())
        sums["p"] += float(batch.p_gev.sum())
        sums["window"] += float(window.sum())
        sums["not_reached"] += int((~batch.truth["reached_emc"]).sum())
        high = (batch.p_gev > 1.0) & (batch.edep_barrel_gev > 0)
        contain.append(window[high] / batch.edep_barrel_gev[high])
        pdgs.update(int(p) for p in np.unique(batch.pdg))
    contain_all = np.concatenate(contain)
    lines.append(f"pdg         {', '.join(f'{p} ({PARTICLES_BY_PDG[p].name})' for p in sorted(pdgs))}")
    lines.append("conditions  " + "; ".join(
        f"{name} {lo:.4g}..{hi:.4g}" for name, lo, hi in zip(CONDITION_NAMES, cond_min, cond_max)
    ))
    lines.append(
        f"energy      mean deposit / p = {sums['edep'] / sums['p']:.4f}; "
        f"11x11 share of the barrel deposit = {sums['window'] / max(sums['edep'], 1e-300):.4%}"
    )
    if len(contain_all):
        lines.append(
            f"            p > 1 GeV/c: 11x11 share mean {contain_all.mean():.4%}, median {np.median(contain_all):.4%}"
        )
    lines.append(
        f"truth       {sums['not_reached']} primaries ({sums['not_reached'] / n:.2%}) did not reach the EMC "
        "(converted or stopped in front of it)"
    )
    return "\n".join(lines)
