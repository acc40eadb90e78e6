"""Section 4.1's report: the paper's claims decided on paired seeds, figures, saved artifacts
and the README tables, from the grid's runs (nothing here trains).

Every verdict comes from :func:`sobolev.regression.grid.paired_cells`: per function and size,
the geometric mean over seeds of the ratio arm / baseline of the test MSE with its 95%
bootstrap interval; a cell is a win or a loss only when the interval excludes 1.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib import pyplot as plt
from torch import Tensor

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import style
from sobolev.common.stats import LOSS, UNDECIDED, WIN, welch_interval
from sobolev.common.utils import atomic_save, atomic_write_json, atomic_write_text
from sobolev.core.functions import BenchmarkFunction
from sobolev.regression.config import baseline_of
from sobolev.regression.grid import GridResult

Predictor = Callable[[Tensor], tuple[Tensor, Tensor]]
ARM_LABELS = {
    "regular-raw": "regular (raw)",
    "sobolev-raw": "Sobolev (raw, paper)",
    "regular-standard": "regular (standardised)",
    "sobolev-standard": "Sobolev (standardised)",
    "balanced-standard": "balanced Sobolev (DML)",
}
ARM_COLORS = dict(zip(ARM_LABELS, sns.color_palette("colorblind", 5).as_hex(), strict=True))


def _core(chosen: pd.DataFrame) -> pd.DataFrame:
    """The runs at derivative weight 1 (or 0: regular): the λ sweep is reported on its own."""
    return chosen[chosen.weight.isin([0.0, 1.0])]


def convergence(chosen: pd.DataFrame) -> pd.DataFrame:
    """Per arm and size: chosen runs that met the plateau criterion, of how many (λ = 1 runs)."""
    core = _core(chosen)
    table = core.groupby(["arm", "n_train"]).converged.agg(["sum", "count"]).astype(int)
    return table.rename(columns={"sum": "converged", "count": "runs"}).reset_index()


def fit_table(chosen: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds of each arm's fit of its own training set, on the function's scale:
    value MSE and gradient MSE on the training points, and the test MSE for comparison."""
    core = _core(chosen)
    return core.pivot_table(
        index=["function", "n_train"], columns="arm", values=["train_mse", "train_grad_mse", "test_mse"],
        aggfunc="median",
    )  # fmt: skip


def wins(cells: pd.DataFrame, arm: str) -> pd.DataFrame:
    """Per size: decided wins, losses and undecided cells of ``arm`` against its baseline."""
    sub = cells[cells.arm == arm]
    table = sub.groupby("n_train").verdict.value_counts().unstack(fill_value=0)
    return table.reindex(columns=[WIN, LOSS, UNDECIDED], fill_value=0)


def _count_claim(text: str, wins_: int, losses: int, n_fn: int, need: int) -> Claim:
    undecided = n_fn - wins_ - losses
    holds = True if wins_ >= need else (False if wins_ + undecided < need else None)
    return Claim(text, holds, f"{wins_} won, {losses} lost, {undecided} undecided of {n_fn}")


def size_trend(cells: pd.DataFrame, chosen: pd.DataFrame, arm: str, baseline: str) -> list[tuple]:
    """Mean over functions of the per-function mean paired log ratio, per size, and the change of
    that mean between consecutive sizes with its Welch-Satterthwaite t interval (seeds independent
    between sizes; :func:`sobolev.common.stats.welch_interval`).

    Returns ``[(size_a, size_b, change, low, high)]``: a positive change means the ratio
    moves towards (or past) 1 as the data grows, i.e. the effect is weaker with more data.
    """
    core = _core(chosen)
    mine, base = core[core.arm == arm], core[core.arm == baseline]
    both = mine.merge(base, on=["function", "n_train", "seed"], suffixes=("", "_base"))
    both = both.assign(log_ratio=np.log(both.test_mse) - np.log(both.test_mse_base))
    sizes = sorted(both.n_train.unique())
    groups = {n: [g.log_ratio.to_numpy() for _, g in both[both.n_train == n].groupby("function")] for n in sizes}
    out = []
    for a, b in itertools.pairwise(sizes):
        ga, gb = groups[a], groups[b]
        weights = [-1 / len(ga)] * len(ga) + [1 / len(gb)] * len(gb)
        change = welch_interval([*ga, *gb], weights)
        out.append((int(a), int(b), change.estimate, change.low, change.high))
    return out


