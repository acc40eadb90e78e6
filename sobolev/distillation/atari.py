"""Atari environments and teacher policies for Section 4.2 (policy distillation).

The SM's preprocessing is Stable-Baselines3's ``AtariWrapper`` (no-op starts, action repeat
4 with a max over the last two frames, 84×84 greyscale) and a history of 4 frames
(``VecFrameStack``), the setting the RL Zoo's agents were trained in. Teachers are SB3
actor-critic agents with the NatureCNN: the paper's A3C architecture (conv 32 8×8/4,
conv 64 4×4/2, conv 64 3×3/1, FC 512, softmax). ``gymnasium``, ``ale-py`` (the ROMs ship in
its wheel) and ``stable-baselines3`` are imported lazily, so ``import sobolev`` never needs them.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sobolev.common.utils import atomic_save

GAMES = {
    "pong": "PongNoFrameskip-v4",
    "breakout": "BreakoutNoFrameskip-v4",
    "space_invaders": "SpaceInvadersNoFrameskip-v4",
}
# The RL Zoo's public A2C agents (A2C is A3C's synchronous twin, with the same NatureCNN).
HUB_REPOS = {game: f"sb3/a2c-{env_id}" for game, env_id in GAMES.items()}
ALGOS = ("a2c", "ppo")
# Reference scores (mean raw game score) of the RL Zoo's agents after 10M environment steps, from
# https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md: beside our teachers' returns.
RL_ZOO_SCORES = {
    "a2c": {"pong": 17.292, "breakout": 279.793, "space_invaders": 627.160},
    "ppo": {"pong": 20.989, "breakout": 398.033, "space_invaders": 960.331},
}
FRAME_STACK = 4


def check_game(game: str) -> str:
    if game not in GAMES:
        raise ValueError(f"unknown game {game!r}; allowed: {', '.join(GAMES)}")
    return GAMES[game]


def _register_ale() -> None:
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)  # gymnasium 1.x does not find the ALE namespace without this


def make_env(game: str, seed: int, n_envs: int = 1, for_training: bool = True):
    """A ``VecFrameStack`` of ``n_envs`` preprocessed copies of ``game``.

    ``for_training`` is the RL setting (a lost life ends the episode for the learner, rewards
    clipped to ±1). Otherwise episodes are whole games with raw scores: what recording and
    evaluation use. Observations: ``(n_envs, 84, 84, 4)`` uint8, the newest frame last.
    """
    env_id = check_game(game)
    _register_ale()
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    wrapper_kwargs = {} if for_training else {"terminal_on_life_loss": False, "clip_reward": False}
    return VecFrameStack(make_atari_env(env_id, n_envs=n_envs, seed=seed, wrapper_kwargs=wrapper_kwargs), FRAME_STACK)


class TeacherNet(nn.Module):
    """The actor of an SB3 actor-critic CNN policy (NatureCNN, the paper's A3C network) as a plain
    differentiable function that needs no SB3: conv 32 8×8/4, conv 64 4×4/2, conv 64 3×3/1, FC 512,
    one logit per action.

    ``forward(s)``: ``s`` is ``(B, 4, 84, 84)`` float in [0, 1] (uint8 frames / 255, what SB3
    feeds its NatureCNN); returns log-probabilities ``(B, n_actions)``. The input gradient of
    the teacher is taken with respect to this ``s``. ``temperature`` < 1 sharpens the policy
    (``softmax(logits / temperature)``); 1 is the agent as trained.
    """

    def __init__(self, n_actions: int, temperature: float = 1.0, in_frames: int = FRAME_STACK):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.n_actions = int(n_actions)
        self.cnn = nn.Sequential(
            nn.Conv2d(in_frames, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(),
        )  # fmt: skip
        self.linear = nn.Sequential(nn.Linear(64 * 7 * 7, 512), nn.ReLU())
        self.head = nn.Linear(512, n_actions)

    def forward(self, s: Tensor) -> Tensor:
        return F.log_softmax(self.head(self.linear(self.cnn(s))) / self.temperature, dim=-1)

    @classmethod
    def from_sb3(cls, sb3_policy: Any, temperature: float = 1.0) -> TeacherNet:
        """The actor of an SB3 ``CnnPolicy`` (ours or the RL Zoo's), weights copied."""
        if any(True for _ in sb3_policy.mlp_extractor.policy_net.parameters()):
            raise ValueError("the agent's policy has hidden layers after its CNN: not a NatureCNN CnnPolicy")
        features = sb3_policy.pi_features_extractor
        net = cls(int(sb3_policy.action_net.out_features), temperature, int(features.cnn[0].in_channels))
        net.cnn.load_state_dict(features.cnn.state_dict())
        net.linear.load_state_dict(features.linear.state_dict())
        net.head.load_state_dict(sb3_policy.action_net.state_dict())
        return net


def save_teacher(net: TeacherNet, path: str | Path, **info: Any) -> None:
    """Pin a teacher: its weights in float16 (a few MB, small enough for git) and ``info`` (plain
    numbers and strings: game, env steps, training log ...). The float16 weights *are* the teacher
    from then on: recording and distillation load them back as float32."""
    weights = {k: v.detach().to(torch.float16).cpu() for k, v in net.state_dict().items()}
    atomic_save({"weights": weights, "n_actions": net.n_actions, "in_frames": net.cnn[0].in_channels, **info}, path)


def load_teacher(
    path: str | Path, temperature: float = 1.0, device: torch.device | str = "cpu", game: str | None = None
) -> TeacherNet:
    """A pinned teacher (:func:`save_teacher`) as a frozen float32 :class:`TeacherNet` in eval mode;
    with ``game``, checked to be a teacher for that game."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"no teacher at {path}: the pinned teachers are committed with the repository; retrain one with "
            "`python -m sobolev.pipeline run s42-teacher GAME`"
        )
    d = torch.load(path, weights_only=True)
    if game is not None and d.get("game", game) != game:
        raise ValueError(f"{path} is a teacher for {d['game']}, not {game}")
    net = TeacherNet(d["n_actions"], temperature, d["in_frames"])
    net.load_state_dict({k: v.float() for k, v in d["weights"].items()})
    net = net.to(device, memory_format=torch.channels_last).eval()  # faster convolutions on CPU
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def teacher_info(path: str | Path) -> dict[str, Any]:
    """What :func:`save_teacher` stored beside the weights."""
    d = torch.load(path, weights_only=True)
    return {k: v for k, v in d.items() if k != "weights"}


def _progress_callback(report_every: int, checkpoint_dir: str | Path | None, stream: TextIO | None):
    """An SB3 callback that prints a line every ``report_every`` environment steps (steps/s and the
    mean raw score of the last 100 finished games) and saves the agent there into ``checkpoint_dir``.

    With constant learning rate and clip range (what :func:`train_teacher` uses), the checkpoint at
    step ``n`` is the agent that ``teacher_steps: n`` trains, so a long run can be cut short."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Progress(BaseCallback):
        def _on_training_start(self) -> None:
            self.start, self.next = time.perf_counter(), report_every

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next:
                self.next += report_every
                scores = [info["r"] for info in self.model.ep_info_buffer]
                mean = f"{sum(scores) / len(scores):.2f} over {len(scores)} games" if scores else "no game finished"
                rate = self.num_timesteps / (time.perf_counter() - self.start)
                if stream is not None:
                    print(f"teacher: {self.num_timesteps} env steps, {rate:.0f} steps/s, mean score {mean}",
                          file=stream, flush=True)  # fmt: skip
                if checkpoint_dir is not None:
                    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
                    self.model.save(str(Path(checkpoint_dir) / f"agent_{self.num_timesteps}"))
            return True

    return Progress()


def train_teacher(
    game: str,
    algo: str,
    steps: int,
    seed: int,
    n_envs: int = 8,
    ent_coef: float = 0.01,
    device: str = "cpu",
    progress: bool | TextIO = False,
    report_every: int = 10_000,
    checkpoint_dir: str | Path | None = None,
):
    """Train an SB3 A2C or PPO agent on ``game`` for ``steps`` environment steps (the RL Zoo's
    Atari hyper-parameters with constant learning rate and clip range, ``ent_coef`` aside).

    ``progress``: a stream (or ``True`` for stderr) that gets a line every ``report_every`` steps;
    ``checkpoint_dir``: where the agent is saved at those steps too. Returns the SB3 model."""
    check_game(game)
    if algo not in ALGOS:
        raise ValueError(f"teacher algo must be one of {ALGOS}, got {algo!r}")
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    env = make_env(game, seed, n_envs=n_envs)
    if algo == "ppo":
        model = PPO(
            "CnnPolicy", env, n_steps=128, n_epochs=4, batch_size=256, learning_rate=2.5e-4, clip_range=0.1,
            vf_coef=0.5, ent_coef=ent_coef, seed=seed, device=device, verbose=0,
        )  # fmt: skip
    else:
        model = A2C(
            "CnnPolicy", env, vf_coef=0.25, ent_coef=ent_coef, seed=seed, device=device, verbose=0,
            policy_kwargs={"optimizer_class": RMSpropTFLike, "optimizer_kwargs": {"eps": 1e-5}},
        )  # fmt: skip
    stream = None if progress is False else (sys.stderr if progress is True else progress)
    model.learn(total_timesteps=steps, callback=_progress_callback(report_every, checkpoint_dir, stream))
    env.close()
    return model


# Pickled schedules in old RL Zoo zips do not unpickle across SB3 versions; they are not needed
# for inference, so replace them (the RL Zoo's own enjoy script does the same).
_CUSTOM_OBJECTS = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}


def load_agent(path: str | Path, algo: str, device: str = "cpu"):
    """Load an SB3 agent zip (ours or the RL Zoo's) for inference."""
    if algo not in ALGOS:
        raise ValueError(f"teacher algo must be one of {ALGOS}, got {algo!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no agent at {path}")
    from stable_baselines3 import A2C, PPO

    return {"a2c": A2C, "ppo": PPO}[algo].load(str(path), device=device, custom_objects=_CUSTOM_OBJECTS)


def hub_zip_name(game: str, algo: str = "a2c") -> str:
    """The RL Zoo's file name for ``game``'s agent, e.g. ``a2c-BreakoutNoFrameskip-v4.zip``."""
    return f"{algo}-{check_game(game)}.zip"


def download_hub_agent(game: str, algo: str = "a2c", repo_id: str | None = None, cache_dir: str | None = None) -> Path:
    """Fetch the RL Zoo's agent for ``game`` from the Hugging Face hub; returns the zip's path.

    Needs internet and ``pip install huggingface_sb3``; fails with a message saying so.
    """
    env_id = check_game(game)
    repo_id = repo_id or f"sb3/{algo}-{env_id}"
    try:
        from huggingface_sb3 import load_from_hub
    except ImportError as err:
        raise ImportError(
            "teacher source 'hub' needs huggingface_sb3: `pip install huggingface_sb3==3.0`, then "
            f"re-run; or download {repo_id}/{algo}-{env_id}.zip from https://huggingface.co/{repo_id} "
            "into distillation.teacher_dir"
        ) from err
    try:
        return Path(load_from_hub(repo_id=repo_id, filename=f"{algo}-{env_id}.zip"))
    except Exception as err:  # network errors come in many types; say what to fetch
        raise RuntimeError(
            f"could not download the teacher {repo_id} ({err}). Offline? Download "
            f"https://huggingface.co/{repo_id}/resolve/main/{algo}-{env_id}.zip on a machine with internet "
            "into distillation.teacher_dir, or use distillation.teacher_source: train"
        ) from err


def check_action_space(agent: Any, game: str) -> int:
    """The number of actions, after checking that ``agent`` plays ``game``'s action set."""
    env = make_env(game, seed=0)
    try:
        n_game = int(env.action_space.n)
    finally:
        env.close()
    n_agent = int(agent.action_space.n)
    if n_agent != n_game:
        raise ValueError(f"the teacher has {n_agent} actions but {game} has {n_game}: it was trained on another game")
    return n_game


def policy_entropy_ratio(log_probs: Tensor) -> Tensor:
    """Entropy of each policy relative to the uniform one, ``H(π(s)) / log|A|``: (B, A) -> (B,)."""
    n_actions = log_probs.shape[-1]
    return -(log_probs.exp() * log_probs).sum(-1) / math.log(n_actions)


def as_model_input(obs: Tensor | Any) -> Tensor:
    """``(B, 84, 84, 4)`` uint8 from the env -> ``(B, 4, 84, 84)`` float in [0, 1]."""
    obs = torch.as_tensor(obs)
    return (obs.permute(0, 3, 1, 2).float() / 255.0).contiguous(memory_format=torch.channels_last)
