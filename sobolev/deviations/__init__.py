"""Section 5.4: where a student departs from its teacher, and whether Sobolev training keeps it closer.

The section contract (the same names in every section): ``Config`` and ``OUTPUTS``
(:mod:`~sobolev.deviations.config`), ``run(cfg, progress) -> Result``
(:mod:`~sobolev.deviations.compute`: the MNIST-1D teacher and students, and Section 4.2's Atari
students), ``claims``, ``metrics``, ``save`` and ``readme_blocks`` (:mod:`~sobolev.deviations.report`),
``figures`` (:mod:`~sobolev.deviations.plots`). Also: ``classification`` (the students' training),
``measure`` (the deviation measurements), ``atari`` (reading Section 4.2's students).
"""

from sobolev.deviations.compute import Result, run
from sobolev.deviations.config import OUTPUTS
from sobolev.deviations.config import DeviationsConfig as Config
from sobolev.deviations.plots import figures
from sobolev.deviations.report import claims, metrics, readme_blocks, save

__all__ = ["OUTPUTS", "Config", "Result", "claims", "figures", "metrics", "readme_blocks", "run", "save"]
