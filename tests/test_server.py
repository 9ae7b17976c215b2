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
from typing import Any

import httpx
import json

import pytest
from openai import APIConnectionError, APITimeoutError, AuthenticationError, BadRequestError, OpenAI, RateLimitError

from manyminds.backends import Scripted
from manyminds.errors import ConfigError
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
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")  # the sample's own
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[0].choices[0].delta.role == "assistant" and not chunks[0].choices[0].delta.content  # at once
    decided = next(c for c in chunks if c.choices and c.choices[0].delta.content)
    assert decided.model_extra["manyminds"]["streaming"].startswith("the answer is sent once decided")
    assert len({c.id for c in chunks}) == 1


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
        with pytest.raises(BadRequestError, match="upstream model 'gpt-4o-mini' is not served here"):
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
    ({"messages": [{"role": "user"}]}, "a message has no text"),
    ({"messages": []}, "messages"),
    ({"logit_bias": {"50256": -100}}, "logit_bias: token ids are the upstream tokenizer's"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"},
     "tool_choice: 'sometimes' is not one of"),
    ({"response_format": {"type": "xml"}}, "response_format: type 'xml' is not one of"),
    ({"n": 17}, "n: Input should be less than or equal to 16"),
    ({"colour": "red"}, "unknown parameter 'colour'"),
    ({"manyminds": {"proposer_backends": ["x"]}}, "manyminds.proposer_backends holds objects"),
    ({"model": "self-consistency-2:http://169.254.169.254/latest"}, "is not served here"),
    ({"temperature": 0, "manyminds": {"budget": {"samples": 0}}}, "manyminds.budget"),
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


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"model": "self-consistency-2", "messages": [{"role": "user", "content": "\\ud800 hi"}]}', "lone surrogate"),
    (b'{"model": "self-consistency-2", "messages": [{"role": "user", "content": "What is 2 + 3?"}], '
     b'"manyminds": {"budget": ' + b"9" * 5000 + b"}}", ""),
    (b'{"model": "self-consistency-2", "messages": [{"role": "user", "content": "What is 2 + 3?"}], '
     b'"max_tokens": ' + b"9" * 5000 + b"}", ""),
    (b'{"model": "self-consistency-2", "messages": [{"role": "user", "content": "\xff"}]}', "not UTF-8"),
])
def test_what_json_admits_but_python_cannot_hold_is_a_400_not_a_500(raw, message):
    with served(Scripted(votes)) as url:
        response = httpx.post(f"{url}/chat/completions", content=raw, headers={"content-type": "application/json"},
                              timeout=30)
        follow = httpx.post(f"{url}/chat/completions", json={"model": "self-consistency-2", "messages": ASK},
                            timeout=30)
    # (a 4,300-digit limit on int parsing, where a library has not lifted it, or the field's bound: 400 either way)
    assert response.status_code == 400 and message in response.json()["error"]["message"], response.text
    assert follow.status_code == 200


def test_routes_methods_and_encodings_outside_the_api_answer_in_openais_error_shape():
    import gzip

    with served(Scripted(votes)) as url:
        missing = httpx.get(f"{url}/embeddings", timeout=30)
        wrong = httpx.get(f"{url}/chat/completions", timeout=30)
        zipped = httpx.post(f"{url}/chat/completions", timeout=30,
                            content=gzip.compress(json.dumps({"model": "self-consistency-2", "messages": ASK}).encode()),
                            headers={"content-type": "application/json", "content-encoding": "gzip"})
    assert missing.status_code == 404 and "no route /v1/embeddings" in missing.json()["error"]["message"]
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert zipped.status_code == 415 and "Content-Encoding 'gzip'" in zipped.json()["error"]["message"]


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
    with served(backend, cache=tmp_path / "c.db") as url:  # seeded requests share samples (see below)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda _: client(url).chat.completions.create(
                model="self-consistency-6", messages=ASK, seed=7, extra_body=NUMBERS), range(3)))
    assert backend.samples_generated == 6, "three requests, the six samples generated once"
    assert {r.choices[0].message.content for r in replies} == {"The answer is 12."}
    # each generated tokens only for what it did not find: the three together report the six samples once
    generated = sum(r.usage.completion_tokens for r in replies)
    assert generated == 6 * 4 and sum(r.model_extra["manyminds"]["cached_completion_tokens"] for r in replies) == 2 * 6 * 4


