"""Section 4.3's datasets, each as ``{"train": (x, y), "test": (x, y)}`` tensors.

* ``mnist1d`` (the offline default): MNIST-1D signals ``(N, 1, 40)``, generated procedurally
  by the ``mnist1d`` package from its ten templates (``make_dataset``; never its download path);
* ``digits``: scikit-learn's 8×8 digits ``(N, 1, 8, 8)``, which ship with the package;
* ``cifar10``: the official archive pinned in ``data.dvc`` (the paper scale).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sobolev.common.paths import resolve
from sobolev.core.datasets import Split, load_mnist1d_split
from sobolev.synthetic_gradients.cifar import load_cifar10


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """scikit-learn's digits (ships with the package, offline): ``x (N, 1, 8, 8)`` in [0, 1], ``y (N,)``,
    split at random (fixed ``seed``) into train and test."""
    from sklearn.datasets import load_digits  # the pipeline extra's, imported only when used

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return {"train": (x[train], y[train]), "test": (x[test], y[test])}


def load_cifar10_split(path: str) -> Split:
    """The official CIFAR-10 archive (checksum verified; a clear error says how to fetch it),
    as float images standardised per channel with the training set's statistics."""
    raw = load_cifar10(path)
    x_train = raw["train"][0].float() / 255
    mean, std = x_train.mean((0, 2, 3), keepdim=True), x_train.std((0, 2, 3), keepdim=True)
    return {split: ((x.float() / 255 - mean) / std, y) for split, (x, y) in raw.items()}


def load_dataset(name: str, cifar_path: str = "", samples: int = 5000, train_fraction: float = 0.8) -> Split:
    """The dataset ``name`` (see the module docstring); ``samples`` and ``train_fraction`` size MNIST-1D."""
    if name == "mnist1d":
        return load_mnist1d_split(samples, train_fraction)
    if name == "digits":
        return load_digits_split()
    if name == "cifar10":
        return load_cifar10_split(str(resolve(cifar_path)))
    raise ValueError(f"dataset must be 'mnist1d', 'digits' or 'cifar10', got {name!r}")


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
