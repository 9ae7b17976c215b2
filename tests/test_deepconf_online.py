"""DeepConf online: paths stopped while decoding once their windowed confidence drops below the
warm-up's threshold; stopped paths do not vote; the embedded model really stops decoding them."""

import asyncio

import pytest

from manyminds.aggregators import get_aggregator
from manyminds.backends import Scripted
from manyminds.backends.base import cut_where_stopped
from manyminds.errors import ConfigError
from manyminds.strategies import make
from manyminds.types import Generation, Message, SamplingParams, Task, TokenLogprob

Q = Task(question="What is 3 + 4?")


def paths(messages, params, index):
    """Two paths in three lose their way after 5 tokens (logprob -3) and answer 9; the rest answer 7."""
    lost = index % 3 != 0
    tokens = [TokenLogprob(token=f"t{k} ", logprob=-3.0 if lost and k >= 5 else -0.1) for k in range(20)]
    tokens.append(TokenLogprob(token=f"The answer is {9 if lost else 7}.", logprob=-0.1))
    return Generation(text="".join(t.token for t in tokens), index=index, finish_reason="stop",
                      completion_tokens=len(tokens), logprobs=tuple(tokens))


def test_lost_paths_stop_early_and_do_not_vote_where_the_majority_follows_them():
    strategy = make("deepconf-online", 12, warmup=3, window=4, consensus=1.0)
    result = strategy.solve(Q, backend=Scripted(paths))
    plain = make("self-consistency", 12).solve(Q, backend=Scripted(paths))
    assert plain.answer == "9"  # the lost paths are the majority
    assert result.answer == "7"
    stopped = [c for c in result.candidates if c.generation.finish_reason == "aborted"]
    assert [c.index for c in stopped] == [4, 5, 7, 8, 10, 11]  # every lost path after the warm-up
    # the threshold is the good warm-up path's -0.1; a lost path's window of 4 falls below it at its 6th token
    assert all(c.answer is None and len(c.generation.logprobs) == 6 for c in stopped)
    assert result.stop_reason == "12 paths drawn"
    assert result.decision.params["warmup"] == 3 and result.decision.aggregator == "deepconf"


def test_the_aggregator_replays_the_online_decision_offline():
    result = make("deepconf-online", 12, warmup=3, window=4, consensus=1.0).solve(Q, backend=Scripted(paths))
    again = get_aggregator("deepconf", keep=0.1, window=4, warmup=3)(Q, result.candidates)
    assert again.answer == result.answer and again.tally == result.tally


def test_consensus_ends_the_draw_early():
    agreeing = lambda m, p, i: paths(m, p, 0).model_copy(update={"index": i})  # noqa: E731
    result = make("deepconf-online", 32, warmup=4, window=4, wave=4).solve(Q, backend=Scripted(agreeing))
    assert result.usage.samples == 8 and result.stop_reason.startswith("consensus: 1.00")


def test_a_backend_that_cannot_stop_a_path_has_it_cut_where_it_would_have_stopped():
    params = SamplingParams(logprobs=True, stop_below_confidence=-1.0, confidence_window=4)
    lost = paths([], params, 1)
    cut = cut_where_stopped(lost, params)
    # windows of 4: one -3 token gives a mean of -0.825, two give -1.55 < -1.0: cut after the 7th token
    assert cut.finish_reason == "aborted" and len(cut.logprobs) == 7 and cut.text == "".join(
        t.token for t in lost.logprobs[:7])
    assert cut.completion_tokens == lost.completion_tokens  # generated, so still counted
    assert cut_where_stopped(cut, params) == cut and cut_where_stopped(paths([], params, 0), params).finish_reason == "stop"


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="warmup"):
        make("deepconf-online", 8, warmup=8)
    with pytest.raises(ValueError, match="logprobs=True"):
        SamplingParams(stop_below_confidence=-1.0)
    assert "stop_below_confidence" not in make("self-consistency", 4).params()["sampling"]


@pytest.mark.integration
def test_the_embedded_model_stops_decoding_a_path_and_it_is_a_prefix_of_the_full_one(local_backend):
    messages = [Message(role="user", content="Count from one to twenty in words.")]
    full = SamplingParams(temperature=0.8, max_tokens=40, seed=5, logprobs=True)
    stopping = full.model_copy(update={"stop_below_confidence": 0.0, "confidence_window": 6})  # every path: at 6
    drawn = asyncio.run(local_backend.generate(messages, full, 3))
    stopped = asyncio.run(local_backend.generate(messages, stopping, 3))
    assert local_backend.capabilities.stops_samples
    assert any(whole.completion_tokens > 6 for whole in drawn)
    for whole, early in zip(drawn, stopped):
        if whole.completion_tokens < 6:  # ended before the first full window: nothing to test
            assert early.text == whole.text
            continue
        assert early.finish_reason == "aborted" and early.completion_tokens == 6
        assert whole.text.startswith(early.text) and early.logprobs == whole.logprobs[:6]  # the same draws
