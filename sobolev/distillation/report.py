"""Section 4.2's results from the chain's outputs: tables, Figure 4, the paper's claims decided.

Works on :class:`~sobolev.distillation.chain.Result` (``<results>/<game>/{teacher.json, summary.json,
runs.csv, curves.csv}`` written by :mod:`sobolev.distillation.chain`); nothing here trains. Every
comparison pairs the two methods within a seed (same initial student, same batches) and is decided by
a paired t interval over seeds (:mod:`sobolev.common.stats`, decided on at least 5 seeds): a claim
holds only when every cell it speaks of is a win.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import save_all
from sobolev.common.stats import (
    UNDECIDED,
    WIN,
    Interval,
    all_win,
    median_interval,
    paired_difference,
    paired_effect_difference,
    paired_ratio,
    paired_ratio_censored,
    welch_interval,
)
from sobolev.common.utils import atomic_write_json
from sobolev.distillation.chain import RUN_KEYS, Result, at_lr, chosen_curves
from sobolev.distillation.plots import figures

KEYS = ["game", "fraction", "method", "seed"]
# The Sobolev arms, each compared with regular distillation: the paper's weighting (α on the raw term) and
# the balanced one (α on the term divided by the teacher's gradient scale, tuned). Their claims' prefixes.
ARMS = {"sobolev": "", "balanced": "with the balanced weight (α tuned): "}
N_BOOT = 10_000
# "Learns faster": iterations until the validation KL is within this factor of regular's best.
FAST_WITHIN = 1.1


# --- the teachers ---------------------------------------------------------------------------------


def teacher_table(teachers: pd.DataFrame) -> pd.DataFrame:
    """Each teacher's mean raw score beside random play (measured here) and the RL Zoo's agents (10M
    steps), and how peaked its policy is (mean entropy / log|A|, at T = 1 and as distilled)."""
    cols = ["game", "n_actions", "episodes_finished", "mean_return", "std_return", "random_mean_return",
            "rl_zoo_a2c_return", "rl_zoo_ppo_return", "temperature", "entropy_ratio_at_temperature_1",
            "entropy_ratio_mean", "max_prob_mean", "peaked"]  # fmt: skip
    return teachers[cols].set_index("game")


def beats_chance(teacher: pd.Series) -> Interval:
    """Teacher's mean game score minus random play's, with a Welch t interval (independent games on both sides)."""
    played, chance = np.asarray(teacher["returns"], float), np.asarray(teacher["random_returns"], float)
    return welch_interval([played, chance], [1.0, -1.0], lower_is_better=False)


def teacher_claims(teachers: pd.DataFrame) -> list[Claim]:
    """Is each teacher competent (better than chance, decided) and peaked at T = 1 (mean entropy ratio ≤ 0.7)?"""
    rows = [(t["game"], beats_chance(t), t["entropy_ratio_at_temperature_1"]) for _, t in teachers.iterrows()]
    peaked = [r <= 0.7 for _, _, r in rows]
    return [
        Claim(
            "every teacher plays clearly better than chance (mean score − random play's, 95% interval above 0)",
            all_win([iv.verdict for _, iv, _ in rows]),
            "; ".join(f"{g}: {iv}" for g, iv, _ in rows),
        ),
        Claim(
            "every teacher is peaked at T = 1 (mean entropy at most 0.7 log|A|)",
            all(peaked),
            "; ".join(f"{g}: {r:.2f}" for g, _, r in rows),
        ),
    ]


def chosen_table(summaries: dict) -> pd.DataFrame:
    """The learning rate and α each method got, the weight that α puts on the raw Sobolev term (the balanced
    arm's α over the game's teacher-gradient scale), and how many tuning runs each had."""
    rows = []
    for g, s in summaries.items():
        for m, hp in s["chosen"].items():
            weight = hp["alpha"] / s["balance_scale"] if m == "balanced" else hp["alpha"]
            rows.append({"game": g, "method": m, "lr": hp["lr"], "alpha": hp["alpha"], "raw weight": weight,
                         "tuning runs": s["budget_runs"][m]})  # fmt: skip
    return pd.DataFrame(rows).set_index(["game", "method"])


# --- runs at their selected checkpoints -----------------------------------------------------------


def with_gap(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus ``kl_gap``: test − train KL at the selected checkpoint."""
    out = runs.copy()
    out["kl_gap"] = out.test_kl - out.train_kl
    return out


