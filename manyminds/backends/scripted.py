"""A scripted backend: the test double, shipped so users can test their pipelines offline.

Replies come from a list (sample i gets reply i modulo its length, so what a
sample says depends on its index, never on scheduling) or from a function of
(messages, params, sample_index). Every request is recorded for assertions.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from manyminds.backends.base import Capabilities
from manyminds.errors import ConfigError
from manyminds.types import Generation, Message, SamplingParams

Reply = str | Generation
_REQUEST_IDS = itertools.count()  # process-wide, like a server's request ids
ReplyFunction = Callable[[list[Message], SamplingParams, int], Reply | Awaitable[Reply]]


@dataclass(frozen=True)
class ScriptedRequest:
    """One call the scripted backend received."""

    messages: list[Message]
    params: SamplingParams
    n: int
    first_index: int


class Scripted:
    """A backend whose replies are given in advance.

    Args:
        replies: a list of reply texts (or Generations), or a function
            `(messages, params, sample_index) -> str | Generation`, sync or async.
        latency: seconds each call takes (simulated with asyncio.sleep).
        per_sample_latency: seconds each sample adds to its call (large for a
            sequential engine, small for a batching one).
        batch_width: what `capabilities.batch_width` reports (see Capabilities).
        native_n: answer n samples in one call (True) or, like the llama.cpp
            server, count each sample as its own call (False).
        model: the model name reported (part of the cache identity).
    """

    name = "scripted"

    def __init__(
        self,
        replies: Sequence[Reply] | ReplyFunction,
        *,
        latency: float = 0.0,
        per_sample_latency: float = 0.0,
        batch_width: int = 1,
        native_n: bool = True,
        model: str = "scripted",
        logprobs: bool = True,
        max_concurrency: int = 1024,
    ) -> None:
        if not callable(replies):
            replies = list(replies)
            if not replies:
                raise ConfigError("Scripted needs at least one reply")
        self._replies = replies
        self.latency = latency
        self.per_sample_latency = per_sample_latency
        self.model = model
        self.capabilities = Capabilities(
            native_n=native_n, logprobs=logprobs, max_concurrency=max_concurrency, batch_width=batch_width
        )
        self.requests: list[ScriptedRequest] = []

    @property
    def calls(self) -> int:
        """Backend calls made: one per request with native n, one per sample without."""
        if self.capabilities.native_n:
            return len(self.requests)
        return sum(r.n for r in self.requests)

    @property
    def samples_generated(self) -> int:
        return sum(r.n for r in self.requests)

    def cache_identity(self) -> dict[str, Any]:
        return {"kind": self.name, "model": self.model}

    async def _reply(self, messages: list[Message], params: SamplingParams, index: int) -> Reply:
        if callable(self._replies):
            reply = self._replies(messages, params, index)
            if inspect.isawaitable(reply):
                reply = await reply
            return reply
        return self._replies[index % len(self._replies)]

    async def generate(
        self, messages: list[Message], params: SamplingParams, n: int = 1, first_index: int = 0
    ) -> list[Generation]:
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        self.requests.append(ScriptedRequest(list(messages), params, n, first_index))
        if self.latency or self.per_sample_latency:
            await asyncio.sleep(self.latency + n * self.per_sample_latency)
        prompt_tokens = sum(len(m.content.split()) for m in messages)
        out: list[Generation] = []
        call_id = f"scripted-{next(_REQUEST_IDS)}"
        for index in range(first_index, first_index + n):
            reply = await self._reply(messages, params, index)
            request_id = call_id if self.capabilities.native_n else f"scripted-{next(_REQUEST_IDS)}"
            if isinstance(reply, Generation):
                out.append(reply.model_copy(update={"index": index, "request_id": request_id}))
            else:
                out.append(
                    Generation(
                        text=reply,
                        index=index,
                        finish_reason="stop",
                        prompt_tokens=prompt_tokens,
                        completion_tokens=len(reply.split()),
                        request_id=request_id,
                    )
                )
        return out

    async def stream(self, messages: list[Message], params: SamplingParams, on_text: Callable[[str], None],
                     first_index: int = 0) -> Generation:
        """The sample `generate` would give, handed over word by word (control goes back to the
        event loop between words, as a server's chunks would arrive)."""
        (generation,) = await self.generate(messages, params, 1, first_index)
        for piece in re.findall(r"\s*\S+\s*", generation.text) or [generation.text]:
            on_text(piece)
            await asyncio.sleep(0)
        return generation


def from_spec(rest: str) -> Scripted:
    """`scripted:REPLY|REPLY|...`: replies separated by '|', for CLI tests and demos."""
    replies = [r for r in rest.split("|") if r]
    if not replies:
        raise ConfigError("backend spec 'scripted:' needs replies, e.g. 'scripted:The answer is 4.|4'")
    return Scripted(replies)
