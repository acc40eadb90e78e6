"""README tables generated from the committed metrics (no number typed in by hand).

``python -m sobolev.report`` rewrites every block between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` in README.md; ``tests/test_pipeline.py`` fails when a block
differs from what the committed metrics give.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

from sobolev.regression import claims
from sobolev.utils import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent


def _fmt(mean: float, std: float) -> str:
    return f"{mean:.3g} ± {std:.2g}"


def regression_table(metrics: dict, setting: str) -> str:
    """Markdown: mean ± std test MSE per function and size, regular vs Sobolev, with the ratio."""
    block = metrics[setting]
    functions = sorted(k for k in block if isinstance(block[k], dict) and k != "sobolev_wins")
    sizes = sorted(block[functions[0]], key=lambda s: int(s[1:]))
    lines = [
        "| function | n | regular | Sobolev | Sobolev / regular |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for fn in functions:
        for size in sizes:
            reg, sob = block[fn][size]["regular"], block[fn][size]["sobolev"]
            ratio = sob["test_mse"] / reg["test_mse"]
            mark = "**" if ratio < 1 else ""
            lines.append(
                f"| {fn} | {size[1:]} | {_fmt(reg['test_mse'], reg['test_mse_std'])} | "
                f"{_fmt(sob['test_mse'], sob['test_mse_std'])} | {mark}{ratio:.2g}{mark} |"
            )
    n_fn = block["n_functions"]
    counts = sorted(block["sobolev_wins"].items(), key=lambda kv: int(kv[0][1:]))
    wins = ", ".join(f"n={k[1:]}: {v}/{n_fn}" for k, v in counts)
    lines.append("")
    lines.append(f"Functions where Sobolev's mean test MSE is lower: {wins}.")
    return "\n".join(lines)


def summary_from_metrics(block: dict) -> pd.DataFrame:
    """One setting of ``metrics.json`` back as a :func:`sobolev.regression.summarise` table."""
    rows = []
    for fn, sizes in block.items():
        if fn in ("sobolev_wins", "n_functions"):
            continue
        for size, methods in sizes.items():
            for method, m in methods.items():
                rows.append({"function": fn, "n_train": int(size[1:]), "method": method, **m})
    return pd.DataFrame(rows)


def claims_list(metrics: dict) -> str:
    """Markdown bullets: each of Section 4.1's claims with its computed verdict, per setting."""
    names = {
        "faithful": "faithful",
        "tuned": "equally tuned",
        "faithful_long": "faithful, largest size, longer training",
    }
    lines = []
    for setting, label in names.items():
        if setting in metrics:
            lines.append(f"* {label}:")
            lines += [f"  * {claim}" for claim in claims(summary_from_metrics(metrics[setting]))]
    return "\n".join(lines)


def theory_list(m: dict) -> str:
    """Markdown bullets: Section 3's computed findings, from ``results/theory/metrics.json``."""
    fig2 = m["figure2_left"]
    p1 = pd.DataFrame(m["proposition1"])
    ok, bad = p1[p1.construction.str.startswith("corrected")], p1[p1.construction.str.startswith("as printed")]
    g = m["proposition3_gaussian"]
    poly = pd.DataFrame(m["polynomials"])
    even = poly[poly["values + derivatives"] != poly["paper: ⌈n/2⌉"]]["degree n"].tolist()
    t2 = {row["pair"]: row for row in m["theorem2"]}
    ident = pd.DataFrame(m["identification"])
    ratios = "; ".join(
        f"{fam}: " + ", ".join(f"d={r.d}: {r.ratio:.2f} (d+1 = {r['d + 1']})" for _, r in grp.iterrows())
        for fam, grp in ident.groupby("family")
    )
    nets = m["pl_networks"]
    wins = ", ".join(f"n={k[1:]}: {v}/{nets['n_dimensions']}" for k, v in nets["sobolev_wins"].items())
    shifted, exact = t2["g = f′ + 0.5"], t2["g = f′"]
    return "\n".join(
        [
            f"* Figure 2 (left): values at 3 points leave a family of dimension {fig2['values_only_dimension']}; "
            f"values + slopes leave dimension {fig2['with_slopes_dimension']} (the target, error "
            f"{fig2['with_slopes_error']:.1g}).",
            f"* Proposition 1, built as a ReLU network: max value error {ok['max |h − f|'].max():.1g}, max gradient "
            f"error {ok['max |∇h − g|'].max():.1g} for d in {sorted(ok.d)}. **The printed proof has a slip**: "
            f"slopes A⁻¹g instead of A⁻ᵀg give gradient errors up to {bad[bad.d > 1]['max |∇h − g|'].max():.3g} "
            "for d > 1 (correct only for orthogonal A).",
            f"* Proposition 3, Gaussians: recovered from one value and one slope (error "
            f"{g['max_recovery_error']:.1g}). The second Gaussian through N(2, 1) at 0 and 3 is μ = "
            f"{g['second_mu']:.4f}, σ² = {g['second_var']:.4f}: **the paper's 1.641… is σ, not σ²**.",
            f"* Polynomials: values + derivatives need ⌈(n+1)/2⌉ points; **the paper's ⌈n/2⌉ is one short for "
            f"n = {even}**.",
            "* Theorem 2 (f = sin, g = cos + 0.5): least possible Sobolev error "
            f"{shifted['least possible error']:.4f}; "
            f"the trained network reaches {shifted['network error']:.4f}. With g = f′: "
            f"{exact['least possible error']:.1g} and {exact['network error']:.1g}.",
            f"* Random points to identify a PL function, values only / with gradients: {ratios}.",
            f"* ReLU networks on random PL targets (λ = 1): Sobolev lower in {wins} dimensions. Identifiability "
            "does not carry over to gradient descent here (see the notebook).",
        ]
    )


def synthetic_table(m: dict) -> str:
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


def distillation_tables(m: dict) -> str:
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
    for c in m["claims"]:
        lines.append(f"* [{'REPRODUCED' if c['holds'] else 'NOT reproduced'}] {c['claim']}: {c['detail']}")
    return "\n".join(lines)


def blocks(root: Path = ROOT) -> dict[str, str]:
    """Every generated README block, by name."""
    metrics = json.loads((root / "results/regression/metrics.json").read_text())
    settings = [s for s in ("faithful", "tuned", "faithful_long") if s in metrics]
    out = {f"regression-{s}": regression_table(metrics, s) for s in settings}
    out["regression-claims"] = claims_list(metrics)
    out["theory"] = theory_list(json.loads((root / "results/theory/metrics.json").read_text()))
    synthetic = root / "results/synthetic/metrics.json"
    if synthetic.exists():
        out["synthetic"] = synthetic_table(json.loads(synthetic.read_text()))
    distillation = root / "results/distillation/report/metrics.json"
    if distillation.exists():
        out["distillation"] = distillation_tables(json.loads(distillation.read_text()))
    return out


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
    atomic_write_text(path, render(path.read_text(), blocks()))
    print(f"updated {len(blocks())} result blocks in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
