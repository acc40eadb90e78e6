"""Where things live: the repository root and the one params file (defined once)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A notebook stage's kernel gets both from the pipeline (sobolev.pipeline.execute): the workspace
# whose code it must import and the params file the pipeline validated. Without them (nbval, a
# user's own kernel) the params file is the one beside this package.
_WORKSPACE = os.environ.get("SOBOLEV_WORKSPACE")
if _WORKSPACE and Path(_WORKSPACE).resolve() != ROOT:
    raise ImportError(
        f"this kernel imported sobolev from {ROOT}, but its stage runs in {_WORKSPACE}: the stage's "
        "own code must come first on sys.path (sobolev.pipeline.execute puts it on PYTHONPATH)"
    )
PARAMS = Path(os.environ.get("SOBOLEV_PARAMS") or ROOT / "params.yaml")
RESULTS = ROOT / "results"
# Stages write here first and move their outputs into place only when everything succeeded.
STAGING = RESULTS / ".staging"


def resolve(path: str | Path) -> Path:
    """``path`` as given if absolute or present, else relative to the repository root (notebooks
    run in ``notebooks/``, stages in the root)."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else ROOT / p
