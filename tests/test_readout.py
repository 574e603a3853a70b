"""The read-out chain (caloforge.detector.readout) on hand-computable cases: one crystal with a known deposit."""

import dataclasses
import math

import numpy as np
import pytest

from caloforge.detector.readout import (
    BOSS_READOUT,
    N_CRYSTAL_IDS,
    ReadoutParams,
    crystal_gains,
    digitise,
    digitise_events,
    digitise_maps,
    event_readout_seed,
    readout_from_name,
    window_gids,
)

N = 40_000
GID = 1000
"""A barrel crystal."""
BARE = ReadoutParams(photons_per_mev=0.0, noise_per_sample_mev=0.0, pedestal_mev=0.0, threshold_gev=1e-9)
"""Every step switched off: the read-out is the deposit."""


def _one_crystal(e_gev: float, params: ReadoutParams, seed: int = 1) -> np.ndarray:
    """N read-outs of the same crystal with the same deposit (each its own noise), MeV."""
    return 1e3 * digitise(np.full(N, e_gev), np.full(N, GID), seed, params)


def test_all_steps_off_give_the_deposit_back():
    e = np.array([[0.0, 0.1, 2e-3], [0.7, 0.0, 1.0]])
    assert np.array_equal(digitise(e, np.full(e.shape, GID), 3, BARE), e)


def test_noise_on_a_single_sample_has_its_gaussian_spread():
    one_sample = dataclasses.replace(BARE, noise_per_sample_mev=0.27, n_samples=1, peak_sample=0)
    x = _one_crystal(0.1, one_sample)  # 100 MeV: far from the clipping at 0
    assert abs(x.mean() - 100.0) < 4 * 0.27 / math.sqrt(N)
    assert x.std() == pytest.approx(0.27, rel=0.02)


def test_the_maximum_of_the_noisy_pulse_matches_a_direct_simulation_of_the_samples():
    """BOSS's noise: noise on each of the 60 samples, clipped at 0, the maximum taken (here from a table)."""
    p = dataclasses.replace(BOSS_READOUT, photons_per_mev=0.0, pedestal_mev=0.0, threshold_gev=1e-9)
    shape = p.pulse_shape()
    assert shape.argmax() == p.peak_sample and shape.max() == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    for e_mev in (0.3, 5.0, 200.0):
        direct = np.maximum(e_mev * shape + 0.27 * rng.standard_normal((N, 60)), 0).max(axis=1)  # (N,)
        ours = _one_crystal(e_mev * 1e-3, p)
        assert ours.mean() == pytest.approx(direct.mean(), abs=0.01)
        assert ours.std() == pytest.approx(direct.std(), rel=0.05)
    # a pulse of zero height still reads the maximum of 60 clipped noise samples: ~2.3 sigma
    assert _one_crystal(1e-9, p).mean() == pytest.approx(0.27 * 2.32, rel=0.05)


def test_the_pedestal_is_subtracted():
    assert np.allclose(_one_crystal(0.05, dataclasses.replace(BARE, pedestal_mev=0.46)), 50.0 - 0.46)


def test_photo_statistics_variance_is_the_deposit_over_the_photons_per_mev():
    x = _one_crystal(0.06, dataclasses.replace(BARE, photons_per_mev=6000.0))  # 60 MeV
    assert x.var() == pytest.approx(60.0 / 6000.0, rel=0.03)  # MeV^2
    assert abs(x.mean() - 60.0) < 4 * 0.1 / math.sqrt(N)


def test_threshold_keeps_what_reaches_it_and_zeroes_the_rest():
    p = dataclasses.replace(BARE, threshold_gev=0.5e-3)
    e = np.array([0.3e-3, 0.4999e-3, 0.5e-3, 0.6e-3, 0.0])
    assert np.array_equal(digitise(e, np.full(5, GID), 0, p), [0.0, 0.0, 0.5e-3, 0.6e-3, 0.0])
    # with BOSS's noise: a 0.5 MeV deposit reads 0.5 + max-of-samples - 0.46 MeV; the fraction kept is that above
    x = _one_crystal(0.5e-3, dataclasses.replace(BOSS_READOUT, photons_per_mev=0.0))
    raw = _one_crystal(0.5e-3, dataclasses.replace(BOSS_READOUT, photons_per_mev=0.0, threshold_gev=-0.0))
    assert np.count_nonzero(x) == np.count_nonzero(raw >= 0.5)


def test_saturation_clips():
    assert np.allclose(_one_crystal(3.0, dataclasses.replace(BARE, saturation_gev=2.5)), 2500.0)


