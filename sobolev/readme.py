"""The repository's pages, generated from the committed metrics (no number typed in by hand).

``python -m sobolev.readme`` rewrites every block between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` in every page of :data:`PAGES` (the README landing page, ``docs/`` and one page per
section under ``docs/sections/``) and draws the scorecard (``docs/figures/scorecard.png`` and the table behind it);
``tests/pipeline/test_pages.py`` fails when a block, the scorecard's table, a link or an image is stale or broken.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from sobolev import (
    deviations,
    differential,
    distillation,
    features,
    inexact,
    regression,
    scorecard,
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

SECTIONS = {  # stage -> (results folder, section page, package)
    "s3-theory": ("theory", "docs/sections/s3-theory.md", theory),
    "s41-regression": ("regression", "docs/sections/s41-regression.md", regression),
    "s42-report": ("distillation/report", "docs/sections/s42-distillation.md", distillation),
    "s43-synthetic-gradients": ("synthetic_gradients", "docs/sections/s43-synthetic-gradients.md", synthetic_gradients),
    "s51-differential-ml": ("differential", "docs/sections/s51-differential-ml.md", differential),
    "s52-relative-trust": ("trust", "docs/sections/s52-relative-trust.md", trust),
    "s53-feature-updates": ("features", "docs/sections/s53-feature-updates.md", features),
    "s54-student-teacher": ("deviations", "docs/sections/s54-student-teacher.md", deviations),
    "s55-inexact-derivatives": ("inexact", "docs/sections/s55-inexact-derivatives.md", inexact),
}
PAGES = ("README.md", "docs/fit.md", "docs/statistics.md", "docs/pipeline.md",
         *(page for _, page, _ in SECTIONS.values()))  # fmt: skip
SCORECARD = "docs/figures/scorecard"
VERDICT = re.compile(r"^\s*\* \[(REPRODUCED|NOT reproduced|UNDECIDED)\] (.*)$", re.M)
# The claim the landing page shows for each section: the paper's headline for Sections 4.x, the related question's
# for Sections 5.x (the start of its text on the section's page; every other claim is counted beside it).
HEADLINES = {
    "s41-regression": "Sobolev lowers test MSE on 6 of 7 functions at n=20",
    "s42-report": "Sobolev students are closer to the teacher in every game and fraction",
    "s43-synthetic-gradients": "Table 1's ordering: critic < sobolev",
    "s51-differential-ml": "derivative labels lower the test error of the prices",
    "s52-relative-trust": "raw data: Sobolev beats regular training under untuned Fromage",
    "s53-feature-updates": "regression: Sobolev's advantage over regular training holds at every K",
    "s54-student-teacher": "Regular distillation: the student exaggerates",
    "s55-inexact-derivatives": "in 2-D, k-NN gradient estimates decidedly beat a strong values-only fit",
}


def _metrics(root: Path, stage: str) -> dict:
    return json.loads((settled(root / STAGES[stage].out_dir) / "metrics.json").read_text())


def section_blocks(root: Path = ROOT) -> dict[str, dict[str, str]]:
    """Every section's generated blocks, by stage: ``{stage: {block name: markdown}}``."""
    return {stage: section.readme_blocks(_metrics(root, stage)) for stage, (_, _, section) in SECTIONS.items()}


def blocks(root: Path = ROOT) -> dict[str, str]:
    """Every generated block of every page, by name."""
    by_section = section_blocks(root)
    generated = {name: body for parts in by_section.values() for name, body in parts.items()}
    # Every block that states verdicts says by which rule (Section 4.1's two tables share its claims block's line).
    tables = {name for name in generated if name.startswith("regression-") and name != "regression-claims"}
    out = {name: body if name in tables else f"{body}\n\n*Decision rule: {RULE}.*" for name, body in generated.items()}
    figures = {f"figures-{stage}": figures_block(root, folder, page) for stage, (folder, page, _) in SECTIONS.items()}
    return {
        "decisions": decisions_block(root),
        "paths": paths_block(),
        "fit": fit_block(root),
        "fit-guide": fit_guide_block(root),
        "glance": glance_block(by_section),
        **figures,
        **out,
    }


