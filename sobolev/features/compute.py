"""The feature-update section's runs and statistics: regular and Sobolev training of the iteratively
linearised network (:mod:`sobolev.core.linearisation`) over the anchor interval K, with test errors at
every checkpoint of training (the phase diagram)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd
import torch

from sobolev.common.stats import (
    LOSS,
    MIN_SEEDS,
    UNDECIDED,
    WIN,
    Interval,
    paired_difference,
    paired_effect_difference,
    paired_ratio,
)
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
    better; see :func:`effect_verdict`; ``interval_verdict``: the interval's own, before the minimum effect and
    the ``fits`` condition). For the digits students: ``error = shown = "test_kl"`` (to the
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
                    **r.evidence(), "seeds": r.n, "fits": fits, "interval_verdict": r.verdict,
                    "verdict": effect_verdict(r) if fits else UNDECIDED})  # fmt: skip
    return pd.DataFrame(out)


def recovery(runs: pd.DataFrame, within: float, error: str = "test_mse") -> pd.DataFrame:
    """How much of full training (K = 1) each K recovers, decided on paired seeds: per function, loss and K at the
    full budget, the geometric-mean ratio error(K) / error(K = 1) over seeds (the same seed: the same data and
    initial weights) with its t interval; ``within``: ``"yes"`` when the whole interval lies at or below
    ``1 + within``, ``"no"`` when it lies above, ``"undecided"`` otherwise (and below :data:`MIN_SEEDS` seeds)."""
    end = final(runs)
    out = []
    for (fn, method), g in end.groupby(["function", "method"], sort=True):
        full = g[g.every == 1].set_index("seed")[error]
        for every, cell in g.groupby("every", sort=True):
            mine = cell.set_index("seed")[error].reindex(full.index)
            r = paired_ratio(mine.to_numpy(), full.to_numpy())
            decided = r.n >= MIN_SEEDS and np.isfinite(r.low)
            word = (
                ("yes" if r.high <= 1 + within else "no" if r.low > 1 + within else "undecided")
                if decided
                else "undecided"
            )
            out.append({"function": fn, "method": method, "every": int(every), "rounds": int(cell.rounds.iloc[0]),
                        "ratio": r.estimate, "low": r.low, "high": r.high, "seeds": r.n, "within": word,
                        "p_t": r.t_p_value})  # fmt: skip
    return pd.DataFrame(out)


def updates_needed(rec: pd.DataFrame) -> pd.DataFrame:
    """Per function and loss, from :func:`recovery`: the fewest anchors (rounds) whose error is decidedly within the
    margin of full training's (NaN when no K but K = 1 is), and the fixed-feature end's ratio to full training."""
    out = []
    for (fn, method), g in rec.groupby(["function", "method"], sort=True):
        g = g.sort_values("rounds")
        ok = g[(g.every != 1) & (g.within == "yes")]
        fixed = g[g.every == g.every.max()].iloc[0]
        out.append({"function": fn, "method": method,
                    "rounds_needed": float(ok.rounds.min()) if len(ok) else float("nan"),
                    "fixed_over_full": float(fixed.ratio), "fixed_low": float(fixed.low),
                    "fixed_high": float(fixed.high)})  # fmt: skip
    return pd.DataFrame(out)


def recovery_difference(runs: pd.DataFrame, every: int, error: str = "test_mse") -> pd.DataFrame:
    """Does Sobolev training recover more of its full training than regular training at ``every`` (K)? Per function,
    the per-seed ratio of ratios (Sobolev's error(K) / error(1)) over (regular's error(K) / error(1)), paired by seed,
    with its t interval (:func:`~sobolev.common.stats.paired_effect_difference`): below 1, Sobolev loses less of its
    own full training's accuracy to fewer feature updates."""
    end = final(runs)
    out = []
    for fn, g in end.groupby("function", sort=True):
        wide = g.pivot_table(index="seed", columns=["method", "every"], values=error)
        if not all((m, k) in wide.columns for m in METHODS for k in (1, every)):
            continue
        logs = {m: np.log(wide[(m, every)]) - np.log(wide[(m, 1)]) for m in METHODS}
        r = paired_effect_difference(logs["sobolev"].to_numpy(), logs["regular"].to_numpy())
        out.append({"function": fn, "every": int(every), "ratio": r.estimate, "low": r.low, "high": r.high,
                    "seeds": r.n, "verdict": r.verdict, "p_t": r.t_p_value})  # fmt: skip
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
        table: Sobolev / regular per function and K (:func:`curve`); ``recovery``: each K's error against full
            training's (K = 1) per function and loss, decided on paired seeds (:func:`recovery`).
        digit_runs: every digits student at every checkpoint, and ``teacher`` the teacher's
            accuracy and the students' data (:func:`~sobolev.features.classification.run_classification`).
        digits, accuracy, digits_recovery: the students' curve (test KL to the teacher), test
            accuracies and recovery.
        phase: the phase diagram's function at every checkpoint (:func:`phase`).
    """

    cfg: FeaturesConfig
    runs: pd.DataFrame
    table: pd.DataFrame
    recovery: pd.DataFrame
    digit_runs: pd.DataFrame
    teacher: dict
    digits: pd.DataFrame
    accuracy: pd.DataFrame
    digits_recovery: pd.DataFrame
    phase: pd.DataFrame

    @property
    def digit_tasks(self) -> pd.DataFrame:
        """The digits students' runs as one "function" (``digits``), the shape :func:`recovery_difference` reads."""
        return self.digit_runs.assign(function="digits")


def run(cfg: FeaturesConfig, progress: bool | TextIO = True) -> Result:
    """The regression runs, then the digits students, and every table of the section."""
    runs = run_all(cfg, progress=progress)
    table = curve(runs)
    digit_runs, teacher = run_classification(cfg, progress=progress)
    digits = curve(digit_runs.assign(function="digits"), error="test_kl", shown="test_kl")
    return Result(
        cfg, runs, table, recovery(runs, cfg.within), digit_runs, teacher, digits, accuracy_table(digit_runs),
        recovery(digit_runs.assign(function="digits"), cfg.within, error="test_kl"), phase(runs, cfg.phase_function),
    )  # fmt: skip


def few_updates(steps: int, every: list[int]) -> int:
    """ "A few feature updates": the smallest K of the grid (the most anchors) whose run uses at most a tenth of the
    ``steps`` updates as anchors; the largest K when none does."""
    few = [k for k in every if rounds(steps, k) <= max(steps // 10, 1)]
    return min(few) if few else max(every)
