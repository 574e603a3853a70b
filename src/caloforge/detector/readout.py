"""The EMC read-out: deposited energies per crystal -> the energies a BESIII analysis sees.

The steps and their values are BOSS's (BESIII Offline Software System; the public copy of its EMC packages
in the GitHub repository ``yuansicheng/bes3_emc``: ``Simulation/BOOST/EmcSim/EmcSim-00-00-46`` for the
digitisation, ``Reconstruction/EmcRec/EmcRec-01-02-58`` for the reconstruction of the hits), applied crystal
by crystal in this order (``docs/readout.md`` has the table of values and sources):

1. photo-statistics (``BesEmcWaveform::makeWaveform``): the amplitude is the deposit times
   ``N(n, sqrt(n)) / n``, ``n = photons_per_mev * E_MeV``, i.e. a Gaussian of variance ``E_MeV / photons_per_mev``
   MeV^2;
2. electronics noise on the pulse (``BesEmcWaveform::addElecNoise``): the CR-(RC)^4 pulse ``(t/T)^4 exp(4 - t/tau)``
   sampled ``n_samples`` times, Gaussian noise of ``noise_per_sample_mev`` added to every sample, each sample
   clipped at zero, and the maximum of the samples taken as the energy (``BesEmcDigitizer::Digitize``). The
   maximum of noisy samples lies above the pulse height (0.63 MeV for a pulse of zero height, ~0.4 MeV for a
   large one, with a spread below the per-sample noise): it is drawn here from a table of its quantiles against
   ``amplitude / noise_per_sample_mev``, made once by Monte Carlo of the sampled pulse (:func:`waveform_max_table`);
3. pedestal subtraction of ``pedestal_mev`` (``BesEmcDigitizer.cc``: "temp code, subtract pedestal");
4. saturation at ``saturation_gev`` (BOSS takes the energy before its ADC and clips nothing: infinite by default);
5. calibration: BOSS's simulation divides by the crystal's constant and its reconstruction multiplies by the
   same one (``BesEmcDigitizer.cc``, ``EmcRecDigit2Hit.cxx``), so that no spread remains; the residual
   crystal-to-crystal spread ``residual_gain_spread`` is caloforge's, not BOSS's (see its docstring), and dead
   channels (a constant <= 1e-5 in BOSS; none in the public constants) are a fraction ``dead_fraction``;
6. the reconstruction's hit threshold ``threshold_gev`` (``EmcRecDigit2Hit.cxx``: hits kept from
   ``ElectronicsNoiseLevel`` up).

Crystals without a deposit stay empty: BOSS's default ``EmcNoiseLevel = 3`` adds no noise hits to them
(``AddNoiseAll`` is commented out in ``BesEmcDigitizer.cc``). Per-crystal properties (gain, dead) are a fixed
property of the detector, drawn from ``calibration_seed`` and the crystal's pybes3 global id; the noise of a
call from its ``seed``. Not modelled: coherent noise (0 in BOSS), the energy BOSS counts in the photodiodes (x50,
``BesEmcSD.cc``: caloforge's Geant4 geometry has no photodiodes), the ADC's quantisation (read after the energy is
taken).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from caloforge.detector.geometry import N_PHI, N_THETA, WINDOW, crystal_gid, window_indices

__all__ = ["BOSS_READOUT", "N_CRYSTAL_IDS", "ReadoutParams", "crystal_gains", "digitise", "digitise_events",
           "digitise_maps", "event_readout_seed", "readout_from_name", "readout_record", "waveform_max_table",
           "window_gids"]

N_CRYSTAL_IDS = 6240
"""Number of pybes3 global crystal ids (both endcaps and the barrel: 0..6239)."""
_TABLE_DRAWS = 2048
"""Monte Carlo draws per amplitude of the table of the waveform maximum."""
_TABLE_SEED = 20240623
"""Fixed seed of the table of the waveform maximum (a property of the electronics, not of a run)."""
_TABLE_R = np.concatenate([[0.0], np.geomspace(0.05, 4.0e4, 72)])
"""Amplitudes of the table in units of the per-sample noise (beyond the last: the last row)."""


@dataclass(frozen=True)
class ReadoutParams:
    """The read-out chain's parameters; the defaults are BOSS's (source file and value in each docstring)."""

    photons_per_mev: float = 6000.0
    """Photo-statistics: photons per MeV; 0 switches the step off (as in BOSS). EmcSim ``dat/BesEmc.txt``
    (``photonsPerMeV`` = 6000)."""
    noise_per_sample_mev: float = 0.27
    """Incoherent electronics noise added to each sample of the pulse, MeV. EmcSim ``share/EmcSim.txt``
    (``G4Svc.EmcIncoherentNoise`` = 0.27; G4Svc's own default 0.2)."""
    n_samples: int = 60
    """Samples of the pulse. EmcSim ``dat/BesEmc.txt`` (``array_size`` = 60)."""
    sample_time_ns: float = 50.0
    """Time between samples. EmcSim ``dat/BesEmc.txt`` (``sampleTime`` = 50 ns)."""
    shaping_time_ns: float = 1000.0
    """CsI decay and shaping time constant tau. EmcSim ``dat/BesEmc.txt`` (``tau_CsI`` = 1000 ns)."""
    peak_time_ns: float = 4000.0
    """Pulse peak after the deposit (4 tau). EmcSim ``dat/BesEmc.txt`` (``peakTime`` = 4000 ns)."""
    peak_sample: int = 8
    """Sample at which the pulse peaks. EmcSim ``share/EmcSim.txt`` (``G4Svc.EmcTime`` = 8; with
    ``timeOffset`` = 2500 ns and ``peakTime`` of ``dat/BesEmc.txt`` the pulse of time bin 8 peaks at sample 8)."""
    pedestal_mev: float = 0.46
    """Subtracted from the maximum of the samples. EmcSim ``src/BesEmcDigitizer.cc``
    (``m_energy -= 0.46*MeV``)."""
    saturation_gev: float = math.inf
    """Energies above are clipped. BOSS clips nothing (its ``m_energy`` is read before the ADC of 2.5 GeV range,
    ``dat/BesEmc.txt`` ``ADC_highRange`` = 2500 MeV, which only prints a warning): infinite."""
    residual_gain_spread: float = 0.0
    """Relative r.m.s. of a per-crystal gain left after calibration. Not a BOSS value: BOSS divides by the
    constant of ``EmcCalibConstSvc`` in the simulation and multiplies by it in the reconstruction
    (``BesEmcDigitizer.cc``, ``EmcRecDigit2Hit.cxx``), so its MC has none. A knob for what caloforge's Geant4
    reference lacks beside the read-out (``docs/readout.md``: its measured effect)."""
    dead_fraction: float = 0.0
    """Fraction of dead crystals (read out as 0). BOSS: a constant <= 1e-5 (``BesEmcDigitizer.cc``); the public
    ``EmcRec/share/CalibConst.root`` (6240 constants, 0.53-1.18) has none: 0."""
    threshold_gev: float = 0.0005
    """Hits below are dropped. EmcRec ``share/EmcRecPara.dat`` (``ElectronicsNoiseLevel`` = 0.0005 GeV), used in
    ``EmcRecDigit2Hit.cxx``."""
    calibration_seed: int = 0
    """Seed of the per-crystal gains and dead crystals (a fixed detector, whatever the run's seed)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "saturation_gev":
                ok = not math.isnan(v) and v > 0
            elif f.name in ("n_samples", "calibration_seed"):
                ok = isinstance(v, (int, np.integer)) and v >= (1 if f.name == "n_samples" else 0)
            else:
                ok = math.isfinite(v) and v >= 0
            if not ok:
                raise ValueError(f"read-out parameter {f.name} = {v!r}: need a finite number >= 0"
                                 + (" (> 0, may be inf)" if f.name == "saturation_gev" else ""))
        if not 0 <= self.peak_sample < self.n_samples:
            raise ValueError(f"peak_sample {self.peak_sample} outside the {self.n_samples} samples")
        if self.dead_fraction > 1:
            raise ValueError(f"dead_fraction {self.dead_fraction} > 1")

    def pulse_shape(self) -> np.ndarray:
        """The pulse at each sample relative to its peak, (n_samples,): ``(t/T)^4 exp((T - t)/tau)``, t the time
        since the deposit (0 before it), T = ``peak_time_ns`` (BOSS's CR-(RC)^4 response, ``BesEmcWaveform.hh``)."""
        t = (np.arange(self.n_samples) - self.peak_sample) * self.sample_time_ns + self.peak_time_ns
        shape = (np.clip(t, 0, None) / self.peak_time_ns) ** 4 * np.exp((self.peak_time_ns - t) / self.shaping_time_ns)
        return np.where(t > 0, shape, 0.0)


BOSS_READOUT = ReadoutParams()
"""BOSS's read-out (the defaults)."""

READOUTS = {"boss": BOSS_READOUT}


def readout_from_name(name: str) -> ReadoutParams | None:
    """The read-out called ``name``: ``"boss"`` (:data:`BOSS_READOUT`) or ``"none"`` (None: bare deposits)."""
    if name == "none":
        return None
    if name not in READOUTS:
        raise ValueError(f"read-out {name!r}: choose one of none, {', '.join(READOUTS)}")
    return READOUTS[name]


@lru_cache(maxsize=8)
def waveform_max_table(shape: tuple[float, ...]) -> np.ndarray:
    """Quantiles of ``max_i max(0, r s_i + z_i) - r`` (z_i standard normal, s_i the pulse ``shape`` with peak 1)
    for each amplitude r of ``_TABLE_R``: (len(_TABLE_R), _TABLE_DRAWS), sorted along the last axis, in units
    of the per-sample noise. Made once per pulse shape from a fixed seed."""
    s = np.asarray(shape, dtype=np.float32)  # (S,)
    rng = np.random.default_rng(_TABLE_SEED)
    table = np.empty((len(_TABLE_R), _TABLE_DRAWS), dtype=np.float64)
    for k, r in enumerate(_TABLE_R):
        near = s[r * (1 - s) < 9.0]  # a sample 9 noise sigmas below the peak never holds the maximum
        z = rng.standard_normal((_TABLE_DRAWS, len(near)), dtype=np.float32)  # (D, S')
        z += np.float32(r) * near
        np.maximum(z, 0, out=z)
        table[k] = np.sort(z.max(axis=1).astype(np.float64) - r)
    return table


def _waveform_max_excess(r: np.ndarray, draw: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The maximum of the noisy samples minus the pulse height, in noise units, for amplitudes ``r`` (noise
    units): the quantile ``draw`` (integers, uniform in 0..table.shape[1] - 1) of ``table``, interpolated linearly
    in r between its rows (geometric steps)."""
    n_r, n_q = table.shape
    r = np.minimum(r, _TABLE_R[-1])
    step = math.log(_TABLE_R[2] / _TABLE_R[1])
    pos = np.log(np.maximum(r, _TABLE_R[1]) * (1.0 / _TABLE_R[1])) * (1.0 / step) + 1.0  # row of r beyond row 1
    k = np.minimum(pos.astype(np.int64), n_r - 2)
    k[r < _TABLE_R[1]] = 0
    wr = (r - _TABLE_R[k]) / (_TABLE_R[k + 1] - _TABLE_R[k])
    flat = table.ravel()
    lo = k * n_q + draw
    at_k = flat[lo]
    return at_k + (flat[lo + n_q] - at_k) * wr


@lru_cache(maxsize=8)
def _crystal_constants(calibration_seed: int, gain_spread: float, dead_fraction: float) -> tuple[np.ndarray, ...]:
    """Gain (>= 0) and dead flag of every global crystal id, (N_CRYSTAL_IDS,) each, from the calibration seed."""
    rng = np.random.default_rng([calibration_seed, 0x43414C49])
    gain = np.clip(1.0 + gain_spread * rng.standard_normal(N_CRYSTAL_IDS), 0.0, None)
    dead = rng.random(N_CRYSTAL_IDS) < dead_fraction
    gain.setflags(write=False)
    dead.setflags(write=False)
    return gain, dead


def crystal_gains(params: ReadoutParams) -> np.ndarray:
    """The per-crystal gain of ``params`` for every global crystal id, (N_CRYSTAL_IDS,), 0 for dead crystals."""
    gain, dead = _crystal_constants(int(params.calibration_seed), float(params.residual_gain_spread),
                                    float(params.dead_fraction))
    return np.where(dead, 0.0, gain)


def digitise(
    deposits_gev: np.ndarray, crystal_gid: np.ndarray, seed: int, params: ReadoutParams = BOSS_READOUT
) -> np.ndarray:
    """The read-out energies of crystals with the given deposits (module docstring: the steps).

    Args:
        deposits_gev: deposited energy per crystal, GeV, any shape; crystals <= 0 stay 0 (no noise hits).
        crystal_gid: pybes3 global crystal ids, same shape (ignored, may be -1, where the deposit is <= 0).
        seed: seed of the noise (the same seed and inputs give the same output).
        params: the read-out (default BOSS's).

    Returns:
        Read-out energies, GeV, float64, same shape: 0 below ``threshold_gev`` and for dead crystals.
    """
    deposits_gev = np.asarray(deposits_gev)
    gid = np.asarray(crystal_gid)
    if gid.shape != deposits_gev.shape:
        raise ValueError(f"deposits {deposits_gev.shape} and crystal ids {gid.shape} differ in shape")
    out = np.zeros(deposits_gev.shape, dtype=np.float64)
    hit = np.flatnonzero(deposits_gev > 0)
    if not len(hit):
        return out
    ids = gid.reshape(-1)[hit].astype(np.int64)
    if ids.min() < 0 or ids.max() >= N_CRYSTAL_IDS:
        raise ValueError(f"crystal ids must lie in 0..{N_CRYSTAL_IDS - 1} where there is a deposit")
    rng = np.random.default_rng(seed)
    e_gev = deposits_gev.reshape(-1)[hit].astype(np.float64)  # (H,)
    if params.photons_per_mev > 0:  # variance E_MeV / photons_per_mev in MeV^2
        e_gev = e_gev + np.sqrt(e_gev * 1e-3 / params.photons_per_mev) * rng.standard_normal(len(e_gev))
    sigma_gev = params.noise_per_sample_mev * 1e-3
    if sigma_gev > 0:
        table = waveform_max_table(tuple(params.pulse_shape().tolist()))
        r = e_gev / sigma_gev
        excess = _waveform_max_excess(r, rng.integers(0, table.shape[1], len(e_gev)), table)
        e_gev = np.where(r > 0, e_gev, 0.0) + sigma_gev * excess  # samples clipped at 0: no negative pulse
    else:
        e_gev = np.maximum(e_gev, 0.0)
    if params.pedestal_mev > 0:
        e_gev -= params.pedestal_mev * 1e-3
    e_gev = np.minimum(e_gev, params.saturation_gev)
    if params.residual_gain_spread > 0 or params.dead_fraction > 0:
        e_gev = e_gev * crystal_gains(params)[ids]
    out.reshape(-1)[hit] = np.where(e_gev >= params.threshold_gev, e_gev, 0.0)
    return out


def window_gids(theta_index: np.ndarray, phi_index: np.ndarray, size: int = WINDOW) -> np.ndarray:
    """Global crystal ids of the ``size x size`` windows around centre crystals, (N, size, size); -1 beyond the
    barrel ends."""
    rows, cols, inside = window_indices(theta_index, phi_index, size)
    return np.where(inside, crystal_gid(np.clip(rows, 0, N_THETA - 1), np.clip(cols, 0, N_PHI - 1)), -1)


def digitise_maps(
    maps_gev: np.ndarray, theta_index: np.ndarray, phi_index: np.ndarray, seed: int,
    params: ReadoutParams = BOSS_READOUT,
) -> np.ndarray:
    """:func:`digitise` of 11x11 maps (N, 11, 11, GeV) around centre crystals (N,): read-out maps, float32."""
    maps_gev = np.asarray(maps_gev)
    gids = window_gids(theta_index, phi_index, maps_gev.shape[-1])
    return digitise(maps_gev, gids, seed, params).astype(np.float32)


def readout_record(params: ReadoutParams) -> dict:
    """The read-out's parameters as a JSON-able dict, as sample files record them (``readout_json``) and compare
    them (lists where the parameters hold tuples)."""
    return json.loads(json.dumps(dataclasses.asdict(params)))


EVENT_READOUT_STREAM = 1
"""The stream of an event's read-out noise among those of its Geant4 seed (:func:`event_readout_seed`)."""


def event_readout_seed(event_seed: int) -> int:
    """The seed of the read-out noise of one Geant4 event: 64 bits of numpy's SeedSequence of (the event's Geant4
    seed, :data:`EVENT_READOUT_STREAM`)."""
    return int(np.random.SeedSequence([int(event_seed), EVENT_READOUT_STREAM]).generate_state(1, np.uint64)[0])


def digitise_events(
    maps_gev: np.ndarray, theta_index: np.ndarray, phi_index: np.ndarray, event_seeds: np.ndarray,
    params: ReadoutParams = BOSS_READOUT,
) -> np.ndarray:
    """:func:`digitise` of 11x11 maps (N, 11, 11, GeV) around centre crystals (N,), each event with the noise of its
    own seed (:func:`event_readout_seed` of ``event_seeds`` (N,), the events' Geant4 seeds): an event's read-out
    does not depend on the events beside it, so a sample made in chunks or in two goes reads out as one made in
    one go. Read-out maps (N, 11, 11), float32, GeV; about 0.2-0.4 ms per event."""
    maps_gev = np.asarray(maps_gev)
    gids = window_gids(theta_index, phi_index, maps_gev.shape[-1])  # (N, 11, 11)
    out = np.empty(maps_gev.shape, dtype=np.float32)
    for i, event_seed in enumerate(np.asarray(event_seeds)):
        out[i] = digitise(maps_gev[i], gids[i], event_readout_seed(event_seed), params)
    return out
