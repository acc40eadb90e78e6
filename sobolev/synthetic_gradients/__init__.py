"""Section 4.3, synthetic gradients from Sobolev-trained critics.

The section contract (the same names in every section): ``Config`` and ``OUTPUTS``
(:mod:`~sobolev.synthetic_gradients.config`), ``run(cfg, progress) -> Result``
(:mod:`~sobolev.synthetic_gradients.compute`: Table 1's runs), ``claims``, ``metrics``,
``save`` and ``readme_blocks`` (:mod:`~sobolev.synthetic_gradients.report`: statistics, verdicts,
files), ``figures`` (:mod:`~sobolev.synthetic_gradients.plots`). Also: ``decoupled`` (training
with SG modules), ``data`` and ``cifar`` (the data), ``imagenet`` (the torchrun ResNet-50 path).
"""

from sobolev.synthetic_gradients.compute import Result, run
from sobolev.synthetic_gradients.config import OUTPUTS
from sobolev.synthetic_gradients.config import SyntheticGradientsConfig as Config
from sobolev.synthetic_gradients.plots import figures
from sobolev.synthetic_gradients.report import claims, metrics, readme_blocks, save

__all__ = ["OUTPUTS", "Config", "Result", "claims", "figures", "metrics", "readme_blocks", "run", "save"]