def test_unseeded_requests_draw_fresh_samples_and_seeded_ones_are_served_from_the_cache(tmp_path):
    backend = Scripted(votes)
    with served(backend, cache=tmp_path / "c.db") as url:
        api = client(url)
        for _ in range(2):  # "regenerate": drawn again
            api.chat.completions.create(model="self-consistency-3", messages=ASK, extra_body=NUMBERS)
        assert backend.samples_generated == 6
        first = api.chat.completions.create(model="self-consistency-3", messages=ASK, seed=4, extra_body=NUMBERS)
        again = api.chat.completions.create(model="self-consistency-3", messages=ASK, seed=4, extra_body=NUMBERS)
        assert backend.samples_generated == 9  # the seeded repeat made no upstream call
        assert first.usage.completion_tokens == 12 and again.usage.completion_tokens == 0
        assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens > 0
        opt_in = {"manyminds": {"format": "number", "cache": True}}
        opted = api.chat.completions.create(model="self-consistency-3", messages=ASK, extra_body=opt_in)
        assert opted.usage.completion_tokens == 12  # the unseeded draws above were never stored
        repeat = api.chat.completions.create(model="self-consistency-3", messages=ASK, extra_body=opt_in)
        assert repeat.usage.completion_tokens == 0 and backend.samples_generated == 9 + 3


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
            model="self-consistency-3", messages=ASK, seed=2, extra_body=NUMBERS))
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


