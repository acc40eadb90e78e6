import math

import pytest
import torch

from sobolev.core.derivatives import input_gradient
from sobolev.theory import compute as T


def test_pl_family_values_leave_a_line_values_and_slopes_leave_one():
    knots = torch.tensor([0.0, 1.0, 2.0, 3.0])
    target = torch.tensor([0.0, 2.0, 1.0, 3.0])
    x = torch.tensor([0.5, 1.5, 2.5])
    y = T.pl_rows(knots, x) @ target.double()
    dy = T.pl_rows(knots, x, derivative=True) @ target.double()
    values = T.pl_family(knots, x, y)
    assert values.dimension == 1 and values.residual < 1e-12
    for z in (-3.0, 2.0):  # every member fits the data
        torch.testing.assert_close(T.pl_rows(knots, x) @ values.member([z]), y)
    both = T.pl_family(knots, x, y, dy)
    assert both.dimension == 0
    torch.testing.assert_close(both.particular, target.double())


@pytest.mark.parametrize("d", [1, 2, 5])
def test_prop1_network_interpolates_values_and_gradients(d):
    g = torch.Generator().manual_seed(d)
    points = torch.randn(12, d, generator=g, dtype=torch.float64)
    values = torch.randn(12, generator=g, dtype=torch.float64)
    grads = torch.randn(12, d, generator=g, dtype=torch.float64)
    net = T.prop1_network(points, values, grads)
    assert isinstance(net.hidden, torch.nn.Linear) and net.hidden.out_features == 4 * 12 * d
    torch.testing.assert_close(net(points), values, rtol=0, atol=1e-9)
    torch.testing.assert_close(input_gradient(net, points), grads, rtol=0, atol=1e-9)


def test_prop1_as_printed_gets_gradients_wrong_in_several_dimensions():
    g = torch.Generator().manual_seed(0)
    points, values, grads = torch.randn(6, 3, generator=g), torch.randn(6, generator=g), torch.randn(6, 3, generator=g)
    printed = T.prop1_network(points, values, grads, as_printed=True)
    torch.testing.assert_close(
        printed(points.double()).detach(), values.double(), rtol=0, atol=1e-9
    )  # values still match
    assert float((input_gradient(printed, points.double(), create_graph=False) - grads).abs().max()) > 0.1


def test_bump_shape():
    knots, coeffs = T.bump(0.0, 2.0, -1.0, 0.1)
    net = T.ReLUSum(
        torch.ones(4, 1, dtype=torch.float64),
        torch.tensor(knots, dtype=torch.float64),
        torch.tensor(coeffs, dtype=torch.float64),
    )
    x = torch.tensor([[-0.3], [-0.05], [0.0], [0.05], [0.3]], dtype=torch.float64)
    torch.testing.assert_close(net(x), torch.tensor([0.0, 2.05, 2.0, 1.95, 0.0], dtype=torch.float64))


def test_gaussian_recovered_from_one_value_and_slope():
    for mu, var, x in [(2.0, 1.0, 0.3), (-1.0, 0.25, 0.0), (0.5, 4.0, 3.0)]:
        xs = torch.tensor([x], dtype=torch.float64, requires_grad=True)
        alpha = T.gaussian_pdf(xs, mu, var)
        (beta,) = torch.autograd.grad(alpha.sum(), xs)
        got = T.gaussian_from_value_and_slope(x, float(alpha.detach()), float(beta))
        assert got == pytest.approx((mu, var), rel=1e-9)


