"""Any OpenAI-compatible chat completions API: OpenAI, vLLM's server, the llama.cpp server.

The SDK's own retries are off; failures are classified here and retried by
the one loop in `manyminds.backends.retry`. Servers that ignore `n` (the
llama.cpp server does) are topped up with further calls, and remembered as
such so later requests go straight to one call per sample.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from manyminds.backends.base import Capabilities, request_fingerprint, sample_seed
from manyminds.backends.retry import parse_retry_after, with_retries
from manyminds.errors import BackendError, CapabilityError, ConfigError
from manyminds.redact import public_url, redact, register, url_secrets
from manyminds.text import clip
from manyminds.types import Generation, Message, SamplingParams, TokenLogprob

RETRYABLE_STATUS = {408, 409, 429}
log = logging.getLogger("manyminds.backends.openai")


EJECT_AFTER = 3
"""Consecutive transient failures after which a fleet's endpoint is taken out of rotation."""
EJECT_FOR = 10.0
"""Seconds an endpoint stays out; then one request probes it back."""


class _LoopState:
    """The HTTP session and semaphores belong to one event loop; each loop gets its own.

    Requests go out as plain JSON over aiohttp, not through the OpenAI SDK or httpx: the SDK's
    request transformation and response models cost several milliseconds of CPU a call, and
    httpx about 1.1 ms, against aiohttp's 0.1 ms (`benchmarks/serve.py`; the server's whole
    budget is 1 ms a request). Every backend on a loop shares that loop's connection pool
    (`_pool`), so a server switching among many upstream models holds no client per model. With
    several base URLs (a fleet of servers of one model), each endpoint has its concurrency and its
    health: a request goes to the healthy endpoint with the fewest requests outstanding, and one
    that failed `EJECT_AFTER` times in a row sits out `EJECT_FOR` seconds.
    """

    def __init__(self, backend: "OpenAICompatible", http: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self.http = http
        per = backend.per_endpoint_concurrency
        self.urls: list[str] = []
        self.headers: list[dict[str, str]] = []
        for client_url, _ in backend._endpoints:
            url, authorization = _userinfo_to_header(client_url or "https://api.openai.com/v1")
            self.urls.append(url.rstrip("/") + "/")
            self.headers.append({"Authorization": authorization or f"Bearer {backend._api_key}",
                                 "Content-Type": "application/json"})
        self.queries = [query or None for _, query in backend._endpoints]
        self.proxies = [_proxy(url) for url in self.urls]
        self.labels = [url or "OpenAI" for url in backend.base_urls]
        self.semaphores = [asyncio.Semaphore(per) for _ in backend._endpoints]
        self.outstanding = [0] * len(backend._endpoints)
        self.failures = [0] * len(backend._endpoints)
        self.out_until = [0.0] * len(backend._endpoints)
        self.turn = 0

    def choose(self) -> int:
        """The healthy endpoint with the fewest requests outstanding (in turn on a tie), those that
        have not just failed first; when every endpoint is out, the one back soonest (a probe)."""
        now = time.monotonic()
        healthy = [i for i, until in enumerate(self.out_until) if until <= now]
        if not healthy:
            return min(range(len(self.out_until)), key=lambda i: self.out_until[i])
        self.turn += 1  # one that just failed goes after those that did not (a retry goes elsewhere)
        return min(healthy, key=lambda i: (self.failures[i] > 0, self.outstanding[i],
                                           (i - self.turn) % len(self.out_until)))

    @contextlib.asynccontextmanager
    async def endpoint(self) -> AsyncIterator[int]:
        """One attempt's endpoint (`choose`), held within its concurrency and counted outstanding;
        a retryable failure counts against it, a success clears its record."""
        i = self.choose()
        self.outstanding[i] += 1
        try:
            async with self.semaphores[i]:
                yield i
        except BackendError as error:
            if error.retryable:
                self.failed(i, self.labels[i])
            raise
        finally:
            self.outstanding[i] -= 1
        self.succeeded(i)

    def succeeded(self, i: int) -> None:
        self.failures[i] = 0
        self.out_until[i] = 0.0

    def failed(self, i: int, label: str) -> None:
        self.failures[i] += 1
        if len(self.out_until) > 1 and self.failures[i] >= EJECT_AFTER:
            self.out_until[i] = time.monotonic() + EJECT_FOR
            log.warning("endpoint %s failed %d times in a row: out of rotation for %.0f s", label,
                        self.failures[i], EJECT_FOR)


_POOLS: dict[asyncio.AbstractEventLoop, Any] = {}


async def _pool() -> Any:
    """This event loop's aiohttp session: one connection pool for every endpoint and model on the
    loop (concurrency is bounded by each backend's semaphores, not by the pool). It is closed when
    the loop shuts down: `asyncio.run` (and uvicorn) close every live async generator first, and
    the one started here holds the session in its `finally`."""
    loop = asyncio.get_running_loop()
    for gone in [other for other in list(_POOLS) if other.is_closed()]:  # closed without shutting down
        _POOLS.pop(gone, None)  # its generators: nothing here to close them with any more
    held = _POOLS.get(loop)
    if held is None or held[0].closed:
        import aiohttp

        # trust_env would look up ~/.netrc on a worker thread for every request; the environment's
        # proxies are honoured per endpoint instead (`_proxy`)
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False,
                                     auto_decompress=True, raise_for_status=False)

        async def close_with_the_loop() -> AsyncIterator[None]:
            try:
                yield
            finally:
                _POOLS.pop(loop, None)
                await http.close()

        keeper = close_with_the_loop()
        await keeper.__anext__()  # registered with the loop's async-generator hooks from now on
        held = _POOLS[loop] = (http, keeper)
    return held[0]


