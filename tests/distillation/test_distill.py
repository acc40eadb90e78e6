import copy
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from sobolev.core.derivatives import random_unit_vectors
from sobolev.distillation.distill import (
    Recording,
    StudentNet,
    TeacherJacobians,
    agreement,
    distill,
    distillation_loss,
    evaluate,
    regular_lr_grid,
    regular_lrs,
    reverse_kl,
    sobolev_distillation_step,
    split_episodes,
    teacher_vjp,
    tune,
)


class TinyPolicy(nn.Module):
    """A smooth (tanh) stand-in for the conv policies: (B, 2, 5, 5) -> log-probs (B, 3)."""

    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(27, 3))

    def forward(self, s):
        return torch.log_softmax(self.net(s), -1)


def test_loss_is_zero_when_the_student_is_the_teacher():
    torch.set_num_threads(2)
    teacher = TinyPolicy(0).double()
    student = copy.deepcopy(teacher)
    s = torch.rand(8, 2, 5, 5, dtype=torch.float64)
    out = distillation_loss(student, teacher, s, teacher(s).detach(), alpha=3.0, n_projections=2)
    assert out["kl"].item() == pytest.approx(0.0, abs=1e-14)
    assert out["sobolev"].item() == pytest.approx(0.0, abs=1e-14)
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters())


def test_loss_terms_are_the_kl_and_the_projected_gradient_gap():
    teacher, student = TinyPolicy(0).double(), TinyPolicy(1).double()
    s = torch.rand(4, 2, 5, 5, dtype=torch.float64)
    target = teacher(s).detach()
    g = torch.Generator().manual_seed(5)
    out = distillation_loss(student, teacher, s, target, alpha=2.0, generator=g)
    # By hand: the same v (same generator stream), full Jacobians by autograd.
    v = torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True)  # drawn in the nets' dtype, as sobolev.core.derivatives.random_unit_vectors
    jt = torch.autograd.functional.jacobian(lambda x: teacher(x), s).sum(2)  # (B, A, 2, 5, 5)
    js = torch.autograd.functional.jacobian(lambda x: student(x), s).sum(2)
    gap = torch.einsum("ba,ba...->b...", v, js - jt).flatten(1).norm(dim=1).mean()
    kl = (student(s).exp() * (student(s) - target)).sum(1).mean()
    assert out["kl"].item() == pytest.approx(kl.item(), rel=1e-10)
    assert out["sobolev"].item() == pytest.approx(gap.item(), rel=1e-10)
    assert out["loss"].item() == pytest.approx((kl + 2.0 * gap).item(), rel=1e-10)


