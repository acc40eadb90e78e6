"""The inexact-derivatives section's report: the noise curve's crossings, the equal-budget table,
the guidance for users, claims, metrics, the saved outputs and the README block (nothing here trains)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, UNDECIDED, WIN, all_win, count_verdicts, holm, paired_ratio, welch_interval
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.core.fitting import choose_recipe
from sobolev.inexact.compute import (
    ESTIMATED,
    JENN_THRESHOLD,
    METHODS,
    Result,
    advantage,
    crossing,
    percent,
    weights_compared,
)
from sobolev.inexact.plots import figures


# --- tables ------------------------------------------------------------------------------------
def budget_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (function, dim, budget, method): median test MSE / Var f, training points, evaluations, median relative
    label error, the weights the fit chose, and the paired ratio to values only (same m, same seeds) with its t
    interval, verdict (``win``: decidedly more accurate than values only) and t-test p (``p_t``); for an estimated
    source also the paired ratio to its own shuffled labels (``ratio_shuffled``, ``verdict_shuffled``: a win there
    needs the labels' information)."""
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
                   "seeds": len(sub), "lams": ", ".join(f"{v:g}" for v in sorted(set(sub.get("lam", [])))),
                   "lam_zero": float((sub.get("lam", pd.Series(0.0, index=sub.index)) == 0).mean())}  # fmt: skip
            if method != "values":
                r = paired_ratio(sub.test_nmse.to_numpy(), values.loc[sub.index].to_numpy())
                row |= {"ratio": r.estimate, "low": r.low, "high": r.high, "verdict": r.verdict, "p_t": r.t_p_value}
            control = cell[cell.method == f"{method}_shuffled"].set_index("seed")
            if method in ESTIMATED and len(control):
                seeds = sub.index.intersection(control.index)
                r = paired_ratio(sub.test_nmse.loc[seeds].to_numpy(), control.test_nmse.loc[seeds].to_numpy())
                row |= {"ratio_shuffled": r.estimate, "low_shuffled": r.low, "high_shuffled": r.high,
                        "verdict_shuffled": r.verdict}  # fmt: skip
            rows.append(row)
    return pd.DataFrame(rows)


def learns(table: pd.DataFrame, methods: tuple[str, ...]) -> dict[tuple[int, int], list[str]]:
    """Per (dim, budget): the functions where any of ``methods`` beats predicting the mean (median test error below
    Var f). A function where none does is no evidence for or against a derivative source there."""
    live = table[table.method.isin(methods)]
    best = live.groupby(["dim", "budget", "function"]).test_nmse.min()
    return {(int(d), int(m)): sorted(g.index.get_level_values("function")[g.to_numpy() < 1])
            for (d, m), g in best.groupby(level=["dim", "budget"])}  # fmt: skip


def advised(cells: pd.DataFrame) -> bool:
    """The one advice rule (stated here, printed by the notebook from this docstring's wording): a source is
    advised when, over the functions where something learns, it has at least one decided win over values only and
    more decided wins than decided losses (for an estimated source a win also needs a decided win over its shuffled
    labels)."""
    wins = int(_real_wins(cells).sum())
    losses = int((cells.verdict == LOSS).sum())
    return wins >= 1 and wins > losses


def _real_wins(cells: pd.DataFrame) -> pd.Series:
    """Decided wins over values only that, for an estimated source, also beat its shuffled labels."""
    won = cells.verdict == WIN
    if "verdict_shuffled" in cells:
        won &= cells.verdict_shuffled.fillna(WIN).eq(WIN) | ~cells.method.isin(ESTIMATED)
    return won


