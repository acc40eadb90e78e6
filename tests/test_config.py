import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sobolev.config import ParamError, RegressionConfig, load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "override,message",
    [
        ({"functions": ["ackley", "rastrigin"]}, r"functions=.*entry 'rastrigin' is not one of ackley, beale"),
        ({"sizes": [20, 0]}, r"sizes\[\]=0: must be a positive integer"),
        ({"lrs": [1e-3, -1.0]}, r"lrs\[\]=-1.0: must be a positive finite number"),
        ({"steps": 1.5}, r"steps=1.5: must be a positive integer"),
        ({"seeds": True}, r"seeds=True: must be a positive integer"),
        ({"normalisations": ["raw", "zscore"]}, r"entry 'zscore' is not one of raw, standard"),
        ({"sweep_sizes": [50]}, r"sweep_sizes=\[50\]: entry 50 must be one of sizes"),
        ({"sweep_weights": [1.0]}, r"must not contain 1.0"),
        ({"device": "tpu"}, r"device='tpu'"),
        ({"lrs": []}, r"lrs=\[\]: must be a non-empty list"),
        ({"sizes": [20, 20]}, r"must not repeat an entry"),
    ],
)
def test_invalid_values_name_parameter_value_and_allowed(override, message):
    with pytest.raises(ParamError, match=message):
        RegressionConfig(**override)


def test_unknown_key_is_rejected():
    with pytest.raises(ParamError, match=r"unknown parameter\(s\) regression.learning_rate; allowed: batch_size"):
        RegressionConfig.from_dict({"learning_rate": 0.1})


def write_params(tmp_path, section, scale="default"):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"scale": scale, "regression": section}))
    return path


def test_scale_switch_applies_paper_overrides(tmp_path):
    section = {"steps": 10, "paper": {"steps": 99, "lrs": [3e-5]}}
    assert load_config(write_params(tmp_path, section), "regression").steps == 10
    cfg = load_config(write_params(tmp_path, section, "paper"), "regression")
    assert (cfg.steps, cfg.lrs) == (99, [3e-5])
    with pytest.raises(ParamError, match="invalid parameter scale='huge'"):
        load_config(write_params(tmp_path, section, "huge"), "regression")
    # A typo in the paper block fails at the default scale too, before any GPU time is spent.
    with pytest.raises(ParamError, match=r"steps=0"):
        load_config(write_params(tmp_path, {"paper": {"steps": 0}}), "regression")


def test_committed_params_are_valid_at_both_scales(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for scale in ("default", "paper"):
        path = tmp_path / f"{scale}.yaml"
        path.write_text(yaml.safe_dump({**params, "scale": scale}))
        cfg = load_config(path, "regression")
        assert cfg.functions == sorted(cfg.functions) and len(cfg.functions) == 7
        assert 10000 in cfg.sizes


def test_unknown_stage_is_rejected():
    from sobolev.stage import main

    assert main(["no_such_stage", "--defaults"]) == 2
    assert main(["no_such_stage"]) == 2


def test_stage_rejects_bad_params_before_starting_a_kernel(tmp_path):
    path = write_params(tmp_path, {"lrs": [0.0]})
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sobolev.stage", "regression", "--params", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "invalid parameter lrs[]=0.0: must be a positive finite number" in proc.stderr
    assert time.perf_counter() - start < 30
    assert not (ROOT / "results" / ".regression.staged").exists()


def test_stage_stops_at_once_when_cifar_is_missing(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        yaml.safe_dump(
            {"scale": "default", "synthetic": {"dataset": "cifar10", "cifar_path": str(tmp_path / "none.tar.gz")}}
        )
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sobolev.stage", "synthetic", "--params", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "CIFAR-10 archive not found" in proc.stderr and "dvc update data.dvc" in proc.stderr
    assert time.perf_counter() - start < 30
