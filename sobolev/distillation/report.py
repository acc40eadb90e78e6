"""Section 4.2's results from the chain's outputs: tables, Figure 4, the paper's claims checked.

Reads ``<results>/<game>/{teacher.json, summary.json, curves.csv, tuning.csv}`` written by
:mod:`sobolev.distillation.chain`; nothing here trains.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from sobolev.common.claims import Claim, format_claims
from sobolev.common.plotting import METHOD_COLORS, style

METRICS = {"action_error": "test action-prediction error", "kl": "test KL(π ‖ π*)"}


def load(results: str | Path, games: list[str]) -> dict:
    """``{"teachers": DataFrame, "curves": DataFrame, "tuning": DataFrame, "summaries": {game: dict}}``."""
    results = Path(results)
    missing = [g for g in games if not (results / g / "summary.json").exists()]
    if missing:
        raise FileNotFoundError(f"no distillation results for {missing} in {results}: run `dvc repro` first")
    teachers = pd.DataFrame([json.loads((results / g / "teacher.json").read_text()) for g in games])
    curves = pd.concat([pd.read_csv(results / g / "curves.csv") for g in games], ignore_index=True)
    tuning = pd.concat([pd.read_csv(results / g / "tuning.csv").assign(game=g) for g in games], ignore_index=True)
    summaries = {g: json.loads((results / g / "summary.json").read_text()) for g in games}
    long = [pd.read_csv(results / g / "long_curves.csv") for g in games if (results / g / "long_curves.csv").exists()]
    long_curves = pd.concat(long, ignore_index=True) if long else pd.DataFrame(columns=curves.columns)
    return {
        "teachers": teachers, "curves": curves, "tuning": tuning, "summaries": summaries, "long_curves": long_curves,
    }  # fmt: skip


def teacher_table(teachers: pd.DataFrame) -> pd.DataFrame:
    cols = ["game", "n_actions", "episodes_finished", "mean_return", "std_return", "temperature",
            "entropy_ratio_at_temperature_1", "entropy_ratio_mean", "max_prob_mean", "peaked"]  # fmt: skip
    return teachers[cols].set_index("game")


def chosen_table(summaries: dict) -> pd.DataFrame:
    """The learning rate and α each method got, and how many tuning runs each had."""
    rows = [
        {"game": g, "method": m, "lr": hp["lr"], "alpha": hp["alpha"], "tuning runs": s["budget_runs"][m]}
        for g, s in summaries.items()
        for m, hp in s["chosen"].items()
    ]
    return pd.DataFrame(rows).set_index(["game", "method"])


def final_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Test action error and KL at the last iteration: mean and std over seeds, per game,
    fraction and method."""
    test = curves[curves.set == "test"]
    last = test[test.iteration == test.iteration.max()]
    agg = last.groupby(["game", "fraction", "method"])[["action_error", "kl"]].agg(["mean", "std"])
    agg.columns = [f"{a} {b}" for a, b in agg.columns]
    return agg


