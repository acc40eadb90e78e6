"""``sobolev.fit``: your samples of values (and derivatives) in, a trained ensemble out.

    import numpy as np, sobolev
    x = np.random.default_rng(0).uniform(-2, 2, (100, 2))
    y = (x**2).sum(1)                                  # values (N,)
    dydx = 2 * x                                       # derivatives (N, D); NaN where unknown
    model = sobolev.fit(x, y, dydx)                    # Sobolev training; dydx=None: values only
    model.predict(x[:3]), model.predict_derivatives(x[:3])
    model.predict_with_spread(x[:3]).value_std         # the ensemble's spread
    model.save("model.pt"); sobolev.FittedModel.load("model.pt")

The recipe (:func:`choose_recipe`) depends on the data and is documented field by field in
:class:`Recipe`; every field can be overridden (``sobolev.fit(x, y, dydx, steps=5000)``).
Regular training (no ``dydx``) gets the same network, schedule and step count, so a
comparison between the two is fair. ``benchmarks/bench_fit_vs_jenn.py`` measures it against
JENN, the library this use case would otherwise pick.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor

from sobolev.common.utils import pick_device, progress_bar
from sobolev.core.inputs import Samples, check_label_weights, check_number, check_points, check_samples
from sobolev.core.lbfgs import train_lbfgs
from sobolev.core.samples import Normaliser
from sobolev.core.tanh_mlp import BatchedTanhMLP
from sobolev.core.training import NonFiniteLossError, train_ensemble

#: Largest training set trained full-batch (by L-BFGS); beyond it, Adam on minibatches of :data:`MINIBATCH`.
FULL_BATCH_MAX = 512
MINIBATCH = 256
OPTIMISERS = ("lbfgs", "adam")
ADAM_STEPS = 3000


@dataclass(frozen=True)
class Recipe:
    """How :func:`fit` trains. Defaults come from :func:`choose_recipe`.

    Attributes:
        models: ensemble members per output (their spread is the uncertainty; their mean the prediction).
        hidden, layers: width and depth of each tanh MLP.
        optimiser: ``"lbfgs"`` (full-batch L-BFGS in float64, :mod:`sobolev.core.lbfgs`: each
            member stops at its own plateau or at ``steps`` iterations) or ``"adam"`` (float32,
            minibatches, a fixed number of ``steps``).
        steps: Adam updates, or the most L-BFGS iterations; ``lr``: Adam's peak learning rate;
            ``warmup``: fraction of Adam's steps of linear warm-up, then a cosine decay to 0.
        batch_size: points per Adam update (``>= N``: full batch; L-BFGS is always full batch).
        lam_decay: Adam only: the derivative weight is multiplied by this per epoch (1: constant;
            0.95: Kissel & Diepold's schedule for estimated derivatives, trusted less as the
            values are fitted).
        converged: L-BFGS only. A member stops when its training objective (standardised units:
            about 1 per term for the mean predictor) is below this, or when 50 iterations lowered
            it by less than 0.1% (a plateau).
        lam: derivative weight. Derivative labels are rescaled to the standardised data, and
            each input's term is divided by its labels' mean square (differential ML's balance),
            so with ``lam = 1`` each input's derivative term weighs as much as the value term,
            whatever the function's scale: D derivative labels per point count D times.
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
    converged: float = 1e-4
    lam_decay: float = 1.0
    validation: float = 0.0
    eval_every: int = 50
    seed: int = 0
    device: str = "cpu"
    threads: int = 0

    def check(self) -> None:
        """Every field in range, named in the error, before any training."""
        for name in ("models", "hidden", "layers", "steps", "batch_size", "eval_every"):
            check_number(name, getattr(self, name), 1, 1e9, integer=True)
        check_number("seed", self.seed, 0, 2**62, integer=True)
        check_number("threads", self.threads, 0, 4096, integer=True)
        check_number("lr", self.lr, 1e-12, 10.0)
        check_number("warmup", self.warmup, 0.0, 0.5)
        check_number("lam", self.lam, 0.0, 1e6)
        check_number("validation", self.validation, 0.0, 0.5)
        check_number("converged", self.converged, 0.0, 1.0)
        check_number("lam_decay", self.lam_decay, 1e-6, 1.0)
        if self.optimiser == "lbfgs" and self.lam_decay != 1.0:
            raise ValueError(
                f"lam_decay: {self.lam_decay} needs optimiser='adam' (L-BFGS minimises one fixed objective)"
            )
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser: expected one of {OPTIMISERS}, got {self.optimiser!r}")
        if self.optimiser == "lbfgs" and self.validation:
            raise ValueError(
                f"validation: {self.validation} needs optimiser='adam' (L-BFGS trains every point to a plateau; "
                "held-out early stopping is for noisy labels)"
            )
        if not isinstance(self.device, str):
            raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or a torch device string, got {self.device!r}")
        try:
            pick_device(self.device)
        except RuntimeError as err:
            raise ValueError(f"device: {self.device!r} is not a torch device ({err})") from None


def choose_recipe(n: int, dim: int, derivatives: bool, noisy: bool = False) -> Recipe:
    """The default recipe for ``n`` points of ``dim`` inputs (rules measured in
    ``benchmarks/bench_fit_vs_jenn.py``; see the README).

    * Width from the data size: 16 units up to 200 points, 32 up to 2 000, 64 beyond (a wider
      net overfits small samples: on 100 points of a 10-D quadratic, 64 units gave 50× the
      error of 16).
    * Up to :data:`FULL_BATCH_MAX` exact points: full-batch L-BFGS in float64 until each member's
      training objective converges (below 1e-4 or a plateau, at most 1000 iterations). On small
      smooth problems a quasi-Newton method follows narrow valleys (Dixon-Price, Rosenbrock)
      that Adam crosses slowly: on 100 points of the 5-D Dixon-Price (2 seeds), 1000 Adam steps
      left test error 0.11 and 0.09, 1000 L-BFGS iterations 0.015 and 0.042.
    * More points (or noisy labels): Adam on minibatches of :data:`MINIBATCH` (full batch up to
      512 noisy points), warm-up + cosine decay at peak rate 0.02 on standardised data, at least
      3000 steps and 20 epochs.
    * Noisy labels (``noisy=True``: Monte-Carlo payoffs, pathwise derivatives): each member
      holds out 20% of the points and keeps its best weights on them, since training to the
      end fits the noise.

    ``derivatives`` does not change the recipe (nor ``dim``): regular training gets the same
    network, steps and schedule, so a comparison between the two is fair.
    """
    del derivatives, dim  # the same recipe with and without derivative labels (a fair comparison)
    hidden = 16 if n <= 200 else 32 if n <= 2000 else 64
    if n <= FULL_BATCH_MAX and not noisy:
        return Recipe(hidden=hidden, optimiser="lbfgs", steps=1000, batch_size=n)
    batch = n if n <= FULL_BATCH_MAX else MINIBATCH
    steps = max(ADAM_STEPS, math.ceil(20 * n / batch))
    return Recipe(hidden=hidden, steps=steps, batch_size=batch, validation=0.2 if noisy else 0.0)


@dataclass(frozen=True)
class Prediction:
    """Ensemble mean and spread (standard deviation over members) at ``B`` points.

    Shapes: ``value, value_std (B,)`` or ``(B, K)``; ``derivatives, derivatives_std (B, D)`` or ``(B, K, D)``.
    """

    value: Any
    derivatives: Any
    value_std: Any
    derivatives_std: Any


class FittedModel:
    """What :func:`fit` returns: ``K × models`` tanh MLPs on standardised data, one normaliser per output."""

    def __init__(
        self,
        params: dict[str, Tensor],
        normalisers: list[Normaliser],
        recipe: Recipe,
        info: dict[str, Any],
    ) -> None:
        self.network = BatchedTanhMLP(params)
        self.normalisers = normalisers
        self.recipe = recipe
        self.info = info  # n, dim, outputs, scalar_output, derivatives, final training loss

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def outputs(self) -> int:
        return int(self.info["outputs"])

    def _members(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Every member's values ``(K, models, B)`` and derivatives ``(K, models, B, D)`` at raw ``x (B, D)``."""
        K, R = self.outputs, self.recipe.models
        net = self.network
        dtype = net.params["W1"].dtype
        device = net.params["W1"].device
        xs = torch.stack([nm.x(x) for nm in self.normalisers])  # (K, B, D)
        xs = xs.unsqueeze(1).expand(K, R, *x.shape).reshape(K * R, *x.shape).to(device, dtype)
        y, g = net.predict(xs)
        y, g = y.double().cpu().view(K, R, -1), g.double().cpu().view(K, R, *x.shape)
        ys = torch.stack([nm.y_back(v) for nm, v in zip(self.normalisers, y, strict=True)])
        gs = torch.stack([nm.g_back(v) for nm, v in zip(self.normalisers, g, strict=True)])
        return ys, gs

    def predict_with_spread(self, x: Any) -> Prediction:
        """Mean and spread of values and derivatives at ``x (B, D)``, as numpy arrays (torch
        tensors when ``x`` is a tensor)."""
        xt = check_points("x", x, self.dim)
        ys, gs = self._members(xt)
        out = [ys.mean(1), gs.mean(1), ys.std(1) if ys.shape[1] > 1 else torch.zeros_like(ys[:, 0]),
               gs.std(1) if gs.shape[1] > 1 else torch.zeros_like(gs[:, 0])]  # fmt: skip
        # (K, B) -> (B, K); (K, B, D) -> (B, K, D); drop K for a scalar output
        out = [v.transpose(0, 1) for v in out]
        if self.info["scalar_output"]:
            out = [v[:, 0] for v in out]
        if isinstance(x, Tensor):
            out = [v.to(x.dtype if x.is_floating_point() else torch.float64) for v in out]
        else:
            out = [v.numpy() for v in out]
        return Prediction(*out)

    def predict(self, x: Any) -> Any:
        """Values ``(B,)`` (or ``(B, K)``) at ``x (B, D)``: the ensemble's mean."""
        return self.predict_with_spread(x).value

    def predict_derivatives(self, x: Any) -> Any:
        """Input derivatives ``(B, D)`` (or ``(B, K, D)``) at ``x (B, D)``: the ensemble's mean."""
        return self.predict_with_spread(x).derivatives

    def save(self, path: str | Path) -> None:
        """Weights, normalisers, recipe and info in one file (loadable with ``weights_only``)."""
        torch.save(
            {
                "format": "sobolev.FittedModel/1",
                "params": self.network.state_dict(),
                "normalisers": [
                    {"x_center": nm.x_center, "x_scale": nm.x_scale, "y_mean": nm.y_mean, "y_std": nm.y_std}
                    for nm in self.normalisers
                ],
                "recipe": asdict(self.recipe),
                "info": self.info,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> FittedModel:
        """A model written by :meth:`save` (read without unpickling arbitrary objects)."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != "sobolev.FittedModel/1":
            raise ValueError(f"{path}: not a file written by FittedModel.save")
        norms = [Normaliser(**nm) for nm in state["normalisers"]]
        return cls(state["params"], norms, Recipe(**state["recipe"]), state["info"])

    def __repr__(self) -> str:
        r, i = self.recipe, self.info
        kind = f"Sobolev (λ={r.lam:g})" if i["derivatives"] else "values only"
        batch = "full batch" if r.batch_size >= i["n"] or r.optimiser == "lbfgs" else f"batch {r.batch_size}"
        done = int(i.get("iterations", r.steps))
        steps = (f"{done} L-BFGS iterations (converged)" if done < r.steps else f"{done} L-BFGS iterations (the cap)"
                 ) if r.optimiser == "lbfgs" else f"{r.steps} Adam steps"  # fmt: skip
        return (
            f"FittedModel({r.models} tanh MLPs {r.layers}×{r.hidden} per output, D={i['dim']} → K={i['outputs']}, "
            f"{kind}, trained on N={i['n']} points: {steps}, {batch}, final training loss "
            f"{i['train_loss']:.3g} (standardised units))"
        )


def _member_sets(s: Samples, recipe: Recipe) -> tuple[Tensor, Tensor | None]:
    """Per-member training and validation rows: ``(M, N_train)`` and ``(M, N_val)`` (or ``None``)."""
    K, R, N = s.outputs, recipe.models, s.n
    n_val = int(recipe.validation * N)
    if recipe.validation and not 1 <= n_val < N - 1:
        raise ValueError(f"validation: {recipe.validation} of {N} points holds out {n_val}; need 1 to {N - 2}")
    if not n_val:
        return torch.arange(N).expand(K * R, N), None
    order = torch.stack([torch.randperm(N, generator=torch.Generator().manual_seed(recipe.seed + r)) for r in range(R)])
    order = order.repeat(K, 1)
    return order[:, n_val:], order[:, :n_val]


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
        dydx: derivatives ``(N, D)`` or ``(N, K, D)``; NaN marks a missing partial derivative.
            ``None``: regular training on values only.
        dydx_weight: confidence in each derivative label, ``(N,)``, ``(N, D)`` or ``(N, K, D)``,
            finite and ≥ 0 (e.g. lower for estimated or finite-difference derivatives; 0 is a
            missing label). Multiplies the balanced weight of :class:`Recipe`'s ``lam``.
        noisy: the labels are noisy (e.g. Monte-Carlo samples): hold out points to stop early.
        progress: a tqdm bar (a flag, or a stream for it).
        options: any :class:`Recipe` field, overriding :func:`choose_recipe`'s choice.

    Returns:
        A :class:`FittedModel`.

    Raises:
        ValueError: bad data or options, named, before any training.
        NonFiniteLossError: every member diverged (lower ``lr``).
    """
    s = check_samples(x, y, dydx)
    label_weights = None if dydx_weight is None else check_label_weights(dydx_weight, s)
    if not isinstance(noisy, bool):
        raise ValueError(f"noisy: expected True or False, got {noisy!r}")
    names = {f.name for f in fields(Recipe)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; allowed: {sorted(names)}")
    recipe = replace(choose_recipe(s.n, s.dim, s.dydx is not None, noisy), **options)
    recipe.check()
    previous_threads = torch.get_num_threads()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    try:
        return _train(s, recipe, progress, label_weights)
    finally:
        torch.set_num_threads(previous_threads)


def balance(G: Tensor, lam: Tensor | float) -> Tensor:
    """The derivative weights of :func:`fit`'s loss, ``(M, D)``: ``lam`` over each input's mean
    square label in each model's set ``G (M, N, D)`` (NaN labels, missing, are skipped; an input
    without a non-zero label gets 0). ``lam`` is one number or one per model ``(M,)``."""
    mean_sq = torch.nanmean(G.pow(2), dim=1)
    lam = torch.as_tensor(lam, dtype=mean_sq.dtype).reshape(-1, 1)
    return torch.where(mean_sq > 0, lam / mean_sq.clamp_min(1e-300), 0.0).nan_to_num(0.0)


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
) -> tuple[BatchedTanhMLP, Tensor, Tensor]:
    """Train one tanh MLP per training set by ``recipe``: the engine of :func:`fit`, for callers
    that stack many data sets (seeds, noise levels, functions) into one batched run.

    Args:
        x, t, G: normalised training sets ``(M, N, D)``, ``(M, N)``, ``(M, N, D)`` or ``None``
            (regular training); NaN in ``G`` marks a missing label.
        weight: derivative weights ``(M, D)`` or per label ``(M, N, D)`` (with ``G``).
        seeds: one initial-weight seed per model.
        validation: ``(x, t, G, weight)`` of held-out points per model: each model keeps the
            weights of its best validation objective (Adam only).

    Returns:
        The trained models, their final training objective ``(M,)`` and each model's iterations
        ``(M,)``: where L-BFGS stopped it (below ``recipe.steps``: converged or at a plateau;
        ``recipe.steps``: the cap), ``recipe.steps`` for Adam (a fixed schedule).

    Raises:
        NonFiniteLossError: a model's final training objective is not finite.
    """
    M, D = x.shape[0], x.shape[2]
    if len(seeds) != M:
        raise ValueError(f"seeds: expected one per model ({M}), got {len(seeds)}")
    # L-BFGS's line search compares objectives near convergence: float64 keeps them apart (on
    # these small networks a step costs its number of operations, not their precision).
    device = pick_device(recipe.device)
    dtype = torch.float64 if recipe.optimiser == "lbfgs" else torch.float32
    model = BatchedTanhMLP.init(seeds, D, recipe.hidden, recipe.layers, device, dtype)
    to = lambda v: None if v is None else v.to(device, dtype)  # noqa: E731
    x, t, G, weight = to(x), to(t), to(G), to(weight)
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
    if recipe.optimiser == "lbfgs":
        bar = progress_bar(range(recipe.steps), desc + " L-BFGS", progress)
        history = train_lbfgs(model, x, t, recipe.steps, G, weight, converged=recipe.converged,
                              on_iteration=lambda *_: bar.update())  # fmt: skip
        bar.close()
        iterations = history.stopped_at
    else:
        train_ensemble(
            model, x, t, lr=recipe.lr, steps=recipe.steps, batch_size=recipe.batch_size, G=G, weight=weight,
            schedule="cosine", warmup=recipe.warmup, generator=torch.Generator().manual_seed(recipe.seed),
            log_every=recipe.eval_every if best is not None else 0, inspect=keep_best if best is not None else None,
            weight_schedule=None if recipe.lam_decay == 1.0
            else (lambda i: recipe.lam_decay ** (i * min(recipe.batch_size, x.shape[1]) / x.shape[1])),
            desc=desc,
            hint=f"lr = {recipe.lr:g} too large for this data; try sobolev.fit(..., lr={recipe.lr / 10:g})",
            progress=progress,
        )  # fmt: skip
    if best is not None:
        model.params.update(best)
    train_loss = model.losses(x, t, G, weight)
    if not bool(torch.isfinite(train_loss).all()):
        bad = torch.nonzero(~torch.isfinite(train_loss)).flatten().tolist()
        remedy = ("try sobolev.fit(..., optimiser='adam')" if recipe.optimiser == "lbfgs"
                  else f"lr = {recipe.lr:g}; try sobolev.fit(..., lr={recipe.lr / 10:g})")  # fmt: skip
        raise NonFiniteLossError(
            f"{desc}: member(s) {bad} of {M} diverged (training loss not finite) with {recipe.optimiser}; {remedy}"
        )
    return model, train_loss, iterations


def _train(s: Samples, recipe: Recipe, progress: bool | TextIO, label_weights: Tensor | None = None) -> FittedModel:
    K, R, D = s.outputs, recipe.models, s.dim
    train_rows, val_rows = _member_sets(s, recipe)
    # One normaliser per output, from the points every member may train on.
    norms = [Normaliser.from_samples(s.x, s.y[:, k]) for k in range(K)]
    xs = torch.stack([nm.x(s.x) for nm in norms])  # (K, N, D)
    ys = torch.stack([nm.y(s.y[:, k]) for k, nm in enumerate(norms)])  # (K, N)
    gs = None if s.dydx is None else torch.stack([nm.g(s.dydx[:, k]) for k, nm in enumerate(norms)])
    out = torch.arange(K).repeat_interleave(R).unsqueeze(1)  # member -> output
    x, t = xs[out, train_rows], ys[out, train_rows]
    G = weight = val_weight = None
    if gs is not None:
        G = gs[out, train_rows]
        weight = val_weight = balance(G, recipe.lam)
        if label_weights is not None:  # per label: (M, N_train, D), the balance times the confidence
            lw = label_weights.permute(1, 0, 2)  # (K, N, D)
            weight = val_weight.unsqueeze(1) * lw[out, train_rows]
            val_weight = None if val_rows is None else val_weight.unsqueeze(1) * lw[out, val_rows]
    seeds = [recipe.seed + r for _ in range(K) for r in range(R)]
    validation = None
    if val_rows is not None:
        validation = (xs[out, val_rows], ys[out, val_rows], None if gs is None else gs[out, val_rows], val_weight)
    desc = f"sobolev.fit: {'Sobolev' if G is not None else 'regular'} N={s.n} D={D} ({K * R} models)"
    model, train_loss, iterations = train_members(x, t, G, weight, recipe, seeds, validation, desc, progress)
    info = {"n": s.n, "dim": D, "outputs": K, "scalar_output": s.scalar_output, "derivatives": G is not None,
            "train_loss": float(train_loss.mean()), "iterations": int(iterations.max())}  # fmt: skip
    return FittedModel(model.state_dict(), norms, recipe, info)


__all__ = ["FittedModel", "Prediction", "Recipe", "balance", "choose_recipe", "fit", "train_members"]
