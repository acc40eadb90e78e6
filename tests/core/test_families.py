"""The SFU families and 2-D extras: gradients exact, minima where SFU puts them, the 2-D members equal
to Section 4.1's functions, and names resolved or refused clearly."""

import pytest
import torch

from sobolev.core.families import EXTRA_2D, family, is_known, lookup
from sobolev.core.functions import FUNCTIONS, check_gradient

NAMES = sorted(EXTRA_2D) + [f"{f}_{d}d" for f in ("ackley", "rosenbrock", "styblinski_tang", "rastrigin")
                            for d in (2, 5, 10)]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_autograd_and_central_differences(name):
    fn = lookup(name)
    result = check_gradient(fn, n=128, seed=3, tolerance=1e-6)
    assert result.passed and result.autograd_error < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_known_minimum_is_a_minimum(name):
    fn = lookup(name)
    at = torch.tensor([fn.minimiser], dtype=torch.float64)
    assert float(fn(at)) == pytest.approx(fn.minimum, abs=1e-3)
    nearby = at + 1e-2 * torch.randn(64, fn.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert bool((fn(nearby) > fn(at)).all())


@pytest.mark.parametrize("name", ["ackley", "rosenbrock", "styblinski_tang"])
def test_two_dimensional_members_are_section_41s_functions(name):
    fn, paper = family(name, 2), FUNCTIONS[name]
    x = paper.sample(256, torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(fn(x), paper(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fn.grad(x), paper.grad(x), rtol=1e-12, atol=1e-12)
    assert fn.domain == paper.domain


def test_names_resolve_and_bad_names_say_what_is_allowed():
    assert lookup("rosenbrock") is FUNCTIONS["rosenbrock"]
    assert lookup("rosenbrock_10d").dim == 10 and lookup("rastrigin_2d").name == "rastrigin_2d"
    assert is_known("six_hump_camel") and not is_known("rosenbrock_0d") and not is_known(3)
    with pytest.raises(ValueError, match=r"function: unknown 'sphere_3d'.*'<family>_<d>d'"):
        lookup("sphere_3d")
    with pytest.raises(ValueError, match=r"d: rosenbrock needs d ≥ 2"):
        family("rosenbrock", 1)
    with pytest.raises(ValueError, match=r"d: expected an integer in \[1, 200\], got 0"):
        family("ackley", 0)
