"""README tables generated from the committed metrics (no number typed in by hand).

``python -m sobolev.readme`` rewrites every block between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` in README.md from each section's ``readme_blocks``;
``tests/pipeline/test_pipeline.py`` fails when a block differs from what the committed metrics give.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from sobolev import (
    deviations,
    differential,
    distillation,
    features,
    inexact,
    regression,
    synthetic_gradients,
    theory,
    trust,
)
from sobolev.common import decision_level
from sobolev.common.install import settled
from sobolev.common.paths import ROOT
from sobolev.common.stats import RULE, paired_ratio
from sobolev.common.utils import atomic_write_text
from sobolev.pipeline import STAGES


def blocks(root: Path = ROOT) -> dict[str, str]:
    """Every generated README block, by name."""

    def metrics(stage: str) -> dict:
        return json.loads((settled(root / STAGES[stage].out_dir) / "metrics.json").read_text())

    sections = {
        "s3-theory": theory, "s41-regression": regression, "s42-report": distillation,
        "s43-synthetic-gradients": synthetic_gradients, "s51-differential-ml": differential,
        "s52-relative-trust": trust, "s53-feature-updates": features, "s54-student-teacher": deviations,
        "s55-inexact-derivatives": inexact,
    }  # fmt: skip
    generated = {name: body for stage, section in sections.items() for name, body in
                 section.readme_blocks(metrics(stage)).items()}  # fmt: skip
    # Every block that states verdicts says by which rule (Section 4.1's two tables share its claims block's line).
    tables = {name for name in generated if name.startswith("regression-") and name != "regression-claims"}
    out = {name: body if name in tables else f"{body}\n\n*Decision rule: {RULE}.*" for name, body in generated.items()}
    return {"decisions": decisions_block(root), "fit": fit_block(root), **out}


def fit_comparison(runs: pd.DataFrame, ours: str = "sobolev") -> pd.DataFrame:
    """``benchmarks/bench_fit_vs_jenn.py``'s runs as one row per (function, n, labels, other library): both
    libraries' median test MSE / Var(f) and fit seconds, ``error_ratio`` (ours / other, the medians'),
    ``speedup`` (other's time / ours), and the paired comparison: every library fits the same samples per
    seed, so ``paired`` is the geometric mean of the per-seed error ratios with its t interval
    (:func:`sobolev.common.stats.paired_ratio`) and ``verdict`` ours' win, loss or undecided. ``ours`` is
    the library column's name of the fit compared (a variant reads ``sobolev[name]``); rows without a
    measurement (``skipped``) are left out."""
    keys = ["function", "dim", "n", "derivatives"]
    measured = runs[runs["nmse"].notna()] if "nmse" in runs else runs.iloc[:0]
    rows = []
    for key, cell in measured.groupby(keys):
        per_seed = cell.pivot_table(index="seed", columns="library", values="nmse", aggfunc="first")
        seconds = cell.pivot_table(index="seed", columns="library", values="seconds", aggfunc="first")
        if ours not in per_seed:
            continue
        for other in sorted(set(per_seed.columns) - {ours}):
            both = per_seed[[ours, other]].dropna()
            if both.empty:
                continue
            interval = paired_ratio(both[ours], both[other])
            med_ours, med_other = both.median()
            sec = seconds.loc[both.index, [ours, other]].median()
            rows.append({**dict(zip(keys, key, strict=True)), "other": other, "seeds": len(both),
                         "nmse_ours": med_ours, "nmse_other": med_other, "seconds_ours": sec[ours],
                         "seconds_other": sec[other], "error_ratio": med_ours / med_other,
                         "speedup": sec[other] / sec[ours], "paired": str(interval),
                         "verdict": interval.verdict})  # fmt: skip
    return pd.DataFrame(
        rows,
        columns=[
            *keys,
            "other",
            "seeds",
            "nmse_ours",
            "nmse_other",
            "seconds_ours",
            "seconds_other",
            "error_ratio",
            "speedup",
            "paired",
            "verdict",
        ],
    )


FIT_RESULTS = ("benchmarks/results-fit-vs-jenn.csv", "benchmarks/results-fit-vs-jenn-10000.csv")
LIBRARY_NAMES = {"jenn": "JENN", "krg": "SMT KRG (values)", "gekpls": "SMT GEKPLS", "gpytorch": "GPyTorch (gradients)"}


def fit_runs(root: Path = ROOT) -> pd.DataFrame:
    """Every committed benchmark fit (``FIT_RESULTS``), skipped rows included."""
    return pd.concat([pd.read_csv(root / p) for p in FIT_RESULTS if (root / p).exists()], ignore_index=True)


def fit_block(root: Path = ROOT) -> str:
    """The measured comparison of ``sobolev.fit`` with JENN and Gaussian processes, from the benchmark's CSVs."""
    runs = fit_runs(root)
    table = fit_comparison(runs)
    speeds = sorted(set(runs.gflops_per_thread.dropna()))
    threads = sorted(set(runs.threads.dropna().astype(int))) if "threads" in runs else [2]
    lines = [
        "| function | D | n | derivatives | against | seeds | their error | `sobolev.fit` error | paired ratio [95%] | "
        "ours | their s | ours s | speed-up |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in table.sort_values(["dim", "function", "derivatives", "n", "other"]).itertuples():
        lines.append(f"| {r.function} | {r.dim} | {r.n} | {r.derivatives} | {LIBRARY_NAMES.get(r.other, r.other)} | "
                     f"{r.seeds} | {r.nmse_other:.3g} | {r.nmse_ours:.3g} | {r.paired} | {r.verdict} | "
                     f"{r.seconds_other:.2f} | {r.seconds_ours:.2f} | {r.speedup:.2g} |")  # fmt: skip
    lines += ["", f"Medians over seeds of test MSE / Var(f) on 5 000 points and of one fit's wall time, every library "
                  f"on {' or '.join(map(str, threads))} thread(s) at {' and '.join(f'{s:g}' for s in speeds)} GFLOP/s "
                  f"per thread. Paired ratio: geometric mean over seeds of ours / theirs on the same samples, with its "
                  f"t interval ({RULE})."]  # fmt: skip
    for other, rows in table.groupby("other", sort=False):
        lines.append(f"* Against {LIBRARY_NAMES.get(other, other)}: `sobolev.fit` wins {(rows.verdict == 'win').sum()} "
                     f"of {len(rows)} cells, loses {(rows.verdict == 'loss').sum()}, "
                     f"{(rows.verdict == 'undecided').sum()} undecided; its speed-up ranges "
                     f"{rows.speedup.min():.2g}× to {rows.speedup.max():.2g}×.")  # fmt: skip
    if "skipped" in runs:
        for (library, why), _ in runs[runs.skipped.notna()].groupby(["library", "skipped"]):
            lines.append(f"* Not run: {LIBRARY_NAMES.get(library, library)}: {why}.")
    return "\n".join(lines)


def decisions_block(root: Path = ROOT) -> str:
    """The decision rule's measured level (:mod:`sobolev.common.decision_level`): coverage and false
    decisions with no true effect beside the percentile bootstrap it replaced, and the rule on the
    committed Section 4.1 cells' own per-seed shape."""
    t, boot = decision_level.level_table(), decision_level.level_table(decision_level.percentile_bootstrap_rule)
    lines = [
        "| per-seed values | seeds | t interval: coverage | t rule: false decisions | percentile bootstrap: coverage "
        "| bootstrap: false decisions |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a, b in zip(t.itertuples(), boot.itertuples(), strict=True):
        lines.append(f"| {a.values} | {a.seeds} | {a.coverage:.3f} | {a.false_decisions:.3f} | {b.coverage:.3f} | "
                     f"{b.false_decisions:.3f} |")  # fmt: skip
    lines.append("")
    lines.append(
        "(4 000 simulated comparisons per row, true effect 0; a false decision needs at least 5 seeds, so none at 3.)"
    )
    for section, groups in decision_level.committed_groups(root / "results").items():
        skew = decision_level.skewness_check(groups)
        lines.append(
            f"* Section {section}, per-seed log ratios of {skew['cells']} cells: median |skewness| "
            f"{skew['median_abs_skew']:.2f} (normal samples of the same sizes: {skew['normal_median_abs_skew']:.2f}); "
            f"{skew['share_beyond_normal_95']:.0%} of cells beyond normal's 95th percentile (5% expected)."
        )
        for n in (5, 10):
            r = decision_level.resampled_level(groups, n)
            lines.append(
                f"* The t interval on those cells' own centred values, resampled {n} at a time: coverage "
                f"{r['coverage']:.3f} against {r['normal_reference']:.3f} for normal cells of the same sizes resampled "
                f"alike (worst cell {r['worst_cell']:.3f})."
            )
    return "\n".join(lines)


def render(readme: str, generated: dict[str, str]) -> str:
    """``readme`` with each ``<!-- results:NAME -->`` block replaced by ``generated[NAME]``."""
    for name, body in generated.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n)(?:.*?\n)?(<!-- /results:{name} -->)", re.S)
        if not pattern.search(readme):
            raise ValueError(f"README has no block <!-- results:{name} --> ... <!-- /results:{name} -->")
        readme = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), readme)
    return readme


def main() -> int:
    path = ROOT / "README.md"
    generated = blocks()
    atomic_write_text(path, render(path.read_text(), generated))
    print(f"updated {len(generated)} result blocks in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
