"""Section 4.3's report: Table 1 beside the paper's, the paper's ordering judged pair by pair on
paired seeds, the synthetic gradients' alignment per cut, ``metrics.json`` and the README block
(nothing here trains)."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from sobolev.common.claims import Claim
from sobolev.common.plotting import style
from sobolev.common.stats import LOSS, MIN_SEEDS, WIN, median_interval, paired_difference
from sobolev.common.utils import json_safe

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
SG_VARIANTS = ("direct", "small_model", "critic", "sobolev")
CEILING = 0.97  # backprop above this leaves no room between the variants (issue 12)
N_BOOT = 10_000
HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"


def _present(results: pd.DataFrame) -> list[str]:
    return [v for v in PAPER_ORDER if v in set(results.variant)]


def _by_seed(results: pd.DataFrame, column: str = "test_accuracy") -> pd.DataFrame:
    """``column`` with one row per seed and one column per variant (the pairing)."""
    return results.pivot(index="seed", columns="variant", values=column)


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """Table 1's layout: per variant, test accuracy (%) as the median over seeds with its 95%
    bootstrap interval, the per-seed values, the training accuracy's median, beside the paper's
    mean and std (CIFAR-10)."""
    rows = []
    for v in _present(results):
        acc = 100 * results[results.variant == v].sort_values("seed").test_accuracy.to_numpy()
        low, high = median_interval(acc, N_BOOT)
        train = results[results.variant == v].get("train_accuracy")
        paper_mean, paper_std = PAPER_CIFAR10[v]
        rows.append({
            "variant": v, "median": float(np.median(acc)), "low": low, "high": high, "seeds": len(acc),
            "per_seed": [round(float(a), 2) for a in acc],
            "train_median": float(100 * train.median()) if train is not None else float("nan"),
            "paper_mean": paper_mean, "paper_std": paper_std,
        })  # fmt: skip
    return pd.DataFrame(rows).set_index("variant")


def ordering(results: pd.DataFrame) -> pd.DataFrame:
    """Each consecutive pair (lower, higher) of the paper's ordering judged on paired seeds: the
    mean per-seed accuracy difference higher − lower (percentage points) with its 95% t
    interval; *holds* when the interval lies above 0, *does not hold* below 0, else (and always
    with fewer than :data:`MIN_SEEDS` seeds) *undecided*; for critic ≤ Sobolev an undecided pair
    is consistent with the paper's tie."""
    acc = 100 * _by_seed(results)
    rows = []
    for a, b in itertools.pairwise(_present(results)):
        d = paired_difference(acc[b].to_numpy(), acc[a].to_numpy())
        verdict = {WIN: HOLDS, LOSS: FAILS}.get(d.verdict, UNDECIDED)
        relation = "≤" if (a, b) == ("critic", "sobolev") else "<"
        rows.append({"pair": f"{a} {relation} {b}", "lower": a, "higher": b, "difference": d.estimate,
                     "low": d.low, "high": d.high, "seeds": d.n, "verdict": verdict, **d.evidence()})  # fmt: skip
    return pd.DataFrame(rows)


def windowed_cosine(curves: pd.DataFrame, windows: int = 10) -> pd.DataFrame:
    """The logged cosine similarity (and norm ratio) of synthetic to true gradient averaged over
    ``windows`` equal windows of training, per variant, cut, seed and window. Columns: variant,
    cut, seed, window (1-based), step (the window's last update), cosine, norm_ratio."""
    sg = curves.dropna(subset=["cosine"])
    if not len(sg):
        return pd.DataFrame(columns=["variant", "cut", "seed", "window", "step", "cosine", "norm_ratio"])
    steps = int(sg.step.max())
    sg = sg.assign(window=np.minimum(windows, np.ceil(sg.step * windows / steps)).astype(int))
    out = sg.groupby(["variant", "cut", "seed", "window"], as_index=False)[["cosine", "norm_ratio"]].mean()
    return out.assign(step=(out.window * steps / windows).round().astype(int))


