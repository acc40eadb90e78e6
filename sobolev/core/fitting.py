"""``sobolev.fit``: your samples of values (and derivatives) in, a trained ensemble out.

    import numpy as np, sobolev
    x = np.random.default_rng(0).uniform(-2, 2, (100, 2))
    y = (x**2).sum(1)                                  # values (N,)
    dydx = 2 * x                                       # derivatives (N, D); NaN where unknown
    model = sobolev.fit(x, y, dydx)                    # chooses how much to trust dydx; dydx=None: values only
    print(model)                                       # what was chosen, and how well it fits
    model.predict(x[:3]), model.predict_derivatives(x[:3])
    model.predict_with_spread(x[:3]).value_std         # the ensemble's spread
    model.save("model.pt"); sobolev.FittedModel.load("model.pt")

With derivative labels, the fit decides from the data how much to trust them: the derivative weight
``lam`` is chosen among :data:`~sobolev.core.recipe.LAM_GRID` (0, values only, included) by
cross-validation in the same batched run as the final members (:mod:`sobolev.core.selection`), so
labels that do not help (noisy estimates, an ill-suited function) cost accuracy no more than the
held-out error can tell. The recipe (:func:`~sobolev.core.recipe.choose_recipe`) depends on the data
and is documented field by field in :class:`~sobolev.core.recipe.Recipe`; every field can be
overridden (``sobolev.fit(x, y, dydx, steps=5000)``, ``lam=1.0`` fixes the weight). Regular
training (no ``dydx``) gets the same network, optimiser and stopping rules, so a comparison between
the two is fair. ``benchmarks/bench_fit_vs_jenn.py`` measures it against JENN and Gaussian processes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, TextIO

import torch
from torch import Tensor

from sobolev.common.utils import progress_bar
from sobolev.core.fitted_model import FittedModel, Prediction
from sobolev.core.inputs import Samples, check_label_weights, check_samples
from sobolev.core.lbfgs import train_lbfgs
from sobolev.core.recipe import (
    FULL_BATCH_MAX,
    LAM_GRID,
    MIN_SELECT_POINTS,
    RECIPE_FIELDS,
    Recipe,
    check_device,
    choose_recipe,
)
from sobolev.core.samples import Normaliser
from sobolev.core.selection import (
    Choice,
    cross_validated_residuals,
    fold_ids,
    fold_point_weights,
    holdout_residuals,
)
from sobolev.core.tanh_mlp import BatchedTanhMLP
from sobolev.core.training import NonFiniteLossError, train_ensemble

#: A fit of exact labels that explains less than this share of its own training values' variance warns.
MIN_TRAIN_R2 = 0.9
#: Standardised derivative labels beyond this contradict the values' scale (their squares would overflow).
MAX_STANDARDISED_SLOPE = 1e100


#: Members that stopped at the iteration cap while their objective was still falling by more than this share over the
#: last 50 iterations were cut short, not converged (a slow final descent of a few percent changes no prediction).
STILL_FALLING = 0.1


class FitWarning(UserWarning):
    """A fit that does not fit: it explains too little of its training data, or stopped before converging."""


class Trained(NamedTuple):
    """What :func:`train_members` returns: the models, their final training objective ``(M,)``, each model's
    iterations ``(M,)`` (where L-BFGS stopped it; ``recipe.steps`` for Adam) and ``falling (M,)``: the share by which
    L-BFGS lowered each model's objective over its last 50 iterations (NaN for Adam's fixed schedule)."""

    model: BatchedTanhMLP
    train_loss: Tensor
    iterations: Tensor
    falling: Tensor


def fit(
    x: Any,
    y: Any,
    dydx: Any = None,
    *,
    dydx_weight: Any = None,
    noisy: bool = False,
    progress: bool | TextIO = False,
    **options: Any,
) -> FittedModel:
    """Fit an ensemble to values ``y`` (and derivatives ``dydx``) at points ``x``.

    Args:
        x: inputs ``(N, D)`` (or ``(N,)`` for one input): numpy array, torch tensor or nested list.
        y: values ``(N,)`` or ``(N, K)``.
        dydx: derivatives ``(N, D)`` or ``(N, K, D)``; NaN marks a missing partial derivative (a 0 is a
            label: the derivative is zero). ``None``: regular training on values only.
        dydx_weight: confidence in each derivative label, ``(N,)``, ``(N, D)`` or ``(N, K, D)``,
            finite and ≥ 0 (e.g. lower for estimated or finite-difference derivatives; 0 is a
            missing label). Multiplies the derivative weight ``lam``.
        noisy: the labels are noisy (e.g. Monte-Carlo samples): hold out points to stop early.
        progress: a tqdm bar (a flag, or a stream for it).
        options: any :class:`~sobolev.core.recipe.Recipe` field, overriding :func:`choose_recipe`'s choice;
            ``lam=...`` fixes the derivative weight (no selection).

    Returns:
        A :class:`FittedModel`; ``print(model)`` says what was chosen and how well it fits, ``model.selection``
        holds the held-out errors behind the choice, ``model.diagnostics`` the fit's R² values.

    Raises:
        ValueError: bad data or options, named, before any training.
        NonFiniteLossError: every member diverged (lower ``lr``).

    Warns:
        FitWarning: the model explains less than :data:`MIN_TRAIN_R2` of its training values' variance (exact
            labels), is no better than the mean on held-out points (noisy labels), or every member stopped at
            the iteration cap.
    """
    s = check_samples(x, y, dydx)
    label_weights = None if dydx_weight is None else check_label_weights(dydx_weight, s)
    if not isinstance(noisy, bool):
        raise ValueError(f"noisy: expected True or False, got {noisy!r}")
    if not (isinstance(progress, bool) or callable(getattr(progress, "write", None))):
        raise ValueError(f"progress: expected True, False or a stream with .write() (e.g. sys.stderr), got "
                         f"{progress!r}")  # fmt: skip
    unknown = sorted(set(options) - RECIPE_FIELDS)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; allowed: {sorted(RECIPE_FIELDS)}")
    recipe = replace(choose_recipe(s.n, s.dim, s.dydx is not None, noisy), **options)
    source = "given"
    if "lam" in options:  # a weight given by the user is used as given
        recipe = replace(recipe, select=False)
    elif s.dydx is not None and recipe.select and s.n < MIN_SELECT_POINTS:
        recipe = replace(recipe, select=False)
        source = f"the default: {s.n} points are too few to choose it by cross-validation (< {MIN_SELECT_POINTS})"
    if s.dydx is None:
        recipe = replace(recipe, select=False)
    recipe = recipe.checked()
    previous_threads = torch.get_num_threads()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    try:
        fitted = _train(s, recipe, progress, label_weights)
    finally:
        torch.set_num_threads(previous_threads)
    fitted.info["lam_source"] = source
    return fitted


def balance(G: Tensor, lam: Tensor | float) -> Tensor:
    """The derivative weights of :func:`fit`'s loss, ``(M, D)``: ``lam`` over one scale shared by every input,
    the mean square of each model's standardised labels ``G (M, N, D)`` over all its inputs (NaN labels,
    missing, are skipped; a zero label counts). ``lam`` is one number or one per model ``(M,)``.

    One scale, not one per input: differential ML's per-input balance divides each input's term by its own
    labels' mean square, so an input that barely matters (labels near 0) gets an enormous weight and the fit
    collapses (``sin 2x₀ + 1e-4 x₁``: training R² 0, for 1e-4 in front of x₁). With the shared scale a
    residual counts in units of the function's typical slope on every input, and the weights stay bounded:
    only labels that are all (near) zero leave the scale at its floor of 1e-12 (the selection then weighs
    them by their held-out value error like any other labels)."""
    mean_sq = torch.nanmean(G.pow(2).flatten(1), dim=1).nan_to_num(0.0).clamp_min(1e-12)  # (M,)
    lam = torch.as_tensor(lam, dtype=mean_sq.dtype).reshape(-1)
    return (lam / mean_sq).unsqueeze(1).expand(-1, G.shape[2]).contiguous()


def train_members(
    x: Tensor,
    t: Tensor,
    G: Tensor | None,
    weight: Tensor | None,
    recipe: Recipe,
    seeds: list[int],
    validation: tuple[Tensor, Tensor, Tensor | None, Tensor | None] | None = None,
    desc: str = "sobolev.fit",
    progress: bool | TextIO = False,
    point_weight: Tensor | None = None,
    caps: Tensor | None = None,
    on_stop: Callable[[BatchedTanhMLP, Tensor], Tensor | None] | None = None,
) -> Trained:
    """Train one tanh MLP per training set by ``recipe``: the engine of :func:`fit`, for callers
    that stack many data sets (seeds, noise levels, functions) into one batched run.

    Args:
        x, t, G: normalised training sets ``(M, N, D)``, ``(M, N)``, ``(M, N, D)`` or ``None``
            (regular training); NaN in ``G`` marks a missing label.
        weight: derivative weights ``(M, D)`` or per label ``(M, N, D)`` (with ``G``).
        seeds: one initial-weight seed per model.
        validation: ``(x, t, G, weight)`` of held-out points per model: each model keeps the
            weights of its best validation objective (Adam only).
        point_weight: how much each point counts per model ``(M, N)`` (0: held out, a cross-validation fold).
        caps, on_stop: L-BFGS only: each model's most iterations ``(M,)``, and ``on_stop(model, stopped)`` called
            when models stop, returning more models to stop (:func:`~sobolev.core.lbfgs.train_lbfgs`).

    Returns:
        :class:`Trained`: the models, their final training objective ``(M,)``, each model's iterations
        ``(M,)`` (where L-BFGS stopped it: below ``recipe.steps`` converged or at a plateau, ``recipe.steps`` the
        cap; ``recipe.steps`` for Adam, a fixed schedule) and how fast L-BFGS was still lowering each objective.

    Raises:
        NonFiniteLossError: a model's final training objective is not finite.
    """
    M, D = x.shape[0], x.shape[2]
    if len(seeds) != M:
        raise ValueError(f"seeds: expected one per model ({M}), got {len(seeds)}")
    # L-BFGS's line search compares objectives near convergence: float64 keeps them apart (on
    # these small networks a step costs its number of operations, not their precision).
    device = check_device(recipe.device)
    dtype = torch.float64 if recipe.optimiser == "lbfgs" else torch.float32
    model = BatchedTanhMLP.init(seeds, D, recipe.hidden, recipe.layers, device, dtype)
    to = lambda v: None if v is None else v.to(device, dtype)  # noqa: E731
    x, t, G, weight, point_weight = to(x), to(t), to(G), to(weight), to(point_weight)
    extra = {} if point_weight is None else {"point_weight": point_weight}
    best = None
    if validation is not None:
        xv, tv, Gv, val_weight = (to(v) for v in validation)
        best_loss = torch.full((M,), math.inf, device=device, dtype=dtype)
        best = {n: v.clone() for n, v in model.params.items()}

        def keep_best(_: int) -> None:
            nonlocal best_loss
            loss = model.losses(xv, tv, Gv, val_weight)
            better = loss < best_loss
            best_loss = torch.where(better, loss, best_loss)
            for n, v in model.params.items():
                best[n] = torch.where(better.view(-1, *[1] * (v.ndim - 1)), v, best[n])

    iterations = torch.full((M,), recipe.steps, dtype=torch.long)
    falling = torch.full((M,), math.nan, dtype=torch.float64)
    if recipe.optimiser == "lbfgs":
        bar = progress_bar(range(recipe.steps), desc + " L-BFGS", progress)
        history = train_lbfgs(model, x, t, recipe.steps, G, weight, converged=recipe.converged,
                              on_iteration=lambda *_: bar.update(), caps=caps,
                              on_stop=None if on_stop is None else lambda _, stopped: on_stop(model, stopped),
                              **extra)  # fmt: skip
        bar.close()
        iterations = history.stopped_at
        losses = history.loss.double()  # (iterations run, M): each model's objective, frozen after it stopped
        last = losses[(iterations - 1).clamp_min(0), torch.arange(M)]
        before = losses[(iterations - 51).clamp_min(0), torch.arange(M)]
        falling = torch.where(iterations > 50, 1 - last / before, math.nan)
    else:
        train_ensemble(
            model, x, t, lr=recipe.lr, steps=recipe.steps, batch_size=recipe.batch_size, G=G, weight=weight,
            schedule="cosine", warmup=recipe.warmup, generator=torch.Generator().manual_seed(recipe.seed),
            log_every=recipe.eval_every if best is not None else 0, inspect=keep_best if best is not None else None,
            weight_schedule=None if recipe.lam_decay == 1.0
            else (lambda i: recipe.lam_decay ** (i * min(recipe.batch_size, x.shape[1]) / x.shape[1])),
            desc=desc, hint=f"lr = {recipe.lr:g} too large for this data; try sobolev.fit(..., lr={recipe.lr / 10:g})",
            progress=progress, **extra,
        )  # fmt: skip
    if best is not None:
        model.params.update(best)
    train_loss = model.losses(x, t, G, weight, **extra)
    if not bool(torch.isfinite(train_loss).all()):
        bad = torch.nonzero(~torch.isfinite(train_loss)).flatten().tolist()
        remedy = ("try sobolev.fit(..., optimiser='adam')" if recipe.optimiser == "lbfgs"
                  else f"lr = {recipe.lr:g}; try sobolev.fit(..., lr={recipe.lr / 10:g})")  # fmt: skip
        raise NonFiniteLossError(
            f"{desc}: member(s) {bad} of {M} diverged (training loss not finite) with {recipe.optimiser}; {remedy}"
        )
    return Trained(model, train_loss, iterations, falling)


@dataclass
class _Batch:
    """The models of one training run of :func:`fit`, stacked on the model axis: for each output ``k`` and candidate
    ``c`` (derivative weight ``lams[k, c]``), ``folds`` fold models (cross-validation; with ``holdout`` a single one,
    holding out one fold of a ``recipe.folds`` split) then ``members``; model ``((k·C) + c)·(F + R) + slot``."""

    lams: Tensor  # (K, C)
    folds: int
    members: int
    holdout: bool = False

    @property
    def outputs(self) -> int:
        return self.lams.shape[0]

    @property
    def candidates(self) -> int:
        return self.lams.shape[1]

    @property
    def slots(self) -> int:
        return self.folds + self.members

    @property
    def size(self) -> int:
        return self.outputs * self.candidates * self.slots

    @property
    def slot(self) -> Tensor:
        return torch.arange(self.size) % self.slots

    def index(self, k: int, c: int, slot: int) -> int:
        return (k * self.candidates + c) * self.slots + slot

    def output_of(self) -> Tensor:
        return torch.arange(self.outputs).repeat_interleave(self.candidates * self.slots)

    def lam_of(self) -> Tensor:
        return self.lams.double().reshape(-1).repeat_interleave(self.slots)

    def members_of(self, chosen: list[int], folds: bool = False) -> Tensor:
        """The final members of each output's chosen candidate, output by output (its fold models with ``folds``)."""
        slots = range(self.folds) if folds else range(self.folds, self.slots)
        return torch.tensor([self.index(k, c, slot) for k, c in enumerate(chosen) for slot in slots])


