"""The DVC pipeline agrees with the registry, the params and the committed results, and never loses them."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from sobolev import pipeline
from sobolev.common.params import ParamError, load_config
from sobolev.distillation.config import DistillationConfig
from sobolev.pipeline import STAGES, StageError, run_stage
from sobolev.regression.config import RegressionConfig
from sobolev.synthetic_gradients.config import SyntheticGradientsConfig
from sobolev.theory.config import TheoryConfig

ROOT = Path(__file__).resolve().parents[2]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = ROOT / "params.yaml"


def body(name):
    stage = DVC["stages"][name]
    return stage.get("do", stage)


def outs(name):
    entries = body(name).get("outs", []) + body(name).get("metrics", [])
    return {next(iter(o)): o[next(iter(o))] for o in entries}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_dvc_stage_matches_the_registry(name):
    stage, dvc = STAGES[name], body(name)
    item = " ${item}" if stage.foreach else ""
    assert dvc["cmd"] == f"python -m sobolev.pipeline run {name}{item}"
    assert ("foreach" in DVC["stages"][name]) == bool(stage.foreach)
    section = f"sobolev/{stage.section}"
    folders = {"sobolev/__init__.py", "sobolev/pipeline.py", "sobolev/core", "sobolev/common", section}
    assert folders <= set(dvc["deps"])
    if stage.notebook:
        assert stage.notebook in dvc["deps"] and (ROOT / stage.notebook).is_file()
    for dep in dvc["deps"]:
        if "${" not in dep and not dep.startswith("results/"):
            assert (ROOT / dep).exists(), dep
    assert "scale" in dvc["params"]
    assert all(p == stage.section or p.startswith(f"{stage.section}.") for p in dvc["params"] if p != "scale")
    out_dir = stage.out_dir.replace("{item}", "${item}")
    assert set(outs(name)) == {f"{out_dir}/{o}" for o in stage.outputs}
    assert all((f"{out_dir}/{i}") in dvc["deps"] for i in stage.inputs)


def test_every_output_persists_and_only_weights_are_cached():
    """persist: DVC must not delete results before a run (the pipeline replaces them on success)."""
    for name in STAGES:
        for path, opts in outs(name).items():
            assert (opts or {}).get("persist") is True, path
            # Weights and recordings to the DVC cache, except pinned inputs (the teachers): committed to git.
            expected_cache = path.endswith((".pt", ".zip")) and not path.endswith("/teacher.pt")
            assert (opts or {}).get("cache", True) is expected_cache, path


def test_staging_is_ignored_by_git_and_dvc():
    assert "results/.staging/" in (ROOT / ".gitignore").read_text().splitlines()
    dvcignore = (ROOT / ".dvcignore").read_text().splitlines()
    assert "results/.staging/" in dvcignore and "__pycache__/" in dvcignore


def test_committed_results_match_committed_params():
    cfg = RegressionConfig.load(path=PARAMS)
    metrics = json.loads((ROOT / "results/regression/metrics.json").read_text())
    derivative_arms = [a for a in cfg.arms if not a.startswith("regular")]
    assert set(metrics) == {*derivative_arms, "convergence"}
    for arm in derivative_arms:
        block = metrics[arm]
        assert set(block["decided"]) == {f"n{n}" for n in cfg.sizes}
        for fn in cfg.functions:
            for n, seeds in zip(cfg.sizes, cfg.seeds, strict=True):
                entry = block[fn][f"n{n}"]
                assert entry["seeds"] == seeds and entry["ratio_low"] <= entry["ratio"] <= entry["ratio_high"]
    cells = pd.read_csv(ROOT / "results/regression/cells.csv")
    assert len(cells) == len(derivative_arms) * len(cfg.functions) * len(cfg.sizes)
    executed = json.loads((ROOT / "results/regression/s41_regression.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and 'scale = "default"' in "".join(injected[0]["source"])
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_data_dvc_pins_cifar_by_published_checksum():
    spec = yaml.safe_load((ROOT / "data.dvc").read_text())
    assert spec["frozen"] is True  # never run by the offline `dvc repro`
    assert spec["outs"][0]["md5"] == "c58f30108f718f92721af3b95e74349a"


def test_committed_theory_results_match_committed_params():
    cfg = TheoryConfig.load(path=PARAMS)
    m = json.loads((ROOT / "results/theory/metrics.json").read_text())
    assert sorted({r["d"] for r in m["proposition1"]}) == sorted(cfg.prop1_dims)
    assert len(m["polynomials"]) == cfg.poly_max_degree
    assert {r["d"] for r in m["identification"]} == {d for d, _ in cfg.meshes}
    nets = m["pl_networks"]
    assert nets["cells"] == len(cfg.meshes) * len(cfg.net_sizes) and 0 <= nets["sobolev_grad_share"] <= 1
    assert {r["n_train"] for r in nets["ratios"]} == set(cfg.net_sizes)


def test_committed_differential_results_match_committed_params():
    from sobolev.differential.config import DifferentialConfig

    cfg = DifferentialConfig.load(path=PARAMS)
    m = json.loads((ROOT / "results/differential/metrics.json").read_text())
    expected = {f"{p}/n{n}/{q}" for p in cfg.problems for n in cfg.sizes(p) for q in ("value", "delta")}
    assert set(m["rmse_x100"]) == expected
    cells = m["rmse_x100"].values()
    assert all(c["seeds"] == cfg.seeds and c["ratio_low"] <= c["ratio"] <= c["ratio_high"] for c in cells)
    runs = pd.read_csv(ROOT / "results/differential/runs.csv")
    assert len(runs) == 2 * cfg.seeds * sum(len(cfg.sizes(p)) for p in cfg.problems)


def test_committed_trust_results_match_committed_params():
    from sobolev.trust.compute import ADAM, FROMAGE, build_runs
    from sobolev.trust.config import TrustConfig

    cfg = TrustConfig.load(path=PARAMS)
    m = json.loads((ROOT / "results/trust/metrics.json").read_text())
    expected = {f"{arm}/{norm}/{f}/n{n}" for arm in (ADAM, FROMAGE) for norm in cfg.grid_normalisations
                for f in cfg.functions for n in cfg.sizes}  # fmt: skip
    assert set(m["sobolev_over_regular"]) == expected
    seeds = dict(zip(cfg.sizes, cfg.seeds, strict=True))
    for key, c in m["sobolev_over_regular"].items():
        assert c["seeds"] == seeds[int(key.rsplit("/n", 1)[1])] and c["low"] <= c["ratio"] <= c["high"]
    assert len(m["good_range"]) == len(cfg.sweep_normalisations) * len(cfg.sweep_functions) * 2 * len(
        cfg.sweep_optimisers
    )
    assert {float(k.split("/eps")[1]) for k in m["relative_trust"]} == set(cfg.trust_eps)
    assert len(pd.read_csv(ROOT / "results/trust/runs.csv")) == len(build_runs(cfg))


def test_committed_feature_results_match_committed_params():
    from sobolev.features.config import FeaturesConfig

    cfg = FeaturesConfig.load(path=PARAMS)
    m = json.loads((ROOT / "results/features/metrics.json").read_text())
    assert set(m["curve"]) == {f"{f}/K{k}" for f in cfg.functions for k in cfg.every}
    assert all(c["low"] <= c["ratio"] <= c["high"] for c in m["curve"].values())
    runs = pd.read_csv(ROOT / "results/features/runs.csv")
    assert len(runs) == len(cfg.functions) * cfg.seeds * 2 * len(cfg.every) * len(cfg.checkpoints)
    assert set(m["digits_kl"]) == {f"K{k}" for k in cfg.every}
    digits = pd.read_csv(ROOT / "results/features/digits.csv")
    assert len(digits) == cfg.class_seeds * 2 * len(cfg.every) * len(cfg.checkpoints)


def test_committed_deviations_results_match_committed_params():
    from sobolev.deviations.compute import jobs
    from sobolev.deviations.config import DeviationsConfig

    cfg = DeviationsConfig.load(path=PARAMS)
    m = json.loads((ROOT / "results/deviations/metrics.json").read_text())
    assert m["settings"]["student_widths"] == cfg.student_widths and m["settings"]["seeds"] == cfg.seeds
    runs = pd.read_csv(ROOT / "results/deviations/runs.csv")
    assert len(runs) == 2 * len(jobs(cfg))  # every student on train and test inputs
    assert {r["width"] for r in m["summary"]} == set(cfg.student_widths)
    assert {r["switch_at"] for r in m["switch"]} == {0.0, *cfg.switch_at}


def test_committed_inexact_results_match_committed_params():
    from sobolev.inexact.config import InexactConfig

    cfg = InexactConfig.load(path=PARAMS)
    noise = pd.read_csv(ROOT / "results/inexact/noise_runs.csv")
    arms = 1 + len(cfg.noise_levels) * len(cfg.noise_lams)
    assert len(noise) == len(cfg.noise_functions) * arms * cfg.noise_seeds
    assert set(noise.function) == set(cfg.noise_functions) and (noise.points == cfg.noise_points).all()
    budget = pd.read_csv(ROOT / "results/inexact/budget_runs.csv")
    assert set(budget.function) == set(cfg.budget_functions) and sorted(set(budget.budget)) == cfg.budgets
    for m, seeds in zip(cfg.budgets, cfg.budget_seeds, strict=True):
        assert (budget[budget.budget == m].groupby(["function", "method"]).seed.nunique() == seeds).all()
    m = json.loads((ROOT / "results/inexact/metrics.json").read_text())
    assert len(m["noise"]["crossings"]) == len(cfg.noise_functions) * len(cfg.noise_lams)
    assert {(g["dim"], g["budget"]) for g in m["budget"]["guidance"]} == {
        (d, b) for d in set(budget.dim) for b in cfg.budgets
    }


def test_committed_synthetic_results_match_committed_params():
    cfg = SyntheticGradientsConfig.load(path=PARAMS)
    m = json.loads((ROOT / "results/synthetic_gradients/metrics.json").read_text())
    assert m["dataset"] == cfg.dataset and m["settings"]["sg_loss"] == cfg.sg_loss
    rows = {r["variant"]: r for r in m["table"]}
    assert set(rows) == set(cfg.variants)
    assert all(r["seeds"] == cfg.seeds and len(r["per_seed"]) == cfg.seeds for r in rows.values())
    assert len(m["runs"]) == len(cfg.variants) * cfg.seeds
    assert len(m["ordering"]) == len(cfg.variants) - 1
    runs = pd.read_csv(ROOT / "results/synthetic_gradients/runs.csv")
    assert len(runs) == len(cfg.variants) * cfg.seeds


def test_committed_distillation_results_match_committed_params():
    cfg = DistillationConfig.load(path=PARAMS)
    m = json.loads((ROOT / "results/distillation/report/metrics.json").read_text())
    assert [t["game"] for t in m["teachers"]] == cfg.games
    cells = {(r["game"], r["fraction"], r["method"]) for r in m["selected"]}
    methods = ("regular", *cfg.arms)
    assert cells == {(g, f, meth) for g in cfg.games for f in cfg.fractions for meth in methods}
    assert all(r["seeds"] == cfg.seeds for r in m["selected"])
    largest = max(len(alphas) for alphas in cfg.arms.values())
    for r in m["chosen"]:
        alphas = cfg.arms.get(r["method"])
        if alphas is not None:
            assert r["lr"] in cfg.lrs and r["alpha"] in alphas
        # Equal budgets, every seed: each arm its lrs then its other α; regular as many as the largest arm.
        configs = len(cfg.lrs) + (largest if alphas is None else len(alphas)) - 1
        assert r["tuning runs"] == configs * cfg.seeds
    for game in cfg.games:  # the pinned teacher is the one the params describe
        info = torch.load(ROOT / f"results/distillation/games/{game}/teacher.pt", weights_only=True)
        assert (info["game"], info["env_steps"], info["algo"]) == (game, cfg.teacher_steps, cfg.teacher_algo)


# --- nothing lost: bad params, failures and kills leave the results as they were ---------------
def fake_root(tmp_path: Path, params: dict | None = None) -> Path:
    """A repository root with committed-looking results for the registry's stages."""
    root = tmp_path / "repo"
    for name, stage in STAGES.items():
        out = root / stage.out_dir.format(item="breakout")
        out.mkdir(parents=True, exist_ok=True)
        for o in stage.outputs:
            (out / o).write_text(f"committed {name}/{o}")
    (root / "params.yaml").write_text(yaml.safe_dump(params or yaml.safe_load(PARAMS.read_text())))
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every result file's text, staging excluded."""
    files = sorted(p for p in (root / "results").rglob("*") if p.is_file() and ".staging" not in p.parts)
    return {str(p.relative_to(root)): p.read_text() for p in files}


