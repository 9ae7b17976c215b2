"""OpenAICompatible against the real llama.cpp server, directly and through a fault proxy."""

import asyncio
import sqlite3

import pytest

from manyminds.backends.openai_compat import OpenAICompatible
from manyminds.backends.retry import parse_retry_after
from manyminds.errors import BackendError, ConfigError
from manyminds.strategies import SelfConsistency
from manyminds.types import Message, SamplingParams
from tests.proxy import FaultProxy

MSGS = [Message(role="user", content="What is 3 + 4? Reply with just the number.")]
SHORT = SamplingParams(temperature=0.8, max_tokens=12, seed=3)


def test_retry_after_forms():
    assert parse_retry_after({"Retry-After": "3"}) == 3
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert parse_retry_after({}) is None


def test_a_key_or_a_base_url_is_required():
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAICompatible(model="gpt-4o-mini")


@pytest.mark.integration
def test_server_that_ignores_n_is_topped_up(llama_server):
    backend = OpenAICompatible(model="smollm2", base_url=llama_server, max_concurrency=2)
    out = asyncio.run(backend.generate(MSGS, SHORT, 3, first_index=5))
    assert [g.index for g in out] == [5, 6, 7]
    assert backend._native_n is False  # learned from the first reply
    assert len({g.request_id for g in out}) == 3
    assert all(g.completion_tokens > 0 for g in out)


@pytest.mark.integration
def test_logprobs_pass_through(llama_server):
    backend = OpenAICompatible(model="smollm2", base_url=llama_server)
    (g,) = asyncio.run(backend.generate(MSGS, SHORT.model_copy(update={"logprobs": True, "top_logprobs": 2}), 1))
    assert g.logprobs and all(t.logprob <= 0 for t in g.logprobs)
    assert "".join(t.token for t in g.logprobs).strip() == g.text.strip()


@pytest.mark.integration
def test_non_retryable_error_is_raised_at_once(llama_server):
    with FaultProxy(llama_server) as proxy:
        backend = OpenAICompatible(model="smollm2", base_url=proxy.url.replace("/v1", "/nope"))
        with pytest.raises(BackendError, match="HTTP 404") as error:
            asyncio.run(backend.generate(MSGS, SHORT, 1))
        assert not error.value.retryable


@pytest.mark.integration
def test_faults_are_retried_and_every_sample_is_generated_once(llama_server, tmp_path):
    faults = ["429", "500", "drop", "slow", "malformed", "503", "429", "drop"]
    with FaultProxy(llama_server, faults, slow_seconds=6.0, retry_after=0.5) as proxy:
        backend = OpenAICompatible(model="smollm2", base_url=proxy.url, timeout=3.0, max_concurrency=2)
        strategy = SelfConsistency(n=3, prompt="direct", max_tokens=12, seed=11)
        questions = ["What is 1 + 2?", "What is 2 + 5?", "What is 6 + 1?"]
        results = strategy.solve_many(questions, backend=backend, cache=tmp_path / "c.db")
        assert proxy.plan == [] and sorted(proxy.log.faults) == sorted(faults)
        delivered = proxy.log.forwarded - proxy.log.abandoned
    for r in results:
        assert [c.index for c in r.candidates] == [0, 1, 2]
    rows = sqlite3.connect(tmp_path / "c.db").execute(
        "SELECT key, COUNT(*), MIN(idx), MAX(idx) FROM generations GROUP BY key"
    ).fetchall()
    assert len(rows) == 3 and all(count == 3 and lo == 0 and hi == 2 for _, count, lo, hi in rows)
    # A reply that comes back after the client timed out (the slow fault, or a loaded server) is
    # abandoned and its sample asked again; every sample is delivered exactly once.
    assert delivered == 9


# -- bad replies, bad URLs, secrets, deadlines -------------------------------------------------


@pytest.mark.parametrize("url", ["localhost:8000/v1", "127.0.0.1:8000", "ftp://example.org/v1", "http:///v1"])
def test_a_url_the_client_cannot_use_is_refused_at_once(url):
    with pytest.raises(ConfigError, match="needs an http:// or https:// scheme and a host"):
        OpenAICompatible(model="m", base_url=url)


@pytest.mark.integration
def test_a_reply_that_is_not_a_completion_is_retried(llama_server):
    with FaultProxy(llama_server, ["html", "empty"]) as proxy:
        backend = OpenAICompatible(model="smollm2", base_url=proxy.url)
        (g,) = asyncio.run(backend.generate(MSGS, SHORT, 1))
        assert proxy.log.faults == ["html", "empty"] and proxy.log.forwarded == 1
    assert g.text


SECRETS = ("sk-test-0123456789", "pw-in-the-url-42", "query-key-777")


@pytest.mark.integration
def test_credentials_reach_neither_the_cache_nor_an_error(llama_server, tmp_path):
    from manyminds.cache import GenerationCache

    key, password, query_key = SECRETS
    with FaultProxy(llama_server, ["echo-key"]) as proxy:
        url = proxy.url.replace("http://", f"http://me:{password}@") + f"?api-key={query_key}&api-version=7"
        backend = OpenAICompatible(model="smollm2", base_url=url, api_key=key)
        with pytest.raises(BackendError, match="HTTP 401") as error:
            asyncio.run(backend.generate(MSGS, SHORT, 1))
        assert "Incorrect API key" in str(error.value)
        with GenerationCache(tmp_path / "c.db") as cache:
            asyncio.run(cache.wrap(backend).generate(MSGS, SHORT, 2))
        assert all("api-version=7" in p for p in proxy.log.paths)  # the query still reaches the server
    shown = str(error.value) + repr(backend) + str(backend.cache_identity())
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in SECRETS:
        assert secret not in shown and secret.encode() not in stored


