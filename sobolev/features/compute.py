"""The feature-update section's runs and statistics: regular and Sobolev training of the iteratively
linearised network (:mod:`sobolev.core.linearisation`) over the anchor interval K, with test errors at
every checkpoint of training (the phase diagram)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd
import torch

from sobolev.common.stats import LOSS, UNDECIDED, WIN, Interval, paired_difference, paired_ratio
from sobolev.common.utils import pick_device, set_threads
from sobolev.core.engine import evaluation_sets
from sobolev.core.functions import get_function
from sobolev.core.linearisation import predict_linearised, train_linearised
from sobolev.core.models import BatchedMLP
from sobolev.core.samples import make_sample
from sobolev.features.classification import run_classification
from sobolev.features.config import METHODS, FeaturesConfig, rounds

# A decided ratio counts as an effect only beyond this: a win needs its whole interval ≥ 10% below 1 (a loss ≥ 10%
# above); an interval inside (0.9, 1.11) is a difference no reader would call one (e.g. Beale's 0.999).
MIN_EFFECT = 0.1


def run_all(cfg: FeaturesConfig, progress: bool | TextIO = True) -> pd.DataFrame:
    """Train every (function, seed, loss, K) and evaluate it at every checkpoint.

    Returns one row per run and checkpoint: ``function``, ``seed``, ``method``, ``every`` (K),
    ``step`` (the checkpoint), ``rounds`` (anchors used up to it), ``test_mse``, ``test_nmse``
    (/ Var f), ``test_grad_mse``, ``train_mse``, ``train_nmse``.
    """
    set_threads(cfg.threads)
    device = pick_device(cfg.device)
    fns = {n: get_function(n) for n in cfg.functions}
    test, _, variance = evaluation_sets(fns, cfg.n_test)
    rows = []
    checkpoints = set(cfg.checkpoints)
    for method in METHODS:
        for every in cfg.every:
            keys = [(f, s) for f in cfg.functions for s in range(cfg.seeds)]
            for start in range(0, len(keys), cfg.ensemble_size):
                chunk = keys[start : start + cfg.ensemble_size]
                train = [make_sample(fns[f], cfg.n_train, s) for f, s in chunk]
                x = torch.stack([s.x for s in train]).to(device)
                t = torch.stack([s.y for s in train]).to(device)
                G = torch.stack([s.g for s in train]).to(device) if method == "sobolev" else None
                xt = torch.stack([test[f].x for f, _ in chunk]).to(device)
                yt = torch.stack([test[f].y for f, _ in chunk]).to(device).double()
                gt = torch.stack([test[f].g for f, _ in chunk]).to(device).double()
                var = np.array([variance[f] for f, _ in chunk])
                model = BatchedMLP.init([s for _, s in chunk], in_dim=x.shape[2], hidden=cfg.hidden, device=device)

                def evaluate(i: int, anchor: dict, model: BatchedMLP = model, x=x, t=t, xt=xt, yt=yt, gt=gt,
                             var=var, chunk=chunk, every=every, method=method) -> None:  # fmt: skip
                    if i not in checkpoints:
                        return
                    y, g = predict_linearised(model.params, anchor, xt)
                    mse = (y.double() - yt).pow(2).mean(1).cpu().numpy()
                    gmse = (g.double() - gt).pow(2).sum(2).mean(1).cpu().numpy()
                    ytr, _ = predict_linearised(model.params, anchor, x)
                    tr = (ytr - t).double().pow(2).mean(1).cpu().numpy()
                    for j, (f, s) in enumerate(chunk):
                        rows.append({"function": f, "seed": s, "method": method, "every": every, "step": i,
                                     "rounds": rounds(i, every), "test_mse": mse[j], "test_nmse": mse[j] / var[j],
                                     "test_grad_mse": gmse[j], "train_mse": tr[j],
                                     "train_nmse": tr[j] / var[j]})  # fmt: skip

                train_linearised(
                    model, x, t, cfg.lr, cfg.steps, every, G=G, weight=1.0 if G is not None else None,
                    log_every=cfg.log_every, desc=f"features: {method} K={every} ({len(chunk)} models)",
                    hint=f"features.lr = {cfg.lr} too large", progress=progress, after_step=evaluate,
                )  # fmt: skip
    return pd.DataFrame(rows)


def final(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs at the last checkpoint (the full budget)."""
    return runs[runs.step == runs.step.max()]


def effect_verdict(r: Interval) -> str:
    """``r``'s verdict, counted only when its whole interval is at least :data:`MIN_EFFECT` past no difference."""
    if r.verdict == WIN and r.high <= 1 - MIN_EFFECT:
        return WIN
    if r.verdict == LOSS and r.low >= 1 / (1 - MIN_EFFECT):
        return LOSS
    return UNDECIDED