class OpenAICompatible:
    """A chat completions endpoint.

    Args:
        model: the model name the server knows.
        base_url: the API root (e.g. ``http://127.0.0.1:8000/v1``); None for OpenAI. Several (a list,
            or joined by ``|``): a fleet of servers of one model, requests spread by fewest outstanding,
            an endpoint that keeps failing taken out for a while (its requests retried on the others).
        api_key: defaults to ``OPENAI_API_KEY``; local servers need none.
        max_concurrency: calls in flight at once per endpoint (a semaphore per event loop).
        timeout: seconds one HTTP call may take.
        retry_deadline: seconds a request may spend in retries (at least 1; `manyminds serve` sets 30).
        native_n: whether the server honours ``n``; None means find out from
            the first reply.
        batch_width: samples one call draws for about the time of one (see
            Capabilities). 1 by default, since on a paid API each drawn sample
            costs; give your own vLLM or TGI server's batch size so stopping
            rules draw ahead instead of paying a round trip per wave.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        base_url: "str | Sequence[str] | None" = None,
        api_key: str | None = None,
        max_concurrency: int = 32,
        timeout: float = 120.0,
        retry_deadline: float = 120.0,
        native_n: bool | None = None,
        batch_width: int = 1,
    ) -> None:
        if not model:
            raise ConfigError("OpenAICompatible needs a model name, e.g. openai:gpt-4o-mini")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        urls: list[str | None] = _urls(base_url)
        for url in urls:
            if url is not None:
                _check_url(url)
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if api_key is None:
            if urls == [None]:
                raise ConfigError(
                    "no API key: set OPENAI_API_KEY, or give base_url for a local server"
                )
            api_key = "not-needed"
        self.model = model
        self.base_urls = [public_url(url) for url in urls]
        """Every endpoint without credentials (several: a fleet of servers of this model)."""
        self.base_url = self.base_urls[0]
        """The (first) endpoint without credentials: what is shown, logged and stored."""
        self._api_key = api_key  # kept out of cache_identity and repr
        self._secrets = [api_key if api_key != "not-needed" else None,
                         *(secret for url in urls for secret in url_secrets(url))]
        register(*self._secrets)  # masked in every message and log line of the process from now on
        self._endpoints = [_client_url(url) for url in urls]
        self.per_endpoint_concurrency = max_concurrency
        self.timeout = timeout
        self.retry_deadline = retry_deadline
        self._native_n = native_n
        self.capabilities = Capabilities(
            native_n=bool(native_n), logprobs=True, max_concurrency=max_concurrency * len(urls),
            batch_width=max(1, batch_width),
        )
        self._state: _LoopState | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its event loop's HTTP state (a Ray worker opens its own connections)."""
        return {**self.__dict__, "_state": None}

    def __repr__(self) -> str:
        shown = self.base_url if len(self.base_urls) == 1 else self.base_urls
        return f"OpenAICompatible(model={self.model!r}, base_url={shown!r})"

    async def forward(self, path: str, payload: dict[str, Any]) -> tuple[int, str, Any]:
        """Send a request body unchanged to the endpoint's `path` (`manyminds serve`'s pass-through):
        returns the status, the content type and an async iterator over the body's bytes (the
        response closes when it is exhausted). Connection failures are BackendErrors without the key."""
        import aiohttp

        state = await self._loop_state()
        i = state.choose()
        try:
            response = await state.http.post(state.urls[i] + path.lstrip("/"), params=state.queries[i], proxy=state.proxies[i],
                                             data=json.dumps(payload).encode(), headers=state.headers[i],
                                             timeout=aiohttp.ClientTimeout(total=None, sock_read=self.timeout,
                                                                           sock_connect=self.timeout))
        except asyncio.TimeoutError as error:
            raise BackendError(f"no reply within the timeout ({_short(str(error) or 'timed out', self._secrets)})",
                               retryable=True) from None
        except aiohttp.ClientError as error:
            raise BackendError(f"{type(error).__name__}: {_short(str(error), self._secrets)}", retryable=True) from None

        async def body() -> Any:
            try:
                async for chunk in response.content.iter_any():
                    yield chunk
            finally:
                response.release()

        return response.status, response.headers.get("content-type", "application/json"), body()

    def with_model(self, model: str) -> "OpenAICompatible":
        """The same endpoint, key and limits for another model (`manyminds serve`'s `STRATEGY:MODEL`)."""
        if not model:
            raise ConfigError("a model name cannot be empty")
        other = copy.copy(self)
        other.model = model
        other._state = None  # its own client and limits per event loop
        return other

    def cache_identity(self) -> dict[str, Any]:
        """The model at its (first) endpoint: a fleet's servers run one model, so a sample from any of
        them is the same sample, and a fleet grown from one server keeps that server's cache."""
        return {"kind": self.name, "model": self.model, "base_url": self.base_url}

    async def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop or self._state.http.closed:
            self._state = _LoopState(self, await _pool())
        return self._state

    async def generate(
        self, messages: list[Message], params: SamplingParams, n: int = 1, first_index: int = 0
    ) -> list[Generation]:
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}")
        if self._native_n is False or n == 1:
            return await self._singles(messages, params, range(first_index, first_index + n))
        first = await self._call(messages, params, n, first_index)
        if len(first) < n:
            # The server ignored n: remember, and top up one call per missing sample.
            self._native_n = False
            rest = await self._singles(
                messages, params, range(first_index + len(first), first_index + n)
            )
            return first + rest
        self._native_n = True
        self.capabilities = self.capabilities.model_copy(update={"native_n": True})
        return first[:n]

    async def _singles(
        self, messages: list[Message], params: SamplingParams, indices: range
    ) -> list[Generation]:
        if len(indices) == 1:  # the common case: no task and no gather for one call
            return await self._call(messages, params, 1, indices[0])
        batches = await asyncio.gather(*(self._call(messages, params, 1, i) for i in indices))
        return [batch[0] for batch in batches]

    async def stream(self, messages: list[Message], params: SamplingParams, on_text: Callable[[str], None],
                     first_index: int = 0) -> Generation:
        """One sample as server-sent events (`stream: true`), its text handed to `on_text` chunk by
        chunk: the sample `generate(messages, params, 1, first_index)` would give (same seed).
        Retried like any call until its first chunk; a stream that breaks after it fails (its text
        is half-delivered). Token counts come from the server's final usage chunk (vLLM, OpenAI,
        recent llama.cpp servers), or, where none is sent, one token per content chunk."""
        import aiohttp

        state = await self._loop_state()
        body = {**self._body(messages, params, 1, first_index), "stream": True,
                "stream_options": {"include_usage": True}}
        content = json.dumps(body).encode()
        delivered = False

        async def attempt() -> Generation:
            nonlocal delivered
            parts: list[str] = []
            chunks, finish, usage, request_id = 0, None, None, None
            logprobs: list[TokenLogprob] = []
            async with state.endpoint() as i:
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout)
                try:
                    async with state.http.post(state.urls[i] + "chat/completions", params=state.queries[i],
                                               proxy=state.proxies[i], data=content, headers=state.headers[i],
                                               timeout=timeout) as response:
                        if response.status >= 400:
                            _raise_for_status(response.status, await response.read(), response.reason,
                                              dict(response.headers), self._secrets)
                        async for line in response.content:
                            event = line.decode("utf-8", "replace").strip()
                            if not event.startswith("data:"):
                                continue
                            data = event[5:].strip()
                            if data == "[DONE]":
                                break
                            chunk = json.loads(data)
                            if chunk.get("error"):
                                raise BackendError(f"the stream failed: {_short(json.dumps(chunk['error']), self._secrets)}",
                                                   retryable=not delivered)
                            request_id = request_id or chunk.get("id")
                            usage = chunk.get("usage") or usage
                            for choice in chunk.get("choices") or []:
                                text = (choice.get("delta") or {}).get("content") or ""
                                if text:
                                    parts.append(text)
                                    chunks += 1
                                    delivered = True
                                    on_text(text)
                                if params.logprobs and (choice.get("logprobs") or {}).get("content"):
                                    logprobs.extend(_logprobs(choice, self.model))
                                finish = choice.get("finish_reason") or finish
                except asyncio.TimeoutError as error:
                    raise BackendError(f"APITimeoutError: {_short(str(error) or 'the stream timed out', self._secrets)}",
                                       retryable=not delivered) from None
                except aiohttp.ClientError as error:
                    raise BackendError(f"APIConnectionError: {_short(str(error) or type(error).__name__, self._secrets)}",
                                       retryable=not delivered) from None
                except ValueError as error:
                    raise BackendError(f"malformed stream: {_short(str(error), self._secrets)}",
                                       retryable=not delivered) from None
            usage = usage or {}
            return Generation(text="".join(parts), index=first_index, finish_reason=finish,
                              prompt_tokens=int(usage.get("prompt_tokens") or 0),
                              completion_tokens=int(usage.get("completion_tokens") or chunks),
                              logprobs=tuple(logprobs) if params.logprobs else None,
                              request_id=request_id or f"openai-{uuid.uuid4().hex}")

        generation: Generation = await with_retries(attempt, deadline=self.retry_deadline)
        return generation

    def _body(self, messages: list[Message], params: SamplingParams, n: int, first_index: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in messages],
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if n > 1:
            body["n"] = n
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = sample_seed(params.seed, first_index, request_fingerprint(messages, params))
        body.update(params.extras())  # vLLM's and llama.cpp's servers take these; OpenAI's takes the penalties
        if params.logprobs:
            body["logprobs"] = True
            if params.top_logprobs:
                body["top_logprobs"] = params.top_logprobs
        return body

    async def _call(
        self, messages: list[Message], params: SamplingParams, n: int, first_index: int
    ) -> list[Generation]:
        state = await self._loop_state()
        content = json.dumps(self._body(messages, params, n, first_index)).encode()

        async def attempt() -> Any:
            async with state.endpoint() as i:  # each attempt, a retry included, where likeliest to succeed
                response = await _posted(state, i, content, self.timeout, self._secrets)
                # A 200 that is not a completion (a proxy's HTML page, no choices) is transient.
                _check_completion(response, self.model, self._secrets)
            return response

        response = await with_retries(attempt, deadline=self.retry_deadline)
        return self._generations(response, params, first_index)

    def _generations(self, response: dict[str, Any], params: SamplingParams, first_index: int) -> list[Generation]:
        choices = response["choices"]
        usage = response.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_total = int(usage.get("completion_tokens") or 0)
        texts = [(c["message"].get("content") or "") for c in choices]
        shares = _split(completion_total, [len(t) + 1 for t in texts])
        request_id = response.get("id") or f"openai-{uuid.uuid4().hex}"
        out = []
        for offset, (choice, text, tokens) in enumerate(zip(choices, texts, shares)):
            out.append(
                Generation(
                    text=text,
                    index=first_index + offset,
                    finish_reason=choice.get("finish_reason"),
                    prompt_tokens=prompt_tokens,
                    completion_tokens=tokens,
                    logprobs=_logprobs(choice, self.model) if params.logprobs else None,
                    request_id=request_id,
                )
            )
        return out


