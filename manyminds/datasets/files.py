"""A user's own data file (JSON lines, a JSON list, or CSV) read as Tasks.

    tasks = from_file("mine.jsonl", question_field="q", answer_field="a", format="number")

Gold answers are read by the format's own rules, so a GSM8K-style solution
(`... #### 18`) gives the gold 18, a choice may be given as its letter, its
0-based index or its text, and yes/no as yes/no/true/false. A record without
a field, or whose gold cannot be read, is an error naming the file, the line
and the field.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from manyminds.datasets.reading import DataError, reading_errors, files_version, read_json, read_json_lines
from manyminds.errors import ConfigError
from manyminds.types import OPTION_LETTERS, AnswerFormat, Task
from manyminds.answers import extract, normalise_text


def _records(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, record) pairs; `where` is 'file:line' for the error messages."""
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix.lower() == ".csv":
        with reading_errors(path, lambda: path.name):
            rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
        for k, row in enumerate(rows):
            if None in row:  # DictReader keeps a row's surplus values under the key None
                raise DataError(f"{path.name}:{k + 2}: {len(row[None])} more value(s) than the header has columns "
                                f"({', '.join(str(c) for c in row if c is not None)})")
            if any(value is None for value in row.values()):
                raise DataError(f"{path.name}:{k + 2}: fewer values than the header has columns")
        return [(f"{path.name}:{k + 2}", row) for k, row in enumerate(rows)]  # line 1 is the header
    if path.suffix.lower() == ".json":
        data = read_json(path)
        if not isinstance(data, list):
            raise DataError(f"{path.name}: expected a JSON list of records")
        return [(f"{path.name} record {k}", row) for k, row in enumerate(data)]
    return [(f"{path.name}:{number}", row) for number, row in read_json_lines(path)]


_SCALARS = (str, int, float)


def _text(value: Any, where: str, field: str, *, truth: bool = False) -> str:
    """A question or gold answer: text or a number (or, with `truth`, true/false), never a list or an object."""
    if isinstance(value, bool) and truth:
        return str(value)
    if isinstance(value, bool) or not isinstance(value, _SCALARS):
        raise DataError(f"{where}: field {field!r} must be text or a number, not {type(value).__name__} "
                        f"({json.dumps(value)[:60] if not isinstance(value, float) else value})")
    if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
        raise DataError(f"{where}: field {field!r} is {value}, not an answer")
    return str(value)


def _choices(value: Any, where: str, field: str) -> tuple[str, ...]:
    if isinstance(value, str):  # CSV: a JSON list, or options separated by '|'
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                raise DataError(f"{where}: field {field!r} is not a JSON list of options") from None
        else:
            value = [part.strip() for part in stripped.split("|")]
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field {field!r} must be a list of options")
    return tuple(_text(v, where, f"{field}[{k}]") for k, v in enumerate(value))


def _gold(value: Any, format: AnswerFormat, choices: tuple[str, ...] | None, where: str) -> str:
    text = _text(value, where, "answer", truth=format is AnswerFormat.YES_NO).strip()
    if format is AnswerFormat.CHOICE:
        if choices is None:
            raise DataError(f"{where}: a choice task needs --choices-field")
        if len(text) == 1 and text.upper() in OPTION_LETTERS[: len(choices)]:
            return text.upper()
        if text.isdigit() and int(text) < len(choices):
            return OPTION_LETTERS[int(text)]
        matches = [OPTION_LETTERS[i] for i, c in enumerate(choices) if normalise_text(c) == normalise_text(text)]
        if len(matches) == 1:
            return matches[0]
        raise DataError(f"{where}: gold {text!r} is not an option's letter, index or text")
    if format in (AnswerFormat.TEXT, AnswerFormat.MATH, AnswerFormat.CODE):
        return text  # compared through normalise_gold, by the format's own rules
    key = extract(Task(question="-", format=format), text)  # '#### 18', 'True', '3,000'
    if key is None:
        raise DataError(f"{where}: gold {text!r} is not a {format.value} answer")
    return key


def from_file(
    path: str | Path,
    *,
    question_field: str = "question",
    answer_field: str = "answer",
    choices_field: str | None = None,
    id_field: str | None = None,
    format: AnswerFormat | str = AnswerFormat.NUMBER,
    limit: int | None = None,
) -> list[Task]:
    """Tasks from a .jsonl, .json or .csv file with the named fields (see the module docstring)."""
    try:
        format = AnswerFormat(format)
    except ValueError:
        raise ConfigError(f"unknown format {format!r}; choose one of {', '.join(f.value for f in AnswerFormat)}") \
            from None
    source = Path(path).expanduser()
    version = files_version((str(source),)) if source.is_file() else ""
    tasks = []
    for k, (where, record) in enumerate(_records(source)[:limit]):
        if not isinstance(record, dict):
            raise DataError(f"{where}: a record must be an object with named fields")
        for field in (question_field, answer_field, *( [choices_field] if choices_field else [])):
            if field not in record or record[field] in (None, ""):
                raise DataError(f"{where}: no {field!r} field (the record has {', '.join(record) or 'no fields'})")
        choices = _choices(record[choices_field], where, choices_field) if choices_field else None
        ident = str(record[id_field]) if id_field and id_field in record else str(k)
        tasks.append(Task(question=_text(record[question_field], where, question_field), format=format, choices=choices,
                          gold=_gold(_text(record[answer_field], where, answer_field, truth=format is AnswerFormat.YES_NO), format,
                                    choices, where), id=f"{source.stem}/{ident}",
                          metadata={"dataset": source.name, "split": "file", "dataset_version": version}))
    if not tasks:
        raise DataError(f"{source.name}: no records")
    return tasks
