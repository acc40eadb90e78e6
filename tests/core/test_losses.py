import pytest
import torch
from torch import nn

from sobolev.core.derivatives import (
    derivatives,
    forward_with_masks,
    input_gradient,
    jvp_projection,
    linearised_forward,
    random_unit_vectors,
    vjp_projection,
)
from sobolev.core.losses import distance, sobolev_loss, stochastic_sobolev_loss
from sobolev.core.models import MLP


def scalar(t: torch.Tensor) -> float:
    return float(t.detach())


class Quadratic(nn.Module):
    """m(x) = xᵀ A x + bᵀ x: gradient (A + Aᵀ) x + b, Hessian A + Aᵀ."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.randn(d, d, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(d, dtype=torch.float64))

    def forward(self, x):
        return torch.einsum("bi,ij,bj->b", x, self.A, x) + x @ self.b


def test_zero_when_model_equals_target():
    net = MLP(3, (16, 16), 1, activation="tanh").double()
    x = torch.randn(8, 3, dtype=torch.float64)
    with torch.no_grad():
        targets = [net(x), *[d.detach() for d in derivatives(net, x, 2)]]
    assert scalar(sobolev_loss(net, x, targets)) == pytest.approx(0, abs=1e-20)
    assert scalar(sobolev_loss(net, x, targets, distances="l1")) == pytest.approx(0, abs=1e-12)


def test_hand_computed_value_on_a_quadratic():
    d, B = 3, 5
    q = Quadratic(d)
    x = torch.randn(B, d, dtype=torch.float64)
    A, b = q.A.detach(), q.b.detach()
    value = torch.einsum("bi,ij,bj->b", x, A, x) + x @ b
    grad = x @ (A + A.T) + b
    hess = A + A.T
    zeros = [
        torch.zeros(B, dtype=torch.float64),
        torch.zeros(B, d, dtype=torch.float64),
        torch.zeros(B, d, d, dtype=torch.float64),
    ]
    expected = value.pow(2).mean() + 0.5 * grad.pow(2).sum(1).mean() + 2.0 * hess.pow(2).sum()
    got = sobolev_loss(q, x, zeros, weights=[1.0, 0.5, 2.0])
    assert scalar(got) == pytest.approx(scalar(expected), rel=1e-12)
    expected_l1 = value.abs().mean() + grad.abs().sum(1).mean()
    assert scalar(sobolev_loss(q, x, zeros[:2], distances="l1")) == pytest.approx(scalar(expected_l1), rel=1e-12)


def test_derivatives_match_autograd_and_finite_differences():
    net = MLP(2, (8,), 3, activation="tanh").double()
    x = torch.randn(4, 2, dtype=torch.float64)
    (jac,) = derivatives(net, x, 1)
    assert jac.shape == (4, 3, 2)
    h = 1e-6
    fd = torch.stack([(net(x + h * e) - net(x - h * e)) / (2 * h) for e in torch.eye(2, dtype=x.dtype)], dim=-1)
    torch.testing.assert_close(jac, fd, rtol=1e-6, atol=1e-8)
    scalar = MLP(2, (8,), 1, activation="tanh").double()
    torch.testing.assert_close(derivatives(scalar, x, 1)[0], input_gradient(scalar, x))
    v = torch.randn(4, 2, dtype=torch.float64)
    torch.testing.assert_close(jvp_projection(net, x, v), torch.einsum("boi,bi->bo", jac, v))
    u = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(vjp_projection(net, x, u), torch.einsum("bo,boi->bi", u, jac))


def test_loss_gradient_wrt_parameters_matches_finite_differences():
    net = MLP(2, (5,), 1, activation="tanh").double()
    x = torch.randn(6, 2, dtype=torch.float64)
    targets = [
        torch.randn(6, dtype=torch.float64),
        torch.randn(6, 2, dtype=torch.float64),
        torch.randn(6, 2, 2, dtype=torch.float64),
    ]
    weight = net.net[0].weight

    def loss_of(w):
        with torch.no_grad():
            weight.copy_(w)
        return sobolev_loss(net, x, targets)

    w0 = weight.detach().clone()
    loss_of(w0).backward()
    analytic = weight.grad.clone()
    h = 1e-6
    fd = torch.zeros_like(w0)
    for idx in torch.cartesian_prod(*[torch.arange(s) for s in w0.shape]):
        e = torch.zeros_like(w0)
        e[tuple(idx)] = h
        fd[tuple(idx)] = (loss_of(w0 + e).detach() - loss_of(w0 - e).detach()) / (2 * h)
    torch.testing.assert_close(analytic, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("direction,dim", [("input", 5), ("output", 3)])
def test_stochastic_term_is_unbiased_up_to_one_over_dim(direction, dim):
    """For v uniform on the unit sphere of R^n, E‖proj(J, v)‖² = ‖J‖²_F / n."""
    lin = nn.Linear(5, 3, bias=False).double()
    x = torch.randn(1, 5, dtype=torch.float64).expand(4000, 5).contiguous()
    zero_jac = torch.zeros(4000, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        value = lin(x)
    g = torch.Generator().manual_seed(0)
    est = stochastic_sobolev_loss(lin, x, value, target_jacobian=zero_jac, direction=direction, generator=g)
    full = lin.weight.detach().pow(2).sum()
    assert scalar(est) == pytest.approx(scalar(full) / dim, rel=0.05)


def test_stochastic_loss_zero_for_equal_target_and_target_fn_route():
    net = MLP(4, (8,), 2, activation="tanh").double()
    x = torch.randn(10, 4, dtype=torch.float64)
    with torch.no_grad():
        y = net(x)
    assert scalar(stochastic_sobolev_loss(net, x, y, target_fn=net, n_projections=3)) == pytest.approx(0, abs=1e-20)
    assert scalar(stochastic_sobolev_loss(net, x, y, target_fn=net, direction="output")) == pytest.approx(0, abs=1e-20)
    # target_fn and target_jacobian give the same loss for the same random vectors.
    teacher = MLP(4, (8,), 2, activation="tanh").double()
    (jac,) = derivatives(teacher, x, 1)
    a = stochastic_sobolev_loss(net, x, y, target_fn=teacher, generator=torch.Generator().manual_seed(5))
    b = stochastic_sobolev_loss(net, x, y, target_jacobian=jac.detach(), generator=torch.Generator().manual_seed(5))
    assert scalar(a) == pytest.approx(scalar(b), rel=1e-10)


def test_unit_vectors_are_unit_and_isotropic():
    v = random_unit_vectors(20000, 3, torch.Generator().manual_seed(0))
    torch.testing.assert_close(v.norm(dim=1), torch.ones(20000))
    torch.testing.assert_close(v.T @ v / 20000, torch.eye(3) / 3, atol=0.01, rtol=0)


def test_linearised_forward_is_the_networks_jvp_and_differentiates_in_the_weights():
    """A conv/linear ReLU network: the bias-free pass with the primal's masks equals ``torch.func.jvp``, its
    weight gradient of ``⟨u, J r⟩`` equals autograd's double backward of ``⟨r, ∇ₓ⟨u, net(x)⟩⟩``, and layers
    that are not piecewise linear are refused."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(27, 4), nn.ReLU(),
                        nn.Linear(4, 3)).double()  # fmt: skip
    x, r = torch.randn(6, 2, 6, 6, dtype=torch.float64), torch.randn(6, 2, 6, 6, dtype=torch.float64)
    out, masks = forward_with_masks(net, x)
    assert torch.equal(out, net(x)) and [m.shape for m in masks] == [(6, 3, 3, 3), (6, 4)]
    tangent = linearised_forward(net, r, masks)
    assert torch.allclose(tangent, jvp_projection(net, x, r), rtol=1e-12, atol=1e-12)
    u = torch.randn(6, 3, dtype=torch.float64)
    fast = torch.autograd.grad((u * tangent).sum(), list(net.parameters()), allow_unused=True)
    g = vjp_projection(net, x, u, create_graph=True)
    slow = torch.autograd.grad((g * r).sum(), list(net.parameters()), allow_unused=True)
    for a, b in zip(fast, slow, strict=True):
        assert (a is None and (b is None or not b.abs().max() > 0)) or torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="Tanh"):
        forward_with_masks(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), torch.zeros(1, 2))
    with pytest.raises(TypeError, match="circular"):
        circular = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular"))
        linearised_forward(circular, torch.zeros(1, 1, 4, 4), [])