def guidance(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dim, budget), what a user should do, from :func:`budget_table`'s verdicts and :func:`advised`'s rule:
    ``with_gradients`` (a user who can compute exact gradients: among the functions where values or exact gradients
    learn) and ``black_box`` (one who can only call the function: forward differences or k-NN estimates, among the
    functions where values or those estimates learn; exact gradients never decide which functions count). Functions
    where nothing a black-box user can do learns are named (``nothing_learns``); ``caveat`` names where an advised
    source lost."""
    names = {"exact": "exact gradients", "finite_differences": "forward differences", "knn": "k-NN estimates"}
    with_g, box = learns(table, ("values", "exact")), learns(table, ("values", "finite_differences", "knn"))
    rows = []
    for (dim, m), cell in table.groupby(["dim", "budget"]):
        key = (int(dim), int(m))
        row: dict = {"dim": key[0], "budget": key[1], "functions": int(cell.function.nunique())}
        caveats = []
        for audience, live, sources in (("with_gradients", with_g.get(key, []), ("exact",)),
                                        ("black_box", box.get(key, []), ("finite_differences", "knn"))):  # fmt: skip
            best = []
            for method in sources:
                sub = cell[(cell.method == method) & cell.function.isin(live)]
                row[method] = count_verdicts(sub.verdict) if len(sub) else "—"
                if len(sub) and advised(sub):
                    best.append((float(np.exp(np.log(sub.ratio).mean())), method))
                    if (sub.verdict == LOSS).any():
                        caveats.append(f"{names[method]} lost on {', '.join(sub[sub.verdict == LOSS].function)}")
            row[audience] = ("nothing learns at this budget" if not live else
                             names[min(best)[1]] if best else "values only")  # fmt: skip
        row["nothing_learns"] = ", ".join(sorted(set(cell.function) - set(box.get(key, [])))) or "none"
        row["caveat"] = "; ".join(caveats)
        rows.append(row)
    return pd.DataFrame(rows)


def convergence(result: Result) -> pd.DataFrame:
    """How the fits ended, per part and method: of the models trained by L-BFGS (up to
    :data:`~sobolev.core.fitting.FULL_BATCH_MAX` points), the share that stopped before the iteration cap (a
    plateau, or the objective below the recipe's floor: the same two rules for every arm) and the median final value
    error on the training points (standardised units: what every arm's objective shares); models on more points
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
                     "median_iterations": float(np.median(g.iterations[lbfgs])) if lbfgs.any() else math.nan,
                     "median_value_term": float(g.value_term.median()) if "value_term" in g else math.nan,
                     "adam_models": int((~lbfgs).sum())})  # fmt: skip
    return pd.DataFrame(rows)


