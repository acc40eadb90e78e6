import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from sobolev.deviations.compute import Result
from sobolev.deviations.config import DeviationsConfig
from sobolev.deviations.measure import (
    confidence_bins,
    deviation_summary,
    exaggeration_slope,
    logit,
    top1_confidences,
)


def teacher_logits(n: int = 400, classes: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, classes, generator=g) * torch.rand(n, 1, generator=g) * 2  # confidences spread out


def test_a_student_equal_to_the_teacher_has_slope_one_and_no_deviation():
    z = F.log_softmax(teacher_logits(), 1)
    summary = deviation_summary(z, z.clone())
    assert summary["slope"] == pytest.approx(1.0, abs=1e-9)
    assert summary["low_deviation"] == pytest.approx(0.0, abs=1e-9) and summary["agreement"] == 1.0


def test_two_class_temperature_gives_slope_exactly_one_over_t():
    # With two classes the top-1 logit is the logit difference: sharpening by T scales it by 1/T.
    z = teacher_logits(classes=2).double()  # float64: float32 log-softmax rounds confidences near 1
    for t in (0.5, 2.0):
        p_t, p_s = top1_confidences(F.log_softmax(z, 1), F.log_softmax(z / t, 1))
        assert exaggeration_slope(p_t, p_s) == pytest.approx(1 / t, rel=1e-6)


def test_a_sharpened_student_exaggerates_and_a_softened_one_does_not():
    z = teacher_logits()
    teacher = F.log_softmax(z, 1)
    sharp = deviation_summary(teacher, F.log_softmax(z / 0.5, 1))
    soft = deviation_summary(teacher, F.log_softmax(z / 2.0, 1))
    assert sharp["slope"] > 1.5 and soft["slope"] < 0.8
    # Sharpening keeps the top-1 class, so the student agrees everywhere, yet deviates in confidence.
    assert sharp["agreement"] == 1.0 and sharp["low_deviation"] != pytest.approx(0.0)


def test_binning_is_equal_count_by_teacher_confidence_with_known_means():
    p_t = torch.tensor([0.9, 0.2, 0.6, 0.3, 0.8, 0.5], dtype=torch.float64)
    p_s = torch.tensor([0.95, 0.1, 0.6, 0.2, 0.8, 0.5], dtype=torch.float64)
    table = confidence_bins(p_t, p_s, bins=3)
    assert table.n.tolist() == [2, 2, 2]
    assert table.teacher_p.tolist() == pytest.approx([0.25, 0.55, 0.85])  # (0.2, 0.3), (0.5, 0.6), (0.8, 0.9)
    assert table.student_p.tolist() == pytest.approx([0.15, 0.55, 0.875])
    assert table.lower.tolist() == pytest.approx([1.0, 0.0, 0.0])
    low = (math.log(0.1 / 0.9) - math.log(0.2 / 0.8) + math.log(0.2 / 0.8) - math.log(0.3 / 0.7)) / 2
    assert table.deviation.iloc[0] == pytest.approx(low)


def test_logit_is_finite_at_zero_and_one_and_bad_input_is_rejected():
    assert torch.isfinite(logit(torch.tensor([0.0, 1.0]))).all()
    with pytest.raises(ValueError, match=r"must both be \(N, C\) on the same inputs, got \(3, 2\) and \(3, 4\)"):
        top1_confidences(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"bins must be in 1\.\.2"):
        confidence_bins(torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.6]), bins=3)
    assert math.isnan(exaggeration_slope(torch.full((5,), 0.7), torch.rand(5)))


def tiny_task():
    from sobolev.deviations.classification import Task

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 40, generator=g) * 2
    y = torch.arange(200) % 10
    x = centres[y] + torch.randn(200, 40, generator=g)
    return Task(x[:120], y[:120], x[120:], y[120:])