@pytest.mark.integration
def test_the_cli_prints_no_echoed_key(llama_server, tmp_path):
    import os
    import subprocess
    import sys

    with FaultProxy(llama_server, ["echo-key"]) as proxy:
        proc = subprocess.run(
            [sys.executable, "-m", "manyminds.cli", "run", "What is 1 + 1?", "-n", "1", "--no-cache",
             "--backend", f"openai:smollm2@{proxy.url}"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "OPENAI_API_KEY": SECRETS[0]})
    assert proc.returncode == 2 and "HTTP 401" in proc.stderr and SECRETS[0] not in proc.stderr + proc.stdout


def test_the_retry_deadline_is_kept(monkeypatch):
    from manyminds.backends import retry

    now = [0.0]
    attempts = []

    async def sleep(seconds):
        now[0] += seconds

    async def always_busy():
        attempts.append(now[0])
        now[0] += 5.0  # each attempt takes 5 s
        raise BackendError("HTTP 503", retryable=True, retry_after=50)

    with pytest.raises(BackendError, match="503"):
        asyncio.run(retry.with_retries(always_busy, deadline=120, _clock=lambda: now[0], _sleep=sleep))
    assert attempts == [0.0, 55.0, 110.0] and now[0] <= 120  # a third wait (115 + 50) would pass it


def test_an_attempt_still_running_at_the_deadline_is_cancelled(monkeypatch):
    from manyminds.backends import retry

    monkeypatch.setattr(retry, "MIN_DEADLINE", 0.0)
    cancelled = []

    async def hangs():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(BackendError, match="no reply within the retry deadline"):
        asyncio.run(retry.with_retries(hangs, deadline=0.2))
    assert cancelled == [True]


# -- a fleet of endpoints ------------------------------------------------------------------------


def test_a_fleet_spreads_requests_and_a_dead_endpoint_loses_nothing(llama_server):
    """Two endpoints of one model (proxies in front of the llama.cpp server): requests spread over both;
    when one answers only 500s and drops, every sample still arrives, once, and the dead one is taken
    out of rotation."""
    from manyminds.backends import openai_compat

    with FaultProxy(llama_server) as first, FaultProxy(llama_server) as second:
        fleet = OpenAICompatible(model="smollm2", base_url=f"{first.url}|{second.url}", native_n=False)
        assert fleet.cache_identity() == OpenAICompatible(model="smollm2", base_url=first.url).cache_identity()
        params = SamplingParams(temperature=0.8, max_tokens=4, seed=3)
        spread = asyncio.run(fleet.generate(MSGS, params, 8))
        assert len(spread) == 8 and first.log.forwarded > 0 and second.log.forwarded > 0
    with FaultProxy(llama_server) as alive, FaultProxy(llama_server, ["500", "drop"] * 20) as dead:
        fleet = OpenAICompatible(model="smollm2", base_url=[alive.url, dead.url], native_n=False, retry_deadline=60)
        samples = asyncio.run(fleet.generate(MSGS, params, 8))
        assert [g.index for g in samples] == list(range(8))
        assert [g.text for g in samples] == [g.text for g in spread]  # the same seeds, whichever server drew them
        assert alive.log.forwarded == 8 and dead.log.forwarded == 0  # the dead one's attempts were all retried
        assert len(dead.log.faults) >= openai_compat.EJECT_AFTER


@pytest.mark.integration
def test_a_streamed_sample_is_the_sample_generate_gives(llama_server, tmp_path):
    """`stream` against the real llama.cpp server: the text arrives in pieces, and the sample is the
    one `generate` draws with the same seed and index; behind the cache, it is stored and a second
    stream is served whole from the cache."""
    from manyminds.cache import GenerationCache

    backend = OpenAICompatible(model="smollm2", base_url=llama_server)
    params = SamplingParams(temperature=0.8, max_tokens=24, seed=3)
    pieces: list[str] = []
    streamed = asyncio.run(backend.stream(MSGS, params, pieces.append, first_index=2))
    (generated,) = asyncio.run(backend.generate(MSGS, params, 1, first_index=2))
    assert streamed.text == generated.text == "".join(pieces) and len(pieces) > 1
    assert streamed.index == 2 and streamed.completion_tokens > 0 and streamed.finish_reason in ("stop", "length")
    with GenerationCache(tmp_path / "c.db") as cache:
        cached = cache.wrap(backend)
        first: list[str] = []
        again: list[str] = []
        one = asyncio.run(cached.stream(MSGS, params, first.append, first_index=2))
        two = asyncio.run(cached.stream(MSGS, params, again.append, first_index=2))
        assert one.text == two.text == streamed.text and len(first) > 1 and again == [streamed.text]
        assert asyncio.run(cached.generate(MSGS, params, 1, first_index=2))[0].text == streamed.text
