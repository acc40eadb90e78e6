"""Regular against Sobolev training over a grid of runs: learning-rate choice on validation
data, where a diverged seed makes its setting lose, and the convergence check (paired verdicts:
:mod:`sobolev.common.stats`).

A run table has one row per trained model with the columns of :data:`CONFIG_KEYS`, ``lr``,
``seed``, ``val_mse``, ``test_mse`` and ``test_grad_mse``. Used by Section 4.1's grid and by
Section 3's networks on piecewise-linear targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CONFIG_KEYS = ["function", "n_train", "method", "normalisation", "weight"]


def diverged(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose validation error is not finite (a diverged model)."""
    return runs[~pd.Series(runs.val_mse.astype(float)).apply(lambda v: v == v and abs(v) != float("inf"))]


def mean_validation_error(runs: pd.DataFrame, keys: list[str], sort: bool = True) -> pd.DataFrame:
    """Mean validation MSE per ``keys`` group, a non-finite seed making its group infinite: a
    choice made on it never goes to a setting where a seed diverged."""
    scored = runs.assign(val_mse=runs.val_mse.astype(float).fillna(float("inf")))
    return scored.groupby(keys, sort=sort)["val_mse"].mean().reset_index()


def select_lr(runs: pd.DataFrame, keys: list[str] = CONFIG_KEYS) -> pd.DataFrame:
    """Keep, for each configuration (a group of ``keys``), the learning rate with the lowest
    mean validation MSE.

    A learning rate at which any seed diverged (NaN or infinite validation error) scores
    infinity, so it never wins on its surviving seeds; ties (e.g. every rate diverged) go to
    the smaller rate.
    """
    score = mean_validation_error(runs, [*keys, "lr"], sort=False)
    score = score.sort_values([*keys, "val_mse", "lr"])
    best = score.drop_duplicates(keys)[[*keys, "lr"]]
    return runs.merge(best, on=[*keys, "lr"])


def converged(loss_90: pd.Series, loss_end: pd.Series, change: float) -> pd.Series:
    """Whether the training loss changed by less than ``change`` (relative to its value at 90%
    of training) over the last tenth, or sits at float32's floor (below 1e-10 at both checks,
    where relative changes are rounding noise). A diverged run (NaN) has not converged."""
    rel = (loss_end - loss_90).abs() / loss_90.abs()
    floor = (loss_end.abs() < 1e-10) & (loss_90.abs() < 1e-10)
    return ((rel < change) | floor) & loss_end.notna() & np.isfinite(loss_end)
