"""Section 4.1's report: metrics, the paper's claims checked, figures, saved artifacts and the
README tables, from the grid's runs (nothing here trains)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib import pyplot as plt
from torch import Tensor

from sobolev.common.claims import Claim, format_claims
from sobolev.common.compare import comparison, wins
from sobolev.common.plotting import style
from sobolev.common.utils import atomic_save, atomic_write_json, atomic_write_text
from sobolev.core.functions import BenchmarkFunction
from sobolev.regression.grid import GridResult

Predictor = Callable[[Tensor], tuple[Tensor, Tensor]]
SETTINGS = {
    "faithful": "faithful",
    "tuned": "equally tuned",
    "faithful_long": "faithful, largest size, longer training",
}


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
    out = Path(output_dir)
    atomic_write_json(out / "metrics.json", metrics_dict(summaries))
    atomic_write_text(out / "runs.csv", result.runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(
        out / "train_curves.csv", training_curves(result, chosen).to_csv(index=False, float_format="%.6g")
    )
    ids = torch.tensor(sorted(set(chosen.run)))
    atomic_save(
        {
            "runs": result.runs.loc[ids.tolist()].to_dict("list"),
            "params": {n: v[ids].clone() for n, v in result.params.items()},
            "normalisers": [vars(result.normalisers[i]) for i in ids.tolist()],
        },
        out / "checkpoints.pt",
    )


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.3g} ± {std:.2g}"


def regression_table(metrics: dict, setting: str) -> str:
    """Markdown: mean ± std test MSE per function and size, regular vs Sobolev, with the ratio."""
    block = metrics[setting]
    functions = sorted(k for k in block if isinstance(block[k], dict) and k != "sobolev_wins")
    sizes = sorted(block[functions[0]], key=lambda s: int(s[1:]))
    lines = [
        "| function | n | regular | Sobolev | Sobolev / regular |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for fn in functions:
        for size in sizes:
            reg, sob = block[fn][size]["regular"], block[fn][size]["sobolev"]
            ratio = sob["test_mse"] / reg["test_mse"]
            mark = "**" if ratio < 1 else ""
            lines.append(
                f"| {fn} | {size[1:]} | {_fmt(reg['test_mse'], reg['test_mse_std'])} | "
                f"{_fmt(sob['test_mse'], sob['test_mse_std'])} | {mark}{ratio:.2g}{mark} |"
            )
    n_fn = block["n_functions"]
    counts = sorted(block["sobolev_wins"].items(), key=lambda kv: int(kv[0][1:]))
    wins = ", ".join(f"n={k[1:]}: {v}/{n_fn}" for k, v in counts)
    lines.append("")
    lines.append(f"Functions where Sobolev's mean test MSE is lower: {wins}.")
    return "\n".join(lines)


def summary_from_metrics(block: dict) -> pd.DataFrame:
    """One setting of ``metrics.json`` back as a :func:`sobolev.regression.summarise` table."""
    rows = []
    for fn, sizes in block.items():
        if fn in ("sobolev_wins", "n_functions"):
            continue
        for size, methods in sizes.items():
            for method, m in methods.items():
                rows.append({"function": fn, "n_train": int(size[1:]), "method": method, **m})
    return pd.DataFrame(rows)


def claims_list(metrics: dict) -> str:
    """Markdown bullets: each of Section 4.1's claims with its computed verdict, per setting."""
    lines = []
    for setting, label in SETTINGS.items():
        if setting in metrics:
            lines.append(f"* {label}:")
            lines.append(format_claims(claims(summary_from_metrics(metrics[setting])), bullet="  * "))
    return "\n".join(lines)


def readme_blocks(metrics: dict) -> dict[str, str]:
    """The README blocks of Section 4.1, by name."""
    out = {f"regression-{s}": regression_table(metrics, s) for s in SETTINGS if s in metrics}
    out["regression-claims"] = claims_list(metrics)
    return out


