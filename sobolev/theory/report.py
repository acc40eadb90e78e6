"""Section 3's report: each claim of the theory computed into a :class:`~sobolev.theory.compute.Part`
(its table, metrics, the conclusions it prints and its figures' makers), and the stage's outputs.

:func:`run` computes every part; the notebook shows them one by one; nothing numeric is computed there.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import TextIO

import pandas as pd
import torch

from sobolev.common import compare
from sobolev.common.plotting import save_all
from sobolev.common.stats import LOSS, UNDECIDED, WIN, paired_ratio
from sobolev.common.utils import atomic_write_json, atomic_write_text, pick_device
from sobolev.core.derivatives import input_gradient
from sobolev.theory import compute as T
from sobolev.theory import plots
from sobolev.theory.compute import Part, Result
from sobolev.theory.config import TheoryConfig
from sobolev.theory.plots import figures


def above_floor(row: dict) -> bool:
    """Theorem 2: the trained network's Sobolev error is not below the least possible one beyond numerical
    error (the floor's discretisation error plus the network's quadrature error): the one tolerance used."""
    tol = row["floor discretisation error"] + row["network quadrature error"]
    return bool(row["network error"] - row["least possible error"] > -tol)


def figure2_left() -> Part:
    """Figure 2 (left): PL functions consistent with 3 values, with and without slopes."""
    knots = torch.tensor([0.0, 1.0, 2.0, 3.0])
    target = torch.tensor([0.0, 2.0, 1.0, 3.0], dtype=torch.float64)
    x_train = torch.tensor([0.4, 1.5, 2.7])
    y_train = T.pl_rows(knots, x_train) @ target
    dy_train = T.pl_rows(knots, x_train, derivative=True) @ target
    values_only = T.pl_family(knots, x_train, y_train)
    with_slopes = T.pl_family(knots, x_train, y_train, dy_train)

    m = {
        "values_only_dimension": values_only.dimension,
        "with_slopes_dimension": with_slopes.dimension,
        "with_slopes_error": float((with_slopes.particular - target).abs().max()),
    }
    drawn = partial(plots.figure2_left, knots, target, x_train, y_train, dy_train, values_only, with_slopes)
    return Part("figure2_left", m, figures={"fig2_left": drawn}, conclusions=[
        f"values only: the consistent PL functions form a family of dimension {m['values_only_dimension']}",
        f"values + slopes: dimension {m['with_slopes_dimension']}, "
        f"equal to the target: {m['with_slopes_error'] < 1e-9}",
    ])  # fmt: skip


def proposition1(cfg: TheoryConfig) -> Part:
    """Proposition 1's construction as a ReLU network, corrected and as printed."""
    gen = torch.Generator().manual_seed(0)
    rows = []
    for d in cfg.prop1_dims:
        points = torch.randn(cfg.prop1_points, d, generator=gen, dtype=torch.float64)
        values = torch.randn(cfg.prop1_points, generator=gen, dtype=torch.float64)
        grads = torch.randn(cfg.prop1_points, d, generator=gen, dtype=torch.float64)
        for printed in (False, True):
            h = T.prop1_network(points, values, grads, as_printed=printed)
            rows.append({
                "d": d, "construction": "as printed (A⁻¹g)" if printed else "corrected (A⁻ᵀg)",
                "hidden ReLUs": h.hidden.out_features,
                "max |h − f|": float((h(points).detach() - values).abs().max()),
                "max |∇h − g|": float((input_gradient(h, points, create_graph=False) - grads).abs().max()),
            })  # fmt: skip
    table = pd.DataFrame(rows)
    ok = table[table.construction.str.startswith("corrected")]
    bad = table[table.construction.str.startswith("as printed")]
    return Part("proposition1", table.to_dict("records"), table, conclusions=[
        "corrected construction: zero training loss (errors < 1e-9) in every dimension: "
        f"{bool((ok[['max |h − f|', 'max |∇h − g|']] < 1e-9).all().all())}",
        "as printed: values match, gradients wrong whenever d > 1: "
        f"{bool((bad['max |h − f|'] < 1e-9).all() and (bad[bad.d > 1]['max |∇h − g|'] > 1e-3).all())}",
    ])  # fmt: skip


