"""Section 4.3 experiment: the SM's CIFAR-10 network, cut by SG modules, trained per variant.

The network is SM §4.2's: 3×3 convolutions with BatchNorm and ReLU, widths 64 to 512 (the SM
lists 11 such layers; three of them have stride 2), then a linear layer to the classes.
Cuts sit after the last layer of each of the first three resolutions, giving three SG
modules. ``width_scale`` shrinks every width, for the offline default on scikit-learn's
digits (8×8 images, which the three stride-2 layers take down to 1×1).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TextIO

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sobolev.common.paths import resolve
from sobolev.common.utils import pick_device, set_threads
from sobolev.core.training import train_loop
from sobolev.synthetic.config import SyntheticConfig
from sobolev.synthetic.decoupled import DecoupledTrainer

# (output channels, stride) per convolution, as listed in SM §4.2.
SM_CIFAR_LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1), (512, 2), (512, 1), (512, 1),
)  # fmt: skip
DEFAULT_CUTS: tuple[int, ...] = (2, 5, 8)  # after layers 2, 5 and 8: the end of each of the first 3 resolutions


def cifar_blocks(
    in_channels: int = 3,
    n_classes: int = 10,
    image_size: int = 32,
    width_scale: float = 1.0,
    cuts: Sequence[int] = DEFAULT_CUTS,
) -> nn.ModuleList:
    """SM §4.2's network split after the layers in ``cuts`` (1-based layer counts).

    Returns ``len(cuts) + 1`` blocks; the last ends in the linear classifier. Raises a
    ``ValueError`` for a cut outside ``1 .. len(layers) - 1`` or an image size that the
    stride-2 layers cannot halve exactly.
    """
    n = len(SM_CIFAR_LAYERS)
    cuts = list(cuts)
    if sorted(set(cuts)) != cuts or any(not 1 <= c <= n - 1 for c in cuts):
        raise ValueError(
            f"cuts must be increasing layer counts within 1..{n - 1} (the network has {n} layers), got {cuts}"
        )
    downsample = 2 ** sum(1 for _, s in SM_CIFAR_LAYERS if s == 2)
    if image_size % downsample:
        raise ValueError(f"image_size must be a multiple of {downsample}, got {image_size}")
    if not width_scale > 0:
        raise ValueError(f"width_scale must be positive, got {width_scale}")
    layers: list[nn.Module] = []
    channels = in_channels
    for out, stride in SM_CIFAR_LAYERS:
        out = max(1, round(out * width_scale))
        layers.append(nn.Sequential(nn.Conv2d(channels, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()))
        channels = out
    side = image_size // downsample
    head = nn.Sequential(nn.Flatten(), nn.Linear(channels * side * side, n_classes))
    bounds = [0, *cuts, n]
    blocks = [nn.Sequential(*layers[a:b]) for a, b in itertools.pairwise(bounds)]
    blocks[-1].append(head)
    return nn.ModuleList(blocks)


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> dict[str, tuple[Tensor, Tensor]]:
    """scikit-learn's digits (ships with the package, offline): ``x (N, 1, 8, 8)`` in [0, 1], ``y (N,)``,
    split at random (fixed ``seed``) into train and test."""
    from sklearn.datasets import load_digits

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}


def load_cifar10_split(path: str) -> dict[str, tuple[Tensor, Tensor]]:
    """The official CIFAR-10 archive (checksum verified; a clear error says how to fetch it),
    as float images standardised per channel with the training set's statistics."""
    from sobolev.synthetic.cifar import load_cifar10

    raw = load_cifar10(path)
    x_train = raw["train"][0].float() / 255
    mean, std = x_train.mean((0, 2, 3), keepdim=True), x_train.std((0, 2, 3), keepdim=True)
    return {split: ((x.float() / 255 - mean) / std, y) for split, (x, y) in raw.items()}


