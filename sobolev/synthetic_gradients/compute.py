"""Section 4.3 experiment: the SM's CIFAR-10 network, cut by SG modules, trained per variant.

The network is SM §4.2's: 3×3 convolutions with BatchNorm and ReLU, widths 64 to 512 (the SM
lists 11 such layers; three of them have stride 2), then a linear layer to the classes.
Cuts sit after the last layer of each of the first three resolutions, giving three SG
modules. ``width_scale`` shrinks every width, for the offline default on scikit-learn's
digits (8×8 images, which the three stride-2 layers take down to 1×1).
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import TextIO

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from sobolev.common.utils import pick_device, progress_bar, set_threads
from sobolev.core.training import train_loop
from sobolev.synthetic_gradients.config import SyntheticGradientsConfig
from sobolev.synthetic_gradients.data import Split, augment, load_dataset
from sobolev.synthetic_gradients.decoupled import DecoupledTrainer

# (output channels, stride) per convolution, as listed in SM §4.2.
SM_CIFAR_LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1), (512, 2), (512, 1), (512, 1),
)  # fmt: skip
DEFAULT_CUTS: tuple[int, ...] = (2, 5, 8)  # after layers 2, 5 and 8: the end of each of the first 3 resolutions


def sm_blocks(
    in_channels: int = 3,
    n_classes: int = 10,
    size: int = 32,
    width_scale: float = 1.0,
    cuts: Sequence[int] = DEFAULT_CUTS,
    dims: int = 2,
) -> nn.ModuleList:
    """SM §4.2's network split after the layers in ``cuts`` (1-based layer counts).

    ``dims = 2``: 3×3 convolutions on images ``(B, C, size, size)`` (CIFAR-10, digits);
    ``dims = 1``: its 1-D analogue, kernel-3 convolutions on signals ``(B, C, size)`` (MNIST-1D).
    Returns ``len(cuts) + 1`` blocks; the last ends in the linear classifier. Raises a
    ``ValueError`` for a cut outside ``1 .. len(layers) - 1`` or a size that the stride-2
    layers cannot halve exactly.
    """
    n = len(SM_CIFAR_LAYERS)
    cuts = list(cuts)
    if sorted(set(cuts)) != cuts or any(not 1 <= c <= n - 1 for c in cuts):
        raise ValueError(
            f"cuts must be increasing layer counts within 1..{n - 1} (the network has {n} layers), got {cuts}"
        )
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (signals) or 2 (images), got {dims}")
    downsample = 2 ** sum(1 for _, s in SM_CIFAR_LAYERS if s == 2)
    if size % downsample:
        raise ValueError(f"size must be a multiple of {downsample}, got {size}")
    if not width_scale > 0:
        raise ValueError(f"width_scale must be positive, got {width_scale}")
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
    layers: list[nn.Module] = []
    channels = in_channels
    for out, stride in SM_CIFAR_LAYERS:
        out = max(1, round(out * width_scale))
        layers.append(nn.Sequential(conv(channels, out, 3, stride, 1, bias=False), norm(out), nn.ReLU()))
        channels = out
    head = nn.Sequential(nn.Flatten(), nn.Linear(channels * (size // downsample) ** dims, n_classes))
    bounds = [0, *cuts, n]
    blocks = [nn.Sequential(*layers[a:b]) for a, b in itertools.pairwise(bounds)]
    blocks[-1].append(head)
    return nn.ModuleList(blocks)


@torch.no_grad()
def accuracy(blocks: nn.ModuleList, x: Tensor, y: Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy in eval mode (BatchNorm running statistics)."""
    blocks.eval()
    correct = 0
    for xb, yb in zip(x.split(batch), y.split(batch), strict=True):
        out = xb
        for block in blocks:
            out = block(out)
        correct += int((out.argmax(1) == yb).sum())
    blocks.train()
    return correct / len(y)