def test_ordinary_client_parameters_are_honoured_or_accepted():
    backend = Scripted(votes)
    with served(backend) as url:
        api = client(url)
        reply = api.chat.completions.create(
            model="self-consistency-6", messages=ASK, presence_penalty=0, frequency_penalty=0.5, store=False,
            user="someone", metadata={"k": "v"}, parallel_tool_calls=False, n=2, logprobs=True, top_logprobs=2,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}], tool_choice="none",
            extra_body=NUMBERS)
        # n: the best distinct answers, the decision's first
        assert [c.message.content for c in reply.choices] == ["The answer is 12.", "The answer is 13."]
        assert backend.requests[-1].params.frequency_penalty == 0.5 and backend.requests[-1].params.presence_penalty is None
        assert backend.requests[-1].params.logprobs and backend.requests[-1].params.top_logprobs == 2
        # a conversation as the SDK hands it back (refusal, tool calls and results) continues
        history = [{"role": "user", "content": "What is 7 + 5?"}, reply.choices[0].message.model_dump(),
                   {"role": "assistant", "content": None, "tool_calls": [
                       {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 7}'}}]},
                   {"role": "tool", "tool_call_id": "c1", "content": "12"},
                   {"role": "user", "content": [{"type": "text", "text": "And 8 + 5?"}]}]
        follow = api.chat.completions.create(model="self-consistency-2", messages=history, extra_body=NUMBERS)
        turns = [m.content for m in backend.requests[-1].messages]
        assert "[called add with {\"a\": 7}]" in turns and "[result of c1]\n12" in turns
        assert follow.choices[0].message.content


def test_finish_reason_is_the_shown_samples_and_logprobs_are_its_own():
    from manyminds.types import Generation, TokenLogprob

    def cut(messages, params, index):
        tokens = (TokenLogprob(token="Once", logprob=-0.5), TokenLogprob(token=" upon", logprob=-0.1))
        return Generation(text="Once upon", index=index, finish_reason="length", completion_tokens=2, logprobs=tokens)

    with served(Scripted(cut)) as url:
        reply = client(url).chat.completions.create(model="self-consistency-2", messages=ASK, max_tokens=2,
                                                     logprobs=True)
        plain = client(url).completions.create(model="self-consistency-2", prompt="Tell a story.", max_tokens=2,
                                               logprobs=1)
    assert reply.choices[0].finish_reason == "length" and plain.choices[0].finish_reason == "length"
    assert [t.token for t in reply.choices[0].logprobs.content] == ["Once", " upon"]
    assert plain.choices[0].logprobs.tokens == ["Once", " upon"]


def test_a_greedy_request_never_reports_copies_of_one_draw_as_agreement():
    backend = Scripted(votes)
    with served(backend) as url:
        reply = client(url).chat.completions.create(model="self-consistency-4", messages=ASK, temperature=0,
                                                     extra_body=NUMBERS)
        extra = reply.model_extra["manyminds"]
        assert backend.requests[-1].params.temperature == 0.7 and backend.requests[-1].n == 4
        assert "temperature 0 asks for one greedy draw" in extra["notes"][0]
    with served(Scripted(votes), greedy="refuse") as url:
        with pytest.raises(BadRequestError, match="temperature 0 makes every sample"):
            client(url).chat.completions.create(model="self-consistency-4", messages=ASK, temperature=0)
        assert client(url).chat.completions.create(model="self-consistency-1", messages=ASK, temperature=0)


def test_a_strategy_built_for_one_request_serves_the_next_equal_one_and_only_that():
    """Built strategies are kept by their settings: an equal request gets the same strategy (and the
    greedy note again), a different setting its own, and a wrong setting is refused every time."""
    backend = Scripted(votes)
    with served(backend) as url:
        api = client(url)
        for _ in range(2):
            reply = api.chat.completions.create(model="self-consistency-4", messages=ASK, temperature=0,
                                                extra_body=NUMBERS)
            assert "temperature 0 asks for one greedy draw" in reply.model_extra["manyminds"]["notes"][0]
            assert backend.requests[-1].params.temperature == 0.7
        reply = api.chat.completions.create(model="self-consistency-4", messages=ASK, temperature=0.3,
                                            extra_body=NUMBERS)
        assert backend.requests[-1].params.temperature == 0.3 and not reply.model_extra["manyminds"]["notes"]
        for _ in range(2):
            with pytest.raises(BadRequestError, match="no setting"):
                api.chat.completions.create(model="self-consistency-4", messages=ASK,
                                            extra_body={"manyminds": {"no_such_setting": 1}})


def test_an_unexpected_failure_is_a_500_in_openais_shape_and_the_connection_lives_on(monkeypatch):
    import manyminds.server as server

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    with served(Scripted(votes)) as url:
        with httpx.Client(timeout=30) as http:
            monkeypatch.setattr(server, "_completion", broken)
            failed = http.post(f"{url}/chat/completions", json={"model": "self-consistency-2", "messages": ASK})
            monkeypatch.undo()
            after = http.post(f"{url}/chat/completions", json={"model": "self-consistency-2", "messages": ASK})
    assert failed.status_code == 500, failed.text
    assert failed.json()["error"] == {"message": "the server failed unexpectedly: RuntimeError", "type": "server_error",
                                      "param": None, "code": "internal_error"}
    assert after.status_code == 200 and after.json()["choices"][0]["message"]["content"]


def test_surrogate_pairs_are_text_and_a_lone_surrogate_anywhere_is_named():
    """Escaped surrogates are looked at only when the raw body holds one: a pair (an emoji) is
    ordinary text, a lone one is refused wherever it is, the field named."""
    def post(url: str, raw: bytes) -> httpx.Response:
        return httpx.post(f"{url}/chat/completions", content=raw, headers={"content-type": "application/json"},
                          timeout=30)

    with served(Scripted(votes)) as url:
        pair = post(url, b'{"model": "self-consistency-2", "messages": [{"role": "user", "content": '
                         b'"What is 2 + 3? \\ud83d\\ude00 \\uD83D\\uDE00"}]}')
        in_a_key = post(url, b'{"model": "self-consistency-2", "messages": [{"role": "user", "content": "hi"}], '
                             b'"manyminds": {"\\udfff": 1}}')
        in_a_list = post(url, b'{"model": "self-consistency-2", "messages": [{"role": "user", "content": "hi"}], '
                              b'"stop": ["ok", "\\uDBFF"]}')
    assert pair.status_code == 200, pair.text
    assert in_a_key.status_code == 400 and "manyminds holds a lone surrogate" in in_a_key.json()["error"]["message"]
    assert in_a_list.status_code == 400 and in_a_list.json()["error"]["param"] == "stop.1"


def test_one_cap_bounds_what_any_request_may_cause():
    backend = Scripted(votes)
    with served(backend, max_samples_per_request=5) as url:
        reply = client(url).chat.completions.create(
            model="div-se-1", messages=ASK, extra_body={"manyminds": {"pairs": [["a", "p"]] * 50}})
    assert backend.samples_generated <= 5
    assert reply.model_extra["manyminds"]["withheld_samples"] > 0


def test_clients_that_gave_up_leave_the_queue_at_once():
    backend = Scripted(votes, latency=1.5)
    with served(backend, max_concurrency=1, max_queue=2) as url:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            busy = pool.submit(lambda: client(url).chat.completions.create(model="self-consistency-1", messages=ASK))
            time.sleep(0.3)
            quitters = [pool.submit(lambda: client(url, timeout=0.3).chat.completions.create(
                model="self-consistency-1", messages=ASK)) for _ in range(2)]
            for q in quitters:
                with pytest.raises((APITimeoutError, APIConnectionError)):
                    q.result()
            time.sleep(0.3)
            live = client(url).chat.completions.with_raw_response.create(model="self-consistency-1", messages=ASK)
            assert live.http_response.status_code == 200  # not 429: the two that left freed their places
            busy.result()
    assert backend.samples_generated == 2  # the abandoned requests never reached the upstream


def test_a_model_that_is_not_a_strategy_is_passed_through_to_the_upstream(llama_server):
    """none:MODEL (or the upstream's own model name) goes to the upstream unchanged: n, logprobs, echo
    and token-id prompts included, as lm-evaluation-harness's log-likelihood requests need."""
    from manyminds.backends import OpenAICompatible

    upstream = OpenAICompatible(model="smollm2", base_url=llama_server)
    with served(upstream) as url:
        api = client(url)
        reply = api.chat.completions.create(model="none", messages=ASK, max_tokens=8, n=1, logprobs=True,
                                            top_logprobs=2, temperature=0)
        assert reply.choices[0].logprobs.content and "manyminds" not in (reply.model_extra or {})
        plain = api.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=4,
                                       temperature=0)
        assert plain.choices[0].text
        chunks = list(api.chat.completions.create(model="none:smollm2", messages=ASK, max_tokens=6, stream=True))
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1  # the upstream's own stream
        with pytest.raises(BadRequestError, match="not served here"):
            api.chat.completions.create(model="none:gpt-4o", messages=ASK)


def test_a_pass_through_to_the_embedded_model_samples_with_the_clients_parameters():
    backend = Scripted(lambda m, p, i: f"sample {i} at {p.temperature}")
    with served(backend) as url:
        reply = client(url).chat.completions.create(model="none", messages=ASK, n=2, temperature=0.3)
        assert [c.message.content for c in reply.choices] == ["sample 0 at 0.3", "sample 1 at 0.3"]
        with pytest.raises(BadRequestError, match="echo, token-id and batched prompts"):
            client(url).completions.create(model="none", prompt=[1, 2, 3], max_tokens=1)


def test_structured_output_votes_on_json_data_and_the_winner_validates():
    from pydantic import BaseModel as Schema

    class Sum(Schema):
        total: int
        words: str

    replies = ['Sure! {"total": 12, "words": "twelve"}', '```json\n{ "words": "twelve", "total": 12 }\n```',
               '{"total": "12", "words": "twelve"}', '{"total": 12, "words": "twelve"}', "I cannot"]
    backend = Scripted(lambda m, p, i: replies[i % len(replies)])
    with served(backend) as url:
        api = client(url)
        parsed = api.beta.chat.completions.parse(model="self-consistency-5", messages=ASK, response_format=Sum)
        assert parsed.choices[0].message.parsed == Sum(total=12, words="twelve")
        extra = parsed.model_extra["manyminds"]
        assert extra["tally"] == {'{"total":12,"words":"twelve"}': 3.0} and extra["aggregator"] == "json-vote"
        assert "JSON Schema" in backend.requests[-1].messages[0].content  # every sample was asked for it
        loose = api.chat.completions.create(model="self-consistency-5", messages=ASK,
                                            response_format={"type": "json_object"})
        assert json.loads(loose.choices[0].message.content) == {"total": 12, "words": "twelve"}
        with pytest.raises(BadRequestError, match="not a valid JSON Schema"):
            api.chat.completions.create(model="self-consistency-2", messages=ASK, response_format={
                "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}})


def test_generated_settings_models_and_unicode_never_get_a_5xx():
    """Hypothesis over what schemathesis leaves free-form: the manyminds field (real setting names with
    arbitrary JSON values), model names, and text with lone surrogates, controls and astral characters."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    from manyminds.strategies import by_name, names

    known = sorted({s for name in names() for s in by_name(name).settings()} | {"format", "verifier", "cache", "budget"})
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**30), st.floats(allow_nan=False),
                        st.text(max_size=20))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8),
                                                                                               inner, max_size=3),
                          max_leaves=6)
    texts = st.text(alphabet=st.characters(codec=None, categories=None), min_size=1, max_size=40)
    models = st.one_of(st.sampled_from(names()), st.builds(lambda n, k: f"{n}-{k}", st.sampled_from(names()),
                                                           st.integers(0, 3000)), texts)
    with served(Scripted(votes), max_samples_per_request=16) as url:
        seen: list[int] = []

        @given(model=models, content=texts, extra=st.dictionaries(st.sampled_from(known) | st.text(max_size=10),
                                                                  values, max_size=3))
        @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def generated(model, content, extra):
            body = {"model": model, "messages": [{"role": "user", "content": content}], "manyminds": extra}
            raw = json.dumps(body).encode()  # ASCII escapes: lone surrogates travel as \\ud800
            response = httpx.post(f"{url}/chat/completions", content=raw, timeout=30,
                                  headers={"content-type": "application/json"})
            seen.append(response.status_code)
            assert response.status_code in (200, 400), (body, response.status_code, response.text[:300])
            if response.status_code == 400:
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}

        generated()
    assert 400 in seen and 200 in seen, seen


def test_a_stream_shows_life_while_the_ensemble_works_and_reports_a_late_failure_as_an_error_event():
    backend = Scripted(votes, latency=1.2)
    with served(backend, heartbeat=0.3) as url:
        with httpx.stream("POST", f"{url}/chat/completions", timeout=30, json={
                "model": "self-consistency-2", "messages": ASK, "stream": True}) as response:
            lines = [line for line in response.iter_lines() if line]
        assert lines[0].startswith("data: ") and '"role": "assistant"' in lines[0]  # at once
        assert any(line.startswith(": manyminds working") for line in lines[1:3])  # a comment while it works
        assert lines[-1] == "data: [DONE]"

    def failing(messages, params, index):
        from manyminds.errors import BackendError
        raise BackendError("HTTP 400: the upstream refused")

    with served(Scripted(failing)) as url:
        from openai import APIError

        with pytest.raises(APIError, match="the upstream model failed"):
            list(client(url).chat.completions.create(model="self-consistency-2", messages=ASK, stream=True))


def batch_sizes(monkeypatch) -> list[int]:
    """The number of questions of every `Session.asolve_many` call from now on (a run's batch)."""
    from manyminds.session import Session

    sizes: list[int] = []
    original = Session.asolve_many

    async def counted(self, strategy, tasks, **options):
        sizes.append(len(tasks))
        return await original(self, strategy, tasks, **options)

    monkeypatch.setattr(Session, "asolve_many", counted)
    return sizes


def test_with_the_langgraph_runner_concurrent_requests_share_a_graph_run(monkeypatch):
    sizes = batch_sizes(monkeypatch)
    backend = Scripted(votes, latency=0.2)
    with served(backend, max_concurrency=16, runner="langgraph") as url:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(lambda k: client(url).chat.completions.create(
                model="self-consistency-2", messages=[{"role": "user", "content": f"What is {k} + 5?"}],
                extra_body=NUMBERS), range(12)))
    assert sum(sizes) == 12 and len(sizes) < 12, sizes  # gathered while the loop was busy
    assert all(r.choices[0].message.content for r in replies)
    assert len({tuple(m.content for m in r.messages) for r in backend.requests}) == 12  # each its own question


def test_with_the_direct_runner_each_request_runs_alone_and_fails_alone(monkeypatch):
    from manyminds.agents.builder import DirectRun
    from manyminds.errors import BackendError

    sizes = batch_sizes(monkeypatch)
    ran: list[int] = []
    direct = DirectRun.__call__

    async def tracked(self, tasks, context):
        ran.append(len(tasks))
        return await direct(self, tasks, context)

    def some_fail(messages, params, index):
        k = int(messages[-1].content.split()[2])  # "What is K + 5?"
        if k == 13:
            raise BackendError("HTTP 400: the upstream refused this one")
        return f"The answer is {k + 5}."

    monkeypatch.setattr(DirectRun, "__call__", tracked)
    with served(Scripted(some_fail, latency=0.2), max_concurrency=16) as url:
        def ask(k: int) -> Any:
            try:
                return client(url).chat.completions.create(
                    model="self-consistency-2", messages=[{"role": "user", "content": f"What is {k} + 5?"}],
                    extra_body=NUMBERS)
            except Exception as error:  # noqa: BLE001 - the failure is the point
                return error

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(ask, range(8, 20)))
    assert sizes == [1] * 12 and ran == [1] * 12  # no batch: nobody waits for the slowest, nobody fails with another
    failed = [k for k, r in zip(range(8, 20), replies) if isinstance(r, Exception)]
    assert failed == [13] and "the upstream refused this one" in str(replies[13 - 8])
    assert [r.choices[0].message.content for k, r in zip(range(8, 20), replies) if k != 13] == [
        f"The answer is {k + 5}." for k in range(8, 20) if k != 13]


def test_a_runner_that_does_not_exist_is_refused():
    with pytest.raises(ConfigError, match="runner must be 'direct' or 'langgraph'"):
        ServerConfig(runner="pregel")


WEATHER = [{"type": "function", "function": {
    "name": "weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                   "required": ["city"]}}}]


def caller(messages, params, index):
    """Samples that call the weather tool (arguments in any order and spacing), one bad call, one reply;
    after a tool result, a plain answer."""
    if any(m.content.startswith("[result of") for m in messages):
        return "It is 21 degrees in Paris."
    return ['{"tool_call": {"name": "weather", "arguments": {"city": "Paris", "unit": "c"}}}',
            'Let me check. {"tool_call": {"arguments": {"unit": "c", "city": "Paris"}, "name": "weather"}}',
            '{"tool_call": {"name": "weather", "arguments": {"unit": "kelvin"}}}',  # fails the schema
            "I think it is sunny.",
            '{"tool_call": {"name": "weather", "arguments": {"city": "Lyon"}}}'][index % 5]


def test_tool_calls_vote_by_name_and_arguments_and_the_conversation_continues():
    backend = Scripted(caller)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    with served(backend) as url:
        api = client(url)
        reply = api.chat.completions.create(model="self-consistency-5", messages=ask, tools=WEATHER)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.function.name == "weather" and json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}
        extra = reply.model_extra["manyminds"]
        assert extra["aggregator"] == "tool-vote" and "You can call these tools" in backend.requests[-1].messages[0].content
        follow = api.chat.completions.create(model="self-consistency-3", tools=WEATHER, messages=ask + [
            choice.message.model_dump(), {"role": "tool", "tool_call_id": call.id, "content": "21 C"}])
        assert follow.choices[0].message.content == "It is 21 degrees in Paris." and follow.choices[0].finish_reason == "stop"
        chunks = list(api.chat.completions.create(model="self-consistency-5", messages=ask, tools=WEATHER, stream=True))
        deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        assert deltas and deltas[0][0].function.name == "weather"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
        quiet = api.chat.completions.create(model="self-consistency-5", messages=ask, tools=WEATHER, tool_choice="none")
        assert quiet.choices[0].finish_reason == "stop"


def test_langchain_binds_tools_and_reads_the_voted_call():
    from langchain_openai import ChatOpenAI

    with served(Scripted(caller)) as url:
        chat = ChatOpenAI(model="self-consistency-5", base_url=url, api_key="unused", max_retries=0)
        message = chat.bind_tools(WEATHER).invoke("What is the weather in Paris?")
        assert message.tool_calls[0]["name"] == "weather" and message.tool_calls[0]["args"] == {"city": "Paris",
                                                                                                "unit": "c"}


def test_a_hung_upstream_is_a_504_within_the_deadline():
    """An upstream that accepts connections and never answers: the client hears 504 within the
    server's --upstream-deadline, not after the library's two minutes."""
    import socket

    from manyminds.backends import OpenAICompatible

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepted by the kernel, never read or answered
    try:
        upstream = OpenAICompatible(model="m", base_url=f"http://127.0.0.1:{listener.getsockname()[1]}/v1")
        with served(upstream, upstream_timeout=0.5, upstream_deadline=1.5) as url:
            # (the client waits 30 s: the library's own deadline, 120 s, would end in the client's timeout)
            response = httpx.post(f"{url}/chat/completions", json={"model": "self-consistency-1", "messages": ASK},
                                  timeout=30)
        assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout", response.text
    finally:
        listener.close()


def test_a_synthesis_streams_as_it_is_generated():
    """Self-MoA's answer is its synthesis: a stream carries it in pieces as the backend generates it,
    and the pieces are the reply a plain request gets; a vote (self-consistency) is sent whole."""
    def reply(messages, params, index):
        return "Seven plus five makes twelve, so the answer is 12."

    body = {"messages": ASK, "seed": 4, "extra_body": {"manyminds": {"format": "number"}}}
    with served(Scripted(reply)) as url:
        api = client(url)
        plain = api.chat.completions.create(model="self-moa-3", **body)
        chunks = list(api.chat.completions.create(model="self-moa-3", stream=True, **body))
        voted = list(api.chat.completions.create(model="self-consistency-3", stream=True, **body))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3 and "".join(pieces) == plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert [c.choices[0].delta.content for c in voted if c.choices and c.choices[0].delta.content] == [
        "Seven plus five makes twelve, so the answer is 12."]


def test_a_server_process_of_its_own_keeps_its_startup_objects_out_of_the_collector():
    """`manyminds serve` freezes what startup built (gc.freeze): a full collection no longer walks
    LangGraph, pydantic and the strategies, and stalls no request; run in a process of its own."""
    import subprocess
    import sys

    script = (
        "import gc\n"
        "from fastapi.testclient import TestClient\n"
        "from manyminds.backends import Scripted\n"
        "from manyminds.server import ServerConfig, create_app\n"
        "app = create_app(ServerConfig(backend=Scripted(['The answer is 4.']), freeze_startup=True))\n"
        "before = gc.get_freeze_count()\n"
        "with TestClient(app) as http:\n"
        "    frozen = gc.get_freeze_count()\n"
        "    reply = http.post('/v1/chat/completions', json={'model': 'self-consistency-2',\n"
        "                      'messages': [{'role': 'user', 'content': 'What is 2 + 2?'}]})\n"
        "    assert reply.status_code == 200, reply.text\n"
        "print(before, frozen)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    before, frozen = map(int, out.stdout.split())
    assert before == 0 and frozen > 50_000


def test_an_upstream_narrower_than_the_server_is_named_at_startup(caplog, monkeypatch):
    from manyminds.backends.openai_compat import OpenAICompatible
    from manyminds.server import _warn_if_upstream_narrower

    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    narrow = OpenAICompatible(model="m", base_url="http://127.0.0.1:9/v1", max_concurrency=4)
    with caplog.at_level("WARNING", logger="manyminds.server"):
        _warn_if_upstream_narrower(narrow, ServerConfig(backend=narrow, max_concurrency=4))
        assert not caplog.records
        _warn_if_upstream_narrower(narrow, ServerConfig(backend=narrow, max_concurrency=8))
        _warn_if_upstream_narrower(Scripted(votes), ServerConfig(backend="local", max_concurrency=64))
    (record,) = caplog.records
    assert "takes 4 upstream calls at once and the server runs 8 ensembles" in record.getMessage()
    assert "max_concurrency=8" in record.getMessage()
