import math

import pytest
import torch

from sobolev.core.functions import FUNCTIONS, BenchmarkFunction, check_gradient, get_function

NAMES = sorted(FUNCTIONS)


def interior_points(fn, n=64):
    """Random float64 points of the domain, kept away from non-differentiable sets."""
    x = fn.sample(n, generator=torch.Generator().manual_seed(1)).double()
    if fn.name == "bukin":  # keep off the ridge y = 0.01 x² and the kink x = -10
        x = x[((x[:, 1] - 0.01 * x[:, 0] ** 2).abs() > 1e-2) & ((x[:, 0] + 10).abs() > 1e-3)]
    return x


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_autograd(name):
    fn = get_function(name)
    x = interior_points(fn).requires_grad_(True)
    (auto,) = torch.autograd.grad(fn(x).sum(), x)
    torch.testing.assert_close(fn.grad(x.detach()), auto, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_central_differences(name):
    fn = get_function(name)
    x = interior_points(fn)
    h = 1e-6
    fd = torch.stack([(fn(x + h * e) - fn(x - h * e)) / (2 * h) for e in torch.eye(2, dtype=x.dtype)], dim=-1)
    torch.testing.assert_close(fn.grad(x), fd, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_known_minimum(name):
    fn = get_function(name)
    at = torch.tensor([fn.minimiser], dtype=torch.float64)
    assert float(fn(at)) == pytest.approx(fn.minimum, abs=1e-4)
    # No sampled point of the domain goes below the minimum.
    assert float(fn(fn.sample(20000, torch.Generator().manual_seed(2)).double()).min()) >= fn.minimum - 1e-6


def test_quoted_minima():
    point = lambda a, b: torch.tensor([[a, b]], dtype=torch.float64)  # noqa: E731
    assert float(get_function("booth")(point(1, 3))) == 0
    assert float(get_function("rosenbrock")(point(1, 1))) == 0
    assert float(get_function("beale")(point(3, 0.5))) == 0
    assert float(get_function("styblinski_tang")(point(-2.903534, -2.903534))) == pytest.approx(-78.33233, abs=1e-4)
    assert float(get_function("mccormick")(point(-0.54719, -1.54719))) == pytest.approx(-1.9133, abs=1e-4)
    # Gradients vanish at the interior minima.
    for name in ("booth", "rosenbrock", "beale", "styblinski_tang"):
        fn = get_function(name)
        g = fn.grad(torch.tensor([fn.minimiser], dtype=torch.float64))
        assert float(g.abs().max()) < 1e-5, name


def test_non_differentiable_points_are_documented_values():
    # Ackley's cone tip and Bukin's ridge return 0 for the singular term, never nan/inf.
    assert torch.equal(get_function("ackley").grad(torch.zeros(1, 2)), torch.zeros(1, 2))
    ridge = torch.tensor([[-10.0, 1.0], [-12.0, 1.44]], dtype=torch.float64)
    g = get_function("bukin").grad(ridge)
    assert torch.isfinite(g).all()
    assert g[0].tolist() == [0.0, 0.0]  # also on the |x + 10| kink
    # Near the ridge the gradient is exact and huge (heavy-tailed targets).
    near = torch.tensor([[-10.0, 1.0 + 1e-8]], dtype=torch.float64)
    assert float(get_function("bukin").grad(near)[0, 1]) == pytest.approx(100 / (2 * math.sqrt(1e-8)), rel=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_sample_stays_in_domain(name):
    fn = get_function(name)
    x = fn.sample(5000, torch.Generator().manual_seed(3))
    assert x.shape == (5000, 2)
    assert bool((x >= fn.low).all() and (x <= fn.high).all())
    # Uniform: each coordinate's mean is near the middle of its interval.
    mid = (fn.low + fn.high) / 2
    assert torch.allclose(x.mean(0), mid, atol=0.05 * float((fn.high - fn.low).max()))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="unknown function 'rastrigin'; allowed: ackley"):
        get_function("rastrigin")
    with pytest.raises(ValueError, match=r"expected points of shape \(\.\.\., 2\), got \(4, 3\)"):
        get_function("booth")(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="positive integer"):
        get_function("booth").sample(0)


@pytest.mark.parametrize("name", ["beale", "booth", "mccormick", "rosenbrock", "styblinski_tang"])
def test_public_gradient_check_passes_on_smooth_benchmarks(name):
    result = check_gradient(get_function(name))
    assert result.passed and result.autograd_error < 1e-10


def test_public_gradient_check_catches_a_wrong_gradient_in_any_dimension():
    good = BenchmarkFunction("cubic", lambda x: (x**3).sum(-1), lambda x: 3 * x**2, ((-2.0, 2.0),) * 5)
    assert check_gradient(good).passed and good.dim == 5 and good.sample(7).shape == (7, 5)
    bad = BenchmarkFunction("cubic", lambda x: (x**3).sum(-1), lambda x: 2 * x**2, ((-2.0, 2.0),) * 5)
    with pytest.raises(ValueError, match=r"cubic: gradient does not match .* at x = \["):
        check_gradient(bad)
    with pytest.raises(ValueError, match=r"cubic: expected points of shape \(\.\.\., 5\), got \(3, 2\)"):
        good(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="domain must be a non-empty list of"):
        BenchmarkFunction("empty", good.value, good.gradient, ((1.0, 0.0),))


@pytest.mark.parametrize(
    ("domain", "message"),
    [
        ((-5, 5), r"for one input write \(\(-5, 5\),\)"),
        (((0.0, math.inf),), r"domain entry 0 is \(0.0, inf\)"),
        ((("a", "b"),), r"domain entry 0 is \('a', 'b'\)"),
        ("(-1, 1)", r"got '\(-1, 1\)'"),
        (((0.0, 1.0), (2.0, 2.0)), r"domain entry 1 is \(2.0, 2.0\)"),
        ((), r"domain must be a non-empty list"),
    ],
)
def test_domain_is_checked_with_a_remedy(domain, message):
    with pytest.raises(ValueError, match=message):
        BenchmarkFunction("f", lambda x: x.sum(-1), torch.ones_like, domain)


def test_a_gradient_check_that_is_not_finite_fails():
    """A function that is NaN on part of its domain fails the check (a NaN error is no pass)."""
    f = BenchmarkFunction("sqrt", lambda x: x[..., 0].sqrt(), lambda x: 0.5 / x.sqrt(), ((-1.0, 1.0),))
    with pytest.raises(ValueError, match="sqrt: gradient does not match"):
        check_gradient(f)
    from sobolev.core.functions import GradientCheck

    assert not GradientCheck(0.0, math.nan, 1e-5).passed


def test_a_sample_with_a_non_finite_gradient_is_refused_naming_the_point():
    from sobolev.core.samples import make_sample

    f = BenchmarkFunction("kink", lambda x: x.abs().sum(-1), lambda x: torch.where(x[..., :1] > 0.5, math.nan, 1.0)
                          .expand_as(x), ((-1.0, 1.0), (-1.0, 1.0)))  # fmt: skip
    with pytest.raises(ValueError, match=r"kink: value .* and gradient \[nan, nan\] at x = .*not finite"):
        make_sample(f, 50, 0)
