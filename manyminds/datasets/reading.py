"""Reading data files: JSON lines (gzip too), JSON, and one error naming the file and line.

What the catalog's readers, a user's own file (`files.py`) and the code sets share.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from manyminds.errors import ConfigError


class DataError(ConfigError):
    """A data file or record that cannot be read as its data set says."""


@functools.lru_cache(maxsize=None)
def files_version(files: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in files:
        path = Path(name)
        for part in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if part.is_file():
                h.update(part.read_bytes())
    return h.hexdigest()[:12]


def open_text(path: Path):
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a data file")
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8")


@contextlib.contextmanager
def reading_errors(path: Path, where: Callable[[], str]) -> Iterator[None]:
    """Turn what a bad file raises while being read into one DataError naming `where` it was."""
    try:
        yield
    except DataError:
        raise
    except UnicodeDecodeError as error:
        raise DataError(f"{where()}: not UTF-8 text (byte {error.object[error.start:error.start + 1]!r} at "
                        f"{error.start})") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DataError(f"{path.name}: not a readable gzip file ({error})") from None
    except RecursionError:
        raise DataError(f"{where()}: nested too deeply to be a record") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{where()}: not JSON ({error.msg})") from None
    except ValueError as error:  # e.g. a number with more digits than Python converts
        raise DataError(f"{where()}: {error}") from None


def read_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line of a JSON-lines file (.gz too); a line
    that is not JSON (or not UTF-8, or nested past reason) is an error naming `file:line`."""
    at = [1]  # the line being read, for the error message
    with reading_errors(path, lambda: f"{path}:{at[0]}"), open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            at[0] = number
            if line.strip():
                record = json.loads(line)
                at[0] = number + 1
                yield number, record
            at[0] = number + 1


def read_json(path: Path) -> Any:
    with reading_errors(path, lambda: str(path)), open_text(path) as handle:
        return json.load(handle)
