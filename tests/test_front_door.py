"""One way in: every door (Python, `manyminds run`, `manyminds bench`, the server) builds a strategy
with `strategies.make` and runs it through a `Session`, so a method's settings are the method's
wherever a user came in."""

from __future__ import annotations

import json

import pytest

from manyminds import strategies
from manyminds.backends import Scripted
from manyminds.errors import ConfigError
from manyminds.session import Session
from manyminds.types import AnswerFormat, Task
from tests.test_cli import cli
from tests.test_server import client, served

QUESTION = "What is 7 + 5?"
REPLY = "The answer is 12."


@pytest.mark.parametrize("name, n", [("moa", 3), ("self-consistency", 4), ("usc", 3), ("self-moa", None),
                                     ("ranked-vote", None)])
def test_a_method_records_the_same_settings_through_every_door(tmp_path, name, n):
    """n None: no budget given anywhere, so each door uses the strategy's own (self-moa's is 6, not 8)."""
    budget = [] if n is None else ["-n", str(n)]
    python = strategies.make(name, n).solve(Task(question=QUESTION, format=AnswerFormat.NUMBER),
                                            backend=Scripted([REPLY])).strategy_params
    run = json.loads(cli("run", QUESTION, "-s", name, *budget, "--backend", f"scripted:{REPLY}", "--no-cache",
                         "--json").stdout)["strategy_params"]
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": QUESTION, "answer": "12"}) + "\n")
    (bench,) = [json.loads(line)["params"] for line in cli(
        "bench", "--data", str(data), "-s", name, *budget, "--no-baseline", "--backend", f"scripted:{REPLY}",
        "--no-cache", "--json").stdout.splitlines()]
    with served(Scripted([REPLY])) as url:
        reply = client(url).chat.completions.create(
            model=name if n is None else f"{name}-{n}", messages=[{"role": "user", "content": QUESTION}],
            extra_body={"manyminds": {"format": "number"}})
    server = reply.model_extra["manyminds"]["strategy_params"]
    assert python == run == bench == server
    default = strategies.by_name(name).model_fields["sampling"].get_default(call_default_factory=True)
    assert python["sampling"]["max_tokens"] == default.max_tokens, "the strategy's own default, not a door's"
    if n is None:
        assert strategies.default_budget(strategies.by_name(name)) != 8, "a case where a door's 8 would differ"


def test_make_takes_a_verifier_by_name_and_refuses_one_where_none_is_taken():
    from manyminds.verifiers.base import VerifierOptions

    best = strategies.make("best-of-n", 4, verifier="p-true", verifier_options=VerifierOptions(backend=Scripted(["Yes"])))
    assert best.verifier.name == "p-true" and best.n == 4
    with pytest.raises(ConfigError, match="best-of-n needs a verifier: one of .*math"):
        strategies.make("best-of-n", 4)
    with pytest.raises(ConfigError, match="self-consistency takes no verifier"):
        strategies.make("self-consistency", 4, verifier="math")
    assert strategies.make("usc").n == strategies.default_budget(strategies.UniversalSelfConsistency)


def test_make_reads_aggregator_and_stop_specs_in_the_one_grammar():
    sc = strategies.make("self-consistency", 6, aggregator="weighted:by=logprob", stop="esc:window=3")
    assert sc.aggregator.name == "weighted" and sc.aggregator.params == {"by": "logprob"}
    assert sc.stop.window == 3 and strategies.make("self-consistency", 6, stop="esc:3").stop == sc.stop
    with pytest.raises(ConfigError, match=r"^strategy self-consistency: sampling.temperature: temperature must be >= 0, got -1.0$"):
        strategies.make("self-consistency", 4, temperature=-1)


def test_a_session_runs_another_model_of_its_endpoint_behind_its_cache(tmp_path):
    class Switchable(Scripted):
        def with_model(self, model):
            other = Scripted([f"The answer is {len(model)}."])
            other.model = model
            return other

    with Session(Switchable([REPLY]), cache=tmp_path / "c.db") as session:
        other = session.upstream("abcde")
        assert session.upstream("abcde") is other, "memoised per model"
        sc = strategies.make("self-consistency", 3)
        result = session.solve(sc, Task(question=QUESTION, format=AnswerFormat.NUMBER))
        assert result.answer == "12"
        import asyncio

        moved = asyncio.run(session.asolve(sc, Task(question=QUESTION, format=AnswerFormat.NUMBER), backend=other))
        assert moved.answer == "5" and session.cache.stats().generations == 6
    with pytest.raises(ConfigError, match="cannot switch"):
        Session(Scripted([REPLY])).upstream("other")


def test_a_closed_session_refuses_work_and_its_graph_uses_its_cache(tmp_path):
    session = Session(Scripted([REPLY]), cache=tmp_path / "c.db")
    graph = session.graph(strategies.make("self-consistency", 2))
    out = graph.invoke({"question": QUESTION})
    assert out["answer"] == "12" and out["results"][0].usage.samples == 2
    assert session.cache.stats().generations == 2
    session.close()
    with pytest.raises(ConfigError, match="closed"):
        session.graph(strategies.make("self-consistency", 2))


def test_progress_may_be_a_callback():
    seen = []
    with Session(Scripted([REPLY])) as session:
        session.solve_many(strategies.make("self-consistency", 2), ["1+1?", "2+2?", "3+3?"], progress=seen.append)
    assert sum(seen) == 3


def test_a_session_keeps_a_bounded_number_of_other_models():
    from manyminds.backends import OpenAICompatible
    from manyminds.session import MAX_UPSTREAMS, Session

    with Session(OpenAICompatible(model="a", base_url="http://127.0.0.1:1/v1")) as session:
        first = session.upstream("m0")
        for k in range(1, MAX_UPSTREAMS + 8):
            session.upstream(f"m{k}")
            session.upstream("m0")  # kept: used most recently each time
        assert session.upstream("m0") is first and len(session._upstreams) == MAX_UPSTREAMS
        assert "m1" not in session._upstreams
