"""Section 4.2's chain per game, one DVC stage each: ``python -m sobolev.distill_stage STEP GAME``.

* ``teacher``: train an SB3 agent here (``teacher_source: train``) or take the RL Zoo's
  (``hub``) -> ``teacher.zip``;
* ``record``:  play ``states`` states with it -> ``recording.pt`` (single frames, episode
  boundaries, the teacher's log-probabilities) and ``teacher.json`` (return, entropy);
* ``distill``: tune each method with an equal budget, then train students for every fraction
  and seed -> ``curves.csv``, ``tuning.csv``, ``summary.json``; with ``long_iterations``, one
  longer run per method -> ``long_curves.csv`` (empty otherwise).

Everything goes to ``results/distillation/games/<game>/``; every file is written atomically, and each
step checks its parameters and inputs before any work. The notebook reads these outputs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

import torch

from sobolev.config import DistillationConfig, ParamError, load_config
from sobolev.utils import atomic_path, atomic_write_json, atomic_write_text, pick_device, set_threads

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results/distillation/games"
STEPS = ("teacher", "record", "distill")


def game_dir(out: Path, game: str) -> Path:
    return Path(out) / game


def make_teacher(cfg: DistillationConfig, game: str, out: Path, progress: bool | TextIO = False) -> Path:
    """Write ``<out>/<game>/teacher.zip`` (an SB3 agent) and ``teacher_training.json``."""
    from sobolev import atari

    dst = game_dir(out, game) / "teacher.zip"
    start = time.perf_counter()
    if cfg.teacher_source == "train":
        set_threads(cfg.threads)
        model = atari.train_teacher(
            game, cfg.teacher_algo, cfg.teacher_steps, seed=0, n_envs=cfg.teacher_envs,
            ent_coef=cfg.teacher_ent_coef, device=str(pick_device(cfg.device)), progress=bool(progress),
        )  # fmt: skip
        with atomic_path(dst) as tmp, open(tmp, "wb") as f:
            model.save(f)  # a file object: SB3 would append ".zip" to a path without it
    else:
        local = Path(cfg.teacher_dir) / atari.hub_zip_name(game, cfg.teacher_algo) if cfg.teacher_dir else None
        src = local if local is not None else atari.download_hub_agent(game, cfg.teacher_algo)
        atari.check_action_space(atari.load_agent(src, cfg.teacher_algo), game)
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    info = {"source": cfg.teacher_source, "algo": cfg.teacher_algo, "seconds": time.perf_counter() - start}
    if cfg.teacher_source == "train":
        info |= {"env_steps": cfg.teacher_steps, "ent_coef": cfg.teacher_ent_coef}
    atomic_write_json(game_dir(out, game) / "teacher_training.json", info)
    return dst


def load_teacher(cfg: DistillationConfig, game: str, out: Path, device: torch.device | str = "cpu"):
    """The recorded teacher as a :class:`sobolev.atari.PolicyNet` (frozen, eval mode)."""
    from sobolev import atari

    agent = atari.load_agent(game_dir(out, game) / "teacher.zip", cfg.teacher_algo, device=str(device))
    atari.check_action_space(agent, game)
    teacher = atari.PolicyNet(agent.policy, cfg.teacher_temperature).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def record(cfg: DistillationConfig, game: str, out: Path, progress: bool | TextIO = False) -> Path:
    """Write ``recording.pt`` and ``teacher.json`` (mean return, entropy ratio) for ``game``."""
    from sobolev.atari import policy_entropy_ratio
    from sobolev.distill import run_policy

    set_threads(cfg.threads)
    teacher = load_teacher(cfg, game, out)
    rec = run_policy(teacher, game, cfg.states, seed=cfg.record_seed, progress=progress)
    dst = game_dir(out, game) / "recording.pt"
    rec.save(dst)
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
    atomic_write_json(game_dir(out, game) / "teacher.json", stats)
    return dst


def distill_game(cfg: DistillationConfig, game: str, out: Path, progress: bool | TextIO = False) -> dict:
    """Tune, then distill every fraction × method × seed; writes curves, tuning and summary."""
    import pandas as pd

    from sobolev.distill import Recording, distill, split_by_episode, tune

    set_threads(cfg.threads)
    device = pick_device(cfg.device)
    rec = Recording.load(game_dir(out, game) / "recording.pt").to(device)
    teacher = load_teacher(cfg, game, out, device)
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

    def run_one(fraction: float, method: str, seed: int, iterations: int, desc: str) -> list[dict]:
        train_idx, test_idx = splits[fraction]
        # The same fixed subset of training states for every run: the train-KL curve.
        shown = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(0))]
        hp = chosen[method]
        _, curve = distill(
            rec, teacher, train_idx, {"train": shown[: cfg.eval_train_states], "test": test_idx}, hp["lr"],
            hp["alpha"], iterations, seed, cfg.batch_size, cfg.n_projections, cfg.eval_every, progress, desc=desc,
        )  # fmt: skip
        return [{"game": game, "fraction": fraction, "method": method, "seed": seed, **row} for row in curve]

    start = time.perf_counter()
    curves = [
        row
        for fraction in cfg.fractions
        for method in chosen
        for seed in range(cfg.seeds)
        for row in run_one(fraction, method, seed, cfg.iterations, f"{game} {fraction:g} {method} seed {seed}")
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
    gdir = game_dir(out, game)
    atomic_write_text(gdir / "curves.csv", curves_df.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(gdir / "tuning.csv", pd.DataFrame(tuning_rows).to_csv(index=False, float_format="%.6g"))
    long_df = pd.DataFrame(long_curves, columns=curves_df.columns)
    atomic_write_text(gdir / "long_curves.csv", long_df.to_csv(index=False, float_format="%.6g"))
    atomic_write_json(gdir / "summary.json", summary)
    return summary


def run(step: str, game: str, params: Path, out: Path = OUT, progress: bool | TextIO = True) -> Path:
    """Validate the parameters and inputs of ``step`` for ``game``, then run it."""
    if step not in STEPS:
        raise ParamError(f"unknown step {step!r}; allowed: {', '.join(STEPS)}")
    cfg = load_config(params, "distillation")  # its games are valid game names
    if game not in cfg.games:
        raise ParamError(f"game {game!r} is not in distillation.games {cfg.games}")
    cfg.check_inputs()
    needs = {"record": ["teacher.zip"], "distill": ["teacher.zip", "recording.pt"]}.get(step, [])
    for name in needs:
        if not (game_dir(out, game) / name).exists():
            raise FileNotFoundError(f"{game_dir(out, game) / name} is missing: run the earlier stage first (dvc repro)")
    if step == "teacher":
        return make_teacher(cfg, game, out, progress)
    if step == "record":
        return record(cfg, game, out, progress)
    distill_game(cfg, game, out, progress)
    return game_dir(out, game)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", help=f"one of: {', '.join(STEPS)}")
    parser.add_argument("game", help="a game in distillation.games")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--out", type=Path, default=OUT, help="results folder (default: results/distillation/games)")
    args = parser.parse_args(argv)
    try:
        path = run(args.step, args.game, args.params, args.out, progress=sys.__stderr__)
    except (ParamError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.step} {args.game}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