def test_loss_gradient_matches_finite_differences():
    teacher, student = TinyPolicy(0).double(), TinyPolicy(1).double()
    s = torch.rand(6, 2, 5, 5, dtype=torch.float64)
    target = teacher(s).detach()

    def loss():
        return distillation_loss(student, teacher, s, target, alpha=0.7, n_projections=2,
                                 generator=torch.Generator().manual_seed(3))["loss"]  # fmt: skip

    student.zero_grad()
    loss().backward()
    eps = 1e-6
    for p in student.parameters():
        flat, grad = p.data.view(-1), p.grad.view(-1)
        for i in range(0, flat.numel(), max(1, flat.numel() // 5)):
            old = float(flat[i])
            flat[i] = old + eps
            up = loss().item()
            flat[i] = old - eps
            down = loss().item()
            flat[i] = old
            assert float(grad[i]) == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-8)


def test_regular_distillation_is_the_kl_alone_and_bad_input_is_rejected():
    teacher, student = TinyPolicy(0), TinyPolicy(1)
    s = torch.rand(4, 2, 5, 5)
    out = distillation_loss(student, teacher, s, teacher(s).detach(), alpha=0.0)
    assert out["sobolev"].item() == 0.0 and torch.equal(out["loss"], out["kl"])
    assert out["kl"].item() > 0
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(student, teacher, s, teacher(s), alpha=-1.0)
    with pytest.raises(ValueError, match=r"\(B, frames, H, W\)"):
        distillation_loss(student, teacher, s.flatten(1), teacher(s), alpha=1.0)
    with pytest.raises(ValueError, match="rows"):
        distillation_loss(student, teacher, s, teacher(s)[:2], alpha=1.0)


def test_reverse_kl_is_the_papers_direction():
    p = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    q = torch.log(torch.tensor([[0.4, 0.4, 0.2]]))
    expected = sum(a * math.log(a / b) for a, b in [(0.7, 0.4), (0.2, 0.4), (0.1, 0.2)])
    assert float(reverse_kl(p, q)) == pytest.approx(expected)  # KL(student ‖ teacher)


def _recording(episode_lengths, n_actions=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = sum(episode_lengths)
    episode = torch.cat([torch.full((n,), i) for i, n in enumerate(episode_lengths)])
    frames = torch.randint(0, 256, (t, 84, 84), generator=g, dtype=torch.uint8)
    log_probs = torch.log_softmax(torch.randn(t, n_actions, generator=g), -1)
    return Recording(frames, episode, log_probs, returns=[1.0] * (len(episode_lengths) - 1), game="breakout")


def test_histories_are_rebuilt_with_zeros_before_an_episode_starts():
    rec = _recording([3, 6])
    stacks = rec.stacks(torch.tensor([0, 2, 3, 4, 8]))
    assert stacks.shape == (5, 4, 84, 84) and stacks.dtype == torch.uint8
    zero = torch.zeros(84, 84, dtype=torch.uint8)
    assert torch.equal(stacks[0, 3], rec.frames[0]) and all(torch.equal(stacks[0, k], zero) for k in range(3))
    assert torch.equal(stacks[1, 1:], rec.frames[0:3]) and torch.equal(stacks[1, 0], zero)
    assert torch.equal(stacks[2, 3], rec.frames[3]) and all(torch.equal(stacks[2, k], zero) for k in range(3))  # new ep
    assert torch.equal(stacks[3, 2:], rec.frames[3:5]) and torch.equal(stacks[3, 1], zero)
    assert torch.equal(stacks[4], rec.frames[5:9])
    idx = torch.tensor([8, 0, 3, 3])
    inputs = rec.inputs(idx)  # from the cached (T, 84, 84, 4) histories: the same numbers, channels-last
    assert torch.equal(inputs, rec.stacks(idx).float() / 255.0)
    assert inputs.is_contiguous(memory_format=torch.channels_last) and inputs.min() >= 0.0 and inputs.max() <= 1.0


def test_recording_round_trips_and_rejects_bad_shapes(tmp_path):
    rec = _recording([5, 5])
    rec.save(tmp_path / "r.pt")
    back = Recording.load(tmp_path / "r.pt")
    assert torch.equal(back.frames, rec.frames) and back.returns == rec.returns and back.game == "breakout"
    with pytest.raises(ValueError, match="uint8"):
        Recording(rec.frames.float(), rec.episode, rec.log_probs)
    with pytest.raises(ValueError, match="non-decreasing"):
        Recording(rec.frames, rec.episode.flip(0), rec.log_probs)


@pytest.mark.parametrize("fractions", [[0.1], [0.1, 0.3], [0.2, 0.5]])
def test_split_keeps_every_episode_in_one_role_in_time_order(fractions):
    episode = _recording([7, 3, 12, 5, 9, 4, 8, 6, 10]).episode
    splits = split_episodes(episode, fractions, val_share=0.2, test_share=0.3)
    val, test = splits.val, splits.test
    assert len(val) and len(test) and val.max() < test.min() and test.max() == len(episode) - 1
    assert set(episode[val].tolist()).isdisjoint(episode[test].tolist())
    for f, train in splits.train.items():
        assert torch.equal(train, torch.arange(len(train))) and len(train) and train.max() < val.min()
        assert set(episode[train].tolist()).isdisjoint(episode[val].tolist())
        assert abs(len(train) - f * len(episode)) <= 12  # the nearest boundary: at most an episode away
    sizes = [len(splits.train[f]) for f in sorted(fractions)]
    assert sizes == sorted(sizes)  # a larger fraction holds the smaller one's episodes and more


def test_split_rejects_bad_shares_and_too_few_episodes():
    episode = _recording([7, 3, 12, 5]).episode
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match=r"val_share must be in \(0, 1\)"):
            split_episodes(episode, [0.3], bad, 0.3)
    with pytest.raises(ValueError, match="exceed 1"):
        split_episodes(episode, [0.6], 0.2, 0.3)
    with pytest.raises(ValueError, match="at least 3 are needed"):
        split_episodes(torch.tensor([0, 0, 0, 1, 1]), [0.3], 0.2, 0.3)


def test_student_is_the_sm_architecture():
    net = StudentNet(6)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(16, (8, 8), (4, 4)), (32, (4, 4), (2, 2))]
    out = net(torch.rand(2, 4, 84, 84))
    assert out.shape == (2, 6) and torch.allclose(out.exp().sum(1), torch.ones(2))


