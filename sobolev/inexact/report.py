"""The inexact-derivatives section's report: the noise curve's crossings, the equal-budget table,
the guidance for users, claims, figures, metrics and the README block (nothing here trains)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import style
from sobolev.common.stats import LOSS, UNDECIDED, WIN, all_win, count_verdicts, paired_ratio
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.core.fitting import choose_recipe
from sobolev.inexact.compute import METHODS, InexactResult, advantage, crossing

#: JENN's noisy-partials study (2-D Rastrigin, 100 points, one seed): above about this mean
#: relative error in the partials, the benefit of training on them disappears.
JENN_THRESHOLD = 0.05
COLORS = {"values": "#4C72B0", "finite_differences": "#55A868", "knn": "#8172B3", "exact": "#DD8452"}
LAM_COLORS = ("#DD8452", "#C44E52", "#937860", "#DA8BC3")
LABELS = {"values": "values only (m points)", "finite_differences": "forward differences (m/(d+1) points)",
          "knn": "k-NN estimates (m points)", "exact": "exact gradients (m points)"}  # fmt: skip


def percent(level: float) -> str:
    """``0.05`` as ``"5%"``; NaN as ``"—"``."""
    return "—" if not np.isfinite(level) else f"{100 * level:g}%"


# --- tables ------------------------------------------------------------------------------------
def budget_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (function, dim, budget, method): median test MSE / Var f, training points, evaluations,
    median relative label error, and the paired ratio to values only (same m, same seeds) with its
    t interval and verdict (``win``: the method is decidedly more accurate than values only)."""
    rows = []
    for (fn, dim, m), cell in runs.groupby(["function", "dim", "budget"], sort=False):
        values = cell[cell.method == "values"].set_index("seed").test_nmse
        for method in METHODS:
            sub = cell[cell.method == method].set_index("seed")
            if sub.empty:
                continue
            row = {"function": fn, "dim": int(dim), "budget": int(m), "method": method,
                   "points": int(sub.points.iloc[0]), "calls": int(sub.calls.iloc[0]),
                   "test_nmse": float(sub.test_nmse.median()), "label_error": float(sub.gradient_error.median()),
                   "seeds": len(sub)}  # fmt: skip
            if method != "values":
                r = paired_ratio(sub.test_nmse.to_numpy(), values.loc[sub.index].to_numpy())
                row |= {"ratio": r.estimate, "low": r.low, "high": r.high, "verdict": r.verdict}
            rows.append(row)
    return pd.DataFrame(rows)


