"""Equivalence-aware answer keys: one table of equivalent and non-equivalent pairs.

Each row: (format, completion A, completion B, whether they must vote together).
"""

import pytest

from manyminds.answers import extract, is_correct
from manyminds.types import AnswerFormat, Task
from manyminds.answers.equivalence import unify_keys

N, C, Y, T, M = AnswerFormat.NUMBER, AnswerFormat.CHOICE, AnswerFormat.YES_NO, AnswerFormat.TEXT, AnswerFormat.MATH

SAME = [
    # numbers: separators, decimals, currency, GSM8K marks, LaTeX, fractions
    (N, "1,000", "1000"), (N, "1000.0", "1000"), (N, "The answer is $1,000.", "1000"), (N, "#### 1000", "1,000"),
    (N, "0.5", "1/2"), (N, "0.5", "\\frac{1}{2}"), (N, "\\boxed{\\dfrac12}", "0.5"), (N, "$\\frac{1}{2}$", "1/2"),
    (N, "x = 3", "3"), (N, "The answer is 3.", "3"), (N, "3.00", "3"), (N, "-3.50", "-3.5"), (N, "The answer is -7", "−7"),
    (N, "\\boxed{42}", "42"), (N, "So the total is 42 apples.", "42"), (N, "The answer is 0.25", "1/4"),
    (N, "\\frac{3}{4}", "0.75"), (N, "12", "The answer is 12."), (N, "Answer: 12", "12"), (N, "The final answer is 12", "12"),
    (N, "$1{,}000$", "1000"), (N, "The answer is \\$5.", "5"), (N, "2/4", "0.5"), (N, "1/3", "2/6"), (N, "007", "7"),
    (N, ".5", "0.5"), (N, "The answer is 4 + 9 = 13.", "13"), (N, "\\tfrac{1}{4}", "0.25"), (N, "50\\%", "50"),
    (N, "1,234,567", "1234567"), (N, "The answer is 3.14", "3.140"), (N, "10.", "10"), (N, "The answer is 100 dollars.", "100"),
    # choices
    (C, "(B)", "B"), (C, "B.", "b"), (C, "the answer is b", "B"), (C, "The answer is (C).", "C"), (C, "Answer: D) 21", "D"),
    (C, "[A]", "A"), (C, "a", "(A)"), (C, "The answer is E", "e."), (C, "B:", "The answer is B."),
    # yes / no
    (Y, "Yes", "yes."), (Y, "YES!", "yes"), (Y, "No.", "no"), (Y, "The answer is yes.", "Yes"), (Y, "True", "yes"),
    (Y, "false", "No"), (Y, "No, because it cannot.", "no"), (Y, "**Yes**", "yes"),
    # free text
    (T, "The Eiffel Tower.", "eiffel tower"), (T, "Paris!", "paris"), (T, "The answer is Paris.", "Paris"),
    (T, "an apple", "Apple"), (T, "New  York", "new york"), (T, "The answer is the Moon", "moon"),
    (T, "\"Hamlet\"", "hamlet"), (T, "Answer: blue", "Blue."),
    # competition math: math-verify decides what the normalisation cannot
    (M, "\\boxed{\\dfrac{\\sqrt{2}}{2}}", "\\boxed{\\sqrt{2}/2}"), (M, "\\boxed{0.5}", "\\boxed{\\frac{1}{2}}"),
    (M, "\\boxed{x = 3}", "\\boxed{3}"), (M, "\\boxed{\\frac{\\pi}{2}}", "\\boxed{\\pi/2}"),
    (M, "The answer is $\\frac12$.", "\\boxed{0.5}"), (M, "\\boxed{2\\sqrt{3}}", "\\boxed{\\sqrt{12}}"),
    (M, "\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\boxed{(3,\\frac{\\pi}{2})}"), (M, "\\boxed{10}", "\\boxed{10.0}"),
    (M, "\\boxed{\\frac{6}{4}}", "\\boxed{\\frac{3}{2}}"), (M, "\\boxed{1,000}", "\\boxed{1000}"),
    (M, "\\boxed{-\\frac{1}{3}}", "\\boxed{\\frac{-1}{3}}"), (M, "\\boxed{x^2+2x+1}", "\\boxed{(x+1)^2}"),
    # found in review: scientific notation, markdown and named options, signed text, reordered terms
    (N, "1e3", "1000"), (N, "The answer is 1.5e-3", "0.0015"), (N, "2.5E2", "250"), (N, "The answer is -1e2.", "-100"),
    (C, "**A**", "A"), (C, "option D", "D"), (C, "The correct choice is E.", "E"), (C, "**(C)**", "C"),
    (C, "Answer: **B**", "B"), (C, "The answer is option C", "C"), (C, "I choose (D).", "D"),
    (C, "Option B is correct.", "B"), (C, "The correct option: A", "A"), (C, "The best choice is (B).", "b"),
    (Y, "**No**", "no"), (Y, "The answer is: No.", "no"),
    (T, "-10", "The answer is -10."), (T, "\u221210", "-10"), (T, "3.5", "The answer is 3.5"),
    (T, "The answer is 1,000", "1000"), (T, "-0.5 degrees", "-.5 degrees"),
    (M, "\\boxed{3x+2}", "\\boxed{2+3x}"), (M, "The answer is $3x+2$", "\\boxed{2+3x}"),
    (M, "\\boxed{2(x+1)}", "\\boxed{2x+2}"), (M, "\\boxed{a+b}", "\\boxed{b+a}"), (M, "\\boxed{1e3}", "\\boxed{1000}"),
]

