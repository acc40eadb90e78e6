"""Gradient estimators for derivative labels you do not have exactly: exact where the method is
exact, converging at the method's known rate, and well-defined on duplicates and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sobolev.core.gradient_estimates import finite_difference_gradients, knn_gradients

A = np.array([0.5, -2.0, 3.0])


def _linear(x):
    return x @ A + 1.0


def _quadratic(x):
    return (x**2).sum(1) + x[:, 0] * x[:, 1]


def _quadratic_grad(x):
    g = 2 * x
    g[:, 0] += x[:, 1]
    g[:, 1] += x[:, 0]
    return g


def _sqrt(x):
    with np.errstate(invalid="ignore"):
        return np.sqrt(x[:, 0])  # NaN left of 0: not finite beside x = 0


def _points(n, d, seed=0, low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, (n, d))


@pytest.mark.parametrize("scheme", ["forward", "central"])
def test_finite_differences_are_exact_on_linear_functions_and_count_calls(scheme):
    x = _points(50, 3)
    fd = finite_difference_gradients(_linear, x, scheme)
    np.testing.assert_allclose(fd.gradients.numpy(), np.broadcast_to(A, (50, 3)), rtol=0, atol=1e-6)
    np.testing.assert_allclose(fd.values.numpy(), _linear(x))
    assert fd.calls_per_point == (4 if scheme == "forward" else 7)


def test_central_differences_are_exact_on_quadratics_forward_are_not():
    x = _points(50, 2)
    central = finite_difference_gradients(_quadratic, x, "central", step=1e-2)
    forward = finite_difference_gradients(_quadratic, x, "forward", step=1e-2)
    np.testing.assert_allclose(central.gradients.numpy(), _quadratic_grad(x), atol=1e-9)
    assert np.abs(forward.gradients.numpy() - _quadratic_grad(x)).max() > 1e-3  # O(h) bias


@pytest.mark.parametrize(("scheme", "order"), [("forward", 1), ("central", 2)])
def test_finite_difference_error_shrinks_at_the_known_rate(scheme, order):
    x = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    f = lambda p: torch.sin(p[:, 0]) * torch.exp(p[:, 1])  # noqa: E731
    exact = torch.stack([torch.cos(x[:, 0]) * torch.exp(x[:, 1]), torch.sin(x[:, 0]) * torch.exp(x[:, 1])], 1)
    steps = np.array([1e-2, 1e-3])
    errors = [float((finite_difference_gradients(f, x, scheme, step=h).gradients - exact).abs().max()) for h in steps]
    slope = np.log(errors[0] / errors[1]) / np.log(steps[0] / steps[1])
    assert abs(slope - order) < 0.15, (errors, slope)


def test_knn_gradients_are_exact_on_linear_functions_in_any_dimension():
    for d in (1, 2, 5):
        x = _points(200, d, seed=d)
        a = np.arange(1, d + 1, dtype=float)
        g = knn_gradients(x, x @ a - 3.0, k=max(4, 2 * d))
        np.testing.assert_allclose(g.numpy(), np.broadcast_to(a, (200, d)), rtol=1e-4)


def test_knn_error_shrinks_on_a_denser_sample():
    errors = []
    for n in (200, 3200):
        x = _points(n, 2, seed=1)
        g = knn_gradients(x, _quadratic(x))
        inner = np.abs(x).max(1) < 1.5  # away from the boundary, where neighbours are one-sided
        errors.append(float(np.sqrt(((g.numpy() - _quadratic_grad(x))[inner] ** 2).mean())))
    # error ∝ neighbour spacing ∝ n^(-1/2) in 2-D: 16× the points, about a quarter of the error
    assert errors[1] < 0.4 * errors[0], errors


def test_knn_duplicates_give_finite_slopes_not_infinite_weights():
    x = _points(40, 2)
    x = np.concatenate([x, x[:10]])  # ten points twice
    g = knn_gradients(x, _linear(np.c_[x, np.zeros(len(x))]), k=4)
    assert torch.isfinite(g).all()
    # every neighbour a duplicate: no slope information at all, so the estimate is 0, not NaN
    same = np.zeros((6, 2))
    assert torch.equal(knn_gradients(same, np.arange(6.0), k=3), torch.zeros(6, 2, dtype=torch.float64))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: knn_gradients(np.zeros((5, 2)), np.zeros(4)), r"y: expected 5 values"),
        (lambda: knn_gradients(np.zeros((5, 2)), np.zeros(5), k=5), r"k: expected an integer in \[1, 4\]"),
        (
            lambda: knn_gradients([[0.0, np.nan], [1, 1]], [0, 1], k=1),
            r"x: row 0 holds nan; every input must be finite",
        ),
        (lambda: knn_gradients(np.ones((3, 1)), [0, np.inf, 1], k=1), r"y: row 1 is not finite"),
        (lambda: knn_gradients(np.ones((3, 1)), [0, 1, 2], k=1, weighting="gauss"), r"weighting: expected one of"),
        (lambda: finite_difference_gradients(_linear, np.zeros((2, 3)), "backward"), r"scheme: expected one of"),
        (lambda: finite_difference_gradients(_linear, np.zeros((2, 3)), step=0.0), r"step: expected a relative step"),
        (lambda: finite_difference_gradients(lambda p: p[:1, 0], np.zeros((2, 3))), r"f: expected 14 values"),
        (lambda: finite_difference_gradients(_sqrt, np.zeros((2, 1))), r"f: not finite .*\(row 0\)"),
        (lambda: finite_difference_gradients(_linear, np.zeros((0, 3))), r"x: no points \(shape \(0, 3\)\)"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
