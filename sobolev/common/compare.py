"""Regular against Sobolev training over a grid of runs: learning-rate choice on validation
data, where a diverged seed makes its setting lose, and the convergence check (paired verdicts:
:mod:`sobolev.common.stats`).

A run table has one row per trained model with the columns of :data:`CONFIG_KEYS`, ``lr``,
``seed``, ``val_mse``, ``diverged`` (:func:`is_diverged`), ``test_mse`` and ``test_grad_mse``.
Used by Section 4.1's grid, Section 5.2's Adam arm and by Section 3's networks on piecewise-linear targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

CONFIG_KEYS = ["function", "n_train", "method", "normalisation", "weight"]

#: A run has *diverged* when its validation MSE is not finite or above this multiple of the target's
#: mean square E f² on the validation points: a hundred times worse than predicting 0 everywhere,
#: which is roughly what an untrained network does (so a too-small rate that barely trains is slow,
#: not diverged, even on raw targets far from 0). A rate that blows up lands orders of magnitude
#: above it, often without the inf/NaN that stops the training loop.
DIVERGED_FACTOR = 100.0


class DivergenceError(RuntimeError):
    """Every candidate of a configuration diverged: nothing can be chosen or decided."""


def is_diverged(val_mse: Any, mean_square: Any) -> np.ndarray:
    """Per run, whether it diverged (:data:`DIVERGED_FACTOR`): ``val_mse`` and ``mean_square``
    (E f² of the run's target on its validation points) are arrays or Series of equal length."""
    val, ms = np.asarray(val_mse, float), np.asarray(mean_square, float)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(val) | (val > DIVERGED_FACTOR * ms)


def diverged(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs marked ``diverged`` (:func:`is_diverged`)."""
    return runs[runs.diverged.astype(bool)]


def select_lr(runs: pd.DataFrame, keys: list[str] = CONFIG_KEYS, *, key_name: str) -> pd.DataFrame:
    """Keep, for each configuration (a group of ``keys``), the learning rate with the lowest
    mean validation MSE.

    A learning rate at which any seed diverged (the ``diverged`` column) scores infinity, so it
    never wins on its surviving seeds, and no verdict is ever computed from a diverged run: a
    configuration whose every rate has a diverged seed raises :class:`DivergenceError`, naming
    ``key_name`` (the parameter listing the rates, e.g. ``"regression.lrs"``) and the configuration.
    Ties go to the smaller rate.
    """
    scored = runs.assign(val_mse=runs.val_mse.astype(float).where(~runs.diverged.astype(bool), np.inf))
    score = scored.groupby([*keys, "lr"], sort=False)["val_mse"].mean().reset_index()
    score = score.sort_values([*keys, "val_mse", "lr"])
    best = score.drop_duplicates(keys)
    lost = best[~np.isfinite(best.val_mse)]
    if len(lost):
        where = "; ".join(", ".join(f"{k}={v}" for k, v in zip(keys, r, strict=True)) for r in lost[keys].values[:3])
        more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
        rates = sorted(float(r) for r in runs.lr.unique())
        raise DivergenceError(
            f"every learning rate in {key_name} = {rates} diverged for {where}{more} (a seed's validation MSE "
            f"not finite or above {DIVERGED_FACTOR:g} × E f² at each rate): lower {key_name}. Nothing was written."
        )
    return runs.merge(best[[*keys, "lr"]], on=[*keys, "lr"])


def converged(loss_90: pd.Series, loss_end: pd.Series, change: float) -> pd.Series:
    """Whether the training loss changed by less than ``change`` (relative to its value at 90%
    of training) over the last tenth, or sits at float32's floor (below 1e-10 at both checks,
    where relative changes are rounding noise). A diverged run (NaN) has not converged."""
    rel = (loss_end - loss_90).abs() / loss_90.abs()
    floor = (loss_end.abs() < 1e-10) & (loss_90.abs() < 1e-10)
    return ((rel < change) | floor) & loss_end.notna() & np.isfinite(loss_end)
