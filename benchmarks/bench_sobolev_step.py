"""Speed of Sobolev training, measured side by side in one run (ratios, not absolute times).

    python benchmarks/bench_sobolev_step.py [--threads 2] [--device auto]

(a) one Sobolev step / one regular step for the paper's 2×256 ReLU MLP at batch 100 and
    10 000, for each way of getting the input gradient: the hand-written backward used by
    the grid, ``autograd.grad(create_graph=True)``, ``vmap(grad)`` and forward-mode JVPs.
    The matmul FLOPs of a Sobolev step are exactly 2.0× a regular one: 2.0 is the floor.
(b) models × steps per second of the batched grid (42 models, batch 100) against a Python
    loop over the same 42 models, each stepping with ``autograd.grad(create_graph=True)``.
(c) the grid's achieved GFLOP/s as a fraction of a large float32 matmul timed in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.func import functional_call, grad, jvp, vmap

from sobolev.models import MLP, BatchedAdam, BatchedMLP
from sobolev.utils import pick_device

H, D = 256, 2


def sobolev_flops(batch: int) -> int:
    """Matmul FLOPs of one Sobolev step of the hand-written implementation (one model)."""
    return batch * (12 * H * H + 10 * D * H + 4 * H)


def regular_flops(batch: int) -> int:
    return batch * (6 * H * H + 4 * D * H + 4 * H)


def timeit(fn: Callable[[], None], device: torch.device, min_time: float = 0.6, repeats: int = 5) -> float:
    """Median seconds per call over ``repeats`` blocks, each lasting about ``min_time``."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time / repeats or n < 2:
        fn()
        n += 1
    sync()
    per = (time.perf_counter() - t0) / n
    calls = max(2, int(min_time / repeats / per))
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def batched_step(model: BatchedMLP, opt: BatchedAdam, x, t, G, w) -> Callable[[], None]:
    def step() -> None:
        opt.step(model.loss_and_grads(x, t, G, w).grads)

    return step


def autograd_steps(batch: int, device: torch.device) -> dict[str, Callable[[], None]]:
    """Single-model steps with torch.optim.Adam and autograd, one per derivative mode."""
    net = MLP(D, (H, H), 1).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(batch, D, device=device)
    t = torch.randn(batch, device=device)
    G = torch.randn(batch, D, device=device)
    params = dict(net.named_parameters())

    def regular() -> None:
        opt.zero_grad(set_to_none=True)
        (net(x) - t).pow(2).mean().backward()
        opt.step()

    def create_graph() -> None:
        opt.zero_grad(set_to_none=True)
        xr = x.requires_grad_(True)
        y = net(xr)
        (g,) = torch.autograd.grad(y.sum(), xr, create_graph=True)
        ((y - t).pow(2).mean() + (g - G).pow(2).sum(1).mean()).backward()
        opt.step()

    def f(p, xi):
        return functional_call(net, p, (xi.unsqueeze(0),))[0]

    def vmap_grad() -> None:
        opt.zero_grad(set_to_none=True)
        y = net(x)
        g = vmap(grad(f, argnums=1), in_dims=(None, 0))(params, x)
        ((y - t).pow(2).mean() + (g - G).pow(2).sum(1).mean()).backward()
        opt.step()

    basis = torch.eye(D, device=device)

    def forward_jvp() -> None:
        opt.zero_grad(set_to_none=True)
        y = net(x)
        g = torch.stack([jvp(net, (x,), (basis[i].expand_as(x),))[1] for i in range(D)], 1)
        ((y - t).pow(2).mean() + (g - G).pow(2).sum(1).mean()).backward()
        opt.step()

    return {
        "autograd regular": regular,
        "autograd create_graph": create_graph,
        "vmap(grad)": vmap_grad,
        "forward-mode JVP": forward_jvp,
    }


def part_a(device: torch.device) -> None:
    print("(a) Sobolev step / regular step, 2x256 ReLU MLP, one model (Adam included)")
    print(f"    {'batch':>6} {'implementation':<26} {'ms/step':>9} {'/ regular':>10}")
    for batch in (100, 10_000):
        model = BatchedMLP.init([0], device=device)
        x = torch.randn(1, batch, D, device=device)
        t = torch.randn(1, batch, device=device)
        G = torch.randn(1, batch, D, device=device)
        lr = torch.full((1,), 1e-4, device=device)
        reg = timeit(batched_step(model, BatchedAdam(model.params, lr), x, t, None, None), device)
        sob = timeit(batched_step(model, BatchedAdam(model.params, lr), x, t, G, torch.ones(1, device=device)), device)
        print(f"    {batch:>6} {'hand-written regular':<26} {reg * 1e3:>9.3f} {1.0:>10.2f}")
        print(f"    {batch:>6} {'hand-written Sobolev':<26} {sob * 1e3:>9.3f} {sob / reg:>10.2f}   <- used by the grid")
        steps = autograd_steps(batch, device)
        base = timeit(steps.pop("autograd regular"), device)
        print(f"    {batch:>6} {'autograd regular':<26} {base * 1e3:>9.3f} {base / reg:>10.2f}")
        for name, fn in steps.items():
            sec = timeit(fn, device)
            vs = f"(vs autograd regular: {sec / base:.2f})"
            print(f"    {batch:>6} {name:<26} {sec * 1e3:>9.3f} {sec / reg:>10.2f}   {vs}")
    print(f"    matmul FLOPs Sobolev / regular: {sobolev_flops(100) / regular_flops(100):.3f}")


def part_bc(device: torch.device, models: int = 42, batch: int = 100) -> None:
    x = torch.randn(models, batch, D, device=device)
    t = torch.randn(models, batch, device=device)
    G = torch.randn(models, batch, D, device=device)
    ens = BatchedMLP.init(list(range(models)), device=device)
    opt = BatchedAdam(ens.params, torch.full((models,), 1e-4, device=device))
    grid = timeit(batched_step(ens, opt, x, t, G, torch.ones(models, device=device)), device)

    nets = [MLP(D, (H, H), 1).to(device) for _ in range(models)]
    opts = [torch.optim.Adam(n.parameters(), lr=1e-4) for n in nets]

    def loop() -> None:
        for i, (net, o) in enumerate(zip(nets, opts, strict=True)):
            o.zero_grad(set_to_none=True)
            xi = x[i].requires_grad_(True)
            y = net(xi)
            (g,) = torch.autograd.grad(y.sum(), xi, create_graph=True)
            ((y - t[i]).pow(2).mean() + (g - G[i]).pow(2).sum(1).mean()).backward()
            o.step()

    looped = timeit(loop, device, min_time=1.5)
    print(f"\n(b) {models} models x batch {batch}, Sobolev steps")
    print(f"    batched grid (bmm, hand-written backward): {models / grid:>8.0f} model-steps/s")
    print(f"    Python loop (autograd create_graph):       {models / looped:>8.0f} model-steps/s")
    print(f"    speed-up: {looped / grid:.2f}x")

    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    mm = timeit(lambda: torch.mm(a, b), device)
    peak = 2 * n**3 / mm / 1e9
    achieved = models * sobolev_flops(batch) / grid / 1e9
    print(
        f"\n(c) float32 matmul {n}x{n}: {peak:.1f} GFLOP/s; grid: {achieved:.1f} GFLOP/s = {achieved / peak:.0%} of it"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads\n")
    part_a(device)
    part_bc(device)


if __name__ == "__main__":
    main()
