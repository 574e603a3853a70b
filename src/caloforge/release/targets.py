"""The targets a shipped model is held to, in one place, and the check of one model's validation record.

The targets of the model issue (each checked on the record that :mod:`caloforge.release.ship` writes into
``validation.json``, one entry per particle type):

* separation power below :data:`SEPARATION_POWER_MAX` on each of :data:`TARGET_OBSERVABLES` (E1x1 ... E11x11,
  the second moment, LAT, A20, A42; CaloChallenge 2022, arXiv:2410.21611, eq. 5.1);
* mean deposited energy (E11x11) within :data:`ENERGY_RESPONSE_TOLERANCE` of Geant4's in every momentum slice;
* spread (standard deviation) of E5x5 of one repeated track within :data:`SPREAD_TOLERANCE` of Geant4's, and
  of E5x5/p in every momentum slice;
* classifier AUC (model against Geant4) below :data:`CLASSIFIER_AUC_MAX` per input set (low-level: the cells;
  high-level: the observables);
* crystal occupancy chi^2 (any deposit, above 1 MeV) at most :data:`OCCUPANCY_FLOOR_FACTOR` times the Geant4
  floor's, where the record has it;
* at least :data:`SHOWERS_PER_S_MIN` showers per second from the ONNX export.
"""

from __future__ import annotations

from dataclasses import dataclass

TARGET_OBSERVABLES: tuple[str, ...] = (
    "e1x1_gev", "e3x3_gev", "e5x5_gev", "e7x7_gev", "e9x9_gev", "e11x11_gev",
    "second_moment_cm2", "lat", "a20", "a42",
)
"""The observables (names of :mod:`caloforge.validation.observables`) whose separation power the card lists and
the target bounds."""
SEPARATION_POWER_MAX = 0.02
"""Upper bound of the separation power of each of :data:`TARGET_OBSERVABLES` (strict)."""
ENERGY_RESPONSE_TOLERANCE = 0.01
"""Largest relative difference of the mean E11x11, model over Geant4, in any momentum slice (1 %)."""
SPREAD_TOLERANCE = 0.10
"""Largest relative difference of an E5x5 spread (standard deviation), model over Geant4 (10 %)."""
CLASSIFIER_AUC_MAX = {"low_level": 0.75, "high_level": 0.65}
"""Upper bound of the classifier AUC, model against Geant4, per input set (strict)."""
OCCUPANCY_FLOOR_FACTOR = 3.0
"""Upper bound of the crystal occupancy chi^2 of a model, in units of the Geant4 floor's."""
SHOWERS_PER_S_MIN = 25_000
"""Lower bound of the ONNX Runtime sampling speed, showers per second (batch 10k, 2 cores)."""
FULL_RANGE_GEV = (0.0, 3.0)
"""The momentum slice (GeV/c) that covers the whole sample: listed with the slices, not one of them."""


@dataclass(frozen=True)
class TargetCheck:
    """One target checked on one model.

    Attributes:
        what: the measured value in words, e.g. ``"classifier AUC 0.998"``.
        met: whether the target is met.
        goal: the target in words where ``what`` does not say it (``"target < 0.75"``), else None.
    """

    what: str
    met: bool
    goal: str | None = None

    def __str__(self) -> str:
        verdict = "met" if self.met else "NOT met"
        return f"{self.what} ({verdict}{f', {self.goal}' if self.goal else ''})"


def occupancy_words(key: str) -> str:
    """Words for an occupancy entry of a record (``above_0_mev``: any deposit, ``above_1_mev``: above 1 MeV)."""
    mev = key.removeprefix("above_").removesuffix("_mev")
    return "any deposit" if mev == "0" else f"above {mev} MeV"


def worst_slice(energy_response: list[dict]) -> dict:
    """The momentum slice (not the full range :data:`FULL_RANGE_GEV`) whose mean energy is furthest from
    Geant4's: an entry of ``energy_response`` (:func:`caloforge.release.studies.slice_study`)."""
    return max((r for r in energy_response if r["slice_gev"] != list(FULL_RANGE_GEV)),
               key=lambda r: abs(r["ratio"] - 1))


def separation_power_met(separation_power: float) -> bool:
    """Whether one observable's separation power is below :data:`SEPARATION_POWER_MAX`."""
    return separation_power < SEPARATION_POWER_MAX


def energy_response_met(ratio: float) -> bool:
    """Whether a mean-energy ratio, model over Geant4, is within :data:`ENERGY_RESPONSE_TOLERANCE` of 1."""
    return abs(ratio - 1) <= ENERGY_RESPONSE_TOLERANCE


def spread_met(std_ratio: float) -> bool:
    """Whether a spread ratio, model over Geant4, is within :data:`SPREAD_TOLERANCE` of 1."""
    return abs(std_ratio - 1) <= SPREAD_TOLERANCE


def check_targets(record: dict) -> list[TargetCheck]:
    """Each target, met or not, with its number, for one model's validation record (one particle's entry of
    ``validation.json``: its ``separation_power``, ``energy_response``, ``resolution``, ``resolution_slices``,
    ``classifier`` and ``onnx_showers_per_s``)."""
    sp = {k: v["model"] for k, v in record["separation_power"].items()}
    observables = [k for k in TARGET_OBSERVABLES if k in sp]
    below = [k for k in observables if separation_power_met(sp[k])]
    off = worst_slice(record["energy_response"])
    track = record["resolution"]["std_ratio"]
    checks = [
        TargetCheck(f"separation power < {SEPARATION_POWER_MAX:g} for {len(below)} of {len(observables)} observables",
                    len(below) == len(observables)),
        TargetCheck(f"mean energy per momentum slice within {100 * abs(off['ratio'] - 1):.1f} +- "
                    f"{100 * off['ratio_error']:.1f} %", energy_response_met(off["ratio"]),
                    f"target {100 * ENERGY_RESPONSE_TOLERANCE:g} %"),
        TargetCheck(f"E5x5 spread of one track {track:.2f} x Geant4's", spread_met(track),
                    f"target within {100 * SPREAD_TOLERANCE:g} %"),
    ]
    if record.get("resolution_slices"):
        worst = max(record["resolution_slices"], key=lambda r: abs(r["std_ratio"] - 1))
        checks.append(TargetCheck(f"E5x5/p spread per momentum slice, worst {worst['std_ratio']:.2f} x Geant4's at "
                                  f"{worst['slice_gev'][0]}-{worst['slice_gev'][1]} GeV/c",
                                  spread_met(worst["std_ratio"])))
    for kind, r in (record.get("classifier") or {}).items():
        if isinstance(r, dict) and "candidate" in r and kind in CLASSIFIER_AUC_MAX:
            auc, bound = r["candidate"]["auc"], CLASSIFIER_AUC_MAX[kind]
            checks.append(TargetCheck(f"classifier AUC {auc:.3f} ({kind.replace('_', '-')})", auc < bound,
                                      f"target < {bound:g}"))
    for key, occ in (record.get("occupancy") or {}).items():
        if occ.get("floor_chi2"):
            ratio = occ["chi2"] / occ["floor_chi2"]
            checks.append(TargetCheck(f"crystal occupancy, {occupancy_words(key)}: chi2 {ratio:.1f} x the floor's",
                                      ratio <= OCCUPANCY_FLOOR_FACTOR, f"target {OCCUPANCY_FLOOR_FACTOR:g} x"))
    speed = record["onnx_showers_per_s"]
    checks.append(TargetCheck(f"{speed:,.0f} showers/s", speed >= SHOWERS_PER_S_MIN,
                              f"target {SHOWERS_PER_S_MIN // 1000}k"))
    return checks
