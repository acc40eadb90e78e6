"""The differential-ML section's computation: every problem × size × seed, standard and
differential, trained as one batched ensemble per (problem, size), and evaluated on the truth.

Within a seed, the standard and the differential model share the Monte-Carlo training set,
the initial weights and the minibatch order: the comparison is paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd
import torch

from sobolev.common.stats import (
    bootstrap_means,
    median_interval,
    paired_ratio,
    welch_interval,
)
from sobolev.common.utils import set_threads
from sobolev.differential.config import DifferentialConfig
from sobolev.differential.simulators import make_simulator
from sobolev.differential.training import Ensemble, train

METHODS = ("standard", "differential")
#: A run whose value RMSE exceeds this fraction of the RMSE of predicting the mean price has
#: collapsed (to a near-constant function); it is kept in every statistic and listed.
COLLAPSED = 0.5
#: Value RMSE × 100 (standard, differential) printed in the saved outputs of the reference's
#: notebook (Huge & Savine's DifferentialML, Bachelier basket), single runs; quoted, not ours.
REFERENCE = {
    ("basket7", 4096): (0.77, 0.24), ("basket7", 8192): (0.50, 0.14), ("basket7", 16384): (0.21, 0.11),
    ("basket20", 4096): (2.02, 0.23), ("basket20", 8192): (1.19, 0.13), ("basket20", 16384): (0.62, 0.10),
}  # fmt: skip


@dataclass
class Result:
    """What :func:`run` computes.

    Attributes:
        cfg: the section's config.
        runs: one row per model (problem, n_train, method, seed, value_rmse, delta_rmse, both × 100,
            and ``collapsed``: no better than half-way to a constant prediction, see :data:`COLLAPSED`).
        shown: the largest-size ensemble of ``cfg.shown`` with its test spots, for the figures.
        table: median RMSEs with intervals and the paired ratio per problem, size and quantity
            (:func:`rmse_table`).
        efficiency: how many times the data standard training needs to match differential's value
            error (:func:`sample_efficiency`).
    """

    cfg: DifferentialConfig
    runs: pd.DataFrame
    shown: tuple[Ensemble, torch.Tensor] | None
    table: pd.DataFrame
    efficiency: pd.DataFrame


def run(cfg: DifferentialConfig, progress: bool | TextIO = True) -> Result:
    """Train every problem × size × seed of ``cfg``, standard and differential, and compare them
    on the truth."""
    set_threads(cfg.threads)
    rows, shown = [], None
    for name in cfg.problems:
        sim = make_simulator(name, cfg.market_seed)
        test = sim.test_spots() if name == "black_scholes" else sim.test_spots(cfg.n_test)
        price, delta = sim.price(test), sim.delta(test)
        constant = float(price.std(unbiased=False)) * 100  # the RMSE of predicting the mean price
        for n in cfg.sizes(name):
            seeds = list(range(cfg.seeds))
            data = [sim.training_set(n, 1000 * s + n) for s in seeds]
            x = torch.stack([d.x for d in data] * 2)
            y = torch.stack([d.y for d in data] * 2)
            g = torch.stack([d.dydx for d in data] * 2)
            differential = [False] * cfg.seeds + [True] * cfg.seeds
            ens = train(x, y, g, seeds * 2, differential, cfg.lam, cfg.epochs, cfg.hidden, cfg.layers,
                        log_every=cfg.log_every, desc=f"differential: {name} n={n}", progress=progress)  # fmt: skip
            value, deriv = ens.predict(test)
            v_rmse = (value - price).pow(2).mean(1).sqrt() * 100
            d_rmse = (deriv[:, :, 0] - delta[:, 0]).pow(2).mean(1).sqrt() * 100
            for m, (seed, diff) in enumerate(zip(seeds * 2, differential, strict=True)):
                rows.append({"problem": name, "dim": sim.dim, "n_train": n, "method": METHODS[diff], "seed": seed,
                             "value_rmse": float(v_rmse[m]), "delta_rmse": float(d_rmse[m]),
                             "collapsed": bool(v_rmse[m] > COLLAPSED * constant)})  # fmt: skip
            if name == cfg.shown and n == cfg.sizes(name)[-1]:
                shown = (ens, test)
    runs = pd.DataFrame(rows)
    return Result(cfg, runs, shown, rmse_table(runs, cfg.n_boot), sample_efficiency(runs, "value", cfg.n_boot))


def rmse_table(runs: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """Per problem, size and quantity: both methods' median RMSE × 100 over seeds with its 95%
    bootstrap interval (``standard_low`` ...), and the paired geometric-mean ratio differential /
    standard with its 95% interval and verdict."""
    out = []
    for (name, n), cell in runs.groupby(["problem", "n_train"], sort=False):
        std = cell[cell.method == "standard"].sort_values("seed")
        dif = cell[cell.method == "differential"].sort_values("seed")
        for q in ("value", "delta"):
            r = paired_ratio(dif[f"{q}_rmse"].to_numpy(), std[f"{q}_rmse"].to_numpy())
            row = {"problem": name, "n_train": int(n), "quantity": q, "seeds": len(std)}
            for method, sub in (("standard", std), ("differential", dif)):
                v = sub[f"{q}_rmse"].to_numpy()
                row[method] = float(np.median(v))
                row[f"{method}_low"], row[f"{method}_high"] = median_interval(v, n_boot)
            out.append({**row, "ratio": r.estimate, "low": r.low, "high": r.high, "p": r.p_value, "verdict": r.verdict})
    return pd.DataFrame(out)


def data_multiple(runs: pd.DataFrame, quantity: str, factor: float) -> pd.DataFrame:
    """Does differential training at n match standard training at ``factor`` × n? Per problem and every
    pair of measured sizes (n, factor × n): the ratio of geometric-mean RMSEs, differential at n / standard
    at factor × n, with the Welch t interval of the difference of mean log RMSEs (the two sizes' seeds are
    independent samples). A win (interval below 1): derivative labels buy at least ``factor`` × the data.
    Measured sizes only: nothing is extrapolated."""
    out = []
    for name, sub in runs.groupby("problem", sort=False):
        sizes = sorted(sub.n_train.unique())
        for n in sizes:
            m = n * factor
            if m not in sizes:
                continue
            dif = np.log(sub[(sub.method == "differential") & (sub.n_train == n)][f"{quantity}_rmse"].to_numpy())
            std = np.log(sub[(sub.method == "standard") & (sub.n_train == m)][f"{quantity}_rmse"].to_numpy())
            iv = welch_interval([dif, std], [1.0, -1.0])  # on log RMSE: below 0 is a win for differential
            ratio, low, high = np.exp([iv.estimate, iv.low, iv.high])
            out.append({"problem": name, "n_train": int(n), "standard_n": int(m), "ratio": float(ratio),
                        "low": float(low), "high": float(high), "verdict": iv.verdict})  # fmt: skip
    return pd.DataFrame(out)


def _crossing(sizes: np.ndarray, errors: np.ndarray, target: float) -> tuple[float, bool]:
    """The size at which the (log-log linearly interpolated) curve ``errors(sizes)`` reaches
    ``target``, and whether that needed extrapolation beyond the measured sizes."""
    ls, le = np.log(sizes), np.log(errors)
    lt = np.log(target)
    for i in range(len(ls) - 1):
        lo, hi = sorted((le[i], le[i + 1]))
        if lo <= lt <= hi and le[i] != le[i + 1]:
            return float(np.exp(ls[i] + (lt - le[i]) * (ls[i + 1] - ls[i]) / (le[i + 1] - le[i]))), False
    # Outside the measured range: extend the segment nearest the target (the last one, usually).
    i = len(ls) - 2 if lt < le.min() else 0
    slope = (le[i + 1] - le[i]) / (ls[i + 1] - ls[i])
    if slope >= 0:
        return float("inf"), True  # standard's error does not fall with data here: never reached
    return float(np.exp(ls[i] + (lt - le[i]) / slope)), True


def sample_efficiency(runs: pd.DataFrame, quantity: str, n_boot: int, seed: int = 0) -> pd.DataFrame:
    """How many times more samples standard training needs to match differential training's
    error, per problem and differential size: standard's geometric-mean RMSE over seeds,
    interpolated log-log along the sizes, against differential's. The interval resamples the
    seeds (each size and method independently)."""
    out = []
    for name, sub in runs.groupby("problem", sort=False):
        sizes = np.array(sorted(sub.n_train.unique()), float)
        if len(sizes) < 2:
            continue
        logs = {
            (m, n): np.log(sub[(sub.method == m) & (sub.n_train == n)][f"{quantity}_rmse"].to_numpy())
            for m in METHODS for n in sizes
        }  # fmt: skip
        draws = {k: np.exp(bootstrap_means(v, n_boot, seed + i)) for i, (k, v) in enumerate(logs.items())}
        point = {k: float(np.exp(v.mean())) for k, v in logs.items()}
        for n in sizes:
            std_curve = np.array([point[("standard", s)] for s in sizes])
            size, extrapolated = _crossing(sizes, std_curve, point[("differential", n)])
            boot = [
                _crossing(sizes, np.array([draws[("standard", s)][b] for s in sizes]), draws[("differential", n)][b])[0]
                for b in range(0, n_boot, max(1, n_boot // 2000))
            ]
            low, high = np.percentile(np.array(boot) / n, [2.5, 97.5])
            out.append({"problem": name, "n_train": int(n), "factor": size / n, "low": float(low),
                        "high": float(high), "extrapolated": extrapolated})  # fmt: skip
    return pd.DataFrame(out)
