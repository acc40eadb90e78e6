"""Section 4.3's report: Table 1 beside the paper's, the paper's ordering checked, the cosine
diagnostics, ``metrics.json`` and the README block (nothing here trains)."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from sobolev.common.claims import Claim
from sobolev.common.plotting import style

# Table 1 of the paper, CIFAR-10 with 3 SG modules: test accuracy (%), mean and std.
PAPER_CIFAR10 = {
    "backprop": (94.3, None),
    "no_backprop": (54.5, 1.15),
    "direct": (79.2, 0.01),
    "small_model": (88.5, 2.70),
    "critic": (93.2, 0.02),
    "sobolev": (93.5, 0.01),
}
# The paper's ordering: no backprop < direct SG < small-model SG < critic ≤ Sobolev < backprop.
PAPER_ORDER = ("no_backprop", "direct", "small_model", "critic", "sobolev", "backprop")


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """Table 1's layout: accuracy (%) mean ± std over seeds per variant, beside the paper's."""
    agg = results.groupby("variant").test_accuracy.agg(["mean", "std", "count"]) * [100, 100, 1]
    agg = agg.reindex([v for v in PAPER_ORDER if v in agg.index])
    paper = pd.DataFrame(PAPER_CIFAR10, index=["paper mean", "paper std"]).T
    return agg.rename(columns={"mean": "ours mean", "std": "ours std", "count": "seeds"}).join(paper)


def ordering(table: pd.DataFrame) -> list[tuple[str, str, bool]]:
    """Each consecutive pair of the paper's ordering with whether our means respect it
    (``critic ≤ Sobolev`` allows equality; the others are strict)."""
    means = table["ours mean"]
    present = [v for v in PAPER_ORDER if v in means.index]
    out = []
    for a, b in itertools.pairwise(present):
        holds = means[a] <= means[b] if (a, b) == ("critic", "sobolev") else means[a] < means[b]
        out.append((a, b, bool(holds)))
    return out


def _finite_or_none(x):
    """JSON has no NaN: the paper gives no std for backprop."""
    return None if x is None or x != x else float(x)


def metrics(dataset: str, results: pd.DataFrame, table: pd.DataFrame, order: list, curves: pd.DataFrame) -> dict:
    """What the stage writes to ``metrics.json``: Table 1's rows, every run's accuracy, the
    ordering check and the last logged cosine similarity per variant and cut (mean over seeds).
    Valid JSON (no NaN), so ``dvc metrics`` can read it."""
    out = {
        "dataset": dataset,
        "test_images": int(results.test_images.iloc[0]) if "test_images" in results else None,
        "table": [{k: (v if isinstance(v, str) else _finite_or_none(v)) for k, v in row.items()}
                  for row in table.reset_index().to_dict("records")],
        "runs": [{"variant": r.variant, "seed": int(r.seed), "test_accuracy": float(r.test_accuracy)}
                 for r in results.itertuples()],
        "ordering": [{"lower": a, "higher": b, "holds": h} for a, b, h in order],
        "ordering_pairs_holding": f"{sum(h for *_, h in order)}/{len(order)}",
    }  # fmt: skip
    sg_curves = curves.dropna(subset=["cosine"]) if len(curves) else curves
    if len(sg_curves):
        last = sg_curves[sg_curves.step == sg_curves.step.max()]
        out["final_cosine"] = {
            f"{v}/cut{c}": float(x) for (v, c), x in last.groupby(["variant", "cut"]).cosine.mean().items()
        }
    return out


def ordering_claims(order: list[tuple[str, str, bool]]) -> list[Claim]:
    """Each pair of the paper's ordering as a :class:`Claim` (judged on mean accuracy)."""
    return [Claim(f"{a} {'≤' if (a, b) == ('critic', 'sobolev') else '<'} {b}", holds, "mean test accuracy over seeds")
            for a, b, holds in order]  # fmt: skip


def ordering_summary(order: list[tuple[str, str, bool]], results: pd.DataFrame) -> str:
    n_test = int(results.test_images.iloc[0])
    return (f"{sum(h for *_, h in order)} of {len(order)} pairs of the paper's ordering hold; "
            f"one test image is {100 / n_test:.2f} percentage points ({n_test} test images)")  # fmt: skip


def cosine_figure(curves: pd.DataFrame) -> plt.Figure | None:
    """Cosine similarity of synthetic and true gradients over training, per variant and cut
    (mean ± std over seeds); ``None`` when no variant has SG modules."""
    sg_curves = curves.dropna(subset=["cosine"])
    if not len(sg_curves):
        return None
    style()
    grid = sns.relplot(data=sg_curves, x="step", y="cosine", hue="variant", col="cut", kind="line",
                       errorbar="sd", height=3, aspect=1.2)  # fmt: skip
    grid.set(ylim=(-0.2, 1.0))
    grid.figure.suptitle("Synthetic vs true gradient: cosine similarity (mean ± std over seeds)", y=1.04)
    return grid.figure


def final_cosine(curves: pd.DataFrame) -> pd.DataFrame:
    """The last logged cosine similarity per variant (rows) and cut (columns), mean over seeds."""
    sg_curves = curves.dropna(subset=["cosine"])
    last = sg_curves[sg_curves.step == sg_curves.step.max()]
    return last.groupby(["variant", "cut"]).cosine.mean().unstack("cut")


def readme_block(m: dict) -> str:
    """Markdown: Table 1's layout for our runs beside the paper's, the ordering check and the
    final cosine similarities, from ``results/synthetic/metrics.json``."""
    lines = [
        f"| variant | ours ({m['dataset']}), % | paper (CIFAR-10), % |",
        "| --- | ---: | ---: |",
    ]
    for row in m["table"]:
        paper = "" if row["paper mean"] != row["paper mean"] else f"{row['paper mean']:.1f}"
        if row.get("paper std") == row.get("paper std") and row.get("paper std") is not None:
            paper += f" ± {row['paper std']:.2f}"
        lines.append(f"| {row['variant']} | {row['ours mean']:.1f} ± {row['ours std']:.1f} | {paper} |")
    lines.append("")
    order = ", ".join(
        f"{o['lower']} {'≤' if o['lower'] == 'critic' else '<'} {o['higher']}: "
        f"{'holds' if o['holds'] else 'does not hold'}"
        for o in m["ordering"]
    )
    lines.append(f"The paper's ordering, pair by pair: {order}.")
    if m.get("test_images"):
        n = m["test_images"]
        lines += ["", f"Test set: {n} images, so one image is {100 / n:.2f} percentage points."]
    if "final_cosine" in m:
        cos = ", ".join(f"{k}: {v:.2f}" for k, v in sorted(m["final_cosine"].items()))
        lines += ["", f"Final cosine similarity of synthetic and true gradients (cut 0 is the lowest): {cos}."]
    return "\n".join(lines)
