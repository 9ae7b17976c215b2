"""Merging cache files: the samples and runs of one cache added to another (`manyminds cache merge`).

Replicas of `manyminds serve` behind a load balancer may share one cache file (WAL, each write one
`BEGIN IMMEDIATE` transaction), or each keep its own and have them merged later; a benchmark run on
several machines without Ray likewise. A sample is identified by its request key and index, so a
sample both files hold is kept once (the target's copy; seeds make them the same sample). A run of
the source whose fingerprint the target has (the same benchmark, resumed elsewhere) gains the
questions the target lacks or holds only as failures; any other run is copied under a new id.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from manyminds.cache.store import GenerationCache
from manyminds.errors import CacheError


@dataclass(frozen=True)
class Merged:
    """What a merge added to the target."""

    samples: int
    requests: int
    runs: int
    results: int


def merge(target: "str | Path", source: "str | Path") -> Merged:
    """Add `source`'s samples and runs to `target` (created if missing); `source` is only read."""
    target, source = Path(target), Path(source)
    if target.resolve() == source.resolve():
        raise CacheError(f"{source} is the target itself: nothing to merge")
    with GenerationCache(source, read_only=True):  # ours, and readable: refused here otherwise
        pass
    with GenerationCache(target) as cache:  # created or migrated; its pending samples flushed on close
        path = cache.path
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS source", (str(source.resolve()),))
        conn.execute("BEGIN IMMEDIATE")
        try:
            added = _merge(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("DETACH DATABASE source")
    except sqlite3.Error as error:
        raise CacheError(f"merging {source} into {target} failed: {error}") from error
    finally:
        conn.close()
    return added


def _merge(conn: sqlite3.Connection) -> Merged:
    before = conn.total_changes
    conn.execute("INSERT OR IGNORE INTO main.requests SELECT * FROM source.requests")
    requests = conn.total_changes - before
    before = conn.total_changes
    conn.execute("INSERT OR IGNORE INTO main.generations SELECT * FROM source.generations")
    samples = conn.total_changes - before
    runs = results = 0
    columns = "label, strategy, params, created, fingerprint, meta, status"
    for (source_id, fingerprint) in conn.execute("SELECT id, fingerprint FROM source.runs ORDER BY id").fetchall():
        known = None if fingerprint is None else conn.execute(
            "SELECT id FROM main.runs WHERE fingerprint = ? ORDER BY id DESC LIMIT 1", (fingerprint,)).fetchone()
        if known is None:
            target_id = conn.execute(f"INSERT INTO main.runs ({columns}) SELECT {columns} FROM source.runs "
                                     "WHERE id = ?", (source_id,)).lastrowid
            runs += 1
        else:
            target_id = known[0]
        before = conn.total_changes
        # a question the target lacks, or holds only as a failure the source has a result for
        conn.execute(
            "INSERT OR REPLACE INTO main.results (run, position, task_id, answer, result, task, score, error) "
            "SELECT ?, s.position, s.task_id, s.answer, s.result, s.task, s.score, s.error FROM source.results s "
            "WHERE s.run = ? AND NOT EXISTS (SELECT 1 FROM main.results m WHERE m.run = ? AND m.position = s.position "
            "AND (m.result IS NOT NULL OR s.result IS NULL))",
            (target_id, source_id, target_id))
        results += conn.total_changes - before
    return Merged(samples=samples, requests=requests, runs=runs, results=results)