def test_a_second_gaussian_agrees_with_n21_at_0_and_3():
    mu, var = T.gaussian_through(2.0, 1.0, 0.0, 3.0, guess=(3.0, 1.5))
    # The paper's "N(2.847..., 1.641...)" gives the standard deviation: σ² = 2.695.
    assert (mu, math.sqrt(var)) == pytest.approx((2.847, 1.641), abs=1e-3)
    xs = torch.tensor([0.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(T.gaussian_pdf(xs, mu, var), T.gaussian_pdf(xs, 2.0, 1.0))
    assert abs(mu - 2.0) > 0.5


@pytest.mark.parametrize("n", range(1, 11))
def test_polynomial_point_counts(n):
    assert T.polynomial_points_needed(n, with_derivatives=False) == n + 1
    assert T.polynomial_points_needed(n, with_derivatives=True) == math.ceil((n + 1) / 2)


def test_sobolev_floor_is_zero_only_for_consistent_derivatives():
    f = torch.sin
    exact, _, _, _ = T.sobolev_floor(f, torch.cos, 0.0, 2 * math.pi)
    shifted, x, h, err = T.sobolev_floor(f, lambda x: torch.cos(x) + 0.5, 0.0, 2 * math.pi)
    assert exact < 1e-8
    # Closed form for g = f' + c on [0, L]: h = sin + u, u - u'' = 0, u'(0) = u'(L) = c, so
    # u = c sinh(x - L/2) / cosh(L/2) and J = (1/L) ∫ u² + (u' - c)² (integrated finely here).
    L, c = 2 * math.pi, 0.5
    xs = torch.linspace(0, L, 400_001, dtype=torch.float64)
    u = c * torch.sinh(xs - L / 2) / math.cosh(L / 2)
    du = c * torch.cosh(xs - L / 2) / math.cosh(L / 2)
    truth = float(torch.trapezoid(u**2 + (du - c) ** 2, xs) / L)
    assert abs(shifted - truth) < 1e-6 and err < 1e-6
    torch.testing.assert_close(h, f(x) + c * torch.sinh(x - L / 2) / math.cosh(L / 2), rtol=0, atol=1e-6)
    # The optimum trades both errors: neither is zero.
    assert float((h - f(x)).abs().max()) > 0.1


@pytest.mark.parametrize("d,m", [(1, 4), (2, 3), (3, 2)])
def test_kuhn_mesh_rows_reproduce_a_pl_function(d, m):
    mesh = T.KuhnMesh(d, m)
    g = torch.Generator().manual_seed(0)
    c = torch.randn(mesh.n_vertices, generator=g, dtype=torch.float64)
    x = torch.rand(50, d, generator=g, dtype=torch.float64)
    value = mesh.rows(x) @ c
    grad = mesh.rows(x, derivative=True) @ c
    # Finite differences of the interpolant agree with its gradient rows (points off the faces).
    h = 1e-7
    for k in range(d):
        e = torch.zeros(d, dtype=torch.float64)
        e[k] = h
        fd = (mesh.rows(x + e) @ c - mesh.rows(x - e) @ c) / (2 * h)
        torch.testing.assert_close(fd, grad[:, k], rtol=1e-5, atol=1e-5)
    # Linear functions are reproduced exactly (P1 elements contain the affine functions).
    w = torch.randn(d, generator=g, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(*[torch.linspace(0, 1, m + 1, dtype=torch.float64)] * d, indexing="ij"), -1)
    # Vertex index Σ_k v_k (m+1)^k puts coordinate 0 fastest; meshgrid "ij" puts it slowest.
    nodal = grid.reshape(-1, d).flip(-1) @ w
    torch.testing.assert_close(mesh.rows(x) @ nodal, x @ w)
    assert value.shape == (50,)


@pytest.mark.parametrize("with_derivatives", [False, True])
def test_counting_equals_rank_for_independent_pieces(with_derivatives):
    mesh = T.KuhnMesh(2, 2)  # 8 triangles
    for seed in range(3):
        by_rank = T.points_to_identify(
            mesh, with_derivatives, False, torch.Generator().manual_seed(seed), method="rank"
        )
        by_count = T.points_to_identify(
            mesh, with_derivatives, False, torch.Generator().manual_seed(seed), method="count"
        )
        assert by_rank == by_count
        assert by_count >= mesh.n_simplices * (1 if with_derivatives else 3)


def test_continuous_family_gradients_pin_down_more_with_few_points():
    mesh = T.KuhnMesh(2, 3)
    reg = T.points_to_identify(mesh, False, continuous=True)
    sob = T.points_to_identify(mesh, True, continuous=True)
    # Full identification waits for points in the corner triangles either way ...
    assert reg >= mesh.n_vertices and sob <= reg
    # ... but with few points, gradients fix far more of the function.
    counts = [2, 4, 8]
    ranks_reg, ranks_sob = T.rank_curve(mesh, False, counts), T.rank_curve(mesh, True, counts)
    assert ranks_reg == counts  # one value, one equation
    assert all(s > r for s, r in zip(ranks_sob, ranks_reg, strict=True))
    assert ranks_sob == sorted(ranks_sob) and ranks_sob[-1] <= mesh.n_vertices


def test_two_runs_with_pinned_threads_give_identical_metrics():
    import json

    from sobolev.common.utils import set_threads
    from sobolev.theory import report
    from sobolev.theory.config import TheoryConfig

    cfg = TheoryConfig.load("ci").replace(thm2_steps=30, identification_seeds=2, net_steps=20, net_sizes=[8])
    set_threads(cfg.threads)

    def metrics() -> str:
        parts = (report.theorem2(cfg), *report.identification(cfg), report.pl_networks(cfg))
        return json.dumps([p.metrics for p in parts], sort_keys=True, default=str)

    assert metrics() == metrics()


def test_one_tolerance_for_not_below_the_floor_and_no_typed_prose_in_the_block():
    """The notebook's conclusion and the README block used two tolerances for "not below the floor"; a network
    error below the floor by more than the floor's discretisation error but less than that plus the network's
    quadrature error was "not below" in one and "below" in the other."""
    import copy
    import json

    from sobolev.common.paths import RESULTS
    from sobolev.theory import report

    m = json.loads((RESULTS / "theory" / "metrics.json").read_text())
    shifted = next(r for r in m["theorem2"] if r["pair"] == "g = f′ + 0.5")
    edge = copy.deepcopy(m)
    row = next(r for r in edge["theorem2"] if r["pair"] == "g = f′ + 0.5")
    row["network error"] = shifted["least possible error"] - 2 * shifted["floor discretisation error"]
    assert shifted["network quadrature error"] > shifted["floor discretisation error"]  # the case exists
    assert report.above_floor(row) is True
    assert "floor beyond numerical error: True" in report.readme_block(edge)
    row["network error"] = shifted["least possible error"] - 2 * (
        shifted["floor discretisation error"] + shifted["network quadrature error"]
    )
    assert report.above_floor(row) is False and "error: False" in report.readme_block(edge)
    assert "see the notebook" not in report.readme_block(m)


def test_the_sections_figures_pass_the_figure_check():
    from sobolev.common.plotting import figure_problems
    from sobolev.theory import plots, report
    from sobolev.theory.compute import Result
    from sobolev.theory.config import TheoryConfig

    cfg = TheoryConfig.load("ci")
    parts = [report.figure2_left(), report.proposition3(), report.theorem2(cfg), *report.identification(cfg)]
    figures = plots.figures(Result(cfg, {p.key: p for p in parts}))
    assert {"fig2_left", "prop3_gaussians", "theorem2", "identification_rank"} <= set(figures)
    assert {k: figure_problems(f) for k, f in figures.items()} == {k: [] for k in figures}


def test_computing_a_part_draws_nothing_and_save_writes_the_declared_outputs(tmp_path):
    """Figures are drawn by ``figures`` from the parts' data, never while computing (the notebook shows
    each where its part is discussed); ``save`` writes exactly the section's declared outputs."""
    from matplotlib import pyplot as plt

    from sobolev.theory import report
    from sobolev.theory.compute import Result
    from sobolev.theory.config import OUTPUTS, TheoryConfig

    cfg = TheoryConfig.load("ci").replace(thm2_steps=30, identification_seeds=2, net_steps=20, net_sizes=[8])
    plt.close("all")
    result = report.run(cfg)
    assert plt.get_fignums() == []
    assert isinstance(result, Result) and next(iter(result.parts)) == "figure2_left"
    report.save(result, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    assert plt.get_fignums() == []  # saved figures are closed
