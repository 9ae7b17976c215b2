"""A vote over replies that may call tools: calls with the same name and arguments vote together.

Each sample either calls a tool (its key `call:` + the call as canonical JSON, so argument order
and spacing do not split a vote) or replies in words (`text:` ...). A call to a tool the task does
not offer, or with arguments its `parameters` schema rejects, is not a ballot. When the calls
outnumber the plain replies (or the task requires a call: `tool_choice` "required" or a named
function), the most voted call wins; otherwise the replies decide by minimum Bayes risk (chrF:
free text rarely repeats exactly). Ties: lowest sample index. `chosen` is the winning sample.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.json_vote import validates
from manyminds.aggregators.majority import decide, tally
from manyminds.aggregators.mbr import MBR
from manyminds.answers import TOOL_CALL
from manyminds.plugins import RecordsArguments
from manyminds.types import Candidate, Decision, Task


def offered(task: Task) -> dict[str, dict[str, Any] | None]:
    """The task's tools by name, each with its parameters schema (None: any arguments)."""
    tools: dict[str, dict[str, Any] | None] = {}
    for tool in task.metadata.get("tools") or []:
        function = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            tools[function["name"]] = function.get("parameters") if isinstance(function.get("parameters"), dict) else None
    return tools


def required(task: Task) -> bool:
    choice = task.metadata.get("tool_choice")
    return choice == "required" or isinstance(choice, dict)


def valid_call(task: Task, key: str) -> bool:
    """A call to an offered tool (the one named, when the task names one) whose arguments its schema admits."""
    call = json.loads(key[len(TOOL_CALL):])
    tools = offered(task)
    choice = task.metadata.get("tool_choice")
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name") not in (None, call["name"]):
        return False
    if call["name"] not in tools:
        return False
    return validates(tools[call["name"]], json.dumps(call["arguments"]))


@aggregator("tool-vote")
class ToolVote(RecordsArguments):
    """Calls vote by (name, arguments); plain replies by MBR; the calls win when they outnumber the replies."""

    name = "tool-vote"

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        ballots = [c for c in candidates if c.votes]
        calls = [c for c in ballots if c.answer is not None and c.answer.startswith(TOOL_CALL) and valid_call(task, c.answer)]
        replies = [c for c in ballots if c.answer is not None and not c.answer.startswith(TOOL_CALL)]
        invalid = len([c for c in ballots if c.answer is not None and c.answer.startswith(TOOL_CALL)]) - len(calls)
        params = {**self.params(), "calls": len(calls), "replies": len(replies), "invalid_calls": invalid}
        if calls and (len(calls) > len(replies) or required(task)):
            decision = decide(tally(calls), self.name, params)
            chosen = min((c.index for c in calls if c.answer == decision.answer), default=None)
            return decision.model_copy(update={"chosen": chosen, "tally": tally(ballots)})
        if required(task):
            return Decision(answer=None, confidence=0.0, tally=tally(ballots), aggregator=self.name,
                            params={**params, "note": "a tool call was required and no sample made a valid one"})
        decision = MBR()(task, replies)
        return decision.model_copy(update={"aggregator": self.name, "tally": tally(ballots),
                                           "params": {**params, "expected_utility": decision.params.get(
                                               "expected_utility")}})
