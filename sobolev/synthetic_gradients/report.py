"""Section 4.3's report: Table 1 beside the paper's, the paper's ordering judged pair by pair on
paired seeds, the synthetic gradients' alignment per cut, ``metrics.json`` and the README block
(nothing here trains)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from sobolev.common.claims import Claim
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, MIN_SEEDS, WIN, Interval, median_interval, paired_difference
from sobolev.common.utils import atomic_write_json, atomic_write_text, json_safe
from sobolev.synthetic_gradients.compute import (
    PAPER_CIFAR10,
    PAPER_ORDER,
    SG_VARIANTS,
    Result,
    present_variants,
    windowed_cosine,
)
from sobolev.synthetic_gradients.plots import figures

CEILING = 0.97  # backprop above this leaves no room between the variants (issue 12)
N_BOOT = 10_000
HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"


def _by_seed(results: pd.DataFrame, column: str = "test_accuracy") -> pd.DataFrame:
    """``column`` with one row per seed and one column per variant (the pairing)."""
    return results.pivot(index="seed", columns="variant", values=column)


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """Table 1's layout: per variant, test accuracy (%) as the median over seeds with its 95%
    bootstrap interval, the per-seed values, the training accuracy's median, beside the paper's
    mean and std (CIFAR-10)."""
    rows = []
    for v in present_variants(results):
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
    with fewer than :data:`MIN_SEEDS` seeds) *undecided*. Every pair is tested as a strict "<", as the
    words say; for critic < Sobolev the paper reports a tie, which an undecided pair is consistent with."""
    acc = 100 * _by_seed(results)
    rows = []
    for a, b in itertools.pairwise(present_variants(results)):
        d = paired_difference(acc[b].to_numpy(), acc[a].to_numpy())
        verdict = {WIN: HOLDS, LOSS: FAILS}.get(d.verdict, UNDECIDED)
        rows.append({"pair": f"{a} < {b}", "lower": a, "higher": b, "difference": d.estimate,
                     "low": d.low, "high": d.high, "seeds": d.n, "verdict": verdict, **d.evidence()})  # fmt: skip
    return pd.DataFrame(rows)


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


def _room(top: float, gap: Interval) -> bool | None:
    """The task has room when backprop's median is below the ceiling and its paired gain over no backprop is a
    decided win; it has none when backprop sits at the ceiling or no backprop decidedly beats it; an undecided
    gain is undecided (not a failure)."""
    if top >= 100 * CEILING or gap.verdict == LOSS:
        return False
    return True if gap.verdict == WIN else None


def _too_few(seeds: int) -> str:
    return f" (fewer than {MIN_SEEDS} seeds: not decided)" if seeds < MIN_SEEDS else ""


def claims(result: Result) -> list[Claim]:
    """The verdicts, computed: the task has room; each pair of the paper's ordering; Sobolev's
    synthetic gradients align better than the critic's."""
    results, table, order = result.runs, table1(result.runs), ordering(result.runs)
    windowed = windowed_cosine(result.curves)
    compare = cosine_comparisons(windowed) if len(windowed) else pd.DataFrame()
    out = []
    acc = 100 * _by_seed(results)
    if {"backprop", "no_backprop"} <= set(acc.columns):
        gap = paired_difference(acc["backprop"].to_numpy(), acc["no_backprop"].to_numpy())
        top = table.loc["backprop", "median"]
        out.append(Claim(
            f"The task has room: backprop below {100 * CEILING:.0f}% and no backprop clearly below backprop",
            _room(top, gap),
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


SETTINGS = ("samples", "seeds", "steps", "width_scale", "sg_width", "sg_lr", "sg_loss", "sg_scale", "sg_last_init")


def metrics(result: Result) -> dict:
    """What the stage writes to ``metrics.json`` (valid JSON: no NaN, so ``dvc metrics`` reads it)."""
    results, order = result.runs, ordering(result.runs)
    windowed = windowed_cosine(result.curves)
    cosine = final_cosine(windowed) if len(windowed) else pd.DataFrame()
    return json_safe({
        "dataset": result.cfg.dataset,
        "settings": {k: getattr(result.cfg, k) for k in SETTINGS},
        "test_images": int(results.test_images.iloc[0]),
        "table": table1(results).reset_index().to_dict("records"),
        "runs": results.drop(columns="test_images").to_dict("records"),
        "ordering": order.to_dict("records"),
        "ordering_pairs_holding": f"{int((order.verdict == HOLDS).sum())}/{len(order)}",
        "cosine": cosine.to_dict("records"),
        "plateau": plateau(result.curves).reset_index().to_dict("records"),
        "claims": [c.to_dict() for c in claims(result)],
    })  # fmt: skip


def save(result: Result, output_dir: str | Path | None) -> None:
    """Write the stage's outputs (:data:`~sobolev.synthetic_gradients.config.OUTPUTS`) into
    ``output_dir``: ``metrics.json``, ``runs.csv``, ``curves.csv`` and every figure, checked, as
    ``figures/<name>.png`` (``None``: check the figures only)."""
    if output_dir is None:
        return save_all(figures(result), None)
    out = Path(output_dir)
    atomic_write_json(out / "metrics.json", metrics(result))
    atomic_write_text(out / "runs.csv", result.runs.to_csv(index=False, float_format="%.5g"))
    atomic_write_text(out / "curves.csv", result.curves.to_csv(index=False, float_format="%.5g"))
    save_all(figures(result), out)


def readme_blocks(m: dict) -> dict[str, str]:
    """The README blocks of Section 4.3, by name."""
    return {"synthetic-gradients": readme_block(m)}


def readme_block(m: dict) -> str:
    """Markdown from ``results/synthetic_gradients/metrics.json``: Table 1 (median and interval per variant,
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