@pytest.mark.parametrize(
    "name",
    [
        "s41-regression",
        "s43-synthetic-gradients",
        "s3-theory",
        "s42-report",
        "s42-teacher",
        "s51-differential-ml",
        "s52-relative-trust",
        "s53-feature-updates",
        "s54-student-teacher",
        "s55-inexact-derivatives",
    ],
)
def test_invalid_params_leave_results_untouched(tmp_path, name):
    params = yaml.safe_load(PARAMS.read_text())
    section = STAGES[name].section
    params[section] = {**params[section], "threads": -1}
    root = fake_root(tmp_path, params)
    before = snapshot(root)
    with pytest.raises(ParamError, match=rf"{section}.threads=-1"):
        run_stage(name, "breakout" if STAGES[name].foreach else None, root / "params.yaml", root)
    assert snapshot(root) == before and not (root / "results/.staging").exists()


def test_step_stages_check_their_item_and_inputs(tmp_path):
    root = fake_root(tmp_path)
    (root / "results/distillation/games/breakout/teacher.pt").unlink()
    with pytest.raises(StageError, match=r"needs one of distillation.games \['breakout', 'space_invaders'\], got"):
        run_stage("s42-record", "pong", root / "params.yaml", root)
    with pytest.raises(FileNotFoundError, match=r"has no \['teacher.pt'\]: run the earlier stages first"):
        run_stage("s42-record", "breakout", root / "params.yaml", root)
    with pytest.raises(StageError, match="unknown stage"):
        run_stage("no_such_stage", None, root / "params.yaml", root)


