"""``sobolev.fit`` against JENN 2.1.1 (Jacobian-enhanced neural networks), the library a user
would otherwise pick, on the same samples, in one run.

    pip install -e ".[bench]"        # JENN: a benchmark-only extra, never a runtime dependency
    python benchmarks/bench_fit_vs_jenn.py                      # the full table (slow: JENN)
    python benchmarks/bench_fit_vs_jenn.py --sizes 20 100 --seeds 2 --functions rosenbrock

Functions come from the SFU library's families (``FUNCTIONS`` below: the paper's 2-D ones and
their d-dimensional forms, d = 2, 5 and 10). Per function, size and seed, both libraries get the
same ``n`` uniform points (values, and derivatives when ``with``), and are scored on 5 000 other
uniform points by test MSE / Var(f). JENN runs as its documentation shows:
``NeuralNet([d, 16, 16, 1]).fit(x, y, dydx, is_normalize=True, gamma=1 or 0, max_iter=2000)``;
``sobolev.fit`` at its defaults. Both on 2 threads (``--threads``), one fit at a time.
Writes a CSV of every fit and prints the median table.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

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


def sample(fn: Function, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).uniform(fn.low, fn.high, (n, fn.dim))
    return x, fn.value(x), fn.grad(x)


def fit_jenn(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    import jenn

    model = jenn.NeuralNet([x.shape[1], 16, 16, 1])
    dydx = None if g is None else g.T[None]
    model.fit(x.T, y[None], dydx, is_normalize=True, gamma=1.0 if g is not None else 0.0, max_iter=2000,
              random_state=seed)  # fmt: skip
    return lambda xt: model.predict(xt.T)[0]


def fit_ours(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    model = sobolev.fit(x, y, g, seed=seed * 1000)
    return model.predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[20, 100, 1000, 10000])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--labels", nargs="+", default=["with", "without"], choices=["with", "without"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--csv", default="benchmarks/results-fit-vs-jenn.csv")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from matmul_gflops import gflops

    speed = gflops(1)
    print(f"float32 matmul: {speed:.0f} GFLOP/s per thread; {args.threads} threads for every fit")
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.functions:
        fn = FUNCTIONS[name]
        xt = np.random.default_rng(10**6).uniform(fn.low, fn.high, (args.n_test, fn.dim))
        yt = fn.value(xt)
        var = float(yt.var())
        for n in args.sizes:
            for seed in range(args.seeds):
                x, y, g = sample(fn, n, seed)
                for labels in args.labels:
                    for library, fitter in (("sobolev", fit_ours), ("jenn", fit_jenn)):
                        start = time.perf_counter()
                        predict = fitter(x, y, g if labels == "with" else None, seed)
                        seconds = time.perf_counter() - start
                        nmse = float(np.mean((predict(xt) - yt) ** 2)) / var
                        rows.append(dict(function=name, dim=fn.dim, n=n, seed=seed, derivatives=labels,
                                         library=library, nmse=nmse if math.isfinite(nmse) else math.inf,
                                         seconds=seconds, gflops_per_thread=round(speed)))  # fmt: skip
                        print(f"{name} n={n} seed={seed} {labels} {library}: nmse {nmse:.3g} in {seconds:.2f} s",
                              flush=True)
                pd.DataFrame(rows).to_csv(args.csv, index=False)
    table = fit_comparison(pd.DataFrame(rows))
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
