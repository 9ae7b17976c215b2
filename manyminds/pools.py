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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from manyminds.answers import extract
from manyminds.errors import ConfigError
from manyminds.types import AnswerFormat, Candidate, Generation, Result, Task, TokenLogprob


class PoolQuestion:
    """One question of a pool: its task and its candidates, in sample order."""

    __slots__ = ("task", "candidates")

    def __init__(self, task: Task, candidates: list[Candidate]) -> None:
        self.task = task
        self.candidates = candidates


def _option_key(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    try:
        return str(int(float(raw)))
    except (TypeError, ValueError):
        return str(raw).strip() or None


def _candidate(index: int, text: str, answer: str | None, logprobs: Sequence[float] | None = None,
               tokens: int | None = None) -> Candidate:
    generation = Generation(
        text=text, index=index, completion_tokens=tokens or (len(logprobs) if logprobs else 0),
        logprobs=tuple(TokenLogprob(token="", logprob=float(lp)) for lp in logprobs) if logprobs else None,
        cached=True,
    )
    return Candidate(index=index, text=text, answer=answer, generation=generation)


def parse_pool_line(row: dict[str, Any], number: int) -> PoolQuestion:
    if "samples" in row:  # native
        fmt = AnswerFormat(row.get("format", "number"))
        task = Task(question=row.get("question") or f"question {number}", format=fmt,
                    gold=None if row.get("gold") is None else str(row["gold"]), id=str(row.get("id", number)))
        cands = []
        for i, s in enumerate(row["samples"]):
            answer = s["answer"] if "answer" in s else extract(task, s.get("text", ""))
            cands.append(_candidate(i, s.get("text", ""), answer, s.get("logprobs"), s.get("tokens")))
        return PoolQuestion(task, cands)
    if "generated_answer" in row:  # ESC: chain-of-thought texts ending "The answer is X."
        task = Task(question=row["question"], format=AnswerFormat.TEXT, gold=str(row["answer"]), id=str(number))
        return PoolQuestion(task, [_candidate(i, t, extract(task, t)) for i, t in enumerate(row["generated_answer"])])
    if "answers" in row and "gold" in row:  # ConSol: extracted option indices
        task = Task(question=row.get("question") or f"question {row.get('id', number)}", format=AnswerFormat.TEXT,
                    gold=_option_key(row["gold"]), id=str(row.get("id", number)))
        tokens = row.get("tokens") or [None] * len(row["answers"])
        return PoolQuestion(task, [
            _candidate(i, str(a), _option_key(a), tokens=None if t is None else int(float(t)))
            for i, (a, t) in enumerate(zip(row["answers"], tokens))
        ])
    raise ConfigError(f"pool line {number}: unknown format (keys: {', '.join(sorted(row))})")


def load_pool(path: str | Path) -> list[PoolQuestion]:
    """Read a pool file (native, ESC or ConSol format) into tasks with candidates."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"pool file not found: {path}")
    out = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ConfigError(f"{path}:{number}: not JSON: {error}") from error
                out.append(parse_pool_line(row, number))
    return out


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
