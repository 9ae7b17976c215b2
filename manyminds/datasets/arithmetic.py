"""A seeded generator of arithmetic questions in graded levels, with gold answers.

Levels, easiest first:

- ``single-digit``: "What is 7 + 5?"
- ``two-digit``: sums and differences of two-digit numbers, "What is 47 - 19?"
- ``word-1``: one-step word problems, "Tom has 3 apples and buys 4 more. ..."
- ``word-2``: two-step word problems, "Tom has 3 apples, buys 4 more and eats 2. ..."

SmolLM2-135M, the embedded model, is informative on ``single-digit`` (it is
right often enough for voting to help) and near chance on the word problems,
which are there for larger models. The same (level, count, seed) always gives
the same questions.
"""

from __future__ import annotations

import random
from typing import Literal

from manyminds.errors import ConfigError
from manyminds.types import AnswerFormat, Task

Level = Literal["single-digit", "two-digit", "word-1", "word-2"]
LEVELS: tuple[str, ...] = ("single-digit", "two-digit", "word-1", "word-2")

_NAMES = ("Tom", "Sara", "Ali", "Mei", "Lena", "Omar", "Ravi", "Ana")
_THINGS = ("apples", "pencils", "marbles", "stickers", "books", "cookies", "coins", "shells")


def _single_digit(rng: random.Random) -> tuple[str, int]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return f"What is {a} + {b}?", a + b


def _two_digit(rng: random.Random) -> tuple[str, int]:
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    if rng.random() < 0.5:
        return f"What is {a} + {b}?", a + b
    a, b = max(a, b), min(a, b)
    return f"What is {a} - {b}?", a - b


def _word_1(rng: random.Random) -> tuple[str, int]:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    kind = rng.randrange(3)
    if kind == 0:
        return f"{name} has {a} {thing} and buys {b} more. How many {thing} does {name} have now?", a + b
    if kind == 1:
        a, b = max(a, b) + 1, min(a, b)
        return f"{name} had {a} {thing} and gave {b} to a friend. How many {thing} does {name} have left?", a - b
    return f"A box holds {a} {thing}. How many {thing} are in {b} boxes?", a * b


def _word_2(rng: random.Random) -> tuple[str, int]:
    name, thing = rng.choice(_NAMES), rng.choice(_THINGS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    c = rng.randint(1, a + b - 1)
    if rng.random() < 0.5:
        return (
            f"{name} has {a} {thing}, buys {b} more and then gives away {c}. "
            f"How many {thing} does {name} have now?",
            a + b - c,
        )
    k = rng.randint(2, 4)
    return (
        f"{name} buys {k} bags with {a} {thing} in each bag, and already had {b} {thing}. "
        f"How many {thing} does {name} have in all?",
        k * a + b,
    )


_GENERATORS = {
    "single-digit": _single_digit,
    "two-digit": _two_digit,
    "word-1": _word_1,
    "word-2": _word_2,
}


def arithmetic_tasks(level: str = "single-digit", count: int = 40, seed: int = 0) -> list[Task]:
    """`count` questions of `level`, the same for the same seed, each with its gold answer."""
    if level not in _GENERATORS:
        raise ConfigError(f"unknown arithmetic level {level!r}: choose one of {', '.join(LEVELS)}")
    if count < 1:
        raise ConfigError(f"count must be >= 1, got {count}")
    rng = random.Random(f"manyminds-arithmetic:{level}:{seed}")
    tasks = []
    for i in range(count):
        question, answer = _GENERATORS[level](rng)
        tasks.append(
            Task(
                question=question,
                format=AnswerFormat.NUMBER,
                gold=str(answer),
                id=f"{level}-{seed}-{i:04d}",
                metadata={"level": level, "seed": seed},
            )
        )
    return tasks
