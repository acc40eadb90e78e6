"""Section 4.3's parameters (``params.yaml: synthetic``), validated before any training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sobolev.common.params import MAX_LR, SectionConfig, choice, device, integer, items, number, param, text, threads
from sobolev.synthetic.decoupled import VARIANTS

DATASETS = ("digits", "cifar10")
REQUIRED_VARIANTS = ("no_backprop", "backprop")  # Table 1's floor and ceiling


@dataclass(frozen=True)
class SyntheticConfig(SectionConfig):
    """Section 4.3: synthetic gradients from Sobolev-trained critics (Table 1)."""

    SECTION: ClassVar[str] = "synthetic"

    dataset: str = param(choice(DATASETS), "digits: offline default; cifar10: the pinned archive (data.dvc)")
    variants: list[str] = param(items(choice(VARIANTS)))
    seeds: int = param(integer(1, 10_000))
    steps: int = param(integer(1, 10_000_000))
    batch_size: int = param(integer(1, 100_000))
    lr: float = param(number(0, MAX_LR, open_low=True))
    milestones: list[int] = param(items(integer(1, 10_000_000), allow_empty=True, increasing=True))
    weight_decay: float = param(number(0, 1))
    sg_lr: float = param(number(0, MAX_LR, open_low=True))
    width_scale: float = param(number(0, 16, open_low=True))
    log_every: int = param(integer(1, 10_000_000))
    cifar_path: str = param(text)
    device: str = param(device)
    threads: int = param(threads)

    def check(self) -> None:
        missing = [v for v in REQUIRED_VARIANTS if v not in self.variants]
        if missing:
            self.fail("variants", f"must include {' and '.join(REQUIRED_VARIANTS)} (Table 1's floor and ceiling)")
        if any(m >= self.steps for m in self.milestones):
            self.fail("milestones", f"must be update counts within 1..{self.steps - 1} (steps = {self.steps})")

    def check_inputs(self) -> None:
        """CIFAR-10 must be present and intact (raises with how to fetch it); digits ship offline."""
        if self.dataset == "cifar10":
            from sobolev.common.paths import resolve
            from sobolev.synthetic.cifar import verify_archive

            verify_archive(resolve(self.cifar_path))
