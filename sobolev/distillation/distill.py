"""Section 4.2: Sobolev distillation of a policy into a smaller network.

Recording stores each state once, as its newest 84×84 frame plus episode boundaries; the
4-frame histories are rebuilt on the fly exactly as ``VecFrameStack`` built them (zeros
before an episode's first frame). The objective is the paper's

    min_θ  D_KL(π(s|θ) ‖ π*(s)) + α E_v ‖∇ₛ⟨log π*(s), v⟩ − ∇ₛ⟨log π(s|θ), v⟩‖,

``v`` uniform on the unit sphere of the action space (the paper's output-direction projection):
a vector-Jacobian product of each network per ``v``. :func:`distillation_loss` differentiates it
with autograd (a double backward, the reference); :func:`sobolev_distillation_step`, what training
runs, gives the same values and gradients with a tangent pass instead. The teacher's side comes
from its input Jacobians stored once (:class:`TeacherJacobians`) or a VJP on the fly.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sobolev.common.utils import atomic_save, progress_bar
from sobolev.core.derivatives import forward_with_masks, linearised_forward, random_unit_vectors
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
        self._stacked: Tensor | None = None  # (T, 84, 84, 4) uint8, built by the first inputs() call

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
        """``stacks(idx)`` as network input: (B, 4, 84, 84) float in [0, 1], channels-last in memory
        (the convolutions of student and teacher run faster so on CPU: ``benchmarks/bench_distill_step.py``).

        Gathered from every state's history stored once as (T, 84, 84, 4) uint8 (28 KB per state): a row
        copy and a conversion instead of a 4-frame gather and a transposing copy per call, 3× faster."""
        if self._stacked is None:
            chunks = [self.stacks(torch.arange(s, min(s + 1000, len(self)), device=self.frames.device))
                      for s in range(0, len(self), 1000)]  # fmt: skip
            self._stacked = torch.cat([c.permute(0, 2, 3, 1).contiguous() for c in chunks])
        return (self._stacked[idx].float().div_(255.0)).permute(0, 3, 1, 2)

    def share_memory_(self) -> Recording:
        """Move the frames, labels and stacked histories to shared memory (worker processes map them), in place."""
        self.inputs(torch.arange(1, device=self.frames.device))  # builds the stacked histories once, here
        for t in (self.frames, self.episode, self.log_probs, self._stacked):
            t.share_memory_()
        return self

    def save(self, path: str | Path) -> None:
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


def _boundary_near(starts: Tensor, position: float) -> int:
    """The episode start (an index in ``starts``) nearest to ``position``."""
    return int(starts[(starts - position).abs().argmin()])


@dataclass(frozen=True)
class Splits:
    """State indices by role, whole episodes only: ``train[f]`` (the first episodes, about ``f`` of
    the states), ``val`` (the episodes before the test part: early stopping and tuning) and ``test``
    (the last episodes). Every fraction shares the same validation and test episodes."""

    train: dict[float, Tensor]
    val: Tensor
    test: Tensor

    def sizes(self) -> dict[str, int]:
        return {**{f"train {f:g}": len(t) for f, t in self.train.items()}, "val": len(self.val), "test": len(self.test)}


def split_episodes(episode: Tensor, fractions: Sequence[float], val_share: float, test_share: float) -> Splits:
    """Time-wise split of a recording by episode (``episode``: (T,) non-decreasing).

    The last episodes (about ``test_share`` of the states) test, the episodes before them (about
    ``val_share``) validate, and each fraction ``f`` trains on the first episodes (about ``f`` of the
    states); every cut is at the episode boundary nearest to its target, so no episode is in two
    roles. Raises ``ValueError`` when there are too few episodes for non-empty, non-overlapping parts.
    """
    for name, share in (("val_share", val_share), ("test_share", test_share), *(("fraction", f) for f in fractions)):
        if not 0.0 < share < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {share}")
    if max(fractions) + val_share + test_share > 1.0 + 1e-9:
        raise ValueError(
            f"the largest fraction ({max(fractions)}) + val_share ({val_share}) + test_share ({test_share}) exceed 1"
        )
    t = len(episode)
    starts = torch.nonzero(episode[1:] != episode[:-1]).flatten() + 1  # first state of episodes 2..
    if len(starts) < 2:
        raise ValueError(
            f"the recording holds {len(starts) + 1} episode(s): at least 3 are needed for train, validation and "
            "test episodes; record more states"
        )
    test_start = _boundary_near(starts, (1 - test_share) * t)
    before = starts[starts < test_start]
    if len(before) == 0:
        raise ValueError("no episode boundary before the test episodes: record more states or lower test_share")
    val_start = _boundary_near(before, (1 - test_share - val_share) * t)
    train = {}
    for f in fractions:
        end = _boundary_near(starts[starts <= val_start], f * t)
        train[f] = torch.arange(end)
    positions = torch.arange(t)
    return Splits(train, positions[val_start:test_start], positions[test_start:])


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


def _check_states(s: Tensor, teacher_log_probs: Tensor) -> None:
    if s.ndim != 4:
        raise ValueError(f"states must be (B, frames, H, W), got shape {tuple(s.shape)}")
    if teacher_log_probs.shape[0] != s.shape[0]:
        raise ValueError(f"teacher_log_probs has {teacher_log_probs.shape[0]} rows for {s.shape[0]} states")


def distillation_loss(
    student: nn.Module,
    teacher: nn.Module,
    s: Tensor,
    teacher_log_probs: Tensor,
    alpha: float = 0.0,
    n_projections: int = 1,
    generator: torch.Generator | None = None,
    teacher_jacobian: Tensor | None = None,
) -> dict[str, Tensor]:
    """The paper's objective on a batch of states ``s`` (B, 4, 84, 84).

    ``alpha = 0`` is regular distillation (the KL alone). Otherwise eq. (2) in the output
    direction (:func:`sobolev.core.losses.stochastic_sobolev_loss`): per state and per random
    unit ``v`` in action space, the L2 norm of the difference of the input gradients of
    ``⟨log π*(s), v⟩`` and ``⟨log π(s|θ), v⟩``, averaged over states and ``n_projections``.
    The teacher's side is ``vᵀ J`` from ``teacher_jacobian`` (B, A, 4, 84, 84) when given (see
    :func:`teacher_jacobians`), else a VJP through ``teacher`` on the fly; both draw the same ``v``.

    Returns ``{"loss", "kl", "sobolev"}`` (scalars; ``sobolev`` is 0 when ``alpha = 0``).
    """
    _check_states(s, teacher_log_probs)
    if alpha < 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if alpha == 0:
        kl = reverse_kl(student(s), teacher_log_probs).mean()
        return {"loss": kl, "kl": kl, "sobolev": torch.zeros((), device=s.device)}
    target = {"target_fn": teacher} if teacher_jacobian is None else {"target_jacobian": teacher_jacobian}
    terms = stochastic_sobolev_loss(
        student, s, teacher_log_probs, **target, n_projections=n_projections, weight=alpha, distance_kind="norm",
        direction="output", generator=generator, value_loss=lambda log_probs, t: reverse_kl(log_probs, t).mean(),
        return_terms=True,
    )  # fmt: skip
    return {"loss": terms["loss"], "kl": terms["value"], "sobolev": terms["projection"]}


def sobolev_distillation_step(
    student: StudentNet,
    s: Tensor,
    teacher_log_probs: Tensor,
    alpha: float,
    n_projections: int,
    generator: torch.Generator | None,
    teacher_projection: Callable[[Tensor], Tensor],
) -> dict[str, Tensor]:
    """:func:`distillation_loss`'s objective (``alpha > 0``) with its gradient by a tangent pass instead
    of a double backward: the same values, the same gradients to float rounding (tested), less work.

    With ``g = ∇ₛ⟨log π(s|θ), v⟩`` and ``r = ∂L/∂g`` (for the norm, ``α (g − g*) / (B ‖g − g*‖)``), the
    Sobolev term's gradient is ``∇_θ⟨r, g⟩`` with ``r`` held fixed, and ``⟨r, g⟩ = ⟨c, J_z r⟩`` where
    ``J_z r`` is the logits' JVP in direction ``r`` and ``c = v − π Σ_a v_a`` the log-softmax's VJP. The
    student is piecewise linear, so ``J_z r`` is its forward pass without biases and with the primal's
    ReLU masks (:func:`~sobolev.core.derivatives.linearised_forward`): one input-gradient pass (no graph)
    for ``g``, one linear pass for ``J_z r``, then one backward through the primal and the tangent, where
    autograd's double backward differentiates the input-gradient pass itself (``bench_distill_step.py``).

    Args:
        student: a :class:`StudentNet` (its ``net`` is piecewise linear).
        s: states ``(B, 4, 84, 84)``.
        teacher_log_probs: ``(B, A)``.
        teacher_projection: ``v (B, A) -> vᵀJ*`` the teacher's input-gradient projections, shaped like ``s``,
            in a fresh tensor that the step overwrites (:meth:`TeacherJacobians.project` or
            :func:`teacher_vjp`); ``v`` is drawn as
            :func:`distillation_loss` draws it, so one generator state gives both functions the same ``v``.

    Returns:
        ``{"loss", "kl", "sobolev"}`` detached, as :func:`distillation_loss`'s, and ``"surrogate"``: a
        scalar whose gradient in the student's weights is the loss's
        (``surrogate.backward(inputs=list(student.parameters()))``).
    """
    _check_states(s, teacher_log_probs)
    if not alpha > 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number > 0 (0 is regular distillation), got {alpha}")
    batch = s.shape[0]
    x = s.detach().requires_grad_(True)
    with torch.enable_grad():
        logits, masks = forward_with_masks(student.net, x)
        log_probs = F.log_softmax(logits, dim=-1)
        kl = reverse_kl(log_probs, teacher_log_probs).mean()
        probs = log_probs.exp()
        surrogate, gaps = kl, []
        for _ in range(n_projections):
            v = random_unit_vectors(batch, logits.shape[1], generator, x.device, x.dtype)
            # In place on the teacher's projection (a fresh tensor): each new (B, 4, 84, 84) tensor costs page
            # faults, and this step's elementwise work is memory-bound.
            r = teacher_projection(v).detach()
            (g,) = torch.autograd.grad((log_probs * v).sum(), x, retain_graph=True)
            r.sub_(g)  # g* − g
            norms = torch.linalg.vector_norm(r, dim=tuple(range(1, r.ndim)))
            gaps.append(norms.mean())
            scale = -alpha / (batch * n_projections) / norms.clamp_min(torch.finfo(norms.dtype).tiny)
            r.mul_(scale.view(-1, *([1] * (r.ndim - 1))))  # ∂L/∂g = α (g − g*) / (B ‖g − g*‖); 0 where g = g*
            c = v - probs * v.sum(1, keepdim=True)
            surrogate = surrogate + (c * linearised_forward(student.net, r, masks)).sum()
    sobolev = torch.stack(gaps).mean()
    return {"loss": (kl + alpha * sobolev).detach(), "kl": kl.detach(), "sobolev": sobolev.detach(),
            "surrogate": surrogate}  # fmt: skip


def teacher_vjp(teacher: nn.Module, s: Tensor) -> Callable[[Tensor], Tensor]:
    """``v (B, A) -> vᵀ J*(s)`` by a backward pass through ``teacher`` (on the fly), shaped like ``s``."""

    def project(v: Tensor) -> Tensor:
        x = s.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad((teacher(x) * v).sum(), x)
        return g

    return project


class TeacherJacobians:
    """The teacher's input Jacobians ``∂ log π*(s) / ∂s`` of some states, computed once.

    A Sobolev iteration needs ``vᵀ J`` for a fresh random ``v`` per state; with ``J`` stored, that is a
    contraction instead of a backward pass through the teacher, the costliest part of the iteration
    (``benchmarks/bench_distill_step.py``). ``A`` VJPs per state, once, beat one per state and
    iteration as soon as the run visits each state more than ``A`` times. Stored as float16 in the
    channels-last order of the states (n, A, 84, 84, 4), 2·A·28 224 bytes per state.
    """

    def __init__(self, teacher: nn.Module, rec: Recording, idx: Tensor, batch: int = 50, progress=False):
        idx = idx.to(rec.frames.device)
        self.row = torch.full((len(rec),), -1, dtype=torch.long, device=idx.device)
        self.row[idx] = torch.arange(len(idx), device=idx.device)
        parts = []
        for start in progress_bar(range(0, len(idx), batch), "teacher Jacobians", progress):
            x = rec.inputs(idx[start : start + batch]).requires_grad_(True)
            with torch.enable_grad():
                out = teacher(x)
                rows = [
                    torch.autograd.grad(out[:, a].sum(), x, retain_graph=a < out.shape[1] - 1)[0]
                    for a in range(out.shape[1])
                ]
            parts.append(torch.stack(rows, 1).permute(0, 1, 3, 4, 2).contiguous().to(torch.float16))
        self.jacobians = torch.cat(parts)  # (n, A, H, W, C)
        self._scratch: Tensor | None = None

    def projection_scale(self, idx: Tensor, batch: int = 100) -> float:
        """The size of the teacher's input-gradient projections over states ``idx``: the root mean square of
        ``‖vᵀJ*(s)‖`` over those states and random unit ``v``, ``sqrt(mean_s ‖J*(s)‖²_F / A)`` (for ``v``
        uniform on the unit sphere, ``E vvᵀ = I / A``). The balanced Sobolev term divides by it, so that its
        size no longer depends on how steep a game's teacher is."""
        if not len(idx):
            raise ValueError("idx: no states to measure the teacher's gradient scale on (an empty index)")
        rows = self._rows(idx)
        total = 0.0
        for start in range(0, len(rows), batch):
            part = self.jacobians[rows[start : start + batch]].float()
            total += float(part.pow(2).sum(dtype=torch.float64))
        return math.sqrt(total / (len(rows) * self.jacobians.shape[1]))

    def _rows(self, idx: Tensor) -> list[int]:
        rows = self.row[idx]
        if bool((rows < 0).any()):
            raise KeyError("some states have no stored teacher Jacobian (only the training states do)")
        return rows.tolist()

    def __call__(self, idx: Tensor) -> Tensor:
        """The Jacobians of states ``idx`` (B,) -> (B, A, 4, 84, 84) float32, contiguous (for
        :func:`distillation_loss`; training reads :meth:`project`)."""
        n, a, h, w, c = len(idx), *self.jacobians.shape[1:]
        out = torch.empty(n, a, c, h, w, device=self.jacobians.device)
        for i, r in enumerate(self._rows(idx)):  # row by row: index_select on float16 is slow on CPU
            out[i].copy_(self.jacobians[r].permute(0, 3, 1, 2))
        return out

    def project(self, idx: Tensor, v: Tensor) -> Tensor:
        """``vᵀ J`` of states ``idx`` (B,) for ``v`` (B, A) -> (B, 4, 84, 84) in ``v``'s dtype, channels-last.

        Row by row through one (A, 84·84·4) scratch that stays in cache: index_select on float16 is slow on
        CPU, and a whole (B, A, ...) float32 copy costs more in memory traffic than the contraction."""
        a, h, w, c = self.jacobians.shape[1:]
        if v.shape != (len(idx), a):
            raise ValueError(f"v: expected shape {(len(idx), a)} (states, actions), got {tuple(v.shape)}")
        if self._scratch is None or self._scratch.dtype != v.dtype or self._scratch.device != v.device:
            self._scratch = torch.empty(a, h * w * c, dtype=v.dtype, device=v.device)
        out = torch.empty(len(idx), h * w * c, dtype=v.dtype, device=v.device)
        for i, r in enumerate(self._rows(idx)):
            self._scratch.copy_(self.jacobians[r].view(a, -1))
            torch.mm(v[i : i + 1], self._scratch, out=out[i : i + 1])
        return out.view(len(idx), h, w, c).permute(0, 3, 1, 2)