def final_cosine(windowed: pd.DataFrame) -> pd.DataFrame:
    """The last window's cosine per variant and cut: median over seeds with its 95% bootstrap
    interval, and the median norm ratio (synthetic / true gradient norm)."""
    last = windowed[windowed.window == windowed.window.max()]
    rows = []
    for (v, c), g in last.groupby(["variant", "cut"], sort=False):
        low, high = median_interval(g.cosine.to_numpy(), N_BOOT)
        rows.append({"variant": v, "cut": int(c), "cosine": float(g.cosine.median()), "low": low, "high": high,
                     "norm_ratio": float(g.norm_ratio.median())})  # fmt: skip
    order = {v: i for i, v in enumerate(PAPER_ORDER)}
    return pd.DataFrame(rows).sort_values(["variant", "cut"], key=lambda s: s.map(order) if s.name == "variant" else s)


def cosine_comparisons(windowed: pd.DataFrame) -> pd.DataFrame:
    """Sobolev's last-window cosine against each other critic-type module's, per cut: the paired
    mean difference Sobolev − other over seeds with its interval (positive: Sobolev aligns better;
    undecided with fewer than :data:`MIN_SEEDS` seeds)."""
    last = windowed[windowed.window == windowed.window.max()]
    rows = []
    for other in ("critic", "small_model"):
        for cut in sorted(last.cut.unique()):
            pair = last[last.cut == cut].pivot(index="seed", columns="variant", values="cosine")
            if not {"sobolev", other} <= set(pair.columns):
                continue
            d = paired_difference(pair["sobolev"].to_numpy(), pair[other].to_numpy())
            verdict = {WIN: "sobolev better", LOSS: "sobolev worse"}.get(d.verdict, UNDECIDED)
            rows.append({"other": other, "cut": int(cut), "difference": d.estimate, "low": d.low, "high": d.high,
                         "seeds": d.n, "verdict": verdict, **d.evidence()})  # fmt: skip
    return pd.DataFrame(rows)


def plateau(curves: pd.DataFrame, windows: int = 10) -> pd.DataFrame:
    """Convergence check per variant: the median over seeds of the mean training loss in the last
    tenth of training and the relative change from the last tenth logged before (near 0: a plateau)."""
    one = curves.drop_duplicates(["variant", "seed", "step"])  # the loss repeats per cut
    steps = int(one.step.max())
    one = one.assign(window=np.minimum(windows, np.ceil(one.step * windows / steps)).astype(int))
    per = one.groupby(["variant", "seed", "window"]).loss.mean().unstack("window")
    last, before = per.columns[-1], per.columns[-2] if len(per.columns) > 1 else per.columns[-1]
    change = (per[last] - per[before]) / per[before]
    out = pd.DataFrame({"last_loss": per[last], "change": change}).groupby("variant").median()
    return out.reindex([v for v in PAPER_ORDER if v in out.index])


def _too_few(seeds: int) -> str:
    return f" (fewer than {MIN_SEEDS} seeds: not decided)" if seeds < MIN_SEEDS else ""


def claims(results: pd.DataFrame, table: pd.DataFrame, order: pd.DataFrame, compare: pd.DataFrame) -> list[Claim]:
    """The verdicts, computed: the task has room; each pair of the paper's ordering; Sobolev's
    synthetic gradients align better than the critic's."""
    out = []
    acc = 100 * _by_seed(results)
    if {"backprop", "no_backprop"} <= set(acc.columns):
        gap = paired_difference(acc["backprop"].to_numpy(), acc["no_backprop"].to_numpy())
        top = table.loc["backprop", "median"]
        out.append(Claim(
            f"The task has room: backprop below {100 * CEILING:.0f}% and no backprop clearly below backprop",
            bool(top < 100 * CEILING and gap.verdict == WIN) if gap.n >= MIN_SEEDS else None,
            f"backprop {top:.1f}% [{table.loc['backprop', 'low']:.1f}, {table.loc['backprop', 'high']:.1f}], "
            f"no backprop {table.loc['no_backprop', 'median']:.1f}%; backprop − no backprop {gap} points"
            + _too_few(gap.n),
        ))  # fmt: skip
    for r in order.itertuples():
        out.append(Claim(
            f"Table 1's ordering: {r.pair}",
            {HOLDS: True, FAILS: False}.get(r.verdict),
            f"paired difference {r.higher} − {r.lower}: {r.difference:+.2f} [{r.low:+.2f}, {r.high:+.2f}] points "
            f"over {r.seeds} seeds" + _too_few(r.seeds),
        ))  # fmt: skip
    for other in ("critic", "small_model"):
        mine = compare[compare.other == other] if len(compare) else compare
        if not len(mine):
            continue
        better, worse = int((mine.verdict == "sobolev better").sum()), int((mine.verdict == "sobolev worse").sum())
        cuts = "; ".join(f"cut {r.cut}: {r.difference:+.3f} [{r.low:+.3f}, {r.high:+.3f}]" for r in mine.itertuples())
        out.append(Claim(
            f"Sobolev's synthetic gradients align better with the true gradient than the {other}'s "
            "(last-window cosine, paired, every cut)",
            True if better == len(mine) else (False if worse else None),
            f"better at {better}, worse at {worse} of {len(mine)} cuts; {cuts}" + _too_few(int(mine.seeds.min())),
        ))  # fmt: skip
    return out


