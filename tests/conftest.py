"""Shared fixtures. Tests are offline: any connection off the loopback interface fails.

Integration fixtures start the real embedded model (llama.cpp in process) and
the real llama.cpp OpenAI-compatible server on 127.0.0.1, once per session.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sqlite3
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from manyminds.backends.local import Local, default_model_path

TEST_DATA = Path(__file__).resolve().parent / "data"
"""Small licensed slices of public data sets (see data/README.md); nothing is read from outside the repository."""

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    if self.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise ConnectionRefusedError(f"tests are offline: connection to {host} blocked")
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MANYMINDS_CACHE", raising=False)


def count_rows(db, table: str) -> int:
    """Rows in `table` of a cache file another process may be writing (0 while it cannot be read)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def kill_when_stored(command: list[str], db, table: str, rows: int, timeout: float = 120) -> int:
    """Start `command` in its own process group, SIGKILL it once `table` of the cache file `db`
    holds `rows` rows (or it exits, or `timeout` passes); returns the rows stored by then."""
    victim = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while count_rows(db, table) < rows and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    return count_rows(db, table)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def local_backend() -> Local:
    """The embedded model, loaded once for the session."""
    return Local(n_ctx=1024)


def wait_for_server(process: subprocess.Popen, url: str, what: str, log: Path, timeout: float) -> None:
    """Wait until an OpenAI-compatible server started on 127.0.0.1 lists its models."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited early: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start in {timeout:.0f} s: {log.read_text()[-3000:]}")
        time.sleep(0.25)


def stop_server(process: subprocess.Popen, grace: float = 10) -> None:
    """Terminate a server started by a fixture; kill its whole session if it lingers."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """The llama.cpp OpenAI-compatible server running the weights `Local()` runs (the bundled
    GGUF re-encoded as Q8_0); yields its /v1 URL."""
    from manyminds.backends.reencode import reencoded

    model = reencoded(default_model_path())
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            str(os.cpu_count() or 1),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_server(process, url, "llama.cpp server", Path(log.name), timeout=120)
        yield url
    finally:
        stop_server(process)
        log.close()