def _teacher_recording(episode_lengths, n_actions=4):
    """A recording whose log-probabilities are a random StudentNet teacher's own on the rebuilt inputs."""
    rec = _recording(episode_lengths, n_actions)
    torch.manual_seed(123)  # a teacher other than the student's initialisation (seed 0)
    teacher = StudentNet(n_actions).eval().requires_grad_(False)
    with torch.no_grad():
        rec.log_probs = teacher(rec.inputs(torch.arange(len(rec))))
    return rec, teacher


def test_agreement_is_the_action_error_and_mean_kl_and_rejects_mismatched_shapes():
    student = torch.log_softmax(torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]]), 1)
    teacher = torch.log_softmax(torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), 1)
    out = agreement(student, teacher, batch=2)  # chunked sums equal one sum
    assert out["action_error"] == pytest.approx(1 / 3)  # the second state's most probable actions differ
    assert out["kl"] == pytest.approx(float(reverse_kl(student, teacher).mean()), rel=1e-6)
    for bad in (teacher[:2], teacher[:, :2], teacher[:0]):
        with pytest.raises(ValueError, match="log_probs"):
            agreement(student[: len(bad)] if len(bad) == 0 else student, bad)


def test_distill_fits_stops_early_on_validation_and_returns_the_best_checkpoint():
    torch.set_num_threads(2)
    rec, teacher = _teacher_recording([40, 40, 40, 40])
    train, val, test = torch.arange(80), torch.arange(80, 120), torch.arange(120, 160)
    untrained = StudentNet(4)
    before = evaluate(untrained, rec, test)
    with torch.no_grad():
        disagree = untrained(rec.inputs(test)).argmax(1) != rec.log_probs[test].argmax(1)
    assert before["action_error"] == pytest.approx(float(disagree.float().mean()))
    d = distill(rec, teacher, train, {"val": val, "test": test}, lr=1e-3, alpha=1.0, max_iterations=30, seed=0,
                batch_size=16, eval_every=10, patience=5)  # fmt: skip
    its = sorted({r["iteration"] for r in d.curve})
    assert its == [0, 10, 20, 30] and d.stopped_at == 30 and not d.early
    val_kl = {r["iteration"]: r["kl"] for r in d.curve if r["set"] == "val"}
    assert val_kl[30] < 0.5 * val_kl[0]
    assert d.best_iteration == min(val_kl, key=val_kl.get)
    assert evaluate(d.student, rec, val)["kl"] == pytest.approx(val_kl[d.best_iteration], rel=1e-5)
    # A learning rate so large that validation never improves after the first steps: stopped by patience,
    # and the student returned is the best one seen, not the last.
    d = distill(rec, teacher, train, {"val": val}, lr=0.5, alpha=0.0, max_iterations=200, seed=0, batch_size=16,
                eval_every=5, patience=2)  # fmt: skip
    val_kl = {r["iteration"]: r["kl"] for r in d.curve}
    assert d.early and d.stopped_at < 200 and d.stopped_at - d.best_iteration == 2 * 5
    assert evaluate(d.student, rec, val)["kl"] == pytest.approx(min(val_kl.values()), rel=1e-5)
    with pytest.raises(ValueError, match="'val' set"):
        distill(rec, teacher, train, {"test": test}, 1e-3, 0.0, 10, 0)


