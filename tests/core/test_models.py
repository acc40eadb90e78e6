import itertools

import pytest
import torch

from sobolev.core.derivatives import input_gradient
from sobolev.core.models import BatchedMLP
from sobolev.core.optimisers import BatchedAdam
from sobolev.core.training import lr_factor, train_ensemble


def make(M=3, H=16, seed=0):
    m = BatchedMLP.init(list(range(seed, seed + M)), hidden=H)
    m.params = {k: v.double() for k, v in m.params.items()}
    return m


def autograd_grads(model, i, x, t, G=None, w=0.0):
    net = model.to_module(i).double()
    y = net(x)
    loss = (y - t).pow(2).mean()
    if G is not None:
        loss = loss + w * (input_gradient(net, x) - G).pow(2).sum(1).mean()
    loss.backward()
    L = net.net
    return {
        "W1": L[0].weight.grad,
        "b1": L[0].bias.grad,
        "W2": L[2].weight.grad,
        "b2": L[2].bias.grad,
        "w3": L[4].weight.grad[0],
        "b3": L[4].bias.grad[0],
    }


@pytest.mark.parametrize("sobolev", [False, True])
def test_hand_written_backward_equals_autograd(sobolev):
    model = make()
    x = torch.randn(3, 11, 2, dtype=torch.float64)
    t = torch.randn(3, 11, dtype=torch.float64)
    G = torch.randn(3, 11, 2, dtype=torch.float64) if sobolev else None
    w = torch.tensor([0.3, 1.0, 7.0], dtype=torch.float64)
    res = model.loss_and_grads(x, t, G, w if sobolev else None)
    for i in range(3):
        ref = autograd_grads(model, i, x[i], t[i], None if G is None else G[i], float(w[i]))
        for name in BatchedMLP.NAMES:
            torch.testing.assert_close(res.grads[name][i], ref[name], rtol=1e-10, atol=1e-12)
    y, g = model.predict(x)
    torch.testing.assert_close(res.value_loss, (y - t).pow(2).mean(1))
    if sobolev:
        torch.testing.assert_close(res.grad_loss, (g - G).pow(2).sum(2).mean(1) * w)


def test_predict_matches_module_and_its_input_gradient():
    model = make(M=2)
    x = torch.randn(2, 9, 2, dtype=torch.float64)
    y, g = model.predict(x, chunk=4)  # chunking must not change anything
    for i in range(2):
        net = model.to_module(i).double()
        torch.testing.assert_close(y[i], net(x[i]))
        torch.testing.assert_close(g[i], input_gradient(net, x[i]))


def test_init_is_per_seed_and_within_linear_bounds():
    a, b = BatchedMLP.init([7, 8]), BatchedMLP.init([7])
    torch.testing.assert_close(a.params["W2"][0], b.params["W2"][0])
    assert not torch.equal(a.params["W2"][0], a.params["W2"][1])
    assert float(a.params["W1"].abs().max()) <= 1 / 2**0.5
    assert float(a.params["W2"].abs().max()) <= 1 / 256**0.5


def test_batched_adam_equals_torch_adam_per_model():
    model = make(M=2, H=8)
    lrs = torch.tensor([1e-2, 3e-3], dtype=torch.float64)
    nets = [model.to_module(i).double() for i in range(2)]
    opts = [torch.optim.Adam(n.parameters(), lr=float(lr)) for n, lr in zip(nets, lrs, strict=True)]
    opt = BatchedAdam(model.params, lrs)
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    t = torch.randn(2, 5, dtype=torch.float64)
    for _ in range(5):
        opt.step(model.loss_and_grads(x, t).grads)
        for i, (net, o) in enumerate(zip(nets, opts, strict=True)):
            o.zero_grad()
            (net(x[i]) - t[i]).pow(2).mean().backward()
            o.step()
    for i, net in enumerate(nets):
        torch.testing.assert_close(model.params["W2"][i], net.net[2].weight.detach())
        torch.testing.assert_close(model.params["w3"][i], net.net[4].weight.detach()[0])


def test_training_reduces_loss_and_is_deterministic():
    x = torch.rand(2, 50, 2) * 2 - 1
    t = (x**2).sum(2)
    G = 2 * x
    runs = []
    for _ in range(2):
        model = BatchedMLP.init([0, 1], hidden=32)
        hist = train_ensemble(
            model,
            x,
            t,
            torch.full((2,), 1e-2),
            200,
            20,
            G=G,
            weight=torch.ones(2),
            generator=torch.Generator().manual_seed(0),
            log_every=10,
            progress=False,
        )
        runs.append(hist.loss)
    assert hist.loss.shape == (20, 2) and hist.steps == list(range(10, 201, 10))
    assert bool((hist.loss[-1] < 0.1 * hist.loss[0]).all())
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)