def _standardise(s: Samples) -> tuple[list[Normaliser], Tensor, Tensor, Tensor | None]:
    """One normaliser per output from the samples, and the standardised ``x (K, N, D)``, ``y (K, N)``,
    ``dydx (K, N, D)``; refuses derivative labels whose scale contradicts the values' (overflow)."""
    K = s.outputs
    norms = [Normaliser.from_samples(s.x, s.y[:, k]) for k in range(K)]
    xs = torch.stack([nm.x(s.x) for nm in norms])
    ys = torch.stack([nm.y(s.y[:, k]) for k, nm in enumerate(norms)])
    gs = None if s.dydx is None else torch.stack([nm.g(s.dydx[:, k]) for k, nm in enumerate(norms)])
    if gs is not None:
        biggest = float(gs.abs().nan_to_num(0.0).max())
        if not biggest <= MAX_STANDARDISED_SLOPE:
            raise ValueError(
                f"dydx: labels up to {biggest:.3g} in standardised units (× std(x) / std(y)): derivatives more than "
                f"{MAX_STANDARDISED_SLOPE:g} times the values' scale contradict them (check their units, or whether "
                "dydx and y belong together)"
            )
    return norms, xs, ys, gs


@dataclass
class Selected:
    """What :func:`train_sets` returns: the trained batch, the final members of each set (``keep``, indices into the
    batch's model axis, ``recipe.models`` per set in set order), the choice behind them (``None`` when the weight
    was given), the weight each set trains with, and the recipe used (its ``models`` may be the fold count)."""

    trained: Trained
    keep: Tensor
    choice: Choice | None
    lams: list[float]
    recipe: Recipe
    models_trained: int

    def params(self) -> dict[str, Tensor]:
        """The kept members' weights ``{name: (K · models, ...)}``, on the CPU."""
        return {n: v[self.keep].detach().cpu() for n, v in self.trained.model.params.items()}