def only_ackley_loses(sub: pd.DataFrame) -> bool | None:
    """One arm's cells (``function``, ``verdict``): does regular training win on Ackley and nowhere else?
    Fails when another function has a decided loss or Ackley is a decided win at every size; holds when
    Ackley has a decided loss and no other function does; undecided otherwise."""
    ack = sub[sub.function == "ackley"].verdict
    others_lose = ((sub.function != "ackley") & (sub.verdict == LOSS)).any()
    if others_lose or (len(ack) and (ack == WIN).all()):
        return False
    return True if (ack == LOSS).any() else None


def claims(cells: pd.DataFrame, chosen: pd.DataFrame, arm: str) -> list[Claim]:
    """Section 4.1's claims for ``arm`` against its baseline, decided on paired seeds at every
    size they speak of (computed, never typed in).

    "6 of 7" holds at a size when Sobolev is a decided win on all functions but at most one,
    fails when even counting every undecided cell as a win would not reach that, and is
    undecided otherwise.
    """
    sub = cells[cells.arm == arm]
    if sub.empty:
        return []
    sizes = sorted(sub.n_train.unique())
    n_fn = sub.function.nunique()
    need = max(n_fn - 1, 1)
    table = wins(cells, arm)
    out = [
        _count_claim(f"Sobolev lowers test MSE on {need} of {n_fn} functions at n={n}", int(table.loc[n, WIN]),
                     int(table.loc[n, LOSS]), n_fn, need)
        for n in sizes
    ]  # fmt: skip
    won = sub[sub.verdict == WIN]
    big = int((won.high <= 0.1).sum())
    out.append(
        Claim(
            "often by an order of magnitude or more (interval entirely ≥ 10× lower on at least half of the "
            "decided wins)",
            None if won.empty else big >= len(won) / 2,
            f"{big} of {len(won)} decided wins; median ratio {sub.ratio.median():.2g}",
        )
    )
    if "ackley" in set(sub.function):
        ack = sub[sub.function == "ackley"].set_index("n_train").verdict
        low_sizes = [n for n in sizes if n <= 100] or sizes[:1]
        verdicts = [ack[n] for n in low_sizes]
        holds = True if all(v == LOSS for v in verdicts) else (False if any(v == WIN for v in verdicts) else None)
        out.append(Claim(f"Ackley is a loss at low data (n ≤ {max(low_sizes)})", holds,
                         ", ".join(f"n={n}: {ack[n]}" for n in sizes)))  # fmt: skip
        others = sub[(sub.function != "ackley") & (sub.verdict == LOSS)]
        out.append(Claim("Ackley is the only function where regular training is better (a decided loss at some "
                         "size, and no other function with one)", only_ackley_loses(sub),
                         ("no other decided loss" if others.empty else "also lost: " + ", ".join(
                             f"{r.function} n={r.n_train}" for r in others.itertuples()))
                         + "; Ackley: " + ", ".join(f"n={n}: {ack[n]}" for n in sizes)))  # fmt: skip
    if len(sizes) > 1:
        trend = size_trend(cells, chosen, arm, sub.baseline.iloc[0])
        increasing = [low > 0 for *_, low, _ in trend]
        decreasing = [high < 0 for *_, high in trend]
        holds = True if all(increasing) else (False if any(decreasing) else None)
        out.append(
            Claim(
                "the effect is stronger with less data (the mean log ratio rises at every step in size)",
                holds,
                "; ".join(f"n={a}→{b}: ×{np.exp(c):.2g} [{np.exp(lo):.2g}, {np.exp(hi):.2g}]"
                          for a, b, c, lo, hi in trend),
            )
        )  # fmt: skip
    return out


def metrics_dict(cells: pd.DataFrame, chosen: pd.DataFrame) -> dict:
    """Nested metrics for ``dvc metrics``: arm → function → size → numbers, the decided
    counts per size, the convergence counts and each claim's verdict."""
    out: dict = {}
    conv = convergence(chosen)
    for arm, sub in cells.groupby("arm"):
        block: dict = {"baseline": sub.baseline.iloc[0]}
        for r in sub.itertuples():
            block.setdefault(r.function, {})[f"n{r.n_train}"] = {
                "median_nmse": r.median, "baseline_median_nmse": r.baseline_median, "ratio": r.ratio,
                "ratio_low": r.low, "ratio_high": r.high, "verdict": r.verdict, "seeds": r.seeds,
            }  # fmt: skip
        counts = wins(cells, arm)
        block["decided"] = {f"n{n}": {k: int(v) for k, v in row.items()} for n, row in counts.iterrows()}
        block["claims"] = [c.to_dict() for c in claims(cells, chosen, arm)]
        out[arm] = block
    out["convergence"] = {
        f"{r.arm}/n{r.n_train}": {"converged": int(r.converged), "runs": int(r.runs)} for r in conv.itertuples()
    }
    return out


