"""Section 4.1's computation: the regression grid, trained as batched ensembles.

:func:`build_grid` lists one row per model; :func:`run_grid` trains every group of models
that share a training size (and whether they see derivatives) as one
:class:`~sobolev.core.models.BatchedMLP`, with the same learning-rate schedule for all, and
evaluates them; :func:`chosen_runs` keeps each configuration's learning rate chosen on
validation data (never on the test set); :func:`paired_cells` compares every
derivative-matching arm with its regular baseline, seed by seed.

A user's own functions (any input dimension) go through the same code::

    from sobolev.core.functions import BenchmarkFunction, check_gradient
    from sobolev.regression.config import RegressionConfig
    fn = BenchmarkFunction("quadratic", lambda x: (x**2).sum(-1), lambda x: 2 * x, ((-1, 1),) * 5)
    check_gradient(fn)                                   # raises on a wrong gradient
    cfg = RegressionConfig.in_code(sizes=[20, 100], seeds=[5, 5])   # no params.yaml needed
    result = run_grid(cfg, functions=[fn])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sobolev.common.compare import CONFIG_KEYS, converged, is_diverged, select_lr
from sobolev.common.stats import Interval, paired_ratio
from sobolev.common.utils import pick_device, set_threads
from sobolev.core.engine import SampleCache, convergence_steps, errors, evaluation_sets, mean_squares, training_sets
from sobolev.core.functions import BenchmarkFunction, get_function
from sobolev.core.losses import balanced_weights
from sobolev.core.models import BatchedMLP
from sobolev.core.samples import Normaliser, Sample, make_sample
from sobolev.core.training import train_ensemble
from sobolev.regression.config import RegressionConfig, arm_parts, baseline_of

COLUMNS = ["function", "n_train", "arm", "method", "normalisation", "weight", "lr", "seed"]
#: The paper's comparison: raw targets, λ = 1.
PAPER_ARM = "sobolev-raw"


def build_grid(cfg: RegressionConfig, functions: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per model: ``COLUMNS``.

    ``weight`` is the derivative weight λ (0 for regular training; for the balanced arm,
    differential ML's λ). Training points depend on ``(function, n_train, seed)`` only and
    initial weights on ``seed`` only, so every arm of a seed is paired with the others.
    """
    rows = []
    for fn in functions if functions is not None else cfg.functions:
        for n, seeds in zip(cfg.sizes, cfg.seeds, strict=True):
            for arm in cfg.arms:
                method, norm = arm_parts(arm)
                weights = [0.0] if method == "regular" else [1.0]
                if n in cfg.sweep_sizes and arm in cfg.sweep_arms:
                    weights += [float(w) for w in cfg.sweep_weights]
                for w in weights:
                    for lr in cfg.lrs:
                        for seed in range(seeds if w in (0.0, 1.0) else cfg.sweep_seeds):
                            rows.append(dict(zip(COLUMNS, (fn, n, arm, method, norm, w, float(lr), seed), strict=True)))
    return pd.DataFrame(rows, columns=COLUMNS)


@dataclass
class GridResult:
    """Everything :func:`run_grid` produced.

    Attributes:
        runs: ``run`` (the row's id), :func:`build_grid`'s columns, then, on the function's own
            scale: ``val_mse``, ``test_mse``, ``test_nmse`` (test MSE / the function's variance
            on its domain: 1 is no better than predicting the mean), ``test_grad_mse`` (mean
            squared error of the input gradient), ``train_mse`` and ``train_grad_mse`` (the
            training set's); and the objective in the model's units on the whole training set
            at 90% and 100% of training (``train_loss_90``, ``train_loss``) with ``converged``.
        curves: long table ``run, step, train_loss`` (logged training loss, model units).
        params: the trained weights of every run, stacked in ``runs`` order.
        normalisers: one :class:`Normaliser` per run.
        functions: the trained functions by name.
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    params: dict[str, Tensor]
    normalisers: list[Normaliser]
    functions: dict[str, BenchmarkFunction]

    def model(self, run: int) -> tuple[torch.nn.Module, Normaliser]:
        """Run ``run`` as a standalone ``nn.Module`` on normalised inputs, and its normaliser."""
        single = BatchedMLP({n: v[run : run + 1] for n, v in self.params.items()})
        return single.to_module(0), self.normalisers[run]

    def predict(self, run: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Values ``(B,)`` and gradients ``(B, d)`` of run ``run`` at raw inputs ``x (B, d)``."""
        single = BatchedMLP({n: v[run : run + 1] for n, v in self.params.items()})
        nm = self.normalisers[run]
        dtype = single.params["W1"].dtype
        y, g = single.predict(nm.x(x).to(dtype).unsqueeze(0))
        return nm.y_back(y[0].float()), nm.g_back(g[0].float())

    def training_set(self, run: int) -> Sample:
        """The training points of run ``run`` (regenerated from its function, size and seed)."""
        row = self.runs.loc[run]
        return make_sample(self.functions[row.function], int(row.n_train), int(row.seed))


