"""Sobolev Training for Neural Networks (Czarnecki et al., NeurIPS 2017).

Fit your own data: ``sobolev.fit(x, y, dydx)`` returns a :class:`FittedModel` (see
:mod:`sobolev.core.fitting`). No exact derivatives? ``finite_difference_gradients(f, x)`` of a
black box or ``knn_gradients(x, y)`` from the samples (:mod:`sobolev.core.gradient_estimates`).

Layout: ``sobolev.core`` (functions, derivatives, eq. 1 and eq. 2, models, the training loop),
``sobolev.common`` (params, claims, comparisons, figures, helpers), one subpackage per section
(``theory``, ``regression``, ``distillation``, ``synthetic_gradients``, ``differential``, ``trust``,
``features``, ``deviations``, ``inexact``), each with the same contract: ``Config``, ``OUTPUTS``,
``run(cfg, progress) -> Result``, ``claims(result)``, ``figures(result)``, ``metrics(result)``,
``save(result, out_dir, figures)`` and ``readme_blocks(metrics)``; ``sobolev.pipeline`` runs
them as DVC stages. Sections import the core and ``common``, never each other.
"""

from sobolev.core.derivatives import derivatives, input_gradient
from sobolev.core.fitting import FittedModel, FitWarning, Recipe, fit
from sobolev.core.gradient_estimates import finite_difference_gradients, knn_gradients
from sobolev.core.losses import sobolev_loss, stochastic_sobolev_loss
from sobolev.core.models import MLP

__version__ = "0.1.0"
__all__ = [
    "MLP",
    "FitWarning",
    "FittedModel",
    "Recipe",
    "__version__",
    "derivatives",
    "finite_difference_gradients",
    "fit",
    "input_gradient",
    "knn_gradients",
    "sobolev_loss",
    "stochastic_sobolev_loss",
]
