"""The paper scale is known to start: every section's ``paper`` configuration from the committed
params.yaml, run on the CPU through the same code path with its step counts cut to a handful (and a
tiny fake CIFAR-10 archive / a local teacher zip where the paper scale reads external inputs), so
``dvc exp run -S scale=paper`` on a GPU does not fail on configuration or paths."""

import pandas as pd
import pytest
import torch
import yaml
from fakes import fake_archive

from sobolev.common.paths import ROOT
from sobolev.distillation.config import DistillationConfig
from sobolev.pipeline import run_stage
from sobolev.regression import compute as grid
from sobolev.regression.config import RegressionConfig
from sobolev.synthetic_gradients import compute
from sobolev.synthetic_gradients.config import SyntheticGradientsConfig
from sobolev.theory import report as theory
from sobolev.theory.config import TheoryConfig


def test_theory_paper_scale_starts():
    cfg = TheoryConfig.load("paper").replace(thm2_steps=3, net_steps=3, net_sizes=[8], identification_seeds=2)
    assert cfg.net_seeds == 10  # the paper block's value survives the cut
    part = theory.pl_networks(cfg)
    assert part.metrics["cells"] == len(cfg.meshes) and 0 <= part.metrics["sobolev_grad_share"] <= 1
    assert theory.theorem2(cfg).table["network error"].notna().all()


def test_regression_paper_scale_starts():
    cfg = RegressionConfig.load("paper")
    assert cfg.steps == 100_000 and 3e-5 in cfg.lrs
    assert cfg.seeds == [10, 10, 10] and "sobolev-standard" in cfg.arms
    cut = cfg.replace(steps=10, log_every=1, functions=["booth"], n_test=50, n_val=50, seeds=[2, 2, 2], sweep_seeds=2)
    result = grid.run_grid(cut, progress=False)
    assert len(result.runs) == len(grid.build_grid(cut)) and result.runs.test_mse.notna().all()
    cells = grid.paired_cells(grid.chosen_runs(result.runs))
    assert len(cells) == 3 * len(cut.sizes)  # sobolev-raw, sobolev-standard, balanced-standard


def test_synthetic_paper_scale_starts(tmp_path, monkeypatch):
    from functools import partial

    from sobolev.synthetic_gradients import cifar, data

    archive = fake_archive(tmp_path / "cifar-10-python.tar.gz", n=8)
    # The fake archive is not the official one: accept its own checksum instead of the pinned one.
    monkeypatch.setattr(data, "load_cifar10", partial(cifar.load_cifar10, expected=cifar.digests(archive)))
    cfg = SyntheticGradientsConfig.load("paper")
    assert cfg.dataset == "cifar10" and cfg.width_scale == 1.0
    with pytest.raises(FileNotFoundError, match=r"dvc update data\.dvc"):
        cfg.replace(cifar_path=str(tmp_path / "none.tar.gz")).check_inputs()
    cut = cfg.replace(steps=2, milestones=[1], log_every=1, variants=["no_backprop", "sobolev", "backprop"], seeds=1)
    data = compute.load_dataset(cut.dataset, str(archive))
    out = compute.train_variant("sobolev", data, 0, cut.steps, cut.batch_size, cut.lr, cut.milestones,
                                   cut.weight_decay, cut.sg_lr, cut.width_scale, augment_pad=4, augment_flip=True,
                                   log_every=cut.log_every)  # fmt: skip
    assert 0 <= out["test_accuracy"] <= 1 and len({c["cut"] for c in out["curve"]}) == 3


def test_distillation_paper_scale_starts(tmp_path):
    """The paper's hub teacher from a local zip (no internet here), recorded and distilled."""
    from stable_baselines3 import A2C

    from sobolev.distillation import atari

    torch.set_num_threads(2)
    zips = tmp_path / "zips"
    env = atari.make_env("breakout", seed=0)
    A2C("CnnPolicy", env, seed=0, device="cpu").save(zips / atari.hub_zip_name("breakout", "a2c"))
    env.close()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    section = params["distillation"]
    # Cut with the states: at 3 000 states the paper's 5% tuning fraction would hold a single episode.
    cut = {"teacher_dir": str(zips), "states": 3000, "max_iterations": 2, "eval_every": 1, "patience": 1, "seeds": 1,
           "eval_train_states": 100, "eval_states": 100, "fractions": [0.3, 0.5], "tune_fraction": 0.3}  # fmt: skip
    section["paper"] = {**section["paper"], **cut}
    section["games"] = ["breakout"]  # the one hub zip made above
    # the whole file is validated: Section 5.4 may read only the games Section 4.2 trains, at every scale
    params["deviations"] = {**params["deviations"], "atari_games": ["breakout"]}
    for block in ("ci", "paper"):
        if "atari_games" in params["deviations"].get(block, {}):
            params["deviations"][block] = {**params["deviations"][block], "atari_games": []}
    root = tmp_path / "repo"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump({**params, "scale": "paper"}))
    cfg = DistillationConfig.load(path=root / "params.yaml")
    assert cfg.teacher_source == "hub" and cfg.teacher_temperature == 1.0 and len(cfg.alphas) == 3
    assert cfg.teacher_gradients == "on_the_fly"  # stored Jacobians of the paper's states would not fit
    for step in ("s42-teacher", "s42-record", "s42-distill"):
        out = run_stage(step, "breakout", root / "params.yaml", root, progress=False)
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves.fraction) == set(cfg.fractions) and set(curves.method) == {"regular", "sobolev", "balanced"}
    runs = pd.read_csv(out / "runs.csv")  # the paper's grid: 3 lrs and 3 alphas per Sobolev arm, equal budgets
    assert runs[runs.role == "grid"].groupby("method").size().to_dict() == {"regular": 5, "sobolev": 5, "balanced": 5}
