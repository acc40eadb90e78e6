"""Section 5.4's report: slopes, low-confidence deviations, accuracies and the switch experiment,
each compared on paired seeds; ``metrics.json``, the saved outputs and the README block (nothing here trains)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sobolev.common.claims import Claim
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, MIN_SEEDS, UNDECIDED, WIN, all_win, median_interval, paired_difference
from sobolev.common.utils import atomic_write_json, atomic_write_text, json_safe
from sobolev.deviations.compute import METHOD_ORDER, Result, main_runs, switch_width
from sobolev.deviations.plots import figures


def _paired(runs: pd.DataFrame, width: int, split: str, column: str, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    """``column`` of methods ``a`` and ``b`` on the same seeds (students from the start)."""
    sub = main_runs(runs)
    sub = sub[(sub.width == width) & (sub.split == split)].pivot(index="seed", columns="method", values=column)
    return sub[a].to_numpy(), sub[b].to_numpy()


# (name, column, transform, lower is better for Sobolev): each Sobolev − regular comparison's quantities.
QUANTITIES = (
    ("|log slope|", "slope", lambda v: np.abs(np.log(v)), True),
    ("|low deviation|", "low_deviation", np.abs, True),
    ("accuracy", "accuracy", lambda v: v, False),
    ("agreement", "agreement", lambda v: v, False),
)


def _difference(a: np.ndarray, b: np.ndarray, lower_is_better: bool) -> dict:
    """The paired mean difference ``a − b`` over seeds, its t interval, sign-flip p and verdict, as table columns."""
    d = paired_difference(a, b, lower_is_better=lower_is_better)
    return {
        "difference": d.estimate,
        "low": d.low,
        "high": d.high,
        "seeds": d.n,
        "verdict": d.verdict,
        **d.evidence(),
    }


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per width, method and split (students from the start): the median over seeds, with its 95%
    bootstrap interval, of the slope, the low-confidence deviation, the accuracy and the agreement."""
    rows = []
    for (width, method, split), g in main_runs(runs).groupby(["width", "method", "split"]):
        row = {"width": width, "method": method, "split": split, "seeds": len(g)}
        for col in ("slope", "low_deviation", "accuracy", "agreement", "kl"):
            low, high = median_interval(g[col].to_numpy(), 10_000)
            row |= {col: float(g[col].median()), f"{col}_low": low, f"{col}_high": high}
        rows.append(row)
    out = pd.DataFrame(rows)
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    return out.sort_values(
        ["width", "split", "method"],
        key=lambda s: s.map(order) if s.name == "method" else s,
        ascending=[False, False, True],
    ).reset_index(drop=True)


def comparisons(runs: pd.DataFrame) -> pd.DataFrame:
    """Sobolev against regular distillation per width and split, paired over seeds (mean difference
    Sobolev − regular, 95% interval): ``|log slope|`` (distance from a faithful copy; below 0 Sobolev
    exaggerates less), ``|low deviation|`` (the least-confident bin), test ``accuracy`` and ``agreement``
    (above 0 Sobolev better); and regular distillation − labels in accuracy (distillation's gain)."""
    rows = []
    for width in sorted(runs.width.unique(), reverse=True):
        for split in ("train", "test"):
            where = {"width": width, "split": split}
            for name, col, transform, lower_better in QUANTITIES:
                a, b = _paired(runs, width, split, col, "sobolev", "regular")
                rows.append(
                    {
                        **where,
                        "quantity": name,
                        "compare": "sobolev − regular",
                        **_difference(transform(a), transform(b), lower_better),
                    }
                )
            for method in ("regular", "sobolev"):
                a, b = _paired(runs, width, split, "accuracy", method, "labels")
                rows.append(
                    {
                        **where,
                        "quantity": "accuracy",
                        "compare": f"{method} − labels",
                        **_difference(a, b, False),
                    }
                )
    return pd.DataFrame(rows)


