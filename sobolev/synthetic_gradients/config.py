"""Section 4.3's parameters (``params.yaml: synthetic_gradients``), validated before any training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sobolev.common.params import MAX_LR, SectionConfig, choice, device, integer, items, number, param, text, threads
from sobolev.common.paths import resolve
from sobolev.core.datasets import require_mnist1d
from sobolev.synthetic_gradients.cifar import verify_archive
from sobolev.synthetic_gradients.decoupled import SG_LOSSES, VARIANTS

DATASETS = ("mnist1d", "digits", "cifar10")
SG_SCALES = ("absolute", "relative")
SG_LAST_INITS = ("default", "zero")
REQUIRED_VARIANTS = ("no_backprop", "backprop")  # Table 1's floor and ceiling


@dataclass(frozen=True)
class SyntheticGradientsConfig(SectionConfig):
    """Section 4.3: synthetic gradients from Sobolev-trained critics (Table 1)."""

    SECTION: ClassVar[str] = "synthetic_gradients"

    dataset: str = param(
        choice(DATASETS), "mnist1d: offline default (generated); digits: offline; cifar10: the pinned archive"
    )
    samples: int = param(integer(20, 10_000_000), "MNIST-1D signals generated")
    train_fraction: float = param(number(0, 1, open_low=True), "MNIST-1D: the first share trains, the rest tests")
    variants: list[str] = param(items(choice(VARIANTS)))
    seeds: int = param(integer(1, 10_000))
    steps: int = param(integer(1, 10_000_000))
    batch_size: int = param(integer(1, 100_000))
    lr: float = param(number(0, MAX_LR, open_low=True))
    milestones: list[int] = param(items(integer(1, 10_000_000), allow_empty=True, increasing=True))
    weight_decay: float = param(number(0, 1))
    sg_lr: float = param(number(0, MAX_LR, open_low=True))
    sg_width: int = param(integer(1, 100_000), "hidden width of every SG module")
    sg_loss: str = param(choice(SG_LOSSES), "l2: regress the conditional mean (DNI); l1: the SM's")
    sg_scale: str = param(choice(SG_SCALES), "relative: each module loss term over its target's size in the batch")
    sg_last_init: str = param(choice(SG_LAST_INITS), "zero: critics start from a zero last layer (DNI)")
    width_scale: float = param(number(0, 16, open_low=True))
    log_every: int = param(integer(1, 10_000_000))
    cifar_path: str = param(text)
    device: str = param(device)
    threads: int = param(threads)
    workers: int = param(integer(1, 256), "runs trained at once, each in its own process with `threads` threads")

    def check(self) -> None:
        missing = [v for v in REQUIRED_VARIANTS if v not in self.variants]
        if missing:
            self.fail("variants", f"must include {' and '.join(REQUIRED_VARIANTS)} (Table 1's floor and ceiling)")
        if self.dataset == "mnist1d" and self.samples % 10:
            self.fail("samples", "must be a multiple of 10 (MNIST-1D generates one share per class)")
        if self.train_fraction >= 1:
            self.fail("train_fraction", "must be below 1 (the rest is the test set)")
        if any(m >= self.steps for m in self.milestones):
            self.fail("milestones", f"must be update counts within 1..{self.steps - 1} (steps = {self.steps})")

    def check_inputs(self) -> None:
        """CIFAR-10 must be present and intact (raises with how to fetch it); MNIST-1D needs its
        package (raises with the pip command); digits ship offline."""
        if self.dataset == "mnist1d":
            require_mnist1d()
        if self.dataset == "cifar10":
            verify_archive(resolve(self.cifar_path))


# What the stage writes besides its executed notebook (declared once; the pipeline installs exactly these).
OUTPUTS = ("figures", "runs.csv", "curves.csv", "metrics.json")
