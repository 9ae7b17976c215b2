"""`manyminds serve`: an OpenAI-compatible server whose models are ensembles.

Any OpenAI client gets an ensemble by changing its base URL and the model
name. A model name is

    STRATEGY[-N][:UPSTREAM_MODEL]        self-consistency-8, moa-6:gpt-4o-mini, usc

a registered strategy, its budget N (the CLI's -n; the strategy's default
without it) and, for an OpenAI-compatible upstream, which of its models to
sample. Strategy settings ride in the request's `manyminds` field (the
OpenAI SDK's `extra_body={"manyminds": {...}}`), validated as the Python API
validates them: `{"stop": "esc", "aggregator": "rpc", "format": "number",
"prompt": "cot", "verifier": "math"}`. `format` says how to read answers
(default `text`: free-form, the question sent as written). The last message
is the question; earlier user and assistant messages are its `Task.history`,
sent as turns (system and developer messages become the strategy's system).

The reply is an ordinary chat completion: the message is the winning
sample's full text (or the synthesis, for MoA-style methods) with that
sample's `finish_reason` ("length" when it was cut) and, when asked, its
`logprobs`; `n` > 1 adds the next best distinct answers. `usage` counts what
this request generated: samples served from the cache are left out of
`completion_tokens` (reported in the `manyminds` field) and their prompts
are `prompt_tokens_details.cached_tokens`. A `manyminds` field that OpenAI
clients ignore carries the answer key, tally, confidence, stop reason, notes
and each candidate's answer. With `stream=true` the answer is streamed once
it is decided, as one content chunk (an ensemble cannot know its answer
before its samples are in), then the finish chunk and `[DONE]`; the stream
opens at once with the assistant's role and carries a keep-alive comment
every `heartbeat` seconds while the ensemble works (clients and proxies see
life; OpenAI's clients skip comments), and a failure after it opened is an
`error` event.

Every parameter of OpenAI's API is accepted: sampling ones reach every
sample (temperature, top_p, max_tokens, stop, seed, the penalties); some
have no effect on an answer (store, metadata, user, service_tier, ...);
what an ensemble cannot honour is a 400 saying why (logit_bias, audio).
`response_format` asks every sample for the JSON, and values equal as data
vote (`json-vote`: only values the schema admits); offered `tools` reach
every sample in the prompt, and calls with the same name and arguments vote
(`tool-vote`), the winner returned as a `tool_calls` message.
Temperature 0 on a sampling ensemble samples at the strategy's own
temperature and says so (`--greedy refuse` refuses it): copies of one greedy
draw are never reported as agreement. `max_completion_tokens` is a token
budget over the whole ensemble; every request is held to
`--max-samples-per-request` samples and upstream calls.

The same strategies, registry, cache and backend as the library: one
`Session` serves every request. Samples come from the cache only for a
seeded request (the same seed, the same samples) or one that sets
`"manyminds": {"cache": true}`; an unseeded request draws afresh, so
"regenerate" regenerates. Concurrent seeded requests for the same question
share samples (the cached backend joins identical in-flight samples; only
the request that generated a sample counts its tokens). Upstream models
after `:` are those the server was started with (`--upstream-model`). Admission is bounded: at most `max_concurrency` ensembles run and
`max_queue` wait; beyond that a request gets 429 with Retry-After. An
upstream that does not answer within `--upstream-deadline` is a 504, one
that fails after the backend's retries a 502; a client that disconnects
cancels its ensemble, or leaves the queue if it was waiting. Errors use OpenAI's body
`{"error": {"message", "type", "param", "code"}}`, and never carry the
upstream key. On shutdown, requests in flight finish and the cache is
flushed and closed.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import errno
import gc
import hmac
import json
import logging
import random
import re
import time
from pathlib import Path
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from manyminds.agents.nodes import stop_streaming, stream_text_to
from manyminds.backends.base import Backend
from manyminds.errors import BackendError, ConfigError, ManymindsError
from manyminds.types import MAX_SAMPLES, AnswerFormat, Message, Result, Task
from manyminds.verifiers.base import VerifierOptions

log = logging.getLogger("manyminds.server")
T = TypeVar("T")

DEFAULT_BODY_LIMIT = 1_000_000
"""Bytes a request body may have; a larger one is refused before it is read."""

_TASK_SETTINGS = {"format"}
_SERVER_SETTINGS = {"verifier"}


# -- errors ----------------------------------------------------------------------------


class APIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> APIError:
    return APIError(400, message, param=param, code=code)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """OpenAI's error body."""

    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a bad request: unknown strategy, budget out of range, malformed "
                                             "messages, an unsupported parameter, a body over the limit"},
    401: {"model": ErrorBody, "description": "missing or wrong API key"},
    429: {"model": ErrorBody, "description": "the server is busy; see Retry-After"},
    502: {"model": ErrorBody, "description": "the upstream model failed after retries"},
}


# -- requests ------------------------------------------------------------------------------


class ChatMessage(BaseModel):
    """A chat message as the OpenAI API defines it, in any form its SDK sends back (`refusal`,
    `tool_calls`, `annotations`, `audio` as null or set; tool results). Text is what an ensemble
    reads: a tool call or a tool result in a conversation is shown to the model as text."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    function_call: dict[str, Any] | None = None
    tool_call_id: str | None = None
    annotations: list[dict[str, Any]] | None = None
    audio: dict[str, Any] | None = None

    def text(self) -> str:
        parts: list[str] = []
        if isinstance(self.content, str):
            parts.append(self.content)
        elif self.content is not None:
            for part in self.content:
                kind = part.get("type")
                if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif kind == "refusal" and isinstance(part.get("refusal"), str):
                    parts.append(part["refusal"])
                else:
                    raise bad_request(f"content parts of type {kind!r} are not supported: an ensemble reads text",
                                      param="messages")
        if not parts and self.refusal:
            parts.append(self.refusal)
        calls = list(self.tool_calls or []) + ([{"function": self.function_call}] if self.function_call else [])
        for call in calls:
            function = call.get("function") or {}
            parts.append(f"[called {function.get('name', 'a tool')} with {function.get('arguments', '{}')}]")
        if self.role in ("tool", "function"):
            label = self.name or self.tool_call_id or "the tool"
            return f"[result of {label}]\n" + "".join(parts)
        return "\n".join(p for p in parts if p)


_IGNORED = ("store", "metadata", "service_tier", "user", "parallel_tool_calls", "prompt_cache_key",
            "safety_identifier", "reasoning_effort", "verbosity", "modalities", "prediction", "web_search_options")
"""OpenAI parameters accepted and left without effect on an ensemble's answer (listed in the docs)."""


