"""Section 5.3 (iterative linearisation): the run grid, the curve statistics, the verdicts."""

import json

import numpy as np
import pandas as pd
import pytest

from sobolev.common.params import ParamError, read_params
from sobolev.features import classification, compute, report
from sobolev.features.config import OUTPUTS, FeaturesConfig

SECTION = {k: v for k, v in read_params()["features"].items() if k not in ("ci", "paper")}


def tiny(**changes) -> FeaturesConfig:
    values = {**SECTION, "functions": ["booth", "beale"], "seeds": 3, "steps": 24, "every": [1, 6, 24],
              "checkpoints": [12, 24], "hidden": 16, "phase_function": "booth", "n_test": 100,
              "class_train": 60, "class_seeds": 3, "class_hidden": 16, "class_teacher_steps": 150, "class_lr": 0.01,
              "threads": 1, "log_every": 12}  # fmt: skip
    return FeaturesConfig.from_values({**values, **changes})


def test_rounds_count_the_anchors():
    assert compute.rounds(512, 1) == 512 and compute.rounds(512, 512) == 1 and compute.rounds(512, 1000) == 1
    assert compute.rounds(100, 30) == 4


def test_config_errors_name_the_parameter():
    with pytest.raises(ParamError, match=r"features.every=\[2, 24\]: must start at 1"):
        tiny(every=[2, 24])
    with pytest.raises(ParamError, match=r"features.checkpoints=\[12\]: must end at steps"):
        tiny(checkpoints=[12])
    with pytest.raises(ParamError, match=r"features.phase_function='ackley': must be one of functions"):
        tiny(phase_function="ackley")


def test_run_all_records_every_run_at_every_checkpoint_and_the_report_decides(tmp_path):
    cfg = tiny()
    runs = compute.run_all(cfg, progress=False)
    assert len(runs) == 2 * 3 * 2 * 3 * 2  # functions x seeds x losses x K x checkpoints
    assert np.isfinite(runs.test_mse).all()
    end = compute.final(runs)
    assert set(end.rounds) == {24, 4, 1}
    # the same initial weights and data for every K: at K = steps the features never move, and the
    # first update of every K is the same, so all runs of a seed start from one network
    table = compute.curve(runs)
    assert len(table) == 2 * 3 and ((table.low <= table.ratio) & (table.ratio <= table.high)).all()
    needed = compute.updates_needed(table, cfg.within)
    assert (needed.rounds_needed >= 1).all() and (needed.rounds_needed <= 24).all()
    digit_runs, teacher = classification.run_classification(cfg)
    assert len(digit_runs) == 3 * 2 * 3 * 2 and 0.8 < teacher["teacher_test_accuracy"] <= 1
    digits = compute.curve(digit_runs.assign(function="digits"), error="test_kl", shown="test_kl")
    accuracy = compute.accuracy_table(digit_runs)
    assert ((accuracy.low <= accuracy.difference) & (accuracy.difference <= accuracy.high)).all()
    digits_needed = compute.updates_needed(digits, cfg.within)
    claims = report.task_claims(table, needed, cfg.steps, cfg.within) + report.task_claims(
        digits, digits_needed, cfg.steps, cfg.within, task="digits"
    )
    assert len(claims) == 10 and all(c.holds in (True, False, None) for c in claims)
    assert claims[5].text.startswith("digits: ")
    phase = compute.phase(runs, "booth")
    assert set(phase.step) == {12, 24} and set(phase.every) == {1, 6, 24}
    full = compute.Result(cfg, runs, table, needed, digit_runs, teacher, digits, accuracy, digits_needed, phase)
    assert [c.to_dict() for c in report.claims(full)] == [c.to_dict() for c in claims]
    report.save(full, tmp_path)  # the section's contract: exactly its declared outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    block = report.readme_block(json.loads((tmp_path / "metrics.json").read_text()))
    assert "| booth |" in block and "K=24 (1 anchors)" in block and "| digits students" in block


def test_updates_needed_on_a_constructed_curve():
    table = pd.DataFrame({"function": "f", "every": [1, 8, 64], "rounds": [64, 8, 1],
                          "regular": [1.0, 1.05, 3.0], "sobolev": [0.5, 0.6, 0.52]})  # fmt: skip
    needed = compute.updates_needed(table, 0.1).set_index("method")
    assert needed.loc["regular", "rounds_needed"] == 8  # 1.05 <= 1.1, 3.0 is not
    assert needed.loc["sobolev", "rounds_needed"] == 1  # 0.52 <= 0.55
    assert needed.loc["regular", "fixed_over_full"] == pytest.approx(3.0)


def test_digits_split_is_offline_standardised_and_disjoint():
    data = classification.load_digits_split()
    assert data.x_train.shape == (1200, 64) and data.x_test.shape == (597, 64)
    assert abs(float(data.x_train.mean())) < 1e-5 and set(data.y_test.tolist()) == set(range(10))


def test_a_win_needs_a_real_effect_in_a_cell_where_an_arm_fits():
    """Beale at 0.999, both arms worse than predicting the mean, was counted as a decided win."""
    import pandas as pd

    rows = []
    for fn, ratio, nmse in (("beale", 0.999, 1.2), ("booth", 0.95, 0.1), ("rosenbrock", 0.5, 0.1)):
        for seed in range(6):
            base = 1.0 + 0.1 * seed
            for method, err in (("regular", base), ("sobolev", base * ratio * (1 + 1e-4 * seed))):
                rows.append({"function": fn, "every": 512, "rounds": 1, "step": 512, "method": method, "seed": seed,
                             "test_mse": err, "test_nmse": nmse * err / base})  # fmt: skip
    table = compute.curve(pd.DataFrame(rows)).set_index("function")
    assert table.loc["beale", "high"] < 1 and not table.loc["beale", "fits"]
    assert table.loc["beale", "verdict"] == "undecided"  # decided below 1, but neither arm fits
    assert table.loc["booth", "high"] < 1 and table.loc["booth", "verdict"] == "undecided"  # < 10%: no effect
    assert table.loc["rosenbrock", "verdict"] == "win"