def _ensembles(grid: pd.DataFrame, size: int) -> list[tuple[int, bool, pd.DataFrame]]:
    """Split the grid into ensembles of one training size, all regular or all derivative-
    matching, of at most ``size`` models, ordered by learning rate (so the fused optimiser
    sees few learning-rate blocks)."""
    out = []
    grid = grid.assign(_grads=grid.method != "regular")
    for (n, grads), group in grid.groupby(["n_train", "_grads"], sort=False):
        group = group.sort_values("lr", kind="stable").drop(columns="_grads")
        chunks = -(-len(group) // size)
        step = -(-len(group) // chunks)  # balanced chunks
        out += [(int(n), bool(grads), group.iloc[i : i + step]) for i in range(0, len(group), step)]
    return out


def loss_weights(method: str, weight: float, g: Tensor) -> tuple[float, Tensor]:
    """``(α, w (d,))`` of one model's loss ``α·value + Σ_j w_j·derivative_j``: the paper's
    eq. (1) for ``sobolev`` (α = 1, w_j = λ), differential ML's balance for ``balanced``
    (:func:`sobolev.core.losses.balanced_weights` of the normalised derivative targets ``g``)."""
    if method == "sobolev":
        return 1.0, torch.full((g.shape[1],), float(weight))
    if method == "balanced":
        return balanced_weights(g, weight)
    raise ValueError(f"method must be 'sobolev' or 'balanced' to weigh derivatives, got {method!r}")


def run_grid(
    cfg: RegressionConfig,
    functions: Sequence[BenchmarkFunction] | None = None,
    progress: bool | TextIO = True,
) -> GridResult:
    """Train and evaluate the whole grid as batched ensembles (see :func:`_ensembles`).

    Args:
        cfg: the grid (sizes, seeds, arms, learning rates, schedule, ...).
        functions: a user's functions (:class:`BenchmarkFunction`, any input dimension),
            trained instead of ``cfg.functions``; each is sampled uniformly on its domain.
        progress: a tqdm bar, or a stream for it (``sys.__stderr__`` keeps it out of notebooks).
    """
    previous_threads = torch.get_num_threads()
    set_threads(cfg.threads)
    try:
        return _run_grid(cfg, functions, progress)
    finally:
        torch.set_num_threads(previous_threads)  # the caller's setting, whatever happened


def _run_grid(
    cfg: RegressionConfig, functions: Sequence[BenchmarkFunction] | None, progress: bool | TextIO
) -> GridResult:
    device = pick_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    fns = {f.name: f for f in functions} if functions is not None else {n: get_function(n) for n in cfg.functions}
    if functions is not None and len(fns) != len(functions):
        raise ValueError(f"functions: names must be unique, got {[f.name for f in functions]}")
    grid = build_grid(cfg, list(fns))
    test, val, variance = evaluation_sets(fns, cfg.n_test, cfg.n_val)
    train_cache: SampleCache = {}
    check_at = convergence_steps(cfg.steps)

    metric_names = ["val_mse", "test_mse", "test_nmse", "test_grad_mse", "train_mse", "train_grad_mse",
                    "train_loss_90", "train_loss"]  # fmt: skip
    metrics = pd.DataFrame(index=grid.index, columns=metric_names, dtype=float)
    params: dict[str, list[tuple[list[int], Tensor]]] = {n: [] for n in BatchedMLP.NAMES}
    normalisers: dict[int, Normaliser] = {}
    curves = []
    mean_square = mean_squares(val)
    runs_per_config = grid.groupby(CONFIG_KEYS).size()
    trained: list[int] = []
    for n, grads, group in _ensembles(grid, cfg.ensemble_size):
        ids = list(group.index)
        dims = {fns[f].dim for f in group.function}
        if len(dims) != 1:  # one ensemble needs one input dimension
            raise ValueError(f"functions of one run_grid call must share their input dimension, got {sorted(dims)}")
        samples, norms, x, t, G = training_sets(group.itertuples(), fns, train_cache)
        x, t = x.to(device, dtype), t.to(device, dtype)
        G = G.to(device, dtype) if grads else None
        weight = value_weight = None
        if grads:
            pairs = [loss_weights(r.method, r.weight, g.cpu()) for r, g in zip(group.itertuples(), G, strict=True)]
            value_weight = torch.tensor([a for a, _ in pairs], dtype=dtype, device=device)
            weight = torch.stack([w for _, w in pairs]).to(device, dtype)
        model = BatchedMLP.init(list(group.seed), in_dim=dims.pop(), hidden=cfg.hidden, device=device, dtype=dtype)
        history = train_ensemble(
            model, x, t, lr=torch.tensor(group.lr.values, dtype=dtype, device=device), steps=cfg.steps,
            batch_size=cfg.batch_size, G=G, weight=weight, value_weight=value_weight, schedule=cfg.schedule,
            warmup=cfg.warmup, full_loss_at=check_at, generator=torch.Generator().manual_seed(n),
            log_every=cfg.log_every, desc=f"regression: {'Sobolev' if grads else 'regular'} n={n} ({len(ids)} models)",
            hint=f"a learning rate in {cfg.key_name('lrs')} = {cfg.lrs} too large for these targets",
            describe=lambda bad, g=group: "; ".join(
                f"{r.function} {r.arm} λ={r.weight:g} lr={r.lr:g} seed {r.seed}" for r in g.iloc[bad[:5]].itertuples()
            ) + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""),
            progress=progress,
        )  # fmt: skip
        curves.append(
            pd.DataFrame(
                {
                    "run": [r for _ in history.steps for r in ids],
                    "step": [s for s in history.steps for _ in ids],
                    "train_loss": history.loss.reshape(-1).double().numpy(),
                }
            )
        )
        for split, data in (("val", val), ("test", test)):
            mse, grad_mse = errors(model, [data[r.function] for r in group.itertuples()], norms)
            metrics.loc[ids, f"{split}_mse"] = mse.numpy()
            if split == "test":
                metrics.loc[ids, "test_grad_mse"] = grad_mse.numpy()
                metrics.loc[ids, "test_nmse"] = mse.numpy() / np.array([variance[f] for f in group.function])
        mse, grad_mse = errors(model, samples, norms)
        metrics.loc[ids, "train_mse"] = mse.numpy()
        metrics.loc[ids, "train_grad_mse"] = grad_mse.numpy()
        metrics.loc[ids, "train_loss_90"] = history.full_loss[check_at[0]].double().numpy()
        metrics.loc[ids, "train_loss"] = history.full_loss[check_at[1]].double().numpy()
        for name, value in model.state_dict().items():
            params[name].append((ids, value))
        normalisers.update(zip(ids, norms, strict=True))
        trained += ids
        _stop_if_every_rate_diverged(pd.concat([grid.loc[trained], metrics.loc[trained]], axis=1), runs_per_config,
                                     mean_square)  # fmt: skip

    stacked = {}
    for name, parts in params.items():
        order = torch.tensor([i for ids, _ in parts for i in ids])
        stacked[name] = torch.cat([v for _, v in parts])[torch.argsort(order)]
    runs = pd.concat([grid, metrics], axis=1)
    runs["diverged"] = is_diverged(runs.val_mse, runs.function.map(mean_square))
    runs["converged"] = converged(runs.train_loss_90, runs.train_loss, cfg.converged_change)
    runs.insert(0, "run", runs.index)
    return GridResult(
        runs, pd.concat(curves, ignore_index=True), stacked, [normalisers[i] for i in range(len(grid))], fns
    )


def _stop_if_every_rate_diverged(runs: pd.DataFrame, runs_per_config: pd.Series, mean_square: dict) -> None:
    """Raise :class:`~sobolev.common.compare.DivergenceError` (naming ``regression.lrs``) as soon as a configuration
    whose runs have all trained diverged at every learning rate, instead of after the whole grid: ``runs`` are the
    runs trained so far, ``runs_per_config`` each configuration's number of runs in the grid."""
    done = runs.groupby(CONFIG_KEYS).size().reindex(runs_per_config.index, fill_value=0) == runs_per_config
    complete = runs.merge(done[done].index.to_frame(index=False), on=CONFIG_KEYS)
    if len(complete):
        complete = complete.assign(diverged=is_diverged(complete.val_mse, complete.function.map(mean_square)))
        select_lr(complete, key_name="regression.lrs")


def chosen_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Every configuration at its learning rate chosen on validation MSE
    (:func:`sobolev.common.compare.select_lr`), with ``arm`` kept. Raises
    :class:`~sobolev.common.compare.DivergenceError` when every rate of a configuration diverged."""
    return select_lr(runs, key_name="regression.lrs")


def paired_cells(chosen: pd.DataFrame, weight: float = 1.0) -> pd.DataFrame:
    """Every derivative-matching arm (at derivative weight ``weight``) against its regular
    baseline on the same data scale, per function and size, seed by seed.

    Returns one row per ``(arm, function, n_train)``: ``baseline``, ``seeds``, the medians of
    both arms' normalised test MSE (``median``, ``baseline_median``), the geometric-mean
    ratio arm / baseline of the test MSE with its t interval (``ratio``, ``low``,
    ``high``), ``verdict`` (win / loss / undecided for the arm), ``p`` and ``seeds_needed``
    (:meth:`~sobolev.common.stats.Interval.evidence`) and the same for the gradient
    error (``grad_ratio``, ``grad_verdict``).
    """
    rows = []
    keys = ["function", "n_train", "seed"]
    for arm in sorted(set(chosen.arm) - {a for a in chosen.arm if a.startswith("regular")}):
        mine = chosen[(chosen.arm == arm) & (chosen.weight == weight)]
        base = chosen[chosen.arm == baseline_of(arm)]
        both = mine.merge(base, on=keys, suffixes=("", "_base"))
        for (fn, n), cell in both.groupby(["function", "n_train"], sort=True):
            r: Interval = paired_ratio(cell.test_mse, cell.test_mse_base)
            rg: Interval = paired_ratio(cell.test_grad_mse, cell.test_grad_mse_base)
            rows.append(
                {
                    "arm": arm, "baseline": baseline_of(arm), "function": fn, "n_train": int(n), "seeds": len(cell),
                    "median": float(cell.test_nmse.median()), "baseline_median": float(cell.test_nmse_base.median()),
                    "ratio": r.estimate, "low": r.low, "high": r.high, "verdict": r.verdict, **r.evidence(),
                    "grad_ratio": rg.estimate, "grad_verdict": rg.verdict,
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def core_runs(chosen: pd.DataFrame) -> pd.DataFrame:
    """The runs at derivative weight 1 (or 0: regular): the λ sweep is reported on its own."""
    return chosen[chosen.weight.isin([0.0, 1.0])]


@dataclass
class Result:
    """Section 4.1's computation (:func:`run`).

    Attributes:
        cfg: the section's config.
        grid: every trained run, its curves and weights (:class:`GridResult`).
        chosen: every configuration at its learning rate chosen on validation (:func:`chosen_runs`).
        cells: each derivative-matching arm against its baseline, per function and size, paired
            over seeds (:func:`paired_cells`).
    """

    cfg: RegressionConfig
    grid: GridResult
    chosen: pd.DataFrame
    cells: pd.DataFrame


def run(cfg: RegressionConfig, progress: bool | TextIO = False) -> Result:
    """Train the whole grid of ``cfg``, choose each configuration's learning rate on validation
    data and pair every arm with its baseline seed by seed."""
    grid = run_grid(cfg, progress=progress)
    chosen = chosen_runs(grid.runs)
    return Result(cfg, grid, chosen, paired_cells(chosen))
