"""The relative-trust section's verdicts, metrics, saved outputs and README block (all computed from runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, UNDECIDED, WIN, Interval, all_win, count_verdicts, paired_ratio
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.trust.compute import ADAM, COMPETITIVE, FROMAGE, NOTHING_LEARNS, Result
from sobolev.trust.plots import figures


def shrinkage(pair: pd.DataFrame) -> Interval:
    """Fromage / LARS final weight norm decided on seeds: each seed's runs (functions and losses) are averaged in
    logs, and the t interval runs over those per-seed ratios (runs of one seed share its data draws and initial
    weights, so they are not independent replicates)."""
    logs = (np.log(pair.final_norm) - np.log(pair.final_norm_lars)).groupby(pair.seed).mean()
    return paired_ratio(np.exp(logs.to_numpy()), np.ones(len(logs)))


def convergence(runs: pd.DataFrame) -> pd.DataFrame:
    """Fraction of the grid's chosen runs (:func:`sobolev.trust.compute.grid_arms`) converged
    (training loss moved < ``converged_change`` over the last tenth), per arm and loss."""
    return runs.groupby(["arm", "method"]).converged.agg(["mean", "size"]).reset_index()


def claims_from(
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
        margin = mine.within_margin.map({"yes": WIN, "no": LOSS}).fillna(UNDECIDED)
        detail = "; ".join(f"{m}: {count_verdicts(mine[mine.method == m].verdict)}" for m in sorted(set(mine.method)))
        yes, no = int((mine.within_margin == "yes").sum()), int((mine.within_margin == "no").sum())
        out.append(Claim(
            f"{norm} data: Fromage at η = {default_lr:g} is competitive with Adam at its tuned rate: its test MSE "
            f"decidedly at most {COMPETITIVE:g}× Adam's in every cell (the paired interval's upper end; Holm over the "
            "cells for a failure)",
            all_win(list(margin), list(mine.p_margin)),
            f"decidedly within {COMPETITIVE:g}× on {yes}, decidedly beyond on {no} of {len(mine)} cells; Fromage / "
            f"Adam verdicts: {detail} (win = Fromage better)",
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
        r = shrinkage(pair)
        out.append(Claim(
            f"{norm} data: Fromage's factor 1/√(1+η²) shrinks the weights as training nears a stationary point "
            "(reviewer 2; final weight norm, Fromage / LARS paired: LARS is Fromage without the factor; decided on "
            "seeds, each seed's functions and losses averaged first)",
            {WIN: True, LOSS: False}.get(r.verdict),
            f"Fromage / LARS final norm: {r} over {r.n} seeds ({len(pair)} runs); Fromage's final norm / initial, "
            f"median over {len(plain)} runs: {plain.final_norm.median():.3g}",
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
    above, below = trust[trust.verdict == LOSS], trust[trust.verdict == WIN]
    holds = all_win(list(trust.verdict), list(trust.p_t))
    out.append(Claim(
        "The input gradient (what Sobolev training matches) moves no more than the output under the same relative "
        "perturbation of every layer",
        holds, f"input-gradient / output change per direction and ε, decided on {int(trust.seeds.min())} seeds: "
        f"{len(above)} of {len(trust)} intervals above 1, {len(below)} below 1; at the smallest and largest ε: "
        + "; ".join(
            f"{row.direction} ε={row.eps:g}: {row.gradient_vs_output:.2g} [{row.low:.2g}, {row.high:.2g}]"
            for row in pd.concat([trust.groupby("direction").head(1), trust.groupby("direction").tail(1)]).itertuples()
        ) + "; log-log slope of the median change against ε: " + ", ".join(
            f"{r.direction} {r.quantity.replace('_', ' ')} {r.slope:.2f}" for r in slopes.itertuples()
        ),
    ))  # fmt: skip
    return out


def metrics_from(
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


def claims(result: Result) -> list[Claim]:
    """The section's verdicts on ``result`` (:func:`claims_from`)."""
    r = result
    return claims_from(r.cells, r.optimiser_cells, r.ranges, r.tuning, r.per_run, r.trust, r.slopes, r.cfg.fromage_lr)


def metrics(result: Result) -> dict:
    """What the stage writes to ``metrics.json`` (:func:`metrics_from`)."""
    r = result
    return metrics_from(r.cells, r.optimiser_cells, r.ranges, r.norm_table, r.trust, r.slopes, convergence(r.arms),
                        claims(r))  # fmt: skip


def save(result: Result, output_dir: str | Path | None) -> None:
    """Write the stage's outputs (:data:`~sobolev.trust.config.OUTPUTS`) into ``output_dir``:
    ``runs.csv``, ``cells.csv``, ``trust.csv``, ``metrics.json`` and every figure, checked, as
    ``figures/<name>.png`` (``None``: check the figures only)."""
    if output_dir is None:
        return save_all(figures(result), None)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "runs.csv", result.trained.runs.to_csv(index=False))
    atomic_write_text(out / "cells.csv", result.cells.to_csv(index=False))
    atomic_write_text(out / "trust.csv", result.trust_table.to_csv(index=False))
    atomic_write_json(out / "metrics.json", metrics(result))
    save_all(figures(result), out)


def readme_blocks(metrics: dict) -> dict[str, str]:
    """The README blocks of the section, by name."""
    return {"trust": readme_block(metrics)}


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