def exaggeration(runs: pd.DataFrame, keys: tuple[str, ...] = ("width", "method", "split")) -> pd.DataFrame:
    """Per cell of ``keys`` (MNIST-1D: width, method and split; Atari: game, fraction, method and split): the mean
    slope over seeds with its t interval, against 1 (``exaggerates``: the interval lies above 1; ``undecided``: it
    contains 1; ``softens``: below), the t-test p-value (``p_t``, for a family's Holm adjustment)."""
    rows = []
    for key, g in runs.groupby(list(keys)):
        d = paired_difference(g.slope.to_numpy(), np.ones(len(g)))
        word = {WIN: "exaggerates", LOSS: "softens"}.get(d.verdict, "undecided")
        rows.append({**dict(zip(keys, key, strict=True)), "slope": 1 + d.estimate, "low": 1 + d.low,
                     "high": 1 + d.high, "seeds": d.n, "verdict": word, "p_t": d.t_p_value})  # fmt: skip
    return pd.DataFrame(rows)


def exaggerates(rows: pd.DataFrame) -> bool | None:
    """A family of slope cells (:func:`exaggeration`): holds when every cell exaggerates, fails when a cell softens
    after Holm's adjustment over the family, undecided otherwise."""
    verdicts = rows.verdict.map({"exaggerates": WIN, "softens": LOSS}).fillna(UNDECIDED)
    return all_win(list(verdicts), list(rows.p_t))


def switch_table(runs: pd.DataFrame, n_boot: int = 10_000) -> pd.DataFrame:
    """The switch experiment (test accuracy, at :func:`switch_width`): per loss and switch point, the mean
    paired gain over label training and the share of distillation-from-the-start's gain it recovers
    (ratio of mean gains, with a descriptive percentile-bootstrap band over seeds). ``over_half``: the verdict
    of "recovers over half", decided by the paired t interval of gain − ½ × distillation-from-the-start's gain
    (a win: above 0)."""
    test = runs[(runs.split == "test") & (runs.width == switch_width(runs))]
    labels = test[test.method == "labels"].set_index("seed").accuracy
    rows = []
    for method in ("regular", "sobolev"):
        mine = test[test.method == method]
        start = mine[mine.switch_at == 0].set_index("seed").accuracy
        for at, g in mine.groupby("switch_at"):
            acc = g.set_index("seed").accuracy.reindex(labels.index)
            gain = paired_difference(acc.to_numpy(), labels.to_numpy())
            full = (start - labels).reindex(labels.index).to_numpy()
            got = (acc - labels).to_numpy()
            both = np.stack([got, full], 1)
            idx = np.random.default_rng(0).integers(0, len(both), size=(n_boot, len(both)))
            with np.errstate(divide="ignore", invalid="ignore"):
                shares = both[idx, 0].mean(1) / both[idx, 1].mean(1)
            share = float(got.mean() / full.mean()) if full.mean() != 0 else float("nan")
            over_half = paired_difference(got, 0.5 * full)
            low, high = np.nanpercentile(shares, [2.5, 97.5]) if np.isfinite(shares).any() else (np.nan, np.nan)
            rows.append(
                {
                    "width": switch_width(runs),
                    "method": method,
                    "switch_at": float(at),
                    "accuracy": float(acc.median()),
                    "gain": gain.estimate,
                    "gain_low": gain.low,
                    "gain_high": gain.high,
                    "share": share,
                    "share_low": float(low),
                    "share_high": float(high),
                    "over_half": over_half.verdict,
                    "seeds": gain.n,
                }
            )
    return pd.DataFrame(rows)


