"""Section 4.1: the regression grid, trained as batched ensembles, and its summaries.

Pipeline: :func:`build_grid` lists one row per model; :func:`run_grid` trains every
``(size, method)`` group as one :class:`~sobolev.models.BatchedMLP` and evaluates it;
:func:`select_lr` picks each configuration's learning rate on a validation set (never on
the test set); :func:`faithful` and :func:`tuned` give the paper's setting and the best
equally-tuned setting; :func:`summarise` reduces seeds to mean and standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

import pandas as pd
import torch
from torch import Tensor

from sobolev.config import RegressionConfig
from sobolev.data import Normaliser, Sample, make_sample
from sobolev.functions import get_function
from sobolev.models import BatchedMLP
from sobolev.training import train_ensemble
from sobolev.utils import pick_device, set_threads

METHODS = ("regular", "sobolev")
CONFIG_KEYS = ["function", "n_train", "method", "normalisation", "weight"]


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
    return RegressionConfig(
        **{
            **cfg.to_dict(),
            "sizes": [max(cfg.sizes)],
            "steps": cfg.long_steps,
            "normalisations": ["raw"],
            "sweep_weights": [],
            "sweep_sizes": [],
            "long_steps": 0,
        }
    )


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
            desc=f"{method} n={n} ({len(ids)} models)",
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


def select_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """Keep, for each configuration, the learning rate with the lowest mean validation MSE.

    Ties (e.g. two learning rates that both diverge to ``nan``) go to the smaller rate.
    """
    score = runs.groupby([*CONFIG_KEYS, "lr"], sort=False)["val_mse"].mean().fillna(float("inf")).reset_index()
    score = score.sort_values([*CONFIG_KEYS, "val_mse", "lr"])
    best = score.drop_duplicates(CONFIG_KEYS)[[*CONFIG_KEYS, "lr"]]
    return runs.merge(best, on=[*CONFIG_KEYS, "lr"])


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
    score = chosen.groupby([*keys, "normalisation"])["val_mse"].mean().fillna(float("inf")).reset_index()
    best = score.sort_values([*keys, "val_mse"]).drop_duplicates(keys)[[*keys, "normalisation"]]
    return chosen.merge(best, on=[*keys, "normalisation"]).reset_index(drop=True)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of the test errors, per configuration."""
    keys = [*CONFIG_KEYS, "lr"]
    agg = runs.groupby(keys, sort=True).agg(
        test_mse=("test_mse", "mean"),
        test_mse_std=("test_mse", "std"),
        test_grad_mse=("test_grad_mse", "mean"),
        test_grad_mse_std=("test_grad_mse", "std"),
        seeds=("seed", "count"),
    )
    return agg.reset_index()


def comparison(summary: pd.DataFrame) -> pd.DataFrame:
    """Regular vs Sobolev side by side: one row per function and size, with the ratio."""
    table = summary.pivot_table(index=["function", "n_train"], columns="method", values="test_mse")
    table = table.reindex(columns=list(METHODS))
    table["ratio"] = table["sobolev"] / table["regular"]
    table["sobolev_lower"] = table["sobolev"] < table["regular"]
    return table


def wins(summary: pd.DataFrame) -> dict[int, int]:
    """Number of functions on which Sobolev's mean test MSE is lower, per training size."""
    table = comparison(summary)
    return {int(n): int(v) for n, v in table.groupby(level="n_train")["sobolev_lower"].sum().items()}


