"""What every benchmark script shares: a log that also collects its lines for ``--out``, and one timer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

LINES: list[str] = []


def log(line: str = "") -> None:
    """Print ``line`` and keep it for :func:`write`."""
    print(line, flush=True)
    LINES.append(line)


def write(path: str | None) -> None:
    """Write every logged line to ``path`` (nothing when ``None``)."""
    if path:
        with open(path, "w") as f:
            f.write("\n".join(LINES) + "\n")


def timed(step: Callable[[], None], repeats: int = 5, inner: int = 20, warmup: int = 3) -> float:
    """Median seconds per call over ``repeats`` timings of ``inner`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            step()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def timed_interleaved(steps: dict[str, Callable[[], None]], repeats: int = 7, inner: int = 20, warmup: int = 3) -> dict:
    """Median seconds per call of each step, timed in turns (``inner`` calls of each, ``repeats`` rounds), so that
    a drift in the machine's speed during the run (other load, clock changes) shifts every step alike and their
    ratios hold."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(inner):
                step()
            times[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(t) for name, t in times.items()}