class _Common(BaseModel):
    """What chat and plain completions share: every parameter of OpenAI's API, honoured or refused
    with a reason (`_unsupported`)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="STRATEGY[-N][:UPSTREAM_MODEL], e.g. self-consistency-8")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=10_000_000)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(default=1, ge=1, le=16, description="the n best distinct answers of one ensemble")
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | int | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    manyminds: dict[str, Any] = Field(default_factory=dict, description="strategy settings, validated")


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=10**12)
    audio: dict[str, Any] | None = None


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="text for an ensemble; text, a batch of texts or token ids for a pass-through model")
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None


def _unsupported(body: _Common) -> None:
    """Refuse, with the reason, what has no meaning for an ensemble's answer (yet)."""
    def refuse(param: str, why: str) -> None:
        raise bad_request(f"{param}: {why}", param=param, code="unsupported_parameter")

    if body.logit_bias:
        refuse("logit_bias", "token ids are the upstream tokenizer's; an ensemble does not bias its samples")
    kind = (body.response_format or {}).get("type")
    if kind not in (None, "text", "json_object", "json_schema"):
        refuse("response_format", f"type {kind!r} is not one of text, json_object, json_schema")
    if kind == "json_schema":
        schema = ((body.response_format or {}).get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            refuse("response_format", "json_schema needs a schema object")
        try:
            from manyminds.aggregators.json_vote import schema_validator

            schema_validator(json.dumps(schema, sort_keys=True))
        except Exception as error:  # jsonschema's SchemaError, or a schema it cannot read
            refuse("response_format", f"the schema is not a valid JSON Schema: {str(error).splitlines()[0][:200]}")
    choice = body.tool_choice if body.tool_choice is not None else body.function_call
    if isinstance(choice, str) and choice not in ("none", "auto", "required"):
        refuse("tool_choice", f"{choice!r} is not one of none, auto, required, or a named function")
    if isinstance(choice, dict) and not isinstance((choice.get("function") or {}).get("name", choice.get("name")), str):
        refuse("tool_choice", "a named choice needs {'type': 'function', 'function': {'name': ...}}")
    if (body.tools or body.functions) and kind in ("json_object", "json_schema") and choice != "none":
        refuse("response_format", "structured output and tool calls in one request are not voted on together")
    if getattr(body, "audio", None) or (body.modalities and set(body.modalities) - {"text"}):
        refuse("modalities", "an ensemble answers in text only")
    if isinstance(body, CompletionRequest):
        if body.echo:
            refuse("echo", "an ensemble's completion does not echo the prompt")
        if body.suffix:
            refuse("suffix", "insertion is not supported")
        if body.best_of not in (None, 1):
            refuse("best_of", "the ensemble is the best-of; ask for STRATEGY-N instead")


# -- model names --------------------------------------------------------------------------

_BUDGET = re.compile(r"^(?P<name>.+?)-(?P<n>\d+)$")


@dataclass(frozen=True)
class ModelName:
    strategy: str
    n: int | None
    upstream: str | None


def parse_model(text: str, known: list[str]) -> ModelName:
    """`STRATEGY[-N][:UPSTREAM]` against the registered strategy names."""
    head, _, upstream = text.partition(":")
    if not text.isprintable() or len(text) > 256:
        raise bad_request("the model name must be printable text of at most 256 characters", param="model")
    if head in known:
        name, n = head, None
    else:
        match = _BUDGET.match(head)
        if match is None or match.group("name") not in known:
            raise APIError(400, f"unknown model {text!r}: ask for STRATEGY[-N][:UPSTREAM_MODEL] with a strategy of "
                                f"{', '.join(known)} (GET /v1/models lists them)", param="model",
                           code="model_not_found")
        name, n = match.group("name"), int(match.group("n"))
    if n is not None and not 1 <= n <= MAX_SAMPLES:
        raise bad_request(f"a budget of {n} samples is out of range: give 1 to {MAX_SAMPLES}", param="model")
    return ModelName(name, n, upstream or None)


# -- the server ------------------------------------------------------------------------------


@dataclass
class ServerConfig:
    backend: "Backend | str" = "local"
    cache: Any = None
    api_key: str | None = None
    max_concurrency: int = 8
    max_queue: int = 32
    max_body_bytes: int = DEFAULT_BODY_LIMIT
    retry_after: int = 1
    """Seconds a client is told to wait after a 429."""
    max_samples_per_request: int = MAX_SAMPLES
    """Samples and upstream calls one request may cause, whatever its strategy and settings (a
    `Budget(samples=...)` on every ensemble, with any budget the request sets)."""
    upstream_models: tuple[str, ...] = ()
    """Models a request may name after `:`, besides the backend's own; "*" allows any."""
    greedy: Literal["sample", "refuse"] = "sample"
    """A sampling ensemble asked for temperature 0: sample at the strategy's own temperature and say so
    ("sample"), or refuse with a 400 ("refuse"). Copies of one greedy draw are never reported as agreement."""
    upstream_timeout: float | None = None
    """Seconds one upstream call may take (an OpenAI-compatible backend's `timeout`)."""
    upstream_deadline: float | None = None
    """Seconds a request may spend on one upstream call with its retries (the backend's `retry_deadline`)."""
    heartbeat: float = 2.0
    """Seconds between a stream's keep-alive comments while its ensemble works."""
    runner: str = "direct"
    """How ensembles run (`Session(runner=)`): "direct", each pipeline's steps without LangGraph's
    scheduler (its ~2 ms of CPU a run is most of what a one-question request costs), or
    "langgraph", the compiled graphs; the Results are the same."""
    batch_window: float | None = None
    """Seconds a request waits under load for others of the same strategy to share its run (an idle
    server runs it at once). None: 2 ms with the LangGraph runner, whose cost is per run; no
    batching with the direct one, whose per-run cost is microseconds, so that no request waits
    for the slowest of a batch or fails with another's error (`benchmarks/serve.py`)."""

    freeze_startup: bool = False
    """After startup, move every object the process holds into the collector's permanent generation
    (`gc.freeze`): for a process that is the server alone (`manyminds serve` sets it). A full
    collection walked every one of them (LangGraph, pydantic, the strategies: ~150,000 objects,
    ~60 ms here) and stalled every request in flight; a server embedded in a larger process leaves
    its host's objects to the collector."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.max_queue < 0:
            raise ConfigError("max_concurrency must be >= 1 and max_queue >= 0")
        if self.max_samples_per_request < 1:
            raise ConfigError("max_samples_per_request must be >= 1")
        if self.runner not in ("direct", "langgraph"):
            raise ConfigError(f"runner must be 'direct' or 'langgraph', got {self.runner!r}")
        if self.batch_window is not None and not self.batch_window >= 0:
            raise ConfigError("batch_window must be >= 0 seconds (or None)")
        for value, what in ((self.upstream_timeout, "upstream_timeout"), (self.upstream_deadline, "upstream_deadline")):
            if value is not None and not value > 0:
                raise ConfigError(f"{what} must be > 0 seconds")


@dataclass
class _Admission:
    """At most `running` ensembles at once and `waiting` in line; refuse the rest (429)."""

    running: int
    waiting: int
    _queued: int = 0
    _slots: asyncio.Semaphore | None = None

    def enter(self, retry_after: int) -> None:
        """Take a place in line, or refuse now (429) when the line is full."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.running)
        if self._slots.locked() and self._queued >= self.waiting:
            raise APIError(429, f"the server is busy: {self.running} ensembles running and {self._queued} waiting; "
                                "retry later", type="rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(retry_after)})
        self._queued += 1

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """After `enter`: wait for a slot (leaving the line however the wait ends), hold it, release it."""
        assert self._slots is not None
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        try:
            yield
        finally:
            self._slots.release()

    @asynccontextmanager
    async def slot(self, retry_after: int) -> AsyncIterator[None]:
        self.enter(retry_after)
        async with self.held():
            yield


class _Batcher:
    """Concurrent requests for the same strategy on the same backend run as one graph invocation.

    LangGraph's cost is per invocation, not per question (the library's `solve_many` runs a batch
    in one), so requests that arrive together are answered by one `Session.asolve_many`. An idle
    server runs a request at once; while others are in flight (under load, where the per-request
    cost matters) it gathers for up to `window` seconds first. A client that goes away cancels only
    its own wait; the batch is cancelled when every one of its clients has gone. With `window`
    None each request runs alone (the direct runner's choice).
    """

    def __init__(self, session: Any, window: float | None = 0.002) -> None:
        self.session = session
        self.window = window
        self._pending: dict[Any, list[tuple[Task, asyncio.Future[Result]]]] = {}
        self._in_flight = 0

    async def solve(self, strategy: Any, task: Task, backend: Backend, limit: Any) -> Result:
        if self.window is None:
            return await self.session.asolve(strategy, task, backend=backend, limit=limit, flush=False)
        key = (strategy, id(backend), limit)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        waiting = self._pending.get(key)
        if waiting is None:
            waiting = self._pending[key] = []
            if self._in_flight and self.window > 0:
                loop.call_later(self.window, self._flush, key, strategy, backend, limit)
            else:
                loop.call_soon(self._flush, key, strategy, backend, limit)
        waiting.append((task, future))
        self._in_flight += 1
        try:
            return await future
        finally:
            self._in_flight -= 1

    def _flush(self, key: Any, strategy: Any, backend: Backend, limit: Any) -> None:
        batch = [(t, f) for t, f in self._pending.pop(key, []) if not f.done()]
        if not batch:
            return
        run = asyncio.ensure_future(self.session.asolve_many(strategy, [t for t, _ in batch], progress=False,
                                                             backend=backend, limit=limit, flush=False))

        def gone(_: Any) -> None:
            if all(f.cancelled() for _, f in batch) and not run.done():
                run.cancel()

        def settle(done: "asyncio.Future[list[Result]]") -> None:
            error = None if done.cancelled() else done.exception()
            for k, (_, future) in enumerate(batch):
                if future.done():
                    continue
                if done.cancelled():
                    future.cancel()
                elif error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(done.result()[k])

        for _, future in batch:
            future.add_done_callback(gone)
        run.add_done_callback(settle)


@dataclass
class _State:
    config: ServerConfig
    session: Any = None
    admission: _Admission | None = None
    batcher: _Batcher | None = None
    strategies: "dict[str, tuple[Any, str | None]]" = field(default_factory=dict)
    """Strategies built for requests, by `_strategy_key`, least recently built first."""


def create_app(config: ServerConfig) -> Any:
    """The FastAPI application (run it with uvicorn; `manyminds serve` does)."""
    from manyminds.session import Session
    from manyminds.strategies import names

    state = _State(config)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        state.session = Session(config.backend, cache=config.cache, concurrency=config.max_concurrency,
                                progress=False, runner=config.runner)
        window = config.batch_window
        if window is None and config.runner == "langgraph":
            window = 0.002
        state.batcher = _Batcher(state.session, window)
        _set_timeouts(state.session.backend, config)
        _warn_if_upstream_narrower(state.session.backend, config)
        state.admission = _Admission(config.max_concurrency, config.max_queue)
        if config.freeze_startup:
            _import_request_path()
            gc.freeze()
        try:
            yield
        finally:  # uvicorn lets requests in flight finish before this runs
            state.session.close()

    app = FastAPI(title="manyminds", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible chat completions answered by LLM ensembles. " + __doc__.split("\n\n")[1])

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_error(error.errors()).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """404, 405 and the like in OpenAI's error shape."""
        kind = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = {404: f"no route {request.url.path}: the API serves /v1/chat/completions, /v1/completions and "
                        "/v1/models",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(error.status_code,
                                                                                     str(error.detail))
        return JSONResponse(APIError(error.status_code, message, code=kind).body(), status_code=error.status_code,
                            headers=dict(error.headers or {}))

    async def chat_completion(body: ChatRequest, request: Any) -> Any:
        question, history, system = _chat_task(body)
        return await _answer(state, body, question, system, request, chat=True, history=history)

    async def completion(body: CompletionRequest, request: Any) -> Any:
        return await _answer(state, body, body.prompt if isinstance(body.prompt, str) else "", None, request,
                             chat=False)

    app.add_middleware(_Front, api_key=config.api_key, limit=config.max_body_bytes,
                       routes={"/v1/chat/completions": (ChatRequest, chat_completion),
                               "/v1/completions": (CompletionRequest, completion)})

    @app.get("/v1/models", responses={401: _ERRORS[401]})
    async def models() -> dict[str, Any]:
        """Every strategy that needs no verifier, at its default budget; any budget may be asked for."""
        from manyminds.strategies import by_name, default_budget

        data = []
        for name in names():
            cls = by_name(name)
            data.append({"id": f"{name}-{default_budget(cls)}", "object": "model", "created": 0,
                         "owned_by": "manyminds", "needs_verifier": cls.needs_verifier})
        return {"object": "list", "data": data}

    # Answered by `_Front` before FastAPI routes them; declared here, with the same handlers, for the
    # OpenAPI document.
    @app.post("/v1/chat/completions", responses=_ERRORS)
    async def chat(body: ChatRequest, request: Request) -> Any:
        return await chat_completion(body, request)

    @app.post("/v1/completions", responses=_ERRORS)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        return await completion(body, request)

    app.state.manyminds = state
    return app


def _import_request_path() -> None:
    """Import now what a request would import on its way (strategies, the pipeline runner, the
    answer readers, the HTTP client), so the first requests do not, and startup's objects are all there."""
    import importlib

    from manyminds.strategies import names

    names()  # every strategy module
    for module in ("manyminds.agents.builder", "manyminds.answers", "manyminds.aggregators", "manyminds.budget",
                   "manyminds.bench.scoring", "aiohttp"):
        importlib.import_module(module)


def _warn_if_upstream_narrower(backend: Any, config: ServerConfig) -> None:
    """Say so at startup when an HTTP upstream takes fewer calls at once than the server runs
    ensembles: the rest wait in the backend's queue (at 32 calls and a 50 ms upstream, 640 requests
    a second at most), which no setting of the server's shows."""
    upstream = getattr(backend, "per_endpoint_concurrency", None)
    if upstream is None:
        return
    calls = backend.capabilities.max_concurrency
    if calls < config.max_concurrency:
        log.warning("the backend takes %d upstream calls at once and the server runs %d ensembles: raise the "
                    "backend's max_concurrency (openai:model=M,base_url=U,max_concurrency=%d)", calls,
                    config.max_concurrency, config.max_concurrency)


def _set_timeouts(backend: Any, config: ServerConfig) -> None:
    """The upstream timeouts the server was started with, on a backend that has them (OpenAI-compatible)."""
    for name, value in (("timeout", config.upstream_timeout), ("retry_deadline", config.upstream_deadline)):
        if value is None:
            continue
        if not hasattr(backend, name):
            log.warning("the backend %s has no %s to set; --upstream-%s is ignored", type(backend).__name__, name,
                        "timeout" if name == "timeout" else "deadline")
            continue
        setattr(backend, name, value)


def _validation_error(errors: Any) -> APIError:
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "extra_forbidden":
        return bad_request(f"unknown parameter {param!r}: it is not one of the OpenAI API's", param=param,
                           code="unsupported_parameter")
    if first.get("type") == "json_invalid":
        return bad_request(f"the body is not valid JSON: {first.get('msg')}", code="invalid_json")
    return bad_request(f"{param or 'body'}: {first.get('msg')}", param=param)


_Handler = Callable[[Any, Any], Awaitable[Any]]
_MISSING = object()
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A JSON escape of a UTF-16 surrogate: the only way a body that is valid UTF-8 can hold one."""


class _Front:
    """ASGI in front of FastAPI on /v1/: the bearer key first, then the body (read whole up to the
    limit, UTF-8 JSON that Python can hold, no lone surrogates), then the completions endpoints
    answered here.

    A POST to a path in `routes` is validated against its request model and handed to its handler,
    and the Response the handler returns is sent as is: the same handler FastAPI's route would call,
    without Starlette's middleware stack, its router and FastAPI's dependency solving, which were
    about a third of the server's CPU for a one-sample ensemble (`benchmarks/serve.py`). FastAPI
    keeps everything else: GET /v1/models, 404s and 405s, and the OpenAPI document, which declares
    the same routes. A refused request never reaches the application.
    """

    def __init__(self, app: Any, api_key: str | None, limit: int,
                 routes: "dict[str, tuple[type[BaseModel], _Handler]] | None" = None) -> None:
        self.app = app
        self.api_key = api_key
        self.limit = limit
        self.routes = routes or {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        replayed = False
        body = b""

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: a disconnect, when the client goes away

        try:
            _check_key(headers.get("authorization", ""), self.api_key)
            if scope["method"] != "POST":
                return await self.app(scope, receive, send)
            read = await self._body(headers, receive)
            if read is None:
                return  # the client went away while sending
            body = read
            encoding = headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise APIError(415, f"Content-Encoding {encoding!r} is not accepted: send the JSON body uncompressed",
                               code="unsupported_encoding")
            parsed = _parsed(body)
            route = self.routes.get(scope["path"])
            if route is None:
                return await self.app(scope, replay, send)
            model, handler = route
            if parsed is _MISSING:
                raise _validation_error([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
            try:
                request = model.model_validate(parsed)
            except ValidationError as error:
                raise _validation_error(error.errors()) from None
            from starlette.requests import Request as StarletteRequest

            response = await handler(request, StarletteRequest(scope, replay))
        except APIError as error:
            return await _send_error(send, error)
        except Exception as error:  # a bug: logged, answered in OpenAI's shape, the connection kept
            log.exception("a request failed unexpectedly", exc_info=error)
            return await _send_error(send, APIError(500, f"the server failed unexpectedly: {type(error).__name__}",
                                                    type="server_error", code="internal_error"))
        await response(scope, replay, send)

    async def _body(self, headers: dict[str, str], receive: Any) -> bytes | None:
        """The whole body, refused (400) past the limit before more is read; None if the client left."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise bad_request(f"the body is {declared} bytes; the limit is {self.limit}", code="body_too_large")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise bad_request(f"the body is over the limit of {self.limit} bytes", code="body_too_large")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parsed(body: bytes) -> Any:
    """The body's JSON value (`_MISSING` for no body), refused as a 400 where the framework's own
    parsing would have let it through as a 500: invalid UTF-8, an integer of more than 4,300 digits,
    a lone surrogate (JSON's "\\ud800", which cannot be stored or sent on)."""
    if not body:
        return _MISSING
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise bad_request(f"the body is not UTF-8 text (byte {error.start})", code="invalid_json") from None
    except ValueError as error:  # JSONDecodeError, and the int-digits limit
        raise bad_request(f"the body is not valid JSON: {str(error)[:200]}", code="invalid_json") from None
    except RecursionError:
        raise bad_request("the body's JSON is nested too deeply", code="invalid_json") from None
    if _SURROGATE_ESCAPE.search(body):  # rare: only then is every string looked at
        _no_lone_surrogates(value, "")
    return value


def _no_lone_surrogates(value: Any, where: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad_request(f"{where or 'the body'} holds a lone surrogate (not valid Unicode text)",
                              param=where or None) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_lone_surrogates(key, where)
            _no_lone_surrogates(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for k, item in enumerate(value):
            _no_lone_surrogates(item, f"{where}.{k}")


async def _send_error(send: Any, error: APIError) -> None:
    payload = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _check_key(given: str, key: str | None) -> None:
    if key is None:
        return
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise APIError(401, "missing or wrong API key: send Authorization: Bearer <key>", type="authentication_error",
                       code="invalid_api_key")


def _chat_task(body: ChatRequest) -> tuple[str, tuple[Message, ...], str | None]:
    """The question (the last user turn), the conversation's earlier turns and the system message."""
    system = [m.text() for m in body.messages if m.role in ("system", "developer")]
    turns = [m for m in body.messages if m.role not in ("system", "developer")]
    if not turns or turns[-1].role not in ("user", "tool", "function"):
        raise bad_request("the last message must be the user's (or a tool's result)", param="messages")
    if any(not m.text().strip() for m in turns):
        raise bad_request("a message has no text", param="messages")
    history = tuple(Message(role="user" if m.role == "user" else "assistant", content=m.text()) for m in turns[:-1])
    return turns[-1].text(), history, "\n\n".join(system) if system else None


_NOT_OVER_HTTP = {"proposer_backends", "judges", "first", "then", "verifier_options"}
"""Settings that hold objects (backends, strategies): set in Python, never from a request."""


@dataclass
class _Built:
    """A request's strategy, the backend it samples, how answers are read, and what the reply says about it."""

    strategy: Any
    backend: Backend
    answer_format: AnswerFormat
    notes: list[str]


def _strategy(state: _State, body: _Common, name: ModelName, system: str | None) -> _Built:
    """The request's strategy, built by `strategies.make` as every door builds one: the OpenAI
    parameters given and the `manyminds` settings, nothing else (the strategy's defaults stand)."""
    from manyminds.budget import Budget
    from manyminds.strategies import by_name

    cls = by_name(name.strategy)
    extra = dict(body.manyminds)
    notes: list[str] = []
    structured = _structured(body)
    tooling = _tool_instruction(body)
    try:
        answer_format = AnswerFormat(extra.pop("format", "json" if structured is not None else
                                               "tool" if tooling is not None else "text"))
    except (ValueError, TypeError):
        raise bad_request(f"manyminds.format must be one of {', '.join(f.value for f in AnswerFormat)}",
                          param="manyminds.format") from None
    if structured is not None and answer_format is not AnswerFormat.JSON:
        raise bad_request("response_format asks for JSON: leave manyminds.format unset (or 'json')",
                          param="manyminds.format")
    held = sorted(_NOT_OVER_HTTP & set(extra))
    if held:
        raise bad_request(f"manyminds.{held[0]} holds objects (backends, strategies) and is set in Python, not "
                          "over HTTP", param=f"manyminds.{held[0]}")
    cached = extra.pop("cache", None)
    if cached is not None and not isinstance(cached, bool):
        raise bad_request("manyminds.cache must be true or false", param="manyminds.cache")
    # Samples come from the cache only for a seeded request (the same seed, the same samples) or one
    # that asks for it: without a seed, "regenerate" draws afresh, as a client expects.
    use_cache = cached if cached is not None else body.seed is not None
    _allowed_upstream(state, name.upstream)
    try:
        backend = state.session.upstream(name.upstream, cached=use_cache)
    except ConfigError as error:
        raise bad_request(str(error), param="model", code="model_not_found") from None
    verifier = extra.pop("verifier", None)
    if verifier is not None and not isinstance(verifier, str):
        raise bad_request("manyminds.verifier must be a verifier's name", param="manyminds.verifier")
    if verifier is not None and verifier.partition(":")[0].strip() == "unit-tests":
        raise bad_request("the server does not run model-written code", param="manyminds.verifier")
    settings: dict[str, Any] = {}
    for key, value in (("temperature", body.temperature), ("top_p", body.top_p), ("seed", body.seed),
                       ("max_tokens", body.max_tokens)):
        if value is not None:
            settings[key] = value
    sampling: dict[str, Any] = {}
    if body.stop is not None:
        sampling["stop"] = [body.stop] if isinstance(body.stop, str) else body.stop
    for key in ("presence_penalty", "frequency_penalty"):
        value = getattr(body, key)
        if value:  # 0 is the default everywhere: sent by many front-ends, it changes nothing
            sampling[key] = value
    if body.logprobs:
        sampling.update(logprobs=True, top_logprobs=body.top_logprobs or 0)
    if sampling:
        settings["sampling"] = sampling
    if structured is not None:  # every sample is asked for the JSON; the answers vote as data
        system = "\n\n".join(p for p in (system, structured) if p)
    if tooling is not None:  # every sample sees the tools; calls vote by name and arguments
        system = "\n\n".join(p for p in (system, tooling) if p)
        if answer_format is not AnswerFormat.TOOL:
            raise bad_request("tools are offered: leave manyminds.format unset (or 'tool')", param="manyminds.format")
    if system is not None:
        settings["system"] = system
    if "prompt" in cls.settings() and answer_format in (AnswerFormat.TEXT, AnswerFormat.JSON):
        settings["prompt"] = "raw"  # free-form: the user's words exactly
    if "aggregator" in cls.settings() and answer_format is AnswerFormat.TEXT:
        settings["aggregator"] = "mbr"  # free text votes by agreement (chrF), not by identical strings
    if "aggregator" in cls.settings() and answer_format is AnswerFormat.JSON:
        settings["aggregator"] = "json-vote"  # equal data votes together; only values the schema admits
    if "aggregator" in cls.settings() and answer_format is AnswerFormat.TOOL:
        settings["aggregator"] = "tool-vote"  # equal calls vote together; replies by agreement
    if "prompt" in cls.settings() and answer_format is AnswerFormat.TOOL:
        settings["prompt"] = "raw"
    settings.update(extra)
    # max_completion_tokens bounds everything generated for the answer (OpenAI counts a reasoning
    # model's hidden tokens in it): here every sample and model call of the ensemble, a token budget
    # per question (manyminds.budget); max_tokens stays each sample's own limit. Every request is
    # also held to the server's cap on samples and upstream calls, whatever its settings.
    tokens = getattr(body, "max_completion_tokens", None)
    try:
        asked = Budget.model_validate(settings["budget"] if not isinstance(settings.get("budget"), int)
                                      else {"tokens": settings["budget"]}) if settings.get("budget") is not None else None
    except (ValidationError, TypeError) as error:
        raise bad_request(f"manyminds.budget: {error}".split("\n")[0], param="manyminds.budget") from None
    if tokens is not None or asked is not None:
        settings["budget"] = Budget(tokens=tokens).tighter(asked)
    # Equal settings make an equal strategy (a frozen model): the one built for an earlier request is
    # reused, which spares the validation that building costs (a verifier's strategy holds the
    # backend its judge calls, so it is built each time).
    kept_as = _strategy_key(name, tokens, settings) if verifier is None else None
    made = state.strategies.get(kept_as) if kept_as is not None else None
    if made is None:
        made = _made(state, name, verifier, VerifierOptions(backend=backend), tokens, settings, body.temperature)
        if kept_as is not None:
            state.strategies[kept_as] = made
            while len(state.strategies) > _STRATEGIES_KEPT:
                state.strategies.pop(next(iter(state.strategies)))
    strategy, greedy_note = made
    return _Built(strategy, backend, answer_format, notes + ([greedy_note] if greedy_note else []))


_STRATEGIES_KEPT = 256
"""Strategies built for requests and kept for the next request that asks for the same (oldest first out)."""


def _strategy_key(name: ModelName, tokens: int | None, settings: dict[str, Any]) -> str | None:
    """The request's strategy as a key: its name, budget and settings as canonical JSON (None when a
    setting is not JSON data, such as a Python object set through the API)."""
    try:
        return json.dumps([name.strategy, name.n, tokens, settings], sort_keys=True, default=_model_as_json)
    except (TypeError, ValueError):
        return None


def _model_as_json(value: Any) -> Any:
    """A setting that is a pydantic model (a Budget) as JSON data with its type; anything else is no key."""
    if isinstance(value, BaseModel):
        return [type(value).__name__, value.model_dump(mode="json")]
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _made(state: _State, name: ModelName, verifier: str | None, options: VerifierOptions, tokens: int | None,
          settings: dict[str, Any], temperature: float | None) -> tuple[Any, str | None]:
    """`strategies.make` with the request's settings, and the note for a greedy request sampled at the
    strategy's own temperature (None otherwise); a setting found wrong is a 400."""
    from manyminds.strategies import make

    settings = dict(settings)
    note = None
    try:
        if tokens is not None and "max_tokens" not in settings:
            unbounded = make(name.strategy, name.n, verifier=verifier, verifier_options=options,
                             **{k: v for k, v in settings.items() if k != "budget"})
            own = getattr(unbounded, "sampling", None)
            if own is not None and own.max_tokens > tokens:
                settings["max_tokens"] = tokens  # the method's default length would not fit: the budget's does
        strategy = make(name.strategy, name.n, verifier=verifier, verifier_options=options, **settings)
        if temperature == 0 and getattr(strategy, "greedy_copies", lambda: False)():
            if state.config.greedy == "refuse":
                raise bad_request(f"temperature 0 makes every sample of {name.strategy} the same greedy draw; ask "
                                  "for temperature > 0 (this server refuses greedy ensembles)", param="temperature")
            del settings["temperature"]
            strategy = make(name.strategy, name.n, verifier=verifier, verifier_options=options, **settings)
            own_temperature = getattr(getattr(strategy, "sampling", None), "temperature", "its default")
            note = ("temperature 0 asks for one greedy draw, and copies of it are not agreement: the ensemble "
                    f"sampled at its own temperature, {own_temperature}")
    except APIError:
        raise
    except (ManymindsError, TypeError, ValueError, AttributeError, KeyError) as error:
        message = str(error).split("\n")[0]
        raise bad_request(message, param="manyminds.verifier" if "verifier" in message else "manyminds") from None
    return strategy, note


def _structured(body: _Common) -> str | None:
    """The instruction that asks every sample for `response_format`'s JSON (None: plain text)."""
    response_format = body.response_format or {}
    if response_format.get("type") == "json_object":
        return "Reply with one JSON object and nothing else."
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return ("Reply with one JSON value and nothing else. It must validate against this JSON Schema:\n"
                + json.dumps(schema))
    return None


def _tools(body: _Common) -> list[dict[str, Any]]:
    """The offered tools, in `tools`' form (legacy `functions` converted)."""
    return list(body.tools or []) + [{"type": "function", "function": f} for f in body.functions or []]


def _tool_choice(body: _Common) -> Any:
    choice = body.tool_choice if body.tool_choice is not None else body.function_call
    if isinstance(choice, dict) and "function" not in choice and "name" in choice:  # legacy {"name": ...}
        choice = {"type": "function", "function": {"name": choice["name"]}}
    return choice if choice is not None else "auto"


def _tool_instruction(body: _Common) -> str | None:
    """What every sample is told about the tools it may call (None: no tools, or tool_choice "none").

    Tools are offered in the prompt, so any backend's samples can call them and the calls can be
    read and voted on alike; an upstream's own tool-calling is not used."""
    tools, choice = _tools(body), _tool_choice(body)
    if not tools or choice == "none":
        return None
    lines = []
    for tool in tools:
        function = tool.get("function", {}) if isinstance(tool, dict) else {}
        lines.append(f"- {function.get('name')}: {function.get('description', '')}".rstrip(": ") +
                     f"\n  parameters (JSON Schema): {json.dumps(function.get('parameters', {}))}")
    if choice == "required":
        rule = "You must call one of the tools."
    elif isinstance(choice, dict):
        rule = f"You must call the tool {choice.get('function', {}).get('name')}."
    else:
        rule = "Call a tool if it helps; otherwise reply normally."
    return ("You can call these tools:\n" + "\n".join(lines) + f"\n\n{rule} To call a tool, reply with only a "
            'JSON object: {"tool_call": {"name": "<tool name>", "arguments": {<arguments>}}}.')


def _schema(body: _Common) -> dict[str, Any] | None:
    response_format = body.response_format or {}
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema")
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return None


def _allowed_upstream(state: _State, upstream: str | None) -> None:
    """An upstream model name the server was told it may use (`--upstream-model`); nothing else, so a
    request cannot make the server open connections (or keep backends) of its choosing."""
    if upstream is None:
        return
    allowed = state.config.upstream_models
    own = getattr(state.session.backend, "model", None)
    if upstream == own or "*" in allowed or upstream in allowed:
        return
    raise APIError(400, f"upstream model {upstream!r} is not served here: this server samples "
                        f"{', '.join([repr(own), *map(repr, allowed)])} (start it with --upstream-model to allow more)",
                   param="model", code="model_not_found")


async def _answer(state: _State, body: _Common, text: str, system: str | None, request: Any, *, chat: bool,
                  history: tuple[Message, ...] = ()) -> Any:
    from manyminds.budget import Budget

    known = _known()
    target = _passthrough_target(state, body.model, known)
    if target is not None:
        return await _passthrough(state, body, target, request, chat=chat)
    _unsupported(body)
    if not isinstance(text, str) or not text.strip():
        raise bad_request("an ensemble answers one text prompt: send prompt as a non-empty string (token ids and "
                          "batches go to a pass-through model, none:MODEL)", param="prompt")
    name = parse_model(body.model, known)
    built = _strategy(state, body, name, system)
    schema = _schema(body)
    metadata: dict[str, Any] = {"json_schema": schema} if schema is not None else {}
    if built.answer_format is AnswerFormat.TOOL:
        metadata.update(tools=_tools(body), tool_choice=_tool_choice(body))
    task = Task(question=text, format=built.answer_format, history=history, metadata=metadata)
    assert state.admission is not None

    admission = state.admission
    admission.enter(state.config.retry_after)  # a full server refuses now, before any stream starts

    async def admitted() -> Result:
        async with admission.held():
            # the server's cap is a limit from outside the method: applied, not recorded as its setting
            assert state.batcher is not None
            return await state.batcher.solve(built.strategy, task, built.backend,
                                             Budget(samples=state.config.max_samples_per_request))

    completion_id = _new_id('chatcmpl' if chat else 'cmpl')

    def reply(result: Result) -> dict[str, Any]:
        return _completion(result, body.model, chat=chat, n=body.n, notes=built.notes, logprobs=bool(body.logprobs),
                           id=completion_id)

    if not body.stream:
        return _Reply(reply(await _run_cancellable(admitted(), request)))
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    # A synthesis that makes the answer (MoA, Self-MoA) streams as it is generated: for one answer in
    # plain text, on a run of its own (a batched run's synthesis belongs to several requests).
    texts: "asyncio.Queue[str] | None" = None
    if (body.n or 1) == 1 and built.answer_format not in (AnswerFormat.TOOL, AnswerFormat.JSON) \
            and state.batcher is not None and state.batcher.window is None:
        texts = asyncio.Queue()
    token = stream_text_to(texts.put_nowait if texts is not None else None)
    try:
        work = asyncio.ensure_future(admitted())  # carries the sink: the task copies this context
    finally:
        stop_streaming(token)
    return StreamingResponse(_live(work, reply, completion_id, body.model, chat=chat, include_usage=include_usage,
                                   heartbeat=state.config.heartbeat, texts=texts), media_type="text/event-stream")


async def _live(work: "asyncio.Future[Result]", reply: Any, completion_id: str, model: str, *, chat: bool,
                include_usage: bool, heartbeat: float, texts: "asyncio.Queue[str] | None" = None) -> AsyncIterator[bytes]:
    """A stream that is alive while the ensemble works: the assistant's role at once (chat), the
    answer-making synthesis's text as it is generated (`texts`, when the method has one), an SSE
    comment with the time spent every `heartbeat` seconds without other news (clients and proxies
    see life; OpenAI's clients skip comments), then the decided answer (what was not streamed of
    it), its finish and [DONE]. An error after the stream began is sent as an `error` event, as
    OpenAI's API does. A client that goes away cancels the work."""
    start = time.monotonic()
    base = {"id": completion_id, "created": int(time.time()), "model": model}
    sent: list[str] = []

    def piece(text: str) -> bytes:
        if chat:
            return _event({**base, "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None, "logprobs": None}]})
        return _event({**base, "object": "text_completion",
                       "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}]})

    try:
        if chat:
            yield _event({**base, "object": "chat.completion.chunk",
                          "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                       "finish_reason": None, "logprobs": None}]})
        while not work.done():
            waiting: list[asyncio.Future[Any]] = [work]
            getter = asyncio.ensure_future(texts.get()) if texts is not None else None
            if getter is not None:
                waiting.append(getter)
            done, _ = await asyncio.wait(waiting, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED)
            if getter is not None and not getter.done():
                getter.cancel()
            elif getter is not None:
                sent.append(getter.result())
                yield piece(sent[-1])
            if not done:
                yield f": manyminds working {time.monotonic() - start:.1f}s\n\n".encode()
        while texts is not None and not texts.empty():
            sent.append(texts.get_nowait())
            yield piece(sent[-1])
        try:
            result = work.result()
        except Exception as error:  # the same mapping as a plain response, sent as an error event
            failure = _api_error(error)
            yield _event(failure.body())
            yield b"data: [DONE]\n\n"
            return
        async for chunk in _stream(reply(result), chat=chat, include_usage=include_usage,
                                   streamed="".join(sent) if sent else None):
            yield chunk
    finally:
        if not work.done():
            work.cancel()
            log.info("client disconnected: its ensemble was cancelled")


def _passthrough_target(state: _State, model: str, known: list[str]) -> str | None:
    """The upstream model a request is forwarded to unchanged: `none` or `none:MODEL`, or a model name
    that is not a strategy but one this server may use (its backend's, or `--upstream-model`)."""
    head, _, rest = model.partition(":")
    own = getattr(state.session.backend, "model", None)
    if head == "none":
        target = rest or own
        _allowed_upstream(state, rest or None)
        return target
    budgeted = _BUDGET.match(head)
    if head in known or (budgeted is not None and budgeted.group("name") in known):
        return None
    if model == own or "*" in state.config.upstream_models or model in state.config.upstream_models:
        return model
    return None


async def _passthrough(state: _State, body: _Common, target: str, request: Any, *, chat: bool) -> Any:
    """The request as the client sent it, to the upstream model `target`: an OpenAI-compatible
    upstream gets the body unchanged (n, logprobs, echo, token ids, tools and all) and its reply is
    relayed, streamed or not; another backend (the embedded model) samples it with the same
    parameters. No ensemble, no cache: a plain call sharing the server's base URL."""
    from fastapi.responses import Response

    payload = body.model_dump(exclude_unset=True, exclude={"manyminds"})
    payload["model"] = target
    backend = state.session.backend
    if target != getattr(backend, "model", None):
        backend = state.session.upstream(target, cached=False)
    forward = getattr(backend, "forward", None)
    if forward is None:
        return _Reply(await _sampled(backend, body, target, chat=chat))

    async def relay() -> tuple[int, str, Any]:
        return await forward("chat/completions" if chat else "completions", payload)

    status, media, chunks = await _run_cancellable(relay(), request)
    if body.stream and status == 200:
        return StreamingResponse(chunks, status_code=status, media_type=media)
    content = b"".join([chunk async for chunk in chunks])
    return Response(content, status_code=status, media_type=media)


async def _sampled(backend: Backend, body: _Common, model: str, *, chat: bool) -> dict[str, Any]:
    """A plain completion from a backend that cannot take a request body as it is (the embedded
    model): the same sampling parameters, `n` samples, OpenAI's reply shape."""
    from manyminds.types import SamplingParams

    if isinstance(body, CompletionRequest) and (body.echo or not isinstance(body.prompt, str)):
        raise bad_request("echo, token-id and batched prompts need an OpenAI-compatible upstream that scores "
                          "prompts (vLLM's server, llama.cpp's); this backend only samples", param="prompt")
    if body.logit_bias or body.tools or body.response_format not in (None, {"type": "text"}):
        raise bad_request("this backend samples text only: logit_bias, tools and response_format need an "
                          "OpenAI-compatible upstream", param="model")
    if body.stream:
        raise bad_request("streaming a pass-through needs an OpenAI-compatible upstream", param="stream")
    if isinstance(body, ChatRequest):
        messages = [Message(role="user" if m.role in ("user", "tool", "function") else
                            "system" if m.role in ("system", "developer") else "assistant", content=m.text())
                    for m in body.messages]
    else:
        messages = [Message(role="user", content=str(getattr(body, "prompt", "")))]
    try:
        params = SamplingParams(
            temperature=1.0 if body.temperature is None else body.temperature, top_p=body.top_p or 1.0,
            max_tokens=body.max_tokens or getattr(body, "max_completion_tokens", None) or 512,
            stop=tuple([body.stop] if isinstance(body.stop, str) else body.stop or ()), seed=body.seed,
            logprobs=bool(body.logprobs), top_logprobs=body.top_logprobs or 0,
            presence_penalty=body.presence_penalty or None, frequency_penalty=body.frequency_penalty or None)
    except ValidationError as error:
        raise bad_request(str(error).split("\n")[0]) from None
    try:
        generations = await backend.generate(messages, params, body.n)
    except BackendError as error:
        raise APIError(502, f"the upstream model failed: {error}", type="upstream_error", code="upstream_failed") from None
    prompt_tokens = generations[0].prompt_tokens if generations else 0
    completion = sum(g.completion_tokens for g in generations)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}
    common = {"id": _new_id('chatcmpl' if chat else 'cmpl'), "created": int(time.time()),
              "model": model, "usage": usage}
    if chat:
        return {**common, "object": "chat.completion", "choices": [
            {"index": k, "message": {"role": "assistant", "content": g.text, "refusal": None},
             "finish_reason": _finish_reason(g), "logprobs": _logprobs(g, True) if body.logprobs else None}
            for k, g in enumerate(generations)]}
    return {**common, "object": "text_completion", "choices": [
        {"index": k, "text": g.text, "finish_reason": _finish_reason(g),
         "logprobs": _logprobs(g, False) if body.logprobs else None} for k, g in enumerate(generations)]}


def _known() -> list[str]:
    from manyminds.strategies import names

    return names()


async def _run_cancellable(job: Awaitable[T], request: Any) -> T:
    """The ensemble's result (waiting for an admission slot included), cancelled with its upstream
    calls if the client goes away: a client that gave up leaves the queue at once."""
    work = asyncio.ensure_future(job)

    async def watch() -> None:
        # The body was read (and replayed) already: the next ASGI message is the disconnect, if the
        # client goes away before its answer. Waiting for it costs nothing; polling cost a core.
        while not work.done():
            message = await request.receive()
            if message["type"] == "http.disconnect":
                work.cancel()
                return

    watcher = asyncio.ensure_future(watch())
    try:
        return await work
    except asyncio.CancelledError:
        log.info("client disconnected: its ensemble was cancelled")
        raise APIError(499, "the client closed the request", code="client_closed") from None
    except (ManymindsError, ValidationError) as error:
        raise _api_error(error) from None
    finally:
        watcher.cancel()


def _api_error(error: BaseException) -> APIError:
    """What an ensemble's failure is to a client: 504 when the upstream timed out, 502 when it failed,
    400 for a setting found wrong only at run time."""
    if isinstance(error, APIError):
        return error
    if isinstance(error, BackendError):
        if "no reply within" in str(error) or "timed out" in str(error).lower():
            return APIError(504, f"the upstream model did not answer in time: {error}", type="upstream_error",
                            code="upstream_timeout")
        return APIError(502, f"the upstream model failed after retries: {error}", type="upstream_error",
                        code="upstream_failed")
    if isinstance(error, (ConfigError, ValidationError)):
        return bad_request(str(error).split("\n")[0])
    if isinstance(error, ManymindsError):
        return APIError(502, f"the ensemble failed: {error}", type="upstream_error", code="ensemble_failed")
    log.exception("an ensemble failed unexpectedly", exc_info=error)
    return APIError(500, f"the ensemble failed unexpectedly: {type(error).__name__}", type="server_error",
                    code="internal_error")


class _Reply(JSONResponse):
    """A completion as JSON, rendered by orjson: the standard library's encoder took 14 us of a
    ~1 KB reply, a twentieth of the server's own work on a request (`benchmarks/serve.py`)."""

    def render(self, content: Any) -> bytes:
        import orjson

        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def _new_id(prefix: str, joint: str = "-") -> str:
    """A completion's (or tool call's) id: 96 random bits, as OpenAI's ids have about. Unique, not
    secret, so the process's Mersenne Twister rather than a system call per reply."""
    return f"{prefix}{joint}{random.getrandbits(96):024x}"


def _finish_reason(generation: Any) -> str:
    """OpenAI's finish_reason of the sample shown: "length" when it was cut at max_tokens."""
    return "length" if generation is not None and generation.finish_reason == "length" else "stop"


def _logprobs(generation: Any, chat: bool) -> dict[str, Any] | None:
    if generation is None or not generation.logprobs:
        return None
    if chat:
        return {"content": [{"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode("utf-8")),
                             "top_logprobs": [{"token": k, "logprob": v, "bytes": list(k.encode("utf-8"))}
                                              for k, v in (t.top or {}).items()]}
                            for t in generation.logprobs], "refusal": None}
    offsets, at = [], 0
    for t in generation.logprobs:
        offsets.append(at)
        at += len(t.token)
    return {"tokens": [t.token for t in generation.logprobs], "token_logprobs": [t.logprob for t in generation.logprobs],
            "top_logprobs": [t.top or {} for t in generation.logprobs], "text_offset": offsets}


def _message(k: int, text: str, generation: Any, logprobs: bool) -> dict[str, Any]:
    """A chat choice: the text, or the tool call a `call:` key names (finish_reason "tool_calls")."""
    from manyminds.answers import TOOL_CALL, TOOL_TEXT

    if text.startswith(TOOL_CALL):
        call = json.loads(text[len(TOOL_CALL):])
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [{
            "id": _new_id("call", "_"), "type": "function",
            "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}]}
        return {"index": k, "message": message, "finish_reason": "tool_calls", "logprobs": None}
    if text.startswith(TOOL_TEXT):
        text = text[len(TOOL_TEXT):]
    return {"index": k, "message": {"role": "assistant", "content": text, "refusal": None},
            "finish_reason": _finish_reason(generation), "logprobs": _logprobs(generation, True) if logprobs else None}


def _choices(result: Result, n: int) -> list[tuple[str, Any]]:
    """The answer shown first (the decision's), then the next best distinct answers by the tally,
    each as the text of its earliest ballot, up to n."""
    from manyminds.bench.scoring import chosen_candidate

    first = chosen_candidate(result)
    text = result.text if result.text is not None else (result.answer or "")
    if result.task.format is AnswerFormat.JSON:  # the winning value itself, which validates; not the prose around it
        text = result.answer or ""
    if result.task.format is AnswerFormat.TOOL and result.answer is not None and result.answer.startswith("call:"):
        text = result.answer  # the winning call, as data: shown as a tool_calls message
    shown = [(text, first.generation if first is not None else None)]
    if n > 1:
        ballots = sorted((c for c in result.candidates if c.votes), key=lambda c: c.index)
        for answer in sorted(result.tally, key=lambda k: -result.tally[k]):
            if len(shown) >= n or answer == result.answer:
                continue
            pick = next((c for c in ballots if c.answer == answer), None)
            if pick is not None:
                call = result.task.format is AnswerFormat.TOOL and answer.startswith("call:")
                shown.append((answer if call else pick.text, pick.generation))
    return shown


def _completion(result: Result, model: str, *, chat: bool, n: int = 1, notes: list[str] | None = None,
                logprobs: bool = False, id: str | None = None) -> dict[str, Any]:
    u = result.usage
    # usage: what this request generated; cache hits (samples another request paid for) are reported
    # apart, as OpenAI reports cached prompt tokens
    usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens - u.cached_completion_tokens,
             "total_tokens": u.prompt_tokens + u.completion_tokens - u.cached_completion_tokens,
             "prompt_tokens_details": {"cached_tokens": u.cached_prompt_tokens},
             "completion_tokens_details": {"reasoning_tokens": 0}}
    shown = _choices(result, n)
    extra = {
        "answer": result.answer,
        "confidence": result.confidence,
        "tally": result.tally,
        "stop_reason": result.stop_reason,
        "strategy": result.strategy,
        "strategy_params": result.strategy_params,
        "aggregator": result.decision.aggregator,
        "calls": u.calls,
        "samples": u.samples,
        "cached_samples": u.cached_samples,
        "cached_completion_tokens": u.cached_completion_tokens,
        "completion_tokens_with_cache": u.completion_tokens,
        "withheld_samples": u.withheld_samples,
        "candidates": [{"index": c.index, "answer": c.answer, "source": str(c.source), "votes": c.votes}
                       for c in result.candidates],
        "notes": list(notes or []) + ([f"{n} answers asked for, {len(shown)} distinct"] if len(shown) < n else []),
        "streaming": "the answer is sent once decided, as one chunk (after the role at once, and keep-alive "
                     "comments while the ensemble works)",
    }
    common = {"id": id or _new_id('chatcmpl' if chat else 'cmpl'), "created": int(time.time()),
              "model": model, "usage": usage, "manyminds": extra}
    if chat:
        choices = [_message(k, text, g, logprobs) for k, (text, g) in enumerate(shown)]
        return {**common, "object": "chat.completion", "choices": choices}
    choices = [{"index": k, "text": text, "finish_reason": _finish_reason(g),
                "logprobs": _logprobs(g, False) if logprobs else None} for k, (text, g) in enumerate(shown)]
    return {**common, "object": "text_completion", "choices": choices}


async def _stream(payload: dict[str, Any], *, chat: bool, include_usage: bool,
                  streamed: str | None = None) -> AsyncIterator[bytes]:
    """The decided answers as server-sent events: each choice's content in one chunk (the first
    one's less what was `streamed` of it already), its finish, then the usage when asked for, then
    [DONE]. Streamed text that is not the start of the answer (a synthesis the decision set aside)
    is said so in the `manyminds` notes."""
    base = {k: payload[k] for k in ("id", "created", "model")}
    kind = "chat.completion.chunk" if chat else "text_completion"
    if streamed is not None:
        payload = copy.deepcopy(payload)
        first = payload["choices"][0]
        shown = first["message"]["content"] if chat else first["text"]
        if shown is not None and shown.startswith(streamed):
            rest = shown[len(streamed):]
        else:
            rest = ""
            payload["manyminds"]["notes"] = payload["manyminds"].get("notes", []) + [
                "the text streamed was a synthesis the decision set aside: the answer is manyminds.answer"]
        if chat:
            first["message"]["content"] = rest
        else:
            first["text"] = rest
    for k, choice in enumerate(payload["choices"]):
        if chat and choice["message"].get("tool_calls"):
            calls = [{"index": j, **call} for j, call in enumerate(choice["message"]["tool_calls"])]
            first = {"index": choice["index"], "delta": {"role": "assistant", "content": None, "tool_calls": calls},
                     "finish_reason": None, "logprobs": None}
        elif chat:
            first = {"index": choice["index"], "delta": {"role": "assistant", "content": choice["message"]["content"]},
                     "finish_reason": None, "logprobs": choice["logprobs"]}
        if chat:
            last = {"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"], "logprobs": None}
        else:
            first = {"index": choice["index"], "text": choice["text"], "finish_reason": None,
                     "logprobs": choice["logprobs"]}
            last = {"index": choice["index"], "text": "", "finish_reason": choice["finish_reason"], "logprobs": None}
        yield _event({**base, "object": kind, "choices": [first], **({"manyminds": payload["manyminds"]} if k == 0
                                                                    else {})})
        yield _event({**base, "object": kind, "choices": [last]})
    if include_usage:
        yield _event({**base, "object": kind, "choices": [], "usage": payload["usage"]})
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


def serve(config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8000, graceful_seconds: int = 30) -> None:
    """Run the server until it is stopped (SIGINT/SIGTERM: requests in flight finish, the cache is flushed).

    What can be checked before serving is checked first, each failure one ConfigError line: the
    backend spec, the cache path and the port (uvicorn would print a traceback for each).
    """
    import socket

    import uvicorn

    from manyminds.backends import from_spec
    from manyminds.cache.store import check_cache_path

    if isinstance(config.backend, str):
        from_spec(config.backend)  # an unknown or malformed spec fails here, not in the server's startup
    if config.cache is not None and not hasattr(config.cache, "wrap"):
        check_cache_path(Path(config.cache).expanduser())
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}"
                          + (" (pass another --port)" if error.errno == errno.EADDRINUSE else "")) from None
    config = dataclasses.replace(config, freeze_startup=True)  # a process of its own
    uvicorn.run(create_app(config), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=graceful_seconds, access_log=False)
