"""Every verdict in one picture, from the committed results (no number typed in by hand).

``python -m sobolev.readme`` writes ``docs/figures/scorecard.png`` and the table behind it,
``docs/figures/scorecard.csv``; ``tests/pipeline/test_pages.py`` fails when either differs from what the
committed metrics give. Left: each section's claims by verdict. Right: every paired comparison of a Sobolev
arm against its baseline that the sections decide on a ratio of test errors, as a forest plot: the geometric
mean over paired seeds with its 95% t interval, coloured by verdict (below 1: the Sobolev arm is better).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sobolev.common.install import settled
from sobolev.common.paths import ROOT
from sobolev.common.plotting import finish, style

SECTIONS = {  # stage folder under results/ -> how the scorecard names the section
    "theory": "§3 theory", "regression": "§4.1 regression", "distillation/report": "§4.2 Atari distillation",
    "synthetic_gradients": "§4.3 synthetic gradients", "differential": "§5.1 differential ML",
    "trust": "§5.2 Fromage / relative trust", "features": "§5.3 feature updates",
    "deviations": "§5.4 student-teacher deviations", "inexact": "§5.5 inexact derivatives",
}  # fmt: skip
VERDICT_COLORS = {"win": "#029E73", "loss": "#D55E00", "undecided": "#949494"}  # verdicts, not methods
CLAIM_COLORS = {"REPRODUCED": "#029E73", "NOT reproduced": "#D55E00", "UNDECIDED": "#949494"}
COLUMNS = ["section", "comparison", "cell", "estimate", "low", "high", "verdict"]


def _metrics(root: Path, folder: str) -> dict:
    return json.loads((settled(root / "results" / folder) / "metrics.json").read_text())


def comparisons(root: Path = ROOT) -> pd.DataFrame:
    """Every Sobolev-against-baseline comparison decided on a paired ratio of test errors, one row per cell:
    ``section``, ``comparison`` (which arm against which), ``cell`` (function, size, ...), ``estimate``,
    ``low``, ``high`` (the 95% t interval) and ``verdict`` (win: the Sobolev arm's error is lower)."""
    rows = []

    def add(section: str, comparison: str, cell: str, d: dict, estimate: str = "ratio", low: str = "low",
            high: str = "high") -> None:  # fmt: skip
        if d.get(estimate) is not None and d.get("verdict") is not None:
            rows.append([SECTIONS[section], comparison, cell, d[estimate], d[low], d[high], d["verdict"]])

    reg = _metrics(root, "regression")
    for arm in ("sobolev-raw", "balanced-standard"):
        for fn, sizes in reg.get(arm, {}).items():
            if fn not in ("baseline", "decided", "claims") and isinstance(sizes, dict):
                for n, d in sizes.items():
                    add("regression", f"{arm} / {reg[arm]['baseline']}", f"{fn} {n}", d, "ratio", "ratio_low",
                        "ratio_high")  # fmt: skip
    for d in _metrics(root, "distillation/report").get("comparisons", []):
        if d["quantity"] == "test KL":
            add("distillation/report", f"{d['arm']} / regular, test KL", f"{d['game']} {d['fraction']:g}", d,
                "estimate")  # fmt: skip
    for key, d in _metrics(root, "trust").get("sobolev_over_regular", {}).items():
        optimiser, cell = key.split("/", 1)
        add("trust", f"sobolev / regular under {optimiser}", cell, d)
    for key, d in _metrics(root, "features").get("curve", {}).items():
        fn, k = key.split("/")
        if k == "K1":  # ordinary training; the other K are the section's own question
            add("features", "sobolev / regular (K = 1)", fn, d)
    for d in _metrics(root, "inexact").get("budget", {}).get("cells", []):
        if d["method"] == "exact":
            add("inexact", "exact gradients / values only", f"{d['function']} m={d['budget']}", d)
    return pd.DataFrame(rows, columns=COLUMNS)


def claim_counts(blocks: dict[str, str]) -> pd.DataFrame:
    """Per section, how many claims each verdict has, counted from the generated README blocks (``blocks``:
    :func:`sobolev.readme.section_blocks`'s ``{section folder: markdown}``)."""
    rows = []
    for folder, text in blocks.items():
        for verdict in CLAIM_COLORS:
            rows.append({"section": SECTIONS[folder], "verdict": verdict, "claims": text.count(f"[{verdict}]")})
    return pd.DataFrame(rows)


def figure(cells: pd.DataFrame, counts: pd.DataFrame) -> plt.Figure:
    """The scorecard: claims by verdict per section (left) and the forest plot of :func:`comparisons` (right)."""
    style()
    sections = list(SECTIONS.values())
    groups = [s for s in sections if s in set(cells.section)]
    height = max(6.0, 0.065 * len(cells) + 0.5 * len(groups) + 1.5)
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, height), gridspec_kw={"width_ratios": [1, 2]})
    table = counts.pivot_table(index="section", columns="verdict", values="claims", aggfunc="sum").reindex(sections)
    start = np.zeros(len(sections))
    for verdict, color in CLAIM_COLORS.items():
        values = table[verdict].fillna(0).to_numpy() if verdict in table else np.zeros(len(sections))
        left.barh(range(len(sections)), values, left=start, color=color, label=verdict)
        start += values
    for k in np.flatnonzero(start == 0):  # a section whose findings are computed, not decided claims
        left.text(0.2, k, "computed findings, no paired claims", va="center", fontsize=8, color="0.3")
    left.set_yticks(range(len(sections)), sections)
    left.invert_yaxis()
    left.set(xlabel="claims checked", ylabel="section", title="Claims by verdict")
    left.legend(loc="lower right", fontsize=9)
    left.set_xlim(0, max(1.0, start.max()) * 1.45)  # room for the legend beside the shorter bars
    y, ticks = 0.0, []
    for section in groups:
        part = cells[cells.section == section].sort_values("estimate")
        ys = y + np.arange(len(part))
        for verdict, color in VERDICT_COLORS.items():
            mine = (part.verdict == verdict).to_numpy()
            right.hlines(ys[mine], part.low[mine], part.high[mine], color=color, lw=1.2)
            right.scatter(part.estimate[mine], ys[mine], s=10, color=color, zorder=3)
        ticks.append((y + (len(part) - 1) / 2, f"{section}\n({len(part)} cells)"))
        y += len(part) + 4
        right.axhline(y - 2, color="0.85", lw=0.8)
    right.axvline(1, color="black", lw=0.8)
    right.set_xscale("log")
    right.set_yticks([t for t, _ in ticks], [label for _, label in ticks])
    right.set_ylim(y - 2, -2)
    right.set(xlabel="test error, Sobolev arm / baseline (log scale; 95% t interval over paired seeds)",
              ylabel="section (cells sorted by estimate)",
              title="Every paired comparison decided on a ratio of test errors")  # fmt: skip
    for verdict, color in VERDICT_COLORS.items():
        right.scatter([], [], s=10, color=color, label=f"{verdict} ({int((cells.verdict == verdict).sum())} cells)")
    handles, labels = right.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False, title="cell verdict")
    fig.suptitle("Scorecard: what reproduced, what did not, and by how much")
    fig.tight_layout(rect=(0, 0.7 / height, 1, 1))
    return finish(fig)
