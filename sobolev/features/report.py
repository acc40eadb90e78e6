"""The feature-update section's verdicts, metrics, README block and figures (all computed from runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import pyplot as plt

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import METHOD_COLORS, style
from sobolev.common.stats import LOSS, UNDECIDED, WIN, all_win, count_verdicts
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.features.compute import METHODS, MIN_EFFECT, final


def claims(
    table: pd.DataFrame, needed: pd.DataFrame, steps: int, within: float, task: str = "regression"
) -> list[Claim]:
    """Verdicts from :func:`sobolev.features.compute.curve` (``table``) and
    :func:`~sobolev.features.compute.updates_needed` (``needed``), each text prefixed by ``task``
    (``regression``: the functions' test MSE; ``digits``: the students' test KL to the teacher)."""
    out = []
    by_k = "; ".join(f"K={k}: {count_verdicts(g.verdict)}" for k, g in table.groupby("every"))
    full = table[table.every == 1].set_index("function").verdict
    fixed = table[table.every == table.every.max()].set_index("function").verdict
    winners = full[full == WIN].index
    kept = [f for f in winners if (table[(table.function == f)].verdict == WIN).all()]
    lost = [f for f in winners if (table[(table.function == f)].verdict == LOSS).any()]
    out.append(Claim(
        "Sobolev's advantage over regular training holds at every K (every number of feature updates)",
        None if not len(winners) else (False if lost else len(kept) == len(winners) or None),
        f"of {len(winners)} functions where Sobolev wins with ordinary training (K = 1), it wins at every K on "
        f"{len(kept)} and loses at some K on {len(lost)}; per K over functions: {by_k}",
    ))  # fmt: skip
    nt = [f for f in winners if fixed[f] == WIN]
    out.append(Claim(
        "Sobolev's advantage survives with the features frozen at initialisation (K = steps: the linearised, NTK end; "
        f"a win needs its interval ≥ {MIN_EFFECT:.0%} below 1, in a cell where an arm beats predicting the mean)",
        all_win([fixed[f] for f in winners]),
        f"wins at the fixed-feature end on {len(nt)} of those {len(winners)} functions "
        f"({count_verdicts(fixed)} over all functions)",
    ))  # fmt: skip
    few = steps // 10
    for method in METHODS:
        mine = needed[needed.method == method]
        ok = int((mine.rounds_needed <= few).sum())
        holds = True if ok == len(mine) else (False if ok < len(mine) / 2 else None)
        out.append(Claim(
            f"{method}: a few feature updates recover full training — error within {within:.0%} of K = 1's with at "
            f"most {few} anchors (a tenth of the {steps} updates)",
            holds, f"{ok} of {len(mine)} functions; anchors needed: "
            + ", ".join(f"{r.function} {r.rounds_needed}" for r in mine.itertuples()),
        ))  # fmt: skip
    pair = needed.pivot(index="function", columns="method", values="rounds_needed")
    fewer, more = int((pair.sobolev < pair.regular).sum()), int((pair.sobolev > pair.regular).sum())
    out.append(Claim(
        "Sobolev training needs fewer feature updates than regular training to come within "
        f"{within:.0%} of its own full training",
        # a comparison of medians without an interval: decided only as a count over at least 3 functions
        None if len(pair) < 3 else (True if fewer > len(pair) / 2 and more == 0 else
                                    (False if more > len(pair) / 2 else None)),
        f"fewer on {fewer}, more on {more}, as many on {len(pair) - fewer - more} of {len(pair)} functions"
        + (" (fewer than 3: not decided)" if len(pair) < 3 else ""),
    ))  # fmt: skip
    return [Claim(f"{task}: {c.text}", c.holds, c.evidence) for c in out]


def metrics_dict(
    table: pd.DataFrame,
    needed: pd.DataFrame,
    digits: pd.DataFrame,
    accuracy: pd.DataFrame,
    teacher: dict,
    claims_: list[Claim],
) -> dict:
    """Everything the README and ``dvc metrics`` show, keyed for stable diffs (``digits``: the
    students' :func:`~sobolev.features.compute.curve` of test KL; ``accuracy``:
    :func:`~sobolev.features.compute.accuracy_table`; ``teacher``: its test accuracy)."""
    return {
        "digits_kl": {f"K{r.every}": {"rounds": r.rounds, "regular": r.regular, "sobolev": r.sobolev,
                      "ratio": r.ratio, "low": r.low, "high": r.high, "verdict": r.verdict}
                      for r in digits.itertuples()},
        "digits_accuracy": {f"K{r.every}": {"regular": r.regular_accuracy, "sobolev": r.sobolev_accuracy,
                            "difference": r.difference, "low": r.low, "high": r.high, "verdict": r.verdict}
                            for r in accuracy.itertuples()},
        **teacher,
        "curve": {f"{r.function}/K{r.every}": {"rounds": r.rounds, "regular": r.regular, "sobolev": r.sobolev,
                  "ratio": r.ratio, "low": r.low, "high": r.high, "verdict": r.verdict} for r in table.itertuples()},
        "updates_needed": {f"{r.function}/{r.method}": {"rounds": r.rounds_needed, "full": r.full_error,
                           "fixed_over_full": r.fixed_over_full} for r in needed.itertuples()},
        "claims": [c.to_dict() for c in claims_],
    }  # fmt: skip


def save_artifacts(
    runs: pd.DataFrame, table: pd.DataFrame, digit_runs: pd.DataFrame, metrics: dict, output_dir: str | Path
) -> None:
    """Write ``runs.csv`` (every regression run at every checkpoint), ``curve.csv``, ``digits.csv``
    (every digits student at every checkpoint) and ``metrics.json``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "digits.csv", digit_runs.to_csv(index=False))
    atomic_write_text(out / "runs.csv", runs.to_csv(index=False))
    atomic_write_text(out / "curve.csv", table.to_csv(index=False))
    atomic_write_json(out / "metrics.json", metrics)