def train_sets(
    xs: Tensor, ys: Tensor, gs: Tensor | None, recipe: Recipe, progress: bool | TextIO = False,
    label_weights: Tensor | None = None, seeds: list[int] | None = None, desc: str = "sobolev.fit",
) -> Selected:  # fmt: skip
    """The engine of :func:`fit` on ``K`` standardised training sets at once (its outputs, or many data sets a caller
    stacks: seeds, functions, label sources), ``xs (K, N, D)``, ``ys (K, N)``, ``gs (K, N, D)`` or ``None``. Each set
    gets ``recipe.models`` members; with ``recipe.select`` each set chooses its own derivative weight among
    ``recipe.lam_grid`` from its own held-out error, as :func:`fit` does; ``label_weights (N, K, D)`` scale labels.
    ``seeds``: each set's first initial-weight seed (default ``recipe.seed`` for every set): its fold model and member
    ``i`` start from seed ``seeds[k] + i``, so sets with equal seeds start alike (paired comparisons)."""
    K, N = xs.shape[0], xs.shape[1]
    if seeds is not None and len(seeds) != K:
        raise ValueError(f"seeds: expected one per training set ({K}), got {len(seeds)}")
    if recipe.select and recipe.folds > N:
        recipe = replace(recipe, folds=N)  # fewer points than folds: leave one out
    data = (None, xs, ys, gs)
    noisy = recipe.validation > 0
    grid = torch.tensor(recipe.lam_grid, dtype=torch.float64).expand(K, -1)
    choice, position = None, [0] * K  # position: each set's candidate in the final batch
    if not recipe.select or gs is None:  # one weight, given (or values only)
        batch = _Batch(torch.full((K, 1), recipe.lam, dtype=torch.float64), 0, recipe.models)
        trained, _ = _run(batch, data, label_weights, recipe, progress, seeds=seeds, desc=desc)
    elif recipe.optimiser == "adam" and not noisy:
        # Minibatch Adam has no early end to share: choose first on one held-out fold per candidate (one run of C
        # models), then train the members at the chosen weight (a second run): about (C + R) / R a plain fit.
        batch = _Batch(grid, 1, 0, holdout=True)
        trained, _ = _run(batch, data, label_weights, recipe, progress, seeds=seeds, desc=desc)
        choice = _choose(trained.model, batch, data, None, recipe)
        batch = _Batch(torch.tensor([[choice.lam(k)] for k in range(K)], dtype=torch.float64), 0, recipe.models)
        trained, _ = _run(batch, data, label_weights, recipe, progress, seeds=seeds, desc=desc)
    else:  # L-BFGS: folds and members of every candidate in one run; members of the losers stop at the choice
        F = 0 if noisy else recipe.folds
        if F and not recipe.refit:  # the chosen weight's fold models are the ensemble
            recipe = replace(recipe, models=F)
        batch = _Batch(grid, F, recipe.models if not F or recipe.refit else 0)
        trained, val_rows = _run(batch, data, label_weights, recipe, progress, select=True, seeds=seeds, desc=desc)
        choice = _choose(trained.model, batch, data, val_rows, recipe)
        position = [int(c) for c in choice.chosen]
    keep = batch.members_of(position, folds=batch.members == 0)
    lams = [choice.lam(k) for k in range(K)] if choice is not None else [recipe.lam if gs is not None else 0.0] * K
    return Selected(trained, keep, choice, lams, recipe, batch.size)


