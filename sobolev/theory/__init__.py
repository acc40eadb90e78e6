"""Section 3 and SM §1, computed: the paper's theory as constructions, counts and small trainings.

The section contract (the same names in every section): ``Config`` and ``OUTPUTS``
(:mod:`~sobolev.theory.config`), ``run(cfg, progress) -> Result``, ``claims``, ``metrics``, ``save``
and ``readme_blocks`` (:mod:`~sobolev.theory.report`: one part per claim, each computed from
:mod:`~sobolev.theory.compute`), ``figures`` (:mod:`~sobolev.theory.plots`). Here ``claims`` are
the parts' printed conclusions.
"""

from sobolev.theory.compute import Result
from sobolev.theory.config import OUTPUTS
from sobolev.theory.config import TheoryConfig as Config
from sobolev.theory.plots import figures
from sobolev.theory.report import claims, metrics, readme_blocks, run, save

__all__ = ["OUTPUTS", "Config", "Result", "claims", "figures", "metrics", "readme_blocks", "run", "save"]
