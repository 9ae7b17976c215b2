"""The Backend protocol: anything that can sample n completions of a chat."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from manyminds.extensions import Backend as Backend, Capabilities as Capabilities  # the protocols' home
from manyminds.plugins import Registry
from manyminds.types import Message, SamplingParams


SEEDING = "request"
"""The seeding scheme, recorded in the cache identity of every backend that seeds its samples:
seeds derived from (base seed, the request, sample index). The scheme before it ignored the
request, so sample i of every question had the same seed; entries drawn that way are never
served as if drawn this way."""


def request_fingerprint(messages: "Sequence[Message | dict[str, str]]", params: SamplingParams) -> str:
    """What makes a request itself, for its samples' seeds: the messages and every sampling
    parameter but the base seed (and never n, so a sample is the same however it is asked for)."""
    import hashlib
    import json

    turns = [[m["role"], m["content"]] if isinstance(m, dict) else [m.role, m.content] for m in messages]
    record = params.model_dump(mode="json", exclude={"seed"})
    for name in params.OPTIONAL:
        if record.get(name) is None:
            record.pop(name, None)
    canonical = json.dumps([turns, record], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def sample_seed(base: int | None, index: int, request: str = "") -> int:
    """A distinct, reproducible 31-bit seed for sample `index` of the request `request_fingerprint`s.

    The request is part of it, so samples are independent across questions: without it,
    sample i of every question was drawn with the same seed, and how sample i fared was
    correlated across a whole benchmark.
    """
    import hashlib

    digest = hashlib.blake2b(f"{base or 0}:{request}:{index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


REGISTRY: "Registry[Any]" = Registry("backend", "manyminds.backends", lazy_plugins=True)
"""Backend factories by kind, `factory(rest) -> Backend` for the spec `KIND[:REST]`: the
`manyminds.backends` entry points (the built-ins are declared there as well, in pyproject.toml),
each imported on first use."""
for _kind, _target in {"local": "manyminds.backends.local:from_spec",
                       "openai": "manyminds.backends.openai_compat:from_spec",
                       "scripted": "manyminds.backends.scripted:from_spec",
                       "vllm": "manyminds.backends.vllm:from_spec"}.items():
    REGISTRY.declare(_kind, _target)  # the same as pyproject's entry points, for a tree never installed
