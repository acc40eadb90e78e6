"""A stage's install is all or nothing as every reader sees it: killed at any step, the next reader finishes it.

The kill test counts the install's filesystem steps (every ``os.replace``, ``os.rename``, ``os.unlink`` and
``os.rmdir``: the journal's write, each output's swap, the journal's removal, the staging folder's removal) and
kills a real process with SIGKILL before each one in turn. Whatever step it died at, a reader finds all the new
outputs and nothing half old, half new.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sobolev.common.install import JOURNAL, InstallError, install, settle, settle_all, settled

NAMES = ("figures", "runs.csv", "metrics.json")
KEY = "s51-differential-ml"

KILL_AT_STEP = """
import os, signal, sys
from pathlib import Path
from sobolev.common.install import install

kill_at, staged, out = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
done = 0

def counted(call):
    def step(*args, **kwargs):
        global done
        if done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        done += 1
        return call(*args, **kwargs)
    return step

for name in ("replace", "rename", "unlink", "rmdir"):
    setattr(os, name, counted(getattr(os, name)))
install(staged, out, ("figures", "runs.csv", "metrics.json"), "s51-differential-ml")
print(done)
"""


def _outputs(folder: Path, version: str) -> None:
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / f"{version}.png").write_text(version)
    (folder / "runs.csv").write_text(version)
    (folder / "metrics.json").write_text(version)


def _state(out: Path) -> dict[str, str]:
    """Each output as found: ``old``, ``new`` or ``missing``; and whether the journal is there."""
    state = {}
    for name in NAMES:
        path = out / name
        if not path.exists():
            state[name] = "missing"
        elif path.is_dir():
            state[name] = "+".join(sorted(p.stem for p in path.iterdir()))
        else:
            state[name] = path.read_text()
    state["journal"] = "yes" if (out / JOURNAL.format(key=KEY)).exists() else "no"
    return state


def _killed_install(tmp_path: Path, kill_at: int) -> tuple[Path, Path, subprocess.CompletedProcess]:
    for sub in ("out", "staging"):
        shutil.rmtree(tmp_path / sub, ignore_errors=True)
    out, staged = tmp_path / "out", tmp_path / "staging" / f"{KEY}-1-abc"
    _outputs(out, "old")
    _outputs(staged, "new")
    script = tmp_path / "kill_at_step.py"
    script.write_text(textwrap.dedent(KILL_AT_STEP))
    proc = subprocess.run([sys.executable, str(script), str(kill_at), str(staged), str(out)], capture_output=True,
                          text=True)  # fmt: skip
    return out, staged, proc


def test_a_kill_at_every_step_of_the_install_is_finished_by_the_next_reader(tmp_path):
    out, staged, whole = _killed_install(tmp_path, 10**6)  # never killed: count its steps
    assert whole.returncode == 0, whole.stderr
    steps = int(whole.stdout)
    assert steps >= 6  # journal in, three outputs (the folder swapped out first), journal out, staging removed
    old, new = ({**dict.fromkeys(NAMES, v), "journal": "no"} for v in ("old", "new"))
    seen = []
    for kill_at in range(steps):
        out, staged, proc = _killed_install(tmp_path, kill_at)
        assert proc.returncode == -signal.SIGKILL, (kill_at, proc.stderr)
        found = _state(out)
        seen.append(found)
        read = _state(settled(out))
        if kill_at == 0:  # killed before the journal was written: the install never happened, the old outputs stay
            assert found == read == old and not list(out.glob(".installing-*"))  # the half-written journal is gone
            assert sorted(p.name for p in staged.iterdir()) == sorted(NAMES)  # a dead run's leftovers, cleared later
        else:  # the journal was written: the reader finished the install
            assert read == new, (kill_at, found)
            assert not any(staged.iterdir()) if staged.exists() else True  # nothing of the install is left
    # The kills really did land between the renames: some folders were half old, half new before a reader came.
    assert any(len({s[n] for n in NAMES}) > 1 for s in seen)
    print("\n".join(f"killed before step {k}: {s}" for k, s in enumerate(seen)))


def test_a_settled_folder_is_left_alone_and_a_lost_staging_folder_is_refused(tmp_path):
    out, staged, _ = _killed_install(tmp_path, 2)  # the journal written, the first output moved
    assert settle(out) == [KEY] and settle(out) == []
    out, staged, _ = _killed_install(tmp_path, 2)
    shutil.rmtree(staged)  # someone cleared results/.staging
    with pytest.raises(InstallError, match=r"interrupted and its staging folder .* is gone.*Re-run that stage"):
        settled(out)
    (out / JOURNAL.format(key=KEY)).write_text("not json")
    with pytest.raises(InstallError, match="is not an install journal"):
        settled(out)


def test_an_incomplete_or_overfull_staging_folder_replaces_nothing(tmp_path):
    out, staged = tmp_path / "out", tmp_path / "staged"
    _outputs(out, "old")
    _outputs(staged, "new")
    (staged / "runs.csv").unlink()
    with pytest.raises(InstallError, match=r"did not write \['runs.csv'\]"):
        install(staged, out, NAMES, KEY)
    (staged / "runs.csv").write_text("new")
    (staged / "extra.csv").write_text("new")
    with pytest.raises(InstallError, match=r"wrote \['extra.csv'\], which its section does not declare"):
        install(staged, out, NAMES, KEY)
    assert _state(out) == {**dict.fromkeys(NAMES, "old"), "journal": "no"}


def test_readers_settle_before_they_read(tmp_path, monkeypatch):
    """The pipeline (before any stage), Section 5.4's reader of Section 4.2's students and Section 4.2's report
    reader: each finishes an interrupted install of what it reads first."""
    from sobolev.deviations import atari

    games = tmp_path / "results/distillation/games/breakout"
    staged = tmp_path / "results/.staging/s42-distill-breakout-1-abc"
    for folder, version in ((games, 0.0), (staged, 1.0)):
        folder.mkdir(parents=True)
        torch.save({"teacher_log_probs": torch.tensor([version]), "students": []}, folder / "students.pt")
    record = {"key": "s42-distill-breakout", "staged": str(staged), "names": ["students.pt"]}
    journal = games / JOURNAL.format(key="s42-distill-breakout")

    def interrupted() -> None:
        if not staged.exists():
            staged.mkdir(parents=True)
            torch.save({"teacher_log_probs": torch.tensor([1.0]), "students": []}, staged / "students.pt")
        journal.write_text(json.dumps(record))

    interrupted()
    monkeypatch.setattr(atari, "ROOT", tmp_path)
    assert float(atari.load_students("breakout")["teacher_log_probs"]) == 1.0 and not journal.exists()
    torch.save({"teacher_log_probs": torch.tensor([0.0]), "students": []}, games / "students.pt")
    interrupted()
    assert settle_all(tmp_path / "results") == ["s42-distill-breakout"]
    assert float(torch.load(games / "students.pt", weights_only=True)["teacher_log_probs"]) == 1.0


def test_chain_results_and_every_stage_settle_first(tmp_path):
    """Section 4.2's report reads the games' folders through ``chain.load``; a stage settles every results folder
    before it validates its inputs (a half-installed teacher is finished, not refused, not read half-way)."""
    import yaml

    from sobolev.common.params import read_params
    from sobolev.distillation import chain
    from sobolev.pipeline import run_stage

    games = tmp_path / "results/distillation/games/breakout"
    staged = tmp_path / "results/.staging/s42-teacher-breakout-1-abc"
    games.mkdir(parents=True)
    staged.mkdir(parents=True)
    (staged / "teacher.pt").write_text("new")
    (staged / "teacher_training.json").write_text("{}")
    (games / "teacher.pt").write_text("old")
    journal = games / JOURNAL.format(key="s42-teacher-breakout")
    journal.write_text(json.dumps({"key": "s42-teacher-breakout", "staged": str(staged),
                                   "names": ["teacher.pt", "teacher_training.json"]}))  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(read_params()))  # the whole committed file: it is validated
    with pytest.raises(Exception, match="load"):  # record then fails to load the fake teacher: it got that far
        run_stage("s42-record", "breakout", tmp_path / "params.yaml", tmp_path, progress=False)
    assert (games / "teacher.pt").read_text() == "new" and not journal.exists()
    # chain.load: the journal of an unfinished distill install is finished before the CSVs are read
    other = tmp_path / "results/distillation/games/pong"
    staged = tmp_path / "results/.staging/s42-distill-pong-1-abc"
    for folder in (other, staged):
        folder.mkdir(parents=True)
    (other / "teacher.json").write_text(json.dumps({"game": "pong"}))
    for name, text in (("runs.csv", "x\n1\n"), ("curves.csv", "x\n1\n"), ("summary.json", "{}")):
        (staged / name).write_text(text)
    (other / JOURNAL.format(key="s42-distill-pong")).write_text(
        json.dumps(
            {"key": "s42-distill-pong", "staged": str(staged), "names": ["runs.csv", "curves.csv", "summary.json"]}
        )
    )
    data = chain.load(tmp_path / "results/distillation/games", ["pong"])
    assert data["runs"].x.tolist() == [1] and not list(other.glob(".installing-*"))
    assert os.path.exists(other / "summary.json")
