"""The pipeline: one registry of every stage, one command line, used by ``dvc.yaml``.

    python -m sobolev.pipeline run regression          # a notebook stage, at params.yaml's scale
    python -m sobolev.pipeline run teacher breakout    # a step stage, one foreach item (a game)
    python -m sobolev.pipeline refresh regression      # re-execute notebooks/<...>.ipynb at the ci scale
    python -m sobolev.pipeline check                   # validate params.yaml: every section, every scale

A stage validates its parameters and inputs before any work, runs into a staging folder
(``results/.staging/<stage>``, ignored by git) and moves its outputs into place only when
everything succeeded; ``dvc.yaml`` marks every output ``persist: true`` so DVC never deletes
them first. A bad ``params.yaml``, a failure or a kill at any moment therefore leaves the
committed results as they were. Notebook stages run through papermill with two parameters,
``scale`` and ``output_dir``; the notebook loads everything else from ``params.yaml``.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sobolev.common.params import PARAMS, ParamError, SectionConfig, active_scale, config_from, read_params
from sobolev.common.paths import ROOT, STAGING


class StageError(RuntimeError):
    """A stage could not run or failed; the message says why."""


@dataclass(frozen=True)
class Stage:
    """One DVC stage.

    Attributes:
        section: the ``params.yaml`` section and ``sobolev`` subpackage it belongs to.
        out_dir: where its outputs live, relative to the root; ``{item}`` is the foreach item.
        outputs: names inside ``out_dir`` (files or folders) the stage writes, all of them.
        notebook: a notebook stage's notebook (relative to the root); or
        step: a step stage's function, ``"module:function"``, called as
            ``function(cfg, item, src, dst, progress)``.
        inputs: names inside ``out_dir`` that an earlier stage must have written.
        foreach: the config field listing the items (``games``), for ``foreach`` stages.
    """

    section: str
    out_dir: str
    outputs: tuple[str, ...]
    notebook: str | None = None
    step: str | None = None
    inputs: tuple[str, ...] = ()
    foreach: str | None = None

    def module(self) -> str:
        """The module a step stage runs (``None`` for notebook stages)."""
        return self.step.split(":")[0] if self.step else ""


GAME = "results/distillation/games/{item}"
CHAIN = "sobolev.distillation.chain"
STAGES: dict[str, Stage] = {
    "theory": Stage(
        "theory", "results/theory", ("s3_theory.ipynb", "figures", "pl_networks_runs.csv", "metrics.json"),
        notebook="notebooks/s3_theory.ipynb",
    ),
    "regression": Stage(
        "regression", "results/regression",
        ("s41_regression.ipynb", "figures", "runs.csv", "cells.csv", "checkpoints.pt", "train_curves.csv",
         "metrics.json"),
        notebook="notebooks/s41_regression.ipynb",
    ),
    "synthetic": Stage(
        "synthetic", "results/synthetic",
        ("s43_synthetic_gradients.ipynb", "figures", "runs.csv", "curves.csv", "metrics.json"),
        notebook="notebooks/s43_synthetic_gradients.ipynb",
    ),
    "teacher": Stage(
        "distillation", GAME, ("teacher.pt", "teacher_training.json"), step=f"{CHAIN}:make_teacher", foreach="games"
    ),
    "record": Stage(
        "distillation", GAME, ("recording.pt", "teacher.json"), step=f"{CHAIN}:record", inputs=("teacher.pt",),
        foreach="games",
    ),
    "distill": Stage(
        "distillation", GAME, ("runs.csv", "curves.csv", "summary.json", "students.pt"),
        step=f"{CHAIN}:distill_game", inputs=("teacher.pt", "recording.pt"), foreach="games",
    ),
    "distillation": Stage(
        "distillation", "results/distillation/report", ("s42_distillation.ipynb", "figures", "metrics.json"),
        notebook="notebooks/s42_distillation.ipynb",
    ),
    "differential": Stage(
        "differential", "results/differential", ("s51_differential_ml.ipynb", "figures", "runs.csv", "metrics.json"),
        notebook="notebooks/s51_differential_ml.ipynb",
    ),
    "trust": Stage(
        "trust", "results/trust", ("s52_relative_trust.ipynb", "figures", "runs.csv", "cells.csv", "trust.csv",
                                   "metrics.json"),
        notebook="notebooks/s52_relative_trust.ipynb",
    ),
    "features": Stage(
        "features", "results/features", ("s53_feature_updates.ipynb", "figures", "runs.csv", "curve.csv",
                                         "digits.csv", "metrics.json"),
        notebook="notebooks/s53_feature_updates.ipynb",
    ),
    "deviations": Stage(
        "deviations", "results/deviations", ("s54_student_teacher.ipynb", "figures", "runs.csv", "bins.csv",
                                             "metrics.json"),
        notebook="notebooks/s54_student_teacher.ipynb",
    ),
}  # fmt: skip
SECTIONS = tuple(dict.fromkeys(s.section for s in STAGES.values()))
# ipykernel forwards even raw fd-2 writes into the notebook; with this off, progress bars
# written to sys.__stderr__ reach the terminal running the stage and stay out of the notebook.
KERNEL_ARGS = ["--IPKernelApp.capture_fd_output=False"]


def config_class(section: str) -> type[SectionConfig]:
    """The config dataclass of ``section`` (``sobolev.<section>.config``), imported on demand so
    that running one stage never imports another section."""
    module = importlib.import_module(f"sobolev.{section}.config")
    found = [v for v in vars(module).values() if isinstance(v, type) and getattr(v, "SECTION", None) == section]
    return found[0]


def check_params(path: Path = PARAMS) -> dict[str, SectionConfig]:
    """Validate every section of ``path`` at its scale (every scale is checked on the way)."""
    params = read_params(path)
    unknown = sorted(set(params) - {"scale", *SECTIONS}, key=str)
    if unknown:
        raise StageError(f"params.yaml has unknown top-level key(s) {unknown}; allowed: scale, {', '.join(SECTIONS)}")
    active_scale(params)
    configs = {section: config_from(config_class(section), params) for section in SECTIONS}
    # Across sections (no section imports another): Section 5.4 reads Section 4.2's students.
    games = configs["distillation"].games
    bad = [g for g in configs["deviations"].atari_games if g not in games]
    if bad:
        raise ParamError(
            f"invalid parameter deviations.atari_games={configs['deviations'].atari_games!r}: "
            f"{bad} not in distillation.games {games} (Section 4.2 trains students for those only)"
        )
    return configs


def execute(notebook: Path, output: Path, parameters: dict[str, Any]) -> None:
    """Run ``notebook`` with papermill into ``output`` (python3 kernel, no progress noise); with
    ``parameters``, papermill adds a cell setting them after the ``parameters`` cell."""
    import papermill  # imported late: parameter errors come first and fast

    papermill.execute_notebook(
        str(notebook), str(output), parameters=parameters, kernel_name="python3", progress_bar=False,
        cwd=str(notebook.parent), extra_arguments=KERNEL_ARGS,
    )  # fmt: skip


def _install(staged: Path, out: Path, names: tuple[str, ...]) -> None:
    """Move every output ``names`` from ``staged`` into ``out``, replacing what was there."""
    missing = [n for n in names if not (staged / n).exists()]
    if missing:
        raise StageError(f"the stage did not write {missing} (declared outputs); nothing was replaced")
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        target, old = out / name, staged / f".old-{name}"
        if target.is_dir():
            target.rename(old)  # a folder cannot be replaced in one rename: swap, then delete the old one
        (staged / name).replace(target)
        shutil.rmtree(old, ignore_errors=True)


def stage_key(name: str, item: str | None) -> str:
    return name if item is None else f"{name}-{item}"


def run_stage(
    name: str, item: str | None = None, params: Path = PARAMS, root: Path = ROOT, progress: bool | TextIO = True
) -> Path:
    """Validate, run ``name`` (for ``item``, in ``foreach`` stages) into a staging folder, then
    move its outputs into place. Returns the output folder."""
    if name not in STAGES:
        raise StageError(f"unknown stage {name!r}; allowed: {', '.join(STAGES)}")
    stage = STAGES[name]
    values = read_params(params)  # read once: the config and the notebook's scale come from it
    cfg = config_from(config_class(stage.section), values)
    if stage.foreach:
        items = getattr(cfg, stage.foreach)
        if item not in items:
            raise StageError(f"stage {name} needs one of {stage.section}.{stage.foreach} {items}, got {item!r}")
    elif item is not None:
        raise StageError(f"stage {name} takes no item, got {item!r}")
    cfg.check_inputs()
    out = root / stage.out_dir.format(item=item)
    missing = [n for n in stage.inputs if not (out / n).exists()]
    if missing:
        raise FileNotFoundError(f"{out} has no {missing}: run the earlier stages first (dvc repro)")
    staging = root / STAGING.relative_to(ROOT)
    staged = staging / stage_key(name, item)
    shutil.rmtree(staged, ignore_errors=True)  # what a killed run left behind
    staged.mkdir(parents=True)
    try:
        if stage.notebook:
            notebook = root / stage.notebook
            executed = staged / notebook.name
            try:
                execute(notebook, executed, {"scale": active_scale(values), "output_dir": str(staged)})
            except BaseException:
                if executed.exists():
                    failed = staging / f"{stage_key(name, item)}-failed.ipynb"
                    shutil.move(str(executed), str(failed))
                    print(f"{name}: the executed notebook is kept for debugging in {failed}", file=sys.stderr)
                raise
        else:
            module, function = stage.step.split(":")
            getattr(importlib.import_module(module), function)(cfg, item, out, staged, progress)
        _install(staged, out, stage.outputs)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        if staging.exists() and not any(staging.iterdir()):
            staging.rmdir()
    return out


def refresh(name: str, root: Path = ROOT) -> Path:
    """Re-execute ``name``'s notebook in place at the ci scale (what nbval compares against)."""
    stage = STAGES.get(name)
    if stage is None or stage.notebook is None:
        notebooks = [k for k, s in STAGES.items() if s.notebook]
        raise StageError(f"unknown notebook stage {name!r}; allowed: {', '.join(notebooks)}")
    notebook = root / stage.notebook
    tmp = notebook.with_name(f".{notebook.stem}.tmp.ipynb")
    try:
        execute(notebook, tmp, {})  # its parameters cell holds the ci defaults: nothing to inject
        tmp.replace(notebook)
    finally:
        tmp.unlink(missing_ok=True)
    return notebook


