"""``sobolev.fit`` against the libraries its users would otherwise pick, on the same samples, in one run: JENN 2.1.1
(Jacobian-enhanced neural networks) and Gaussian processes (SMT's kriging on values, ``KRG``, and with gradients,
``GEKPLS``; GPyTorch's exact GP with derivative observations). Benchmark-only extras, never runtime dependencies.

    pip install -e ".[bench]"
    python benchmarks/bench_fit_vs_jenn.py                           # the full table, one thread (slow: hours)
    python benchmarks/bench_fit_vs_jenn.py --sizes 20 100 --seeds 2 --functions rosenbrock --libraries sobolev jenn
    python benchmarks/bench_fit_vs_jenn.py --variants 'lam=1:{"lam": 1.0}' --libraries sobolev jenn   # a frontier

Functions come from the SFU library's families (``FUNCTIONS`` below: the paper's 2-D ones and their d-dimensional
forms, d = 2, 5 and 10). Per function, size and seed, every library gets the same ``n`` uniform points (values, and
derivatives when ``with``), and is scored on 5 000 other uniform points by test MSE / Var(f); the fits of one seed
are interleaved, every library pinned to the same ``--threads`` (torch's threads and, through threadpoolctl, every
BLAS's). JENN runs as its documentation shows: ``NeuralNet([d, 16, 16, 1]).fit(x, y, dydx, is_normalize=True,
gamma=1 or 0, max_iter=2000)``; ``sobolev.fit`` at its defaults (``--variants`` adds others, each named); the GPs as
``benchmarks/gp_fitters.py`` describes. A library is not run where it is impractical: GPyTorch beyond
``GPYTORCH_MAX_LABELS`` observations (it and GEKPLS: n·(d + 1) values and gradients), kriging beyond
``--gp-max-points``, and any library at a larger size
once one of its fits took more than ``--max-seconds`` (the CSV's ``skipped`` rows say which and why).
Writes a CSV of every fit and prints the median table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import sobolev
from sobolev.readme import fit_comparison


@dataclass(frozen=True)
class Function:
    """A test function: values ``(N,)`` and gradients ``(N, d)`` of numpy points ``(N, d)`` on a box."""

    name: str
    dim: int
    low: float
    high: float
    value: Callable[[np.ndarray], np.ndarray]
    grad: Callable[[np.ndarray], np.ndarray]


def _rosenbrock(x: np.ndarray) -> np.ndarray:
    return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2).sum(1)


def _rosenbrock_grad(x: np.ndarray) -> np.ndarray:
    g = np.zeros_like(x)
    a, b = x[:, :-1], x[:, 1:]
    g[:, :-1] += -400 * a * (b - a**2) - 2 * (1 - a)
    g[:, 1:] += 200 * (b - a**2)
    return g


def _styblinski_tang(x: np.ndarray) -> np.ndarray:
    return 0.5 * (x**4 - 16 * x**2 + 5 * x).sum(1)


def _styblinski_tang_grad(x: np.ndarray) -> np.ndarray:
    return 0.5 * (4 * x**3 - 32 * x + 5)


def _beale(x: np.ndarray) -> np.ndarray:
    a, b = x[:, 0], x[:, 1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def _beale_grad(x: np.ndarray) -> np.ndarray:
    a, b = x[:, 0], x[:, 1]
    u, v, w = 1.5 - a + a * b, 2.25 - a + a * b**2, 2.625 - a + a * b**3
    return np.stack([2 * u * (b - 1) + 2 * v * (b**2 - 1) + 2 * w * (b**3 - 1),
                     2 * u * a + 4 * v * a * b + 6 * w * a * b**2], 1)  # fmt: skip


def _dixon_price(x: np.ndarray) -> np.ndarray:
    i = np.arange(2, x.shape[1] + 1)
    return (x[:, 0] - 1) ** 2 + (i * (2 * x[:, 1:] ** 2 - x[:, :-1]) ** 2).sum(1)


def _dixon_price_grad(x: np.ndarray) -> np.ndarray:
    i = np.arange(2, x.shape[1] + 1)
    inner = 2 * x[:, 1:] ** 2 - x[:, :-1]
    g = np.zeros_like(x)
    g[:, 0] = 2 * (x[:, 0] - 1)
    g[:, :-1] += -2 * i * inner
    g[:, 1:] += 8 * i * inner * x[:, 1:]
    return g


def _trid(x: np.ndarray) -> np.ndarray:
    return ((x - 1) ** 2).sum(1) - (x[:, 1:] * x[:, :-1]).sum(1)


def _trid_grad(x: np.ndarray) -> np.ndarray:
    g = 2 * (x - 1)
    g[:, 1:] -= x[:, :-1]
    g[:, :-1] -= x[:, 1:]
    return g


FUNCTIONS = {
    f.name: f
    for f in (
        Function("rosenbrock", 2, -2, 2, _rosenbrock, _rosenbrock_grad),
        Function("beale", 2, -4.5, 4.5, _beale, _beale_grad),
        Function("styblinski_tang", 2, -5, 5, _styblinski_tang, _styblinski_tang_grad),
        Function("styblinski_tang_5d", 5, -5, 5, _styblinski_tang, _styblinski_tang_grad),
        Function("dixon_price_5d", 5, -10, 10, _dixon_price, _dixon_price_grad),
        Function("trid_10d", 10, -100, 100, _trid, _trid_grad),
        Function("rosenbrock_10d", 10, -2, 2, _rosenbrock, _rosenbrock_grad),
    )
}
LIBRARIES = ("sobolev", "jenn", "krg", "gekpls", "gpytorch")


def sample(fn: Function, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(fn.low, fn.high, (n, fn.dim))
    return x, fn.value(x), fn.grad(x)


def fit_jenn(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, seed: int) -> tuple[Callable, dict]:
    import jenn

    model = jenn.NeuralNet([x.shape[1], 16, 16, 1])
    dydx = None if g is None else g.T[None]
    model.fit(x.T, y[None], dydx, is_normalize=True, gamma=1.0 if g is not None else 0.0, max_iter=2000,
              random_state=seed)  # fmt: skip
    return (lambda xt: model.predict(xt.T)[0]), {}


def fit_ours(options: dict) -> Callable:
    def fit(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, seed: int) -> tuple[Callable, dict]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sobolev.FitWarning)
            model = sobolev.fit(x, y, g, seed=seed * 1000, **options)
        d = model.diagnostics
        its = model.info.get("iterations", [])
        extra = {"iterations": max(its) if its else math.nan, "members_at_cap": d.get("members_at_cap", 0),
                 "lam": (model.info.get("chosen_lam") or [model.recipe.lam if g is not None else 0.0])[0],
                 "train_r2": d.get("train_r2_values", [math.nan])[0],
                 "value_term": 1 - d.get("train_r2_values", [math.nan])[0]}  # fmt: skip
        return model.predict, extra

    return fit


def _gp(name: str) -> Callable:
    import gp_fitters

    fitter = {"krg": gp_fitters.fit_krg, "gekpls": gp_fitters.fit_gekpls, "gpytorch": gp_fitters.fit_gpytorch}[name]

    def fit(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, seed: int) -> tuple[Callable, dict]:
        return fitter(x, y, g, seed), {}

    return fit


def applicable(library: str, labels: str, n: int, dim: int, gp_max_points: int) -> str | None:
    """Why ``library`` is not run on this cell (``None``: it is)."""
    import gp_fitters

    if library == "krg" and labels == "with":
        return "KRG fits values only"
    if library in ("gekpls", "gpytorch") and labels == "without":
        return f"{library} is the gradient-enhanced GP; KRG is its values-only counterpart"
    if library in ("gpytorch", "gekpls") and n * (dim + 1) > gp_fitters.GPYTORCH_MAX_LABELS:
        return (f"a GP on {n * (dim + 1)} observations (values and gradients): beyond "
                f"{gp_fitters.GPYTORCH_MAX_LABELS}, minutes to hours per fit")  # fmt: skip
    if library in ("krg", "gekpls") and n > gp_max_points:
        return f"kriging on {n} points: beyond --gp-max-points {gp_max_points}"
    return None


def code_version() -> str:
    """The commit the fits ran at (short hash), with ``+changes`` where the code ``sobolev.fit`` runs (the package's
    ``__init__``, ``core`` and ``common``) differs from it: each CSV row says which ``sobolev.fit`` produced it."""
    import subprocess

    def git(*args: str) -> str:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short=7", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--", "sobolev/__init__.py", "sobolev/core", "sobolev/common")
    return head + ("+changes" if changed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[20, 100, 1000, 10000])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--labels", nargs="+", default=["with", "without"], choices=["with", "without"])
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    parser.add_argument(
        "--variants",
        nargs="*",
        default=[],
        help="more sobolev.fit settings, each 'name:{json options}' (its library: sobolev[name])",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--gp-max-points", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--csv", default="benchmarks/results-fit-vs-jenn.csv")
    args = parser.parse_args()
    from matmul_gflops import gflops
    from threadpoolctl import threadpool_limits

    speed, code = gflops(1), code_version()
    torch.set_num_threads(args.threads)
    print(f"float32 matmul: {speed:.0f} GFLOP/s per thread; {args.threads} thread(s) for every fit", flush=True)
    fitters: dict[str, Callable] = {}
    for library in args.libraries:
        fitters[library] = fit_ours({}) if library == "sobolev" else (fit_jenn if library == "jenn" else _gp(library))
    for spec in args.variants:
        name, options = spec.split(":", 1)
        fitters[f"sobolev[{name}]"] = fit_ours(json.loads(options))
    rows: list[dict] = []
    too_slow: dict[tuple[str, str], int] = {}  # (library, function) -> the size at which a fit took too long
    with threadpool_limits(args.threads):
        for name in args.functions:
            fn = FUNCTIONS[name]
            xt = np.random.default_rng(10**6).uniform(fn.low, fn.high, (args.n_test, fn.dim))
            yt = fn.value(xt)
            var = float(yt.var())
            for n in args.sizes:
                for seed in range(args.seeds):
                    x, y, g = sample(fn, n, seed)
                    for labels in args.labels:
                        for library, fitter in fitters.items():
                            base = dict(function=name, dim=fn.dim, n=n, seed=seed, derivatives=labels, library=library,
                                        gflops_per_thread=round(speed), threads=args.threads, code=code)  # fmt: skip
                            why = applicable(library.split("[")[0], labels, n, fn.dim, args.gp_max_points)
                            if why is None and (library, name) in too_slow and n > too_slow[(library, name)]:
                                why = f"a fit at n = {too_slow[(library, name)]} took over {args.max_seconds:g} s"
                            if why is not None:
                                if seed == 0:
                                    rows.append({**base, "skipped": why})
                                continue
                            start = time.perf_counter()
                            predict, extra = fitter(x, y, g if labels == "with" else None, seed)
                            seconds = time.perf_counter() - start
                            if seconds > args.max_seconds:
                                too_slow[(library, name)] = min(n, too_slow.get((library, name), n))
                            nmse = float(np.mean((predict(xt) - yt) ** 2)) / var
                            # the machine's 1-minute load average: a fit timed beside other work says so
                            rows.append({**base, "nmse": nmse if math.isfinite(nmse) else math.inf,
                                         "seconds": seconds, "load": round(os.getloadavg()[0], 2),
                                         **extra})  # fmt: skip
                            print(f"{name} n={n} seed={seed} {labels} {library}: nmse {nmse:.3g} in {seconds:.2f} s",
                                  flush=True)  # fmt: skip
                    pd.DataFrame(rows).to_csv(args.csv, index=False)
    runs = pd.DataFrame(rows)
    table = fit_comparison(runs)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