def readme_block(metrics: dict) -> str:
    """Markdown: Sobolev / regular per function and K (ratio [interval] verdict), then the claims."""
    curve = metrics["curve"]
    ks = sorted({int(k.split("/K")[1]) for k in curve})
    functions = sorted({k.split("/K")[0] for k in curve})
    lines = ["| function | " + " | ".join(f"K={k} ({curve[f'{functions[0]}/K{k}']['rounds']} anchors)" for k in ks)
             + " |", "| --- |" + " ---: |" * len(ks)]  # fmt: skip
    for fn in functions:
        cells = []
        for k in ks:
            c = curve[f"{fn}/K{k}"]
            mark = "**" if c["verdict"] == WIN else ""
            cells.append(f"{c['ratio']:.2g} [{c['low']:.2g}, {c['high']:.2g}] {mark}{c['verdict']}{mark}")
        lines.append(f"| {fn} | " + " | ".join(cells) + " |")
    cells = []
    for k in ks:
        c, a = metrics["digits_kl"][f"K{k}"], metrics["digits_accuracy"][f"K{k}"]
        mark = "**" if c["verdict"] == WIN else ""
        cells.append(f"{c['ratio']:.2g} [{c['low']:.2g}, {c['high']:.2g}] {mark}{c['verdict']}{mark}; accuracy "
                     f"{a['regular']:.3f} → {a['sobolev']:.3f}")  # fmt: skip
    lines.append("| digits students (test KL to the teacher) | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", format_claims([Claim.from_dict(c) for c in metrics["claims"]], bullet="* ")])


def curves_figure(runs: pd.DataFrame) -> plt.Figure:
    """Test error at the full budget against the number of anchors (feature sets), per function: every
    seed a point, the median a line, both losses; log-log."""
    style()
    end = final(runs)
    functions = sorted(set(end.function))
    cols = min(4, len(functions))
    rows_ = -(-len(functions) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(3.6 * cols, 3.1 * rows_), squeeze=False)
    for ax, fn in zip(axes.flat, functions, strict=False):
        sub = end[end.function == fn]
        for method in METHODS:
            m = sub[sub.method == method]
            ax.scatter(m.rounds, m.test_nmse, s=8, alpha=0.4, color=METHOD_COLORS[method])
            med = m.groupby("rounds").test_nmse.median()
            ax.plot(med.index, med.values, "-o", ms=3, color=METHOD_COLORS[method], label=method)
        ax.set(xscale="log", yscale="log", title=fn, xlabel="anchors (feature sets) in training",
               ylabel="test MSE / Var f")  # fmt: skip
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Left end: features frozen at initialisation (NTK); right end: ordinary training (K = 1)")
    fig.tight_layout()
    return fig


