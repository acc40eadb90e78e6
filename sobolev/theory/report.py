"""Section 3's report: each claim of the theory computed into a :class:`Part` (its table, figure,
metrics and the conclusions it prints), and the metrics file.

The notebook calls one function per claim and shows the part; nothing numeric is computed there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import matplotlib.pyplot as plt
import pandas as pd
import torch

from sobolev.common import compare
from sobolev.common.plotting import error_by_size, save, style
from sobolev.common.stats import LOSS, UNDECIDED, WIN, paired_ratio
from sobolev.common.utils import atomic_write_json, atomic_write_text, pick_device
from sobolev.core.derivatives import input_gradient
from sobolev.theory import compute as T
from sobolev.theory.config import TheoryConfig


@dataclass
class Part:
    """One computed claim: ``metrics`` (stored under ``key`` in ``metrics.json``), an optional
    ``table`` to display, ``figures`` by file name, ``conclusions`` (printed, checked by nbval) and
    ``runs``: per-seed results, written beside ``metrics.json`` as ``<key>_runs.csv`` so that every
    decided cell can be rechecked."""

    key: str
    metrics: dict | list
    table: pd.DataFrame | None = None
    figures: dict[str, plt.Figure] = field(default_factory=dict)
    conclusions: list[str] = field(default_factory=list)
    runs: pd.DataFrame | None = None


def above_floor(row: dict) -> bool:
    """Theorem 2: the trained network's Sobolev error is not below the least possible one beyond numerical
    error (the floor's discretisation error plus the network's quadrature error): the one tolerance used."""
    tol = row["floor discretisation error"] + row["network quadrature error"]
    return bool(row["network error"] - row["least possible error"] > -tol)


def figure2_left() -> Part:
    """Figure 2 (left): PL functions consistent with 3 values, with and without slopes."""
    style()
    knots = torch.tensor([0.0, 1.0, 2.0, 3.0])
    target = torch.tensor([0.0, 2.0, 1.0, 3.0], dtype=torch.float64)
    x_train = torch.tensor([0.4, 1.5, 2.7])
    y_train = T.pl_rows(knots, x_train) @ target
    dy_train = T.pl_rows(knots, x_train, derivative=True) @ target
    values_only = T.pl_family(knots, x_train, y_train)
    with_slopes = T.pl_family(knots, x_train, y_train, dy_train)

    fig, axes = plt.subplots(3, 1, figsize=(5, 6), sharex=True)
    axes[0].plot(knots, target, "k-", label="target")
    for z, line in ((-1.5, "C0--"), (1.5, "C1--")):
        axes[1].plot(knots, values_only.member([z]), line, label=f"consistent member z={z}")
    axes[2].plot(knots, with_slopes.particular, "C2-", label="unique fit (values + slopes)")
    for ax in axes:
        ax.plot(x_train, y_train, "ko", label="training points")
        ax.legend(fontsize=8, loc="upper left")
    for x0, y0, s0 in zip(x_train, y_train, dy_train, strict=True):
        axes[2].plot([x0 - 0.25, x0 + 0.25], [y0 - 0.25 * s0, y0 + 0.25 * s0], "r-", lw=3)
    for ax in axes:
        ax.set_ylabel("f(x)")
    axes[2].set_xlabel("x (PL knots at 0, 1, 2, 3; red: the training slopes)")
    axes[0].set_title("Figure 2 (left), computed")
    m = {
        "values_only_dimension": values_only.dimension,
        "with_slopes_dimension": with_slopes.dimension,
        "with_slopes_error": float((with_slopes.particular - target).abs().max()),
    }
    return Part("figure2_left", m, figures={"fig2_left": fig}, conclusions=[
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
    style()
    recovered = []
    for mu, var, x0 in [(2.0, 1.0, 0.3), (-1.0, 0.25, 0.0), (0.5, 4.0, 3.0)]:
        xs = torch.tensor([x0], dtype=torch.float64, requires_grad=True)
        alpha = T.gaussian_pdf(xs, mu, var)
        (beta,) = torch.autograd.grad(alpha.sum(), xs)
        mu_hat, var_hat = T.gaussian_from_value_and_slope(x0, float(alpha.detach()), float(beta))
        recovered.append(max(abs(mu_hat - mu), abs(var_hat - var)))
    mu2, var2 = T.gaussian_through(2.0, 1.0, 0.0, 3.0, guess=(3.0, 1.5))
    grid = torch.linspace(-2, 7, 400, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(grid, T.gaussian_pdf(grid, 2.0, 1.0), label="N(2, 1)")
    ax.plot(grid, T.gaussian_pdf(grid, mu2, var2), label=f"N({mu2:.3f}, {var2:.3f})")
    ends = torch.tensor([0.0, 3.0], dtype=torch.float64)
    ax.plot([0, 3], T.gaussian_pdf(ends, 2.0, 1.0), "ko", label="equal values")
    ax.set_xlabel("x")
    ax.set_ylabel("density p(x)")
    ax.set_title("Equal values at x = 0 and 3: values alone do not identify a Gaussian", fontsize=9)
    ax.legend()
    m = {"max_recovery_error": max(recovered), "second_mu": mu2, "second_var": var2}
    return Part("proposition3_gaussian", m, figures={"prop3_gaussians": fig}, conclusions=[
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
    style()
    f = torch.sin
    pairs = {"g = f′": torch.cos, "g = f′ + 0.5": lambda x: torch.cos(x) + 0.5}
    rows = []
    fig, ax = plt.subplots(1, 2, figsize=(10, 3))
    for k, (label, g) in enumerate(pairs.items()):
        floor, xs, h_best, floor_err = T.sobolev_floor(f, g, 0.0, 2 * math.pi)
        net, loss, loss_err, sup_v, sup_d = T.fit_sobolev_1d(f, g, 0.0, 2 * math.pi, cfg.thm2_steps, cfg.thm2_hidden)
        rows.append({"pair": label, "least possible error": floor, "floor discretisation error": floor_err,
                     "network error": loss, "network quadrature error": loss_err,
                     "sup |h − f|": sup_v, "sup |h′ − g|": sup_d})  # fmt: skip
        with torch.no_grad():
            # The best h drawn wide and pale underneath, the network thin on top: both stay visible.
            ax[k].plot(xs, f(xs), "k-", lw=1, label="f")
            ax[k].plot(xs, h_best, "-", color="C2", lw=5, alpha=0.35, label="best h (least squares)")
            ax[k].plot(xs, net(xs.unsqueeze(1)), "--", color="C1", lw=1.5, label="trained network", zorder=3)
        ax[k].set_title(label)
        ax[k].set_xlabel("x")
        ax[k].set_ylabel("value")
        ax[k].legend(fontsize=8)
    table = pd.DataFrame(rows)
    consistent, shifted = table.iloc[0], table.iloc[1]
    return Part("theorem2", table.to_dict("records"), table, {"theorem2": fig}, conclusions=[
        f"g ≠ f′: least possible Sobolev error > 0.05: {shifted['least possible error'] > 0.05}; the network's "
        f"error is not below it beyond numerical error: {above_floor(shifted.to_dict())}",
        "g = f′: least possible error ≈ 0, and the network's error is below 0.05: "
        f"{bool(consistent['least possible error'] < 1e-4 and consistent['network error'] < 0.05)}",
    ])  # fmt: skip


def identification(cfg: TheoryConfig) -> tuple[Part, Part]:
    """Random points needed to identify PL functions in d dimensions (values vs with gradients),
    and the fraction identified at parameters / (d + 1) points (the rank curves)."""
    style()
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

    fig, axes = plt.subplots(1, len(cfg.meshes), figsize=(4 * len(cfg.meshes), 3), squeeze=False)
    early = {}
    for ax, (d, m) in zip(axes[0], cfg.meshes, strict=True):
        mesh = T.KuhnMesh(d, m)
        fractions = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 3, 4)
        counts = sorted({max(1, round(mesh.n_vertices * f)) for f in fractions})
        for w, label in ((False, "values"), (True, "values + gradients")):
            ranks = torch.tensor(
                [T.rank_curve(mesh, w, counts, seed=s) for s in range(cfg.identification_seeds)], dtype=torch.float64
            )
            ax.plot(counts, ranks.mean(0) / mesh.n_vertices, "o-", label=label)
        n_early = math.ceil(mesh.n_vertices / (d + 1))
        early[d] = [T.rank_curve(mesh, w, [n_early])[0] / mesh.n_vertices for w in (False, True)]
        ax.set_xscale("log")
        ax.set_title(f"continuous PL, d={d} ({mesh.n_vertices} parameters)")
        ax.set_xlabel("random points")
    axes[0, 0].set_ylabel("fraction identified (rank / parameters)")
    axes[0, 0].legend(fontsize=8)
    ind, con = summary.loc["independent pieces"], summary.loc["continuous"]
    counts_part = Part("identification", summary.reset_index().to_dict("records"), summary, conclusions=[
        "independent pieces: derivatives always cut the points needed, never by more than d + 1: "
        f"{bool(((ind.ratio > 1) & (ind.ratio <= ind['d + 1'])).all())}",
        f"continuous PL: full identification needs no more points with gradients: {bool((con.ratio >= 1).all())}",
        "continuous PL: with parameters/(d+1) points, gradients pin down more of the function in every dimension: "
        f"{all(v[1] > v[0] for v in early.values())}",
    ])  # fmt: skip
    early_metrics = {f"d{d}": {"values": v[0], "values_gradients": v[1]} for d, v in early.items()}
    return counts_part, Part("identification_early", early_metrics, figures={"identification_rank": fig})


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
    fig = error_by_size(chosen, "test_mse", "ReLU networks on random PL targets: test MSE, every seed (median bar)")
    cells = len(table)
    decided = {f"{a} / {b}": {v: int((table[f"{a} / {b} verdict"] == v).sum()) for v in (WIN, LOSS, UNDECIDED)}
               for a, b in PL_PAIRS}  # fmt: skip
    share = float(chosen[chosen.method == "sobolev"].grad_share.median())
    dominates = bool((table["Sobolev's derivative share"] > 0.5).all())
    ratios = table[[f"{a} / {b}" for a, b in PL_PAIRS]].reset_index().to_dict("records")
    m = {"decided": decided, "cells": cells, "sobolev_grad_share": share, "ratios": ratios}
    wins = {k: v[WIN] for k, v in decided.items()}
    return Part("pl_networks", m, table, {"pl_networks": fig}, runs=chosen, conclusions=[
        "Sobolev (λ = 1) is decidedly better than regular (paired interval below 1) in a majority of cells: "
        f"{2 * wins['sobolev / regular'] > cells}",
        "the balanced loss (derivative terms scaled to the value term's) is decidedly better than regular in a "
        f"majority of cells: {2 * wins['balanced / regular'] > cells}",
        f"the derivative term dominates Sobolev's final training loss in every cell (median share above one half): "
        f"{dominates}",
        f"the balanced loss decidedly beats plain Sobolev in a majority of cells: "
        f"{2 * wins['balanced / sobolev'] > cells}",
    ])  # fmt: skip


def save_figures(part: Part, output_dir: str | Path | None) -> None:
    """Write ``part``'s figures as ``<output_dir>/figures/<name>.png`` (nothing when ``None``)."""
    for name, fig in part.figures.items():
        save(fig, None if output_dir is None else Path(output_dir) / "figures" / f"{name}.png")


def write_metrics(parts: list[Part], output_dir: str | Path) -> Path:
    """``metrics.json``: every part's metrics under its key; and ``<key>_runs.csv`` for each part with runs."""
    path = Path(output_dir) / "metrics.json"
    for p in parts:
        if p.runs is not None:
            atomic_write_text(Path(output_dir) / f"{p.key}_runs.csv", p.runs.to_csv(index=False))
    atomic_write_json(path, {p.key: p.metrics for p in parts})
    return path


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