def overfitting(curves: pd.DataFrame) -> pd.DataFrame:
    """Per run: the lowest test KL it reached, where, its test KL at its last evaluation (``patience``
    evaluations after its best validation KL) and the rise above the lowest (fraction)."""
    test = curves[curves.set == "test"]
    keys = ["lr", *KEYS]
    rows = []
    for key, run in test.groupby(keys):
        run = run.sort_values("iteration")
        low = run.loc[run.kl.idxmin()]
        rows.append({**dict(zip(keys, key, strict=True)), "min_test_kl": low.kl, "min_at": low.iteration,
                     "end_test_kl": run.kl.iloc[-1], "rise": run.kl.iloc[-1] / low.kl - 1})  # fmt: skip
    return pd.DataFrame(rows)


def iterations_to(curves: pd.DataFrame, by_lr: bool = False, arm: str = "sobolev") -> pd.DataFrame:
    """Per seed pair: iterations until each method's validation KL (regular's and ``arm``'s) is within
    ``FAST_WITHIN`` × regular's best; a run that never gets there counts as infinitely slow (``inf``: it loses
    that pair, see :func:`iterations_ratio`). Paired by game, fraction and seed (and lr with ``by_lr``: the
    control). Columns: the keys, ``regular`` and ``arm``."""
    val = curves[(curves.set == "val") & curves.method.isin(["regular", arm])]
    keys = ["game", "fraction", "seed", *(["lr"] if by_lr else [])]
    rows = []
    for key, pair in val.groupby(keys):
        reg = pair[pair.method == "regular"]
        if reg.empty or set(pair.method) != {"regular", arm}:
            continue
        target = FAST_WITHIN * reg.kl.min()
        row = dict(zip(keys, key, strict=True))
        for method, run in pair.groupby("method"):
            hit = run[run.kl <= target].iteration
            row[method] = float(hit.min()) if len(hit) else math.inf
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "regular", arm])


def iterations_ratio(sobolev: np.ndarray, regular: np.ndarray) -> Interval:
    """Iterations to the target, Sobolev / regular, paired by seed. Regular always reaches its own threshold; a
    Sobolev run that never does (``inf``) was slower in its pair: a censored value, which
    :func:`~sobolev.common.stats.paired_ratio_censored` ranks as the worst outcome (distribution-free median
    interval; at 5 seeds with any censored pair nothing can be decided at 95%). With every pair finite it is the
    paired t interval of :func:`~sobolev.common.stats.paired_ratio`."""
    return paired_ratio_censored(np.asarray(sobolev, float), np.asarray(regular, float))


