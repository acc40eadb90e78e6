"""What :func:`sobolev.fit` returns: the trained ensemble, its predictions, what was chosen and how well it fits,
saved and loaded without unpickling arbitrary objects."""

from __future__ import annotations

import math
import pickle
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from sobolev.core.inputs import check_points
from sobolev.core.recipe import RECIPE_FIELDS, Recipe
from sobolev.core.samples import Normaliser
from sobolev.core.tanh_mlp import BatchedTanhMLP

FORMAT = "sobolev.FittedModel/2"
READABLE_FORMATS = ("sobolev.FittedModel/1", FORMAT)  # version 1: no selection table, no diagnostics
INFO_KEYS = ("n", "dim", "outputs", "scalar_output", "derivatives", "train_loss")
NORMALISER_KEYS = ("x_center", "x_scale", "y_mean", "y_std")


@dataclass(frozen=True)
class Prediction:
    """Ensemble mean and spread (standard deviation over members) at ``B`` points.

    Shapes: ``value, value_std (B,)`` or ``(B, K)``; ``derivatives, derivatives_std (B, D)`` or ``(B, K, D)``.
    """

    value: Any
    derivatives: Any
    value_std: Any
    derivatives_std: Any


class FittedModel:
    """What :func:`sobolev.fit` returns: ``K × models`` tanh MLPs on standardised data, one normaliser per output.

    Attributes:
        recipe: how it was trained (:class:`~sobolev.core.recipe.Recipe`); ``recipe.lam`` is the derivative
            weight used (the chosen one when the fit chose it).
        info: ``n``, ``dim``, ``outputs``, ``derivatives`` (labels given), ``train_loss``, ``iterations`` (per
            member), ``selection`` and ``diagnostics`` (see :attr:`selection`, :attr:`diagnostics`).
    """

    def __init__(self, params: dict[str, Tensor], normalisers: list[Normaliser], recipe: Recipe,
                 info: dict[str, Any]) -> None:  # fmt: skip
        self.network = BatchedTanhMLP(params)
        self.normalisers = normalisers
        self.recipe = recipe
        self.info = info

    @property
    def dim(self) -> int:
        return int(self.info["dim"])

    @property
    def outputs(self) -> int:
        return int(self.info["outputs"])

    @property
    def selection(self) -> pd.DataFrame:
        """How the derivative weight was chosen: one row per output and candidate ``lam`` with its held-out value
        error ``heldout_mse`` (standardised units: 1 is the error of predicting the mean), ``heldout_r2`` and
        ``chosen``. Empty when nothing was chosen (values only, or ``lam`` given)."""
        return pd.DataFrame(self.info.get("selection", []), columns=["output", "lam", "heldout_mse", "heldout_r2",
                                                                      "chosen"])  # fmt: skip

    @property
    def diagnostics(self) -> dict[str, Any]:
        """How well the model fits, in words a user reads: per output, ``train_r2_values`` (share of its training
        values' variance it explains), ``train_r2_derivatives`` (of the derivative labels' variance; None without
        labels), ``heldout_r2`` (cross-validated, of the chosen weight; None when nothing was held out);
        ``members_at_cap`` (L-BFGS members that stopped at ``steps`` instead of converging), ``warnings``."""
        return dict(self.info.get("diagnostics", {}))

    def _members(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Every member's values ``(K, models, B)`` and derivatives ``(K, models, B, D)`` at raw ``x (B, D)``."""
        K, R = self.outputs, self.recipe.models
        net = self.network
        dtype = net.params["W1"].dtype
        device = net.params["W1"].device
        xs = torch.stack([nm.x(x) for nm in self.normalisers])  # (K, B, D)
        xs = xs.unsqueeze(1).expand(K, R, *x.shape).reshape(K * R, *x.shape).to(device, dtype)
        y, g = net.predict(xs)
        y, g = y.double().cpu().view(K, R, -1), g.double().cpu().view(K, R, *x.shape)
        ys = torch.stack([nm.y_back(v) for nm, v in zip(self.normalisers, y, strict=True)])
        gs = torch.stack([nm.g_back(v) for nm, v in zip(self.normalisers, g, strict=True)])
        return ys, gs

    def predict_with_spread(self, x: Any) -> Prediction:
        """Mean and spread of values and derivatives at ``x (B, D)``, as numpy arrays (torch
        tensors when ``x`` is a tensor)."""
        xt = check_points("x", x, self.dim)
        ys, gs = self._members(xt)
        out = [ys.mean(1), gs.mean(1), ys.std(1) if ys.shape[1] > 1 else torch.zeros_like(ys[:, 0]),
               gs.std(1) if gs.shape[1] > 1 else torch.zeros_like(gs[:, 0])]  # fmt: skip
        # (K, B) -> (B, K); (K, B, D) -> (B, K, D); drop K for a scalar output
        out = [v.transpose(0, 1) for v in out]
        if self.info["scalar_output"]:
            out = [v[:, 0] for v in out]
        if isinstance(x, Tensor):
            out = [v.to(x.dtype if x.is_floating_point() else torch.float64) for v in out]
        else:
            out = [v.numpy() for v in out]
        return Prediction(*out)

    def predict(self, x: Any) -> Any:
        """Values ``(B,)`` (or ``(B, K)``) at ``x (B, D)``: the ensemble's mean."""
        return self.predict_with_spread(x).value

    def predict_derivatives(self, x: Any) -> Any:
        """Input derivatives ``(B, D)`` (or ``(B, K, D)``) at ``x (B, D)``: the ensemble's mean."""
        return self.predict_with_spread(x).derivatives

    def save(self, path: str | Path) -> None:
        """Weights, normalisers, recipe and info in one file (loadable with ``weights_only``)."""
        torch.save(
            {
                "format": FORMAT,
                "params": self.network.state_dict(),
                "normalisers": [{k: getattr(nm, k) for k in NORMALISER_KEYS} for nm in self.normalisers],
                "recipe": asdict(self.recipe),
                "info": self.info,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> FittedModel:
        """A model written by :meth:`save`, read without unpickling arbitrary objects and checked whole: anything
        else (an empty, truncated, foreign or hand-edited file, non-finite weights) is refused with a
        ``ValueError`` that says ``not a model file saved by sobolev.fit`` and why."""
        path = Path(path)

        def refuse(reason: str) -> ValueError:
            return ValueError(f"{path}: not a model file saved by sobolev.fit ({reason})")

        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, KeyError, ValueError,
                UnicodeDecodeError, AttributeError, TypeError, IndexError) as err:  # fmt: skip
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise refuse(f"unreadable as a torch file: {first[:160]}") from None
        if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
            tag = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise refuse(f"format tag {str(tag)[:80]!r}, expected one of {READABLE_FORMATS}")
        missing = [k for k in ("params", "normalisers", "recipe", "info") if k not in state]
        if missing:
            raise refuse(f"missing {missing}")
        info, recipe = state["info"], state["recipe"]
        if not isinstance(info, dict) or [k for k in INFO_KEYS if k not in info]:
            raise refuse(f"its info lacks {[k for k in INFO_KEYS if not isinstance(info, dict) or k not in info]}")
        if not isinstance(recipe, dict) or set(recipe) - RECIPE_FIELDS:
            raise refuse("its recipe has unknown fields" if isinstance(recipe, dict) else "its recipe is not a mapping")
        try:
            recipe = Recipe(**{k: tuple(v) if k == "lam_grid" else v for k, v in recipe.items()}).checked()
            params = state["params"]
            if not isinstance(params, dict) or not all(isinstance(v, Tensor) for v in params.values()):
                raise ValueError("weights are not a mapping of tensors")
            network = BatchedTanhMLP(params)
            K, R = int(info["outputs"]), recipe.models
            if network.n_models != K * R or network.in_dim != int(info["dim"]):
                raise ValueError(f"{network.n_models} networks of {network.in_dim} inputs for {K} output(s) × {R} "
                                 f"members of {info['dim']} inputs")  # fmt: skip
            norms = [Normaliser(**{k: nm[k] for k in NORMALISER_KEYS}) for nm in state["normalisers"]]
        except (TypeError, ValueError, KeyError) as err:
            raise refuse(str(err)[:200]) from None
        if len(norms) != K:
            raise refuse(f"{len(norms)} normalisers for {K} output(s)")
        tensors = [*params.values(), *(torch.as_tensor(getattr(nm, k)) for nm in norms for k in NORMALISER_KEYS)]
        if not all(bool(torch.isfinite(torch.as_tensor(t, dtype=torch.float64)).all()) for t in tensors):
            raise refuse("non-finite weights or normalisers")
        return cls(params, norms, recipe, info)

    def __repr__(self) -> str:
        r, i = self.recipe, self.info
        d = self.diagnostics
        labels = "with" if i["derivatives"] else "without"
        lines = [f"FittedModel: {r.models} tanh MLPs {r.layers}×{r.hidden} per output, D={i['dim']} → "
                 f"K={i['outputs']}, trained on N={i['n']} points {labels} derivative labels"]  # fmt: skip
        sel = self.selection
        if not i["derivatives"]:
            lines.append("  values only")
        elif len(sel):
            for k, rows in sel.groupby("output"):
                chosen = rows[rows.chosen].iloc[0]
                values_only = rows[rows.lam == 0]
                versus = f"; values only: {values_only.heldout_r2.iloc[0]:.4g}" if len(values_only) else ""
                out = f" (output {k})" if i["outputs"] > 1 else ""
                lines.append(f"  derivative weight λ = {chosen.lam:g}{out}, chosen from {tuple(rows.lam)} by "
                             f"{i.get('selection_method', 'cross-validation')}: held-out R² {chosen.heldout_r2:.4g}"
                             f"{versus}")  # fmt: skip
        else:
            lines.append(f"  derivative weight λ = {r.lam:g} ({i.get('lam_source', 'given')})")
        its = i.get("iterations")
        if r.optimiser == "lbfgs" and its:
            cap = sum(int(v) >= r.steps for v in its)
            falling = d.get("falling_at_cap", 0.0) or 0.0
            state = f" (objective still falling {falling:.1%} per 50 iterations there)" if cap else ""
            lines.append(f"  L-BFGS (float64, full batch): members stopped after {min(its)}–{max(its)} "
                         f"iterations; {cap} of {len(its)} at the cap of {r.steps}{state}")  # fmt: skip
        else:
            batch = "full batch" if r.batch_size >= i["n"] else f"batch {r.batch_size}"
            lines.append(f"  Adam: {r.steps} steps, {batch}")
        for k, r2 in enumerate(d.get("train_r2_values", [])):
            out = f" (output {k})" if i["outputs"] > 1 else ""
            deriv = d.get("train_r2_derivatives", [None] * (k + 1))[k]
            held = d.get("heldout_r2", [None] * (k + 1))[k]
            lines.append(f"  fit{out}: training R² {r2:.6g} of values" +
                         (f", {deriv:.4g} of derivatives" if deriv is not None and math.isfinite(deriv) else "") +
                         (f"; held-out R² {held:.4g}" if held is not None else ""))  # fmt: skip
        for w in d.get("warnings", []):
            lines.append(f"  WARNING: {w}")
        return "\n".join(lines)


__all__ = ["FittedModel", "Prediction"]
