"""The relative-trust section's runs: one table of Section 4.1 regression runs, trained as batched
ensembles under Adam, Fromage or LARS, and the measurements made on them.

Three experiments share one run table (a run that two of them need is trained once):

* ``grid``: every function at ``sizes`` with paired seeds, regular and Sobolev, under Adam (its
  learning rate chosen on validation from ``adam_lrs``) and under Fromage at ``fromage_lr``, on
  the data scales of ``grid_normalisations``;
* ``sweep``: ``sweep_functions`` at ``sweep_size``, every optimiser of ``sweep_optimisers`` at
  every rate of ``sweep_lrs``, on the data scales of ``sweep_normalisations``;
* ``norms``: Fromage with and without ``p_bound`` and LARS at ``norm_lr``, a constant rate for
  ``norm_steps`` updates, recording each weight tensor's norm relative to its initial norm (on
  the sweep's functions and data scales).

``raw`` trains on the functions' own scale (the paper's setting); ``standard`` maps the domain
onto [-1, 1]² and standardises the values, the derivative targets following by the chain rule
(:class:`sobolev.core.samples.Normaliser`). Errors are always measured on the function's scale.

:func:`relative_trust` perturbs trained grid networks layer by layer and measures how far their
outputs and input gradients move.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sobolev.common.compare import converged, is_diverged, select_lr
from sobolev.common.stats import Interval, non_inferior, paired_ratio
from sobolev.common.utils import pick_device, set_threads
from sobolev.core.engine import SampleCache, convergence_steps, errors, evaluation_sets, mean_squares, training_sets
from sobolev.core.functions import get_function
from sobolev.core.models import BatchedMLP
from sobolev.core.samples import make_sample
from sobolev.core.training import train_ensemble
from sobolev.trust.config import TrustConfig

METHODS = ("regular", "sobolev")
ADAM, FROMAGE = "adam-tuned", "fromage-default"  # the grid's two arms
LAYERS = (("W1", "b1"), ("W2", "b2"), ("w3", "b3"))  # a layer = its weight and bias tensors
WEIGHTS = ("W1", "W2", "w3")
RUN_KEYS = ["function", "normalisation", "n_train", "seed", "method", "optimiser", "lr", "p_bound", "schedule", "steps"]
EXPERIMENTS = ("grid", "sweep", "norms")


def build_runs(cfg: TrustConfig) -> pd.DataFrame:
    """Every run of the three experiments, once each: :data:`RUN_KEYS` (``p_bound`` 0 = none)
    and one boolean column per experiment saying which need it."""
    rows = []

    def add(experiment: str, **keys: object) -> None:
        rows.append({**keys, **{e: e == experiment for e in EXPERIMENTS}})

    for norm, (size, n_seeds), fn in itertools.product(
        cfg.grid_normalisations, zip(cfg.sizes, cfg.seeds, strict=True), cfg.functions
    ):
        for seed in range(n_seeds):
            for method in METHODS:
                common = dict(function=fn, normalisation=norm, n_train=size, seed=seed, method=method, p_bound=0.0,
                              schedule="cosine", steps=cfg.steps)  # fmt: skip
                for lr in cfg.adam_lrs:
                    add("grid", optimiser="adam", lr=lr, **common)
                add("grid", optimiser="fromage", lr=cfg.fromage_lr, **common)
    for norm, fn in itertools.product(cfg.sweep_normalisations, cfg.sweep_functions):
        for seed in range(max(cfg.sweep_seeds, cfg.norm_seeds)):
            for method in METHODS:
                common = dict(function=fn, normalisation=norm, n_train=cfg.sweep_size, seed=seed, method=method)
                if seed < cfg.sweep_seeds:
                    for optimiser in cfg.sweep_optimisers:
                        for lr in cfg.sweep_lrs:
                            add("sweep", optimiser=optimiser, lr=lr, p_bound=0.0, schedule="cosine", steps=cfg.steps,
                                **common)  # fmt: skip
                if seed < cfg.norm_seeds:
                    for optimiser, bound in (("fromage", 0.0), ("fromage", cfg.p_bound), ("lars", 0.0)):
                        add("norms", optimiser=optimiser, lr=cfg.norm_lr, p_bound=bound, schedule="constant",
                            steps=cfg.norm_steps, **common)  # fmt: skip
    runs = pd.DataFrame(rows).groupby(RUN_KEYS, sort=False, as_index=False)[list(EXPERIMENTS)].any()
    runs.insert(0, "run", range(len(runs)))
    return runs.set_index("run", drop=False)


@dataclass
class TrustResult:
    """What :func:`run_all` computed.

    Attributes:
        runs: one row per run: :data:`RUN_KEYS`, the experiment flags, ``val_mse``, ``test_mse``,
            ``test_nmse`` (test MSE / Var f), ``test_grad_mse``, ``train_loss_90``,
            ``train_loss`` (the objective on the whole training set at 90% and 100% of
            training), ``converged`` and ``diverged``.
        norms: the ``norms`` runs' weight norms: ``run``, ``step``, ``tensor``, ``relative_norm``
            (‖p‖ / ‖p at step 0‖).
        networks: the trained parameters ``{name: (K, ...)}`` of the grid runs at the largest
            size with seed < ``trust_seeds``, and ``network_runs`` their run ids ``(K,)``.
    """

    runs: pd.DataFrame
    norms: pd.DataFrame
    networks: dict[str, Tensor]
    network_runs: list[int]


def _ensembles(runs: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """Runs that can train together (one size, loss, optimiser, bound, schedule and length),
    ordered by learning rate, in balanced chunks of at most ``size``."""
    out = []
    keys = ["normalisation", "n_train", "method", "optimiser", "p_bound", "schedule", "steps"]
    for _, group in runs.groupby(keys, sort=False):
        group = group.sort_values("lr", kind="stable")
        chunks = -(-len(group) // size)
        step = -(-len(group) // chunks)
        out += [group.iloc[i : i + step] for i in range(0, len(group), step)]
    return out


def _weight_norms(model: BatchedMLP) -> dict[str, Tensor]:
    return {n: model.params[n].reshape(model.n_models, -1).norm(dim=1).cpu() for n in WEIGHTS}


def run_all(cfg: TrustConfig, progress: bool | TextIO = True) -> TrustResult:
    """Train and evaluate every run of :func:`build_runs` (batched ensembles, see :func:`_ensembles`)."""
    set_threads(cfg.threads)
    device = pick_device(cfg.device)
    runs = build_runs(cfg)
    names = sorted(set(runs.function))
    fns = {n: get_function(n) for n in names}
    test, val, variance = evaluation_sets(fns, cfg.n_test, cfg.n_val)
    train: SampleCache = {}
    keep = runs.grid & (runs.n_train == max(cfg.sizes)) & (runs.seed < cfg.trust_seeds)
    metrics: dict[str, dict[int, float]] = {}
    tracks: list[pd.DataFrame] = []
    kept: dict[int, dict[str, Tensor]] = {}

    def record(name: str, ids: list[int], values: np.ndarray) -> None:
        metrics.setdefault(name, {}).update(zip(ids, values.tolist(), strict=True))

    for group in _ensembles(runs, cfg.ensemble_size):
        ids = list(group.index)
        first = group.iloc[0]
        steps, sobolev = int(first.steps), first.method == "sobolev"
        _, normalisers, x, t, G = training_sets(group.itertuples(), fns, train)
        x, t, G = x.to(device), t.to(device), G.to(device) if sobolev else None
        model = BatchedMLP.init(list(group.seed), in_dim=x.shape[2], hidden=cfg.hidden, device=device)
        track = bool(group.norms.any())
        start = _weight_norms(model)
        norm_rows: list[tuple[int, Tensor]] = [(0, torch.ones(len(ids), len(WEIGHTS)))] if track else []

        def inspect(i: int, model: BatchedMLP = model, start: dict = start, rows: list = norm_rows) -> None:
            now = _weight_norms(model)
            rows.append((i, torch.stack([now[n] / start[n] for n in WEIGHTS], 1)))

        check_at = convergence_steps(steps)
        label = f"{first.optimiser}{f' p_bound={first.p_bound:g}' if first.p_bound else ''}"
        history = train_ensemble(
            model, x, t, lr=torch.tensor(group.lr.values, dtype=x.dtype, device=device), steps=steps,
            batch_size=cfg.batch_size, G=G, weight=1.0 if sobolev else None, schedule=str(first.schedule),
            warmup=cfg.warmup, full_loss_at=check_at, generator=torch.Generator().manual_seed(int(first.n_train)),
            log_every=cfg.log_every, optimiser=str(first.optimiser), p_bound=float(first.p_bound) or None,
            inspect=inspect if track else None,
            desc=f"trust: {first.normalisation} {first.method} {label} n={first.n_train} ({len(ids)} models)",
            hint=f"a learning rate too large for {first.optimiser} (trust.adam_lrs / sweep_lrs / norm_lr)",
            describe=lambda bad, g=group: "; ".join(f"{r.function} lr={r.lr:g} seed {r.seed}"
                                                   for r in g.iloc[bad[:5]].itertuples()),
            progress=progress,
        )  # fmt: skip
        for split, data in (("val", val), ("test", test)):
            evaluated = [data[r.function] for r in group.itertuples()]
            mse, grad_mse = (e.numpy() for e in errors(model, evaluated, normalisers))
            record(f"{split}_mse", ids, mse)
            if split == "test":
                record("test_grad_mse", ids, grad_mse)
                record("test_nmse", ids, mse / np.array([variance[f] for f in group.function]))
        record("train_loss_90", ids, history.full_loss[check_at[0]].double().numpy())
        record("train_loss", ids, history.full_loss[check_at[1]].double().numpy())
        for step, rel in norm_rows:
            tracks.append(pd.DataFrame({
                "run": np.repeat(ids, len(WEIGHTS)), "step": step, "tensor": list(WEIGHTS) * len(ids),
                "relative_norm": rel.reshape(-1).double().numpy(),
            }))  # fmt: skip
        for j, run in enumerate(ids):
            if keep[run]:
                kept[run] = {n: v[j].detach().cpu() for n, v in model.params.items()}

    for name, values in metrics.items():
        runs[name] = pd.Series(values)
    mean_square = mean_squares(val)
    runs["diverged"] = is_diverged(runs.val_mse, runs.function.map(mean_square)) | ~np.isfinite(runs.test_mse)
    runs["converged"] = converged(runs.train_loss_90, runs.train_loss, cfg.converged_change)
    norms = pd.concat(tracks, ignore_index=True) if tracks else pd.DataFrame(columns=["run", "step", "tensor"])
    order = sorted(kept)
    networks = {n: torch.stack([kept[r][n] for r in order]) for n in BatchedMLP.NAMES} if order else {}
    return TrustResult(runs, norms[norms.run.isin(runs.index[runs.norms])], networks, order)


# ---------------------------------------------------------------- the grid: does Sobolev's gain survive?


def grid_arms(runs: pd.DataFrame) -> pd.DataFrame:
    """The grid's two arms per run: Adam at its learning rate chosen on validation (per
    function, size and loss; :func:`sobolev.common.compare.select_lr`) and Fromage at its default."""
    grid = runs[runs.grid]
    keys = ["function", "normalisation", "n_train", "method"]
    adam = select_lr(grid[grid.optimiser == "adam"], keys, key_name="trust.adam_lrs").assign(arm=ADAM)
    fromage = grid[grid.optimiser == "fromage"].assign(arm=FROMAGE)
    return pd.concat([adam, fromage], ignore_index=True)


def _paired(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> list[dict]:
    """Per ``keys`` cell, ``a`` against ``b`` over paired seeds; a diverged run's error counts as
    infinite, so a cell with one decides nothing (its interval is infinite)."""
    rows = []
    scored = [d.assign(test_mse=d.test_mse.where(~d.diverged.astype(bool), np.inf)) for d in (a, b)]
    both = scored[0].merge(scored[1], on=[*keys, "seed"], suffixes=("", "_b"))
    for key, cell in both.groupby(keys, sort=True):
        r: Interval = paired_ratio(cell.test_mse, cell.test_mse_b)
        rows.append({**dict(zip(keys, key, strict=True)), "seeds": len(cell), "median": float(cell.test_nmse.median()),
                     "baseline_median": float(cell.test_nmse_b.median()), "ratio": r.estimate, "low": r.low,
                     "high": r.high, "verdict": r.verdict, "within_margin": non_inferior(r, COMPETITIVE),
                     "p_margin": r.p_against(COMPETITIVE), **r.evidence()})  # fmt: skip
    return rows


def sobolev_cells(arms: pd.DataFrame) -> pd.DataFrame:
    """Per arm, function and size: the geometric-mean ratio Sobolev / regular of the test MSE over
    paired seeds, with its bootstrap interval and verdict (win = Sobolev better)."""
    keys = ["arm", "normalisation", "function", "n_train"]
    return pd.DataFrame(_paired(arms[arms.method == "sobolev"], arms[arms.method == "regular"], keys))


def agreement(cells: pd.DataFrame) -> pd.DataFrame:
    """Per function and size, the Sobolev verdict under tuned Adam and under default Fromage."""
    index = ["normalisation", "function", "n_train"]
    table = cells.pivot_table(index=index, columns="arm", values="verdict", aggfunc="first")
    table = table[[ADAM, FROMAGE]].reset_index()
    table["agree"] = table[ADAM] == table[FROMAGE]
    return table


#: "Competitive": default Fromage's test MSE at most this multiple of tuned Adam's, decided on the paired interval
#: (non-inferiority: being better is allowed; :func:`~sobolev.common.stats.non_inferior`).
COMPETITIVE = 2.0


def optimiser_cells(arms: pd.DataFrame) -> pd.DataFrame:
    """Per loss, function and size: default Fromage / tuned Adam test MSE over paired seeds
    (win = Fromage better; ``within_margin``: Fromage decidedly no worse than :data:`COMPETITIVE` × Adam)."""
    keys = ["method", "normalisation", "function", "n_train"]
    return pd.DataFrame(_paired(arms[arms.arm == FROMAGE], arms[arms.arm == ADAM], keys))


# ---------------------------------------------------------------- the sweep: is it tuning-free?


def _sweep_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """The sweep's runs with ``score``: normalised test MSE, infinite for a diverged run."""
    return runs[runs.sweep].assign(score=lambda d: d.test_nmse.where(~d.diverged, np.inf))


