"""Where things live: the repository root and the one params file (defined once)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params.yaml"
RESULTS = ROOT / "results"
# Stages write here first and move their outputs into place only when everything succeeded.
STAGING = RESULTS / ".staging"


def resolve(path: str | Path) -> Path:
    """``path`` as given if absolute or present, else relative to the repository root (notebooks
    run in ``notebooks/``, stages in the root)."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else ROOT / p
