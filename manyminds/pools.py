"""Sample pools: many recorded samples per question, for re-aggregation at no generation cost.

A pool is JSONL, one question per line. The native format is
{"id", "question", "gold", "format", "samples": [{"text", "answer", "logprobs", "tokens"}]}
(`answer` optional: extracted again if absent; `logprobs` a list of token
logprobs, optional). Two published formats are read too: the ESC pools
({"question", "answer", "generated_answer": [texts]}) and the ConSol pools
({"id", "gold", "answers": [...], "tokens": [...]}).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from manyminds.answers import NUMBER_ONLY, extract, normalise_number
from manyminds.errors import ConfigError, one_line
from manyminds.types import AnswerFormat, Candidate, Generation, Result, Task, TokenLogprob
from manyminds.datasets.reading import read_json_lines


class PoolQuestion:
    """One question of a pool: its task and its candidates, in sample order."""

    __slots__ = ("task", "candidates")

    def __init__(self, task: Task, candidates: list[Candidate]) -> None:
        self.task = task
        self.candidates = candidates


def _option_key(raw: Any) -> str | None:
    """A recorded, already extracted answer as a key: numbers by value ("2.0" -> "2",
    "106.12" stays "106.12"), anything else as its stripped text."""
    if raw is None or raw == "":
        return None
    text = str(raw).strip()
    number = normalise_number(text) if NUMBER_ONLY.fullmatch(text) else None
    return number if number is not None else (text or None)


def _candidate(index: int, text: str, answer: str | None, logprobs: Sequence[float] | None = None,
               tokens: int | None = None) -> Candidate:
    generation = Generation(
        text=text, index=index, completion_tokens=tokens or (len(logprobs) if logprobs else 0),
        logprobs=tuple(TokenLogprob(token="", logprob=float(lp)) for lp in logprobs) if logprobs else None,
        cached=True,
    )
    return Candidate(index=index, text=text, answer=answer, generation=generation)


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)


class NativeSample(_Record):
    text: str = ""
    answer: str | None = None
    logprobs: list[float] | None = None
    tokens: int | None = None

    @field_validator("logprobs")
    @classmethod
    def _log_probabilities(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(lp > 0 for lp in value):
            raise ValueError(f"a log-probability is at most 0, got {max(value)}")
        return value


class NativeRecord(_Record):
    samples: list[NativeSample]
    id: str | int | None = None
    question: str | None = None
    gold: str | int | float | None = None
    format: AnswerFormat = AnswerFormat.NUMBER


class ESCRecord(_Record):
    question: str
    answer: str | int | float
    generated_answer: list[str]


class ConSolRecord(_Record):
    gold: str | int | float
    answers: list[str | int | float | None]
    tokens: list[str | int | float | None] | None = None
    id: str | int | None = None
    question: str | None = None


def _validated(model: type[_Record], row: dict[str, Any], where: str) -> Any:
    try:
        return model.model_validate(row, strict=False) if model is NativeRecord else model.model_validate(row)
    except ValidationError as error:
        problems = one_line(error, "record", limit=3, inputs=False)
        raise ConfigError(f"{where}: not a {model.__name__.removesuffix('Record')} pool record ({problems})") from None


def esc_letters(text: str) -> str:
    """A Last Letters answer as the ESC authors extract it: the letters after the last
    'the answer is', lower-cased ('The answer is "eks-a".' -> 'eksa'); without that phrase,
    the letters of the whole text (a key no other sample shares, as in their code); a reply
    with no letters there is the empty key, which votes (and stops ESC) as in their code.
    Our text rule would also drop articles, turning the answer 'an' into nothing."""
    tail = text.lower().rpartition("the answer is")[2]
    return re.sub(r"[^a-z]", "", tail)


def parse_pool_line(row: Any, number: int, where: str | None = None) -> PoolQuestion:
    """One pool line (already parsed JSON) as a question; ConfigError naming the line if it is none."""
    where = where or f"pool line {number}"
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: a pool line must be a JSON object, got {type(row).__name__} {str(row)[:40]}")
    if "samples" in row:  # native
        if not isinstance(row["samples"], list) or any(not isinstance(x, dict) for x in row["samples"]):
            raise ConfigError(f"{where}: 'samples' must be a list of objects with a 'text'")
        if any("text" in x and not isinstance(x["text"], str) for x in row["samples"]):
            raise ConfigError(f"{where}: every sample's 'text' must be a string")
        record = _validated(NativeRecord, row, where)
        task = Task(question=record.question or f"question {number}", format=record.format,
                    gold=None if record.gold is None else str(record.gold),
                    id=str(record.id if record.id is not None else number))
        cands = []
        for i, sample in enumerate(record.samples):
            answer = sample.answer if "answer" in sample.model_fields_set else extract(task, sample.text)
            cands.append(_candidate(i, sample.text, answer, sample.logprobs, sample.tokens))
        return PoolQuestion(task, cands)
    if "generated_answer" in row:  # ESC: chain-of-thought texts ending "The answer is X."
        record = _validated(ESCRecord, row, where)
        gold = str(record.answer)
        if NUMBER_ONLY.fullmatch(gold.strip()):
            task = Task(question=record.question, format=AnswerFormat.NUMBER, gold=gold, id=str(number))
            keys = [extract(task, t) for t in record.generated_answer]
        else:  # letters (Last Letters): read as the pool's authors read them, so their figures reproduce
            task = Task(question=record.question, format=AnswerFormat.TEXT, gold=gold.lower(), id=str(number))
            keys = [esc_letters(t) for t in record.generated_answer]
        return PoolQuestion(task, [_candidate(i, t, k) for i, (t, k) in enumerate(zip(record.generated_answer, keys))])
    if "answers" in row and "gold" in row:  # ConSol: extracted answers (option indices or numbers)
        record = _validated(ConSolRecord, row, where)
        gold_key = _option_key(record.gold)
        option_keys = [_option_key(a) for a in record.answers]
        numeric = all(NUMBER_ONLY.fullmatch(k) for k in [gold_key, *option_keys] if k is not None)
        task = Task(question=record.question or f"question {record.id if record.id is not None else number}",
                    format=AnswerFormat.NUMBER if numeric else AnswerFormat.TEXT, gold=gold_key,
                    id=str(record.id if record.id is not None else number))
        tokens = record.tokens or [None] * len(record.answers)
        if len(tokens) != len(record.answers):
            raise ConfigError(f"{where}: 'tokens' has {len(tokens)} entries for {len(record.answers)} answers")
        return PoolQuestion(task, [
            _candidate(i, "" if a is None else str(a), k, tokens=_token_count(t, where))
            for i, (a, k, t) in enumerate(zip(record.answers, option_keys, tokens))
        ])
    found = ", ".join(sorted(row)) or "none"
    raise ConfigError(
        f"{where}: unknown pool format (keys: {found}); expected 'samples' (native), "
        "'generated_answer' (ESC) or 'answers' and 'gold' (ConSol)"
    )


def _token_count(raw: Any, where: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        count = int(float(raw))
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}: a token count must be a finite number, got {raw!r}") from None
    if count < 0:
        raise ConfigError(f"{where}: a token count cannot be negative, got {raw!r}")
    return count


def load_pool(path: str | Path) -> list[PoolQuestion]:
    """Read a pool file (native, ESC or ConSol format) into tasks with candidates."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pool file not found: {path}")
    return [parse_pool_line(row, number, f"{path}:{number}") for number, row in read_json_lines(path)]


def write_pool(path: str | Path, results: Iterable[Result]) -> int:
    """Write results as a native pool file; returns the number of questions written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for r in results:
            samples = []
            for c in r.candidates:
                g = c.generation
                sample: dict[str, Any] = {"text": c.text, "answer": c.answer}
                if g is not None and g.logprobs:
                    sample["logprobs"] = [round(t.logprob, 5) for t in g.logprobs]
                if g is not None:
                    sample["tokens"] = g.completion_tokens
                samples.append(sample)
            handle.write(json.dumps({"id": r.task.id, "question": r.task.question, "gold": r.task.gold,
                                     "format": r.task.format.value, "samples": samples}) + "\n")
            count += 1
    return count
