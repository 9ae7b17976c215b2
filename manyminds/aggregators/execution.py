"""Execution-based voting for code: programs that behave alike vote together.

Two correct programs almost never read alike, so a vote over code text rarely finds a majority.
This runs every sampled program on the same inputs in the sandbox (`verifiers.probe`: the calls
of the task's visible tests, and `metadata["probe_inputs"]`), groups the programs whose outputs
are identical, and picks a group: first the groups that meet every visible expectation (the
examples a model is shown; AlphaCode filters on them), then the largest group (AlphaCode's and
CodeT's clustering, Li et al. 2022, Chen et al. 2022), then the higher mean token probability,
then the earliest sample. The answer is the group's earliest program (`Decision.chosen`).

The expected values used are only those of the visible tests, the ones a prompt shows; the tests
a benchmark scores with stay hidden, so this is not an oracle. It runs model-written code, so it
needs the same opt-in as the unit-test verifier, and it is `blocking`: the graph runs it on a
worker thread, never on the event loop.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally
from manyminds.answers import extract_code
from manyminds.errors import ConfigError
from manyminds.plugins import RecordsArguments
from manyminds.types import AnswerFormat, Candidate, Decision, Task
from manyminds.verifiers.probe import Behaviour, behaviour, Call, calls
from manyminds.verifiers.sandbox import Limits, require_isolation, require_opt_in


@aggregator("execution")
class ExecutionVote(RecordsArguments):
    """Group programs by their outputs on the task's visible inputs; the largest group that meets the
    visible examples wins.

    Args:
        use_expected: rank groups that meet every visible test's expected value first (False: group
            size alone, as clustering without examples).
        timeout: seconds per program (all its inputs together).
        max_parallel: sandboxes at once.
        allow_code_execution / allow_unisolated_execution: the unit-test verifier's opt-ins (or
            MANYMINDS_ALLOW_CODE_EXECUTION=1 / MANYMINDS_ALLOW_UNISOLATED_EXECUTION=1).
    """

    name = "execution"
    blocking = True
    """Runs programs: the aggregate step calls it on a worker thread."""

    def __init__(self, use_expected: bool = True, timeout: float = 5.0, max_parallel: int = 4,
                 allow_code_execution: bool = False, allow_unisolated_execution: bool = False) -> None:
        if not timeout > 0 or max_parallel < 1:
            raise ConfigError(f"execution: timeout must be > 0 and max_parallel >= 1, got {timeout} and {max_parallel}")
        require_opt_in(allow_code_execution)
        require_isolation(allow_unisolated_execution)
        self.use_expected = use_expected
        self.limits = Limits(timeout=timeout, cpu_seconds=max(1, int(timeout)))
        self.allow_unisolated = allow_unisolated_execution
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="manyminds-execution")
        self._seen: dict[tuple[Any, ...], Behaviour] = {}
        self._lock = threading.Lock()

    def params(self) -> dict[str, Any]:
        return {"use_expected": self.use_expected, "timeout": self.limits.timeout}

    def _behaviour(self, task: Task, probes: tuple[Call, ...], code: str) -> Behaviour:
        """A program's behaviour on these calls, run once per process (re-aggregation runs nothing twice)."""
        meta = task.metadata
        key = (probes, meta.get("setup", ""), meta.get("prompt", ""), meta.get("entry_point", ""), code)
        with self._lock:
            if key in self._seen:
                return self._seen[key]
        found = behaviour(task, code, list(probes), self.limits, allow=True, allow_unisolated=self.allow_unisolated)
        with self._lock:
            self._seen[key] = found
        return found

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        ballots = sorted((c for c in candidates if c.votes), key=lambda c: c.index)
        probes = tuple(calls(task)) if task.format == AnswerFormat.CODE else ()
        if not probes:
            why = "not a code task" if task.format != AnswerFormat.CODE else "no inputs to run (no visible tests)"
            decision = decide(tally(candidates), self.name, self.params())
            return decision.model_copy(update={"params": {**decision.params, "note": f"{why}: majority by text"}})
        programs = {extract_code(c.text): c for c in reversed(ballots)}  # one run per distinct program
        run = functools.partial(self._behaviour, task, probes)
        seen = dict(zip(programs, self._pool.map(run, programs)))
        groups: dict[tuple[str, ...], list[Candidate]] = {}
        for candidate in ballots:
            outputs = seen[extract_code(candidate.text)].outputs
            if outputs is not None:
                groups.setdefault(outputs, []).append(candidate)
        failed = sum(1 for c in ballots if seen[extract_code(c.text)].outputs is None)
        if not groups:
            decision = decide(tally(candidates), self.name, self.params())
            return decision.model_copy(update={"params": {
                **decision.params, "note": "no program ran to the end: majority by text", "failed": failed}})

        def rank(outputs: tuple[str, ...]) -> tuple[bool, int, float, int]:
            members = groups[outputs]
            meets = self.use_expected and seen[extract_code(members[0].text)].passes_visible
            probabilities = [p for c in members if c.generation is not None
                             and (p := c.generation.mean_token_probability) is not None]
            mean = sum(probabilities) / len(probabilities) if probabilities else 0.0
            return meets, len(members), mean, -members[0].index

        ordered = sorted(groups, key=rank, reverse=True)
        winner = groups[ordered[0]][0]
        sizes = {groups[o][0].answer or f"#{groups[o][0].index}": float(len(groups[o])) for o in ordered}
        return Decision(
            answer=winner.answer, confidence=len(groups[ordered[0]]) / len(ballots), tally=sizes,
            aggregator=self.name, chosen=winner.index,
            params={**self.params(), "groups": [len(groups[o]) for o in ordered],
                    "meets_visible": [bool(rank(o)[0]) for o in ordered], "failed": failed})