def curve(runs: pd.DataFrame, error: str = "test_mse", shown: str = "test_nmse") -> pd.DataFrame:
    """Per function (or task), K and loss at the full budget: the median ``shown`` error over seeds,
    and the paired Sobolev / regular ratio of ``error`` with its t interval and verdict (win = Sobolev
    better; see :func:`effect_verdict`). For the digits students: ``error = shown = "test_kl"`` (to the
    teacher). ``fits``: with ``shown = "test_nmse"``, whether either arm's median beats predicting the mean
    (normalised MSE below 1); a cell where neither does is no evidence either way (undecided)."""
    end = final(runs)
    out = []
    for (fn, every), cell in end.groupby(["function", "every"], sort=True):
        both = cell[cell.method == "sobolev"].merge(cell[cell.method == "regular"], on="seed", suffixes=("", "_reg"))
        r: Interval = paired_ratio(both[error], both[f"{error}_reg"])
        regular, sobolev = float(both[f"{shown}_reg"].median()), float(both[shown].median())
        fits = shown != "test_nmse" or min(regular, sobolev) < 1
        out.append({"function": fn, "every": int(every), "rounds": int(cell.rounds.iloc[0]),
                    "regular": regular, "sobolev": sobolev, "ratio": r.estimate, "low": r.low, "high": r.high,
                    **r.evidence(), "seeds": r.n, "fits": fits,
                    "verdict": effect_verdict(r) if fits else UNDECIDED})  # fmt: skip
    return pd.DataFrame(out)


def updates_needed(table: pd.DataFrame, within: float) -> pd.DataFrame:
    """Per function and loss: the fewest anchors (rounds) whose median error is within ``within``
    (relative) of full training's (K = 1), over the K grid; NaN when none but K = 1 is."""
    out = []
    for fn, g in table.groupby("function", sort=True):
        g = g.sort_values("rounds")
        for method in METHODS:
            full = float(g.loc[g.every == 1, method].iloc[0])
            ok = g[g[method] <= (1 + within) * full]
            out.append({"function": fn, "method": method, "full_error": full,
                        "rounds_needed": int(ok.rounds.min()), "fixed_feature_error": float(g[method].iloc[0]),
                        "fixed_over_full": float(g[method].iloc[0] / full)})  # fmt: skip
    return pd.DataFrame(out)


def phase(runs: pd.DataFrame, function: str) -> pd.DataFrame:
    """Median test error over seeds per loss, checkpoint and K for ``function`` (the phase diagram)."""
    sub = runs[runs.function == function]
    return sub.groupby(["method", "step", "every"]).test_nmse.median().reset_index()


def accuracy_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Digits students at the full budget, per K: median test accuracy (labels) and agreement with the
    teacher per loss, and the paired difference Sobolev − regular in accuracy with its interval."""
    end = final(runs)
    out = []
    for every, cell in end.groupby("every", sort=True):
        both = cell[cell.method == "sobolev"].merge(cell[cell.method == "regular"], on="seed", suffixes=("", "_reg"))
        d = paired_difference(both.test_accuracy, both.test_accuracy_reg)
        out.append({"every": int(every), "rounds": int(cell.rounds.iloc[0]),
                    "regular_accuracy": float(both.test_accuracy_reg.median()),
                    "sobolev_accuracy": float(both.test_accuracy.median()),
                    "regular_agreement": float(both.test_agreement_reg.median()),
                    "sobolev_agreement": float(both.test_agreement.median()),
                    "difference": d.estimate, "low": d.low, "high": d.high, "verdict": d.verdict})  # fmt: skip
    return pd.DataFrame(out)


@dataclass
class Result:
    """Everything the section computes (:func:`run`).

    Attributes:
        cfg: the section's config.
        runs: every regression run at every checkpoint (:func:`run_all`).
        table: Sobolev / regular per function and K (:func:`curve`); ``needed``: the feature
            updates each method needs to come within ``cfg.within`` of its K = 1 error
            (:func:`updates_needed`).
        digit_runs: every digits student at every checkpoint, and ``teacher`` the teacher's
            accuracy and the students' data (:func:`~sobolev.features.classification.run_classification`).
        digits, accuracy, digits_needed: the students' curve (test KL to the teacher), test
            accuracies and updates needed.
        phase: the phase diagram's function at every checkpoint (:func:`phase`).
    """

    cfg: FeaturesConfig
    runs: pd.DataFrame
    table: pd.DataFrame
    needed: pd.DataFrame
    digit_runs: pd.DataFrame
    teacher: dict
    digits: pd.DataFrame
    accuracy: pd.DataFrame
    digits_needed: pd.DataFrame
    phase: pd.DataFrame


def run(cfg: FeaturesConfig, progress: bool | TextIO = True) -> Result:
    """The regression runs, then the digits students, and every table of the section."""
    runs = run_all(cfg, progress=progress)
    table = curve(runs)
    digit_runs, teacher = run_classification(cfg, progress=progress)
    digits = curve(digit_runs.assign(function="digits"), error="test_kl", shown="test_kl")
    return Result(
        cfg, runs, table, updates_needed(table, cfg.within), digit_runs, teacher, digits, accuracy_table(digit_runs),
        updates_needed(digits, cfg.within), phase(runs, cfg.phase_function),
    )  # fmt: skip
