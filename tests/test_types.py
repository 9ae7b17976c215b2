"""Validation of the typed values: errors name the parameter and the value."""

import pytest
from pydantic import ValidationError

from manyminds.types import Generation, SamplingParams, Task, Usage


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.1, "temperature must be >= 0, got -0.1"),
        ("top_p", 0, "top_p must be in (0, 1], got 0"),
        ("max_tokens", 0, "max_tokens must be >= 1, got 0"),
        ("top_logprobs", 30, "top_logprobs must be in [0, 20], got 30"),
    ],
)
def test_sampling_params_errors_name_field_and_value(field, value, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        SamplingParams(**{field: value})


def test_sampling_params_reject_unknown_fields():
    with pytest.raises(ValidationError, match="n"):
        SamplingParams(n=4)


def test_empty_question_is_rejected():
    with pytest.raises(ValidationError, match="question is empty"):
        Task(question="  ")


def test_usage_counts_calls_by_request_and_prompt_tokens_once_per_call():
    gens = [
        Generation(text="a", index=0, prompt_tokens=10, completion_tokens=3, request_id="r1"),
        Generation(text="b", index=1, prompt_tokens=10, completion_tokens=4, request_id="r1"),
        Generation(text="c", index=2, prompt_tokens=10, completion_tokens=5, request_id="r2", cached=True),
    ]
    u = Usage.of(gens)
    assert (u.calls, u.samples, u.cached_samples, u.prompt_tokens, u.completion_tokens) == (1, 3, 1, 20, 12)


def test_trusted_construction_equals_validation():
    from manyminds.types import Candidate, trusted

    g = Generation(text="a", index=3, request_id="r")
    assert trusted(Generation, text="a", index=3, request_id="r") == g
    c = trusted(Candidate, index=0, text="a", answer="1", generation=g)
    assert c == Candidate(index=0, text="a", answer="1", generation=g)
    assert c.source == "sample" and c.verdict is None
    assert c.model_dump() == Candidate(index=0, text="a", answer="1", generation=g).model_dump()