def test_bad_shapes_are_rejected():
    model = BatchedMLP.init([0, 1], hidden=8)
    with pytest.raises(ValueError, match=r"x: expected shape \(2, B, 2\), got \(3, 4, 2\)"):
        model.predict(torch.zeros(3, 4, 2))
    with pytest.raises(ValueError, match=r"t: expected shape \(2, 4\)"):
        model.loss_and_grads(torch.zeros(2, 4, 2), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="weight: expected shape"):
        model.loss_and_grads(torch.zeros(2, 4, 2), torch.zeros(2, 4), torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="lr: expected 2 positive learning rates"):
        BatchedAdam(model.params, torch.tensor([1e-3, 0.0]))
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        train_ensemble(model, torch.zeros(2, 4, 2), torch.zeros(2, 4), torch.ones(2), 0, 4)


def test_per_input_and_value_weights_equal_autograd():
    """The balanced loss's form α·mean (m-t)² + mean Σ_j w_j (∂ⱼm - Gⱼ)², by hand and by autograd."""
    model = make()
    x = torch.randn(3, 9, 2, dtype=torch.float64)
    t = torch.randn(3, 9, dtype=torch.float64)
    G = torch.randn(3, 9, 2, dtype=torch.float64)
    w = torch.tensor([[0.2, 3.0], [1.0, 1.0], [0.0, 5.0]], dtype=torch.float64)
    alpha = torch.tensor([0.5, 1.0, 0.1], dtype=torch.float64)
    res = model.loss_and_grads(x, t, G, w, alpha)
    params = {n: v.clone().requires_grad_(True) for n, v in model.params.items()}
    batched = BatchedMLP(params)
    xg = x.clone().requires_grad_(True)
    _, _, _, _, y = batched._forward(xg)
    (g,) = torch.autograd.grad(y.sum(), xg, create_graph=True)
    loss = (alpha * (y - t).pow(2).mean(1)).sum() + ((g - G).pow(2) * w.unsqueeze(1)).sum(2).mean(1).sum()
    ref = torch.autograd.grad(loss, [params[n] for n in BatchedMLP.NAMES])
    for name, r in zip(BatchedMLP.NAMES, ref, strict=True):
        torch.testing.assert_close(res.grads[name], r, rtol=1e-10, atol=1e-12)
    # The whole-set objective agrees with the step's terms.
    torch.testing.assert_close(model.losses(x, t, G, w, alpha), alpha * res.value_loss + res.grad_loss)


def test_learning_rate_schedule():
    f = [lr_factor(i, 100, "cosine", 0.1) for i in range(1, 101)]
    assert f[:10] == pytest.approx([i / 10 for i in range(1, 11)])  # linear warm-up to the peak
    assert f[10] == pytest.approx(1.0) and f[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(f[9:]))  # then monotone down
    assert lr_factor(50, 100, "constant") == 1.0
    with pytest.raises(ValueError, match="schedule must be one of"):
        lr_factor(1, 10, "step")
    with pytest.raises(ValueError, match="warmup must be a fraction"):
        lr_factor(1, 10, "cosine", 1.5)


def test_scalars_are_accepted_per_model_and_schedule_reaches_adam():
    model = BatchedMLP.init([0, 1], hidden=8)
    x = torch.rand(2, 10, 2)
    hist = train_ensemble(model, x, x.sum(2), 1e-2, 20, 100, G=torch.ones(2, 10, 2), weight=0.5, value_weight=2.0,
                          schedule="cosine", warmup=0.1, full_loss_at=(18, 20), progress=False)  # fmt: skip
    assert set(hist.full_loss) == {18, 20} and hist.full_loss[20].shape == (2,)
    with pytest.raises(ValueError, match=r"weight: expected one number or 2 per-model values"):
        train_ensemble(model, x, x.sum(2), 1e-2, 2, 100, G=torch.ones(2, 10, 2), weight=torch.ones(3), progress=False)


def test_prediction_does_not_depend_on_the_evaluation_chunk():
    model = BatchedMLP.init(list(range(5)), hidden=32)
    x = torch.rand(5, 3000, 2) * 4 - 2
    assert model.default_chunk() == 2**22 // (5 * 32)
    whole, small = model.predict(x, chunk=4096), model.predict(x, chunk=100)
    assert torch.equal(whole[0], small[0]) and torch.equal(whole[1], small[1])
