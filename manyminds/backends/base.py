"""The Backend protocol: anything that can sample n completions of a chat."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from manyminds.extensions import Backend as Backend, Capabilities as Capabilities  # the protocols' home
from manyminds.plugins import Registry
from manyminds.types import Generation, Message, SamplingParams, TokenLogprob


SEEDING = "request"
"""The seeding scheme, recorded in the cache identity of every backend that seeds its samples:
seeds derived from (base seed, the request, sample index). The scheme before it ignored the
request, so sample i of every question had the same seed; entries drawn that way are never
served as if drawn this way."""


def request_fingerprint(messages: "Sequence[Message | dict[str, str]]", params: SamplingParams) -> str:
    """What makes a request itself, for its samples' seeds: the messages and every sampling
    parameter but the base seed and manyminds' controls (and never n, so a sample is the same
    however it is asked for, and a sample stopped early is a prefix of the one drawn in full)."""
    import hashlib
    import json

    turns = [[m["role"], m["content"]] if isinstance(m, dict) else [m.role, m.content] for m in messages]
    record = params.model_dump(mode="json", exclude={"seed", *params.CONTROLS})
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


class ConfidenceWatch:
    """DeepConf online's test, one token at a time: the mean token confidence over the last `window`
    tokens, once there are that many, against `floor` (`SamplingParams.stop_below_confidence`)."""

    def __init__(self, floor: float, window: int) -> None:
        self.floor, self.window = floor, window
        self._values: list[float] = []
        self._sum = 0.0

    def push(self, token: TokenLogprob) -> bool:
        """Add a token; True when the sample should stop here."""
        self._values.append(token.confidence)
        self._sum += self._values[-1]
        if len(self._values) > self.window:
            self._sum -= self._values[-1 - self.window]
        return len(self._values) >= self.window and self._sum / self.window < self.floor


def cut_where_stopped(generation: Generation, params: SamplingParams) -> Generation:
    """The sample as `params.stop_below_confidence` would have stopped it: for a backend that
    cannot stop a sample while it decodes, cut after the fact (its tokens were generated, so they
    stay counted); a sample stopped while decoding is returned as it is."""
    floor = params.stop_below_confidence
    if floor is None or not generation.logprobs or generation.finish_reason == "aborted":
        return generation
    watch = ConfidenceWatch(floor, params.stop_window)
    for k, token in enumerate(generation.logprobs):
        if watch.push(token):
            kept = generation.logprobs[:k + 1]
            return generation.model_copy(update={"text": "".join(t.token for t in kept), "logprobs": kept,
                                                 "finish_reason": "aborted"})
    return generation


async def streamed(backend: Any, messages: "list[Message]", params: SamplingParams, on_text: Callable[[str], None],
                   first_index: int = 0) -> Generation:
    """One sample, its text handed to `on_text` as the backend generates it (its `stream`), or whole
    once generated (a backend without one); the Generation either way."""
    stream = getattr(backend, "stream", None)
    if stream is not None:
        generation: Generation = await stream(messages, params, on_text, first_index)
        return generation
    (generation,) = await backend.generate(messages, params, 1, first_index)
    if generation.text:
        on_text(generation.text)
    return generation