def metrics(
    dataset: str, results: pd.DataFrame, table: pd.DataFrame, order: pd.DataFrame, cosine: pd.DataFrame,
    converge: pd.DataFrame, verdicts: list[Claim], settings: dict,
) -> dict:  # fmt: skip
    """What the stage writes to ``metrics.json`` (valid JSON: no NaN, so ``dvc metrics`` reads it)."""

    return json_safe({
        "dataset": dataset,
        "settings": settings,
        "test_images": int(results.test_images.iloc[0]),
        "table": table.reset_index().to_dict("records"),
        "runs": results.drop(columns="test_images").to_dict("records"),
        "ordering": order.to_dict("records"),
        "ordering_pairs_holding": f"{int((order.verdict == HOLDS).sum())}/{len(order)}",
        "cosine": cosine.to_dict("records"),
        "plateau": converge.reset_index().to_dict("records"),
        "claims": [c.to_dict() for c in verdicts],
    })  # fmt: skip


def cosine_figure(windowed: pd.DataFrame) -> plt.Figure | None:
    """Window-averaged cosine similarity of synthetic and true gradient over training, one panel
    per cut (cut 0 the lowest): median over seeds with a 95% interval, every seed's window means as
    points. ``None`` when no variant has SG modules."""
    if not len(windowed):
        return None
    style()
    order = [v for v in SG_VARIANTS if v in set(windowed.variant)]
    grid = sns.relplot(data=windowed, x="step", y="cosine", hue="variant", hue_order=order, col="cut", kind="line",
                       estimator="median", errorbar=("ci", 95), height=3, aspect=1.15)  # fmt: skip
    for ax, (_, g) in zip(grid.axes.flat, windowed.groupby("cut"), strict=True):
        sns.stripplot(data=g, x="step", y="cosine", hue="variant", hue_order=order, ax=ax, native_scale=True,
                      size=2, alpha=0.4, legend=False, jitter=False)  # fmt: skip
        ax.axhline(0, color="0.5", lw=0.8)
    grid.set(ylim=(-0.2, 1.0), ylabel="cosine (window mean)")
    grid.figure.suptitle("Synthetic vs true gradient, averaged over tenths of training (median, 95% CI)", y=1.04)
    return grid.figure


def accuracy_figure(results: pd.DataFrame, dataset: str) -> plt.Figure:
    """Test accuracy per variant on ``dataset`` (named in the title): every seed as a point (lines
    join a seed's variants: the pairing), the median as a black dash (no bars: the axis need not
    start at 0); the paper's CIFAR-10 means as crosses, for the ordering only when ``dataset`` is not
    CIFAR-10."""
    style()
    order = _present(results)
    data = results.assign(accuracy=100 * results.test_accuracy)
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    sns.pointplot(data=data, x="variant", y="accuracy", order=order, estimator="median", errorbar=None,
                  color="k", markers="_", markersize=22, linestyle="none", ax=ax, zorder=5)  # fmt: skip
    for _, g in data.groupby("seed"):
        g = g.set_index("variant").reindex(order)
        ax.plot(range(len(order)), g.accuracy, color="0.6", lw=0.6, zorder=2)
    sns.stripplot(data=data, x="variant", y="accuracy", order=order, color="C0", size=4, jitter=False, ax=ax,
                  zorder=3)  # fmt: skip
    ax.scatter(range(len(order)), [PAPER_CIFAR10[v][0] for v in order], marker="x", color="C3", zorder=4,
               label="paper (CIFAR-10)")  # fmt: skip
    low = min(data.accuracy.min(), min(PAPER_CIFAR10[v][0] for v in order))
    ax.set(ylim=(max(0, low - 5), 100), ylabel="test accuracy, %", xlabel="variant (how each module is trained)")
    ax.legend(loc="lower right")
    ax.set_title(f"Table 1 on {dataset}: per-seed test accuracy (points, joined per seed), median (dashes)",
                 fontsize=9)  # fmt: skip
    return fig