def test_stored_teacher_jacobians_equal_the_vjp_on_the_fly():
    torch.set_num_threads(2)
    rec, teacher = _teacher_recording([30, 30], n_actions=3)
    teacher = teacher.double()
    rec.frames.float()  # inputs are rebuilt from frames; compare in float64 below
    idx = torch.tensor([3, 17, 40, 41, 59])
    jac = TeacherJacobians(teacher, _Float64(rec), torch.arange(60), batch=7)
    full = torch.autograd.functional.jacobian(lambda x: teacher(x), _Float64(rec).inputs(idx)).sum(2)
    assert torch.allclose(jac(idx), full.float(), rtol=2e-3, atol=1e-5)  # stored as float16
    student = StudentNet(3).double()
    s, target = _Float64(rec).inputs(idx), rec.log_probs[idx].double()
    fly = distillation_loss(student, teacher, s, target, 1.0, 2, torch.Generator().manual_seed(1))
    stored = distillation_loss(student, teacher, s, target, 1.0, 2, torch.Generator().manual_seed(1),
                               jac(idx).double())  # fmt: skip
    assert stored["sobolev"].item() == pytest.approx(fly["sobolev"].item(), rel=2e-3)
    with pytest.raises(KeyError, match="no stored teacher Jacobian"):
        TeacherJacobians(teacher, _Float64(rec), torch.arange(10))(torch.tensor([20]))


@pytest.mark.parametrize("n_projections", [1, 2])
def test_tangent_pass_step_has_the_autograd_objectives_values_and_gradients(n_projections):
    """The fast Sobolev step against :func:`distillation_loss` (autograd's double backward), float64, the same
    generator state: equal loss terms and equal weight gradients, with the teacher's projection on the fly and
    from stored Jacobians. Detaching the softmax in ``c`` or a wrong tangent pass breaks the gradient check."""
    torch.set_num_threads(2)
    rec, teacher = _teacher_recording([30, 30], n_actions=3)
    teacher = teacher.double()
    idx = torch.tensor([3, 17, 40, 41, 59])
    s, target = _Float64(rec).inputs(idx), rec.log_probs[idx].double()
    jac = TeacherJacobians(teacher, _Float64(rec), torch.arange(60), batch=7)
    torch.manual_seed(4)
    student = StudentNet(3).double()
    params = list(student.parameters())
    for stored in (False, True):
        ref = distillation_loss(student, teacher, s, target, 0.7, n_projections, torch.Generator().manual_seed(2),
                                jac(idx).double() if stored else None)  # fmt: skip
        ref_grads = torch.autograd.grad(ref["loss"], params)
        project = (lambda v: jac.project(idx, v)) if stored else teacher_vjp(teacher, s)
        out = sobolev_distillation_step(student, s, target, 0.7, n_projections, torch.Generator().manual_seed(2),
                                        project)  # fmt: skip
        grads = torch.autograd.grad(out["surrogate"], params)
        for key in ("loss", "kl", "sobolev"):
            assert out[key].item() == pytest.approx(ref[key].item(), rel=1e-12), (stored, key)
        assert out["sobolev"].item() > 0.01  # a real gap: the check is not of zeros
        for p, a, b in zip(student.state_dict(), grads, ref_grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12 * float(b.abs().max())), (stored, p)
    with pytest.raises(ValueError, match="alpha"):
        sobolev_distillation_step(student, s, target, 0.0, 1, None, teacher_vjp(teacher, s))
    with pytest.raises(ValueError, match="teacher_log_probs has 4 rows for 5 states"):
        sobolev_distillation_step(student, s, target[:4], 1.0, 1, None, teacher_vjp(teacher, s))
    with pytest.raises(ValueError, match="v: expected shape"):
        jac.project(idx, torch.ones(5, 4, dtype=torch.float64))


class _Float64:
    """A recording whose inputs come in float64 (the derivative checks)."""

    def __init__(self, rec):
        self.rec, self.frames = rec, rec.frames

    def __len__(self):
        return len(self.rec)

    def inputs(self, idx):
        return self.rec.inputs(idx).double()


