import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sobolev.synthetic_gradients.decoupled import CRITIC_VARIANTS, VARIANTS, CriticSG, DecoupledTrainer, DirectSG


def tiny_blocks(seed: int = 0) -> nn.ModuleList:
    torch.manual_seed(seed)
    return nn.ModuleList(
        [
            nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU()),
            nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.ReLU()),
            nn.Linear(8, 3),
        ]
    )


def make(variant: str, seed: int = 0, **kw) -> tuple[DecoupledTrainer, torch.Tensor, torch.Tensor]:
    blocks = tiny_blocks(seed)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    trainer = DecoupledTrainer(blocks, variant, 3, x, torch.optim.SGD(blocks.parameters(), lr=0.1), **kw)
    # Non-zero synthetic gradients for the direct module (its last layer starts at zero).
    for m in trainer.sg_modules:
        for p in m.parameters():
            p.data.normal_(0, 0.3, generator=g)
    return trainer, x, y


def grads_of(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]


@pytest.mark.parametrize("variant", ["direct", *CRITIC_VARIANTS])
def test_lower_block_receives_exactly_the_module_output(variant):
    trainer, x, y = make(variant)
    ref = copy.deepcopy(trainer)
    trainer.opt.step = lambda: None  # inspect gradients before any update
    trainer.sg_opt.step = lambda: None
    trainer.step(x, y)
    # Recompute the first block's output on a copy and backpropagate the module's output only.
    h0 = ref.blocks[0](x)
    module = ref.sg_modules[0]
    synthetic = module(h0.detach(), y) if variant == "direct" else module.loss_and_grad(h0.detach(), y, False)[1]
    (h0 * synthetic.detach() / x.shape[0]).sum().backward()
    for got, want in zip(grads_of(trainer.blocks[0]), grads_of(ref.blocks[0]), strict=True):
        torch.testing.assert_close(got, want)


def _lowest_block_grads_before_and_after_flipping_the_top(variant: str) -> tuple[list, list]:
    """The lowest block's gradients after one step (no updates), for the trainer and for a copy whose top block's
    weights are multiplied by -3."""
    a, x, y = make(variant)
    b = copy.deepcopy(a)
    with torch.no_grad():
        for p in b.blocks[2].parameters():
            p.mul_(-3.0)
    for t in (a, b):
        t.opt.step = lambda: None
        if t.sg_opt is not None:
            t.sg_opt.step = lambda: None
        t.step(x, y)
    return grads_of(a.blocks[0]), grads_of(b.blocks[0])


def test_no_gradient_from_upper_blocks_reaches_lower_ones():
    # Changing the top block changes nothing in the lowest block's gradient (it sees only its module).
    for ga, gb in zip(*_lowest_block_grads_before_and_after_flipping_the_top("sobolev"), strict=True):
        torch.testing.assert_close(ga, gb)
    # Under backprop it does change.
    gc, gd = _lowest_block_grads_before_and_after_flipping_the_top("backprop")
    assert any(not torch.allclose(c, d) for c, d in zip(gc, gd, strict=True))


def test_top_cut_targets_are_the_true_loss_and_gradient_detached():
    trainer, x, y = make("sobolev")
    seen = {}
    original = trainer._module_step

    def spy(k, h, y_, target_grad, target_loss):
        seen[k] = (target_grad, target_loss)
        return original(k, h, y_, target_grad, target_loss)

    trainer._module_step = spy
    ref = copy.deepcopy(trainer.blocks)
    trainer.step(x, y)
    h0 = ref[0](x)
    h1 = ref[1](h0).detach().requires_grad_(True)
    per_sample = F.cross_entropy(ref[2](h1), y, reduction="none")
    (true_grad,) = torch.autograd.grad(per_sample.sum(), h1)  # per-sample gradient of each sample's loss
    target_grad, target_loss = seen[1]
    torch.testing.assert_close(target_grad, true_grad)
    torch.testing.assert_close(target_loss, per_sample.detach())
    assert not target_grad.requires_grad and not target_loss.requires_grad


@pytest.mark.parametrize("variant", ["direct", *CRITIC_VARIANTS])
def test_module_updates_never_touch_the_main_network(variant):
    trainer, x, y = make(variant)
    main_ids = {id(p) for p in trainer.blocks.parameters()}
    assert not main_ids & {id(p) for p in trainer.sg_modules.parameters()}
    before = [p.clone() for p in trainer.blocks.parameters()]
    trainer.opt.step = lambda: None  # only the SG optimiser steps
    trainer.step(x, y)
    for b, p in zip(before, trainer.blocks.parameters(), strict=True):
        assert torch.equal(b, p)
    # ... while the modules did move.
    moved = make(variant)[0]
    moved.sg_modules.load_state_dict(trainer.sg_modules.state_dict())
    assert any(
        not torch.equal(p, q)
        for p, q in zip(make(variant)[0].sg_modules.parameters(), trainer.sg_modules.parameters(), strict=True)
    )


def test_batchnorm_statistics_update_once_per_step_and_not_at_setup():
    trainer, x, y = make("critic")
    bn = trainer.blocks[0][1]
    assert int(bn.num_batches_tracked) == 0  # the shape probe ran in eval mode
    trainer.step(x, y)
    assert int(bn.num_batches_tracked) == 1
    assert trainer.blocks[0].training