# --- claims --------------------------------------------------------------------------------------
def claims(result: Result) -> list[Claim]:
    """The related work's claims and our own, decided from paired intervals (computed, never typed); a claim that
    fails on one cell of many adjusts for the family (Holm, :func:`~sobolev.common.stats.all_win`)."""
    adv = advantage(result.noise_runs)
    cross = crossing(adv)
    lam_hi, lam_lo = cross.lam.max(), cross.lam.min()
    out = []
    exact = adv[(adv.level == 0) & (adv.lam == lam_hi)]
    detail = ", ".join(f"{r.function} {r.ratio:.2g} [{r.low:.2g}, {r.high:.2g}]" for r in exact.itertuples())
    out.append(Claim(f"exact derivative labels decidedly improve on regular training (λ = {lam_hi:g}, every function)",
                     all_win(exact.verdict, exact.p_t), f"{count_verdicts(exact.verdict)}: {detail}"))  # fmt: skip
    main = cross[cross.lam == lam_hi]
    won = main[main.exact_win]
    levels = sorted(adv.level.unique())
    about = [v for v in levels if JENN_THRESHOLD / 2 <= v <= 2 * JENN_THRESHOLD]
    beyond = [r.function for r in won.itertuples() if r.last_win > 2 * JENN_THRESHOLD]
    early = [r.function for r in won.itertuples() if r.first_loss <= JENN_THRESHOLD]
    within = [r.function for r in won.itertuples() if r.last_win in about]
    out.append(Claim(
        f"JENN: the advantage disappears at about {percent(JENN_THRESHOLD)} relative error in the derivative labels "
        f"(tested on intervals, in every function with an exact-label win at λ = {lam_hi:g}: the highest noise level "
        f"with a decided win is one of {', '.join(map(percent, about))}; fails where a win is decided beyond "
        f"{percent(2 * JENN_THRESHOLD)} or a loss at {percent(JENN_THRESHOLD)} or below)",
        None if won.empty else (False if beyond or early else (True if len(within) == len(won) else None)),
        "; ".join(f"{r.function}: last decided win at {percent(r.last_win)}, first decided loss at "
                  f"{percent(r.first_loss)}" for r in won.itertuples()) or "no function has an exact-label win",
    ))  # fmt: skip
    if lam_lo < lam_hi:
        both = weights_compared(result.noise_runs, lam_lo, lam_hi)
        helps = both[np.array(holm(list(both.verdict), list(both.p_t))) == WIN]
        close = both.low >= 1 / 1.5
        out.append(Claim(
            f"JENN: down-weighting the derivative labels does not help (the two weights compared directly, level by "
            f"level: λ = {lam_lo:g} never decidedly more accurate than λ = {lam_hi:g} (Holm over the cells), and "
            "decidedly within a factor 1.5 of it everywhere)",
            False if len(helps) else (True if bool(close.all()) else None),
            (f"λ = {lam_lo:g} decidedly better in {len(helps)} of {len(both)} cells: " + ", ".join(
                f"{r.function} at {percent(r.level)}: {r.ratio:.2g} [{r.low:.2g}, {r.high:.2g}]"
                for r in helps.itertuples())) if len(helps) else
            f"never decidedly better in {len(both)} cells; decidedly within 1.5× in {int(close.sum())}",
        ))  # fmt: skip
    harm = adv[np.array(holm(list(adv.verdict), list(adv.p_t))) == LOSS]
    out.append(Claim(
        "noisy derivative labels never make Sobolev training decidedly worse than regular training at the levels "
        "measured (Holm over every function, level and λ)", harm.empty,
        "; ".join(f"{r.function} (λ = {r.lam:g}) at {percent(r.level)}: {r.ratio:.2g} [{r.low:.2g}, {r.high:.2g}]"
                  for r in harm.itertuples()) or "no decided loss at any level",
    ))  # fmt: skip
    table = budget_table(result.budget_runs)
    dims = sorted(table.dim.unique())
    box = learns(table, ("values", "finite_differences", "knn"))

    def by(method: str, dims_: list[int], live: dict | None = None) -> pd.DataFrame:
        cells = table[(table.method == method) & table.dim.isin(dims_)]
        if live is None:
            return cells
        keep = [r.function in live.get((int(r.dim), int(r.budget)), []) for r in cells.itertuples()]
        return cells[np.array(keep, bool)]

    ex = by("exact", dims)
    out.append(Claim("exact gradients decidedly beat values only at the same m, every function, budget and dimension "
                     "(each fit as sobolev.fit makes it, its derivative weight chosen from the data)",
                     all_win(ex.verdict, ex.p_t), _by_dim(ex)))  # fmt: skip
    for method, name in (("exact", "exact gradients"), ("finite_differences", "forward differences"),
                         ("knn", "k-NN estimates")):  # fmt: skip
        cells = by(method, dims)
        lost = cells[np.array(holm(list(cells.verdict), list(cells.p_t))) == LOSS]
        out.append(Claim(
            f"sobolev.fit with {name} is never decidedly worse than sobolev.fit on values only at the same m "
            "(its cross-validated weight falls back to values only when the labels do not help; Holm over the cells)",
            lost.empty, "; ".join(f"{r.function} m = {r.budget}: {r.ratio:.2g} [{r.low:.2g}, {r.high:.2g}]"
                                  for r in lost.itertuples()) or f"no decided loss in {len(cells)} cells",
        ))  # fmt: skip
    fd = by("finite_differences", dims, box)
    out.append(Claim("forward differences at m/(d+1) points (Kissel & Diepold's baseline) decidedly beat values at m "
                     "points and their own shuffled labels (every function, budget and dimension where they fit ≥ 3 "
                     "points and something learns)", all_win(_both(fd), fd.p_t), _by_dim(fd)))  # fmt: skip
    two, more = by("knn", [2], box), by("knn", [d for d in dims if d > 2], box)
    out.append(Claim("Kissel & Diepold in their own pipeline (2×200 ReLU, Adam, early stopping, a decaying derivative "
                     "weight): gradients estimated from the samples beat training on values", None,
                     "not tested here: their pipeline is not run; the next claim tests their labels against a strong "
                     "values-only baseline instead"))  # fmt: skip
    out.append(Claim("in 2-D, k-NN gradient estimates decidedly beat a strong values-only fit (sobolev.fit on values) "
                     "and their own shuffled labels (every function and budget where something learns)",
                     all_win(_both(two), two.p_t), _by_dim(two)))  # fmt: skip
    if len(more):
        out.append(Claim("k-NN gradient estimates decidedly beat values only and their shuffled labels in d ≥ 5 too",
                         all_win(_both(more), more.p_t), _by_dim(more)))  # fmt: skip
    knn = table[table.method == "knn"]
    if knn.dim.nunique() > 1:
        out.append(_degrades(result.budget_runs))
    return out


def _both(cells: pd.DataFrame) -> list[str]:
    """Each estimated-source cell's verdict, counting a win only when it also beats the shuffled labels."""
    real = _real_wins(cells)
    return [WIN if r else (v if v != WIN else UNDECIDED) for r, v in zip(real, cells.verdict, strict=True)]


def _degrades(runs: pd.DataFrame) -> Claim:
    """k-NN label error rises with the dimension, decided on intervals: at the largest budget, the mean log relative
    label error of one dimension against the next (Welch t interval over the functions' and seeds' labels)."""
    knn = runs[(runs.method == "knn") & (runs.budget == runs.budget.max())]
    dims = sorted(knn.dim.unique())
    steps = []
    for a, b in itertools.pairwise(dims):
        ga, gb = (np.log(knn[knn.dim == d].gradient_error.to_numpy()) for d in (a, b))
        steps.append((a, b, welch_interval([ga, gb], [-1.0, 1.0])))
    holds = True if all(iv.low > 0 for *_, iv in steps) else (False if any(iv.high < 0 for *_, iv in steps) else None)
    return Claim(f"k-NN estimates degrade as the dimension grows (at m = {int(knn.budget.max())}, the mean log label "
                 "error rises decidedly at every step in d; Welch interval)", holds,
                 "; ".join(f"d = {a} → {b}: × {np.exp(iv.estimate):.2g} [{np.exp(iv.low):.2g}, {np.exp(iv.high):.2g}]"
                           for a, b, iv in steps))  # fmt: skip