def surfaces(
    fn: BenchmarkFunction, predictors: dict[str, Predictor], resolution: int = 60, arrows: int = 14, title: str = ""
) -> plt.Figure:
    """Figure 3 / SM Figures 5-11: the function and each model as a surface (top row) with
    the gradient field of each underneath (bottom row, arrows over filled contours).

    Args:
        predictors: label → function mapping raw points ``(B, 2)`` to values ``(B,)`` and
            gradients ``(B, 2)``; the truth is added first.
    """
    style()
    panels = {"truth": lambda x: (fn(x), fn.grad(x)), **predictors}
    (x0, x1), (y0, y1) = fn.domain
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, resolution), torch.linspace(y0, y1, resolution), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    ax_, ay_ = torch.meshgrid(torch.linspace(x0, x1, arrows), torch.linspace(y0, y1, arrows), indexing="xy")
    coarse = torch.stack([ax_.reshape(-1), ay_.reshape(-1)], 1)
    values = {k: p(grid)[0].reshape(resolution, resolution).numpy() for k, p in panels.items()}
    zmin = min(v.min() for v in values.values())
    zmax = max(v.max() for v in values.values())
    n = len(panels)
    fig = plt.figure(figsize=(4.0 * n, 7.2))
    for i, (label, pred) in enumerate(panels.items()):
        ax = fig.add_subplot(2, n, i + 1, projection="3d")
        ax.plot_surface(
            gx.numpy(), gy.numpy(), values[label], cmap="viridis", vmin=zmin, vmax=zmax, linewidth=0, antialiased=True
        )
        ax.set_zlim(zmin, zmax)
        ax.set_title(label)
        ax.tick_params(labelsize=7)
        ax2 = fig.add_subplot(2, n, n + i + 1)
        ax2.contourf(gx.numpy(), gy.numpy(), values[label], levels=20, cmap="viridis", vmin=zmin, vmax=zmax)
        g = pred(coarse)[1].reshape(arrows, arrows, 2).numpy()
        norm = np.linalg.norm(g, axis=-1, keepdims=True)
        unit = g / np.where(norm > 0, norm, 1)  # direction only: magnitudes span decades
        ax2.quiver(
            ax_.numpy(),
            ay_.numpy(),
            unit[..., 0],
            unit[..., 1],
            np.log10(norm[..., 0] + 1e-12),
            cmap="Reds",
            scale=arrows * 1.6,
        )
        ax2.set_aspect("auto")
        ax2.set_title(f"{label}: ∇ direction (colour: log10 |∇|)", fontsize=8)
        ax2.tick_params(labelsize=7)
    fig.suptitle(title or fn.name)
    fig.tight_layout()
    return fig


def weight_sweep(summary: pd.DataFrame, baseline: pd.DataFrame, n_train: int) -> plt.Figure:
    """Test MSE of Sobolev training against the derivative weight λ, per function and
    normalisation, with the equally-tuned regular baseline as a dashed line."""
    style()
    functions = sorted(summary.function.unique())
    ncol = min(4, len(functions))
    nrow = int(np.ceil(len(functions) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.8 * nrow), squeeze=False)
    palette = dict(zip(sorted(summary.normalisation.unique()), sns.color_palette("colorblind"), strict=False))
    for ax, fn in zip(axes.flat, functions, strict=False):
        for norm, color in palette.items():
            sub = summary[
                (summary.function == fn) & (summary.normalisation == norm) & (summary.n_train == n_train)
            ].sort_values("weight")
            ax.errorbar(
                sub.weight,
                sub.test_mse,
                yerr=np.nan_to_num(sub.test_mse_std.to_numpy(float)),
                fmt="o-",
                capsize=3,
                color=color,
                label=f"Sobolev, {norm}",
            )
            base = baseline[
                (baseline.function == fn) & (baseline.normalisation == norm) & (baseline.n_train == n_train)
            ]
            if len(base):
                ax.axhline(float(base.test_mse.iloc[0]), ls="--", color=color, label=f"regular, {norm}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(fn.replace("_", "-"))
        ax.set_xlabel("derivative weight λ")
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("test MSE")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Derivative weight and normalisation, {n_train} training points (mean ± std over seeds)")
    fig.tight_layout()
    return fig


def surfaces_at(fn: BenchmarkFunction, result: GridResult, chosen: pd.DataFrame, n_train: int) -> plt.Figure:
    """:func:`surfaces` of ``fn`` for seed 0's regular and Sobolev runs among ``chosen`` at ``n_train``."""
    pick = chosen[(chosen.function == fn.name) & (chosen.n_train == n_train) & (chosen.seed == 0)]
    runs = pick.set_index("method").run
    predictors = {
        f"{m} (n={n_train})": (lambda x, r=int(runs[m]): result.predict(r, x)) for m in ("regular", "sobolev")
    }
    return surfaces(fn, predictors, title=f"{fn.name}: truth, regular and Sobolev training, {n_train} points")
