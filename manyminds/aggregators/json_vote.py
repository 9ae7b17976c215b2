"""A vote over structured output: samples that give the same JSON data vote together, and only
samples whose JSON validates against the task's schema vote at all.

The answer key of a JSON task is canonical JSON (sorted keys, no spaces: `answers.json_key`), so
`{"a": 1, "b": 2}` and `{ "b":2, "a":1 }` are one answer. With `metadata["json_schema"]` (a JSON
Schema, as OpenAI's `response_format` carries it) a sample whose value does not validate is not a
ballot: the winner always validates. Ties: lowest sample index. The decision's `chosen` is the
earliest ballot giving the winning value.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from manyminds.aggregators.base import aggregator
from manyminds.aggregators.majority import decide, tally
from manyminds.plugins import RecordsArguments
from manyminds.types import Candidate, Decision, Task


@functools.lru_cache(maxsize=64)
def schema_validator(schema_text: str) -> Any:
    """A checked validator for a JSON Schema given as canonical text (cached: one per schema)."""
    import jsonschema

    schema = json.loads(schema_text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validates(schema: dict[str, Any] | None, key: str) -> bool:
    """Whether the canonical JSON `key` validates against `schema` (True without a schema)."""
    if not schema:
        return True
    try:
        return bool(schema_validator(json.dumps(schema, sort_keys=True)).is_valid(json.loads(key)))
    except ValueError:
        return False


@aggregator("json-vote")
class JsonVote(RecordsArguments):
    """Majority over canonical JSON values, counting only those that validate against the task's schema."""

    name = "json-vote"

    def __call__(self, task: Task, candidates: Sequence[Candidate]) -> Decision:
        schema = task.metadata.get("json_schema")
        weights = [1.0 if c.answer is not None and validates(schema, c.answer) else 0.0 for c in candidates]
        votes = {k: v for k, v in tally(candidates, weights).items() if v > 0}
        decision = decide(votes, self.name, self.params())
        invalid = sum(1 for c, w in zip(candidates, weights) if c.votes and w == 0)
        chosen = next((c.index for c in sorted(candidates, key=lambda c: c.index)
                       if c.votes and c.answer == decision.answer), None)
        return decision.model_copy(update={"chosen": chosen, "params": {**decision.params, "invalid": invalid}})
