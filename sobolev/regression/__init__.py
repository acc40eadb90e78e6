"""Section 4.1, regression of seven 2-D functions.

The section contract (the same names in every section): ``Config`` and ``OUTPUTS``
(:mod:`~sobolev.regression.config`), ``run(cfg, progress) -> Result``
(:mod:`~sobolev.regression.compute`: the batched training grid, learning rates chosen on
validation, arms paired with their baselines), ``claims``, ``metrics``, ``save`` and
``readme_blocks`` (:mod:`~sobolev.regression.report`), ``figures``
(:mod:`~sobolev.regression.plots`).
"""

from sobolev.regression.compute import Result, run
from sobolev.regression.config import OUTPUTS
from sobolev.regression.config import RegressionConfig as Config
from sobolev.regression.plots import figures
from sobolev.regression.report import claims, metrics, readme_blocks, save

__all__ = ["OUTPUTS", "Config", "Result", "claims", "figures", "metrics", "readme_blocks", "run", "save"]
