"""The relative-trust section's verdicts, metrics, README block and figures (all computed from runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import style
from sobolev.common.stats import LOSS, UNDECIDED, WIN, Interval, all_win, count_verdicts, paired_ratio
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.trust.compute import ADAM, FROMAGE, NOTHING_LEARNS, WEIGHTS, run_norms

ARM_COLORS = {ADAM: "#4c72b0", FROMAGE: "#dd8452"}
OPTIMISER_COLORS = {"adam": "#4c72b0", "fromage": "#dd8452", "lars": "#55a868", "lars-momentum": "#8172b3"}


def convergence(runs: pd.DataFrame) -> pd.DataFrame:
    """Fraction of the grid's chosen runs (:func:`sobolev.trust.compute.grid_arms`) converged
    (training loss moved < ``converged_change`` over the last tenth), per arm and loss."""
    return runs.groupby(["arm", "method"]).converged.agg(["mean", "size"]).reset_index()


def claims(
    cells: pd.DataFrame,
    optimiser_cells: pd.DataFrame,
    ranges: pd.DataFrame,
    tuning: pd.DataFrame,
    finals: pd.DataFrame,
    trust: pd.DataFrame,
    slopes: pd.DataFrame,
    default_lr: float,
) -> list[Claim]:
    """The verdicts, each decided by intervals over paired seeds or by counts of decided cells.

    Args:
        cells: :func:`sobolev.trust.compute.sobolev_cells`; ``optimiser_cells``:
            :func:`~sobolev.trust.compute.optimiser_cells`; ``ranges``:
            :func:`~sobolev.trust.compute.good_ranges`; ``tuning``:
            :func:`~sobolev.trust.compute.default_tuning`; ``finals``:
            :func:`~sobolev.trust.compute.run_norms`; ``trust``:
            :func:`~sobolev.trust.compute.trust_summary`; ``slopes``:
            :func:`~sobolev.trust.compute.trust_slopes`.
    """
    out = []
    for norm in sorted(set(cells.normalisation)):  # 1. Sobolev's advantage without tuning
        mine = cells[cells.normalisation == norm]
        both = mine.pivot_table(index=["function", "n_train"], columns="arm", values="verdict", aggfunc="first")
        adam_wins = both[both[ADAM] == WIN]
        lost, kept = int((adam_wins[FROMAGE] == LOSS).sum()), int((adam_wins[FROMAGE] == WIN).sum())
        holds = None if not len(adam_wins) else (False if lost else (True if kept == len(adam_wins) else None))
        per_size = "; ".join(
            f"n={n}: Adam {count_verdicts(mine[(mine.arm == ADAM) & (mine.n_train == n)].verdict)}, "
            f"Fromage {count_verdicts(mine[(mine.arm == FROMAGE) & (mine.n_train == n)].verdict)}"
            for n in sorted(set(mine.n_train))
        )
        out.append(Claim(
            f"{norm} data: Sobolev beats regular training under untuned Fromage (η = {default_lr:g}) in every cell "
            "where it does under tuned Adam",
            holds, f"of {len(adam_wins)} cells Sobolev wins under Adam, Fromage keeps {kept} and loses {lost}; "
            f"verdicts agree in {int((both[ADAM] == both[FROMAGE]).sum())} of {len(both)} cells ({per_size})",
        ))  # fmt: skip
    for norm in sorted(set(optimiser_cells.normalisation)):  # 2. Fromage at its default against tuned Adam
        mine = optimiser_cells[optimiser_cells.normalisation == norm]
        losses = int((mine.verdict == LOSS).sum())
        holds = False if losses > len(mine) / 2 else (True if losses == 0 else None)
        detail = "; ".join(f"{m}: {count_verdicts(mine[mine.method == m].verdict)}" for m in sorted(set(mine.method)))
        out.append(Claim(
            f"{norm} data: Fromage at η = {default_lr:g} is competitive with Adam at its tuned rate "
            "(Fromage / Adam test MSE per cell; not reproduced when Fromage loses in most cells)",
            holds, detail + " (win = Fromage better)",
        ))  # fmt: skip
    for norm in sorted(set(ranges.normalisation)):  # 3. tuning-free: the default inside the good range
        mine = ranges[(ranges.normalisation == norm) & ranges.learns]
        mine_tuning = tuning[tuning.normalisation == norm]
        decided, flat = mine_tuning[mine_tuning.learns], mine_tuning[~mine_tuning.learns]
        inside = int((decided.verdict == WIN).sum())
        by_optimiser = mine.groupby("optimiser")
        widths = ", ".join(
            f"{o} {g.decades.median():.2g} ({int((g.n_good == 0).sum())} without a good rate)" for o, g in by_optimiser
        )
        nothing = "; ".join(f"{r.function} {r.method}" for r in flat.itertuples()) or "none"
        out.append(Claim(
            f"{norm} data: Fromage's default η = {default_lr:g} needs no tuning (its test error within the good "
            "factor of the sweep's best, paired over seeds, for both losses on every sweep function where "
            f"something learns: best median test MSE below {NOTHING_LEARNS:g} Var f)",
            all_win(decided.verdict), f"decided within on {inside} of {len(decided)} (function, loss) pairs over "
            f"{int(decided.seeds.min()) if len(decided) else 0} seeds: " + "; ".join(
                f"{r.function} {r.method}: ×{r.ratio_to_best:.2g} [{r.low:.2g}, {r.high:.2g}] of {r.best}"
                for r in decided.itertuples()) + f"; good range in decades (medians over the pairs that learn): "
            f"{widths}; left out, nothing learns at any rate: {nothing}",
        ))  # fmt: skip
    for norm in sorted(set(finals.normalisation)):  # 4. the reviewers' shrinkage
        mine = finals[finals.normalisation == norm]
        plain, lars = mine[mine.variant == "fromage"], mine[mine.variant == "lars"]
        pair = plain.merge(lars, on=["function", "seed", "method"], suffixes=("", "_lars"))
        r: Interval = paired_ratio(pair.final_norm, pair.final_norm_lars)
        out.append(Claim(
            f"{norm} data: Fromage's factor 1/√(1+η²) shrinks the weights as training nears a stationary point "
            "(reviewer 2; final weight norm, Fromage / LARS paired: LARS is Fromage without the factor)",
            {WIN: True, LOSS: False}.get(r.verdict),
            f"Fromage / LARS final norm: {r} over {r.n} pairs; Fromage's final norm / initial, median over "
            f"{len(plain)} runs: {plain.final_norm.median():.3g}",
        ))  # fmt: skip
    for quantity, column, ratio in (("output", "output_within", "output_over_bound"),
                                    ("input gradient", "gradient_within", "gradient_over_bound")):  # fmt: skip
        worst = trust.loc[trust[column].idxmin()]  # 5-6. deep relative trust for outputs and input gradients
        holds = bool(trust[column].min() >= 0.95)  # a count over every network measured, not a sample estimate
        out.append(Claim(
            f"Deep relative trust bounds the network's {quantity}: relative change ≤ ∏(1+εₗ) − 1 for ≥ 95% of "
            "the networks and directions measured, at every ε",
            holds, f"lowest fraction within the bound: {trust[column].min():.2f} ({worst.direction} direction, "
            f"ε = {worst.eps:g}); median change / bound: "
            + ", ".join(f"{d} {trust[trust.direction == d][ratio].median():.2g}" for d in sorted(set(trust.direction))),
        ))  # fmt: skip
    above, below = trust[trust.low > 1], trust[trust.high < 1]
    holds = False if len(above) else (True if len(below) == len(trust) else None)
    out.append(Claim(
        "The input gradient (what Sobolev training matches) moves no more than the output under the same relative "
        "perturbation of every layer",
        holds, f"input-gradient / output change per direction and ε: {len(above)} of {len(trust)} intervals above 1, "
        f"{len(below)} below 1; at the smallest and largest ε: " + "; ".join(
            f"{row.direction} ε={row.eps:g}: {row.gradient_vs_output:.2g} [{row.low:.2g}, {row.high:.2g}]"
            for row in pd.concat([trust.groupby("direction").head(1), trust.groupby("direction").tail(1)]).itertuples()
        ) + "; log-log slope of the median change against ε: " + ", ".join(
            f"{r.direction} {r.quantity.replace('_', ' ')} {r.slope:.2f}" for r in slopes.itertuples()
        ),
    ))  # fmt: skip
    return out


def metrics_dict(
    cells: pd.DataFrame,
    optimiser_cells: pd.DataFrame,
    ranges: pd.DataFrame,
    norm_table: pd.DataFrame,
    trust: pd.DataFrame,
    slopes: pd.DataFrame,
    conv: pd.DataFrame,
    claims_: list[Claim],
) -> dict:
    """Everything the README and ``dvc metrics`` show, keyed for stable diffs."""

    def cell(row: pd.Series) -> dict:
        return {"median": row["median"], "baseline_median": row.baseline_median, "ratio": row.ratio,
                "low": row.low, "high": row.high, "verdict": row.verdict, "seeds": int(row.seeds)}  # fmt: skip

    return {
        "sobolev_over_regular": {
            f"{r.arm}/{r.normalisation}/{r.function}/n{r.n_train}": cell(r) for _, r in cells.iterrows()
        },
        "fromage_over_adam": {
            f"{r.method}/{r.normalisation}/{r.function}/n{r.n_train}": cell(r) for _, r in optimiser_cells.iterrows()
        },
        "good_range": {
            f"{r.optimiser}/{r.normalisation}/{r.method}/{r.function}": {
                "n_good": int(r.n_good), "low": r.good_low, "high": r.good_high, "decades": r.decades,
                "best_lr": r.best_lr, "default_good": bool(r.default_good),
            } for r in ranges.itertuples()
        },
        "weight_norms": {
            f"{r.variant}/{r.normalisation}/{r.method}": {
                "final": r.final_norm, "min": r.min_norm, "test_nmse": r.test_nmse, "converged": r.converged,
            }
            for r in norm_table.itertuples()
        },
        "relative_trust": {
            f"{r.direction}/eps{r.eps:g}": {
                "output_over_bound": r.output_over_bound, "gradient_over_bound": r.gradient_over_bound,
                "output_within": r.output_within, "gradient_within": r.gradient_within,
                "gradient_vs_output": r.gradient_vs_output, "low": r.low, "high": r.high,
            } for r in trust.itertuples()
        },
        "trust_slopes": {f"{r.direction}/{r.quantity}": r.slope for r in slopes.itertuples()},
        "converged": {f"{r.arm}/{r.method}": {"fraction": r.mean, "runs": int(r.size)} for r in conv.itertuples()},
        "claims": [c.to_dict() for c in claims_],
    }  # fmt: skip


def save_artifacts(
    runs: pd.DataFrame, cells: pd.DataFrame, trust_table: pd.DataFrame, metrics: dict, output_dir: str | Path
) -> None:
    """Write ``runs.csv``, ``cells.csv``, ``trust.csv`` and ``metrics.json`` into ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", runs.to_csv(index=False))
    atomic_write_text(out / "cells.csv", cells.to_csv(index=False))
    atomic_write_text(out / "trust.csv", trust_table.to_csv(index=False))
    atomic_write_json(out / "metrics.json", metrics)


