"""The generation cache: every sample stored once, so a rerun or a crash never pays twice.

`store.py` holds the SQLite store and its writer (see its docstring for the
guarantees), `runs.py` the stored runs, `backend.py` the cached backend,
`keys.py` the request keys and `schema.py` the schema and its migrations.
"""

from manyminds.cache.backend import CachedBackend
from manyminds.cache.keys import params_record, request_key
from manyminds.cache.schema import MIGRATIONS, SCHEMA_VERSION, SQLITE_MAGIC
from manyminds.cache.store import PENDING_DIR, CacheStats, GenerationCache, check_cache_path, open_cache

__all__ = [
    "MIGRATIONS", "PENDING_DIR", "SCHEMA_VERSION", "SQLITE_MAGIC", "CacheStats", "CachedBackend", "GenerationCache",
    "check_cache_path", "open_cache", "params_record", "request_key",
]
