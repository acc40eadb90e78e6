"""The inexact-derivatives section's report: the noise curve's crossings, the equal-budget table,
the guidance for users, claims, metrics, the saved outputs and the README block (nothing here trains)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, UNDECIDED, WIN, all_win, count_verdicts, paired_ratio
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.core.fitting import choose_recipe
from sobolev.inexact.compute import JENN_THRESHOLD, METHODS, Result, advantage, crossing, percent
from sobolev.inexact.plots import figures


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


def convergence(result: Result) -> pd.DataFrame:
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
def claims(result: Result) -> list[Claim]:
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