def readme_block(metrics: dict) -> str:
    """Markdown: the Sobolev / regular ratio per cell under both optimisers, then the claims."""
    lines = ["| data | function | n | Sobolev / regular, Adam (tuned) | Fromage (η = 0.01, untuned) | agree |",
             "| --- | --- | ---: | ---: | ---: | --- |"]  # fmt: skip
    cells = metrics["sobolev_over_regular"]

    def order(key: str) -> tuple:
        _, norm, fn, n = key.split("/")
        return norm, fn, int(n[1:])

    for key in sorted((k for k in cells if k.startswith(ADAM)), key=order):
        a = cells[key]
        f = cells[key.replace(ADAM, FROMAGE, 1)]
        _, norm, fn, n = key.split("/")

        def show(c: dict) -> str:
            mark = "**" if c["verdict"] == WIN else ""
            return f"{c['ratio']:.2g} [{c['low']:.2g}, {c['high']:.2g}] {mark}{c['verdict']}{mark}"

        agree = "yes" if a["verdict"] == f["verdict"] else "no"
        lines.append(f"| {norm} | {fn} | {n[1:]} | {show(a)} | {show(f)} | {agree} |")
    claims_ = [Claim.from_dict(c) for c in metrics["claims"]]
    return "\n".join([*lines, "", format_claims(claims_, bullet="* ")])


