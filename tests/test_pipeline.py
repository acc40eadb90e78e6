"""The DVC pipeline's declarations agree with the code, the params and the committed results."""

import json
from pathlib import Path

import yaml

from sobolev.config import load_config
from sobolev.stage import STAGES

ROOT = Path(__file__).resolve().parent.parent
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def outs(stage):
    return [next(iter(o)) if isinstance(o, dict) else o for o in DVC["stages"][stage].get("outs", [])]


def test_every_stage_runs_its_notebook_with_its_params():
    for name, (notebook, out) in STAGES.items():
        stage = DVC["stages"][name]
        assert stage["cmd"] == f"python -m sobolev.stage {name}"
        assert notebook in stage["deps"] and (ROOT / notebook).is_file()
        assert {"scale", name} <= set(stage["params"])
        assert f"{out}/{Path(notebook).name}" in outs(name)
        for dep in stage["deps"]:
            assert (ROOT / dep).exists(), dep


def test_results_shown_in_git_are_not_cached():
    for name in STAGES:
        for o in DVC["stages"][name]["outs"] + DVC["stages"][name]["metrics"]:
            path, opts = next(iter(o.items())) if isinstance(o, dict) else (o, {})
            expected_cache = path.endswith(".pt")  # checkpoints go to the DVC cache, the rest to git
            assert opts.get("cache", True) is expected_cache, path


def test_committed_results_match_committed_params():
    cfg = load_config(ROOT / "params.yaml", "regression")
    metrics = json.loads((ROOT / "results/regression/metrics.json").read_text())
    for setting in ("faithful", "tuned"):
        block = metrics[setting]
        assert set(block["sobolev_wins"]) == {f"n{n}" for n in cfg.sizes}
        assert block["n_functions"] == len(cfg.functions)
        for fn in cfg.functions:
            for n in cfg.sizes:
                entry = block[fn][f"n{n}"]
                assert entry["sobolev"]["test_mse"] > 0 and entry["regular"]["test_mse"] > 0
                assert entry["sobolev"]["lr"] in cfg.lrs and entry["regular"]["lr"] in cfg.lrs
    executed = json.loads((ROOT / "results/regression/s41_regression.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and f"steps = {cfg.steps}" in "".join(injected[0]["source"])
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_data_dvc_pins_cifar_by_published_checksum():
    spec = yaml.safe_load((ROOT / "data.dvc").read_text())
    assert spec["frozen"] is True  # never run by the offline `dvc repro`
    assert spec["outs"][0]["md5"] == "c58f30108f718f92721af3b95e74349a"


def test_readme_tables_are_generated_from_committed_metrics():
    from sobolev.report import blocks, render

    readme = (ROOT / "README.md").read_text()
    assert render(readme, blocks()) == readme, "README results are stale: run `python -m sobolev.report`"


def test_committed_theory_results_match_committed_params():
    cfg = load_config(ROOT / "params.yaml", "theory")
    m = json.loads((ROOT / "results/theory/metrics.json").read_text())
    assert sorted({r["d"] for r in m["proposition1"]}) == sorted(cfg.prop1_dims)
    assert len(m["polynomials"]) == cfg.poly_max_degree
    assert {r["d"] for r in m["identification"]} == {d for d, _ in cfg.meshes}
    assert m["pl_networks"]["n_dimensions"] == len(cfg.meshes)
    assert set(m["pl_networks"]["sobolev_wins"]) == {f"n{n}" for n in cfg.net_sizes}
    corrected = [r for r in m["proposition1"] if r["construction"].startswith("corrected")]
    assert max(r["max |∇h − g|"] for r in corrected) < 1e-9


def test_committed_synthetic_results_match_committed_params():
    cfg = load_config(ROOT / "params.yaml", "synthetic")
    m = json.loads((ROOT / "results/synthetic/metrics.json").read_text())
    assert m["dataset"] == cfg.dataset
    rows = {r["variant"]: r for r in m["table"]}
    assert set(rows) == set(cfg.variants)
    assert all(r["seeds"] == cfg.seeds and 0 <= r["ours mean"] <= 100 for r in rows.values())
    assert rows["backprop"]["ours mean"] > rows["no_backprop"]["ours mean"]


def test_distillation_chain_is_declared_per_game():
    from sobolev.distill_stage import STEPS

    cfg = load_config(ROOT / "params.yaml", "distillation")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for step in STEPS:
        stage = DVC["stages"][step]
        assert stage["foreach"] == "${distillation.games}"
        assert stage["do"]["cmd"] == f"python -m sobolev.distill_stage {step} ${{item}}"
    assert params["distillation"]["games"] == cfg.games  # foreach sees what the config sees
    # The notebook stage depends on the whole chain's folder, so any game's change re-runs it.
    assert "results/distillation/games" in DVC["stages"]["distillation"]["deps"]


def test_committed_distillation_results_match_committed_params():
    cfg = load_config(ROOT / "params.yaml", "distillation")
    m = json.loads((ROOT / "results/distillation/report/metrics.json").read_text())
    assert [t["game"] for t in m["teachers"]] == cfg.games
    cells = {(r["game"], r["fraction"], r["method"]) for r in m["final"]}
    assert cells == {(g, f, meth) for g in cfg.games for f in cfg.fractions for meth in ("regular", "sobolev")}
    for r in m["chosen"]:
        if r["method"] == "sobolev":
            assert r["lr"] in cfg.lrs and r["alpha"] in cfg.alphas
        assert r["tuning runs"] == len(cfg.lrs) + len(cfg.alphas) - 1  # equal budgets
    assert all(t["peaked"] for t in m["teachers"])  # the issue: entropy <= 0.7 log|A|