def mnist_claims(summary: pd.DataFrame, exag: pd.DataFrame, comp: pd.DataFrame, switch: pd.DataFrame) -> list[Claim]:
    """The verdicts, computed from the tables above."""

    def cells(frame: pd.DataFrame, **match) -> pd.DataFrame:
        for k, v in match.items():
            frame = frame[frame[k] == v]
        return frame

    def say(frame: pd.DataFrame) -> str:
        return "; ".join(
            f"width {r.width} {r.split}: {r.difference:+.3g} [{r.low:+.3g}, {r.high:+.3g}]" for r in frame.itertuples()
        )

    def verdict(frame: pd.DataFrame, good: str) -> bool | None:
        v = list(frame.verdict)
        return True if all(x == good for x in v) else (False if any(x not in (good, UNDECIDED) for x in v) else None)

    out = []
    reg = cells(exag, method="regular")
    out.append(
        Claim(
            "Regular distillation: the student exaggerates the teacher's confidence levels (slope of student on "
            "teacher logit above 1; Nagarajan et al.)",
            exaggerates(reg),
            "; ".join(
                f"width {r.width} {r.split}: slope {r.slope:.3g} [{r.low:.3g}, {r.high:.3g}]" for r in reg.itertuples()
            ),
        )
    )
    for quantity, text in (
        (
            "|log slope|",
            "Sobolev students' confidence is closer to a faithful copy of the teacher's than regular "
            "students' (|log slope|: the distance from slope 1, whether they exaggerate or soften; "
            "paired)",
        ),
        (
            "|low deviation|",
            "Sobolev distillation deviates less on the teacher's least-confident inputs "
            "(|student − teacher logit| in the lowest-confidence bin, paired)",
        ),
    ):
        for split in ("train", "test"):
            frame = cells(comp, quantity=quantity, compare="sobolev − regular", split=split)
            out.append(Claim(f"{text}, {split} inputs", verdict(frame, WIN), say(frame)))
    for quantity in ("accuracy", "agreement"):
        frame = cells(comp, quantity=quantity, compare="sobolev − regular", split="test")
        out.append(
            Claim(
                f"Deviating less pays: Sobolev students' test {quantity} is higher than regular students'",
                verdict(frame, WIN),
                say(frame),
            )
        )
    for method in ("regular", "sobolev"):
        frame = cells(comp, quantity="accuracy", compare=f"{method} − labels", split="test")
        out.append(
            Claim(
                f"{method} distillation beats training on the labels (test accuracy, paired)",
                verdict(frame, WIN),
                say(frame),
            )
        )
        mine = cells(switch, method=method)
        width = int(mine.width.iloc[0]) if len(mine) else None
        gain = cells(frame, width=width)
        has_gain = len(gain) and (gain.verdict == WIN).all()
        late = mine[mine.switch_at == mine.switch_at.max()]
        late_row = late.iloc[0] if len(late) else None
        holds = None
        if has_gain and late_row is not None:
            holds = {WIN: True, LOSS: False}.get(late_row.over_half)
        detail = "; ".join(
            f"switch at {r.switch_at:g}: gain {r.gain:+.3g} [{r.gain_low:+.3g}, {r.gain_high:+.3g}], "
            f"share {r.share:.2f} [{r.share_low:.2f}, {r.share_high:.2f}], over half: {r.over_half}"
            for r in mine.itertuples()
        )
        if not has_gain:
            detail += " (distillation from the start has no decided gain over the labels: nothing to recover)"
        out.append(
            Claim(
                f"{method}: switching from labels to distillation late recovers most (over half) of "
                f"distillation's gain (students of width {width})",
                holds,
                detail,
            )
        )
    if len(summary) and int(summary.seeds.min()) < MIN_SEEDS:
        note = f" (fewer than {MIN_SEEDS} seeds: not decided)"
        out = [Claim(c.text, None, c.evidence + note) for c in out]
    return out


def metrics_from(
    teacher: dict,
    summary: pd.DataFrame,
    exag: pd.DataFrame,
    comp: pd.DataFrame,
    switch: pd.DataFrame,
    bins: pd.DataFrame,
    verdicts: list[Claim],
    settings: dict,
    atari: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None,
) -> dict:
    """What the stage writes to ``metrics.json`` (valid JSON: no NaN); ``atari``: Section 4.2's students'
    (:func:`atari_table`, :func:`exaggeration`, :func:`atari_comparisons`) when analysed."""
    low = bins[bins.bin == 0].groupby(["width", "method", "split"])[["teacher_p", "student_p", "deviation", "lower"]]

    return json_safe(
        {
            "teacher": teacher,
            "settings": settings,
            "summary": summary.to_dict("records"),
            "exaggeration": exag.to_dict("records"),
            "comparisons": comp.to_dict("records"),
            "switch": switch.to_dict("records"),
            "lowest_bin": low.median().reset_index().to_dict("records"),
            "claims": [c.to_dict() for c in verdicts],
            "atari": None
            if atari is None
            else {
                "table": atari[0].to_dict("records"),
                "exaggeration": atari[1].to_dict("records"),
                "comparisons": atari[2].to_dict("records"),
            },
        }
    )