CAPTIONS = {  # figure file name (or its prefix before "_<function>") -> what it shows, in one line
    "fig2_left": "Figure 2 (left), computed: values alone leave a family of PL fits; values and slopes pin one.",
    "prop3_gaussians": "Proposition 3: two Gaussians with equal values at two points.",
    "theorem2": "Theorem 2: the least-squares h and a trained network against f, per pair (f, g).",
    "identification_rank": "How much of a continuous PL function random points identify, with and without "
                           "gradients.",
    "pl_networks": "ReLU networks on random PL targets: test MSE of every seed.",
    "fig2_right": "Figure 2 (right): test MSE / Var(f) of every seed and arm, per function and size.",
    "paired_ratios": "Every cell's paired ratio arm / baseline with its 95% t interval.",
    "weight_sweep": "The derivative weight λ: every seed, medians as bars (seed counts under each λ).",
    "surfaces": "Figure 3 / SM Figures 5-11: truth and each arm's median-seed model, its error and gradient field.",
    "figure4": "Figure 4: KL to the teacher and action error against iterations, per game and fraction.",
    "figure4_summary": "Figure 4 summarised: every seed's selected checkpoint against the training fraction.",
    "paired_seeds": "Paired seeds: each line one seed, test KL at the selected checkpoint.",
    "table1_accuracy": "Table 1 on MNIST-1D (every seed) beside the paper's CIFAR-10 means (their own axis).",
    "training_loss": "Training loss of every variant (median over seeds, 95% interval).",
    "cosine_similarity": "Synthetic against true gradient: window-averaged cosine per cut.",
    "error_by_size": "Test error against training size, every seed, both methods (collapsed runs marked).",
    "predictions": "One ensemble's prices and deltas against the truth.",
    "sobolev_ratio_by_optimiser": "Sobolev / regular under tuned Adam and default Fromage, every cell with its "
                                  "interval.",
    "learning_rate_sweep": "Test error against learning rate per optimiser: medians and every seed.",
    "weight_norms": "Each weight matrix's norm relative to its start, over training.",
    "relative_trust": "Relative change of output and input gradient against the per-layer perturbation ε.",
    "error_by_feature_updates": "Test error against the number of feature sets, every seed, both losses.",
    "sobolev_ratio_by_feature_updates": "Sobolev / regular against feature sets seen, with 95% t intervals.",
    "phase_diagram": "Median test error over training time and K, per loss, and their ratio.",
    "digits_students": "Digits students: KL to the teacher and accuracy against the number of feature sets.",
    "deviations_by_confidence": "Student − teacher log-odds by the teacher's confidence, per width and loss.",
    "slopes": "Exaggeration slope of every student (seeds as points).",
    "switch": "The switch experiment: test accuracy against the share of training on labels first.",
    "atari_deviations": "Section 4.2's Atari students against their teacher, one row per game and fraction.",
    "advantage_vs_noise": "Sobolev / regular against the derivative labels' relative noise, per λ.",
    "error_vs_budget": "One budget of m evaluations, each use of it: rows a function, columns its dimension.",
    "label_error": "How wrong the estimated derivative labels are, per estimator and dimension.",
}  # fmt: skip


def caption(stem: str) -> str:
    """The one-line caption of a figure file (:data:`CAPTIONS`; ``surfaces_beale`` reads ``surfaces``)."""
    if stem in CAPTIONS:
        return CAPTIONS[stem]
    prefix = stem.rsplit("_", 1)[0]
    for key in (prefix, stem.split("_", 1)[0]):
        if key in CAPTIONS:
            return f"{CAPTIONS[key]} ({stem.removeprefix(key + '_').replace('_', ' ')})"
    raise KeyError(f"no caption for figure {stem!r}: add one to sobolev.readme.CAPTIONS")


def figures_block(root: Path, folder: str, page: str) -> str:
    """Every committed figure of a section, embedded with its caption, linked from ``page``."""
    figures = sorted((root / "results" / folder / "figures").glob("*.png"))
    up = "../" * page.count("/")
    return "\n\n".join(f"**{caption(f.stem)}**\n\n![{f.stem}]({up}{f.relative_to(root).as_posix()})"
                         for f in figures)  # fmt: skip


