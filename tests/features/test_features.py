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
    rec = compute.recovery(runs, cfg.within)
    assert set(rec.within) <= {"yes", "no", "undecided"} and len(rec) == 2 * 2 * 3  # functions × losses × K
    assert (rec[rec.every == 1].ratio == 1).all()  # K = 1 against itself
    digit_runs, teacher = classification.run_classification(cfg)
    assert len(digit_runs) == 3 * 2 * 3 * 2 and 0.8 < teacher["teacher_test_accuracy"] <= 1
    digits = compute.curve(digit_runs.assign(function="digits"), error="test_kl", shown="test_kl")
    accuracy = compute.accuracy_table(digit_runs)
    assert ((accuracy.low <= accuracy.difference) & (accuracy.difference <= accuracy.high)).all()
    digits_rec = compute.recovery(digit_runs.assign(function="digits"), cfg.within, error="test_kl")
    k = compute.few_updates(cfg.steps, cfg.every)
    assert k == 24  # at most a tenth of 24 updates (2) as anchors: only K = 24 (1 anchor)
    assert compute.few_updates(512, [1, 4, 16, 64, 512]) == 16  # the committed grid: 32 anchors ≤ 51
    claims = report.task_claims(table, rec, compute.recovery_difference(runs, k), cfg.steps, cfg.within, k) + \
        report.task_claims(digits, digits_rec, compute.recovery_difference(digit_runs.assign(function="digits"), k,
                                                                           error="test_kl"),
                           cfg.steps, cfg.within, k, task="digits")  # fmt: skip
    assert len(claims) == 10 and all(c.holds in (True, False, None) for c in claims)
    assert claims[5].text.startswith("digits: ")
    phase = compute.phase(runs, "booth")
    assert set(phase.step) == {12, 24} and set(phase.every) == {1, 6, 24}
    full = compute.Result(cfg, runs, table, rec, digit_runs, teacher, digits, accuracy, digits_rec, phase)
    assert [c.to_dict() for c in report.claims(full)] == [c.to_dict() for c in claims]
    report.save(full, tmp_path)  # the section's contract: exactly its declared outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    block = report.readme_block(json.loads((tmp_path / "metrics.json").read_text()))
    assert "| booth |" in block and "K=24 (1 anchors)" in block and "| digits students" in block


def test_recovery_is_decided_on_paired_seeds():
    """ "Within 10% of full training" is decided on the paired ratio's interval, not on two medians: K = 8 within
    (every seed's ratio ≈ 1.05), K = 64 decidedly not (≈ 3), and the fewest anchors decidedly within follow."""
    rows = []
    for seed in range(6):
        base = 1.0 + 0.2 * seed  # seeds differ a lot; the ratios to K = 1 do not
        for every, rounds_, factor in ((1, 64, 1.0), (8, 8, 1.05 + 0.002 * seed), (64, 1, 3.0 + 0.01 * seed)):
            for method in ("regular", "sobolev"):
                err = base * (factor if method == "regular" else 1 + (factor - 1) / 2)
                rows.append({"function": "f", "seed": seed, "method": method, "every": every, "rounds": rounds_,
                             "step": 64, "test_mse": err})  # fmt: skip
    runs = pd.DataFrame(rows)
    rec = compute.recovery(runs, 0.1).set_index(["method", "every"])
    assert rec.loc[("regular", 8), "within"] == "yes" and rec.loc[("regular", 64), "within"] == "no"
    needed = compute.updates_needed(rec.reset_index()).set_index("method")
    assert needed.loc["regular", "rounds_needed"] == 8 and needed.loc["regular", "fixed_over_full"] > 2.9
    diff = compute.recovery_difference(runs, 64)  # Sobolev loses half as much of its own accuracy: decided
    assert diff.verdict.iloc[0] == "win" and diff.ratio.iloc[0] < 1


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