def proposition3() -> Part:
    """Proposition 3 for Gaussians: one value and one slope identify (μ, σ²); values alone do not."""
    recovered = []
    for mu, var, x0 in [(2.0, 1.0, 0.3), (-1.0, 0.25, 0.0), (0.5, 4.0, 3.0)]:
        xs = torch.tensor([x0], dtype=torch.float64, requires_grad=True)
        alpha = T.gaussian_pdf(xs, mu, var)
        (beta,) = torch.autograd.grad(alpha.sum(), xs)
        mu_hat, var_hat = T.gaussian_from_value_and_slope(x0, float(alpha.detach()), float(beta))
        recovered.append(max(abs(mu_hat - mu), abs(var_hat - var)))
    mu2, var2 = T.gaussian_through(2.0, 1.0, 0.0, 3.0, guess=(3.0, 1.5))
    m = {"max_recovery_error": max(recovered), "second_mu": mu2, "second_var": var2}
    drawn = partial(plots.prop3_gaussians, mu2, var2)
    return Part("proposition3_gaussian", m, figures={"prop3_gaussians": drawn}, conclusions=[
        f"(μ, σ²) recovered from one value and one slope (error < 1e-9): {max(recovered) < 1e-9}",
        f"a second Gaussian with the values of N(2, 1) at 0 and 3: μ = {mu2:.3f}, σ² = {var2:.3f}, "
        f"σ = {math.sqrt(var2):.3f}",
    ])  # fmt: skip


def polynomials(cfg: TheoryConfig) -> Part:
    """Points needed to identify a degree-n polynomial, with and without derivatives."""
    table = pd.DataFrame([
        {"degree n": n,
         "values only": T.polynomial_points_needed(n, with_derivatives=False),
         "values + derivatives": T.polynomial_points_needed(n, with_derivatives=True),
         "paper: ⌈n/2⌉": math.ceil(n / 2), "⌈(n+1)/2⌉": math.ceil((n + 1) / 2)}
        for n in range(1, cfg.poly_max_degree + 1)
    ])  # fmt: skip
    wrong = table[table["values + derivatives"] != table["paper: ⌈n/2⌉"]]["degree n"].tolist()
    return Part("polynomials", table.to_dict("records"), table.set_index("degree n").T, conclusions=[
        f"values only need n + 1 points: {bool((table['values only'] == table['degree n'] + 1).all())}",
        "values + derivatives need ⌈(n+1)/2⌉ points: "
        f"{bool((table['values + derivatives'] == table['⌈(n+1)/2⌉']).all())}",
        "the paper's ⌈n/2⌉ is wrong exactly for the even degrees: "
        f"{wrong == [n for n in table['degree n'] if n % 2 == 0]}",
    ])  # fmt: skip


def theorem2(cfg: TheoryConfig) -> Part:
    """Theorem 2: the least Sobolev error for (f, g) by least squares, and a trained network."""
    f = torch.sin
    pairs = {"g = f′": torch.cos, "g = f′ + 0.5": lambda x: torch.cos(x) + 0.5}
    rows, curves = [], {}
    for label, g in pairs.items():
        floor, xs, h_best, floor_err = T.sobolev_floor(f, g, 0.0, 2 * math.pi)
        net, loss, loss_err, sup_v, sup_d = T.fit_sobolev_1d(f, g, 0.0, 2 * math.pi, cfg.thm2_steps, cfg.thm2_hidden)
        rows.append({"pair": label, "least possible error": floor, "floor discretisation error": floor_err,
                     "network error": loss, "network quadrature error": loss_err,
                     "sup |h − f|": sup_v, "sup |h′ − g|": sup_d})  # fmt: skip
        with torch.no_grad():
            curves[label] = (xs, f(xs), h_best, net(xs.unsqueeze(1)))
    table = pd.DataFrame(rows)
    consistent, shifted = table.iloc[0], table.iloc[1]
    drawn = partial(plots.theorem2, curves)
    return Part("theorem2", table.to_dict("records"), table, {"theorem2": drawn}, conclusions=[
        f"g ≠ f′: least possible Sobolev error > 0.05: {shifted['least possible error'] > 0.05}; the network's "
        f"error is not below it beyond numerical error: {above_floor(shifted.to_dict())}",
        "g = f′: least possible error ≈ 0, and the network's error is below 0.05: "
        f"{bool(consistent['least possible error'] < 1e-4 and consistent['network error'] < 0.05)}",
    ])  # fmt: skip