@torch.no_grad()
def predict(student: nn.Module, rec: Recording, idx: Tensor, batch: int = 250) -> Tensor:
    """The student's log-probabilities on states ``idx`` (n,) -> (n, n_actions), in eval mode, on the CPU."""
    training = student.training
    student.eval()
    out = torch.cat([student(rec.inputs(idx[i : i + batch])).cpu() for i in range(0, len(idx), batch)])
    student.train(training)
    return out


@torch.no_grad()
def agreement(log_probs: Tensor, target: Tensor, batch: int = 250) -> dict[str, float]:
    """Action-prediction error (the most probable actions disagree) and mean KL of a student's log-probabilities
    ``log_probs`` (n, A) against the teacher's ``target`` (n, A), summed ``batch`` rows at a time."""
    if log_probs.shape != target.shape or log_probs.ndim != 2 or not len(log_probs):
        raise ValueError(f"log_probs {tuple(log_probs.shape)} and target {tuple(target.shape)} must be one (n, A) "
                         "shape with n >= 1")  # fmt: skip
    errors, kl = 0.0, 0.0
    for start in range(0, len(target), batch):
        part, teacher = log_probs[start : start + batch], target[start : start + batch]
        errors += float((part.argmax(1) != teacher.argmax(1)).sum())
        kl += float(reverse_kl(part, teacher).sum())
    return {"action_error": errors / len(target), "kl": kl / len(target)}


