"""Speed of Sobolev training, measured side by side in one run (ratios, not absolute times).

    python benchmarks/bench_sobolev_step.py [--threads 2] [--device auto] [--out FILE]

(a) one Sobolev step / one regular step for the paper's 2×256 ReLU MLP at batch 100 and
    10 000, for each way of getting the input gradient: the hand-written backward used by
    the grid, ``autograd.grad(create_graph=True)``, ``vmap(grad)`` and forward-mode JVPs.
    Through autograd, a Sobolev step has 2.0× the matmul FLOPs of a regular one; the
    hand-written step shares the value backward with the input-gradient chain (scalar
    output) and has 1.34× (see ``sobolev.core.models``).
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

from sobolev.common.utils import pick_device
from sobolev.core.models import MLP, BatchedMLP
from sobolev.core.optimisers import BatchedAdam

H, D = 256, 2
LINES: list[str] = []


def log(line: str = "") -> None:
    """Print and keep the line, so ``--out`` can save exactly what was printed."""
    print(line, flush=True)
    LINES.append(line)


def sobolev_flops(batch: int) -> int:
    """Matmul FLOPs of one Sobolev step of the hand-written implementation (one model)."""
    return batch * (8 * H * H + 8 * D * H + 4 * H)


def regular_flops(batch: int) -> int:
    return batch * (6 * H * H + 4 * D * H + 4 * H)


def compare(
    fns: dict[str, Callable[[], None]], device: torch.device, rounds: int = 9, block: float = 0.12
) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds.

    Each round times a block of calls (about ``block`` seconds) of every function in turn,
    so slow drifts of a shared machine hit all candidates alike and ratios stay stable.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    calls = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        calls[name] = max(1, int(block / max(time.perf_counter() - t0, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            sync()
            times[name].append((time.perf_counter() - t0) / calls[name])
    return {name: statistics.median(t) for name, t in times.items()}


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
    log("(a) Sobolev step / regular step, 2x256 ReLU MLP, one model (Adam included)")
    log(f"    {'batch':>6} {'implementation':<26} {'ms/step':>9} {'/ regular':>10}")
    for batch in (100, 10_000):
        model = BatchedMLP.init([0], device=device)
        x = torch.randn(1, batch, D, device=device)
        t = torch.randn(1, batch, device=device)
        G = torch.randn(1, batch, D, device=device)
        lr = torch.full((1,), 1e-4, device=device)
        fns = {
            "hand-written regular": batched_step(model, BatchedAdam(model.params, lr), x, t, None, None),
            "hand-written Sobolev": batched_step(
                model, BatchedAdam(model.params, lr), x, t, G, torch.ones(1, device=device)
            ),
            **autograd_steps(batch, device),
        }
        sec = compare(fns, device)
        reg, base = sec["hand-written regular"], sec["autograd regular"]
        for name, value in sec.items():
            note = "   <- used by the grid" if name == "hand-written Sobolev" else ""
            if name.startswith("autograd c") or name in ("vmap(grad)", "forward-mode JVP"):
                note = f"   (vs autograd regular: {value / base:.2f})"
            log(f"    {batch:>6} {name:<26} {value * 1e3:>9.3f} {value / reg:>10.2f}{note}")
    ratio = sobolev_flops(100) / regular_flops(100)
    log(f"    matmul FLOPs Sobolev / regular: hand-written {ratio:.3f}, autograd double backward 2.0")


def part_bc(device: torch.device, models: int = 42, batch: int = 100) -> None:
    x = torch.randn(models, batch, D, device=device)
    t = torch.randn(models, batch, device=device)
    G = torch.randn(models, batch, D, device=device)
    ens = BatchedMLP.init(list(range(models)), device=device)
    opt = BatchedAdam(ens.params, torch.full((models,), 1e-4, device=device))
    grid = batched_step(ens, opt, x, t, G, torch.ones(models, device=device))

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

    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    sec = compare({"grid": grid, "loop": loop, "matmul": lambda: torch.mm(a, b)}, device)
    log(f"\n(b) {models} models x batch {batch}, Sobolev steps")
    log(f"    batched grid (bmm, hand-written backward): {models / sec['grid']:>8.0f} model-steps/s")
    log(f"    Python loop (autograd create_graph):       {models / sec['loop']:>8.0f} model-steps/s")
    log(f"    speed-up: {sec['loop'] / sec['grid']:.2f}x")
    peak = 2 * n**3 / sec["matmul"] / 1e9
    achieved = models * sobolev_flops(batch) / sec["grid"] / 1e9
    log(f"\n(c) float32 matmul {n}x{n}: {peak:.1f} GFLOP/s; grid: {achieved:.1f} GFLOP/s = {achieved / peak:.0%} of it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", help="also write the output to this file (e.g. benchmarks/results-cpu.txt)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    log(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads\n")
    part_a(device)
    part_bc(device)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(LINES) + "\n")


if __name__ == "__main__":
    main()
