"""`manyminds serve`: the real OpenAI client against the server on 127.0.0.1.

Each test starts the server in a thread on a free loopback port and stops it
when done. The embedded model is the upstream for completions and streaming;
scripted backends with a fixed latency make bursts, disconnects and
shutdowns happen on cue. Every burst is bounded in count and every wait in
time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from openai import APIConnectionError, APITimeoutError, AuthenticationError, BadRequestError, OpenAI, RateLimitError

from manyminds.backends import Scripted
from manyminds.server import ServerConfig, create_app
from tests.conftest import count_rows, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@contextlib.contextmanager
def served(backend, **options) -> Iterator[str]:
    """The server over `backend` on 127.0.0.1; yields its /v1 URL; stops gracefully at the end."""
    import uvicorn

    port = free_port()
    app = create_app(ServerConfig(backend=backend, **options))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(30)


def client(url: str, key: str = "unused", **options) -> OpenAI:
    return OpenAI(base_url=url, api_key=key, max_retries=0, **options)


ASK = [{"role": "user", "content": "What is 7 + 5?"}]
NUMBERS = {"manyminds": {"format": "number"}}


# -- the embedded model upstream ------------------------------------------------------------


@pytest.mark.integration
def test_a_completion_from_the_embedded_model_carries_the_ensemble_in_an_extra_field(local_backend):
    with served(local_backend) as url:
        reply = client(url).chat.completions.create(
            model="self-consistency-3", messages=ASK, max_tokens=24, seed=3,
            extra_body={"manyminds": {"format": "number", "prompt": "direct"}})
    extra = reply.model_extra["manyminds"]
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"
    texts = {c["index"] for c in extra["candidates"]}
    assert len(texts) == 3 and extra["strategy"] == "self-consistency" and extra["samples"] == 3
    assert reply.choices[0].message.content, "the winning sample's full text"
    if extra["answer"] is not None:
        assert extra["answer"] in extra["tally"]
    assert reply.usage.completion_tokens > 0 and reply.usage.total_tokens == (
        reply.usage.prompt_tokens + reply.usage.completion_tokens)


@pytest.mark.integration
def test_streaming_sends_the_decided_answer_then_the_finish_and_usage(local_backend):
    with served(local_backend) as url:
        chunks = list(client(url).chat.completions.create(
            model="usc-2", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, seed=1,
            stream=True, stream_options={"include_usage": True}))
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 1 and content[0]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[0].model_extra["manyminds"]["streaming"].startswith("the answer is sent once decided")


# -- contract with a scripted upstream ---------------------------------------------------------


def votes(messages, params, index):
    return f"The answer is {13 if index % 3 == 0 else 12}."


def test_models_completions_and_the_model_grammar():
    with served(Scripted(votes)) as url:
        api = client(url)
        ids = [m.id for m in api.models.list()]
        assert "self-consistency-8" in ids and "self-moa-6" in ids and "moa-8" in ids
        reply = api.chat.completions.create(model="self-consistency-6", messages=ASK, extra_body=NUMBERS)
        assert reply.choices[0].message.content == "The answer is 12."
        assert reply.model_extra["manyminds"]["tally"] == {"13": 2.0, "12": 4.0}
        plain = api.completions.create(model="self-consistency-3", prompt="What is 7 + 5?", extra_body=NUMBERS)
        assert plain.object == "text_completion" and plain.choices[0].text == "The answer is 12."
        with pytest.raises(BadRequestError, match="serves 'scripted' only"):
            api.chat.completions.create(model="self-consistency-3:gpt-4o-mini", messages=ASK)


def test_max_completion_tokens_bounds_the_whole_ensemble_and_max_tokens_each_sample():
    with served(Scripted(votes)) as url:
        api = client(url)
        reply = api.chat.completions.create(model="self-consistency-8", messages=ASK, max_completion_tokens=20,
                                            max_tokens=5, extra_body=NUMBERS)
        extra = reply.model_extra["manyminds"]
        assert reply.usage.completion_tokens == 16 and extra["samples"] == 4 and extra["withheld_samples"] == 4
        assert extra["strategy_params"]["budget"]["tokens"] == 20 and "budget of 20 tokens" in extra["stop_reason"]
        # without max_tokens, the method's default (512) could not fit: each sample gets the budget's length
        alone = api.chat.completions.create(model="self-consistency-8", messages=ASK, max_completion_tokens=20,
                                            extra_body=NUMBERS)
        assert alone.model_extra["manyminds"]["strategy_params"]["sampling"]["max_tokens"] == 20
        assert alone.usage.completion_tokens <= 20


def test_a_conversation_reaches_the_model_as_turns_not_a_flattened_transcript():
    backend = Scripted(votes)
    conversation = [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "I have 7 apples."},
                    {"role": "assistant", "content": "Noted: 7 apples."},
                    {"role": "user", "content": "I buy 5 more. How many now?"}]
    with served(backend) as url:
        client(url).chat.completions.create(model="self-consistency-2", messages=conversation, extra_body=NUMBERS)
        client(url).chat.completions.create(model="usc-2", messages=conversation, extra_body=NUMBERS)
    sampled = backend.requests[0].messages
    assert [(m.role, m.content.split("\n")[0]) for m in sampled[:3]] == [
        ("system", "Be brief."), ("user", "I have 7 apples."), ("assistant", "Noted: 7 apples.")]
    assert sampled[3].role == "user" and sampled[3].content.startswith("I buy 5 more.") and len(sampled) == 4
    selection = backend.requests[-1].messages[-1].content  # USC quotes the conversation as a transcript
    assert "User: I have 7 apples.\n\nAssistant: Noted: 7 apples." in selection and "I buy 5 more." in selection


def test_an_api_key_is_required_when_configured():
    with served(Scripted(votes), api_key="server-key") as url:
        with pytest.raises(AuthenticationError, match="missing or wrong API key"):
            client(url, key="wrong").models.list()
        assert httpx.get(f"{url}/models").status_code == 401
        assert client(url, key="server-key").chat.completions.create(model="self-consistency-2", messages=ASK)


BAD = [
    ({"model": "nope-3"}, "unknown model 'nope-3'"),
    ({"model": "self-consistency-0"}, "a budget of 0 samples is out of range"),
    ({"model": "self-consistency-5000"}, "out of range"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "the last message must be the user's"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    ({"messages": []}, "messages"),
    ({"logprobs": True}, "unsupported parameter 'logprobs'"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "unsupported parameter 'tools'"),
    ({"n": 3}, "n: Input should be less than or equal to 1"),
    ({"manyminds": {"bogus": 1}}, "has no setting 'bogus'"),
    ({"manyminds": {"format": "colour"}}, "manyminds.format must be one of"),
    ({"model": "best-of-n-4"}, "needs a verifier"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m for _, m in BAD])
def test_every_bad_request_is_a_400_naming_the_problem(change, message):
    with served(Scripted(votes)) as url:
        body = {"model": "self-consistency-3", "messages": ASK, **change}
        response = httpx.post(f"{url}/chat/completions", json=body, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_malformed_json_and_an_oversized_body_are_400s_before_any_work():
    backend = Scripted(votes)
    with served(backend, max_body_bytes=2048) as url:
        broken = httpx.post(f"{url}/chat/completions", content=b"{not json", timeout=30,
                            headers={"content-type": "application/json"})
        big = httpx.post(f"{url}/chat/completions", timeout=30,
                         json={"model": "self-consistency-3", "messages": [{"role": "user", "content": "x" * 5000}]})
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    assert big.status_code == 400 and big.json()["error"]["code"] == "body_too_large"
    assert not backend.requests


def test_a_burst_beyond_the_queue_gets_429_with_retry_after():
    backend = Scripted(votes, latency=1.0)
    with served(backend, max_concurrency=1, max_queue=1) as url:
        def ask(k: int):
            try:
                reply = client(url).chat.completions.with_raw_response.create(
                    model="self-consistency-2", messages=[{"role": "user", "content": f"What is {k} + 1?"}])
                return reply.http_response.status_code, None
            except RateLimitError as error:
                return 429, error.response.headers.get("retry-after")

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(ask, range(4)))
    codes = sorted(code for code, _ in outcomes)
    assert codes.count(200) == 2 and codes.count(429) == 2, outcomes
    assert all(after == "1" for code, after in outcomes if code == 429)


def test_concurrent_requests_for_the_same_question_share_cached_samples(tmp_path):
    backend = Scripted(votes, latency=0.3)
    with served(backend, cache=tmp_path / "c.db") as url:
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda _: client(url).chat.completions.create(
                model="self-consistency-6", messages=ASK, extra_body=NUMBERS), range(3)))
    assert backend.samples_generated == 6, "three requests, the six samples generated once"
    assert {r.choices[0].message.content for r in replies} == {"The answer is 12."}


def test_a_client_that_disconnects_cancels_its_upstream_work():
    started, cancelled = threading.Event(), threading.Event()

    async def slow(messages, params, index):
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "The answer is 12."

    with served(Scripted(slow)) as url:
        with pytest.raises((APITimeoutError, APIConnectionError)):
            client(url, timeout=0.5).chat.completions.create(model="self-consistency-2", messages=ASK)
        assert started.wait(5)
        assert cancelled.wait(5), "the ensemble's upstream call was cancelled"


def test_shutdown_lets_a_request_in_flight_finish_and_keeps_its_samples(tmp_path):
    import uvicorn

    db = tmp_path / "c.db"
    port = free_port()
    backend = Scripted(votes, latency=1.0)
    app = create_app(ServerConfig(backend=backend, cache=db))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: client(f"http://127.0.0.1:{port}/v1").chat.completions.create(
            model="self-consistency-3", messages=ASK, extra_body=NUMBERS))
        arrived = time.monotonic() + 20
        while not backend.requests and time.monotonic() < arrived:  # the request is in flight upstream
            time.sleep(0.02)
        server.should_exit = True  # as SIGTERM does
        reply = pending.result(timeout=20)
    thread.join(20)
    assert reply.choices[0].message.content == "The answer is 12."
    assert count_rows(db, "generations") == 3, "the cache was flushed and closed with the samples in it"


@pytest.mark.integration
def test_an_upstream_failure_after_retries_is_a_502_that_never_shows_the_upstream_key(llama_server):
    from manyminds.backends import OpenAICompatible
    from tests.proxy import FaultProxy

    with FaultProxy(llama_server, ["500"] * 20) as proxy:
        upstream = OpenAICompatible("smollm2", base_url=proxy.url, api_key="upstream-secret-key", retry_deadline=1.0)
        with served(upstream) as url:
            response = httpx.post(f"{url}/chat/completions", timeout=60,
                                  json={"model": "self-consistency-2", "messages": ASK, "max_tokens": 8})
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["type"] == "upstream_error" and "failed after retries" in error["message"]
    assert "upstream-secret-key" not in response.text
    assert proxy.log.faults, "the failures came from the proxy"


def test_the_openapi_document_holds_up_under_schemathesis():
    """Generated requests (bounded: a few dozen examples) get documented answers, never a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    with served(Scripted(votes)) as url:
        schema = schemathesis.openapi.from_url(f"{url.removesuffix('/v1')}/openapi.json")
        seen: list[int] = []

        @given(case=schema.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def generated(case):
            response = case.call(timeout=10)
            seen.append(response.status_code)
            assert response.status_code in (200, 400), (case.path, case.body, response.status_code, response.text[:300])
            if response.status_code == 400:
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}

        generated()
    assert 200 in seen or 400 in seen


def test_free_text_votes_by_mbr_by_default():
    replies = ["Paris is the capital of France.", "Lyon, I think.", "The capital of France is Paris.",
               "Paris is the capital city of France."]
    with served(Scripted(replies)) as url:
        reply = client(url).chat.completions.create(
            model="self-consistency-4", messages=[{"role": "user", "content": "What is the capital of France?"}])
        numbers = client(url).chat.completions.create(model="self-consistency-4", messages=ASK, extra_body=NUMBERS)
    assert reply.model_extra["manyminds"]["aggregator"] == "mbr"
    assert reply.choices[0].message.content in (replies[0], replies[3]), "the sample closest to the others"
    assert numbers.model_extra["manyminds"]["aggregator"] == "majority", "answers that are keys still vote"
