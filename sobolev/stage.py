"""Run one notebook as a DVC stage: ``python -m sobolev.stage regression``.

``python -m sobolev.stage regression --defaults`` re-executes the committed notebook in
place at its own tiny defaults (refresh it after editing; nbval compares against it).

The stage's parameters are read from ``params.yaml`` (the ``scale`` switch applied) and
validated *before* a kernel starts; papermill then executes the notebook into a temporary
folder, which replaces the stage's output folder only when every cell succeeded. An
interrupted or failed run therefore never leaves outputs that a later run would trust;
the failed notebook is kept beside them as ``<stage>-failed.ipynb`` for debugging.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from sobolev.config import ParamError, load_config

ROOT = Path(__file__).resolve().parent.parent
STAGES = {
    "theory": ("notebooks/s3_theory.ipynb", "results/theory"),
    "regression": ("notebooks/s41_regression.ipynb", "results/regression"),
    "synthetic": ("notebooks/s43_synthetic_gradients.ipynb", "results/synthetic"),
    # Reads the outputs of the per-game teacher -> record -> distill chain (sobolev.distill_stage).
    "distillation": ("notebooks/s42_distillation.ipynb", "results/distillation/report"),
}
# Stages whose notebook reads earlier stages' outputs: where they are.
INPUT_FOLDERS = {"distillation": {"results_dir": "results/distillation/games"}}
# ipykernel forwards even raw fd-2 writes into the notebook; with this off, progress bars
# written to sys.__stderr__ reach the terminal running the stage and stay out of the notebook.
KERNEL_ARGS = ["--IPKernelApp.capture_fd_output=False"]


def execute(notebook: Path, output: Path, parameters: dict | None = None) -> None:
    """Run ``notebook`` with papermill into ``output`` (python3 kernel, no progress noise)."""
    import papermill  # imported late: parameter errors come first and fast

    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters=parameters or {},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(notebook.parent),
        extra_arguments=KERNEL_ARGS,
    )


def stage_paths(stage: str, root: Path = ROOT) -> tuple[Path, Path]:
    """The notebook and the output folder of ``stage``; unknown stages raise :class:`ParamError`."""
    if stage not in STAGES:
        raise ParamError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    notebook, out = STAGES[stage]
    return root / notebook, root / out


def refresh_defaults(stage: str, root: Path = ROOT) -> Path:
    """Re-execute ``stage``'s notebook in place at its own defaults (what nbval compares)."""
    notebook, _ = stage_paths(stage, root)
    tmp = notebook.with_name(f".{notebook.stem}.tmp.ipynb")
    try:
        execute(notebook, tmp)
        tmp.replace(notebook)
    finally:
        tmp.unlink(missing_ok=True)
    return notebook


def run_stage(stage: str, params: Path, root: Path = ROOT) -> Path:
    """Execute ``stage``'s notebook with its validated parameters; returns the output folder."""
    notebook, out = stage_paths(stage, root)
    cfg = load_config(params, stage)
    cfg.check_inputs()  # missing data stops here, before a kernel starts
    out.parent.mkdir(parents=True, exist_ok=True)
    # The notebook writes into a staging folder that replaces ``out`` only on success.
    staged = out.parent / f".{stage}.staged"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    executed = staged / notebook.name
    try:
        inputs = {k: str(root / v) for k, v in INPUT_FOLDERS.get(stage, {}).items()}
        execute(notebook, executed, {**cfg.to_dict(), **inputs, "output_dir": str(staged)})
    except BaseException:
        if executed.exists():
            shutil.move(str(executed), str(out.parent / f"{stage}-failed.ipynb"))
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staged.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", help=f"one of: {', '.join(STAGES)}")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="params file (default: params.yaml)")
    parser.add_argument(
        "--defaults", action="store_true", help="re-execute the notebook in place at its own (CI) defaults instead"
    )
    args = parser.parse_args(argv)
    try:
        if args.defaults:
            print(f"{args.stage}: refreshed {refresh_defaults(args.stage).relative_to(ROOT)}")
            return 0
        out = run_stage(args.stage, args.params)
    except (ParamError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.stage}: results in {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
