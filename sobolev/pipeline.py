"""The pipeline: one registry of every stage, one command line, used by ``dvc.yaml``.

    python -m sobolev.pipeline run s41-regression         # a notebook stage, at params.yaml's scale
    python -m sobolev.pipeline run s42-teacher breakout   # a step stage, one foreach item (a game)
    python -m sobolev.pipeline refresh s41-regression     # re-execute notebooks/<...>.ipynb at the ci scale
    python -m sobolev.pipeline check                      # validate params.yaml: every section, every scale

A stage validates its parameters and inputs and checks that it can write its outputs before any
work, runs into a staging folder of its own (``results/.staging/<stage>-<pid>-<random>``,
ignored by git) and moves its outputs into place only when everything succeeded, in one
journalled install (:mod:`sobolev.common.install`): a kill during the install is finished by the
next stage or reader before it reads, so every reader sees all old or all new outputs, never a
mix. ``dvc.yaml`` marks every output ``persist: true`` so DVC never deletes them first. A bad
``params.yaml``, a failure or a kill before the install therefore leaves the committed results as
they were. Notebook stages run through papermill with two parameters,
``scale`` and ``output_dir``, in a kernel that imports the workspace's own ``sobolev`` and reads
the ``params.yaml`` the pipeline validated (:func:`execute`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sobolev.common.install import JOURNAL, InstallError, install, journalled_staging, settle_all
from sobolev.common.params import (
    PARAMS,
    ParamError,
    SectionConfig,
    active_scale,
    config_from,
    configs_at_every_scale,
    read_params,
)
from sobolev.common.paths import ROOT, STAGING
from sobolev.common.utils import short
from sobolev.core.training import NonFiniteLossError


class StageError(RuntimeError):
    """A stage could not run or failed; the message says why."""


@dataclass(frozen=True)
class Stage:
    """One DVC stage; its name (the registry's key) is the paper's section number and what it does.

    Attributes:
        section: the ``params.yaml`` section and ``sobolev`` subpackage it belongs to.
        out_dir: where its outputs live, relative to the root; ``{item}`` is the foreach item.
        notebook: a notebook stage's notebook (relative to the root); or
        step: a step stage's function, ``"module:function"``, called as
            ``function(cfg, item, src, dst, progress)``.
        inputs: names inside ``out_dir`` that an earlier stage must have written.
        foreach: the config field listing the items (``games``), for ``foreach`` stages.
    """

    section: str
    out_dir: str
    notebook: str | None = None
    step: str | None = None
    inputs: tuple[str, ...] = ()
    foreach: str | None = None

    def module(self) -> str:
        """The module a step stage runs (``None`` for notebook stages)."""
        return self.step.split(":")[0] if self.step else ""

    @property
    def outputs(self) -> tuple[str, ...]:
        """Every name inside ``out_dir`` the stage writes, as its section declares them (declared
        once): a notebook stage, the executed notebook and ``sobolev.<section>.OUTPUTS``; a step
        stage, its module's ``OUTPUTS[function]``."""
        if self.step:
            module, function = self.step.split(":")
            return tuple(importlib.import_module(module).OUTPUTS[function])
        return (Path(self.notebook).name, *importlib.import_module(f"sobolev.{self.section}").OUTPUTS)


GAME = "results/distillation/games/{item}"
CHAIN = "sobolev.distillation.chain"
# In the paper's order: Section 3, 4.1, 4.2 (the per-game chain, then its report), 4.3, then 5.1-5.5.
STAGES: dict[str, Stage] = {
    "s3-theory": Stage("theory", "results/theory", notebook="notebooks/s3_theory.ipynb"),
    "s41-regression": Stage("regression", "results/regression", notebook="notebooks/s41_regression.ipynb"),
    "s42-teacher": Stage("distillation", GAME, step=f"{CHAIN}:make_teacher", foreach="games"),
    "s42-record": Stage("distillation", GAME, step=f"{CHAIN}:record", inputs=("teacher.pt",), foreach="games"),
    "s42-distill": Stage(
        "distillation", GAME, step=f"{CHAIN}:distill_game", inputs=("teacher.pt", "recording.pt"), foreach="games"
    ),
    "s42-report": Stage("distillation", "results/distillation/report", notebook="notebooks/s42_distillation.ipynb"),
    "s43-synthetic-gradients": Stage(
        "synthetic_gradients", "results/synthetic_gradients", notebook="notebooks/s43_synthetic_gradients.ipynb"
    ),
    "s51-differential-ml": Stage(
        "differential", "results/differential", notebook="notebooks/s51_differential_ml.ipynb"
    ),
    "s52-relative-trust": Stage("trust", "results/trust", notebook="notebooks/s52_relative_trust.ipynb"),
    "s53-feature-updates": Stage("features", "results/features", notebook="notebooks/s53_feature_updates.ipynb"),
    "s54-student-teacher": Stage("deviations", "results/deviations", notebook="notebooks/s54_student_teacher.ipynb"),
    "s55-inexact-derivatives": Stage("inexact", "results/inexact", notebook="notebooks/s55_inexact_derivatives.ipynb"),
}
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
    """Validate ``path``: every section at every scale (:func:`validate`). Returns each section's config at the
    file's scale."""
    return validate(read_params(path))


def validate(params: dict[str, Any]) -> dict[str, SectionConfig]:
    """The one validation of a params mapping, the same for ``check``, ``run`` and ``dvc repro``: no unknown
    top-level key, every section valid at every scale, and the rules across sections at every scale (a value
    that is wrong only at another scale fails now, named by the block it came from). Returns each section's
    config at the file's scale."""
    unknown = sorted(set(params) - {"scale", *SECTIONS}, key=str)
    if unknown:
        raise StageError(
            f"params.yaml has unknown top-level key(s) {short(unknown)}; allowed: scale, {', '.join(SECTIONS)}"
        )
    scale = active_scale(params)
    configs = {section: config_from(config_class(section), params) for section in SECTIONS}
    # Across sections (no section imports another): Section 5.4 reads Section 4.2's students, at every scale.
    students = configs_at_every_scale(config_class("distillation"), params)
    for s, deviations in configs_at_every_scale(config_class("deviations"), params).items():
        games = students[s].games
        bad = [g for g in deviations.atari_games if g not in games]
        if bad:
            raise ParamError(
                f"invalid parameter {deviations.key_name('atari_games')}={short(deviations.atari_games)} (at the "
                f"{s} scale{'' if s == scale else f'; this file runs at {scale}'}): {short(bad)} not in "
                f"distillation.games {games} (Section 4.2 trains students for those only)"
            )
    return configs


def execute(notebook: Path, output: Path, parameters: dict[str, Any], root: Path = ROOT, params: Path = PARAMS) -> None:
    """Run ``notebook`` with papermill into ``output`` (python3 kernel, no progress noise); with
    ``parameters``, papermill adds a cell setting them after the ``parameters`` cell.

    The kernel computes with the workspace ``root``'s code and with ``params``, the file the
    pipeline validated: ``root`` goes first on its ``PYTHONPATH`` (ahead of whatever ``sobolev``
    the environment installed, e.g. another clone's editable install, or the main workspace for a
    ``dvc exp run --temp`` copy) and ``SOBOLEV_PARAMS`` names the file
    (:mod:`sobolev.common.paths`); ``SOBOLEV_WORKSPACE`` makes an import from anywhere else fail.
    """
    import papermill  # imported late: parameter errors come first and fast

    env = {"SOBOLEV_PARAMS": str(params.resolve())}
    if (root / "sobolev" / "__init__.py").exists():  # a workspace with code (not a bare results folder)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root.resolve()), os.environ.get("PYTHONPATH", "")) if p)
        env["SOBOLEV_WORKSPACE"] = str(root.resolve())
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        papermill.execute_notebook(
            str(notebook), str(output), parameters=parameters, kernel_name="python3", progress_bar=False,
            cwd=str(notebook.parent), extra_arguments=KERNEL_ARGS,
            # Stopped (Ctrl-C, a failure) mid-cell, a graceful shutdown makes the kernel print a ZMQ traceback
            # as its sockets close under the running cell; killing it says nothing, and nothing of it is kept.
            shutdown_kernel="immediate",
        )  # fmt: skip
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def stage_key(name: str, item: str | None) -> str:
    return name if item is None else f"{name}-{item}"


def _writable(folder: Path) -> None:
    """Raise a :class:`StageError` unless a file can be created in ``folder`` (or, if absent, in
    its nearest existing parent): checked before any computing, not after it. A real write, not
    permission bits, so a read-only mount is caught even for root."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(f"{probe} is not a folder")
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise StageError(f"cannot write the stage's outputs to {folder}: {err}") from err


def _staging_folder(staging: Path, key: str) -> Path:
    """A new staging folder for this run, ``<key>-<pid>-<random>``: concurrent runs never share
    one. Folders of the same stage left by a killed run (its process gone) are removed first,
    unless an install journal still needs them (:mod:`sobolev.common.install` rolls those forward)."""
    staging.mkdir(parents=True, exist_ok=True)
    needed = journalled_staging(staging.parent)
    for old in staging.glob(f"{key}-*"):
        pid = old.name.removeprefix(f"{key}-").split("-")[0]
        if old.is_dir() and pid.isdecimal() and not _alive(int(pid)) and old.resolve() not in needed:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{key}-{os.getpid()}-", dir=staging))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def run_stage(
    name: str, item: str | None = None, params: Path = PARAMS, root: Path = ROOT, progress: bool | TextIO = True
) -> Path:
    """Validate, run ``name`` (for ``item``, in ``foreach`` stages) into a staging folder of its
    own, then move its outputs into place. Returns the output folder."""
    if name not in STAGES:
        raise StageError(f"unknown stage {name!r}; allowed: {', '.join(STAGES)}")
    stage = STAGES[name]
    values = read_params(params)  # read once: the config and the notebook's scale come from it
    cfg = validate(values)[stage.section]  # the whole file, as `check` validates it
    if stage.foreach:
        items = getattr(cfg, stage.foreach)
        if item not in items:
            raise StageError(f"stage {name} needs one of {stage.section}.{stage.foreach} {items}, got {item!r}")
    elif item is not None:
        raise StageError(f"stage {name} takes no item, got {item!r}")
    cfg.check_inputs()
    # Before this stage reads or writes anything: finish every install a kill interrupted (any stage's).
    settle_all(root / "results")
    out = root / stage.out_dir.format(item=item)
    missing = [n for n in stage.inputs if not (out / n).exists()]
    if missing:
        raise FileNotFoundError(f"{out} has no {missing}: run the earlier stages first (dvc repro)")
    staging = root / STAGING.relative_to(ROOT)
    key = stage_key(name, item)
    _writable(out)
    _writable(staging)
    staged = _staging_folder(staging, key)
    try:
        if stage.notebook:
            notebook = root / stage.notebook
            executed = staged / notebook.name
            try:
                execute(notebook, executed, {"scale": active_scale(values), "output_dir": str(staged)}, root, params)
            except Exception:
                if executed.exists():
                    failed = surviving_staging(root) / f"{key}-failed.ipynb"
                    failed.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(executed), str(failed))
                    print(f"{name}: the executed notebook is kept for debugging in {failed}", file=sys.stderr)
                raise
        else:
            module, function = stage.step.split(":")
            getattr(importlib.import_module(module), function)(cfg, item, out, staged, progress)
        with _interrupts_deferred():  # the install takes milliseconds: a Ctrl-C waits for it, a kill is rolled forward
            install(staged, out, stage.outputs, key)
    finally:
        if not (out / JOURNAL.format(key=key)).exists():  # an interrupted install needs its staging folder to finish
            shutil.rmtree(staged, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.rmdir()  # only when empty: another run's folder or a kept notebook stays
    return out


def surviving_staging(root: Path) -> Path:
    """Where a failed run's notebook is kept: the workspace's ``results/.staging``; for a DVC experiment run in
    a temporary copy (``<repo>/.dvc/tmp/exps/...``, deleted when the experiment ends), the main workspace's."""
    parts = root.resolve().parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i]) / STAGING.relative_to(ROOT)
    return root / STAGING.relative_to(ROOT)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT (Ctrl-C) until the block is done, then raise it (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def check_workspace(cwd: Path | None = None) -> None:
    """Refuse to run another workspace's code: the nearest folder at or above ``cwd`` holding ``dvc.yaml`` and
    ``sobolev/`` is the workspace the user means; this package must be that workspace's. They differ when
    ``python -P`` or ``PYTHONSAFEPATH`` keeps the working directory off ``sys.path``, so that a second clone
    sharing one environment imports the first clone's editable install (and would read its params.yaml)."""
    cwd = Path.cwd() if cwd is None else cwd
    for folder in (cwd, *cwd.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "sobolev" / "__init__.py").is_file():
            if folder.resolve() != ROOT:
                raise StageError(
                    f"this command was started in the workspace {folder} but runs the sobolev package of {ROOT} "
                    "(with `python -P` or PYTHONSAFEPATH set, the working directory is not on sys.path): it would "
                    f"compute with that tree's code and params. Run it without -P / PYTHONSAFEPATH, or with "
                    f"PYTHONPATH={folder}"
                )
            return


def refresh(name: str, root: Path = ROOT) -> Path:
    """Re-execute ``name``'s notebook in place at the ci scale (what nbval compares against)."""
    stage = STAGES.get(name)
    if stage is None or stage.notebook is None:
        notebooks = [k for k, s in STAGES.items() if s.notebook]
        raise StageError(f"unknown notebook stage {name!r}; allowed: {', '.join(notebooks)}")
    notebook = root / stage.notebook
    tmp = notebook.with_name(f".{notebook.stem}.tmp.ipynb")
    try:
        # its parameters cell holds the ci defaults: nothing to inject
        execute(notebook, tmp, {}, root, root / "params.yaml")
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
    try:
        check_workspace()
        if args.command == "check":
            configs = check_params()
            print(f"params.yaml is valid: {', '.join(configs)} at every scale")
        elif args.command == "refresh":
            print(f"{args.stage}: refreshed {refresh(args.stage).relative_to(ROOT)}")
        else:
            out = run_stage(args.stage, args.item, progress=sys.__stderr__)
            print(f"{stage_key(args.stage, args.item)}: results in {out.relative_to(ROOT)}")
    except (ParamError, StageError, InstallError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        what = stage_key(args.stage, args.item) if args.command == "run" else args.command
        print(f"\n{what}: interrupted; nothing was installed, the results are as they were", file=sys.stderr)
        return 130
    except Exception as err:  # a failed notebook: its error in one line, the committed results untouched
        if type(err).__name__ != "PapermillExecutionError":
            raise
        print(f"error: {args.stage} failed, committed results untouched: {_failure(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