def _by_dim(cells: pd.DataFrame) -> str:
    if cells.empty:
        return "no cells"
    return "; ".join(f"d = {d}: {count_verdicts(g.verdict)}" for d, g in cells.groupby("dim"))


# --- metrics and files ---------------------------------------------------------------------------
def metrics(result: Result) -> dict:
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
        "weights": weights_compared(result.noise_runs, float(cross.lam.min()), float(cross.lam.max())).to_dict(
            "records"
        )
        if cross.lam.nunique() > 1
        else [],
        "convergence": convergence(result).to_dict("records"),
        "claims": [c.to_dict() for c in claims(result)],
    }


def save(result: Result, output_dir: str | Path | None) -> None:
    """Write the stage's outputs (:data:`~sobolev.inexact.config.OUTPUTS`) into ``output_dir``: the
    runs (CSV), the metrics (JSON) and every figure, checked, as ``figures/<name>.png`` (``None``:
    check the figures only)."""
    if output_dir is None:
        return save_all(figures(result), None)
    out = Path(output_dir)
    atomic_write_text(out / "noise_runs.csv", result.noise_runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "budget_runs.csv", result.budget_runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_json(out / "metrics.json", metrics(result))
    save_all(figures(result), out)


def readme_blocks(m: dict) -> dict[str, str]:
    """The README blocks of the section, by name."""
    return {"inexact": readme_block(m)}


def readme_block(m: dict) -> str:
    """Markdown: where the advantage vanishes, the equal-budget table, the advice, the claims."""
    lines = ["| function | λ | exact labels | last decided win at | first decided loss at |",
             "| --- | ---: | --- | ---: | ---: |"]  # fmt: skip
    for c in m["noise"]["crossings"]:
        last, first = (math.nan if c[k] is None else c[k] for k in ("last_win", "first_loss"))
        lines.append(f"| {c['function']} | {c['lam']:g} | {'win' if c['exact_win'] else 'no decided win'} | "
                     f"{percent(last)} | {percent(first)} |")  # fmt: skip
    lines += ["", "Noise levels of the derivative labels: the highest with a decided win over regular training and "
              "the lowest with a decided loss (—: none); between them the data decide nothing.", "",
              "| function | d | m | values | forward differences | (shuffled) | k-NN estimates | (shuffled) | exact |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
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
    lines += ["", "Median test MSE / Var f over paired seeds, every fit made as sobolev.fit makes it (one member per "
              "seed; its derivative weight chosen by cross-validation, values only among the candidates); in brackets "
              "the paired ratio to values only at the same m, with its verdict (bold: decided win, italics: decided "
              "loss; none: undecided). Shuffled: the same estimated labels permuted over the points (no information). "
              "Forward differences spend d + 1 evaluations per point; n/a: fewer than 3 points.", ""]  # fmt: skip
    for g in m["budget"]["guidance"]:
        skip = f" (nothing learns on {g['nothing_learns']})" if g["nothing_learns"] != "none" else ""
        caveat = f"; {g['caveat']}" if g["caveat"] else ""
        lines.append(f"* d = {g['dim']}, m = {g['budget']}{skip}: with gradients → **{g['with_gradients']}** "
                     f"(exact: {g['exact']}); black box → **{g['black_box']}** (forward differences: "
                     f"{g['finite_differences']}; k-NN: {g['knn']}){caveat}.")  # fmt: skip
    fits = "; ".join(f"{c['part']}, {c['method']}: {c['stopped_before_cap']:.0%} of {c['lbfgs_models']} (median "
                     f"{c.get('median_iterations') or 0:.0f} iterations, value error "
                     f"{c.get('median_value_term') or 0:.2g})"
                     + (f" and {c['adam_models']} Adam fits" if c["adam_models"] else "")
                     for c in m["convergence"])  # fmt: skip
    rule = (
        "Converged: L-BFGS fits that stopped before the iteration cap (a plateau, or the objective below the "
        "floor: the same rules for every arm), the rest ran to it; Adam fits (more than 512 points) run a fixed "
        "schedule. Final value error: on the training points, standardised units, what every arm's objective "
        "shares."
    )
    lines += ["", f"{rule} {fits}.", "",
              format_claims([Claim.from_dict(c) for c in m["claims"]], bullet="* ")]  # fmt: skip
    return "\n".join(lines)
