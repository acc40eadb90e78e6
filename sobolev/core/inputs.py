"""A user's samples, checked before any training: arrays in, float64 tensors of known shape out.

Every error names the argument, the offending row or point when there is one, and what is
allowed, so bad data is reported as data (not, later, as a diverging learning rate).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sobolev.common.utils import short


def as_tensor(name: str, value: Any) -> Tensor:
    """``value`` (numpy array, torch tensor, nested list, number) as a float64 CPU tensor.

    Integers and booleans are not silently read as floats of another meaning: integers are
    accepted (cast), booleans, complex numbers, strings and ragged lists are rejected.
    """
    if value is None:
        raise ValueError(f"{name}: expected an array of numbers, got None")
    if isinstance(value, Tensor):
        t = value.detach()
    else:
        try:
            arr = np.asarray(value)
        except ValueError as err:  # ragged nested lists
            raise ValueError(f"{name}: expected a rectangular array of numbers, got ragged rows ({err})") from None
        if arr.dtype == object or arr.dtype.kind in "USV":
            raise ValueError(f"{name}: expected numbers, got an array of {arr.dtype} (strings, objects or ragged rows)")
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype == torch.bool or t.is_complex():
        raise ValueError(f"{name}: expected real numbers (float or integer), got dtype {t.dtype}")
    return t.to(device="cpu", dtype=torch.float64)


def _first_bad(t: Tensor, allow_nan: bool = False) -> tuple[int, float] | None:
    """The first row holding a non-finite entry (NaN allowed when ``allow_nan``), and the entry."""
    bad = torch.isinf(t) if allow_nan else ~torch.isfinite(t)
    if not bool(bad.any()):
        return None
    flat = bad.reshape(t.shape[0], -1)
    row = int(torch.nonzero(flat.any(1))[0])
    return row, float(t.reshape(t.shape[0], -1)[row][flat[row]][0])


@dataclass(frozen=True)
class Samples:
    """Checked samples: ``x (N, D)``, ``y (N, K)``, ``dydx (N, K, D)`` or ``None`` (NaN: missing)."""

    x: Tensor
    y: Tensor
    dydx: Tensor | None
    scalar_output: bool  # the caller gave ``y`` as ``(N,)``: predictions come back the same way

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    @property
    def outputs(self) -> int:
        return self.y.shape[1]


def check_points(name: str, x: Any, dim: int | None = None) -> Tensor:
    """Points ``(N, D)`` (or ``(N,)`` when ``D = 1``), finite, as float64; ``dim`` is the expected D."""
    t = as_tensor(name, x)
    if t.ndim == 1 and (dim is None or dim == 1):
        t = t.unsqueeze(1)
    if t.ndim != 2:
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise ValueError(f"{name}: expected points of shape {want}, got shape {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name}: points have D = 0 inputs (shape {tuple(t.shape)}); need at least one input")
    if dim is not None and t.shape[1] != dim:
        raise ValueError(f"{name}: expected {dim} inputs per point (the model's D), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: no points (shape {tuple(t.shape)}); need at least one")
    bad = _first_bad(t)
    if bad is not None:
        raise ValueError(f"{name}: row {bad[0]} holds {bad[1]}; every input must be finite")
    return t


def check_samples(x: Any, y: Any, dydx: Any = None, min_points: int = 2) -> Samples:
    """Check and reshape a user's samples.

    Args:
        x: inputs ``(N, D)``, or ``(N,)`` for one input.
        y: values ``(N,)`` or ``(N, K)`` for ``K`` outputs.
        dydx: derivatives ``(N, D)`` (one output; ``(N,)`` when also ``D = 1``) or ``(N, K, D)``;
            ``None`` for none. NaN marks a missing partial derivative (left out of the loss); inf is an error.
        min_points: the fewest points accepted.
    """
    xt = check_points("x", x)
    N, D = xt.shape
    yt = as_tensor("y", y)
    given = tuple(yt.shape)
    scalar = yt.ndim == 1
    if scalar:
        yt = yt.unsqueeze(1)
    if yt.ndim != 2 or yt.shape[0] != N:
        raise ValueError(f"y: expected shape ({N},) or ({N}, K) to match x's {N} points, got {given}")
    if yt.shape[1] == 0:
        raise ValueError("y: K = 0 outputs; need at least one")
    bad = _first_bad(yt)
    if bad is not None:
        raise ValueError(f"y: row {bad[0]} holds {bad[1]}; every value must be finite (drop or fix that sample)")
    if min_points > N:
        raise ValueError(f"x, y: {N} point(s); need at least {min_points} to fit and standardise")
    K = yt.shape[1]
    gt = None
    if dydx is not None:
        gt = as_tensor("dydx", dydx)
        if gt.shape == (N,) and D == 1 and K == 1:  # one input and one output, flat like x
            gt = gt.view(N, 1, 1)
        if gt.shape == (N, D) and K == 1:
            gt = gt.unsqueeze(1)
        if gt.shape != (N, K, D):
            allowed = f"({N}, {D}) or ({N}, 1, {D})" if K == 1 else f"({N}, {K}, {D})"
            raise ValueError(f"dydx: expected shape {allowed} (points, [outputs,] inputs), got {tuple(gt.shape)}")
        bad = _first_bad(gt, allow_nan=True)
        if bad is not None:
            raise ValueError(f"dydx: row {bad[0]} holds {bad[1]}; derivatives must be finite (NaN marks a missing one)")
        if bool(torch.isnan(gt).all()):
            raise ValueError("dydx: every entry is NaN (missing); pass dydx=None to fit values only")
    return Samples(xt, yt, gt, scalar)


def check_number(name: str, value: Any, low: float, high: float = math.inf, integer: bool = False) -> Any:
    """``value`` is a finite number (an integer when ``integer``) in ``[low, high]``; returns it as a Python
    ``int`` or ``float``. Numbers of any numeric type are accepted (numpy scalars, 0-d arrays and tensors too);
    booleans, strings and complex numbers are not. Bounds are compared before any conversion, so ``10**400``
    is refused as out of range, not by an ``OverflowError``."""
    kind = "an integer" if integer else "a finite number"
    bounds = f"[{low:,}, {high:,}]" if integer and math.isfinite(high) else f"[{low:g}, {high:g}]"
    refused = ValueError(f"{name}: expected {kind} in {bounds}, got {short(value)}")
    if isinstance(value, Tensor | np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise refused
    if integer:
        if not isinstance(value, numbers.Integral):
            raise refused
        value = int(value)
    elif isinstance(value, numbers.Integral):
        value = int(value)
    else:
        value = float(value)
    if not (low <= value <= high) or (isinstance(value, float) and not math.isfinite(value)):
        raise refused
    if integer:
        return value
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range (only with an infinite bound)
        raise refused from None


def check_label_weights(weights: Any, samples: Samples) -> Tensor:
    """Per-label derivative weights (confidence in each derivative label) as ``(N, K, D)``.

    Accepted shapes: ``(N,)`` (one per point), ``(N, D)`` (one output) or ``(N, K, D)``; every
    weight finite and at least 0 (0 leaves the label out, like NaN in ``dydx``).
    """
    if samples.dydx is None:
        raise ValueError("dydx_weight: given without dydx; weights apply to derivative labels")
    N, K, D = samples.dydx.shape
    w = as_tensor("dydx_weight", weights)
    if w.shape == (N,):
        w = w.view(N, 1, 1).expand(N, K, D)
    elif w.shape == (N, D) and K == 1:
        w = w.unsqueeze(1)
    if tuple(w.shape) != (N, K, D):
        allowed = f"({N},), ({N}, {D}) or ({N}, 1, {D})" if K == 1 else f"({N},) or ({N}, {K}, {D})"
        raise ValueError(f"dydx_weight: expected shape {allowed} like dydx, got {tuple(w.shape)}")
    bad = _first_bad(w)
    if bad is not None or bool((w < 0).any()):
        row = bad[0] if bad is not None else int(torch.nonzero((w < 0).reshape(N, -1).any(1))[0])
        raise ValueError(f"dydx_weight: row {row} holds {w[row].flatten().tolist()}; weights must be finite and ≥ 0")
    return w.contiguous()
