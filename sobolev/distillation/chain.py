"""Section 4.2's chain per game, one DVC stage each (``python -m sobolev.pipeline run STEP GAME``).

* ``teacher``: train an SB3 agent here (``teacher_source: train``) or take the RL Zoo's
  (``hub``) and pin its policy -> ``teacher.pt`` (float16 weights, a few MB, committed to git) and
  ``teacher_training.json``. The DVC stage is frozen: ``dvc repro`` starts from the pinned teachers,
  so every clone distils the same players; retrain with this command, then ``dvc commit s42-teacher@GAME``;
* ``record``:  play ``states`` states with it -> ``recording.pt`` (single frames, episode
  boundaries, the teacher's log-probabilities) and ``teacher.json`` (return beside random play and
  the RL Zoo's, entropy);
* ``distill``: run both methods at every point of the same grid, every seed, at the tuning fraction
  (the tuning and the equal-learning-rate control at once), choose each method's point on validation
  episodes, then train the other fractions at the chosen points, every run until its validation KL
  stops improving -> ``runs.csv`` (one row per run, metrics at the selected checkpoint),
  ``curves.csv``, ``summary.json`` and ``students.pt`` (the chosen students' log-probabilities, for
  Section 5.4).

Each step reads its inputs from ``src`` (the game's folder, ``results/distillation/games/<game>``)
and writes its outputs into ``dst``; the pipeline stages ``dst`` and moves the outputs into the
game's folder only when the step succeeded. :func:`run_chain` runs all three in one folder
(the notebook's ``ci`` scale).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sobolev.common.install import settled
from sobolev.common.params import ParamError
from sobolev.common.paths import RESULTS
from sobolev.common.utils import (
    atomic_save,
    atomic_write_json,
    atomic_write_text,
    pick_device,
    progress_bar,
    set_threads,
)
from sobolev.core.training import NonFiniteLossError
from sobolev.distillation import atari
from sobolev.distillation.atari import RL_ZOO_SCORES, make_env, policy_entropy_ratio
from sobolev.distillation.config import DistillationConfig
from sobolev.distillation.distill import (
    Recording,
    TeacherJacobians,
    agreement,
    distill,
    evaluate,
    predict,
    regular_lrs,
    run_policy,
    split_episodes,
    tune,
)

GAMES_DIR = RESULTS / "distillation" / "games"
RANDOM_PLAY_GAMES = 10


def make_teacher(cfg: DistillationConfig, game: str, src: Path, dst: Path, progress: bool | TextIO = False) -> Path:
    """Write ``dst/teacher.pt`` (the pinned policy, :func:`~sobolev.distillation.atari.save_teacher`)
    and ``dst/teacher_training.json``."""
    dst = Path(dst)
    start = time.perf_counter()
    info = {"game": game, "source": cfg.teacher_source, "algo": cfg.teacher_algo}
    if cfg.teacher_source == "train":
        set_threads(cfg.process_threads)
        model = atari.train_teacher(
            game, cfg.teacher_algo, cfg.teacher_steps, seed=0, n_envs=cfg.teacher_envs, ent_coef=cfg.teacher_ent_coef,
            device=str(pick_device(cfg.device)), progress=progress,
            report_every=max(cfg.teacher_steps // 20, 1),
        )  # fmt: skip
        info |= {"env_steps": cfg.teacher_steps, "envs": cfg.teacher_envs, "ent_coef": cfg.teacher_ent_coef,
                 "threads": torch.get_num_threads()}  # fmt: skip
    else:
        local = Path(cfg.teacher_dir) / atari.hub_zip_name(game, cfg.teacher_algo) if cfg.teacher_dir else None
        agent_zip = local if local is not None else atari.download_hub_agent(game, cfg.teacher_algo)
        model = atari.load_agent(agent_zip, cfg.teacher_algo)
        info |= {"hub_file": agent_zip.name}
    atari.check_action_space(model, game)
    info["seconds"] = time.perf_counter() - start
    out = dst / "teacher.pt"
    atari.save_teacher(atari.TeacherNet.from_sb3(model.policy), out, **info)
    atomic_write_json(dst / "teacher_training.json", info)
    return out


def load_teacher(cfg: DistillationConfig, game: str, src: Path, device: torch.device | str = "cpu"):
    """The pinned teacher ``src/teacher.pt`` at ``teacher_temperature``, frozen, checked to play ``game``."""
    return atari.load_teacher(Path(src) / "teacher.pt", cfg.teacher_temperature, device, game=game)


def random_play(game: str, episodes: int, seed: int) -> list[float]:
    """Raw scores of ``episodes`` whole games played with uniformly random actions (the chance level)."""

    env = make_env(game, seed=seed, for_training=False)
    rng = np.random.default_rng(seed)
    returns: list[float] = []
    env.reset()
    while len(returns) < episodes:
        _, _, _, info = env.step(rng.integers(env.action_space.n, size=1))
        if "episode" in info[0]:
            returns.append(float(info[0]["episode"]["r"]))
    env.close()
    return returns


def record(cfg: DistillationConfig, game: str, src: Path, dst: Path, progress: bool | TextIO = False) -> Path:
    """Write ``dst/recording.pt`` and ``dst/teacher.json`` (returns beside random play and the RL Zoo's
    score, entropy) for ``game``. At ``threads`` threads, like every run that reads it: the worker layout never
    changes the recording."""
    set_threads(cfg.threads)
    teacher = load_teacher(cfg, game, src)
    rec = run_policy(teacher, game, cfg.states, seed=cfg.record_seed, progress=progress)
    out = Path(dst) / "recording.pt"
    rec.save(out)
    ratio = policy_entropy_ratio(rec.log_probs)
    # log_softmax(τ · log π_τ) recovers the agent's own policy from the sharpened one.
    raw_ratio = policy_entropy_ratio(torch.log_softmax(cfg.teacher_temperature * rec.log_probs, -1))
    returns = torch.tensor(rec.returns)
    chance = torch.tensor(random_play(game, RANDOM_PLAY_GAMES, seed=cfg.record_seed))
    stats = {
        "game": game,
        "n_actions": rec.n_actions,
        "states": len(rec),
        "episodes_finished": len(rec.returns),
        "mean_return": float(returns.mean()) if len(returns) else None,
        "std_return": float(returns.std()) if len(rec.returns) > 1 else None,
        "returns": rec.returns,
        "random_returns": chance.tolist(),
        "random_mean_return": float(chance.mean()),
        "random_std_return": float(chance.std()),
        "random_games": len(chance),
        "rl_zoo_a2c_return": RL_ZOO_SCORES["a2c"][game],
        "rl_zoo_ppo_return": RL_ZOO_SCORES["ppo"][game],
        "entropy_ratio_mean": float(ratio.mean()),
        "entropy_ratio_median": float(ratio.median()),
        "temperature": cfg.teacher_temperature,
        "entropy_ratio_at_temperature_1": float(raw_ratio.mean()),
        "max_prob_mean": float(rec.log_probs.exp().max(1).values.mean()),
        "peaked": bool(ratio.mean() <= 0.7),
    }
    atomic_write_json(Path(dst) / "teacher.json", stats)
    return out


def _at(curve: list[dict], iteration: int, which: str) -> dict[str, float]:
    """``{"<set>_kl", "<set>_action_error"}`` of every set evaluated at ``iteration``, prefixed by ``which``."""
    out = {}
    for row in curve:
        if row["iteration"] == iteration:
            out[f"{which}{row['set']}_kl"] = row["kl"]
            out[f"{which}{row['set']}_action_error"] = row["action_error"]
    return out


def _subset(idx: Tensor, n: int) -> Tensor:
    """``n`` of the indices ``idx`` (all when there are fewer), evenly spaced so every episode is represented,
    in order."""
    if len(idx) <= n:
        return idx
    return idx[torch.linspace(0, len(idx) - 1, n).round().long()]


@dataclass(frozen=True)
class Job:
    """One distillation run: a seed of one method at one fraction and one grid point."""

    role: str  # "grid" (the tuning fraction, every grid point) or "final" (the other fractions, chosen points)
    fraction: float
    method: str
    seed: int
    lr: float
    alpha: float


class RunTrainer:
    """Everything a run of one game needs, built once (and sent once to each worker process): the recording, the
    teacher, the episode splits, the teacher's stored Jacobians and the fixed evaluation subsets."""

    def __init__(self, cfg: DistillationConfig, game: str, src: Path, progress: bool | TextIO = False):
        self.cfg, self.game, self.progress = cfg, game, progress
        self.device = pick_device(cfg.device)
        self.rec = Recording.load(Path(src) / "recording.pt").to(self.device)
        self.teacher = load_teacher(cfg, game, src, self.device)
        try:
            self.splits = split_episodes(self.rec.episode.cpu(), cfg.fractions, cfg.val_share, cfg.test_share)
        except ValueError as err:
            raise ParamError(
                f"invalid parameters distillation.states={cfg.states} / fractions / val_share / test_share for "
                f"{game}: {err}"
            ) from err
        start = time.perf_counter()
        largest = self.splits.train[max(cfg.fractions)]  # every fraction's training states are its first states
        stored = cfg.teacher_gradients == "stored"
        self.jacobians = TeacherJacobians(self.teacher, self.rec, largest, progress=progress) if stored else None
        # The balanced arm's scale, once per game, from the states every fraction trains on (the smallest
        # fraction's are the first states of every larger one's): no validation or test state enters it.
        # On the fly, 500 of them evenly spread (the paper scale's would need ~A·30 GB stored).
        common = self.splits.train[min(cfg.fractions)]
        if not stored:
            common = _subset(common, 500)
        scale_from = self.jacobians if stored else TeacherJacobians(self.teacher, self.rec, common)
        self.balance_scale, self.balance_states = scale_from.projection_scale(common), len(common)
        self.jacobian_seconds = time.perf_counter() - start
        # The same fixed subset of training states for every run of a fraction: the train-KL curve.
        order = torch.randperm(len(largest), generator=torch.Generator().manual_seed(0))
        self.shown = {f: idx[order[order < len(idx)][: cfg.eval_train_states]] for f, idx in self.splits.train.items()}
        # Curves (and early stopping) on fixed subsets of the validation and test episodes' states; the selected
        # checkpoint is then measured on every state. Evaluating ~6 000 states every eval_every iterations cost
        # about as much as the regular runs' training itself.
        self.sets = {name: _subset(idx, cfg.eval_states) for name, idx in (("val", self.splits.val),
                                                                         ("test", self.splits.test))}  # fmt: skip

    def share_memory(self) -> RunTrainer:
        """Move the large tensors to shared memory, so worker processes map them instead of copying them."""
        self.rec.share_memory_()
        if self.jacobians is not None:
            self.jacobians.jacobians.share_memory_()
        return self

    def weight(self, job: Job) -> float:
        """The weight of the raw Sobolev term in ``job``'s loss: its α, divided by the teacher's gradient scale
        in the balanced arm (so that there its α weighs the relative gradient error)."""
        return job.alpha / self.balance_scale if job.method == "balanced" else job.alpha

    def train(self, job: Job) -> dict:
        """Train ``job``: ``{"row"}`` (its runs.csv row), ``{"curve"}`` (its curves.csv rows) and ``{"kept"}`` (its
        log-probabilities on its training and test states, for students.pt). A diverged grid run returns a row
        with a NaN validation KL (it loses the tuning); a diverged final run raises."""
        cfg, rec, splits, device = self.cfg, self.rec, self.splits, self.device
        key = {"game": self.game, **asdict(job)}
        desc = f"{self.game} {job.role} {job.fraction:g} {job.method} lr={job.lr:.0e} α={job.alpha:g} seed {job.seed}"
        try:
            d = distill(
                rec, self.teacher, splits.train[job.fraction], {"train": self.shown[job.fraction], **self.sets},
                job.lr, self.weight(job), cfg.max_iterations, job.seed, cfg.batch_size, cfg.n_projections,
                cfg.eval_every, cfg.patience, self.jacobians, self.progress, desc,
            )  # fmt: skip
        except NonFiniteLossError as err:
            if job.role != "grid":
                raise
            print(f"{err} This grid point loses.", file=sys.stderr)  # a diverged grid run loses (NaN)
            return {"row": {**key, "val_kl": math.nan}, "curve": [], "kept": None}
        test_log_probs = predict(d.student, rec, splits.test.to(device))  # kept for students.pt, scored once
        measured = {"val": evaluate(d.student, rec, splits.val.to(device)),
                    "test": agreement(test_log_probs, rec.log_probs[splits.test.to(device)].cpu())}  # fmt: skip
        whole = {f"{name}_{k}": v for name, scores in measured.items() for k, v in scores.items()}
        row = {
            **key, "best_iteration": d.best_iteration, "stopped_at": d.stopped_at, "stopped_early": d.early,
            "seconds": d.seconds, **_at(d.curve, d.best_iteration, ""), **whole, **_at(d.curve, d.stopped_at, "end_"),
        }  # fmt: skip
        train_idx = splits.train[job.fraction]
        kept = {
            "fraction": float(job.fraction), "method": job.method, "seed": job.seed, "train_idx": train_idx,
            "test_idx": splits.test, "train": predict(d.student, rec, train_idx.to(device)),
            "test": test_log_probs,
        }  # fmt: skip
        return {"row": row, "curve": [{**key, **r} for r in d.curve], "kept": kept}


