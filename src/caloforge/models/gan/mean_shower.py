"""The generator's mean shower: a learned map added to its output, a polynomial in the normalised conditions."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from caloforge.detector.geometry import WINDOW
from caloforge.models.inputs import N_CONDITIONS

MAX_MEAN_SHOWER_DEGREE = 4
"""Highest polynomial degree of :class:`MeanShower` (degree 4 in the 6 conditions: 210 terms per particle)."""

POLYNOMIAL_MEAN_SHOWER_INIT_SCALE = 0.1
"""With a polynomial :class:`MeanShower` (degree > 0) the generator's last layer starts at this fraction of its
Keras initial weights, so that the untrained generator is the fitted mean shower plus small fluctuations
(without it, photon runs strayed far from Geant4's energy sums at the start and could die: see
``docs/experiments/gan.md``)."""

MEAN_SHOWER_RIDGE = 1e-4
"""Ridge of the mean-shower fit (:meth:`MeanShower.fit`), times the mean eigenvalue of the monomials' Gram
matrix. The conditions of a sample are not independent (photons from the interaction point meet their crystal
at dphi_mom = dphi_pos + the crystal's tilt), so some directions of the monomials hold no data; the ridge keeps
the coefficients there small, so that the mean shower stays bounded just off the training conditions."""

CONDITION_CLAMP = 4.0
"""The normalised conditions enter :class:`MeanShower` clamped to +-this many standard deviations, so that
the polynomial stays bounded for conditions outside the training range."""


class MeanShower(nn.Module):
    """The mean shower in the generator's output space (B, 1, 11, 11) as a polynomial of the normalised
    conditions, one per particle type: ``sum_t table[type, t] * m_t(c)`` over the monomials ``m_t`` of
    the 6 normalised conditions up to ``degree`` (84 for degree 3). Degree 0 is one fixed map.

    A learned table, started by :meth:`fit` at the least-squares fit to the Geant4 maps; the generator's
    networks add the shower fluctuations around it.
    """

    def __init__(self, n_particles: int, degree: int) -> None:
        super().__init__()
        if not 0 <= degree <= MAX_MEAN_SHOWER_DEGREE:
            raise ValueError(f"mean-shower degree must be in 0..{MAX_MEAN_SHOWER_DEGREE}, got {degree}")
        self.degree = degree
        # each monomial as ``degree`` indices into (1, c_1, ..., c_6): (1, 1, 4) is c_4, (2, 4, 4) is c_2 c_4^2,
        # in the order of itertools.combinations_with_replacement (the rows of the table)
        monomials = list(itertools.combinations_with_replacement(range(N_CONDITIONS + 1), degree)) or [()]
        # the monomials of degree d with first index i are x_i times those of degree d - 1 whose first index is
        # i or more, a contiguous tail of that list: where each tail starts, per degree 2 .. degree
        self._tails = [
            [sum(1 for m in itertools.combinations_with_replacement(range(N_CONDITIONS + 1), d - 1) if m[0] < i)
             for i in range(N_CONDITIONS + 1)]
            for d in range(2, degree + 1)
        ]
        self.table = nn.Parameter(torch.zeros(n_particles, len(monomials), WINDOW, WINDOW))  # (P, T, 11, 11)

    @property
    def n_terms(self) -> int:
        """Number of monomials per particle type."""
        return self.table.shape[1]

    def features(self, conditions: torch.Tensor) -> torch.Tensor:
        """The monomials (B, T) of normalised conditions (B, 6)."""
        if self.degree == 0:
            return conditions.new_ones(len(conditions), 1)
        c = conditions.clamp(-CONDITION_CLAMP, CONDITION_CLAMP)  # (B, 6)
        x = torch.cat([torch.ones_like(c[:, :1]), c], dim=1)  # (B, 7): the monomials of degree 1
        m = x
        for tails in self._tails:  # products of slices, not a gather (faster in the ONNX graph)
            m = torch.cat([x[:, i : i + 1] * m[:, start:] for i, start in enumerate(tails)], dim=1)
        return m  # (B, T)

    def forward(self, condition_input: torch.Tensor) -> torch.Tensor:
        """The mean maps (B, 1, 11, 11) for the generator's condition input (B, 6 [+ one-hot type]); for one
        fixed map (degree 0, one type) the map itself, (1, 1, 11, 11), which broadcasts."""
        if self.degree == 0 and len(self.table) == 1:
            return self.table  # (1, 1, 11, 11): no per-event work
        f = self.features(condition_input[:, :N_CONDITIONS])  # (B, T)
        table = self.table.flatten(2)  # (P, T, 121)
        if len(table) == 1:
            out = f @ table[0]  # (B, 121)
        else:
            onehot = condition_input[:, N_CONDITIONS:]  # (B, P)
            out = torch.einsum("bp,bt,ptk->bk", onehot, f, table)  # (B, 121)
        return out.view(-1, 1, WINDOW, WINDOW)

    def _normal_equations(
        self, conditions: torch.Tensor, rows: torch.Tensor, u: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Gram matrix (T, T) of the monomials of the conditions ``rows``, and their moments (T, 121) with
        maps ``u`` (if given), in float64."""
        gram = torch.zeros(self.n_terms, self.n_terms, dtype=torch.float64)
        moment = None if u is None else torch.zeros(self.n_terms, WINDOW * WINDOW, dtype=torch.float64)
        for chunk in torch.split(rows, 50_000):
            f = self.features(conditions[chunk].double().cpu())  # (n, T)
            gram += f.T @ f
            if moment is not None:
                moment += f.T @ u[chunk].reshape(len(chunk), WINDOW * WINDOW).double().cpu()
        return gram, moment

    def _ridge(self, gram: torch.Tensor, ridge: float) -> torch.Tensor:
        """The ridge term (T, T); none for the one fixed map of degree 0, which has nothing to regularise."""
        scale = ridge * torch.trace(gram) / self.n_terms if self.degree > 0 else 0.0
        return scale * torch.eye(self.n_terms, dtype=torch.float64)

    @torch.no_grad()
    def fit(
        self, u: torch.Tensor, conditions: torch.Tensor, particle_index: torch.Tensor, ridge: float = MEAN_SHOWER_RIDGE
    ) -> None:
        """Least-squares fit of the table to maps ``u`` (N, 11, 11) in the generator's output space, with
        their normalised conditions (N, 6) and particle indices (N,); a type without events keeps its
        table. Solved in float64 from the normal equations, with a ridge of ``ridge`` times the mean
        eigenvalue of the Gram matrix (:data:`MEAN_SHOWER_RIDGE`)."""
        for k in range(len(self.table)):
            rows = torch.nonzero(particle_index == k).squeeze(1)
            if not len(rows):
                continue
            gram, moment = self._normal_equations(conditions, rows, u)
            coef = torch.linalg.solve(gram + self._ridge(gram, ridge), moment)  # (T, 121)
            self.table[k] = coef.view(self.n_terms, WINDOW, WINDOW).to(self.table)

    @torch.no_grad()
    def regularise(
        self, conditions: torch.Tensor, particle_index: torch.Tensor, ridge: float = MEAN_SHOWER_RIDGE
    ) -> float:
        """Replace the table by the one that gives the closest mean showers on the normalised conditions
        (N, 6) of the training sample (ridge as in :meth:`fit`): the same function on those conditions, up
        to the ridge, without the large coefficients along monomial directions the conditions do not
        span, which a fit with a much smaller ridge leaves and training does not remove. Returns the rms
        change of the mean shower on those conditions (output space)."""
        change, count = 0.0, 0
        for k in range(len(self.table)):
            rows = torch.nonzero(particle_index == k).squeeze(1)
            if not len(rows):
                continue
            gram, _ = self._normal_equations(conditions, rows, None)
            table = self.table[k].double().cpu().flatten(1)  # (T, 121)
            new = torch.linalg.solve(gram + self._ridge(gram, ridge), gram @ table)  # (T, 121)
            delta = new - table
            change += float(torch.einsum("tk,ts,sk->", delta, gram, delta))  # sum over events of |F delta|^2
            count += len(rows) * WINDOW * WINDOW
            self.table[k] = new.view(self.n_terms, WINDOW, WINDOW).to(self.table)
        return (change / max(count, 1)) ** 0.5