# ---------------------------------------------------------------- figures


def ratio_figure(cells: pd.DataFrame) -> plt.Figure:
    """Sobolev / regular test MSE per function (geometric mean over paired seeds, 95% t
    interval), under tuned Adam and default Fromage, one panel per data scale and size; open = undecided."""
    style()
    panels = sorted(set(zip(cells.normalisation, cells.n_train, strict=True)))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.6), squeeze=False, sharey=True)
    functions = sorted(set(cells.function))
    for ax, (norm, n) in zip(axes[0], panels, strict=True):
        for k, (arm, color) in enumerate(ARM_COLORS.items()):
            sub = cells[(cells.normalisation == norm) & (cells.n_train == n) & (cells.arm == arm)]
            sub = sub.set_index("function").reindex(functions)
            xs = np.arange(len(functions)) + (k - 0.5) * 0.3
            ax.errorbar(xs, sub.ratio, yerr=[sub.ratio - sub.low, sub.high - sub.ratio], fmt="none", ecolor=color)
            decided = (sub.verdict != UNDECIDED).to_numpy()
            ax.scatter(xs[decided], sub.ratio[decided], color=color, label=arm, zorder=3)
            ax.scatter(xs[~decided], sub.ratio[~decided], facecolor="white", edgecolor=color, zorder=3)
        ax.axhline(1, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(functions)), functions, rotation=30)
        ax.set_xlabel("function")
        ax.set_title(f"{norm} data, n = {n}")
        ax.set_ylabel("test MSE, Sobolev / regular (log)")
    axes[0, 0].legend(title="optimiser", fontsize=8)
    fig.suptitle("Below 1: Sobolev better (filled: the interval excludes 1)")
    fig.tight_layout()
    return fig


