"""Section 4.2, Sobolev distillation of Atari policies.

The section contract (the same names in every section): ``Config`` and ``OUTPUTS``
(:mod:`~sobolev.distillation.config`; the chain's steps declare theirs in ``chain.OUTPUTS``),
``run(cfg, progress) -> Result`` (:mod:`~sobolev.distillation.chain`: the per-game DVC steps
teacher -> record -> distill, read back for the report), ``claims``, ``metrics``, ``save`` and
``readme_blocks`` (:mod:`~sobolev.distillation.report`: tables, Figure 4's numbers, the paper's
claims decided), ``figures`` (:mod:`~sobolev.distillation.plots`). Also: ``atari`` (environments,
teachers), ``distill`` (recordings, the student, the objective, training, tuning).
"""

from sobolev.distillation.chain import Result, run
from sobolev.distillation.config import OUTPUTS
from sobolev.distillation.config import DistillationConfig as Config
from sobolev.distillation.plots import figures
from sobolev.distillation.report import claims, metrics, readme_blocks, save

__all__ = ["OUTPUTS", "Config", "Result", "claims", "figures", "metrics", "readme_blocks", "run", "save"]