def test_calibration_spread_is_fixed_per_crystal_and_has_the_asked_spread():
    p = dataclasses.replace(BARE, residual_gain_spread=0.02)
    gains = crystal_gains(p)
    assert gains.shape == (N_CRYSTAL_IDS,)
    assert gains.std() == pytest.approx(0.02, rel=0.06) and gains.mean() == pytest.approx(1.0, abs=0.002)
    # one crystal: always the same gain, whatever the seed; across crystals the spread
    assert np.allclose(_one_crystal(1.0, p, seed=1), 1e3 * gains[GID])
    assert np.array_equal(_one_crystal(1.0, p, seed=1), _one_crystal(1.0, p, seed=2))
    ids = np.arange(480, 5760)
    read = digitise(np.ones(len(ids)), ids, 0, p)
    assert np.array_equal(read, gains[ids])
    # another calibration seed, another detector
    assert not np.array_equal(crystal_gains(dataclasses.replace(p, calibration_seed=1)), gains)


def test_dead_crystals_read_nothing():
    p = dataclasses.replace(BARE, dead_fraction=0.1)
    read = digitise(np.ones(N_CRYSTAL_IDS), np.arange(N_CRYSTAL_IDS), 0, p)
    assert np.count_nonzero(read == 0) / N_CRYSTAL_IDS == pytest.approx(0.1, abs=0.015)


def test_same_seed_same_output_other_seed_other_output():
    rng = np.random.default_rng(4)
    maps = rng.exponential(0.01, (50, 11, 11)) * (rng.random((50, 11, 11)) < 0.5)  # (50, 11, 11)
    theta, phi = rng.integers(0, 44, 50), rng.integers(0, 120, 50)
    maps[window_gids(theta, phi) < 0] = 0.0  # nothing beyond the barrel ends
    a = digitise_maps(maps, theta, phi, 7)
    assert np.array_equal(a, digitise_maps(maps, theta, phi, 7))
    assert not np.array_equal(a, digitise_maps(maps, theta, phi, 8))
    assert np.all(a[maps == 0] == 0)  # no noise hits: crystals without a deposit stay empty
    assert np.all((a == 0) | (a >= BOSS_READOUT.threshold_gev))


def test_each_event_reads_out_with_the_noise_of_its_own_seed():
    """digitise_events: an event's read-out is digitise with its seed's stream, whatever the events beside it."""
    rng = np.random.default_rng(3)
    maps = rng.exponential(0.01, (5, 11, 11)) * (rng.random((5, 11, 11)) < 0.5)  # GeV
    theta, phi, seeds = np.array([10, 20, 30, 40, 43]), np.array([0, 5, 60, 119, 7]), np.arange(100, 105)
    maps[window_gids(theta, phi) < 0] = 0.0  # nothing beyond the barrel ends
    read = digitise_events(maps, theta, phi, seeds)
    assert read.shape == maps.shape and read.dtype == np.float32
    alone = digitise_events(maps[3:4], theta[3:4], phi[3:4], seeds[3:4])
    assert np.array_equal(read[3:4], alone)
    by_hand = digitise(maps[2], window_gids(theta[2:3], phi[2:3])[0], event_readout_seed(102))
    assert np.array_equal(read[2], by_hand.astype(np.float32))
    assert not np.array_equal(digitise_events(maps[:1], theta[:1], phi[:1], seeds[1:2]), read[:1])


def test_window_gids_are_the_crystals_of_the_window():
    gids = window_gids(np.array([0, 20]), np.array([119, 3]))
    assert gids[1, 5, 5] == 480 + 120 * 20 + 3
    assert gids[0, 5, 6] == 480 + 0  # phi wraps
    assert np.all(gids[0, :5] == -1)  # beyond the barrel end


def test_bad_parameters_and_inputs_raise():
    for bad in ({"noise_per_sample_mev": float("nan")}, {"threshold_gev": -1.0}, {"photons_per_mev": float("inf")},
                {"peak_sample": 60}, {"dead_fraction": 2.0}, {"saturation_gev": 0.0}):
        with pytest.raises(ValueError):
            ReadoutParams(**bad)
    with pytest.raises(ValueError, match="crystal ids"):
        digitise(np.ones(2), np.array([1, 7000]), 0)
    with pytest.raises(ValueError, match="shape"):
        digitise(np.ones(2), np.ones(3, dtype=int), 0)
    assert readout_from_name("none") is None and readout_from_name("boss") == BOSS_READOUT
    with pytest.raises(ValueError):
        readout_from_name("bes2")
