"""Any OpenAI-compatible chat completions API: OpenAI, vLLM's server, the llama.cpp server.

The SDK's own retries are off; failures are classified here and retried by
the one loop in `manyminds.backends.retry`. Servers that ignore `n` (the
llama.cpp server does) are topped up with further calls, and remembered as
such so later requests go straight to one call per sample.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from manyminds.backends.base import Capabilities, request_fingerprint, sample_seed
from manyminds.backends.retry import parse_retry_after, with_retries
from manyminds.errors import BackendError, CapabilityError, ConfigError
from manyminds.redact import public_url, redact, register, url_secrets
from manyminds.text import clip
from manyminds.types import Generation, Message, SamplingParams, TokenLogprob

RETRYABLE_STATUS = {408, 409, 429}


class _LoopState:
    """The HTTP client and semaphore belong to one event loop; each loop gets its own."""

    def __init__(self, backend: "OpenAICompatible") -> None:
        from openai import AsyncOpenAI

        self.loop = asyncio.get_running_loop()
        self.client = AsyncOpenAI(
            api_key=backend._api_key,
            base_url=backend._client_url,
            default_query=backend._default_query or None,
            max_retries=0,
            timeout=backend.timeout,
        )
        self.semaphore = asyncio.Semaphore(backend.capabilities.max_concurrency)
        self.http: Any = None
        """A plain HTTP client for `forward`, made on first use."""


class OpenAICompatible:
    """A chat completions endpoint.

    Args:
        model: the model name the server knows.
        base_url: the API root (e.g. ``http://127.0.0.1:8000/v1``); None for OpenAI.
        api_key: defaults to ``OPENAI_API_KEY``; local servers need none.
        max_concurrency: calls in flight at once (a semaphore per event loop).
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
        base_url: str | None = None,
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
        if base_url is not None:
            _check_url(base_url)
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if api_key is None:
            if base_url is None:
                raise ConfigError(
                    "no API key: set OPENAI_API_KEY, or give base_url for a local server"
                )
            api_key = "not-needed"
        self.model = model
        self.base_url = public_url(base_url)
        """The endpoint without credentials: what is shown, logged and stored."""
        self._api_key = api_key  # kept out of cache_identity and repr
        self._secrets = [api_key if api_key != "not-needed" else None, *url_secrets(base_url)]
        register(*self._secrets)  # masked in every message and log line of the process from now on
        self._client_url, self._default_query = _client_url(base_url)
        self.timeout = timeout
        self.retry_deadline = retry_deadline
        self._native_n = native_n
        self.capabilities = Capabilities(
            native_n=bool(native_n), logprobs=True, max_concurrency=max_concurrency, batch_width=max(1, batch_width)
        )
        self._state: _LoopState | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatible(model={self.model!r}, base_url={self.base_url!r})"

    async def forward(self, path: str, payload: dict[str, Any]) -> tuple[int, str, Any]:
        """Send a request body unchanged to the endpoint's `path` (`manyminds serve`'s pass-through):
        returns the status, the content type and an async iterator over the body's bytes (the
        response closes when it is exhausted). Connection failures are BackendErrors without the key."""
        import httpx

        state = self._loop_state()
        if state.http is None:
            state.http = httpx.AsyncClient(base_url=self._client_url or "https://api.openai.com/v1", params=self._default_query or None,
                                           headers={"Authorization": f"Bearer {self._api_key}"},
                                           timeout=httpx.Timeout(self.timeout))
        try:
            response = await state.http.send(state.http.build_request("POST", path.lstrip("/"), json=payload),
                                             stream=True)
        except httpx.TimeoutException as error:
            raise BackendError(f"no reply within the timeout ({_short(str(error), self._secrets)})",
                               retryable=True) from None
        except httpx.HTTPError as error:
            raise BackendError(f"{type(error).__name__}: {_short(str(error), self._secrets)}", retryable=True) from None

        async def body() -> Any:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            finally:
                await response.aclose()

        return response.status_code, response.headers.get("content-type", "application/json"), body()

    def with_model(self, model: str) -> "OpenAICompatible":
        """The same endpoint, key and limits for another model (`manyminds serve`'s `STRATEGY:MODEL`)."""
        if not model:
            raise ConfigError("a model name cannot be empty")
        other = copy.copy(self)
        other.model = model
        other._state = None  # its own client and limits per event loop
        return other

    def cache_identity(self) -> dict[str, Any]:
        return {"kind": self.name, "model": self.model, "base_url": self.base_url}

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            self._state = _LoopState(self)
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
        batches = await asyncio.gather(*(self._call(messages, params, 1, i) for i in indices))
        return [batch[0] for batch in batches]

    async def _call(
        self, messages: list[Message], params: SamplingParams, n: int, first_index: int
    ) -> list[Generation]:
        state = self._loop_state()
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
        extras = params.extras()
        if extras:  # vLLM's and llama.cpp's servers take these; OpenAI's API does not
            body["extra_body"] = extras
        if params.logprobs:
            body["logprobs"] = True
            if params.top_logprobs:
                body["top_logprobs"] = params.top_logprobs

        async def attempt() -> Any:
            async with state.semaphore:
                response = await _classified(state.client.chat.completions.create(**body), self._secrets)
            # A 200 that is not a completion (a proxy's HTML page, no choices) is transient.
            _check_completion(response, self.model, self._secrets)
            return response

        response = await with_retries(attempt, deadline=self.retry_deadline)
        return self._generations(response, params, first_index)

    def _generations(self, response: Any, params: SamplingParams, first_index: int) -> list[Generation]:
        choices = response.choices
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_total = int(getattr(usage, "completion_tokens", 0) or 0)
        texts = [(c.message.content or "") if c.message else "" for c in choices]
        shares = _split(completion_total, [len(t) + 1 for t in texts])
        request_id = getattr(response, "id", None) or f"openai-{uuid.uuid4().hex}"
        out = []
        for offset, (choice, text, tokens) in enumerate(zip(choices, texts, shares)):
            out.append(
                Generation(
                    text=text,
                    index=first_index + offset,
                    finish_reason=choice.finish_reason,
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


def _logprobs(choice: Any, model: str) -> tuple[TokenLogprob, ...]:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if content is None:
        raise CapabilityError(
            f"{model}: logprobs were asked for but the server returned none; "
            "use a server that supports them (vLLM, llama.cpp server, OpenAI)"
        )
    return tuple(
        TokenLogprob(
            token=t.token,
            logprob=float(t.logprob),
            top={a.token: float(a.logprob) for a in (t.top_logprobs or [])} or None,
        )
        for t in content
    )


async def _classified(request: Any, secrets: list[str | None]) -> Any:
    """Await an SDK call, turning its exceptions into retryable or fatal BackendErrors whose
    messages never carry a credential (servers echo rejected keys)."""
    import openai

    try:
        return await request
    except openai.APIStatusError as error:
        status = error.status_code
        retryable = status in RETRYABLE_STATUS or status >= 500
        retry_after = parse_retry_after(dict(error.response.headers)) if error.response else None
        raise BackendError(
            f"HTTP {status}: {_short(error.message, secrets)}", retryable=retryable, retry_after=retry_after
        ) from None
    except (openai.APITimeoutError, openai.APIConnectionError) as error:
        raise BackendError(f"{type(error).__name__}: {_short(str(error), secrets)}", retryable=True) from None
    except (json.JSONDecodeError, openai.APIResponseValidationError) as error:
        raise BackendError(f"malformed reply: {_short(str(error), secrets)}", retryable=True) from None


def _check_completion(response: Any, model: str, secrets: list[str | None]) -> None:
    choices = getattr(response, "choices", None)
    if isinstance(choices, list) and choices and all(getattr(c, "message", None) is not None for c in choices):
        return
    shown = response if isinstance(response, str) else getattr(response, "model_dump_json", lambda: response)()
    raise BackendError(f"{model}: the reply is not a chat completion: {_short(str(shown), secrets)}", retryable=True)


def _check_url(url: str) -> None:
    """Refuse at once a base URL the HTTP client cannot use (it would retry for minutes)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return
    shown = redact(url, url_secrets(url if "//" in url else "//" + url))
    example = "http://127.0.0.1:8000/v1" if "//" in url else "http://" + shown
    raise ConfigError(f"base_url {shown!r} needs an http:// or https:// scheme and a host, e.g. {example}")


def _client_url(url: str | None) -> tuple[str | None, dict[str, str]]:
    """The URL the SDK gets (credentials in it are its business) without its query, which the
    SDK would otherwise put before the path; the query goes in every request instead."""
    if url is None:
        return None, {}
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), dict(parse_qsl(parts.query))


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