def test_no_backprop_leaves_lower_blocks_untouched_and_backprop_matches_plain_training():
    trainer, x, y = make("no_backprop")
    before = [p.clone() for p in trainer.blocks[:2].parameters()]
    top = [p.clone() for p in trainer.blocks[2].parameters()]
    trainer.step(x, y)
    assert all(torch.equal(b, p) for b, p in zip(before, trainer.blocks[:2].parameters(), strict=True))
    assert any(not torch.equal(b, p) for b, p in zip(top, trainer.blocks[2].parameters(), strict=True))
    bp, _, _ = make("backprop")
    plain = tiny_blocks(0)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    bp.step(x, y)
    F.cross_entropy(plain[2](plain[1](plain[0](x))), y).backward()
    opt.step()
    for p, q in zip(bp.blocks.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_diagnostics_report_cosine_per_cut_and_sobolev_learns_to_align():
    trainer, x, y = make("sobolev", sg_lr=1e-2)
    trainer.opt.step = lambda: None  # freeze the main net: a fixed target to fit
    first = trainer.step(x, y, diagnostics=True)
    assert len(first["cosine"]) == 2 and all(-1 <= c <= 1 for c in first["cosine"])
    for _ in range(300):
        last = trainer.step(x, y, diagnostics=True)
    assert last["cosine"][1] > max(first["cosine"][1], 0.9)  # the top cut's module fits the true gradient
    assert last["module_loss"][1] < first["module_loss"][1]


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="variant must be one of backprop, no_backprop, direct"):
        make("hogwild")
    blocks = nn.ModuleList([nn.Linear(4, 3)])
    with pytest.raises(ValueError, match="need at least 2 blocks"):
        DecoupledTrainer(blocks, "sobolev", 3, torch.randn(2, 4), torch.optim.SGD(blocks.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"feature_shape must be \(C,\), \(C, L\) or \(C, H, W\), got \(1, 2, 3, 4\)"):
        DirectSG((1, 2, 3, 4), 3)
    with pytest.raises(ValueError, match="feature_shape must be"):
        CriticSG((1, 2, 3, 4), 3)
    with pytest.raises(ValueError, match="sg_loss must be one of l1, l2, got 'huber'"):
        make("sobolev", sg_loss="huber")
    assert set(VARIANTS) >= set(CRITIC_VARIANTS)


def test_conv_feature_maps_are_supported():
    blocks = nn.ModuleList(
        [
            nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
            nn.Sequential(nn.Flatten(), nn.Linear(4 * 8 * 8, 3)),
        ]
    )
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 3, (5,))
    for variant in ("direct", "sobolev"):
        t = DecoupledTrainer(blocks, variant, 3, x, torch.optim.SGD(blocks.parameters(), lr=0.01))
        out = t.step(x, y, diagnostics=True)
        assert len(out["cosine"]) == 1 and out["loss"] > 0


def test_signal_feature_maps_are_supported():
    blocks = nn.ModuleList(
        [
            nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU()),
            nn.Sequential(nn.Flatten(), nn.Linear(4 * 12, 3)),
        ]
    )
    x, y = torch.randn(5, 1, 12), torch.randint(0, 3, (5,))
    for variant in ("direct", "sobolev"):
        t = DecoupledTrainer(blocks, variant, 3, x, torch.optim.SGD(blocks.parameters(), lr=0.01))
        assert any(isinstance(m, nn.Conv1d) for m in t.sg_modules.modules())
        out = t.step(x, y, diagnostics=True)
        assert len(out["cosine"]) == 1 and len(out["norm_ratio"]) == 1 and out["loss"] > 0


def test_module_loss_is_l1_or_squared_l2_and_relative_is_scale_free():
    trainer, _, _ = make("sobolev", sg_loss="l1", relative=False)
    estimate, target = torch.tensor([[1.0, -2.0], [0.0, 4.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert float(trainer._distance(estimate, target)) == pytest.approx(((1 + 2) + (1 + 3)) / 2)
    trainer, _, _ = make("sobolev", sg_loss="l2", relative=False)
    assert float(trainer._distance(estimate, target)) == pytest.approx(((1 + 4) + (1 + 9)) / 2)
    # Relative: the error over the batch's mean target size, so scaling estimate and target together
    # changes nothing: gradients of any scale weigh alike.
    for loss, size in (("l1", (0 + 2) / 2), ("l2", (0 + 2) / 2)):
        rel, _, _ = make("sobolev", sg_loss=loss, relative=True)
        plain, _, _ = make("sobolev", sg_loss=loss, relative=False)
        torch.testing.assert_close(rel._distance(estimate, target), plain._distance(estimate, target) / size)
        torch.testing.assert_close(rel._distance(1e-3 * estimate, 1e-3 * target), rel._distance(estimate, target))
    # A target that is exactly zero (below a zero-initialised module) gives a zero loss, not a division by 0.
    rel, _, _ = make("sobolev", sg_loss="l2", relative=True)
    zero = rel._distance(estimate.requires_grad_(True), torch.zeros(2, 2))
    assert float(zero) == 0.0 and zero.requires_grad


def test_zero_last_critics_start_from_the_uniform_loss_and_a_zero_gradient():
    h, y = torch.randn(4, 8), torch.randint(0, 10, (4,))
    m, g = CriticSG((8,), 10, zero_last=True).loss_and_grad(h, y, create_graph=False)
    torch.testing.assert_close(m, torch.full((4,), math.log(10)))
    assert torch.count_nonzero(g) == 0
    _, g = CriticSG((8,), 10).loss_and_grad(h, y, create_graph=False)
    assert torch.count_nonzero(g) > 0
