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
sample's full text (or the synthesis, for MoA-style methods), `usage` sums
every upstream call (cache hits cost nothing), and a `manyminds` field that
OpenAI clients ignore carries the answer key, tally, confidence, stop reason
and each candidate's answer. With `stream=true` the answer is streamed once
it is decided, as one content chunk (an ensemble cannot know its answer
before its samples are in), then the finish chunk and `[DONE]`.

The same strategies, registry, cache and backend as the library: one
`Session` serves every request, so concurrent requests for the same
question share cached samples (the cached backend joins identical in-flight
samples). Admission is bounded: at most `max_concurrency` ensembles run and
`max_queue` wait; beyond that a request gets 429 with Retry-After. An
upstream failure after the backend's retries is a 502; a client that
disconnects cancels its ensemble. Errors use OpenAI's body
`{"error": {"message", "type", "param", "code"}}`, and never carry the
upstream key. On shutdown, requests in flight finish and the cache is
flushed and closed.
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import json
import logging
import re
import time
import uuid
from pathlib import Path
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from manyminds.backends.base import Backend
from manyminds.errors import BackendError, ConfigError, ManymindsError
from manyminds.types import MAX_SAMPLES, AnswerFormat, Message, Result, Task
from manyminds.verifiers.base import VerifierOptions

log = logging.getLogger("manyminds.server")

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
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise bad_request("only text content parts are supported", param="messages")
            parts.append(part["text"])
        return "".join(parts)


