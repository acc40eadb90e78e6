"""``sobolev.fit`` on data that broke it: an almost inert input, a column of zero derivatives, JENN's own 4-point
test, and held-out functions where derivatives used to hurt. Paired seeds, the same samples for every fitter.

    pip install -e ".[bench]"
    python benchmarks/fit_hard_cases.py                      # every case, 5 seeds (a few minutes)
    python benchmarks/fit_hard_cases.py --cases inert --seeds 3

Writes ``benchmarks/results-fit-hard-cases.csv`` (one row per fit) and prints each case's table: test MSE / Var f
(and for JENN's test R² of values and derivatives) per fitter, median over seeds with the range.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

import sobolev

Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray | None, int], Callable[[np.ndarray], tuple]]


def ours(x, y, g, seed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = sobolev.fit(x, y, g, seed=seed * 1000)
    model.warned = "; ".join(sorted({str(w.message).splitlines()[0] for w in caught if "Fit" in w.category.__name__}))
    return lambda xt: (model.predict(xt), model.predict_derivatives(xt)), model


def ours_values(x, y, g, seed):
    return ours(x, y, None, seed)


def jenn(x, y, g, seed):
    import jenn as jn

    model = jn.NeuralNet([x.shape[1], 16, 16, 1])
    model.fit(x.T, y[None], None if g is None else g.T[None], is_normalize=True, gamma=1.0 if g is not None else 0.0,
              max_iter=2000, random_state=seed)  # fmt: skip

    def predict(xt):
        value = model.predict(xt.T)[0]
        return value, model.predict_partials(xt.T)[0].T

    return predict, None


FITTERS: dict[str, Fitter] = {"fit(x, y, dydx)": ours, "fit(x, y)": ours_values, "JENN with dydx": jenn}


def inert(c: float) -> tuple[Callable, Callable, float, float, int]:
    """``sin(2 x₀) + c x₁`` on [-2, 2]²: the second input barely matters."""
    return (lambda x: np.sin(2 * x[:, 0]) + c * x[:, 1],
            lambda x: np.stack([2 * np.cos(2 * x[:, 0]), np.full(len(x), c)], 1), -2.0, 2.0, 2)  # fmt: skip


def michalewicz(d: int, m: int = 10):
    i = np.arange(1, d + 1)

    def f(x):
        return -(np.sin(x) * np.sin(i * x**2 / np.pi) ** (2 * m)).sum(1)

    def g(x):
        s = np.sin(i * x**2 / np.pi)
        ds = np.cos(i * x**2 / np.pi) * 2 * i * x / np.pi
        return -(np.cos(x) * s ** (2 * m) + np.sin(x) * 2 * m * s ** (2 * m - 1) * ds)

    return f, g, 0.0, math.pi, d


def squares_and_sines(d: int):
    return (lambda x: (x**2 + np.sin(3 * x)).sum(1), lambda x: 2 * x + 3 * np.cos(3 * x), -2.0, 2.0, d)


def case_rows(case: str, name: str, spec, n: int, seeds: int, fitters: dict[str, Fitter], n_test: int = 5000,
              edit: Callable | None = None) -> list[dict]:  # fmt: skip
    f, g, low, high, d = spec
    xt = np.random.default_rng(10**6).uniform(low, high, (n_test, d))
    yt, gt = f(xt), g(xt)
    rows = []
    for seed in range(seeds):
        x = np.random.default_rng(seed).uniform(low, high, (n, d))
        y, dydx = f(x), g(x)
        if edit is not None:
            y, dydx = edit(x, y, dydx)
        for label, fitter in fitters.items():
            start = time.perf_counter()
            predict, model = fitter(x, y, dydx, seed)
            seconds = time.perf_counter() - start
            value, deriv = predict(xt)
            rows.append({"case": case, "function": name, "n": n, "seed": seed, "fitter": label,
                         "nmse": float(np.mean((value - yt) ** 2) / yt.var()),
                         "r2_value": 1 - float(np.mean((value - yt) ** 2) / yt.var()),
                         "r2_derivatives": 1 - float(np.mean((deriv - gt) ** 2) / gt.var()),
                         "seconds": seconds, "model": repr(model) if model is not None else "",
                         "warned": getattr(model, "warned", "")})  # fmt: skip
    return rows


def jenn_four_points(seeds: int) -> list[dict]:
    """JENN's own unit test: x sin x from 4 evenly spaced points on [-π, π]; R² > 0.9 for values and derivatives on
    30 random points."""
    f = lambda x: (x * np.sin(x))[:, 0]  # noqa: E731
    g = lambda x: np.sin(x) + x * np.cos(x)  # noqa: E731
    x = np.linspace(-np.pi, np.pi, 4)[:, None]
    rows = []
    for seed in range(seeds):
        xt = np.random.default_rng(seed).uniform(-np.pi, np.pi, (30, 1))
        for label, fitter in {"fit(x, y, dydx)": ours, "JENN with dydx": jenn}.items():
            predict, model = fitter(x, f(x), g(x), seed)
            value, deriv = predict(xt)
            rows.append({"case": "jenn_4_points", "function": "x sin x", "n": 4, "seed": seed, "fitter": label,
                         "r2_value": 1 - float(np.mean((value - f(xt)) ** 2) / f(xt).var()),
                         "r2_derivatives": 1 - float(np.mean((deriv.reshape(-1) - g(xt)[:, 0]) ** 2)
                                                     / g(xt)[:, 0].var()),
                         "model": repr(model) if model is not None else "",
                         "warned": getattr(model, "warned", "")})  # fmt: skip
    return rows


def zero_column(x, y, dydx):
    """The exact labels of sin(2 x₀): the second column is exactly zero."""
    return y, dydx


def one_tiny_label(x, y, dydx):
    """The same, one zero changed to 1e-6."""
    dydx = dydx.copy()
    dydx[0, 1] = 1e-6
    return y, dydx


def inconsistent_zero(x, y, dydx):
    """y = x₀ with every derivative label 0: labels that contradict the values."""
    return x[:, 0].copy(), np.zeros_like(dydx)


def run(cases: list[str], seeds: int) -> pd.DataFrame:
    rows: list[dict] = []
    if "inert" in cases:
        for c in (0.0, 1e-6, 1e-4, 1e-2, 1.0):
            for n in (20, 100):
                rows += case_rows("inert", f"sin 2x0 + {c:g} x1", inert(c), n, seeds, FITTERS)
    if "zero_column" in cases:
        for label, edit in (("exact (column 1 all 0)", zero_column), ("one 0 → 1e-6", one_tiny_label),
                            ("y = x0, every label 0", inconsistent_zero)):  # fmt: skip
            rows += case_rows("zero_column", label, inert(0.0), 100, seeds, FITTERS, edit=edit)
    if "held_out" in cases:
        for name, spec, sizes in (("michalewicz_5d", michalewicz(5), (20, 100)),
                                  ("squares_sines_10d", squares_and_sines(10), (20, 100))):  # fmt: skip
            for n in sizes:
                rows += case_rows("held_out", name, spec, n, seeds, FITTERS)
    if "jenn" in cases:
        rows += jenn_four_points(seeds)
    return pd.DataFrame(rows)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Median [min, max] over seeds per case, function, size and fitter."""
    out = []
    for keys, g in runs.groupby(["case", "function", "n", "fitter"], sort=False):
        row = dict(zip(["case", "function", "n", "fitter"], keys, strict=True))
        for col in ("nmse", "r2_value", "r2_derivatives"):
            if col in g and g[col].notna().any():
                row[col] = f"{g[col].median():.3g} [{g[col].min():.3g}, {g[col].max():.3g}]"
        if "r2_derivatives" in g and g.case.iloc[0] == "jenn_4_points":
            row["passes (R² > 0.9 both)"] = f"{int(((g.r2_value > 0.9) & (g.r2_derivatives > 0.9)).sum())}/{len(g)}"
        if "warned" in g:
            row["FitWarning"] = f"{int((g.warned.fillna('') != '').sum())}/{len(g)}"
        out.append(row)
    return pd.DataFrame(out)


