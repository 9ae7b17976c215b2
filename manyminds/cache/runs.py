"""Stored runs: a benchmark's or a CLI run's results kept beside the samples they used.

`StoredRuns` (`cache.runs`) is the component of `GenerationCache` that writes and reads the
`runs` and `results` tables (schema 3): a run's label, strategy, parameters,
meta and fingerprint, and one row per question with its result, score and
error. The runner resumes a run by its fingerprint; `report` and
`reaggregate` read it read-only.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any


from manyminds.errors import CacheError
from manyminds.types import Result, Task

if TYPE_CHECKING:
    from manyminds.cache.store import GenerationCache
    from manyminds.types import Result, Task


class StoredRuns:
    """Run and result rows: a component of the cache (`cache.runs`), using its connection
    through two public doors: `write_transaction()` and `reading()`."""

    def __init__(self, cache: "GenerationCache") -> None:
        self._cache = cache

    def record(self, label: str, results: "Sequence[Result]") -> int:
        """Store a run's results (every candidate included); returns the run id."""
        first = results[0] if results else None
        with self._cache.write_transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (label, strategy, params, created) VALUES (?, ?, ?, ?)",
                (label, first.strategy if first else "", json.dumps(first.strategy_params if first else {}),
                 time.time()),
            )
            run = cursor.lastrowid
            assert run is not None  # an INSERT always has one
            _insert_results(conn, run, [(k, r.task, r, None, None) for k, r in enumerate(results)])
        return run

    def all(self) -> list[dict[str, Any]]:
        with self._cache.reading() as reader:
            rows = reader.execute(
                "SELECT r.id, r.label, r.strategy, r.created, r.status, r.meta, COUNT(x.position), "
                "SUM(x.error IS NOT NULL) FROM runs r LEFT JOIN results x ON x.run = r.id GROUP BY r.id ORDER BY r.id"
            ).fetchall()
        return [{"id": i, "label": label, "strategy": st, "created": c, "status": status or "finished",
                 "meta": json.loads(meta) if meta else {}, "results": n, "failed": int(failed or 0)}
                for i, label, st, c, status, meta, n, failed in rows]

    # -- benchmark runs: recorded question by question, resumable ------------------

    def open(self, fingerprint: str, label: str, strategy: str, params: dict[str, Any],
             meta: dict[str, Any]) -> tuple[int, bool]:
        """The run with this fingerprint (resumed: True), or a new one; returns (id, resumed)."""
        with self._cache.write_transaction() as conn:
            row = conn.execute("SELECT id FROM runs WHERE fingerprint = ? ORDER BY id DESC LIMIT 1",
                               (fingerprint,)).fetchone()
            if row is not None:
                conn.execute("UPDATE runs SET status = 'running' WHERE id = ?", (row[0],))
                return int(row[0]), True
            cursor = conn.execute(
                "INSERT INTO runs (label, strategy, params, created, fingerprint, meta, status) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running')",
                (label, strategy, json.dumps(params), time.time(), fingerprint, json.dumps(meta)))
            assert cursor.lastrowid is not None  # an INSERT always has one
            return cursor.lastrowid, False

    def record_results(self, run: int, rows: "Sequence[tuple[int, Task, Result | None, str | None, str | None]]") -> None:
        """Store questions of a run: (position, task, result or None, score JSON, error).
        A question recorded again (a failure retried) replaces its row."""
        with self._cache.write_transaction() as conn:
            _insert_results(conn, run, rows)

    def rows(self, run: int) -> list[dict[str, Any]]:
        """Every stored question of a run, in order: position, task, result (None if failed), score, error."""
        with self._cache.reading() as reader:
            rows = reader.execute(
                "SELECT position, task, result, score, error FROM results WHERE run = ? ORDER BY position", (run,)
            ).fetchall()
        out = []
        for position, task, result, score, error in rows:
            parsed = Result.model_validate_json(result) if result else None
            out.append({"position": position,
                        "task": Task.model_validate_json(task) if task else (parsed.task if parsed else None),
                        "result": parsed, "score": json.loads(score) if score else None, "error": error})
        return out

    def info(self, run: int) -> dict[str, Any]:
        for info in self.all():
            if info["id"] == run:
                with self._cache.reading() as reader:
                    params = reader.execute("SELECT params FROM runs WHERE id = ?", (run,)).fetchone()[0]
                return {**info, "params": json.loads(params) if params else {}}
        raise CacheError(f"{self._cache.path} has no run {run}")

    def finish(self, run: int, status: str = "finished") -> None:
        with self._cache.reading() as reader:
            reader.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run))  # autocommit

    def load(self, run: int | None = None) -> list["Result"]:
        """The results of run `run` (default: the latest), in their order."""
        with self._cache.reading() as reader:
            if run is None:
                row = reader.execute("SELECT MAX(id) FROM runs").fetchone()
                run = row[0] if row else None
            if run is None:
                raise CacheError(f"{self._cache.path} holds no stored run: `manyminds run` and `bench` store theirs")
            rows = reader.execute(
                "SELECT result FROM results WHERE run = ? ORDER BY position", (run,)
            ).fetchall()
        if not rows:
            raise CacheError(f"{self._cache.path} has no run {run}")
        return [Result.model_validate_json(r[0]) for r in rows if r[0] is not None]  # failed questions have none


def _insert_results(conn: sqlite3.Connection, run: int,
                    rows: "Sequence[tuple[int, Task, Result | None, str | None, str | None]]") -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO results (run, position, task_id, answer, result, task, score, error) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(run, position, task.id, result.answer if result else None, result.model_dump_json() if result else None,
          task.model_dump_json(), score, error) for position, task, result, score, error in rows])