def train_variant(
    variant: str,
    data: Split,
    seed: int,
    steps: int,
    batch_size: int,
    lr: float = 0.1,
    milestones: Sequence[int] = (),
    weight_decay: float = 1e-4,
    sg_lr: float = 1e-4,
    width_scale: float = 1.0,
    sg_width: int | None = None,
    sg_loss: str = "l2",
    relative: bool = True,
    zero_last: bool = False,
    n_classes: int = 10,
    augment_pad: int = 0,
    augment_flip: bool = False,
    log_every: int = 50,
    device: torch.device | str = "cpu",
    progress: bool | TextIO = False,
) -> dict:
    """Train one network with ``variant`` and report its accuracies and the SG diagnostics.

    Main optimiser as SM §4.2: SGD with momentum 0.9, learning rate ``lr`` divided by 10 at
    each of ``milestones`` (update counts), L2 ``weight_decay``; SG modules: Adam ``sg_lr``,
    hidden width ``sg_width``, ``sg_loss``, ``relative`` and ``zero_last`` as in
    :class:`~sobolev.synthetic_gradients.decoupled.DecoupledTrainer`. The network's initial weights and
    the batches depend on ``seed`` only, so every variant of a seed starts alike (paired).

    Returns:
        ``{"test_accuracy", "train_accuracy", "curve": [{"step", "loss", "cut", "cosine",
        "norm_ratio"}, ...]}``: every ``log_every`` updates the mean training loss since the last
        log and, per cut, the cosine and norm ratio of synthetic to true gradient.
    """
    x, y = (t.to(device) for t in data["train"])
    torch.manual_seed(seed)
    blocks = sm_blocks(x.shape[1], n_classes, x.shape[2], width_scale, dims=x.ndim - 2).to(device)
    opt = torch.optim.SGD(blocks.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma=0.1)
    trainer = DecoupledTrainer(
        blocks,
        variant,
        n_classes,
        x[:batch_size],
        opt,
        sg_lr=sg_lr,
        sg_width=sg_width,
        sg_loss=sg_loss,
        relative=relative,
        zero_last=zero_last,
    )
    for m in trainer.sg_modules:
        m.to(device)
    g = torch.Generator().manual_seed(10_000 + seed)
    curve: list[dict] = []
    window: list[float] = []  # batch losses since the last log: the curve's loss is their mean

    def step(i: int) -> float:
        idx = torch.randint(len(y), (batch_size,), generator=g).to(device)
        xb = x[idx]
        if augment_pad or augment_flip:
            xb = augment(xb, g, augment_pad, augment_flip)
        log = i % log_every == 0 or i == steps
        out = trainer.step(xb, y[idx], diagnostics=log)
        sched.step()
        window.append(out["loss"])
        if log:
            loss = sum(window) / len(window)
            window.clear()
            cos = out.get("cosine") or [float("nan")]
            ratio = out.get("norm_ratio") or [float("nan")]
            curve.extend(
                {"step": i, "loss": loss, "cut": k, "cosine": c, "norm_ratio": r}
                for k, (c, r) in enumerate(zip(cos, ratio, strict=True))
            )
        return out["loss"]

    hint = "synthetic.lr, synthetic.sg_lr or synthetic.weight_decay too large (or not a number)"
    train_loop(step, steps, desc=f"synthetic: {variant} seed {seed}", hint=hint, progress=progress)
    x_test, y_test = (t.to(device) for t in data["test"])
    return {"test_accuracy": accuracy(blocks, x_test, y_test), "train_accuracy": accuracy(blocks, x, y), "curve": curve}


# Longest first, so that the last runs to finish are short ones (better packing over workers).
_COST_ORDER = ("direct", "sobolev", "small_model", "critic", "backprop", "no_backprop")


def _train_job(job: tuple[SyntheticGradientsConfig, str, int, Split]) -> tuple[dict, list[dict]]:
    """One (variant, seed) run of ``cfg``: its result row and its curve rows (a worker's task)."""
    cfg, variant, seed, data = job
    set_threads(cfg.threads)
    cifar = cfg.dataset == "cifar10"
    out = train_variant(
        variant, data, seed, cfg.steps, cfg.batch_size, cfg.lr, cfg.milestones, cfg.weight_decay, cfg.sg_lr,
        cfg.width_scale, cfg.sg_width, cfg.sg_loss, cfg.sg_scale == "relative", cfg.sg_last_init == "zero",
        augment_pad=4 if cifar else 0, augment_flip=cifar, log_every=cfg.log_every, device=pick_device(cfg.device),
    )  # fmt: skip
    row = {"variant": variant, "seed": seed, "test_accuracy": out["test_accuracy"],
           "train_accuracy": out["train_accuracy"], "test_images": len(data["test"][1])}  # fmt: skip
    return row, [{"variant": variant, "seed": seed, **c} for c in out["curve"]]