def sweep_errors(runs: pd.DataFrame) -> pd.DataFrame:
    """The sweep's median normalised test MSE per function, loss, optimiser and rate (a diverged
    seed counts as infinite error)."""
    sweep = _sweep_scores(runs)
    keys = ["normalisation", "function", "method", "optimiser", "lr"]
    return sweep.groupby(keys)["score"].median().rename("median_nmse").reset_index()


#: A (function, loss) panel of the sweep where no optimiser at any rate gets the median test MSE
#: below this fraction of Var f learns nothing: every rate is about equally bad there, so being
#: "within a factor of the best" says nothing about tuning, and such panels are counted apart.
NOTHING_LEARNS = 0.5


def good_ranges(errors: pd.DataFrame, factor: float, default_lr: float) -> pd.DataFrame:
    """Per function, loss and optimiser, the rates whose median error is within ``factor`` of the
    best median any optimiser reached on that function and loss.

    Columns: ``best_lr``, ``best_nmse``, ``n_good``, ``good_low``, ``good_high``, ``decades``
    (log10 of ``good_high / good_low``; NaN when no rate is good), ``contiguous`` (no bad rate
    between two good ones), ``default_good`` (whether ``default_lr`` is a good rate) and
    ``learns`` (whether the panel's best median, over every optimiser, is below
    :data:`NOTHING_LEARNS`; where it is not, no rate is good: ``n_good`` 0, NaN range).
    """
    best = errors.groupby(["normalisation", "function", "method"])["median_nmse"].transform("min")
    learns = best < NOTHING_LEARNS
    errors = errors.assign(good=(errors.median_nmse <= factor * best) & learns, learns=learns)
    rows = []
    for (norm, fn, method, opt), g in errors.groupby(["normalisation", "function", "method", "optimiser"]):
        g = g.sort_values("lr")
        good = g[g.good]
        flags = g.good.to_numpy()
        idx = np.flatnonzero(flags)
        rows.append({
            "normalisation": norm, "function": fn, "method": method, "optimiser": opt,
            "best_lr": float(g.lr[g.median_nmse.idxmin()]), "best_nmse": float(g.median_nmse.min()),
            "n_good": len(good), "good_low": float(good.lr.min()) if len(good) else np.nan,
            "good_high": float(good.lr.max()) if len(good) else np.nan,
            "decades": float(np.log10(good.lr.max() / good.lr.min())) if len(good) else np.nan,
            "contiguous": bool(len(idx) == 0 or flags[idx[0] : idx[-1] + 1].all()),
            "default_good": bool(g.good[np.isclose(g.lr, default_lr)].any()),
            "learns": bool(g.learns.iloc[0]),
        })  # fmt: skip
    return pd.DataFrame(rows)


