"""Fromage and LARS: the published update rules, by hand and batched (Section 5.2's optimisers)."""

import math

import pytest
import torch

from sobolev.core.models import BatchedMLP
from sobolev.core.optimisers import (
    LARS,
    LARS_MOMENTUM,
    BatchedAdam,
    BatchedFromage,
    BatchedLARS,
    Fromage,
    batched_optimiser,
    fromage_relative_change,
)
from sobolev.core.training import train_ensemble


def one_step(opt_cls, p, g, **kw):
    p = torch.nn.Parameter(p.clone())
    opt = opt_cls([p], **kw)
    p.grad = g.clone()
    opt.step()
    return p.detach()


def test_fromage_step_equals_hand_computation():
    p = torch.tensor([3.0, 4.0], dtype=torch.float64)  # ‖p‖ = 5
    g = torch.tensor([0.0, 2.0], dtype=torch.float64)  # ‖g‖ = 2
    eta = 0.1
    expected = (p - eta * 5 / 2 * g) / math.sqrt(1 + eta**2)  # = [3, 3.5] / √1.01
    torch.testing.assert_close(one_step(Fromage, p, g, lr=eta), expected)
    torch.testing.assert_close(expected, torch.tensor([3.0, 3.5], dtype=torch.float64) / math.sqrt(1.01))


def test_fromage_zero_norm_takes_the_plain_gradient_step():
    g = torch.tensor([1.0, -2.0], dtype=torch.float64)
    out = one_step(Fromage, torch.zeros(2, dtype=torch.float64), g, lr=0.5)
    torch.testing.assert_close(out, -0.5 * g / math.sqrt(1.25))


def test_lars_step_equals_hand_computation():
    p = torch.tensor([3.0, 4.0], dtype=torch.float64)
    g = torch.tensor([0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(one_step(LARS, p, g, lr=0.1), torch.tensor([3.0, 3.5], dtype=torch.float64))
    # weight decay β: local rate ‖p‖/(‖g‖ + β‖p‖) = 5/(2 + 0.5 · 5), direction g + βp
    out = one_step(LARS, p, g, lr=0.1, weight_decay=0.5)
    torch.testing.assert_close(out, p - 0.1 * 5 / 4.5 * (g + 0.5 * p))


@pytest.mark.parametrize("eta", [0.001, 0.01, 0.1])
def test_every_layer_moves_by_the_predicted_relative_amount(eta):
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)).double()
    net[0].weight.data *= 100.0  # layers at very different scales
    before = [p.detach().clone() for p in net.parameters()]
    opt = Fromage(net.parameters(), lr=eta)
    net(torch.randn(8, 3, dtype=torch.float64)).pow(2).mean().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    opt.step()
    for p0, g, p in zip(before, grads, net.parameters(), strict=True):
        cos = float((p0 * g).sum() / (p0.norm() * g.norm()))
        change = float((p.detach() - p0).norm() / p0.norm())
        assert change == pytest.approx(fromage_relative_change(eta, cos), rel=1e-9)
        assert change == pytest.approx(eta, abs=eta**2)  # η + O(η²), whatever the layer's scale


@pytest.mark.parametrize("cls", [Fromage, LARS])
@pytest.mark.parametrize(("weight_scale", "grad_scale"), [(10.0, 1.0), (0.01, 1e3), (1.0, 1e-4)])
def test_relative_update_is_invariant_to_rescaling(cls, weight_scale, grad_scale):
    gen = torch.Generator().manual_seed(0)
    p, g = torch.randn(5, 4, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen, dtype=torch.float64)
    base = (one_step(cls, p, g, lr=0.05) - p) / p.norm()
    scaled_p = weight_scale * p
    scaled = (one_step(cls, scaled_p, grad_scale * g, lr=0.05) - scaled_p) / scaled_p.norm()
    torch.testing.assert_close(scaled, base)
    # Adam's step is absolute: rescaling the weights changes its relative update.
    if weight_scale == 1.0:
        return
    adam = (one_step(torch.optim.Adam, scaled_p, g, lr=0.05) - scaled_p) / scaled_p.norm()
    adam_base = (one_step(torch.optim.Adam, p, g, lr=0.05) - p) / p.norm()
    assert not torch.allclose(adam, adam_base)


def single_optimiser(name, params, lr, p_bound):
    if name == "fromage":
        return Fromage(params, lr=lr, p_bound=p_bound)
    return LARS(params, lr=lr, momentum=LARS_MOMENTUM if name == "lars-momentum" else 0.0)