def guidance(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dim, budget), what a user should do, from :func:`budget_table`'s verdicts.

    Functions where no use of the budget beats predicting the mean (best median test error ≥ Var f)
    are set aside as ``nothing_learns``; over the others, each derivative source's verdicts against
    values only, and two pieces of advice: ``with_gradients`` (a user who can compute exact gradients)
    and ``black_box`` (one who can only call the function: forward differences or k-NN estimates).
    A source is advised when it wins in at least half those functions and in more than it loses
    (the lower geometric-mean ratio breaks a tie); ``caveat`` names where an advised source lost.
    """
    names = {"exact": "exact gradients", "finite_differences": "forward differences", "knn": "k-NN estimates"}
    rows = []
    for (dim, m), cell in table.groupby(["dim", "budget"]):
        best = cell.groupby("function").test_nmse.min()
        hopeless = sorted(best[best >= 1].index)
        live = cell[~cell.function.isin(hopeless) & (cell.method != "values")]
        n_live = best.size - len(hopeless)
        row: dict = {"dim": int(dim), "budget": int(m), "functions": int(best.size),
                     "nothing_learns": ", ".join(hopeless) or "none"}  # fmt: skip
        advised: dict[str, tuple[float, str]] = {}
        caveats = []
        for method in names:
            sub = live[live.method == method]
            row[method] = count_verdicts(sub.verdict) if len(sub) else "—"
            wins, losses = int((sub.verdict == WIN).sum()), int((sub.verdict == LOSS).sum())
            if n_live and wins >= n_live / 2 and wins > losses:
                advised[method] = (float(np.exp(np.log(sub.ratio).mean())), method)
                if losses:
                    caveats.append(f"{names[method]} lost on {', '.join(sub[sub.verdict == LOSS].function)}")
        box = [advised[k] for k in ("finite_differences", "knn") if k in advised]
        if not n_live:
            row["with_gradients"] = row["black_box"] = "nothing learns at this budget"
        else:
            row["with_gradients"] = names["exact"] if "exact" in advised else "values only"
            row["black_box"] = names[min(box)[1]] if box else "values only"
        row["caveat"] = "; ".join(caveats)
        rows.append(row)
    return pd.DataFrame(rows)


def convergence(result: InexactResult) -> pd.DataFrame:
    """How the fits ended, per part and method: of the models trained by L-BFGS (up to
    :data:`~sobolev.core.fitting.FULL_BATCH_MAX` points), the share that stopped before the
    iteration cap (objective below the recipe's threshold, or a plateau); models on more points
    train by Adam on a fixed schedule (``adam_models``)."""
    noise = result.noise_runs.assign(part="noise curve", method=result.noise_runs.arm, dim=2)
    runs = pd.concat([noise, result.budget_runs.assign(part="equal budget")], ignore_index=True)
    rows = []
    for (part, method), g in runs.groupby(["part", "method"], sort=False):
        recipes = [choose_recipe(int(n), int(d), True) for n, d in zip(g.points, g.dim, strict=True)]
        lbfgs = np.array([r.optimiser == "lbfgs" for r in recipes])
        cap = np.array([r.steps for r in recipes])
        stopped = (g.iterations.to_numpy() < cap) & lbfgs
        rows.append({"part": part, "method": method, "lbfgs_models": int(lbfgs.sum()),
                     "stopped_before_cap": float(stopped.sum() / max(1, lbfgs.sum())),
                     "adam_models": int((~lbfgs).sum())})  # fmt: skip
    return pd.DataFrame(rows)


# --- claims --------------------------------------------------------------------------------------
def claims(result: InexactResult) -> list[Claim]:
    """The related work's claims and our own, decided from the paired verdicts (computed, never typed)."""
    adv = advantage(result.noise_runs)
    cross = crossing(adv)
    lam_hi, lam_lo = cross.lam.max(), cross.lam.min()
    out = []
    main = cross[cross.lam == lam_hi]
    exact = adv[(adv.level == 0) & (adv.lam == lam_hi)]
    detail = ", ".join(f"{r.function} {r.ratio:.2g} [{r.low:.2g}, {r.high:.2g}]" for r in exact.itertuples())
    out.append(Claim(f"exact derivative labels decidedly improve on regular training (λ = {lam_hi:g}, every function)",
                     all_win(exact.verdict), f"{count_verdicts(exact.verdict)}: {detail}"))  # fmt: skip
    won = main[main.exact_win]
    levels = sorted(adv.level.unique())
    about = [v for v in levels if JENN_THRESHOLD / 2 < v <= 2 * JENN_THRESHOLD]
    near = won.advantage_gone_at.isin(about)
    out.append(Claim(
        f"JENN: the advantage disappears at about {percent(JENN_THRESHOLD)} relative error in the derivative labels "
        f"(tested: in every function with an exact-label win at λ = {lam_hi:g}, the first level without a decided "
        f"win is one of {', '.join(map(percent, about))})",
        None if won.empty else bool(near.all()),
        "; ".join(f"{r.function}: gone at {percent(r.advantage_gone_at)}" for r in won.itertuples())
        or "no function has an exact-label win to lose",
    ))  # fmt: skip
    if lam_lo < lam_hi:
        lo = cross[cross.lam == lam_lo].set_index("function")
        pairs = [(r.function, r.advantage_gone_at, lo.loc[r.function, "advantage_gone_at"]) for r in won.itertuples()]
        later = [f for f, a, b in pairs if _later(b, a)]
        out.append(Claim(
            f"JENN: down-weighting the derivative labels does not help (tested: at λ = {lam_lo:g} the advantage "
            f"vanishes at no higher noise than at λ = {lam_hi:g}, in every function with an exact-label win)",
            None if not pairs else not later,
            "; ".join(f"{f}: gone at {percent(a)} (λ = {lam_hi:g}) vs {percent(b)} (λ = {lam_lo:g})"
                      for f, a, b in pairs) or "no function has an exact-label win to lose",
        ))  # fmt: skip
    harm = cross.dropna(subset=["harmful_from"])
    out.append(Claim(
        "noisy derivative labels never make Sobolev training decidedly worse than regular training, at the levels "
        "measured", harm.empty,
        "; ".join(f"{r.function} (λ = {r.lam:g}): worse from {percent(r.harmful_from)}" for r in harm.itertuples())
        or "no decided loss at any level",
    ))  # fmt: skip
    table = budget_table(result.budget_runs)
    by = lambda method, dims: table[(table.method == method) & table.dim.isin(dims)]  # noqa: E731
    dims = sorted(table.dim.unique())
    ex = by("exact", dims)
    out.append(Claim("exact gradients (the ceiling) decidedly beat values only at the same m, every function, "
                     "budget and dimension", all_win(ex.verdict), _by_dim(ex)))  # fmt: skip
    fd = by("finite_differences", dims)
    out.append(Claim("forward differences at m/(d+1) points (Kissel & Diepold's baseline) decidedly beat values at m "
                     "points (every function, budget and dimension where they fit ≥ 3 points)", all_win(fd.verdict),
                     _by_dim(fd)))  # fmt: skip
    two, more = by("knn", [2]), by("knn", [d for d in dims if d > 2])
    out.append(Claim("Kissel & Diepold: in 2-D, gradients estimated from the samples (k nearest neighbours) "
                     "decidedly beat values only (every function and budget)", all_win(two.verdict),
                     _by_dim(two)))  # fmt: skip
    if len(more):
        out.append(Claim("k-NN gradient estimates decidedly beat values only in d ≥ 5 as well", all_win(more.verdict),
                         _by_dim(more)))  # fmt: skip
    knn = table[table.method == "knn"]
    if knn.dim.nunique() > 1:
        top = knn[knn.budget == knn.budget.max()].groupby("dim").label_error.median()
        out.append(Claim(f"k-NN estimates degrade as the dimension grows (median relative label error at m = "
                         f"{int(knn.budget.max())} rises with d)", bool(np.all(np.diff(top.to_numpy()) > 0)),
                         ", ".join(f"d = {d}: {e:.2g}" for d, e in top.items())))  # fmt: skip
    return out


def _later(a: float, b: float) -> bool:
    """Whether crossing ``a`` is at a higher noise level than ``b`` (NaN: never crossed, the highest)."""
    return (math.isnan(a) and not math.isnan(b)) or (not math.isnan(a) and not math.isnan(b) and a > b)


def _by_dim(cells: pd.DataFrame) -> str:
    if cells.empty:
        return "no cells"
    return "; ".join(f"d = {d}: {count_verdicts(g.verdict)}" for d, g in cells.groupby("dim"))


# --- metrics and files ---------------------------------------------------------------------------
def metrics(result: InexactResult) -> dict:
    """Everything the README and ``dvc metrics`` show, from the runs."""
    adv, table = advantage(result.noise_runs), budget_table(result.budget_runs)
    cross = crossing(adv)
    clean = lambda v: None if isinstance(v, float) and not math.isfinite(v) else v  # noqa: E731
    return {
        "noise": {
            "points": int(result.noise_runs.points.iloc[0]),
            "cells": [{k: clean(v) for k, v in r.items()} for r in adv.to_dict("records")],
            "crossings": [{k: clean(v) for k, v in r.items()} for r in cross.to_dict("records")],
        },
        "budget": {
            "cells": [{k: clean(v) for k, v in r.items()} for r in table.to_dict("records")],
            "guidance": guidance(table).to_dict("records"),
        },
        "convergence": convergence(result).to_dict("records"),
        "claims": [c.to_dict() for c in claims(result)],
    }


def save(result: InexactResult, output_dir: str | Path) -> None:
    """The runs (CSV) and the metrics (JSON); figures are saved by the notebook as it shows them."""
    out = Path(output_dir)
    atomic_write_text(out / "noise_runs.csv", result.noise_runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "budget_runs.csv", result.budget_runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_json(out / "metrics.json", metrics(result))


def readme_block(m: dict) -> str:
    """Markdown: where the advantage vanishes, the equal-budget table, the advice, the claims."""
    lines = ["| function | λ | exact labels | advantage gone at | worse than regular from |",
             "| --- | ---: | --- | ---: | ---: |"]  # fmt: skip
    for c in m["noise"]["crossings"]:
        gone, harm = (math.nan if c[k] is None else c[k] for k in ("advantage_gone_at", "harmful_from"))
        lines.append(f"| {c['function']} | {c['lam']:g} | {'win' if c['exact_win'] else 'no decided win'} | "
                     f"{percent(gone) if c['exact_win'] else '—'} | {percent(harm)} |")  # fmt: skip
    lines += ["", "| function | d | m | values | forward differences | k-NN estimates | exact |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    cells = pd.DataFrame(m["budget"]["cells"])
    for (fn, d, budget), g in cells.groupby(["function", "dim", "budget"], sort=False):
        shown = []
        for method in METHODS:
            r = g[g.method == method]
            if r.empty:
                shown.append("n/a")
                continue
            r = r.iloc[0]
            text = f"{r.test_nmse:.2g}"
            if method != "values":
                mark = {WIN: "**", LOSS: "_"}.get(r.verdict, "")
                text += f" ({mark}×{r.ratio:.2g} {r.verdict}{mark})" if r.verdict != UNDECIDED else f" (×{r.ratio:.2g})"
            shown.append(text)
        lines.append(f"| {fn} | {d} | {budget} | " + " | ".join(shown) + " |")
    lines += ["", "Median test MSE / Var f over paired seeds; in brackets the paired ratio to values only at the "
              "same m, with its verdict (bold: decided win, italics: decided loss; none: undecided). Forward "
              "differences spend d + 1 evaluations per point; n/a: fewer than 3 points.", ""]  # fmt: skip
    for g in m["budget"]["guidance"]:
        skip = f" (nothing learns on {g['nothing_learns']})" if g["nothing_learns"] != "none" else ""
        caveat = f"; {g['caveat']}" if g["caveat"] else ""
        lines.append(f"* d = {g['dim']}, m = {g['budget']}{skip}: with gradients → **{g['with_gradients']}** "
                     f"(exact: {g['exact']}); black box → **{g['black_box']}** (forward differences: "
                     f"{g['finite_differences']}; k-NN: {g['knn']}){caveat}.")  # fmt: skip
    fits = "; ".join(f"{c['part']}, {c['method']}: {c['stopped_before_cap']:.0%} of {c['lbfgs_models']}"
                     + (f" (and {c['adam_models']} Adam fits)" if c["adam_models"] else "")
                     for c in m["convergence"])  # fmt: skip
    lines += ["", f"Converged: L-BFGS fits that stopped before the iteration cap (objective below the threshold, or a "
              f"plateau), the rest ran to it; Adam fits (more than 512 points) run a fixed schedule. {fits}.", "",
              format_claims([Claim.from_dict(c) for c in m["claims"]], bullet="* ")]  # fmt: skip
    return "\n".join(lines)


# --- figures -------------------------------------------------------------------------------------
def advantage_figure(noise_runs: pd.DataFrame) -> plt.Figure:
    """Sobolev / regular test error against the labels' relative noise, one panel per function: every
    seed's paired ratio (dots), the geometric mean and its 95% t interval (bars), one colour per λ."""
    style()
    functions = list(dict.fromkeys(noise_runs.function))
    adv = advantage(noise_runs)
    levels = sorted(adv.level.unique())
    pos = {v: i for i, v in enumerate(levels)}
    lams = sorted(adv.lam.unique(), reverse=True)
    cols = min(len(functions), 4)
    rows = math.ceil(len(functions) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.3 * rows), squeeze=False)
    regular = noise_runs[noise_runs.arm == "regular"].set_index(["function", "seed"]).test_nmse
    for ax, fn in zip(axes.flat, functions, strict=False):
        sob = noise_runs[(noise_runs.arm == "sobolev") & (noise_runs.function == fn)]
        for k, lam in enumerate(lams):
            shift = (k - (len(lams) - 1) / 2) * 0.22
            color = LAM_COLORS[k % len(LAM_COLORS)]
            s = sob[sob.lam == lam]
            ratio = s.test_nmse.to_numpy() / regular.loc[fn].loc[s.seed].to_numpy()
            x = np.array([pos[v] for v in s.level]) + shift
            ax.scatter(x, ratio, s=6, color=color, alpha=0.35, lw=0)
            a = adv[(adv.function == fn) & (adv.lam == lam)].sort_values("level")
            xa = np.array([pos[v] for v in a.level]) + shift
            ax.errorbar(xa, a.ratio, yerr=[a.ratio - a.low, a.high - a.ratio], fmt="o-", ms=3.5, lw=1, capsize=2,
                        color=color, label=f"Sobolev, λ = {lam:g}")  # fmt: skip
        ax.axhline(1, color="k", lw=0.8, ls="--")
        ax.axvline(pos.get(JENN_THRESHOLD, np.nan), color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xticks(range(len(levels)), [percent(v) for v in levels], fontsize=7)
        ax.set_title(fn, fontsize=9)
    for ax in axes.flat[len(functions) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("test error: Sobolev / regular")
    for ax in axes[-1, :]:
        ax.set_xlabel("relative noise of the derivative labels")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    seeds = noise_runs.seed.nunique()
    fig.suptitle(f"Below 1: Sobolev more accurate than regular training\n{seeds} paired seeds (dots), geometric mean "
                 f"with 95% t interval; dotted: JENN's ~{percent(JENN_THRESHOLD)}", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def budget_figure(budget_runs: pd.DataFrame) -> plt.Figure:
    """Test error against the evaluation budget m, one panel per function (columns: dimension): every
    seed (dots) and the median (line) of each use of the budget."""
    style()
    dims = sorted(budget_runs.dim.unique())
    by_dim = {d: list(dict.fromkeys(budget_runs[budget_runs.dim == d].function)) for d in dims}
    rows = max(len(v) for v in by_dim.values())
    fig, axes = plt.subplots(rows, len(dims), figsize=(3.7 * len(dims), 2.9 * rows), squeeze=False)
    for j, d in enumerate(dims):
        for i in range(rows):
            ax = axes[i, j]
            if i >= len(by_dim[d]):
                ax.set_visible(False)
                continue
            fn = by_dim[d][i]
            sub = budget_runs[budget_runs.function == fn]
            for method in METHODS:
                s = sub[sub.method == method]
                if s.empty:
                    continue
                ax.scatter(s.budget * (1 + 0.06 * (METHODS.index(method) - 1.5)), s.test_nmse, s=6, alpha=0.35,
                           color=COLORS[method], lw=0)  # fmt: skip
                med = s.groupby("budget").test_nmse.median()
                ax.plot(med.index, med.values, "o-", ms=3, lw=1.2, color=COLORS[method], label=LABELS[method])
            ax.axhline(1, color="k", lw=0.8, ls="--", label="predicting the mean (test error = Var f)")
            _budget_axis(ax, sorted(sub.budget.unique()))
            ax.set_yscale("log")
            ax.set_title(f"{fn} (d = {d})", fontsize=9)
            ax.set_xlabel("black-box evaluations m")
        axes[0, j].set_ylabel("test MSE / Var f")
    for ax in axes[:, 0]:
        ax.set_ylabel("test MSE / Var f")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.01))
    fig.suptitle("One budget of m evaluations, four uses: every seed (dots), median (lines)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def label_error_figure(budget_runs: pd.DataFrame) -> plt.Figure:
    """Relative RMS error of the estimated derivative labels against m, per dimension: k-NN estimates
    from the samples and forward differences (median over functions and seeds)."""
    style()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    dims = sorted(budget_runs.dim.unique())
    for method, ls in (("knn", "-"), ("finite_differences", "--")):
        for k, d in enumerate(dims):
            s = budget_runs[(budget_runs.method == method) & (budget_runs.dim == d)]
            if s.empty:
                continue
            med = s.groupby("budget").gradient_error.median()
            ax.plot(med.index, med.values, ls, marker="o", ms=3, color=plt.cm.viridis(0.8 * k / max(1, len(dims) - 1)),
                    label=f"{'k-NN' if method == 'knn' else 'forward differences'}, d = {d}")  # fmt: skip
    _budget_axis(ax, sorted(budget_runs.budget.unique()))
    ax.set_yscale("log")
    ax.set_xlabel("black-box evaluations m")
    ax.set_ylabel("relative RMS error of the labels")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("How wrong the estimated derivatives are (median over functions and seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def _budget_axis(ax: plt.Axes, budgets: list[int]) -> None:
    """A log x axis labelled at the budgets only (no minor labels to collide)."""
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())


def figures(result: InexactResult) -> dict[str, plt.Figure]:
    """Every figure of the section, by file name (without extension)."""
    return {"advantage_vs_noise": advantage_figure(result.noise_runs),
            "error_vs_budget": budget_figure(result.budget_runs),
            "label_error": label_error_figure(result.budget_runs)}  # fmt: skip