def test_equal_tuning_budget_and_selection_rule():
    assert regular_lr_grid([1e-3, 1e-5], 1) == pytest.approx([1e-3, 1e-4, 1e-5])
    assert regular_lr_grid([1e-3, 1e-4, 1e-5], 0) == pytest.approx([1e-3, 1e-4, 1e-5])
    assert regular_lr_grid([1e-3], 2) == pytest.approx([1e-3, 5e-4, 2.5e-4])  # no midpoints: halvings below
    assert regular_lr_grid([1e-3, 1e-5], 2) == pytest.approx([1e-3, 1e-4, 1e-5, 5e-6])  # midpoints first
    with pytest.raises(ValueError, match="n_extra"):
        regular_lr_grid([1e-3], -1)
    assert regular_lrs([1e-3], {"sobolev": [1.0], "balanced": [0.1, 1.0]}) == pytest.approx([1e-3, 5e-4])
    calls = []

    def run(method, lr, alpha):  # a known validation KL per run; regular's lr 1e-3 diverges (NaN)
        calls.append((method, lr, alpha))
        return {("regular", 1e-3): math.nan, ("sobolev", 1e-3): 0.5}.get((method, lr), 0.3 + alpha / 100)

    chosen = tune(run, [1e-3, 1e-4], {"sobolev": [1.0, 10.0]})
    runs = {m: sum(c[0] == m for c in calls) for m in ("regular", "sobolev")}
    assert runs == {"regular": 3, "sobolev": 3}
    assert chosen["regular"] == {"lr": pytest.approx(10**-3.5), "alpha": 0.0}  # the first finite lowest
    assert chosen["sobolev"] == {"lr": 1e-4, "alpha": 1.0}
    calls.clear()
    chosen = tune(run, [1e-3, 1e-4], {"sobolev": [1.0]})
    assert [c[1] for c in calls if c[0] == "regular"] == [c[1] for c in calls if c[0] == "sobolev"]  # one grid
    # Two arms: each tuned on its own grid; regular gets as many runs as the larger one, never fewer.
    calls.clear()
    chosen = tune(run, [1e-3], {"sobolev": [1.0], "balanced": [0.1, 1.0, 0.3]})
    runs = {m: [c[1:] for c in calls if c[0] == m] for m in ("regular", "sobolev", "balanced")}
    assert runs["regular"] == [(1e-3, 0.0), (5e-4, 0.0), (2.5e-4, 0.0)]
    assert runs["sobolev"] == [(1e-3, 1.0)] and runs["balanced"] == [(1e-3, 0.1), (1e-3, 1.0), (1e-3, 0.3)]
    assert chosen["balanced"] == {"lr": 1e-3, "alpha": 0.1} and chosen["regular"]["lr"] == 5e-4
    with pytest.raises(ValueError, match="non-empty"):
        tune(run, [1e-3], {"balanced": []})


def test_balance_scale_is_the_rms_of_the_teachers_projected_gradients():
    """``projection_scale`` is sqrt(mean_s ‖J‖²_F / A), which is E_v ‖vᵀJ‖² for v uniform on the unit sphere: a
    Monte-Carlo average over many v must agree; and a teacher twice as steep has twice the scale."""
    rec, teacher = _teacher_recording([6, 6], n_actions=3)
    idx = torch.arange(0, 12, 2)
    jac = TeacherJacobians(teacher, rec, idx)
    scale = jac.projection_scale(idx)
    full = jac(idx).flatten(2).double()  # (B, A, D)
    gram = full @ full.transpose(1, 2)  # ‖vᵀJ‖² = vᵀ (J Jᵀ) v
    v = random_unit_vectors(20_000, rec.n_actions, torch.Generator().manual_seed(1), "cpu", torch.float64)
    monte_carlo = torch.einsum("na,bac,nc->", v, gram, v) / (len(v) * len(idx))
    assert scale == pytest.approx(float(monte_carlo.sqrt()), rel=0.02)
    assert scale == pytest.approx(float(full.pow(2).sum((1, 2)).mean().div(rec.n_actions).sqrt()), rel=1e-4)
    steeper = TeacherJacobians(lambda x: 2 * teacher(x), rec, idx)  # gradients twice as large
    assert steeper.projection_scale(idx) == pytest.approx(2 * scale, rel=1e-3)
    with pytest.raises(ValueError, match="idx: no states"):
        jac.projection_scale(idx[:0])
    with pytest.raises(KeyError, match="no stored teacher Jacobian"):
        jac.projection_scale(torch.tensor([1]))  # an odd state: not stored


