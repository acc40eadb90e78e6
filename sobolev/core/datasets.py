"""Classification datasets generated offline, shared by the sections that train on them.

MNIST-1D (Greydanus 2020): signals of length 40 built procedurally by the ``mnist1d`` package
from ten templates (``make_dataset``; its download path is never used).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

Split = dict[str, tuple[Tensor, Tensor]]
MNIST1D_PIN = "mnist1d==0.0.2.post1"


def require_mnist1d() -> None:
    """Raise an ``ImportError`` that gives the pip command when the ``mnist1d`` package is missing."""
    try:
        import mnist1d.data  # noqa: F401
    except ImportError as err:
        raise ImportError(f"MNIST-1D needs the mnist1d package: pip install {MNIST1D_PIN} ({err})") from err


def load_mnist1d_split(samples: int = 5000, train_fraction: float = 0.8, seed: int = 42) -> Split:
    """MNIST-1D generated offline: ``samples`` signals ``x (N, 1, 40)`` (standardised over the whole
    set, as the package does) with labels ``y (N,)``; the first ``train_fraction`` train, the rest test.

    ``seed = 42`` and ``samples = 5000`` give the package's published dataset (4000 / 1000). The
    package seeds NumPy's global generator; its state is restored afterwards.
    """
    if samples < 20 or samples % 10:
        raise ValueError(f"samples must be a multiple of 10 (one share per class), at least 20, got {samples}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    require_mnist1d()
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = samples, train_fraction, seed
    state = np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)
    as_x = lambda a: torch.tensor(a, dtype=torch.float32).unsqueeze(1)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return {"train": (as_x(data["x"]), as_y(data["y"])), "test": (as_x(data["x_test"]), as_y(data["y_test"]))}