def test_students_of_one_seed_start_alike_and_see_the_same_batches():
    from sobolev.deviations.classification import network, train_student, train_teacher

    task = tiny_task()
    teacher = train_teacher(task, 32, 60, 32, 1e-2)
    a, b = network(16, 3), network(16, 3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    # A switch at the very end of training is label training for every step that counts: the same run.
    labels = train_student(task, teacher, 16, "labels", 3, 20, 32, 1e-2, 1.0)
    late = train_student(task, teacher, 16, "regular", 3, 20, 32, 1e-2, 1.0, switch_at=0.999)
    for p, q in zip(labels.parameters(), late.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError, match="method must be one of labels, regular, sobolev, got 'soft'"):
        train_student(task, teacher, 16, "soft", 0, 5, 32, 1e-2, 1.0)
    with pytest.raises(ValueError, match=r"switch_at must be in \[0, 1\), got 1.0"):
        train_student(task, teacher, 16, "regular", 0, 5, 32, 1e-2, 1.0, switch_at=1.0)


def test_distilled_students_move_towards_the_teacher_and_sobolev_matches_its_input_gradients():
    from sobolev.deviations.classification import kl_to_teacher, train_student, train_teacher

    task = tiny_task()
    teacher = train_teacher(task, 32, 150, 32, 1e-2)
    with torch.no_grad():
        t = teacher(task.x_test)
    kl = {}
    for method in ("labels", "regular", "sobolev"):
        student = train_student(task, teacher, 32, method, 0, 150, 32, 1e-2, 1.0)
        with torch.no_grad():
            kl[method] = float(kl_to_teacher(student(task.x_test), t))
    assert kl["regular"] < kl["labels"] and kl["sobolev"] < kl["labels"]


def test_evaluate_reports_both_splits_and_bins():
    from sobolev.deviations.classification import evaluate, train_teacher

    task = tiny_task()
    teacher = train_teacher(task, 16, 30, 32, 1e-2)
    rows, table = evaluate(teacher, teacher, task, bins=4)  # the teacher as its own student
    assert [r["split"] for r in rows] == ["train", "test"]
    assert all(
        r["slope"] == pytest.approx(1.0) and r["agreement"] == 1.0 and r["kl"] == pytest.approx(0, abs=1e-6)
        for r in rows
    )
    assert len(table) == 8 and set(table.split) == {"train", "test"} and table.n.sum() == 200


def synthetic_runs(seeds: int = 6):
    """Runs with known structure: regular students exaggerate (slope 1.5), Sobolev less (1.1),
    label students are faithful-ish (1.0); accuracy: labels 0.70, regular 0.80, sobolev 0.82;
    switching recovers 0.05 (0.25), 0.075 (0.5), 0.1 (0.75) for regular."""
    import pandas as pd

    rows = []
    for s in range(seeds):
        wobble = 0.002 * ((s * 7) % 3 - 1)
        for width in (64, 16):
            for method, slope, acc in (("labels", 1.0, 0.70), ("regular", 1.5, 0.80), ("sobolev", 1.1, 0.82)):
                for split in ("train", "test"):
                    rows.append(
                        {
                            "width": width,
                            "method": method,
                            "switch_at": 0.0,
                            "seed": s,
                            "split": split,
                            "accuracy": acc + wobble + 0.01 * s,
                            "kl": 0.1,
                            "slope": slope + wobble,
                            "low_deviation": (slope - 1) * -2 + wobble,
                            "low_lower": 0.5,
                            "agreement": acc + 0.1,
                        }
                    )
        for method, per in (
            ("regular", {0.25: 0.75, 0.5: 0.775, 0.75: 0.80}),
            ("sobolev", {0.25: 0.72, 0.5: 0.73, 0.75: 0.74}),
        ):
            for at, acc in per.items():
                for split in ("train", "test"):
                    rows.append(
                        {
                            "width": 64,
                            "method": method,
                            "switch_at": at,
                            "seed": s,
                            "split": split,
                            "accuracy": acc + wobble + 0.01 * s,
                            "kl": 0.1,
                            "slope": 1.2,
                            "low_deviation": 0,
                            "low_lower": 0.5,
                            "agreement": 0.9,
                        }
                    )
    return pd.DataFrame(rows)


def test_report_decides_the_known_structure():
    import json

    from sobolev.deviations import report
    from sobolev.deviations.compute import main_runs

    runs = synthetic_runs()
    summary = report.summary_table(runs)
    assert summary.iloc[0][["width", "split", "method"]].tolist() == [64, "train", "labels"]
    exag = report.exaggeration(main_runs(runs)).set_index(["width", "method", "split"])
    assert exag.loc[(64, "regular", "test"), "verdict"] == "exaggerates"
    assert exag.loc[(64, "regular", "test"), "slope"] == pytest.approx(1.5, abs=0.01)
    comp = report.comparisons(runs)
    less = comp[(comp.quantity == "|log slope|")]
    assert (less.verdict == "win").all() and less.difference.iloc[0] == pytest.approx(
        math.log(1.1) - math.log(1.5), abs=0.01
    )
    switch = report.switch_table(runs).set_index(["method", "switch_at"])
    # Regular from the start gains 0.10 over labels; switching at 0.5 gains 0.075: a share of 0.75.
    assert switch.loc[("regular", 0.5), "share"] == pytest.approx(0.75, abs=0.01)
    assert switch.loc[("regular", 0.5), "gain"] == pytest.approx(0.075, abs=1e-6)
    assert switch.loc[("sobolev", 0.75), "share"] == pytest.approx(0.04 / 0.12, abs=0.01)
    verdicts = {
        c.text.split(":")[0]: c
        for c in report.mnist_claims(summary, report.exaggeration(main_runs(runs)), comp, report.switch_table(runs))
    }
    holds = [c.holds for c in verdicts.values()]
    assert holds[0] is True  # regular exaggerates everywhere
    assert verdicts["regular"].holds is True and verdicts["sobolev"].holds is False  # the late-switch shares
    assert "fewer" not in str(verdicts)
    # |log slope| is the distance from a faithful copy (slope 1), whichever side: the words must say so, not
    # "exaggerates less" (which reads wrong when both students soften).
    distance = [c for c in verdicts.values() if "|log slope|" in c.text]
    assert distance and all("faithful copy" in c.text and "exaggerates less" not in c.text for c in distance)
    few = report.comparisons(synthetic_runs(3))
    assert set(few.verdict) == {"undecided"}  # fewer than 5 seeds decide nothing
    bins = pd_bins()
    teacher = {"train_accuracy": 1.0, "test_accuracy": 0.8, "train_signals": 10, "test_signals": 10}
    result = Result(DeviationsConfig.load("ci"), runs, bins, teacher, pd.DataFrame(), pd.DataFrame())
    m = report.metrics(result)
    assert m["claims"] == [c.to_dict() for c in report.claims(result)] and m["atari"] is None
    json.dumps(m, allow_nan=False)
    assert "| 64 | regular | test |" in report.readme_block(m)


def pd_bins():
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "bin": b,
                "n": 5,
                "teacher_logit": b,
                "student_logit": b,
                "teacher_p": 0.5,
                "student_p": 0.5,
                "deviation": 0.0,
                "lower": 0.0,
                "split": sp,
                "width": 64,
                "method": m,
                "switch_at": 0.0,
                "seed": 0,
            }
            for b in range(2)
            for sp in ("train", "test")
            for m in ("regular", "sobolev")
        ]
    )