def _train(s: Samples, recipe: Recipe, progress: bool | TextIO, label_weights: Tensor | None = None) -> FittedModel:
    K, D, N = s.outputs, s.dim, s.n
    norms, xs, ys, gs = _standardise(s)
    out = train_sets(xs, ys, gs, recipe, progress, label_weights)
    recipe, trained, keep, choice = out.recipe, out.trained, out.keep, out.choice
    info = {"n": N, "dim": D, "outputs": K, "scalar_output": s.scalar_output, "derivatives": gs is not None,
            "train_loss": float(trained.train_loss[keep].mean()), "iterations": trained.iterations[keep].tolist(),
            "falling": [None if math.isnan(v) else v for v in trained.falling[keep].tolist()],
            "models_trained": out.models_trained}  # fmt: skip
    if choice is not None:
        info |= {"selection": choice.rows(), "selection_method": choice.method, "chosen_lam": out.lams}
    fitted = FittedModel(out.params(), norms, replace(recipe, lam=out.lams[0]) if K == 1 else recipe, info)
    info["diagnostics"] = _diagnose(fitted, s, choice, recipe, recipe.validation > 0)
    for message in info["diagnostics"]["warnings"]:
        warnings.warn(FitWarning(f"sobolev.fit: {message}"), stacklevel=3)
    return fitted


