"""Speed of one decoupled training step per Section 4.3 variant, side by side in one run (ratios).

    python benchmarks/bench_decoupled_step.py [--threads 1] [--out FILE]

The committed Section 4.3 setting (``params.yaml: synthetic``): the 1-D network on MNIST-1D
signals (batch 64, ``width_scale``), three cuts, SG modules of ``sg_width`` with the committed
loss. Each variant's step (:meth:`sobolev.synthetic_gradients.decoupled.DecoupledTrainer.step`, main and
module updates, without the cosine diagnostics) is printed in milliseconds and as a multiple of
backprop's; then the cost of a logged step (with the diagnostics: one extra VJP per cut) for the
Sobolev module. Single-process numbers; the stage runs ``workers`` such processes side by side.
"""

from __future__ import annotations

import argparse

import torch
from timing import log, timed, write

from sobolev.synthetic_gradients.compute import sm_blocks
from sobolev.synthetic_gradients.config import SyntheticGradientsConfig
from sobolev.synthetic_gradients.decoupled import VARIANTS, DecoupledTrainer


def trainer_for(variant: str, cfg: SyntheticGradientsConfig, x: torch.Tensor) -> DecoupledTrainer:
    torch.manual_seed(0)
    blocks = sm_blocks(1, 10, x.shape[2], cfg.width_scale, dims=1)
    opt = torch.optim.SGD(blocks.parameters(), lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    return DecoupledTrainer(
        blocks, variant, 10, x, opt, sg_lr=cfg.sg_lr, sg_width=cfg.sg_width, sg_loss=cfg.sg_loss,
        relative=cfg.sg_scale == "relative", zero_last=cfg.sg_last_init == "zero",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = SyntheticGradientsConfig.load()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(cfg.batch_size, 1, 40, generator=g), torch.randint(0, 10, (cfg.batch_size,), generator=g)
    log(
        f"# Section 4.3 step, 1-D network x {cfg.width_scale} on MNIST-1D-sized signals (1 x 40), batch "
        f"{cfg.batch_size}, SG width {cfg.sg_width}, {cfg.sg_loss}/{cfg.sg_scale}, {args.threads} thread(s), "
        f"torch {torch.__version__}"
    )
    times = {}
    for variant in VARIANTS:
        trainer = trainer_for(variant, cfg, x)
        times[variant] = timed(lambda t=trainer: t.step(x, y))
    for variant in VARIANTS:
        log(f"{variant}: {times[variant] * 1e3:.2f} ms = {times[variant] / times['backprop']:.2f} x backprop")
    trainer = trainer_for("sobolev", cfg, x)
    logged = timed(lambda: trainer.step(x, y, diagnostics=True))
    log(
        f"sobolev with diagnostics (every log_every-th step): {logged * 1e3:.2f} ms = {logged / times['sobolev']:.2f} x"
    )
    write(args.out)


if __name__ == "__main__":
    main()