class _Common(BaseModel):
    """What chat and plain completions share: the OpenAI parameters an ensemble can honour."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="STRATEGY[-N][:UPSTREAM_MODEL], e.g. self-consistency-8")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = Field(default=1, ge=1, le=1, description="one ensemble answer per request")
    user: str | None = None
    manyminds: dict[str, Any] = Field(default_factory=dict, description="strategy settings, validated")


class ChatRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_Common):
    prompt: str = Field(min_length=1)


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

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.max_queue < 0:
            raise ConfigError("max_concurrency must be >= 1 and max_queue >= 0")


@dataclass
class _Admission:
    """At most `running` ensembles at once and `waiting` in line; refuse the rest (429)."""

    running: int
    waiting: int
    _queued: int = 0
    _slots: asyncio.Semaphore | None = None

    @asynccontextmanager
    async def slot(self, retry_after: int) -> AsyncIterator[None]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.running)
        if self._slots.locked() and self._queued >= self.waiting:
            raise APIError(429, f"the server is busy: {self.running} ensembles running and {self._queued} waiting; "
                                "retry later", type="rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(retry_after)})
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        try:
            yield
        finally:
            self._slots.release()


@dataclass
class _State:
    config: ServerConfig
    session: Any = None
    admission: _Admission | None = None


def create_app(config: ServerConfig) -> Any:
    """The FastAPI application (run it with uvicorn; `manyminds serve` does)."""
    from manyminds.session import Session
    from manyminds.strategies import names

    state = _State(config)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        state.session = Session(config.backend, cache=config.cache, concurrency=1, progress=False)
        state.admission = _Admission(config.max_concurrency, config.max_queue)
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

    app.add_middleware(_Guard, api_key=config.api_key, limit=config.max_body_bytes)

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

    @app.post("/v1/chat/completions", responses=_ERRORS)
    async def chat(body: ChatRequest, request: Request) -> Any:
        question, history, system = _chat_task(body)
        return await _answer(state, body, question, system, request, chat=True, history=history)

    @app.post("/v1/completions", responses=_ERRORS)
    async def completions(body: CompletionRequest, request: Request) -> Any:
        return await _answer(state, body, body.prompt, None, request, chat=False)

    app.state.manyminds = state
    return app


def _validation_error(errors: Any) -> APIError:
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = [str(x) for x in first.get("loc", ()) if x != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "extra_forbidden":
        return bad_request(f"unsupported parameter {param!r}: an ensemble honours model, messages, temperature, "
                           "top_p, max_tokens, seed, stop, stream and manyminds", param=param,
                           code="unsupported_parameter")
    if first.get("type") == "json_invalid":
        return bad_request(f"the body is not valid JSON: {first.get('msg')}", code="invalid_json")
    return bad_request(f"{param or 'body'}: {first.get('msg')}", param=param)


class _Guard:
    """ASGI middleware on /v1/: the bearer key first, then the body, read whole up to the limit.

    Pure ASGI, so the body read here is replayed to the application and a
    refused request never reaches it.
    """

    def __init__(self, app: Any, api_key: str | None, limit: int) -> None:
        self.app = app
        self.api_key = api_key
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            _check_key(headers.get("authorization", ""), self.api_key)
            if scope["method"] != "POST":
                return await self.app(scope, receive, send)
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.limit:
                raise bad_request(f"the body is {declared} bytes; the limit is {self.limit}", code="body_too_large")
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.limit:
                    raise bad_request(f"the body is over the limit of {self.limit} bytes", code="body_too_large")
                chunks.append(chunk)
                more = message.get("more_body", False)
        except APIError as error:
            return await _send_error(send, error)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: a disconnect, when the client goes away

        await self.app(scope, replay, send)


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
    if not turns or turns[-1].role != "user":
        raise bad_request("the last message must be the user's", param="messages")
    if any(not m.text().strip() for m in turns):
        raise bad_request("a message has no text", param="messages")
    history = tuple(Message(role="user" if m.role == "user" else "assistant", content=m.text()) for m in turns[:-1])
    return turns[-1].text(), history, "\n\n".join(system) if system else None


def _strategy(state: _State, body: _Common, name: ModelName, system: str | None) -> tuple[Any, Backend, AnswerFormat]:
    """The request's strategy, built by `strategies.make` as every door builds one: the OpenAI
    parameters given and the `manyminds` settings, nothing else (the strategy's defaults stand)."""
    from manyminds.strategies import by_name, make

    cls = by_name(name.strategy)
    extra = dict(body.manyminds)
    try:
        answer_format = AnswerFormat(extra.pop("format", "text"))
    except ValueError:
        raise bad_request(f"manyminds.format must be one of {', '.join(f.value for f in AnswerFormat)}",
                          param="manyminds.format") from None
    try:
        backend = state.session.upstream(name.upstream)
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
    # max_completion_tokens bounds everything generated for the answer (OpenAI counts a reasoning
    # model's hidden tokens in it): here every sample and model call of the ensemble, a token budget
    # per question (manyminds.budget); max_tokens stays each sample's own limit.
    budget = getattr(body, "max_completion_tokens", None)
    if budget is not None:
        settings["budget"] = {"tokens": budget}
    if body.stop is not None:
        settings["sampling"] = {"stop": [body.stop] if isinstance(body.stop, str) else body.stop}
    if system is not None:
        settings["system"] = system
    if "prompt" in cls.settings() and answer_format is AnswerFormat.TEXT:
        settings["prompt"] = "raw"  # free-form: the user's words exactly
    if "aggregator" in cls.settings() and answer_format is AnswerFormat.TEXT:
        settings["aggregator"] = "mbr"  # free text votes by agreement (chrF), not by identical strings
    settings.update(extra)
    options = VerifierOptions(backend=backend)
    try:
        if budget is not None and "max_tokens" not in settings:
            unbounded = make(name.strategy, name.n, verifier=verifier, verifier_options=options,
                             **{k: v for k, v in settings.items() if k != "budget"})
            sampling = getattr(unbounded, "sampling", None)
            if sampling is not None and sampling.max_tokens > budget:
                settings["max_tokens"] = budget  # the method's default length would not fit: the budget's does
        strategy = make(name.strategy, name.n, verifier=verifier, verifier_options=options, **settings)
    except (ManymindsError, TypeError, ValueError) as error:
        message = str(error).split("\n")[0]
        raise bad_request(message, param="manyminds.verifier" if "verifier" in message else "manyminds") from None
    return strategy, backend, answer_format


async def _answer(state: _State, body: _Common, text: str, system: str | None, request: Any, *, chat: bool,
                  history: tuple[Message, ...] = ()) -> Any:
    names_known = _known()
    name = parse_model(body.model, names_known)
    strategy, backend, answer_format = _strategy(state, body, name, system)
    task = Task(question=text, format=answer_format, history=history)
    assert state.admission is not None
    async with state.admission.slot(state.config.retry_after):
        result = await _run_cancellable(state.session, strategy, task, backend, request)
    payload = _completion(result, body.model, chat=chat)
    if not body.stream:
        return JSONResponse(payload)
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    return StreamingResponse(_stream(payload, chat=chat, include_usage=include_usage), media_type="text/event-stream")


def _known() -> list[str]:
    from manyminds.strategies import names

    return names()


async def _run_cancellable(session: Any, strategy: Any, task: Task, backend: Backend, request: Any) -> Result:
    """The ensemble's result, run by the session; cancelled (its upstream calls with it) if the
    client goes away."""
    work = asyncio.ensure_future(session.asolve(strategy, task, backend=backend))

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
    except BackendError as error:
        raise APIError(502, f"the upstream model failed after retries: {error}", type="upstream_error",
                       code="upstream_failed") from None
    except (ConfigError, ValidationError) as error:
        raise bad_request(str(error)) from None
    except ManymindsError as error:
        raise APIError(502, f"the ensemble failed: {error}", type="upstream_error", code="ensemble_failed") from None
    finally:
        watcher.cancel()


def _completion(result: Result, model: str, *, chat: bool) -> dict[str, Any]:
    text = result.text if result.text is not None else (result.answer or "")
    usage = {"prompt_tokens": result.usage.prompt_tokens, "completion_tokens": result.usage.completion_tokens,
             "total_tokens": result.usage.prompt_tokens + result.usage.completion_tokens}
    extra = {
        "answer": result.answer,
        "confidence": result.confidence,
        "tally": result.tally,
        "stop_reason": result.stop_reason,
        "strategy": result.strategy,
        "strategy_params": result.strategy_params,
        "aggregator": result.decision.aggregator,
        "calls": result.usage.calls,
        "samples": result.usage.samples,
        "cached_samples": result.usage.cached_samples,
        "withheld_samples": result.usage.withheld_samples,
        "candidates": [{"index": c.index, "answer": c.answer, "source": str(c.source), "votes": c.votes}
                       for c in result.candidates],
        "streaming": "the answer is sent once decided, as one chunk",
    }
    common = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}", "created": int(time.time()),
              "model": model, "usage": usage, "manyminds": extra}
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                  "logprobs": None}
        return {**common, "object": "chat.completion", "choices": [choice]}
    return {**common, "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "stop",
                                                                 "logprobs": None}]}


async def _stream(payload: dict[str, Any], *, chat: bool, include_usage: bool) -> AsyncIterator[bytes]:
    """The decided answer as server-sent events: the content in one chunk, the finish, then [DONE]."""
    base = {k: payload[k] for k in ("id", "created", "model")}
    kind = "chat.completion.chunk" if chat else "text_completion"
    choice = payload["choices"][0]
    if chat:
        first = {"index": 0, "delta": {"role": "assistant", "content": choice["message"]["content"]},
                 "finish_reason": None, "logprobs": None}
        last = {"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}
    else:
        first = {"index": 0, "text": choice["text"], "finish_reason": None, "logprobs": None}
        last = {"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}
    yield _event({**base, "object": kind, "choices": [first], "manyminds": payload["manyminds"]})
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
    uvicorn.run(create_app(config), host=host, port=port, log_level="info",
                timeout_graceful_shutdown=graceful_seconds, access_log=False)
