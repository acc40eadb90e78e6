"""Speed of one decoupled training step per Section 4.3 variant, side by side in one run (ratios).

    python benchmarks/bench_decoupled_step.py [--threads 1] [--out FILE]

The committed Section 4.3 setting (``params.yaml: synthetic``): the 1-D network on MNIST-1D
signals (batch 64, ``width_scale``), three cuts, SG modules of ``sg_width`` with the committed
loss. Each variant's step (:meth:`sobolev.synthetic_gradients.decoupled.DecoupledTrainer.step`, main and
module updates, without the cosine diagnostics) is printed in milliseconds and as a multiple of
backprop's (all steps timed in turns, so that a drift in the machine's speed shifts them alike);
then the cost of a logged step (with the diagnostics: one extra VJP per cut) for the Sobolev module.
Single-process numbers; the stage runs ``workers`` such processes side by side.

The floor beside a critic variant's ratio: backprop's step plus each cut's module update alone
(:meth:`~sobolev.synthetic_gradients.decoupled.DecoupledTrainer._module_step` on that cut's
features, its optimiser step included): what the step would cost if splitting the network at the
cuts (detaching, one backward per block) were free.
"""

from __future__ import annotations

import argparse

import torch
from timing import log, timed, timed_interleaved, write

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


def modules_alone(trainer: DecoupledTrainer, x: torch.Tensor, y: torch.Tensor):
    """Every cut's module update alone, on that cut's features of ``x`` (after a few training steps, so the
    targets are not the zero-initialised modules' zeros): a step to time."""
    for _ in range(5):
        trainer.step(x, y)
    with torch.no_grad():
        feats = []
        for block in trainer.blocks[:-1]:
            feats.append((x := block(x)).detach())
    gen = torch.Generator().manual_seed(1)
    targets = [(torch.randn(f.shape, generator=gen), torch.rand(len(f), generator=gen)) for f in feats]

    def update() -> None:
        trainer.sg_opt.zero_grad(set_to_none=True)
        for k, (h, (grad, loss)) in enumerate(zip(feats, targets, strict=True)):
            trainer._module_step(k, h, y, grad, loss)
        trainer.sg_opt.step()

    return update


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
    steps = {}
    for variant in VARIANTS:
        steps[variant] = (lambda t: lambda: t.step(x, y))(trainer_for(variant, cfg, x))
    critics = ("small_model", "critic", "sobolev")
    for variant in critics:
        steps[f"{variant} modules"] = modules_alone(trainer_for(variant, cfg, x), x, y)
    measured = timed_interleaved(steps)
    times = {name: measured[name] for name in VARIANTS}
    base = times["backprop"]
    floors = {variant: base + measured[f"{variant} modules"] for variant in critics}
    for variant, t in times.items():
        floor = f" (floor {floors[variant] / base:.2f} x)" if variant in floors else ""
        log(f"{variant}: {t * 1e3:.2f} ms = {t / base:.2f} x backprop{floor}")
    log("  floor: backprop's step + each cut's module update alone (its forward, input gradient, training pass and "
        "optimiser step), as if splitting the network at the cuts cost nothing")  # fmt: skip
    trainer = trainer_for("sobolev", cfg, x)
    logged = timed(lambda: trainer.step(x, y, diagnostics=True))
    log(
        f"sobolev with diagnostics (every log_every-th step): {logged * 1e3:.2f} ms = {logged / times['sobolev']:.2f} x"
    )
    write(args.out)


if __name__ == "__main__":
    main()