OPTIMISER_LINES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D")]


def sweep_figure(runs: pd.DataFrame, errors: pd.DataFrame, factor: float, default_lr: float) -> plt.Figure:
    """Normalised test MSE against learning rate, per optimiser (median line, every seed a point);
    rows: data scale and loss; columns: sweep functions; dashed: the good threshold (``factor`` × best)."""
    style()
    sweep = runs[runs.sweep & ~runs.diverged]
    functions = sorted(set(sweep.function))
    rows = sorted(set(zip(sweep.normalisation, sweep.method, strict=True)))
    fig, axes = plt.subplots(len(rows), len(functions), figsize=(4 * len(functions), 3 * len(rows)), squeeze=False,
                             sharex=True)  # fmt: skip
    for i, (norm, method) in enumerate(rows):
        for j, fn in enumerate(functions):
            ax = axes[i, j]
            pick = (sweep.normalisation == norm) & (sweep.method == method) & (sweep.function == fn)
            mine = sweep[pick]
            med = errors[(errors.normalisation == norm) & (errors.method == method) & (errors.function == fn)]
            for k, (opt, color) in enumerate(OPTIMISER_COLORS.items()):
                m, e = mine[mine.optimiser == opt], med[(med.optimiser == opt) & np.isfinite(med.median_nmse)]
                style_ = OPTIMISER_LINES[k % len(OPTIMISER_LINES)]  # optimisers that coincide stay visible
                ax.scatter(m.lr, m.test_nmse, s=8, color=color, alpha=0.5, marker=style_[1])
                ax.plot(e.lr, e.median_nmse, linestyle=style_[0], marker=style_[1], ms=4 + k, mfc="none",
                        lw=1 + 0.4 * k, color=color, label=opt, zorder=2 + k)  # fmt: skip
            best = med.median_nmse.min()
            ax.axhline(factor * best, ls="--", color="grey", lw=0.8)
            if best >= NOTHING_LEARNS:  # nothing learns, so no rate is "good" (and the claims leave it out)
                ax.text(0.5, 0.5, f"nothing learns here\n(best median {best:.2f} Var f)", transform=ax.transAxes,
                        ha="center", va="center", fontsize=8, color="firebrick")  # fmt: skip
            ax.axvline(default_lr, ls=":", color="black", lw=0.8)
            ax.set(xscale="log", yscale="log", title=f"{fn}, {norm}, {method}", xlabel="learning rate",
                   ylabel="test MSE / Var f")  # fmt: skip
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(
        f"Below the dashed line: within {factor:g}x of the best any optimiser reached (dotted: η = {default_lr:g})"
    )
    fig.tight_layout()
    return fig