def loss_figure(curves: pd.DataFrame) -> plt.Figure:
    """Training loss (mean over each logging interval) per variant over training, median over seeds:
    the convergence check, on a log axis. The caption names the variant with the lowest final
    training loss; when that is ``no_backprop`` it says why (by design, its lower blocks never
    move: the top block alone fits fixed random features, which a training loss cannot tell from
    learning; Table 1's test accuracy can)."""
    style()
    one = curves.drop_duplicates(["variant", "seed", "step"])
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    sns.lineplot(data=one, x="step", y="loss", hue="variant", hue_order=_present(one), estimator="median",
                 errorbar=("ci", 95), ax=ax)  # fmt: skip
    ax.set(yscale="log", ylabel="training loss (interval mean)", xlabel="update")
    ax.set_title("Training loss over training (median over seeds, 95% CI)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    last = one[one.step == one.step.max()].groupby("variant").loss.median()
    if len(last):
        lowest = str(last.idxmin())
        why = ""
        if lowest == "no_backprop":
            why = (
                ": its lower blocks stay at their random initialisation (no learning signal reaches them), so\n"
                "the top block alone fits fixed random features of the training set; a low training loss here is\n"
                "not learning, and Table 1's test accuracy tells the two apart"
            )
        fig.text(0.01, 0.01, f"Lowest final training loss: {lowest}{why}.", fontsize=7, va="bottom")
        fig.subplots_adjust(left=0.1, right=0.78, bottom=0.32 if why else 0.2)
    return fig


def readme_block(m: dict) -> str:
    """Markdown from ``results/synthetic/metrics.json``: Table 1 (median and interval per variant,
    per-seed values, the paper's numbers beside), each ordering pair's verdict, the last-window
    cosine per variant and cut, and the verdicts."""
    n = m["test_images"]
    lines = [
        f"| variant | ours ({m['dataset']}), median [95% CI], % | per seed | paper (CIFAR-10), % |",
        "| --- | ---: | --- | ---: |",
    ]
    for r in m["table"]:
        paper = f"{r['paper_mean']:.1f}" + (f" ± {r['paper_std']:.2f}" if r.get("paper_std") is not None else "")
        seeds = ", ".join(f"{a:.1f}" for a in r["per_seed"])
        lines.append(f"| {r['variant']} | {r['median']:.1f} [{r['low']:.1f}, {r['high']:.1f}] | {seeds} | {paper} |")
    lines += ["", f"Test set: {n} signals or images, so one is {100 / n:.2f} percentage points.", ""]
    lines += ["| pair | paired difference, points [95% CI] | verdict |", "| --- | ---: | --- |"]
    lines += [f"| {o['pair']} | {o['difference']:+.2f} [{o['low']:+.2f}, {o['high']:+.2f}] | {o['verdict']} |"
              for o in m["ordering"]]  # fmt: skip
    cuts = sorted({c["cut"] for c in m["cosine"]})
    if cuts:
        lines += ["", "Cosine of synthetic and true gradient, last tenth of training, median over seeds "
                  "[95% CI] (norm ratio synthetic / true); cut 0 is the lowest:", ""]  # fmt: skip
        lines += ["| module | " + " | ".join(f"cut {c}" for c in cuts) + " |", "| --- |" + " ---: |" * len(cuts)]
        for v in SG_VARIANTS:
            cells = {c["cut"]: c for c in m["cosine"] if c["variant"] == v}
            if cells:
                row = [f"{cells[c]['cosine']:.2f} [{cells[c]['low']:.2f}, {cells[c]['high']:.2f}] "
                       f"({cells[c]['norm_ratio']:.2f})" for c in cuts]  # fmt: skip
                lines.append(f"| {v} | " + " | ".join(row) + " |")
    lines += ["", "Verdicts:", ""] + [f"* {Claim.from_dict(c)}" for c in m["claims"]]
    return "\n".join(lines)
