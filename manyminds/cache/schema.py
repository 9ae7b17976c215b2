"""The cache file's schema and its migrations (append a migration, never edit one)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING



if TYPE_CHECKING:
    import sqlite_utils


SQLITE_MAGIC = b"SQLite format 3\x00"
SCHEMA_VERSION = 3
_META = "manyminds_meta"


def _migrate_v1(db: "sqlite_utils.Database") -> None:
    db.table("requests").create(
        {"key": str, "backend": str, "model": str, "request": str, "created": float},
        pk="key",
        if_not_exists=True,
    )
    db.table("generations").create(
        {
            "key": str,
            "idx": int,
            "text": str,
            "finish_reason": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "logprobs": str,
            "request_id": str,
            "created": float,
        },
        pk=("key", "idx"),
        if_not_exists=True,
    )


def _migrate_v2(db: "sqlite_utils.Database") -> None:
    """Runs and their results, so a stored run can be re-aggregated without generating."""
    db.table("runs").create(
        {"id": int, "label": str, "strategy": str, "params": str, "created": float}, pk="id", if_not_exists=True
    )
    db.table("results").create(
        {"run": int, "position": int, "task_id": str, "answer": str, "result": str},
        pk=("run", "position"),
        foreign_keys=[("run", "runs", "id")],
        if_not_exists=True,
    )


def _migrate_v3(db: "sqlite_utils.Database") -> None:
    """Benchmark runs: what a run ran on (meta), a fingerprint to resume it by, its status; each
    question's task, score and error, so a failed question is kept with what went wrong."""
    runs = db.table("runs")
    for column in ("fingerprint", "meta", "status"):
        if column not in runs.columns_dict:
            runs.add_column(column, str)
    runs.create_index(["fingerprint"], if_not_exists=True)
    results = db.table("results")
    for column in ("task", "score", "error"):
        if column not in results.columns_dict:
            results.add_column(column, str)


# Migration i takes the schema from version i to i+1; append, never edit.
MIGRATIONS: "list[Callable[[sqlite_utils.Database], None]]" = [_migrate_v1, _migrate_v2, _migrate_v3]
