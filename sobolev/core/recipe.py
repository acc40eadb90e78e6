"""How :func:`sobolev.fit` trains: the :class:`Recipe` (every field overridable) and the rules that choose it
from the data (:func:`choose_recipe`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from sobolev.core.inputs import check_number

#: Largest training set trained full-batch (by L-BFGS); beyond it, Adam on minibatches of :data:`MINIBATCH`.
FULL_BATCH_MAX = 512
MINIBATCH = 256
OPTIMISERS = ("lbfgs", "adam")
ADAM_STEPS = 3000
#: The derivative weights λ the fit chooses among by cross-validation (0: values only); see the README.
LAM_GRID = (0.0, 0.1, 1.0, 10.0)
FOLDS = 5
# Below this many points cross-validation scores extrapolation to the held-out ends, not the fit (on JENN's 4-point
# test every weight but 0 extrapolates wildly at the left-out end while fitting the interior best): the default
# weight is kept and the model says why.
MIN_SELECT_POINTS = 10


@dataclass(frozen=True)
class Recipe:
    """How :func:`sobolev.fit` trains. Defaults come from :func:`choose_recipe`.

    Attributes:
        models: ensemble members per output (their spread is the uncertainty; their mean the prediction).
        hidden, layers: width and depth of each tanh MLP.
        optimiser: ``"lbfgs"`` (full-batch L-BFGS in float64, :mod:`sobolev.core.lbfgs`: each
            member stops at its own plateau or at ``steps`` iterations) or ``"adam"`` (float32,
            minibatches, a fixed number of ``steps``).
        steps: Adam updates, or the most L-BFGS iterations; ``lr``: Adam's peak learning rate;
            ``warmup``: fraction of Adam's steps of linear warm-up, then a cosine decay to 0.
        batch_size: points per Adam update (``>= N``: full batch; L-BFGS is always full batch).
        lam: the derivative weight. Derivative labels are rescaled to the standardised data and their
            squared residuals divided by one scale shared by every input, the labels' mean square over
            all inputs (:func:`sobolev.core.fitting.balance`), so that with ``lam = 1`` the derivative
            terms of a model predicting zero slopes weigh ``D`` times the value term of a model predicting
            the mean, whatever the function's scale. When :func:`sobolev.fit` chooses ``lam`` (``select``),
            this is the chosen value.
        select: choose ``lam`` from the data among ``lam_grid`` (0 = values only) on held-out value errors, by
            ``folds``-fold cross-validation in the same batched run: ``lam`` stays unless another candidate is
            better by more than one standard error (:mod:`sobolev.core.selection`); ``sobolev.fit(..., lam=...)``
            turns it off.
        refit: with ``select``, the fitted ensemble is ``models`` members trained on every point at the chosen
            weight (trained beside the fold models, in the same run); ``False`` keeps the chosen weight's
            ``folds`` fold models instead (each trained on ``(folds - 1) / folds`` of the points; cheaper).
        selection_steps: L-BFGS only: the most iterations of a fold model. As soon as every fold model has stopped,
            the weight is chosen and the other candidates' members stop training (one run: the chosen members
            train on alone).
        lam_decay: Adam only: the derivative weight is multiplied by this per epoch (1: constant;
            0.95: Kissel & Diepold's schedule for estimated derivatives, trusted less as the
            values are fitted).
        converged: L-BFGS only: a member stops when its training objective (standardised units, about 1
            per term for the mean predictor) is below this, or when 50 iterations lowered it by less than
            0.1% (a plateau), or at ``steps``. The floor is far below any test error these models reach, so
            it ends only work that cannot change a prediction; both arms (with and without derivatives)
            stop by the same two rules.
        validation: fraction of points each member holds out (its own random split) to keep the
            weights of its best logged step (0: train on every point, keep the last weights).
        eval_every: steps between validation checks.
        seed: first member's seed (members use ``seed .. seed + models - 1``).
        device: ``cpu`` (the default: these networks are small, so a step costs its number of
            tensor operations and a GPU's launch latency would not pay), ``auto`` (CUDA when
            available) or any torch device string.
        threads: torch intra-op threads while fitting (0: leave the caller's setting).
    """

    models: int = 5
    hidden: int = 32
    layers: int = 2
    optimiser: str = "adam"
    steps: int = 1000
    lr: float = 0.02
    warmup: float = 0.05
    batch_size: int = FULL_BATCH_MAX
    lam: float = 1.0
    select: bool = True
    lam_grid: tuple[float, ...] = LAM_GRID
    folds: int = FOLDS
    refit: bool = True
    selection_steps: int = 150
    converged: float = 1e-8
    lam_decay: float = 1.0
    validation: float = 0.0
    eval_every: int = 50
    seed: int = 0
    device: str = "cpu"
    threads: int = 0

    def checked(self) -> Recipe:
        """A copy with every field checked, named in the error, before any training; numbers of any numeric
        type (numpy scalars included) become Python numbers."""
        v: dict[str, Any] = {}
        for name in ("models", "hidden", "layers", "steps", "batch_size", "eval_every", "selection_steps"):
            v[name] = check_number(name, getattr(self, name), 1, 1e9, integer=True)
        v["folds"] = check_number("folds", self.folds, 2, 100, integer=True)
        v["seed"] = check_number("seed", self.seed, 0, 2**62, integer=True)
        v["threads"] = check_number("threads", self.threads, 0, 4096, integer=True)
        v["lr"] = check_number("lr", self.lr, 1e-12, 10.0)
        v["warmup"] = check_number("warmup", self.warmup, 0.0, 0.5)
        v["lam"] = check_number("lam", self.lam, 0.0, 1e6)
        v["validation"] = check_number("validation", self.validation, 0.0, 0.5)
        v["converged"] = check_number("converged", self.converged, 0.0, 1.0)
        v["lam_decay"] = check_number("lam_decay", self.lam_decay, 1e-6, 1.0)
        for name in ("select", "refit"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")
            v[name] = bool(getattr(self, name))
        grid = self.lam_grid
        if isinstance(grid, str) or not hasattr(grid, "__len__") or not 1 <= len(grid) <= 20:
            raise ValueError(f"lam_grid: expected 1 to 20 derivative weights, e.g. {LAM_GRID}, got {grid!r}")
        values = tuple(check_number(f"lam_grid[{i}]", lam, 0.0, 1e6) for i, lam in enumerate(grid))
        if list(values) != sorted(set(values)):
            raise ValueError(f"lam_grid: expected distinct weights in increasing order, got {grid!r}")
        v["lam_grid"] = values
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser: expected one of {OPTIMISERS}, got {self.optimiser!r}")
        if self.optimiser == "lbfgs" and self.lam_decay != 1.0:
            raise ValueError(
                f"lam_decay: {self.lam_decay} needs optimiser='adam' (L-BFGS minimises one fixed objective)"
            )
        if self.optimiser == "lbfgs" and self.validation:
            raise ValueError(
                f"validation: {self.validation} needs optimiser='adam' (L-BFGS trains every point to a plateau; "
                "held-out early stopping is for noisy labels)"
            )
        check_device(self.device)
        return replace(self, **v)


def check_device(device: Any) -> torch.device:
    """``device`` as a torch device that exists here; a clear error otherwise (a CUDA device on a CPU-only
    build is refused here, not by an assertion deep inside torch)."""
    if not isinstance(device, str):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a torch device string, "
                         f"got {device!r}")  # fmt: skip
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"device: {device!r} is not a torch device ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r}, but this torch build or machine has no CUDA device; use 'cpu' or 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device: {device!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device: {device!r}, but MPS is not available here; use 'cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: {device!r} is not supported; use 'cpu', 'cuda', 'mps' or 'auto'")
    return dev


def choose_recipe(n: int, dim: int, derivatives: bool, noisy: bool = False) -> Recipe:
    """The default recipe for ``n`` points of ``dim`` inputs (rules measured in
    ``benchmarks/bench_fit_vs_jenn.py``; see the README).

    * Width from the data size: 16 units up to 200 points, 32 up to 2 000, 64 beyond (a wider
      net overfits small samples: on 100 points of a 10-D quadratic, 64 units gave 50× the
      error of 16).
    * Up to :data:`FULL_BATCH_MAX` exact points: full-batch L-BFGS in float64 until each member's
      training objective converges (a plateau, or below :attr:`Recipe.converged`; at most 1000
      iterations). On small smooth problems a quasi-Newton method follows narrow valleys (Dixon-Price,
      Rosenbrock) that Adam crosses slowly: on 100 points of the 5-D Dixon-Price (2 seeds), 1000 Adam
      steps left test error 0.11 and 0.09, 1000 L-BFGS iterations 0.015 and 0.042.
    * More points (or noisy labels): Adam on minibatches of :data:`MINIBATCH` (full batch up to
      512 noisy points), warm-up + cosine decay at peak rate 0.02 on standardised data, at least
      3000 steps and 20 epochs.
    * Noisy labels (``noisy=True``: Monte-Carlo payoffs, pathwise derivatives): each member
      holds out 20% of the points and keeps its best weights on them, since training to the
      end fits the noise.

    ``derivatives`` does not change the recipe (nor ``dim``): regular training gets the same
    network, steps, schedule and stopping rules, so a comparison between the two is fair.
    """
    del derivatives, dim  # the same recipe with and without derivative labels (a fair comparison)
    hidden = 16 if n <= 200 else 32 if n <= 2000 else 64
    if n <= FULL_BATCH_MAX and not noisy:
        return Recipe(hidden=hidden, optimiser="lbfgs", steps=1000, batch_size=n)
    batch = n if n <= FULL_BATCH_MAX else MINIBATCH
    steps = max(ADAM_STEPS, math.ceil(20 * n / batch))
    return Recipe(hidden=hidden, steps=steps, batch_size=batch, validation=0.2 if noisy else 0.0)


RECIPE_FIELDS = frozenset(f.name for f in fields(Recipe))

__all__ = ["FOLDS", "FULL_BATCH_MAX", "LAM_GRID", "MINIBATCH", "OPTIMISERS", "Recipe", "check_device", "choose_recipe"]
