"""Loaders for code benchmarks: HumanEval and MBPP, as Tasks carrying their tests.

The data sets are not shipped with the package; point the loaders at their
files (the project's tests and benchmarks use ../shared/data). Each task's
metadata holds what the unit-test verifier needs: `tests`, `entry_point`,
`prompt`, `setup`, and the reference solution under `canonical`.
"""

from __future__ import annotations

from pathlib import Path

from manyminds.types import AnswerFormat, Task
from manyminds.datasets.reading import read_json_lines


def _lines(path: Path) -> list[dict]:
    return [row for _, row in read_json_lines(path)]


def humaneval_tasks(path: str | Path, limit: int | None = None) -> list[Task]:
    """HumanEval problems: complete the function whose header is the prompt."""
    tasks = []
    for row in _lines(Path(path))[:limit]:
        tasks.append(Task(
            question=f"Complete this Python function.\n\n```python\n{row['prompt']}```",
            format=AnswerFormat.CODE,
            id=row["task_id"],
            metadata={
                "prompt": row["prompt"], "tests": row["test"], "entry_point": row["entry_point"],
                "canonical": row["prompt"] + row["canonical_solution"],
            },
        ))
    return tasks


def mbpp_tasks(path: str | Path, limit: int | None = None, *, split: str = "test") -> list[Task]:
    """MBPP problems (test split: task ids 11-510): write the function the asserts call."""
    rows = _lines(Path(path))
    if split == "test":
        rows = [r for r in rows if 11 <= r["task_id"] <= 510]
    tasks = []
    for row in rows[:limit]:
        tests = "\n".join(row["test_list"])
        tasks.append(Task(
            question=f"{row['text']}\nYour code should pass these tests:\n{tests}",
            format=AnswerFormat.CODE,
            id=f"mbpp/{row['task_id']}",
            metadata={"tests": tests, "setup": row.get("test_setup_code", ""), "canonical": row["code"]},
        ))
    return tasks
