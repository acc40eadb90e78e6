"""The differential-ML section's report: the reference's table decided on paired seeds, the
sample-efficiency factor, figures, metrics and the README block (nothing here trains)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib import pyplot as plt

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import style
from sobolev.common.stats import LOSS, WIN, all_win
from sobolev.common.utils import atomic_write_json, atomic_write_text
from sobolev.differential.experiment import data_multiple
from sobolev.differential.simulators import BachelierBasket
from sobolev.differential.training import Ensemble

COLORS = {"standard": "#4C72B0", "differential": "#DD8452"}
#: Value RMSE × 100 (standard, differential) printed in the saved outputs of the reference's
#: notebook (Huge & Savine's DifferentialML, Bachelier basket), single runs; quoted, not ours.
REFERENCE = {
    ("basket7", 4096): (0.77, 0.24), ("basket7", 8192): (0.50, 0.14), ("basket7", 16384): (0.21, 0.11),
    ("basket20", 4096): (2.02, 0.23), ("basket20", 8192): (1.19, 0.13), ("basket20", 16384): (0.62, 0.10),
}  # fmt: skip
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


def claims(table: pd.DataFrame, efficiency: pd.DataFrame, runs: pd.DataFrame | None = None) -> list[Claim]:
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


def metrics_dict(table: pd.DataFrame, efficiency: pd.DataFrame, runs: pd.DataFrame) -> dict:
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
    verdicts = [c.to_dict() for c in claims(table, efficiency, runs)]
    return {
        "rmse_x100": cells,
        "sample_efficiency": eff,
        "collapsed_runs": int(runs.collapsed.sum()),
        "claims": verdicts,
    }


def save_artifacts(runs: pd.DataFrame, table: pd.DataFrame, efficiency: pd.DataFrame, output_dir: str) -> None:
    out = Path(output_dir)
    atomic_write_json(out / "metrics.json", metrics_dict(table, efficiency, runs))
    atomic_write_text(out / "runs.csv", runs.to_csv(index=False, float_format="%.6g"))


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


def error_curves(runs: pd.DataFrame) -> plt.Figure:
    """RMSE × 100 against training size, every seed a point and the median a line, for both methods;
    rows: value and first-asset delta; columns: problems (log-log). Collapsed runs (``collapsed``) are
    ringed in red: they stay in the medians, and the reader sees which points they are."""
    style()
    problems = list(dict.fromkeys(runs.problem))
    fig, axes = plt.subplots(2, len(problems), figsize=(3.3 * len(problems), 5.6), squeeze=False)
    for j, name in enumerate(problems):
        sub = runs[runs.problem == name]
        for i, q in enumerate(("value", "delta")):
            ax = axes[i, j]
            ringed = False
            for method, color in COLORS.items():
                m = sub[sub.method == method]
                ax.scatter(m.n_train, m[f"{q}_rmse"], s=10, color=color, alpha=0.6)
                bad = m[m.collapsed]  # near-constant fits: kept in the medians, ringed so the reader sees them
                ax.scatter(bad.n_train, bad[f"{q}_rmse"], s=45, facecolor="none", edgecolor="firebrick", lw=1,
                           zorder=4, label="collapsed run" if len(bad) and not ringed else None)  # fmt: skip
                ringed |= len(bad) > 0
                med = m.groupby("n_train")[f"{q}_rmse"].median()
                ax.plot(med.index, med.values, "-o", color=color, ms=3, label=method)
            if q == "value":
                ref = [(n, v) for (p, n), v in REFERENCE.items() if p == name]
                for k, method in enumerate(("standard", "differential")):
                    if ref:
                        ax.scatter([n for n, _ in ref], [v[k] for _, v in ref], marker="x", color=COLORS[method],
                                   label=f"reference ({method}, 1 run)")  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{name}: {q}", fontsize=9)
            ax.set_xlabel("training samples")
        axes[0, j].legend(fontsize=6)
    axes[0, 0].set_ylabel("value RMSE × 100")
    axes[1, 0].set_ylabel("delta (asset 1) RMSE × 100")
    fig.suptitle("Test error against training size: every seed (points), median (line)")
    fig.tight_layout()
    return fig


def predicted_vs_true(sim: BachelierBasket, shown: tuple[Ensemble, torch.Tensor], seeds: int) -> plt.Figure:
    """Price and first-asset delta against the basket value, truth and seed 0 of each method."""
    style()
    ens, test = shown
    value, deriv = ens.predict(test)
    basket = (test @ sim.weights).numpy()
    order = np.argsort(basket)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, (ax, truth, pred) in enumerate(((axes[0], sim.price(test), value), (axes[1], sim.delta(test)[:, 0],
                                                                               deriv[:, :, 0]))):  # fmt: skip
        for method, m in (("standard", 0), ("differential", seeds)):
            ax.scatter(basket, pred[m].numpy(), s=2, alpha=0.4, color=COLORS[method], label=f"{method} (seed 0)")
        ax.plot(basket[order], truth.numpy()[order], "k-", lw=1, label="truth")
        ax.set_xlabel("basket value Σ aᵢ Sᵢ at T₁")
        ax.set_ylabel(["option price at T₁", "∂ price / ∂ S₁"][k])
        ax.set_title(["price", "delta of asset 1"][k])
        ax.legend(fontsize=7, markerscale=4)
    fig.suptitle(f"Bachelier basket, d = {sim.dim}, {ens.model.n_models // 2} seeds per method; seed 0 shown")
    fig.tight_layout()
    return fig
