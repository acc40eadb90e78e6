"""Bad input to the package's public functions gets a clear error naming the argument, before any training; numpy
scalars are numbers; scales that would overflow are standardised first or refused with the reason.

``python tests/core/test_bad_inputs.py`` prints the table: input -> message.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import sobolev
from sobolev.core.gradient_estimates import finite_difference_gradients, knn_gradients

X = np.random.default_rng(0).uniform(-2, 2, (12, 2))
Y = np.sin(X[:, 0]) * X[:, 1]
G = np.stack([np.cos(X[:, 0]) * X[:, 1], np.sin(X[:, 0])], 1)

REFUSED = [
    ("fit: lr=10**400", lambda: sobolev.fit(X, Y, lr=10**400), r"lr: expected a finite number in \[1e-12, 10\]"),
    ("fit: device='cuda' without CUDA", lambda: sobolev.fit(X, Y, device="cuda"), r"device: 'cuda', but this torch"),
    ("fit: device='tpu'", lambda: sobolev.fit(X, Y, device="tpu"), r"device: 'tpu' is not a torch device"),
    ("fit: progress='x'", lambda: sobolev.fit(X, Y, progress="x"), r"progress: expected True, False or a stream"),
    ("fit: lam_grid=(1, 0)", lambda: sobolev.fit(X, Y, G, lam_grid=(1.0, 0.0)), r"lam_grid: expected distinct"),
    ("fit: folds=1", lambda: sobolev.fit(X, Y, G, folds=1), r"folds: expected an integer in \[2, 100\]"),
    ("fit: select='yes'", lambda: sobolev.fit(X, Y, G, select="yes"), r"select: expected True or False"),
    ("fit: dydx × 1e160 (values unscaled)", lambda: sobolev.fit(X, Y, G * 1e160),
     r"dydx: labels up to .* in standardised units .* contradict them"),
    ("knn_gradients: chunk=0", lambda: knn_gradients(X, Y, chunk=0), r"chunk: expected an integer in \[1, "),
    ("knn_gradients: chunk=-1", lambda: knn_gradients(X, Y, chunk=-1), r"chunk: expected an integer"),
    ("knn_gradients: chunk=1.5", lambda: knn_gradients(X, Y, chunk=1.5), r"chunk: expected an integer"),
    ("knn_gradients: k=12 of 12 points", lambda: knn_gradients(X, Y, k=12), r"k: expected an integer in \[1, 11\]"),
    ("finite_difference_gradients: f=None", lambda: finite_difference_gradients(None, X), r"f: expected a callable"),
    ("finite_difference_gradients: f returns strings",
     lambda: finite_difference_gradients(lambda p: np.array(["a"] * len(p)), X), r"f: returned values of dtype <U1"),
    ("finite_difference_gradients: f returns complex values",
     lambda: finite_difference_gradients(lambda p: p[:, 0] + 1j, X), r"f: returned values of dtype complex128"),
    ("finite_difference_gradients: step=1e-300", lambda: finite_difference_gradients(lambda p: p[:, 0], X, step=1e-300),
     r"step: 1e-300 is below float64's resolution"),
]  # fmt: skip

ACCEPTED = [
    ("fit: lr=np.float32(0.01), optimiser='adam'", lambda: sobolev.fit(X, Y, lr=np.float32(0.01), optimiser="adam",
                                                                      steps=np.int64(30), models=np.int64(2))),
    ("fit: steps=np.int64(30)", lambda: sobolev.fit(X, Y, steps=np.int64(30), models=2)),
    ("knn_gradients: k=np.int64(4)", lambda: knn_gradients(X, Y, k=np.int64(4))),
    ("finite_difference_gradients: step=np.float64(1e-6)",
     lambda: finite_difference_gradients(lambda p: p[:, 0], X, step=np.float64(1e-6))),
]  # fmt: skip


@pytest.mark.parametrize(("case", "call", "message"), REFUSED, ids=[c for c, _, _ in REFUSED])
def test_bad_input_is_refused_naming_the_argument(case, call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(("case", "call"), ACCEPTED, ids=[c for c, _ in ACCEPTED])
def test_numpy_scalars_are_numbers(case, call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sobolev.FitWarning)
        assert call() is not None


@pytest.mark.parametrize("scale", [1e-160, 1e160, 1e300])
def test_huge_or_tiny_scales_are_standardised_first(scale):
    """y, dydx and x in units of 1e±160 (or 1e300) fit as in units of 1: no overflow in the standardisation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sobolev.FitWarning)
        unit = sobolev.fit(X, Y, G, lam=1.0, models=1, steps=40)
        scaled = sobolev.fit(X, Y * scale, G * scale, lam=1.0, models=1, steps=40)
        np.testing.assert_allclose(scaled.predict(X) / scale, unit.predict(X), rtol=1e-6, atol=1e-9)
        wide = sobolev.fit(X * scale, Y, G / scale, lam=1.0, models=1, steps=40)
        np.testing.assert_allclose(wide.predict(X * scale), unit.predict(X), rtol=1e-6, atol=1e-9)