def readme_block(m: dict) -> str:
    """Markdown from ``results/deviations/metrics.json``."""
    t = m["teacher"]
    lines = [
        f"Teacher: test accuracy {t['test_accuracy']:.3f} (train {t['train_accuracy']:.3f}), "
        f"{t['train_signals']} training and {t['test_signals']} test signals.",
        "",
        "| width | loss | split | slope [95% CI] | lowest-bin student − teacher logit | accuracy | agreement |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in m["summary"]:
        lines.append(
            f"| {r['width']} | {r['method']} | {r['split']} | {r['slope']:.3g} [{r['slope_low']:.3g}, "
            f"{r['slope_high']:.3g}] | {r['low_deviation']:+.3g} | {r['accuracy']:.3f} | {r['agreement']:.3f} |"
        )
    lines += [
        "",
        f"Switch experiment (test accuracy, students of width {m['switch'][0]['width'] if m['switch'] else '-'}): "
        "gain over labels and share of distillation-from-the-start's gain recovered, 95% intervals:",
        "",
        "| loss | switch at | accuracy | gain | share recovered |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in m["switch"]:
        share = "n/a" if r["share"] is None else f"{r['share']:.2f} [{r['share_low']:.2f}, {r['share_high']:.2f}]"
        lines.append(
            f"| {r['method']} | {r['switch_at']:g} | {r['accuracy']:.3f} | {r['gain']:+.3f} "
            f"[{r['gain_low']:+.3f}, {r['gain_high']:+.3f}] | {share} |"
        )
    if m.get("atari"):
        lines += [
            "",
            "Section 4.2's Atari students against their (recorded) teacher, median over seeds:",
            "",
            "| game | fraction | loss | split | slope | lowest-bin student − teacher logit | agreement | seeds |",
            "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['game']} | {r['fraction']:g} | {r['method']} | {r['split']} | {r['slope']:.3g} | "
            f"{r['low_deviation']:+.3g} | {r['agreement']:.3f} | {r['seeds']} |"
            for r in m["atari"]["table"]
        ]
    lines += ["", "Verdicts:", ""] + [f"* {Claim.from_dict(c)}" for c in m["claims"]]
    return "\n".join(lines)


ATARI_KEYS = ["game", "fraction", "split"]


def atari_table(atari: pd.DataFrame) -> pd.DataFrame:
    """Section 4.2's students per game, fraction of states, method and split: the median over seeds of
    the slope, the lowest-bin deviation, the agreement with the teacher's action and the KL."""
    cols = ["slope", "low_deviation", "agreement", "kl"]
    out = atari.groupby(["game", "fraction", "method", "split"])[cols].median()
    return out.join(atari.groupby(["game", "fraction", "method", "split"]).size().rename("seeds")).reset_index()


ATARI_ARMS = ("sobolev", "balanced")  # Section 4.2's Sobolev arms (the paper's weighting, the balanced one)


def atari_comparisons(atari: pd.DataFrame) -> pd.DataFrame:
    """Each Sobolev arm − regular on the same seeds per game, fraction and split, with 95% intervals:
    ``|log slope|`` (distance from a faithful copy), ``|low deviation|`` (below 0: the arm deviates less) and the
    agreement (above 0: the arm agrees more); decided only with at least :data:`MIN_SEEDS` seeds."""
    rows = []
    for key, g in atari.groupby(ATARI_KEYS):
        pair = g.pivot(index="seed", columns="method")
        for arm in ATARI_ARMS:
            if not {"regular", arm} <= set(g.method):
                continue
            for name, col, transform, lower_better in QUANTITIES:
                if col in g:  # the Atari students have no labels: no accuracy
                    a, b = pair[col][arm].to_numpy(), pair[col]["regular"].to_numpy()
                    rows.append({**dict(zip(ATARI_KEYS, key, strict=True)), "arm": arm, "quantity": name,
                                 **_difference(transform(a), transform(b), lower_better)})  # fmt: skip
    return pd.DataFrame(rows)


def atari_claims(exag: pd.DataFrame, comp: pd.DataFrame) -> list[Claim]:
    """Section 4.2's students, decided as the MNIST-1D students are: does regular distillation exaggerate (the slope's
    t interval above 1 in every game, fraction and split), and does each Sobolev arm exaggerate and deviate less
    (paired differences, Holm over the family of cells for a failure)?"""
    reg = exag[exag.method == "regular"]
    out = [Claim(
        "Atari (Section 4.2's students): regular distillation exaggerates the teacher's confidence (slope's t interval "
        "above 1 in every game, fraction and split)",
        exaggerates(reg),
        "; ".join(f"{r.game} {r.fraction:g} {r.split}: slope {r.slope:.3g} [{r.low:.3g}, {r.high:.3g}] ({r.seeds} "
                  "seeds)" for r in reg.itertuples()),
    )]  # fmt: skip
    texts = (
        ("|log slope|", "come closer to a faithful copy of the teacher's confidence (|log slope|)"),
        ("|low deviation|", "deviate less on the least-confident states"),
    )
    for arm in ATARI_ARMS:
        mine = comp[comp.arm == arm] if len(comp) else comp
        if not len(mine):
            continue
        name = "Sobolev students" if arm == "sobolev" else "balanced Sobolev students (α tuned)"
        for quantity, text in texts:
            frame = mine[mine.quantity == quantity]
            out.append(Claim(
                f"Atari: {name} {text} than regular students (paired, arm − regular)",
                all_win(list(frame.verdict), list(frame.p_t)) if len(frame) else None,
                "; ".join(f"{r.game} {r.fraction:g} {r.split}: {r.difference:+.3g} [{r.low:+.3g}, {r.high:+.3g}]"
                          for r in frame.itertuples()),
            ))  # fmt: skip
    return out


SETTINGS = ("samples", "train_fraction", "teacher_width", "student_widths", "steps", "lr", "sobolev_weight", "seeds",
            "switch_width", "switch_at", "bins", "atari_games")  # fmt: skip


def atari(result: Result) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """Section 4.2's students' table, slopes against 1 and paired comparisons (``None`` when none were analysed)."""
    if not len(result.atari_runs):
        return None
    runs = result.atari_runs
    return atari_table(runs), exaggeration(runs, ("game", "fraction", "method", "split")), atari_comparisons(runs)


def claims(result: Result) -> list[Claim]:
    """The section's verdicts: the MNIST-1D students' (:func:`mnist_claims`), then the Atari students'."""
    runs, both = result.runs, atari(result)
    found = mnist_claims(summary_table(runs), exaggeration(main_runs(runs)), comparisons(runs), switch_table(runs))
    return found + (atari_claims(both[1], both[2]) if both else [])


def metrics(result: Result) -> dict:
    """What the stage writes to ``metrics.json`` (:func:`metrics_from`)."""
    runs, cfg = result.runs, result.cfg
    return metrics_from(
        result.teacher, summary_table(runs), exaggeration(main_runs(runs)), comparisons(runs), switch_table(runs),
        result.bins,
        claims(result), {k: getattr(cfg, k) for k in SETTINGS}, atari(result),
    )  # fmt: skip


def save(result: Result, output_dir: str | Path | None) -> None:
    """Write the stage's outputs (:data:`~sobolev.deviations.config.OUTPUTS`) into ``output_dir``:
    ``metrics.json``, ``runs.csv``, ``atari_runs.csv`` (Section 4.2's students, one row per student and split: the
    per-seed values behind every Atari comparison), ``bins.csv`` and ``atari_bins.csv`` (the binned deviations
    behind the figures) and every figure, checked, as
    ``figures/<name>.png`` (``None``: check the figures only)."""
    if output_dir is None:
        return save_all(figures(result), None)
    out = Path(output_dir)
    atomic_write_json(out / "metrics.json", metrics(result))
    atomic_write_text(out / "runs.csv", result.runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "atari_runs.csv", result.atari_runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "bins.csv", result.bins.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "atari_bins.csv", result.atari_bins.to_csv(index=False, float_format="%.6g"))
    save_all(figures(result), out)


def readme_blocks(metrics: dict) -> dict[str, str]:
    """The README blocks of the section, by name."""
    return {"deviations": readme_block(metrics)}
