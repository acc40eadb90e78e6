"""Section 4.2's parameters (``params.yaml: distillation``), validated before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sobolev.common.params import (
    MAX_LR,
    SectionConfig,
    choice,
    device,
    integer,
    items,
    number,
    param,
    text,
    threads,
)
from sobolev.distillation.atari import ALGOS, GAMES, hub_zip_name


@dataclass(frozen=True)
class DistillationConfig(SectionConfig):
    """Section 4.2: Sobolev distillation of Atari policies (Figure 4).

    The chain per game is teacher -> record -> distill (``python -m sobolev.pipeline run STEP GAME``),
    then the notebook reads every game's outputs. ``games`` drives DVC's ``foreach`` and is read
    from the top of the section, so the ``ci:`` and ``paper:`` blocks may not change it.
    """

    SECTION: ClassVar[str] = "distillation"
    FIXED: ClassVar[tuple[str, ...]] = ("games",)

    games: list[str] = param(items(choice(tuple(GAMES))))
    teacher_source: str = param(choice(("train", "hub")), "train: SB3 here; hub: the RL Zoo's A2C agents")
    teacher_algo: str = param(choice(ALGOS))
    teacher_steps: int = param(integer(1, 1_000_000_000))
    teacher_envs: int = param(integer(1, 256))
    teacher_ent_coef: float = param(number(0, 10))
    teacher_temperature: float = param(number(0, 100, open_low=True))
    teacher_dir: str = param(text)
    states: int = param(integer(2, 10_000_000))
    record_seed: int = param(integer(0, 2**31 - 1))
    fractions: list[float] = param(items(number(0, 1, open_low=True)))
    val_share: float = param(number(0, 1, open_low=True), "share of the states in validation episodes")
    test_share: float = param(number(0, 1, open_low=True), "share of the states in test episodes (the last)")
    tune_fraction: float = param(number(0, 1, open_low=True))
    seeds: int = param(integer(1, 10_000))
    max_iterations: int = param(integer(1, 10_000_000), "Adam steps at most; runs stop early on validation")
    patience: int = param(integer(1, 100_000), "evaluations without a lower validation KL before stopping")
    batch_size: int = param(integer(1, 1_000_000))
    lrs: list[float] = param(items(number(0, MAX_LR, open_low=True)))
    alphas: list[float] = param(items(number(0, 1e6, open_low=True)), "the paper's arm: α on the raw Sobolev term")
    balanced_alphas: list[float] = param(
        items(number(0, 1e6, open_low=True), allow_empty=True),
        "the balanced arm: α on the Sobolev term / the teacher's gradient scale ([]: no balanced arm)",
    )
    n_projections: int = param(integer(1, 1000))
    teacher_gradients: str = param(choice(("stored", "on_the_fly")), "the teacher's input Jacobians")
    eval_every: int = param(integer(1, 10_000_000))
    eval_train_states: int = param(integer(1, 10_000_000))
    eval_states: int = param(integer(1, 10_000_000), "validation and test states on which curves are logged")
    device: str = param(device)
    threads: int = param(threads)
    workers: int = param(integer(1, 256), "distill runs at once, each in its own process with `threads` threads")

    @property
    def process_threads(self) -> int:
        """Threads of the teacher's training (its own, frozen stage): every worker's. Nothing a distillation run
        reads is computed with it: the recording and the teacher's Jacobians use ``threads``, as every run does,
        so ``workers`` changes how many runs train at once, never a number (CPU results depend on threads)."""
        return self.threads * self.workers

    @property
    def arms(self) -> dict[str, list[float]]:
        """Each Sobolev arm's α grid: ``sobolev`` (the paper's weighting, α on the raw term) and, when
        ``balanced_alphas`` is not empty, ``balanced`` (α on the term divided by the teacher's gradient scale)."""
        return {"sobolev": self.alphas, **({"balanced": self.balanced_alphas} if self.balanced_alphas else {})}

    def check(self) -> None:
        if self.teacher_source == "hub" and self.teacher_algo != "a2c":
            self.fail("teacher_algo", "the hub teachers are the RL Zoo's A2C agents: use 'a2c'")
        for f in self.fractions:
            if not f < 1:
                self.fail("fractions", f"entry {f!r} must be a fraction in (0, 1): some states must stay for testing")
        if max(self.fractions) + self.val_share + self.test_share > 1 + 1e-9:
            self.fail(
                "fractions", f"the largest ({max(self.fractions)}) + val_share ({self.val_share}) + test_share "
                f"({self.test_share}) must be at most 1: training, validation and test episodes do not overlap",
            )  # fmt: skip
        if self.tune_fraction not in self.fractions:
            self.fail("tune_fraction", f"must be one of fractions {self.fractions}")
        if self.eval_every > self.max_iterations:
            self.fail("eval_every", f"must be at most max_iterations ({self.max_iterations})")
        if self.batch_size > self.states:
            self.fail("batch_size", f"must be at most states ({self.states})")
        for name in ("eval_train_states", "eval_states"):
            if getattr(self, name) > self.states:
                self.fail(name, f"must be at most states ({self.states})")

    def check_inputs(self) -> None:
        """Hub teachers given as local zips must all be there."""
        if self.teacher_source == "hub" and self.teacher_dir:
            for game in self.games:
                path = Path(self.teacher_dir) / hub_zip_name(game, self.teacher_algo)
                if not path.exists():
                    raise FileNotFoundError(
                        f"teacher_dir has no {path.name} for {game}: download it from "
                        f"https://huggingface.co/sb3/{path.stem} or leave teacher_dir empty to fetch it"
                    )


# What the report stage writes besides its executed notebook (declared once; the pipeline installs exactly
# these). The chain's steps declare theirs in chain.OUTPUTS.
OUTPUTS = ("figures", "metrics.json")
