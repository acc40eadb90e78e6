"""Section 4.1's report: the paper's claims decided on paired seeds, metrics, saved outputs
and the README tables, from the grid's runs (nothing here trains).

Every verdict comes from :func:`sobolev.regression.compute.paired_cells`: per function and size,
the geometric mean over seeds of the ratio arm / baseline of the test MSE with its 95% Student-t
interval; a cell is a win or a loss only when the interval excludes 1.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, UNDECIDED, WIN, welch_interval
from sobolev.common.utils import atomic_save, atomic_write_json, atomic_write_text
from sobolev.regression.compute import GridResult, Result, core_runs
from sobolev.regression.config import ARM_LABELS
from sobolev.regression.plots import figures


def convergence(chosen: pd.DataFrame) -> pd.DataFrame:
    """Per arm and size: chosen runs that met the plateau criterion, of how many (λ = 1 runs)."""
    core = core_runs(chosen)
    table = core.groupby(["arm", "n_train"]).converged.agg(["sum", "count"]).astype(int)
    return table.rename(columns={"sum": "converged", "count": "runs"}).reset_index()


def fit_table(chosen: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds of each arm's fit of its own training set, on the function's scale:
    value MSE and gradient MSE on the training points, and the test MSE for comparison."""
    core = core_runs(chosen)
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
    core = core_runs(chosen)
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
    """One arm's cells (``function``, ``verdict``): is Ackley the only function where regular training is better?
    "Only" needs evidence on the others too: holds when Ackley has a decided loss and every other function is a
    decided win at every size (regular decidedly *not* better there); fails when another function has a decided
    loss or Ackley is a decided win at every size; undecided otherwise (another function merely undecided)."""
    ack = sub[sub.function == "ackley"].verdict
    others = sub[sub.function != "ackley"].verdict
    if (others == LOSS).any() or (len(ack) and (ack == WIN).all()):
        return False
    return True if (ack == LOSS).any() and (others == WIN).all() else None


def order_of_magnitude(won: pd.DataFrame) -> tuple[bool | None, str]:
    """Among the decided wins (``ratio``, ``low``, ``high``), is the ratio often 10× or more? Each win is decided on
    its interval: at least 10× lower when the interval lies at or below 0.1, less than 10× when it lies above
    0.1, undecided when it straddles 0.1. Holds when the wins decidedly ≥ 10× are at least half of the decided wins;
    fails when the wins decidedly < 10× are more than half; undecided otherwise."""
    if won.empty:
        return None, "no decided win"
    big, small = int((won.high <= 0.1).sum()), int((won.low > 0.1).sum())
    holds = True if big >= len(won) / 2 else (False if small > len(won) / 2 else None)
    return holds, (f"of {len(won)} decided wins: {big} decidedly ≥ 10× lower (interval ≤ 0.1), {small} decidedly "
                   f"less (interval > 0.1), {len(won) - big - small} straddle 0.1")  # fmt: skip


def arm_claims(cells: pd.DataFrame, chosen: pd.DataFrame, arm: str) -> list[Claim]:
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
    holds, detail = order_of_magnitude(sub[sub.verdict == WIN])
    out.append(
        Claim(
            "often by an order of magnitude or more (interval entirely ≥ 10× lower on at least half of the "
            "decided wins)",
            holds,
            f"{detail}; median ratio {sub.ratio.median():.2g}",
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
                         "size, and a decided win on every other function at every size)", only_ackley_loses(sub),
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


def metrics_from(cells: pd.DataFrame, chosen: pd.DataFrame) -> dict:
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
        block["claims"] = [c.to_dict() for c in arm_claims(cells, chosen, arm)]
        out[arm] = block
    out["convergence"] = {
        f"{r.arm}/n{r.n_train}": {"converged": int(r.converged), "runs": int(r.runs)} for r in conv.itertuples()
    }
    return out


def training_curves(result: GridResult, chosen: pd.DataFrame) -> pd.DataFrame:
    """Median over the chosen runs (λ = 1) of the training loss relative to its first logged
    value, per arm and step (one column per arm), for ``dvc plots``."""
    core = core_runs(chosen)
    curves = result.curves[result.curves.run.isin(core.run)]
    first = curves.groupby("run").train_loss.transform("first")
    curves = curves.assign(relative=curves.train_loss / first, arm=result.runs.arm.loc[curves.run].to_numpy())
    return curves.pivot_table(index="step", columns="arm", values="relative", aggfunc="median").reset_index()


def claims(result: Result) -> list[Claim]:
    """Section 4.1's claims for every derivative-matching arm against its baseline
    (:func:`arm_claims`), arm by arm."""
    return [c for arm in sorted(set(result.cells.arm)) for c in arm_claims(result.cells, result.chosen, arm)]


def metrics(result: Result) -> dict:
    """What the stage writes to ``metrics.json`` (:func:`metrics_from`)."""
    return metrics_from(result.cells, result.chosen)


def save(result: Result, output_dir: str | Path | None) -> None:
    """Write the stage's outputs (:data:`~sobolev.regression.config.OUTPUTS`) into ``output_dir``:
    ``metrics.json``, ``cells.csv``, ``runs.csv``, ``train_curves.csv``, ``checkpoints.pt`` (the
    weights and normalisers of the chosen runs) and every figure, checked, as
    ``figures/<name>.png`` (``None``: check the figures only)."""
    if output_dir is None:
        return save_all(figures(result), None)
    grid, chosen, out = result.grid, result.chosen, Path(output_dir)
    atomic_write_json(out / "metrics.json", metrics(result))
    atomic_write_text(out / "cells.csv", result.cells.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "runs.csv", grid.runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "train_curves.csv", training_curves(grid, chosen).to_csv(index=False, float_format="%.6g"))
    ids = torch.tensor(sorted(set(chosen.run)))
    atomic_save(
        {
            "runs": grid.runs.loc[ids.tolist()].to_dict("list"),
            "params": {n: v[ids].clone() for n, v in grid.params.items()},
            "normalisers": [vars(grid.normalisers[i]) for i in ids.tolist()],
        },
        out / "checkpoints.pt",
    )
    save_all(figures(result), out)


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
