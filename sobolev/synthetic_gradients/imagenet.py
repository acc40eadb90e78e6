"""Scale-out path of Section 4.3: ResNet-50 on ImageNet with 1 or 3 SG modules (SM §4.3).

    torchrun --nproc_per_node=8 -m sobolev.synthetic_gradients.imagenet --config configs/imagenet_resnet50.yaml \\
        --data /path/to/imagenet --variant sobolev --modules 3

Needs a torchvision build matching the installed torch and an ImageNet folder in ImageFolder
layout (``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``). Each block and each SG module is
wrapped in its own DistributedDataParallel, so a block's gradients are all-reduced as soon
as its (synthetic) gradient arrives. Updates are synchronous; the paper used asynchronous
Hogwild updates on 34 workers. Not run in this repository (no GPU, no ImageNet): its pieces
that need neither are tested.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from sobolev.common.params import MAX_LR, ParamError, SectionConfig, choice, integer, items, number, param, text
from sobolev.synthetic_gradients.decoupled import CRITIC_VARIANTS, VARIANTS, CriticSG, DecoupledTrainer

CUTS = {1: ("layer2",), 3: ("layer1", "layer2", "layer3")}  # SM §4.3: one module after the second block


def require_torchvision() -> ModuleType:
    """Import torchvision lazily, with a clear message when it is missing or broken."""
    try:
        import torchvision
    except Exception as err:  # a CUDA build on a CPU torch fails with RuntimeError, not ImportError
        raise ImportError(
            "the ImageNet path needs torchvision built for your torch "
            f"({torch.__version__}): install the matching wheel from the PyTorch index "
            f"(e.g. pip install torchvision --index-url https://download.pytorch.org/whl/cu128); got: {err}"
        ) from err
    return torchvision


class ImageNetCritic(CriticSG):
    """SM §4.3's SG module: 64 3×3 s1, ReLU, 64 3×3 s2, ReLU, global average, 1000 1×1, softmax.

    Used as a critic ``m(h, y) = CE(p(h), y)``: :class:`sobolev.synthetic_gradients.CriticSG` with this
    network (its loss and synthetic gradient are inherited).
    """

    def __init__(self, feature_shape: tuple[int, ...], n_classes: int = 1000, width: int = 64) -> None:
        net = nn.Sequential(
            nn.Conv2d(feature_shape[0], width, 3, 1, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, n_classes, 1), nn.Flatten(),
        )  # fmt: skip
        super().__init__(feature_shape, n_classes, net=net)


def resnet_blocks(resnet: nn.Module, modules: int) -> nn.ModuleList:
    """Split a torchvision ResNet into ``modules + 1`` blocks at the cuts of :data:`CUTS`."""
    if modules not in CUTS:
        raise ValueError(f"modules must be one of {sorted(CUTS)} (SM §4.3), got {modules}")
    stages = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    parts = {
        "stem": nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool),
        **{name: getattr(resnet, name) for name in ("layer1", "layer2", "layer3", "layer4")},
        "head": nn.Sequential(resnet.avgpool, nn.Flatten(), resnet.fc),
    }
    blocks, current = [], []
    for name in stages:
        current.append(parts[name])
        if name in CUTS[modules]:
            blocks.append(nn.Sequential(*current))
            current = []
    blocks.append(nn.Sequential(*current))
    return nn.ModuleList(blocks)


@dataclass(frozen=True)
class ImageNetConfig(SectionConfig):
    """SM §4.3's ImageNet run (``configs/imagenet_resnet50.yaml`` plus command-line overrides),
    checked by the same machinery as ``params.yaml`` before any work."""

    SECTION: ClassVar[str] = "imagenet"

    variant: str = param(choice(VARIANTS))
    modules: int = param(integer(1, 3))
    batch_size: int = param(integer(1, 100_000))  # per worker, as SM §4.3
    lr: float = param(number(0, MAX_LR, open_low=True))
    momentum: float = param(number(0, 1))
    weight_decay: float = param(number(0, 1))
    milestones: list[int] = param(items(integer(1, 100_000_000), allow_empty=True, increasing=True))
    steps: int = param(integer(1, 100_000_000))
    sg_lr: float = param(number(0, MAX_LR, open_low=True))
    workers: int = param(integer(0, 1024))
    log_every: int = param(integer(1, 100_000_000))
    eval_every: int = param(integer(1, 100_000_000))
    data: str = param(text)

    def check(self) -> None:
        if self.modules not in CUTS:
            self.fail("modules", f"must be one of {sorted(CUTS)} (SM §4.3)")

    def check_inputs(self) -> None:
        if not self.data or not (Path(self.data) / "train").is_dir():
            raise FileNotFoundError(
                f"--data must be an ImageNet folder with train/ and val/ (ImageFolder layout), got {self.data!r}"
            )


def load_config(path: str | None, overrides: dict[str, Any]) -> ImageNetConfig:
    """The YAML file, then command-line overrides; checked (values and the data folder) before any work."""
    values = yaml.safe_load(Path(path).read_text()) if path else {}
    if not isinstance(values, dict):
        raise ParamError(f"{path} must be a mapping of settings, got {type(values).__name__}")
    given = {k: v for k, v in overrides.items() if v is not None}
    sources = {k: "imagenet" for k in values} | {k: "command line" for k in given}
    cfg = ImageNetConfig.from_values({"data": "", **values, **given}, sources)
    cfg.check_inputs()
    return cfg


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - needs GPUs and ImageNet
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--data")
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--modules", type=int, choices=sorted(CUTS))
    parser.add_argument("--steps", type=int)
    args = parser.parse_args(argv)
    cfg = load_config(args.config, {k: v for k, v in vars(args).items() if k != "config"})
    tv = require_torchvision()
    torch.distributed.init_process_group("nccl")
    rank, local = torch.distributed.get_rank(), int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local)
    torch.cuda.set_device(device)
    t = tv.transforms
    norm = t.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    train = tv.datasets.ImageFolder(
        Path(cfg.data) / "train", t.Compose([t.RandomResizedCrop(224), t.RandomHorizontalFlip(), t.ToTensor(), norm])
    )
    val = tv.datasets.ImageFolder(
        Path(cfg.data) / "val", t.Compose([t.Resize(256), t.CenterCrop(224), t.ToTensor(), norm])
    )
    sampler = DistributedSampler(train)
    loader = DataLoader(
        train, cfg.batch_size, sampler=sampler, num_workers=cfg.workers, pin_memory=True, drop_last=True
    )
    blocks = resnet_blocks(tv.models.resnet50(), cfg.modules).to(device)
    blocks = nn.ModuleList(DistributedDataParallel(b, device_ids=[local]) for b in blocks)
    opt = torch.optim.SGD(blocks.parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, cfg.milestones, 0.1)
    example = next(iter(loader))[0][:2].to(device)
    critic = cfg.variant in CRITIC_VARIANTS
    factory = ImageNetCritic if critic else None  # direct SG keeps the default module
    trainer = DecoupledTrainer(blocks, cfg.variant, 1000, example, opt, sg_lr=cfg.sg_lr, module_factory=factory)
    trainer.sg_modules = nn.ModuleList(
        DistributedDataParallel(m.to(device), device_ids=[local]) for m in trainer.sg_modules
    )
    step = 0
    while step < cfg.steps:
        sampler.set_epoch(step)
        for x, y in loader:
            out = trainer.step(
                x.to(device, non_blocking=True),
                y.to(device, non_blocking=True),
                diagnostics=step % cfg.log_every == 0,
            )
            sched.step()
            step += 1
            if rank == 0 and step % cfg.log_every == 0:
                print(f"step {step} loss {out['loss']:.4f} cosine {out.get('cosine')}", flush=True)
            if step >= cfg.steps:
                break
    if rank == 0:  # top-1 / top-5 on the validation set (single process for simplicity)
        blocks.eval()
        top1 = top5 = n = 0
        with torch.no_grad():
            for x, y in DataLoader(val, 256, num_workers=cfg.workers):
                logits = x.to(device)
                for b in blocks:
                    logits = b(logits)
                best = logits.topk(5, 1).indices.cpu()
                top1 += int((best[:, 0] == y).sum())
                top5 += int((best == y.unsqueeze(1)).any(1).sum())
                n += len(y)
        print(f"top-1 {top1 / n:.4f} top-5 {top5 / n:.4f}")
    torch.distributed.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover
    main()