def augment(x: Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> Tensor:
    """Random crop with zero padding and random horizontal flip, batched on ``x``'s device."""
    B, _, H, W = x.shape
    if pad:
        padded = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (B,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (B,), generator=generator).to(x.device)
        rows = (dy.view(B, 1) + torch.arange(H, device=x.device)).view(B, 1, H, 1)
        cols = (dx.view(B, 1) + torch.arange(W, device=x.device)).view(B, 1, 1, W)
        x = padded.gather(2, rows.expand(B, x.shape[1], H, padded.shape[3])).gather(3, cols.expand(B, x.shape[1], H, W))
    if flip:
        mask = (torch.rand(B, generator=generator) < 0.5).to(x.device).view(B, 1, 1, 1)
        x = torch.where(mask, x.flip(3), x)
    return x


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
    data: dict[str, tuple[Tensor, Tensor]],
    seed: int,
    steps: int,
    batch_size: int,
    lr: float = 0.1,
    milestones: Sequence[int] = (),
    weight_decay: float = 1e-4,
    sg_lr: float = 1e-4,
    width_scale: float = 1.0,
    n_classes: int = 10,
    augment_pad: int = 0,
    augment_flip: bool = False,
    log_every: int = 50,
    device: torch.device | str = "cpu",
    progress: bool | TextIO = False,
) -> dict:
    """Train one network with ``variant`` and report test accuracy and the SG diagnostics.

    Main optimiser as SM §4.2: SGD with momentum 0.9, learning rate ``lr`` divided by 10 at
    each of ``milestones`` (update counts), L2 ``weight_decay``; SG modules: Adam ``sg_lr``.

    Returns:
        ``{"test_accuracy": float, "curve": [{"step", "loss", "cut", "cosine"}, ...]}``.
    """
    x, y = (t.to(device) for t in data["train"])
    torch.manual_seed(seed)
    blocks = cifar_blocks(x.shape[1], n_classes, x.shape[2], width_scale).to(device)
    opt = torch.optim.SGD(blocks.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma=0.1)
    trainer = DecoupledTrainer(blocks, variant, n_classes, x[:batch_size], opt, sg_lr=sg_lr)
    for m in trainer.sg_modules:
        m.to(device)
    g = torch.Generator().manual_seed(10_000 + seed)
    curve = []

    def step(i: int) -> float:
        idx = torch.randint(len(y), (batch_size,), generator=g).to(device)
        xb = x[idx]
        if augment_pad or augment_flip:
            xb = augment(xb, g, augment_pad, augment_flip)
        log = i % log_every == 0 or i == steps
        out = trainer.step(xb, y[idx], diagnostics=log)
        sched.step()
        if log:
            cos = out.get("cosine") or [float("nan")]
            curve.extend({"step": i, "loss": out["loss"], "cut": k, "cosine": c} for k, c in enumerate(cos))
        return out["loss"]

    hint = "synthetic.lr, synthetic.sg_lr or synthetic.weight_decay too large (or not a number)"
    train_loop(step, steps, desc=f"synthetic: {variant} seed {seed}", hint=hint, progress=progress)
    x_test, y_test = (t.to(device) for t in data["test"])
    return {"test_accuracy": accuracy(blocks, x_test, y_test), "curve": curve}


def load_dataset(name: str, cifar_path: str) -> dict[str, tuple[Tensor, Tensor]]:
    if name == "digits":
        return load_digits_split()
    if name == "cifar10":
        return load_cifar10_split(str(resolve(cifar_path)))
    raise ValueError(f"dataset must be 'digits' or 'cifar10', got {name!r}")


def run_table(cfg: SyntheticConfig, progress: bool | TextIO = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every variant × seed of ``cfg``; returns (results, curves) DataFrames."""
    set_threads(cfg.threads)
    device = pick_device(cfg.device)
    data = load_dataset(cfg.dataset, cfg.cifar_path)
    cifar = cfg.dataset == "cifar10"
    rows, curves = [], []
    for variant in cfg.variants:
        for seed in range(cfg.seeds):
            out = train_variant(
                variant, data, seed, cfg.steps, cfg.batch_size, cfg.lr, cfg.milestones, cfg.weight_decay,
                cfg.sg_lr, cfg.width_scale, augment_pad=4 if cifar else 0, augment_flip=cifar,
                log_every=cfg.log_every, device=device, progress=progress,
            )  # fmt: skip
            rows.append({"variant": variant, "seed": seed, "test_accuracy": out["test_accuracy"],
                         "test_images": len(data["test"][1])})  # fmt: skip
            curves += [{"variant": variant, "seed": seed, **c} for c in out["curve"]]
    return pd.DataFrame(rows), pd.DataFrame(curves)