def _run(
    batch: _Batch,
    data: tuple[list[Normaliser] | None, Tensor, Tensor, Tensor | None],
    label_weights: Tensor | None,
    recipe: Recipe,
    progress: bool | TextIO,
    select: bool = False,
    seeds: list[int] | None = None,
    desc: str = "sobolev.fit",
) -> tuple[Trained, Tensor | None]:
    """Train ``batch``'s models on the standardised ``data`` (:func:`_standardise`); with ``select`` (L-BFGS), the
    fold models stop at ``recipe.selection_steps`` and, once all have, the losing candidates' members stop too.
    Returns the trained models and each model's held-out rows (noisy labels), or ``None``."""
    _, xs, ys, gs = data
    N, D = xs.shape[1], xs.shape[2]
    F, R, slot = batch.folds, batch.members, batch.slot
    out, lam = batch.output_of(), batch.lam_of()
    first = [recipe.seed] * batch.outputs if seeds is None else list(seeds)
    model_seeds = [first[int(k)] + (int(v) if v < F else int(v) - F) for k, v in zip(out, slot, strict=True)]
    # Each model's training rows: all N points (fold models hold theirs out by point weight), or, with noisy
    # labels, each member's own random split (a validation share held out for early stopping and selection).
    train_rows, val_rows = _member_rows(N, recipe, slot, F)
    x, t = xs[out.unsqueeze(1), train_rows], ys[out.unsqueeze(1), train_rows]
    point_weight = None
    if F:
        masks = fold_point_weights(fold_ids(N, recipe.folds if batch.holdout else F, recipe.seed),
                                   recipe.folds if batch.holdout else F)  # fmt: skip
        point_weight = torch.where((slot < F).unsqueeze(1), masks[slot.clamp_max(F - 1)], torch.ones(1, N).double())
    G = weight = val_weight = None
    if gs is not None:
        G = gs[out.unsqueeze(1), train_rows]
        weight = val_weight = balance(gs[out], lam)  # the scale of all N labels, the same for a candidate's models
        if label_weights is not None:  # per label: (M, N_train, D), the weight times the confidence
            lw = label_weights.permute(1, 0, 2)[out]  # (M, N, D)
            weight = val_weight.unsqueeze(1) * lw.gather(1, train_rows.unsqueeze(2).expand(-1, -1, D))
            if val_rows is not None:
                val_weight = val_weight.unsqueeze(1) * lw.gather(1, val_rows.unsqueeze(2).expand(-1, -1, D))
    validation = None
    if val_rows is not None:
        validation = (xs[out.unsqueeze(1), val_rows], ys[out.unsqueeze(1), val_rows],
                      None if gs is None else gs[out.unsqueeze(1), val_rows], val_weight)  # fmt: skip
    desc = f"{desc}: {'Sobolev' if G is not None else 'regular'} N={N} D={D} ({batch.size} models)"
    caps = on_stop = None
    if select and F and recipe.optimiser == "lbfgs":
        fold = slot < F
        caps = torch.where(fold, min(recipe.selection_steps, recipe.steps), recipe.steps)
        pending = set(torch.nonzero(fold).flatten().tolist())

        def on_stop(model: BatchedTanhMLP, stopped: Tensor) -> Tensor | None:
            """Once every fold model has stopped, choose; the other candidates' members stop with them."""
            pending.difference_update(stopped.tolist())
            if pending or not R:
                return None
            winners = _choose(model, batch, data, val_rows, recipe).chosen
            keep = set(batch.members_of([int(c) for c in winners]).tolist())
            return torch.tensor([m for m in range(batch.size) if slot[m] >= F and m not in keep], dtype=torch.long)

    trained = train_members(x, t, G, weight, recipe, model_seeds, validation, desc, progress, point_weight, caps,
                            on_stop)  # fmt: skip
    return trained, val_rows