def ratio_figure(table: pd.DataFrame) -> plt.Figure:
    """Sobolev / regular test MSE against the number of anchors with 95% intervals, one panel per
    function (shared log axes, so bands never overlap); filled markers: decided, open: undecided."""
    style()
    functions = sorted(set(table.function))
    ncol = min(4, len(functions))
    nrow = int(np.ceil(len(functions) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.6 * nrow + 0.4), squeeze=False, sharex=True,
                             sharey=True)  # fmt: skip
    for ax, fn in zip(axes.flat, functions, strict=False):
        g = table[table.function == fn].sort_values("rounds")
        ax.plot(g.rounds, g.ratio, "-", color="C0")
        ax.fill_between(g.rounds, g.low, g.high, color="C0", alpha=0.2)
        decided = (g.verdict != UNDECIDED).to_numpy()
        ax.scatter(g.rounds[decided], g.ratio[decided], color="C0", zorder=3, label="decided")
        ax.scatter(g.rounds[~decided], g.ratio[~decided], facecolor="white", edgecolor="C0", zorder=3,
                   label="undecided")  # fmt: skip
        ax.axhline(1, color="black", lw=0.8)
        ax.set(xscale="log", yscale="log", title=fn.replace("_", "-"), xlabel="anchors (log)")
    for ax in axes.flat[len(functions) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel("test MSE ratio,\nSobolev / regular")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Sobolev / regular against feature sets seen (95% t interval; below 1: Sobolev better)")
    fig.tight_layout()
    return fig


def phase_figure(phase: pd.DataFrame, function: str) -> plt.Figure:
    """Heat maps of the median test error over training time (rows) and K (columns), per loss, and
    their ratio Sobolev / regular (log10)."""
    style()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    grids = {m: phase[phase.method == m].pivot(index="step", columns="every", values="test_nmse") for m in METHODS}
    vmin = np.log10(min(g.min().min() for g in grids.values()))
    vmax = np.log10(max(g.max().max() for g in grids.values()))
    for ax, method in zip(axes[:2], METHODS, strict=True):
        sns.heatmap(np.log10(grids[method]), ax=ax, vmin=vmin, vmax=vmax, cmap="viridis", annot=True, fmt=".1f",
                    cbar_kws={"label": "log10 test MSE / Var f"})  # fmt: skip
        ax.set(title=f"{function}, {method}", xlabel="K (updates between feature updates)", ylabel="update")
    ratio = np.log10(grids["sobolev"] / grids["regular"])
    lim = float(np.nanmax(np.abs(ratio.to_numpy())))
    shown = ratio.round(2) + 0.0  # + 0.0 turns a rounded -0.0 into 0.0: no "-0.00" in the cells
    sns.heatmap(ratio, ax=axes[2], cmap="coolwarm", center=0, vmin=-lim, vmax=lim, annot=shown, fmt=".2f",
                cbar_kws={"label": "log10 Sobolev / regular"})  # fmt: skip
    axes[2].set(title="Sobolev / regular (blue: Sobolev better)", xlabel="K", ylabel="update")
    fig.tight_layout()
    return fig


def digits_figure(runs: pd.DataFrame, teacher_accuracy: float) -> plt.Figure:
    """Digits students at the full budget against the number of anchors: test KL to the teacher and
    test accuracy (every seed a point, the median a line), both distillation losses."""
    style()
    end = final(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, column, label in ((axes[0], "test_kl", "test KL(teacher ‖ student)"),
                              (axes[1], "test_accuracy", "test accuracy (labels)")):  # fmt: skip
        for method in METHODS:
            m = end[end.method == method]
            ax.scatter(m.rounds, m[column], s=10, alpha=0.5, color=METHOD_COLORS[method])
            med = m.groupby("rounds")[column].median()
            ax.plot(med.index, med.values, "-o", ms=3, color=METHOD_COLORS[method], label=f"{method} distillation")
        ax.set(xscale="log", xlabel="anchors (feature sets) in training", ylabel=label)
    axes[0].set_yscale("log")
    axes[1].axhline(teacher_accuracy, ls="--", color="grey", label="teacher")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
