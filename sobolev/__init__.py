"""Sobolev Training for Neural Networks (Czarnecki et al., NeurIPS 2017).

Fit your own data: ``sobolev.fit(x, y, dydx)`` returns a :class:`FittedModel` (see
:mod:`sobolev.core.fitting`).

Layout: ``sobolev.core`` (functions, derivatives, eq. 1 and eq. 2, models, the training loop),
``sobolev.common`` (params, claims, comparisons, figures, helpers), one subpackage per paper
section (``theory``, ``regression``, ``distillation``, ``synthetic``), each with ``config``, its
computation and ``report``; ``sobolev.pipeline`` runs them as DVC stages. Sections import the
core and ``common``, never each other.
"""

from sobolev.core.derivatives import derivatives, input_gradient
from sobolev.core.fitting import FittedModel, Recipe, fit
from sobolev.core.losses import sobolev_loss, stochastic_sobolev_loss
from sobolev.core.models import MLP

__version__ = "0.1.0"
__all__ = [
    "MLP",
    "FittedModel",
    "Recipe",
    "__version__",
    "derivatives",
    "fit",
    "input_gradient",
    "sobolev_loss",
    "stochastic_sobolev_loss",
]
