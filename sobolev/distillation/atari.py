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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GAMES = {
    "pong": "PongNoFrameskip-v4",
    "breakout": "BreakoutNoFrameskip-v4",
    "space_invaders": "SpaceInvadersNoFrameskip-v4",
}
# The RL Zoo's public A2C agents (A2C is A3C's synchronous twin, with the same NatureCNN).
HUB_REPOS = {game: f"sb3/a2c-{env_id}" for game, env_id in GAMES.items()}
ALGOS = ("a2c", "ppo")
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


class PolicyNet(nn.Module):
    """The actor of an SB3 actor-critic CNN policy as a plain differentiable function.

    ``forward(s)``: ``s`` is ``(B, 4, 84, 84)`` float in [0, 1] (uint8 frames / 255, what SB3
    feeds its NatureCNN); returns log-probabilities ``(B, n_actions)``. The input gradient of
    the teacher is taken with respect to this ``s``. ``temperature`` < 1 sharpens the policy
    (``softmax(logits / temperature)``); 1 is the agent as trained.
    """

    def __init__(self, sb3_policy: Any, temperature: float = 1.0):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.features = sb3_policy.pi_features_extractor
        self.actor = sb3_policy.mlp_extractor.policy_net
        self.head = sb3_policy.action_net
        self.n_actions = int(self.head.out_features)

    def forward(self, s: Tensor) -> Tensor:
        return F.log_softmax(self.head(self.actor(self.features(s))) / self.temperature, dim=-1)


def train_teacher(
    game: str,
    algo: str,
    steps: int,
    seed: int,
    n_envs: int = 8,
    ent_coef: float = 0.01,
    device: str = "cpu",
    progress: bool = False,
):
    """Train an SB3 A2C or PPO agent on ``game`` for ``steps`` environment steps (the RL Zoo's
    Atari hyper-parameters, ``ent_coef`` aside). Returns the SB3 model."""
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
    model.learn(total_timesteps=steps, progress_bar=progress)
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
    return obs.permute(0, 3, 1, 2).float() / 255.0