def _runs_and_curves(sobolev_kl: float, seeds: int = 5, grid_lrs: tuple[float, ...] = (1e-3,)):
    """Known runs: regular's test KL 0.5 at its selected checkpoint (iteration 10) rising to 0.6; Sobolev's
    ``sobolev_kl`` times a per-seed factor, reached at iteration 10 and staying; the final runs at lr 1e-3, the
    grid (fraction 0.1) at each of ``grid_lrs`` (1e-3 chosen)."""
    import pandas as pd

    runs, curves = [], []
    for game in ("pong", "breakout"):
        for fraction in (0.1, 0.5):
            for seed, lr in itertools.product(range(seeds), grid_lrs if fraction == 0.1 else (1e-3,)):
                for method, kls, train_kl in (
                    ("regular", [1.0, 0.5, 0.6], 0.2),
                    ("sobolev", [1.0, sobolev_kl * (1 + 0.05 * seed), sobolev_kl * (1 + 0.05 * seed)], 0.3),
                ):
                    alpha = 0.0 if method == "regular" else 1.0
                    key = {"game": game, "role": "grid" if fraction == 0.1 else "final", "fraction": fraction,
                           "method": method, "seed": seed, "lr": lr, "alpha": alpha}  # fmt: skip
                    runs.append({**key, "chosen": lr == 1e-3, "best_iteration": 10, "stopped_at": 20,
                                 "stopped_early": True, "test_kl": kls[1], "train_kl": train_kl, "val_kl": kls[1],
                                 "test_action_error": 0.2 if method == "regular" else 0.1})  # fmt: skip
                    for it, kl in zip((0, 10, 20), kls, strict=True):
                        for split in ("test", "val"):
                            curves.append({**key, "iteration": it, "set": split, "kl": kl, "action_error": 0.1})
    return pd.DataFrame(runs), pd.DataFrame(curves)


def test_report_decides_claims_from_paired_seeds():
    from sobolev.distillation import report

    runs, curves = _runs_and_curves(0.25)
    comp = report.comparisons(runs, curves)
    kl = comp[comp.quantity == "test KL"]
    assert len(kl) == 4 and (kl.verdict == "win").all()
    assert kl.estimate.iloc[0] == pytest.approx(float(np.exp(np.mean(np.log(0.5 * (1 + 0.05 * np.arange(5)))))))
    rise = comp[comp.quantity == "test KL rise after its best"]
    assert rise.regular.iloc[0] == pytest.approx(0.2) and rise.sobolev.iloc[0] == pytest.approx(0.0)
    fast = comp[comp.quantity == "iterations to 1.1 × regular's best val KL"]
    assert (fast.sobolev == 10).all() and (fast.regular == 10).all() and (fast.verdict == "undecided").all()
    table = report.selected_table(runs)
    assert table.loc[("pong", 0.1, "regular"), "test_kl"] == pytest.approx(0.5)
    assert table.loc[("pong", 0.1, "sobolev"), "stopped_early"] == 1.0
    summaries = {g: {"chosen": {"regular": {"lr": 1e-3, "alpha": 0.0}, "sobolev": {"lr": 1e-3, "alpha": 1.0}}}
                 for g in ("pong", "breakout")}  # fmt: skip
    # A one-point grid: the "control" would be the main comparison again, so there is none (and no claim).
    assert report.control(runs, curves, summaries).empty
    assert not any(c.text.startswith("at the same learning rate") for c in report.claims_from(comp, report.control(
        runs, curves, summaries), runs))  # fmt: skip
    g_runs, g_curves = _runs_and_curves(0.25, grid_lrs=(1e-3, 1e-4))
    ctrl = report.control(g_runs, g_curves, summaries)  # both chose 1e-3: one control row per game, the grid's runs
    assert len(ctrl) == 2 and (ctrl.verdict == "win").all() and set(ctrl.lr_chosen_by) == {"regular and sobolev"}
    holds = {c.text.split(" (")[0]: c.holds for c in report.claims_from(comp, ctrl, runs)}
    assert holds["Sobolev students are closer to the teacher in every game and fraction"] is True
    assert holds["regular distillation overfits with more iterations, Sobolev less"] is True
    gap = next(v for k, v in holds.items() if k.startswith("Sobolev students generalise better"))
    assert gap is True  # test − train: Sobolev 0.25 − 0.3 < 0, regular 0.5 − 0.2 > 0
    assert holds["the gain is largest in the low-data regime"] is None  # the same ratio at both fractions
    # Sobolev worse in every seed: the closeness claim is lost, not undecided.
    worse = _runs_and_curves(0.8)
    comp = report.comparisons(*worse)
    assert report.claims_from(comp, report.control(*worse, {}), worse[0])[0].holds is False
    # Three seeds all better: an interval below 1 but fewer than 5 seeds, so nothing is decided.
    three = _runs_and_curves(0.25, seeds=3)
    assert report.claims_from(report.comparisons(*three), ctrl.iloc[:0], three[0])[0].holds is None
    # Two seeds that disagree: undecided.
    runs, curves = _runs_and_curves(0.25, seeds=2)
    runs.loc[(runs.method == "sobolev") & (runs.seed == 1), "test_kl"] = 0.9
    assert report.claims_from(report.comparisons(runs, curves), report.control(runs, curves, {}), runs)[0].holds is None


