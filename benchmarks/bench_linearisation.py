"""Speed of one iterative-linearisation training step, measured side by side in one run (ratios).

    python benchmarks/bench_linearisation.py [--threads 2] [--out FILE]

Section 5.3's ensembles (42 models, two hidden ReLU layers of 256, 2 inputs) at its sizes (20 and 100
points, full batch). One Sobolev step (λ = 1) of f_lin around an anchor, forward + backward to the
parameters, computed

* ``hand-written tangent``: :func:`sobolev.core.linearisation.linearised` (the product rule, the
  masks frozen at the anchor; used by the section);
* ``torch.func.jvp``: the tangent of :func:`sobolev.core.linearisation.frozen` by forward-mode AD;

and the ordinary hand-written Sobolev step of :meth:`BatchedMLP.loss_and_grads` as the unit.
"""

from __future__ import annotations

import argparse

import torch
from timing import log, timed, write

from sobolev.core.linearisation import frozen, linearised, masks_at
from sobolev.core.models import BatchedMLP

M, H = 42, 256


def bench(n: int) -> None:
    """Time the three steps at ``n`` training points and log them as multiples of the ordinary step."""
    model = BatchedMLP.init(list(range(M)), hidden=H)
    x = torch.rand(M, n, 2) * 2 - 1
    t, G, w = (x**2).sum(2), 2 * x, torch.ones(M)
    anchor = {k: v.clone() for k, v in model.params.items()}
    params = {k: (v + 0.01 * torch.randn_like(v)).requires_grad_(True) for k, v in anchor.items()}
    masks = masks_at(anchor, x)

    def loss(y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return ((y - t).pow(2).mean(1) + (g - G).pow(2).sum(2).mean(1)).sum()

    def hand() -> None:
        y, g = linearised(params, anchor, x, masks)
        torch.autograd.grad(loss(y, g), list(params.values()))

    def func() -> None:
        tangent = {k: params[k] - anchor[k] for k in anchor}
        (y0, g0), (dy, dg) = torch.func.jvp(lambda p: frozen(p, x, masks), (anchor,), (tangent,))
        torch.autograd.grad(loss(y0 + dy, g0 + dg), list(params.values()))

    unit = timed(lambda: model.loss_and_grads(x, t, G, w), inner=10, warmup=1)
    log(f"n={n}: ordinary Sobolev step (hand-written backward) {unit * 1e3:.1f} ms = 1.00")
    for name, fn in (("hand-written tangent", hand), ("torch.func.jvp", func)):
        seconds = timed(fn, inner=10, warmup=1)
        log(f"n={n}: linearised Sobolev step, {name}: {seconds * 1e3:.1f} ms = {seconds / unit:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    log(f"# {M} models x {H} hidden, Sobolev loss, {args.threads} threads, torch {torch.__version__}")
    for n in (20, 100):
        bench(n)
    write(args.out)


if __name__ == "__main__":
    main()
