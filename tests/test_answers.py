"""Answer extraction: equivalent answers share a key; unreadable ones give None."""

import pytest

from manyminds.answers import extract, extract_choice, extract_number, extract_text, extract_yes_no, normalise_gold
from manyminds.types import AnswerFormat, Task


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("The answer is 12.", "12"),
        ("Natalia sold 48 clips... #### 72", "72"),
        ("so she has 5 left.\n#### 1,000", "1000"),
        ("The answer is $1,000.", "1000"),
        ("It costs 1000.0 dollars", "1000"),
        ("1,000", "1000"),
        ("The answer is \"4 + 9 = 13.\"", "13"),
        ("1 + 5 = 6", "6"),
        ("We get \\boxed{42} in the end, not 7", "42"),
        ("The answer is -3.", "-3"),
        ("x = -3.50", "-3.5"),
        ("The answer is 1/2", "0.5"),
        ("The answer is 1/3", "1/3"),
        ("Final answer: 0.25", "0.25"),
        ("The answer is 7. Because 3 + 4 = 7 and 2 more is 9", "7"),
        ("I have no idea.", None),
        ("", None),
    ],
)
def test_number_keys(text, key):
    assert extract_number(text) == key


def test_equivalent_numbers_vote_together():
    keys = {extract_number(t) for t in ["1,000", "1000", "1000.0", "The answer is $1,000.", "#### 1000"]}
    assert keys == {"1000"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("(B)", "B"),
        ("B.", "B"),
        ("b", "B"),
        ("the answer is b", "B"),
        ("The answer is (C) because ...", "C"),
        ("Answer: D) 21", "D"),
        ("I think it is (A), no wait (E)", "E"),
        ("None of them", None),
    ],
)
def test_choice_keys(text, key):
    assert extract_choice(text) == key


def test_choice_by_option_text():
    assert extract_choice("The answer is 21", ("19", "21", "23")) == "B"
    assert extract_choice("The answer is 22", ("19", "21", "23")) is None


@pytest.mark.parametrize(
    ("text", "key"),
    [("Yes.", "yes"), ("yes", "yes"), ("No, because...", "no"), ("The answer is no.", "no"), ("True", "yes"),
     ("So it must be false.", "no"), ("Perhaps.", None)],
)
def test_yes_no_keys(text, key):
    assert extract_yes_no(text) == key


def test_text_keys_normalise():
    assert extract_text("The answer is The Eiffel Tower.") == "eiffel tower"
    assert extract_text("eiffel tower!") == "eiffel tower"
    assert extract_text("   ") is None


def test_gold_uses_the_same_rules():
    assert normalise_gold(Task(question="q", gold="1,000")) == "1000"
    assert normalise_gold(Task(question="q", format=AnswerFormat.CHOICE, gold="(c)")) == "C"
    assert normalise_gold(Task(question="q")) is None


def test_extract_dispatches_on_format():
    assert extract(Task(question="q", format=AnswerFormat.YES_NO), "Yes.") == "yes"
    assert extract(Task(question="q", format=AnswerFormat.TEXT), "Paris.") == "paris"


def test_every_answer_format_has_all_its_rules():
    from manyminds.answers import FORMATS
    from manyminds.strategies.prompting import question_prompt
    from manyminds.types import AnswerFormat

    assert set(FORMATS) == set(AnswerFormat)
    for fmt, rules in FORMATS.items():
        task = Task(question="What is it?", format=fmt, choices=["one", "two"] if fmt is AnswerFormat.CHOICE else None)
        assert rules.form and rules.direct and callable(rules.extract)
        for style in ("cot", "direct"):
            assert "What is it?" in question_prompt(task, style)
        assert rules.extract("The answer is 1.", task.choices) is None or isinstance(rules.extract("1", None), (str, type(None)))
