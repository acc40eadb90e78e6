"""A stage computes with its own workspace's code and params (``dvc exp run --temp``, a second
clone sharing this environment), whatever ``sobolev`` the environment has installed.

Before :func:`sobolev.pipeline.execute` put the workspace first in the kernel's ``PYTHONPATH``,
both cases below ran the *installed* package (an editable install of another tree) and read
*its* ``params.yaml``: the recorded params said one thing, the outputs were another's.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
STAGE, SECTION = "s53-feature-updates", "features"  # the cheapest notebook stage at the ci scale (about 30 s)
RUNS = "results/features/runs.csv"

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("dvc") is None, reason="needs git and dvc")


def sh(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    for key in ("SOBOLEV_PARAMS", "SOBOLEV_WORKSPACE", "PYTHONPATH"):  # the environment of a user's shell
        env.pop(key, None)
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode:
        tail = f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{tail}")
    return proc


def set_lr(workspace: Path, lr: float) -> None:
    params = workspace / "params.yaml"
    text = params.read_text()
    old = f"  lr: {yaml.safe_load(text)[SECTION]['lr']}"
    assert text.count(old) == 1
    params.write_text(text.replace(old, f"  lr: {lr}"))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A second clone of this working tree (every file git tracks or would track), at the ci
    scale, in a git repository of its own; it shares this test's environment, whose editable
    install points at ROOT (another tree, with another params.yaml)."""
    ws = tmp_path_factory.mktemp("clone") / "repo"
    files = sh(ROOT, "git", "ls-files", "-co", "--exclude-standard", "-z").stdout.split("\0")
    assert len(files) < 5000, f"{len(files)} files to copy: an environment or data folder is not git-ignored"
    for name in filter(None, files):  # (environments are git-ignored: .venv/, .venv-*/)
        if (ROOT / name).is_file():
            (ws / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, ws / name)
    params = ws / "params.yaml"
    params.write_text(params.read_text().replace("\nscale: default\n", "\nscale: ci\n"))
    sh(ws, "git", "init", "-q")
    sh(ws, "git", "add", "-A")
    sh(ws, "git", "commit", "-qm", "a second clone")
    return ws


def exp_output(ws: Path, name: str) -> str:
    """``name`` as the newest experiment committed it."""
    refs = sh(ws, "git", "for-each-ref", "--sort=-creatordate", "--format=%(refname)", "refs/exps").stdout.split()
    ref = next(r for r in refs if "/exec/" not in r)
    return sh(ws, "git", "show", f"{ref}:{name}").stdout


def test_a_stage_computes_with_its_workspace_params_and_code(workspace):
    import sobolev

    assert Path(sobolev.__file__).resolve().parents[1] == ROOT  # this environment's sobolev is another tree's
    # A second clone sharing this environment: its own params (lr 0.01) are the ones used.
    set_lr(workspace, 0.01)
    sh(workspace, sys.executable, "-m", "sobolev.pipeline", "run", STAGE)
    clone = (workspace / RUNS).read_text()
    sh(workspace, "git", "checkout", "-q", "--", "params.yaml", RUNS)
    # dvc exp run --temp: the experiment's copy of the workspace, with lr set on the command line.
    sh(workspace, "dvc", "exp", "run", "--temp", "-S", f"{SECTION}.lr=0.01", STAGE)
    assert exp_output(workspace, RUNS) == clone  # both computed with lr 0.01, from their own params
    sh(workspace, "dvc", "exp", "run", "--temp", "-S", f"{SECTION}.lr=0.001", STAGE)
    assert exp_output(workspace, RUNS) != clone  # another value, other outputs
    assert "lr: 0.001" in exp_output(workspace, "dvc.lock")
    # An invalid value fails the experiment with the stage's message instead of computing another's.
    failed = sh(workspace, "dvc", "exp", "run", "--temp", "-S", f"{SECTION}.lr=1000000.0", STAGE, check=False)
    assert failed.returncode != 0 and "features.lr" in failed.stdout + failed.stderr
