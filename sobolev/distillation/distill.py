"""Section 4.2: Sobolev distillation of a policy into a smaller network.

Recording stores each state once, as its newest 84×84 frame plus episode boundaries; the
4-frame histories are rebuilt on the fly exactly as ``VecFrameStack`` built them (zeros
before an episode's first frame). The objective is the paper's

    min_θ  D_KL(π(s|θ) ‖ π*(s)) + α E_v ‖∇ₛ⟨log π*(s), v⟩ − ∇ₛ⟨log π(s|θ), v⟩‖,

``v`` uniform on the unit sphere of the action space: a vector-Jacobian product of each
network per ``v`` (one reverse pass; the teacher's is computed on the fly).
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sobolev.common.utils import progress_bar
from sobolev.core.losses import stochastic_sobolev_loss
from sobolev.core.training import NonFiniteLossError, train_loop
from sobolev.distillation.atari import FRAME_STACK, as_model_input, make_env


@dataclass
class Recording:
    """States visited by a policy: ``frames`` (T, 84, 84) uint8, the newest frame of each state;
    ``episode`` (T,) int64, the episode each state belongs to (non-decreasing); ``log_probs``
    (T, A) float32, the recorded policy's log-probabilities; ``returns``: raw scores of the
    episodes that finished while recording."""

    frames: Tensor
    episode: Tensor
    log_probs: Tensor
    returns: list[float] = field(default_factory=list)
    game: str = ""

    def __post_init__(self) -> None:
        t = len(self.frames)
        if self.frames.shape[1:] != (84, 84) or self.frames.dtype != torch.uint8:
            raise ValueError(f"frames must be (T, 84, 84) uint8, got {tuple(self.frames.shape)} {self.frames.dtype}")
        if self.episode.shape != (t,) or self.log_probs.shape[0] != t:
            raise ValueError(
                f"episode {tuple(self.episode.shape)} and log_probs {tuple(self.log_probs.shape)} must have T={t} rows"
            )
        if t and bool((self.episode.diff() < 0).any()):
            raise ValueError("episode indices must be non-decreasing (states in time order)")
        # Index of the first state of each state's episode: histories do not cross it.
        new = torch.ones(t, dtype=torch.bool)
        new[1:] = self.episode[1:] != self.episode[:-1]
        positions = torch.arange(t)
        self._episode_start = torch.cummax(torch.where(new, positions, torch.zeros_like(positions)), 0).values

    @property
    def n_actions(self) -> int:
        return int(self.log_probs.shape[1])

    def __len__(self) -> int:
        return len(self.frames)

    def to(self, device: torch.device | str) -> Recording:
        moved = (t.to(device) for t in (self.frames, self.episode, self.log_probs))
        return Recording(*moved, self.returns, self.game)

    def stacks(self, idx: Tensor) -> Tensor:
        """The 4-frame histories of states ``idx`` (B,) -> (B, 4, 84, 84) uint8, oldest first."""
        offsets = torch.arange(1 - FRAME_STACK, 1, device=idx.device)
        src = idx[:, None] + offsets  # (B, 4)
        valid = src >= self._episode_start.to(idx.device)[idx][:, None]
        out = self.frames[src.clamp_min(0)]
        return out * valid[:, :, None, None].to(out.dtype)

    def inputs(self, idx: Tensor) -> Tensor:
        """``stacks(idx)`` as network input: (B, 4, 84, 84) float in [0, 1]."""
        return self.stacks(idx).float() / 255.0

    def save(self, path: str | Path) -> None:
        from sobolev.common.utils import atomic_save

        atomic_save(
            {"frames": self.frames.cpu(), "episode": self.episode.cpu(), "log_probs": self.log_probs.cpu(),
             "returns": self.returns, "game": self.game}, path,
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        d = torch.load(path, weights_only=True)
        return cls(d["frames"], d["episode"], d["log_probs"], list(d["returns"]), d["game"])


def run_policy(
    policy: nn.Module,
    game: str,
    n_states: int,
    seed: int,
    min_episodes: int = 0,
    progress: bool | TextIO = False,
) -> Recording:
    """Play ``game`` (whole games, raw scores) sampling actions from ``policy`` and record
    ``n_states`` states, or more until ``min_episodes`` games have finished.

    ``policy`` maps ``(B, 4, 84, 84)`` float inputs to log-probabilities ``(B, A)``.
    """
    if n_states < 1:
        raise ValueError(f"n_states must be >= 1, got {n_states}")
    env = make_env(game, seed=seed, for_training=False)
    generator = torch.Generator().manual_seed(seed)
    frames, episodes, log_probs, returns = [], [], [], []
    episode = 0
    obs = env.reset()
    bar = progress_bar(range(n_states), f"record {game}", progress)
    with torch.no_grad():
        while len(frames) < n_states or len(returns) < min_episodes:
            logp = policy(as_model_input(obs))
            frames.append(torch.as_tensor(obs[0, :, :, -1]).clone())
            episodes.append(episode)
            log_probs.append(logp[0].float())
            action = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
            obs, _, done, info = env.step(action.numpy())
            if "episode" in info[0]:  # Monitor's record of a finished game, raw score
                returns.append(float(info[0]["episode"]["r"]))
            if done[0]:
                episode += 1
            if len(frames) <= n_states:
                bar.update(1)
    bar.close()
    env.close()
    return Recording(torch.stack(frames), torch.tensor(episodes), torch.stack(log_probs), returns, game)


def split_by_episode(episode: Tensor, train_fraction: float) -> tuple[Tensor, Tensor]:
    """Time-wise split: the first episodes (about ``train_fraction`` of the states) train, the
    rest test; the cut is at the episode boundary nearest to the fraction, so no episode is
    on both sides. Returns (train_idx, test_idx)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train fraction must be in (0, 1), got {train_fraction}")
    t = len(episode)
    starts = torch.nonzero(episode[1:] != episode[:-1]).flatten() + 1  # first state of episodes 2..
    if len(starts) == 0:
        raise ValueError("the recording holds a single episode: record more states to split by episode")
    cut = int(starts[(starts - train_fraction * t).abs().argmin()])
    positions = torch.arange(t)
    return positions[:cut], positions[cut:]


