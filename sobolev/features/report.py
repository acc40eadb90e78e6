"""The feature-update section's verdicts, metrics, saved outputs and README block (all computed from runs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, WIN, all_win, count_verdicts
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.features.compute import MIN_EFFECT, Result
from sobolev.features.config import METHODS
from sobolev.features.plots import figures


def task_claims(
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


def metrics_from(
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


def claims(result: Result) -> list[Claim]:
    """The section's verdicts: the regression functions' (:func:`task_claims`), then the digits students'."""
    r, cfg = result, result.cfg
    return task_claims(r.table, r.needed, cfg.steps, cfg.within) + task_claims(
        r.digits, r.digits_needed, cfg.steps, cfg.within, task="digits"
    )


def metrics(result: Result) -> dict:
    """What the stage writes to ``metrics.json`` (:func:`metrics_from`)."""
    r = result
    return metrics_from(r.table, r.needed, r.digits, r.accuracy, r.teacher, claims(r))


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