def identification(cfg: TheoryConfig) -> tuple[Part, Part]:
    """Random points needed to identify PL functions in d dimensions (values vs with gradients),
    and the fraction identified at parameters / (d + 1) points (the rank curves)."""
    rows = []
    for d, m in cfg.meshes:
        mesh = T.KuhnMesh(d, m)
        for continuous in (False, True):
            for seed in range(cfg.identification_seeds):
                counts = {w: T.points_to_identify(mesh, w, continuous, torch.Generator().manual_seed(seed))
                          for w in (False, True)}  # fmt: skip
                rows.append({"d": d, "family": "continuous" if continuous else "independent pieces",
                             "parameters": mesh.n_params(continuous), "seed": seed,
                             "values only": counts[False], "values + gradients": counts[True]})  # fmt: skip
    ident = pd.DataFrame(rows)
    summary = ident.groupby(["family", "d"]).agg(
        parameters=("parameters", "first"), values_only=("values only", "mean"),
        with_gradients=("values + gradients", "mean"),
    )  # fmt: skip
    summary["ratio"] = summary.values_only / summary.with_gradients
    summary["d + 1"] = summary.index.get_level_values("d") + 1

    early, rank_curves = {}, {}
    for d, m in cfg.meshes:
        mesh = T.KuhnMesh(d, m)
        fractions = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 4)
        counts = sorted({max(1, round(mesh.n_vertices * f)) for f in fractions})
        for w, label in ((False, "values"), (True, "values + gradients")):
            ranks = torch.tensor(
                [T.rank_curve(mesh, w, counts, seed=s) for s in range(cfg.identification_seeds)], dtype=torch.float64
            )
            rank_curves[d, label] = (counts, ranks.mean(0) / mesh.n_vertices, mesh.n_vertices)
        n_early = math.ceil(mesh.n_vertices / (d + 1))
        early[d] = [T.rank_curve(mesh, w, [n_early])[0] / mesh.n_vertices for w in (False, True)]
    ind, con = summary.loc["independent pieces"], summary.loc["continuous"]
    counts_part = Part("identification", summary.reset_index().to_dict("records"), summary, conclusions=[
        "independent pieces: derivatives always cut the points needed, never by more than d + 1: "
        f"{bool(((ind.ratio > 1) & (ind.ratio <= ind['d + 1'])).all())}",
        f"continuous PL: full identification needs no more points with gradients: {bool((con.ratio >= 1).all())}",
        "continuous PL: with parameters/(d+1) points, gradients pin down more of the function in every dimension: "
        f"{all(v[1] > v[0] for v in early.values())}",
    ])  # fmt: skip
    early_metrics = {f"d{d}": {"values": v[0], "values_gradients": v[1]} for d, v in early.items()}
    drawn = partial(plots.identification_rank, rank_curves)
    return counts_part, Part("identification_early", early_metrics, figures={"identification_rank": drawn})


PL_PAIRS = (("sobolev", "regular"), ("balanced", "regular"), ("balanced", "sobolev"))


def pl_networks(cfg: TheoryConfig, progress: bool | TextIO = False) -> Part:
    """ReLU networks trained on random PL targets: regular, Sobolev (λ = 1) and the balanced loss
    (the derivative terms scaled to the value term's); lr chosen on validation; the
    final training fit logged, to test the explanation that gradient jumps dominate the loss.
    Every comparison is paired by seed (same target, samples and initial weights) and decided
    by the t interval of the geometric-mean ratio of test MSEs (:mod:`sobolev.common.stats`)."""
    meshes = [T.KuhnMesh(d, m) for d, m in cfg.meshes]
    nets = T.pl_network_grid(meshes, cfg.net_sizes, cfg.net_seeds, cfg.net_lrs, cfg.net_steps, cfg.net_hidden,
                             device=pick_device(cfg.device), progress=progress)  # fmt: skip
    chosen = compare.select_lr(nets, key_name="theory.net_lrs")
    keys = ["function", "n_train"]
    rows = []
    for (fn, n), cell in chosen.groupby(keys):
        by = {m: g.sort_values("seed") for m, g in cell.groupby("method")}
        row = {"function": fn, "n_train": int(n), **{m: float(g.test_mse.median()) for m, g in by.items()},
               "Sobolev's derivative share": float(by["sobolev"].grad_share.median())}  # fmt: skip
        for a, b in PL_PAIRS:
            r = paired_ratio(by[a].test_mse.to_numpy(), by[b].test_mse.to_numpy())
            row[f"{a} / {b}"], row[f"{a} / {b} verdict"] = r.estimate, r.verdict
        rows.append(row)
    table = pd.DataFrame(rows).set_index(keys)
    cells = len(table)
    decided = {f"{a} / {b}": {v: int((table[f"{a} / {b} verdict"] == v).sum()) for v in (WIN, LOSS, UNDECIDED)}
               for a, b in PL_PAIRS}  # fmt: skip
    share = float(chosen[chosen.method == "sobolev"].grad_share.median())
    dominates = bool((table["Sobolev's derivative share"] > 0.5).all())
    ratios = table[[f"{a} / {b}" for a, b in PL_PAIRS]].reset_index().to_dict("records")
    m = {"decided": decided, "cells": cells, "sobolev_grad_share": share, "ratios": ratios}
    wins = {k: v[WIN] for k, v in decided.items()}
    return Part("pl_networks", m, table, {"pl_networks": partial(plots.pl_networks, chosen)}, runs=chosen, conclusions=[
        "Sobolev (λ = 1) is decidedly better than regular (paired interval below 1) in a majority of cells: "
        f"{2 * wins['sobolev / regular'] > cells}",
        "the balanced loss (derivative terms scaled to the value term's) is decidedly better than regular in a "
        f"majority of cells: {2 * wins['balanced / regular'] > cells}",
        f"the derivative term dominates Sobolev's final training loss in every cell (median share above one half): "
        f"{dominates}",
        f"the balanced loss decidedly beats plain Sobolev in a majority of cells: "
        f"{2 * wins['balanced / sobolev'] > cells}",
    ])  # fmt: skip