_WORKER: RunTrainer | None = None


def _start_worker(trainer: RunTrainer) -> None:
    global _WORKER
    set_threads(trainer.cfg.threads)
    trainer.progress = False  # one progress bar, the parent's, over runs
    _WORKER = trainer


def _train_in_worker(job: Job) -> dict:
    return _WORKER.train(job)


def distill_game(cfg: DistillationConfig, game: str, src: Path, dst: Path, progress: bool | TextIO = False) -> Path:
    """Tune on the grid, then distill the other fractions, every method × seed until validation stops improving.

    The tuning grid *is* the equal-learning-rate control: at ``tune_fraction`` every grid point runs for every seed
    (role ``grid``), each method's point with the lowest median validation KL is chosen, and its runs are that
    fraction's final students; the other fractions train at the chosen points (role ``final``). So both methods
    are seen at every learning rate of the grid, paired by seed. With ``workers > 1`` the runs are spread over that
    many processes (spawned, ``threads`` threads each; the recording and the stored Jacobians in shared memory); a
    run's numbers do not depend on which process trains it. Writes to ``dst``:

    * ``runs.csv``: one row per run (role, ``chosen``, fraction, method, seed, lr, α, selected and last iteration,
      whether it stopped early) with val/test KL and action error at the selected checkpoint on every validation
      and test state (``test_kl`` ...), the train-subset KL there (``train_kl``) and the curve subsets' values at
      the last evaluation (``end_test_kl`` ...);
    * ``curves.csv``: every evaluation of every run (sets ``train``, ``val``, ``test``: ``eval_train_states`` and
      ``eval_states`` fixed states of each, spread over its episodes; early stopping reads the ``val`` curve);
    * ``summary.json``: the chosen hyper-parameters, split sizes, timings;
    * ``students.pt``: the recorded teacher's log-probabilities ``(T, A)`` and, per chosen student, its
      training and test state indices and its log-probabilities on them.
    """

    # The teacher's Jacobians (and the balance scale) at the runs' own thread count, whatever the worker layout:
    # every run reads them, and CPU results depend on threads (one float16 rounding flipped by a second thread
    # changed a run's train KL by 4e-3). Stored, they cost ~1% of the chain's time at one thread.
    set_threads(cfg.threads)
    trainer = RunTrainer(cfg, game, src, progress if cfg.workers == 1 else False)
    timings: dict[str, float] = {"teacher_jacobians": trainer.jacobian_seconds}
    pool = None
    if cfg.workers > 1:  # spawn: fork after torch has started threads can hang
        pool = ProcessPoolExecutor(cfg.workers, multiprocessing.get_context("spawn"), _start_worker,
                                   (trainer.share_memory(),))  # fmt: skip
    done: dict[Job, dict] = {}

    def train_all(jobs: list[Job]) -> None:
        """Train the jobs not done yet (Sobolev's longer runs first, for packing over workers)."""
        todo = sorted((j for j in dict.fromkeys(jobs) if j not in done), key=lambda j: j.method == "regular")
        if not todo:
            return
        if pool is None:
            done.update((j, trainer.train(j)) for j in todo)
            return
        bar = progress_bar(range(len(todo)), f"distillation: {game}, {len(todo)} runs on {cfg.workers} workers",
                           progress)  # fmt: skip
        futures = {pool.submit(_train_in_worker, j): j for j in todo}
        for future in futures:
            done[futures[future]] = future.result()
            bar.update()
        bar.close()

    runs: list[dict] = []
    curves: list[dict] = []
    kept: dict[tuple, dict] = {}

    def record_runs(jobs: list[Job]) -> list[float]:
        """The jobs' runs, in the order asked for (the serial order, whatever order they trained in)."""
        train_all(jobs)
        for j in jobs:
            out = done[j]
            runs.append(out["row"])
            curves.extend(out["curve"])
            if out["kept"] is not None:
                kept[(j.fraction, j.method, j.seed, j.lr, j.alpha)] = out["kept"]
        return [done[j]["row"]["val_kl"] for j in jobs]

    def grid_jobs(method: str, lr: float, alpha: float) -> list[Job]:
        return [Job("grid", cfg.tune_fraction, method, seed, lr, alpha) for seed in range(cfg.seeds)]

    def grid_point(method: str, lr: float, alpha: float) -> float:
        """Every seed at the tuning fraction; the median validation KL (NaN if any seed diverged: it loses)."""
        scores = record_runs(grid_jobs(method, lr, alpha))
        return float(np.median(scores)) if all(math.isfinite(v) for v in scores) else math.nan

    def final_jobs(chosen: dict[str, dict[str, float]]) -> list[Job]:
        return [Job("final", fraction, method, seed, hp["lr"], hp["alpha"])
                for fraction in cfg.fractions if fraction != cfg.tune_fraction
                for method, hp in chosen.items() for seed in range(cfg.seeds)]  # fmt: skip

    try:
        start = time.perf_counter()
        # The grid points tune() will ask for whatever their scores, trained in one batch (the rest as it asks).
        arms = cfg.arms
        regular_grid = regular_lrs(cfg.lrs, arms)
        first = [job for lr in regular_grid for job in grid_jobs("regular", lr, 0.0)]
        if len(cfg.lrs) == 1:  # one lr: every arm's whole α grid is known before any score
            first += [job for arm, alphas in arms.items() for a in alphas for job in grid_jobs(arm, cfg.lrs[0], a)]
            # An arm with a single point (regular too) can only be chosen there, so its other fractions' runs
            # join the batch (fewer idle workers at its end).
            lr = cfg.lrs[0]
            single = {arm: {"lr": lr, "alpha": alphas[0]} for arm, alphas in arms.items() if len(alphas) == 1}
            if len(regular_grid) == 1:
                single["regular"] = {"lr": regular_grid[0], "alpha": 0.0}
            first += final_jobs(single)
        else:
            first += [job for arm, alphas in arms.items() for lr in cfg.lrs for job in grid_jobs(arm, lr, alphas[0])]
        train_all(first)
        chosen = tune(grid_point, cfg.lrs, arms)
        record_runs(final_jobs(chosen))
        timings["runs"] = time.perf_counter() - start
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    runs_df = pd.DataFrame(runs)
    hp = runs_df.method.map(lambda m: (chosen[m]["lr"], chosen[m]["alpha"]))
    runs_df["chosen"] = [(r.lr, r.alpha) == h for r, h in zip(runs_df.itertuples(), hp, strict=True)]
    summary = {
        "game": game,
        "chosen": chosen,
        "budget_runs": {m: int(((runs_df.role == "grid") & (runs_df.method == m)).sum()) for m in chosen},
        "tune_fraction": cfg.tune_fraction,
        "balance_scale": trainer.balance_scale,
        "balance_states": trainer.balance_states,
        "splits": trainer.splits.sizes(),
        "teacher_gradients": cfg.teacher_gradients,
        "seconds": timings,
        "threads": cfg.threads or torch.get_num_threads(),
        "workers": cfg.workers,
    }
    students = [kept[(r.fraction, r.method, r.seed, r.lr, r.alpha)] for r in runs_df[runs_df.chosen].itertuples()]
    gdir = Path(dst)
    atomic_write_text(gdir / "runs.csv", runs_df.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(gdir / "curves.csv", pd.DataFrame(curves).to_csv(index=False, float_format="%.6g"))
    atomic_write_json(gdir / "summary.json", summary)
    # Plain tensors, ints, floats and strings: readable with torch.load(weights_only=True) by any code.
    atomic_save({"game": game, "teacher_log_probs": trainer.rec.log_probs.cpu(), "students": students},
                gdir / "students.pt")  # fmt: skip
    return gdir


STEPS = {"teacher": make_teacher, "record": record, "distill": distill_game}
# What each step writes into its game's folder, declared once: the pipeline installs exactly these.
OUTPUTS = {
    "make_teacher": ("teacher.pt", "teacher_training.json"),
    "record": ("recording.pt", "teacher.json"),
    "distill_game": ("runs.csv", "curves.csv", "summary.json", "students.pt"),
}


def run_chain(cfg: DistillationConfig, folder: str | Path, progress: bool | TextIO = False) -> Path:
    """Every step for every game in ``folder/<game>`` (inputs and outputs together): the
    notebook's ``ci`` scale, where the chain runs inside the notebook."""
    for game in cfg.games:
        where = Path(folder) / game
        where.mkdir(parents=True, exist_ok=True)
        for step in STEPS.values():
            step(cfg, game, where, where, progress)
    return Path(folder)


# --- the chain's results, read back for the report stage ---------------------------------------------
RUN_KEYS = ["game", "role", "fraction", "method", "seed", "lr", "alpha"]  # one run of the chain


def load(results: str | Path, games: list[str]) -> dict:
    """``{"teachers", "runs", "curves": DataFrame, "summaries": {game: dict}}``."""
    results = Path(results)
    for g in games:  # an install a stage left unfinished is finished before anything is read
        settled(results / g)
    missing = [g for g in games if not (results / g / "summary.json").exists()]
    if missing:
        raise FileNotFoundError(f"no distillation results for {missing} in {results}: run `dvc repro` first")
    teachers = pd.DataFrame([json.loads((results / g / "teacher.json").read_text()) for g in games])
    runs = pd.concat([pd.read_csv(results / g / "runs.csv") for g in games], ignore_index=True)
    curves = pd.concat([pd.read_csv(results / g / "curves.csv") for g in games], ignore_index=True)
    summaries = {g: json.loads((results / g / "summary.json").read_text()) for g in games}
    return {"teachers": teachers, "runs": runs, "curves": curves, "summaries": summaries}


def chosen_curves(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The curves of the chosen runs (each method at its chosen point, every fraction and seed)."""
    return curves.merge(runs.loc[runs.chosen, RUN_KEYS], on=RUN_KEYS)


def at_lr(grid: pd.DataFrame, lr: float, alpha: float) -> pd.DataFrame:
    """Both methods' grid runs at ``lr``; Sobolev's at ``alpha`` where it ran more than one α there."""
    at = grid[np.isclose(grid.lr, lr)]
    sob = at[at.method == "sobolev"]
    if sob.alpha.nunique() > 1:
        same = np.isclose(sob.alpha, alpha)
        sob = sob[same] if same.any() else sob[sob.alpha == sob.alpha.min()]
    return pd.concat([at[at.method == "regular"], sob])


@dataclass
class Result:
    """The chain's results for every game of ``cfg`` (:func:`run`).

    Attributes:
        cfg: the section's config.
        teachers: one row per game (``teacher.json``: returns, random play, the RL Zoo's score).
        runs, curves: every run of the chain and its evaluation curve (``runs.csv``, ``curves.csv``).
        summaries: per game, the chosen hyper-parameters, the teacher's gradient scale (``balance_scale``), split
            sizes and timings (``summary.json``).
    """

    cfg: DistillationConfig
    teachers: pd.DataFrame
    runs: pd.DataFrame
    curves: pd.DataFrame
    summaries: dict


def run(cfg: DistillationConfig, progress: bool | TextIO = False, games_dir: str | Path = GAMES_DIR) -> Result:
    """Section 4.2's results: the chain's outputs in ``games_dir`` (what its DVC stages wrote), read
    back. The chain itself runs as stages (:data:`STEPS`); at the
    ``ci`` scale the notebook runs it first with :func:`run_chain` into a temporary folder."""
    data = load(games_dir, cfg.games)
    return Result(cfg, data["teachers"], data["runs"], data["curves"], data["summaries"])