def test_atari_students_are_read_as_plain_tensors_and_measured(tmp_path, monkeypatch):
    from sobolev.deviations import atari, report

    g = torch.Generator().manual_seed(0)
    teacher = F.log_softmax(torch.randn(60, 4, generator=g) * 2, 1)
    students = []
    for method, t in (("regular", 0.5), ("sobolev", 1.0)):
        for seed in range(2):
            train, test = torch.arange(0, 40), torch.arange(40, 60)
            logits = teacher * (1 / t)  # regular: sharpened (exaggerates); sobolev: a faithful copy
            students.append(
                {
                    "fraction": 0.5,
                    "method": method,
                    "seed": seed,
                    "train_idx": train,
                    "test_idx": test,
                    "train": F.log_softmax(logits[train], 1),
                    "test": F.log_softmax(logits[test], 1),
                }
            )
    path = tmp_path / "students.pt"
    torch.save({"game": "pong", "teacher_log_probs": teacher, "students": students}, path)
    monkeypatch.setattr(atari, "students_path", lambda game: path)
    runs, bins = atari.atari_deviations("pong", bins=4)
    assert len(runs) == 8 and set(runs.split) == {"train", "test"} and len(bins) == 8 * 4
    faithful = runs[runs.method == "sobolev"]
    assert faithful.slope.tolist() == pytest.approx([1.0] * 4) and (faithful.agreement == 1.0).all()
    assert (runs[runs.method == "regular"].slope > 1.5).all()
    exag, comp = report.exaggeration(runs, ("game", "fraction", "method", "split")), report.atari_comparisons(runs)
    assert set(comp.verdict) == {"undecided"} and set(comp.arm) == {"sobolev"}  # two seeds decide nothing
    claims = report.atari_claims(exag, comp)
    assert len(claims) == 3 and all(c.holds is None for c in claims)
    assert "(2 seeds)" in claims[0].evidence  # the regular students' slopes: decided on their own seeds
    monkeypatch.setattr(atari, "students_path", lambda game: tmp_path / "none.pt")
    with pytest.raises(FileNotFoundError, match=r"dvc repro s42-distill@pong"):
        atari.load_students("pong")
