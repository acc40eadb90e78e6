"""Validated experiment configurations, built from ``params.yaml`` or notebook parameters.

Every check runs before any training starts and names the parameter, the value and what
is allowed. ``params.yaml`` holds one section per stage plus a top-level ``scale`` switch:
``scale: paper`` applies the section's ``paper:`` overrides (meant for a GPU).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import yaml

from sobolev.data import NORMALISATIONS
from sobolev.functions import FUNCTIONS

SCALES = ("default", "paper")


class ParamError(ValueError):
    """An invalid parameter value; the message names the parameter, value and allowed set."""


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ParamError(f"invalid parameter {name}={value!r}: {allowed}")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def positive_int(name: str, v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        _fail(name, v, "must be a positive integer")
    return v


def positive_float(name: str, v: Any) -> float:
    if not _is_number(v) or not v > 0 or v != v or v == float("inf"):
        _fail(name, v, "must be a positive finite number")
    return float(v)


def nonempty_list(name: str, v: Any) -> list:
    if not isinstance(v, list | tuple) or len(v) == 0:
        _fail(name, v, "must be a non-empty list")
    if len(set(map(repr, v))) != len(v):
        _fail(name, v, "must not repeat an entry")
    return list(v)


def choices(name: str, v: Any, allowed: tuple[str, ...]) -> list[str]:
    for item in nonempty_list(name, v):
        if item not in allowed:
            _fail(name, v, f"entry {item!r} is not one of {', '.join(allowed)}")
    return list(v)


def _check_device_threads(device: Any, threads: Any) -> None:
    if device not in ("auto", "cpu") and not str(device).startswith(("cuda", "mps")):
        _fail("device", device, "must be 'auto', 'cpu', 'cuda[:N]' or 'mps'")
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 0:
        _fail("threads", threads, "must be an integer >= 0 (0 keeps torch's default)")


class _Config:
    """Shared by the stage configs: construction from a params section, and back."""

    SECTION: ClassVar[str] = ""

    @classmethod
    def from_dict(cls, values: dict[str, Any], section: str | None = None) -> Self:
        section = section or cls.SECTION
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParamError(
                f"unknown parameter(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
                f"allowed: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_inputs(self) -> None:
        """Check external inputs (data files) before any work; the default has none."""


@dataclass(frozen=True)
class RegressionConfig(_Config):
    """Section 4.1: regression of the seven 2-D functions.

    The grid is ``functions × sizes × {regular, sobolev} × normalisations × lrs × seeds``
    with derivative weight 1 (the paper's equal weights), plus, at ``sweep_sizes`` only,
    Sobolev runs with each of ``sweep_weights``. Regular and Sobolev share the learning-rate
    grid, the step count and the normalisations: the same tuning budget. Models train in
    batched ensembles of at most ``ensemble_size`` (42 was fastest on a 2-core CPU, where
    larger ensembles fall out of cache; a GPU wants hundreds). ``long_steps > 0`` adds a
    second, longer run of the faithful setting at the largest size only (see
    :func:`sobolev.regression.longer_training`).
    """

    SECTION: ClassVar[str] = "regression"

    functions: list[str] = field(default_factory=lambda: sorted(FUNCTIONS))
    sizes: list[int] = field(default_factory=lambda: [20, 100, 10000])
    seeds: int = 3
    lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2])
    steps: int = 2000
    batch_size: int = 100
    hidden: int = 256
    normalisations: list[str] = field(default_factory=lambda: ["raw", "standard"])
    sweep_weights: list[float] = field(default_factory=lambda: [0.01, 0.1, 10.0])
    sweep_sizes: list[int] = field(default_factory=lambda: [100])
    n_test: int = 10000
    n_val: int = 1000
    ensemble_size: int = 42
    long_steps: int = 0
    device: str = "auto"
    threads: int = 0
    log_every: int = 50

    def __post_init__(self) -> None:
        choices("functions", self.functions, tuple(sorted(FUNCTIONS)))
        for s in nonempty_list("sizes", self.sizes):
            positive_int("sizes[]", s)
        for name in ("seeds", "steps", "batch_size", "hidden", "n_test", "n_val", "ensemble_size", "log_every"):
            positive_int(name, getattr(self, name))
        for lr in nonempty_list("lrs", self.lrs):
            positive_float("lrs[]", lr)
        choices("normalisations", self.normalisations, NORMALISATIONS)
        if not isinstance(self.sweep_weights, list | tuple):
            _fail("sweep_weights", self.sweep_weights, "must be a list (may be empty)")
        for w in self.sweep_weights:
            positive_float("sweep_weights[]", w)
        if 1.0 in [float(w) for w in self.sweep_weights]:
            _fail("sweep_weights", self.sweep_weights, "must not contain 1.0 (always run)")
        if not isinstance(self.sweep_sizes, list | tuple):
            _fail("sweep_sizes", self.sweep_sizes, "must be a list (may be empty)")
        for s in self.sweep_sizes:
            if s not in self.sizes:
                _fail("sweep_sizes", self.sweep_sizes, f"entry {s!r} must be one of sizes {self.sizes}")
        if self.device not in ("auto", "cpu") and not str(self.device).startswith(("cuda", "mps")):
            _fail("device", self.device, "must be 'auto', 'cpu', 'cuda[:N]' or 'mps'")
        if not isinstance(self.long_steps, int) or isinstance(self.long_steps, bool) or self.long_steps < 0:
            _fail("long_steps", self.long_steps, "must be an integer >= 0 (0 skips the longer run)")
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 0:
            _fail("threads", self.threads, "must be an integer >= 0 (0 keeps torch's default)")


@dataclass(frozen=True)
class TheoryConfig(_Config):
    """Section 3: the theory notebook (exact computations plus two small trainings)."""

    SECTION: ClassVar[str] = "theory"

    prop1_points: int = 20
    prop1_dims: list[int] = field(default_factory=lambda: [1, 2, 5])
    poly_max_degree: int = 10
    thm2_steps: int = 3000
    thm2_hidden: int = 64
    meshes: list[list[int]] = field(default_factory=lambda: [[1, 8], [2, 4], [4, 2]])
    identification_seeds: int = 10
    net_sizes: list[int] = field(default_factory=lambda: [8, 32, 128, 512])
    net_seeds: int = 3
    net_lrs: list[float] = field(default_factory=lambda: [1e-3, 1e-2])
    net_steps: int = 2000
    net_hidden: int = 64
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        for name in ("prop1_points", "poly_max_degree", "thm2_steps", "thm2_hidden", "identification_seeds"):
            positive_int(name, getattr(self, name))
        for name in ("net_seeds", "net_steps", "net_hidden"):
            positive_int(name, getattr(self, name))
        for d in nonempty_list("prop1_dims", self.prop1_dims):
            positive_int("prop1_dims[]", d)
        for item in nonempty_list("meshes", self.meshes):
            if not (isinstance(item, list | tuple) and len(item) == 2):
                _fail("meshes", self.meshes, "each entry must be [dimension d, cells per axis m]")
            d, m = positive_int("meshes[][0] (dimension)", item[0]), positive_int("meshes[][1] (cells)", item[1])
            if d > 6 or m**d * math.factorial(d) > 5000:
                _fail("meshes", self.meshes, f"entry {item!r}: need d <= 6 and m^d d! <= 5000 simplices")
        for n in nonempty_list("net_sizes", self.net_sizes):
            positive_int("net_sizes[]", n)
        for lr in nonempty_list("net_lrs", self.net_lrs):
            positive_float("net_lrs[]", lr)
        _check_device_threads(self.device, self.threads)


@dataclass(frozen=True)
class SyntheticConfig(_Config):
    """Section 4.3: synthetic gradients from Sobolev-trained critics (Table 1)."""

    SECTION: ClassVar[str] = "synthetic"

    dataset: str = "digits"
    variants: list[str] = field(
        default_factory=lambda: ["no_backprop", "direct", "small_model", "critic", "sobolev", "backprop"]
    )
    seeds: int = 3
    steps: int = 2000
    batch_size: int = 64
    lr: float = 0.05
    milestones: list[int] = field(default_factory=lambda: [1000, 1500])
    weight_decay: float = 1e-4
    sg_lr: float = 1e-4
    width_scale: float = 0.25
    log_every: int = 100
    cifar_path: str = "data/cifar-10-python.tar.gz"
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        from sobolev.synthetic import VARIANTS

        if self.dataset not in ("digits", "cifar10"):
            _fail("dataset", self.dataset, "must be 'digits' (offline default) or 'cifar10'")
        choices("variants", self.variants, VARIANTS)
        for name in ("seeds", "steps", "batch_size", "log_every"):
            positive_int(name, getattr(self, name))
        for name in ("lr", "sg_lr", "width_scale"):
            positive_float(name, getattr(self, name))
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            _fail("weight_decay", self.weight_decay, "must be a number >= 0")
        if not isinstance(self.milestones, list | tuple) or any(
            not isinstance(m, int) or not 0 < m < self.steps for m in self.milestones
        ):
            _fail("milestones", self.milestones, f"must be a list of update counts within 1..{self.steps - 1}")
        _check_device_threads(self.device, self.threads)

    def check_inputs(self) -> None:
        """CIFAR-10 must be present and intact (raises with how to fetch it); digits ship offline."""
        if self.dataset == "cifar10":
            from sobolev.cifar import verify_archive
            from sobolev.sg_experiment import resolve_data_path

            verify_archive(resolve_data_path(self.cifar_path))


@dataclass(frozen=True)
class DistillationConfig(_Config):
    """Section 4.2: Sobolev distillation of Atari policies (Figure 4).

    The chain per game is teacher -> record -> distill (``python -m sobolev.distill_stage``),
    then the notebook reads every game's outputs. ``games`` drives DVC's ``foreach`` and is
    read from the top of the section, so the ``paper:`` block may not change it.
    """

    SECTION: ClassVar[str] = "distillation"

    games: list[str] = field(default_factory=lambda: ["breakout"])
    teacher_source: str = "train"  # train: SB3 here, under a step budget; hub: the RL Zoo's A2C agents
    teacher_algo: str = "ppo"
    teacher_steps: int = 100_000
    teacher_envs: int = 8
    teacher_ent_coef: float = 0.0
    teacher_temperature: float = 1.0  # < 1 sharpens the teacher's softmax (reported beside the raw entropy)
    teacher_dir: str = ""  # hub only: a folder of downloaded RL Zoo zips (a2c-<EnvId>.zip) instead of fetching
    states: int = 10_000  # recorded states per game (the paper: 100 000)
    record_seed: int = 1
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.5])
    tune_fraction: float = 0.1
    seeds: int = 2
    iterations: int = 300
    long_iterations: int = 0  # > 0: one longer run per method at tune_fraction (seed 0), for overfitting
    batch_size: int = 200
    lrs: list[float] = field(default_factory=lambda: [1e-3, 1e-4])
    alphas: list[float] = field(default_factory=lambda: [1.0, 10.0])
    n_projections: int = 1
    eval_every: int = 50
    eval_train_states: int = 2000
    device: str = "auto"
    threads: int = 0

    def __post_init__(self) -> None:
        from sobolev.atari import ALGOS, GAMES

        choices("games", self.games, tuple(GAMES))
        if self.teacher_source not in ("train", "hub"):
            _fail("teacher_source", self.teacher_source, "must be 'train' (SB3 here) or 'hub' (the RL Zoo's agents)")
        if self.teacher_algo not in ALGOS:
            _fail("teacher_algo", self.teacher_algo, f"must be one of {', '.join(ALGOS)}")
        if self.teacher_source == "hub" and self.teacher_algo != "a2c":
            _fail("teacher_algo", self.teacher_algo, "the hub teachers are the RL Zoo's A2C agents: use 'a2c'")
        for name in ("teacher_steps", "teacher_envs", "states", "seeds", "iterations", "batch_size", "n_projections",
                     "eval_every", "eval_train_states"):  # fmt: skip
            positive_int(name, getattr(self, name))
        if (
            not isinstance(self.long_iterations, int)
            or isinstance(self.long_iterations, bool)
            or not (self.long_iterations == 0 or self.long_iterations > self.iterations)
        ):
            allowed = f"must be 0 (skip) or an integer > iterations ({self.iterations})"
            _fail("long_iterations", self.long_iterations, allowed)
        if not isinstance(self.record_seed, int) or isinstance(self.record_seed, bool) or self.record_seed < 0:
            _fail("record_seed", self.record_seed, "must be an integer >= 0")
        positive_float("teacher_temperature", self.teacher_temperature)
        if not _is_number(self.teacher_ent_coef) or self.teacher_ent_coef < 0:
            _fail("teacher_ent_coef", self.teacher_ent_coef, "must be a number >= 0")
        for f in nonempty_list("fractions", self.fractions):
            if not _is_number(f) or not 0 < f < 1:
                _fail("fractions", self.fractions, f"entry {f!r} must be a fraction in (0, 1)")
        if self.tune_fraction not in self.fractions:
            _fail("tune_fraction", self.tune_fraction, f"must be one of fractions {self.fractions}")
        for lr in nonempty_list("lrs", self.lrs):
            positive_float("lrs[]", lr)
        for a in nonempty_list("alphas", self.alphas):
            positive_float("alphas[]", a)
        if len(self.alphas) > len(self.lrs):
            _fail(
                "alphas", self.alphas, f"at most len(lrs) = {len(self.lrs)} values: regular distillation gets one "
                "extra learning rate (a geometric midpoint of lrs) per extra alpha, for an equal budget",
            )  # fmt: skip
        _check_device_threads(self.device, self.threads)

    def check_inputs(self) -> None:
        """Hub teachers given as local zips must all be there."""
        if self.teacher_source == "hub" and self.teacher_dir:
            from sobolev.atari import hub_zip_name

            for game in self.games:
                path = Path(self.teacher_dir) / hub_zip_name(game, self.teacher_algo)
                if not path.exists():
                    raise FileNotFoundError(
                        f"teacher_dir has no {path.name} for {game}: download it from "
                        f"https://huggingface.co/sb3/{path.stem} or leave teacher_dir empty to fetch it"
                    )


CONFIGS: dict[str, type[_Config]] = {
    "regression": RegressionConfig,
    "theory": TheoryConfig,
    "synthetic": SyntheticConfig,
    "distillation": DistillationConfig,
}


def load_section(path: str | Path, section: str) -> dict[str, Any]:
    """The parameters of ``section`` in a ``params.yaml``, with the ``scale`` switch applied."""
    params = yaml.safe_load(Path(path).read_text()) or {}
    scale = params.get("scale", "default")
    if scale not in SCALES:
        raise ParamError(f"invalid parameter scale={scale!r}: must be one of {', '.join(SCALES)}")
    if section not in params or not isinstance(params[section], dict):
        raise ParamError(f"{path} has no section {section!r}")
    values = dict(params[section])
    overrides = values.pop("paper", None) or {}
    if not isinstance(overrides, dict):
        raise ParamError(f"invalid parameter {section}.paper={overrides!r}: must be a mapping")
    if scale == "paper":
        values.update(overrides)
    return values


def load_config(path: str | Path, section: str) -> Any:
    """Load and validate one stage's configuration (raises :class:`ParamError`)."""
    if section not in CONFIGS:
        raise ParamError(f"unknown stage {section!r}; allowed: {', '.join(CONFIGS)}")
    cls = CONFIGS[section]
    # Validate the paper overrides too, so a typo there fails now, not on the GPU later.
    raw = yaml.safe_load(Path(path).read_text()) or {}
    paper = (raw.get(section) or {}).get("paper") or {}
    base = {k: v for k, v in (raw.get(section) or {}).items() if k != "paper"}
    if section == "distillation" and "games" in paper:
        raise ParamError(
            "invalid parameter distillation.paper.games: DVC's foreach reads distillation.games; "
            "set it there (dvc exp run -S 'distillation.games=[pong,breakout,space_invaders]')"
        )
    cls.from_dict({**base, **paper}, section)
    return cls.from_dict(load_section(path, section), section)
