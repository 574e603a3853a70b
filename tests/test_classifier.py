"""The classifier two-sample test: AUC ~0.5 for one distribution, ~1 for clearly different ones."""

import numpy as np
import pytest
import torch

from caloforge.validation.classifier import (
    MIN_EVENTS_PER_SAMPLE,
    classifier_test,
    high_level_inputs,
    low_level_inputs,
)


def _gauss(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def test_two_halves_of_one_distribution_give_auc_near_one_half():
    x = _gauss(3000)
    r = classifier_test(x[:1500], x[1500:], seed=3, n_boot=50)
    assert abs(r.auc - 0.5) < 0.06
    assert r.auc_error > 0 and abs(r.auc - 0.5) < 4 * r.auc_error
    assert 0.0 <= r.jsd < 0.05
    assert r.n_train == 1800 and r.n_validation == 600 and r.n_test == 600
    assert 1 <= r.best_epoch <= r.epochs


def test_clearly_different_samples_give_auc_near_one():
    x = _gauss(3000, seed=1)
    shifted = x[1500:] + np.r_[3.0, np.zeros(7)]
    r = classifier_test(x[:1500], shifted, seed=3, n_boot=50)
    assert r.auc > 0.95
    assert r.jsd > 0.5
    assert r.bce_calibrated < 0.4  # ln 2 = 0.69 for a coin
    assert r.roc_fpr[0] == 0 and r.roc_tpr[-1] == 1 and len(r.roc_fpr) <= 201
    d = r.to_dict()
    assert set(d) >= {"auc", "auc_error", "jsd_bits", "bce_calibrated_nats", "epochs", "best_epoch"}


def test_deterministic_and_leaves_global_state_alone():
    x = _gauss(600, seed=2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    a = classifier_test(x[:300], x[300:] + 0.5, seed=7, max_epochs=5, n_boot=10)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads
    b = classifier_test(x[:300], x[300:] + 0.5, seed=7, max_epochs=5, n_boot=10)
    assert a.auc == b.auc and a.jsd == b.jsd and a.epochs == b.epochs


def test_unbalanced_samples_and_nan_features():
    x = _gauss(900, seed=4)
    x[::7, 2] = np.nan  # e.g. observables of empty showers
    r = classifier_test(x[:600], x[600:], seed=1, max_epochs=5, n_boot=10)
    assert r.n_train + r.n_validation + r.n_test == 600  # balanced: 300 of each
    assert np.isfinite(r.auc)


def test_inputs():
    rng = np.random.default_rng(0)
    maps = rng.exponential(0.01, size=(5, 11, 11))
    cond = rng.normal(size=(5, 6))
    low = low_level_inputs(maps, cond)
    assert low.shape == (5, 127)
    np.testing.assert_allclose(low[:, :121], np.log1p(maps.reshape(5, -1) / 1e-3))
    np.testing.assert_array_equal(low[:, 121:], cond)
    high = high_level_inputs({"a": np.arange(5.0), "b": np.ones(5)}, cond, names=["b"])
    assert high.shape == (5, 7) and np.all(high[:, 0] == 1)
    with pytest.raises(ValueError, match="conditions"):
        low_level_inputs(maps, cond[:3])


def test_bad_input():
    x = _gauss(100)
    with pytest.raises(ValueError, match="equal width"):
        classifier_test(x, x[:, :3])
    with pytest.raises(ValueError, match=f"at least {MIN_EVENTS_PER_SAMPLE}"):
        classifier_test(x, x[:5])
    with pytest.raises(ValueError, match="fractions"):
        classifier_test(x, x, fractions=(0.5, 0.5, 0.0))
