"""The embedded model, for real: llama.cpp in process with the bundled SmolLM2 GGUF."""

import asyncio

import pytest

from manyminds.backends.local import Local, default_model_path
from manyminds.errors import ConfigError
from manyminds.strategies import SelfConsistency
from manyminds.types import Message, SamplingParams

pytestmark = pytest.mark.integration

MSGS = [Message(role="user", content="What is 3 + 4? Reply with just the number.")]


def test_model_ships_in_a_package_not_a_download():
    path = default_model_path()
    assert path.suffix == ".gguf" and "site-packages" in str(path) and path.stat().st_size > 50_000_000


def test_samples_are_distinct_and_reproducible_by_index(local_backend):
    params = SamplingParams(temperature=1.0, max_tokens=24, seed=7)
    first = asyncio.run(local_backend.generate(MSGS, params, 4))
    again = asyncio.run(local_backend.generate(MSGS, params, 2, first_index=2))
    assert [g.index for g in first] == [0, 1, 2, 3]
    assert len({g.text for g in first}) > 1, "each sample must get its own seed"
    assert [g.text for g in again] == [g.text for g in first[2:]]
    assert all(g.completion_tokens > 0 and g.prompt_tokens > 0 for g in first)


def test_greedy_is_deterministic(local_backend):
    params = SamplingParams(temperature=0, max_tokens=16)
    a = asyncio.run(local_backend.generate(MSGS, params, 1))
    b = asyncio.run(local_backend.generate(MSGS, params, 1, first_index=5))
    assert a[0].text == b[0].text


def test_logprobs_match_the_llama_cpp_server(local_backend, llama_server):
    from manyminds.backends import OpenAICompatible

    params = SamplingParams(temperature=0, max_tokens=12, logprobs=True, top_logprobs=3)
    (mine,) = asyncio.run(local_backend.generate(MSGS, params, 1))
    (server,) = asyncio.run(OpenAICompatible(model="smollm2", base_url=llama_server).generate(MSGS, params, 1))
    assert mine.text == server.text
    assert [t.token for t in mine.logprobs] == [t.token for t in server.logprobs]
    assert [t.logprob for t in mine.logprobs] == pytest.approx([t.logprob for t in server.logprobs], abs=1e-4)
    assert mine.logprobs[0].top == pytest.approx(server.logprobs[0].top, abs=1e-4)


def test_logprobs_at_the_length_limit_cover_every_token(local_backend):
    params = SamplingParams(temperature=0.9, max_tokens=6, logprobs=True, seed=2)
    story = [Message(role="user", content="Write a long story about a cat who sails the sea.")]
    (g,) = asyncio.run(local_backend.generate(story, params, 1))
    assert g.finish_reason == "length"
    assert len(g.logprobs) == g.completion_tokens
    assert "".join(t.token for t in g.logprobs) == g.text


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="model file not found"):
        Local(model_path=tmp_path / "none.gguf")


def test_the_bundled_model_runs_a_q8_0_re_encoding_made_once(tmp_path, monkeypatch):
    from manyminds.backends.reencode import reencoded

    monkeypatch.setenv("MANYMINDS_MODELS", str(tmp_path))
    made = reencoded(default_model_path())
    assert made.parent == tmp_path and made.name.endswith(".q8_0.gguf")
    assert made.stat().st_size > default_model_path().stat().st_size  # 8 bits a weight, not 4
    stamp = made.stat().st_mtime_ns
    assert reencoded(default_model_path()) == made and made.stat().st_mtime_ns == stamp  # not written twice
    assert [p.name for p in tmp_path.iterdir()] == [made.name]  # no temporary file left behind
    bundled, as_is = Local(), Local(weights="as-is")
    assert bundled.weights == "q8_0" and bundled.cache_identity()["weights"] == "q8_0"
    assert "weights" not in as_is.cache_identity()  # other numerics, other cache entries
    assert Local(model_path=default_model_path()).weights == "as-is"  # a file you name runs as it is