def _failure(err: BaseException) -> str:
    """One readable line for an error raised inside a notebook or a step."""
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    return f"{ename}: {evalue}" if ename else f"{type(err).__name__}: {err}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one stage (what dvc.yaml calls)")
    run.add_argument("stage", help=f"one of: {', '.join(STAGES)}")
    run.add_argument("item", nargs="?", help="the foreach item (a game) of a per-game stage")
    sub.add_parser("refresh", help="re-execute a notebook in place at the ci scale").add_argument("stage")
    sub.add_parser("check", help="validate params.yaml")
    args = parser.parse_args(argv)
    from sobolev.common.params import ParamError
    from sobolev.core.training import NonFiniteLossError

    try:
        if args.command == "check":
            configs = check_params()
            print(f"params.yaml is valid: {', '.join(configs)} at every scale")
        elif args.command == "refresh":
            print(f"{args.stage}: refreshed {refresh(args.stage).relative_to(ROOT)}")
        else:
            out = run_stage(args.stage, args.item, progress=sys.__stderr__)
            print(f"{stage_key(args.stage, args.item)}: results in {out.relative_to(ROOT)}")
    except (ParamError, StageError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # a failed notebook: its error in one line, the committed results untouched
        if type(err).__name__ != "PapermillExecutionError":
            raise
        print(f"error: {args.stage} failed, committed results untouched: {_failure(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
