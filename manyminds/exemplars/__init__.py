"""Few-shot exemplars: worked question/answer pairs shown before the question.

Self-consistency, ESC and Adaptive-Consistency were all measured with
few-shot chain-of-thought prompts. Every sampling strategy takes
`exemplars=`: a named set (`"gsm8k-cot-8"`, the standard 8-shot GSM8K
chain of thought drawn from the training split; `"gsm8k-train"`, 256 of
them, the pool exemplar resampling draws from; `"mmlu-5"`, MMLU's standard
5-shot prompt: the 5 dev-split questions of the task's own subject, with
their options and the answer letter), a list of
`{"question": ..., "answer": ...}` pairs, or an `Exemplars`. They are shown
as earlier turns of the chat (`style="turns"`, each question asked as the
real one is asked, each answer as the assistant's reply) or as one text
block of `Q:`/`A:` pairs (`style="text"`, the papers' completion-style
prompts).
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from manyminds.errors import ConfigError

if TYPE_CHECKING:
    from manyminds.types import Task

NAMED: dict[str, tuple[str, int | None]] = {
    "gsm8k-cot-8": ("gsm8k_train_cot.jsonl", 8),
    "gsm8k-train": ("gsm8k_train_cot.jsonl", None),
    "mmlu-5": ("mmlu_dev.jsonl", None),
}
"""Named sets: (file in exemplars/data, how many of its first records; None for all)."""


class Exemplar(BaseModel):
    """One worked example: a question and the answer to show for it (reasoning and final answer).

    A multiple-choice exemplar carries its options, rendered as the real task's
    are; one with a `subject` is shown only before questions of that subject.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    choices: tuple[str, ...] | None = None
    subject: str | None = None


@lru_cache(maxsize=8)
def _read(file: str) -> tuple[Exemplar, ...]:
    text = resources.files("manyminds.exemplars").joinpath("data", file).read_text(encoding="utf-8")
    return tuple(Exemplar(question=r["question"], answer=r["answer"], choices=r.get("choices"),
                          subject=r.get("subject"))
                 for r in (json.loads(line) for line in text.splitlines() if line.strip()))


def named(name: str) -> tuple[Exemplar, ...]:
    """The exemplars of a named set."""
    if name not in NAMED:
        raise ConfigError(f"unknown exemplar set {name!r}: available are {', '.join(NAMED)}, "
                          "or give a list of {'question': ..., 'answer': ...}")
    file, count = NAMED[name]
    items = _read(file)
    return items if count is None else items[:count]


class Exemplars(BaseModel):
    """A set of exemplars and how to show them; recorded by name when it has one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    items: tuple[Exemplar, ...] = ()
    style: Literal["turns", "text"] = "turns"

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value, "items": named(value)}
        if isinstance(value, (list, tuple)):
            return {"items": tuple(value)}
        if isinstance(value, dict) and value.get("name") and not value.get("items"):
            return {**value, "items": named(value["name"])}
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> "Exemplars":
        if not self.items:
            raise ValueError("an exemplar set needs at least one exemplar")
        return self

    @model_serializer(mode="plain")
    def _recorded(self) -> Any:
        record: dict[str, Any] = ({"name": self.name} if self.name
                                  else {"items": [e.model_dump(exclude_none=True) for e in self.items]})
        if self.style != "turns":
            record["style"] = self.style
        return record["name"] if set(record) == {"name"} else record

    def for_task(self, task: "Task") -> "Exemplars":
        """The exemplars to show before `task`: all of them, or, in a set whose exemplars have
        subjects (MMLU's dev split), those of the task's `metadata["subject"]`."""
        if not any(e.subject for e in self.items):
            return self
        subject = task.metadata.get("subject")
        matched = tuple(e for e in self.items if e.subject == subject)
        if not matched:
            known = sorted({e.subject for e in self.items if e.subject})
            raise ConfigError(
                f"exemplar set {self.name or '(given)'!r} holds exemplars by subject, and task {task.id or task.question[:40]!r} "
                f"has {'no subject' if subject is None else f'subject {subject!r}, which it lacks'} "
                f"(its subjects: {', '.join(known[:5])}{', ...' if len(known) > 5 else ''})")
        return self if len(matched) == len(self.items) else Exemplars(items=matched, style=self.style)

    def draw(self, k: int, key: str) -> "Exemplars":
        """k of these, drawn without replacement by a generator seeded with `key` (reproducible)."""
        if not 1 <= k <= len(self.items):
            raise ConfigError(f"cannot draw {k} exemplars from a set of {len(self.items)}")
        rng = random.Random(key)
        return Exemplars(items=tuple(rng.sample(self.items, k)), style=self.style)
