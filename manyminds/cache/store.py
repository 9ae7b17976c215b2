"""The generation cache: every sample is stored once, so a rerun or a crash never pays twice.

A row is keyed by (request key, sample index). The request key hashes the
canonical JSON of the backend's identity (kind, model, endpoint; never a
secret), the messages and every sampling parameter; `n` is not part of it.
So sample 7 of a request is the same row on every rerun, and asking for 16
samples after 8 generates only the 8 missing ones. At temperature 0 all
samples are the same, so they share the row of index 0.

Writes are queued and committed by one writer thread in batches, each in a
`BEGIN IMMEDIATE` transaction on a WAL-mode database, so the event loop never
waits on disk and several processes can share one file. Rows not yet
committed are visible to lookups from the moment they are queued.

A paid sample is never dropped: a batch whose commit fails (another process
holding the write lock, a full disk) is kept and retried. If the database
stays unwritable while the caller waits for its samples to be stored
(`flush`, `close`), the pending samples are written to a recovery file
beside it (or under ~/.cache/manyminds/pending) and the error says where;
the next time the cache is opened for writing they are read back.

The cache touches only files it owns: a new path is created atomically with
mode 0600 (samples can hold private prompts); an existing file is used only
if manyminds created it, so another application's SQLite database, or an
empty file, is refused untouched. Inspecting (`read_only=True`) opens the
file read-only, so a cache of another user can be looked at.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
import weakref
from urllib.parse import quote
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from manyminds.backends.base import Backend
from manyminds.errors import CacheError
from manyminds.types import Generation, TokenLogprob, trusted

from manyminds.cache.backend import CachedBackend
from manyminds.cache.runs import StoredRuns
from manyminds.cache.schema import _META, MIGRATIONS, SCHEMA_VERSION, SQLITE_MAGIC

if TYPE_CHECKING:

    pass

log = logging.getLogger("manyminds.cache")

class CacheStats(BaseModel):
    path: str
    requests: int
    generations: int
    prompt_tokens: int
    completion_tokens: int
    bytes: int
    models: dict[str, int]
    """Generations per backend:model."""
    schema_version: int


_open_caches: "weakref.WeakSet[GenerationCache]" = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for cache in list(_open_caches):
        try:
            cache.close()
        except Exception as error:  # pragma: no cover - best effort at interpreter exit
            log.warning("could not flush cache %s at exit: %s", cache.path, error)


def database_error(path: Path, error: BaseException, busy_timeout: float | None = None) -> CacheError:
    """A SQLite or file-system failure on the cache as one line that says what to do."""
    text = str(error)
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(error, PermissionError) or "readonly" in text or "unable to open" in text:
        who = ""
        try:
            info = path.stat()
            who = f" (owner uid {info.st_uid}, mode {info.st_mode & 0o777:o})"
        except OSError:
            pass
        return CacheError(f"cannot use the cache {path}{who}: {getattr(error, 'strerror', None) or text}. "
                          "Pass a cache of your own with --cache, or inspect this one with `manyminds cache stats`")
    if "locked" in text or "busy" in text or code in (5, 6):
        waited = f" (waited {busy_timeout:g} s for its write lock)" if busy_timeout else ""
        return CacheError(f"the cache {path} is locked by another process{waited}: let it finish, or pass "
                          "another --cache; nothing already stored is lost")
    if "disk is full" in text or code == 13 or getattr(error, "errno", None) == 28:
        return CacheError(f"the disk holding the cache {path} is full: free some space and run the same command "
                          "again; samples already generated are kept and are not generated again")
    return CacheError(f"the cache {path} failed: {text}")


def check_cache_path(path: Path) -> None:
    """Refuse, without touching anything, a path we must not or cannot use."""
    if path.is_symlink() and not path.exists():
        raise CacheError(f"cache path {path} is a symbolic link to {os.readlink(path)}, which does not exist; "
                         "nothing was created: point it at an existing cache or pass another path")
    if path.is_dir():
        raise CacheError(f"cache path {path} is a directory: give a file path such as {path}/cache.db")
    if not path.parent.exists():
        raise CacheError(
            f"cache directory {path.parent} does not exist: create it or pass another cache path"
        )
    if path.exists() and path.stat().st_size > 0:
        try:
            handle = path.open("rb")
        except OSError as error:
            raise database_error(path, error) from None
        with handle:
            if handle.read(16) != SQLITE_MAGIC:
                raise CacheError(
                    f"{path} is not a SQLite database; it was left untouched: pass another cache path"
                )


_RETRY = object()  # wakes the writer to retry failed batches
PENDING_DIR = Path("~/.cache/manyminds/pending")


class GenerationCache:
    """A SQLite store of generations; `wrap(backend)` gives a backend that consults it.

    Args:
        path: the database file; a new path is created (mode 0600).
        read_only: open for inspection only (stats, runs, lookups); nothing is written.
        busy_timeout: seconds one commit waits for another process's write lock.
        give_up_after: seconds a flush waits for a failing database before it saves the
            pending samples to a recovery file and raises.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval: float = 0.05,
        batch_size: int = 512,
        read_only: bool = False,
        busy_timeout: float = 30.0,
        give_up_after: float = 120.0,
    ):
        self.path = Path(path).expanduser()
        check_cache_path(self.path)
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.read_only = read_only
        self.busy_timeout = busy_timeout
        self.give_up_after = give_up_after
        self._read_lock = threading.Lock()
        self._pending: dict[tuple[str, int], tuple] = {}
        self._pending_lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._closed = False
        self._wrappers: weakref.WeakValueDictionary[int, CachedBackend] = weakref.WeakValueDictionary()
        try:
            if read_only:
                self._reader = self._open_read_only()
            else:
                if not self.path.exists():
                    self._create()
                self._reader = self._connect()
                self._check_ours(self._reader)
                self._migrate(self._reader)
        except sqlite3.OperationalError as error:
            raise database_error(self.path, error, self.busy_timeout) from None
        except sqlite3.DatabaseError as error:
            raise CacheError(f"{self.path} cannot be used as a cache: {error}") from error
        except OSError as error:
            raise database_error(self.path, error) from None
        self._writer = threading.Thread(target=self._write_loop, name="manyminds-cache", daemon=True)
        if not read_only:
            self._writer.start()
            self.recovered = self._recover()
        else:
            self.recovered = 0
        self.runs = StoredRuns(self)
        """The benchmark and CLI runs stored beside the samples (`cache/runs.py`)."""
        _open_caches.add(self)

    # -- opening -----------------------------------------------------------

    def _connect(self, path: Path | None = None) -> sqlite3.Connection:
        conn = sqlite3.connect(path or self.path, check_same_thread=False, isolation_level=None,
                               timeout=self.busy_timeout)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        """Open for inspection, writing nothing beside the file.

        With no write-ahead log beside it (no writer has the file open), the file is opened
        `immutable`: SQLite then creates no `-wal`/`-shm` files, so a cache in a folder the
        reader cannot write to (another user's) can be read. With a log present, a writer may be
        at work: `mode=ro` sees its committed rows; where that cannot share the writer's index
        (an unwritable folder) the file is read as it is on disk, without the log's newest rows.
        """
        if not self.path.is_file():
            raise CacheError(f"no cache file at {self.path}")
        base = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        wal = Path(f"{self.path}-wal")
        attempts = [base, base + "&immutable=1"] if wal.exists() else [base + "&immutable=1"]
        for k, uri in enumerate(attempts):
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            try:
                self._check_ours(conn)
                if k:
                    log.warning("reading %s without its write-ahead log (the folder is not writable): rows a "
                                "running writer has not checkpointed yet are not shown", self.path)
                return conn
            except sqlite3.OperationalError:
                conn.close()
                if k == len(attempts) - 1:
                    raise
        raise AssertionError("unreachable")

    def _create(self) -> None:
        """Create the database under a temporary name (mode 0600), then link it into place,
        so no other process ever sees a half-made file, and an existing one is never replaced."""
        temp = self.path.with_name(f".{self.path.name}.creating-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        try:
            conn = self._connect(temp)
            try:
                self._migrate(conn)
            finally:
                conn.close()
            try:
                os.link(temp, self.path)
            except FileExistsError:
                pass  # another process created it meanwhile: use theirs
            except OSError:
                if not self.path.exists():
                    os.replace(temp, self.path)  # a file system without hard links
        finally:
            for leftover in (temp, Path(f"{temp}-wal"), Path(f"{temp}-shm")):
                try:
                    leftover.unlink()
                except FileNotFoundError:
                    pass

    def _check_ours(self, conn: sqlite3.Connection) -> None:
        """Refuse, before writing anything, a file that manyminds did not create."""
        if self.path.stat().st_size == 0:
            raise CacheError(
                f"{self.path} is an empty file, not a manyminds cache; it was left untouched: "
                "delete it or pass another cache path"
            )
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if _META not in tables:
            shown = ", ".join(sorted(tables)[:6]) or "no tables"
            raise CacheError(
                f"{self.path} is a SQLite database that manyminds did not create ({shown}); "
                "it was left untouched: pass another cache path"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if self._schema_version(conn) == SCHEMA_VERSION:
            return  # the common case needs neither a write lock nor sqlite-utils
        import sqlite_utils

        db = sqlite_utils.Database(conn)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.table(_META).create({"name": str, "value": str}, pk="name", if_not_exists=True)
            version = self._schema_version(conn)
            if version > SCHEMA_VERSION:
                raise CacheError(
                    f"{self.path} has cache schema {version}, newer than this manyminds "
                    f"understands ({SCHEMA_VERSION}): upgrade manyminds"
                )
            for migrate in MIGRATIONS[version:]:
                migrate(db)
            db.execute(
                f"INSERT OR REPLACE INTO {_META} (name, value) VALUES ('schema_version', ?)",
                [str(SCHEMA_VERSION)],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_META,)
        ).fetchone()
        if not exists:
            return 0
        row = conn.execute(f"SELECT value FROM {_META} WHERE name = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    # -- reading -----------------------------------------------------------

    def lookup(self, key: str, indices: Iterable[int]) -> dict[int, Generation]:
        """The stored samples of request `key` among `indices`, by index."""
        wanted = sorted(set(indices))
        if not wanted:
            return {}
        found: dict[int, Generation] = {}
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT idx, text, finish_reason, prompt_tokens, completion_tokens, logprobs, "
                "request_id FROM generations WHERE key = ? AND idx BETWEEN ? AND ?",
                (key, wanted[0], wanted[-1]),
            ).fetchall()
        wanted_set = set(wanted)
        for row in rows:
            if row[0] in wanted_set:
                found[row[0]] = _generation(row)
        if self._pending:
            with self._pending_lock:
                for index in wanted_set - found.keys():
                    row = self._pending.get((key, index))
                    if row is not None:
                        found[index] = _generation((index, *row[2:8]))
        return found

    def stats(self) -> CacheStats:
        import sqlite_utils

        self.flush()
        db = sqlite_utils.Database(self._reader)
        models: dict[str, int] = {}
        for backend, model, count in db.execute(
            "SELECT r.backend, r.model, COUNT(*) FROM generations g JOIN requests r ON r.key = g.key "
            "GROUP BY r.backend, r.model ORDER BY 3 DESC"
        ).fetchall():
            models[f"{backend}:{model}"] = count
        prompt, completion = db.execute(
            "SELECT COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) FROM generations"
        ).fetchone()
        return CacheStats(
            path=str(self.path),
            requests=db["requests"].count,
            generations=db["generations"].count,
            prompt_tokens=prompt,
            completion_tokens=completion,
            bytes=self.path.stat().st_size,
            models=models,
            schema_version=SCHEMA_VERSION,
        )

    def count(self, key: str | None = None) -> int:
        """Committed rows (of one request, or all); flushes pending writes first."""
        self.flush()
        with self._read_lock:
            if key is None:
                return self._reader.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
            return self._reader.execute(
                "SELECT COUNT(*) FROM generations WHERE key = ?", (key,)
            ).fetchone()[0]

    # -- writing -----------------------------------------------------------

    def put(self, key: str, request: dict[str, Any], generations: Iterable[Generation]) -> None:
        """Queue generations of request `key` for storage; visible to lookups at once."""
        if self._closed:
            raise CacheError(f"cache {self.path} is closed")
        if self.read_only:
            raise CacheError(f"cache {self.path} was opened read-only")
        now = time.time()
        rows = []
        with self._pending_lock:
            for g in generations:
                logprobs = (
                    json.dumps([t.model_dump(exclude_none=True) for t in g.logprobs])
                    if g.logprobs is not None
                    else None
                )
                row = (
                    key,
                    g.index,
                    g.text,
                    g.finish_reason,
                    g.prompt_tokens,
                    g.completion_tokens,
                    logprobs,
                    g.request_id,
                    now,
                )
                self._pending.setdefault((key, g.index), row)
                rows.append(row)
        self._queue.put((key, request, rows))

    @contextlib.contextmanager
    def write_transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction outside the sample writer (stored runs), committed or rolled back
        whole. Samples are flushed first: a stored result never refers to unsaved samples."""
        if self.read_only:
            raise CacheError(f"cache {self.path} was opened read-only")
        self.flush()
        with self._read_lock:
            conn = self._reader
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # a full disk may already have ended it
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.OperationalError, OSError) as error:
                raise database_error(self.path, error, self.busy_timeout) from None

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The reading connection, held alone (it serves every thread of this process)."""
        with self._read_lock:
            yield self._reader

    def flush(self) -> None:
        """Block until every queued write is committed, retrying a failing database for up to
        `give_up_after` seconds; then raise, naming the file the pending samples were saved to."""
        if not self._writer.is_alive():
            self._raise_writer_error()
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        self._raise_writer_error()

    def _raise_writer_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            if isinstance(error, CacheError):
                raise error
            raise CacheError(f"writing to cache {self.path} failed: {error}") from error

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._writer.is_alive():
                self._queue.put(None)
                self._writer.join()
            self._reader.close()
            _open_caches.discard(self)

    def __enter__(self) -> "GenerationCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_loop(self) -> None:
        conn = self._connect()
        failed: list = []  # batches whose commit failed, kept in order and retried
        waiting: list[threading.Event] = []  # flushes waiting for them
        failing_since: float | None = None
        retry_wait = 0.25
        try:
            while True:
                try:
                    item = self._queue.get(timeout=retry_wait if failed else None)
                except queue.Empty:
                    item = _RETRY
                batch, stop = [], False
                deadline = time.monotonic() + self.flush_interval
                while item is not _RETRY:
                    if isinstance(item, threading.Event):
                        waiting.append(item)
                        break  # a flush request: commit what we have now
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        break
                    try:
                        item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                batch, failed = failed + batch, []
                error = self._commit(conn, batch) if batch else None
                if error is None:
                    failing_since, retry_wait = None, 0.25
                else:
                    failed = batch
                    failing_since = failing_since or time.monotonic()
                    retry_wait = min(retry_wait * 2, 5.0)
                    if (waiting or stop) and time.monotonic() - failing_since >= self.give_up_after:
                        self._error = self._give_up(failed, error, time.monotonic() - failing_since)
                        failed = []
                if not failed:
                    for event in waiting:
                        event.set()
                    waiting = []
                if stop:
                    if failed:  # closing while still failing: never drop them
                        self._error = self._give_up(failed, error, time.monotonic() - (failing_since or 0))
                    for event in waiting:
                        event.set()
                    return
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, batch: list) -> BaseException | None:
        """Commit a batch; on failure return the error (the rows stay pending and are retried)."""
        now = time.time()
        requests = {}
        rows = []
        for key, request, generation_rows in batch:
            requests[key] = (
                key,
                request["backend"].get("kind", ""),
                request["backend"].get("model", ""),
                json.dumps(request, sort_keys=True, ensure_ascii=False),
                now,
            )
            rows.extend(generation_rows)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR IGNORE INTO requests VALUES (?, ?, ?, ?, ?)", requests.values())
            conn.executemany("INSERT OR IGNORE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except Exception as error:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.warning("cache write of %d samples to %s failed (%s); keeping them and retrying", len(rows),
                        self.path, error)
            return error
        with self._pending_lock:
            for row in rows:
                self._pending.pop((row[0], row[1]), None)
        return None

    # -- recovery ------------------------------------------------------------

    def _pending_files(self) -> list[Path]:
        beside = sorted(self.path.parent.glob(f"{self.path.name}.pending-*.jsonl"))
        elsewhere = PENDING_DIR.expanduser()
        return beside + (sorted(elsewhere.glob(f"{self._pending_tag()}-*.jsonl")) if elsewhere.is_dir() else [])

    def _pending_tag(self) -> str:
        """This database's name in the shared recovery folder."""
        return hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]

    def _give_up(self, batches: list, error: BaseException | None, seconds: float) -> CacheError:
        """Save batches the database would not take to a recovery file; the error to raise."""
        count = sum(len(rows) for _, _, rows in batches)
        name = f"{os.getpid()}-{int(time.time())}-{secrets.token_hex(3)}.jsonl"
        candidates = [self.path.with_name(f"{self.path.name}.pending-{name}"),
                      PENDING_DIR.expanduser() / f"{self._pending_tag()}-{name}"]
        for target in candidates:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    for key, request, rows in batches:
                        handle.write(json.dumps({"key": key, "request": request, "rows": rows},
                                                ensure_ascii=False) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as spill_error:
                log.error("could not save pending samples to %s: %s", target, spill_error)
                continue
            return CacheError(
                f"could not write {count} samples to cache {self.path} for {seconds:.0f} s ({error}); "
                f"they were saved to {target} and are read back the next time this cache is opened"
            )
        return CacheError(  # pragma: no cover - neither the cache's folder nor the home is writable
            f"could not write {count} samples to cache {self.path} ({error}), nor save them elsewhere"
        )

    def _recover(self) -> int:
        """Read back samples that an earlier run could not store; returns how many."""
        recovered = 0
        for path in self._pending_files():
            try:
                lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
                batch = [(r["key"], r["request"], [tuple(row) for row in r["rows"]]) for r in lines]
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("cannot read recovery file %s (%s); left as it is", path, error)
                continue
            with self._pending_lock:
                for _, _, rows in batch:
                    for row in rows:
                        self._pending.setdefault((row[0], row[1]), row)
            for item in batch:
                self._queue.put(item)
            try:
                self.flush()
            except CacheError as error:
                log.warning("could not store the samples of %s yet: %s", path, error)
                continue
            path.unlink()
            recovered += sum(len(rows) for _, _, rows in batch)
            log.info("recovered %d samples from %s", recovered, path)
        return recovered

    def wrap(self, backend: Backend) -> "CachedBackend":
        """The cached view of `backend`; the same object for the same backend, so graphs
        built over it can be reused."""
        # Keyed by id, holding the wrapper weakly: the wrapper refers to its backend, so a
        # mapping keyed by the backend would keep both (and every graph built over them) alive.
        wrapper = self._wrappers.get(id(backend))
        if wrapper is None or wrapper.inner is not backend:
            wrapper = CachedBackend(backend, self)
            self._wrappers[id(backend)] = wrapper
        return wrapper


def _generation(row: tuple) -> Generation:
    index, text, finish_reason, prompt_tokens, completion_tokens, logprobs, request_id = row
    return trusted(
        Generation,
        text=text,
        index=index,
        finish_reason=finish_reason,
        prompt_tokens=prompt_tokens or 0,
        completion_tokens=completion_tokens or 0,
        logprobs=None
        if logprobs is None
        else tuple(TokenLogprob(**t) for t in json.loads(logprobs)),
        request_id=request_id,
        cached=True,
    )


def open_cache(cache: "GenerationCache | str | Path | None") -> tuple["GenerationCache | None", bool]:
    """A cache from a path or an instance; the flag says whether the caller opened it (and closes it)."""
    if cache is None or isinstance(cache, GenerationCache):
        return cache, False
    return GenerationCache(cache), True