def metrics_dict(summaries: dict[str, pd.DataFrame]) -> dict:
    """Nested metrics for ``dvc metrics``: setting → function → size → method → numbers."""
    out: dict = {}
    for setting, summary in summaries.items():
        block: dict = {}
        for row in summary.itertuples():
            block.setdefault(row.function, {}).setdefault(f"n{row.n_train}", {})[row.method] = {
                "test_mse": float(row.test_mse),
                "test_mse_std": float(row.test_mse_std),
                "test_grad_mse": float(row.test_grad_mse),
                "test_grad_mse_std": float(row.test_grad_mse_std),
                "lr": float(row.lr),
                "normalisation": row.normalisation,
            }
        block["sobolev_wins"] = {f"n{n}": w for n, w in wins(summary).items()}
        block["n_functions"] = int(summary.function.nunique())
        out[setting] = block
    return out


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims, checked against our numbers."""

    text: str
    reproduced: bool
    evidence: str

    def __str__(self) -> str:
        return f"[{'REPRODUCED' if self.reproduced else 'NOT reproduced'}] {self.text}: {self.evidence}"


def claims(summary: pd.DataFrame) -> list[Claim]:
    """Check Section 4.1's claims on one setting's summary (computed, never typed in).

    "6 of 7" is read as: Sobolev's mean test MSE is lower on all functions but at most one.
    """
    table = comparison(summary)
    n_fn = summary.function.nunique()
    sizes = sorted(summary.n_train.unique())
    w = wins(summary)
    need = max(n_fn - 1, 1)
    out = [
        Claim(
            f"Sobolev lowers test MSE on {need} of {n_fn} functions",
            all(v >= need for v in w.values()),
            ", ".join(f"n={n}: {w[n]}/{n_fn}" for n in sizes),
        )
    ]
    lower = table[table.sobolev_lower]
    big = int((lower.ratio <= 0.1).sum())
    out.append(
        Claim(
            "often by orders of magnitude (≥10× lower on at least half of its wins)",
            len(lower) > 0 and big >= len(lower) / 2,
            f"{big} of {len(lower)} wins are ≥10×; median ratio Sobolev/regular {table.ratio.median():.2g}",
        )
    )
    if "ackley" in table.index.get_level_values("function") and len(sizes) > 1:
        r = float(table.loc[("ackley", sizes[0]), "ratio"])
        out.append(
            Claim(f"Ackley is the exception at low data (regular better at n={sizes[0]})", r > 1, f"ratio {r:.2g}")
        )
    if len(sizes) > 1:
        out.append(
            Claim(
                f"the gap persists at the largest size (n={sizes[-1]})",
                w[sizes[-1]] >= need,
                f"Sobolev lower on {w[sizes[-1]]}/{n_fn}",
            )
        )
        med = table.ratio.groupby(level="n_train").median()
        out.append(
            Claim(
                "the effect is stronger with less data (median ratio smaller at the smallest size)",
                float(med.loc[sizes[0]]) < float(med.loc[sizes[-1]]),
                ", ".join(f"n={n}: {med.loc[n]:.2g}" for n in sizes),
            )
        )
    return out


def training_curves(result: GridResult, chosen: pd.DataFrame) -> pd.DataFrame:
    """Median over the chosen runs of the training loss relative to its first logged value,
    per method and step (one column per method), for ``dvc plots``."""
    curves = result.curves[result.curves.run.isin(chosen.run)]
    first = curves.groupby("run").train_loss.transform("first")
    curves = curves.assign(relative=curves.train_loss / first)
    method = result.runs.method
    curves = curves.assign(method=method.loc[curves.run].to_numpy())
    return curves.pivot_table(index="step", columns="method", values="relative", aggfunc="median").reset_index()


def save_artifacts(
    result: GridResult, summaries: dict[str, pd.DataFrame], chosen: pd.DataFrame, output_dir: str
) -> None:
    """Write ``metrics.json``, ``runs.csv``, ``train_curves.csv`` and ``checkpoints.pt``
    (the weights and normalisers of the ``chosen`` runs) into ``output_dir``."""
    from pathlib import Path

    from sobolev.utils import atomic_write_json, atomic_write_text

    out = Path(output_dir)
    atomic_write_json(out / "metrics.json", metrics_dict(summaries))
    atomic_write_text(out / "runs.csv", result.runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(
        out / "train_curves.csv", training_curves(result, chosen).to_csv(index=False, float_format="%.6g")
    )
    ids = torch.tensor(sorted(set(chosen.run)))
    torch.save(
        {
            "runs": result.runs.loc[ids.tolist()].to_dict("list"),
            "params": {n: v[ids].clone() for n, v in result.params.items()},
            "normalisers": [vars(result.normalisers[i]) for i in ids.tolist()],
        },
        out / "checkpoints.pt",
    )
