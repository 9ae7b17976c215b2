"""The Verifier protocol: an async check of one candidate against its task.

Verifiers are imperfect (a judge says yes to wrong answers, unit tests miss
cases), so a verdict carries a graded score as well as pass/fail, and the
strategies that use verifiers keep every verdict for inspection.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from manyminds.types import Candidate, Task, Verdict

__all__ = ["Verdict", "Verifier"]


@runtime_checkable
class Verifier(Protocol):
    name: str

    async def verify(self, task: Task, candidate: Candidate) -> Verdict:
        """Score one candidate: 1 is surely right, 0 surely wrong."""
        ...

    def params(self) -> dict[str, Any]:
        """The settings recorded with every verdict."""
        ...