def overfitting_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Does test KL rise with more iterations? Per run: the best test KL over the logged
    iterations, where it was reached, and how far above it the final one is (%); then the
    mean over seeds."""
    keys = ["game", "fraction", "method", "seed"]
    final_train = curves[curves.set == "train"].sort_values("iteration").groupby(keys).kl.last()
    rows = []
    for key, run in curves[curves.set == "test"].groupby(keys):
        run = run.sort_values("iteration")
        best, final = run.loc[run.kl.idxmin()], run.iloc[-1]
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "best test kl": best.kl, "best at iteration": best.iteration, "final test kl": final.kl,
            "rise above best %": 100 * (final.kl / best.kl - 1), "final train kl": final_train[key],
            "test / train kl": final.kl / final_train[key],
        })  # fmt: skip
    df = pd.DataFrame(rows)
    return df.groupby(["game", "fraction", "method"]).mean(numeric_only=True).drop(columns="seed")


def claims(final: pd.DataFrame, overfit: pd.DataFrame, long_overfit: pd.DataFrame | None = None) -> list[Claim]:
    """The paper's Section 4.2 claims, checked on our runs (means over seeds).

    * in all scenarios Sobolev-distilled students are closer to the teacher (test KL and
      action error lower, per game and fraction);
    * the gain is largest with the least data (smallest fraction: the largest relative KL gain);
    * Sobolev students generalise better: a smaller gap between test and train KL;
    * Sobolev shows minor to no overfitting, regular more (test KL rise above its best; from
      the longer runs when there are any).
    """
    out = []
    cells = final.index.droplevel("method").unique()
    wins_kl = wins_err = 0
    gains = {}
    for game, fraction in cells:
        reg, sob = final.loc[(game, fraction, "regular")], final.loc[(game, fraction, "sobolev")]
        wins_kl += sob["kl mean"] < reg["kl mean"]
        wins_err += sob["action_error mean"] < reg["action_error mean"]
        gains.setdefault(game, {})[fraction] = 1 - sob["kl mean"] / reg["kl mean"]
    out.append(Claim(
        "Sobolev students are closer to the teacher in every game and fraction (test KL)",
        bool(wins_kl == len(cells)),
        f"lower test KL in {wins_kl}/{len(cells)} cells",
    ))
    out.append(Claim(
        "... and agree more often on the most probable action",
        bool(wins_err == len(cells)),
        f"lower action error in {wins_err}/{len(cells)} cells",
    ))
    # A gain that is largest at the smallest fraction, and a gain there at all.
    low = [g[min(g)] > max(0.0, g[max(g)]) for g in gains.values() if len(g) > 1]
    detail = "; ".join(
        f"{game}: " + ", ".join(f"{f:g}: {100 * v:.0f}%" for f, v in sorted(g.items())) for game, g in gains.items()
    )
    out.append(Claim(
        "the gain is largest in the low-data regime (relative test-KL gain at the smallest fraction)",
        bool(low and all(low)),
        f"KL reduction by fraction: {detail}",
    ))
    ratio = overfit["test / train kl"].unstack("method")
    smaller = int((ratio["sobolev"] < ratio["regular"]).sum())
    out.append(Claim(
        "Sobolev students generalise better (smaller test / train KL ratio at the end)",
        bool(smaller == len(ratio)),
        "; ".join(
            f"{g} {f:g}: regular {r['regular']:.2f}, Sobolev {r['sobolev']:.2f}" for (g, f), r in ratio.iterrows()
        ),
    ))
    longer = long_overfit is not None and len(long_overfit) > 0
    rise = (long_overfit if longer else overfit)["rise above best %"].unstack("method")
    more = int((rise["regular"] > rise["sobolev"]).sum())
    out.append(Claim(
        "regular distillation overfits with more iterations, Sobolev little or not at all"
        + (" (longer runs)" if longer else ""),
        bool(more == len(rise)),
        f"final test KL above its best: regular {rise['regular'].mean():.1f}%, "
        f"Sobolev {rise['sobolev'].mean():.1f}% (mean over cells); regular rises more in {more}/{len(rise)} cells",
    ))
    return out


def figure4(curves: pd.DataFrame) -> plt.Figure:
    """Figure 4: test action error (top row) and test KL (bottom row) against iterations, one
    column per game and fraction; mean ± std over seeds; linear axes from zero, so gaps look
    as large as they are (the reviews' complaint about the paper's axes)."""
    style()
    test = curves[curves.set == "test"].copy()
    test["panel"] = test.game + ", " + (100 * test.fraction).round().astype(int).astype(str) + "% train"
    panels = list(dict.fromkeys(test.sort_values(["game", "fraction"]).panel))
    fig, axes = plt.subplots(2, len(panels), figsize=(3.4 * len(panels), 5.6), squeeze=False, sharex=True)
    for j, panel in enumerate(panels):
        for i, (metric, label) in enumerate(METRICS.items()):
            ax = axes[i, j]
            sns.lineplot(data=test[test.panel == panel], x="iteration", y=metric, hue="method", errorbar="sd",
                         palette=METHOD_COLORS, ax=ax, legend=(i == 0 and j == 0))  # fmt: skip
            ax.set_ylim(bottom=0)
            ax.set_title(panel if i == 0 else "")
            ax.set_ylabel(label if j == 0 else "")
    fig.suptitle("Figure 4: distilling Atari policies (mean ± std over seeds)", y=1.01)
    fig.tight_layout()
    return fig


def figure_long(long_curves: pd.DataFrame) -> plt.Figure:
    """The longer runs: train and test KL against iterations per method (one seed). Test KL
    rising while train KL keeps falling is overfitting."""
    style()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for ax, (method, run) in zip(axes, long_curves.groupby("method"), strict=False):
        sns.lineplot(data=run, x="iteration", y="kl", hue="set", hue_order=["train", "test"], ax=ax)
        ax.set_ylim(bottom=0)
        ax.set_title(f"{method}, {run.game.iloc[0]}, {100 * run.fraction.iloc[0]:.0f}% train")
        ax.set_ylabel("KL(π ‖ π*)")
    fig.suptitle("Longer training: does the student overfit?", y=1.03)
    fig.tight_layout()
    return fig


def metrics(data: dict) -> dict:
    """What the notebook stage writes to ``metrics.json`` (valid JSON, for ``dvc metrics``)."""
    final = final_table(data["curves"])
    overfit = overfitting_table(data["curves"])
    long = data.get("long_curves")
    long_overfit = overfitting_table(long) if long is not None and len(long) else None

    def records(df: pd.DataFrame) -> list[dict]:
        return json.loads(df.reset_index().to_json(orient="records"))

    return {
        "teachers": records(teacher_table(data["teachers"])),
        "chosen": records(chosen_table(data["summaries"])),
        "final": records(final),
        "overfitting": records(overfit),
        "overfitting_long": records(long_overfit) if long_overfit is not None else [],
        "claims": [c.to_dict() for c in claims(final, overfit, long_overfit)],
    }


def readme_block(m: dict) -> str:
    """Markdown: the teachers, the chosen hyper-parameters, the final test metrics, the
    overfitting check and the claims, from ``results/distillation/report/metrics.json``."""

    def pm(mean, std):
        return f"{mean:.3g}" if std is None else f"{mean:.3g} ± {std:.2g}"

    lines = [
        "| game | actions | games finished | mean return | entropy / log\\|A\\| (T = 1) | "
        "entropy / log\\|A\\| (teacher, T) | T |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in m["teachers"]:
        ret = "n/a" if t["mean_return"] is None else pm(t["mean_return"], t["std_return"])
        lines.append(
            f"| {t['game']} | {t['n_actions']} | {t['episodes_finished']} | {ret} | "
            f"{t['entropy_ratio_at_temperature_1']:.2f} | {t['entropy_ratio_mean']:.2f} | {t['temperature']:g} |"
        )
    lines += ["", "| game | method | lr | α | tuning runs |", "| --- | --- | ---: | ---: | ---: |"]
    for c in m["chosen"]:
        lines.append(f"| {c['game']} | {c['method']} | {c['lr']:g} | {c['alpha']:g} | {c['tuning runs']} |")
    over = {(o["game"], o["fraction"], o["method"]): o for o in m["overfitting"]}
    lines += [
        "",
        "| game | train fraction | method | test action error | test KL | final KL above its best |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in m["final"]:
        o = over[(r["game"], r["fraction"], r["method"])]
        lines.append(
            f"| {r['game']} | {r['fraction']:g} | {r['method']} | {pm(r['action_error mean'], r['action_error std'])} "
            f"| {pm(r['kl mean'], r['kl std'])} | {o['rise above best %']:.0f}% |"
        )
    if m.get("overfitting_long"):
        lines += [
            "",
            "Longer runs (one seed per method):",
            "",
            "| game | train fraction | method | best test KL | at iteration | final test KL | final above best "
            "| final test / train KL |",
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for o in m["overfitting_long"]:
            lines.append(
                f"| {o['game']} | {o['fraction']:g} | {o['method']} | {o['best test kl']:.3g} | "
                f"{o['best at iteration']:.0f} | {o['final test kl']:.3g} | {o['rise above best %']:.0f}% | "
                f"{o['test / train kl']:.2f} |"
            )
    lines.append("")
    lines.append(format_claims((Claim.from_dict(c) for c in m["claims"]), bullet="* "))
    return "\n".join(lines)
