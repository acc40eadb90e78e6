"""Iterative linearisation of the batched MLP: f_lin and its input gradient, and the training rounds."""

import pytest
import torch

from sobolev.core.linearisation import frozen, linearised, masks_at, predict_linearised, train_linearised
from sobolev.core.models import BatchedMLP
from sobolev.core.optimisers import BatchedAdam


def make(M=2, H=12, seed=0):
    model = BatchedMLP.init(list(range(seed, seed + M)), hidden=H)
    model.params = {k: v.double() for k, v in model.params.items()}
    return model


def shifted(params, scale=0.05, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}


def data(M=2, N=15, seed=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(M, N, 2, generator=g, dtype=torch.float64) * 2 - 1
    return x, (x**2).sum(2), 2 * x


def test_value_and_gradient_equal_the_network_at_the_anchor():
    model = make()
    x, _, _ = data()
    y, g = linearised(model.params, model.params, x, masks_at(model.params, x))
    y0, g0 = model.predict(x)
    torch.testing.assert_close(y, y0)
    torch.testing.assert_close(g, g0)
    torch.testing.assert_close(frozen(model.params, x, masks_at(model.params, x))[1], g0)


def test_tangent_equals_torch_func_jvp_of_the_frozen_network():
    anchor = make().params
    theta = shifted(anchor)
    x, _, _ = data()
    masks = masks_at(anchor, x)
    tangent = {k: theta[k] - anchor[k] for k in anchor}
    (y0, g0), (dy, dg) = torch.func.jvp(lambda p: frozen(p, x, masks), (anchor,), (tangent,))
    y, g = linearised(theta, anchor, x, masks)
    torch.testing.assert_close(y, y0 + dy)
    torch.testing.assert_close(g, g0 + dg)


def test_input_gradient_equals_autograds_gradient_of_f_lin():
    anchor = make().params
    theta = shifted(anchor, 0.1)
    x, _, _ = data()
    masks = masks_at(anchor, x)
    xr = x.clone().requires_grad_(True)
    y, g = linearised(theta, anchor, xr, masks)  # masks fixed: they are locally constant in x
    (auto,) = torch.autograd.grad(y.sum(), xr)
    torch.testing.assert_close(g, auto)


def test_f_lin_is_linear_in_theta():
    anchor = make().params
    x, _, _ = data()
    masks = masks_at(anchor, x)
    a, b = shifted(anchor, 0.1, seed=3), shifted(anchor, 0.1, seed=4)
    mix = {k: 0.3 * a[k] + 0.7 * b[k] for k in anchor}
    ya, ga = linearised(a, anchor, x, masks)
    yb, gb = linearised(b, anchor, x, masks)
    ym, gm = linearised(mix, anchor, x, masks)
    torch.testing.assert_close(ym, 0.3 * ya + 0.7 * yb)
    torch.testing.assert_close(gm, 0.3 * ga + 0.7 * gb)


@pytest.mark.parametrize("sobolev", [False, True])
def test_every_step_reproduces_ordinary_training_step_for_step(sobolev):
    x, t, G = data()
    lin, plain = make(), make()
    lrs = torch.tensor([0.01, 0.003], dtype=torch.float64)
    weight = torch.ones(2, dtype=torch.float64) if sobolev else None
    train_linearised(lin, x, t, lrs, steps=25, every=1, G=G if sobolev else None, weight=weight, progress=False)
    opt = BatchedAdam(plain.params, lrs)
    for _ in range(25):
        opt.step(plain.loss_and_grads(x, t, G if sobolev else None, weight).grads)
    for k in plain.params:
        torch.testing.assert_close(lin.params[k], plain.params[k])


def test_with_every_beyond_the_run_the_features_never_change():
    x, t, G = data()
    model = make()
    start = {k: v.clone() for k, v in model.params.items()}
    hist = train_linearised(model, x, t, 0.01, steps=40, every=1000, G=G, weight=1.0, progress=False)
    assert hist.anchors == [0]
    for k in start:
        torch.testing.assert_close(hist.anchor[k], start[k])  # the anchor (hidden features) is the initial net
    assert not torch.equal(model.params["W2"], start["W2"])  # while θ moved
    # the trained model is linear in θ: its prediction is f(θ0) + J(θ - θ0)
    y, _ = predict_linearised(model.params, hist.anchor, x)
    y_half, _ = predict_linearised({k: (model.params[k] + start[k]) / 2 for k in start}, hist.anchor, x)
    y0, _ = predict_linearised(start, hist.anchor, x)
    torch.testing.assert_close(y_half, (y + y0) / 2)


def test_anchor_moves_every_k_updates_and_training_fits():
    x, t, G = data(N=30)
    model = make(H=32)
    seen = []
    hist = train_linearised(model, x, t, 0.01, steps=100, every=30, G=G, weight=1.0, log_every=10,
                            on_anchor=seen.append, progress=False)  # fmt: skip
    assert hist.anchors == [0, 30, 60, 90] == seen
    assert bool((hist.loss[-1] < 0.2 * hist.loss[0]).all())


def test_bad_every_is_rejected():
    x, t, _ = data()
    with pytest.raises(ValueError, match="every must be a positive integer"):
        train_linearised(make(), x, t, 0.01, steps=5, every=0, progress=False)


def test_module_linearisation_matches_the_network_at_the_anchor_and_the_batched_form():
    from sobolev.core.linearisation import linearised_module

    batched = make(M=1)
    net = batched.to_module(0).double()
    anchor = {k: v.detach().clone() for k, v in net.named_parameters()}
    x, _, _ = data(M=1)
    torch.testing.assert_close(linearised_module(net, anchor, anchor, x[0]), net(x[0]))
    theta = shifted(anchor, 0.05)
    mine = linearised_module(net, theta, anchor, x[0])
    names = {"net.0.weight": "W1", "net.0.bias": "b1", "net.2.weight": "W2", "net.2.bias": "b2",
             "net.4.weight": "w3", "net.4.bias": "b3"}  # fmt: skip
    to_batched = {
        names[k]: (v.reshape(1, -1) if names[k] in ("w3", "b3") else v.unsqueeze(0)) for k, v in theta.items()
    }
    to_batched["b3"] = to_batched["b3"].reshape(1)
    ref, _ = linearised(to_batched, batched.params, x, masks_at(batched.params, x))
    torch.testing.assert_close(mine, ref[0])
    # its input JVP is the derivative of f_lin: compare with autograd
    xr = x[0].clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(linearised_module(net, theta, anchor, xr).sum(), xr)
    v = torch.zeros_like(x[0])
    v[:, 0] = 1.0
    _, jv = torch.func.jvp(lambda z: linearised_module(net, theta, anchor, z), (x[0],), (v,))
    torch.testing.assert_close(jv, auto[:, 0])