def test_bad_input_is_rejected():
    net = MLP(2, (4,), 1)
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match=r"expected a batch of shape \(B, d_in\), got \(3,\)"):
        input_gradient(net, torch.randn(3))
    with pytest.raises(ValueError, match="distance must be one of"):
        distance(x, x, "l3")
    with pytest.raises(ValueError, match="weights: expected 2 entries"):
        sobolev_loss(net, x, [torch.zeros(3), torch.zeros(3, 2)], weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="exactly one of target_fn and target_jacobian"):
        stochastic_sobolev_loss(net, x, torch.zeros(3))
    with pytest.raises(ValueError, match="shape mismatch"):
        sobolev_loss(net, x, [torch.zeros(3), torch.zeros(3, 3)])


def test_stochastic_loss_on_images_with_the_norm_distance_equals_a_hand_computation():
    """Eq. (2) on image-shaped inputs (output direction, Euclidean norm): the distillation objective."""
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 4)).double()
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 4)).double()
    x = torch.randn(5, 2, 3, 3, dtype=torch.float64)
    target = teacher(x).detach()
    terms = stochastic_sobolev_loss(student, x, target, target_fn=teacher, n_projections=2, weight=3.0,
                                    distance_kind="norm", direction="output", return_terms=True,
                                    generator=torch.Generator().manual_seed(1))  # fmt: skip
    g = torch.Generator().manual_seed(1)
    gaps = []
    for _ in range(2):
        v = random_unit_vectors(5, 4, g, dtype=torch.float64)
        js = torch.autograd.functional.jacobian(student, x).sum(2)  # (B, A, 2, 3, 3)
        jt = torch.autograd.functional.jacobian(teacher, x).sum(2)
        gaps.append(torch.einsum("ba,ba...->b...", v, js - jt).flatten(1).norm(dim=1).mean())
    expected = torch.stack(gaps).mean()
    assert terms["projection"].item() == pytest.approx(expected.item(), rel=1e-12)
    value = distance(student(x), target, "norm")  # the value term uses the same distance
    assert terms["loss"].item() == pytest.approx((value + 3 * expected).item(), rel=1e-12)
    # The input direction takes images too: a perfect student has zero loss.
    zero = stochastic_sobolev_loss(teacher, x, target, target_fn=teacher, direction="input")
    assert zero.item() == pytest.approx(0, abs=1e-20)