def evaluate(student: nn.Module, rec: Recording, idx: Tensor, batch: int = 250) -> dict[str, float]:
    """:func:`agreement` of the student with the recorded teacher on states ``idx``."""
    return agreement(predict(student, rec, idx, batch), rec.log_probs[idx].cpu(), batch)


@dataclass
class Distilled:
    """A student at its selected checkpoint (the lowest validation KL) and how its run went.

    ``curve``: ``[{"iteration", "set", "action_error", "kl"}]`` for every evaluated set;
    ``best_iteration``: the selected checkpoint; ``stopped_at``: the last iteration trained;
    ``early``: whether it stopped because the validation KL had not improved for ``patience``
    evaluations (``False``: it reached ``max_iterations`` still improving); ``seconds``: training time."""

    student: nn.Module
    curve: list[dict]
    best_iteration: int
    stopped_at: int
    early: bool
    seconds: float


def distill(
    rec: Recording,
    teacher: nn.Module,
    train_idx: Tensor,
    eval_sets: dict[str, Tensor],
    lr: float,
    alpha: float,
    max_iterations: int,
    seed: int,
    batch_size: int = 200,
    n_projections: int = 1,
    eval_every: int = 100,
    patience: int = 5,
    jacobians: TeacherJacobians | None = None,
    progress: bool | TextIO = False,
    desc: str = "distill",
) -> Distilled:
    """Train a :class:`StudentNet` on ``train_idx`` with Adam until the validation KL (``eval_sets["val"]``)
    has not improved for ``patience`` evaluations (one every ``eval_every`` iterations) or
    ``max_iterations`` are done; return it at its best validation KL (early stopping).

    The seed fixes the student's initial weights and its batches: two methods with one seed start
    from the same network and see the same states."""
    if "val" not in eval_sets:
        raise ValueError(f"eval_sets needs a 'val' set for early stopping, got {sorted(eval_sets)}")
    if not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
    device = rec.frames.device
    torch.manual_seed(seed)
    student = StudentNet(rec.n_actions).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(20_000 + seed)
    train_idx = train_idx.to(device)
    eval_sets = {name: idx.to(device) for name, idx in eval_sets.items()}
    curve: list[dict] = []
    best = {"kl": math.inf, "iteration": 0, "state": None, "since": 0}

    def log(it: int) -> bool:
        student.eval()
        for name, idx in eval_sets.items():
            curve.append({"iteration": it, "set": name, **evaluate(student, rec, idx)})
            if name == "val":
                val_kl = curve[-1]["kl"]
        student.train()
        if val_kl < best["kl"]:
            best.update(kl=val_kl, iteration=it, since=0, state={k: v.clone() for k, v in student.state_dict().items()})
        else:
            best["since"] += 1
        return best["since"] >= patience

    params = list(student.parameters())

    def step(_: int) -> Tensor:
        pick = torch.randint(len(train_idx), (batch_size,), generator=generator).to(device)
        idx = train_idx[pick]
        s = rec.inputs(idx)
        opt.zero_grad(set_to_none=True)
        if alpha == 0:
            out = distillation_loss(student, teacher, s, rec.log_probs[idx])
            out["loss"].backward()
        else:
            project = teacher_vjp(teacher, s) if jacobians is None else (lambda v: jacobians.project(idx, v))
            out = sobolev_distillation_step(student, s, rec.log_probs[idx], alpha, n_projections, generator, project)
            out["surrogate"].backward(inputs=params)
        opt.step()
        return out["loss"]

    start = time.perf_counter()
    log(0)
    hint = f"learning rate {lr:g} (distillation.lrs) or α = {alpha:g} (distillation.alphas) too large"
    train_loop(step, max_iterations, desc=f"distillation: {desc}", hint=hint, log_every=eval_every,
               on_log=lambda it, _: log(it), progress=progress)  # fmt: skip
    seconds = time.perf_counter() - start
    stopped_at = int(curve[-1]["iteration"])
    early = best["since"] >= patience
    student.load_state_dict(best["state"])
    return Distilled(student, curve, int(best["iteration"]), stopped_at, early, seconds)


