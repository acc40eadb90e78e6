"""The feature-update section's verdicts, metrics, saved outputs and README block (all computed from runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, UNDECIDED, WIN, all_win, count_verdicts, holm
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.features.compute import MIN_EFFECT, Result, few_updates, recovery_difference, updates_needed
from sobolev.features.config import METHODS
from sobolev.features.plots import figures


def task_claims(
    table: pd.DataFrame,
    rec: pd.DataFrame,
    diff: pd.DataFrame,
    steps: int,
    within: float,
    few_k: int,
    task: str = "regression",
) -> list[Claim]:
    """Verdicts from :func:`sobolev.features.compute.curve` (``table``), :func:`~sobolev.features.compute.recovery`
    (``rec``) and :func:`~sobolev.features.compute.recovery_difference` at K = ``few_k`` (``diff``), each text
    prefixed by ``task`` (``regression``: the functions' test MSE; ``digits``: the students' test KL to the
    teacher). Every claim is decided on paired-seed intervals; a claim that fails on one cell of many adjusts for
    the family (Holm)."""
    out = []
    by_k = "; ".join(f"K={k}: {count_verdicts(g.verdict)}" for k, g in table.groupby("every"))
    full = table[table.every == 1].set_index("function").verdict
    fixed = table[table.every == table.every.max()].set_index("function")
    winners = full[full == WIN].index
    kept = [f for f in winners if (table[(table.function == f)].verdict == WIN).all()]
    mine = table[table.function.isin(winners)]
    lost = sorted(set(mine[np.array(holm(list(mine.verdict), list(mine.p_t))) == LOSS].function))
    out.append(Claim(
        "Sobolev's advantage over regular training holds at every K (every number of feature updates)",
        None if not len(winners) else (False if lost else len(kept) == len(winners) or None),
        f"of {len(winners)} functions where Sobolev wins with ordinary training (K = 1), it wins at every K on "
        f"{len(kept)} and loses at some K on {len(lost)} (Holm over their cells); per K over functions: {by_k}",
    ))  # fmt: skip
    nt = [f for f in winners if fixed.verdict[f] == WIN]
    at_fixed = fixed.loc[list(winners)]
    out.append(Claim(
        "Sobolev's advantage survives with the features frozen at initialisation (K = steps: the linearised, NTK end; "
        f"a win needs its interval ≥ {MIN_EFFECT:.0%} below 1, in a cell where an arm beats predicting the mean)",
        all_win(list(at_fixed.verdict), list(at_fixed.p_t)),
        f"wins at the fixed-feature end on {len(nt)} of those {len(winners)} functions "
        f"({count_verdicts(fixed.verdict)} over all functions)",
    ))  # fmt: skip
    few = steps // 10
    for method in METHODS:
        at_few = rec[(rec.method == method) & (rec.every == few_k)]
        yes, no = int((at_few.within == "yes").sum()), int((at_few.within == "no").sum())
        verdicts = at_few.within.map({"yes": WIN, "no": LOSS}).fillna(UNDECIDED)
        out.append(Claim(
            f"{method}: a few feature updates recover full training — error within {within:.0%} of K = 1's with K = "
            f"{few_k} (at most {few} anchors, a tenth of the {steps} updates), decided per function on the paired "
            f"ratio error(K) / error(1)",
            all_win(list(verdicts), list(at_few.p_t)),
            f"decidedly within on {yes}, decidedly not on {no} of {len(at_few)}; " + ", ".join(
                f"{r.function} {r.ratio:.3g} [{r.low:.3g}, {r.high:.3g}]" for r in at_few.itertuples()),
        ))  # fmt: skip
    out.append(Claim(
        f"Sobolev training recovers more of its own full training than regular training with few feature updates "
        f"(K = {few_k}: the ratio of ratios (Sobolev error(K)/error(1)) / (regular error(K)/error(1)) decidedly "
        "below 1, paired by seed)",
        all_win(list(diff.verdict), list(diff.p_t)) if len(diff) else None,
        f"{count_verdicts(diff.verdict)}: " + "; ".join(
            f"{r.function} {r.ratio:.3g} [{r.low:.3g}, {r.high:.3g}]" for r in diff.itertuples()),
    ))  # fmt: skip
    return [Claim(f"{task}: {c.text}", c.holds, c.evidence) for c in out]


def metrics_from(
    table: pd.DataFrame,
    rec: pd.DataFrame,
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
        "updates_needed": {f"{r.function}/{r.method}": {"rounds": r.rounds_needed, "fixed_over_full": r.fixed_over_full,
                           "fixed_low": r.fixed_low, "fixed_high": r.fixed_high}
                           for r in updates_needed(rec).itertuples()},
        "recovery": {f"{r.function}/{r.method}/K{r.every}": {"ratio": r.ratio, "low": r.low, "high": r.high,
                     "within": r.within} for r in rec.itertuples()},
        "claims": [c.to_dict() for c in claims_],
    }  # fmt: skip


def claims(result: Result) -> list[Claim]:
    """The section's verdicts: the regression functions' (:func:`task_claims`), then the digits students'."""
    r, cfg = result, result.cfg
    k = few_updates(cfg.steps, cfg.every)
    return task_claims(r.table, r.recovery, recovery_difference(r.runs, k), cfg.steps, cfg.within, k) + task_claims(
        r.digits,
        r.digits_recovery,
        recovery_difference(r.digit_tasks, k, error="test_kl"),
        cfg.steps,
        cfg.within,
        k,
        task="digits",
    )


def metrics(result: Result) -> dict:
    """What the stage writes to ``metrics.json`` (:func:`metrics_from`)."""
    r = result
    return metrics_from(r.table, r.recovery, r.digits, r.accuracy, r.teacher, claims(r))


def save(result: Result, output_dir: str | Path | None) -> None:
    """Write the stage's outputs (:data:`~sobolev.features.config.OUTPUTS`) into ``output_dir``:
    ``runs.csv`` (every regression run at every checkpoint), ``curve.csv``, ``digits.csv`` (every
    digits student at every checkpoint), ``metrics.json`` and every figure, checked, as
    ``figures/<name>.png`` (``None``: check the figures only)."""
    if output_dir is None:
        return save_all(figures(result), None)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "digits.csv", result.digit_runs.to_csv(index=False))
    atomic_write_text(out / "runs.csv", result.runs.to_csv(index=False))
    atomic_write_text(out / "curve.csv", result.table.to_csv(index=False))
    atomic_write_json(out / "metrics.json", metrics(result))
    save_all(figures(result), out)


def readme_blocks(metrics: dict) -> dict[str, str]:
    """The README blocks of the section, by name."""
    return {"features": readme_block(metrics)}


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