def test_each_sobolev_arm_is_decided_against_regular_on_its_own():
    """A balanced arm beside the paper's: its comparisons are its own seeds against regular's, its claims carry its
    prefix, and a paper arm that loses does not make the balanced arm lose (nor the reverse)."""
    import pandas as pd

    from sobolev.common.plotting import figure_problems
    from sobolev.distillation import plots, report

    worse, _ = _runs_and_curves(1.5)  # the paper's arm: worse than regular in every seed
    better, better_curves = _runs_and_curves(0.25)
    balanced = better[better.method == "sobolev"].assign(method="balanced", alpha=0.1)
    balanced_curves = better_curves[better_curves.method == "sobolev"].assign(method="balanced", alpha=0.1)
    runs = pd.concat([worse, balanced], ignore_index=True)
    curves = pd.concat([_runs_and_curves(1.5)[1], balanced_curves], ignore_index=True)
    comp = report.comparisons(runs, curves)
    assert set(comp.arm) == {"sobolev", "balanced"}
    kl = comp[comp.quantity == "test KL"].set_index(["arm", "game", "fraction"])
    assert (kl.loc["sobolev"].verdict == "loss").all() and (kl.loc["balanced"].verdict == "win").all()
    assert kl.loc[("balanced", "pong", 0.1), "regular"] == pytest.approx(0.5)  # regular's own runs, not the arm's
    found = report.claims_from(comp, report.control(runs, curves, {}), runs)
    closer = [c for c in found if "closer to the teacher in every game" in c.text]
    assert [(c.text.startswith(report.ARMS["balanced"]), c.holds) for c in closer] == [(False, False), (True, True)]
    assert len(found) == 12  # six claims per arm
    summary = plots.fraction_summary(runs)
    assert figure_problems(summary) == []
    assert len(summary.axes[0].get_legend().get_texts()) == 3  # every method is drawn


def test_teacher_beats_chance_is_decided_on_game_scores():
    import pandas as pd

    from sobolev.distillation import report

    t = pd.DataFrame([{"game": "breakout", "returns": [10.0, 12.0, 14.0, 9.0, 11.0],
                       "random_returns": [1.0, 2.0, 1.0, 0.0, 3.0],
                       "entropy_ratio_at_temperature_1": 0.5}])  # fmt: skip
    assert report.beats_chance(t.iloc[0]).verdict == "win"
    assert [c.holds for c in report.teacher_claims(t)] == [True, True]
    t.at[0, "returns"] = [1.0, 2.0, 1.5]
    t.at[0, "entropy_ratio_at_temperature_1"] = 0.9
    assert [c.holds for c in report.teacher_claims(t)] == [None, False]


