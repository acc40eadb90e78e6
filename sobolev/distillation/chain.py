"""Section 4.2's chain per game, one DVC stage each (``python -m sobolev.pipeline run STEP GAME``).

* ``teacher``: train an SB3 agent here (``teacher_source: train``) or take the RL Zoo's
  (``hub``) -> ``teacher.zip``, ``teacher_training.json``;
* ``record``:  play ``states`` states with it -> ``recording.pt`` (single frames, episode
  boundaries, the teacher's log-probabilities) and ``teacher.json`` (return, entropy);
* ``distill``: tune each method with an equal budget, then train students for every fraction
  and seed -> ``curves.csv``, ``tuning.csv``, ``summary.json``; with ``long_iterations``, one
  longer run per method -> ``long_curves.csv`` (empty otherwise).

Each step reads its inputs from ``src`` (the game's folder, ``results/distillation/games/<game>``)
and writes its outputs into ``dst``; the pipeline stages ``dst`` and moves the outputs into the
game's folder only when the step succeeded. :func:`run_chain` runs all three in one folder
(the notebook's ``ci`` scale).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TextIO

import torch

from sobolev.common.params import ParamError
from sobolev.common.paths import RESULTS
from sobolev.common.utils import (
    atomic_path,
    atomic_save,
    atomic_write_json,
    atomic_write_text,
    pick_device,
    set_threads,
)
from sobolev.distillation.config import DistillationConfig

GAMES_DIR = RESULTS / "distillation" / "games"
def make_teacher(cfg: DistillationConfig, game: str, src: Path, dst: Path, progress: bool | TextIO = False) -> Path:
    """Write ``dst/teacher.zip`` (an SB3 agent) and ``dst/teacher_training.json``."""
    from sobolev.distillation import atari

    dst = Path(dst)
    out = dst / "teacher.zip"
    start = time.perf_counter()
    if cfg.teacher_source == "train":
        set_threads(cfg.threads)
        model = atari.train_teacher(
            game, cfg.teacher_algo, cfg.teacher_steps, seed=0, n_envs=cfg.teacher_envs,
            ent_coef=cfg.teacher_ent_coef, device=str(pick_device(cfg.device)), progress=bool(progress),
        )  # fmt: skip
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            model.save(f)  # a file object: SB3 would append ".zip" to a path without it
    else:
        local = Path(cfg.teacher_dir) / atari.hub_zip_name(game, cfg.teacher_algo) if cfg.teacher_dir else None
        agent_zip = local if local is not None else atari.download_hub_agent(game, cfg.teacher_algo)
        atari.check_action_space(atari.load_agent(agent_zip, cfg.teacher_algo), game)
        with atomic_path(out) as tmp:
            shutil.copyfile(agent_zip, tmp)
    info = {"source": cfg.teacher_source, "algo": cfg.teacher_algo, "seconds": time.perf_counter() - start}
    if cfg.teacher_source == "train":
        info |= {"env_steps": cfg.teacher_steps, "ent_coef": cfg.teacher_ent_coef}
    atomic_write_json(dst / "teacher_training.json", info)
    return out


def load_teacher(cfg: DistillationConfig, game: str, src: Path, device: torch.device | str = "cpu"):
    """The teacher in ``src/teacher.zip`` as a :class:`~sobolev.distillation.atari.PolicyNet`
    (frozen, eval mode)."""
    from sobolev.distillation import atari

    agent = atari.load_agent(Path(src) / "teacher.zip", cfg.teacher_algo, device=str(device))
    atari.check_action_space(agent, game)
    teacher = atari.PolicyNet(agent.policy, cfg.teacher_temperature).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def record(cfg: DistillationConfig, game: str, src: Path, dst: Path, progress: bool | TextIO = False) -> Path:
    """Write ``dst/recording.pt`` and ``dst/teacher.json`` (mean return, entropy ratio) for ``game``."""
    from sobolev.distillation.atari import policy_entropy_ratio
    from sobolev.distillation.distill import run_policy

    set_threads(cfg.threads)
    teacher = load_teacher(cfg, game, src)
    rec = run_policy(teacher, game, cfg.states, seed=cfg.record_seed, progress=progress)
    out = Path(dst) / "recording.pt"
    rec.save(out)
    ratio = policy_entropy_ratio(rec.log_probs)
    # log_softmax(τ · log π_τ) recovers the agent's own policy from the sharpened one.
    raw_ratio = policy_entropy_ratio(torch.log_softmax(cfg.teacher_temperature * rec.log_probs, -1))
    returns = torch.tensor(rec.returns)
    stats = {
        "game": game,
        "n_actions": rec.n_actions,
        "states": len(rec),
        "episodes_finished": len(rec.returns),
        "mean_return": float(returns.mean()) if len(returns) else None,
        "std_return": float(returns.std()) if len(rec.returns) > 1 else None,
        "returns": rec.returns,
        "entropy_ratio_mean": float(ratio.mean()),
        "entropy_ratio_median": float(ratio.median()),
        "temperature": cfg.teacher_temperature,
        "entropy_ratio_at_temperature_1": float(raw_ratio.mean()),
        "max_prob_mean": float(rec.log_probs.exp().max(1).values.mean()),
        "peaked": bool(ratio.mean() <= 0.7),
    }
    atomic_write_json(Path(dst) / "teacher.json", stats)
    return out


def distill_game(cfg: DistillationConfig, game: str, src: Path, dst: Path, progress: bool | TextIO = False) -> Path:
    """Tune, then distill every fraction × method × seed; writes curves, tuning and summary to ``dst``, and
    ``students.pt``: the recorded teacher's log-probabilities ``(T, A)`` and, per final student (fraction,
    method, seed), its training and test state indices and its log-probabilities on them."""
    import pandas as pd

    from sobolev.distillation.distill import Recording, distill, predict, split_by_episode, tune

    set_threads(cfg.threads)
    device = pick_device(cfg.device)
    rec = Recording.load(Path(src) / "recording.pt").to(device)
    teacher = load_teacher(cfg, game, src, device)
    splits = {f: split_by_episode(rec.episode.cpu(), f) for f in cfg.fractions}

    # Tuning never sees test states: the tuning fraction's training episodes are split again.
    train_idx, _ = splits[cfg.tune_fraction]
    try:
        inner = split_by_episode(rec.episode.cpu()[train_idx], 0.8)
    except ValueError as err:
        raise ParamError(
            f"invalid parameter distillation.tune_fraction={cfg.tune_fraction}: its training part of {game} holds "
            f"one episode ({len(train_idx)} states), so no validation episodes can be split off; "
            "raise states or tune_fraction"
        ) from err
    chosen, tuning_rows = tune(
        rec, teacher, train_idx[inner[0]], train_idx[inner[1]], cfg.lrs, cfg.alphas, cfg.iterations,
        cfg.batch_size, cfg.n_projections, seed=0, progress=progress,
    )  # fmt: skip

    students: list[dict] = []  # every final student's log-probabilities: for Section 5.4's deviation analysis

    def run_one(fraction: float, method: str, seed: int, iterations: int, desc: str, keep: bool = False) -> list[dict]:
        train_idx, test_idx = splits[fraction]
        # The same fixed subset of training states for every run: the train-KL curve.
        shown = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(0))]
        hp = chosen[method]
        student, curve = distill(
            rec, teacher, train_idx, {"train": shown[: cfg.eval_train_states], "test": test_idx}, hp["lr"],
            hp["alpha"], iterations, seed, cfg.batch_size, cfg.n_projections, cfg.eval_every, progress, desc=desc,
        )  # fmt: skip
        if keep:
            students.append({
                "fraction": float(fraction), "method": method, "seed": seed, "train_idx": train_idx,
                "test_idx": test_idx, "train": predict(student, rec, train_idx.to(device)),
                "test": predict(student, rec, test_idx.to(device)),
            })  # fmt: skip
        return [{"game": game, "fraction": fraction, "method": method, "seed": seed, **row} for row in curve]

    start = time.perf_counter()
    curves = [
        row
        for fraction in cfg.fractions
        for method in chosen
        for seed in range(cfg.seeds)
        for row in run_one(fraction, method, seed, cfg.iterations, f"{game} {fraction:g} {method} seed {seed}", True)
    ]
    seconds = time.perf_counter() - start
    # Does either method overfit when trained longer? One longer run each, at the tuning fraction.
    long_curves = []
    for method in chosen if cfg.long_iterations else []:
        desc = f"{game} {cfg.tune_fraction:g} {method} long"
        long_curves += run_one(cfg.tune_fraction, method, 0, cfg.long_iterations, desc)
    curves_df = pd.DataFrame(curves)
    summary = {
        "game": game,
        "chosen": chosen,
        "budget_runs": {m: sum(r["method"] == m for r in tuning_rows) for m in chosen},
        "tune_fraction": cfg.tune_fraction,
        "splits": {str(f): {"train": len(s[0]), "test": len(s[1])} for f, s in splits.items()},
        "seconds_final_runs": seconds,
    }
    gdir = Path(dst)
    atomic_write_text(gdir / "curves.csv", curves_df.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(gdir / "tuning.csv", pd.DataFrame(tuning_rows).to_csv(index=False, float_format="%.6g"))
    long_df = pd.DataFrame(long_curves, columns=curves_df.columns)
    atomic_write_text(gdir / "long_curves.csv", long_df.to_csv(index=False, float_format="%.6g"))
    atomic_write_json(gdir / "summary.json", summary)
    # Plain tensors, ints, floats and strings: readable with torch.load(weights_only=True) by any code.
    atomic_save({"game": game, "teacher_log_probs": rec.log_probs.cpu(), "students": students}, gdir / "students.pt")
    return gdir


STEPS = {"teacher": make_teacher, "record": record, "distill": distill_game}


def run_chain(cfg: DistillationConfig, folder: str | Path, progress: bool | TextIO = False) -> Path:
    """Every step for every game in ``folder/<game>`` (inputs and outputs together): the
    notebook's ``ci`` scale, where the chain runs inside the notebook."""
    for game in cfg.games:
        where = Path(folder) / game
        where.mkdir(parents=True, exist_ok=True)
        for step in STEPS.values():
            step(cfg, game, where, where, progress)
    return Path(folder)