def training_curves(result: GridResult, chosen: pd.DataFrame) -> pd.DataFrame:
    """Median over the chosen runs (λ = 1) of the training loss relative to its first logged
    value, per arm and step (one column per arm), for ``dvc plots``."""
    core = _core(chosen)
    curves = result.curves[result.curves.run.isin(core.run)]
    first = curves.groupby("run").train_loss.transform("first")
    curves = curves.assign(relative=curves.train_loss / first, arm=result.runs.arm.loc[curves.run].to_numpy())
    return curves.pivot_table(index="step", columns="arm", values="relative", aggfunc="median").reset_index()


def save_artifacts(result: GridResult, cells: pd.DataFrame, chosen: pd.DataFrame, output_dir: str) -> None:
    """Write ``metrics.json``, ``cells.csv``, ``runs.csv``, ``train_curves.csv`` and
    ``checkpoints.pt`` (the weights and normalisers of the ``chosen`` runs) into ``output_dir``."""
    out = Path(output_dir)
    atomic_write_json(out / "metrics.json", metrics_dict(cells, chosen))
    atomic_write_text(out / "cells.csv", cells.to_csv(index=False, float_format="%.6g"))
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


def regression_table(metrics: dict, arm: str) -> str:
    """Markdown: per function and size, both arms' median test MSE / Var(f), the geometric-mean
    ratio with its 95% interval, and the verdict."""
    block = metrics[arm]
    base = block["baseline"]
    functions = sorted(k for k, v in block.items() if isinstance(v, dict) and k not in ("decided",))
    lines = [
        f"| function | n | {ARM_LABELS[base]} | {ARM_LABELS[arm]} | ratio [95% CI] | verdict |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for fn in functions:
        for size, c in sorted(block[fn].items(), key=lambda kv: int(kv[0][1:])):
            mark = "**" if c["verdict"] == WIN else ""
            lines.append(
                f"| {fn} | {size[1:]} | {c['baseline_median_nmse']:.3g} | {c['median_nmse']:.3g} | "
                f"{c['ratio']:.2g} [{c['ratio_low']:.2g}, {c['ratio_high']:.2g}] | {mark}{c['verdict']}{mark} |"
            )
    counts = ", ".join(
        f"n={k[1:]}: {v[WIN]} won, {v[LOSS]} lost, {v[UNDECIDED]} undecided"
        for k, v in sorted(block["decided"].items(), key=lambda kv: int(kv[0][1:]))
    )
    lines += ["", f"Test MSE as a fraction of the function's variance (median over seeds). Decided: {counts}."]
    return "\n".join(lines)


def claims_list(metrics: dict) -> str:
    """Markdown bullets: each claim with its computed verdict, per derivative-matching arm."""
    lines = []
    for arm, block in metrics.items():
        if isinstance(block, dict) and "claims" in block:
            lines.append(f"* {ARM_LABELS[arm]} against {ARM_LABELS[block['baseline']]}:")
            lines.append(format_claims([Claim(c["claim"], c["holds"], c["detail"]) for c in block["claims"]],
                                       bullet="  * "))  # fmt: skip
    conv = metrics.get("convergence", {})
    if conv:
        parts = [f"{k}: {v['converged']}/{v['runs']}" for k, v in conv.items()]
        lines.append("* Runs whose training loss reached its plateau: " + ", ".join(parts) + ".")
    return "\n".join(lines)


def readme_blocks(metrics: dict) -> dict[str, str]:
    """The README blocks of Section 4.1, by name."""
    out = {f"regression-{arm}": regression_table(metrics, arm) for arm in metrics if arm != "convergence"}
    out["regression-claims"] = claims_list(metrics)
    return out


def figure2(chosen: pd.DataFrame, title: str = "") -> plt.Figure:
    """Figure 2 (right), every seed shown: test MSE / Var(f) per function against training size,
    one column of points per arm (a bar marks the median), on one shared log axis (above 1: no
    better than predicting the mean). The paired ratios are :func:`paired_ratios`."""
    style()
    core = _core(chosen)
    functions = sorted(core.function.unique())
    sizes = sorted(core.n_train.unique())
    arms = [a for a in ARM_LABELS if a in set(core.arm)]
    n_panels = len(functions)
    ncol = 4
    nrow = int(np.ceil(n_panels / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), squeeze=False)
    lo = max(float(core.test_nmse[core.test_nmse > 0].min()) / 2, 1e-12)
    hi = max(float(core.test_nmse.max()) * 2, 2.0)
    width = 0.8 / len(arms)
    for ax, fn in zip(axes.flat, functions, strict=False):
        sub = core[core.function == fn]
        for k, arm in enumerate(arms):
            for j, n in enumerate(sizes):
                v = sub[(sub.arm == arm) & (sub.n_train == n)].test_nmse.to_numpy(float)
                x0 = j - 0.4 + (k + 0.5) * width
                jitter = np.linspace(-width / 4, width / 4, len(v)) if len(v) > 1 else np.zeros(len(v))
                ax.scatter(x0 + jitter, v, s=9, color=ARM_COLORS[arm], alpha=0.75,
                           label=ARM_LABELS[arm] if j == 0 else None)  # fmt: skip
                if len(v):
                    ax.hlines(np.median(v), x0 - width / 2.2, x0 + width / 2.2, color="black", lw=1.2)
        ax.axhline(1.0, color="grey", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_ylim(lo, hi)
        ax.set_xticks(range(len(sizes)), [f"{s:,}" for s in sizes])
        ax.set_title(fn.replace("_", "-"))
        ax.set_xlabel("training points")
    for row in axes:
        row[0].set_ylabel("test MSE / Var(f)")
    axes.flat[0].legend(fontsize=6, loc="lower left")
    for extra in axes.flat[n_panels:]:
        extra.axis("off")
    fig.suptitle(title or "Test MSE relative to the function's variance: every seed (points), median (bar); "
                 "paired ratios: paired_ratios.png")  # fmt: skip
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))  # a quarter inch for the title
    return fig


