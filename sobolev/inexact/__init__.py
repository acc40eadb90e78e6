"""Section 5.5, derivatives you do not have exactly: how Sobolev training's advantage falls as the
derivative labels get noisier (the noise curve), and how a black box's evaluation budget is best
spent — values, forward differences, k-NN estimates from the samples, or exact gradients.

The section contract (the same names in every section): ``Config`` and ``OUTPUTS``
(:mod:`~sobolev.inexact.config`), ``run(cfg, progress) -> Result`` (:mod:`~sobolev.inexact.compute`),
``claims``, ``metrics``, ``save`` and ``readme_blocks`` (:mod:`~sobolev.inexact.report`: tables,
verdicts, files), ``figures`` (:mod:`~sobolev.inexact.plots`).
"""

from sobolev.inexact.compute import Result, run
from sobolev.inexact.config import OUTPUTS
from sobolev.inexact.config import InexactConfig as Config
from sobolev.inexact.plots import figures
from sobolev.inexact.report import claims, metrics, readme_blocks, save

__all__ = ["OUTPUTS", "Config", "Result", "claims", "figures", "metrics", "readme_blocks", "run", "save"]
