"""Gaussian-process fitters for the benchmarks, as a new user would call them (benchmark-only extras: SMT and
GPyTorch are never dependencies of ``sobolev``).

* ``krg``: SMT 2.15's ordinary kriging on values (``KRG``, squared-exponential kernel, one length scale per input,
  its default COBYLA likelihood search from 10 starts);
* ``gekpls``: SMT's gradient-enhanced kriging with partial least squares (``GEKPLS``: values and every partial
  derivative, ``n_comp = min(d, 5)`` components, one extra point per sample, as SMT's documentation shows);
* ``gpytorch``: GPyTorch 1.15's exact GP with derivative observations (``RBFKernelGrad`` with one length scale per
  input, ``ConstantMeanGrad``, a multitask Gaussian likelihood), on standardised data in float64, its
  hyper-parameters fitted by 100 Adam steps (rate 0.1) on the exact marginal likelihood, as its tutorial does.

Each returns a predictor of values at new points. An exact GP with gradients costs ``(n (d + 1))³`` per
likelihood step: :data:`GPYTORCH_MAX_LABELS` says where it stops being practical here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

#: Beyond this many observations (n (d + 1)) an exact GPyTorch GP with gradients took over two minutes to fit here.
GPYTORCH_MAX_LABELS = 1100


def fit_krg(x: np.ndarray, y: np.ndarray, g: np.ndarray | None, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    from smt.surrogate_models import KRG

    model = KRG(theta0=[1e-2] * x.shape[1], print_global=False, seed=seed)
    model.set_training_values(x, y)
    model.train()
    return lambda xt: model.predict_values(xt)[:, 0]


def fit_gekpls(x: np.ndarray, y: np.ndarray, g: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    from smt.surrogate_models import GEKPLS

    d = x.shape[1]
    n_comp = min(d, 5)
    box = np.stack([x.min(0), x.max(0)], 1)
    model = GEKPLS(theta0=[1e-2] * n_comp, n_comp=n_comp, xlimits=box, extra_points=1, delta_x=1e-4,
                   print_global=False, seed=seed)  # fmt: skip
    model.set_training_values(x, y)
    for i in range(d):
        model.set_training_derivatives(x, g[:, i], i)
    with warnings.catch_warnings():  # scikit-learn's PLS warns on every exactly fitted component
        warnings.simplefilter("ignore", UserWarning)
        model.train()
    return lambda xt: model.predict_values(xt)[:, 0]


def fit_gpytorch(x: np.ndarray, y: np.ndarray, g: np.ndarray, seed: int,
                 steps: int = 100) -> Callable[[np.ndarray], np.ndarray]:  # fmt: skip
    import gpytorch
    import torch

    torch.manual_seed(seed)
    d = x.shape[1]
    x_mean, x_std = x.mean(0), x.std(0)
    y_mean, y_std = y.mean(), y.std()
    xs = torch.as_tensor((x - x_mean) / x_std, dtype=torch.float64)
    targets = torch.as_tensor(np.c_[(y - y_mean) / y_std, g * x_std / y_std], dtype=torch.float64)

    class GradientGP(gpytorch.models.ExactGP):
        def __init__(self, train_x, train_y, likelihood):
            super().__init__(train_x, train_y, likelihood)
            self.mean_module = gpytorch.means.ConstantMeanGrad()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernelGrad(ard_num_dims=d))

        def forward(self, v):
            return gpytorch.distributions.MultitaskMultivariateNormal(self.mean_module(v), self.covar_module(v))

    likelihood = gpytorch.likelihoods.MultitaskGaussianLikelihood(num_tasks=d + 1).double()
    model = GradientGP(xs, targets, likelihood).double()
    model.train()
    likelihood.train()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    for _ in range(steps):
        opt.zero_grad()
        loss = -mll(model(xs), targets)
        loss.backward()
        opt.step()
    model.eval()
    likelihood.eval()

    def predict(xt: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad(), gpytorch.settings.fast_pred_var():
            for part in np.array_split(xt, max(1, len(xt) // 1000)):
                q = torch.as_tensor((part - x_mean) / x_std, dtype=torch.float64)
                out.append(likelihood(model(q)).mean[:, 0].numpy())
        return np.concatenate(out) * y_std + y_mean

    return predict
