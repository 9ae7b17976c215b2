"""Request keys: what decides a request's samples (backend identity, messages, parameters), never how many."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any


from manyminds.types import Message, SamplingParams

if TYPE_CHECKING:

    pass

def params_record(params: SamplingParams) -> dict[str, Any]:
    """The parameters as keyed and stored: unset engine extras left out (SamplingParams.OPTIONAL)."""
    record = params.model_dump(mode="json")
    for name in (*params.OPTIONAL, *params.CONTROLS):
        if record.get(name) is None:
            record.pop(name, None)
    return record


def request_key(identity: dict[str, Any], messages: list[Message], params: SamplingParams) -> str:
    """The hash of a request's canonical JSON: what decides its samples, but not how many.

    A request with a base seed records the seeding scheme too (backends that always seed carry
    it in their identity): its samples were drawn with seeds derived as `backends.base.SEEDING`
    says, and entries drawn under an older scheme must not be served for them.
    """
    from manyminds.backends.base import SEEDING

    if params.seed is not None and "seeding" not in identity:
        identity = {**identity, "seeding": SEEDING}
    canonical = json.dumps(
        {
            "backend": identity,
            "messages": [[m.role, m.content] for m in messages],
            "params": params_record(params),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