def test_balanced_weights_give_each_input_unit_scale_and_the_dml_split():
    from sobolev.core.losses import balanced_weights

    g = torch.randn(500, 3, dtype=torch.float64) * torch.tensor([0.1, 1.0, 30.0], dtype=torch.float64)
    alpha, w = balanced_weights(g, lam=1.0)
    assert alpha == pytest.approx(1 / 4)
    # Each input's weighted target energy is β/d: the three derivative terms weigh the same.
    energy = (w * g.pow(2).mean(0)).tolist()
    assert energy == pytest.approx([0.75 / 3] * 3)
    # Rescaling one input of the data (and so its derivative targets) leaves the weighted errors unchanged.
    pred = g + 0.1 * torch.randn_like(g)
    scaled = torch.tensor([1.0, 7.0, 1.0], dtype=torch.float64)
    _, w2 = balanced_weights(g * scaled, 1.0)
    torch.testing.assert_close(((pred - g) ** 2 * w).sum(1), ((pred * scaled - g * scaled) ** 2 * w2).sum(1))
    assert balanced_weights(torch.zeros(4, 2))[1].tolist() == [0.0, 0.0]
    # Several training sets at once (one per model): the same weights as one at a time.
    stacked = torch.stack([g, 2 * g])
    a2, w_batch = balanced_weights(stacked, 1.0)
    assert a2 == alpha and w_batch.shape == (2, 3)
    torch.testing.assert_close(w_batch[1], balanced_weights(2 * g, 1.0)[1])
    with pytest.raises(ValueError, match="lam must be positive"):
        balanced_weights(g, 0.0)


@pytest.mark.parametrize("direction", ["input", "output"])
def test_stochastic_loss_names_every_shape_error(direction):
    """A transposed Jacobian (non-square: 3 outputs, 5 inputs), a mismatched batch or a target
    with another output size is refused naming the argument, never silently reshaped."""
    net, other = MLP(5, (4,), 3), MLP(5, (4,), 2)
    x = torch.randn(4, 5)
    value = net(x).detach()
    jac = torch.randn(4, 3, 5)
    loss = stochastic_sobolev_loss(net, x, value, target_jacobian=jac, direction=direction)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match=r"target_jacobian: expected shape \(4, 3, 5\) .* got \(4, 5, 3\)"):
        stochastic_sobolev_loss(net, x, value, target_jacobian=jac.transpose(1, 2), direction=direction)
    with pytest.raises(ValueError, match=r"target_jacobian: expected shape \(4, 3, 5\) .* got \(3, 3, 5\)"):
        stochastic_sobolev_loss(net, x, value, target_jacobian=jac[:3], direction=direction)
    with pytest.raises(ValueError, match=r"target_value: expected the model's output shape \(4, 3\), got \(3, 3\)"):
        stochastic_sobolev_loss(net, x, value[:3], target_jacobian=jac, direction=direction)
    with pytest.raises(ValueError, match=r"target_fn: its outputs .* must .* \(4, 3\)"):
        stochastic_sobolev_loss(net, x, value, target_fn=other, direction=direction)
