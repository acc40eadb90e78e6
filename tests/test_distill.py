import copy
import math

import pytest
import torch
from torch import nn

from sobolev.distillation.distill import (
    Recording,
    StudentNet,
    distill,
    distillation_loss,
    evaluate,
    regular_lr_grid,
    reverse_kl,
    split_by_episode,
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
    assert rec.inputs(torch.tensor([8])).max() <= 1.0


def test_recording_round_trips_and_rejects_bad_shapes(tmp_path):
    rec = _recording([5, 5])
    rec.save(tmp_path / "r.pt")
    back = Recording.load(tmp_path / "r.pt")
    assert torch.equal(back.frames, rec.frames) and back.returns == rec.returns and back.game == "breakout"
    with pytest.raises(ValueError, match="uint8"):
        Recording(rec.frames.float(), rec.episode, rec.log_probs)
    with pytest.raises(ValueError, match="non-decreasing"):
        Recording(rec.frames, rec.episode.flip(0), rec.log_probs)


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.9])
def test_split_keeps_every_episode_on_one_side(fraction):
    episode = _recording([7, 3, 12, 5, 9, 4]).episode
    train, test = split_by_episode(episode, fraction)
    assert len(train) + len(test) == len(episode) and len(train) and len(test)
    assert set(episode[train].tolist()).isdisjoint(episode[test].tolist())
    assert train.max() < test.min()  # time-wise


def test_split_rejects_bad_fractions_and_single_episodes():
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            split_by_episode(torch.zeros(10, dtype=torch.long), bad)
    with pytest.raises(ValueError, match="single episode"):
        split_by_episode(torch.zeros(10, dtype=torch.long), 0.5)


def test_student_is_the_sm_architecture():
    net = StudentNet(6)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(16, (8, 8), (4, 4)), (32, (4, 4), (2, 2))]
    out = net(torch.rand(2, 4, 84, 84))
    assert out.shape == (2, 6) and torch.allclose(out.exp().sum(1), torch.ones(2))


def test_distill_fits_a_student_teacher_and_evaluates():
    torch.set_num_threads(2)
    rec = _recording([40, 40, 40])
    torch.manual_seed(123)  # a teacher other than the student's initialisation (seed 0)
    teacher = StudentNet(4).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        rec.log_probs = teacher(rec.inputs(torch.arange(len(rec))))
    train, test = split_by_episode(rec.episode, 0.67)
    untrained = StudentNet(4)
    before = evaluate(untrained, rec, test)
    _, curve = distill(rec, teacher, train, {"test": test}, lr=1e-3, alpha=1.0, iterations=30, seed=0,
                       batch_size=16, eval_every=10)  # fmt: skip
    assert [r["iteration"] for r in curve] == [0, 10, 20, 30]
    assert curve[-1]["kl"] < 0.5 * curve[0]["kl"]
    with torch.no_grad():
        disagree = untrained(rec.inputs(test)).argmax(1) != rec.log_probs[test].argmax(1)
    assert before["action_error"] == pytest.approx(float(disagree.float().mean()))


def test_equal_tuning_budget():
    assert regular_lr_grid([1e-3, 1e-5], 1) == pytest.approx([1e-3, 1e-4, 1e-5])
    assert regular_lr_grid([1e-3, 1e-4, 1e-5], 0) == pytest.approx([1e-3, 1e-4, 1e-5])
    with pytest.raises(ValueError, match="midpoints"):
        regular_lr_grid([1e-3], 1)
    rec = _recording([20, 20, 20])
    teacher = StudentNet(4).eval()
    train, val = split_by_episode(rec.episode, 0.67)
    chosen, rows = tune(rec, teacher, train, val, [1e-3, 1e-4], [1.0, 10.0], iterations=2, batch_size=8)
    runs = {m: sum(r["method"] == m for r in rows) for m in ("regular", "sobolev")}
    assert runs == {"regular": 3, "sobolev": 3}
    assert chosen["regular"]["alpha"] == 0.0 and chosen["sobolev"]["alpha"] in (1.0, 10.0)
    best = min((r for r in rows if r["method"] == "regular"), key=lambda r: r["val_kl"])
    assert chosen["regular"]["lr"] == best["lr"]


def test_report_tables_and_claims_from_known_curves():
    import pandas as pd

    from sobolev.distillation import report

    rows = []
    # regular: test KL 1.0 -> 0.5 -> 0.6 (overfits, best at 10); Sobolev: 1.0 -> 0.4 -> 0.3.
    runs = [("regular", [1.0, 0.5, 0.6], 0.2, 0.3), ("sobolev", [1.0, 0.4, 0.3], 0.25, 0.1)]
    for method, test_kls, train_kl, err in runs:
        for seed in range(2):
            for it, kl in zip([0, 10, 20], test_kls, strict=True):
                base = {"game": "pong", "fraction": 0.1, "method": method, "seed": seed, "iteration": it}
                rows.append({**base, "set": "test", "kl": kl, "action_error": err + 0.01 * seed})
                rows.append({**base, "set": "train", "kl": train_kl, "action_error": 0.0})
    curves = pd.DataFrame(rows)
    final = report.final_table(curves)
    assert final.loc[("pong", 0.1, "sobolev"), "kl mean"] == pytest.approx(0.3)
    assert final.loc[("pong", 0.1, "regular"), "action_error mean"] == pytest.approx(0.305)
    over = report.overfitting_table(curves)
    assert over.loc[("pong", 0.1, "regular"), "rise above best %"] == pytest.approx(20.0)
    assert over.loc[("pong", 0.1, "regular"), "best at iteration"] == 10
    assert over.loc[("pong", 0.1, "sobolev"), "test / train kl"] == pytest.approx(1.2)
    verdicts = [c.holds for c in report.claims(final, over)]
    assert verdicts == [True, True, False, True, True]  # one fraction: "largest at low data" cannot hold