def regular_lr_grid(lrs: Sequence[float], n_extra: int) -> list[float]:
    """``lrs`` plus ``n_extra`` more learning rates: regular distillation's grid, as many runs as the largest
    Sobolev arm's (its ``lrs`` plus its extra α values: an equal tuning budget). The extra rates are the
    geometric midpoints of neighbouring values first, then halvings below the smallest (a one-point ``lrs``
    has no midpoints). Largest first."""
    if n_extra < 0:
        raise ValueError(f"n_extra must be >= 0, got {n_extra}")
    ordered = sorted(lrs)
    extra = [math.sqrt(a * b) for a, b in itertools.pairwise(ordered)][:n_extra]
    while len(extra) < n_extra:
        extra.append(min([*ordered, *extra]) / 2)
    return sorted(ordered + extra, reverse=True)


def regular_lrs(lrs: Sequence[float], arms: dict[str, Sequence[float]]) -> list[float]:
    """Regular distillation's tuning grid beside the Sobolev arms ``arms`` (their α grids): as many learning rates
    as the largest arm has runs (:func:`regular_lr_grid`). Largest first."""
    if not arms or any(not alphas for alphas in arms.values()):
        raise ValueError(f"arms must map each Sobolev arm to a non-empty α grid, got {arms}")
    return regular_lr_grid(lrs, max(len(alphas) for alphas in arms.values()) - 1)