def _member_rows(N: int, recipe: Recipe, slot: Tensor, F: int) -> tuple[Tensor, Tensor | None]:
    """Per-model training and validation rows ``(M, N_train)``, ``(M, N_val)`` (or ``None``): every point,
    or each member's own random split when it holds out ``recipe.validation`` of the points (noisy labels;
    member ``r`` draws the same split for every candidate, so candidates are compared on the same points)."""
    M = len(slot)
    n_val = int(recipe.validation * N)
    if recipe.validation and not 1 <= n_val < N - 1:
        raise ValueError(f"validation: {recipe.validation} of {N} points holds out {n_val}; need 1 to {N - 2}")
    if not n_val:
        return torch.arange(N).expand(M, N), None
    order = torch.stack([torch.randperm(N, generator=torch.Generator().manual_seed(recipe.seed + int(r) - F))
                         for r in slot])  # fmt: skip
    return order[:, n_val:], order[:, :n_val]


def _choose(model: BatchedTanhMLP, batch: _Batch, data: tuple, val_rows: Tensor | None, recipe: Recipe) -> Choice:
    """Each output's weight by :meth:`Choice.prefer` (the default ``recipe.lam`` unless another candidate is clearly
    better) on held-out value errors: the folds' held-out points, one held-out fold (``batch.holdout``), or the
    members' own held-out points (noisy labels)."""
    _, xs, ys, _ = data
    K, C, N = batch.outputs, batch.candidates, xs.shape[1]
    dtype = model.params["W1"].dtype
    out = batch.output_of()
    values = model.predict(xs[out].to(dtype))[0].double().cpu().view(K, C, batch.slots, N)
    targets = ys.unsqueeze(1).expand(K, C, N).reshape(K * C, N)
    variance = ys.var(1, unbiased=False)
    lams = tuple(batch.lams[0].tolist())
    if batch.holdout:
        held = (fold_ids(N, recipe.folds, recipe.seed) == 0).double().expand(K * C, 1, N)
        residuals = holdout_residuals(values[:, :, :1].reshape(K * C, 1, N), targets, held)
        method = f"one held-out fold ({1 / recipe.folds:.0%} of the points)"
    elif batch.folds:
        ids = fold_ids(N, batch.folds, recipe.seed)
        residuals = cross_validated_residuals(values[:, :, : batch.folds].reshape(K * C, batch.folds, N), targets, ids)
        method = f"{batch.folds}-fold cross-validation"
    else:
        held = torch.zeros(K * C * batch.slots, N)
        held.scatter_(1, val_rows, 1.0)
        residuals = holdout_residuals(values.reshape(K * C, batch.slots, N), targets, held.view(K * C, batch.slots, N))
        method = f"each member's {recipe.validation:.0%} held-out points"
    return Choice.prefer(lams, residuals.view(K, C, N), variance, method, recipe.lam)