def default_tuning(runs: pd.DataFrame, factor: float, default_lr: float) -> pd.DataFrame:
    """Is Fromage at ``default_lr`` within ``factor`` of the best the sweep found? Per normalisation, function
    and loss: the best (optimiser, rate) by median error, and the paired ratio over seeds of Fromage-at-default's
    test error to the best's, with its t interval (:func:`~sobolev.common.stats.paired_ratio`); ``verdict`` is
    ``win`` when the interval lies below ``factor`` (needs no tuning there), ``loss`` when above it, else
    ``undecided`` (always with fewer than 5 seeds); ``learns``: the best's median test MSE is below
    :data:`NOTHING_LEARNS` × Var f (where it is not, "within a factor of the best" means nothing, and
    the claims count the panel apart). A diverged seed counts as infinite error."""
    sweep = _sweep_scores(runs)
    rows = []
    for (norm, fn, method), g in sweep.groupby(["normalisation", "function", "method"]):
        medians = g.groupby(["optimiser", "lr"])["score"].median()
        best_opt, best_lr = medians.idxmin()
        best = g[(g.optimiser == best_opt) & np.isclose(g.lr, best_lr)].set_index("seed").score
        default = g[(g.optimiser == "fromage") & np.isclose(g.lr, default_lr)].set_index("seed").score
        seeds = best.index.intersection(default.index)
        r = paired_ratio(default[seeds].to_numpy() / factor, best[seeds].to_numpy())
        rows.append({"normalisation": norm, "function": fn, "method": method, "best": f"{best_opt} {best_lr:g}",
                     "ratio_to_best": factor * r.estimate, "low": factor * r.low, "high": factor * r.high,
                     "seeds": r.n, "verdict": r.verdict,
                     "learns": bool(medians.min() < NOTHING_LEARNS)})  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- weight norms