def run_table(cfg: SyntheticGradientsConfig, progress: bool | TextIO = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every variant × seed of ``cfg``; returns (results, curves) DataFrames.

    With ``cfg.workers > 1`` the runs are spread over that many processes (spawned, each with
    ``cfg.threads`` threads); a run's numbers do not depend on which worker trains it.
    """
    set_threads(cfg.threads)
    data = load_dataset(cfg.dataset, cfg.cifar_path, cfg.samples, cfg.train_fraction)
    rank = {v: i for i, v in enumerate(_COST_ORDER)}
    jobs = [(cfg, v, s, data) for v in sorted(cfg.variants, key=rank.__getitem__) for s in range(cfg.seeds)]
    bar = progress_bar(range(len(jobs)), f"synthetic: {len(jobs)} runs on {cfg.workers} worker(s)", progress)
    done = []
    if cfg.workers == 1:
        for job in jobs:
            done.append(_train_job(job))
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # fork after torch has started threads can hang
        with ProcessPoolExecutor(cfg.workers, mp_context=context) as pool:
            for future in as_completed([pool.submit(_train_job, job) for job in jobs]):
                done.append(future.result())
                bar.update()
    bar.close()
    order = {v: i for i, v in enumerate(cfg.variants)}
    rows = sorted((row for row, _ in done), key=lambda r: (order[r["variant"]], r["seed"]))
    curves = [c for _, curve in done for c in curve]
    results = pd.DataFrame(rows)
    curves = pd.DataFrame(curves)
    if len(curves):
        curves = curves.sort_values(
            ["variant", "seed", "step", "cut"], key=lambda c: c.map(order) if c.name == "variant" else c
        )
    return results, curves.reset_index(drop=True)


@dataclass
class Result:
    """Table 1's runs (:func:`run_table`) and the settings that made them.

    Attributes:
        cfg: the section's config.
        runs: one row per (variant, seed): ``test_accuracy``, ``train_accuracy``, ``test_images``.
        curves: per (variant, seed, logged step, cut): training loss and, for SG variants, the
            synthetic gradients' cosine with the true gradient and their norm ratio.
    """

    cfg: SyntheticGradientsConfig
    runs: pd.DataFrame
    curves: pd.DataFrame


def run(cfg: SyntheticGradientsConfig, progress: bool | TextIO = False) -> Result:
    """Section 4.3's computation: every variant × seed of ``cfg`` (:func:`run_table`)."""
    return Result(cfg, *run_table(cfg, progress))


# Table 1 of the paper, CIFAR-10 with 3 SG modules: test accuracy (%), mean and std.
PAPER_CIFAR10 = {
    "backprop": (94.3, None),
    "no_backprop": (54.5, 1.15),
    "direct": (79.2, 0.01),
    "small_model": (88.5, 2.70),
    "critic": (93.2, 0.02),
    "sobolev": (93.5, 0.01),
}
# The paper's ordering: no backprop < direct SG < small-model SG < critic ≤ Sobolev < backprop.
PAPER_ORDER = ("no_backprop", "direct", "small_model", "critic", "sobolev", "backprop")
SG_VARIANTS = ("direct", "small_model", "critic", "sobolev")


def present_variants(results: pd.DataFrame) -> list[str]:
    """The variants of ``results`` in the paper's order."""
    return [v for v in PAPER_ORDER if v in set(results.variant)]


def windowed_cosine(curves: pd.DataFrame, windows: int = 10) -> pd.DataFrame:
    """The logged cosine similarity (and norm ratio) of synthetic to true gradient averaged over
    ``windows`` equal windows of training, per variant, cut, seed and window. Columns: variant,
    cut, seed, window (1-based), step (the window's last update), cosine, norm_ratio."""
    sg = curves.dropna(subset=["cosine"])
    if not len(sg):
        return pd.DataFrame(columns=["variant", "cut", "seed", "window", "step", "cosine", "norm_ratio"])
    steps = int(sg.step.max())
    sg = sg.assign(window=np.minimum(windows, np.ceil(sg.step * windows / steps)).astype(int))
    out = sg.groupby(["variant", "cut", "seed", "window"], as_index=False)[["cosine", "norm_ratio"]].mean()
    return out.assign(step=(out.window * steps / windows).round().astype(int))
