"""The differential-ML section's report: the reference's table decided on paired seeds, the
sample-efficiency factor, metrics, the saved outputs and the README block (nothing here trains)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, WIN, all_win
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.differential.compute import REFERENCE, Result, data_multiple
from sobolev.differential.plots import figures

#: "Several times the data", read as at least this factor.
SEVERAL = 2.0


def with_reference(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (value rows) with the reference's single-run numbers beside ours, where it has them."""
    ref = table[table.quantity == "value"].copy()
    ref["reference standard"] = [
        REFERENCE.get((p, n), (np.nan, np.nan))[0] for p, n in zip(ref.problem, ref.n_train, strict=False)
    ]
    ref["reference differential"] = [
        REFERENCE.get((p, n), (np.nan, np.nan))[1] for p, n in zip(ref.problem, ref.n_train, strict=False)
    ]
    return ref


def table_claims(table: pd.DataFrame, efficiency: pd.DataFrame, runs: pd.DataFrame | None = None) -> list[Claim]:
    """The reference's claims, decided on paired seeds (computed, never typed in); with ``runs``,
    also whether the reference's training recipe ever collapses to a near-constant fit."""
    out = []
    if runs is not None:
        bad = runs[runs.collapsed]
        out.append(Claim("the reference's recipe trains every seed (no run collapses to a near-constant fit)",
                         bad.empty, "collapsed: " + (", ".join(f"{r.problem} n={r.n_train} {r.method} seed {r.seed}"
                                                              for r in bad.itertuples()) or "none")))  # fmt: skip
    for q, label in (("value", "prices"), ("delta", "deltas")):
        sub = table[table.quantity == q]
        won, lost = int((sub.verdict == WIN).sum()), int((sub.verdict == LOSS).sum())
        holds = True if won == len(sub) else (False if lost else None)
        out.append(Claim(f"derivative labels lower the test error of the {label} in every problem and size", holds,
                         f"{won} won, {lost} lost, {len(sub) - won - lost} undecided of {len(sub)}"))  # fmt: skip
    multiple = data_multiple(runs, "value", SEVERAL) if runs is not None else pd.DataFrame()
    baskets = (
        multiple[multiple.problem.str.startswith("basket") & (multiple.problem != "basket1")]
        if len(multiple)
        else multiple
    )
    if len(baskets):
        detail = "; ".join(f"{r.problem}: differential at n={r.n_train} / standard at n={r.standard_n}: {r.ratio:.2g} "
                           f"[{r.low:.2g}, {r.high:.2g}] ({r.verdict})" for r in baskets.itertuples())  # fmt: skip
        out.append(Claim(f"derivative labels buy several (≥{SEVERAL:g}) times the data on multi-asset baskets "
                         f"(differential's price RMSE at n below standard's at {SEVERAL:g}n, measured sizes only; "
                         "Welch t interval on log RMSE)", all_win(baskets.verdict), detail))  # fmt: skip
    ref = with_reference(table).dropna(subset=["reference standard"])
    if len(ref):
        agree = ref.verdict == WIN
        out.append(Claim("the reference's single runs (differential better on every basket size shown) agree with "
                         "the paired verdicts", all_win(ref.verdict),
                         f"{int(agree.sum())} of {len(ref)} of its cells are decided wins here, "
                         f"{int((ref.verdict == LOSS).sum())} decided losses"))  # fmt: skip
    return out


def metrics_from(table: pd.DataFrame, efficiency: pd.DataFrame, runs: pd.DataFrame) -> dict:
    """``metrics.json``: every cell of ``table``, the sample-efficiency factors, the collapsed runs, the verdicts."""
    cells = {
        f"{r.problem}/n{r.n_train}/{r.quantity}": {
            "standard": r.standard, "standard_low": r.standard_low, "standard_high": r.standard_high,
            "differential": r.differential, "differential_low": r.differential_low,
            "differential_high": r.differential_high, "ratio": r.ratio, "ratio_low": r.low,
            "ratio_high": r.high, "verdict": r.verdict, "seeds": r.seeds,
        }
        for r in table.itertuples()
    }  # fmt: skip
    eff = {
        f"{r.problem}/n{r.n_train}": {
            "factor": r.factor,
            "low": r.low,
            "high": r.high,
            "extrapolated": bool(r.extrapolated),
        }
        for r in efficiency.itertuples()
    }
    verdicts = [c.to_dict() for c in table_claims(table, efficiency, runs)]
    return {
        "rmse_x100": cells,
        "sample_efficiency": eff,
        "collapsed_runs": int(runs.collapsed.sum()),
        "claims": verdicts,
    }


def claims(result: Result) -> list[Claim]:
    """The reference's claims on this section's runs (:func:`table_claims`)."""
    return table_claims(result.table, result.efficiency, result.runs)


def metrics(result: Result) -> dict:
    """What the stage writes to ``metrics.json`` (:func:`metrics_from`)."""
    return metrics_from(result.table, result.efficiency, result.runs)


def save(result: Result, output_dir: str | Path | None) -> None:
    """Write the stage's outputs (:data:`~sobolev.differential.config.OUTPUTS`) into ``output_dir``:
    ``metrics.json``, ``runs.csv`` and every figure, checked, as ``figures/<name>.png`` (``None``:
    check the figures only)."""
    if output_dir is None:
        return save_all(figures(result), None)
    out = Path(output_dir)
    atomic_write_json(out / "metrics.json", metrics(result))
    atomic_write_text(out / "runs.csv", result.runs.to_csv(index=False, float_format="%.6g"))
    save_all(figures(result), out)


def readme_blocks(metrics: dict) -> dict[str, str]:
    """The README blocks of the section, by name."""
    return {"differential": readme_block(metrics)}


def readme_block(metrics: dict) -> str:
    """Markdown: the RMSE table (median over seeds [95% interval], paired ratio and verdict) and the claims."""
    lines = ["| problem | n | quantity | standard | differential | ratio [95% CI] | verdict | reference (std / diff) |",
             "| --- | ---: | --- | ---: | ---: | ---: | --- | ---: |"]  # fmt: skip
    for key, c in metrics["rmse_x100"].items():
        problem, n, q = key.split("/")
        ref = REFERENCE.get((problem, int(n[1:]))) if q == "value" else None
        mark = "**" if c["verdict"] == WIN else ""
        lines.append(f"| {problem} | {n[1:]} | {q} | {c['standard']:.3g} [{c['standard_low']:.3g}, "
                     f"{c['standard_high']:.3g}] | {c['differential']:.3g} [{c['differential_low']:.3g}, "
                     f"{c['differential_high']:.3g}] | "
                     f"{c['ratio']:.2g} [{c['ratio_low']:.2g}, {c['ratio_high']:.2g}] | {mark}{c['verdict']}{mark} | "
                     f"{'' if ref is None else f'{ref[0]} / {ref[1]}'} |")  # fmt: skip
    eff = "; ".join(
        f"{k}: ×{v['factor']:.2g} [{v['low']:.2g}, {v['high']:.2g}]" + (" (extrapolated)" if v["extrapolated"] else "")
        for k, v in metrics["sample_efficiency"].items()
    )
    claims_ = [Claim(c["claim"], c["holds"], c["detail"]) for c in metrics["claims"]]
    text = ("Samples standard training needs, as a multiple of differential's, to match its value error "
            f"(interpolated along the sizes): {eff}.")  # fmt: skip
    return "\n".join([*lines, "", text, "", format_claims(claims_, bullet="* ")])