def run_norms(runs: pd.DataFrame, norms: pd.DataFrame) -> pd.DataFrame:
    """The ``norms`` runs with ``variant`` (optimiser, + p_bound), ``final_norm`` and ``min_norm``:
    the relative norm of the weight matrices (geometric mean over the layers) at the end of
    training and its minimum over training."""
    per_step = norms.assign(log=np.log(norms.relative_norm)).groupby(["run", "step"])["log"].mean().reset_index()
    last = per_step.sort_values("step").groupby("run")["log"].last()
    table = runs.loc[last.index].assign(final_norm=np.exp(last), min_norm=np.exp(per_step.groupby("run")["log"].min()))
    bound = np.where(table.p_bound > 0, " p_bound=" + table.p_bound.map("{:g}".format), "")
    return table.assign(variant=table.optimiser + bound)


def norm_summary(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per variant and loss, medians over :func:`run_norms`' runs of the final and minimum relative
    norm and of the normalised test MSE, and the fraction of runs converged."""
    return per_run.groupby(["normalisation", "variant", "method"]).agg(
        runs=("run", "size"), final_norm=("final_norm", "median"), min_norm=("min_norm", "median"),
        test_nmse=("test_nmse", "median"), converged=("converged", "mean"),
    ).reset_index()  # fmt: skip


# ---------------------------------------------------------------- deep relative trust


def trust_bound(eps: float, layers: int = len(LAYERS)) -> float:
    """Deep relative trust's bound on the relative change, ``∏(1+εₗ) − 1`` with every εₗ = ε."""
    return (1 + eps) ** layers - 1


def perturbed(params: dict[str, Tensor], eps: float, directions: dict[str, Tensor]) -> dict[str, Tensor]:
    """``p + ε‖p‖·d/‖d‖`` for every tensor of every model (norms per model and tensor)."""
    out = {}
    for name, p in params.items():
        d = directions[name]
        M = p.shape[0]
        pn = p.reshape(M, -1).norm(dim=1)
        dn = d.reshape(M, -1).norm(dim=1).clamp_min(torch.finfo(p.dtype).tiny)
        out[name] = p + (eps * pn / dn).view(-1, *([1] * (p.ndim - 1))) * d
    return out


def relative_trust(
    networks: dict[str, Tensor],
    x: Tensor,
    train: tuple[Tensor, Tensor, Tensor | None],
    eps: list[float],
    draws: int,
    seed: int = 0,
) -> pd.DataFrame:
    """Perturb every layer of ``K`` trained networks by the relative amount ε and measure the
    relative change of their outputs and input gradients on ``x``.

    Args:
        networks: batched parameters ``{name: (K, ...)}`` (:class:`BatchedMLP`).
        x: inputs ``(K, P, 2)`` at which to compare (each network's own test points, on its scale).
        train: ``(x (K, N, 2), y (K, N), G (K, N, 2) or None)``, the training sets, whose loss
            gradient gives the ``gradient`` direction (a Fromage step of relative size ε).
        eps: relative perturbations ε (each tensor moves by ε‖p‖).
        draws: random Gaussian directions per ε (direction ``random``).

    Returns:
        One row per network, direction, draw and ε: ``network`` (index into K), ``direction``,
        ``draw``, ``eps``, ``bound`` (:func:`trust_bound`), ``output`` = ‖f' − f‖/‖f‖ and
        ``input_gradient`` = ‖∇ₓf' − ∇ₓf‖/‖∇ₓf‖ (norms over all points).
    """
    model = BatchedMLP(networks)
    y0, g0 = model.predict(x)
    K = model.n_models
    xt, yt, Gt = train
    loss_grads = model.loss_and_grads(xt, yt, Gt, None if Gt is None else torch.ones(K)).grads
    gen = torch.Generator().manual_seed(seed)
    directions = [("gradient", 0, {n: -loss_grads[n] for n in networks})]
    directions += [("random", i, {n: torch.randn(p.shape, generator=gen) for n, p in networks.items()})
                   for i in range(draws)]  # fmt: skip
    rows = []
    for e in eps:
        for name, draw, d in directions:
            y, g = BatchedMLP(perturbed(networks, e, d)).predict(x)
            out = ((y - y0).reshape(K, -1).norm(dim=1) / y0.reshape(K, -1).norm(dim=1)).double().numpy()
            grad = ((g - g0).reshape(K, -1).norm(dim=1) / g0.reshape(K, -1).norm(dim=1)).double().numpy()
            rows.append(pd.DataFrame({"network": range(K), "direction": name, "draw": draw, "eps": e,
                                      "bound": trust_bound(e), "output": out, "input_gradient": grad}))  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def trust_networks(result: TrustResult, cfg: TrustConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`relative_trust` on the kept grid networks (Adam at its chosen rate and Fromage),
    each on the first ``trust_points`` test points of its function (on the network's data scale;
    relative changes do not depend on the scale of the outputs). Returns the measurements and
    the networks' run rows (``network`` = position)."""
    chosen = grid_arms(result.runs)
    runs = result.runs.loc[result.network_runs]
    picked = runs.index[runs.index.isin(chosen.run)]
    position = [result.network_runs.index(r) for r in picked]
    params = {n: v[position] for n, v in result.networks.items()}
    rows = runs.loc[picked].reset_index(drop=True).assign(network=range(len(picked)))
    rows = rows.merge(chosen[["run", "arm"]], on="run")
    fns = {n: get_function(n) for n in set(rows.function)}
    _, normalisers, xt, yt, Gt = training_sets(rows.itertuples(), fns)
    test = {f: make_sample(fns[f], cfg.n_test, 0, "test").x[: cfg.trust_points] for f in set(rows.function)}
    x = torch.stack([nm.x(test[f]) for f, nm in zip(rows.function, normalisers, strict=True)])
    measured = []
    for method in METHODS:  # the loss whose gradient gives the ``gradient`` direction
        mine = rows[rows.method == method]
        if mine.empty:
            continue
        idx = list(mine.network)
        train = (xt[idx], yt[idx], Gt[idx] if method == "sobolev" else None)
        part = relative_trust({n: v[idx] for n, v in params.items()}, x[idx], train, cfg.trust_eps, cfg.trust_draws)
        part["network"] = np.asarray(idx)[part.network]
        measured.append(part)
    table = pd.concat(measured, ignore_index=True).merge(
        rows[["network", "function", "normalisation", "method", "arm", "seed"]], on="network"
    )
    return table, rows


def trust_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per direction and ε: the median of measured change / bound for outputs and input gradients,
    the fraction of networks (and draws) within the bound, and the ratio input-gradient change /
    output change (above 1: the input gradient moves more), decided on seeds: the networks of one seed (its
    functions and losses) are averaged in logs first, so the t interval runs over independent seeds, not over
    networks that share them (and is undecided below :data:`~sobolev.common.stats.MIN_SEEDS` seeds)."""
    rows = []
    for (direction, eps), g in table.groupby(["direction", "eps"], sort=True):
        per_net = g.groupby(["network", "seed"])[["output", "input_gradient"]].mean().reset_index()
        per_seed = np.exp(np.log(per_net[["output", "input_gradient"]]).groupby(per_net.seed).mean())
        r = paired_ratio(per_seed.input_gradient, per_seed.output)
        rows.append({
            "direction": direction, "eps": eps, "bound": float(g.bound.iloc[0]),
            "output_over_bound": float((g.output / g.bound).median()),
            "gradient_over_bound": float((g.input_gradient / g.bound).median()),
            "output_within": float((g.output <= g.bound).mean()),
            "gradient_within": float((g.input_gradient <= g.bound).mean()),
            "gradient_vs_output": r.estimate, "low": r.low, "high": r.high, "seeds": r.n, "verdict": r.verdict,
            "p_t": r.t_p_value,
        })  # fmt: skip
    return pd.DataFrame(rows)


def trust_slopes(table: pd.DataFrame) -> pd.DataFrame:
    """Per direction and quantity, the log-log slope of the median relative change against ε
    (least squares over the ε grid): 1 for a change proportional to ε, as the bound has at small ε;
    below 1 for a change that falls more slowly than ε (e.g. ReLU units switching: the input
    gradient is piecewise constant in the weights, so a fraction ∝ ε of (point, unit) pairs jump)."""
    rows = []
    for direction, g in table.groupby("direction", sort=True):
        med = g.groupby("eps")[["output", "input_gradient"]].median()
        for quantity in ("output", "input_gradient"):
            slope = np.polyfit(np.log(med.index.to_numpy()), np.log(med[quantity].to_numpy()), 1)[0]
            rows.append({"direction": direction, "quantity": quantity, "slope": float(slope)})
    return pd.DataFrame(rows)


@dataclass
class Result:
    """Everything the section computes (:func:`run`): the trained runs and every table the report
    states, each from the function named beside it.

    Attributes:
        cfg: the section's config.
        trained: the runs, weight norms and kept networks (:func:`run_all`).
        arms: the grid's runs at their chosen learning rates (:func:`grid_arms`).
        cells: Sobolev / regular per optimiser, function and size (:func:`sobolev_cells`).
        agreement: whether Adam's and Fromage's verdicts agree per cell (:func:`agreement`).
        optimiser_cells: Fromage / Adam per loss, function and size (:func:`optimiser_cells`).
        errors: the sweep's error per learning rate (:func:`sweep_errors`).
        ranges: each optimiser's good learning-rate range (:func:`good_ranges`).
        per_run: each norms run's final and smallest weight norm (:func:`run_norms`).
        norm_table: their summary (:func:`norm_summary`).
        trust_table: relative trust on the kept networks, and ``networks`` their rows
            (:func:`trust_networks`).
        trust: its summary per direction and size (:func:`trust_summary`).
        slopes: its log-log slopes (:func:`trust_slopes`).
        tuning: how each optimiser fares at its default rate (:func:`default_tuning`).
    """

    cfg: TrustConfig
    trained: TrustResult
    arms: pd.DataFrame
    cells: pd.DataFrame
    agreement: pd.DataFrame
    optimiser_cells: pd.DataFrame
    errors: pd.DataFrame
    ranges: pd.DataFrame
    per_run: pd.DataFrame
    norm_table: pd.DataFrame
    trust_table: pd.DataFrame
    networks: pd.DataFrame
    trust: pd.DataFrame
    slopes: pd.DataFrame
    tuning: pd.DataFrame


def run(cfg: TrustConfig, progress: bool | TextIO = True) -> Result:
    """Train every run of ``cfg`` (:func:`run_all`), then compute every table of the section, in
    the order the notebook shows them."""
    trained = run_all(cfg, progress)
    arms = grid_arms(trained.runs)
    cells = sobolev_cells(arms)
    errors = sweep_errors(trained.runs)
    per_run = run_norms(trained.runs, trained.norms)
    trust_table, networks = trust_networks(trained, cfg)
    return Result(
        cfg, trained, arms, cells, agreement(cells), optimiser_cells(arms), errors,
        good_ranges(errors, cfg.good_factor, cfg.fromage_lr), per_run, norm_summary(per_run), trust_table,
        networks, trust_summary(trust_table), trust_slopes(trust_table),
        default_tuning(trained.runs, cfg.good_factor, cfg.fromage_lr),
    )  # fmt: skip