def glance_block(by_section: dict[str, dict[str, str]]) -> str:
    """The landing page's table: per section, its first (headline) claim with our verdict and evidence, and how
    many of its claims reproduced, did not, or are undecided."""
    lines = ["| section | the claim (paper or question) | we find | evidence | all its claims |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for stage, parts in by_section.items():
        _, page, _ = SECTIONS[stage]
        text = "\n".join(parts.values())
        found = VERDICT.findall(text)
        title = Path(page).stem.split("-", 1)[1].replace("-", " ")
        number = Path(page).stem.split("-", 1)[0].removeprefix("s")
        number = number[0] + ("." + number[1:] if len(number) > 1 else "")
        counts = {v: sum(1 for verdict, _ in found if verdict == v) for v in ("REPRODUCED", "NOT reproduced",
                                                                            "UNDECIDED")}  # fmt: skip
        tally = f"{counts['REPRODUCED']} reproduced, {counts['NOT reproduced']} not, {counts['UNDECIDED']} undecided"
        headline = HEADLINES.get(stage)
        chosen = [(v, rest) for v, rest in found if headline and rest.startswith(headline)]
        if chosen:
            verdict, rest = chosen[0]
            cut = rest.find(": ", len(headline))  # the claim ends where its evidence starts
            claim, evidence = (rest, "") if cut < 0 else (rest[:cut], rest[cut + 2 :])
            if len(evidence) > 220:  # the first cells, whole; the page has the rest
                cut = evidence.rfind("; ", 0, 220)
                evidence = (evidence[:cut] if cut > 0 else evidence[:220]) + " …"
        elif found:
            raise ValueError(f"{stage}: no claim starts with its headline {headline!r} (readme.HEADLINES)")
        else:
            verdict, evidence = "computed", ""
            claim = "Section 3's propositions and theorems, computed (no paired claims)"
        cells = [f"[§{number} {title}]({page})", claim.replace("|", "\\|"), f"**{verdict}**",
                 evidence.replace("|", "\\|"), tally if found else "—"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paths_block() -> str:
    """:func:`sobolev.common.decision_level.paths_table` as markdown: the level and power of every decision path."""
    table = decision_level.paths_table()
    lines = ["| path | per-seed values | seeds | coverage | false decisions (no effect) | power (1 sd effect) |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for r in table.itertuples():
        lines.append(f"| {r.path} | {r.values} | {r.seeds} | {r.coverage:.3f} | {r.false_decisions:.3f} | "
                     f"{r.power_1sd:.3f} |")  # fmt: skip
    for cells in (4, 16, 64):
        raw = decision_level.family_false_loss(cells, 10, holm_adjusted=False)
        holm = decision_level.family_false_loss(cells, 10, holm_adjusted=True)
        lines.append(
            f"\n* A family of {cells} cells with no effect anywhere, 10 seeds each: some cell called a loss "
            f"in {raw:.0%} of families unadjusted, {holm:.0%} with Holm's adjustment (what the claims use)."
        )
    return "\n".join(lines)


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


FIT_RESULTS = (
    "benchmarks/results-fit-vs-jenn.csv",
    "benchmarks/results-fit-vs-jenn-b3098ac.csv",
    "benchmarks/results-fit-vs-jenn-10000.csv",
)
LIBRARY_NAMES = {
    "jenn": "JENN",
    "krg": "SMT KRG (values)",
    "gekpls": "SMT GEKPLS",
    "gpytorch": "GPyTorch (gradients)",
    "sobolev[lam=1]": "`sobolev.fit(lam=1)` (λ fixed: no selection)",
}


def fit_runs(root: Path = ROOT) -> pd.DataFrame:
    """Every committed benchmark fit (``FIT_RESULTS``), skipped rows included."""
    return pd.concat([pd.read_csv(root / p) for p in FIT_RESULTS if (root / p).exists()], ignore_index=True)


def fit_block(root: Path = ROOT) -> str:
    """The measured comparison of ``sobolev.fit`` with JENN and Gaussian processes, from the benchmark's CSVs."""
    runs = fit_runs(root)
    table = fit_comparison(runs)
    # a variant of ours without derivative labels is the same fit (there is no weight to choose): not a comparison
    table = table[~(table.other.str.startswith("sobolev[") & (table.derivatives == "without"))]
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
                  f"on {' or '.join(map(str, threads))} thread(s) (per commit below), the float32 matmul measuring "
                  f"{min(speeds):g} to {max(speeds):g} GFLOP/s per thread at each run's start "
                  f"(benchmarks/matmul_gflops.py). Paired ratio: geometric mean over seeds of ours / theirs on the "
                  f"same samples, with its t interval ({RULE})."]  # fmt: skip
    if "code" in runs:  # which sobolev.fit made which rows
        for code, rows in runs.dropna(subset=["code"]).groupby("code"):
            lines.append(f"* `sobolev.fit` at commit {code}: n = {', '.join(f'{n:g}' for n in sorted(rows.n.unique()))}"
                         f", on {'/'.join(map(str, sorted(rows.threads.astype(int).unique())))} thread(s) per library"
                         + (f"; the machine's load average during these fits: {rows.load.min():.1f} to "
                            f"{rows.load.max():.1f} (2 cores)" if "load" in rows and rows.load.notna().any() else "")
                         + ".")  # fmt: skip
    for other, rows in table.groupby("other", sort=False):
        lines.append(f"* Against {LIBRARY_NAMES.get(other, other)}: `sobolev.fit` wins {(rows.verdict == 'win').sum()} "
                     f"of {len(rows)} cells, loses {(rows.verdict == 'loss').sum()}, "
                     f"{(rows.verdict == 'undecided').sum()} undecided; its speed-up ranges "
                     f"{rows.speedup.min():.2g}× to {rows.speedup.max():.2g}×.")  # fmt: skip
    if "skipped" in runs:
        for (library, labels, why), _ in runs[runs.skipped.notna()].groupby(["library", "derivatives", "skipped"]):
            lines.append(f"* {LIBRARY_NAMES.get(library, library)} is not run {labels} derivative labels: {why}.")
    return "\n".join(lines)


def fit_guide_block(root: Path = ROOT) -> str:
    """Which tool to pick, from the benchmark: per input dimension, size and labels, the library with the lowest
    median test error and how ``sobolev.fit`` compares with the best of the others (paired ratio, verdict, and
    their time against ours). Counts of the cells where a Gaussian process is decidedly better close it."""
    runs = fit_runs(root)
    table = fit_comparison(runs)
    table = table[~table.other.str.startswith("sobolev[")]  # the guide compares libraries, not our own variants
    if table.empty:
        return "(no benchmark results committed)"
    lines = ["| D | n | derivatives | most accurate (median) | `sobolev.fit` against it: ratio [95%] | verdict | "
             "its time / ours |", "| ---: | ---: | --- | --- | ---: | --- | ---: |"]  # fmt: skip
    keys = ["dim", "n", "derivatives"]
    gp_better = []
    for key, cells in table.groupby(keys):
        by_other = cells.groupby("other").nmse_other.median()
        ours = cells.nmse_ours.median()
        best = by_other.idxmin() if by_other.min() < ours else "sobolev"
        rival = by_other.idxmin()  # the strongest other library
        rows = cells[cells.other == rival]
        wins = (rows.verdict == "win").sum()
        losses = (rows.verdict == "loss").sum()
        verdict = f"{wins} win / {losses} loss / {len(rows) - wins - losses} undecided over {len(rows)} function(s)"
        ratio = np.exp(np.log(rows.error_ratio).median())
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {LIBRARY_NAMES.get(best, '`sobolev.fit`')} | "
                     f"{ratio:.2g} (median over functions) against {LIBRARY_NAMES.get(rival, rival)} | {verdict} | "
                     f"{np.median(rows.seconds_other / rows.seconds_ours):.2g} |")  # fmt: skip
        gp = table[(table[keys] == pd.Series(key, index=keys)).all(axis=1)
                   & table.other.isin(["krg", "gekpls", "gpytorch"])]  # fmt: skip
        gp_better += [f"{r.function} (D = {r.dim}, n = {r.n}, {r.derivatives})" for r in gp.itertuples()
                      if r.verdict == "loss"]  # fmt: skip
    lines.append("")
    lines.append(f"A Gaussian process is decidedly more accurate than `sobolev.fit` in {len(gp_better)} cell(s)"
                 + (f": {', '.join(sorted(set(gp_better)))}." if gp_better else "."))  # fmt: skip
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


def render(page: str, generated: dict[str, str], name: str = "README.md") -> str:
    """``page`` with each of its ``<!-- results:NAME -->`` blocks replaced by ``generated[NAME]``; a block
    ``generated`` does not know is an error (a page never keeps a stale block)."""
    for block in re.findall(r"<!-- results:([\w-]+) -->", page):
        if block not in generated:
            raise ValueError(f"{name} has a block <!-- results:{block} --> that nothing generates")
        pattern = re.compile(rf"(<!-- results:{block} -->\n)(?:.*?\n)?(<!-- /results:{block} -->)", re.S)
        page = pattern.sub(lambda m, body=generated[block]: m.group(1) + body + "\n" + m.group(2), page)
    return page


def render_pages(root: Path = ROOT) -> dict[str, str]:
    """Every page of :data:`PAGES` as it should read, by path; every generated block is on exactly one page."""
    generated = blocks(root)
    pages = {name: (root / name).read_text() for name in PAGES}
    placed = [b for text in pages.values() for b in re.findall(r"<!-- results:([\w-]+) -->", text)]
    missing = sorted(set(generated) - set(placed))
    twice = sorted({b for b in placed if placed.count(b) > 1})
    if missing or twice:
        raise ValueError(f"blocks on no page: {missing}; blocks on several pages: {twice}")
    return {name: render(text, generated, name) for name, text in pages.items()}


def scorecard_table(root: Path = ROOT) -> pd.DataFrame:
    """The table behind the scorecard figure (:func:`sobolev.scorecard.comparisons`), as committed."""
    return scorecard.comparisons(root)


def write_scorecard(root: Path = ROOT) -> None:
    """``docs/figures/scorecard.png`` and ``scorecard.csv`` from the committed results."""
    from sobolev.common.plotting import save

    cells = scorecard_table(root)
    counts = scorecard.claim_counts({SECTIONS[s][0]: "\n".join(b.values()) for s, b in section_blocks(root).items()})
    atomic_write_text(root / f"{SCORECARD}.csv", cells.to_csv(index=False, float_format="%.6g"))
    save(scorecard.figure(cells, counts), root / f"{SCORECARD}.png")


def main() -> int:
    pages = render_pages()
    for name, text in pages.items():
        atomic_write_text(ROOT / name, text)
    write_scorecard()
    print(f"updated {len(pages)} pages and {SCORECARD}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