def test_the_low_data_claim_compares_the_two_ratios_seed_by_seed():
    """ "The gain is largest with less data" is an interval on the per-seed ratio of ratios (smallest fraction over
    largest), not a comparison of two point estimates: the same gain at both fractions is undecided, a gain only at
    the smallest fraction holds, a gain only at the largest fails."""
    from sobolev.distillation import report

    def verdict(small: float, large: float) -> bool | None:
        runs, curves = _runs_and_curves(small)
        bigger, _ = _runs_and_curves(large)
        at_large = runs.fraction == 0.5
        runs.loc[at_large, "test_kl"] = bigger.loc[at_large, "test_kl"].to_numpy()
        comp = report.comparisons(runs, curves)
        return report.low_data_gain(comp[comp.quantity == "test KL"], report.with_gap(runs[runs.chosen]),
                                    "sobolev")[0]  # fmt: skip

    assert verdict(0.25, 0.25) is None  # the same ratio at both fractions
    assert verdict(0.25, 0.9) is True  # Sobolev wins with 10% of the data only
    assert verdict(0.9, 0.25) is False  # the gain is larger with more data


def test_a_run_that_never_reaches_the_target_is_censored_not_credited():
    """Sobolev never within 1.1 × regular's best: the worst outcome of its pair, never its last iteration. A
    level-keeping test for censored pairs (the sign test's dual interval) cannot decide on 5 pairs (p ≥ 1/16 even
    when all 5 never arrive); on 6 pairs that all never arrive it is a decided loss."""
    from sobolev.distillation import report

    for seeds, expected in ((5, "undecided"), (6, "loss")):
        runs, curves = _runs_and_curves(0.25, seeds=seeds)
        never = (curves.method == "sobolev") & (curves.game == "pong") & (curves.fraction == 0.5)
        curves.loc[never, "kl"] = 5.0  # never below 1.1 × 0.5
        fast = report.comparisons(runs, curves)
        fast = fast[fast.quantity == "iterations to 1.1 × regular's best val KL"].set_index(["game", "fraction"])
        assert fast.loc[("pong", 0.5), "verdict"] == expected and fast.loc[("pong", 0.5), "sobolev"] == math.inf
        assert fast.loc[("pong", 0.5), "never"] == seeds
        assert fast.loc[("pong", 0.1), "verdict"] == "undecided"  # both reach it at iteration 10
    # four pairs 10× faster and one that never arrives: undecided (it was a "loss" under the old rule)
    mixed = report.iterations_ratio(np.array([1.0, 1.0, 1.0, 1.0, math.inf]), np.full(5, 10.0))
    assert mixed.verdict == "undecided" and mixed.estimate == pytest.approx(0.1)


def test_figures_pass_the_figure_check_and_show_where_fewer_seeds_remain():
    import pandas as pd

    from sobolev.common.plotting import figure_problems
    from sobolev.distillation import plots

    runs, curves = _runs_and_curves(0.25)
    longer = curves[(curves.seed == 0) & (curves.iteration == 20)].assign(iteration=30)  # one seed runs on
    curves = pd.concat([curves, longer], ignore_index=True)
    fig4, summary = plots.figure4(curves, runs), plots.fraction_summary(runs)
    assert figure_problems(fig4) == [] and figure_problems(summary) == []
    panels = [ax for ax in fig4.axes if ax.get_ylabel() or ax.get_title() or ax.get_xlabel()]
    assert len(panels) == 8 and all(ax.get_yscale() == "log" for ax in panels)  # KL and action error, 4 columns
    tails = {line for ax in panels for line in ax.get_xlabel().split("\n")[1:]}
    assert tails == {"regular 1/5 seeds at the end", "sobolev 1/5 seeds at the end"}  # the tail carried by 1 seed
    crosses = [c for ax in fig4.axes for c in ax.collections if len(c.get_offsets()) == 5]  # one per seed
    assert len(crosses) == 16  # 4 panels x 2 rows (KL and action error) x 2 methods
