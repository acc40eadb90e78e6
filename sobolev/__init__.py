"""Sobolev Training for Neural Networks (Czarnecki et al., NeurIPS 2017).

Modules, one job each: ``functions`` (SM §2 benchmarks), ``derivatives`` and ``losses``
(eq. 1 and eq. 2 for any module), ``models`` (plain and batched MLPs), ``training``,
``data``, ``regression`` (Section 4.1), ``plotting``, ``config`` (validated params),
``stage`` (notebooks as DVC stages), ``cifar`` (the Section 4.3 archive).
"""

from sobolev.losses import sobolev_loss, stochastic_sobolev_loss

__version__ = "0.1.0"
__all__ = ["__version__", "sobolev_loss", "stochastic_sobolev_loss"]
