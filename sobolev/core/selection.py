"""How much to trust derivative labels, decided from the user's own data: cross-validation of the derivative
weight λ among a few candidates, 0 (values only) included, in the same batched run as the final members.

For each output and candidate λ, ``folds`` models train with one fold of the points held out (point weight 0
in both loss terms, :func:`fold_point_weights`) beside the final members, which train on every point. Each fold
model predicts the values it did not see, and each candidate's held-out value error is pooled over every point
(standardised units: 1 is the error of predicting the mean). The default weight (the recipe's ``lam``, 1) is kept
unless another candidate beats it by more than one standard error of the paired per-point difference (the
one-standard-error rule, :meth:`Choice.prefer`): the data must clearly favour another weight, as values only
(λ = 0) where derivatives hurt; a difference within the noise of a handful of held-out points (JENN's 4-point
test) keeps the default. Its full-data members are the fitted model.

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


def cross_validated_residuals(values: Tensor, targets: Tensor, ids: Tensor) -> Tensor:
    """Squared held-out residual of every point, ``(G, n)``: ``values (G, folds, n)`` are the predictions of each
    group's fold models at every point, ``targets (G, n)``; each point is scored by the one model that held it out."""
    held_out = values.gather(1, ids.view(1, 1, -1).expand(values.shape[0], 1, -1)).squeeze(1)  # (G, n)
    return (held_out - targets).pow(2)


def cross_validated_errors(values: Tensor, targets: Tensor, ids: Tensor) -> Tensor:
    """Pooled held-out value error per group, ``(G,)``: the mean of :func:`cross_validated_residuals` over points."""
    return cross_validated_residuals(values, targets, ids).mean(1)


def holdout_residuals(values: Tensor, targets: Tensor, held_out: Tensor) -> Tensor:
    """Each point's squared held-out residual, averaged over the members that held it out, ``(G, n)`` (NaN where no
    member held it out): ``values (G, R, n)`` of each group's ``R`` members, ``targets (G, n)``, ``held_out
    (G, R, n)`` true where a member did not train on the point."""
    sq = ((values - targets.unsqueeze(1)).pow(2) * held_out).sum(1)
    count = held_out.sum(1)
    return torch.where(count > 0, sq / count.clamp_min(1), torch.nan)


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

    @classmethod
    def prefer(cls, lams: tuple[float, ...], residuals: Tensor, variance: Tensor, method: str,
               default: float) -> Choice:  # fmt: skip
        """The one-standard-error rule: per output, the candidate of lowest mean held-out error when it beats the
        ``default`` weight by more than one standard error of their paired per-point difference, else the default.
        ``residuals (K, C, n)``: squared held-out residuals per output, candidate and point (NaN: not held out). A
        candidate whose error is not finite never wins; without ``default`` among ``lams``, the lowest error wins."""
        errors = torch.nanmean(residuals, 2)
        plain = cls.lowest(lams, errors, variance, method)
        if default not in lams:
            return plain
        d = lams.index(default)
        chosen = plain.chosen.clone()
        for k in range(errors.shape[0]):
            best = int(plain.chosen[k])
            if best == d or not torch.isfinite(errors[k, d]):
                continue
            diff = residuals[k, best] - residuals[k, d]
            diff = diff[torch.isfinite(diff)]
            se = float(diff.std() / diff.numel() ** 0.5) if diff.numel() > 1 else float("inf")
            if not float(diff.mean()) + se < 0:  # not clearly better than the default: keep it
                chosen[k] = d
        return cls(tuple(lams), errors, chosen, variance, method)

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


__all__ = [
    "Choice",
    "cross_validated_errors",
    "cross_validated_residuals",
    "fold_ids",
    "fold_point_weights",
    "holdout_errors",
    "holdout_residuals",
]
