"""Classifier two-sample test: a small network trained to tell a generated sample from Geant4.

After the CaloChallenge 2022 evaluation (Krause et al., arXiv:2410.21611, section 5.2): the events of
both samples are split into training, validation and test sets (60/20/20 % by default, per sample);
a fully connected network learns to tell them apart on the training set, with early stopping on the
validation loss; its output is calibrated on the validation set with isotonic regression; on the
test set we report

* the ROC AUC of the network output (0.5: the samples cannot be told apart, 1: always told apart),
  with its bootstrap standard deviation over the test events;
* the Jensen-Shannon divergence estimated from the calibrated output: for balanced classes the
  binary cross-entropy of the optimal classifier is ``ln 2 - JSD`` (nats), so
  ``JSD = (ln 2 - BCE_calibrated) / ln 2`` in bits, in [0, 1] (clipped at 0, where the calibrated
  classifier does no better than a coin).

Both samples are balanced first (the larger one is randomly cut to the size of the smaller one), so
that AUC and JSD have their usual meaning.

Inputs, as in CaloChallenge: *low level* -- the 121 cell energies, log-transformed
(``log(1 + E / 1 MeV)``), plus the 6 conditions (:func:`low_level_inputs`); *high level* -- the
scalar shower observables plus the 6 conditions (:func:`high_level_inputs`). Every column is
standardised with the training split's mean and standard deviation. Non-finite entries (observables
of empty showers) are replaced by the training mean and flagged in one extra 0/1 column.

Why torch and not scikit-learn's ``MLPClassifier``: the CaloChallenge recipe stops on the *validation
loss* and keeps the best epoch's weights; ``MLPClassifier(early_stopping=True)`` stops on the
validation *accuracy* of an internal random split, which is a much noisier criterion for samples
that are hard to tell apart, and would not let us use the same validation set for the calibration.
torch is a dependency already (the generative models), the network is tiny, and on the CPU a run is
deterministic for a given seed (its RNG state is forked, so the caller's global seed is untouched).
Training runs on one CPU thread (set for the call, then restored): for a network this small the
threads only wait for each other (2 ms per step on one thread, 27 ms on two busy cores).
scikit-learn provides the isotonic regression and the ROC curve.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from caloforge.validation.metrics import bootstrap_error, bootstrap_values

CELL_LOG_SCALE_GEV = 1e-3
"""Scale of the cell-energy transform ``log(1 + E / scale)`` of the low-level inputs (1 MeV)."""
MIN_EVENTS_PER_SAMPLE = 20
"""Fewest events per sample (after balancing) that :func:`classifier_test` accepts."""


@dataclass(frozen=True)
class ClassifierResult:
    """Outcome of :func:`classifier_test` (reference = class 0, candidate = class 1).

    Attributes:
        auc: ROC AUC of the network output on the test split (dimensionless, 0.5 = indistinguishable).
        auc_error: bootstrap standard deviation of ``auc`` over the test events.
        jsd: Jensen-Shannon divergence from the calibrated test cross-entropy, bits, in [0, 1].
        bce_calibrated: binary cross-entropy of the calibrated output on the test split, nats
            (ln 2 = 0.693 for a coin).
        n_train, n_validation, n_test: events per split, both classes together.
        epochs: epochs run; best_epoch: the epoch (1-based) whose weights were kept.
        roc_fpr, roc_tpr: the test ROC curve (at most 201 points), for plots.
    """

    auc: float
    auc_error: float
    jsd: float
    bce_calibrated: float
    n_train: int
    n_validation: int
    n_test: int
    epochs: int
    best_epoch: int
    roc_fpr: np.ndarray = field(repr=False)
    roc_tpr: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        """The scalar results as a JSON-able dict (without the ROC curve)."""
        return {
            "auc": self.auc,
            "auc_error": self.auc_error,
            "jsd_bits": self.jsd,
            "bce_calibrated_nats": self.bce_calibrated,
            "n_train": self.n_train,
            "n_validation": self.n_validation,
            "n_test": self.n_test,
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
        }


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------


def _check_conditions(conditions: ArrayLike, n: int) -> np.ndarray:
    c = np.asarray(conditions, dtype=np.float64)
    if c.ndim != 2 or len(c) != n:
        raise ValueError(f"conditions must be an (N, d) array with N = {n} rows, got shape {c.shape}")
    return c


def low_level_inputs(maps_gev: ArrayLike, conditions: ArrayLike) -> np.ndarray:
    """Low-level classifier inputs: ``log(1 + E_cell / 1 MeV)`` of the 121 cells and the conditions.

    Args:
        maps_gev: (N, 11, 11) hit maps in GeV (negative energies are clipped to 0).
        conditions: (N, 6) conditions (:data:`caloforge.detector.CONDITION_NAMES`).

    Returns:
        (N, 127) float64 array.
    """
    m = np.asarray(maps_gev, dtype=np.float64)
    if m.ndim != 3:
        raise ValueError(f"expected hit maps of shape (N, 11, 11), got {m.shape}")
    cells = np.log1p(np.clip(m.reshape(len(m), -1), 0.0, None) / CELL_LOG_SCALE_GEV)
    return np.column_stack([cells, _check_conditions(conditions, len(m))])


def high_level_inputs(
    features: Mapping[str, ArrayLike], conditions: ArrayLike, *, names: Sequence[str] | None = None
) -> np.ndarray:
    """High-level classifier inputs: scalar observables and the conditions.

    Args:
        features: name -> (N,) observables (e.g. from
            :func:`caloforge.validation.observables.high_level_features`); NaN allowed.
        conditions: (N, 6) conditions.
        names: the features to use, in order (all of ``features`` when None).

    Returns:
        (N, len(names) + 6) float64 array.
    """
    keys = list(features) if names is None else list(names)
    if not keys:
        raise ValueError("no high-level features given")
    cols = [np.asarray(features[k], dtype=np.float64) for k in keys]
    n = len(cols[0])
    if any(c.shape != (n,) for c in cols):
        raise ValueError("high-level features must all be (N,) arrays of one length")
    return np.column_stack([*cols, _check_conditions(conditions, n)])


# ----------------------------------------------------------------------------------------------
# the test
# ----------------------------------------------------------------------------------------------


def _split(n: int, fractions: tuple[float, float, float], rng: np.random.Generator) -> list[np.ndarray]:
    """Random disjoint train / validation / test indices of n events."""
    order = rng.permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return [order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]]


def _prepare(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Standardise with the training rows; non-finite -> training mean, plus a 0/1 flag column."""
    bad = ~np.isfinite(x)
    x = np.where(bad, np.nan, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns without finite training values
        mean = np.nanmean(x[train], axis=0)
        std = np.nanstd(x[train], axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    z = np.where(bad, 0.0, (x - mean) / std)
    if bad.any():
        z = np.column_stack([z, bad.any(axis=1).astype(np.float64)])
    return z.astype(np.float32)


def _auc_with_error(y: np.ndarray, score: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    """ROC AUC of ``score`` for the labels ``y`` and its bootstrap standard deviation over the events
    (resamples holding one class only are left out)."""
    from sklearn.metrics import roc_auc_score

    def resampled_auc(idx: np.ndarray) -> np.ndarray:  # idx (1, N)
        i = idx[0]
        return np.array([roc_auc_score(y[i], score[i]) if 0 < y[i].sum() < len(i) else np.nan])

    auc = float(roc_auc_score(y, score))
    return auc, float(bootstrap_error(bootstrap_values(resampled_auc, rng, n_boot, (len(y),))))


def _train(
    z: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    *,
    seed: int,
    hidden: Sequence[int],
    dropout: float,
    learning_rate: float,
    batch_size: int,
    max_epochs: int,
    patience: int,
) -> tuple[np.ndarray, int, int]:
    """Train the network with early stopping; (probabilities of all rows, epochs run, best epoch)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[torch.nn.Module] = []
        width = z.shape[1]
        for h in hidden:
            layers += [torch.nn.Linear(width, int(h)), torch.nn.LeakyReLU(0.2), torch.nn.Dropout(dropout)]
            width = int(h)
        net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 1))
        opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        zt, yt = torch.from_numpy(z), torch.from_numpy(y)  # (2n, d), (2n,)
        x_tr, y_tr = zt[train], yt[train]
        x_val, y_val = zt[val], yt[val]
        gen = torch.Generator().manual_seed(seed)

        best_loss, best_epoch, best_state, epoch = float("inf"), 0, None, 0
        for epoch in range(1, max_epochs + 1):
            net.train()
            for idx in torch.randperm(len(x_tr), generator=gen).split(batch_size):
                opt.zero_grad()
                loss = loss_fn(net(x_tr[idx]).squeeze(1), y_tr[idx])
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(net(x_val).squeeze(1), y_val))
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch = val_loss, epoch
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            elif epoch - best_epoch >= patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        with torch.no_grad():
            prob = torch.sigmoid(net(zt).squeeze(1)).double().numpy()  # (2n,)
    return prob, epoch, best_epoch


def classifier_test(
    reference: ArrayLike,
    candidate: ArrayLike,
    *,
    seed: int = 0,
    hidden: Sequence[int] = (128, 128, 128),
    dropout: float = 0.1,
    learning_rate: float = 1e-3,
    batch_size: int = 256,
    max_epochs: int = 50,
    patience: int = 5,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    n_boot: int = 100,
) -> ClassifierResult:
    """Train a classifier to tell ``candidate`` (class 1) from ``reference`` (class 0); see the module.

    The network: ``len(hidden)`` fully connected layers with LeakyReLU and dropout, one logit out,
    trained with Adam on the binary cross-entropy in mini-batches; after each epoch the validation
    loss is computed, training stops when it has not improved for ``patience`` epochs (or after
    ``max_epochs``) and the best epoch's weights are kept. The raw output's AUC on the test split is
    reported; an isotonic regression fitted on the validation split calibrates the output for the JSD.

    Args:
        reference, candidate: (N, d) and (M, d) input arrays (e.g. :func:`low_level_inputs`); NaN allowed.
        seed: seed of the balancing, the splits, the weights, the batches and the bootstrap.
        hidden: widths of the hidden layers.
        dropout: dropout probability after each hidden layer.
        learning_rate: Adam's step size.
        batch_size: events per step.
        max_epochs: most epochs; patience: epochs without a better validation loss before stopping.
        fractions: train, validation and test fractions of each sample (summing to 1).
        n_boot: bootstrap resamples of the test split for the AUC's error.

    Returns:
        A :class:`ClassifierResult`.

    Raises:
        ValueError: inputs of different widths, not 2-D, or fewer than
            :data:`MIN_EVENTS_PER_SAMPLE` events in a sample; bad settings.
    """
    import torch
    from sklearn.isotonic import IsotonicRegression
    from sklearn.metrics import roc_curve

    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"classifier inputs must be (N, d) arrays of equal width, got {a.shape} and {b.shape}")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"fractions must be three positive numbers summing to 1, got {fractions}")
    if max_epochs < 1 or patience < 1 or batch_size < 1 or not 0 <= dropout < 1:
        raise ValueError("max_epochs, patience and batch_size must be positive and dropout in [0, 1)")
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    if n < MIN_EVENTS_PER_SAMPLE:
        raise ValueError(
            f"the classifier test needs at least {MIN_EVENTS_PER_SAMPLE} events per sample, got {len(a)} and {len(b)}"
        )
    a = a[np.sort(rng.choice(len(a), n, replace=False))]
    b = b[np.sort(rng.choice(len(b), n, replace=False))]
    x = np.concatenate([a, b])
    y = np.concatenate([np.zeros(n), np.ones(n)]).astype(np.float32)
    parts_a, parts_b = _split(n, fractions, rng), _split(n, fractions, rng)
    train, val, test = (np.concatenate([pa, pb + n]) for pa, pb in zip(parts_a, parts_b))
    z = _prepare(x, train)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small runs fastest (and reproducibly) on one thread
    try:
        prob, epoch, best_epoch = _train(
            z, y, train, val, seed=seed, hidden=hidden, dropout=dropout, learning_rate=learning_rate,
            batch_size=batch_size, max_epochs=max_epochs, patience=patience,
        )
    finally:
        torch.set_num_threads(threads)

    eps = 1e-6
    iso = IsotonicRegression(y_min=eps, y_max=1 - eps, out_of_bounds="clip").fit(prob[val], y[val])
    q = np.clip(iso.predict(prob[test]), eps, 1 - eps)
    y_test = y[test].astype(np.float64)
    bce = float(-np.mean(y_test * np.log(q) + (1 - y_test) * np.log(1 - q)))
    auc, auc_err = _auc_with_error(y_test, prob[test], n_boot, rng)
    fpr, tpr, _ = roc_curve(y_test, prob[test])
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 201)).astype(int))
    return ClassifierResult(
        auc=auc,
        auc_error=auc_err,
        jsd=float(max(0.0, (np.log(2.0) - bce) / np.log(2.0))),
        bce_calibrated=bce,
        n_train=len(train),
        n_validation=len(val),
        n_test=len(test),
        epochs=epoch,
        best_epoch=best_epoch,
        roc_fpr=fpr[keep],
        roc_tpr=tpr[keep],
    )