def pl_networks_result(part: Part) -> str:
    """The ReLU networks' result in one sentence, from ``part``'s metrics: each pair's won / lost /
    undecided cells and its largest and smallest geometric-mean ratio over the cells."""
    m = part.metrics
    said = []
    for a, b in PL_PAIRS:
        key = f"{a} / {b}"
        ratios = [r[key] for r in m["ratios"]]
        d = m["decided"][key]
        spread = f"{min(ratios):.3g}× to {max(ratios):.3g}×"
        said.append(f"{key}: won {d[WIN]}, lost {d[LOSS]}, undecided {d[UNDECIDED]} of {m['cells']} cells "
                    f"(geometric-mean paired ratio of test MSE from {spread})")  # fmt: skip
    return "; ".join(said) + "."


def run(cfg: TheoryConfig, progress: bool | TextIO = False) -> Result:
    """Every part of Section 3, in the notebook's order (each computes its table, metrics and
    conclusions; nothing is drawn here)."""
    parts = [figure2_left(), proposition1(cfg), proposition3(), polynomials(cfg), theorem2(cfg), *identification(cfg),
             pl_networks(cfg, progress)]  # fmt: skip
    return Result(cfg, {p.key: p for p in parts})


def claims(result: Result) -> list[str]:
    """Every part's printed conclusions (each ends in the computed ``True`` / ``False`` it states)."""
    return [c for part in result.parts.values() for c in part.conclusions]


def metrics(result: Result) -> dict:
    """``metrics.json``: every part's metrics under its key."""
    return {key: part.metrics for key, part in result.parts.items()}


def save(result: Result, output_dir: str | Path | None) -> None:
    """Write the stage's outputs (:data:`~sobolev.theory.config.OUTPUTS`) into ``output_dir``:
    ``metrics.json``, ``<key>_runs.csv`` for each part with per-seed runs (every decided cell can be
    rechecked) and every figure, checked, as ``figures/<name>.png`` (``None``: check the figures only)."""
    if output_dir is None:
        return save_all(figures(result), None)
    out = Path(output_dir)
    for key, part in result.parts.items():
        if part.runs is not None:
            atomic_write_text(out / f"{key}_runs.csv", part.runs.to_csv(index=False))
    atomic_write_json(out / "metrics.json", metrics(result))
    save_all(figures(result), out)


def readme_blocks(m: dict) -> dict[str, str]:
    """The README blocks of Section 3, by name."""
    return {"theory": readme_block(m)}


def readme_block(m: dict) -> str:
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
            f"{shifted['least possible error']:.6f} (Euler-Lagrange, ±{shifted['floor discretisation error']:.0e}); "
            f"the trained network reaches {shifted['network error']:.6f} (not below the floor beyond numerical "
            f"error: {above_floor(shifted)})."
            " With g = f′: "
            f"{exact['least possible error']:.1g} and {exact['network error']:.1g}.",
            f"* Random points to identify a PL function, values only / with gradients: {ratios}.",
            "* ReLU networks on random PL targets (paired seeds; won / lost / undecided of "
            f"{nets['cells']} cells): "
            + "; ".join(f"{k}: {v[WIN]} / {v[LOSS]} / {v[UNDECIDED]}" for k, v in nets["decided"].items())
            + f". The derivative term is {nets['sobolev_grad_share']:.1%} of Sobolev's final training loss (median).",
        ]
    )