def paired_ratios(cells: pd.DataFrame) -> plt.Figure:
    """Each cell's geometric-mean ratio arm / baseline of the test MSE with its 95% t interval over
    paired seeds: one panel per arm, one row per function, one marker per training size (open:
    undecided), on a log axis shared by the panels."""
    style()
    arms = sorted(cells.arm.unique())
    functions = sorted(cells.function.unique())
    sizes = sorted(cells.n_train.unique())
    markers = dict(zip(sizes, ["o", "s", "^", "D", "v"], strict=False))
    offsets = dict(zip(sizes, np.linspace(-0.25, 0.25, len(sizes)) if len(sizes) > 1 else [0.0], strict=True))
    fig, axes = plt.subplots(1, len(arms), figsize=(5.2 * len(arms), 0.6 * len(functions) + 1.6), squeeze=False,
                             sharex=True, sharey=True)  # fmt: skip
    for ax, arm in zip(axes[0], arms, strict=True):
        for r in cells[cells.arm == arm].itertuples():
            y = functions.index(r.function) + offsets[r.n_train]
            color = ARM_COLORS[r.arm]
            face = "white" if r.verdict == UNDECIDED else color
            ax.errorbar(r.ratio, y, xerr=[[r.ratio - r.low], [r.high - r.ratio]], fmt=markers[r.n_train],
                        color=color, ms=5, capsize=2, lw=1, mfc=face)  # fmt: skip
        ax.axvline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks(range(len(functions)), [f.replace("_", "-") for f in functions])
        ax.set_xlabel(f"test MSE ratio, log scale\n{ARM_LABELS[arm]} / {ARM_LABELS[baseline_of(arm)]}")
        ax.set_title(ARM_LABELS[arm])
    axes[0, 0].invert_yaxis()
    axes[0, 0].set_ylabel("function")
    for n, mk in markers.items():
        axes[0, -1].scatter([], [], marker=mk, color="grey", s=20, label=f"{n:,} points")
    axes[0, -1].scatter([], [], marker="o", facecolor="white", edgecolor="grey", s=20, label="undecided (open)")
    axes[0, -1].legend(fontsize=8, loc="best")
    fig.suptitle("Paired ratio per function and size: geometric mean over seeds, 95% t interval (below 1: arm wins)")
    fig.tight_layout()
    return fig


