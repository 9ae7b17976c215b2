"""The shared helpers for cutting quoted text and for a path's mean token probability."""

import math

import pytest

from manyminds.text import clip
from manyminds.types import Generation, TokenLogprob


def test_clip_marks_where_it_cut_and_leaves_short_text_alone():
    assert clip("short", 10) == "short"
    assert clip("a" * 12, 10) == "a" * 10 + " [...]"
    assert clip("a" * 12, 10, "...") == "a" * 10 + "..."


def test_mean_token_probability_is_the_exponentiated_mean_logprob():
    tokens = (TokenLogprob(token="a", logprob=-0.1), TokenLogprob(token="b", logprob=-0.3))
    assert Generation(text="ab", index=0, logprobs=tokens).mean_token_probability == pytest.approx(math.exp(-0.2))
    assert Generation(text="ab", index=0).mean_token_probability is None