def best(scores: dict) -> Any:
    """The key with the lowest score; a NaN score (a diverged run) counts as infinity and loses.
    Raises when every run diverged."""
    finite = {k: v for k, v in scores.items() if math.isfinite(v)}
    if not finite:
        values = list(scores.values())
        raise NonFiniteLossError(f"every tuning run diverged (validation KL {values}): lower distillation.lrs")
    return min(finite, key=finite.get)


def tune(
    run: Callable[[str, float, float], float],
    lrs: Sequence[float],
    arms: dict[str, Sequence[float]],
) -> dict[str, dict[str, float]]:
    """Pick each method's hyper-parameters by the lowest validation KL with equal budgets.

    ``run(method, lr, alpha)`` trains one grid point (early-stopped runs on validation) and returns
    its validation KL (NaN when it diverged: it loses). ``arms``: each Sobolev arm's α grid
    (``{"sobolev": [1.0], "balanced": [0.1, 1.0]}``). A Sobolev arm runs every lr at its first α, then
    its other α at its best lr (``len(lrs) + len(alphas) − 1`` runs). Regular runs
    :func:`regular_lrs`: as many learning rates as the largest arm's runs, so no arm is tuned more
    than the baseline. Returns ``{"regular": {"lr", "alpha"}, <arm>: {...}, ...}``.
    """
    chosen: dict[str, dict[str, float]] = {}
    scores = {lr: run("regular", lr, 0.0) for lr in regular_lrs(lrs, arms)}
    chosen["regular"] = {"lr": best(scores), "alpha": 0.0}
    for arm, alphas in arms.items():
        scores = {(lr, alphas[0]): run(arm, lr, alphas[0]) for lr in lrs}
        best_lr = best(scores)[0]
        scores.update({(best_lr, a): run(arm, best_lr, a) for a in alphas[1:]})
        lr, alpha = best(scores)
        chosen[arm] = {"lr": lr, "alpha": alpha}
    return chosen