def test_bad_weights_settings_are_clear_errors(tmp_path):
    from manyminds.backends.reencode import reencoded

    with pytest.raises(ConfigError, match="weights must be one of auto, as-is, q8_0"):
        Local(weights="q4")
    with pytest.raises(ConfigError, match="unknown weight encoding 'q2'"):
        reencoded(default_model_path(), "q2", cache_dir=tmp_path)
    garbage = tmp_path / "broken.gguf"
    garbage.write_bytes(b"not a model" * 100)
    with pytest.raises(ConfigError, match="could not re-encode broken.gguf"):
        reencoded(garbage, cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_self_consistency_end_to_end(local_backend, tmp_path):
    strategy = SelfConsistency(n=4, prompt="direct", max_tokens=24, seed=1)
    results = strategy.solve_many(
        ["What is 2 + 3?", "What is 4 + 4?"], backend=local_backend, cache=tmp_path / "c.db"
    )
    for r in results:
        assert len(r.candidates) == 4 and r.usage.samples == 4 and r.usage.calls == 1  # one batched decode
        assert r.answer is None or r.answer in r.tally
        assert sum(r.tally.values()) == sum(c.answer is not None for c in r.candidates)
    again = strategy.solve_many(
        ["What is 2 + 3?", "What is 4 + 4?"], backend=local_backend, cache=tmp_path / "c.db"
    )
    assert [r.usage.calls for r in again] == [0, 0]
    assert [r.answer for r in again] == [r.answer for r in results]


def test_prefetched_samples_are_picked_up_not_regenerated(local_backend):
    params = SamplingParams(temperature=1.0, max_tokens=16, seed=21)
    plain = asyncio.run(local_backend.generate(MSGS, params, 3))
    calls = []
    original = local_backend._sample_many

    def counting(*args):
        calls.extend(args[-1])
        return original(*args)

    local_backend._sample_many = counting
    try:
        local_backend.prefetch(MSGS, params, [0, 1])
        again = asyncio.run(local_backend.generate(MSGS, params, 3))
    finally:
        del local_backend._sample_many
    assert sorted(calls) == [0, 1, 2], "each sample generated once: two prefetched, one on demand"
    assert [g.text for g in again] == [g.text for g in plain]
    assert not local_backend._prefetched


@pytest.mark.parametrize("name", sorted(__import__("manyminds.strategies", fromlist=["STRATEGIES"]).STRATEGIES))
def test_every_strategy_end_to_end_on_the_embedded_model(local_backend, tmp_path, name):
    from manyminds.bench import arithmetic_tasks
    from manyminds.strategies import by_name, make

    accepted = by_name(name).settings()
    extra = {k: v for k, v in {"prompt": "direct", "propose_max_tokens": 48}.items() if k in accepted}
    strategy = make(name, 3, max_tokens=24, seed=5, **extra)
    tasks = arithmetic_tasks("single-digit", 2, seed=3)
    results = strategy.solve_many(tasks, backend=local_backend, cache=tmp_path / "c.db")
    for task, r in zip(tasks, results):
        assert r.task == task and r.strategy == name
        assert r.candidates and r.usage.calls >= 1 and r.usage.completion_tokens > 0
        assert r.answer is None or r.answer in {c.answer for c in r.candidates}
        assert 0 <= r.confidence <= 1
        assert "aggregate" in r.trace or r.trace[-1].startswith("kept")


def test_a_request_s_samples_are_decoded_as_one_batch_and_are_the_same_however_asked_for(local_backend):
    params = SamplingParams(temperature=1.0, max_tokens=12, seed=5, logprobs=True)
    together = asyncio.run(local_backend.generate(MSGS, params, 5))
    assert len({g.request_id for g in together}) == 1  # one batched decode
    assert len({g.text for g in together}) > 1
    apart = asyncio.run(local_backend.generate(MSGS, params, 2)) + asyncio.run(
        local_backend.generate(MSGS, params, 3, first_index=2))
    assert [g.text for g in apart] == [g.text for g in together]
    for g in together:
        assert len(g.logprobs) == g.completion_tokens and all(t.logprob <= 0 for t in g.logprobs)
        assert "".join(t.token for t in g.logprobs) == g.text or g.finish_reason == "stop"


def test_batched_prompt_tokens_match_plain_completions(local_backend):
    plain = Local(n_ctx=1024, batched=False)
    params = SamplingParams(temperature=0.7, max_tokens=8, seed=3)
    (a,) = asyncio.run(plain.generate(MSGS, params, 1))
    (b,) = asyncio.run(local_backend.generate(MSGS, params, 1))
    assert a.prompt_tokens == b.prompt_tokens > 0