def norm_figure(runs: pd.DataFrame, norms: pd.DataFrame) -> plt.Figure:
    """Each weight matrix's norm relative to its initial norm over training (median over runs,
    thin lines: every run), per data scale (rows) and optimiser variant (columns); constant rate."""
    style()
    table = norms.merge(run_norms(runs, norms)[["variant", "normalisation"]], left_on="run", right_index=True)
    variants, scales = sorted(set(table.variant)), sorted(set(table.normalisation))
    fig, axes = plt.subplots(len(scales), len(variants), figsize=(4.2 * len(variants), 3.2 * len(scales)),
                             squeeze=False, sharey=True)  # fmt: skip
    palette = dict(zip(WEIGHTS, sns.color_palette("colorblind", len(WEIGHTS)), strict=True))
    for i, norm in enumerate(scales):
        for ax, variant in zip(axes[i], variants, strict=True):
            sub = table[(table.variant == variant) & (table.normalisation == norm)]
            for (_, tensor), g in sub.groupby(["run", "tensor"]):
                ax.plot(g.step, g.relative_norm, color=palette[tensor], lw=0.4, alpha=0.3)
            med = sub.groupby(["tensor", "step"]).relative_norm.median().reset_index()
            for tensor, g in med.groupby("tensor"):
                ax.plot(g.step, g.relative_norm, color=palette[tensor], lw=2, label=tensor)
            ax.axhline(1, color="black", lw=0.8)
            ax.set(yscale="log", title=f"{variant}, {norm} data", xlabel="update", ylabel="‖W‖ / ‖W at start‖")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def trust_figure(table: pd.DataFrame) -> plt.Figure:
    """Relative change of the output and of the input gradient against the relative perturbation ε
    of every layer (every network a point, median line), with the bound ∏(1+ε) − 1; one panel per
    direction (random, and the training loss's gradient: a Fromage step of size ε)."""
    style()
    directions = sorted(set(table.direction))
    fig, axes = plt.subplots(1, len(directions), figsize=(5 * len(directions), 3.8), squeeze=False, sharey=True)
    colors = {"output": "#4c72b0", "input_gradient": "#c44e52"}
    for ax, d in zip(axes[0], directions, strict=True):
        sub = table[table.direction == d]
        for q, color in colors.items():
            jitter = np.exp(np.random.default_rng(0).uniform(-0.08, 0.08, len(sub)))
            ax.scatter(sub.eps * jitter, sub[q], s=5, alpha=0.3, color=color)
            med = sub.groupby("eps")[q].median()
            ax.plot(med.index, med.values, "-o", ms=3, color=color, label=q.replace("_", " "))
        b = sub.groupby("eps").bound.first()
        ax.plot(b.index, b.values, "k--", label="bound ∏(1+ε) − 1")
        ax.set(xscale="log", yscale="log", title=f"{d} direction", xlabel="relative perturbation ε per layer",
               ylabel="relative change")  # fmt: skip
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig
