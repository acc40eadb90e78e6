"""Speed of one differential-ML training step, measured side by side in one run (ratios).

    python benchmarks/bench_differential_step.py [--threads 2] [--out FILE]

The reference's network (4 × 20 softplus), 10 models (5 seeds × 2 methods, as one ensemble of
the differential section) at the minibatches it uses (256 and 1 024), d = 1, 7 and 20 inputs.
Each way of getting the input gradient, for one balanced-loss step with Adam:

* ``hand-written chain``: :class:`sobolev.core.models.BatchedSmoothMLP` writes ∇ₓm with the
  chain rule (softplus' = sigmoid), so one first-order backward trains (used by the section);
* ``autograd create_graph``: the same batched forward, ∇ₓm by ``autograd.grad(create_graph=True)``
  (double backward);
* ``loop of nn.Modules``: 10 separate models, each with ``create_graph`` (no batching).

A value-only step of the batched model is the unit.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from sobolev.core.losses import weighted_sobolev_loss
from sobolev.core.models import MLP, BatchedSmoothMLP

M, H, LAYERS = 10, 20, 4
LINES: list[str] = []


def log(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def timed(step: Callable[[], None], repeats: int = 5, inner: int = 20) -> float:
    """Median over ``repeats`` of the mean ms per call over ``inner`` calls (after a warm-up)."""
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            step()
        times.append((time.perf_counter() - t0) / inner * 1e3)
    return statistics.median(times)


def batched_forward(net: BatchedSmoothMLP, x: torch.Tensor) -> torch.Tensor:
    """Values only, through the same batched layers (the autograd path's forward)."""
    h = x
    for W, b in zip(net.weights[:-1], net.biases[:-1], strict=True):
        h = nn.functional.softplus(torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2)))
    return torch.baddbmm(net.biases[-1].unsqueeze(1), h, net.weights[-1].transpose(1, 2))[..., 0]


def steps_for(d: int, batch: int) -> dict[str, Callable[[], None]]:
    """One training step of each implementation, on the same data and loss weights."""
    x = torch.randn(M, batch, d)
    t, G = torch.randn(M, batch), torch.randn(M, batch, d)
    alpha, w = torch.full((M,), 0.5), torch.full((M, d), 0.5 / d)
    net = BatchedSmoothMLP(list(range(M)), d, H, LAYERS)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    singles = [MLP(d, (H,) * LAYERS, 1, activation="softplus") for _ in range(M)]
    opts = [torch.optim.Adam(s.parameters(), 1e-3) for s in singles]

    def update(loss: torch.Tensor, optimiser: torch.optim.Optimizer) -> None:
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def value_only() -> None:
        update((batched_forward(net, x) - t).pow(2).mean(1).sum(), opt)

    def hand() -> None:
        y, g = net(x)
        update(weighted_sobolev_loss(y, t, g, G, alpha, w).sum(), opt)

    def double() -> None:
        xg = x.clone().requires_grad_(True)
        y = batched_forward(net, xg)
        (g,) = torch.autograd.grad(y.sum(), xg, create_graph=True)
        update(weighted_sobolev_loss(y, t, g, G, alpha, w).sum(), opt)

    def loop() -> None:
        for i, (single, o) in enumerate(zip(singles, opts, strict=True)):
            xg = x[i].clone().requires_grad_(True)
            y = single(xg)
            (g,) = torch.autograd.grad(y.sum(), xg, create_graph=True)
            update(alpha[i] * (y - t[i]).pow(2).mean() + ((g - G[i]).pow(2) * w[i]).sum(1).mean(), o)

    return {"value-only (unit)": value_only, "hand-written chain": hand, "autograd create_graph": double,
            "loop of nn.Modules": loop}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log(f"torch {torch.__version__}, cpu, {args.threads} threads; {M} models of {LAYERS} x {H} softplus")
    log(f"{'d':>4} {'batch':>6} {'implementation':<26} {'ms/step':>8} {'/ value-only':>13}")
    for d in (1, 7, 20):
        for batch in (256, 1024):
            steps = steps_for(d, batch)
            base = timed(steps["value-only (unit)"])
            for name, fn in steps.items():
                ms = base if name.startswith("value-only") else timed(fn)
                mark = "   <- used by the section" if name == "hand-written chain" else ""
                log(f"{d:>4} {batch:>6} {name:<26} {ms:>8.3f} {ms / base:>13.2f}{mark}")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