def selected_table(runs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Final runs at their selected checkpoints: median and 95% interval over seeds of test KL, test action
    error, train KL and the test − train gap; the median selected and last iteration; the share that stopped
    early (``1``: every seed's validation KL stopped improving before ``max_iterations``)."""
    final = with_gap(runs[runs.chosen])
    rows = []
    for (game, fraction, method), cell in final.groupby(["game", "fraction", "method"]):
        row = {"game": game, "fraction": fraction, "method": method, "seeds": len(cell)}
        for col in ("test_kl", "test_action_error", "train_kl", "kl_gap"):
            low, high = median_interval(cell[col].to_numpy(), N_BOOT, seed=seed)
            row |= {col: float(cell[col].median()), f"{col}_low": low, f"{col}_high": high}
        row |= {"best_iteration": float(cell.best_iteration.median()), "stopped_at": float(cell.stopped_at.median()),
                "stopped_early": float(cell.stopped_early.astype(bool).mean())}  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows).set_index(["game", "fraction", "method"])


def _pair(df: pd.DataFrame, col: str, by: list[str], arm: str = "sobolev") -> dict:
    """``{cell: (arm's values, regular's values)}`` over seeds present for both methods, per ``by`` cell."""
    out = {}
    for cell, part in df.groupby(by):
        wide = part.pivot_table(index="seed", columns="method", values=col)
        if {"regular", arm} <= set(wide.columns):
            wide = wide[["regular", arm]].dropna()
            out[cell] = (wide[arm].to_numpy(), wide["regular"].to_numpy())
    return out


def arms(runs: pd.DataFrame) -> list[str]:
    """The Sobolev arms (:data:`ARMS`) that ``runs`` holds, in :data:`ARMS`' order."""
    return [arm for arm in ARMS if arm in set(runs.method)]


def comparisons(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Each Sobolev arm against regular per game and fraction, paired by seed, at the selected checkpoints
    (column ``arm``; ``sobolev``: the arm's median, ``regular``: regular's):

    * ``test KL``: ratio arm / regular (below 1: the arm's students closer to the teacher);
    * ``test action error``: difference arm − regular;
    * ``test − train KL gap``: difference (below 0: the arm generalises better at its own fit);
    * ``test KL rise after its best``: difference of the rises (below 0: the arm overfits less);
    * ``iterations to 1.1 × regular's best val KL``: ratio (below 1: the arm learns faster).
    """
    final = with_gap(runs[runs.chosen])
    chosen = chosen_curves(curves, runs)
    rise = overfitting(chosen)
    rows = []
    for arm in arms(runs):
        fast = iterations_to(chosen, arm=arm)
        fast_long = fast.melt(["game", "fraction", "seed"], ["regular", arm], "method", "iterations")
        specs = [
            ("test KL", final, "test_kl", paired_ratio, {}),
            ("test action error", final, "test_action_error", paired_difference, {"lower_is_better": True}),
            ("test − train KL gap", final, "kl_gap", paired_difference, {"lower_is_better": True}),
            ("test KL rise after its best", rise, "rise", paired_difference, {"lower_is_better": True}),
            ("iterations to 1.1 × regular's best val KL", fast_long, "iterations", iterations_ratio, {}),
        ]
        for name, df, col, fn, kw in specs:
            for (game, fraction), (sob, reg) in _pair(df, col, ["game", "fraction"], arm).items():
                iv = fn(sob, reg, **kw)
                rows.append({"arm": arm, "quantity": name, "game": game, "fraction": fraction, "seeds": iv.n,
                             "sobolev": float(np.median(sob)), "regular": float(np.median(reg)),
                             "estimate": iv.estimate, "low": iv.low, "high": iv.high, "null": iv.null,
                             "verdict": iv.verdict, "never": int(np.isinf(sob).sum()), **iv.evidence()})  # fmt: skip
    return pd.DataFrame(rows)


def control(runs: pd.DataFrame, curves: pd.DataFrame, summaries: dict) -> pd.DataFrame:
    """The equal-learning-rate control of the paper's arm: at the tuning fraction the grid ran regular and Sobolev
    (α as the paper weighs it) at every learning rate of the grid for every seed; at each one's chosen lr, the
    test-KL ratio and the iterations-to-threshold ratio Sobolev / regular, paired by seed. One row per chosen lr
    (one row when both chose the same). No rows for a game whose grid has one point per method: there the control
    would be the main comparison's numbers again."""
    rows = []
    for game, s in summaries.items():
        grid = runs[(runs.game == game) & (runs.role == "grid") & runs.method.isin(["regular", "sobolev"])]
        if (grid.groupby("method")[["lr", "alpha"]].nunique().max(axis=1) <= 1).all():
            continue
        cur = curves[(curves.game == game) & (curves.role == "grid")]
        alpha = s["chosen"]["sobolev"]["alpha"]
        owners = {}
        for method in ("regular", "sobolev"):  # the paper's arm: the balanced one has its own α scale
            owners.setdefault(s["chosen"][method]["lr"], []).append(method)
        for lr, who in owners.items():
            at = at_lr(grid, lr, alpha)
            pair = next(iter(_pair(at, "test_kl", ["game"]).values()), None)
            if pair is None:
                continue
            iv = paired_ratio(*pair)
            fast = iterations_to(cur.merge(at[RUN_KEYS], on=RUN_KEYS), by_lr=True)
            fast_iv = iterations_ratio(fast.sobolev.to_numpy(), fast.regular.to_numpy()) if len(fast) else None
            rows.append({
                "game": game, "lr": lr, "lr_chosen_by": " and ".join(who), "seeds": iv.n,
                "sobolev_test_kl": float(np.median(pair[0])), "regular_test_kl": float(np.median(pair[1])),
                "ratio": iv.estimate, "low": iv.low, "high": iv.high,
                "verdict": iv.verdict, "iterations_ratio": fast_iv.estimate if fast_iv else math.nan,
                "iterations_low": fast_iv.low if fast_iv else math.nan,
                "iterations_high": fast_iv.high if fast_iv else math.nan,
                "iterations_verdict": fast_iv.verdict if fast_iv else UNDECIDED,
            })  # fmt: skip
    return pd.DataFrame(rows)


def grid_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The tuning grid at the tuning fraction: per game, method, lr and α, the median validation KL over seeds
    (what the choice is made on), the median test KL, and the share of seeds that stopped early."""
    grid = runs[runs.role == "grid"]
    agg = grid.groupby(["game", "method", "lr", "alpha"]).agg(
        seeds=("seed", "size"), median_val_kl=("val_kl", "median"), median_test_kl=("test_kl", "median"),
        stopped_early=("stopped_early", "mean"), chosen=("chosen", "any"),
    )  # fmt: skip
    return agg


def _cells(rows: pd.DataFrame, fmt: str = "{:.3g}") -> str:
    return "; ".join(
        f"{r.game} {r.fraction:g}: {fmt.format(r.estimate)} [{fmt.format(r.low)}, {fmt.format(r.high)}]"
        + _undecided_note(r)
        for r in rows.itertuples()
    )


def _undecided_note(row) -> str:
    """For an undecided cell: its seeds (and the runs that never reached the target, where there are)."""
    if row.verdict != UNDECIDED:
        return ""
    never = getattr(row, "never", 0)
    return f" ({row.seeds} seeds" + (f", {never} never reached it)" if never else ")")


def low_data_gain(comp: pd.DataFrame, final: pd.DataFrame, arm: str) -> tuple[bool | None, str]:
    """Is the test-KL gain largest in the low-data regime? Per game, the per-seed log ratio arm / regular at the
    smallest fraction minus the one at the largest, with its t interval (the ratio of ratios,
    :func:`~sobolev.common.stats.paired_effect_difference`): holds when in every game that ratio of ratios is
    decidedly below 1 (the arm's relative gain is larger with less data) and the smallest fraction is itself a
    decided win; fails when in some game it is decidedly above 1 (Holm over the games); undecided otherwise.
    Returns the verdict and its evidence."""
    rows, verdicts, ps, wins = [], [], [], []
    for game, part in final.groupby("game"):
        fractions = sorted(part.fraction.unique())
        if len(fractions) < 2:
            continue
        logs = {}
        for f in (fractions[0], fractions[-1]):
            wide = part[part.fraction == f].pivot_table(index="seed", columns="method", values="test_kl")
            if {"regular", arm} <= set(wide.columns):
                wide = wide[["regular", arm]].dropna()
                logs[f] = np.log(wide[arm]) - np.log(wide["regular"])
        if len(logs) < 2:
            continue
        seeds = logs[fractions[0]].index.intersection(logs[fractions[-1]].index)
        iv = paired_effect_difference(logs[fractions[0]][seeds].to_numpy(), logs[fractions[-1]][seeds].to_numpy())
        small = comp[(comp.game == game) & (comp.fraction == fractions[0])]
        wins.append(bool(len(small)) and small.verdict.iloc[0] == WIN)
        verdicts.append(iv.verdict)
        ps.append(iv.t_p_value)
        rows.append(f"{game}: ratio at {fractions[0]:g} / ratio at {fractions[-1]:g} = {iv} ({iv.verdict}, {iv.n} "
                    f"seeds)")  # fmt: skip
    if not rows:
        return None, "fewer than two fractions"
    decided = all_win(verdicts, ps)
    holds = decided is True and all(wins)
    return (True if holds else (False if decided is False else None)), "; ".join(rows)


def claims_from(comp: pd.DataFrame, ctrl: pd.DataFrame, runs: pd.DataFrame) -> list[Claim]:
    """The paper's Section 4.2 claims for each Sobolev arm in ``comp`` (the paper's weighting first, then the
    balanced one), each decided from paired seeds in every game and fraction; then the equal-learning-rate
    control's (the paper's arm; only where :func:`control` has rows: a grid of more than one point)."""
    out = []
    for arm, prefix in ARMS.items():
        part = comp[comp.arm == arm] if "arm" in comp else comp.iloc[:0]
        if len(part):
            out += _arm_claims(part, prefix, with_gap(runs[runs.chosen]), arm)
    if len(ctrl):
        out.append(Claim(
            "at the same learning rate, Sobolev students are still closer to the teacher (test KL ratio, tuning "
            "fraction, both methods at each chosen lr)",
            all_win(list(ctrl.verdict)),
            "; ".join(f"{r.game} lr {r.lr:g} ({r.lr_chosen_by}'s): {r.ratio:.3g} [{r.low:.3g}, {r.high:.3g}]"
                      for r in ctrl.itertuples()),
        ))  # fmt: skip
        out.append(Claim(
            "at the same learning rate, Sobolev students still learn faster (iterations ratio)",
            all_win(list(ctrl.iterations_verdict)),
            "; ".join(f"{r.game} lr {r.lr:g}: {r.iterations_ratio:.3g} [{r.iterations_low:.3g}, "
                      f"{r.iterations_high:.3g}]" for r in ctrl.itertuples()),
        ))  # fmt: skip
    return out


def _arm_claims(comp: pd.DataFrame, prefix: str, final: pd.DataFrame, arm: str) -> list[Claim]:
    """The paper's six claims on the students for one arm's comparisons (``final``: the chosen runs at their
    selected checkpoints), each text led by ``prefix``."""
    out = []

    def q(name: str) -> pd.DataFrame:
        return comp[comp.quantity == name].sort_values(["game", "fraction"])

    def text(claim: str) -> str:
        return prefix + claim

    kl, err = q("test KL"), q("test action error")
    out.append(Claim(
        text("Sobolev students are closer to the teacher in every game and fraction (test KL at the selected "
             "checkpoint, ratio Sobolev / regular)"),
        all_win(kl.verdict, kl.p_t), _cells(kl),
    ))  # fmt: skip
    out.append(Claim(
        text("... and agree more often on the most probable action (test action error, Sobolev − regular)"),
        all_win(err.verdict, err.p_t), _cells(err, "{:+.3f}"),
    ))  # fmt: skip
    # Low data: the per-seed log ratio at the smallest fraction against the one at the largest, paired by seed.
    verdict, evidence = low_data_gain(kl, final, arm)
    out.append(Claim(
        text("the gain is largest in the low-data regime (paired by seed: the test-KL ratio at the smallest "
             "fraction decidedly below the ratio at the largest, and a decided win there)"),
        verdict, evidence,
    ))  # fmt: skip
    gap = q("test − train KL gap")
    out.append(Claim(
        text("Sobolev students generalise better: a smaller gap between test and train KL at the selected "
             "checkpoint (Sobolev − regular)"),
        all_win(gap.verdict, gap.p_t),
        "; ".join(f"{r.game} {r.fraction:g}: gap Sobolev {r.sobolev:.3g}, regular {r.regular:.3g}, difference "
                  f"{r.estimate:+.3g} [{r.low:+.3g}, {r.high:+.3g}]{_undecided_note(r)}" for r in gap.itertuples()),
    ))  # fmt: skip
    rise = q("test KL rise after its best")
    out.append(Claim(
        text("regular distillation overfits with more iterations, Sobolev less (rise of test KL from its lowest to "
             "the run's end, patience evaluations after the best validation KL; Sobolev − regular)"),
        all_win(rise.verdict, rise.p_t),
        "; ".join(f"{r.game} {r.fraction:g}: regular +{100 * r.regular:.1f}%, Sobolev +{100 * r.sobolev:.1f}%, "
                  f"difference {100 * r.estimate:+.1f} [{100 * r.low:+.1f}, {100 * r.high:+.1f}] points"
                  + _undecided_note(r)
                  for r in rise.itertuples()),
    ))  # fmt: skip
    fast = q("iterations to 1.1 × regular's best val KL")
    out.append(Claim(
        text(f"Sobolev students learn faster (iterations until the validation KL is within {FAST_WITHIN} × "
             "regular's best, ratio Sobolev / regular; at each method's chosen learning rate)"),
        all_win(fast.verdict, fast.p_t), _cells(fast),
    ))  # fmt: skip
    return out


# --- figures --------------------------------------------------------------------------------------


# --- metrics and README ---------------------------------------------------------------------------


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.reset_index().to_json(orient="records"))


def _interval_dict(iv: Interval) -> dict[str, float]:
    return {"estimate": iv.estimate, "low": iv.low, "high": iv.high}


def claims(result: Result) -> list[Claim]:
    """The section's verdicts: the teachers' (:func:`teacher_claims`), then the paper's claims on the
    students (:func:`claims_from`)."""
    comp = comparisons(result.runs, result.curves)
    ctrl = control(result.runs, result.curves, result.summaries)
    return teacher_claims(result.teachers) + claims_from(comp, ctrl, result.runs)


def metrics(result: Result) -> dict:
    """What the report stage writes to ``metrics.json`` (valid JSON, for ``dvc metrics``)."""
    teachers = result.teachers
    chance = {t["game"]: beats_chance(t) for _, t in teachers.iterrows()}
    return {
        "teachers": [
            {**t, "beats_chance": _interval_dict(chance[t["game"]])} for t in _records(teacher_table(teachers))
        ],
        "chosen": _records(chosen_table(result.summaries)),
        "grid": _records(grid_table(result.runs)),
        "selected": _records(selected_table(result.runs)),
        "comparisons": _records(comparisons(result.runs, result.curves)),
        "control": _records(control(result.runs, result.curves, result.summaries)),
        "balance_scale": {g: s["balance_scale"] for g, s in result.summaries.items() if "balance_scale" in s},
        "seconds": {g: s["seconds"] for g, s in result.summaries.items()},
        "claims": [c.to_dict() for c in claims(result)],
    }


def save(result: Result, output_dir: str | Path | None) -> None:
    """Write the report stage's outputs (:data:`~sobolev.distillation.config.OUTPUTS`) into
    ``output_dir``: ``metrics.json`` and every figure, checked, as ``figures/<name>.png`` (``None``:
    check the figures only)."""
    if output_dir is None:
        return save_all(figures(result), None)
    atomic_write_json(Path(output_dir) / "metrics.json", metrics(result))
    save_all(figures(result), output_dir)


def readme_blocks(m: dict) -> dict[str, str]:
    """The README blocks of Section 4.2, by name."""
    return {"distillation": readme_block(m)}


def _g(value: float | None) -> str:
    """A metrics number for the README; ``None`` is how ``metrics.json`` stores an infinite value here
    (iterations of a run that never reached the target)."""
    return "∞" if value is None else f"{value:.3g}"


def readme_block(m: dict) -> str:
    """Markdown from ``results/distillation/report/metrics.json``: teachers, chosen hyper-parameters, test
    metrics at the selected checkpoints, paired comparisons, the control and the claims."""

    def ci(r: dict, col: str, fmt: str = "{:.3g}") -> str:
        return f"{fmt.format(r[col])} [{fmt.format(r[col + '_low'])}, {fmt.format(r[col + '_high'])}]"

    lines = [
        "| game | mean score (teacher) | random play | RL Zoo A2C / PPO (10M steps) | teacher − random [95% CI] | "
        "entropy / log\\|A\\| at T = 1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in m["teachers"]:
        b = t["beats_chance"]
        lines.append(
            f"| {t['game']} | {t['mean_return']:.1f} ± {t['std_return']:.1f} ({t['episodes_finished']} games) | "
            f"{t['random_mean_return']:.1f} | {t['rl_zoo_a2c_return']:.0f} / {t['rl_zoo_ppo_return']:.0f} | "
            f"{b['estimate']:+.1f} [{b['low']:+.1f}, {b['high']:+.1f}] | {t['entropy_ratio_at_temperature_1']:.2f} |"
        )
    scales = m.get("balance_scale", {})
    if scales:
        lines += [
            "",
            "Scale of each teacher's input gradients, the root mean square of ‖vᵀ∂ log π*/∂s‖ over the training states "
            "every fraction shares: " + "; ".join(f"{g} {v:.3g}" for g, v in scales.items()) + ". The Sobolev term "
            "is a norm of such gradients' difference: the paper's arm weighs it by one α in every game, the balanced "
            "arm divides it by this scale first, so that its α weighs the relative gradient error.",
        ]
    lines += ["", "| game | method | lr | α | weight on the raw Sobolev term | tuning runs |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for c in m["chosen"]:
        lines.append(f"| {c['game']} | {c['method']} | {c['lr']:g} | {c['alpha']:g} | {c['raw weight']:.3g} | "
                     f"{c['tuning runs']} |")  # fmt: skip
    lines += [
        "",
        "Final students at their selected checkpoints (median [95% CI] over seeds):",
        "",
        "| game | train fraction | method | test KL | test action error | train KL | selected / last iteration "
        "| stopped early |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in m["selected"]:
        lines.append(
            f"| {r['game']} | {r['fraction']:g} | {r['method']} | {ci(r, 'test_kl')} | "
            f"{ci(r, 'test_action_error', '{:.3f}')} | {ci(r, 'train_kl')} | {r['best_iteration']:.0f} / "
            f"{r['stopped_at']:.0f} | {100 * r['stopped_early']:.0f}% |"
        )
    lines += [
        "",
        "Paired by seed, each Sobolev arm against regular (ratio: arm / regular; difference: arm − regular; "
        "sobolev: the paper's α on the raw term, balanced: α tuned on the balanced term):",
        "",
        "| arm | quantity | game | fraction | arm's median | regular | paired [95% CI] | verdict for the arm |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in m["comparisons"]:
        sobolev = f"never ({r['never']} of {r['seeds']} seeds)" if r.get("never") else _g(r["sobolev"])
        lines.append(
            f"| {r.get('arm', 'sobolev')} | {r['quantity']} | {r['game']} | {r['fraction']:g} | {sobolev} | "
            f"{_g(r['regular'])} | "
            f"{_g(r['estimate'])} [{_g(r['low'])}, {_g(r['high'])}] | {r['verdict']} |"
        )
    if m["control"]:
        lines += [
            "",
            "Equal-learning-rate control (tuning fraction: the grid ran both methods at every lr, every seed):",
            "",
            "| game | lr (chosen by) | Sobolev test KL | regular test KL | ratio [95% CI] "
            "| iterations ratio [95% CI] |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in m["control"]:
            lines.append(
                f"| {r['game']} | {r['lr']:g} ({r['lr_chosen_by']}) | {r['sobolev_test_kl']:.3g} | "
                f"{r['regular_test_kl']:.3g} | {r['ratio']:.3g} [{r['low']:.3g}, {r['high']:.3g}] | "
                f"{_g(r['iterations_ratio'])} [{_g(r['iterations_low'])}, {_g(r['iterations_high'])}] |"
            )
    lines += ["", format_claims((Claim.from_dict(c) for c in m["claims"]), bullet="* ")]
    return "\n".join(lines)
