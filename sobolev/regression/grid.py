"""Section 4.1's computation: the regression grid, trained as batched ensembles.

:func:`build_grid` lists one row per model; :func:`run_grid` trains every ``(size, method)``
group as one :class:`~sobolev.core.models.BatchedMLP` and evaluates it; the learning rate of
each configuration is chosen on validation data (:func:`sobolev.common.compare.select_lr`,
never on the test set); :func:`faithful` and :func:`tuned` give the paper's setting and the
best equally-tuned setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import pandas as pd
import torch
from torch import Tensor

from sobolev.common.compare import CONFIG_KEYS, mean_validation_error, select_lr
from sobolev.common.utils import pick_device, set_threads
from sobolev.core.data import Normaliser, Sample, make_sample
from sobolev.core.functions import get_function
from sobolev.core.models import BatchedMLP
from sobolev.core.training import train_ensemble
from sobolev.regression.config import RegressionConfig


def build_grid(cfg: RegressionConfig) -> pd.DataFrame:
    """One row per model: function, n_train, method, normalisation, weight, lr, seed.

    ``weight`` is the derivative weight λ (0 for regular training). Training points depend
    on ``(function, n_train, seed)`` only, and initial weights on ``seed`` only, so regular
    and Sobolev models of the same seed are paired: same data, same initialisation.
    """
    rows = []
    for fn in cfg.functions:
        for n in cfg.sizes:
            weights = [1.0] + ([float(w) for w in cfg.sweep_weights] if n in cfg.sweep_sizes else [])
            for norm in cfg.normalisations:
                for lr in cfg.lrs:
                    for seed in range(cfg.seeds):
                        base = {"function": fn, "n_train": n, "normalisation": norm, "lr": float(lr), "seed": seed}
                        rows.append({**base, "method": "regular", "weight": 0.0})
                        rows += [{**base, "method": "sobolev", "weight": w} for w in weights]
    cols = [*CONFIG_KEYS, "lr", "seed"]
    return pd.DataFrame(rows)[cols]


@dataclass
class GridResult:
    """Everything :func:`run_grid` produced.

    Attributes:
        runs: ``run`` (the row's id), ``build_grid``'s columns, plus ``val_mse``, ``test_mse``, ``test_grad_mse`` (mean
            squared error of the input gradient) and ``train_loss`` (final), all on the
            original scale of the function.
        curves: long table ``run, step, train_loss`` (training loss in the model's own,
            possibly normalised, units).
        params: the trained weights of every run, stacked in ``runs`` order.
        normalisers: one :class:`Normaliser` per run.
    """

    runs: pd.DataFrame
    curves: pd.DataFrame
    params: dict[str, Tensor]
    normalisers: list[Normaliser]

    def model(self, run: int) -> tuple[torch.nn.Module, Normaliser]:
        """Run ``run`` as a standalone ``nn.Module`` on normalised inputs, and its normaliser."""
        single = BatchedMLP({n: v[run : run + 1] for n, v in self.params.items()})
        return single.to_module(0), self.normalisers[run]

    def predict(self, run: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Values ``(B,)`` and gradients ``(B, 2)`` of run ``run`` at raw inputs ``x (B, 2)``."""
        single = BatchedMLP({n: v[run : run + 1] for n, v in self.params.items()})
        nm = self.normalisers[run]
        y, g = single.predict(nm.x(x).unsqueeze(0))
        return nm.y_back(y[0]), nm.g_back(g[0])


def _stack(samples: list[Sample], norms: list[Normaliser]) -> tuple[Tensor, Tensor, Tensor]:
    x = torch.stack([nm.x(s.x) for s, nm in zip(samples, norms, strict=True)])
    y = torch.stack([nm.y(s.y) for s, nm in zip(samples, norms, strict=True)])
    g = torch.stack([nm.g(s.g) for s, nm in zip(samples, norms, strict=True)])
    return x, y, g


def _errors(
    model: BatchedMLP, samples: list[Sample], norms: list[Normaliser], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Per-model value MSE and gradient MSE on the original scale, each ``(M,)``."""
    x = torch.stack([nm.x(s.x) for s, nm in zip(samples, norms, strict=True)]).to(device)
    y, g = model.predict(x)
    y_mean = torch.tensor([nm.y_mean for nm in norms], device=device).unsqueeze(1)
    y_std = torch.tensor([nm.y_std for nm in norms], device=device).unsqueeze(1)
    x_scale = torch.stack([nm.x_scale for nm in norms]).to(device).unsqueeze(1)
    y = y * y_std + y_mean
    g = g * y_std.unsqueeze(2) / x_scale
    ty = torch.stack([s.y for s in samples]).to(device)
    tg = torch.stack([s.g for s in samples]).to(device)
    return (y - ty).pow(2).mean(1).cpu(), (g - tg).pow(2).sum(2).mean(1).cpu()


def longer_training(cfg: RegressionConfig) -> RegressionConfig:
    """The faithful setting at the largest size only, trained for ``cfg.long_steps`` steps.

    Both methods keep the same learning-rate grid and step count; this asks whether a gap
    at the largest size is a property of the method or of a short training budget.
    """
    if cfg.long_steps <= 0:
        raise ValueError(f"long_steps must be positive for a longer run, got {cfg.long_steps}")
    return cfg.replace(
        sizes=[max(cfg.sizes)], steps=cfg.long_steps, normalisations=["raw"], sweep_weights=[], sweep_sizes=[],
        long_steps=0,
    )  # fmt: skip


def _ensembles(grid: pd.DataFrame, size: int) -> list[tuple[int, str, pd.DataFrame]]:
    """Split the grid into ensembles of one ``(n_train, method)`` and at most ``size`` models,
    ordered by learning rate (so the fused optimiser sees few learning-rate blocks)."""
    out = []
    for (n, method), group in grid.groupby(["n_train", "method"], sort=False):
        group = group.sort_values("lr", kind="stable")
        chunks = -(-len(group) // size)
        step = -(-len(group) // chunks)  # balanced chunks
        out += [(n, method, group.iloc[i : i + step]) for i in range(0, len(group), step)]
    return out


def run_grid(cfg: RegressionConfig, progress: bool | TextIO = True) -> GridResult:
    """Train and evaluate the whole grid as batched ensembles (see :func:`_ensembles`)."""
    set_threads(cfg.threads)
    device = pick_device(cfg.device)
    grid = build_grid(cfg)
    fns = {name: get_function(name) for name in cfg.functions}
    test = {name: make_sample(fn, cfg.n_test, 0, "test") for name, fn in fns.items()}
    val = {name: make_sample(fn, cfg.n_val, 0, "val") for name, fn in fns.items()}
    train_cache: dict[tuple[str, int, int], Sample] = {}

    metrics = pd.DataFrame(
        index=grid.index, columns=["val_mse", "test_mse", "test_grad_mse", "train_loss"], dtype=float
    )
    params: dict[str, list[tuple[int, Tensor]]] = {n: [] for n in BatchedMLP.NAMES}
    normalisers: dict[int, Normaliser] = {}
    curves = []
    for n, method, group in _ensembles(grid, cfg.ensemble_size):
        ids = list(group.index)
        samples, norms = [], []
        for row in group.itertuples():
            key = (row.function, n, row.seed)
            if key not in train_cache:
                train_cache[key] = make_sample(fns[row.function], n, row.seed)
            samples.append(train_cache[key])
            norms.append(Normaliser.fit(row.normalisation, fns[row.function], train_cache[key]))
        x, t, G = (v.to(device) for v in _stack(samples, norms))
        sobolev = method == "sobolev"
        model = BatchedMLP.init(list(group.seed), hidden=cfg.hidden, device=device)
        history = train_ensemble(
            model,
            x,
            t,
            lr=torch.tensor(group.lr.values, dtype=torch.float32, device=device),
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            G=G if sobolev else None,
            weight=torch.tensor(group.weight.values, dtype=torch.float32, device=device) if sobolev else None,
            generator=torch.Generator().manual_seed(n),
            log_every=cfg.log_every,
            desc=f"regression: {method} n={n} ({len(ids)} models)",
            hint=f"a learning rate in {cfg.key_name('lrs')} = {cfg.lrs} too large for these targets",
            describe=lambda bad, g=group: "; ".join(
                f"{r.function} {r.normalisation} lr={r.lr:g} seed {r.seed}" for r in g.iloc[bad[:5]].itertuples()
            ) + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""),
            progress=progress,
        )
        steps = [min(cfg.steps, (i + 1) * cfg.log_every) for i in range(history.shape[0])]
        curves.append(
            pd.DataFrame(
                {
                    "run": [r for _ in steps for r in ids],
                    "step": [s for s in steps for _ in ids],
                    "train_loss": history.reshape(-1).numpy(),
                }
            )
        )
        val_mse, _ = _errors(model, [val[r.function] for r in group.itertuples()], norms, device)
        test_mse, test_grad = _errors(model, [test[r.function] for r in group.itertuples()], norms, device)
        metrics.loc[ids, "val_mse"] = val_mse.numpy()
        metrics.loc[ids, "test_mse"] = test_mse.numpy()
        metrics.loc[ids, "test_grad_mse"] = test_grad.numpy()
        metrics.loc[ids, "train_loss"] = history[-1].numpy() if len(history) else float("nan")
        for name, value in model.state_dict().items():
            params[name].append((ids, value))
        normalisers.update(zip(ids, norms, strict=True))

    stacked = {}
    for name, parts in params.items():
        order = torch.tensor([i for ids, _ in parts for i in ids])
        values = torch.cat([v for _, v in parts])
        stacked[name] = values[torch.argsort(order)]
    runs = pd.concat([grid, metrics], axis=1)
    runs.insert(0, "run", runs.index)
    return GridResult(runs, pd.concat(curves, ignore_index=True), stacked, [normalisers[i] for i in range(len(grid))])


def faithful(runs: pd.DataFrame) -> pd.DataFrame:
    """The paper's setting: raw targets, derivative weight 1; learning rate from the grid."""
    chosen = select_lr(runs)
    return chosen[(chosen.normalisation == "raw") & chosen.weight.isin([0.0, 1.0])].reset_index(drop=True)


def tuned(runs: pd.DataFrame) -> pd.DataFrame:
    """The best equally-tuned setting: per function, size and method, the best of
    normalisation × learning rate by validation MSE (weight 1 for Sobolev, as in the
    paper; the weight sweep is reported separately, since tuning it would give Sobolev
    a larger budget than the baseline)."""
    chosen = select_lr(runs[runs.weight.isin([0.0, 1.0])])
    keys = ["function", "n_train", "method"]
    score = mean_validation_error(chosen, [*keys, "normalisation"])
    best = score.sort_values([*keys, "val_mse"]).drop_duplicates(keys)[[*keys, "normalisation"]]
    return chosen.merge(best, on=[*keys, "normalisation"]).reset_index(drop=True)


