"""One type for every section's verdicts on the paper's claims, and one way to print them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """One of the paper's claims checked against our numbers (computed, never typed in).

    ``holds`` is ``True`` (reproduced), ``False`` (not reproduced) or ``None`` (undecided: the
    evidence does not separate the methods).
    """

    text: str
    holds: bool | None
    evidence: str

    @property
    def verdict(self) -> str:
        return {True: "REPRODUCED", False: "NOT reproduced", None: "UNDECIDED"}[self.holds]

    def __str__(self) -> str:
        return f"[{self.verdict}] {self.text}: {self.evidence}"

    def to_dict(self) -> dict:
        """As stored in ``metrics.json``."""
        return {"claim": self.text, "holds": self.holds, "detail": self.evidence}

    @classmethod
    def from_dict(cls, d: dict) -> Claim:
        return cls(d["claim"], d["holds"], d["detail"])


def format_claims(claims: Iterable[Claim], bullet: str = "") -> str:
    """One line per claim, each prefixed by ``bullet`` (e.g. ``"* "`` for markdown)."""
    return "\n".join(f"{bullet}{claim}" for claim in claims)