DIFFERENT = [
    (N, "12", "13"), (N, "0.5", "0.6"), (N, "1/2", "1/3"), (N, "-3", "3"), (N, "1,000", "100"), (N, "1000", "10000"),
    (N, "The answer is 12.", "The answer is 21."), (N, "3.14", "3.15"), (N, "#### 7", "#### 8"), (N, "\\frac{1}{2}", "\\frac{2}{1}"),
    (N, "x = 3", "x = 4"), (N, "0.1", "0.01"), (N, "2", "20"), (N, "50", "5"), (N, "1/4", "0.2"),
    (C, "(B)", "(C)"), (C, "A", "B."), (C, "the answer is b", "the answer is d"), (C, "Answer: D) 21", "Answer: A) 21"),
    (C, "(E)", "(A)"), (C, "b", "c"),
    (Y, "Yes", "No"), (Y, "True", "False"), (Y, "The answer is no.", "The answer is yes."), (Y, "yes.", "no."),
    (T, "Paris", "Lyon"), (T, "The Eiffel Tower", "The Louvre"), (T, "blue", "red"), (T, "New York", "York"),
    (T, "the moon", "the sun"), (T, "Hamlet", "Macbeth"),
    (M, "\\boxed{\\frac{\\sqrt{2}}{2}}", "\\boxed{\\sqrt{2}}"), (M, "\\boxed{0.5}", "\\boxed{\\frac{1}{3}}"),
    (M, "\\boxed{3}", "\\boxed{-3}"), (M, "\\boxed{\\pi}", "\\boxed{2\\pi}"), (M, "\\boxed{(3, 4)}", "\\boxed{(4, 3)}"),
    (M, "\\boxed{x^2}", "\\boxed{x^3}"), (M, "\\boxed{10}", "\\boxed{100}"), (M, "\\boxed{\\sqrt{3}}", "\\boxed{3}"),
    (T, "-10", "10"), (T, "3.5", "35"), (T, "-0.5", "0.5"), (N, "1e3", "1e4"), (N, "1e3", "13"),
    (C, "**A**", "**B**"), (C, "option D", "option A"), (C, "The correct choice is E.", "The correct choice is A."),
    (C, "Option B is correct.", "Option C is correct."),
    (M, "\\boxed{3x+2}", "\\boxed{3x-2}"), (M, "\\boxed{2+3x}", "\\boxed{2+3y}"),
]


def test_the_table_is_large_enough():
    assert len(SAME) + len(DIFFERENT) >= 100


def keys(fmt, a, b):
    task = Task(question="q", format=fmt)
    ka, kb = extract(task, a), extract(task, b)
    if fmt is M and ka is not None and kb is not None:
        mapping = unify_keys([ka, kb])
        ka, kb = mapping[ka], mapping[kb]
    return ka, kb


@pytest.mark.parametrize(("fmt", "a", "b"), SAME, ids=[f"same-{i}" for i in range(len(SAME))])
def test_equivalent_answers_share_a_key(fmt, a, b):
    ka, kb = keys(fmt, a, b)
    assert ka is not None and ka == kb, (a, b, ka, kb)


@pytest.mark.parametrize(("fmt", "a", "b"), DIFFERENT, ids=[f"diff-{i}" for i in range(len(DIFFERENT))])
def test_different_answers_keep_different_keys(fmt, a, b):
    ka, kb = keys(fmt, a, b)
    assert ka != kb, (a, b, ka, kb)


@pytest.mark.parametrize(("fmt", "gold", "answer"), [
    (T, "-10", "The answer is -10."), (N, "-10", "The answer is -10."), (M, "3x+2", "\\boxed{2+3x}"),
    (M, "\\frac{1}{2}", "The answer is $0.5$."), (C, "B", "**B**"), (T, "3.5", "3.5"),
])
def test_gold_answers_score_by_the_same_rules_as_samples(fmt, gold, answer):
    from manyminds.backends import Scripted
    from manyminds.strategies import SelfConsistency

    result = SelfConsistency(n=3).solve(Task(question="q", format=fmt, gold=gold), backend=Scripted([answer]))
    assert is_correct(result), (gold, answer, result.answer)