def test_knn_weights_cannot_underflow_whatever_the_units():
    """A linear function on [0, 1e4]²: its neighbours lie hundreds of units apart, where exp(−‖Δx‖) underflows to 0
    for every one of them (7 NaN rows of 200 before). No weighting gives a NaN now; the scale-free default gives the
    exact slope everywhere (Kissel & Diepold's weights, in these units, leave only the nearest neighbour)."""
    x = np.random.default_rng(0).uniform(0, 1e4, (200, 2))
    exact = torch.tensor([[3.0, -2.0]], dtype=torch.float64).expand(200, 2)
    for weighting in ("relative", "kissel_diepold", "uniform"):
        g = knn_gradients(x, 3 * x[:, 0] - 2 * x[:, 1], weighting=weighting)
        assert torch.isfinite(g).all(), weighting
        if weighting != "kissel_diepold":
            torch.testing.assert_close(g, exact, rtol=1e-4, atol=1e-4)
    # the same points in units 1e4 times larger: the same estimate, rescaled (chain rule)
    rescaled = knn_gradients(x / 1e4, 3 * x[:, 0] - 2 * x[:, 1], weighting="relative")
    torch.testing.assert_close(rescaled, exact * 1e4, rtol=1e-4, atol=0.0)


def _model_file(tmp_path, edit=None) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sobolev.FitWarning)
        model = sobolev.fit(X, Y, steps=5, models=1)
    path = tmp_path / "m.pt"
    model.save(path)
    if edit is not None:
        state = torch.load(path, weights_only=True)
        edit(state)
        torch.save(state, path)
    return path


def _nan_weights(state):
    state["params"]["W1"][0, 0, 0] = float("nan")


@pytest.mark.parametrize(
    ("case", "make", "reason"),
    [
        ("an empty file", lambda p: p.write_bytes(b""), "unreadable as a torch file"),
        ("a truncated file", lambda p: p.write_bytes(p.read_bytes()[:300]), "unreadable as a torch file"),
        ("random bytes", lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)), "unreadable as a torch file"),
        ("a text file", lambda p: p.write_text("weights = [1, 2, 3]\n"), "unreadable as a torch file"),
        ("another torch file", lambda p: torch.save({"a": torch.ones(2)}, p), "format tag 'None'"),
        ("the right tag, no fields", lambda p: torch.save({"format": "sobolev.FittedModel/2"}, p), "missing"),
    ],
)
def test_loading_anything_but_a_model_file_says_so(tmp_path, case, make, reason):
    path = _model_file(tmp_path)
    make(path)
    with pytest.raises(ValueError, match=rf"not a model file saved by sobolev.fit \({reason}"):
        sobolev.FittedModel.load(path)


def test_loading_checks_the_content(tmp_path):
    with pytest.raises(ValueError, match=r"non-finite weights"):
        sobolev.FittedModel.load(_model_file(tmp_path, _nan_weights))
    with pytest.raises(ValueError, match=r"its info lacks \['dim'\]"):
        sobolev.FittedModel.load(_model_file(tmp_path, lambda s: s["info"].pop("dim")))
    with pytest.raises(ValueError, match=r"networks of 2 inputs"):
        sobolev.FittedModel.load(_model_file(tmp_path, lambda s: s["info"].update(dim=3)))
    with pytest.raises(FileNotFoundError, match="no such model file"):
        sobolev.FittedModel.load(tmp_path / "missing.pt")


def test_a_file_of_the_first_format_still_loads(tmp_path):
    """Models saved before the selection (format 1, a recipe without its fields) load with those fields' defaults."""

    def first_format(state):
        state["format"] = "sobolev.FittedModel/1"
        for key in ("select", "lam_grid", "folds", "refit"):
            state["recipe"].pop(key)
        for key in ("selection", "diagnostics", "models_trained"):
            state["info"].pop(key, None)

    model = sobolev.FittedModel.load(_model_file(tmp_path, first_format))
    assert np.isfinite(model.predict(X)).all() and "FittedModel" in repr(model)


if __name__ == "__main__":
    for case, call, _ in REFUSED:
        try:
            call()
            print(f"{case} -> ACCEPTED")
        except ValueError as err:
            print(f"{case} -> {err}")