def surfaces(
    fn: BenchmarkFunction,
    predictors: dict[str, Predictor],
    train_x: dict[str, Tensor] | None = None,
    resolution: int = 60,
    arrows: int = 14,
    title: str = "",
) -> plt.Figure:
    """Figure 3 / SM Figures 5-11: the function and each model as filled contours on one
    colour scale with a colour bar (top row), each model's own training points overlaid, and
    the direction of each gradient field underneath (bottom row; arrow colour: log₁₀ of its norm).

    The colour scale is the truth's range. Where the truth spans decades above its minimum (its
    median excursion below 1/20 of its range: Beale, Rosenbrock), it is logarithmic in
    ``f − min f``, so the valleys are not one flat colour.

    Args:
        predictors: label → function mapping raw points ``(B, 2)`` to values ``(B,)`` and
            gradients ``(B, 2)``; the truth is added first.
        train_x: label → that model's training points ``(N, 2)``, overlaid on its panel only.
    """
    from matplotlib import colors, ticker

    style()
    panels = {"truth": lambda x: (fn(x), fn.grad(x)), **predictors}
    (x0, x1), (y0, y1) = fn.domain
    gx, gy = torch.meshgrid(torch.linspace(x0, x1, resolution), torch.linspace(y0, y1, resolution), indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    ax_, ay_ = torch.meshgrid(torch.linspace(x0, x1, arrows), torch.linspace(y0, y1, arrows), indexing="xy")
    coarse = torch.stack([ax_.reshape(-1), ay_.reshape(-1)], 1)
    values = {k: p(grid)[0].reshape(resolution, resolution).numpy() for k, p in panels.items()}
    truth = values["truth"]
    zmin, zmax = float(truth.min()), float(truth.max())  # the truth's range: a model's excursions saturate
    spread = zmax - zmin
    log_scale = bool(np.median(truth - zmin) < spread / 20)
    if log_scale:  # contours of f − min f on geometric levels over four decades
        floor = spread * 1e-4
        levels, norm, shown = np.geomspace(floor, spread, 21), colors.LogNorm(floor, spread), "f − min f (log scale)"
        clipped = {k: np.clip(v - zmin, levels[0], levels[-1]) for k, v in values.items()}  # inside the levels
    else:
        levels, norm, shown = np.linspace(zmin, zmax, 21), None, "f"
        clipped = {k: np.clip(v, levels[0], levels[-1]) for k, v in values.items()}
    fields = {k: p(coarse)[1].reshape(arrows, arrows, -1).numpy() for k, p in panels.items()}
    log_norms = {k: np.log10(np.linalg.norm(g, axis=-1) + 1e-12) for k, g in fields.items()}
    clim = (float(log_norms["truth"].min()), float(log_norms["truth"].max()))  # one colour scale: the truth's
    reds = colors.ListedColormap(plt.get_cmap("Reds")(np.linspace(0.3, 1.0, 256)))  # no near-white arrows
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 6.6), squeeze=False)
    for i, label in enumerate(panels):
        ax = axes[0, i]
        cs = ax.contourf(gx.numpy(), gy.numpy(), clipped[label], levels=levels, norm=norm, cmap="viridis")
        points = (train_x or {}).get(label)
        if points is not None:
            ax.scatter(points[:, 0], points[:, 1], s=8, c="white", edgecolors="black", linewidths=0.5)
        ax.set_title(label, fontsize=8)
        ax.set_xlabel("x₁", fontsize=7)
        ax.set_ylabel("x₂", fontsize=7)
        ax.tick_params(labelsize=7)
        locator = ticker.LogLocator(numticks=5) if log_scale else ticker.MaxNLocator(5)
        bar = fig.colorbar(cs, ax=ax, fraction=0.046, pad=0.02, ticks=locator)
        bar.ax.tick_params(labelsize=6)
        if i == n - 1:
            bar.set_label(shown, fontsize=7)
        ax2 = axes[1, i]
        g = fields[label]
        length = np.linalg.norm(g, axis=-1, keepdims=True)
        unit = g / np.where(length > 0, length, 1)  # direction only: magnitudes span decades
        q = ax2.quiver(ax_.numpy(), ay_.numpy(), unit[..., 0], unit[..., 1], log_norms[label], cmap=reds,
                       clim=clim, scale=arrows * 1.6)  # fmt: skip
        fig.colorbar(q, ax=ax2, fraction=0.046, pad=0.02, label="log10 |∇|").ax.tick_params(labelsize=6)
        ax2.set_title("gradient direction (colour: size)", fontsize=8)
        ax2.set_xlabel("x₁", fontsize=7)
        ax2.set_ylabel("x₂", fontsize=7)
        ax2.tick_params(labelsize=7)
    fig.suptitle(title or fn.name, fontsize=10)
    fig.tight_layout()
    return fig


