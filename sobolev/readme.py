"""README tables generated from the committed metrics (no number typed in by hand).

``python -m sobolev.readme`` rewrites every block between ``<!-- results:NAME -->`` and
``<!-- /results:NAME -->`` in README.md from each section's ``report.readme_block(s)``;
``tests/test_pipeline.py`` fails when a block differs from what the committed metrics give.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from sobolev.common.paths import ROOT
from sobolev.common.stats import RULE
from sobolev.common.utils import atomic_write_text
from sobolev.deviations import report as deviations
from sobolev.differential import report as differential
from sobolev.distillation import report as distillation
from sobolev.features import report as features
from sobolev.regression import report as regression
from sobolev.synthetic import report as synthetic
from sobolev.theory import report as theory
from sobolev.trust import report as trust


def blocks(root: Path = ROOT) -> dict[str, str]:
    """Every generated README block, by name."""

    def metrics(stage: str) -> dict:
        return json.loads((root / "results" / stage / "metrics.json").read_text())

    generated = {
        **regression.readme_blocks(metrics("regression")),
        "theory": theory.readme_block(metrics("theory")),
        "synthetic": synthetic.readme_block(metrics("synthetic")),
        "distillation": distillation.readme_block(metrics("distillation/report")),
        "differential": differential.readme_block(metrics("differential")),
        "trust": trust.readme_block(metrics("trust")),
        "features": features.readme_block(metrics("features")),
        "deviations": deviations.readme_block(metrics("deviations")),
    }
    # Every block that states verdicts says by which rule (Section 4.1's two tables share its claims block's line).
    tables = {name for name in generated if name.startswith("regression-") and name != "regression-claims"}
    return {name: body if name in tables else f"{body}\n\n*Decision rule: {RULE}.*" for name, body in generated.items()}


def render(readme: str, generated: dict[str, str]) -> str:
    """``readme`` with each ``<!-- results:NAME -->`` block replaced by ``generated[NAME]``."""
    for name, body in generated.items():
        pattern = re.compile(rf"(<!-- results:{name} -->\n)(?:.*?\n)?(<!-- /results:{name} -->)", re.S)
        if not pattern.search(readme):
            raise ValueError(f"README has no block <!-- results:{name} --> ... <!-- /results:{name} -->")
        readme = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), readme)
    return readme


def main() -> int:
    path = ROOT / "README.md"
    generated = blocks()
    atomic_write_text(path, render(path.read_text(), generated))
    print(f"updated {len(generated)} result blocks in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