FAKE_STEP = """
import sys, time
from pathlib import Path
from sobolev import pipeline

def step(cfg, item, src, dst, progress):
    Path(dst, "curves.csv").write_text("new, half written")
    if sys.argv[1] == "hang":
        print("writing", flush=True)
        time.sleep(60)
    if sys.argv[1] == "fail":
        raise RuntimeError("the step failed")
    for name in ("runs.csv", "summary.json", "students.pt"):
        Path(dst, name).write_text("new")

OUTPUTS = {"step": ("curves.csv", "runs.csv", "summary.json", "students.pt")}

if __name__ == "__main__":
    pipeline.STAGES["s42-distill"] = pipeline.Stage(
        "distillation", "results/distillation/games/{item}", step="fake_step:step", foreach="games")
    pipeline.run_stage("s42-distill", "breakout", Path(sys.argv[2]) / "params.yaml", Path(sys.argv[2]))
"""


def run_fake(tmp_path: Path, root: Path, mode: str) -> subprocess.Popen:
    (tmp_path / "fake_step.py").write_text(textwrap.dedent(FAKE_STEP))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.Popen([sys.executable, str(tmp_path / "fake_step.py"), mode, str(root)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_kill_or_a_failure_mid_stage_leaves_results_untouched(tmp_path):
    root = fake_root(tmp_path)
    before = snapshot(root)
    proc = run_fake(tmp_path, root, "hang")
    assert proc.stdout.readline().strip() == "writing"  # the step has written half of its outputs
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert snapshot(root) == before  # outputs untouched; the half-written file is in the run's own staging folder
    staged = [p.parent.name for p in (root / "results/.staging").glob("*/curves.csv")]
    assert len(staged) == 1 and staged[0].startswith(f"s42-distill-breakout-{proc.pid}-")
    failed = run_fake(tmp_path, root, "fail")
    assert failed.wait() != 0 and "the step failed" in failed.stderr.read()
    assert snapshot(root) == before and not (root / "results/.staging").exists()  # cleaned on the next run
    assert run_fake(tmp_path, root, "ok").wait() == 0
    after = snapshot(root)
    games = "results/distillation/games/breakout"
    assert after[f"{games}/curves.csv"] == "new, half written" and after[f"{games}/summary.json"] == "new"
    assert after[f"{games}/teacher.pt"] == before[f"{games}/teacher.pt"]  # other stages' outputs stay
    assert not (root / "results/.staging").exists()


def test_each_run_stages_into_its_own_folder_and_clears_only_dead_runs_folders(tmp_path):
    staging = tmp_path / ".staging"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = staging / f"distill-breakout-{dead.stdout.strip()}-abc"  # a killed run's leftovers
    alive = staging / f"distill-breakout-{os.getppid()}-def"  # a concurrent run, still going
    for folder in (left, alive):
        folder.mkdir(parents=True)
    first, second = (
        pipeline._staging_folder(staging, "distill-breakout"),
        pipeline._staging_folder(staging, "distill-breakout"),
    )
    assert first != second and first.is_dir() and second.is_dir()
    assert not left.exists() and alive.exists()


def test_install_locks_and_journals_are_ignored_by_git():
    """The install's lock and journal (tests/common/test_install.py) never reach git."""
    ignored = (ROOT / ".gitignore").read_text()
    assert ".installing-*" in ignored and ".install.lock" in ignored


def test_an_unwritable_results_folder_fails_before_any_work(tmp_path):
    root = fake_root(tmp_path)
    out = root / "results/differential"
    shutil.rmtree(out)
    out.write_text("a file where the results folder should be")
    start = time.perf_counter()
    with pytest.raises(StageError, match=r"cannot write the stage's outputs to .*results/differential"):
        run_stage("s51-differential-ml", None, root / "params.yaml", root)
    assert time.perf_counter() - start < 5 and not (root / "results/.staging").exists()


def test_outputs_are_world_readable(tmp_path):
    from sobolev.common.utils import atomic_save, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_save({"x": 1}, tmp_path / "b.pt")
        for name in ("a.txt", "b.pt"):
            assert (tmp_path / name).stat().st_mode & 0o044 == 0o044, name
    finally:
        os.umask(old)


def test_cli_reports_bad_params_before_any_work(tmp_path):
    """The command DVC runs exits 2 with the message, in seconds, leaving nothing behind."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sobolev.pipeline", "run", "s41-regression", "extra"], capture_output=True, text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and "stage s41-regression takes no item" in proc.stderr
    assert time.perf_counter() - start < 60
    assert load_config(RegressionConfig, path=PARAMS)  # the committed params are fine


@pytest.mark.parametrize("key", ["foo", 1, None, True])
def test_run_refuses_unknown_top_level_keys_as_check_does(tmp_path, key):
    """`check` refused them while `run` (and so `dvc repro`) started computing: one validation for both."""
    params = {**yaml.safe_load(PARAMS.read_text()), key: 1}
    root = fake_root(tmp_path, params)
    before = snapshot(root)
    with pytest.raises(StageError, match=r"unknown top-level key\(s\)"):
        pipeline.check_params(root / "params.yaml")
    with pytest.raises(StageError, match=r"unknown top-level key\(s\)"):
        run_stage("s51-differential-ml", None, root / "params.yaml", root)
    assert snapshot(root) == before and not (root / "results/.staging").exists()


def test_a_failed_experiments_notebook_is_kept_where_it_survives(tmp_path):
    """`dvc exp run --temp` computes in <repo>/.dvc/tmp/exps/..., which DVC deletes afterwards: a failed notebook is
    kept in the main workspace's staging folder instead, and the message names that place."""
    temp = tmp_path / "repo/.dvc/tmp/exps/standalone/tmpabc"
    temp.mkdir(parents=True)
    assert pipeline.surviving_staging(temp) == tmp_path / "repo/results/.staging"
    assert pipeline.surviving_staging(tmp_path / "repo") == tmp_path / "repo/results/.staging"


def test_a_second_clone_run_with_safe_path_is_refused(tmp_path):
    """With `python -P` (PYTHONSAFEPATH) a second clone's command imports the first clone's editable install and
    would compute with its code and params: refused, naming both trees."""
    other = tmp_path / "clone"
    (other / "sobolev").mkdir(parents=True)
    (other / "sobolev/__init__.py").write_text("")
    (other / "dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(StageError, match=r"started in the workspace .*clone but runs the sobolev package of"):
        pipeline.check_workspace(other / "sobolev")
    pipeline.check_workspace(ROOT / "notebooks")  # this workspace's own code: fine
    pipeline.check_workspace(tmp_path)  # outside any workspace: fine
    proc = subprocess.run([sys.executable, "-P", "-m", "sobolev.pipeline", "check"], cwd=other, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 2 and "PYTHONSAFEPATH" in proc.stderr and "Traceback" not in proc.stderr


def test_an_interrupted_stage_says_so_in_one_line(monkeypatch, capsys):
    def interrupted(*_, **__):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_stage", interrupted)
    assert pipeline.main(["run", "s51-differential-ml"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["s51-differential-ml: interrupted; nothing was installed, the results are as they were"]


def test_a_ctrl_c_during_the_install_waits_for_it():
    done = []
    with pytest.raises(KeyboardInterrupt), pipeline._interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        done.append("the install went on")
    assert done == ["the install went on"]