def median_seed(chosen: pd.DataFrame, function: str, n_train: int, arm: str) -> pd.Series:
    """The chosen run of ``arm`` whose test MSE is the median over seeds (the lower middle one)."""
    sub = chosen[(chosen.function == function) & (chosen.n_train == n_train) & (chosen.arm == arm)]
    sub = _core(sub).sort_values("test_mse")
    return sub.iloc[(len(sub) - 1) // 2]


def surfaces_at(
    fn: BenchmarkFunction, result: GridResult, chosen: pd.DataFrame, n_train: int, arms: tuple[str, ...]
) -> plt.Figure:
    """:func:`surfaces` of ``fn`` for each arm's median-seed run at ``n_train``, with that
    run's training points and test MSE in each title."""
    predictors, train_x = {}, {}
    for arm in arms:
        row = median_seed(chosen, fn.name, n_train, arm)
        label = f"{ARM_LABELS[arm]}, seed {int(row.seed)}\ntest MSE {row.test_mse:.3g} ({row.test_nmse:.2g} Var)"
        predictors[label] = lambda x, r=int(row.run): result.predict(r, x)
        train_x[label] = result.training_set(int(row.run)).x  # each arm's median seed has its own sample
    return surfaces(fn, predictors, train_x,
                    title=f"{fn.name}: truth and each arm's median-seed model, {n_train} training points "
                          "(white dots: that model's own training sample)")  # fmt: skip


def weight_sweep(chosen: pd.DataFrame, n_train: int) -> plt.Figure:
    """Test MSE / Var(f) of the swept arms against the derivative weight λ (every seed a point,
    median line), with the baseline's median as a dashed line. The seeds behind each median are
    printed under each λ: the main grid's weight has the grid's seeds, the sweep's weights fewer."""
    style()
    sub = chosen[chosen.n_train == n_train]
    swept = sorted({a for a in sub.arm if (sub[sub.arm == a].weight.nunique() > 1)})
    functions = sorted(sub.function.unique())
    ncol = min(4, len(functions))
    nrow = int(np.ceil(len(functions) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.1 * nrow), squeeze=False)
    counts: set[int] = set()
    for ax, fn in zip(axes.flat, functions, strict=False):
        for arm in swept:
            s = sub[(sub.function == fn) & (sub.arm == arm)]
            ax.scatter(s.weight, s.test_nmse, s=8, color=ARM_COLORS[arm], alpha=0.6)
            med = s.groupby("weight").test_nmse.median()
            seeds = s.groupby("weight").seed.nunique()
            counts |= set(seeds.tolist())
            ax.plot(med.index, med.values, "-", color=ARM_COLORS[arm], label=ARM_LABELS[arm])
            ticks = seeds
            base = sub[(sub.function == fn) & (sub.arm == f"regular-{arm.split('-')[1]}")]
            if len(base):
                ax.axhline(float(base.test_nmse.median()), ls="--", color=ARM_COLORS[f"regular-{arm.split('-')[1]}"],
                           label=f"regular (median of {base.seed.nunique()} seeds)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(list(ticks.index), [f"{w:g}\n({k} seeds)" for w, k in ticks.items()], fontsize=7)
        ax.minorticks_off()  # after the log scale, which would replace these ticks
        ax.set_yscale("log")
        ax.set_title(fn.replace("_", "-"))
        ax.set_xlabel("derivative weight λ (log)")
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("test MSE / Var(f)")
    axes[0, 0].legend(fontsize=7)
    mixed = " (medians over different seed counts: see under each λ)" if len(counts) > 1 else ""
    fig.suptitle(f"Derivative weight λ, {n_train} training points: every seed, line through the medians{mixed}")
    fig.tight_layout(rect=(0, 0, 1, 0.93))  # room for the title above the top tick labels
    return fig
