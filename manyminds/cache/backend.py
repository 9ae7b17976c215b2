"""CachedBackend: a backend that serves stored samples and asks the wrapped one only for the missing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any


from manyminds.backends.base import Backend, Capabilities, streamed
from manyminds.types import Generation, Message, SamplingParams

from manyminds.cache.keys import params_record, request_key

if TYPE_CHECKING:
    from manyminds.cache.store import GenerationCache


def _runs(indices: list[int]) -> list[range]:
    """Split sorted indices into contiguous ranges: each becomes one backend request."""
    runs: list[range] = []
    for index in indices:
        if runs and runs[-1].stop == index:
            runs[-1] = range(runs[-1].start, index + 1)
        else:
            runs.append(range(index, index + 1))
    return runs


class CachedBackend:
    """A backend that serves stored samples and asks the wrapped one only for the missing.

    Concurrent requests for the same missing sample share one generation.
    """

    def __init__(self, backend: Backend, cache: "GenerationCache") -> None:
        self.inner = backend
        self.cache = cache
        self.name = backend.name
        self.model = backend.model
        self._inflight: dict[tuple[str, int], asyncio.Future] = {}

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def cache_identity(self) -> dict[str, Any]:
        return self.inner.cache_identity()

    def __repr__(self) -> str:
        return f"CachedBackend({self.inner!r}, {str(self.cache.path)!r})"

    async def generate(
        self, messages: list[Message], params: SamplingParams, n: int = 1, first_index: int = 0
    ) -> list[Generation]:
        identity = self.inner.cache_identity()
        key = request_key(identity, messages, params)
        wanted = [0] if params.greedy else list(range(first_index, first_index + n))
        found = self.cache.lookup(key, wanted)
        missing = [i for i in wanted if i not in found]
        if missing:
            found.update(await self._fill(key, identity, messages, params, missing))
        if params.greedy:
            # Greedy samples are identical: one stored row answers every index.
            only = found[0]
            return [
                only if i == 0 else only.model_copy(update={"index": i, "cached": True})
                for i in range(first_index, first_index + n)
            ]
        return [found[i] for i in wanted]

    async def stream(self, messages: list[Message], params: SamplingParams, on_text: Callable[[str], None],
                     first_index: int = 0) -> Generation:
        """One sample, streamed from the wrapped backend as it is generated and then stored; a stored
        one (or one another request is generating) is handed over whole."""
        identity = self.inner.cache_identity()
        key = request_key(identity, messages, params)
        index = 0 if params.greedy else first_index
        found = self.cache.lookup(key, [index])
        if index in found:
            on_text(found[index].text)
            return found[index] if index == first_index else found[index].model_copy(update={"index": first_index})
        if (key, index) in self._inflight:
            joined = (await self._inflight[(key, index)]).model_copy(update={"cached": True})
            on_text(joined.text)
            return joined
        future: asyncio.Future[Generation] = asyncio.get_running_loop().create_future()
        self._inflight[(key, index)] = future
        request = {"backend": identity, "messages": [m.model_dump() for m in messages], "params": params_record(params)}
        try:
            generation = await streamed(self.inner, messages, params, on_text, index)
            self.cache.put(key, request, [generation])
            future.set_result(generation)
            return generation
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: raised here
            raise
        finally:
            self._inflight.pop((key, index), None)

    async def _fill(
        self,
        key: str,
        identity: dict[str, Any],
        messages: list[Message],
        params: SamplingParams,
        missing: list[int],
    ) -> dict[int, Generation]:
        loop = asyncio.get_running_loop()
        waiting = {i: self._inflight[(key, i)] for i in missing if (key, i) in self._inflight}
        mine = [i for i in missing if i not in waiting]
        futures = {}
        for i in mine:
            futures[i] = self._inflight[(key, i)] = loop.create_future()
        request = {
            "backend": identity,
            "messages": [m.model_dump() for m in messages],
            "params": params_record(params),
        }

        async def run(indices: range) -> list[Generation]:
            try:
                generations = await self.inner.generate(messages, params, len(indices), indices.start)
                self.cache.put(key, request, generations)
                for g in generations:
                    if not futures[g.index].done():
                        futures[g.index].set_result(g)
                return generations
            except BaseException as error:
                for i in indices:
                    if not futures[i].done():
                        futures[i].set_exception(error)
                        futures[i].exception()  # mark retrieved: the caller re-raises it below
                raise
            finally:
                for i in indices:
                    self._inflight.pop((key, i), None)

        results = await asyncio.gather(*(run(r) for r in _runs(mine)), return_exceptions=True)
        for outcome in results:
            if isinstance(outcome, BaseException):
                raise outcome
        out = {i: futures[i].result() for i in mine}
        for i, future in waiting.items():  # another request is generating it: for this one, a cache hit
            out[i] = (await future).model_copy(update={"cached": True})
        return out
