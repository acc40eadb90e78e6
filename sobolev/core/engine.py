"""From samples to trained ensembles' inputs and scores: the steps every regression-style run shares.

Sections 3 (``theory``'s PL networks), 4.1 (``regression``), 5.2 (``trust``) and 5.3
(``features``) and :func:`sobolev.fit` all turn samples of a function into one stacked training
set per model, train a batched ensemble on it with :func:`sobolev.core.training.train_ensemble`
(or the linearised trainer, or :func:`sobolev.core.lbfgs.train_lbfgs`), and score each model on
the function's own scale. Those steps live here, once (a section with its own targets, such as
Section 3's random piecewise-linear ones, hands in :class:`~sobolev.core.samples.Sample` objects):

* :func:`evaluation_sets`: the shared validation and test samples and ``Var f`` per function;
* :func:`mean_squares`: ``E f²`` per function (the divergence scale);
* :func:`training_sets`: each model's training sample (cached by function, size and seed),
  its :class:`~sobolev.core.samples.Normaliser` and the stacked normalised ``x, t, G``;
* :func:`stack_normalised`: the stacking alone, for samples a caller made itself;
* :func:`errors`: per-model value and gradient MSE, mapped back to the function's scale;
* :func:`convergence_steps`: the updates at which the convergence check reads the objective.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from sobolev.core.functions import BenchmarkFunction
from sobolev.core.samples import Normaliser, Sample, make_sample

#: ``(function, n_train, seed) -> Sample``: a training set is a pure function of these.
SampleCache = dict[tuple[str, int, int], Sample]


def evaluation_sets(
    fns: dict[str, BenchmarkFunction], n_test: int, n_val: int | None = None
) -> tuple[dict[str, Sample], dict[str, Sample], dict[str, float]]:
    """Per function: the test sample (``n_test`` points, seed 0), the validation sample (``n_val``;
    empty dict when ``None``) and the function's variance on its domain, estimated on the test points."""
    test = {name: make_sample(fn, n_test, 0, "test") for name, fn in fns.items()}
    val = {} if n_val is None else {name: make_sample(fn, n_val, 0, "val") for name, fn in fns.items()}
    variance = {name: float(s.y.double().var()) for name, s in test.items()}
    return test, val, variance


def mean_squares(samples: dict[str, Sample]) -> dict[str, float]:
    """``E f²`` per function on its sample's points: the error of predicting 0, the scale
    :func:`sobolev.common.compare.is_diverged` measures a run's validation error against."""
    return {name: float(s.y.double().pow(2).mean()) for name, s in samples.items()}


def stack_normalised(samples: list[Sample], norms: list[Normaliser]) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised inputs ``(M, N, d)``, values ``(M, N)`` and derivatives ``(M, N, d)``, one row per model."""
    pairs = list(zip(samples, norms, strict=True))
    x = torch.stack([nm.x(s.x) for s, nm in pairs])
    return x, torch.stack([nm.y(s.y) for s, nm in pairs]), torch.stack([nm.g(s.g) for s, nm in pairs])


def training_sets(
    rows: Iterable[Any], fns: dict[str, BenchmarkFunction], cache: SampleCache | None = None
) -> tuple[list[Sample], list[Normaliser], Tensor, Tensor, Tensor]:
    """The training sets of ``rows`` (each with ``function``, ``n_train``, ``seed`` and
    ``normalisation`` attributes, e.g. ``DataFrame.itertuples()``), regenerated from function, size
    and seed (and kept in ``cache``), their normalisers, and :func:`stack_normalised`'s tensors."""
    cache = {} if cache is None else cache
    samples, norms = [], []
    for r in rows:
        key = (r.function, int(r.n_train), int(r.seed))
        if key not in cache:
            cache[key] = make_sample(fns[r.function], int(r.n_train), int(r.seed))
        samples.append(cache[key])
        norms.append(Normaliser.fit(r.normalisation, fns[r.function], cache[key]))
    return samples, norms, *stack_normalised(samples, norms)


def errors(model: Any, samples: list[Sample], norms: list[Normaliser]) -> tuple[Tensor, Tensor]:
    """Per-model value MSE and gradient MSE (summed over inputs), each ``(M,)`` in float64 on the
    CPU, on the function's own scale: model ``i`` is evaluated on ``samples[i]`` through ``norms[i]``.
    ``model`` is any batched model with ``params["W1"]`` and ``predict(x (M, B, d))``."""
    p = model.params["W1"]
    y, g = model.predict(torch.stack([nm.x(s.x) for s, nm in zip(samples, norms, strict=True)]).to(p))
    y = torch.stack([nm.y_back(v.cpu().double()) for v, nm in zip(y, norms, strict=True)])
    g = torch.stack([nm.g_back(v.cpu().double()) for v, nm in zip(g, norms, strict=True)])
    ty, tg = torch.stack([s.y for s in samples]).double(), torch.stack([s.g for s in samples]).double()
    return (y - ty).pow(2).mean(1), (g - tg).pow(2).sum(2).mean(1)


def convergence_steps(steps: int) -> tuple[int, int]:
    """The updates after which the whole-set objective is read for the convergence check: 90% and 100%."""
    return max(1, round(0.9 * steps)), steps
