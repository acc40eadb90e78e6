"""params.yaml is the one source of every value; bad values fail fast, naming the key as written."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sobolev.common.params import SCALES, ParamError, load_config
from sobolev.pipeline import SECTIONS, check_params, config_class
from sobolev.regression.config import RegressionConfig

ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def write(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def with_regression(tmp_path: Path, scale: str = "default", **changes) -> Path:
    section = {**PARAMS["regression"], **changes}
    return write(tmp_path, {**PARAMS, "scale": scale, "regression": section})


@pytest.mark.parametrize(
    "change,message",
    [
        ({"functions": ["ackley", "rastrigin"]}, r"regression.functions\[1\]='rastrigin': must be one of ackley"),
        ({"sizes": [20, 0]}, r"regression.sizes\[1\]=0: must be an integer in \[1, "),
        ({"lrs": [1e-3, -1.0]}, r"regression.lrs\[1\]=-1.0: must be a finite number in \(0, 1e\+06\]"),
        ({"steps": 1.5}, r"regression.steps=1.5: must be an integer"),
        ({"seeds": True}, r"regression.seeds=True: must be a non-empty list"),
        ({"seeds": [10, True, 5]}, r"regression.seeds\[1\]=True: must be an integer"),
        ({"seeds": [10, 5]}, r"regression.seeds=\[10, 5\]: must give one seed count per entry of sizes"),
        ({"arms": ["regular-raw", "zscore"]}, r"regression.arms\[1\]='zscore': must be one of regular-raw"),
        ({"arms": ["sobolev-raw"]}, r"arms=\['sobolev-raw'\]: 'sobolev-raw' needs its baseline 'regular-raw'"),
        ({"sweep_arms": ["regular-raw"]}, r"entry 'regular-raw' must be a derivative-matching arm"),
        ({"sweep_seeds": 11}, r"regression.sweep_seeds=11: must be at most the 10 seeds at size 100"),
        ({"schedule": "step"}, r"regression.schedule='step': must be one of constant, cosine"),
        ({"dtype": "float16"}, r"regression.dtype='float16': must be one of float32, float64"),
        ({"sweep_sizes": [50]}, r"regression.sweep_sizes=\[50\]: entry 50 must be one of sizes"),
        ({"sweep_weights": [1.0]}, r"must not contain 1.0"),
        ({"device": "tpu"}, r"regression.device='tpu'"),
        ({"lrs": []}, r"regression.lrs=\[\]: must be a non-empty list"),
        ({"sizes": [20, 20]}, r"must not repeat an entry"),
        ({"steps": 10**12}, r"regression.steps=1000000000000: must be an integer in \[10, 10,000,000\]"),
        ({"threads": 10**6}, r"regression.threads=1000000"),
        ({"lrs": [float("nan")]}, r"regression.lrs\[0\]=nan: must be a finite number"),
    ],
)
def test_invalid_values_name_key_value_and_allowed(tmp_path, change, message):
    with pytest.raises(ParamError, match=message):
        RegressionConfig.load(path=with_regression(tmp_path, **change))


def test_errors_inside_a_scale_block_name_that_block(tmp_path):
    paper = {**PARAMS["regression"]["paper"], "steps": 0}
    with pytest.raises(ParamError, match=r"invalid parameter regression.paper.steps=0"):
        RegressionConfig.load(path=with_regression(tmp_path, paper=paper))  # the default scale is being loaded
    with pytest.raises(ParamError, match=r"regression.ci.lrs=\[\]"):
        RegressionConfig.load(path=with_regression(tmp_path, ci={"lrs": []}))
    with pytest.raises(ParamError, match=r"unknown parameter\(s\) regression.paper.learning_rate"):
        RegressionConfig.load(path=with_regression(tmp_path, paper={"learning_rate": 1}))


@pytest.mark.parametrize("block", [[1, 2], "fast", 3])
def test_a_scale_block_that_is_not_a_mapping_is_a_clear_error(tmp_path, block):
    with pytest.raises(ParamError, match=r"invalid parameter regression.paper=.*must be a mapping of overrides"):
        RegressionConfig.load(path=with_regression(tmp_path, paper=block))


def test_malformed_files_are_clear_errors(tmp_path):
    with pytest.raises(ParamError, match="needs a mapping named 'regression', got list"):
        RegressionConfig.load(path=write(tmp_path, {**PARAMS, "regression": [1, 2]}))
    tabbed = tmp_path / "tab.yaml"
    tabbed.write_text("scale: default\nregression:\n\tsteps: 3\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        RegressionConfig.load(path=tabbed)
    with pytest.raises(ParamError, match="must be a mapping of sections"):
        RegressionConfig.load(path=write(tmp_path, [1, 2]))
    with pytest.raises(ParamError, match="no params file"):
        RegressionConfig.load(path=tmp_path / "none.yaml")


def test_a_deleted_key_is_an_error_not_a_hidden_default(tmp_path):
    section = {k: v for k, v in PARAMS["regression"].items() if k != "steps"}
    path = write(tmp_path, {**PARAMS, "regression": section})
    with pytest.raises(ParamError, match=r"missing parameter\(s\) regression.steps"):
        RegressionConfig.load(path=path)


@pytest.mark.parametrize("section", SECTIONS)
def test_config_dataclasses_have_no_defaults(section):
    """No value can come from anywhere but params.yaml: no field has a default."""
    fields = dataclasses.fields(config_class(section))
    assert fields and all(
        f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING for f in fields
    ), [f.name for f in fields if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("scale", SCALES)
def test_committed_params_hold_every_field_at_every_scale(section, scale):
    cfg = load_config(config_class(section), scale, ROOT / "params.yaml")
    base = {k: v for k, v in PARAMS[section].items() if k not in ("ci", "paper")}
    override = PARAMS[section].get(scale, {}) if scale != "default" else {}
    assert cfg.to_dict() == {**base, **override}  # every value, exactly as written (1 == 1.0)


def test_scale_switch_applies_the_block(tmp_path):
    for scale in ("paper", "ci"):
        cfg = RegressionConfig.load(path=with_regression(tmp_path, scale))
        assert cfg.steps == PARAMS["regression"][scale]["steps"]
    with pytest.raises(ParamError, match="invalid parameter scale='huge'"):
        RegressionConfig.load(path=with_regression(tmp_path, "huge"))


def test_a_gpu_device_on_a_machine_without_one_is_rejected(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParamError, match=r"regression.device='cuda': no CUDA device is available here"):
        RegressionConfig.load(path=with_regression(tmp_path, device="cuda"))


def test_distillation_games_cannot_change_with_the_scale(tmp_path):
    section = {**PARAMS["distillation"], "paper": {**PARAMS["distillation"]["paper"], "games": ["pong"]}}
    with pytest.raises(ParamError, match=r"distillation.paper.games: games is read from distillation.games by DVC"):
        check_params(write(tmp_path, {**PARAMS, "distillation": section}))


def test_unknown_top_level_section_is_rejected(tmp_path):
    from sobolev.pipeline import StageError

    with pytest.raises(StageError, match=r"unknown top-level key\(s\) \['regresion'\]"):
        check_params(write(tmp_path, {**PARAMS, "regresion": {}}))


def test_check_command_validates_the_committed_params():
    proc = subprocess.run([sys.executable, "-m", "sobolev.pipeline", "check"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "params.yaml is valid" in proc.stdout


def test_params_fuzz_gives_a_clear_message_naming_the_key_for_every_invalid_value(tmp_path):
    """About 3 800 invalid files, one mutation at a time, in every section (tests/common/params_fuzz.py): no
    traceback, none accepted, the key named, the message short; the file-level mutations (unknown top-level keys,
    deep nesting, aliases, huge lists and files, values invalid at another scale) refused by `check` and by `run`
    alike, before any computing."""
    from params_fuzz import run

    counts = run(tmp_path)
    assert counts["check: tried"] > 3000 and counts["file-level cases"] >= 17 and counts["run: tried"] >= 17
    bad = [k for k, v in counts.items() if v and k.split(": ")[-1] in
           ("traceback", "accepted invalid", "wrong key named", "message too long")]  # fmt: skip
    assert not bad and counts["check and run differ"] == 0, counts


COMMITTED = (Path(__file__).resolve().parents[2] / "params.yaml").read_text()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("scale: default\n", "", 1), r"scale.*is missing from params.yaml"),
        (lambda t: t + "scale: ci\n", r"duplicate key 'scale' on lines \d+ and \d+"),
        (lambda t: t.replace("  steps: 550", "  steps: 0550", 1), r"'0550' is an integer in a form YAML reads"),
        (lambda t: t.replace("  steps: 550", "  steps: 9:10", 1), r"'9:10' is an integer in a form YAML reads"),
        (lambda t: t.replace("  steps: 550", "  steps: " + "9" * 400, 1), r"regression.steps=9{18}\.\.\.9{19}: "),
        (lambda t: t.replace("  warmup: 0.05", "  warmup: " + "9" * 400, 1), r"warmup=9{18}\.\.\.9{19}: .*finite"),
        (lambda t: t.replace("  steps: 550", "  1: a\n  b: 2\n  steps: 550", 1), r"unknown parameter\(s\) "),
        (lambda t: t.replace("basket1,", "basket²,", 1), r"differential.problems"),
        (lambda t: t.replace("basket1,", "basket07,", 1), r"differential.problems"),
        (lambda t: t.replace("atari_games: [", "atari_games: [bogus, ", 1), r"atari_games=.*\['bogus'\] not in"),
    ],
    ids=[
        "no scale",
        "duplicate key",
        "octal",
        "sexagesimal",
        "huge int",
        "huge int float key",
        "mixed-type keys",
        "superscript digit",
        "leading zero",
        "unknown game",
    ],
)
def test_file_content_fuzz_holes_are_clear_errors(tmp_path, edit, message):
    """Issue 29's fuzz holes: each gives a ParamError naming the problem, never a traceback or a silent value."""
    path = tmp_path / "params.yaml"
    text = edit(COMMITTED)
    assert text != COMMITTED
    path.write_text(text)
    with pytest.raises(ParamError, match=message):
        check_params(path)


def test_unreadable_files_and_yaml_12_numbers(tmp_path):
    from sobolev.common.params import read_params

    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00scale")
    with pytest.raises(ParamError, match="is not UTF-8 text"):
        read_params(tmp_path / "bin.yaml")
    with pytest.raises(ParamError, match="is a directory"):
        read_params(tmp_path)
    (tmp_path / "n.yaml").write_text("a: 1e-3\nb: 3E-3\nc: 1e4\nd: *undefined\n")
    with pytest.raises(ParamError, match=r"line 4: YAML anchors and aliases .* are not allowed") as err:
        read_params(tmp_path / "n.yaml")
    assert "tab" not in str(err.value)  # the tab hint only where a tab is
    (tmp_path / "n.yaml").write_text("a: 1e-3\nb: 3E-3\nc: 1e4\n")
    assert read_params(tmp_path / "n.yaml") == {"a": 0.001, "b": 0.003, "c": 10000.0}