class StudentNet(nn.Module):
    """The SM's distilled policy: conv 16 8×8/4, conv 32 4×4/2, FC 256, softmax.

    ``forward(s)``: (B, 4, 84, 84) float -> log-probabilities (B, n_actions)."""

    def __init__(self, n_actions: int, in_frames: int = FRAME_STACK):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_frames, 16, 8, stride=4), nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(), nn.Flatten(),
            nn.Linear(32 * 9 * 9, 256), nn.ReLU(),
            nn.Linear(256, n_actions),
        )  # fmt: skip

    def forward(self, s: Tensor) -> Tensor:
        return F.log_softmax(self.net(s), dim=-1)


def reverse_kl(student_log_probs: Tensor, teacher_log_probs: Tensor) -> Tensor:
    """``D_KL(π(s|θ) ‖ π*(s))`` per state, the paper's direction: (B, A), (B, A) -> (B,)."""
    return (student_log_probs.exp() * (student_log_probs - teacher_log_probs)).sum(-1)


def distillation_loss(
    student: nn.Module,
    teacher: nn.Module,
    s: Tensor,
    teacher_log_probs: Tensor,
    alpha: float = 0.0,
    n_projections: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The paper's objective on a batch of states ``s`` (B, 4, 84, 84).

    ``alpha = 0`` is regular distillation (the KL alone). Otherwise eq. (2) in the output
    direction (:func:`sobolev.core.losses.stochastic_sobolev_loss`): per state and per random
    unit ``v`` in action space, the L2 norm of the difference of the input gradients of
    ``⟨log π*(s), v⟩`` and ``⟨log π(s|θ), v⟩``, averaged over states and ``n_projections``.

    Returns ``{"loss", "kl", "sobolev"}`` (scalars; ``sobolev`` is 0 when ``alpha = 0``).
    """
    if s.ndim != 4:
        raise ValueError(f"states must be (B, frames, H, W), got shape {tuple(s.shape)}")
    if teacher_log_probs.shape[0] != s.shape[0]:
        raise ValueError(f"teacher_log_probs has {teacher_log_probs.shape[0]} rows for {s.shape[0]} states")
    if alpha < 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if alpha == 0:
        kl = reverse_kl(student(s), teacher_log_probs).mean()
        return {"loss": kl, "kl": kl, "sobolev": torch.zeros((), device=s.device)}
    terms = stochastic_sobolev_loss(
        student, s, teacher_log_probs, target_fn=teacher, n_projections=n_projections, weight=alpha,
        distance_kind="norm", direction="output", generator=generator,
        value_loss=lambda log_probs, target: reverse_kl(log_probs, target).mean(), return_terms=True,
    )  # fmt: skip
    return {"loss": terms["loss"], "kl": terms["value"], "sobolev": terms["projection"]}


@torch.no_grad()
def predict(student: nn.Module, rec: Recording, idx: Tensor, batch: int = 1000) -> Tensor:
    """The student's log-probabilities on states ``idx`` (n,) -> (n, n_actions), in eval mode, on the CPU."""
    training = student.training
    student.eval()
    out = torch.cat([student(rec.inputs(idx[i : i + batch])).cpu() for i in range(0, len(idx), batch)])
    student.train(training)
    return out


@torch.no_grad()
def evaluate(student: nn.Module, rec: Recording, idx: Tensor, batch: int = 1000) -> dict[str, float]:
    """Action-prediction error (the most probable actions disagree) and mean KL on states ``idx``."""
    errors, kl = 0.0, 0.0
    for start in range(0, len(idx), batch):
        part = idx[start : start + batch]
        log_probs = student(rec.inputs(part))
        target = rec.log_probs[part]
        errors += float((log_probs.argmax(1) != target.argmax(1)).sum())
        kl += float(reverse_kl(log_probs, target).sum())
    return {"action_error": errors / len(idx), "kl": kl / len(idx)}


def distill(
    rec: Recording,
    teacher: nn.Module,
    train_idx: Tensor,
    eval_sets: dict[str, Tensor],
    lr: float,
    alpha: float,
    iterations: int,
    seed: int,
    batch_size: int = 200,
    n_projections: int = 1,
    eval_every: int = 100,
    progress: bool | TextIO = False,
    desc: str = "distill",
) -> tuple[nn.Module, list[dict]]:
    """Train a :class:`StudentNet` on ``train_idx`` with Adam; returns it and its curve:
    ``[{"iteration", "set", "action_error", "kl"}]`` for each of ``eval_sets`` every
    ``eval_every`` iterations (and at 0 and the end)."""
    device = rec.frames.device
    torch.manual_seed(seed)
    student = StudentNet(rec.n_actions).to(device)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(20_000 + seed)
    train_idx = train_idx.to(device)
    curve: list[dict] = []

    def log(it: int) -> None:
        student.eval()
        for name, idx in eval_sets.items():
            curve.append({"iteration": it, "set": name, **evaluate(student, rec, idx.to(device))})
        student.train()

    def step(_: int) -> Tensor:
        pick = torch.randint(len(train_idx), (batch_size,), generator=generator).to(device)
        idx = train_idx[pick]
        out = distillation_loss(student, teacher, rec.inputs(idx), rec.log_probs[idx], alpha, n_projections, generator)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        return out["loss"]

    log(0)
    hint = f"learning rate {lr:g} (distillation.lrs) or α = {alpha:g} (distillation.alphas) too large"
    train_loop(step, iterations, desc=f"distillation: {desc}", hint=hint, log_every=eval_every,
               on_log=lambda it, _: log(it), progress=progress)  # fmt: skip
    return student, curve


def regular_lr_grid(lrs: Sequence[float], n_extra: int) -> list[float]:
    """``lrs`` plus ``n_extra`` geometric midpoints of neighbouring values: regular distillation's
    grid, as many runs as Sobolev's ``lrs`` plus its extra α values (an equal tuning budget)."""
    ordered = sorted(lrs)
    mids = [math.sqrt(a * b) for a, b in itertools.pairwise(ordered)]
    if n_extra > len(mids):
        raise ValueError(f"{n_extra} extra learning rates requested but only {len(mids)} midpoints exist")
    return sorted(ordered + mids[:n_extra], reverse=True)


def best(scores: dict) -> Any:
    """The key with the lowest score; a NaN score (a diverged run) counts as infinity and loses.
    Raises when every run diverged."""
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
        values = list(scores.values())
        raise NonFiniteLossError(f"every tuning run diverged (validation KL {values}): lower distillation.lrs")
    return min(finite, key=finite.get)


def tune(
    rec: Recording,
    teacher: nn.Module,
    train_idx: Tensor,
    val_idx: Tensor,
    lrs: Sequence[float],
    alphas: Sequence[float],
    iterations: int,
    batch_size: int = 200,
    n_projections: int = 1,
    seed: int = 0,
    progress: bool | TextIO = False,
) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """Pick each method's hyper-parameters by the final validation KL, with equal budgets.

    Sobolev: every lr at ``alphas[0]``, then the other α at the best lr
    (``len(lrs) + len(alphas) − 1`` runs). Regular: the same number of runs over ``lrs`` and
    geometric midpoints between them. Returns ``({"regular": {"lr", "alpha"}, "sobolev": ...},
    rows)`` with one row per run.
    """
    rows: list[dict] = []

    def run(method: str, lr: float, alpha: float) -> float:
        try:
            _, curve = distill(
                rec, teacher, train_idx, {"val": val_idx}, lr, alpha, iterations, seed, batch_size, n_projections,
                eval_every=iterations, progress=progress, desc=f"tune {method} lr={lr:.0e} α={alpha:g}",
            )  # fmt: skip
            final = curve[-1]
        except NonFiniteLossError as err:  # a diverged tuning run loses (NaN in tuning.csv), and says so
            print(f"{err} This tuning run loses.", file=sys.stderr)
            final = {"kl": float("nan"), "action_error": float("nan")}
        rows.append({"method": method, "lr": lr, "alpha": alpha, "val_kl": final["kl"],
                     "val_action_error": final["action_error"]})  # fmt: skip
        return final["kl"]

    chosen: dict[str, dict[str, float]] = {}
    scores = {lr: run("regular", lr, 0.0) for lr in regular_lr_grid(lrs, len(alphas) - 1)}
    chosen["regular"] = {"lr": best(scores), "alpha": 0.0}
    scores = {(lr, alphas[0]): run("sobolev", lr, alphas[0]) for lr in lrs}
    best_lr = best(scores)[0]
    scores.update({(best_lr, a): run("sobolev", best_lr, a) for a in alphas[1:]})
    lr, alpha = best(scores)
    chosen["sobolev"] = {"lr": lr, "alpha": alpha}
    return chosen, rows