@pytest.mark.parametrize(
    ("name", "p_bound"), [("fromage", None), ("fromage", 1.05), ("lars", None), ("lars-momentum", None)]
)
def test_batched_equals_a_loop_of_single_model_optimisers(name, p_bound):
    model = BatchedMLP.init([0, 1, 2], hidden=12)
    model.params = {k: v.double() for k, v in model.params.items()}
    lrs = torch.tensor([0.05, 0.01, 0.2], dtype=torch.float64)
    nets = [model.to_module(i).double() for i in range(3)]
    singles = [single_optimiser(name, n.parameters(), float(lr), p_bound) for n, lr in zip(nets, lrs, strict=True)]
    batched = batched_optimiser(name, model.params, lrs, p_bound)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 9, 2, generator=gen, dtype=torch.float64)
    t = torch.randn(3, 9, generator=gen, dtype=torch.float64)
    for _ in range(20):
        batched.step(model.loss_and_grads(x, t).grads)
        for i, (net, opt) in enumerate(zip(nets, singles, strict=True)):
            opt.zero_grad()
            (net(x[i]) - t[i]).pow(2).mean().backward()
            opt.step()
    for i, net in enumerate(nets):
        torch.testing.assert_close(model.params["W1"][i], net.net[0].weight.detach())
        torch.testing.assert_close(model.params["W2"][i], net.net[2].weight.detach())
        torch.testing.assert_close(model.params["b3"][i], net.net[4].bias.detach()[0])


def test_p_bound_caps_every_tensor_and_unbounded_fromage_grows():
    model = BatchedMLP.init([0, 1], hidden=16)
    start = {k: v.reshape(2, -1).norm(dim=1) for k, v in model.params.items()}
    x = torch.rand(2, 30, 2) * 4 - 2
    t = 50 * (x**2).sum(2)  # large targets: the weights must grow to fit them
    for bound, grows in ((1.5, False), (None, True)):
        m = BatchedMLP({k: v.clone() for k, v in model.params.items()})
        opt = BatchedFromage(m.params, torch.full((2,), 0.05), p_bound=bound)
        for _ in range(300):
            opt.step(m.loss_and_grads(x, t).grads)
        ratios = torch.stack([m.params[k].reshape(2, -1).norm(dim=1) / start[k] for k in start])
        if grows:
            assert float(ratios.max()) > 1.5
        else:
            assert float(ratios.max()) <= 1.5 + 1e-5


def test_fromage_shrinks_weights_where_the_gradient_vanishes():
    """The reviewers' point: with g = 0 the update is p / √(1+η²), so the norm decays geometrically."""
    p = {"w": torch.ones(1, 4)}
    opt = BatchedFromage(p, torch.tensor([0.1]))
    for _ in range(100):
        opt.step({"w": torch.zeros(1, 4)})
    assert float(p["w"].norm()) == pytest.approx(2.0 * 1.01**-50, rel=1e-5)


def test_optimiser_errors_name_the_parameter():
    params = {"w": torch.ones(2, 3)}
    with pytest.raises(ValueError, match="optimiser must be one of"):
        batched_optimiser("sgd", params, torch.ones(2))
    with pytest.raises(ValueError, match="p_bound is a Fromage option"):
        batched_optimiser("adam", params, torch.ones(2), p_bound=2.0)
    with pytest.raises(ValueError, match="p_bound must be positive"):
        BatchedFromage(params, torch.ones(2), p_bound=0.0)
    with pytest.raises(ValueError, match="lr: expected 2 positive"):
        BatchedLARS(params, torch.tensor([0.1, -1.0]))
    with pytest.raises(ValueError, match="lr must be positive"):
        Fromage([torch.nn.Parameter(torch.ones(2))], lr=0.0)


@pytest.mark.parametrize("name", ["fromage", "lars", "lars-momentum"])
def test_train_ensemble_with_each_optimiser_fits_and_reports_norms(name):
    x = torch.rand(2, 60, 2) * 2 - 1
    t = (x**2).sum(2)
    model = BatchedMLP.init([0, 1], hidden=32)
    first = model.losses(x, t)
    seen = []
    train_ensemble(model, x, t, lr=0.01, steps=200, batch_size=100, optimiser=name, log_every=50,
                   inspect=seen.append, progress=False)  # fmt: skip
    assert seen == [50, 100, 150, 200]
    assert bool((model.losses(x, t) < 0.2 * first).all())


def test_batched_adam_reads_a_transposed_gradient_correctly():
    p = {"W": torch.zeros(1, 3, 2)}
    grad = torch.tensor([[[1.0, -1.0, 2.0], [-2.0, 3.0, -3.0]]]).transpose(1, 2)  # non-contiguous (1, 3, 2)
    BatchedAdam(p, torch.tensor([0.1])).step({"W": grad})
    torch.testing.assert_close(p["W"], -0.1 * torch.sign(grad), atol=1e-6, rtol=0)