def with_against_without(runs: pd.DataFrame) -> pd.DataFrame:
    """Per case, function and size: ``fit(x, y, dydx)`` against ``fit(x, y)`` on the same samples, the paired
    ratio of test errors with its t interval (below 1: the derivatives helped) and its verdict."""
    from sobolev.common.stats import paired_ratio

    out = []
    if "nmse" not in runs:
        return pd.DataFrame(out)
    for keys, g in runs[runs.nmse.notna()].groupby(["case", "function", "n"], sort=False):
        wide = g.pivot_table(index="seed", columns="fitter", values="nmse", aggfunc="first")
        if {"fit(x, y, dydx)", "fit(x, y)"} <= set(wide.columns):
            iv = paired_ratio(wide["fit(x, y, dydx)"], wide["fit(x, y)"])
            out.append({**dict(zip(["case", "function", "n"], keys, strict=True)), "with / without": str(iv),
                        "derivatives": {"win": "help", "loss": "hurt"}.get(iv.verdict, "undecided")})  # fmt: skip
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["inert", "zero_column", "held_out", "jenn"],
                        choices=["inert", "zero_column", "held_out", "jenn"])  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", default="benchmarks/results-fit-hard-cases.csv")
    args = parser.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):  # every library on the same threads (torch's and every BLAS's)
        runs = run(args.cases, args.seeds)
    from bench_fit_vs_jenn import code_version

    runs["code"] = code_version()  # which sobolev.fit made these rows
    runs.to_csv(args.csv, index=False)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.max_rows", 500):
        print(summary(runs).to_string(index=False))
        print(with_against_without(runs).to_string(index=False))


if __name__ == "__main__":
    main()