def _split(total: int, weights: list[int]) -> list[int]:
    """Share a call's completion tokens among its choices (APIs report only the sum)."""
    if len(weights) == 1:
        return [total]
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    shares[-1] += total - sum(shares)
    return shares


def _logprobs(choice: dict[str, Any], model: str) -> tuple[TokenLogprob, ...]:
    content = (choice.get("logprobs") or {}).get("content")
    if content is None:
        raise CapabilityError(
            f"{model}: logprobs were asked for but the server returned none; "
            "use a server that supports them (vLLM, llama.cpp server, OpenAI)"
        )
    return tuple(
        TokenLogprob(
            token=t["token"],
            logprob=float(t["logprob"]),
            top={a["token"]: float(a["logprob"]) for a in (t.get("top_logprobs") or [])} or None,
        )
        for t in content
    )


async def _posted(state: _LoopState, i: int, content: bytes, timeout: float, secrets: list[str | None]) -> Any:
    """POST a chat completion to endpoint `i`; its JSON, or a retryable or fatal BackendError whose
    message never carries a credential (servers echo rejected keys)."""
    import aiohttp

    try:
        async with state.http.post(state.urls[i] + "chat/completions", params=state.queries[i], proxy=state.proxies[i],
                                   data=content,
                                   headers=state.headers[i], timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            status, raw = response.status, await response.read()
            reason, headers = response.reason, dict(response.headers)
    except asyncio.TimeoutError as error:
        raise BackendError(f"APITimeoutError: {_short(str(error) or 'the request timed out', secrets)}",
                           retryable=True) from None
    except aiohttp.ClientError as error:
        raise BackendError(f"APIConnectionError: {_short(str(error) or type(error).__name__, secrets)}",
                           retryable=True) from None
    if status >= 400:
        _raise_for_status(status, raw, reason, headers, secrets)
    try:
        return json.loads(raw)
    except ValueError as error:
        raise BackendError(f"malformed reply: {_short(str(error), secrets)}", retryable=True) from None


def _raise_for_status(status: int, raw: bytes, reason: str | None, headers: dict[str, str],
                      secrets: "Sequence[str | None]") -> None:
    """The BackendError of an HTTP error reply: retryable for 408, 409, 429 and 5xx, with the
    server's Retry-After; the server's message without any credential it echoed."""
    text = raw.decode("utf-8", "replace")
    try:
        detail = json.loads(text).get("error") or {}
        message = detail.get("message") if isinstance(detail, dict) else str(detail)
    except (ValueError, AttributeError):
        message = None
    retryable = status in RETRYABLE_STATUS or status >= 500
    raise BackendError(f"HTTP {status}: {_short(message or text or reason or '', secrets)}",
                       retryable=retryable, retry_after=parse_retry_after(headers))


def _check_completion(response: Any, model: str, secrets: list[str | None]) -> None:
    choices = response.get("choices") if isinstance(response, dict) else None
    if isinstance(choices, list) and choices and all(isinstance(c, dict) and isinstance(c.get("message"), dict)
                                                     for c in choices):
        return
    raise BackendError(f"{model}: the reply is not a chat completion: {_short(json.dumps(response), secrets)}",
                       retryable=True)


def _check_url(url: str) -> None:
    """Refuse at once a base URL the HTTP client cannot use (it would retry for minutes)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return
    shown = redact(url, url_secrets(url if "//" in url else "//" + url))
    example = "http://127.0.0.1:8000/v1" if "//" in url else "http://" + shown
    raise ConfigError(f"base_url {shown!r} needs an http:// or https:// scheme and a host, e.g. {example}")


def _urls(base_url: "str | Sequence[str] | None") -> list[str | None]:
    """One endpoint or several: a list, or URLs joined by '|' (the spec's form)."""
    if base_url is None:
        return [None]
    urls = [u.strip() for u in (base_url.split("|") if isinstance(base_url, str) else base_url)]
    if not urls or any(not u for u in urls):
        raise ConfigError(f"base_url {public_url('|'.join(urls)) if urls else ''!r}: an empty endpoint")
    return list(urls)


def _client_url(url: str | None) -> tuple[str | None, dict[str, str]]:
    """The URL the SDK gets (credentials in it are its business) without its query, which the
    SDK would otherwise put before the path; the query goes in every request instead."""
    if url is None:
        return None, {}
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), dict(parse_qsl(parts.query))


def _userinfo_to_header(url: str) -> tuple[str, str | None]:
    """`https://user:pass@host/v1` as the URL without its credentials and their Basic `Authorization`
    header (which then replaces the Bearer key, as browsers and curl do)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return (urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
            "Basic " + base64.b64encode(pair.encode()).decode())


def _proxy(url: str) -> str | None:
    """The proxy the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) names for `url`, if any."""
    from urllib.request import getproxies, proxy_bypass

    parts = urlsplit(url)
    proxy = getproxies().get(parts.scheme)
    if not proxy or proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _short(text: str, secrets: "Sequence[str | None]" = (), limit: int = 200) -> str:
    text = redact(" ".join(str(text).split()), secrets)
    return clip(text, limit, "...")


def from_spec(rest: str = "", *, model: str | None = None, base_url: str | None = None, max_concurrency: int = 32,
              timeout: float = 120.0, retry_deadline: float = 120.0, native_n: bool | None = None,
              batch_width: int = 1) -> OpenAICompatible:
    """`openai:MODEL`, `openai:MODEL@BASE_URL`, or the keyword form `openai:model=M,base_url=U,batch_width=64`;
    the key comes from OPENAI_API_KEY, never from a spec (specs land in shell histories and run records)."""
    if rest:
        model, _, url = rest.partition("@")
        base_url = base_url or url or None
    if not model:
        raise ConfigError("backend spec 'openai:' needs a model, e.g. openai:gpt-4o-mini")
    return OpenAICompatible(model=model, base_url=base_url, max_concurrency=max_concurrency, timeout=timeout,
                            retry_deadline=retry_deadline, native_n=native_n, batch_width=batch_width)
