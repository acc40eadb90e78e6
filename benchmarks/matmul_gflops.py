"""This machine's float32 matmul speed, the yardstick for every time quoted in the README.

    python benchmarks/matmul_gflops.py        # GFLOP/s on 1 thread and on all threads

Times in the README were measured at the GFLOP/s printed beside them; scale them by the ratio.
"""

from __future__ import annotations

import time

import torch


def gflops(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Median float32 GFLOP/s of an ``n × n`` matmul on ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / sorted(times)[len(times) // 2] / 1e9


if __name__ == "__main__":
    cores = torch.get_num_threads()
    print(f"float32 matmul: {gflops(1):.0f} GFLOP/s on 1 thread, {gflops(cores):.0f} GFLOP/s on {cores} threads")