def _diagnose(fitted: FittedModel, s: Samples, choice: Choice | None, recipe: Recipe, noisy: bool) -> dict[str, Any]:
    """Training R² of values and derivatives per output, the held-out R² of the chosen weight, the members at the
    iteration cap, and the warnings a user must see."""
    pred = fitted.predict_with_spread(s.x)
    value = pred.value.reshape(s.n, -1)
    r2_values = (1 - ((value - s.y).pow(2).sum(0) / (s.y - s.y.mean(0)).pow(2).sum(0).clamp_min(1e-300))).tolist()
    r2_derivatives: list[float | None] = [None] * s.outputs
    if s.dydx is not None:
        g = pred.derivatives.reshape(s.n, s.outputs, s.dim)
        for k in range(s.outputs):
            labels, fitted_g = s.dydx[:, k], g[:, k]
            known = ~torch.isnan(labels)
            centred = torch.where(known, labels - torch.nanmean(labels, 0), 0.0).pow(2).sum()
            scale = centred if float(centred) > 0 else torch.where(known, labels, 0.0).pow(2).sum()
            resid = torch.where(known, fitted_g - labels, 0.0).pow(2).sum()
            r2_derivatives[k] = float(1 - resid / scale) if float(scale) > 0 else None
    heldout = [None] * s.outputs
    if choice is not None:
        heldout = [1 - float(choice.errors[k, choice.chosen[k]] / choice.variance[k]) for k in range(s.outputs)]
    its = fitted.info["iterations"]
    at_cap = sum(int(v) >= recipe.steps for v in its) if recipe.optimiser == "lbfgs" else 0
    falls = [f for v, f in zip(its, fitted.info["falling"], strict=True) if int(v) >= recipe.steps and f is not None]
    still = sorted(falls)[len(falls) // 2] if falls else 0.0  # the median capped member's last-window decrease
    problems = []
    for k in range(s.outputs):
        out = f" (output {k})" if s.outputs > 1 else ""
        if not noisy and r2_values[k] < MIN_TRAIN_R2:
            problems.append(
                f"the model explains {r2_values[k]:.1%} of the variance of its own training values{out}, less than "
                f"{MIN_TRAIN_R2:.0%}: it underfits. Try more iterations (steps=...), a wider network (hidden=...), or "
                "check that the values and derivative labels belong together"
            )
        if heldout[k] is not None and heldout[k] < 0:
            why = f"the labels may be too noisy for {s.n} points" if noisy else (
                f"{s.n} points may be too few for this function: expect large errors away from them")
            problems.append(f"on held-out points the model{out} does worse than predicting the mean (R² "
                            f"{heldout[k]:.3g}): {why}")  # fmt: skip
    if at_cap and at_cap == len(its) and still > STILL_FALLING:
        problems.append(
            f"every member stopped at the cap of {recipe.steps} L-BFGS iterations with its objective "
            f"still falling ({still:.0%} over the last 50): not converged; try steps={2 * recipe.steps}"
        )
    return {"train_r2_values": r2_values, "train_r2_derivatives": r2_derivatives, "heldout_r2": heldout,
            "members_at_cap": at_cap, "falling_at_cap": still, "warnings": problems}  # fmt: skip


__all__ = [
    "FULL_BATCH_MAX",
    "LAM_GRID",
    "FitWarning",
    "FittedModel",
    "Prediction",
    "Recipe",
    "Trained",
    "balance",
    "choose_recipe",
    "fit",
    "train_members",
    "train_sets",
]
