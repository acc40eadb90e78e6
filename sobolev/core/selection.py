"""How much to trust derivative labels, decided from the user's own data: cross-validation of the derivative
weight λ among a few candidates, 0 (values only) included, in the same batched run as the final members.

For each output and candidate λ, ``folds`` models train with one fold of the points held out (point weight 0
in both loss terms, :func:`fold_point_weights`) beside the final members, which train on every point. Each fold
model predicts the values it did not see; the candidate with the lowest pooled held-out value error (mean over
every point, standardised units: 1 is the error of predicting the mean) is chosen and its full-data members are
the fitted model. A tie goes to the smaller λ, values only first: derivatives must earn their weight.

With noisy labels (``sobolev.fit(..., noisy=True)``) every member already holds out points to stop early; the
candidates are then compared on those members' held-out value errors instead (:func:`holdout_errors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def fold_ids(n: int, folds: int, seed: int) -> Tensor:
    """Each of ``n`` points' fold, ``(n,)`` in ``0 .. folds - 1``: a random partition into nearly equal folds
    (the same for every candidate, so that candidates are compared on the same held-out points)."""
    if not 2 <= folds <= n:
        raise ValueError(f"folds: expected 2 to {n} (the points), got {folds}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    ids = torch.empty(n, dtype=torch.long)
    ids[order] = torch.arange(n) % folds
    return ids


def fold_point_weights(ids: Tensor, folds: int) -> Tensor:
    """``(folds, n)``: row ``f`` weighs every point 1 but those of fold ``f``, which it holds out (0)."""
    return (ids.unsqueeze(0) != torch.arange(folds).unsqueeze(1)).double()


def cross_validated_errors(values: Tensor, targets: Tensor, ids: Tensor) -> Tensor:
    """Pooled held-out value error per group: ``values (G, folds, n)`` are the predictions of each group's fold
    models at every point, ``targets (G, n)``; each point is scored by the one model that held it out.
    Returns ``(G,)``: the mean over points of the squared held-out residual."""
    held_out = values.gather(1, ids.view(1, 1, -1).expand(values.shape[0], 1, -1)).squeeze(1)  # (G, n)
    return (held_out - targets).pow(2).mean(1)


def holdout_errors(values: Tensor, targets: Tensor, held_out: Tensor) -> Tensor:
    """Mean held-out value error per group: ``values (G, R, n)`` of each group's ``R`` members, ``targets (G, n)``,
    ``held_out (G, R, n)`` true where a member did not train on the point. Returns ``(G,)``."""
    sq = (values - targets.unsqueeze(1)).pow(2) * held_out
    return sq.sum((1, 2)) / held_out.sum((1, 2)).clamp_min(1)


@dataclass(frozen=True)
class Choice:
    """The chosen candidate per output and every candidate's held-out error.

    Attributes:
        lams: the candidates ``(C,)``, increasing, 0 (values only) first when present.
        errors: held-out value error per output and candidate ``(K, C)`` (standardised units).
        chosen: the chosen candidate's index per output ``(K,)``.
        variance: the variance of each output's standardised training values ``(K,)`` (the error of the mean).
        method: how the errors were measured (``"5-fold cross-validation"``, ``"held-out points"``).
    """

    lams: tuple[float, ...]
    errors: Tensor
    chosen: Tensor
    variance: Tensor
    method: str

    @classmethod
    def lowest(cls, lams: tuple[float, ...], errors: Tensor, variance: Tensor, method: str) -> Choice:
        """The candidate of lowest error per output (the first, i.e. smallest λ, among equals); a candidate
        whose error is not finite (a diverged model) never wins."""
        safe = torch.where(torch.isfinite(errors), errors, torch.inf)
        return cls(tuple(lams), errors, safe.argmin(1), variance, method)

    def lam(self, output: int) -> float:
        return self.lams[int(self.chosen[output])]

    def rows(self) -> list[dict]:
        """One row per output and candidate: ``output, lam, heldout_mse, heldout_r2, chosen`` (plain types, so the
        table saves with the model and reads back with ``torch.load(weights_only=True)``)."""
        return [
            {"output": k, "lam": lam, "heldout_mse": float(self.errors[k, c]),
             "heldout_r2": 1 - float(self.errors[k, c] / self.variance[k]), "chosen": c == int(self.chosen[k])}
            for k in range(self.errors.shape[0]) for c, lam in enumerate(self.lams)
        ]  # fmt: skip


__all__ = ["Choice", "cross_validated_errors", "fold_ids", "fold_point_weights", "holdout_errors"]
